"""Camera rays: the single home of pixel directions, world rays and NDC rays.

Camera convention (OpenGL / NeRF / Blender): in camera coordinates x points right, y up and the
camera looks along -z. A camera-to-world matrix ``c2w`` ``(3, 4)`` is ``[R | t]`` with ``t`` the
camera centre. Every dataset reader converts its poses into this convention once, at load time.
Pixel (u, v) has its centre at (u + 0.5, v + 0.5), v counted down from the top row.
"""
import torch


def get_ray_directions(H, W, K):
    """Camera-frame direction of each pixel's centre (not normalized, z = -1).

    Args:
        H, W: image size in pixels.
        K: ``(3, 3)`` intrinsics (fx, fy, cx, cy), or a float focal length with the principal
            point at the image centre.
    Returns:
        directions ``(H, W, 3)``.
    """
    if not torch.is_tensor(K) and not hasattr(K, "shape"):
        fx = fy = float(K)
        cx, cy = W / 2, H / 2
    else:
        K = torch.as_tensor(K, dtype=torch.float64)
        fx, fy, cx, cy = K[0, 0].item(), K[1, 1].item(), K[0, 2].item(), K[1, 2].item()
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32) + 0.5,
                          torch.arange(W, dtype=torch.float32) + 0.5, indexing="ij")  # (H, W)
    return torch.stack([(u - cx) / fx, -(v - cy) / fy, -torch.ones_like(u)], -1)  # (H, W, 3)


def get_rays(directions, c2w):
    """Rotate camera-frame directions into the world and attach the camera centre.

    Args:
        directions: ``(..., 3)`` camera-frame directions.
        c2w: ``(3, 4)`` one camera for all directions, or ``(..., 3, 4)`` one per direction
            (leading dims matching ``directions``).
    Returns:
        rays_o ``(..., 3)`` origins, rays_d ``(..., 3)`` unit directions, both in world space.
    """
    rays_d = (directions[..., None, :] * c2w[..., :3, :3]).sum(-1)  # R @ d, batched
    rays_d = rays_d / rays_d.norm(dim=-1, keepdim=True)
    rays_o = c2w[..., :3, 3].expand(rays_d.shape)
    return rays_o, rays_d


def get_ndc_rays(H, W, focal, near, rays_o, rays_d):
    """Map rays into normalized device coordinates (NeRF supplementary, eq. 25-26).

    For forward-facing scenes: the frustum from the plane ``z = -near`` to infinity becomes the
    cube [-1, 1]^3, and distances along the NDC rays run from 0 (near plane) to 1 (infinity).

    Args:
        H, W, focal: image size and focal length in pixels (principal point at the centre).
        near: depth of the near plane (1.0 for LLFF scenes scaled by their near bound).
        rays_o, rays_d: ``(N_rays, 3)`` world rays.
    Returns:
        rays_o, rays_d ``(N_rays, 3)`` in NDC (directions not normalized).
    """
    # shift origins onto the near plane
    t = -(near + rays_o[..., 2]) / rays_d[..., 2]
    rays_o = rays_o + t[..., None] * rays_d
    ox, oy, oz = rays_o.unbind(-1)
    dx, dy, dz = rays_d.unbind(-1)
    ax, ay = -2 * focal / W, -2 * focal / H
    o = torch.stack([ax * ox / oz, ay * oy / oz, 1 + 2 * near / oz], -1)
    d = torch.stack([ax * (dx / dz - ox / oz), ay * (dy / dz - oy / oz), -2 * near / oz], -1)
    return o, d

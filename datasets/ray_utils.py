"""Camera rays: the single home of pixel directions, world rays and NDC rays, plus the pose
helpers (average pose, centring, spiral and circular rendering paths).

Camera convention (OpenGL / NeRF / Blender): in camera coordinates x points right, y up and the
camera looks along -z. A camera-to-world matrix ``c2w`` ``(3, 4)`` is ``[R | t]`` with ``t`` the
camera centre. Every dataset reader converts its poses into this convention once, at load time.
Pixel (u, v) has its centre at (u + 0.5, v + 0.5), v counted down from the top row.
"""
import numpy as np
import torch

from datasets.distortion import undistort


def get_ray_directions(H, W, K, distortion=None):
    """Camera-frame direction of each pixel's centre (not normalized).

    Args:
        H, W: image size in pixels.
        K: ``(3, 3)`` intrinsics (fx, fy, cx, cy), or a float focal length with the principal
            point at the image centre.
        distortion: the lens (``datasets.distortion.Distortion``) or None (a pinhole). With a
            lens, each pixel's ray goes through its undistorted direction (the lens model
            inverted, ``datasets.distortion.undistort``): the photos are used as they are.
    Returns:
        directions ``(H, W, 3)`` float32: z = -1 for a pinhole and an ``"opencv"`` lens; unit
        vectors for a ``"fisheye"``, whose z turns positive for pixels more than 90 degrees off
        the axis (``get_rays`` normalizes them all).
    """
    if not torch.is_tensor(K) and not hasattr(K, "shape"):
        fx = fy = float(K)
        cx, cy = W / 2, H / 2
    else:
        K = torch.as_tensor(K, dtype=torch.float64)
        fx, fy, cx, cy = K[0, 0].item(), K[1, 1].item(), K[0, 2].item(), K[1, 2].item()
    if distortion is not None:  # float64 for the Newton steps, then to our axes (y up, looking along -z)
        v, u = np.meshgrid(np.arange(H) + 0.5, np.arange(W) + 0.5, indexing="ij")  # (H, W)
        d = undistort((u - cx) / fx, (v - cy) / fy, distortion)  # (H, W, 3), OpenCV's axes
        return torch.from_numpy(d * np.array([1.0, -1.0, -1.0])).float()
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


# ---------------------------------------------------------------------------------------------
# Pose helpers (numpy, float64): averaging and centring camera sets, and rendering paths.
# Poses are (..., 3, 4) camera-to-world [x | y | z | centre] in the convention above.
# ---------------------------------------------------------------------------------------------


def normalize(v):
    """``v / |v|`` along the last axis."""
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def average_poses(poses):
    """The "average camera" of a set (LLFF): mean centre, mean backward axis, mean up axis.

    Args:
        poses: ``(N, 3, 4)`` camera-to-world.
    Returns:
        ``(3, 4)`` pose whose z is the normalized mean of the cameras' z axes, x is
        ``mean(y) x z`` normalized, y = z x x, and centre the mean camera centre.
    """
    center = poses[:, :, 3].mean(0)  # (3,)
    z = normalize(poses[:, :, 2].mean(0))
    y_mean = poses[:, :, 1].mean(0)
    x = np.cross(y_mean, z)
    if np.linalg.norm(x) < 1e-6 * max(np.linalg.norm(y_mean), 1e-12):
        # the mean up is parallel to the mean backward axis (cameras all around a vertical
        # axis, looking level): take any axis perpendicular to z
        x = np.cross(np.eye(3)[np.argmin(np.abs(z))], z)
    x = normalize(x)
    return np.stack([x, np.cross(z, x), z, center], 1)  # (3, 4)


def center_poses(poses):
    """Express poses in the frame of their average pose (which becomes the identity).

    Args:
        poses: ``(N, 3, 4)`` camera-to-world.
    Returns:
        centred poses ``(N, 3, 4)``, and the ``(4, 4)`` world-to-average transform applied.
    """
    avg = np.eye(4)
    avg[:3] = average_poses(poses)
    to_avg = np.linalg.inv(avg)
    homo = np.concatenate([poses, np.tile([[[0.0, 0.0, 0.0, 1.0]]], (len(poses), 1, 1))], 1)  # (N, 4, 4)
    return (to_avg @ homo)[:, :3], to_avg


def look_at(center, target, up):
    """``(3, 4)`` camera-to-world of a camera at ``center`` looking at ``target`` (y close to ``up``)."""
    z = normalize(np.asarray(center, dtype=np.float64) - target)  # the camera looks along -z
    x = normalize(np.cross(up, z))
    return np.stack([x, np.cross(z, x), z, center], 1)


def focus_depth_from_bounds(bounds, dt=0.75):
    """Depth the forward-facing spiral looks at (LLFF / NeRF's render path).

    The harmonic blend ``1 / ((1 - dt) / near + dt / far)`` of a slightly reduced near bound
    (0.9 min) and an enlarged far bound (5 max): mostly the near content, as LLFF chose.

    Args:
        bounds: ``(N, 2)`` near/far depths (after any scaling of the scene).
    """
    close, far = 0.9 * float(np.min(bounds)), 5.0 * float(np.max(bounds))
    return 1.0 / ((1.0 - dt) / close + dt / far)


def create_spiral_poses(radii, focus_depth, n_poses=120, n_rots=2, zrate=0.5):
    """A spiral of cameras around the identity pose, all looking at ``(0, 0, -focus_depth)``.

    Used for forward-facing scenes after ``center_poses`` (the average camera is the identity).

    Args:
        radii: ``(3,)`` half-extent of the spiral along x, y, z (e.g. the 90th percentile of
            the absolute camera positions).
        focus_depth: depth of the point every camera looks at.
        n_poses, n_rots, zrate: number of poses, turns, and z oscillations per turn.
    Returns:
        ``(n_poses, 3, 4)`` camera-to-world.
    """
    poses = []
    for t in np.linspace(0, 2 * np.pi * n_rots, n_poses + 1)[:-1]:
        center = np.array([np.cos(t), -np.sin(t), -np.sin(zrate * t)]) * radii
        poses.append(look_at(center, np.array([0.0, 0.0, -focus_depth]), np.array([0.0, 1.0, 0.0])))
    return np.stack(poses)


def orbit_of_cameras(poses):
    """Where a 360-degree (inward-facing) capture orbits: target, up axis, radius and height.

    The target is the point nearest to every optical axis (least squares); the up axis is the
    normal of the plane best fitting the camera centres (oriented like the cameras' mean y), or
    the mean y itself when the centres do not span a plane; radius and height are the cameras'
    mean horizontal distance from the vertical through the target, and their mean height over it.

    Args:
        poses: ``(N, 3, 4)`` camera-to-world, cameras looking roughly at one object.
    Returns:
        dict ``target (3,)``, ``up (3,)``, ``radius``, ``height``, ``start (3,)`` (unit
        horizontal direction from the target to the first camera).
    """
    centers, fwd = poses[:, :, 3], -normalize(poses[:, :, 2])  # (N, 3) each
    proj = np.eye(3)[None] - fwd[:, :, None] * fwd[:, None, :]  # (N, 3, 3) projectors off each axis
    target = np.linalg.lstsq(proj.sum(0), (proj @ centers[:, :, None]).sum(0)[:, 0], rcond=None)[0]
    mean_y = poses[:, :, 1].mean(0)
    _, sv, vt = np.linalg.svd(centers - centers.mean(0))
    up = vt[2] if sv[1] > 0.1 * sv[0] else mean_y
    up = normalize(up * (1.0 if up @ mean_y >= 0 else -1.0))
    rel = centers - target  # (N, 3)
    heights = rel @ up
    horizontal = rel - heights[:, None] * up
    start = normalize(horizontal[0]) if np.linalg.norm(horizontal[0]) > 1e-9 else normalize(np.cross(up, np.eye(3)[0]))
    return dict(target=target, up=up, radius=float(np.linalg.norm(horizontal, axis=1).mean()),
                height=float(heights.mean()), start=start)


def create_spheric_poses(target, up, radius, height, start, n_poses=120):
    """A circle of cameras around ``target`` at ``height`` over it, all looking at it.

    Args:
        target, up: ``(3,)`` the point looked at and the unit up axis.
        radius, height: circle radius and height above ``target`` along ``up``.
        start: ``(3,)`` unit direction (perpendicular to ``up``) of the first camera.
        n_poses: number of poses over one turn.
    Returns:
        ``(n_poses, 3, 4)`` camera-to-world.
    """
    side = np.cross(up, start)
    poses = []
    for t in np.linspace(0, 2 * np.pi, n_poses + 1)[:-1]:
        center = target + height * up + radius * (np.cos(t) * start + np.sin(t) * side)
        poses.append(look_at(center, target, up))
    return np.stack(poses)

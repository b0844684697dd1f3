"""A mesh by TSDF fusion: depth and colour rendered from the training cameras, fused into a
truncated signed distance volume (open3d), meshed by its marching cubes.

The volume is open3d's ``UniformTSDFVolume``, a dense cube over the box being meshed (the box is
known, so nothing is gained by hashing blocks). Its hashed twin ``ScalableTSDFVolume`` (nerfstudio's
``ns-export tsdf`` idea) integrates nothing in the open3d 0.20 CPU wheel, even in open3d's own
example (0 points, 0 triangles), hence the choice.

Conventions. Our cameras are OpenGL's (``datasets/ray_utils.py``: x right, y up, looking along -z,
``c2w`` ``(3, 4)``); open3d wants OpenCV extrinsics (world-to-camera, x right, y down, z forward).
The fused depth is the distance along unit-length rays where the ray's transmittance falls to 0.5
(``models.rendering.median_depth``, nerfacto's choice too), turned into z-depth (distance times the
cosine between the ray and the optical axis), the depth open3d's pinhole model expects. The
expected depth (the weighted mean distance, divided by the opacity) is the other choice: it is right
for opaque surfaces but falls behind a thin, half-transparent object (a can in a real capture, whose
density stays low) onto what lies beyond it.
"""
import numpy as np
import torch
from tqdm import tqdm

from datasets.ray_utils import get_ray_directions, get_rays
from export.mesh import _open3d, drop_small_pieces
from models.rendering import render_chunked

DEPTHS = ("median", "expected")  # which rendered depth is fused
from utils.rays import Rays

TRUNC_VOXELS = 4  # truncation of the signed distance, in voxels
DEFAULT_VOXELS = 256  # default voxel size: the box diagonal over this


def default_voxel(ranges):
    """The default voxel size: the diagonal of the box ``ranges`` (3 pairs ``(lo, hi)``) / 256."""
    return float(np.linalg.norm([hi - lo for lo, hi in ranges])) / DEFAULT_VOXELS


def tsdf_resolution(box, voxel):
    """Voxels per side of the cube that holds the box ``ranges`` at ``voxel`` scene units."""
    return int(np.ceil(max(hi - lo for lo, hi in box) / voxel))


def opencv_extrinsic(c2w):
    """World-to-camera ``(4, 4)`` in OpenCV's convention (y down, z forward) from an OpenGL
    camera-to-world ``c2w`` ``(3, 4)`` or ``(4, 4)``."""
    m = np.eye(4)
    m[:3, :4] = np.asarray(c2w, dtype=np.float64)[:3, :4]
    m[:3, 1:3] *= -1  # flip the camera's y and z axes: OpenGL -> OpenCV
    return np.linalg.inv(m)


def open3d_intrinsic(K, img_wh):
    """open3d's pinhole intrinsics for our ``K`` ``(3, 3)``. open3d rounds a projected point to
    the nearest pixel index (pixel u spans [u - 0.5, u + 0.5]) while ours has its centre at u + 0.5,
    so the principal point moves by half a pixel."""
    o3d = _open3d()
    W, H = img_wh
    K = np.asarray(K, dtype=np.float64)
    return o3d.camera.PinholeCameraIntrinsic(int(W), int(H), K[0, 0], K[1, 1], K[0, 2] - 0.5, K[1, 2] - 0.5)


def expected_surface(depth, opacity):
    """Distance to a ray's opaque part from the renderer's expected depth ``(H, W)`` (weights times
    distances, pulled towards 0 on a half-transparent pixel) and opacity ``(H, W)``."""
    return torch.as_tensor(depth, dtype=torch.float32) / torch.as_tensor(opacity, dtype=torch.float32).clamp(min=1e-6)


def rgbd_for_fusion(rgb, surface, opacity, c2w, K, near, far, box, min_opacity=0.5, white_back=False):
    """One rendered view as the colour and z-depth images open3d fuses.

    Args:
        rgb: ``(H, W, 3)`` rendered colour in [0, 1]; surface: ``(H, W)`` distance along unit rays to
            the surface (``median_depth``, or ``expected_surface``; ``inf`` where there is none);
            opacity: ``(H, W)`` the accumulated weight.
        c2w: ``(3, 4)`` OpenGL camera-to-world; K: ``(3, 3)``; near, far: the rays' bounds.
        box: 3 pairs ``(lo, hi)``: pixels whose surface point lies outside are dropped (background).
        min_opacity: pixels less opaque than this are dropped (empty space, soft edges).
        white_back: the render was composited on white: that white is taken out of the colour.
    Returns:
        colour ``(H, W, 3)`` uint8, z-depth ``(H, W)`` float32 with 0 where a pixel is dropped
        (open3d skips those), and the fraction of pixels kept.
    """
    H, W = opacity.shape
    rgb, t, opacity = (torch.as_tensor(x, dtype=torch.float32) for x in (rgb, surface, opacity))
    c2w = torch.as_tensor(np.asarray(c2w)[:3, :4], dtype=torch.float32)
    finite = torch.isfinite(t)
    t = torch.where(finite, t, torch.zeros_like(t))
    dirs = get_ray_directions(H, W, K)  # (H, W, 3), z = -1
    unit = dirs / dirs.norm(dim=-1, keepdim=True)
    z = t * -unit[..., 2]  # z-depth: along the optical axis
    points = c2w[:, 3] + t[..., None] * (unit @ c2w[:, :3].T)  # (H, W, 3) surface point in the world
    lo, hi = (torch.tensor([r[i] for r in box], dtype=torch.float32) for i in (0, 1))
    keep = finite & (opacity >= min_opacity) & (t > near) & (t < far)
    keep &= ((points >= lo) & (points <= hi)).all(-1)
    if white_back:  # the pixel is opacity * surface + (1 - opacity) * white
        rgb = (rgb - (1 - opacity[..., None])) / opacity[..., None].clamp(min=1e-6)
    colour = (rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    depth = torch.where(keep, z, torch.zeros_like(z)).numpy().astype(np.float32)
    return np.ascontiguousarray(colour), np.ascontiguousarray(depth), float(keep.float().mean())


def tsdf_fuse(views, voxel, box, trunc_voxels=TRUNC_VOXELS):
    """Fuse colour and z-depth images into a TSDF volume and mesh it.

    Args:
        views: iterable of (colour ``(H, W, 3)`` uint8, z-depth ``(H, W)`` float32 with 0 for no
            depth, OpenGL ``c2w`` ``(3, 4)``, intrinsics ``K`` ``(3, 3)`` in our convention: pixel
            centres at u + 0.5), e.g. from ``rgbd_for_fusion``.
        voxel: voxel size in scene units; the truncation is ``trunc_voxels`` voxels.
        box: 3 pairs ``(lo, hi)``: the mesh is cropped to it.
    Returns:
        open3d ``TriangleMesh`` with vertex colours in [0, 1] (possibly empty).
    """
    o3d = _open3d()
    lo, hi = np.array([r[0] for r in box], dtype=np.float64), np.array([r[1] for r in box], dtype=np.float64)
    n = tsdf_resolution(box, voxel)
    volume = o3d.pipelines.integration.UniformTSDFVolume(
        length=n * float(voxel), resolution=n, sdf_trunc=float(trunc_voxels * voxel),
        color_type=o3d.pipelines.integration.TSDFVolumeColorType.RGB8, origin=lo)
    for colour, depth, c2w, K in views:
        if not (depth > 0).any():
            continue
        intrinsic = open3d_intrinsic(K, depth.shape[::-1])
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(colour), o3d.geometry.Image(depth), depth_scale=1.0,
            depth_trunc=float(depth.max()) + 1.0, convert_rgb_to_intensity=False)
        volume.integrate(rgbd, intrinsic, opencv_extrinsic(c2w))
    mesh = volume.extract_triangle_mesh()
    return mesh.crop(o3d.geometry.AxisAlignedBoundingBox(lo, hi))


def render_and_fuse(fields, ds, idx, ranges, voxel, render_kwargs, chunk, device, min_opacity=0.5,
                    min_cluster_frac=1.0, trunc_voxels=TRUNC_VOXELS, depth="median"):
    """Render views ``idx`` of the training set ``ds`` (metric rays, not NDC) with the project's
    renderer, fuse them into a TSDF volume over the box ``ranges`` and keep its large pieces.
    ``depth``: which rendered depth is fused, ``"median"`` or ``"expected"`` (see the module's doc).

    Returns:
        vertices ``(V, 3)``, triangles ``(T, 3)`` int64, colours ``(V, 3)`` in [0, 1], and stats
        (dict: mean fraction of pixels fused, pieces kept and dropped).
    """
    W, H = ds.img_wh
    kept_frac = []

    def views():
        for i in tqdm(idx, desc="tsdf: rendering views", unit="view"):
            c2w, K = ds.poses[i].cpu().numpy(), np.asarray(ds.Ks[i], dtype=np.float64)
            rays = ds.rays(i)
            if ds.lenses[i] is not None:  # open3d fuses pinhole images: render this view as one
                o, d = get_rays(get_ray_directions(H, W, K).reshape(-1, 3), ds.poses[i].cpu().float())
                rays = Rays(o.to(rays.origins), d.to(rays.origins), rays.near, rays.far, rays.image, rays.viewdirs)
            keys = ("rgb", "opacity", "median_depth" if depth == "median" else "depth")
            out = render_chunked(fields, rays.to(device), chunk=chunk, keys=keys, to_cpu=True, **render_kwargs)
            opacity = out["opacity"].view(H, W)
            surface = (out["median_depth"].view(H, W) if depth == "median"
                       else expected_surface(out["depth"].view(H, W), opacity))
            colour, z, frac = rgbd_for_fusion(out["rgb"].view(H, W, 3), surface, opacity, c2w, K, ds.near, ds.far,
                                              ranges, min_opacity, ds.white_back)
            kept_frac.append(frac)
            yield colour, z, c2w, K

    mesh = tsdf_fuse(views(), voxel, ranges, trunc_voxels)
    kept, dropped = drop_small_pieces(mesh, min_cluster_frac)
    stats = dict(pixels_fused=float(np.mean(kept_frac)) if kept_frac else 0.0, pieces=kept, dropped=dropped)
    return (np.asarray(mesh.vertices), np.asarray(mesh.triangles).astype(np.int64),
            np.asarray(mesh.vertex_colors), stats)

"""Where to mesh: the box (and, for a capture, the density level) from the cameras and the trained density.

Coordinates are the scene's world frame (the training poses'), at the true scale; boxes are 3 pairs
``(lo, hi)``.

- ``scene_bounds_hint``: where an inward-facing capture's optical axes converge, and the ball every
  camera sees whole around that point (a box from the cameras alone).
- ``surface_points`` / ``surface_level``: the points where the training views' rays stop (their
  transmittance falls to 0.5, ``models.rendering.median_depth``) and the density the field has
  there near the object: the level a capture's surface actually has. A thin real object (a can in a
  room) stops rays at a density of 10-30, below the seed's fixed 20, where marching cubes breaks
  it into fragments.
- ``object_box``: the box of the dense piece at the convergence point, found on a density lattice
  over a search box twice the hint's size: the hint's ball is what every camera sees, and cuts an
  object that some cameras see only in part (benchmarks/RESULTS.md §13: it cut beer's can).
- ``check_scene_bounds``: refuse a box that no training camera looked at.
"""
import numpy as np
import torch
from tqdm import tqdm

from datasets.ray_utils import orbit_of_cameras
from export.mesh import lattice_axes, marching_cubes, density_lattice, to_open3d
from export.mesh_color import project_points
from models.compositing import query_field
from models.rendering import render_chunked
from utils.errors import UserError

BLENDER_RADIUS = 1.5  # Blender scenes lie inside this ball around the origin (cameras at distance 4)
SEARCH_SCALE = 2.0  # object_box searches a cube of this many hint radii around the convergence point
SURFACE_FRACTION = 0.5  # a capture's level: this fraction of the density where rays stop near the object


def camera_coverage(points, poses, K, img_wh, near, far):
    """How many cameras see each point: inside the image and between near and far along the ray.

    Args:
        points: ``(P, 3)``; poses ``(N_cams, 3, 4)`` c2w; K ``(3, 3)``; img_wh (W, H); near, far:
            distances along (unit) rays.
    Returns:
        int64 array ``(P,)``.
    """
    points = torch.as_tensor(np.asarray(points), dtype=torch.float32)
    K = torch.as_tensor(np.asarray(K), dtype=torch.float32)
    W, H = img_wh
    count = torch.zeros(len(points), dtype=torch.int64)
    for c2w in torch.as_tensor(np.asarray(poses), dtype=torch.float32):
        uv, depth, dist = project_points(points, c2w, K)
        seen = (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] <= W) & (uv[:, 1] >= 0) & (uv[:, 1] <= H)
        count += (seen & (dist >= near) & (dist <= far)).long()
    return count.numpy()


def _box_lattice(ranges, n):
    axes = lattice_axes(ranges, n)
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)


def check_scene_bounds(ranges, dataset_name, poses, K, img_wh, near, far):
    """Reject a box that lies entirely where the training cameras never looked.

    Blender scenes: outside the radius-1.5 ball around the origin. Other scenes: no point of a
    16^3 lattice over the box is inside any training camera's frustum between near and far.
    """
    box = " ".join(f"--{a}_range {lo:g} {hi:g}" for a, (lo, hi) in zip("xyz", ranges))
    if dataset_name == "blender":
        closest = np.array([np.clip(0.0, lo, hi) for lo, hi in ranges])
        if np.linalg.norm(closest) > BLENDER_RADIUS:
            raise UserError(f"{box} lies outside the radius-{BLENDER_RADIUS} ball around the origin where "
                            f"Blender scenes are: use ranges within -{BLENDER_RADIUS} {BLENDER_RADIUS}")
        return
    if camera_coverage(_box_lattice(ranges, 16), poses, K, img_wh, near, far).max() == 0:
        raise UserError(f"{box} lies outside the region seen by the training cameras (between near {near:g} and "
                        f"far {far:g}): use the scene bounds hint printed above, or --preview_only to look")


def scene_bounds_hint(poses, K, img_wh):
    """Where an inward-facing capture's object is: the point the optical axes converge on
    (``orbit_of_cameras``) and a box around the ball there that every camera sees whole.

    The ball's radius is the nearest camera's distance times the sine of the smallest half
    field of view (Blender scenes: about 1.35 around the origin).
    Returns dict ``target`` ``(3,)``, ``up`` ``(3,)`` (the capture's up axis), ``box`` (3 pairs
    ``(lo, hi)``), or None when the axes do not converge in front of the cameras.
    """
    poses = np.asarray(poses, dtype=np.float64)
    orbit = orbit_of_cameras(poses)
    target = orbit["target"]
    dist = np.linalg.norm(poses[:, :, 3] - target, axis=1)
    if camera_coverage(target[None], poses, K, img_wh, 0.0, np.inf)[0] < 0.5 * len(poses):
        return None
    W, H = img_wh
    half_fov = min(np.arctan(0.5 * W / float(K[0][0])), np.arctan(0.5 * H / float(K[1][1])))
    radius = float(dist.min() * np.sin(half_fov))
    return dict(target=target, up=np.asarray(orbit["up"], dtype=np.float64),
                box=[(float(t - radius), float(t + radius)) for t in target])


def search_box(hint, poses):
    """The cube ``object_box`` searches: ``SEARCH_SCALE`` hint radii around the hint's target, at most
    0.8 of the distance to the nearest camera (the cameras' own floaters stay out)."""
    target = np.asarray(hint["target"], dtype=np.float64)
    radius = 0.5 * (hint["box"][0][1] - hint["box"][0][0])
    nearest = float(np.linalg.norm(np.asarray(poses)[:, :3, 3] - target, axis=1).min())
    half = min(SEARCH_SCALE * radius, 0.8 * nearest)
    return [(float(t - half), float(t + half)) for t in target]


@torch.no_grad()
def surface_points(fields, ds, idx, render_kwargs, chunk, device):
    """Where the rays of training views ``idx`` of ``ds`` stop: ``(P, 3)`` world points at each
    pixel's median depth (pixels that see through, i.e. opacity < 0.5, give none)."""
    points = []
    for i in tqdm(idx, desc="surface points", unit="view"):
        rays = ds.rays(i)
        t = render_chunked(fields, rays.to(device), chunk=chunk, keys=("median_depth",), to_cpu=True,
                           **render_kwargs)["median_depth"]
        ok = torch.isfinite(t)
        points.append(rays.origins[ok].cpu() + rays.directions[ok].cpu() * t[ok, None])
    return torch.cat(points) if points else torch.zeros(0, 3)


@torch.no_grad()
def surface_level(field, points, centre, radius, device="cpu"):
    """A marching-cubes level for a capture: ``SURFACE_FRACTION`` of the median density at the
    ``points`` ``(P, 3)`` (``surface_points``) within ``radius`` of ``centre`` ``(3,)``, i.e. on the
    object rather than on the room. Returns (level, number of points used), level None when fewer
    than 100 points are that close or their density is 0."""
    points = torch.as_tensor(points, dtype=torch.float32)
    near = points[(points - torch.as_tensor(centre, dtype=torch.float32)).norm(dim=-1) < radius]
    if len(near) < 100:
        return None, len(near)
    sigma = torch.relu(query_field(field, near.to(device))).float().cpu()
    level = SURFACE_FRACTION * float(sigma.median())
    return (level if level > 0 else None), len(near)


def object_box(field, search, threshold, centre, near_radius, n=96, device="cpu"):
    """The box of the object at ``centre``: the density on an ``n^3`` lattice over the ``search``
    box, its iso-surface at ``threshold``, and of its connected pieces the largest one that comes
    within ``near_radius`` of ``centre`` (floaters elsewhere, and the room beyond the search box,
    are left out). The piece's bounds grow by 2 lattice cells and 5% of its size on each side,
    clipped to the search box.

    Returns 3 pairs ``(lo, hi)``, or None when no piece comes that close.
    """
    grid = density_lattice(field, search, n, device, desc=f"object box {n}^3")
    if grid.max() <= threshold or grid.min() >= threshold:
        return None
    vertices, triangles = marching_cubes(grid, threshold, search)
    clusters, counts, _ = to_open3d(vertices, triangles).cluster_connected_triangles()
    clusters, counts = np.asarray(clusters), np.asarray(counts)
    dist = np.linalg.norm(vertices - np.asarray(centre, dtype=np.float64), axis=1)
    closest = np.full(len(counts), np.inf)  # each piece's nearest vertex to the centre
    np.minimum.at(closest, clusters, dist[triangles[:, 0]])
    near = np.flatnonzero(closest < near_radius)
    if len(near) == 0:
        return None
    piece = near[np.argmax(counts[near])]
    v = vertices[np.unique(triangles[clusters == piece])]
    lo, hi = v.min(0), v.max(0)
    cell = np.array([(b - a) / (n - 1) for a, b in search])
    grow = 2 * cell + 0.05 * (hi - lo)
    return [(float(max(a, l - g)), float(min(b, h + g))) for (a, b), l, h, g in zip(search, lo, hi, grow)]

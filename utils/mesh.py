"""Surfaces from a trained NeRF: density on a lattice, marching cubes, cleaning, mesh files.

Coordinates: every function here works in the scene's world coordinates (the frame of the
training poses, e.g. Blender's with +z up), at the true scale. A lattice of ``n`` samples
along an axis with range ``[lo, hi]`` puts sample ``i`` at ``lo + i * (hi - lo) / (n - 1)``
(node-centred, both ends included), so marching-cubes index coordinates map back exactly
(the seed divided by ``n`` instead, shrinking and shifting its meshes).

The science of ``extract_mesh.py``; colouring lives in ``utils.mesh_color``, the density
preview and the volume export in ``utils.volume``.
"""
import numpy as np
import torch
from tqdm import tqdm

from models.rendering import query_field
from utils.errors import UserError
from utils.mesh_color import project_points

BLENDER_RADIUS = 1.5  # Blender scenes lie inside this ball around the origin (cameras at distance 4)
MESH_FORMATS = ("ply", "obj", "glb")


def check_ranges(ranges):
    """Reject an empty, inverted or non-finite box. ``ranges``: 3 pairs ``(lo, hi)`` for x, y, z."""
    for name, (lo, hi) in zip("xyz", ranges):
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise UserError(f"--{name}_range {lo} {hi} is not finite: give two numbers LOW HIGH")
        if not lo < hi:
            raise UserError(f"--{name}_range {lo} {hi} is empty or inverted: give LOW HIGH with LOW < HIGH")
    return [(float(lo), float(hi)) for lo, hi in ranges]


def lattice_axes(ranges, n, cell_centred=False):
    """Sample positions along x, y and z: three float32 arrays of ``n`` values.

    Node-centred (default): ``lo + i (hi - lo) / (n - 1)``, both ends included (marching cubes).
    Cell-centred: ``lo + (i + 0.5) (hi - lo) / n``, the texel centres of a 3D texture that spans
    exactly ``[lo, hi]`` (volume export).
    """
    if cell_centred:
        return [(lo + (np.arange(n) + 0.5) * (hi - lo) / n).astype(np.float32) for lo, hi in ranges]
    return [np.linspace(lo, hi, n, dtype=np.float32) for lo, hi in ranges]


@torch.no_grad()
def sample_lattice(fn, axes, channels=1, device="cpu", max_points=1 << 18, desc="querying density"):
    """Evaluate ``fn`` on the lattice ``axes`` slab by slab (x-slices), with a progress bar.

    Args:
        fn: maps points ``(P, 3)`` on ``device`` to ``(P,)`` (channels 1) or ``(P, channels)``.
        axes: x, y, z sample positions (arrays of lengths nx, ny, nz).
        max_points: points per call of ``fn`` (at least one x-slice), so device memory is bounded
            by one slab whatever the lattice size; only the float32 result lives on the host.
    Returns:
        float32 array ``(nx, ny, nz)`` (channels 1) or ``(nx, ny, nz, channels)``, indexed [ix, iy, iz].
    """
    xs, ys, zs = (torch.as_tensor(a, dtype=torch.float32) for a in axes)
    nx, ny, nz = len(xs), len(ys), len(zs)
    out = np.empty((nx, ny, nz) + ((channels,) if channels > 1 else ()), dtype=np.float32)
    yz = torch.stack(torch.meshgrid(ys, zs, indexing="ij"), -1).reshape(-1, 2)  # (ny*nz, 2)
    slab = max(1, max_points // (ny * nz))
    starts = range(0, nx, slab)
    for i0 in tqdm(starts, desc=desc, total=len(starts), leave=False, disable=len(starts) < 4):
        x = xs[i0:i0 + slab]
        pts = torch.cat([x[:, None, None].expand(-1, ny * nz, 1), yz[None].expand(len(x), -1, -1)], -1)
        values = fn(pts.reshape(-1, 3).to(device))  # (slab*ny*nz[, C])
        out[i0:i0 + len(x)] = values.float().cpu().numpy().reshape(out[i0:i0 + len(x)].shape)
    return out


def density_lattice(field, ranges, n, device="cpu", max_points=1 << 18, desc="querying density"):
    """Density ``relu(sigma)`` of ``field`` on the node-centred ``n^3`` lattice over ``ranges``.

    Returns float32 ``(n, n, n)`` indexed [ix, iy, iz] (512^3: 512 MB on the host, nothing big on the device).
    """
    def density(x):
        return torch.relu(query_field(field, x, max_points=max_points))

    return sample_lattice(density, lattice_axes(ranges, n), 1, device, max_points, desc)


def marching_cubes(grid, threshold, ranges):
    """The ``threshold`` iso-surface of ``grid`` in scene coordinates.

    Args:
        grid: ``(nx, ny, nz)`` density on the node-centred lattice over ``ranges``.
    Returns:
        vertices ``(V, 3)`` float64 in scene units, triangles ``(T, 3)`` int64; the winding makes
        normals point out of the dense region (towards lower density).
    """
    import mcubes

    vertices, triangles = mcubes.marching_cubes(np.ascontiguousarray(grid, dtype=np.float32), float(threshold))
    lo = np.array([r[0] for r in ranges])
    step = (np.array([r[1] for r in ranges]) - lo) / (np.array(grid.shape[:3]) - 1)
    return lo + vertices * step, triangles.astype(np.int64)  # index -> scene: true scale, no 1/N


def _open3d():
    try:
        import open3d
    except (ImportError, OSError) as err:
        raise UserError(f"open3d cannot be imported ({err}); install it with `pip install open3d-cpu` "
                        f"(and the system library libusb-1.0-0)") from None
    return open3d


def to_open3d(vertices, triangles, colors=None):
    """An ``open3d.geometry.TriangleMesh`` from arrays (colours ``(V, 3)`` in [0, 1])."""
    o3d = _open3d()
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(np.asarray(vertices, dtype=np.float64)),
                                     o3d.utility.Vector3iVector(np.asarray(triangles, dtype=np.int32)))
    if colors is not None:
        mesh.vertex_colors = o3d.utility.Vector3dVector(np.clip(np.asarray(colors, dtype=np.float64), 0, 1))
    return mesh


def keep_large_components(vertices, triangles, min_fraction=0.05):
    """Drop connected pieces (floaters) with fewer triangles than ``min_fraction`` of the largest.

    ``min_fraction`` 1 keeps only the largest piece, 0 keeps everything.
    Returns vertices ``(V', 3)``, triangles ``(T', 3)``, and (pieces kept, pieces dropped).
    """
    mesh = to_open3d(vertices, triangles)
    clusters, n_triangles, _ = mesh.cluster_connected_triangles()
    clusters, n_triangles = np.asarray(clusters), np.asarray(n_triangles)
    if len(n_triangles) == 0:
        return vertices, triangles, (0, 0)
    keep = n_triangles >= min_fraction * n_triangles.max()
    mesh.remove_triangles_by_mask(~keep[clusters])
    mesh.remove_unreferenced_vertices()
    return (np.asarray(mesh.vertices), np.asarray(mesh.triangles).astype(np.int64),
            (int(keep.sum()), int((~keep).sum())))


def vertex_normals(vertices, triangles):
    """Unit area-weighted vertex normals ``(V, 3)`` (outward for ``marching_cubes`` output)."""
    mesh = to_open3d(vertices, triangles)
    mesh.compute_vertex_normals()
    return np.asarray(mesh.vertex_normals)


def write_mesh(path, vertices, triangles, colors):
    """Write a coloured mesh; the format follows the suffix (.ply binary, .obj, .glb)."""
    o3d = _open3d()
    mesh = to_open3d(vertices, triangles, colors)
    if not o3d.io.write_triangle_mesh(str(path), mesh, write_ascii=False, write_vertex_colors=True):
        raise UserError(f"could not write {path}")


# ---------------------------------------------------------------- where the scene is

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


def scene_bounds_hint(poses, K, img_wh, near, far, n=40):
    """A box around the region seen by at least half of the training cameras.

    Samples an ``n^3`` lattice over the cube that holds the camera centres (grown by the spread
    of the cameras) and returns the bounding box of the well-seen points as 3 pairs, or None.
    """
    centres = np.asarray(poses)[:, :3, 3]
    mid = centres.mean(0)
    half = max(float(np.linalg.norm(centres - mid, axis=1).max()), 1e-3) * 1.5
    lattice = _box_lattice([(m - half, m + half) for m in mid], n)
    count = camera_coverage(lattice, poses, K, img_wh, near, far)
    well_seen = lattice[count >= max(1, 0.5 * len(centres))]
    if len(well_seen) == 0:
        return None
    return [(float(lo), float(hi)) for lo, hi in zip(well_seen.min(0), well_seen.max(0))]

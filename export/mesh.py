"""Surfaces from a trained NeRF: density on a lattice, marching cubes, cleaning, mesh files.

Coordinates: every function here works in the scene's world coordinates (the frame of the
training poses, e.g. Blender's with +z up), at the true scale. A lattice of ``n`` samples
along an axis with range ``[lo, hi]`` puts sample ``i`` at ``lo + i * (hi - lo) / (n - 1)``
(node-centred, both ends included), so marching-cubes index coordinates map back exactly
(the seed divided by ``n`` instead, shrinking and shifting its meshes).

The science of ``extract_mesh.py``; colouring lives in ``export.mesh_color``, the density
preview and the volume export in ``export.volume``, where to mesh a capture in ``export.bounds``.
"""
import json
import struct

import numpy as np
import torch
from tqdm import tqdm

from models.compositing import query_field
from utils.errors import UserError

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
    if len(triangles) == 0:
        return vertices, triangles, (0, 0)
    counts = drop_small_pieces(mesh, min_fraction)
    return np.asarray(mesh.vertices), np.asarray(mesh.triangles).astype(np.int64), counts


def drop_small_pieces(mesh, min_fraction=0.05):
    """In place on an open3d ``TriangleMesh`` (vertex attributes such as colours follow): drop
    connected pieces with fewer triangles than ``min_fraction`` of the largest (1: keep only the
    largest). Returns (pieces kept, pieces dropped)."""
    clusters, n_triangles, _ = mesh.cluster_connected_triangles()
    clusters, n_triangles = np.asarray(clusters), np.asarray(n_triangles)
    if len(n_triangles) == 0:
        return 0, 0
    keep = n_triangles >= min_fraction * n_triangles.max()
    mesh.remove_triangles_by_mask(~keep[clusters])
    mesh.remove_unreferenced_vertices()
    return int(keep.sum()), int((~keep).sum())


def vertex_normals(vertices, triangles):
    """Unit area-weighted vertex normals ``(V, 3)`` (outward for ``marching_cubes`` output)."""
    mesh = to_open3d(vertices, triangles)
    mesh.compute_vertex_normals()
    return np.asarray(mesh.vertex_normals)


def write_mesh(path, vertices, triangles, colors, up=None):
    """Write a coloured mesh; the format follows the suffix (.ply binary and .obj through open3d, in
    scene coordinates; .glb with ``write_glb``, turned so that ``up`` (the scene's up axis) is +y)."""
    if str(path).lower().endswith(".glb"):
        return write_glb(path, vertices, triangles, colors, up)
    o3d = _open3d()
    mesh = to_open3d(vertices, triangles, colors)
    if not o3d.io.write_triangle_mesh(str(path), mesh, write_ascii=False, write_vertex_colors=True):
        raise UserError(f"could not write {path}")


def _srgb_to_linear(c):
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def up_rotation(up):
    """``(3, 3)`` rotation taking the unit vector ``up`` to +y and keeping x as close to x as it can
    (``up`` = +z gives (x, y, z) -> (x, z, -y))."""
    y = np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
    ref = np.array([1.0, 0, 0]) if abs(y[0]) < 0.9 else np.array([0, 0, -1.0])
    x = ref - (ref @ y) * y
    x /= np.linalg.norm(x)
    return np.stack([x, y, np.cross(x, y)])  # rows: the new axes in scene coordinates


def write_glb(path, vertices, triangles, colors, up=None):
    """A binary glTF 2.0 file: one unlit mesh with vertex colours.

    Written by hand, not by ``o3d.io.write_triangle_mesh``: measured with open3d 0.20, its .glb
    holds a base64 buffer that its own reader rejects ("Buffer view ... out of range"), an index
    accessor whose max (11 for 4 vertices) is wrong, no material (so viewers light the colours) and
    sRGB colours stored as if linear (washed out).

    glTF is +y up with linear colours: the mesh is turned so that ``up`` (the scene's up axis,
    e.g. +z for Blender scenes; None: no turn) becomes +y, and the sRGB colours are linearized.
    Unlit (``KHR_materials_unlit``) because the colours already hold the captured lighting.
    """
    pos = np.asarray(vertices, dtype=np.float64)
    if up is not None:
        pos = pos @ up_rotation(up).T
    pos = pos.astype(np.float32)
    lin = _srgb_to_linear(np.clip(np.asarray(colors, dtype=np.float64), 0, 1))
    rgba = np.concatenate([(lin * 255 + 0.5).astype(np.uint8), np.full((len(pos), 1), 255, np.uint8)], 1)
    blobs = [np.asarray(triangles, dtype=np.uint32).tobytes(), pos.tobytes(), rgba.tobytes()]
    views, offset = [], 0
    for blob, target in zip(blobs, (34963, 34962, 34962)):  # ELEMENT_ARRAY_BUFFER, ARRAY_BUFFER
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(blob), "target": target})
        offset += len(blob)  # every blob is a multiple of 4 bytes: no padding between them
    gltf = {
        "asset": {"version": "2.0", "generator": "nerf_pl extract_mesh.py"},
        "extensionsUsed": ["KHR_materials_unlit"],
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "materials": [{"pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0.0},
                       "extensions": {"KHR_materials_unlit": {}}}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 1, "COLOR_0": 2}, "indices": 0, "material": 0,
                                    "mode": 4}]}],
        "buffers": [{"byteLength": offset}],
        "bufferViews": views,
        "accessors": [
            {"bufferView": 0, "componentType": 5125, "count": int(np.asarray(triangles).size), "type": "SCALAR"},
            {"bufferView": 1, "componentType": 5126, "count": len(pos), "type": "VEC3",
             "min": pos.min(0).tolist(), "max": pos.max(0).tolist()},
            {"bufferView": 2, "componentType": 5121, "normalized": True, "count": len(pos), "type": "VEC4"},
        ],
    }
    js = json.dumps(gltf, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    binary = b"".join(blobs)
    with open(path, "wb") as f:
        f.write(struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(js) + 8 + len(binary)))
        f.write(struct.pack("<I4s", len(js), b"JSON") + js)
        f.write(struct.pack("<I4s", len(binary), b"BIN\0") + binary)


def read_glb(path):
    """(gltf dict, binary chunk) of a .glb file (for tests and checks)."""
    with open(path, "rb") as f:
        data = f.read()
    magic, version, length = struct.unpack("<4sII", data[:12])
    if magic != b"glTF" or version != 2 or length != len(data):
        raise UserError(f"{path} is not a glTF 2.0 binary file")
    n_json, _ = struct.unpack("<I4s", data[12:20])
    gltf = json.loads(data[20:20 + n_json])
    n_bin, kind = struct.unpack("<I4s", data[20 + n_json:28 + n_json])
    return gltf, data[28 + n_json:28 + n_json + n_bin]

"""Looking at a NeRF's density before meshing it, and exporting it as a volume texture.

- ``density_preview``: a coarse density lattice over the chosen box grown by a border, its
  statistics, and a PNG of three axis-aligned maximum projections with the threshold contour
  and the chosen box drawn, so ``--sigma_threshold`` and the ranges are picked by looking.
- ``volume_lattice`` / ``write_volume``: density + colour on a cell-centred lattice, written as a
  headerless ``.raw`` file plus a JSON header (``VOLUME_FORMAT``) a real-time renderer can load.
"""
import json
import os

import numpy as np
import torch

from models.compositing import query_field
from export.mesh import lattice_axes, sample_lattice

VOLUME_FORMAT = "nerf_pl-volume-v1"
PERCENTILES = (50, 90, 99, 99.9)
# colours of the volume: mean over 4 view directions (a regular tetrahedron) so that no side is favoured
TETRA_DIRS = (np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)).astype(np.float32)


def sigma_stats(grid, threshold):
    """Percentiles, max and the fraction of voxels above ``threshold`` of a density lattice."""
    flat = np.asarray(grid, dtype=np.float32).ravel()
    stats = {f"p{p:g}": float(v) for p, v in zip(PERCENTILES, np.percentile(flat, PERCENTILES))}
    stats.update(max=float(flat.max()), min=float(flat.min()), frac_above=float((flat > threshold).mean()))
    return stats


def format_stats(stats):
    parts = [f"{k} {stats[k]:.3g}" for k in [f"p{p:g}" for p in PERCENTILES] + ["max"]]
    return f"sigma over the box: {', '.join(parts)}; {100 * stats['frac_above']:.2f}% of voxels above the threshold"


def suggest_threshold(stats):
    """A threshold that gives a surface: the 99th percentile, at most half the max (a soft,
    under-trained density peaks low and its 99th percentile already cuts into the object)."""
    return min(stats["p99"], 0.5 * stats["max"]) if stats["p99"] > 0 else 0.5 * stats["max"]


def _grown(ranges, border):
    return [(lo - border * (hi - lo), hi + border * (hi - lo)) for lo, hi in ranges]


def density_preview(field, ranges, n=128, border=0.25, include=None, device="cpu", max_points=1 << 18):
    """Density on an ``n^3`` lattice over ``ranges`` grown by ``border`` (a fraction of each
    extent) on every side, and grown further to cover the box ``include`` (e.g. the scene
    bounds hint) when given. Returns (grid ``(n, n, n)``, its ranges, the sub-grid inside ``ranges``)."""
    big = _grown(ranges, border)
    if include is not None:
        big = [(min(a[0], b[0]), max(a[1], b[1])) for a, b in zip(big, include)]

    def density(x):
        return torch.relu(query_field(field, x, max_points=max_points))

    grid = sample_lattice(density, lattice_axes(big, n), 1, device, max_points, desc="density preview")
    axes = lattice_axes(big, n)
    inside = tuple(slice(int(np.searchsorted(a, lo - 1e-6)), int(np.searchsorted(a, hi + 1e-6, side="right")))
                   for a, (lo, hi) in zip(axes, ranges))
    return grid, big, grid[inside]


def save_preview_png(path, grid, grid_ranges, box, threshold, stats, title="", hint=None):
    """Three maximum projections of ``grid`` (over z, y and x) with a symlog colour scale, the
    ``threshold`` contour (cyan: where the mesh's silhouette will be), ``box`` (the chosen
    ranges, dashed white) and ``hint`` (the scene bounds hint, dotted green, when given).
    ``grid_ranges``: the extent of ``grid``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import SymLogNorm
    from matplotlib.patches import Rectangle

    vmax = max(float(grid.max()), threshold * 1.5, 1e-3)
    norm = SymLogNorm(linthresh=max(threshold / 10, 1e-3), vmin=0, vmax=vmax)
    fig, axs = plt.subplots(1, 3, figsize=(15, 5.2), constrained_layout=True)
    views = [(2, 0, 1, "max over z"), (1, 0, 2, "max over y"), (0, 1, 2, "max over x")]  # (reduced, horiz, vert)
    for ax, (red, h, v, label) in zip(axs, views):
        proj = grid.max(axis=red)  # remaining axes keep their order: (h, v)
        ext = [*grid_ranges[h], *grid_ranges[v]]
        im = ax.imshow(proj.T, origin="lower", extent=ext, cmap="magma", norm=norm, interpolation="nearest")
        if proj.max() > threshold > proj.min():
            hs = lattice_axes([grid_ranges[h]], proj.shape[0])[0]
            vs = lattice_axes([grid_ranges[v]], proj.shape[1])[0]
            ax.contour(hs, vs, proj.T, levels=[threshold], colors="cyan", linewidths=1)
        for rect, style in ((hint, dict(ec="lime", ls=":")), (box, dict(ec="white", ls="--"))):
            if rect is not None:
                (h0, h1), (v0, v1) = rect[h], rect[v]
                ax.add_patch(Rectangle((h0, v0), h1 - h0, v1 - v0, fill=False, lw=1.2, **style))
        ax.set_xlabel("xyz"[h])
        ax.set_ylabel("xyz"[v])
        ax.set_title(label)
    cbar = fig.colorbar(im, ax=axs, shrink=0.9, label="sigma (max along the line of sight)")
    cbar.ax.axhline(threshold, color="cyan", lw=2)
    fig.suptitle(f"{title}  threshold {threshold:g} (cyan), chosen ranges (dashed), "
                 f"scene bounds hint (dotted)\n{format_stats(stats)}",
                 fontsize=10)
    fig.savefig(path, dpi=80)
    plt.close(fig)


@torch.no_grad()
def volume_lattice(field, ranges, n, device="cpu", max_points=1 << 17):
    """Colour and density on the cell-centred ``n^3`` lattice over ``ranges``.

    Colour is the mean of the field's colour over the 4 ``TETRA_DIRS`` view directions.
    Returns float32 ``(n, n, n, 4)`` indexed [ix, iy, iz, (r, g, b, sigma)].
    """
    dirs = torch.as_tensor(TETRA_DIRS, device=device)

    def rgb_sigma(x):
        rgb = 0
        for d in dirs:
            sigma, c = query_field(field, x, d.expand_as(x), max_points=max_points)
            rgb = rgb + c / len(dirs)
        return torch.cat([rgb, torch.relu(sigma)[:, None]], -1)  # (P, 4)

    return sample_lattice(rgb_sigma, lattice_axes(ranges, n, cell_centred=True), 4, device, max_points,
                          desc="querying volume")


def volume_header(volume, ranges, dtype, raw_name, **extra):
    """The JSON header that documents a ``.raw`` volume (see ``write_volume``)."""
    n = volume.shape[:3]
    return {
        "format": VOLUME_FORMAT,
        "raw_file": raw_name,
        "dtype": dtype, "byte_order": "little",
        "dims": {"x": n[0], "y": n[1], "z": n[2]},
        "shape": [n[2], n[1], n[0], 4],
        "channels": ["r", "g", "b", "sigma"],
        "layout": "C order of shape [nz, ny, nx, 4]: channels interleaved, x varies fastest, then y, then z "
                  "(the order of a 3D RGBA texture: width = x, height = y, depth = z)",
        "ranges": {a: list(r) for a, r in zip("xyz", ranges)},
        "voxel_size": [(hi - lo) / k for (lo, hi), k in zip(ranges, n)],
        "sample_positions": "cell centres: voxel i along an axis is at lo + (i + 0.5) * (hi - lo) / n, so the "
                            "box [lo, hi] maps to texture coordinates [0, 1]",
        "units": {"r, g, b": "colour in [0, 1] (as in the training images, sRGB), mean over 4 view directions",
                  "sigma": "volume density in 1 / scene unit (ReLU applied): a step of length dt scene units "
                           "has opacity 1 - exp(-sigma * dt)"},
        "coordinates": "the scene's world frame at true scale, right-handed (Blender scenes: +z up); "
                       "up_axis, when present, is the capture's up direction in this frame",
        **extra,
    }


def write_volume(folder, stem, volume, ranges, dtype="float32", **extra):
    """Write ``stem_volume.raw`` (``volume`` ``(nx, ny, nz, 4)`` re-laid as [nz, ny, nx, 4]) and
    ``stem_volume.json``. Returns the two paths."""
    raw_path = os.path.join(folder, f"{stem}_volume.raw")
    json_path = os.path.join(folder, f"{stem}_volume.json")
    data = np.ascontiguousarray(volume.transpose(2, 1, 0, 3))  # [iz, iy, ix, c]: x fastest in memory
    if dtype == "float16":
        data = np.minimum(data, np.finfo(np.float16).max)
    data.astype(np.dtype(dtype).newbyteorder("<")).tofile(raw_path)
    header = volume_header(volume, ranges, dtype, os.path.basename(raw_path), **extra)
    with open(json_path, "w") as f:
        json.dump(header, f, indent=1)
    return raw_path, json_path


def read_volume(json_path):
    """Load a volume written by ``write_volume``: (array ``[nz, ny, nx, 4]`` float32, header dict)."""
    with open(json_path) as f:
        header = json.load(f)
    raw = os.path.join(os.path.dirname(json_path), header["raw_file"])
    data = np.fromfile(raw, dtype=np.dtype(header["dtype"]).newbyteorder("<")).reshape(header["shape"])
    return data.astype(np.float32), header

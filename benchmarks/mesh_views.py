"""Meshes of a real capture side by side, as held-out cameras see them (no ground-truth surface there).

    python benchmarks/mesh_views.py --ckpt_path ckpts/beer5/last.ckpt --meshes mc.ply tsdf.ply \\
        --labels "marching cubes" "TSDF fusion" --out benchmarks/results/beer_meshes.png

For ``--views`` held-out cameras of the checkpoint's scene (evenly spread over the test split), one
row: the held-out photo, then each mesh drawn from that camera (``export.report.mesh_picture``:
triangles in their vertex colours, shaded by how squarely they face the camera). Prints each mesh's
vertex and triangle counts and its number of connected pieces.
"""
import argparse
import os
import sys
from argparse import Namespace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from datasets import make_dataset  # noqa: E402
from export.report import _plt, mesh_picture  # noqa: E402
from utils.checkpoint import load_checkpoint  # noqa: E402


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt_path", required=True, help="the checkpoint the meshes came from (its scene and cameras)")
    p.add_argument("--meshes", nargs="+", required=True, help="mesh files (ply)")
    p.add_argument("--labels", nargs="+", help="one per mesh (default: the file names)")
    p.add_argument("--views", type=int, default=2, help="held-out cameras, one row each")
    p.add_argument("--out", required=True, help="the png to write")
    return p.parse_args(argv)


def main(argv=None):
    import open3d as o3d

    a = parse(argv)
    labels = a.labels or [os.path.basename(m) for m in a.meshes]
    if len(labels) != len(a.meshes):
        raise SystemExit("error: give one --labels entry per mesh")
    hp = Namespace(**load_checkpoint(a.ckpt_path)["hparams"])
    ds = make_dataset(hp, "test")
    W, H = ds.img_wh
    meshes = []
    for path, label in zip(a.meshes, labels):
        mesh = o3d.io.read_triangle_mesh(path)
        v, t = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
        c = np.asarray(mesh.vertex_colors) if mesh.has_vertex_colors() else np.full_like(v, 0.7)
        pieces = len(np.unique(np.asarray(mesh.cluster_connected_triangles()[0]))) if len(t) else 0
        print(f"{label}: {len(v)} vertices, {len(t)} triangles, {pieces} connected piece(s)")
        meshes.append((v, t, c, f"{label}\n{len(t)} triangles, {pieces} piece{'s' if pieces != 1 else ''}"))
    views = sorted({int(round(x)) for x in np.linspace(0, len(ds.poses) - 1, a.views)})
    plt = _plt()
    cols = 1 + len(meshes)
    fig, axes = plt.subplots(len(views), cols, figsize=(3.2 * cols * W / max(W, H) + 0.4, 3.2 * len(views) * H / max(W, H) + 0.8),
                             squeeze=False)
    for row, i in zip(axes, views):
        row[0].imshow(ds.rgbs[i].view(H, W, 3).numpy())
        row[0].set_title(f"held-out view {i}", fontsize=7)
        row[0].set_xticks([])
        row[0].set_yticks([])
        c2w, K = np.asarray(ds.poses[i], dtype=np.float64), np.asarray(ds.Ks[i], dtype=np.float64)
        for ax, (v, t, c, title) in zip(row[1:], meshes):
            mesh_picture(v, t, c, c2w, K, (W, H), ax)
            ax.set_title(title, fontsize=6)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    fig.savefig(a.out, dpi=150)
    plt.close(fig)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

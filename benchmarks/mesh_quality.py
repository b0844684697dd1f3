"""Mesh quality of ``extract_mesh.py --method mc`` and ``--method tsdf`` on the demo scene, against
its analytic surface (``datasets/demo_scene.py``).

    python benchmarks/mesh_quality.py [--ckpt_path CKPT --root_dir DEMO_SCENE] \\
        [--size 64 --train_flags "..."] [--mc_flags "--N_grid 160 --sigma_threshold 5"] [--tsdf_flags ...]

Without ``--ckpt_path`` it writes the demo scene at ``--size`` and trains on it with ``--train_flags``
(the Makefile's ``DEMO_FLAGS``) in ``--work``. Each method runs as a user would (``extract_mesh.py``
on the same box); then, from 200,000 points spread evenly over each mesh and as many over the part
of the true surface some training camera sees:

- mesh -> surface (accuracy): the exact distance of the mesh's points to the true surface (its
  signed distance function);
- surface -> mesh (completeness): the distance of the true surface's points to the nearest mesh point;
- Chamfer: their mean. All in scene units (the demo's solids fit in [-1, 1]^3).

Prints a table, appends a JSON line to ``{out_dir}/{tag}.jsonl`` and writes ``{tag}.png``: each mesh
seen from two test cameras (vertex colours splatted with a depth test).
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import imageio.v2 as imageio  # noqa: E402
import numpy as np  # noqa: E402

from datasets.demo_scene import (CAMERA_ANGLE_X, camera_centres, look_at_pose, signed_distance,  # noqa: E402
                                 surface_samples, write_scene)
from metrics import chamfer_distances, sample_mesh_surface  # noqa: E402

DEMO_FLAGS = ("--net_depth 4 --net_width 64 --N_samples 32 --N_importance 32 --lr 2e-3 --noise_std 0 "
              "--max_steps 800 --val_every 1 --val_num 4")
BOX = "--x_range -1.1 1.1 --y_range -1.1 1.1 --z_range -0.8 0.8"  # the Makefile's demo box


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt_path", default=None, help="a model of the demo scene (None: train one)")
    p.add_argument("--root_dir", default=None, help="its demo scene folder (None: written in --work)")
    p.add_argument("--size", type=int, default=64, help="demo image size when training here")
    p.add_argument("--train_flags", default=DEMO_FLAGS, help="train.py flags when training here")
    p.add_argument("--mc_flags", default="--N_grid 160 --sigma_threshold 5 --n_views 10",
                   help="extract_mesh.py flags of --method mc (N_grid 160: about the tsdf's default voxel)")
    p.add_argument("--tsdf_flags", default="--n_views 30", help="extract_mesh.py flags of --method tsdf")
    p.add_argument("--n_points", type=int, default=200000, help="points on each mesh and on the true surface")
    p.add_argument("--work", default=os.path.join(ROOT, "benchmarks", "work", "mesh_quality"))
    p.add_argument("--tag", default="mesh_quality")
    p.add_argument("--out_dir", default=os.path.join(ROOT, "benchmarks", "results"))
    return p.parse_args()


def run(args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT)
    print("$ python " + " ".join(shlex.quote(str(a)) for a in args), flush=True)
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True)


def extract(method, flags, ckpt, root_dir, work):
    out = os.path.join(work, "meshes", f"{method}.ply")
    args = [os.path.join(ROOT, "extract_mesh.py"), "--ckpt_path", ckpt, "--root_dir", root_dir, "--method", method,
            *BOX.split(), *shlex.split(flags), "--out", out]
    proc = run(args, work)
    if proc.returncode != 0 and "try --sigma_threshold" in proc.stderr:  # the density peaks lower: take the hint
        suggested = proc.stderr.split("try --sigma_threshold ")[1].split()[0].rstrip(",")
        proc = run(args + ["--sigma_threshold", suggested], work)
    if proc.returncode != 0:
        raise SystemExit(f"extract_mesh.py --method {method} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return out, proc.stdout


def mesh_picture(vertices, triangles, colors, c2w, size=256, n_points=400000):
    """The coloured mesh seen from the OpenGL camera ``c2w`` ``(4, 4)`` (the demo's field of view):
    ``(size, size, 3)`` uint8 on white, by splatting points of the surface with a depth test."""
    rng = np.random.default_rng(0)
    tri = vertices[triangles]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=-1)
    pick = rng.choice(len(tri), n_points, p=area / area.sum())
    w = rng.dirichlet([1, 1, 1], n_points)  # barycentric: uniform over each triangle
    pts = (tri[pick] * w[..., None]).sum(1)
    col = (colors[triangles[pick]] * w[..., None]).sum(1)
    cam = (pts - c2w[:3, 3]) @ c2w[:3, :3]  # camera frame: x right, y up, looking along -z
    focal = 0.5 * size / np.tan(0.5 * CAMERA_ANGLE_X)
    z = -cam[:, 2]
    u = (focal * cam[:, 0] / z + size / 2).astype(int)
    v = (-focal * cam[:, 1] / z + size / 2).astype(int)
    ok = (z > 0) & (u >= 0) & (u < size) & (v >= 0) & (v < size)
    order = np.argsort(-z[ok])  # far first: nearer points overwrite them
    img = np.ones((size, size, 3))
    img[v[ok][order], u[ok][order]] = col[ok][order]
    return (img * 255 + 0.5).astype(np.uint8)


def main():
    a = parse()
    os.makedirs(a.work, exist_ok=True)
    # absolute: extract_mesh.py runs in --work
    root_dir, ckpt = (os.path.abspath(x) if x else x for x in (a.root_dir, a.ckpt_path))
    if root_dir is None:
        root_dir = os.path.join(a.work, "demo")
        if not os.path.isfile(os.path.join(root_dir, "transforms_test.json")):
            write_scene(root_dir, size=a.size)
    if ckpt is None:
        ckpt = os.path.join(a.work, "ckpts", "mesh_quality", "last.ckpt")
        proc = run([os.path.join(ROOT, "train.py"), "--dataset_name", "blender", "--root_dir", root_dir,
                    "--img_wh", a.size, a.size, *shlex.split(a.train_flags), "--exp_name", "mesh_quality"], a.work)
        if proc.returncode != 0:
            raise SystemExit(f"training failed:\n{proc.stderr[-2000:]}")
    import open3d as o3d

    truth = surface_samples(a.n_points, camera_centres(root_dir))
    row = dict(ckpt=os.path.abspath(ckpt), root_dir=os.path.abspath(root_dir), box=BOX, n_points=a.n_points,
               date=time.strftime("%Y-%m-%d %H:%M"))
    tiles = []
    for method, flags in (("mc", a.mc_flags), ("tsdf", a.tsdf_flags)):
        path, log = extract(method, flags, ckpt, root_dir, a.work)
        mesh = o3d.io.read_triangle_mesh(path)
        v, t, c = np.asarray(mesh.vertices), np.asarray(mesh.triangles), np.asarray(mesh.vertex_colors)
        d = chamfer_distances(sample_mesh_surface(v, t, a.n_points), truth, signed_distance)
        row[method] = dict(flags=flags, vertices=len(v), triangles=len(t), **{k: round(x, 5) for k, x in d.items()})
        tiles.append(np.concatenate([mesh_picture(v, t, c, look_at_pose(th, np.radians(30))) for th in (0.6, 3.7)], 1))
    print(f"\n{'method':6s} {'mesh->surface':>14s} {'surface->mesh':>14s} {'chamfer':>9s} {'p90 m->s':>9s} "
          f"{'p90 s->m':>9s} {'vertices':>9s}")
    for method in ("mc", "tsdf"):
        r = row[method]
        print(f"{method:6s} {r['mesh_to_surface']:14.4f} {r['surface_to_mesh']:14.4f} {r['chamfer']:9.4f} "
              f"{r['mesh_to_surface_p90']:9.4f} {r['surface_to_mesh_p90']:9.4f} {r['vertices']:9d}")
    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, f"{a.tag}.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")
    picture = os.path.join(a.out_dir, f"{a.tag}.png")
    imageio.imwrite(picture, np.concatenate(tiles, 0))  # rows: mc, tsdf
    print(f"wrote {os.path.join(a.out_dir, a.tag + '.jsonl')} and {picture} (rows: mc, tsdf)")


if __name__ == "__main__":
    main()

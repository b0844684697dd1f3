"""Viewer speed: time to the first (coarse) image after a camera move, and to a 512-pixel-wide frame.

    python benchmarks/viewer_speed.py                                   # fresh networks of three shapes
    python benchmarks/viewer_speed.py --ckpt_path ckpts/lego/last.ckpt ckpts/lego_fast/last.ckpt
    python benchmarks/viewer_speed.py --device cuda --width 800         # frames per second at 800x800

Renders exactly as the viewer does (``viewer.render.SceneRenderer`` after its calibration, the
first image sized by ``SceneRenderer.first_image_width`` for the default 0.2 s "time per frame"), from a camera 4
units from the origin (a Blender-style view, near 2, far 6, 40 degree field of view), square
images. Without checkpoints (the seed-sized network only on a GPU: on a CPU its 512-px frame
takes minutes) the networks are freshly initialized: the vanilla renderer's cost does
not depend on the weights; the fast path's does (a fresh occupancy grid is all occupied, so it is
its slowest case). Prints one JSON line per model: ``{"model", "first_image_s", "first_width",
"frame_s", "width", "rays_per_s", "fps"}``. Figures on a shared machine are only comparable within
one run.
"""
import argparse
import json
import math
import os
import sys
import time
from argparse import Namespace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from datasets.ray_utils import look_at  # noqa: E402
from models import build_fields, kernels  # noqa: E402
from opt import get_opts  # noqa: E402
from models import load_model  # noqa: E402
from viewer.render import SceneRenderer, picture  # noqa: E402

FRESH = {"seed 8x256, 64+128 samples": "--N_samples 64 --N_importance 128",
         "tiny 4x64, 32+32 samples": "--net_depth 4 --net_width 64 --N_samples 32 --N_importance 32",
         "fast (hash grid, fresh grid)": "--fast --aabb -1.5 -1.5 -1.5 1.5 1.5 1.5"}


def blender_scene(poses):
    """A scene dict as ``viewer.camera.scene_cameras`` returns, for a Blender-style setting."""
    return dict(K=np.eye(3, dtype=np.float32), img_wh=[400, 400], poses=poses, near=2.0, far=6.0, ndc=False,
                white_back=True, image_names=None, rgbs=None, aabb=[-1.5] * 3 + [1.5] * 3)


def models(args, device):
    """(name, fields, hparams) per model to time."""
    if args.ckpt_path:
        for path in args.ckpt_path:
            h = get_opts(["--root_dir", "unused", "--ckpt_path", path])
            fields, h, _ = load_model(h, ("root_dir",), device)
            yield os.path.basename(os.path.dirname(os.path.abspath(path))) or path, fields, h
        return
    for name, flags in FRESH.items():
        if name.startswith("seed") and not str(device).startswith("cuda"):
            continue  # ~minutes per 512-px frame on a CPU: time it on a GPU (or with --ckpt_path)
        torch.manual_seed(0)
        h = get_opts(["--root_dir", "unused", "--num_gpus", "0", *flags.split()])
        fields = build_fields(h)
        yield name, {k: f.to(device).eval() for k, f in fields.items()}, h


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt_path", nargs="+", default=None, help="trained checkpoints (default: fresh networks)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--width", type=int, default=512, help="width (and height) of the full frame")
    p.add_argument("--frame_time", type=float, default=0.2, help="the viewer's time per frame (first image)")
    p.add_argument("--repeats", type=int, default=3, help="camera moves timed per model (the median is printed)")
    p.add_argument("--kernels", choices=kernels.MODES, default="auto", help="fused CPU kernels or the PyTorch code")
    args = p.parse_args(argv)
    c2w = look_at(np.array([0.0, -4.0, 1.0]), np.zeros(3), np.array([0.0, 0.0, 1.0])).astype(np.float32)
    fov = math.radians(40)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for name, fields, h in models(args, args.device):
        kernels.set_mode(args.kernels)  # after the model: building fields sets the mode from their flags
        r = SceneRenderer(fields, Namespace(**vars(h)) if not isinstance(h, Namespace) else h,
                          blender_scene(c2w[None]), args.device)
        r.calibrate(c2w, fov)

        def image(w):  # as a viewer tab does: render, make the picture, note the whole image's time
            t0 = time.perf_counter()
            picture(r.render(c2w, fov, (w, w)), "rgb", r.depth_range())
            sync()
            r.note_image(w * w, time.perf_counter() - t0)
            return time.perf_counter() - t0

        image(r.first_image_width(args.frame_time, 1.0, args.width))  # a first move
        firsts, frames = [], []
        for _ in range(args.repeats):
            w0 = r.first_image_width(args.frame_time, 1.0, args.width)
            firsts.append((image(w0), w0))
            frames.append(image(args.width))
        first_s, w0 = sorted(firsts)[len(firsts) // 2]
        frame_s = float(np.median(frames))
        print(json.dumps({"model": name, "device": args.device, "kernels": args.kernels, "first_image_s": round(first_s, 3), "first_width": w0,
                          "frame_s": round(frame_s, 3), "width": args.width,
                          "rays_per_s": round(args.width ** 2 / frame_s), "fps": round(1 / frame_s, 2)}), flush=True)


if __name__ == "__main__":
    main()

"""Renderer micro-benchmark: inference rays/s and peak memory of one full frame, per resolution.

    python benchmarks/render_speed.py --device cpu                      # the seed's networks, 64+128 samples
    python benchmarks/render_speed.py --device cuda --img_wh 400 400 800 800 1920 1080
    python benchmarks/render_speed.py --ckpt_path ckpts/lego/last.ckpt  # a trained model (vanilla or --fast)

Each resolution renders in its own process (so each peak-memory figure is that run's alone):
a camera 4 units from the origin looking at it (a Blender-style view, near 2, far 6), all
pixels through ``models.rendering.render_chunked`` in chunks of ``--chunk`` rays, outputs
moved to the host per chunk as ``eval.py`` does. Without a checkpoint the networks are freshly
initialized: the vanilla renderer's cost does not depend on the weights (fixed sample counts).
Prints one JSON line per resolution: ``{"img_wh", "rays", "seconds", "rays_per_s", "peak_mem_mb"}``;
peak memory is the GPU's allocated peak on CUDA and the process's peak RSS on the CPU. With
chunked rendering it must stay nearly flat as the frame grows (only the output image grows).
"""
import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from datasets.ray_utils import get_ray_directions, get_rays, look_at  # noqa: E402
from models import build_fields, load_model  # noqa: E402
from models.rendering import render_chunked  # noqa: E402
from opt import get_opts  # noqa: E402
from utils.rays import Rays  # noqa: E402


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--img_wh", nargs="+", type=int, default=None,
                   help="resolutions as W H pairs (default: 32 32 64 64 128 128 on cpu, 400 400 800 800 1920 1080 on cuda)")
    p.add_argument("--chunk", type=int, default=None, help="rays per chunk (default 4096 cpu, 32768 cuda)")
    p.add_argument("--ckpt_path", default=None, help="a trained checkpoint (default: fresh networks of the seed's shape)")
    p.add_argument("--model_flags", default="--N_samples 64 --N_importance 128",
                   help="train.py flags of the fresh networks (quoted)")
    p.add_argument("--worker", nargs=2, type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.img_wh = a.img_wh or ([32, 32, 64, 64, 128, 128] if a.device == "cpu" else [400, 400, 800, 800, 1920, 1080])
    if len(a.img_wh) % 2:
        p.error("--img_wh takes W H pairs")
    a.chunk = a.chunk or (4096 if a.device == "cpu" else 32768)
    return a


def frame_rays(W, H, device):
    """All rays of a ``W x H`` frame from (0, -4, 0.5) looking at the origin (60 degree horizontal FOV)."""
    focal = 0.5 * W / math.tan(math.radians(30))
    c2w = torch.as_tensor(look_at(np.array([0.0, -4.0, 0.5]), np.zeros(3), np.array([0.0, 0.0, 1.0])), dtype=torch.float32)
    o, d = get_rays(get_ray_directions(H, W, focal).view(-1, 3), c2w)
    ones = torch.ones_like(o[:, :1])
    return Rays(o, d, ones * 2.0, ones * 6.0).to(device)


def worker(a):
    W, H = a.worker
    device = torch.device(a.device)
    if a.ckpt_path:
        h = get_opts(["--root_dir", ".", "--dataset_name", "blender"])
        h.ckpt_path = a.ckpt_path
        fields, h, _ = load_model(h, device=device)
    else:
        h = get_opts(["--root_dir", ".", "--dataset_name", "blender", *a.model_flags.split()])
        fields = build_fields(h)
        for f in fields.values():
            f.to(device).eval()
    kw = dict(n_samples=h.N_samples, n_importance=h.N_importance, use_disp=h.use_disp, white_back=True, test_time=True)
    with torch.no_grad():
        render_chunked(fields, frame_rays(8, 8, device), chunk=a.chunk, to_cpu=True, **kw)  # warm-up
        if a.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        rays = frame_rays(W, H, device)
        t0 = time.perf_counter()
        out = render_chunked(fields, rays, chunk=a.chunk, to_cpu=True, **kw)
        if a.device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    assert out["rgb"].shape == (W * H, 3)
    peak = (torch.cuda.max_memory_allocated() / 2 ** 20 if a.device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps({"img_wh": [W, H], "rays": W * H, "chunk": a.chunk, "seconds": round(seconds, 3),
                      "rays_per_s": round(W * H / seconds, 1), "peak_mem_mb": round(peak, 1),
                      "model": "checkpoint" if a.ckpt_path else a.model_flags, "device": a.device}), flush=True)


def main():
    a = parse()
    if a.worker:
        return worker(a)
    for W, H in zip(a.img_wh[::2], a.img_wh[1::2]):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(W), str(H), "--device", a.device,
               "--chunk", str(a.chunk), "--model_flags", a.model_flags]
        if a.ckpt_path:
            cmd += ["--ckpt_path", a.ckpt_path]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()

"""Vanilla NeRF (the seed's configuration) and the fast path, trained side by side on one scene.

    python benchmarks/train_speed.py --root_dir ../shared/data/nerf_synthetic/lego --device cpu --quick
    python benchmarks/train_speed.py --root_dir DIR --device cuda            # full: 400x400, 10 min each

Each mode trains in its own process (clean peak-memory figures) for a wall-clock budget and is
evaluated on held-out views at fixed points of its training clock (evaluation time is not
counted; ``--quick`` scores a fixed random subset of 2048 pixels of 8 views, the full run whole views). Prints one JSON line per measurement, then a summary line
``{"mode": "summary", "device", "vanilla": {psnr, seconds, rays_per_s, peak_mem_mb, ...},
"fast": {...}, "speedup_to_equal_psnr"}`` where the speedup is the time vanilla needs for its
final PSNR divided by the time the fast path needs to reach that PSNR. Also writes the lines to
``--out_dir/train_speed_{device}_{quick|full}.jsonl`` and a PSNR-vs-time plot ``....png``.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from datasets.base import RayBatchSampler  # noqa: E402
from datasets.blender import BlenderDataset  # noqa: E402
from losses import MSELoss  # noqa: E402
from metrics import psnr  # noqa: E402
from models import build_fields, setup_fast_path  # noqa: E402
from models.rendering import render_chunked, render_rays  # noqa: E402
from opt import get_opts  # noqa: E402
from utils.optim import get_optimizer, get_scheduler  # noqa: E402
from utils.visualization import plot_psnr_curves  # noqa: E402

# the seed's lego recipe (README), and the fast preset; the CPU quick run shrinks the fast path's
# grids to the image size it trains on
VANILLA = ["--N_samples", "64", "--N_importance", "64", "--noise_std", "0", "--batch_size", "1024", "--lr", "5e-4"]
FAST_GPU = ["--fast", "--batch_size", "4096"]
FAST_CPU = ["--fast", "--batch_size", "1024", "--grid_resolution", "64", "--hash_levels", "8",
            "--hash_log2_size", "15", "--hash_max_res", "256", "--march_steps", "384"]


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root_dir", required=True, help="a Blender-format scene (e.g. lego)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="low resolution and short budgets (~10 min on 2 CPU cores)")
    p.add_argument("--img_wh", nargs=2, type=int, default=None, help="default: 64 64 quick, 400 400 full")
    p.add_argument("--budget_s", type=float, default=None, help="training seconds per mode (default 240 quick, 600 full)")
    p.add_argument("--fast_steps", type=int, default=None, help="fast path schedule length (default 2000 quick, 20000 full)")
    p.add_argument("--n_val", type=int, default=None, help="held-out views to evaluate (default 8)")
    p.add_argument("--eval_rays", type=int, default=None,
                   help="evaluate a fixed random subset of this many of their pixels (default 2048 quick, 0 = all full)")
    p.add_argument("--modes", nargs="+", default=["vanilla", "fast"], choices=("vanilla", "fast"))
    p.add_argument("--out_dir", default=os.path.join(ROOT, "benchmarks", "results"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", choices=("vanilla", "fast"), help=argparse.SUPPRESS)
    a = p.parse_args()
    a.img_wh = a.img_wh or ([64, 64] if a.quick else [400, 400])
    a.budget_s = a.budget_s or (240.0 if a.quick else 600.0)
    a.fast_steps = a.fast_steps or (2000 if a.quick else 20000)
    a.n_val = a.n_val or 8
    a.eval_rays = (2048 if a.quick else 0) if a.eval_rays is None else a.eval_rays
    return a


def eval_times(budget, quick):
    """Measurement points on the training clock: doubling from 4 s (8 s quick), plus 8 (4) even ones."""
    n_even, t = (4, 8.0) if quick else (8, 4.0)
    pts = {budget * k / n_even for k in range(1, n_even + 1)}
    while t < budget:
        pts.add(t)
        t *= 2
    return sorted(pts)


def held_out_rays(val, n_val, n_rays, seed=0):
    """Rays and colours of ``n_val`` evenly spread held-out views: all their pixels, or a fixed
    random subset of ``n_rays`` of them (``n_rays > 0``; the PSNR of a random pixel subset
    estimates the views' pooled PSNR at a fraction of the rendering cost)."""
    views = [val[i] for i in np.linspace(0, len(val) - 1, n_val).round().astype(int)]
    rays = [v["rays"] for v in views]
    rays = type(rays[0]).cat(rays)
    rgbs = torch.cat([v["rgbs"] for v in views])
    if 0 < n_rays < len(rgbs):
        pick = torch.randperm(len(rgbs), generator=torch.Generator().manual_seed(seed))[:n_rays]
        rays, rgbs = rays[pick], rgbs[pick]
    return rays, rgbs


def evaluate(fields, h, rays, rgbs, device):
    """PSNR of the held-out ``rays`` against ``rgbs`` (pooled over all their pixels) and inference rays/s."""
    t0 = time.perf_counter()
    out = render_chunked(fields, rays.to(device), chunk=h.chunk, to_cpu=True, n_samples=h.N_samples,
                         n_importance=h.N_importance, white_back=True, test_time=True)
    seconds = time.perf_counter() - t0
    return psnr(out["rgb"], rgbs).item(), len(rgbs) / seconds


def endless_batches(sampler):
    """Ray-index batches of ``sampler`` (a ``RayBatchSampler``), epoch after epoch, reshuffled."""
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from sampler
        epoch += 1


def training_fields(h, train, device):
    """The fields train.py would build for ``h`` (fast path set up as there), and the training
    set, on ``device``."""
    setup_fast_path(h, train)
    fields = build_fields(h, cameras=train)
    for f in fields.values():
        f.to(device)
    train.to(device)
    return fields


def worker(a):
    """Train one mode; print JSON lines."""
    torch.manual_seed(a.seed)
    device = torch.device(a.device)
    mode = a.worker
    flags = VANILLA if mode == "vanilla" else (FAST_CPU if a.device == "cpu" else FAST_GPU)
    h = get_opts(["--root_dir", a.root_dir, "--img_wh", *map(str, a.img_wh), *flags, "--max_steps", str(a.fast_steps)])
    train = BlenderDataset(a.root_dir, "train", tuple(a.img_wh))
    val = BlenderDataset(a.root_dir, "val", tuple(a.img_wh))
    eval_rays, eval_rgbs = held_out_rays(val, a.n_val, a.eval_rays)
    fields = training_fields(h, train, device)
    opt = get_optimizer(h, list(fields.values()))
    sched = get_scheduler(h, opt) if h.fast else None  # vanilla: the seed's first epochs run at a constant lr
    loss_fn = MSELoss()
    sampler = RayBatchSampler(train.n_rays, h.batch_size, seed=a.seed)
    kw = dict(n_samples=h.N_samples, n_importance=h.N_importance, perturb=1.0, noise_std=0.0, white_back=True)
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=h.fast and a.device == "cuda")
    if a.device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    points, clock, step = eval_times(a.budget_s, a.quick), 0.0, 0
    batches = endless_batches(sampler)
    while clock < a.budget_s and step < (a.fast_steps if h.fast else 10 ** 9):
        t0 = time.perf_counter()
        batch = train[next(batches).to(device)]
        if h.fast:
            fields["occupancy"].update(step, fields["coarse"].query_density)
        with amp:
            out = render_rays(fields, batch["rays"], **kw)
        loss = loss_fn(out, batch["rgbs"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if a.device == "cuda":
            torch.cuda.synchronize()
        clock += time.perf_counter() - t0
        step += 1
        if points and clock >= points[0] or clock >= a.budget_s:
            while points and clock >= points[0]:
                points.pop(0)
            for f in fields.values():
                f.eval()
            val_psnr, render_rps = evaluate(fields, h, eval_rays, eval_rgbs, device)
            for f in fields.values():
                f.train()
            peak = (torch.cuda.max_memory_allocated() / 2 ** 20 if a.device == "cuda"
                    else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            print(json.dumps({"mode": mode, "step": step, "seconds": round(clock, 2), "psnr": round(val_psnr, 3),
                              "rays_per_s": round(step * h.batch_size / clock, 1),
                              "render_rays_per_s": round(render_rps, 1), "peak_mem_mb": round(peak, 1)}), flush=True)


def time_to_reach(curve, target):
    """First training time at which ``curve`` [(seconds, psnr)] reaches ``target`` (linear interpolation)."""
    prev = (0.0, -np.inf)
    for t, p in curve:
        if p >= target:
            if not np.isfinite(prev[1]) or p == prev[1]:
                return t
            return prev[0] + (target - prev[1]) / (p - prev[1]) * (t - prev[0])
        prev = (t, p)
    return None


def summarize(a, lines):
    summary = {"mode": "summary", "device": torch.cuda.get_device_name() if a.device == "cuda" else f"cpu x{os.cpu_count()}",
               "img_wh": a.img_wh, "budget_s": a.budget_s}
    curves = {}
    for mode in a.modes:
        rows = [r for r in lines if r["mode"] == mode]
        if not rows:
            continue
        last = rows[-1]
        curves[mode] = [(r["seconds"], r["psnr"]) for r in rows]
        summary[mode] = {k: last[k] for k in ("psnr", "seconds", "step", "rays_per_s", "render_rays_per_s", "peak_mem_mb")}
    if "vanilla" in curves and "fast" in curves:
        target = summary["vanilla"]["psnr"]
        t_fast = time_to_reach(curves["fast"], target)
        t_van = time_to_reach(curves["vanilla"], target)
        summary["speedup_to_equal_psnr"] = round(t_van / t_fast, 2) if t_fast else None
    return summary, curves


def main():
    a = parse()
    if a.worker:
        return worker(a)
    os.makedirs(a.out_dir, exist_ok=True)
    lines = []
    for mode in a.modes:  # one process per mode: peak memory is per mode, and modes never share the CPU
        cmd = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--worker", mode]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        for line in proc.stdout:
            print(line, end="", flush=True)
            if line.startswith("{"):
                lines.append(json.loads(line))
        if proc.wait() != 0:
            sys.exit(f"error: the {mode} run failed (exit {proc.returncode})")
    summary, curves = summarize(a, lines)
    print(json.dumps(summary), flush=True)
    tag = "quick" if a.quick else "full"
    with open(os.path.join(a.out_dir, f"train_speed_{a.device}_{tag}.jsonl"), "w") as f:
        for r in lines + [summary]:
            f.write(json.dumps(r) + "\n")
    plot_psnr_curves(curves, os.path.join(a.out_dir, f"train_speed_{a.device}_{tag}.png"),
         f"{os.path.basename(os.path.normpath(a.root_dir))} {a.img_wh[0]}x{a.img_wh[1]}, {summary['device']}")


if __name__ == "__main__":
    main()

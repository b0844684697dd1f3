"""Held-out quality against CPU time on a real capture, for several training setups side by side.

    python benchmarks/capture_quality.py --minutes 10 \\
        --scene "--dataset_name llff --root_dir ../shared/data/nerf_llff_data/beer --img_wh 72 128" \\
        --variants "bounded:--spheric_poses TINY" "unbounded:--unbounded TINY" "fast:--unbounded --fast"

Each variant trains in its own process, one after the other (each has the cores to itself), as
``train.py`` would with ``--max_time MINUTES`` and the variant's flags (``TINY`` expands to the tiny
vanilla model of SPEC.md: 4x64, 32+32 samples, Adam 2e-3): the same fields, renderer, learning-rate
schedule and occupancy-grid upkeep. Every ``--eval_every`` seconds of training it renders **all**
held-out views (the ``test`` split) and records their PSNR and SSIM, one value per view, so the
worst view is known too; evaluation time is not counted. It also records seconds per step and, for
the fast path, samples per ray.

Writes into ``--out_dir``: ``{tag}.jsonl`` (a line per measurement, appended as made, so a run
stopped early keeps what it measured), ``{tag}.png`` (PSNR against minutes) and ``{tag}_frames.png``
(for the first, middle and last held-out views: ground truth, then each variant's final frame and
depth coloured by inverse depth).
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.train_speed import endless_batches, training_fields  # noqa: E402
from datasets import make_dataset  # noqa: E402
from datasets.base import RayBatchSampler  # noqa: E402
from losses import build_loss  # noqa: E402
from metrics import psnr, ssim  # noqa: E402
from models.rendering import render_chunked, render_rays, train_render_kwargs  # noqa: E402
from opt import get_opts  # noqa: E402
from utils.optim import get_optimizer, get_scheduler  # noqa: E402
from utils.visualization import depth_to_rgb, image_strip, plot_psnr_curves, to_uint8  # noqa: E402

TINY = "--net_depth 4 --net_width 64 --N_samples 32 --N_importance 32 --lr 2e-3"


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scene", required=True, help="train.py flags naming the scene (quoted)")
    p.add_argument("--variants", nargs="+", required=True, help="NAME:FLAGS, train.py flags (TINY: the tiny vanilla model)")
    p.add_argument("--minutes", type=float, default=10.0, help="training minutes per variant")
    p.add_argument("--threads", type=int, default=2, help="torch threads per variant")
    p.add_argument("--eval_every", type=float, default=60.0, help="seconds of training between measurements")
    p.add_argument("--tag", default="capture_quality", help="name of the output files")
    p.add_argument("--out_dir", default=os.path.join(ROOT, "benchmarks", "results"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args()


def variant_flags(flags):
    return flags.replace("TINY", TINY).split()


def evaluate(fields, h, views, white_back, device=torch.device("cpu"), amp=contextlib.nullcontext()):
    """PSNR and SSIM of each held-out view, and the renders ``(H, W, 3)`` / depths ``(H, W)`` (on the CPU)."""
    kw = train_render_kwargs(h, white_back, train=False)
    W, H = views[0]["img_wh"]
    scores, frames = [], []
    with torch.no_grad(), amp:
        for v in views:
            out = render_chunked(fields, v["rays"].to(device), chunk=h.chunk, to_cpu=True, **kw)
            pred, gt = out["rgb"].view(H, W, 3).float(), v["rgbs"].view(H, W, 3)
            scores.append((psnr(pred, gt).item(), ssim(pred, gt).item()))
            frames.append((pred, out["depth"].view(H, W).float()))  # float: bf16 under autocast has no numpy
    return scores, frames


def train_variant(a, name, flags, on_measure=None):
    """Train one variant for ``a.minutes``; append one JSON line per measurement; save final frames.

    ``a.device`` (optional, default cpu): where it trains (cuda: train.py's GPU preset, bf16 autocast
    for ``--fast``). ``on_measure(line, frames, test)``, when given, is called at each measurement
    with the JSON line's dict, the frames of ``evaluate`` and the ``test`` dataset.
    """
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    device = torch.device(getattr(a, "device", "cpu"))
    gpus = "1" if device.type == "cuda" else "0"
    h = get_opts([*a.scene.split(), "--num_gpus", gpus, "--max_time", str(a.minutes), *variant_flags(flags)])
    train, test = make_dataset(h, "train"), make_dataset(h, "test")
    views = [dict(test[i], img_wh=test.img_wh) for i in range(len(test))]
    fields = training_fields(h, train, device)
    on_gpu_bf16 = device.type == "cuda" and str(h.precision).startswith("bf16")
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if on_gpu_bf16 else contextlib.nullcontext()
    budget = a.minutes * 60
    clock, step, samples = 0.0, 0, []
    opt = get_optimizer(h, list(fields.values()))
    sched = get_scheduler(h, opt, time_fraction=lambda: clock / budget)
    sampler = RayBatchSampler(train.n_rays, h.batch_size, seed=0)
    steps_per_epoch = len(sampler)
    batches, next_eval, loss_fn = endless_batches(sampler), 0.0, build_loss(h)
    kw = train_render_kwargs(h, train.white_back, train=True)
    grid = fields.get("occupancy")
    while True:
        if clock >= next_eval or clock >= budget or step >= h.max_steps > 0:
            scores, frames = evaluate(fields, h, views, train.white_back, device, amp)
            p = [s[0] for s in scores]
            line = json.dumps({"variant": name, "flags": flags, "t": round(clock, 1), "step": step,
                               "psnr": round(float(np.mean(p)), 3), "psnr_min": round(min(p), 3),
                               "ssim": round(float(np.mean([s[1] for s in scores])), 4),
                               "psnr_views": [round(x, 2) for x in p],
                               "s_per_step": round(clock / max(step, 1), 4),
                               "samples_per_ray": round(float(np.mean(samples[-200:])), 1) if samples else None,
                               "occupancy": round(grid.occupancy_rate(), 4) if grid is not None else None})
            print(line, flush=True)
            with open(os.path.join(a.out_dir, f"{a.tag}.jsonl"), "a") as f:
                f.write(line + "\n")
            if on_measure is not None:
                on_measure(json.loads(line), frames, test)
            next_eval += a.eval_every
            if clock >= budget or step >= h.max_steps > 0:
                torch.save({"frames": [(to_uint8(rgb), d.numpy()) for rgb, d in frames],
                            "gt": [to_uint8(v["rgbs"].view(*frames[0][1].shape, 3)) for v in views]},
                           os.path.join(a.out_dir, f"{a.tag}_{name}.pt"))
                return
        t0 = time.perf_counter()
        batch = train[next(batches).to(device)]
        if grid is not None:
            grid.update(step, fields["coarse"].query_density)
        with amp:
            results = render_rays(fields, batch["rays"], **kw)
        loss = loss_fn(results, batch["rgbs"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if h.fast or step % steps_per_epoch == 0:  # the fast path decays per step, vanilla per epoch
            sched.step()
        if "n_samples" in results:
            samples.append(results["n_samples"].item() / len(batch["rgbs"]))
        if device.type == "cuda":
            torch.cuda.synchronize()  # count the step's GPU work, not only its launch
        clock += time.perf_counter() - t0


def inverse_depth_rgb(depth):
    """Depth ``(H, W)`` coloured by inverse depth (near warm, far cool; the background stays visible)."""
    inv = 1 / np.maximum(depth, 1e-6)
    return depth_to_rgb(inv, float(np.percentile(inv, 1)), float(np.percentile(inv, 99)))


def frames_figure(a, names):
    """One PNG: per row a held-out view (first, middle, last): ground truth | each variant's frame | its depth."""
    import imageio.v2 as imageio

    runs = {n: torch.load(os.path.join(a.out_dir, f"{a.tag}_{n}.pt"), weights_only=False) for n in names
            if os.path.isfile(os.path.join(a.out_dir, f"{a.tag}_{n}.pt"))}
    if not runs:
        return
    gt = next(iter(runs.values()))["gt"]
    rows = []
    for i in sorted({0, len(gt) // 2, len(gt) - 1}):
        row = [gt[i]] + [runs[n]["frames"][i][0] for n in runs] + [inverse_depth_rgb(runs[n]["frames"][i][1]) for n in runs]
        rows.append(image_strip(*row))
    imageio.imwrite(os.path.join(a.out_dir, f"{a.tag}_frames.png"), np.concatenate(rows, 0))
    print("frames: ground truth | " + " | ".join(runs) + " | their inverse depths (same order)")


def main():
    a = parse()
    specs = dict(v.split(":", 1) if ":" in v else (v, "") for v in a.variants)
    os.makedirs(a.out_dir, exist_ok=True)
    if a.worker is not None:
        train_variant(a, a.worker, specs[a.worker])
        return
    jsonl = os.path.join(a.out_dir, f"{a.tag}.jsonl")
    open(jsonl, "w").close()
    for name in specs:  # one at a time: each variant has the cores to itself
        subprocess.run([sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--worker", name], check=True)
    with open(jsonl) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    curves = {}
    for r in rows:
        curves.setdefault(r["variant"], []).append((r["t"] / 60, r["psnr"]))
    plot_psnr_curves(curves, os.path.join(a.out_dir, f"{a.tag}.png"), xlabel="training minutes (2 CPU cores)")
    frames_figure(a, list(specs))
    finals = {r["variant"]: r for r in rows}
    print(json.dumps({"summary": {k: {x: v[x] for x in ("psnr", "psnr_min", "ssim", "step", "s_per_step", "samples_per_ray")}
                                  for k, v in finals.items()}}))


if __name__ == "__main__":
    main()

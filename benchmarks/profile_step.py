"""Where a training step spends its time: data, sampling, encoding, MLP, compositing, backward, optimizer.

    python benchmarks/profile_step.py --root_dir ../shared/data/nerf_synthetic/lego --device cpu [--fast]
    python benchmarks/profile_step.py --device cpu --fast \
        --scene "--dataset_name llff --root_dir ../shared/data/nerf_llff_data/beer --img_wh 72 128 --unbounded"

Runs a few warm-up steps, then profiles ``--steps`` steps with ``torch.profiler``. The renderer's
functions carry named scopes (``nerf/sampling``, ``nerf/field``, ``nerf/encoding``,
``nerf/composite``); times are exclusive (a scope's time minus the scopes nested in it, so
``mlp`` is the field's time outside its encodings). Prints one JSON line with seconds per step and
the share of each part. ``--root_dir`` profiles a Blender scene with ``train_speed.py``'s fixed
settings; ``--scene`` any capture with train.py's flags and presets (``--fast``: the preset of the
device), after ``--warmup`` steps of training (a fresh grid samples more than a trained one).
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile, record_function  # noqa: E402

from benchmarks.train_speed import FAST_CPU, FAST_GPU, VANILLA, endless_batches, training_fields  # noqa: E402
from datasets import make_dataset  # noqa: E402
from datasets.base import RayBatchSampler  # noqa: E402
from datasets.blender import BlenderDataset  # noqa: E402
from losses import build_loss  # noqa: E402
from models.rendering import render_rays, train_render_kwargs  # noqa: E402
from opt import get_opts  # noqa: E402
from utils.optim import get_optimizer  # noqa: E402

PARTS = {"step/data": "data", "nerf/sampling": "sampling", "nerf/encoding": "encoding", "nerf/field": "mlp",
         "nerf/composite": "compositing", "step/loss": "loss", "step/backward": "backward",
         "step/optimizer": "optimizer", "step/occupancy": "occupancy"}


def exclusive_times(events, use_device):
    """Sum over named scopes of their time minus that of the named scopes directly inside them."""
    out = {v: 0.0 for v in PARTS.values()}

    def t(e):
        return (e.device_time_total if use_device else e.cpu_time_total) / 1e6

    def named_children(e):
        kids = []
        for c in e.cpu_children:
            kids.extend([c] if c.name in PARTS else named_children(c))
        return kids

    for e in events:
        if e.name in PARTS:
            out[PARTS[e.name]] += t(e) - sum(t(c) for c in named_children(e))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    scene = p.add_mutually_exclusive_group(required=True)
    scene.add_argument("--root_dir", help="a Blender scene, profiled with train_speed.py's fixed settings")
    scene.add_argument("--scene", help="train.py flags naming any scene (quoted); train.py's presets apply")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--fast", action="store_true", help="profile the fast path instead of the seed's NeRF")
    p.add_argument("--img_wh", nargs=2, type=int, default=[100, 100])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--top", type=int, default=0, help="also print the N ops with the most self time (one JSON line)")
    p.add_argument("--legacy_encoding", action="store_true",
                   help="profile the hash encoding as it was before the fused version (cpu_quality.py's baseline)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.legacy_encoding:
        from benchmarks.cpu_quality import legacy_forward
        from models.hash_encoding import HashEncoding

        HashEncoding.forward = legacy_forward
    torch.manual_seed(0)  # the same initial fields and rays for every variant
    device = torch.device(a.device)
    if a.scene:
        gpus = "0" if a.device == "cpu" else "1"
        h = get_opts([*a.scene.split(), "--num_gpus", gpus, *(["--fast"] if a.fast else VANILLA)])
        train = make_dataset(h, "train")
        kw = train_render_kwargs(h, train.white_back, train=True)
    else:
        flags = (FAST_CPU if a.device == "cpu" else FAST_GPU) if a.fast else VANILLA
        h = get_opts(["--root_dir", a.root_dir, "--img_wh", *map(str, a.img_wh), *flags])
        train = BlenderDataset(a.root_dir, "train", tuple(a.img_wh))
        kw = dict(n_samples=h.N_samples, n_importance=h.N_importance, perturb=1.0, white_back=True)
    fields = training_fields(h, train, device)
    opt = get_optimizer(h, list(fields.values()))
    loss_fn = build_loss(h)  # train.py's loss, the preset's distortion term too
    batches = endless_batches(RayBatchSampler(train.n_rays, h.batch_size, seed=0))
    samples = []

    def step(i):
        with record_function("step/data"):
            batch = train[next(batches).to(device)]
        if h.fast:
            with record_function("step/occupancy"):
                fields["occupancy"].update(i, fields["coarse"].query_density)
        results = render_rays(fields, batch["rays"], **kw)
        if "n_samples" in results:  # a GPU sync, as the training loops log it
            samples.append(results["n_samples"].item() / len(batch["rgbs"]))
        with record_function("step/loss"):
            loss = loss_fn(results, batch["rgbs"])
        with record_function("step/backward"):
            opt.zero_grad(set_to_none=True)
            loss.backward()
        with record_function("step/optimizer"):
            opt.step()
        if a.device == "cuda":
            torch.cuda.synchronize()

    for i in range(a.warmup):
        step(i)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if a.device == "cuda" else [])
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        for i in range(a.warmup, a.warmup + a.steps):
            step(i)
    wall = (time.perf_counter() - t0) / a.steps
    parts = {k: v / a.steps for k, v in exclusive_times(prof.events(), a.device == "cuda").items()}
    parts["other"] = max(0.0, wall - sum(parts.values()))
    spr = sum(samples[a.warmup:]) / a.steps if samples else None
    print(json.dumps({"mode": ("fast_legacy_encoding" if a.legacy_encoding else "fast") if h.fast else "vanilla", "device": a.device, "img_wh": list(h.img_wh),
                      "batch_size": h.batch_size, "distortion_loss": h.distortion_loss,
                      "s_per_step_profiled": round(wall, 4),
                      "samples_per_ray": round(spr, 1) if spr else None,
                      # field points (forward and backward) per second of the whole step
                      "samples_per_s": round(spr * h.batch_size / wall) if spr else None,
                      "share": {k: round(v / wall, 3) for k, v in parts.items()},
                      "seconds": {k: round(v, 4) for k, v in parts.items()}}))
    if a.top:
        ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:a.top]
        print(json.dumps({"top_ops_ms_per_step": {e.key: round(e.self_cpu_time_total / 1e3 / a.steps, 2) for e in ops}}))


if __name__ == "__main__":
    main()

"""Quality per CPU minute: the fast path's held-out PSNR against training time, on a few CPU cores.

    python benchmarks/cpu_quality.py --root_dir ../shared/data/nerf_synthetic/lego --minutes 15

Each variant trains in its own process with ``--threads`` threads (pinned to its own cores with
``--pin`` when several run at once on a big machine), exactly as ``train.py --fast --num_gpus 0``
would: the CPU preset of opt.py, ``--max_time``'s time-based learning-rate decay, the same fields,
renderer and occupancy-grid upkeep. Every ``--eval_every`` seconds of training the PSNR of
``--n_val`` evenly spread held-out views (all their pixels) is measured; evaluation time is not
counted. Variants (``--variants``):

- ``today``: the code before the fused hash encoding (``LegacyHashEncoding`` below, kept here as the
  measuring stick) with the schedule of the 2000-step CPU benchmark run;
- ``default``: ``--fast`` with the defaults, ``--max_time MINUTES``;
- any other name ``NAME:FLAGS`` adds train.py flags, e.g. ``b2048:--batch_size 2048``.

Writes ``cpu_quality.jsonl`` (one line per measurement, appended as it is made) and
``cpu_quality.png`` into ``--out_dir``.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
from torch.profiler import record_function  # noqa: E402

from datasets.base import RayBatchSampler  # noqa: E402
from datasets.blender import BlenderDataset  # noqa: E402
from losses import MSELoss  # noqa: E402
from metrics import psnr  # noqa: E402
from models.hash_encoding import HashEncoding  # noqa: E402
from models.rendering import render_chunked, render_rays  # noqa: E402
from benchmarks.train_speed import endless_batches, training_fields  # noqa: E402
from opt import get_opts  # noqa: E402
from utils.optim import get_optimizer, get_scheduler  # noqa: E402
from utils.visualization import plot_psnr_curves  # noqa: E402

VARIANTS = {"today": "--max_steps 2000", "default": ""}


@record_function("nerf/encoding")
def legacy_forward(self, x):
    """The hash encoding as it was before the fused version (one gather of ``(N, L, 8, F)`` corner
    features, then the weighted sum), for the ``today`` baseline. Same values and gradients."""
    N, L = x.shape[0], self.n_levels
    pos = self.normalize(x)[:, None, :] * self.res[None, :, None]  # (N, L, 3)
    cell = pos.floor().clamp(max=self.res[None, :, None] - 1)
    frac = pos - cell
    cell = cell.to(torch.int32)
    v = torch.stack([cell, cell + 1], -1)
    k, parts = self.n_dense, []
    if k:
        stride = self.stride[None, :k, None]
        vx, vy, vz = v[:, :k, 0], v[:, :k, 1] * stride, v[:, :k, 2] * (stride * stride)
        parts.append(vx[..., :, None, None] + vy[..., None, :, None] + vz[..., None, None, :])
    if k < L:
        hx, hy, hz = (v[:, k:, a] * self.primes[a] for a in range(3))
        parts.append((hx[..., :, None, None] ^ hy[..., None, :, None] ^ hz[..., None, None, :]) & (self.table_size - 1))
    idx = (parts[0] if len(parts) == 1 else torch.cat(parts, 1)).view(N, L, 8) + self.offsets[None, :, None]
    feats = _LegacyGather.apply(self.table, idx)  # (N, L, 8, F)
    w = torch.stack([1 - frac, frac], -1)
    w = w[:, :, 0, :, None, None] * w[:, :, 1, None, :, None] * w[:, :, 2, None, None, :]
    return (feats * w.reshape(N, L, 8, 1)).sum(2).reshape(N, self.out_channels)


class _LegacyGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table, idx):
        ctx.save_for_backward(idx)
        ctx.n_rows = table.shape[0]
        return table.index_select(0, idx.reshape(-1)).view(*idx.shape, table.shape[1])

    @staticmethod
    def backward(ctx, grad):
        (idx,) = ctx.saved_tensors
        out = grad.new_zeros(ctx.n_rows, grad.shape[-1])
        out.index_add_(0, idx.reshape(-1).long(), grad.reshape(-1, grad.shape[-1]))
        return out, None


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root_dir", required=True, help="a Blender-format scene (e.g. lego)")
    p.add_argument("--img_wh", nargs=2, type=int, default=[100, 100])
    p.add_argument("--minutes", type=float, default=15.0, help="training minutes per variant")
    p.add_argument("--variants", nargs="+", default=["today", "default"],
                   help="'today', 'default', or NAME:FLAGS (train.py flags, quoted)")
    p.add_argument("--threads", type=int, default=2, help="threads per variant")
    p.add_argument("--parallel", action="store_true",
                   help="run the variants at once, each pinned to its own --threads cores (needs that many idle cores)")
    p.add_argument("--first_core", type=int, default=0, help="with --parallel: the first core to pin to")
    p.add_argument("--eval_every", type=float, default=60.0, help="seconds of training between measurements")
    p.add_argument("--n_val", type=int, default=10, help="held-out views (evenly spread over the val split)")
    p.add_argument("--out_dir", default=os.path.join(ROOT, "benchmarks", "results"))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args()


def train_variant(a, name, flags):
    """Train one variant for ``a.minutes``; print one JSON line per measurement."""
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if name == "today":
        HashEncoding.forward = legacy_forward
    else:
        flags = f"--max_time {a.minutes} {flags}"
    h = get_opts(["--root_dir", a.root_dir, "--img_wh", *map(str, a.img_wh), "--fast", "--num_gpus", "0",
                  *flags.split()])
    train = BlenderDataset(a.root_dir, "train", tuple(a.img_wh))
    val = BlenderDataset(a.root_dir, "val", tuple(a.img_wh))
    views = [val[round(i * (len(val) - 1) / max(a.n_val - 1, 1))] for i in range(a.n_val)]
    fields = training_fields(h, train, torch.device("cpu"))
    budget = a.minutes * 60
    clock, step = 0.0, 0
    opt = get_optimizer(h, list(fields.values()))
    sched = get_scheduler(h, opt, time_fraction=(lambda: clock / budget) if h.max_time else None)
    sampler = RayBatchSampler(train.n_rays, h.batch_size, seed=0)
    batches, next_eval = endless_batches(sampler), 0.0
    while True:
        if clock >= next_eval or clock >= budget or step >= h.max_steps:
            with torch.no_grad():
                scores = []
                for v in views:
                    out = render_chunked(fields, v["rays"], chunk=h.chunk, white_back=True)
                    scores.append(psnr(out["rgb"], v["rgbs"]).item())
            line = json.dumps({"variant": name, "flags": flags, "t": round(clock, 1), "step": step,
                               "psnr": round(sum(scores) / len(scores), 3),
                               "occupancy": round(fields["occupancy"].occupancy_rate(), 4)})
            print(line, flush=True)
            # appended at once (one short line: atomic beside the other variants), so a run that is
            # stopped early keeps every measurement made so far
            with open(os.path.join(a.out_dir, "cpu_quality.jsonl"), "a") as f:
                f.write(line + "\n")
            next_eval += a.eval_every
            if clock >= budget or step >= h.max_steps:
                return
        t0 = time.perf_counter()
        batch = train[next(batches)]
        fields["occupancy"].update(step, fields["coarse"].query_density)
        loss = MSELoss()(render_rays(fields, batch["rays"], perturb=1.0, white_back=True), batch["rgbs"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        clock += time.perf_counter() - t0


def main():
    a = parse()
    specs = [v.split(":", 1) if ":" in v else [v, VARIANTS[v]] for v in a.variants]
    if a.worker is not None:
        train_variant(a, a.worker, dict(specs)[a.worker])
        return
    os.makedirs(a.out_dir, exist_ok=True)
    jsonl = os.path.join(a.out_dir, "cpu_quality.jsonl")
    open(jsonl, "w").close()  # the workers append their measurements as they make them
    base = [sys.executable, os.path.abspath(__file__), *sys.argv[1:]]
    procs = []
    for i, (name, _) in enumerate(specs):
        cmd = base + ["--worker", name]
        if a.parallel and shutil.which("taskset"):
            cores = ",".join(str(c) for c in range(a.first_core + i * a.threads, a.first_core + (i + 1) * a.threads))
            cmd = ["taskset", "-c", cores] + cmd
        procs.append(subprocess.Popen(cmd))
        if not a.parallel:  # one at a time: each variant has the cores to itself
            procs[-1].wait()
    for proc in procs:
        proc.wait()
    with open(jsonl) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if rows:
        curves = {}
        for r in rows:
            curves.setdefault(r["variant"], []).append((r["t"] / 60, r["psnr"]))
        plot_psnr_curves(curves, os.path.join(a.out_dir, "cpu_quality.png"), xlabel="training minutes")
    finals = {r["variant"]: r for r in rows}
    print(json.dumps({"summary": {k: {"psnr": v["psnr"], "t": v["t"], "step": v["step"]} for k, v in finals.items()}}))


if __name__ == "__main__":
    main()

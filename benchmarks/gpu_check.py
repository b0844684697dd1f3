"""One-command GPU check: the fast path's quality over time, our vanilla step vs the seed's, render speed.

    python benchmarks/gpu_check.py --root_dir .gpu_data/lego --seed_dir .gpu_data/nerf_pl --out OUT
    python benchmarks/gpu_check.py --dry_run --out /tmp/gc      # tiny sizes on the CPU, under a minute

Three sections, each guarded (a failure is recorded in the JSON and the next section still runs),
each within its share of ``--budget_s`` of wall time; ``OUT/gpu_check.json`` is rewritten after
every measurement, so whatever ran is kept even if the process is killed:

1. ``fast``: ``train.py --fast`` (its ``NeRFSystem`` under a Lightning ``Trainer``, the flags'
   GPU defaults: bf16 autocast, TF32) on the scene at ``--img_wh`` for ``--fast_minutes`` of
   training time; every ``--eval_every_s`` the mean PSNR of ``--n_val`` evenly spread held-out
   views (evaluation time not counted). Also s/step, samples per ray, peak memory.
   ``OUT/gpu_check_fast_psnr.png`` plots PSNR against training time.
2. ``vs_seed``: ``--seed_steps`` steps of the seed's lego recipe (8x256, 64+64 samples, 1024 rays,
   Adam 5e-4) with our vanilla path and with the seed's own code (``benchmarks/vs_seed.py``,
   alternating, TF32 on both sides on a GPU): s/step, peak memory, ratio.
3. ``render``: inference rays/s on a ``--render_wh`` frame for the trained fast model, our vanilla
   networks (64+64 samples) and the seed's code, each capped in time (a prefix of the frame's
   rays when the whole frame would not fit; ``full_frame`` says which).

Needs only torch, pytorch-lightning, numpy, opencv, tqdm, matplotlib (no kornia, mcubes, open3d).
"""
import argparse
import contextlib
import json
import math
import os
import resource
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from utils.visualization import plot_psnr_curves  # noqa: E402

T0 = time.perf_counter()
VS_SEED_RESERVE_S = 60  # section 2's share of the wall-time budget (worker start-up included)
# the dry run's fast-path grids (the GPU run uses the --fast defaults)
TINY_FAST = ["--batch_size", "256", "--grid_resolution", "16", "--hash_levels", "4", "--hash_log2_size", "12",
             "--hash_max_res", "64", "--march_steps", "64"]


def log(msg):
    print(f"[gpu_check {time.perf_counter() - T0:6.1f}s] {msg}", flush=True)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root_dir", default=None, help="a Blender scene (lego); not needed with --dry_run")
    p.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check_fast_psnr.png")
    p.add_argument("--seed_dir", default=None,
                   help="the seed's code (default: .gpu_data/nerf_pl if present, else ../shared/peers/nerf_pl)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--budget_s", type=float, default=395.0, help="wall-time budget of the whole check")
    p.add_argument("--img_wh", nargs=2, type=int, default=[400, 400])
    p.add_argument("--fast_minutes", type=float, default=4.0, help="training time of the fast path")
    p.add_argument("--fast_steps", type=int, default=10000, help="the fast path's schedule length (--max_steps)")
    p.add_argument("--fast_flags", default="", help="extra train.py flags for the fast run (quoted)")
    p.add_argument("--eval_every_s", type=float, default=30.0, help="training seconds between held-out PSNRs")
    p.add_argument("--n_val", type=int, default=4, help="held-out views per PSNR")
    p.add_argument("--seed_config", default="8x256:64+64", help="vs_seed config DxW:N_samples+N_importance")
    p.add_argument("--seed_batch", type=int, default=1024)
    p.add_argument("--seed_steps", type=int, default=100, help="timed steps per side (in 4 alternating rounds; fewer when under 4 steps)")
    p.add_argument("--render_wh", nargs=2, type=int, default=[800, 800])
    p.add_argument("--render_s", type=float, default=15.0, help="at most this many seconds of rendering per model")
    p.add_argument("--dry_run", action="store_true", help="tiny sizes on a demo scene (a test of the script)")
    a = p.parse_args(argv)
    if a.dry_run:
        a.img_wh, a.fast_minutes, a.eval_every_s, a.n_val = [16, 16], 0.06, 1.5, 2
        a.fast_flags = " ".join(TINY_FAST) + " " + a.fast_flags
        a.seed_config, a.seed_batch, a.seed_steps, a.render_wh, a.render_s = "2x32:8+8", 128, 2, [32, 32], 5.0
    elif not a.root_dir:
        p.error("--root_dir is required (or --dry_run)")
    if a.seed_dir is None:
        local = os.path.join(ROOT, ".gpu_data", "nerf_pl")
        a.seed_dir = local if os.path.isdir(local) else os.path.join(os.path.dirname(ROOT), "shared", "peers", "nerf_pl")
    return a


class Report:
    """The JSON report, rewritten (atomically) at every change."""

    def __init__(self, path, data):
        self.path, self.data = path, data

    def save(self):
        self.data["wall_s"] = round(time.perf_counter() - T0, 1)
        with open(self.path + ".tmp", "w") as f:
            json.dump(self.data, f, indent=1)
        os.replace(self.path + ".tmp", self.path)

    @contextlib.contextmanager
    def section(self, name):
        """Record ``name``'s status; an exception is logged and stored, never raised."""
        entry = self.data.setdefault(name, {})
        entry["status"], t = "running", time.perf_counter()
        self.save()
        try:
            yield entry
            entry["status"] = "ok"
        except BaseException as err:  # SystemExit from a parser too; only Ctrl-C goes on up
            if isinstance(err, KeyboardInterrupt):
                raise
            entry["status"], entry["error"] = "error", traceback.format_exc()[-3000:]
            log(f"{name} FAILED: {err!r}")
        finally:
            entry["section_wall_s"] = round(time.perf_counter() - t, 1)
            self.save()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_mb(device):
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # the process's peak RSS


def amp_for(h, device):
    """The autocast train.py's precision flag gives (bf16 on GPUs for --fast)."""
    on = device.type == "cuda" and str(h.precision).startswith("bf16")
    return torch.autocast("cuda", dtype=torch.bfloat16) if on else contextlib.nullcontext()


def held_out_psnr(system, views, device, amp):
    """Mean per-view PSNR (dB) of ``views`` [(rays, rgbs)] rendered as train.py validates."""
    from models.rendering import render_chunked

    system.eval()
    psnrs = []
    with torch.no_grad(), amp:
        for rays, rgbs in views:
            out = render_chunked(system.fields, rays, chunk=system.hparams.chunk, **system.render_kwargs(train=False))
            psnrs.append(-10 * math.log10(((out["rgb"].float() - rgbs) ** 2).mean().item()))
    system.train()
    sync(device)
    return sum(psnrs) / len(psnrs)


def make_eval_callback(entry, report, views, device, amp, train_s, wall_deadline, every_s):
    """A Lightning callback: held-out PSNR every ``every_s`` training seconds; stops at ``train_s``."""
    import pytorch_lightning as pl

    class TimedEval(pl.Callback):
        def on_train_start(self, trainer, system):
            sync(device)
            self.t0, self.eval_s, self.next = time.perf_counter(), 0.0, every_s

        def clock(self):
            return time.perf_counter() - self.t0 - self.eval_s

        def measure(self, trainer, system):
            sync(device)
            train_clock, t = self.clock(), time.perf_counter()
            value = held_out_psnr(system, views, device, amp)
            self.eval_s += time.perf_counter() - t
            spr = trainer.callback_metrics.get("train/samples_per_ray")
            entry["points"].append({"seconds": round(train_clock, 2), "step": trainer.global_step,
                                    "psnr": round(value, 3), "samples_per_ray": None if spr is None else round(float(spr), 1)})
            entry.update(steps=trainer.global_step, train_s=round(train_clock, 2), psnr=round(value, 3),
                         s_per_step=round(train_clock / max(trainer.global_step, 1), 5), peak_mem_mb=peak_mb(device))
            report.save()
            log(f"fast: step {trainer.global_step}, {train_clock:.1f} s, held-out PSNR {value:.2f} dB, "
                f"samples/ray {entry['points'][-1]['samples_per_ray']}")

        def on_train_batch_end(self, trainer, system, outputs, batch, batch_idx):
            clock = self.clock()
            if clock >= self.next:
                self.next += every_s
                self.measure(trainer, system)
            if self.clock() >= train_s or time.perf_counter() >= wall_deadline:
                trainer.should_stop = True

        def on_train_end(self, trainer, system):
            if not entry["points"] or entry["points"][-1]["step"] != trainer.global_step:
                self.measure(trainer, system)

    return TimedEval()


def fast_section(a, entry, report, device, wall_deadline, scene):
    """Section 1. Returns the trained NeRFSystem (for section 3)."""
    import pytorch_lightning as pl

    from datasets import make_dataset
    from models import setup_fast_path
    from opt import get_opts
    from train import NeRFSystem

    flags = ["--root_dir", scene, "--img_wh", *map(str, a.img_wh), "--fast", "--max_steps", str(a.fast_steps),
             "--num_gpus", "1" if device.type == "cuda" else "0", "--exp_name", "gpu_check", *a.fast_flags.split()]
    h = get_opts(flags)
    pl.seed_everything(h.seed, verbose=False)
    train_ds, val_ds = make_dataset(h, "train"), make_dataset(h, "val")
    setup_fast_path(h, train_ds)  # scene box and TF32, as train.py does
    system = NeRFSystem(h, train_ds, val_ds)
    picks = sorted({round(i * (len(val_ds) - 1) / max(a.n_val - 1, 1)) for i in range(min(a.n_val, len(val_ds)))})
    views = [(val_ds[i]["rays"].to(device), val_ds[i]["rgbs"].to(device)) for i in picks]
    entry.update(flags=flags[2:], precision=str(h.precision), batch_size=h.batch_size, val_views=picks, points=[])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train_s = min(a.fast_minutes * 60, wall_deadline - time.perf_counter())
    cb = make_eval_callback(entry, report, views, device, amp_for(h, device), train_s, wall_deadline, a.eval_every_s)
    trainer = pl.Trainer(max_steps=h.max_steps, max_epochs=-1, accelerator="gpu" if device.type == "cuda" else "cpu",
                         devices=1, precision=h.precision, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, callbacks=[cb], benchmark=device.type == "cuda",
                         default_root_dir=tempfile.mkdtemp(prefix="gpu_check_"))
    log(f"fast: training for {train_s:.0f} s on {len(train_ds.poses)} views at {a.img_wh}, flags {' '.join(flags[2:])}")
    trainer.fit(system)
    return system.to(device)


def vs_seed_section(a, entry, device, deadline):
    """Section 2: ``vs_seed.compare`` on the seed's lego recipe; on a GPU also with our side in
    TF32 and in bf16 autocast (half the steps each), the seed always in float32."""
    import vs_seed

    runs = [("fp32", a.seed_steps)]
    if device.type == "cuda":
        runs += [("tf32", a.seed_steps // 2), ("bf16", a.seed_steps // 2)]
    for precision, steps in runs:
        if time.perf_counter() > deadline:
            entry[precision] = "skipped: out of time"
            continue
        rounds = max(1, min(4, steps))
        args = vs_seed.parse(["--device", device.type, "--configs", a.seed_config, "--batch", str(a.seed_batch),
                              "--rounds", str(rounds), "--steps", str(max(1, steps // rounds)), "--warmup", "2",
                              "--threads", "4" if device.type == "cuda" else "2", "--seed_dir", a.seed_dir,
                              "--ours_precision", precision])
        row = vs_seed.compare(a.seed_config, args, log=lambda m: log("vs_seed:" + m), deadline=deadline)
        entry[precision] = row
        log(f"vs_seed ({precision} ours, fp32 seed): ours {row['s_per_step']['ours']} s/step, "
            f"seed {row['s_per_step']['seed']} s/step, ratio {row['ratio']}, peak MB {row['peak_mem_mb']}")


def time_render(name, render, rays, device, budget_s, chunk):
    """Rays/s of ``render(rays) -> rgb``: a warm-up on one chunk, then as many whole chunks of the
    frame as fit in ``budget_s`` (all of them when they fit)."""
    with torch.no_grad():
        render(rays[:min(chunk, len(rays))])
        sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        render(rays[:min(chunk, len(rays))])
        sync(device)
        per_chunk = time.perf_counter() - t
        n = len(rays) if per_chunk * math.ceil(len(rays) / chunk) <= budget_s else \
            max(1, int(budget_s / max(per_chunk, 1e-6))) * chunk
        n = min(n, len(rays))
        t = time.perf_counter()
        rgb = render(rays[:n])
        sync(device)
        seconds = time.perf_counter() - t
    assert rgb.shape == (n, 3)
    row = {"rays": n, "full_frame": n == len(rays), "seconds": round(seconds, 3),
           "rays_per_s": round(n / seconds, 1), "peak_mem_mb": peak_mb(device), "chunk": chunk}
    log(f"render {name}: {row['rays_per_s']:.0f} rays/s ({n} rays in {seconds:.2f} s)")
    return row


def render_section(a, entry, device, system, deadline):
    """Section 3: rays/s of the trained fast model, our vanilla networks and the seed's."""
    import vs_seed
    from models import build_fields
    from models.rendering import render_chunked
    from utils.rays import Rays
    from render_speed import frame_rays

    W, H = a.render_wh
    rays = frame_rays(W, H, device)
    chunk = 32 * 1024 if device.type == "cuda" else 1024
    entry.update(img_wh=[W, H], rays_in_frame=W * H)
    cfg = vs_seed.parse_config(a.seed_config)

    def share():  # the time each remaining model may take
        return max(1.0, min(a.render_s, (deadline - time.perf_counter()) / 3))

    models = []  # (name, render function, float32 matmul precision: TF32 for the fast path as train.py)
    if system is not None:
        amp = amp_for(system.hparams, device)
        kw = system.render_kwargs(train=False)
        system.eval()

        def fast(r):
            with amp:
                return render_chunked(system.fields, r, chunk=chunk, **kw)["rgb"]
        models.append(("fast", fast, "high"))
    fields = build_fields(dict(net_depth=cfg["D"], net_width=cfg["W"], N_importance=cfg["N_importance"]))
    for f in fields.values():
        f.to(device).eval()
    kw_v = dict(n_samples=cfg["N_samples"], n_importance=cfg["N_importance"], white_back=True, test_time=True)
    models.append(("vanilla", lambda r: render_chunked(fields, r, chunk=chunk, **kw_v)["rgb"], "highest"))
    seed = vs_seed.SeedStep(cfg, device, a.seed_dir) if os.path.isdir(a.seed_dir) else None
    if seed is not None:
        for m in seed.models:
            m.eval()

        def seed_render(r):  # the seed's NeRFSystem.forward: chunks of rays through its render_rays
            r8 = torch.cat([r.origins, r.directions, r.near, r.far], 1)
            outs = [seed.seed_rendering.render_rays(seed.models, seed.embeddings, r8[i:i + chunk], cfg["N_samples"],
                                                    False, 0, 0, cfg["N_importance"], chunk, True, True)["rgb_fine"]
                    for i in range(0, len(r8), chunk)]
            return torch.cat(outs)
        models.append(("seed", seed_render, "highest"))
    for name, fn, matmul in models:
        if time.perf_counter() > deadline:
            entry[name] = "skipped: out of time"
            continue
        try:
            torch.set_float32_matmul_precision(matmul)
            entry[name] = time_render(name, fn, rays, device, share(), chunk)
            entry[name]["float32_matmul"] = matmul
        except Exception:
            entry[name] = {"error": traceback.format_exc()[-2000:]}
            log(f"render {name} FAILED")
    entry["vanilla_config"] = a.seed_config
    assert isinstance(rays, Rays)


def main(argv=None):
    a = parse(argv)
    os.makedirs(a.out, exist_ok=True)
    device = torch.device(a.device)
    wall_end = T0 + a.budget_s
    render_reserve = 3 * a.render_s + 10
    info = {"device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu x{os.cpu_count()}",
            "torch": torch.__version__, "dry_run": a.dry_run, "args": vars(a),
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    report = Report(os.path.join(a.out, "gpu_check.json"), info)
    log(f"device {info['device']}, torch {info['torch']}, budget {a.budget_s:.0f} s")
    scene = a.root_dir
    if a.dry_run:
        try:
            from datasets.demo_scene import write_scene
        except ImportError:
            from datasets.demo_scene import write_scene
        scene = write_scene(tempfile.mkdtemp(prefix="gpu_check_scene_"), size=16, n_train=8, n_val=2, n_test=2)
    system = None
    with report.section("fast") as entry:
        # sections 2 and 3 keep their reserves
        system = fast_section(a, entry, report, device, wall_end - render_reserve - VS_SEED_RESERVE_S, scene)
    if report.data["fast"].get("points"):
        try:
            points = [(p["seconds"], p["psnr"]) for p in report.data["fast"]["points"]]
            plot_psnr_curves({"--fast": points}, os.path.join(a.out, "gpu_check_fast_psnr.png"),
                 f"--fast, {os.path.basename(os.path.normpath(scene))} {a.img_wh[0]}x{a.img_wh[1]}, {info['device']}")
        except Exception:
            report.data["plot_error"] = traceback.format_exc()[-2000:]
    with report.section("vs_seed") as entry:
        vs_seed_section(a, entry, device, wall_end - render_reserve)
    with report.section("render") as entry:
        render_section(a, entry, device, system, wall_end)
    log(f"done: {report.path}")
    print(json.dumps({k: report.data[k] for k in ("fast", "vs_seed", "render") if k in report.data})[:4000], flush=True)
    return report.data


if __name__ == "__main__":
    main()

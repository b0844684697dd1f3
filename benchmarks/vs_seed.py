"""Our vanilla training step against the seed's own model code (kwea123/nerf_pl), side by side.

    python benchmarks/vs_seed.py                                   # CPU, the three configs below
    python benchmarks/vs_seed.py --device cuda --rounds 6 --steps 10
    python benchmarks/vs_seed.py --configs 2x32:8+8 --batch 256 --rounds 2 --steps 2   # a tiny check

Both sides train the same networks on the same random rays (origins ~ N(0, 0.1^2), unit
directions, near 2, far 6, as ``../shared/peers/bench_seed_step.py``), white background,
perturbed samples, no density noise, MSE on coarse + fine colours, Adam (lr 5e-4, eps 1e-8).
Each side lives in its own worker process (so each peak-memory figure is its own: peak RSS on the
CPU, ``torch.cuda.max_memory_allocated`` on a GPU), with ``--threads`` CPU threads; the parent
makes them take turns, ``--steps`` timed steps at a time for ``--rounds`` rounds, alternating which
side goes first, so both see the same machine load. Prints one JSON line per config
(``s_per_step`` = median step time of each side, ``ratio`` = ours / seed; also the process CPU
seconds per step and their ratio, steadier on a shared machine) and a markdown table.
Both sides run in full float32 by default; ``--ours_precision tf32|bf16`` (GPU) runs ours with TF32
matmuls or bf16 autocast (``--precision bf16-mixed`` of train.py) against the seed's float32.

Configs are ``DxW:N_samples+N_importance``. The seed's code is imported only here and only from
``--seed_dir`` (default ``../shared/peers/nerf_pl`` beside the project), never by the package.
"""
import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SEED_DIR = os.path.join(os.path.dirname(ROOT), "shared", "peers", "nerf_pl")
DEFAULT_CONFIGS = ["8x256:64+64", "8x256:64+128", "4x64:32+32"]
SIDES = ("ours", "seed")

sys.path.insert(0, ROOT)
import torch  # noqa: E402


def parse_config(text):
    """``"8x256:64+64"`` -> ``dict(D=8, W=256, N_samples=64, N_importance=64)``."""
    try:
        net, samples = text.split(":")
        D, W = (int(v) for v in net.split("x"))
        n_s, n_i = (int(v) for v in samples.split("+"))
    except ValueError:
        raise ValueError(f"config {text!r} is not DxW:N_samples+N_importance, e.g. 8x256:64+64") from None
    return dict(D=D, W=W, N_samples=n_s, N_importance=n_i)


def load_seed(seed_dir):
    """The seed's ``models/nerf.py`` and ``models/rendering.py`` as two modules of their own names
    (the seed's package is also called ``models``, so it is loaded by path, beside ours)."""
    mods = {}
    for name in ("nerf", "rendering"):
        path = os.path.join(seed_dir, "models", f"{name}.py")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no seed code at {path} (--seed_dir: the nerf_pl folder of ../shared/peers)")
        spec = importlib.util.spec_from_file_location(f"nerf_pl_seed_{name}", path)
        mods[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mods[name])
    return mods["nerf"], mods["rendering"]


def seed_state_from_ours(state):
    """Map a ``models.nerf.NeRF`` state dict onto the seed's ``NeRF`` parameter names."""
    out = {}
    for key, value in state.items():
        if key.startswith("xyz_layers."):
            i, rest = key[len("xyz_layers."):].split(".", 1)
            key = f"xyz_encoding_{int(i) + 1}.{rest}"
        else:
            key = key.replace("xyz_final.", "xyz_encoding_final.").replace("dir_layer.", "dir_encoding.")
        out[key] = value
    return out


def random_batch(n_rays, device, generator):
    """The seed benchmark's rays: ``(rays (N, 8) = [o, d, near=2, far=6], rgbs (N, 3))``."""
    o = 0.1 * torch.randn(n_rays, 3, generator=generator)
    d = torch.nn.functional.normalize(torch.randn(n_rays, 3, generator=generator), dim=-1)
    ones = torch.ones(n_rays, 1)
    rays = torch.cat([o, d, 2 * ones, 6 * ones], 1)
    return rays.to(device), torch.rand(n_rays, 3, generator=generator).to(device)


class OursStep:
    """One training step of our vanilla path (``models.build_fields`` + ``render_rays`` + ``MSELoss``)."""

    def __init__(self, cfg, device, perturb=1.0, precision="fp32"):
        from losses import MSELoss
        from models import build_fields

        self.cfg, self.perturb = cfg, perturb
        self.bf16 = precision == "bf16" and device.type == "cuda"
        self.fields = build_fields(dict(net_depth=cfg["D"], net_width=cfg["W"], N_importance=cfg["N_importance"]))
        for f in self.fields.values():
            f.train().to(device)
        self.params = [p for f in self.fields.values() for p in f.parameters()]
        self.opt = torch.optim.Adam(self.params, lr=5e-4, eps=1e-8)
        self.loss_fn = MSELoss()

    def forward(self, rays8):
        from models.rendering import render_rays
        from utils.rays import Rays

        rays = Rays(rays8[:, 0:3], rays8[:, 3:6], rays8[:, 6:7], rays8[:, 7:8])
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            out = render_rays(self.fields, rays, n_samples=self.cfg["N_samples"], n_importance=self.cfg["N_importance"],
                              perturb=self.perturb, noise_std=0.0, white_back=True)
        return {k: out[f"rgb_{k}"] for k in ("coarse", "fine") if f"rgb_{k}" in out}

    def __call__(self, rays8, rgbs):
        return _train_step(self, rays8, rgbs)


class SeedStep:
    """One training step of the seed's code, as its train.py takes it (``bench_seed_step.py``)."""

    def __init__(self, cfg, device, seed_dir, perturb=1.0):
        seed_nerf, self.seed_rendering = load_seed(seed_dir)
        self.cfg, self.perturb = cfg, perturb
        self.embeddings = [seed_nerf.Embedding(3, 10), seed_nerf.Embedding(3, 4)]
        self.models = [seed_nerf.NeRF(D=cfg["D"], W=cfg["W"], skips=[4])]
        if cfg["N_importance"] > 0:
            self.models.append(seed_nerf.NeRF(D=cfg["D"], W=cfg["W"], skips=[4]))
        for m in self.models:
            m.train().to(device)
        for e in self.embeddings:  # its frequency bands are a plain tensor attribute, not a buffer
            e.freq_bands = e.freq_bands.to(device)
        self.params = [p for m in self.models for p in m.parameters()]
        self.opt = torch.optim.Adam(self.params, lr=5e-4, eps=1e-8)
        self.loss_fn = lambda res, rgbs: sum(((res[k] - rgbs) ** 2).mean() for k in res)

    def load_ours(self, ours):
        """Copy the weights of an ``OursStep`` (identical initial weights for a correctness check)."""
        for m, level in zip(self.models, ("coarse", "fine")):
            m.load_state_dict(seed_state_from_ours(ours.fields[level].state_dict()))

    def forward(self, rays8):
        out = self.seed_rendering.render_rays(self.models, self.embeddings, rays8, self.cfg["N_samples"], False,
                                              self.perturb, 0.0, self.cfg["N_importance"], 32 * 1024, True)
        return {k: out[f"rgb_{k}"] for k in ("coarse", "fine") if f"rgb_{k}" in out}

    def __call__(self, rays8, rgbs):
        return _train_step(self, rays8, rgbs)


def _train_step(side, rays8, rgbs):
    side.opt.zero_grad(set_to_none=True)
    out = side.forward(rays8)
    loss = side.loss_fn(out, rgbs) if isinstance(side, SeedStep) else side.loss_fn(
        {f"rgb_{k}": v for k, v in out.items()}, rgbs)
    with torch.no_grad():  # the PSNR both training steps log
        _ = -10.0 * torch.log10(((out["fine" if "fine" in out else "coarse"] - rgbs) ** 2).mean())
    loss.backward()
    side.opt.step()
    return loss.detach()


def peak_memory_mb(device):
    """Peak GPU memory allocated, or on the CPU this process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return peak_rss_mb()


def peak_rss_mb():
    """Peak RSS of this process image (``VmHWM``). Not ``ru_maxrss``: Linux carries that across
    fork + exec, so a worker would report its (bigger) parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(a):
    """Serve ``run N`` requests on stdin: N timed steps, one JSON line of step times back."""
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    device = torch.device(a.device)
    ours = a.worker[0] == "ours"
    if device.type == "cuda" and ours and a.ours_precision == "tf32":
        torch.set_float32_matmul_precision("high")
    cfg = parse_config(a.worker[1])
    step = OursStep(cfg, device, precision=a.ours_precision) if a.worker[0] == "ours" else SeedStep(cfg, device, a.seed_dir)
    gen = torch.Generator().manual_seed(a.seed)  # both sides see the same ray batches
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        n = int(line.split()[1]) if line.startswith("run") else 0
        if n <= 0:
            break
        times, cpu = [], []
        for _ in range(n):
            rays, rgbs = random_batch(a.batch, device, gen)  # outside the timer
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            loss = step(rays, rgbs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        print(json.dumps({"times": times, "cpu_times": cpu, "peak_mem_mb": peak_memory_mb(device), "loss": float(loss)}), flush=True)


class Worker:
    """A worker process of one side, driven through its stdin/stdout."""

    def __init__(self, side, config, a):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", side, config, "--device", a.device,
               "--batch", str(a.batch), "--threads", str(a.threads), "--seed", str(a.seed),
               "--seed_dir", a.seed_dir, "--ours_precision", a.ours_precision]
        self.side = side
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def request(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.read()

    def read(self):
        for line in self.proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"the {self.side} worker exited ({self.proc.wait()})")

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


def compare(config, a, log=print, deadline=None):
    """Time ``config`` on both sides, alternating (no new round after ``deadline``, a
    ``time.perf_counter()`` value). Returns the JSON-able result dict."""
    workers = {side: Worker(side, config, a) for side in SIDES}
    try:
        for w in workers.values():
            w.read()  # ready
        for w in workers.values():
            w.request(f"run {a.warmup}")
        times, cpu = {side: [] for side in SIDES}, {side: [] for side in SIDES}
        round_ratio, last = [], {}
        for r in range(a.rounds):
            if r > 0 and deadline is not None and time.perf_counter() > deadline:
                log(f"  {config}: out of time after {r} rounds")
                break
            order = SIDES if r % 2 == 0 else SIDES[::-1]
            med = {}
            for side in order:
                last[side] = workers[side].request(f"run {a.steps}")
                times[side] += last[side]["times"]
                cpu[side] += last[side]["cpu_times"]
                med[side] = statistics.median(last[side]["times"])
            round_ratio.append(med["ours"] / med["seed"])
            log(f"  {config} round {r + 1}/{a.rounds}: ours {med['ours']:.4f} s, seed {med['seed']:.4f} s")
    finally:
        for w in workers.values():
            w.close()
    s = {side: statistics.median(times[side]) for side in SIDES}
    c = {side: statistics.median(cpu[side]) for side in SIDES}
    return {"config": config, **parse_config(config), "batch": a.batch, "device": device_name(a.device),
            "threads": a.threads, "ours_precision": a.ours_precision, "s_per_step": {k: round(v, 5) for k, v in s.items()},
            "ratio": round(s["ours"] / s["seed"], 3),
            # CPU seconds of the process per step: less sensitive than wall time to other processes' load
            "cpu_s_per_step": {k: round(v, 5) for k, v in c.items()}, "cpu_ratio": round(c["ours"] / c["seed"], 3),
            "ratio_per_round": [round(v, 3) for v in round_ratio],
            "peak_mem_mb": {side: round(last[side]["peak_mem_mb"], 1) for side in SIDES},
            "steps_each": len(times["ours"]), "loadavg_1m": round(os.getloadavg()[0], 2)}


def device_name(device):
    return torch.cuda.get_device_name() if device == "cuda" else f"cpu x{os.cpu_count()}"


def table(rows):
    lines = ["| config | rays | device | ours precision | ours s/step | seed s/step | ours/seed | "
             "CPU s/step ours / seed | ours peak MB | seed peak MB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['D']}x{r['W']}, {r['N_samples']}+{r['N_importance']} | {r['batch']} | {r['device']} | {r['ours_precision']} | "
                     f"{r['s_per_step']['ours']:.4f} | {r['s_per_step']['seed']:.4f} | **{r['ratio']:.2f}x** | "
                     f"{r['cpu_s_per_step']['ours']:.3f} / {r['cpu_s_per_step']['seed']:.3f} = {r['cpu_ratio']:.2f}x | "
                     f"{r['peak_mem_mb']['ours']:.0f} | {r['peak_mem_mb']['seed']:.0f} |")
    return "\n".join(lines)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help="DxW:N_samples+N_importance ...")
    p.add_argument("--batch", type=int, default=1024, help="rays per step")
    p.add_argument("--rounds", type=int, default=4, help="turns each side takes")
    p.add_argument("--steps", type=int, default=3, help="timed steps per turn")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per side first")
    p.add_argument("--threads", type=int, default=2, help="CPU threads of each worker (torch.set_num_threads)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seed_dir", default=DEFAULT_SEED_DIR, help="the seed's code (a folder holding models/)")
    p.add_argument("--ours_precision", choices=("fp32", "tf32", "bf16"), default="fp32",
                   help="GPU: our side's matmuls (the seed's side is always float32)")
    p.add_argument("--json_out", default=None, help="also write the JSON lines to this file")
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    for c in a.configs:
        try:
            parse_config(c)
        except ValueError as err:
            p.error(str(err))
    if not a.worker and not os.path.isdir(os.path.join(a.seed_dir, "models")):
        p.error(f"--seed_dir {a.seed_dir} holds no models/ folder (the seed's code: ../shared/peers/nerf_pl)")
    return a


def main(argv=None):
    a = parse(argv)
    if a.worker:
        return worker(a)
    rows = []
    for config in a.configs:
        row = compare(config, a, log=lambda m: print(m, file=sys.stderr, flush=True))
        rows.append(row)
        print(json.dumps(row), flush=True)
    if a.json_out:
        with open(a.json_out, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    print(table(rows), flush=True)
    return rows


if __name__ == "__main__":
    main()

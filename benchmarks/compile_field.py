"""The fast path's field, forward and backward, eager against ``torch.compile``: is a compiler's fusion worth it?

    python benchmarks/compile_field.py [--points 18000] [--modes eager mlp encoding field eager]

One ``NGPField`` with the CPU preset for ``--unbounded`` (8 levels, 2^17 entries, finest 1024,
contracted points) takes ``--points`` random points and view directions, forward and backward of
a loss on density and colour, as a training step does. Each mode runs in a process of its own (a
compiled graph stays cached in its process); modes listed twice run twice, so a drift of the
machine shows. Modes: ``eager``; ``mlp`` (the two MLPs compiled); ``encoding`` (the hash encoding
compiled); ``field`` (the whole field compiled). Compilation is inductor's, ``dynamic=True`` (the
number of points changes every step). Prints one JSON line per mode: the first call's seconds
(compile time included), then the median of ``--repeats`` steps in milliseconds.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ("eager", "mlp", "encoding", "field")


def run_mode(mode, n_points, repeats):
    """Times one mode in this process: ``{"mode", "first_s", "median_ms"}``."""
    sys.path.insert(0, ROOT)
    import torch

    from models.ngp import NGPField

    torch.manual_seed(0)
    field = NGPField(torch.tensor([[-2.0] * 3, [2.0] * 3]), n_levels=8, log2_size=17, max_res=1024, contract=True)
    call = field
    if mode == "field":
        call = torch.compile(field, dynamic=True)
    elif mode == "mlp":
        field.density_mlp = torch.compile(field.density_mlp, dynamic=True)
        field.color_mlp = torch.compile(field.color_mlp, dynamic=True)
    elif mode == "encoding":
        field.encoding = torch.compile(field.encoding, dynamic=True)

    def points(n):
        return torch.randn(n, 3) * 0.7, torch.nn.functional.normalize(torch.randn(n, 3), dim=-1)

    def step(x, d):
        sigma, rgb = call(x, d)
        loss = 0.01 * sigma.sum() + rgb.sum()
        field.zero_grad(set_to_none=True)
        loss.backward()

    x, d = points(n_points)
    t0 = time.perf_counter()
    step(x, d)
    first = time.perf_counter() - t0
    step(*points(n_points // 2))  # another size: a dynamic graph must not compile again
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step(x, d)
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"mode": mode, "points": n_points, "first_s": round(first, 2), "median_ms": round(1e3 * times[len(times) // 2], 2)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=18000, help="points per step (beer after 2000 steps: 512 rays x ~35)")
    p.add_argument("--modes", nargs="+", choices=MODES, default=["eager", "mlp", "encoding", "field", "eager"])
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)  # the child process's mode
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(run_mode(a.one, a.points, a.repeats)))
        return
    for mode in a.modes:
        proc = subprocess.run([sys.executable, __file__, "--one", mode, "--points", str(a.points),
                               "--repeats", str(a.repeats)], capture_output=True, text=True)
        if proc.returncode:
            print(json.dumps({"mode": mode, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}))
        else:
            print(proc.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()

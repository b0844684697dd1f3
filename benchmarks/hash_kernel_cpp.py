"""The fused C++ hash encoding (``models/kernels.py``, ``--kernels auto``) against the eager one, part by part.

    python benchmarks/hash_kernel_cpp.py [--points 18000] [--repeats 21] [--threads 2]

On beer's CPU-preset encoding (8 levels, 2^17 entries, finest 1024) and random points: first the values
and the table's gradient (the script stops if they differ by more than float rounding), then the
median time of the forward, the table gradient, and both through autograd, each path in
alternation, twice (a drift of the machine shows). Also the build (or cache load) time. One JSON line
per part. RESULTS §19-20.
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from models import kernels  # noqa: E402
from models.hash_encoding import HashEncoding  # noqa: E402


def median_ms(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(1e3 * sorted(times)[len(times) // 2], 2)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=18000, help="points per step (beer after 2000 steps: 512 rays x ~35)")
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    ext = kernels.extension()
    if ext is None:
        sys.exit(f"the fused kernels did not build: {kernels._state['failure']}")
    print(json.dumps({"build_or_load_s": round(time.perf_counter() - t0, 1), "threads": torch.get_num_threads()}),
          flush=True)
    torch.manual_seed(0)
    enc = HashEncoding(torch.tensor([[-2.0] * 3, [2.0] * 3]), n_levels=8, log2_size=17, max_res=1024)
    with torch.no_grad():
        enc.table.uniform_(-1, 1)
    x = torch.rand(a.points, 3) * 4 - 2
    u = enc.normalize(x).contiguous()
    table, dense, rows = enc.table.detach(), enc.dense, enc.table.shape[0]
    grad = torch.randn(a.points, enc.out_channels)
    levels = (enc.res, enc.offsets, dense, enc.table_size)

    out = enc.forward_eager(x)
    out.backward(grad)
    g_eager, enc.table.grad = enc.table.grad, None
    errors = {"forward": (ext.hash_forward(u, table, *levels) - out).abs().max().item(),
              "table_gradient": (ext.hash_backward(u, grad, *levels, rows) - g_eager).abs().max().item()}
    print(json.dumps({"max_abs_error": errors, "table_grad_max": g_eager.abs().max().item()}), flush=True)
    if max(errors.values()) > 1e-4:
        sys.exit("the C++ encoding differs from HashEncoding: not timed")

    def both(forward):
        def run():
            enc.table.grad = None
            forward(x).backward(grad)
        return run

    def no_grad(forward):
        def run():
            with torch.no_grad():
                forward(x)
        return run

    parts = {"eager_forward": no_grad(enc.forward_eager), "fused_forward": no_grad(enc),
             "eager_forward_backward": both(enc.forward_eager), "fused_forward_backward": both(enc),
             "fused_table_gradient_only": lambda: ext.hash_backward(u, grad, *levels, rows)}
    for _ in range(2):
        for name, fn in parts.items():
            print(json.dumps({"part": name, "points": a.points, "median_ms": median_ms(fn, a.repeats)}), flush=True)


if __name__ == "__main__":
    main()

"""Fused CPU kernels for the fast path (``--kernels auto|eager``, issue 29; RESULTS §19-20).

The hash encoding is the largest part of a CPU training step. In eager PyTorch it is ~25 ops over
``(L, 8, N)`` tensors; here it is one C++/OpenMP loop over the points that does a point's levels x 8
corners (index, trilinear weight, gather) in registers, and one loop that scatters the gradient into
the table. Values and gradients equal ``models.hash_encoding.HashEncoding``'s to float rounding
(tests/test_kernels.py).

Built with torch's ``load_inline`` (g++ and ninja) the first time a hash-grid field runs, ~30 s that count
inside ``--max_time``. The build is cached in ``torch.utils.cpp_extension``'s folder
(``$TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``) under a name that includes this
CPU's model and instruction sets, so a cache shared between machines never runs code built for another
CPU. Later runs load it in 0.1-0.2 s. When it cannot be built (no compiler, no ninja), the run
prints one line and goes on with the eager code, which gives the same results.

Where it applies: float32 on the CPU, when the points need no gradient (camera refinement moves the
points: those runs stay eager). Training, eval.py, the viewer and mesh export all call the encoding
through ``HashEncoding.forward``, so they all take it.
"""
import glob
import hashlib
import os
import platform
import sys
import time

import torch

MODES = ("auto", "eager")
# u (N, 3) points in the unit cube; res (L,) float32 cells per side; offsets (L,) int32 first row of each
# level; dense (L,) uint8; table (rows, 2) float32. Index, hash and weights as in HashEncoding.
SOURCE = r"""#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <cstdint>

struct Levels {  // the encoding's constants, as HashEncoding's buffers hold them
  const float* res; const int32_t* offsets; const uint8_t* dense; uint32_t mask; int64_t L;
};

// The 8 corners of point u's cell at level l: table rows idx[8] and trilinear weights w[8].
static inline void corners(const Levels& lv, const float* u, int64_t l, uint32_t idx[8], float w[8]) {
  const float r = lv.res[l]; float f[3]; uint32_t c[3];
  for (int a = 0; a < 3; ++a) {
    const float p = r * u[a]; const float fl = std::min(std::floor(p), r - 1.f);  // u = 1 stays in the last cell
    c[a] = (uint32_t)fl; f[a] = p - fl;
  }
  const uint32_t stride = (uint32_t)r + 1;
  for (int k = 0; k < 8; ++k) {
    const uint32_t bx = (k >> 2) & 1, by = (k >> 1) & 1, bz = k & 1;
    const uint32_t i = c[0] + bx, j = c[1] + by, m = c[2] + bz;
    w[k] = (bx ? f[0] : 1.f - f[0]) * (by ? f[1] : 1.f - f[1]) * (bz ? f[2] : 1.f - f[2]);
    const uint32_t h = lv.dense[l] ? i + j * stride + m * stride * stride
                                   : ((i * 1u) ^ (j * 2654435761u) ^ (m * 805459861u)) & lv.mask;
    idx[k] = h + (uint32_t)lv.offsets[l];
  }
}

static Levels levels_of(const torch::Tensor& res, const torch::Tensor& offsets, const torch::Tensor& dense,
                        int64_t table_size) {
  return {res.data_ptr<float>(), offsets.data_ptr<int32_t>(), dense.data_ptr<uint8_t>(),
          (uint32_t)(table_size - 1), res.size(0)};
}

// u (N, 3), table (rows, 2) -> (N, L * 2): per point, level after level.
torch::Tensor hash_forward(torch::Tensor u, torch::Tensor table, torch::Tensor res, torch::Tensor offsets,
                           torch::Tensor dense, int64_t table_size) {
  const Levels lv = levels_of(res, offsets, dense, table_size);
  const int64_t N = u.size(0), L = lv.L;
  auto out = torch::empty({N, L * 2}, u.options());
  const float* U = u.data_ptr<float>(); const float* TB = table.data_ptr<float>(); float* O = out.data_ptr<float>();
  #pragma omp parallel for schedule(static) num_threads(at::get_num_threads())
  for (int64_t n = 0; n < N; ++n) {
    uint32_t idx[8]; float w[8];
    for (int64_t l = 0; l < L; ++l) {
      corners(lv, U + n * 3, l, idx, w);
      float a0 = 0.f, a1 = 0.f;
      for (int k = 0; k < 8; ++k) { a0 += w[k] * TB[idx[k] * 2]; a1 += w[k] * TB[idx[k] * 2 + 1]; }
      O[(n * L + l) * 2] = a0; O[(n * L + l) * 2 + 1] = a1;
    }
  }
  return out;
}

// The table's gradient (rows, 2) from grad (N, L * 2). Each thread owns whole levels, or a range of one
// level's rows when there are more threads than levels: no two threads write the same row, so there are no
// atomics, no per-thread copies of the table, and each row sums its points in order (the same result for
// any thread count).
torch::Tensor hash_backward(torch::Tensor u, torch::Tensor grad, torch::Tensor res, torch::Tensor offsets,
                            torch::Tensor dense, int64_t table_size, int64_t n_rows) {
  const Levels lv = levels_of(res, offsets, dense, table_size);
  const int64_t N = u.size(0), L = lv.L, T = at::get_num_threads();
  const int64_t parts = (T + L - 1) / L;  // row ranges per level
  auto gt = torch::zeros({n_rows, 2}, u.options());
  const float* U = u.data_ptr<float>(); const float* G = grad.data_ptr<float>(); float* GT = gt.data_ptr<float>();
  #pragma omp parallel for schedule(dynamic, 1) num_threads(std::min<int64_t>(T, L * parts))
  for (int64_t task = 0; task < L * parts; ++task) {
    const int64_t l = task / parts, part = task % parts;
    const int64_t first = lv.offsets[l], end = l + 1 < L ? lv.offsets[l + 1] : n_rows;
    const int64_t lo = first + (end - first) * part / parts, hi = first + (end - first) * (part + 1) / parts;
    uint32_t idx[8]; float w[8];
    for (int64_t n = 0; n < N; ++n) {
      const float g0 = G[(n * L + l) * 2], g1 = G[(n * L + l) * 2 + 1];
      corners(lv, U + n * 3, l, idx, w);
      for (int k = 0; k < 8; ++k) {
        if (parts > 1 && ((int64_t)idx[k] < lo || (int64_t)idx[k] >= hi)) continue;
        GT[idx[k] * 2] += w[k] * g0; GT[idx[k] * 2 + 1] += w[k] * g1;
      }
    }
  }
  return gt;
}
"""

_state = {"mode": "auto", "ext": None, "failure": None}


def set_mode(mode):
    """``"auto"`` (fused where it builds) or ``"eager"`` (always the PyTorch code); from ``--kernels``."""
    if mode not in MODES:
        raise ValueError(f"--kernels {mode!r} is not one of {', '.join(MODES)}")
    _state["mode"] = mode


def mode():
    return _state["mode"]


def _cpu_tag():
    """A short hash of this CPU's model and instruction sets: the build uses -march=native."""
    text = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags", "Features", "CPU part"))]
        text += "".join(sorted(set(lines)))
    except OSError:
        text += platform.processor()
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def clear_stale_lock(name, max_age_s=600):
    """Remove the lock file of a build of ``name`` that died half-way (a Ctrl-C during the first run):
    torch waits for that file to go, so every later run would hang at its first step."""
    for lock in glob.glob(os.path.join(cache_dir(), "*", name, "lock")):
        try:
            if time.time() - os.path.getmtime(lock) > max_age_s:  # a live build takes under a minute
                os.remove(lock)
        except OSError:  # another process removed it first
            pass


def build():
    """Build (or load from the cache) the C++ extension. Returns the module; raises on failure."""
    from torch.utils import cpp_extension

    name = f"nerf_kernels_{_cpu_tag()}"
    clear_stale_lock(name)
    # ninja from pip lives beside this Python; torch looks for it on PATH
    bindir = os.path.dirname(sys.executable)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    return cpp_extension.load_inline(
        name, cpp_sources=SOURCE, functions=["hash_forward", "hash_backward"],
        extra_cflags=["-O3", "-fopenmp", "-march=native"], extra_ldflags=["-fopenmp"], verbose=False)


def cache_dir():
    """Where torch keeps built extensions: ``$TORCH_EXTENSIONS_DIR``, or its default."""
    from torch.utils import cpp_extension

    return os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()


def _first_rank():
    return os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


def extension():
    """The built extension, or None (``--kernels eager``, or it could not be built: one line says why,
    once). The first call builds or loads it."""
    if _state["mode"] == "eager" or _state["failure"] is not None:
        return None
    if _state["ext"] is None:
        t0 = time.perf_counter()
        try:
            _state["ext"] = build()
        except Exception as e:  # noqa: BLE001 -- any failure to build means: go on with the eager code
            reason = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
            _state["failure"] = reason[:200]
            if _first_rank():  # DDP: one line for the run, not one per process
                    print(f"fused kernels unavailable ({_state['failure']}): using the eager PyTorch code, same results "
                      f"(--kernels eager skips the attempt)", file=sys.stderr, flush=True)
            return None
        seconds = time.perf_counter() - t0
        if seconds > 5 and _first_rank():  # a build, not a load from the cache: say where the time went, and where it is kept
            print(f"fused kernels built in {seconds:.0f} s (cached in {cache_dir()})", flush=True)
    return _state["ext"]


def applies(x, table):
    """Whether the fused encoding can serve points ``x`` with ``table``: CPU, float32, no gradient for x."""
    return (_state["mode"] == "auto" and x.device.type == "cpu" and table.device.type == "cpu"
            and x.dtype == torch.float32 and table.dtype == torch.float32 and not x.requires_grad)


class HashEncode(torch.autograd.Function):
    """``u`` ``(N, 3)`` in the unit cube -> ``(N, L * 2)`` codes, level after level; gradient for the
    table only (``applies`` keeps points that need one on the eager path)."""

    @staticmethod
    def forward(ctx, u, table, ext, res, offsets, dense, table_size):
        ctx.save_for_backward(u)
        ctx.consts = (ext, res, offsets, dense, table_size, table.shape[0])
        return ext.hash_forward(u, table.contiguous(), res, offsets, dense, table_size)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        ext, res, offsets, dense, table_size, rows = ctx.consts
        grad_table = None
        if ctx.needs_input_grad[1]:
            grad_table = ext.hash_backward(u, grad.float().contiguous(), res, offsets, dense, table_size, rows)
        return None, grad_table, None, None, None, None, None

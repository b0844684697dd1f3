"""A candidate for issue 29, measured before it is built into the product: the hash encoding as one C++ loop.

    python benchmarks/hash_kernel_cpp.py [--points 18000] [--repeats 21]

One OpenMP loop over the points does a point's 8 levels x 8 corners (index, trilinear weight,
gather) in registers: the forward. Two backwards scatter ``weight x grad`` into the table's
gradient: with atomic adds, or into a buffer per thread summed at the end. They are built on the
spot with torch's ``load_inline`` (g++ and ninja; ~30 s the first time, cached in
``~/.cache/torch_extensions``) and compared with ``models.hash_encoding.HashEncoding``, eager, on
beer's CPU-preset encoding (8 levels, 2^17 entries, finest 1024) and random points: first the values
and the table's gradient (the script stops if they differ by more than float rounding), then the
median time of each part, in alternation. One JSON line per part. Not used by the product: RESULTS §19.
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from models.hash_encoding import HashEncoding  # noqa: E402

# u: (N, 3) points in the unit cube; res (L,) float32 cells per side; offsets (L,) int32 first row of
# each level; dense (L,) uint8; table (rows, 2). The index and hash are those of HashEncoding.
# (load_inline versions the build by this text: an edit rebuilds it.)
SOURCE = r"""#include <torch/extension.h>
#include <omp.h>
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

static Levels levels_of(torch::Tensor res, torch::Tensor offsets, torch::Tensor dense, int64_t table_size) {
  return {res.data_ptr<float>(), offsets.data_ptr<int32_t>(), dense.data_ptr<uint8_t>(),
          (uint32_t)(table_size - 1), res.size(0)};
}

// u (N, 3) in the unit cube, table (rows, 2) -> (N, L * 2): per point, level after level.
torch::Tensor hash_fwd(torch::Tensor u, torch::Tensor table, torch::Tensor res, torch::Tensor offsets,
                       torch::Tensor dense, int64_t table_size) {
  const Levels lv = levels_of(res, offsets, dense, table_size);
  const int64_t N = u.size(0), L = lv.L;
  auto out = torch::empty({N, L * 2}, u.options());
  const float* U = u.data_ptr<float>(); const float* TB = table.data_ptr<float>(); float* O = out.data_ptr<float>();
  #pragma omp parallel for schedule(static)
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

// The table's gradient (rows, 2) from grad (N, L * 2), summed into `gt` (one per thread, or shared).
static inline void scatter(const Levels& lv, const float* U, const float* G, int64_t n, float* gt, bool atomic) {
  uint32_t idx[8]; float w[8];
  for (int64_t l = 0; l < lv.L; ++l) {
    const float g0 = G[(n * lv.L + l) * 2], g1 = G[(n * lv.L + l) * 2 + 1];
    corners(lv, U + n * 3, l, idx, w);
    for (int k = 0; k < 8; ++k) {
      if (atomic) {
        #pragma omp atomic
        gt[idx[k] * 2] += w[k] * g0;
        #pragma omp atomic
        gt[idx[k] * 2 + 1] += w[k] * g1;
      } else {
        gt[idx[k] * 2] += w[k] * g0; gt[idx[k] * 2 + 1] += w[k] * g1;
      }
    }
  }
}

// backward with atomic adds into one gradient
torch::Tensor hash_bwd(torch::Tensor u, torch::Tensor grad, torch::Tensor res, torch::Tensor offsets,
                       torch::Tensor dense, int64_t table_size, int64_t n_rows) {
  const Levels lv = levels_of(res, offsets, dense, table_size);
  auto gt = torch::zeros({n_rows, 2}, u.options());
  const float* U = u.data_ptr<float>(); const float* G = grad.data_ptr<float>(); float* GT = gt.data_ptr<float>();
  #pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < u.size(0); ++n) scatter(lv, U, G, n, GT, true);
  return gt;
}

// backward into one gradient buffer per thread, summed at the end (no atomics; deterministic
// for a given thread count)
torch::Tensor hash_bwd_priv(torch::Tensor u, torch::Tensor grad, torch::Tensor res, torch::Tensor offsets,
                            torch::Tensor dense, int64_t table_size, int64_t n_rows) {
  const Levels lv = levels_of(res, offsets, dense, table_size);
  const int T = omp_get_max_threads();
  auto buf = torch::zeros({T, n_rows, 2}, u.options());
  const float* U = u.data_ptr<float>(); const float* G = grad.data_ptr<float>(); float* B = buf.data_ptr<float>();
  #pragma omp parallel
  {
    float* GT = B + (int64_t)omp_get_thread_num() * n_rows * 2;
    #pragma omp for schedule(static)
    for (int64_t n = 0; n < u.size(0); ++n) scatter(lv, U, G, n, GT, false);
  }
  return T == 1 ? buf[0] : buf.sum(0);
}
"""


def build():
    from torch.utils.cpp_extension import load_inline

    return load_inline("nerf_hash_kernel_proto", cpp_sources=SOURCE, functions=["hash_fwd", "hash_bwd", "hash_bwd_priv"],
                       extra_cflags=["-O3", "-fopenmp", "-march=native"], extra_ldflags=["-fopenmp"])


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
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    ext = build()
    print(json.dumps({"build_s": round(time.perf_counter() - t0, 1)}), flush=True)
    torch.manual_seed(0)
    enc = HashEncoding(torch.tensor([[-2.0] * 3, [2.0] * 3]), n_levels=8, log2_size=17, max_res=1024)
    with torch.no_grad():
        enc.table.uniform_(-1, 1)
    x = torch.rand(a.points, 3) * 4 - 2
    u = enc.normalize(x).contiguous()
    table, dense, rows = enc.table.detach(), enc.dense.to(torch.uint8), enc.table.shape[0]
    grad = torch.randn(a.points, enc.out_channels)
    levels = (enc.res, enc.offsets, dense, enc.table_size)

    out = enc(x)
    enc.table.grad = None
    out.backward(grad)
    errors = {"forward": (ext.hash_fwd(u, table, *levels) - out).abs().max().item(),
              "backward_atomic": (ext.hash_bwd(u, grad, *levels, rows) - enc.table.grad).abs().max().item(),
              "backward_per_thread": (ext.hash_bwd_priv(u, grad, *levels, rows) - enc.table.grad).abs().max().item()}
    print(json.dumps({"max_abs_error": errors, "table_grad_max": enc.table.grad.abs().max().item()}), flush=True)
    if max(errors.values()) > 1e-4:
        sys.exit("the C++ encoding differs from HashEncoding: not timed")

    def eager_both():
        enc.table.grad = None
        enc(x).backward(grad)

    def eager_forward():
        with torch.no_grad():
            enc(x)

    parts = {"eager_forward_backward": eager_both, "eager_forward": eager_forward,
             "cpp_forward": lambda: ext.hash_fwd(u, table, *levels),
             "cpp_backward_atomic": lambda: ext.hash_bwd(u, grad, *levels, rows),
             "cpp_backward_per_thread": lambda: ext.hash_bwd_priv(u, grad, *levels, rows)}
    for _ in range(2):  # twice, alternating: a drift of the machine shows
        for name, fn in parts.items():
            print(json.dumps({"part": name, "points": a.points, "median_ms": median_ms(fn, a.repeats)}), flush=True)


if __name__ == "__main__":
    main()

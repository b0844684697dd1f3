"""Fused CPU kernels for the fast path (``--kernels auto|eager``, issue 29; RESULTS §19-20, §24).

C++/OpenMP loops for what costs most on the CPU, each giving the PyTorch code's values (and gradients)
to float rounding (tests/test_kernels.py):

- the hash encoding (``HashEncoding.forward``): one loop over the points does a point's levels x 8
  corners (index, trilinear weight, gather) in registers, one loop scatters the gradient into the table,
  and one gives the points' gradient when they need one (camera refinement, eval.py's pose alignment);
- the density (``NGPField.query_density`` without gradients: the occupancy grid's refresh, mesh export):
  contraction, box, encoding, the 64-unit layer and the output's first row, per point in registers;
- training's sample-picking pass (``marching._visible_samples`` through ``NGPField.march_visible``): each
  ray walks its samples front to back and stops where it turns opaque, so no sample past its end is
  evaluated;
- inference (``marching._render_one_pass`` through ``NGPField.march_render``: eval.py, the viewer, mesh
  colours): density and colour composited per ray, the colour MLP only where a sample has weight;
- the grid lookup (``OccupancyGrid.occupied_along``) of both marchers.

Built with torch's ``load_inline`` (g++ and ninja) the first time a hash-grid field runs, ~30 s that count
inside ``--max_time``. The build is cached in ``torch.utils.cpp_extension``'s folder
(``$TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``) under a name that includes this
CPU's model and instruction sets, so a cache shared between machines never runs code built for another
CPU. Later runs load it in 0.1-0.2 s. When it cannot be built (no compiler, no ninja), the run
prints one line and goes on with the eager code, which gives the same results.

Where it applies: float32 on the CPU, camera refinement's level weights included. Autocast and GPUs take the
eager code.
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
#include <vector>

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

// The points' gradient (N, 3) from grad (N, L * 2): camera refinement moves the points. Per level, the
// trilinear weight of corner k along axis a is (1 - f_a) or f_a with f_a = res * u_a - cell_a, so its
// derivative is -res or +res times the other two axes' factors; each corner adds that times its features
// dotted with the level's gradient. One point per iteration: no two threads write the same row.
torch::Tensor hash_backward_points(torch::Tensor u, torch::Tensor grad, torch::Tensor table, torch::Tensor res,
                                   torch::Tensor offsets, torch::Tensor dense, int64_t table_size) {
  const Levels lv = levels_of(res, offsets, dense, table_size);
  const int64_t N = u.size(0), L = lv.L;
  auto gu = torch::zeros({N, 3}, u.options());
  const float* U = u.data_ptr<float>(); const float* G = grad.data_ptr<float>(); const float* TB = table.data_ptr<float>();
  float* GU = gu.data_ptr<float>();
  #pragma omp parallel for schedule(static) num_threads(at::get_num_threads())
  for (int64_t n = 0; n < N; ++n) {
    uint32_t idx[8]; float w[8]; float acc[3] = {0.f, 0.f, 0.f};
    const float* un = U + n * 3;
    for (int64_t l = 0; l < L; ++l) {
      const float g0 = G[(n * L + l) * 2], g1 = G[(n * L + l) * 2 + 1];
      corners(lv, un, l, idx, w);
      const float r = lv.res[l]; float f[3];
      for (int a = 0; a < 3; ++a) { const float p = r * un[a]; f[a] = p - std::min(std::floor(p), r - 1.f); }
      float d[3] = {0.f, 0.f, 0.f};
      for (int k = 0; k < 8; ++k) {
        const float dot = g0 * TB[idx[k] * 2] + g1 * TB[idx[k] * 2 + 1];
        const int b[3] = {(k >> 2) & 1, (k >> 1) & 1, k & 1};
        float axis[3];
        for (int a = 0; a < 3; ++a) axis[a] = b[a] ? f[a] : 1.f - f[a];
        d[0] += dot * (b[0] ? 1.f : -1.f) * axis[1] * axis[2];
        d[1] += dot * (b[1] ? 1.f : -1.f) * axis[0] * axis[2];
        d[2] += dot * (b[2] ? 1.f : -1.f) * axis[0] * axis[1];
      }
      for (int a = 0; a < 3; ++a) acc[a] += r * d[a];
    }
    for (int a = 0; a < 3; ++a) GU[n * 3 + a] = acc[a];
  }
  return gu;
}

// The fast path's density (models.ngp.NGPField.query_density) at one point, every step in registers:
// contraction, the box, the encoding, the 64-unit layer (ReLU), the output's first row, exp.
constexpr int64_t MAX_LEVELS = 32, MAX_WIDTH = 256;  // the Python side checks the field against these
struct Density {
  Levels lv; const float* table; const float* box; const float* w1t; const float* b1; const float* w2;
  int64_t width; bool contract; const float* scale;
};

// field: box (2, 3), res, offsets, dense, table (rows, 2), w1t (L * 2, width) the first layer transposed,
// b1 (width,), w2 (width + 1,) the output's first row and its bias; then, optionally, scale (L * 2,) each
// feature's level weight (NGPField.set_level_weights: camera refinement's coarse to fine).
static Density density_of(const std::vector<torch::Tensor>& f, int64_t table_size, bool contract) {
  return {levels_of(f[1], f[2], f[3], table_size), f[4].data_ptr<float>(), f[0].data_ptr<float>(),
          f[5].data_ptr<float>(), f[6].data_ptr<float>(), f[7].data_ptr<float>(), f[6].size(0), contract,
          f.size() > 8 ? f[8].data_ptr<float>() : nullptr};
}

// out (n_out,) = b (n_out,) + x (n_in,) @ wt (n_in, n_out): a layer with its weight transposed, summed over
// the inputs so that the inner loop runs along the outputs (SIMD).
static inline void layer(const float* x, int64_t n_in, const float* wt, const float* b, int64_t n_out, float* out) {
  for (int64_t o = 0; o < n_out; ++o) out[o] = b[o];
  for (int64_t i = 0; i < n_in; ++i) {
    const float xi = x[i]; const float* wi = wt + i * n_out;
    for (int64_t o = 0; o < n_out; ++o) out[o] += wi[o] * xi;
  }
}

// The point at distance t along ray n of origins O and directions D (N, 3).
static inline void point_on_ray(const float* O, const float* D, int64_t n, float t, float x[3]) {
  for (int a = 0; a < 3; ++a) x[a] = O[n * 3 + a] + D[n * 3 + a] * t;
}

// models.contraction.contract, in place.
static inline void contract_point(float x[3]) {
  const float r = std::sqrt(x[0] * x[0] + x[1] * x[1] + x[2] * x[2]);
  if (r > 1.f) { const float s = (2.f - 1.f / r) / r; x[0] *= s; x[1] *= s; x[2] *= s; }
}

// The density MLP's hidden layer, ReLU applied, at point p into h (width,); false (h untouched) when p is
// outside the box, where the density is 0.
static inline bool hidden_at(const Density& F, const float p[3], float* h) {
  float x[3] = {p[0], p[1], p[2]};
  if (F.contract) contract_point(x);
  float u[3];
  for (int a = 0; a < 3; ++a) {
    if (!(x[a] >= F.box[a] && x[a] <= F.box[3 + a])) return false;
    u[a] = std::min(std::max((x[a] - F.box[a]) / (F.box[3 + a] - F.box[a]), 0.f), 1.f);
  }
  const int64_t L = F.lv.L, W = F.width;
  float feat[2 * MAX_LEVELS]; uint32_t idx[8]; float w[8];
  for (int64_t l = 0; l < L; ++l) {
    corners(F.lv, u, l, idx, w);
    float a0 = 0.f, a1 = 0.f;
    for (int k = 0; k < 8; ++k) { a0 += w[k] * F.table[idx[k] * 2]; a1 += w[k] * F.table[idx[k] * 2 + 1]; }
    feat[2 * l] = a0; feat[2 * l + 1] = a1;
  }
  if (F.scale) for (int64_t i = 0; i < 2 * L; ++i) feat[i] *= F.scale[i];
  layer(feat, 2 * L, F.w1t, F.b1, W, h);
  for (int64_t o = 0; o < W; ++o) h[o] = std::max(h[o], 0.f);
  return true;
}

static inline float density_at(const Density& F, const float p[3]) {
  float h[MAX_WIDTH];
  if (!hidden_at(F, p, h)) return 0.f;
  float s = F.w2[F.width];
  for (int64_t o = 0; o < F.width; ++o) s += F.w2[o] * h[o];
  return std::exp(s);
}

// Densities (N,) at points x (N, 3).
torch::Tensor density_points(torch::Tensor x, std::vector<torch::Tensor> field, int64_t table_size, bool contract) {
  const Density F = density_of(field, table_size, contract);
  const int64_t N = x.size(0);
  auto out = torch::empty({N}, x.options());
  const float* X = x.data_ptr<float>(); float* O = out.data_ptr<float>();
  #pragma omp parallel for schedule(static) num_threads(at::get_num_threads())
  for (int64_t n = 0; n < N; ++n) O[n] = density_at(F, X + n * 3);
  return out;
}

// models.marching._visible_samples in one pass: each ray walks its samples front to back, measures the
// density of the masked ones and stops once its optical depth reaches max_tau, so no sample past a
// ray's end is evaluated. o, d (N, 3); t, delta (N, M) distances and steps in world units; mask (N, M)
// bool. Returns keep (N, M) bool: masked, in front of max_tau, and with an optical depth of min_od or more.
torch::Tensor march_density(torch::Tensor o, torch::Tensor d, torch::Tensor t, torch::Tensor delta,
                            torch::Tensor mask, std::vector<torch::Tensor> field, int64_t table_size, bool contract,
                            double max_tau, double min_od) {
  const Density F = density_of(field, table_size, contract);
  const int64_t N = t.size(0), M = t.size(1);
  auto keep = torch::zeros({N, M}, mask.options());
  const float* O = o.data_ptr<float>(); const float* D = d.data_ptr<float>(); const float* T = t.data_ptr<float>();
  const float* DL = delta.data_ptr<float>(); const bool* MK = mask.data_ptr<bool>(); bool* K = keep.data_ptr<bool>();
  const float tau_max = (float)max_tau, od_min = (float)min_od;
  #pragma omp parallel for schedule(dynamic, 4) num_threads(at::get_num_threads())
  for (int64_t n = 0; n < N; ++n) {
    float tau = 0.f;
    for (int64_t j = 0; j < M && tau < tau_max; ++j) {
      const int64_t i = n * M + j;
      if (!MK[i]) continue;
      float p[3];
      point_on_ray(O, D, n, T[i], p);
      float od = density_at(F, p) * DL[i];
      if (od < od_min) od = 0.f;  // a faint sample counts as empty (marching._skip_faint)
      K[i] = od >= od_min;
      tau += od;
    }
  }
  return keep;
}

// models.occupancy.OccupancyGrid.occupied_along: whether the points o + t * d lie in occupied cells, (N, M)
// bool for rays o, d (N, 3) and distances t (N, M). occupied (R^3,) bool; box (2, 3). A contracted grid
// contracts each point and checks it lies in the box; a bounded one clamps it to the border cells.
torch::Tensor occupied_along(torch::Tensor o, torch::Tensor d, torch::Tensor t, torch::Tensor occupied,
                             torch::Tensor box, int64_t R, bool contracted) {
  const int64_t N = t.size(0), M = t.size(1);
  auto out = torch::empty({N, M}, occupied.options());
  const float* O = o.data_ptr<float>(); const float* D = d.data_ptr<float>(); const float* T = t.data_ptr<float>();
  const float* B = box.data_ptr<float>(); const bool* OC = occupied.data_ptr<bool>(); bool* OUT = out.data_ptr<bool>();
  const float below_one = 1.f - 1e-6f;
  #pragma omp parallel for schedule(static) num_threads(at::get_num_threads())
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t j = 0; j < M; ++j) {
      const float tt = T[n * M + j];
      int64_t ijk[3]; bool inside = true;
      if (contracted) {  // as OccupancyGrid.query: contract, then the cell of u in [0, 1)
        float x[3];
        point_on_ray(O, D, n, tt, x);
        contract_point(x);
        for (int a = 0; a < 3; ++a) {
          const float u = (x[a] - B[a]) / (B[3 + a] - B[a]);
          inside = inside && u >= 0.f && u < 1.f;
          ijk[a] = (int64_t)(std::min(std::max(u, 0.f), below_one) * (float)R);
        }
      } else {  // in grid units, clamped to the border cells
        for (int a = 0; a < 3; ++a) {
          const float scale = (float)R / (B[3 + a] - B[a]);
          const float g = (O[n * 3 + a] - B[a]) * scale + tt * (D[n * 3 + a] * scale);
          ijk[a] = (int64_t)std::min(std::max(g, 0.f), (float)(R - 1));
        }
      }
      OUT[n * M + j] = inside && OC[(ijk[0] * R + ijk[1]) * R + ijk[2]];
    }
  }
  return out;
}

// models.marching._render_one_pass in one pass (inference): each ray walks its masked samples front to back,
// composites density and colour, and stops once its optical depth reaches max_tau. Colour is evaluated
// only where a sample's weight is not 0. color: w2t (width, 1 + G) the density MLP's output layer
// transposed, b2 (1 + G,), c1t (G, C) the colour MLP's first layer's columns for the G geometry features,
// transposed, c2t (C, C), c2b (C,), c3t (C, 3), c3b (3,); ray_in (N, C): each ray's first-layer input
// from its view direction and appearance code, bias included (the same for all its samples).
// Returns weights (N, M), rgb (N, 3) (no background) and the number of samples evaluated.
std::vector<torch::Tensor> march_render(torch::Tensor o, torch::Tensor d, torch::Tensor t, torch::Tensor delta,
                                        torch::Tensor mask, std::vector<torch::Tensor> field, int64_t table_size,
                                        bool contract, std::vector<torch::Tensor> color, torch::Tensor ray_in,
                                        double max_tau, double min_od) {
  const Density F = density_of(field, table_size, contract);
  const int64_t N = t.size(0), M = t.size(1), W = F.width, G = color[1].size(0) - 1, C = color[4].size(0);
  const float* w2t = color[0].data_ptr<float>(); const float* b2 = color[1].data_ptr<float>();
  const float* c1t = color[2].data_ptr<float>(); const float* c2t = color[3].data_ptr<float>();
  const float* c2b = color[4].data_ptr<float>(); const float* c3t = color[5].data_ptr<float>();
  const float* c3b = color[6].data_ptr<float>(); const float* RI = ray_in.data_ptr<float>();
  auto weights = torch::zeros({N, M}, t.options());
  auto rgb = torch::zeros({N, 3}, t.options());
  const float* O = o.data_ptr<float>(); const float* D = d.data_ptr<float>(); const float* T = t.data_ptr<float>();
  const float* DL = delta.data_ptr<float>(); const bool* MK = mask.data_ptr<bool>();
  float* WT = weights.data_ptr<float>(); float* RGB = rgb.data_ptr<float>();
  const float tau_max = (float)max_tau, od_min = (float)min_od;
  int64_t evaluated = 0;
  #pragma omp parallel for schedule(dynamic, 4) reduction(+ : evaluated) num_threads(at::get_num_threads())
  for (int64_t n = 0; n < N; ++n) {
    float tau = 0.f, r[3] = {0.f, 0.f, 0.f};
    float h[MAX_WIDTH], out[MAX_WIDTH + 1], c1[MAX_WIDTH], c2[MAX_WIDTH], c3[3];
    for (int64_t j = 0; j < M && tau < tau_max; ++j) {
      const int64_t i = n * M + j;
      if (!MK[i]) continue;
      ++evaluated;
      float p[3];
      point_on_ray(O, D, n, T[i], p);
      if (!hidden_at(F, p, h)) continue;  // no density: weight 0
      layer(h, W, w2t, b2, 1 + G, out);
      float od = std::exp(out[0]) * DL[i];
      if (od < od_min || !(od > 0.f)) continue;  // faint (marching._skip_faint) or empty: weight 0
      const float w = std::exp(-tau) * (1.f - std::exp(-od));  // T_i * alpha_i
      WT[i] = w;
      tau += od;
      layer(out + 1, G, c1t, RI + n * C, C, c1);  // the geometry features on top of the ray's part
      for (int64_t c = 0; c < C; ++c) c1[c] = std::max(c1[c], 0.f);
      layer(c1, C, c2t, c2b, C, c2);
      for (int64_t c = 0; c < C; ++c) c2[c] = std::max(c2[c], 0.f);
      layer(c2, C, c3t, c3b, 3, c3);
      for (int a = 0; a < 3; ++a) r[a] += w / (1.f + std::exp(-c3[a]));  // sigmoid
    }
    for (int a = 0; a < 3; ++a) RGB[n * 3 + a] = r[a];
  }
  return {weights, rgb, torch::tensor(evaluated)};
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
        name, cpp_sources=SOURCE, functions=["hash_forward", "hash_backward", "hash_backward_points", "density_points", "march_density", "march_render", "occupied_along"],
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
    """Whether the fused encoding can serve points ``x`` with ``table``: CPU, float32."""
    return (_state["mode"] == "auto" and x.device.type == "cpu" and table.device.type == "cpu"
            and x.dtype == torch.float32 and table.dtype == torch.float32)


class HashEncode(torch.autograd.Function):
    """``u`` ``(N, 3)`` in the unit cube -> ``(N, L * 2)`` codes, level after level; gradients for the
    table and, when they need one (camera refinement moves them), for the points."""

    @staticmethod
    def forward(ctx, u, table, ext, res, offsets, dense, table_size):
        ctx.save_for_backward(u, table)
        ctx.consts = (ext, res, offsets, dense, table_size, table.shape[0])
        return ext.hash_forward(u, table.contiguous(), res, offsets, dense, table_size)

    @staticmethod
    def backward(ctx, grad):
        u, table = ctx.saved_tensors
        ext, res, offsets, dense, table_size, rows = ctx.consts
        grad = grad.float().contiguous()
        grad_u = grad_table = None
        if ctx.needs_input_grad[0]:
            grad_u = ext.hash_backward_points(u, grad, table.detach().contiguous(), res, offsets, dense, table_size)
        if ctx.needs_input_grad[1]:
            grad_table = ext.hash_backward(u, grad, res, offsets, dense, table_size, rows)
        return grad_u, grad_table, None, None, None, None, None

"""Multiresolution hash encoding (Mueller et al. 2022, "Instant NGP"), in pure PyTorch.

Each of ``n_levels`` grids, from ``base_res`` to ``max_res`` cells per side in geometric steps,
stores ``n_features`` learned features per vertex. Coarse levels with at most ``2^log2_size``
vertices are indexed densely; finer ones through the spatial hash of the paper,
``(x * 1) xor (y * 2654435761) xor (z * 805459861) mod 2^log2_size``. A point's code is the
trilinear interpolation of its cell's 8 vertices, concatenated over levels.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function  # named scopes for benchmarks/profile_step.py

from models import kernels

PRIMES = (1, 2654435761, 805459861)


def _accumulate_rows(idx, w, grad, n_rows, method=None):
    """The table's gradient ``(n_rows, F)``: ``sum over (l, c, n) with idx[l, c, n] == r of
    w[l, c, n] * grad[l, n]`` for ``idx``, ``w`` ``(L, 8, N)`` and ``grad`` ``(L, N, F)``.

    On the CPU one weighted ``bincount`` per feature, a plain serial loop: 3-4x faster than
    ``index_add_`` on a real step (beer: 0.55M points x 8 corners into 0.8M rows, 26 ms against
    119 ms; it was the backward's largest cost). On a GPU, ``index_add_`` (atomics). ``method``:
    "bincount" or "index_add" (default: by the device)."""
    flat = idx.reshape(-1).long()  # int64 indices: both take a slower path with int32 ones
    if method is None:
        method = "bincount" if grad.device.type == "cpu" else "index_add"
    if method == "bincount":
        cols = [torch.bincount(flat, weights=(w * grad[:, None, :, f]).reshape(-1), minlength=n_rows)
                for f in range(grad.shape[-1])]
        return torch.stack(cols, -1).to(grad.dtype)
    rows = (w[..., None] * grad[:, None]).reshape(-1, grad.shape[-1])  # (L * 8 * N, F)
    return grad.new_zeros(n_rows, grad.shape[-1]).index_add_(0, flat, rows)


class _Interpolate(torch.autograd.Function):
    """Weighted sum of table rows over the 8 corners of each cell,
    ``out[l, n] = sum_c w[l, c, n] * table[idx[l, c, n]]``: ``idx``, ``w`` ``(L, 8, N)`` -> ``(L, N, F)``.

    Corner-major inputs: every elementwise op that builds them runs over long contiguous rows of
    ``N`` (with the corners last, the broadcasts over dims of 1 and 2 were the encoding's largest
    cost on the CPU). The forward transposes them once for one ``embedding_bag`` (gather and sum in a
    single kernel, without the ``(L, N, 8, F)`` intermediate); the backward uses them as they are
    (``_accumulate_rows``). The weights get a gradient only when they need one (the points move:
    camera refinement), so training the field alone never pays for the corner gather that takes."""

    @staticmethod
    def forward(ctx, table, idx, w):
        ctx.save_for_backward(idx, w)
        ctx.n_rows = table.shape[0]
        ctx.table = table if w.requires_grad else None
        L, _, N = idx.shape
        bags = idx.transpose(1, 2).reshape(L * N, 8)
        weights = w.to(table.dtype).transpose(1, 2).reshape(L * N, 8)
        return F.embedding_bag(bags, table, per_sample_weights=weights, mode="sum").view(L, N, -1)

    @staticmethod
    def backward(ctx, grad):
        idx, w = ctx.saved_tensors
        grad_table = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_table = _accumulate_rows(idx, w.to(grad.dtype), grad, ctx.n_rows)
        if ctx.needs_input_grad[2]:  # d out[l, n] / d w[l, c, n] = table[idx[l, c, n]]
            corners = ctx.table.detach()[idx.long()].float()  # (L, 8, N, F)
            grad_w = (corners * grad.float()[:, None]).sum(-1).to(w.dtype)
        return grad_table, None, grad_w


class HashEncoding(nn.Module):
    """Args:
        aabb: ``(2, 3)`` box (min, max corners) mapped onto the unit cube; points outside are clamped.
        n_levels, n_features, log2_size, base_res, max_res: as in the paper (16, 2, 19, 16, 2048).
    Shapes:
        input ``(N, 3)`` world points -> output ``(N, n_levels * n_features)``.
    """

    def __init__(self, aabb, n_levels=16, n_features=2, log2_size=19, base_res=16, max_res=2048):
        super().__init__()
        self.n_levels, self.n_features = n_levels, n_features
        self.out_channels = n_levels * n_features
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).view(2, 3))
        growth = math.exp((math.log(max_res) - math.log(base_res)) / max(n_levels - 1, 1))
        table = 2 ** log2_size
        self.table_size = table
        res, offsets, start = [], [], 0
        for level in range(n_levels):
            r = int(math.floor(base_res * growth ** level))
            size = min(table, (r + 1) ** 3)
            res.append(r)
            offsets.append(start)
            start += size
        dense = [(r + 1) ** 3 <= table for r in res]
        assert dense == sorted(dense, reverse=True) and start < 2 ** 31  # dense levels first; int32 indices
        self.n_dense = sum(dense)
        self.register_buffer("res", torch.tensor(res, dtype=torch.float32), persistent=False)
        self.register_buffer("stride", torch.tensor(res, dtype=torch.int32) + 1, persistent=False)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.int32), persistent=False)
        self.register_buffer("dense", torch.tensor(dense, dtype=torch.uint8), persistent=False)  # (L,) 1: dense
        # the primes as wrapped int32 (2654435761 > 2^31): products keep the same low bits
        self.register_buffer("primes", torch.tensor([p if p < 2 ** 31 else p - 2 ** 32 for p in PRIMES],
                                                    dtype=torch.int32), persistent=False)
        # small uniform init, as in the paper: features start near zero
        self.table = nn.Parameter(torch.empty(start, n_features).uniform_(-1e-4, 1e-4))

    def normalize(self, x):
        """World points ``(N, 3)`` -> unit-cube coordinates, clamped to [0, 1]."""
        return ((x - self.aabb[0]) / (self.aabb[1] - self.aabb[0])).clamp(0, 1)

    @record_function("nerf/encoding")
    def forward(self, x):
        ext = kernels.extension() if self.n_features == 2 and kernels.applies(x, self.table) else None
        if ext is not None:  # the fused C++ loop (models/kernels.py): same values and table gradient
            return kernels.HashEncode.apply(self.normalize(x).contiguous(), self.table, ext, self.res, self.offsets,
                                            self.dense, self.table_size)
        return self.forward_eager(x)

    def forward_eager(self, x):
        """The PyTorch code: ``(N, 3)`` world points -> ``(N, n_levels * n_features)``."""
        N, L, k = x.shape[0], self.n_levels, self.n_dense  # levels 0..k-1 are dense, the finer ones hashed
        # Level- and corner-major layout (L, [2, 2, 2,] N): every per-axis term below is (L, 2, N), an
        # eighth of the full corner tensors, and every broadcast runs along contiguous rows of N points.
        pos = self.res[:, None, None] * self.normalize(x).T[None]  # (L, 3, N)
        cell = torch.minimum(pos.floor(), self.res[:, None, None] - 1)  # keeps u = 1 inside the last cell
        frac = pos - cell  # (L, 3, N)
        # Integer work in int32: half the memory traffic of int64, and the hash only needs the low
        # bits, which wrapping int32 products keep.
        cell = cell.to(torch.int32)
        idx = torch.empty(L, 2, 2, 2, N, dtype=torch.int32, device=x.device)  # corner (i, j, l) of each cell
        if k:  # dense: offset + x + y * stride + z * stride^2, the offset folded into the x term
            s = self.stride[:k, None, None]  # (k, 1, 1)
            ax = torch.stack([cell[:k, 0], cell[:k, 0] + 1], 1) + self.offsets[:k, None, None]  # (k, 2, N)
            ay = torch.stack([cell[:k, 1], cell[:k, 1] + 1], 1) * s
            az = torch.stack([cell[:k, 2], cell[:k, 2] + 1], 1) * (s * s)
            torch.add((ax[:, :, None] + ay[:, None])[:, :, :, None], az[:, None, None], out=idx[:k])
        if k < L:  # hashed: (x p1 xor y p2 xor z p3) mod T; the mod (a mask) distributes over xor
            mask = self.table_size - 1
            h = [torch.stack([cell[k:, a], cell[k:, a] + 1], 1) * self.primes[a] & mask for a in range(3)]  # (L-k, 2, N)
            torch.bitwise_xor((h[0][:, :, None] ^ h[1][:, None])[:, :, :, None], h[2][:, None, None], out=idx[k:])
            idx[k:] += self.offsets[k:, None, None, None, None]
        # trilinear weights: per axis (1 - f, f), multiplied across axes like the indices
        w = torch.stack([1 - frac, frac], 2)  # (L, 3, 2, N)
        w = (w[:, 0, :, None] * w[:, 1, None])[:, :, :, None] * w[:, 2, None, None]  # (L, 2, 2, 2, N)
        out = _Interpolate.apply(self.table, idx.view(L, 8, N), w.view(L, 8, N))  # (L, N, F)
        return out.transpose(0, 1).reshape(N, self.out_channels)

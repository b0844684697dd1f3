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

PRIMES = (1, 2654435761, 805459861)


class _Interpolate(torch.autograd.Function):
    """Weighted sum of table rows, ``out[b] = sum_c w[b, c] * table[idx[b, c]]``, for the 8 corners
    of a cell. The forward is one ``embedding_bag`` (gather and sum in a single kernel, without the
    ``(B, 8, F)`` intermediate); the backward a plain ``index_add_`` (on the CPU several times faster
    than the sort-based backward of ``embedding`` / advanced indexing). The weights get a gradient
    only when they need one (the points move: camera refinement), so training the field alone
    never pays for the ``(B, 8, F)`` gather that takes."""

    @staticmethod
    def forward(ctx, table, idx, w):
        ctx.save_for_backward(idx, w)
        ctx.n_rows = table.shape[0]
        ctx.table = table if w.requires_grad else None
        return F.embedding_bag(idx, table, per_sample_weights=w.to(table.dtype), mode="sum")  # (B, F)

    @staticmethod
    def backward(ctx, grad):
        idx, w = ctx.saved_tensors
        grad_table = grad_w = None
        if ctx.needs_input_grad[0]:
            rows = (w.to(grad.dtype)[:, :, None] * grad[:, None, :]).reshape(-1, grad.shape[-1])  # (B * 8, F)
            grad_table = grad.new_zeros(ctx.n_rows, grad.shape[-1])
            # int64 indices: index_add_ takes a much slower path with int32 ones
            grad_table.index_add_(0, idx.reshape(-1).long(), rows)
        if ctx.needs_input_grad[2]:  # d out[b] / d w[b, c] = table[idx[b, c]]
            corners = ctx.table.detach()[idx.long()].float()  # (B, 8, F)
            grad_w = (corners * grad.float()[:, None, :]).sum(-1).to(w.dtype)
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
        self.register_buffer("dense", torch.tensor(dense), persistent=False)
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
        N, L, k = x.shape[0], self.n_levels, self.n_dense  # levels 0..k-1 are dense, the finer ones hashed
        # Level-major layout (L, N, ...): each level group is one contiguous block, and every
        # per-axis term below is (L, N, 2), an eighth of the full (L, N, 8) corner tensors.
        pos = self.res[:, None, None] * self.normalize(x)[None]  # (L, N, 3)
        cell = torch.minimum(pos.floor(), self.res[:, None, None] - 1)  # keeps u = 1 inside the last cell
        frac = pos - cell  # (L, N, 3)
        # Integer work in int32: half the memory traffic of int64, and the hash only needs the low
        # bits, which wrapping int32 products keep.
        cell = cell.to(torch.int32)
        idx = torch.empty(L, N, 2, 2, 2, dtype=torch.int32, device=x.device)  # corner (i, j, l) of each cell
        if k:  # dense: offset + x + y * stride + z * stride^2, the offset folded into the x term
            s = self.stride[:k, None]  # (k, 1)
            ax = torch.stack([cell[:k, :, 0], cell[:k, :, 0] + 1], -1) + self.offsets[:k, None, None]  # (k, N, 2)
            ay = torch.stack([cell[:k, :, 1], cell[:k, :, 1] + 1], -1) * s[..., None]
            az = torch.stack([cell[:k, :, 2], cell[:k, :, 2] + 1], -1) * (s * s)[..., None]
            torch.add((ax[..., :, None] + ay[..., None, :])[..., None], az[..., None, None, :], out=idx[:k])
        if k < L:  # hashed: (x p1 xor y p2 xor z p3) mod T; the mod (a mask) distributes over xor
            mask = self.table_size - 1
            h = [torch.stack([cell[k:, :, a], cell[k:, :, a] + 1], -1) * self.primes[a] & mask for a in range(3)]
            torch.bitwise_xor((h[0][..., :, None] ^ h[1][..., None, :])[..., None], h[2][..., None, None, :],
                              out=idx[k:])
            idx[k:] += self.offsets[k:, None, None, None, None]
        # trilinear weights: per axis (1 - f, f), multiplied across axes like the indices
        w = torch.stack([1 - frac, frac], -1)  # (L, N, 3, 2)
        w = (w[:, :, 0, :, None] * w[:, :, 1, None, :]).reshape(L, N, 4, 1) * w[:, :, 2, None, :]  # (L, N, 4, 2)
        out = _Interpolate.apply(self.table, idx.view(L * N, 8), w.reshape(L * N, 8))  # (L * N, F)
        return out.view(L, N, self.n_features).transpose(0, 1).reshape(N, self.out_channels)

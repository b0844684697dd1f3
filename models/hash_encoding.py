"""Multiresolution hash encoding (Mueller et al. 2022, "Instant NGP"), in pure PyTorch.

Each of ``n_levels`` grids, from ``base_res`` to ``max_res`` cells per side in geometric steps,
stores ``n_features`` learned features per vertex. Coarse levels with at most ``2^log2_size``
vertices are indexed densely; finer ones through the spatial hash of the paper,
``(x * 1) xor (y * 2654435761) xor (z * 805459861) mod 2^log2_size``. A point's code is the
trilinear interpolation of its cell's 8 vertices, concatenated over levels.
"""
import math

import torch
from torch import nn
from torch.profiler import record_function  # named scopes for benchmarks/profile_step.py

PRIMES = (1, 2654435761, 805459861)


class _Gather(torch.autograd.Function):
    """``table[idx]`` whose backward is a plain ``index_add_``: on the CPU several times faster
    than the sort-based backward of ``embedding`` / advanced indexing."""

    @staticmethod
    def forward(ctx, table, idx):
        ctx.save_for_backward(idx)
        ctx.n_rows = table.shape[0]
        return table.index_select(0, idx.reshape(-1)).view(*idx.shape, table.shape[1])

    @staticmethod
    def backward(ctx, grad):
        (idx,) = ctx.saved_tensors
        grad_table = grad.new_zeros(ctx.n_rows, grad.shape[-1])
        # int64 indices: index_add_ takes a much slower path with int32 ones
        grad_table.index_add_(0, idx.reshape(-1).long(), grad.reshape(-1, grad.shape[-1]))
        return grad_table, None


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
        N, L = x.shape[0], self.n_levels
        u = self.normalize(x)  # (N, 3)
        pos = u[:, None, :] * self.res[None, :, None]  # (N, L, 3)
        cell = pos.floor().clamp(max=self.res[None, :, None] - 1)  # keeps u = 1 inside the last cell
        frac = pos - cell  # (N, L, 3)
        # Integer work in int32: half the memory traffic of int64, and the hash only needs the low
        # bits, which wrapping int32 products keep. Per axis, the cell's two vertex coordinates
        # (N, L, 3, 2); corners come from broadcasting the three axes, (N, L, 2, 2, 2) -> (N, L, 8).
        cell = cell.to(torch.int32)
        v = torch.stack([cell, cell + 1], -1)
        k = self.n_dense  # levels 0..k-1 are dense, the finer ones hashed
        parts = []
        if k:
            stride = self.stride[None, :k, None]  # (1, k, 1)
            vx, vy, vz = v[:, :k, 0], v[:, :k, 1] * stride, v[:, :k, 2] * (stride * stride)
            parts.append(vx[..., :, None, None] + vy[..., None, :, None] + vz[..., None, None, :])
        if k < L:
            hx, hy, hz = (v[:, k:, a] * self.primes[a] for a in range(3))  # (N, L - k, 2) each
            parts.append((hx[..., :, None, None] ^ hy[..., None, :, None] ^ hz[..., None, None, :]) & (self.table_size - 1))
        idx = (parts[0] if len(parts) == 1 else torch.cat(parts, 1)).view(N, L, 8) + self.offsets[None, :, None]
        feats = _Gather.apply(self.table, idx)  # (N, L, 8, F)

        # trilinear weights: per axis (1 - f, f), multiplied across axes like the indices
        w = torch.stack([1 - frac, frac], -1)  # (N, L, 3, 2)
        w = w[:, :, 0, :, None, None] * w[:, :, 1, None, :, None] * w[:, :, 2, None, None, :]
        out = (feats * w.reshape(N, L, 8, 1).to(feats.dtype)).sum(2)  # (N, L, F)
        return out.reshape(N, self.out_channels)

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
        grad_table.index_add_(0, idx.reshape(-1), grad.reshape(-1, grad.shape[-1]))
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
        res, sizes, offsets, start = [], [], [], 0
        for level in range(n_levels):
            r = int(math.floor(base_res * growth ** level))
            size = min(table, (r + 1) ** 3)
            res.append(r)
            sizes.append(size)
            offsets.append(start)
            start += size
        self.register_buffer("res", torch.tensor(res, dtype=torch.long), persistent=False)
        self.register_buffer("sizes", torch.tensor(sizes, dtype=torch.long), persistent=False)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long), persistent=False)
        self.register_buffer("dense", torch.tensor([(r + 1) ** 3 <= table for r in res]), persistent=False)
        # small uniform init, as in the paper: features start near zero
        self.table = nn.Parameter(torch.empty(start, n_features).uniform_(-1e-4, 1e-4))

    def normalize(self, x):
        """World points ``(N, 3)`` -> unit-cube coordinates, clamped to [0, 1]."""
        return ((x - self.aabb[0]) / (self.aabb[1] - self.aabb[0])).clamp(0, 1)

    @record_function("nerf/encoding")
    def forward(self, x):
        u = self.normalize(x)  # (N, 3)
        pos = u[:, None, :] * self.res[None, :, None]  # (N, L, 3)
        cell = pos.floor().long().clamp(max=self.res[None, :, None] - 1)  # keeps u = 1 inside the last cell
        frac = pos - cell  # (N, L, 3)
        # per axis, the two vertex coordinates of the cell: (N, L, 3, 2); corners are then built by
        # broadcasting the three axes, (N, L, 2, 2, 2) -> (N, L, 8), never an (N, L, 8, 3) tensor
        v = torch.stack([cell, cell + 1], -1)
        hx, hy, hz = (v[:, :, a] * PRIMES[a] for a in range(3))  # (N, L, 2) each
        hashed = hx[..., :, None, None] ^ hy[..., None, :, None] ^ hz[..., None, None, :]
        stride = (self.res + 1)[None, :, None]  # (1, L, 1)
        dx, dy, dz = v[:, :, 0], v[:, :, 1] * stride, v[:, :, 2] * stride * stride
        dense_idx = dx[..., :, None, None] + dy[..., None, :, None] + dz[..., None, None, :]
        idx = torch.where(self.dense[None, :, None, None, None], dense_idx, hashed & (self.table_size - 1))
        idx = idx.view(x.shape[0], self.n_levels, 8) + self.offsets[None, :, None]
        feats = _Gather.apply(self.table, idx)  # (N, L, 8, F)

        # trilinear weights: per axis (1 - f, f), multiplied across axes like the indices
        w = torch.stack([1 - frac, frac], -1)  # (N, L, 3, 2)
        w = w[:, :, 0, :, None, None] * w[:, :, 1, None, :, None] * w[:, :, 2, None, None, :]
        out = (feats * w.reshape(x.shape[0], self.n_levels, 8, 1).to(feats.dtype)).sum(2)  # (N, L, F)
        return out.reshape(x.shape[0], self.out_channels)

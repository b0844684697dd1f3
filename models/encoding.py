"""Positional encoding of NeRF (Mildenhall et al. 2020, eq. 4)."""
import torch
from torch.profiler import record_function  # named scopes for benchmarks/profile_step.py
from torch import nn


class PosEmbedding(nn.Module):
    """Maps x to ``[x, sin(2^0 x), cos(2^0 x), ..., sin(2^(L-1) x), cos(2^(L-1) x)]``.

    Unlike the paper, x itself is kept in the output (as the seed and the official code do): it
    gives the MLP a direct, low-frequency view of the input.

    Args:
        n_freqs: number of frequencies L.
        in_channels: size of the last input dimension (3 for points and directions).
    Shapes:
        input ``(..., in_channels)`` -> output ``(..., out_channels)`` with
        ``out_channels = in_channels * (2 * n_freqs + 1)`` (63 for xyz with L=10, 27 for dirs with L=4).
    """

    def __init__(self, n_freqs, in_channels=3):
        super().__init__()
        self.n_freqs = n_freqs
        self.in_channels = in_channels
        self.out_channels = in_channels * (2 * n_freqs + 1)
        self.register_buffer("freqs", 2.0 ** torch.arange(n_freqs, dtype=torch.float32), persistent=False)

    @record_function("nerf/encoding")
    def forward(self, x):
        scaled = x[..., None, :] * self.freqs[:, None]  # (..., L, C)
        enc = torch.stack([torch.sin(scaled), torch.cos(scaled)], dim=-2)  # (..., L, 2, C)
        return torch.cat([x, enc.flatten(-3)], dim=-1)  # (..., C * (2L + 1))


class SHEncoding(nn.Module):
    """Real spherical harmonics up to degree 3 (16 coefficients) of unit directions.

    Shapes: input ``(..., 3)`` (normalized here) -> output ``(..., 16)``. Used by the fast path
    for view directions: smooth and cheaper than a frequency encoding.
    """

    out_channels = 16

    @record_function("nerf/encoding")
    def forward(self, d):
        d = torch.nn.functional.normalize(d, dim=-1)
        x, y, z = d.unbind(-1)
        xx, yy, zz = x * x, y * y, z * z
        return torch.stack([
            torch.full_like(x, 0.28209479177387814),
            -0.48860251190291987 * y, 0.48860251190291987 * z, -0.48860251190291987 * x,
            1.0925484305920792 * x * y, -1.0925484305920792 * y * z, 0.94617469575755997 * zz - 0.31539156525251999,
            -1.0925484305920792 * x * z, 0.54627421529603959 * (xx - yy),
            0.59004358992664352 * y * (yy - 3 * xx), 2.8906114426405538 * x * y * z,
            0.45704579946446572 * y * (1 - 5 * zz), 0.3731763325901154 * z * (5 * zz - 3),
            0.45704579946446572 * x * (1 - 5 * zz), 1.4453057213202769 * z * (xx - yy),
            0.59004358992664352 * x * (3 * yy - xx),
        ], -1)

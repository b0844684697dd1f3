"""Positional encoding of NeRF (Mildenhall et al. 2020, eq. 4)."""
import torch
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

    def forward(self, x):
        scaled = x[..., None, :] * self.freqs[:, None]  # (..., L, C)
        enc = torch.stack([torch.sin(scaled), torch.cos(scaled)], dim=-2)  # (..., L, 2, C)
        return torch.cat([x, enc.flatten(-3)], dim=-1)  # (..., C * (2L + 1))

"""The ray batch type shared by the datasets (which build rays) and the renderer (which consumes them)."""
from typing import NamedTuple

import torch


class Rays(NamedTuple):
    """A batch of rays. ``origins``, ``directions``: ``(N_rays, 3)``; ``near``, ``far``: ``(N_rays, 1)``.

    Distances along a ray are in units of ``directions`` (unit vectors for metric rays, so depth
    is metric; NDC rays are not normalized, as in the paper).
    """

    origins: torch.Tensor
    directions: torch.Tensor
    near: torch.Tensor
    far: torch.Tensor

    def __len__(self):
        return self.origins.shape[0]

    def __getitem__(self, idx):
        return Rays(*(t[idx] for t in self))

    def to(self, *args, **kwargs):
        return Rays(*(t.to(*args, **kwargs) for t in self))

"""The ray batch type shared by the datasets (which build rays) and the renderer (which consumes them)."""
from typing import NamedTuple, Optional

import torch


class Rays(NamedTuple):
    """A batch of rays. ``origins``, ``directions``: ``(N_rays, 3)``; ``near``, ``far``: ``(N_rays, 1)``.

    Distances along a ray are in units of ``directions`` (unit vectors for metric rays, so depth
    is metric; NDC rays are not normalized, as in the paper).

    ``image``: ``(N_rays,)`` long, the index of the training image each ray comes from (the
    datasets fill it for their train split only), or None for rays of any other view (held-out
    images, render paths, the viewer, mesh colours). A field with per-image appearance codes
    (``--appearance_dim``) colours a ray with its image's code, and a ray without one with the
    mean of the training codes.

    ``viewdirs``: ``(N_rays, 3)`` the direction fields see as the view direction, when it is not
    ``directions``: unit world-space directions of NDC rays (``--ndc_viewdirs world``, as the
    original NeRF feeds them), or None (fields see ``directions``).
    """

    origins: torch.Tensor
    directions: torch.Tensor
    near: torch.Tensor
    far: torch.Tensor
    image: Optional[torch.Tensor] = None
    viewdirs: Optional[torch.Tensor] = None

    @property
    def view_directions(self):
        """What fields take as the view direction: ``viewdirs`` when set, else ``directions``."""
        return self.directions if self.viewdirs is None else self.viewdirs

    def __len__(self):
        return self.origins.shape[0]

    def __getitem__(self, idx):
        return Rays(*(None if t is None else t[idx] for t in self))

    def to(self, *args, **kwargs):
        """Move (and cast) the float tensors; ``image`` only moves, it stays an integer index."""
        moved = [t.to(*args, **kwargs) for t in (self.origins, self.directions, self.near, self.far)]
        image = None if self.image is None else self.image.to(moved[0].device,
                                                              non_blocking=kwargs.get("non_blocking", False))
        viewdirs = None if self.viewdirs is None else self.viewdirs.to(*args, **kwargs)
        return Rays(*moved, image, viewdirs)

    @staticmethod
    def cat(batches):
        """One ``Rays`` of several, in order; ``image`` and ``viewdirs`` are kept only when every batch has them."""
        batches = list(batches)

        def joined(key):
            parts = [getattr(b, key) for b in batches]
            return None if any(p is None for p in parts) else torch.cat(parts)

        return Rays(*(joined(k) for k in ("origins", "directions", "near", "far", "image", "viewdirs")))

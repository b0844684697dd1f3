"""Occupancy grid for empty-space skipping (the fast path), maintained during training.

A ``resolution^3`` grid over the scene box keeps, per cell, an exponential moving maximum of the
opacity a ray step would pick up there (``sigma * step_size``, a cheap proxy for alpha). Cells
above ``min(mean, threshold)`` are occupied; ray marching only evaluates samples in occupied
cells. Cells that no training camera sees are never occupied. Pure PyTorch, CPU or GPU.

Unbounded scenes (``contracted=True``): the grid covers contracted space (``models.contraction``,
box ``[-2, 2]^3``), points are contracted before lookup, and a cell's opacity proxy uses the world
length of a step there (``step_size`` times the contraction's radial stretch), since the marcher's
background steps grow the same way. Cells outside the ball of radius 2 hold no point and stay empty.
"""
import numpy as np
import torch
from torch import nn

from models import kernels
from models.contraction import CONTRACTED_RADIUS, contract, uncontract, world_length_scale


class OccupancyGrid(nn.Module):
    """Args:
        aabb: ``(2, 3)`` scene box (min corner, max corner).
        resolution: cells per side.
        step_size: the ray-marching step (world units) used with this grid.
        contracted: the box is in contracted space (unbounded scenes): world points are contracted
            before lookup and ``cell_points`` returns world points.
        decay: the share of a cell's old opacity each refresh keeps (``update``).
        alpha_threshold: the marcher (``models.marching``) skips samples of lower opacity, in
            training and rendering alike (kept here with ``step_size``: both shape the samples).
    Buffers (saved in checkpoints): ``aabb``, ``step_size``, ``opacity`` ``(R^3,)`` (-1 marks cells
    no camera sees), ``occupied`` ``(R^3,)`` bool.
    """

    def __init__(self, aabb, resolution=128, step_size=0.005, contracted=False, decay=0.95, alpha_threshold=0.0):
        super().__init__()
        self.resolution, self.contracted, self.decay = resolution, bool(contracted), float(decay)
        self.alpha_threshold = float(alpha_threshold)
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).view(2, 3).clone())
        self.register_buffer("step_size", torch.tensor(float(step_size)))
        self.register_buffer("opacity", torch.zeros(resolution ** 3))
        self.register_buffer("occupied", torch.ones(resolution ** 3, dtype=torch.bool))  # until the first update
        if self.contracted:  # cells whose centre lies beyond radius 2 contain no contracted point
            far = self._centres().norm(dim=-1) > CONTRACTED_RADIUS + 0.5 * self.cell_size.norm()
            self.opacity[far] = -1.0
            self.occupied &= ~far

    def _centres(self):
        R = self.resolution
        ijk = torch.stack(torch.meshgrid(*[torch.arange(R)] * 3, indexing="ij"), -1).view(-1, 3)
        return self.aabb[0] + (ijk + 0.5) * self.cell_size

    @property
    def cell_size(self):
        return (self.aabb[1] - self.aabb[0]) / self.resolution  # (3,)

    def cell_index(self, x):
        """Flat cell index of points ``x`` ``(N, 3)`` and whether they lie inside the box ``(N,)``."""
        u = (x - self.aabb[0]) / (self.aabb[1] - self.aabb[0])
        inside = ((u >= 0) & (u < 1)).all(-1)
        ijk = (u.clamp(0, 1 - 1e-6) * self.resolution).long()
        R = self.resolution
        return (ijk[:, 0] * R + ijk[:, 1]) * R + ijk[:, 2], inside

    def query(self, x):
        """``(N, 3)`` world points -> ``(N,)`` bool: inside the box and in an occupied cell."""
        idx, inside = self.cell_index(contract(x) if self.contracted else x)
        return self.occupied[idx] & inside

    def occupied_along(self, origins, directions, t):
        """Whether the points ``origins + t * directions`` are in occupied cells: ``(N, M)`` bool for
        rays ``(N, 3)`` and distances ``t`` ``(N, M)`` (the marchers' lookup). A bounded grid takes the
        cell index straight from ``t`` in grid units, with no point tensor and no boolean gathers; points
        outside its box are clamped to the border cells, so mask them by the ray's range. A contracted
        grid contracts the points first (they all lie in its box). On the CPU, one fused C++ loop
        (``models/kernels.py``) where it is built: the same cells."""
        ext = kernels.extension() if kernels.applies(t, self.opacity) else None
        if ext is not None:
            return ext.occupied_along(origins.contiguous(), directions.contiguous(), t.contiguous(), self.occupied,
                                      self.aabb.contiguous(), self.resolution, self.contracted)
        if self.contracted:
            return self.query((origins[:, None] + directions[:, None] * t[..., None]).view(-1, 3)).view(t.shape)
        R = self.resolution
        scale = R / (self.aabb[1] - self.aabb[0])  # (3,) cells per world unit
        start = (origins - self.aabb[0]) * scale  # (N, 3) in cells
        step = directions * scale
        ijk = torch.addcmul(start[:, None], t[..., None], step[:, None]).clamp_(0, R - 1).to(torch.int32)  # (N, M, 3)
        idx = (ijk[..., 0] * R + ijk[..., 1]) * R + ijk[..., 2]
        return self.occupied[idx]

    def cell_points(self, idx, jitter=True):
        """A world point in each cell ``idx`` ``(K,)``: random inside it, or its centre. ``(K, 3)``."""
        R = self.resolution
        ijk = torch.stack([idx // (R * R), (idx // R) % R, idx % R], -1).float()
        offset = torch.rand_like(ijk) if jitter else torch.full_like(ijk, 0.5)
        y = self.aabb[0] + (ijk + offset) * self.cell_size
        return uncontract(y) if self.contracted else y

    def step_length(self, x):
        """World length of a marching step at world points ``x`` ``(K, 3)``: ``(K,)``."""
        if not self.contracted:
            return self.step_size.expand(len(x))
        return self.step_size * world_length_scale(contract(x))

    @torch.no_grad()
    def mark_invisible(self, K, poses, img_wh, near=0.0, max_res=64):
        """Exclude cells that project outside every training image (or lie closer than ``near``).

        Measured on a grid of at most ``max_res`` cells per side (each fine cell takes the verdict
        of the coarse cell it lies in), with a margin of half a coarse cell, so it stays cheap.

        Args: K ``(3, 3)`` or one per image ``(N_images, 3, 3)``, poses ``(N_images, 3, 4)``
            camera-to-world (OpenGL convention), img_wh (W, H).
        """
        dev = self.aabb.device
        poses = torch.as_tensor(poses, dtype=torch.float32, device=dev)
        Ks = torch.as_tensor(np.asarray(K), dtype=torch.float32, device=dev).expand(len(poses), 3, 3)
        W, H = img_wh
        R = self.resolution
        r = next(c for c in range(min(R, max_res), 0, -1) if R % c == 0)  # a divisor of R
        ijk = torch.stack(torch.meshgrid(*[torch.arange(r, device=dev)] * 3, indexing="ij"), -1).view(-1, 3)
        size = (self.aabb[1] - self.aabb[0]) / r
        centres = self.aabb[0] + (ijk + 0.5) * size  # (r^3, 3)
        margin = 0.5 * size.norm()
        if self.contracted:  # in world units: a contracted cell far out spans a lot of world
            margin = margin * world_length_scale(centres)
            centres = uncontract(centres)
        seen = torch.zeros(len(centres), dtype=torch.bool, device=dev)
        for c2w, K in zip(poses, Ks):  # one camera at a time: memory stays O(r^3)
            cam = (centres - c2w[:, 3]) @ c2w[:, :3]  # world -> camera: R^T (x - t)
            z = -cam[:, 2]  # the camera looks along -z
            zc = z.clamp(min=1e-6)
            pad_u, pad_v = K[0, 0] * margin / zc, K[1, 1] * margin / zc  # the margin in pixels
            u = K[0, 0] * cam[:, 0] / zc + K[0, 2]
            v = -K[1, 1] * cam[:, 1] / zc + K[1, 2]
            seen |= (z + margin > near) & (u > -pad_u) & (u < W + pad_u) & (v > -pad_v) & (v < H + pad_v)
        f = R // r  # upsample the coarse verdict to the full grid
        seen = seen.view(r, r, r).repeat_interleave(f, 0).repeat_interleave(f, 1).repeat_interleave(f, 2).reshape(-1)
        self.opacity[~seen] = -1.0
        self.occupied &= seen

    @torch.no_grad()
    def update(self, step, density_fn, every=16, warmup_steps=256, threshold=0.01):
        """Refresh the grid every ``every`` steps (call it once per training step).

        During ``warmup_steps`` every cell is re-measured; later a random quarter of all cells plus
        as many of the occupied ones, each keeping ``self.decay`` of its old opacity.
        ``density_fn(x (K, 3)) -> (K,)`` is the field's density.
        """
        if step % every:
            return
        n_cells = self.resolution ** 3
        valid = self.opacity >= 0
        if step < warmup_steps:
            idx = torch.nonzero(valid).squeeze(-1)
        else:
            idx = torch.randint(0, n_cells, (n_cells // 4,), device=self.opacity.device)
            occ = torch.nonzero(self.occupied).squeeze(-1)
            if len(occ):
                idx = torch.cat([idx, occ[torch.randint(0, len(occ), (n_cells // 4,), device=occ.device)]])
            idx = idx[valid[idx]]
        new = []
        for i in range(0, len(idx), 1 << 18):
            x = self.cell_points(idx[i:i + (1 << 18)])
            new.append(density_fn(x).float() * self.step_length(x))
        new = torch.cat(new) if new else torch.zeros(0, device=self.opacity.device)
        self.opacity[idx] = torch.maximum(self.opacity[idx] * self.decay, new)
        cut = min(self.opacity[valid].mean().item(), threshold)
        self.occupied = (self.opacity > cut) & valid
        if not self.occupied.any():
            # every cell alike (e.g. densities that all underflowed to 0): an empty grid would give no
            # samples, hence no gradients, and could never recover, so keep every visible cell
            self.occupied = valid.clone()

    def occupancy_rate(self):
        return self.occupied.float().mean().item()

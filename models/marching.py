"""Ray marching through an occupancy grid (the fast path's sampler and renderer).

Rays step through the scene box at a fixed step; samples in empty cells are dropped; a first,
gradient-free pass measures density to find where each ray's transmittance falls below
``early_stop_eps`` (early ray termination) and the field is then evaluated, with gradients, only
on the samples that still matter. Compositing is ``models.compositing.composite``'s formula with
the real step lengths (no infinite last interval: what is left shows the background).
Samples are kept padded, ``(N_rays, M)`` with a mask, so the formulas stay those of the vanilla path.

Unbounded scenes (a grid over contracted space, ``OccupancyGrid(contracted=True)``): fixed steps
inside the foreground (the unit ball), then steps uniform in disparity up to ``far``, as many as
fixed steps would take to cross the contracted background shell (radius 1 to 2), so the background
costs few samples and its steps grow with the square of the distance, like its contracted cells.
"""
import math

import torch
from torch.profiler import record_function  # named scopes for benchmarks/profile_step.py

from models.appearance import ray_codes
from models.contraction import distance_from_parameter, ray_parameter, ray_segments
from models.compositing import composite, query_field


def ray_aabb(rays_o, rays_d, aabb):
    """Entry and exit distances of rays ``(N, 3)`` through a box ``(2, 3)``: ``t_in``, ``t_out`` ``(N,)``
    (``t_in >= t_out`` when a ray misses)."""
    with torch.no_grad():
        inv = 1.0 / torch.where(rays_d.abs() < 1e-9, torch.full_like(rays_d, 1e-9), rays_d)
        t0, t1 = (aabb[0] - rays_o) * inv, (aabb[1] - rays_o) * inv
        return torch.minimum(t0, t1).amax(-1), torch.maximum(t0, t1).amin(-1)


@record_function("nerf/sampling")
def march(rays, grid, step_size, perturb=False):
    """Fixed-step samples along rays, kept where the grid is occupied.

    Args:
        rays: ``Rays``; near/far ``(N, 1)`` are intersected with the grid's box.
        grid: ``OccupancyGrid``.
        step_size: step length in world units (divided by each ray's direction norm).
        perturb: jitter the first sample inside its step (training).
    Returns:
        t ``(N, M)`` sample distances (interval midpoints), dt ``(N, M)`` step in ray units (one per ray, expanded),
        mask ``(N, M)`` bool (inside the ray's range and in an occupied cell).
    """
    o, d = rays.origins, rays.directions
    t_in, t_out = ray_aabb(o, d, grid.aabb)
    t0 = torch.maximum(t_in, rays.near[:, 0])
    t1 = torch.minimum(t_out, rays.far[:, 0])
    dt = step_size / d.norm(dim=-1)  # (N,)
    n_steps = ((t1 - t0) / dt).clamp(min=0)
    M = max(int(math.ceil(n_steps.max().item())) if len(n_steps) else 0, 1)
    offset = torch.rand_like(t0)[:, None] if perturb else 0.5
    t = t0[:, None] + (torch.arange(M, device=o.device, dtype=o.dtype)[None] + offset) * dt[:, None]  # (N, M)
    mask = (t < t1[:, None]) & grid.occupied_along(o, d, t)
    return t, dt[:, None].expand(-1, M), mask


@record_function("nerf/sampling")
def march_unbounded(rays, grid, step_size, perturb=False):
    """``march`` for an unbounded scene: fixed steps of ``step_size`` from ``near`` to where the
    ray leaves the unit ball, then ``ceil(1 / step_size)`` steps uniform in disparity up to ``far``
    (``models.contraction.ray_parameter``). Returns t, dt, mask, each ``(N, M)`` (dt per sample)."""
    o, d = rays.origins, rays.directions
    near, t_mid, far = ray_segments(rays)  # (N, 1) each
    dt_in = step_size / d.norm(dim=-1, keepdim=True)  # (N, 1)
    m_in = max(int(math.ceil(((t_mid - near) / dt_in).max().item())) if len(o) else 0, 1)
    offset = torch.rand_like(near) if perturb else torch.full_like(near, 0.5)  # (N, 1)
    k = torch.arange(m_in, device=o.device, dtype=o.dtype)[None]
    t_in = near + (k + offset) * dt_in  # (N, m_in)
    n_out = int(math.ceil(1.0 / step_size))
    edges = 0.5 + 0.5 * torch.arange(n_out + 1, device=o.device, dtype=o.dtype)[None] / n_out  # (1, n_out + 1) in s
    t_edges = distance_from_parameter(edges.expand(len(o), -1), near, t_mid, far)  # (N, n_out + 1)
    lo, hi = t_edges[:, :-1], t_edges[:, 1:]
    t_out = lo + offset * (hi - lo)
    t = torch.cat([t_in, t_out], 1)
    dt = torch.cat([dt_in.expand(-1, m_in), hi - lo], 1)
    in_range = torch.cat([t_in < t_mid, torch.ones_like(t_out, dtype=torch.bool)], 1)
    return t, dt, in_range & grid.occupied_along(o, d, t)


def _skip_faint(od, min_od):
    """Optical depths ``od`` with those below ``min_od`` set to 0: such a sample is skipped, as if
    its cell were empty (``--alpha_threshold``: ``min_od = -log(1 - alpha_threshold)``)."""
    return od if min_od <= 0 else torch.where(od >= min_od, od, torch.zeros_like(od))


def _live_blocks(mask, optical_depth, max_tau, block):
    """Blocks of samples along the rays, front to back: yields ``(b, m)`` with ``m`` ``(N, B)`` the
    samples of ``mask[:, b:b + block]`` on rays whose optical depth (``optical_depth()``, ``(N,)``,
    read anew for each block) is still below ``max_tau``; stops once no ray is left."""
    for b in range(0, mask.shape[1], block):
        alive = optical_depth() < max_tau
        if not alive.any():
            return
        m = mask[:, b:b + block] & alive[:, None]
        if m.any():
            yield b, m


@torch.no_grad()
@record_function("nerf/sampling")
def _visible_samples(field, rays, t, dt, mask, early_stop_eps, min_od=0.0, block=64):
    """Samples that still contribute: occupied, with transmittance above ``early_stop_eps`` and,
    when ``min_od > 0``, an optical depth of at least ``min_od`` (``_skip_faint``).

    Density is measured block by block along the rays, and rays already opaque are skipped, so
    the work stops at the first surface.
    """
    N = t.shape[0]
    delta = dt * rays.directions.norm(dim=-1, keepdim=True)  # (N, M) step in world units
    max_tau = -math.log(early_stop_eps)
    fused = getattr(field, "march_visible", None)  # a field that walks its rays itself, sample by sample
    keep = None if fused is None else fused(rays.origins, rays.directions, t, delta, mask, max_tau, min_od)
    if keep is not None:
        return keep
    tau = torch.zeros(N, device=t.device)  # optical depth so far
    keep = torch.zeros_like(mask)
    for b, m in _live_blocks(mask, lambda: tau, max_tau, block):
        keep[:, b:b + block] = m
        x = rays.origins[:, None] + rays.directions[:, None] * t[:, b:b + block, None]
        sig = torch.zeros(m.shape, device=t.device)
        sig[m] = torch.relu(query_field(field, x[m]).float())
        # exclusive optical depth in front of each sample of the block
        od = _skip_faint(sig * delta[:, b:b + block], min_od)
        cum = tau[:, None] + torch.cumsum(od, 1) - od
        keep[:, b:b + block] &= (cum < max_tau) & (od >= min_od)
        tau = tau + od.sum(1)
    return keep


@torch.no_grad()
@record_function("nerf/field")
def _render_one_pass(field, rays, t, dt, mask, early_stop_eps, code=None, min_od=0.0, block=64):
    """Inference (no gradients): density and colour together, block by block along the rays,
    compositing as it goes and skipping rays already opaque, so each kept sample is evaluated once
    (training needs the two passes: the first, gradient-free, picks the samples to back-propagate).
    A sample counts while the optical depth in front of it is below ``-log(early_stop_eps)``, as in
    ``_visible_samples``. A field with ``march_render`` (the fused CPU kernel) walks the rays itself.

    Returns weights ``(N, M)`` (``composite``'s, up to its 1e-10 guard) and rgb ``(N, 3)`` (no background)
    and the number of samples evaluated.
    """
    N, M = t.shape
    delta = dt * rays.directions.norm(dim=-1, keepdim=True)  # (N, M) step in world units
    max_tau, evaluated = -math.log(early_stop_eps), 0
    fused = getattr(field, "march_render", None)  # a field that walks its rays itself, sample by sample
    out = None if fused is None else fused(rays.origins, rays.directions, rays.view_directions, code, t, delta, mask,
                                           max_tau, min_od)
    if out is not None:
        return out
    tau = torch.zeros(N, device=t.device)  # optical depth so far
    weights = torch.zeros(N, M, device=t.device)
    rgb = torch.zeros(N, 3, device=t.device)
    for b, m in _live_blocks(mask, lambda: tau, max_tau, block):
        B = m.shape[1]
        x = rays.origins[:, None] + rays.directions[:, None] * t[:, b:b + block, None]
        d = rays.view_directions[:, None].expand(N, B, 3)
        c = None if code is None else code[:, None].expand(N, B, code.shape[-1])[m]
        sig_m, rgb_m = query_field(field, x[m], d[m], code=c)
        evaluated += len(sig_m)
        sig = torch.zeros(m.shape, device=t.device)
        sig[m] = torch.relu(sig_m.float())
        col = torch.zeros(N, B, 3, device=t.device)
        col[m] = rgb_m.float()
        od = _skip_faint(sig * delta[:, b:b + block], min_od)
        cum = tau[:, None] + torch.cumsum(od, 1) - od  # optical depth in front of each sample
        # T_i * alpha_i, up to the optical depth where the ray stops (as training's _visible_samples keeps)
        w = torch.exp(-cum) * (1 - torch.exp(-od)) * (cum < max_tau)
        weights[:, b:b + block] = w
        rgb += (w[..., None] * col).sum(1)
        tau = tau + od.sum(1)
    return weights, rgb, evaluated


def render_marched(field, grid, rays, step_size, perturb=False, white_back=False, early_stop_eps=1e-4):
    """Render rays through an occupancy grid with one field (with ``rays.image``, a field with
    appearance codes colours each sample with its ray's image code). Samples whose opacity is below
    ``grid.alpha_threshold`` are skipped in training and inference alike, so both composite the same
    samples (training then back-propagates through fewer of them).

    Returns dict ``rgb_coarse`` ``(N, 3)``, ``depth_coarse`` ``(N,)``, ``opacity_coarse`` ``(N,)``,
    ``weights_coarse`` ``(N, M)``, ``z_vals_coarse`` ``(N, M)`` and ``n_samples`` (samples evaluated
    with gradients, for logging). Without gradients (eval, the viewer) each sample is evaluated once.
    """
    marcher = march_unbounded if getattr(grid, "contracted", False) else march
    t, dt, mask = marcher(rays, grid, step_size, perturb)
    min_od = -math.log1p(-getattr(grid, "alpha_threshold", 0.0))  # alpha = 1 - exp(-od) >= threshold
    if not torch.is_grad_enabled():  # inference: one pass over the samples
        weights, rgb, evaluated = _render_one_pass(field, rays, t, dt, mask, early_stop_eps, ray_codes(field, rays),
                                                   min_od=min_od)
        opacity = weights.sum(-1)
        if white_back:
            rgb = rgb + (1 - opacity[:, None])
        return {"rgb_coarse": rgb, "depth_coarse": (weights * t).sum(-1), "opacity_coarse": opacity,
                "weights_coarse": weights, "z_vals_coarse": t, "n_samples": torch.tensor(evaluated)}
    keep = _visible_samples(field, rays, t, dt, mask, early_stop_eps, min_od=min_od)
    N, M = t.shape
    x = rays.origins[:, None] + rays.directions[:, None] * t[..., None]
    d = rays.view_directions[:, None].expand(N, M, 3)
    code = ray_codes(field, rays)  # (N, dim) for rays of training images, else None (the mean code)
    if code is not None:
        code = code[:, None].expand(N, M, code.shape[-1])[keep]  # one per kept sample, like d
    sig_k, rgb_k = query_field(field, x[keep], d[keep], code=code)
    sigmas = torch.zeros(N, M, device=t.device, dtype=torch.float32).masked_scatter(keep, sig_k.float())
    rgbs = torch.zeros(N, M, 3, device=t.device, dtype=torch.float32)
    rgbs[keep] = rgb_k.float()

    out = composite(sigmas, rgbs, t, rays.directions, white_back=white_back, deltas=dt)
    out = {f"{k}_coarse": v for k, v in out.items()}
    s_lo, s_hi = normalized_parameter(rays, t - 0.5 * dt, t + 0.5 * dt, grid=grid)
    out.update(z_vals_coarse=t, n_samples=keep.sum(), s_mid_coarse=0.5 * (s_lo + s_hi), s_width_coarse=s_hi - s_lo)
    return out


def normalized_parameter(rays, *ts, grid):
    """Distances ``t`` ``(N, M)`` along ``rays`` as the normalized ray parameter ``s`` in [0, 1] the
    distortion loss measures in: ``models.contraction.ray_parameter`` in an unbounded scene
    (``grid.contracted``), else ``(t - near) / (far - near)``. Returns one tensor per ``ts``."""
    if getattr(grid, "contracted", False):
        near, t_mid, far = ray_segments(rays)
        return tuple(ray_parameter(t, near, t_mid, far) for t in ts)
    span = (rays.far - rays.near).clamp(min=1e-6)
    return tuple(((t - rays.near) / span).clamp(0, 1) for t in ts)

"""The two steps every renderer shares: evaluate a field on points, composite samples into pixels.

``models.rendering`` (NeRF's stratified and hierarchical samples) and ``models.marching`` (the fast
path's occupancy-grid marching) both build on these two; the renderer hands fast-path rays to the
marcher, which needs nothing else from it.
A *field* is anything with ``field(x, d) -> (sigma, rgb)`` and ``field.query_density(x) -> sigma``
(see ``models.rendering``'s docstring).
"""
import torch
from torch.profiler import record_function  # named scopes for benchmarks/profile_step.py


@record_function("nerf/composite")
def composite(sigmas, rgbs, z_vals, directions, noise_std=0.0, white_back=False, deltas=None):
    """Alpha-composite samples front to back (NeRF eq. 3).

    Args:
        sigmas: ``(N_rays, N_samples)`` raw densities (ReLU is applied here, after the noise).
        rgbs: ``(N_rays, N_samples, 3)`` colours, or None to compute weights only.
        z_vals: ``(N_rays, N_samples)`` sorted sample distances.
        directions: ``(N_rays, 3)`` ray directions; intervals are scaled by their norm.
        noise_std: std of Gaussian noise added to the raw densities (training only).
        white_back: composite onto a white background.
        deltas: ``(N_rays, N_samples)`` interval lengths (in ray units); default: the gaps between
            ``z_vals`` with an infinite last interval, as NeRF does.
    Returns:
        dict with ``weights`` ``(N_rays, N_samples)``, ``opacity`` ``(N_rays,)``, ``depth``
        ``(N_rays,)`` (expected distance), and ``rgb`` ``(N_rays, 3)`` when ``rgbs`` is given.
    """
    if sigmas.dtype in (torch.float16, torch.bfloat16):  # compositing needs float32 (the 1e10 interval)
        sigmas = sigmas.float()
    if deltas is None:
        deltas = z_vals[:, 1:] - z_vals[:, :-1]
        deltas = torch.cat([deltas, torch.full_like(deltas[:, :1], 1e10)], -1)  # the last interval is infinite
    deltas = deltas * directions.norm(dim=-1, keepdim=True)
    if noise_std > 0:
        sigmas = sigmas + torch.randn_like(sigmas) * noise_std
    alphas = 1 - torch.exp(-deltas * torch.relu(sigmas))  # (N_rays, N_samples)
    # transmittance T_i = prod_{j<i} (1 - alpha_j); the 1e-10 keeps gradients finite at alpha = 1
    trans = torch.cumprod(torch.cat([torch.ones_like(alphas[:, :1]), 1 - alphas + 1e-10], -1), -1)[:, :-1]
    weights = alphas * trans
    opacity = weights.sum(-1)
    out = {"weights": weights, "opacity": opacity, "depth": (weights * z_vals).sum(-1)}
    if rgbs is not None:
        rgb = (weights[..., None] * rgbs.to(weights.dtype)).sum(-2)  # (N_rays, 3)
        if white_back:
            rgb = rgb + (1 - opacity[:, None])
        out["rgb"] = rgb
    return out


@record_function("nerf/field")
def query_field(field, x, d=None, max_points=1 << 18, code=None):
    """Evaluate a field on ``x`` ``(N, 3)`` (and ``d`` ``(N, 3)``, or ``(N_rays, 3)`` for a field
    with ``per_ray_directions``) in pieces of about ``max_points`` (whole rays). ``code``: appearance
    codes with one row per row of ``d`` (split with it), or None to call ``field(x, d)`` without.

    Returns ``sigma`` ``(N,)`` when ``d`` is None, else ``(sigma (N,), rgb (N, 3))``. Pieces bound
    the activation memory at eval time (and on the CPU, see ``models.rendering.CPU_PIECE_POINTS``,
    speed up training).
    """
    if x.shape[0] <= max_points:
        if d is None:
            return field.query_density(x)
        return field(x, d) if code is None else field(x, d, code)
    per = 1 if d is None else x.shape[0] // max(d.shape[0], 1)  # samples per direction
    step = max(1, max_points // per) * per
    outs = [query_field(field, x[i:i + step], None if d is None else d[i // per:(i + step) // per], step,
                        None if code is None else code[i // per:(i + step) // per])
            for i in range(0, x.shape[0], step)]
    if d is None:
        return torch.cat(outs)
    return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

"""Volume rendering: sample points along rays, query a radiance field, composite.

Sampling and compositing are separate steps: ``stratified_samples`` and ``sample_pdf`` return
sample distances, ``models.compositing.composite`` turns densities and colours at those distances
into a pixel. ``render_rays`` chains them for the coarse/fine scheme of NeRF (or hands the rays to
``models.marching`` on the fast path) and ``render_chunked`` is the one chunk loop used by training,
eval.py, the viewer, test.ipynb and extract_mesh.py.

A *field* is anything with ``field(x, d) -> (sigma, rgb)`` and ``field.query_density(x) -> sigma``
(``x``, ``d``: ``(N, 3)``; ``sigma``: ``(N,)`` raw, before ReLU; ``rgb``: ``(N, 3)``), e.g.
``models.nerf.NeRF``. A field whose ``per_ray_directions`` is true also takes ``d`` ``(N_rays, 3)``
for the ``N_rays * S`` samples of its rays (one direction per ray, encoded once). A field with
per-image appearance codes (``appearance_dim > 0``, ``models.appearance``) also takes
``field(x, d, code)``, ``code`` laid out like ``d``: rays of training images (``Rays.image``) pass
their image's code, other rays none (the field then uses its mean code). The renderer never looks
inside a field or a code.
"""
import torch
from torch.profiler import record_function  # named scopes for benchmarks/profile_step.py

from models.appearance import ray_codes
from models.compositing import composite, query_field
from models.contraction import distance_from_parameter, ray_segments
from models.marching import render_marched

# On the CPU the fields run on pieces of at most this many points (whole rays): each activation
# (30,000 x 256 float32 = 29 MB) then stays under glibc's 32 MB mmap threshold and reuses freed heap
# memory, where bigger blocks get fresh zero-filled pages from the kernel at every step (~3 GB of page
# faults per step with the seed's networks at 1024 rays, ~15% of the step). Few pieces: each op's
# thread barrier is costly on a busy machine. Same products, same results.
CPU_PIECE_POINTS = 30000


@record_function("nerf/sampling")
def stratified_samples(near, far, n_samples, use_disp=False, perturb=0.0):
    """Sample distances between near and far, one per evenly spaced bin.

    Args:
        near, far: ``(N_rays, 1)``.
        n_samples: samples per ray.
        use_disp: space the bins evenly in inverse depth (disparity) instead of depth.
        perturb: 0 gives the bin edges (deterministic); 1 a uniform draw inside each bin.
    Returns:
        z_vals ``(N_rays, n_samples)``, sorted, inside ``[near, far]``.
    """
    t = torch.linspace(0, 1, n_samples, device=near.device, dtype=near.dtype)  # (S,)
    if use_disp:
        z_vals = 1.0 / (1.0 / near * (1 - t) + 1.0 / far * t)
    else:
        z_vals = near * (1 - t) + far * t  # (N_rays, S)
    if perturb > 0:
        mids = 0.5 * (z_vals[:, 1:] + z_vals[:, :-1])
        upper = torch.cat([mids, z_vals[:, -1:]], -1)
        lower = torch.cat([z_vals[:, :1], mids], -1)
        z_vals = lower + (upper - lower) * perturb * torch.rand_like(z_vals)
    return z_vals


@record_function("nerf/sampling")
def unbounded_samples(rays, n_samples, perturb=0.0):
    """Sample distances for an unbounded scene (``--unbounded``): half of them linear in depth from
    ``near`` to where the ray leaves the foreground (the unit ball), half linear in disparity from
    there to ``far`` (``models.contraction.ray_parameter``), one per evenly spaced bin of ``s``.

    Args: rays: ``Rays`` of N_rays; n_samples, perturb: as ``stratified_samples``.
    Returns: z_vals ``(N_rays, n_samples)``, sorted, inside ``[near, far]``.
    """
    near, t_mid, far = ray_segments(rays)
    s = torch.linspace(0, 1, n_samples, device=near.device, dtype=near.dtype).expand(len(near), n_samples)
    if perturb > 0:
        mids = 0.5 * (s[:, 1:] + s[:, :-1])
        upper = torch.cat([mids, s[:, -1:]], -1)
        lower = torch.cat([s[:, :1], mids], -1)
        s = lower + (upper - lower) * perturb * torch.rand_like(s)
    return distance_from_parameter(s, near, t_mid, far)


@record_function("nerf/sampling")
def sample_pdf(bins, weights, n_importance, det=False, eps=1e-5):
    """Inverse-CDF sampling of a piecewise-constant PDF (hierarchical sampling, NeRF sec. 5.2).

    Args:
        bins: ``(N_rays, N_bins + 1)`` sorted bin edges.
        weights: ``(N_rays, N_bins)`` non-negative weight of each bin (need not sum to 1).
        n_importance: samples to draw per ray.
        det: take evenly spaced quantiles instead of uniform random ones (used at test time).
    Returns:
        samples ``(N_rays, n_importance)`` inside ``[bins[:, 0], bins[:, -1]]``.
    """
    n_rays, n_bins = weights.shape
    weights = weights + eps  # avoids a zero PDF on empty rays
    pdf = weights / weights.sum(-1, keepdim=True)
    cdf = torch.cumsum(pdf, -1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], -1)  # (N_rays, N_bins + 1)
    if det:
        u = torch.linspace(0, 1, n_importance, device=bins.device, dtype=bins.dtype).expand(n_rays, n_importance)
    else:
        u = torch.rand(n_rays, n_importance, device=bins.device, dtype=bins.dtype)
    u = u.contiguous()

    idx = torch.searchsorted(cdf, u, right=True)
    below = (idx - 1).clamp(min=0)
    above = idx.clamp(max=n_bins)
    idx_ba = torch.stack([below, above], -1).view(n_rays, 2 * n_importance)
    cdf_g = torch.gather(cdf, 1, idx_ba).view(n_rays, n_importance, 2)
    bins_g = torch.gather(bins, 1, idx_ba).view(n_rays, n_importance, 2)

    denom = cdf_g[..., 1] - cdf_g[..., 0]
    denom = torch.where(denom < eps, torch.ones_like(denom), denom)  # flat CDF: take the lower edge
    t = (u - cdf_g[..., 0]) / denom
    return bins_g[..., 0] + t * (bins_g[..., 1] - bins_g[..., 0])


def _render_level(field, rays, z_vals, noise_std, white_back, weights_only):
    """Query ``field`` at ``z_vals`` ``(N_rays, S)`` along ``rays`` and composite."""
    n_rays, n_samples = z_vals.shape
    x = rays.origins[:, None] + rays.directions[:, None] * z_vals[..., None]  # (N_rays, S, 3)
    x = x.reshape(-1, 3)
    max_points = CPU_PIECE_POINTS if x.device.type == "cpu" else 1 << 18
    if weights_only:
        sigmas, rgbs = query_field(field, x, max_points=max_points), None
    else:
        code = ray_codes(field, rays)  # (N_rays, dim) for rays of training images, else None
        if getattr(field, "per_ray_directions", False):
            d = rays.view_directions  # (N_rays, 3): encoded once per ray by the field (and so the code)
        else:
            d = rays.view_directions[:, None].expand(n_rays, n_samples, 3).reshape(-1, 3)
            if code is not None:
                code = code[:, None].expand(n_rays, n_samples, code.shape[-1]).reshape(n_rays * n_samples, -1)
        sigmas, rgbs = query_field(field, x, d, max_points, code)
        rgbs = rgbs.view(n_rays, n_samples, 3)
    return composite(sigmas.view(n_rays, n_samples), rgbs, z_vals, rays.directions, noise_std, white_back)


def render_rays(fields, rays, *, n_samples=64, n_importance=0, use_disp=False, perturb=0.0,
                noise_std=0.0, white_back=False, test_time=False, unbounded=False):
    """Render rays with NeRF's coarse-to-fine scheme.

    Args:
        fields: dict with a ``"coarse"`` field and, when ``n_importance > 0``, a ``"fine"`` one
            (the coarse field is reused if it is missing). With an ``"occupancy"`` grid (the fast
            path) the rays are instead marched through the grid with the coarse field
            (``models.marching``; the sampling arguments other than ``perturb`` do not apply).
        rays: ``Rays`` of N_rays; with ``rays.image`` (training rays) fields with appearance codes
            colour each ray with its image's code, without it with their mean code.
        n_samples: stratified samples per ray for the coarse pass.
        n_importance: extra samples drawn from the coarse weights; 0 renders with the coarse pass only.
        use_disp, perturb: see ``stratified_samples``; ``perturb == 0`` also makes the fine
            samples deterministic.
        noise_std: density noise (training only).
        white_back: composite on white (Blender scenes).
        test_time: skip the coarse colours when a fine pass follows (only its weights are needed).
        unbounded: the rays are in an unbounded scene's frame (``--unbounded``): coarse samples
            from ``unbounded_samples`` (``use_disp`` does not apply), fields that contract points.
    Returns:
        dict of ``rgb_{level}`` ``(N_rays, 3)``, ``depth_{level}`` ``(N_rays,)``,
        ``opacity_{level}`` ``(N_rays,)``, ``weights_{level}`` ``(N_rays, S)`` and
        ``z_vals_{level}`` ``(N_rays, S)`` for level ``coarse`` (no ``rgb_coarse`` when
        ``test_time`` and a fine pass follow) and ``fine`` when ``n_importance > 0``.
    """
    grid = fields.get("occupancy")
    if grid is not None:
        return render_marched(fields["coarse"], grid, rays, float(grid.step_size), perturb=perturb > 0,
                              white_back=white_back)
    if unbounded:
        z_coarse = unbounded_samples(rays, n_samples, perturb)
    else:
        z_coarse = stratified_samples(rays.near, rays.far, n_samples, use_disp, perturb)
    weights_only = test_time and n_importance > 0
    coarse = _render_level(fields["coarse"], rays, z_coarse, noise_std, white_back, weights_only)
    out = {f"{k}_coarse": v for k, v in coarse.items()}
    out["z_vals_coarse"] = z_coarse
    if n_importance > 0:
        mids = 0.5 * (z_coarse[:, 1:] + z_coarse[:, :-1])  # (N_rays, S - 1)
        z_new = sample_pdf(mids, coarse["weights"][:, 1:-1].detach(), n_importance, det=(perturb == 0))
        z_fine, _ = torch.sort(torch.cat([z_coarse, z_new.detach()], -1), -1)  # (N_rays, S + N_importance)
        fine = _render_level(fields.get("fine", fields["coarse"]), rays, z_fine, noise_std, white_back, False)
        out.update({f"{k}_fine": v for k, v in fine.items()})
        out["z_vals_fine"] = z_fine
    return out


def train_render_kwargs(hparams, white_back, train=True):
    """``render_rays`` options from the flags (``hparams``: namespace or dict): training perturbs the
    samples and adds density noise (``--perturb``, ``--noise_std``); evaluation (``train=False``) does not."""
    get = hparams.get if isinstance(hparams, dict) else lambda k, d=None: getattr(hparams, k, d)
    return dict(n_samples=get("N_samples"), n_importance=get("N_importance"), use_disp=get("use_disp", False),
                perturb=get("perturb", 1.0) if train else 0.0, noise_std=get("noise_std", 0.0) if train else 0.0,
                white_back=white_back, test_time=not train, unbounded=bool(get("unbounded", False)))


def eval_render_kwargs(hparams, white_back):
    """``render_rays`` options for evaluation (eval.py, the viewer, mesh colours): the checkpoint's
    sampling (``hparams``: its flags), deterministic samples, no density noise."""
    return train_render_kwargs(hparams, white_back, train=False)


def median_depth(weights, z_vals, level=0.5):
    """Distance where a ray's accumulated weight first reaches ``level`` (transmittance ``1 - level``).

    Unlike the expected depth (the weighted mean), it stays on the first surface that stops the
    ray when that surface lets some light through: the mean of a half-transparent thin object in
    front of a wall falls between the two, the median on the object.
    Args:
        weights: ``(N_rays, S)`` compositing weights; z_vals: ``(N_rays, S)`` their distances.
    Returns:
        ``(N_rays,)`` distance along the ray (the ray's units), ``inf`` where the ray never
        accumulates ``level`` (it sees through).
    """
    if weights.shape[-1] == 0:
        return torch.full(weights.shape[:1], float("inf"), device=weights.device)
    reached = torch.cumsum(weights.float(), -1) >= level  # (N_rays, S)
    first = torch.argmax(reached.to(torch.uint8), -1)  # index of the first True (0 when none)
    depth = torch.gather(z_vals.float(), -1, first[:, None])[:, 0]
    return torch.where(reached.any(-1), depth, torch.full_like(depth, float("inf")))


def final_level(results):
    """``"fine"`` when ``results`` has a fine pass, else ``"coarse"``."""
    return "fine" if "rgb_fine" in results else "coarse"


@torch.no_grad()
def render_chunked(fields, rays, chunk=32 * 1024, keys=("rgb", "depth", "opacity"), to_cpu=False, **render_kwargs):
    """Render many rays (a whole image) ``chunk`` rays at a time, without gradients.

    Args:
        fields, render_kwargs: as for ``render_rays``.
        rays: ``Rays`` of any length, on the fields' device.
        keys: outputs to keep, taken from the final level (fine if present, else coarse);
            ``"median_depth"`` is ``median_depth`` of that level's weights.
        to_cpu: move each chunk's outputs to the CPU at once, so device memory stays bounded
            by one chunk whatever the image size.
    Returns:
        dict ``key -> tensor`` with the leading dimension N_rays, e.g. ``rgb`` ``(N_rays, 3)``.
    """
    parts = {k: [] for k in keys}
    for i in range(0, len(rays), chunk):
        out = render_rays(fields, rays[i:i + chunk], **render_kwargs)
        level = final_level(out)
        for k in keys:
            if k == "median_depth":
                v = median_depth(out[f"weights_{level}"], out[f"z_vals_{level}"])
            else:
                v = out[f"{k}_{level}"]
            parts[k].append(v.cpu() if to_cpu else v)
    return {k: torch.cat(v, 0) for k, v in parts.items()}

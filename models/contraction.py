"""Unbounded scenes (``--unbounded``): mip-NeRF 360's scene contraction and the ray parameter it suits.

The scene frame of an unbounded capture (``datasets.llff`` with ``unbounded``) puts the foreground,
a ball around where the cameras look that holds every camera, at the unit ball. Fields see points
through ``contract``: the identity inside the unit ball, ``(2 - 1/|x|) x/|x|`` outside, so the
whole world fits in the ball of radius 2 (Barron et al. 2022, eq. 10, with the L2 norm).

Along a ray, samples are spaced linearly in depth inside the foreground and linearly in disparity
beyond (NeRF++ / mip-NeRF 360 style; the disparity of the distance from the foreground's centre, so
the steps are even in contracted space): ``ray_parameter`` maps a distance ``t`` to
``s`` in [0, 1] (``[0, 1/2]`` inside, ``[1/2, 1]`` outside) and ``distance_from_parameter`` back;
both samplers place their samples evenly in ``s``.
"""
import torch

CONTRACTED_RADIUS = 2.0  # the contracted world fits in the ball of this radius


def contract(x):
    """``(..., 3)`` world points -> ``(..., 3)`` points in the ball of radius 2 (identity inside the unit ball)."""
    r = x.norm(dim=-1, keepdim=True)
    scale = torch.where(r <= 1, torch.ones_like(r), (2 - 1 / r.clamp(min=1)) / r.clamp(min=1))
    return x * scale


def uncontract(y, max_radius=1.999):
    """Inverse of ``contract`` for ``(..., 3)`` points of norm < 2 (norms are clamped to ``max_radius``)."""
    c = y.norm(dim=-1, keepdim=True).clamp(max=max_radius)
    r = torch.where(c <= 1, c, 1 / (2 - c))  # world radius
    return y * torch.where(c <= 1, torch.ones_like(c), r / c.clamp(min=1))


def world_length_scale(y):
    """World length per unit of contracted length, radially, at contracted points ``y`` ``(..., 3)``:
    1 inside the unit ball, ``|x|^2`` outside (the contraction's radial derivative is ``1 / |x|^2``).
    Returns ``(...)``."""
    c = y.norm(dim=-1).clamp(max=1.999)
    r = torch.where(c <= 1, torch.ones_like(c), 1 / (2 - c))
    return r * r


def sphere_exit(origins, directions):
    """Distance (in units of each direction's length) at which rays leave the unit ball, ``(N,)``,
    clamped at 0; for rays that miss it, the distance of their closest approach to the centre (or 0
    when that lies behind the origin). ``origins``, ``directions``: ``(N, 3)``."""
    a = (directions * directions).sum(-1)
    b = (origins * directions).sum(-1)
    c = (origins * origins).sum(-1) - 1
    disc = (b * b - a * c).clamp(min=0)
    return ((-b + disc.sqrt()) / a).clamp(min=0)


def ray_parameter(t, near, t_mid, far):
    """``s`` in [0, 1] of distances ``t``: linear in ``t`` from ``near`` (s=0) to ``t_mid`` (s=1/2),
    then linear in ``1/u`` up to ``far`` (s=1), where ``u = 1 + t - t_mid`` is the distance from the
    foreground's centre a ray heading straight out would have reached (1 at ``t_mid``): even steps in
    ``1/u`` are even steps of contracted radius (``2 - 1/r``), wherever the ray left the ball.
    ``t``: ``(N, S)``; ``near``, ``t_mid``, ``far``: ``(N, 1)``."""
    inside = 0.5 * (t - near) / (t_mid - near).clamp(min=1e-6)
    inv_u = 1 / (1 + (t - t_mid).clamp(min=0))
    inv_far = 1 / (1 + far - t_mid)
    outside = 0.5 + 0.5 * (1 - inv_u) / (1 - inv_far).clamp(min=1e-9)
    return torch.where(t <= t_mid, inside, outside)


def distance_from_parameter(s, near, t_mid, far):
    """Inverse of ``ray_parameter``: ``s`` ``(N, S)`` in [0, 1] -> distances ``(N, S)``, sorted when ``s`` is."""
    inside = near + (t_mid - near) * (2 * s)
    w = (2 * s - 1).clamp(0, 1)
    inv_u = 1 - w * (1 - 1 / (1 + far - t_mid))
    outside = t_mid - 1 + 1 / inv_u
    return torch.where(s <= 0.5, inside, outside)


def ray_segments(rays):
    """``near``, ``t_mid`` (where a ray leaves the foreground, never before ``near``) and ``far``
    (never before ``t_mid``), each ``(N, 1)``, for ``Rays`` in an unbounded scene's frame."""
    near = rays.near
    t_mid = torch.maximum(sphere_exit(rays.origins, rays.directions)[:, None], near * 1.001)
    return near, t_mid, torch.maximum(rays.far, t_mid * 1.001)

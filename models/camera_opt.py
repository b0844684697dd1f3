"""Camera refinement (``--optimize_cameras``): a learned pose correction per training image, and the
alignment of held-out views to a trained scene.

Poses from structure-from-motion on video frames are never exact; a few pixels of error blur fine
detail. Each training image gets 6 numbers, a rotation (axis-angle, SO(3)) and a translation
(R^3), applied in the camera's own frame: ``c2w' = c2w @ [exp(w) | t]``, so a zero correction is
the pose as read. They train with the field at a small learning rate.

The corrections move the training cameras, and with them the world the field is learned in (by a
little). Held-out views are therefore scored as nerfstudio and BARF score them: each view's pose is
first aligned to the trained field by a few steps that optimize only its own 6 numbers on its own
photo, the field frozen (``align_views``). ``eval.py`` does that for checkpoints trained with
``--optimize_cameras`` and says so in ``metrics.json``.
"""
import torch
from torch import nn

from models.rendering import final_level, render_rays


def so3_exp(w):
    """Rotation matrices ``(N, 3, 3)`` of axis-angle vectors ``w`` ``(N, 3)`` (Rodrigues' formula,
    with the Taylor series of its coefficients near zero so the gradient there is exact)."""
    theta2 = (w * w).sum(-1, keepdim=True)[..., None]  # (N, 1, 1)
    theta = theta2.clamp_min(1e-12).sqrt()
    small = theta2 < 1e-8
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    zero = torch.zeros_like(w[:, 0])
    skew = torch.stack([zero, -w[:, 2], w[:, 1], w[:, 2], zero, -w[:, 0], -w[:, 1], w[:, 0], zero], -1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(skew)
    return eye + a * skew + b * (skew @ skew)


def apply_correction(c2w, delta):
    """Corrected camera-to-world ``(N, 3, 4)``: ``c2w`` ``(N, 3, 4)`` times the correction
    ``delta`` ``(N, 6)`` (axis-angle rotation, then translation, both in the camera's frame)."""
    R, t = c2w[..., :3], c2w[..., 3:]
    dR = so3_exp(delta[:, :3])
    return torch.cat([R @ dR, t + R @ delta[:, 3:, None]], -1)


class PoseCorrection(nn.Module):
    """6 learned numbers per training image, zero at the start (``apply_correction``).

    ``forward(c2w, image)``: ``c2w`` ``(N, 3, 4)`` the poses of training images ``image`` ``(N,)``
    (long) -> corrected ``(N, 3, 4)``.
    """

    def __init__(self, n_images):
        super().__init__()
        self.delta = nn.Parameter(torch.zeros(int(n_images), 6))

    def forward(self, c2w, image):
        return apply_correction(c2w, self.delta[image])

    @torch.no_grad()
    def magnitudes(self):
        """Mean rotation (degrees) and translation (scene units) of the corrections."""
        d = self.delta.detach()
        return float(d[:, :3].norm(dim=-1).mean().rad2deg()), float(d[:, 3:].norm(dim=-1).mean())


def trained_poses(state_dict, poses):
    """The training cameras as a model trained with ``--optimize_cameras`` learned them: ``poses``
    ``(N, 3, 4)`` (the training split, in its order) with the checkpoint's corrections
    (``camera_opt.delta``, ``(N, 6)``) applied. Returns ``(poses, corrected)``; ``poses`` unchanged
    when the checkpoint has no corrections or holds them for another number of images."""
    delta = state_dict.get("camera_opt.delta")
    if delta is None or delta.shape[0] != len(poses):
        return poses, False
    with torch.no_grad():
        return apply_correction(poses.float(), delta.float().to(poses.device)).to(poses.dtype), True


def level_weights(progress, n_levels, start=0.0, end=0.3, first=0.25):
    """Coarse-to-fine weights ``(n_levels,)`` of a hash encoding's levels (BARF's schedule, for
    grids): the coarsest ``first`` share of the levels is always on; the finer ones fade in one
    after another (cosine ramp) while training ``progress`` goes from ``start`` to ``end``.
    ``end <= start`` turns the schedule off (all ones). Coarse levels first let the poses settle
    before fine levels can explain their error away."""
    if end <= start:
        return torch.ones(n_levels)
    lo = first * n_levels
    alpha = lo + (n_levels - lo) * min(max((progress - start) / (end - start), 0.0), 1.0)  # levels on
    x = (alpha - torch.arange(n_levels, dtype=torch.float32)).clamp(0, 1)
    return 0.5 * (1 - torch.cos(torch.pi * x))


def align_views(fields, ds, render_kwargs, steps=100, batch=1024, lr=2e-3, seed=0, progress=None):
    """Align each view of ``ds`` (a split with ground truth) to the trained ``fields``: ``steps`` Adam
    steps on 6 numbers per view (``apply_correction``), on ``batch`` random pixels of its photo, the
    fields frozen. Returns the aligned poses ``(N_views, 3, 4)`` on the poses' device; ``ds`` is
    not changed.

    ``render_kwargs``: ``models.rendering.render_rays`` options for a differentiable pass;
    ``progress``: an optional callable(view index) per view.
    """
    if ds.rgbs is None:
        raise ValueError("aligning views needs their photos")
    W, H = ds.img_wh
    gen = torch.Generator().manual_seed(seed)
    params = [p for f in fields.values() for p in f.parameters()]
    was = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    aligned = ds.poses.clone()
    try:
        for i in range(len(ds.poses)):
            delta = torch.zeros(1, 6, device=ds.poses.device, requires_grad=True)
            opt = torch.optim.Adam([delta], lr=lr)
            for _ in range(steps):
                pix = torch.randint(0, W * H, (batch,), generator=gen).to(ds.poses.device)
                c2w = apply_correction(ds.poses[i:i + 1], delta)[0]
                rays = ds.rays(i, pix, c2w=c2w)
                out = render_rays(fields, rays, **render_kwargs)
                rgb = out[f"rgb_{final_level(out)}"]
                loss = ((rgb.float() - ds.rgbs[i, pix]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            aligned[i] = apply_correction(ds.poses[i:i + 1], delta.detach())[0]
            if progress:
                progress(i)
    finally:
        for p, w in zip(params, was):
            p.requires_grad_(w)
    return aligned

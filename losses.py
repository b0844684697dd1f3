"""Training losses on the renderer's outputs."""
import torch
from torch import nn


def distortion_loss(weights, s_mid, s_width):
    """mip-NeRF 360's distortion loss (Barron et al. 2022, eq. 15), per ray, averaged over rays:
    ``sum_ij w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 d_i`` with samples at ``m`` of width ``d`` in the
    normalized ray parameter ``s`` in [0, 1]. It is smallest when a ray's weight sits in one short
    interval: it pulls the weight of a ray onto one surface and clears the haze in front of it.

    Args:
        weights: ``(N_rays, S)`` compositing weights; s_mid, s_width: ``(N_rays, S)`` each sample's
            centre and width in ``s``, the centres sorted along each ray.
    The double sum is O(S) with prefix sums: ``2 sum_i w_i (m_i W_<i - (wm)_<i)``.
    """
    w = weights.float()
    wm = w * s_mid
    w_before = torch.cumsum(w, -1) - w  # weight of the samples in front of each sample
    wm_before = torch.cumsum(wm, -1) - wm
    across = 2 * (w * (s_mid * w_before - wm_before)).sum(-1)
    within = (w * w * s_width).sum(-1) / 3
    return (across + within).mean()


class MSELoss(nn.Module):
    """Sum over the rendered levels (coarse, and fine when present) of the colour MSE, plus
    ``distortion`` times ``distortion_loss`` of each level that reports its samples' ``s``
    (the fast path's renderer, while training).

    Args: results: ``render_rays`` output; target: ``(N_rays, 3)`` ground-truth colours.
    """

    def __init__(self, distortion=0.0):
        super().__init__()
        self.distortion = float(distortion)

    def forward(self, results, target):
        loss = 0.0
        for level in ("coarse", "fine"):
            if f"rgb_{level}" in results:
                loss = loss + ((results[f"rgb_{level}"] - target) ** 2).mean()
            if self.distortion > 0 and f"s_mid_{level}" in results:
                loss = loss + self.distortion * distortion_loss(
                    results[f"weights_{level}"], results[f"s_mid_{level}"], results[f"s_width_{level}"])
        return loss


loss_dict = {"mse": MSELoss}


def build_loss(hparams):
    """The training loss of ``hparams`` (a Namespace or Lightning's hparams): ``--loss_type`` with the
    ``--distortion_loss`` weight, as train.py and the benchmarks that mimic its step all use it."""
    return loss_dict[getattr(hparams, "loss_type", "mse")](getattr(hparams, "distortion_loss", 0.0))

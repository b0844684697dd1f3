"""Training losses on the renderer's outputs."""
from torch import nn


class MSELoss(nn.Module):
    """Sum over the rendered levels (coarse, and fine when present) of the colour MSE.

    Args: results: ``render_rays`` output; target: ``(N_rays, 3)`` ground-truth colours.
    """

    def forward(self, results, target):
        loss = 0.0
        for level in ("coarse", "fine"):
            if f"rgb_{level}" in results:
                loss = loss + ((results[f"rgb_{level}"] - target) ** 2).mean()
        return loss


loss_dict = {"mse": MSELoss}

"""Image metrics: MSE, PSNR, SSIM (LPIPS needs downloaded weights, so it is left out)."""
import torch


def mse(pred, gt, mask=None):
    """Mean squared error over all elements (or the ``mask``ed ones). Shapes must match."""
    err = (pred - gt) ** 2
    return err[mask].mean() if mask is not None else err.mean()


def psnr(pred, gt, mask=None):
    """PSNR in dB for images in [0, 1]: ``-10 log10(MSE)``."""
    return -10.0 * torch.log10(mse(pred, gt, mask))


def ssim(pred, gt, window_size=11):
    """Mean SSIM with an 11x11 Gaussian window (sigma 1.5), the usual setting of NeRF papers.

    Args: pred, gt: ``(H, W, 3)`` or ``(N, 3, H, W)`` in [0, 1]. Returns a scalar tensor.
    (The seed used a 3x3 window, which gives different numbers.)
    """
    from kornia.metrics import ssim as kornia_ssim  # imported here: PSNR alone needs no kornia (e.g. on a bare GPU image)

    if pred.dim() == 3:
        pred, gt = pred.permute(2, 0, 1)[None], gt.permute(2, 0, 1)[None]
    return kornia_ssim(pred.float(), gt.float(), window_size).mean()

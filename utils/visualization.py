"""Pictures of renders: colormapped depth (in RGB order) and image strips; PSNR curves as a PNG."""
import cv2
import numpy as np
import torch


def depth_to_rgb(depth, vmin=None, vmax=None, cmap=cv2.COLORMAP_JET, inverse=False):
    """Colormap a depth map.

    Args:
        depth: ``(H, W)`` tensor or array. NaN/inf are treated as ``vmin``.
        vmin, vmax: the depths mapped to the colormap's ends; default: this map's min and max.
            Pass fixed values to keep one scale across the frames of a video.
        inverse: space the colours evenly in inverse depth (unbounded scenes: a far background
            keeps distinct colours instead of all of it taking the far end's).
    Returns:
        ``(H, W, 3)`` uint8 **RGB** (OpenCV returns BGR; the seed passed that on as RGB).
    """
    d = depth.detach().cpu().numpy() if torch.is_tensor(depth) else np.asarray(depth)
    d = d.astype(np.float32)
    finite = np.isfinite(d)
    lo = vmin if vmin is not None else (float(d[finite].min()) if finite.any() else 0.0)
    hi = vmax if vmax is not None else (float(d[finite].max()) if finite.any() else 1.0)
    d = np.where(finite, d, lo)
    if inverse:  # near stays at the colormap's start, as in linear mode
        lo, hi = max(lo, 1e-6), max(hi, 1e-6)
        x = np.clip((1 / lo - 1 / np.maximum(d, 1e-6)) / max(1 / lo - 1 / hi, 1e-12), 0, 1)
    else:
        x = np.clip((d - lo) / max(hi - lo, 1e-8), 0, 1)
    bgr = cv2.applyColorMap((x * 255).astype(np.uint8), cmap)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def to_uint8(img):
    """``(H, W, 3)`` float tensor/array in [0, 1] -> uint8 array."""
    x = img.detach().cpu().numpy() if torch.is_tensor(img) else np.asarray(img)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def upscale(img, wh):
    """``(h, w, 3)`` float tensor -> ``(H, W, 3)`` with ``wh = (W, H)``, bicubic, clamped to [0, 1]:
    a thumbnail as it looks on a larger screen."""
    import torch.nn.functional as F

    t = img.permute(2, 0, 1)[None].float()
    return F.interpolate(t, size=(wh[1], wh[0]), mode="bicubic", align_corners=False).clamp(0, 1)[0].permute(1, 2, 0)


def sharpest_crop(photo, size):
    """(top, left) of the ``size`` x ``size`` window of ``photo`` ``(H, W, 3)`` (float tensor) with the
    most edge energy: where a loss of detail shows."""
    import torch.nn.functional as F

    g = photo.float().mean(-1)
    mag = (g[1:, :-1] - g[:-1, :-1]).abs() + (g[:-1, 1:] - g[:-1, :-1]).abs()
    step = max(1, size // 4)
    energy = F.avg_pool2d(mag[None, None], size, stride=step)[0, 0]
    r, c = divmod(int(energy.argmax()), energy.shape[1])
    return min(r * step, photo.shape[0] - size), min(c * step, photo.shape[1] - size)


def image_strip(*images):
    """Concatenate ``(H, W, 3)`` uint8 images left to right -> ``(H, sum W, 3)``."""
    return np.concatenate([np.asarray(i) for i in images], axis=1)


def plot_psnr_curves(curves, path, title="", xlabel="training time (s)", ylabel="held-out PSNR (dB)"):
    """Write a PNG of ``curves``: ``{label: [(time, psnr), ...]}``, one line per label, times in the
    unit of ``xlabel`` (the capture report and the benchmarks' PSNR-against-time plots)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, pts in curves.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

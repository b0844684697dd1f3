"""Reading images for training: resize, alpha compositing, readable errors."""
import os

import cv2
import numpy as np

from utils.errors import UserError

IMAGE_EXTS = (".png", ".jpg", ".jpeg")


def list_images(folder):
    """Sorted image files (png/jpg/jpeg, any letter case) in ``folder``."""
    if not os.path.isdir(folder):
        raise UserError(f"image folder not found: {folder}")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTS))


def read_image(path, img_wh, white_back=False):
    """Read an image as float32 RGB in [0, 1], resized to ``img_wh`` = (W, H) with area interpolation.

    An alpha channel is composited on white when ``white_back`` (Blender scenes) and on black
    otherwise, matching the background the renderer adds. Raises UserError for a missing or
    unreadable file.

    Returns:
        ``(H, W, 3)`` float32.
    """
    if not os.path.isfile(path):
        raise UserError(f"image not found: {path}")
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim not in (2, 3):
        raise UserError(f"cannot read image (corrupt or not an image): {path}")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    scale = np.iinfo(img.dtype).max if np.issubdtype(img.dtype, np.integer) else 1.0
    img = img.astype(np.float32) / scale
    if img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    else:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)
    if img.shape[2] == 4:
        # composite before resizing: averaging composited colours is exact, averaging
        # straight (un-premultiplied) RGBA would leave dark or coloured fringes
        rgb, alpha = img[..., :3], img[..., 3:]
        img = rgb * alpha + (1.0 - alpha) * (1.0 if white_back else 0.0)
    w, h = img_wh
    if (img.shape[1], img.shape[0]) != (w, h):
        # area interpolation when shrinking (no aliasing), linear when enlarging
        interp = cv2.INTER_AREA if w < img.shape[1] else cv2.INTER_LINEAR
        img = cv2.resize(img, (w, h), interpolation=interp)
    return np.clip(img, 0, 1).astype(np.float32)

"""Reading images for training: resize, alpha compositing, readable errors."""
import os

import cv2
import numpy as np
from PIL import Image

from utils.errors import UserError

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
ASPECT_TOLERANCE = 0.01  # relative difference of W/H ratios still taken as the same aspect


def list_images(folder):
    """Sorted image files (png/jpg/jpeg, any letter case) in ``folder``.

    Hidden files are skipped (macOS writes ``._IMG_0001.JPG`` metadata beside copied photos).
    """
    if not os.path.isdir(folder):
        raise UserError(f"image folder not found: {folder}")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.lower().endswith(IMAGE_EXTS) and not f.startswith("."))


def common_size(paths):
    """The ``(W, H)`` all images in ``paths`` share, read from their headers (cheap even for
    hundreds of photos; raw pixels, no EXIF rotation, as COLMAP and ``read_image`` see them).
    UserError for an unreadable file or photos of different sizes."""
    sizes = {}
    for path in paths:
        try:
            with Image.open(path) as im:
                sizes.setdefault(im.size, path)
        except OSError:
            raise UserError(f"cannot read image (corrupt or not an image): {path}") from None
    if len(sizes) > 1:
        (s0, p0), (s1, p1) = list(sizes.items())[:2]
        raise UserError(f"the photos differ in size ({os.path.basename(p0)} is {s0[0]}x{s0[1]}, "
                        f"{os.path.basename(p1)} is {s1[0]}x{s1[1]}): use photos of one size and orientation")
    return next(iter(sizes))


def same_aspect(wh, wh0):
    return abs((wh[0] / wh[1]) / (wh0[0] / wh0[1]) - 1) <= ASPECT_TOLERANCE


def check_img_wh(img_wh, image_wh, flag="--img_wh"):
    """UserError unless ``flag`` (W, H) keeps the aspect ratio of images of size ``image_wh``.

    The message names a size that keeps it: the width asked for with its height when one exists,
    else the nearest width that has one (tiny sizes can have none within the tolerance).
    """
    W, H = img_wh
    w0, h0 = image_wh
    if same_aspect(img_wh, image_wh):
        return
    fits = lambda w: (w, max(1, round(w * h0 / w0)))  # noqa: E731
    suggest = next((fits(w) for d in range(0, 10 * W + 200) for w in (W + d, W - d)
                    if w > 0 and same_aspect(fits(w), image_wh)), (w0, h0))
    raise UserError(f"{flag} {W} {H} does not keep the aspect ratio of the {w0}x{h0} images: "
                    f"use {flag} {suggest[0]} {suggest[1]} (width height)")


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

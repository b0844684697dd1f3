"""Lens distortion: the camera models with distortion that readers hand to ``BaseDataset``.

A reader sets ``self.distortion`` to None (pinhole), one ``Distortion`` shared by every image, or
a list with one ``Distortion`` (or None) per image. Coefficients act on normalized image
coordinates (``x = (u - cx) / fx``, ``y = (v - cy) / fy``, OpenCV's convention, y down), so they
do not change with the resolution the images are resized to.

- ``"opencv"``: ``params`` ``(8,)`` float64 ``k1 k2 p1 p2 k3 k4 k5 k6`` (OpenCV's rational model;
  zeros where a camera has fewer terms: COLMAP's SIMPLE_RADIAL is ``k1``, RADIAL ``k1 k2``, OPENCV
  ``k1 k2 p1 p2``, FULL_OPENCV all eight);
- ``"fisheye"``: ``params`` ``(4,)`` float64 ``k1 k2 k3 k4`` (OpenCV's fisheye model: the
  distorted radius is ``theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)``, theta the
  angle from the optical axis).

``undistort`` inverts either model per point (Newton's method, float64: the ray generator
``datasets.ray_utils.get_ray_directions`` calls it once per camera and resolution); ``distort``
is the forward model; ``from_colmap`` reads a COLMAP camera.
"""
from collections import namedtuple

import numpy as np

from utils.errors import UserError

Distortion = namedtuple("Distortion", "model params")
MODELS = ("opencv", "fisheye")
N_PARAMS = {"opencv": 8, "fisheye": 4}

# COLMAP camera models -> (focal layout, our model, how many coefficients follow fx fy cx cy)
# focal layout "f": params start f, cx, cy (one focal length); "fxfy": fx, fy, cx, cy
_COLMAP_MODELS = {
    "SIMPLE_PINHOLE": ("f", None, 0),
    "PINHOLE": ("fxfy", None, 0),
    "SIMPLE_RADIAL": ("f", "opencv", 1),  # k1
    "RADIAL": ("f", "opencv", 2),  # k1 k2
    "OPENCV": ("fxfy", "opencv", 4),  # k1 k2 p1 p2
    "FULL_OPENCV": ("fxfy", "opencv", 8),  # k1 k2 p1 p2 k3 k4 k5 k6
    "OPENCV_FISHEYE": ("fxfy", "fisheye", 4),  # k1 k2 k3 k4
}
NEWTON_ITERS = 20  # enough for 1e-9 (normalized) on strong lenses; each step is a few array ops


def make_distortion(model, coeffs):
    """A ``Distortion`` from the leading coefficients of ``model`` (the rest are zero).

    Returns None for an ``"opencv"`` lens whose coefficients are all zero (a pinhole camera);
    a fisheye lens stays a fisheye even without coefficients (its projection is by the angle).
    """
    if model not in MODELS:
        raise ValueError(f"unknown distortion model {model!r}: one of {', '.join(MODELS)}")
    coeffs = np.asarray(coeffs, dtype=np.float64).ravel()
    params = np.zeros(N_PARAMS[model])
    params[:len(coeffs)] = coeffs
    if model == "opencv" and not params.any():
        return None
    return Distortion(model, params)


def same_distortion(a, b):
    """Whether two Distortion-or-None describe the same lens."""
    if a is None or b is None:
        return a is None and b is None
    return a.model == b.model and np.array_equal(a.params, b.params)


def from_colmap(camera):
    """``(fx, fy, cx, cy)`` and the ``Distortion`` (None for a pinhole) of a COLMAP camera.

    ``camera``: anything with ``model`` (COLMAP's name, e.g. ``"OPENCV"``) and ``params`` (COLMAP's
    order). Intrinsics are in pixels of the camera's own width and height. Models not listed in
    ``_COLMAP_MODELS`` (FOV, the radial fisheyes, thin prism) raise UserError.
    """
    if camera.model not in _COLMAP_MODELS:
        raise UserError(f"COLMAP camera model {camera.model} is not supported: use one of "
                        f"{', '.join(_COLMAP_MODELS)}, or undistort the images first (colmap image_undistorter)")
    focal, model, n = _COLMAP_MODELS[camera.model]
    p = np.asarray(camera.params, dtype=np.float64)
    head = 3 if focal == "f" else 4
    if len(p) != head + n:
        raise UserError(f"COLMAP camera {camera.model} has {len(p)} parameters: expected {head + n}")
    fx, fy, cx, cy = (p[0], p[0], p[1], p[2]) if focal == "f" else tuple(p[:4])
    return (float(fx), float(fy), float(cx), float(cy)), (make_distortion(model, p[head:]) if model else None)


def distort(x, y, distortion):
    """Where the lens images the undistorted direction ``(x, y)`` (arrays, normalized, y down).

    opencv: ``(x, y)`` are the pinhole-plane coordinates (direction ``(x, y, 1)``); fisheye: the
    same, so only angles under 90 degrees can be given this way (``distort_angle`` takes any).
    Returns the distorted normalized coordinates ``(xd, yd)`` (float64 arrays).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if distortion is None:
        return x, y
    if distortion.model == "fisheye":
        r = np.hypot(x, y)
        return distort_angle(np.arctan(r), np.arctan2(y, x), distortion)
    k1, k2, p1, p2, k3, k4, k5, k6 = distortion.params
    r2 = x * x + y * y
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def distort_angle(theta, phi, distortion):
    """Fisheye: the distorted normalized coordinates of the direction at angle ``theta`` from the
    optical axis and azimuth ``phi`` (``atan2(y, x)``, y down); theta may exceed 90 degrees."""
    k1, k2, k3, k4 = distortion.params
    t2 = theta * theta
    rd = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
    return rd * np.cos(phi), rd * np.sin(phi)


def _undistort_opencv(xd, yd, params, iters):
    """Solve ``distort(x, y) = (xd, yd)`` by Newton's method (analytic 2x2 Jacobian), from ``(xd, yd)``."""
    k1, k2, p1, p2, k3, k4, k5, k6 = params
    x, y = xd.copy(), yd.copy()
    for _ in range(iters):
        r2 = x * x + y * y
        num = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        den = 1 + r2 * (k4 + r2 * (k5 + r2 * k6))
        radial = num / den
        dradial = ((k1 + r2 * (2 * k2 + 3 * k3 * r2)) * den - num * (k4 + r2 * (2 * k5 + 3 * k6 * r2))) / (den * den)
        ex = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x) - xd
        ey = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y - yd
        jxx = radial + 2 * x * x * dradial + 2 * p1 * y + 6 * p2 * x
        jxy = 2 * x * y * dradial + 2 * p1 * x + 2 * p2 * y
        jyy = radial + 2 * y * y * dradial + 6 * p1 * y + 2 * p2 * x
        det = jxx * jyy - jxy * jxy  # the Jacobian is symmetric: d ex/dy = d ey/dx
        det = np.where(np.abs(det) < 1e-12, 1e-12, det)
        x = x - (jyy * ex - jxy * ey) / det
        y = y - (jxx * ey - jxy * ex) / det
    return x, y


def _fisheye_angle(rd, params, iters):
    """Solve ``rd = theta (1 + k1 theta^2 + ... + k4 theta^8)`` for theta by Newton's method."""
    k1, k2, k3, k4 = params
    theta = rd.copy()
    for _ in range(iters):
        t2 = theta * theta
        f = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))) - rd
        df = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + t2 * 9 * k4)))
        theta = np.clip(theta - f / np.where(np.abs(df) < 1e-12, 1e-12, df), 0.0, np.pi)
    return theta


def undistort(xd, yd, distortion, iters=NEWTON_ITERS):
    """Camera-frame directions of distorted normalized image points (OpenCV's frame: x right,
    y down, z forward).

    Args:
        xd, yd: arrays of distorted normalized coordinates (``(u - cx) / fx``, ``(v - cy) / fy``).
        distortion: a ``Distortion`` or None.
    Returns:
        ``(..., 3)`` float64: ``(x, y, 1)`` (the undistorted pinhole-plane point) for None and
        ``"opencv"``; a unit vector for ``"fisheye"``, whose z is negative past 90 degrees from
        the axis (a fisheye sees beside and behind itself, which no pinhole plane can hold).
    """
    xd, yd = np.asarray(xd, dtype=np.float64), np.asarray(yd, dtype=np.float64)
    if distortion is None:
        x, y = xd, yd
    elif distortion.model == "opencv":
        x, y = _undistort_opencv(xd, yd, distortion.params, iters)
    elif distortion.model == "fisheye":
        theta = _fisheye_angle(np.hypot(xd, yd), distortion.params, iters)
        phi = np.arctan2(yd, xd)
        s = np.sin(theta)
        return np.stack([s * np.cos(phi), s * np.sin(phi), np.cos(theta)], -1)
    else:
        raise ValueError(f"unknown distortion model {distortion.model!r}")
    return np.stack([x, y, np.ones_like(x)], -1)


# ---------------------------------------------------------------- transforms.json keys (nerfstudio, instant-ngp)

# camera_model values of nerfstudio's transforms.json that this record can hold
JSON_CAMERA_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV",
                      "OPENCV_FISHEYE")


def distortion_from_json(meta, source="transforms.json"):
    """The ``Distortion`` (or None: a pinhole camera) that the keys of a ``transforms.json`` describe.

    Args:
        meta: a dict of the file's camera keys: its top level, or a frame's keys over the top
            level's (nerfstudio lets a frame carry its own camera).
    ``camera_model`` (nerfstudio): PINHOLE / SIMPLE_PINHOLE: None; OPENCV (and COLMAP's
    SIMPLE_RADIAL, RADIAL): ``k1 k2 p1 p2`` (and ``k3``); FULL_OPENCV: ``k1 k2 p1 p2 k3 k4 k5 k6``;
    OPENCV_FISHEYE: ``k1 k2 k3 k4``. Without ``camera_model`` (instant-ngp): ``is_fisheye`` true
    means the fisheye model on ``k1..k4``, else OpenCV's on whichever of ``k1 k2 k3 p1 p2`` are
    present. Missing keys are zeros; an OpenCV lens of all zeros is None (a pinhole).
    Raises UserError for an unknown ``camera_model`` (naming the accepted ones), a coefficient that
    is not a number, and a nonzero ``k4`` in an OPENCV camera (nerfstudio's r^8 term, which OpenCV's
    model lacks); ``source`` names the file in those messages. A fisheye stays a fisheye without
    coefficients (its projection is by the angle: ``make_distortion``).
    """
    def coeffs(names):
        out = []
        for name in names:
            value = meta.get(name, 0.0)
            try:
                out.append(float(0.0 if value is None else value))
            except (TypeError, ValueError):
                raise UserError(f"distortion coefficient '{name}' is {value!r}, not a number: fix it in "
                                f"{source}") from None
        return np.array(out, dtype=np.float64)

    model = meta.get("camera_model")
    if model is None:  # instant-ngp: the keys alone say it
        model = "OPENCV_FISHEYE" if meta.get("is_fisheye") else "OPENCV"
    model = str(model).upper()
    if model not in JSON_CAMERA_MODELS:
        raise UserError(f"{source}: camera_model '{meta.get('camera_model')}' is not supported: use one of "
                        f"{', '.join(JSON_CAMERA_MODELS)} (or undistort the images to PINHOLE first)")
    if model in ("PINHOLE", "SIMPLE_PINHOLE"):
        return None
    if model == "OPENCV_FISHEYE":
        return make_distortion("fisheye", coeffs(("k1", "k2", "k3", "k4")))
    if model == "FULL_OPENCV":
        params = coeffs(("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"))
    else:
        if coeffs(("k4",))[0] != 0:
            raise UserError(f"{source}: camera_model {model} with a nonzero k4 (an r^8 radial term OpenCV's model "
                            "lacks): use FULL_OPENCV with k1..k6, or k1 k2 k3 p1 p2 only")
        params = coeffs(("k1", "k2", "p1", "p2", "k3"))
    return make_distortion("opencv", params)

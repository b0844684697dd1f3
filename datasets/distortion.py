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
"""
from collections import namedtuple

Distortion = namedtuple("Distortion", "model params")
MODELS = ("opencv", "fisheye")


# ---------------------------------------------------------------- transforms.json keys (nerfstudio, instant-ngp)
# (self-contained: the json readers' end of the interface)

# camera_model values of nerfstudio's transforms.json that this record can hold
JSON_CAMERA_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV",
                      "OPENCV_FISHEYE")


def distortion_from_json(meta):
    """The ``Distortion`` (or None: a pinhole camera) that the keys of a ``transforms.json`` describe.

    Args:
        meta: a dict of the file's camera keys: its top level, or a frame's keys over the top
            level's (nerfstudio lets a frame carry its own camera).
    ``camera_model`` (nerfstudio): PINHOLE / SIMPLE_PINHOLE: None; OPENCV (and COLMAP's
    SIMPLE_RADIAL, RADIAL): ``k1 k2 p1 p2`` (and ``k3``); FULL_OPENCV: ``k1 k2 p1 p2 k3 k4 k5 k6``;
    OPENCV_FISHEYE: ``k1 k2 k3 k4``. Without ``camera_model`` (instant-ngp): ``is_fisheye`` true
    means the fisheye model on ``k1..k4``, else OpenCV's on whichever of ``k1 k2 k3 p1 p2`` are
    present. Missing keys are zeros; all zeros is None.
    Raises UserError for an unknown ``camera_model`` (naming the accepted ones), a coefficient that
    is not a number, and a nonzero ``k4`` in an OPENCV camera (nerfstudio's r^8 term, which OpenCV's
    model lacks).
    """
    import numpy as np

    from utils.errors import UserError

    def coeffs(names):
        out = []
        for name in names:
            value = meta.get(name, 0.0)
            try:
                out.append(float(0.0 if value is None else value))
            except (TypeError, ValueError):
                raise UserError(f"distortion coefficient '{name}' is {value!r}, not a number: fix it in "
                                f"transforms.json") from None
        return np.array(out, dtype=np.float64)

    model = meta.get("camera_model")
    if model is None:  # instant-ngp: the keys alone say it
        model = "OPENCV_FISHEYE" if meta.get("is_fisheye") else "OPENCV"
    model = str(model).upper()
    if model not in JSON_CAMERA_MODELS:
        raise UserError(f"camera_model '{meta.get('camera_model')}' is not supported: use one of "
                        f"{', '.join(JSON_CAMERA_MODELS)} (or undistort the images to PINHOLE first)")
    if model in ("PINHOLE", "SIMPLE_PINHOLE"):
        return None
    if model == "OPENCV_FISHEYE":
        params = coeffs(("k1", "k2", "k3", "k4"))
        return Distortion("fisheye", params) if np.any(params) else None
    if model == "FULL_OPENCV":
        params = coeffs(("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"))
    else:
        if coeffs(("k4",))[0] != 0:
            raise UserError(f"camera_model {model} with a nonzero k4 (an r^8 radial term OpenCV's model lacks): "
                            "use FULL_OPENCV with k1..k6, or k1 k2 k3 p1 p2 only")
        params = np.concatenate([coeffs(("k1", "k2", "p1", "p2", "k3")), np.zeros(3)])
    return Distortion("opencv", params) if np.any(params) else None

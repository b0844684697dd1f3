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

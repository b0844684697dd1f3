"""Blender synthetic scenes (NeRF's "Realistic Synthetic 360"): transforms_{split}.json + RGBA images."""
import json
import os

import cv2
import numpy as np
from tqdm import tqdm

from datasets.base import BaseDataset
from datasets.distortion import distortion_from_json
from datasets.image_utils import check_img_wh, read_image
from datasets.ray_utils import create_spheric_poses
from utils.errors import UserError


def _image_path(root_dir, file_path):
    """Resolve a frame's ``file_path`` (often given without extension, e.g. ``./train/r_0``)."""
    path = os.path.normpath(os.path.join(root_dir, file_path))
    if os.path.isfile(path):
        return path
    for ext in (".png", ".PNG", ".jpg", ".JPG", ".jpeg", ".JPEG"):
        if os.path.isfile(path + ext):
            return path + ext
    return path + ".png"  # read_image reports it as missing


def turntable(poses, n_poses=120):
    """``(n_poses, 3, 4)`` cameras circling the origin about +z (Blender's up), at the training
    cameras' mean distance from the z axis and mean height, starting beside the first one."""
    centers = poses[:, :, 3].astype(np.float64)  # (N, 3)
    radius = float(np.linalg.norm(centers[:, :2], axis=1).mean())
    start = np.array([*centers[0, :2], 0.0])
    start = start / np.linalg.norm(start) if np.linalg.norm(start) > 1e-6 else np.array([1.0, 0, 0])
    return create_spheric_poses(np.zeros(3), np.array([0, 0, 1.0]), radius, float(centers[:, 2].mean()), start,
                                n_poses).astype(np.float32)


class BlenderDataset(BaseDataset):
    """A Blender-format scene.

    ``transforms_{split}.json`` holds ``camera_angle_x`` (or ``fl_x``/``fl_y``/``cx``/``cy`` with
    ``w``/``h``, as instant-ngp writes) and ``frames`` of ``file_path`` + 4x4 ``transform_matrix``
    (camera-to-world, already in our OpenGL convention). Images are RGBA, composited on white.
    A lens may be given with instant-ngp's and nerfstudio's keys (``datasets.distortion.distortion_from_json``): every image of
    the split is then seen through it (the turntable stays pinhole).
    Near and far are 2 and 6 (the scene lies within a radius-1.5 ball, cameras at distance 4).
    Split ``path``: a 120-view turntable around the object (``turntable``), without images.
    """

    white_back = True

    def read_meta(self, split, white_back=True, near=2.0, far=6.0, **_):
        self.white_back = white_back
        path_split = split == "path"  # a turntable: no images, cameras from the training views
        if path_split:
            split = "train"
        meta_path = os.path.join(self.root_dir, f"transforms_{split}.json")
        test_path = os.path.join(self.root_dir, "transforms_test.json")
        if split == "val" and not os.path.isfile(meta_path) and os.path.isfile(test_path):
            # some exporters (e.g. the BlenderNeRF add-on) write only train and test
            print(f"note: {self.root_dir} has no transforms_val.json: validating on the test views")
            meta_path = test_path
        if not os.path.isfile(meta_path):
            raise UserError(f"{meta_path} not found: is --root_dir a Blender scene with a '{split}' split?")
        try:
            with open(meta_path) as f:
                meta = json.load(f)
            frames = meta["frames"]
            poses = np.array([np.array(fr["transform_matrix"], dtype=np.float64)[:3, :4] for fr in frames])
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise UserError(f"{meta_path} is not a valid Blender transforms file ({err})") from None
        if len(frames) == 0:
            raise UserError(f"{meta_path} lists no frames")

        paths = [_image_path(self.root_dir, fr["file_path"]) for fr in frames]
        self.K = self._intrinsics(meta, paths[0])
        self.distortion = None if path_split else distortion_from_json(meta, os.path.basename(meta_path))
        self.poses = poses.astype(np.float32)
        self.image_names = [os.path.relpath(p, self.root_dir) for p in paths]
        self.near, self.far = near, far
        if path_split:
            self.poses, self.rgbs, self.image_names = turntable(self.poses), None, None
            return
        self.rgbs = np.stack([read_image(p, self.img_wh, white_back)
                              for p in tqdm(paths, desc=f"loading {split} images", leave=False, disable=len(paths) < 20)])

    def scene_aabb(self):
        """Blender scenes lie within [-1.5, 1.5]^3 (lego: about 1.3 x 2.3 x 1.4 units)."""
        return [-1.5, -1.5, -1.5, 1.5, 1.5, 1.5]

    def _intrinsics(self, meta, first_image):
        """K at ``img_wh`` from the json (the original image size comes from the json or the first image)."""
        W, H = self.img_wh
        if "w" in meta and "h" in meta:
            W0, H0 = float(meta["w"]), float(meta["h"])
        else:
            img = cv2.imread(first_image, cv2.IMREAD_UNCHANGED)
            if img is None:
                raise UserError(f"cannot read image (missing or corrupt): {first_image}")
            H0, W0 = img.shape[:2]
        if "fl_x" in meta:
            fx0 = float(meta["fl_x"])
            fy0 = float(meta.get("fl_y", fx0))
            cx0, cy0 = float(meta.get("cx", W0 / 2)), float(meta.get("cy", H0 / 2))
        elif "camera_angle_x" in meta:
            fx0 = fy0 = 0.5 * W0 / np.tan(0.5 * float(meta["camera_angle_x"]))
            cx0, cy0 = W0 / 2, H0 / 2
        else:
            raise UserError("transforms json has neither 'camera_angle_x' nor 'fl_x': cannot tell the focal length")
        check_img_wh((W, H), (int(round(W0)), int(round(H0))))
        sx, sy = W / W0, H / H0
        return np.array([[fx0 * sx, 0, cx0 * sx], [0, fy0 * sy, cy0 * sy], [0, 0, 1]], dtype=np.float32)

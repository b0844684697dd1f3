"""Cameras of the viewer: the browser's (viser) and the project's conventions, and the scene's cameras.

Project convention (``datasets/ray_utils.py``): camera-to-world ``c2w`` ``(3, 4)`` = ``[R | t]``,
camera x right, y up, looking along -z (OpenGL / NeRF / Blender).
viser convention: a camera is a position ``t`` and a unit quaternion ``wxyz`` (w first) of the
rotation camera -> world, camera x right, y **down**, looking along **+z** (OpenCV).
The two camera frames differ by a half-turn about x: ``R_gl = R_cv @ diag(1, -1, -1)``.
"""
import math
import os

import numpy as np
import torch

from datasets import make_dataset
from datasets.base import CameraPath
from utils.errors import UserError

FLIP_YZ = np.diag([1.0, -1.0, -1.0])


def quat_to_matrix(wxyz):
    """``(3, 3)`` rotation of a quaternion ``(w, x, y, z)`` (normalized first)."""
    w, x, y, z = np.asarray(wxyz, dtype=np.float64) / np.linalg.norm(wxyz)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def matrix_to_quat(R):
    """Unit quaternion ``(w, x, y, z)`` with ``w >= 0`` of a ``(3, 3)`` rotation (Shepperd's method:
    divide by the largest of the four candidate terms, for accuracy)."""
    R = np.asarray(R, dtype=np.float64)
    tr = np.trace(R)
    cands = [tr, R[0, 0], R[1, 1], R[2, 2]]
    k = int(np.argmax(cands))
    if k == 0:
        s = 2 * math.sqrt(max(1 + tr, 1e-12))
        q = [s / 4, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    else:
        i, j, m = k - 1, k % 3, (k + 1) % 3
        s = 2 * math.sqrt(max(1 + R[i, i] - R[j, j] - R[m, m], 1e-12))
        q = [0.0] * 4
        q[0] = (R[m, j] - R[j, m]) / s
        q[1 + i], q[1 + j], q[1 + m] = s / 4, (R[j, i] + R[i, j]) / s, (R[m, i] + R[i, m]) / s
    q = np.array(q)
    return q * (1 if q[0] >= 0 else -1) / np.linalg.norm(q)


def viser_to_c2w(wxyz, position):
    """A viser camera (OpenCV frame, quaternion ``wxyz``, ``position (3,)``) -> the project's
    ``c2w (3, 4)`` float32 (OpenGL frame: x right, y up, looking along -z)."""
    R = quat_to_matrix(wxyz) @ FLIP_YZ
    return np.concatenate([R, np.asarray(position, dtype=np.float64).reshape(3, 1)], 1).astype(np.float32)


def c2w_to_viser(c2w):
    """The project's ``c2w (3, 4)`` -> viser's ``(wxyz (4,), position (3,))`` (inverse of
    ``viser_to_c2w``)."""
    c2w = np.asarray(c2w, dtype=np.float64)
    return matrix_to_quat(c2w[:, :3] @ FLIP_YZ), c2w[:, 3].copy()


def intrinsics(fov_y, img_wh):
    """``(3, 3)`` pinhole intrinsics of an image ``(W, H)`` with vertical field of view ``fov_y``
    (radians), square pixels, the principal point at the centre (as the browser's camera)."""
    W, H = img_wh
    f = 0.5 * H / math.tan(0.5 * fov_y)
    return np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]], dtype=np.float32)


def fov_y_of(K, img_wh):
    """Vertical field of view (radians) of intrinsics ``K`` for an image ``(W, H)``."""
    return 2 * math.atan(0.5 * img_wh[1] / float(np.asarray(K)[1, 1]))


def scene_cameras(h, ckpt, with_images=True):
    """The cameras a model was trained with, as ``BaseDataset.camera_state()`` (K, img_wh, poses,
    near, far, ndc, white_back, image_names), plus ``rgbs`` ``(N, H*W, 3)`` or None and ``aabb``
    (the scene box ``[xmin, ymin, zmin, xmax, ymax, zmax]`` in world units, or None: NDC scenes).

    Read from the training split of ``h.root_dir``; without the scene folder, from the render
    path a weights-only file carries (``extras["path"]``: no images then). The viewer and
    ``eval.py --path_json`` take near/far, NDC and background from here, so both render alike.
    Raises UserError when neither is available.
    """
    if h.root_dir and os.path.isdir(h.root_dir):
        ds = make_dataset(h, "train")
        return {**ds.camera_state(), "rgbs": ds.rgbs if with_images else None, "aabb": scene_box(h, ds)}
    stored = ckpt["extras"].get("path") if isinstance(ckpt["extras"], dict) else None
    if stored:
        state = {k: (v.numpy() if torch.is_tensor(v) else v) for k, v in stored.items()}
        return {**state, "rgbs": None, "aabb": None if state["ndc"] else scene_box(h)}
    raise UserError(f"the scene folder {h.root_dir or '(not named in the checkpoint)'} is not readable and "
                    f"{h.ckpt_path} carries no cameras: point --root_dir at the scene")


def scene_box(h, ds=None):
    """The box the viewer draws, ``[xmin, ymin, zmin, xmax, ymax, zmax]`` or None (NDC scenes): the
    foreground ``[-1, 1]^3`` of an unbounded scene (its fast path's ``aabb`` is the contracted box,
    not a place in the world), else ``--aabb`` (the fast path's box) or the dataset's."""
    if ds is not None and ds.ndc:
        return None
    if getattr(h, "unbounded", False):
        return [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]
    aabb = h.get("aabb") if isinstance(h, dict) else getattr(h, "aabb", None)
    return aabb or (ds.scene_aabb() if ds is not None else None)


def reference_K(scene):
    """The scene's reference camera ``(3, 3)`` (the mean of per-image intrinsics)."""
    K = np.asarray(scene["K"], dtype=np.float32)
    return K.mean(0) if K.ndim == 3 else K


def view_dataset(scene, poses, Ks, img_wh):
    """Cameras to render, in the scene's setting: ``CameraPath`` with ``poses (N, 3, 4)`` (project
    convention) and ``Ks (N, 3, 3)`` or ``(3, 3)`` at ``img_wh``, and the scene's near/far,
    background and NDC map. For forward-facing scenes the NDC map stays the training camera's
    (it defines the scene's coordinates), whatever the view's field of view and size."""
    ndc_ref = None
    if scene["ndc"]:
        K0, (W0, H0) = reference_K(scene), scene["img_wh"]
        ndc_ref = (float(K0[0, 0]), float(W0), float(H0))
    return CameraPath(K=Ks, img_wh=list(img_wh), poses=np.asarray(poses, dtype=np.float32).reshape(-1, 3, 4),
                      near=scene["near"], far=scene["far"], ndc=scene["ndc"], white_back=scene["white_back"],
                      ndc_ref=ndc_ref)


def up_direction(poses):
    """World up for the browser's orbit controls: the cameras' mean y axis, normalized."""
    up = np.asarray(poses, dtype=np.float64)[:, :, 1].mean(0)
    n = np.linalg.norm(up)
    return up / n if n > 1e-8 else np.array([0.0, 0.0, 1.0])


def look_target(scene):
    """A point the first training camera looks at: on its optical axis, at the distance of the
    point nearest to all optical axes (object captures), or 2 units ahead (forward-facing)."""
    poses = np.asarray(scene["poses"], dtype=np.float64)
    c, fwd = poses[0, :, 3], -poses[0, :, 2] / np.linalg.norm(poses[0, :, 2])
    depth = 2.0
    if not scene["ndc"] and len(poses) > 1:
        from datasets.ray_utils import orbit_of_cameras
        target = orbit_of_cameras(poses)["target"]
        depth = max(float((target - c) @ fwd), 1e-2 * float(np.linalg.norm(target - c)) + 1e-3)
    return c + depth * fwd

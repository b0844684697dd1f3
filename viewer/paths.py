"""Camera paths: keyframes placed in the viewer, interpolated into frames, stored as JSON.

File format (``nerf_pl-camera-path-v1``)::

    {"format": "nerf_pl-camera-path-v1",
     "convention": "...",                      # a reminder of the pose convention below
     "img_wh": [W, H], "fps": 30,
     "keyframes": [{"c2w": 3x4, "fov_y": radians}, ...],
     "frames":    [{"c2w": 3x4, "K": 3x3}, ...]}

``c2w`` are camera-to-world matrices in the project's convention (``datasets/ray_utils.py``:
x right, y up, the camera looks along -z), in the scene's (normalized) world coordinates;
``K`` are pixel intrinsics at ``img_wh``. ``eval.py --path_json`` renders ``frames``.
"""
import json
import math
import os

import numpy as np

from utils.errors import UserError
from viewer.camera import intrinsics, matrix_to_quat, quat_to_matrix

FORMAT = "nerf_pl-camera-path-v1"
CONVENTION = "c2w: camera-to-world 3x4 [R|t], camera x right, y up, looking along -z (OpenGL/NeRF)"


def slerp(q0, q1, t):
    """Spherical interpolation of unit quaternions ``(4,)`` at ``t`` in [0, 1] (shortest arc)."""
    q0, q1 = np.asarray(q0, dtype=np.float64), np.asarray(q1, dtype=np.float64)
    dot = float(q0 @ q1)
    if dot < 0:  # q and -q are one rotation: take the short way round
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly equal: linear is exact enough and avoids dividing by ~0
        q = q0 + t * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = math.acos(dot)
    return (math.sin((1 - t) * theta) * q0 + math.sin(t * theta) * q1) / math.sin(theta)


def interpolate(keyframes, n_frames):
    """``n_frames`` cameras along the keyframes: positions and fields of view linearly, rotations
    by slerp, the frames spread evenly over the segments; the first and last frames are the first
    and last keyframes.

    Args:
        keyframes: list of ``{"c2w": (3, 4), "fov_y": radians}``.
    Returns:
        poses ``(n_frames, 3, 4)`` float64, fovs ``(n_frames,)``.
    """
    c2ws = np.asarray([k["c2w"] for k in keyframes], dtype=np.float64)
    fovs = np.asarray([k["fov_y"] for k in keyframes], dtype=np.float64)
    if len(keyframes) == 1 or n_frames == 1:
        return np.repeat(c2ws[:1], n_frames, 0), np.repeat(fovs[:1], n_frames)
    quats = [matrix_to_quat(c[:, :3]) for c in c2ws]
    poses, out_fovs = [], []
    for s in np.linspace(0, len(keyframes) - 1, n_frames):
        i = min(int(s), len(keyframes) - 2)
        t = s - i
        R = quat_to_matrix(slerp(quats[i], quats[i + 1], t))
        centre = (1 - t) * c2ws[i, :, 3] + t * c2ws[i + 1, :, 3]
        poses.append(np.concatenate([R, centre[:, None]], 1))
        out_fovs.append((1 - t) * fovs[i] + t * fovs[i + 1])
    return np.stack(poses), np.asarray(out_fovs)


def make_path(keyframes, img_wh, fps=30, seconds=4.0):
    """The JSON-ready dict of a path through ``keyframes`` lasting ``seconds`` at ``fps``."""
    if not keyframes:
        raise UserError("the camera path has no keyframes: add at least one")
    n = 1 if len(keyframes) == 1 else max(2, int(round(seconds * fps)))
    poses, fovs = interpolate(keyframes, n)
    return {"format": FORMAT, "convention": CONVENTION, "img_wh": [int(v) for v in img_wh], "fps": int(fps),
            "keyframes": [{"c2w": np.asarray(k["c2w"], dtype=float).tolist(), "fov_y": float(k["fov_y"])}
                          for k in keyframes],
            "frames": [{"c2w": p.tolist(), "K": intrinsics(f, img_wh).tolist()} for p, f in zip(poses, fovs)]}


def write_path(path, data):
    """Write a path dict (``make_path``) as JSON, atomically."""
    tmp = path + ".partial"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def read_path(path):
    """Read and check a path JSON.

    Returns:
        dict ``poses (N, 3, 4)`` float32, ``Ks (N, 3, 3)`` float32, ``img_wh (W, H)``, ``fps``.
    Raises:
        UserError naming the file and what is wrong with it.
    """
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise UserError(f"--path_json {path}: file not found") from None
    except (OSError, ValueError) as err:
        raise UserError(f"--path_json {path} is not a JSON file ({err})") from None
    try:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a camera path of viewer.py (format {FORMAT} expected)")
        frames = data["frames"]
        poses = np.asarray([fr["c2w"] for fr in frames], dtype=np.float32).reshape(len(frames), 3, 4)
        Ks = np.asarray([fr["K"] for fr in frames], dtype=np.float32).reshape(len(frames), 3, 3)
        W, H = (int(v) for v in data["img_wh"])
        fps = int(data.get("fps", 30))
        if not frames or W <= 0 or H <= 0 or fps <= 0 or not np.isfinite(poses).all():
            raise ValueError("no frames, or a non-positive size or fps, or non-finite poses")
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"--path_json {path}: {err if isinstance(err, ValueError) else f'missing {err}'}") from None
    return {"poses": poses, "Ks": Ks, "img_wh": (W, H), "fps": fps}

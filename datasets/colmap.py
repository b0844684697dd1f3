"""COLMAP sparse models (``cameras``, ``images``, ``points3D``; binary or text) as plain numpy records,
and their conversion to LLFF's ``poses_bounds.npy`` rows.

pycolmap reads the files (any COLMAP layout: with or without the 3.12+ ``rigs``/``frames`` files,
binary or text); this module copies what the loader needs into the records below, so the rest
of the code sees numpy arrays and never pycolmap objects.

COLMAP conventions: ``qvec`` (w, x, y, z) and ``tvec`` give world-to-camera,
``x_cam = R(q) x_world + t``; camera axes x right, y down, z forward (the OpenCV convention).
Pixel coordinates have the top-left corner of the image at (0, 0) (pixel centres at +0.5).
"""
import os
from collections import namedtuple

import numpy as np

from datasets.distortion import from_colmap
from utils.errors import UserError

Camera = namedtuple("Camera", "id model width height params")  # model: COLMAP's name, e.g. "PINHOLE"
# xys: (N_points2D, 2) keypoints in pixels; point3D_ids: (N_points2D,) int64, -1 where none
Image = namedtuple("Image", "id qvec tvec camera_id name xys point3D_ids")
# image_ids, point2D_idxs: (track length,) int64, the observations of the point
Point3D = namedtuple("Point3D", "id xyz rgb error image_ids point2D_idxs")

MODEL_FILES = ("cameras", "images", "points3D")


def _image_record(image_id, im):
    pose = im.cam_from_world()
    x, y, z, w = pose.rotation.quat  # pycolmap stores (x, y, z, w); COLMAP's files and qvec use (w, x, y, z)
    points2D = im.points2D
    xys = np.array([p.xy for p in points2D], dtype=np.float64).reshape(-1, 2)
    ids = np.array([p.point3D_id if p.has_point3D() else -1 for p in points2D], dtype=np.int64)
    return Image(image_id, np.array([w, x, y, z], dtype=np.float64), np.array(pose.translation, dtype=np.float64),
                 im.camera_id, im.name, xys, ids)


def _point_record(point_id, p):
    track = np.array([(e.image_id, e.point2D_idx) for e in p.track.elements], dtype=np.int64).reshape(-1, 2)
    return Point3D(point_id, np.array(p.xyz, dtype=np.float64), np.array(p.color, dtype=np.uint8), float(p.error),
                   track[:, 0], track[:, 1])


def read_model(folder):
    """Read a sparse model folder (e.g. ``scene/sparse/0``): binary files if present, else text.

    Returns:
        ``(cameras, images, points3D)`` dicts keyed by COLMAP ids; ``images`` holds the registered
        images only (those with a pose).
    Raises UserError when the folder holds neither a complete binary nor a complete text model,
    or when a file is truncated or not a COLMAP model file.
    """
    if not any(all(os.path.isfile(os.path.join(folder, f"{name}{ext}")) for name in MODEL_FILES)
               for ext in (".bin", ".txt")):
        raise UserError(f"{folder} holds no COLMAP model (cameras, images, points3D as .bin or .txt)")
    import pycolmap  # here: its import (about 0.7 s) is paid only when a model is read

    try:
        rec = pycolmap.Reconstruction(folder)
    except (ValueError, IndexError, RuntimeError, MemoryError) as err:
        raise UserError(f"cannot read the COLMAP model in {folder}: a file is truncated or not a COLMAP model "
                        f"file ({err})") from None
    cameras = {cid: Camera(cid, cam.model.name, cam.width, cam.height, np.array(cam.params, dtype=np.float64))
               for cid, cam in rec.cameras.items()}
    images = {iid: _image_record(iid, im) for iid, im in rec.images.items() if im.has_pose}
    points = {pid: _point_record(pid, p) for pid, p in rec.points3D.items()}
    return cameras, images, points


def qvec_to_rotmat(qvec):
    """Unit quaternion (w, x, y, z) -> ``(3, 3)`` rotation matrix."""
    w, x, y, z = np.asarray(qvec, dtype=np.float64) / np.linalg.norm(qvec)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def camera_intrinsics(camera):
    """``(fx, fy, cx, cy)`` of a COLMAP camera, in pixels at its own width/height.

    SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV, FULL_OPENCV and OPENCV_FISHEYE are
    accepted (``datasets.distortion.from_colmap`` also gives their lens); other models raise
    UserError (undistort the images first: ``colmap image_undistorter``).
    """
    return from_colmap(camera)[0]


def model_to_poses_bounds(cameras, images, points3D, percentiles=(0.1, 99.9)):
    """LLFF ``poses_bounds`` rows from a COLMAP model, sorted by image name.

    Each row is 17 numbers: a ``(3, 5)`` matrix flattened row by row, whose columns are the
    camera's down, right and backward axes and its centre in world coordinates (LLFF's axis order),
    then ``[H, W, f]``; then the near and far depth of the image: the ``percentiles`` (in percent,
    LLFF's 0.1 and 99.9) of the camera-space depths of the image's observations (the 3D points
    its keypoints see). ``f`` is the camera's first focal length (fx).

    Returns:
        poses_bounds ``(N_images, 17)`` float64, names: list of N_images image names.
    """
    if not images:
        raise UserError("the COLMAP model has no registered images")
    order = sorted(images.values(), key=lambda im: im.name)
    index = {im.id: i for i, im in enumerate(order)}
    w2c = np.stack([np.concatenate([qvec_to_rotmat(im.qvec), im.tvec[:, None]], 1) for im in order])  # (N, 3, 4)

    # every observation (track element) of every point: a point seen by two keypoints of one
    # image counts twice there, as in the beer capture's shipped poses_bounds.npy (LLFF's
    # original script counted it once; the bounds differ by well under 1%)
    obs = [(k, index[i]) for k, p in enumerate(points3D.values()) for i in p.image_ids if i in index]
    obs = np.array(obs, dtype=np.int64).reshape(-1, 2)  # (N_obs, 2): point index, image index
    xyz = np.stack([p.xyz for p in points3D.values()]) if points3D else np.zeros((0, 3))  # (N_points, 3)
    z_obs = (w2c[obs[:, 1], 2, :3] * xyz[obs[:, 0]]).sum(-1) + w2c[obs[:, 1], 2, 3]  # (N_obs,) camera z
    by_image = np.argsort(obs[:, 1], kind="stable")
    starts = np.searchsorted(obs[by_image, 1], np.arange(len(order) + 1))  # image i: by_image[starts[i]:starts[i+1]]

    rows = []
    for i, im in enumerate(order):
        R, t = w2c[i, :, :3], w2c[i, :, 3]
        c2w_rot, center = R.T, -R.T @ t  # columns: camera x (right), y (down), z (forward) in world
        llff = np.stack([c2w_rot[:, 1], c2w_rot[:, 0], -c2w_rot[:, 2], center], 1)  # [down, right, back, centre]
        cam = cameras[im.camera_id]
        hwf = np.array([cam.height, cam.width, camera_intrinsics(cam)[0]])
        zs = z_obs[by_image[starts[i]:starts[i + 1]]]
        if zs.size == 0:  # sees no triangulated point: fall back to every point in front of it
            zs = xyz @ R[2] + t[2]
            zs = zs[zs > 0]
        if zs.size == 0:
            raise UserError(f"image {im.name} sees no 3D point of the COLMAP model: cannot bound its depth")
        near, far = np.percentile(zs, percentiles[0]), np.percentile(zs, percentiles[1])
        rows.append(np.concatenate([np.concatenate([llff, hwf[:, None]], 1).ravel(), [near, far]]))
    return np.stack(rows), [im.name for im in order]

"""COLMAP sparse models (``cameras``, ``images``, ``points3D``; binary or text) in pure numpy.

Reads the model files that ``colmap mapper`` / pycolmap write (any version up to the 3.12+
layout, whose extra ``rigs``/``frames`` files are not needed here: ``images`` still stores each
registered image's pose), and turns a model into LLFF's ``poses_bounds.npy`` rows.

COLMAP conventions: ``qvec`` (w, x, y, z) and ``tvec`` give world-to-camera,
``x_cam = R(q) x_world + t``; camera axes x right, y down, z forward (the OpenCV convention).
Pixel coordinates have the top-left corner of the image at (0, 0) (pixel centres at +0.5).
"""
import os
import struct
from collections import namedtuple

import numpy as np

from utils.errors import UserError

Camera = namedtuple("Camera", "id model width height params")
Image = namedtuple("Image", "id qvec tvec camera_id name xys point3D_ids")
Point3D = namedtuple("Point3D", "id xyz rgb error image_ids point2D_idxs")

# model id -> (name, number of parameters), as numbered in COLMAP's camera_models.h
CAMERA_MODELS = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
    4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
MODEL_IDS = {name: (mid, n) for mid, (name, n) in CAMERA_MODELS.items()}
# perspective models whose first parameters are (f, cx, cy) or (fx, fy, cx, cy)
_SINGLE_FOCAL = ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL")
_TWO_FOCALS = ("PINHOLE", "OPENCV", "FULL_OPENCV")

_POINT2D = np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<i8")])  # uint64 max (no point) reads as -1
_TRACK = np.dtype([("image_id", "<u4"), ("point2D_idx", "<u4")])


class _Reader:
    """Little-endian reads from a bytes buffer, with a clear error when the file is cut short."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.buf = f.read()
        self.pos = 0

    def read(self, fmt):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.buf):
            raise UserError(f"{self.path} is truncated or not a COLMAP model file")
        out = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return out

    def array(self, dtype, count):
        size = dtype.itemsize * count
        if self.pos + size > len(self.buf):
            raise UserError(f"{self.path} is truncated or not a COLMAP model file")
        out = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
        self.pos += size
        return out

    def string(self):
        end = self.buf.find(b"\0", self.pos)
        if end < 0:
            raise UserError(f"{self.path} is truncated or not a COLMAP model file")
        out = self.buf[self.pos:end].decode("utf-8")
        self.pos = end + 1
        return out


def read_cameras_binary(path):
    """``cameras.bin`` -> ``{camera_id: Camera}`` (params as a float64 array)."""
    r, cameras = _Reader(path), {}
    for _ in range(r.read("Q")[0]):
        cam_id, model_id, width, height = r.read("IiQQ")
        if model_id not in CAMERA_MODELS:
            raise UserError(f"{path}: unknown camera model id {model_id}")
        name, n_params = CAMERA_MODELS[model_id]
        cameras[cam_id] = Camera(cam_id, name, width, height, np.array(r.read(f"{n_params}d")))
    return cameras


def read_images_binary(path):
    """``images.bin`` -> ``{image_id: Image}`` (registered images only, as COLMAP writes them)."""
    r, images = _Reader(path), {}
    for _ in range(r.read("Q")[0]):
        image_id, = r.read("I")
        qt = r.read("7d")
        camera_id, = r.read("I")
        name = r.string()
        pts = r.array(_POINT2D, r.read("Q")[0])
        xys = np.stack([pts["x"], pts["y"]], -1)  # (N_points2D, 2)
        images[image_id] = Image(image_id, np.array(qt[:4]), np.array(qt[4:]), camera_id, name, xys, pts["id"].copy())
    return images


def read_points3D_binary(path):
    """``points3D.bin`` -> ``{point3D_id: Point3D}``."""
    r, points = _Reader(path), {}
    for _ in range(r.read("Q")[0]):
        pid, x, y, z, cr, cg, cb, err, n_track = r.read("Q3d3BdQ")
        track = r.array(_TRACK, n_track)
        points[pid] = Point3D(pid, np.array([x, y, z]), np.array([cr, cg, cb], np.uint8), err,
                              track["image_id"].astype(np.int64), track["point2D_idx"].astype(np.int64))
    return points


def _data_lines(path):
    """Lines of a COLMAP text file, without comments (empty lines kept: an image may have no points)."""
    with open(path) as f:
        return [line.rstrip("\n") for line in f if not line.startswith("#")]


def read_cameras_text(path):
    """``cameras.txt`` -> ``{camera_id: Camera}``."""
    cameras = {}
    for line in _data_lines(path):
        if not line.strip():
            continue
        tok = line.split()
        if tok[1] not in MODEL_IDS:
            raise UserError(f"{path}: unknown camera model {tok[1]}")
        cam_id = int(tok[0])
        cameras[cam_id] = Camera(cam_id, tok[1], int(tok[2]), int(tok[3]), np.array(tok[4:], dtype=np.float64))
    return cameras


def read_images_text(path):
    """``images.txt`` (two lines per image) -> ``{image_id: Image}``."""
    lines, images = _data_lines(path), {}
    while lines and not lines[-1].strip():  # trailing blank lines
        lines.pop()
    i = 0
    while i < len(lines):
        if not lines[i].strip():  # stray blank line between records
            i += 1
            continue
        tok = lines[i].split()
        pts = np.array(lines[i + 1].split() if i + 1 < len(lines) else [], dtype=np.float64).reshape(-1, 3)
        image_id = int(tok[0])
        images[image_id] = Image(image_id, np.array(tok[1:5], dtype=np.float64), np.array(tok[5:8], dtype=np.float64),
                                 int(tok[8]), " ".join(tok[9:]), pts[:, :2], pts[:, 2].astype(np.int64))
        i += 2
    return images


def read_points3D_text(path):
    """``points3D.txt`` -> ``{point3D_id: Point3D}``."""
    points = {}
    for line in _data_lines(path):
        if not line.strip():
            continue
        tok = line.split()
        pid = int(tok[0])
        track = np.array(tok[8:], dtype=np.int64).reshape(-1, 2)
        points[pid] = Point3D(pid, np.array(tok[1:4], dtype=np.float64), np.array(tok[4:7], dtype=np.uint8),
                              float(tok[7]), track[:, 0], track[:, 1])
    return points


def read_model(folder):
    """Read a sparse model folder (e.g. ``scene/sparse/0``): binary files if present, else text.

    Returns:
        ``(cameras, images, points3D)`` dicts keyed by COLMAP ids.
    Raises UserError when the folder holds neither a complete binary nor a complete text model.
    """
    for ext, readers in ((".bin", (read_cameras_binary, read_images_binary, read_points3D_binary)),
                         (".txt", (read_cameras_text, read_images_text, read_points3D_text))):
        paths = [os.path.join(folder, f"{name}{ext}") for name in ("cameras", "images", "points3D")]
        if all(os.path.isfile(p) for p in paths):
            try:
                return tuple(read(p) for read, p in zip(readers, paths))
            except (ValueError, IndexError, UnicodeDecodeError) as err:
                raise UserError(f"cannot parse the COLMAP model in {folder} ({err})") from None
    raise UserError(f"{folder} holds no COLMAP model (cameras, images, points3D as .bin or .txt)")


def qvec_to_rotmat(qvec):
    """Unit quaternion (w, x, y, z) -> ``(3, 3)`` rotation matrix."""
    w, x, y, z = np.asarray(qvec, dtype=np.float64) / np.linalg.norm(qvec)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def camera_intrinsics(camera):
    """``(fx, fy, cx, cy)`` of a perspective COLMAP camera, in pixels at its own width/height.

    SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV and FULL_OPENCV are accepted; their
    distortion coefficients are ignored (the images are used as they are, which is fine for the
    small radial distortion of phone cameras). Fisheye models raise UserError: undistort first
    (``colmap image_undistorter``).
    """
    p = camera.params
    if camera.model in _SINGLE_FOCAL:
        return p[0], p[0], p[1], p[2]
    if camera.model in _TWO_FOCALS:
        return p[0], p[1], p[2], p[3]
    raise UserError(f"COLMAP camera model {camera.model} is not supported: undistort the images first "
                    "(colmap image_undistorter) or use a pinhole/radial/OpenCV model")


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

"""A COLMAP model as nerfstudio's ``transforms.json`` (+ ``sparse_pc.ply``), as ``ns-process-data`` writes it,
so a capture posed here opens in nerfstudio, instant-ngp and splatting trainers (and in ``datasets.nerfstudio``).

Conventions, as nerfstudio's ``colmap_to_json``: ``transform_matrix`` is camera-to-world in the OpenGL
convention (camera x right, y up, looking along -z), in COLMAP's world with its axes turned by
``applied_transform`` (``[x, y, z] -> [x, -z, y]`` as a 3x4 matrix, recorded in the file); the point
cloud is written in that same turned world. Distortion: nerfstudio's ``camera_model`` with ``k1 k2 p1 p2``
(OPENCV; ``k3``.. for FULL_OPENCV) or ``k1..k4`` (OPENCV_FISHEYE).
"""
import numpy as np

from datasets.colmap import qvec_to_rotmat
from utils.errors import UserError

PLY_NAME = "sparse_pc.ply"
# COLMAP's world -> the file's (nerfstudio swaps y and z and flips the new z)
APPLIED = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0]])


def camera_keys(camera):
    """The json keys of a COLMAP ``Camera`` record: ``camera_model``, ``fl_x fl_y cx cy w h`` and its
    distortion coefficients. UserError for a model nerfstudio's format cannot hold."""
    p = [float(v) for v in camera.params]
    model = camera.model
    keys = {"w": int(camera.width), "h": int(camera.height)}
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        keys.update(fl_x=p[0], fl_y=p[0], cx=p[1], cy=p[2])
        rest = p[3:]
    elif model in ("PINHOLE", "OPENCV", "FULL_OPENCV", "OPENCV_FISHEYE"):
        keys.update(fl_x=p[0], fl_y=p[1], cx=p[2], cy=p[3])
        rest = p[4:]
    else:
        raise UserError(f"COLMAP camera model {model} cannot be written to transforms.json: use --camera_model "
                        "PINHOLE, SIMPLE_RADIAL, RADIAL or OPENCV")
    if model in ("SIMPLE_PINHOLE", "PINHOLE"):
        keys["camera_model"] = "PINHOLE"
    elif model == "OPENCV_FISHEYE":
        keys.update(camera_model="OPENCV_FISHEYE", **dict(zip(("k1", "k2", "k3", "k4"), rest)))
    elif model == "FULL_OPENCV":
        keys.update(camera_model="FULL_OPENCV", **dict(zip(("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"), rest)))
    else:  # SIMPLE_RADIAL (k), RADIAL (k1 k2), OPENCV (k1 k2 p1 p2): nerfstudio writes all as OPENCV
        coeffs = {"SIMPLE_RADIAL": ("k1",), "RADIAL": ("k1", "k2"), "OPENCV": ("k1", "k2", "p1", "p2")}[model]
        keys.update(camera_model="OPENCV", k1=0.0, k2=0.0, p1=0.0, p2=0.0)
        keys.update(zip(coeffs, rest))
    return keys


def model_to_transforms(cameras, images, image_dir="images", ply_name=PLY_NAME):
    """The ``transforms.json`` dict of a COLMAP model (``datasets.colmap.read_model`` records).

    Frames are sorted by image name, ``file_path`` ``"{image_dir}/NAME"``. One camera shared by every
    image puts its keys at the top level, as nerfstudio does; otherwise each frame carries its own.
    """
    if not images:
        raise UserError("the COLMAP model has no registered images")
    order = sorted(images.values(), key=lambda im: im.name)
    shared = len({im.camera_id for im in order}) == 1
    meta = dict(camera_keys(cameras[order[0].camera_id])) if shared else {}
    frames = []
    for im in order:
        R = qvec_to_rotmat(im.qvec)
        c2w = np.eye(4)
        c2w[:3, :3], c2w[:3, 3] = R.T, -R.T @ im.tvec  # camera-to-world, COLMAP's axes (x right, y down, z ahead)
        c2w[:3, 1:3] *= -1  # OpenGL camera axes: y up, looking along -z
        c2w = np.vstack([APPLIED @ c2w, [0, 0, 0, 1]])  # into the file's world
        frame = {"file_path": f"{image_dir}/{im.name}", "transform_matrix": c2w.tolist(), "colmap_im_id": int(im.id)}
        if not shared:
            frame.update(camera_keys(cameras[im.camera_id]))
        frames.append(frame)
    meta["frames"] = frames
    meta["applied_transform"] = APPLIED.tolist()
    if ply_name:
        meta["ply_file_path"] = ply_name
    return meta


def write_points_ply(path, points):
    """The model's points (``datasets.colmap.Point3D`` records) as a binary little-endian PLY of
    ``x y z`` (float32, in the file's world: ``APPLIED`` applied) and ``red green blue`` (uint8)."""
    pts = list(points.values())
    xyz = np.array([p.xyz for p in pts], dtype=np.float64).reshape(-1, 3) @ APPLIED[:, :3].T
    rgb = np.array([p.rgb for p in pts], dtype=np.uint8).reshape(-1, 3)
    rows = np.empty(len(pts), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                     ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    rows["x"], rows["y"], rows["z"] = xyz.T
    rows["red"], rows["green"], rows["blue"] = rgb.T
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(pts)}\nproperty float x\nproperty float y\n"
              "property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(rows.tobytes())

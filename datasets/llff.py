"""Real captures in the LLFF layout: ``images/`` + ``poses_bounds.npy`` (or a COLMAP ``sparse/0``).

Two kinds of scenes:

- forward-facing (the LLFF captures, e.g. fern): rays are mapped to NDC, near 0, far 1;
- 360-degree inward-facing (``--spheric_poses``, e.g. beer): metric rays with near/far from
  the depth bounds;
- unbounded 360-degree captures (``--unbounded``: an object with a room or a landscape behind it):
  the foreground, the ball around the point the cameras look at that holds every camera, becomes
  the unit ball; rays run from the nearest depth bound to ``UNBOUNDED_FAR`` and the fields contract
  what lies beyond (``models.contraction``).

Poses are read in LLFF's axis order, converted to ours, recentred on the average camera and
scaled so that the nearest depth bound becomes 1 / 0.75 (the seed's choice: the NDC near plane
at depth 1 then lies in front of all content), or, unbounded, so that the foreground is the unit ball.
"""
import os
from collections import namedtuple

import numpy as np
from tqdm import tqdm

from datasets.base import BaseDataset
from datasets.colmap import model_to_poses_bounds, read_model
from datasets.distortion import from_colmap
from datasets.image_utils import check_img_wh, common_size, list_images, read_image, same_aspect
from datasets.ray_utils import (center_poses, create_spheric_poses, create_spiral_poses, focus_depth_from_bounds,
                                orbit_of_cameras)
from utils.errors import UserError

SPLITS = ("train", "val", "test", "path")
NEAR_MARGIN = 0.75  # the nearest bound becomes 1 / NEAR_MARGIN after scaling
UNBOUNDED_FAR = 100.0  # unbounded scenes: rays end this many foreground radii away (contracted radius 1.99)

# poses: (N, 3, 4) in LLFF's axis order [down, right, back | centre]; bounds: (N, 2) near/far
# depths; intrinsics: (N, 4) fx, fy, cx, cy per image, in pixels of an image of size (W, H) = size;
# paths: N files; lenses: N Distortion-or-None (datasets.distortion), or None (pinhole cameras)
Capture = namedtuple("Capture", "poses bounds intrinsics size paths source lenses", defaults=(None,))


def read_poses_bounds(root_dir):
    """A capture from ``poses_bounds.npy`` (N x 17) and the N images of ``images/`` sorted by name.

    Each row's own focal length is used (rows differ when COLMAP estimated a camera per photo);
    the principal point is taken at the image centre (the LLFF format stores only H, W, f).
    When ``sparse/0`` beside it is the model these rows came from (what ``imgs2poses.py`` writes:
    the same images, focal lengths and size), its cameras give the intrinsics and the lenses.
    """
    path = os.path.join(root_dir, "poses_bounds.npy")
    try:
        arr = np.load(path)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path} ({err})") from None
    if arr.ndim != 2 or arr.shape[1] != 17 or len(arr) == 0:
        raise UserError(f"{path} has shape {arr.shape}: expected N x 17 (LLFF: 3x5 pose|hwf + near, far per image)")
    images_dir = os.path.join(root_dir, "images")
    paths = list_images(images_dir)
    if not paths:
        raise UserError(f"no images (png/jpg) in {images_dir}")
    if len(paths) != len(arr):
        raise UserError(f"{images_dir} has {len(paths)} images but poses_bounds.npy has {len(arr)} rows: "
                        "they must match one to one (images sorted by name); recompute the poses with "
                        f"`python imgs2poses.py {root_dir} --overwrite`")
    poses = arr[:, :15].reshape(-1, 3, 5)  # (N, 3, 5): [down, right, back, centre, hwf]
    H, W = poses[0, :2, 4]
    f = poses[:, 2, 4]  # (N,)
    intrinsics = np.stack([f, f, np.full_like(f, W / 2), np.full_like(f, H / 2)], -1)  # (N, 4)
    lenses = None
    from_model = model_cameras(root_dir, paths, f, (W, H))
    if from_model is not None:
        intrinsics, lenses = from_model
    return Capture(poses[:, :, :4], arr[:, 15:17].copy(), intrinsics, (W, H), paths, "poses_bounds.npy", lenses)


def model_cameras(root_dir, paths, focals, size):
    """Intrinsics ``(N, 4)`` and lenses (N Distortion-or-None) of ``paths`` from the COLMAP model in
    ``sparse/``, when it registers exactly these images with focal lengths ``focals`` ``(N,)`` and
    size ``(W, H)``; None otherwise (no model, another run's model, a model this loader cannot read)."""
    model_dir = colmap_model_dir(root_dir)
    if model_dir is None:
        return None
    try:
        cameras, images, _ = read_model(model_dir)
        camera_of = {im.name: cameras[im.camera_id] for im in images.values()}
        names = [os.path.relpath(p, os.path.join(root_dir, "images")) for p in paths]
        if set(camera_of) != set(names):
            return None
        cams = [camera_of[n] for n in names]
        parsed = [from_colmap(c) for c in cams]
    except UserError:
        return None
    intrinsics = np.array([p[0] for p in parsed], dtype=np.float64)  # (N, 4)
    if (any((c.width, c.height) != tuple(int(round(v)) for v in size) for c in cams)
            or not np.allclose(intrinsics[:, 0], focals, rtol=1e-4)):
        return None
    lenses = [p[1] for p in parsed]
    return intrinsics, (lenses if any(lens is not None for lens in lenses) else None)


def read_colmap_capture(root_dir):
    """A capture from the COLMAP model in ``sparse/0`` (binary or text): its registered images only.

    Intrinsics: fx, fy, cx, cy and the lens of each image's camera (``datasets.distortion.from_colmap``).
    Images of ``images/`` that the model does not contain are skipped with a warning.
    ``colmap image_undistorter`` writes its model straight into ``sparse/``: that works too.
    """
    model_dir = colmap_model_dir(root_dir)
    where = os.path.relpath(model_dir, root_dir)
    cameras, images, points = read_model(model_dir)
    poses_bounds, names = model_to_poses_bounds(cameras, images, points)
    images_dir = os.path.join(root_dir, "images")
    paths = [os.path.join(images_dir, n) for n in names]
    missing = [n for n, p in zip(names, paths) if not os.path.isfile(p)]
    if missing:
        raise UserError(f"{len(missing)} images of {where} are missing from {images_dir} (e.g. {missing[0]})")
    extra = sorted(set(os.path.relpath(p, images_dir) for p in list_images(images_dir)) - set(names))
    if extra:
        are = "image is" if len(extra) == 1 else "images are"
        print(f"warning: {len(extra)} {are} not registered in {where} and skipped: {', '.join(extra[:5])}"
              + (" ..." if len(extra) > 5 else ""))
    used = [cameras[cid] for cid in sorted({im.camera_id for im in images.values()})]
    if len({(c.width, c.height) for c in used}) > 1:
        raise UserError(f"the images of {where} have cameras of different sizes: use photos of one size")
    camera_of = {im.name: cameras[im.camera_id] for im in images.values()}
    parsed = [from_colmap(camera_of[n]) for n in names]
    intr = np.array([p[0] for p in parsed], dtype=np.float64)  # (N, 4)
    lenses = [p[1] for p in parsed]
    poses = poses_bounds[:, :15].reshape(-1, 3, 5)[:, :, :4]
    return Capture(poses, poses_bounds[:, 15:17].copy(), intr, (used[0].width, used[0].height), paths, where,
                   lenses if any(lens is not None for lens in lenses) else None)


def colmap_model_dir(root_dir):
    """``sparse/0`` (what COLMAP's mapper writes), else ``sparse`` itself when it holds a model
    (what ``colmap image_undistorter`` writes); None when there is neither."""
    sparse = os.path.join(root_dir, "sparse")
    if os.path.isdir(os.path.join(sparse, "0")):
        return os.path.join(sparse, "0")
    if any(os.path.isfile(os.path.join(sparse, f"cameras{ext}")) for ext in (".bin", ".txt")):
        return sparse
    return None


def read_capture(root_dir):
    """``poses_bounds.npy`` if present, else the COLMAP model; UserError when neither exists."""
    if os.path.isfile(os.path.join(root_dir, "poses_bounds.npy")):
        return read_poses_bounds(root_dir)
    if colmap_model_dir(root_dir):
        return read_colmap_capture(root_dir)
    raise UserError(f"{root_dir} has neither poses_bounds.npy nor a COLMAP model in sparse/0: "
                    f"compute the camera poses from its images/ with `python imgs2poses.py {root_dir}`")


def scaled_intrinsics(capture, img_wh):
    """``(N, 3, 3)`` K per image at ``img_wh``, after checking that ``img_wh`` keeps the photos' aspect ratio."""
    W, H = img_wh
    w0, h0 = common_size(capture.paths)
    cw, ch = capture.size
    if not same_aspect((w0, h0), (cw, ch)):
        raise UserError(f"the images are {w0}x{h0} but the poses ({capture.source}) were computed for "
                        f"{cw:.0f}x{ch:.0f} images: recompute them with "
                        f"`python imgs2poses.py {os.path.dirname(os.path.dirname(capture.paths[0]))} --overwrite`")
    check_img_wh((W, H), (w0, h0))
    fx, fy, cx, cy = np.asarray(capture.intrinsics, dtype=np.float64).T  # (N,) each
    sx, sy = W / cw, H / ch
    K = np.zeros((len(fx), 3, 3), dtype=np.float32)
    K[:, 0, 0], K[:, 0, 2], K[:, 1, 1], K[:, 1, 2], K[:, 2, 2] = fx * sx, cx * sx, fy * sy, cy * sy, 1
    return K


def foreground_ball(poses):
    """Centre ``(3,)`` and radius of an unbounded capture's foreground: the point nearest to every
    optical axis (``orbit_of_cameras``), and the distance from it to the farthest camera (so every
    camera lies inside it, as mip-NeRF 360 keeps them). ``poses``: ``(N, 3, 4)`` camera-to-world."""
    centre = orbit_of_cameras(poses)["target"]
    radius = float(np.linalg.norm(poses[:, :, 3] - centre, axis=1).max())
    if not radius > 0:
        raise UserError("the cameras all sit at the point they look at: --unbounded needs cameras around an object")
    return centre, radius


def split_indices(n_images, split, holdout):
    """Image indices of a split. ``holdout > 0``: every ``holdout``-th view (0, h, 2h, ...) is held
    out for val and test, the rest trains (the NeRF paper's protocol with 8). ``holdout == 0``:
    everything trains, and val/test are all views too (they then measure fit, not generalization)."""
    everything = np.arange(n_images)
    if holdout == 0:
        return everything
    held = everything[::holdout]
    if split == "train":
        train = np.setdiff1d(everything, held)
        if len(train) == 0:
            raise UserError(f"--llff_holdout {holdout} leaves no training view: use 0 (train on all) or >= 2")
        return train
    return held


class LLFFDataset(BaseDataset):
    """A real capture: ``images/`` with ``poses_bounds.npy`` (or ``sparse/0``), see the module doc.

    Splits: ``train`` (all but the held-out views), ``val`` and ``test`` (the held-out views, with
    ground truth: see ``split_indices``), ``path`` (a rendering path without images: a spiral
    around the average camera for forward-facing scenes, a circle around the object for
    ``spheric_poses``). All splits share one scaling of the scene, so a model trained on ``train``
    renders ``path`` in the same frame.
    """

    metric_rays = False  # True: never NDC (formats whose captures walk around an object)

    def read_capture(self):
        """The scene's ``Capture`` (a subclass reads another format into the same record)."""
        return read_capture(self.root_dir)

    def split_indices(self, capture, split, holdout):
        """Indices into ``capture`` of the images of ``split`` (not called for ``path``)."""
        return split_indices(len(capture.poses), split, holdout)

    def read_meta(self, split, white_back=False, spheric_poses=False, holdout=8, unbounded=False,
                  spheric_bounds="seed", ndc_viewdirs="ndc", **_):
        if split not in SPLITS:
            raise UserError(f"unknown split '{split}' for an LLFF scene: choose one of {', '.join(SPLITS)}")
        if holdout < 0:
            raise UserError(f"--llff_holdout must be >= 0, got {holdout}")
        capture = self.read_capture()
        self.white_back = bool(white_back)
        self.unbounded = bool(unbounded)
        self.spheric = bool(spheric_poses) or self.unbounded or self.metric_rays
        K = scaled_intrinsics(capture, self.img_wh)  # (N, 3, 3): BaseDataset keeps one when all agree

        # LLFF [down, right, back] -> ours [right, up, back]
        llff = capture.poses
        poses = np.concatenate([llff[:, :, 1:2], -llff[:, :, 0:1], llff[:, :, 2:4]], -1)  # (N, 3, 4)
        poses, to_avg = center_poses(poses)
        if self.unbounded:  # the foreground ball, centred where the cameras look, becomes the unit ball
            centre, scale = foreground_ball(poses)
            to_avg = np.concatenate([np.eye(4)[:, :3], np.append(-centre, 1.0)[:, None]], 1) @ to_avg
            poses[:, :, 3] -= centre
        else:
            scale = capture.bounds.min() * NEAR_MARGIN
        poses[:, :, 3] /= scale
        # (4, 4) from the capture's world (COLMAP's) to this dataset's frame: x' = (to_avg x) / scale
        self.world_to_scene = np.diag([1 / scale, 1 / scale, 1 / scale, 1.0]) @ to_avg
        bounds = capture.bounds / scale  # (N, 2)

        if self.unbounded:
            self.near, self.far = float(bounds[:, 0].min()) * 0.9, UNBOUNDED_FAR
        elif self.spheric and spheric_bounds == "full":  # every depth COLMAP saw, with a margin
            self.near, self.far = 0.9 * float(bounds.min()), 1.1 * float(bounds.max())
        elif self.spheric:
            self.near = float(bounds.min())
            self.far = float(min(8 * self.near, bounds.max()))  # the seed's cap on the far bound
        else:
            self.ndc, self.near, self.far = True, 0.0, 1.0
            self.ndc_viewdirs = ndc_viewdirs == "world"

        if split == "path":  # the mean camera
            self.poses, self.rgbs = self.render_path(poses, bounds).astype(np.float32), None
            self.K, self.distortion = K.mean(0), None  # render paths use pinhole cameras
            return
        idx = self.split_indices(capture, split, holdout)
        self.poses, self.K = poses[idx].astype(np.float32), K[idx]
        self.distortion = [capture.lenses[i] for i in idx] if capture.lenses else None  # the path stays pinhole
        paths = [capture.paths[i] for i in idx]
        self.image_names = [os.path.relpath(p, self.root_dir) for p in paths]
        self.rgbs = np.stack([read_image(p, self.img_wh, self.white_back)
                              for p in tqdm(paths, desc=f"loading {split} images", leave=False,
                                            disable=len(paths) < 20)])  # (N, H, W, 3)

    def render_path(self, poses, bounds, n_poses=120):
        """The ``path`` split's cameras ``(n_poses, 3, 4)``, from all (centred, scaled) poses.

        Forward-facing: a two-turn spiral around the average camera (the identity after
        centring), radii the 90th percentile of the absolute camera positions, looking at the
        focus depth LLFF derives from the bounds. Spheric: one circle around the point the
        cameras look at, at the cameras' mean height and distance (``orbit_of_cameras``).
        """
        if self.spheric:
            return create_spheric_poses(**orbit_of_cameras(poses), n_poses=n_poses)
        radii = np.percentile(np.abs(poses[:, :, 3]), 90, axis=0)  # (3,)
        return create_spiral_poses(radii, focus_depth_from_bounds(bounds), n_poses=n_poses)

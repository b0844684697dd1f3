"""Camera poses from a folder of photos with pycolmap (CPU): the work behind ``imgs2poses.py``.

Stages: SIFT features -> matching (exhaustive for small sets, sequential for ordered frames of a
walk or a video) -> incremental mapping -> ``SCENE/sparse/0`` (COLMAP binary model),
``SCENE/poses_bounds.npy`` (LLFF rows sorted by image name, near/far from the depths of the
points each image sees) and ``SCENE/transforms.json`` + ``SCENE/sparse_pc.ply`` (nerfstudio's
format, ``process_data.nerfstudio_json``: for nerfstudio, instant-ngp and splatting trainers).
Everything is built in a work folder inside ``SCENE`` and moved into place only when it all
succeeded, so a failure leaves the scene as it was.

Written against pycolmap 4.2 (its option classes changed a lot between versions).
"""
import json
import os
import shutil
import tempfile
import time

import cv2
import numpy as np

from datasets.colmap import model_to_poses_bounds, read_model
from datasets.image_utils import common_size, list_images, same_aspect
from process_data.nerfstudio_json import PLY_NAME, model_to_transforms, write_points_ply
from utils.errors import UserError

EXHAUSTIVE_MAX_IMAGES = 40  # "auto" matcher: all pairs up to this many images, neighbours beyond
SEQUENTIAL_OVERLAP = 10  # each image is matched with this many neighbours by name order
MIN_REGISTERED = 0.8  # below this share of registered photos the run fails; above, the rest are skipped
# the models SfM may estimate; the loader casts each pixel's ray through the lens estimated
# (datasets.distortion), so the photos are used as they are
CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE")
DEFAULT_PEAK_THRESHOLD = 0.02 / 3  # SIFT's default (0.02 / octave_resolution)
STAGED_FILES = ("poses_bounds.npy", "transforms.json", PLY_NAME)  # written beside sparse/0, all or none


class UnregisteredError(UserError):
    """Too few photos registered. ``missing``: the names of those that did not; ``registered``,
    ``total``: the counts (for callers that word the advice differently, e.g. frames of a video)."""

    def __init__(self, message, missing, registered, total):
        super().__init__(message)
        self.missing, self.registered, self.total = missing, registered, total


def check_inputs(scene_dir, overwrite):
    """The scene's image names and their common size ``(W, H)``; UserError for unusable input."""
    if not os.path.isdir(scene_dir):
        raise UserError(f"{scene_dir} is not a folder: give the scene folder that holds images/")
    images_dir = os.path.join(scene_dir, "images")
    if not os.path.isdir(images_dir):
        raise UserError(f"{images_dir} not found: put the photos in SCENE_DIR/images/")
    paths = list_images(images_dir)
    if not paths:
        raise UserError(f"no images (png/jpg) in {images_dir}")
    if len(paths) < 3:
        raise UserError(f"only {len(paths)} image(s) in {images_dir}: structure from motion needs at least 3 "
                        "overlapping photos (a NeRF wants 20 or more)")
    size = common_size(paths)
    check_outputs(scene_dir, overwrite)
    return [os.path.relpath(p, images_dir) for p in paths], size


def check_outputs(scene_dir, overwrite):
    """UserError when ``sparse/0``, ``poses_bounds.npy``, ``transforms.json`` or ``sparse_pc.ply`` exist
    without ``overwrite``, or the scene folder is not writable."""
    outputs = [os.path.join(scene_dir, "sparse", "0")] + [os.path.join(scene_dir, f) for f in STAGED_FILES]
    existing = [o for o in outputs if os.path.exists(o)]
    if existing and not overwrite:
        raise UserError(f"{' and '.join(existing)} already exist(s): pass --overwrite to replace them")
    if not os.access(scene_dir, os.W_OK):
        raise UserError(f"{scene_dir} is not writable: copy the scene to a folder you can write to")


def write_downscaled(scene_dir, names, size, downscale, out_dir):
    """Copies of the photos reduced by ``downscale`` (area interpolation) in ``out_dir``; their size."""
    W, H = size
    small = (max(1, round(W / downscale)), max(1, round(H / downscale)))
    for name in names:
        img = cv2.imread(os.path.join(scene_dir, "images", name), cv2.IMREAD_UNCHANGED)  # no EXIF rotation
        if img is None:
            raise UserError(f"cannot read image (corrupt or not an image): {name}")
        os.makedirs(os.path.dirname(os.path.join(out_dir, name)), exist_ok=True)
        cv2.imwrite(os.path.join(out_dir, name), cv2.resize(img, small, interpolation=cv2.INTER_AREA),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    return small


def choose_matcher(matcher, n_images):
    """``exhaustive`` or ``sequential``: ``auto`` picks exhaustive up to EXHAUSTIVE_MAX_IMAGES images."""
    if matcher == "auto":
        return "exhaustive" if n_images <= EXHAUSTIVE_MAX_IMAGES else "sequential"
    return matcher


def run_pycolmap(image_dir, names, work_dir, matcher, camera_model, single_camera, max_side, seed, log):
    """Features, matches and incremental mapping of the images ``names`` of ``image_dir``.

    Returns the pycolmap Reconstruction with the most registered images (None if none).
    """
    import pycolmap

    db = os.path.join(work_dir, "database.db")
    device = pycolmap.Device.cpu
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = camera_model
    extraction = pycolmap.FeatureExtractionOptions()
    # small images have few features at SIFT's default contrast threshold: keep weaker ones there
    extraction.sift.peak_threshold = float(np.clip(DEFAULT_PEAK_THRESHOLD * max_side / 1600, 0.002,
                                                   DEFAULT_PEAK_THRESHOLD))
    mode = pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.PER_IMAGE

    t0 = time.time()
    log("[1/3] extracting SIFT features ...")
    pycolmap.extract_features(db, image_dir, image_names=names, camera_mode=mode, reader_options=reader,
                              extraction_options=extraction, device=device)
    log(f"      done in {time.time() - t0:.0f} s")

    t0 = time.time()
    log(f"[2/3] {matcher} matching ...")
    if matcher == "exhaustive":
        pycolmap.match_exhaustive(db, device=device)
    else:
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = SEQUENTIAL_OVERLAP
        pycolmap.match_sequential(db, pairing_options=pairing, device=device)
    log(f"      done in {time.time() - t0:.0f} s")

    t0 = time.time()
    log("[3/3] incremental mapping ...")
    options = pycolmap.IncrementalPipelineOptions()
    options.random_seed = seed
    out = os.path.join(work_dir, "models")
    os.makedirs(out)
    count = [0]

    def registered():
        count[0] += 1
        if count[0] % 10 == 0:
            log(f"      {count[0]} images registered")

    models = pycolmap.incremental_mapping(db, image_dir, out, options=options, next_image_callback=registered)
    log(f"      done in {time.time() - t0:.0f} s")
    if not models:
        return None
    return max(models.values(), key=lambda rec: rec.num_reg_images())


def rescale_model(rec, full_size, small_size):
    """Bring a model computed on downscaled copies back to the photos' resolution (in place):
    cameras' size, focal lengths and principal points, and the keypoint coordinates. Distortion
    coefficients act on normalized coordinates (pixels minus the principal point, over the focal
    length), so they hold at any resolution and ``Camera.rescale`` keeps them as they are."""
    sx, sy = full_size[0] / small_size[0], full_size[1] / small_size[1]
    for cam in rec.cameras.values():
        cam.rescale(int(full_size[0]), int(full_size[1]))
    scale = np.array([sx, sy])
    for image in rec.images.values():
        for point in image.points2D:
            point.xy = np.asarray(point.xy) * scale


def imgs2poses(scene_dir, matcher="auto", downscale=1.0, overwrite=False, camera_model="SIMPLE_RADIAL",
               single_camera=True, seed=0, verbose=False, log=print, ordered=None):
    """Compute ``SCENE/sparse/0`` and ``SCENE/poses_bounds.npy`` from ``SCENE/images``.

    Args:
        scene_dir: folder with ``images/`` (photos of one size).
        matcher: ``auto``, ``exhaustive`` or ``sequential`` (ordered frames: a walk, a video).
        downscale: run SfM on copies reduced by this factor (>= 1); the intrinsics written are
            scaled back to the photos' resolution.
        overwrite: replace existing ``sparse/0`` and ``poses_bounds.npy``.
        camera_model, single_camera: COLMAP camera model (its distortion is kept: the loader
            casts rays through it), and one camera shared by all photos.
        seed: random seed of the mapper (runs are repeatable).
        ordered: the names are in shooting order (frames of a video; None: when matching is
            sequential), so a jump between neighbours' poses is warned about (``pose_jumps``).
    Returns:
        ``poses_bounds`` ``(N_registered, 17)``. Raises UserError (leaving the scene untouched)
        for bad input and when fewer than ``MIN_REGISTERED`` of the photos register. When some
        do not, only ``sparse/0`` is written (the loader skips the photos it lacks).
    """
    import pycolmap

    if downscale < 1:
        raise UserError(f"--downscale must be >= 1, got {downscale}")
    names, size = check_inputs(scene_dir, overwrite)
    matcher = choose_matcher(matcher, len(names))
    pycolmap.logging.minloglevel = 0 if verbose else 2  # COLMAP's own log: errors only unless --verbose
    work = tempfile.mkdtemp(prefix=".imgs2poses-", dir=scene_dir)
    try:
        image_dir, sfm_size = os.path.join(scene_dir, "images"), size
        if downscale > 1:
            image_dir = os.path.join(work, "images")
            sfm_size = write_downscaled(scene_dir, names, size, downscale, image_dir)
        log(f"{len(names)} images of {size[0]}x{size[1]}"
            + (f", SfM on copies of {sfm_size[0]}x{sfm_size[1]}" if downscale > 1 else ""))
        rec = run_pycolmap(image_dir, names, work, matcher, camera_model, single_camera, max(sfm_size), seed, log)
        done = set() if rec is None else {im.name for im in rec.images.values() if im.has_pose}
        missing = [n for n in names if n not in done]
        listed = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        if missing and len(done) < max(3, MIN_REGISTERED * len(names)):
            hint = "" if matcher == "exhaustive" else ", or --matcher exhaustive"
            raise UnregisteredError(f"only {len(done)} of {len(names)} images registered; not registered: {listed}. "
                                    "Remove them from images/ (or add photos that overlap them) and run again"
                                    f"{hint}; a smaller --downscale also helps", missing, len(done), len(names))
        if downscale > 1:
            rescale_model(rec, size, sfm_size)
        staged = os.path.join(work, "sparse", "0")
        os.makedirs(staged)
        rec.write_binary(staged)
        cameras, images, points = read_model(staged)
        poses_bounds, _ = model_to_poses_bounds(cameras, images, points)
        if not missing:  # poses_bounds.npy must pair with images/ one to one
            np.save(os.path.join(work, "poses_bounds.npy"), poses_bounds)
        with open(os.path.join(work, "transforms.json"), "w") as f:  # lists the registered images only
            json.dump(model_to_transforms(cameras, images), f, indent=1)
        write_points_ply(os.path.join(work, PLY_NAME), points)
        move_into_place(work, scene_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sparse = os.path.join(scene_dir, "sparse", "0")
    if missing:
        log(f"warning: {len(missing)} of {len(names)} images did not register and will be skipped: {listed}")
        log(f"wrote {sparse} and transforms.json ({len(done)} images, {rec.num_points3D()} points); no "
            "poses_bounds.npy, which must list every photo: train.py reads sparse/0 directly")
    else:
        log(f"wrote {sparse}, {os.path.join(scene_dir, 'poses_bounds.npy')} and transforms.json "
            f"({len(names)} images, {rec.num_points3D()} points)")
    log(training_hint(scene_dir, poses_bounds, size))
    if (matcher == "sequential" if ordered is None else ordered):
        registered = sorted(done)  # poses_bounds rows follow the registered names' order
        warning = jump_warning(poses_bounds, registered)
        if warning:
            log(f"warning: {warning}")
    return poses_bounds


def orbit_coverage(poses_bounds):
    """Degrees of the turn the cameras' viewing directions make about the capture's up axis: ~0-60
    for a forward-facing capture, 360 for a walk around an object. ``poses_bounds``: ``(N, 17)`` LLFF
    rows (columns down, right, back)."""
    llff = poses_bounds[:, :15].reshape(-1, 3, 5)
    forward = -llff[:, :, 2]  # (N, 3) viewing directions
    up = -llff[:, :, 0].mean(0)  # the mean "up" of the cameras
    up = up / max(np.linalg.norm(up), 1e-12)
    flat = forward - (forward @ up)[:, None] * up
    keep = np.linalg.norm(flat, axis=1) > 1e-6
    if keep.sum() < 2:
        return 0.0
    x = flat[keep][0] / np.linalg.norm(flat[keep][0])
    y = np.cross(up, x)
    angles = np.sort(np.arctan2(flat[keep] @ y, flat[keep] @ x))
    gaps = np.diff(np.concatenate([angles, angles[:1] + 2 * np.pi]))  # the largest gap is the part not faced
    return float(np.degrees(2 * np.pi - gaps.max()))


WALK_AROUND_DEGREES = 120  # cameras turning more than this about the object: a 360-degree capture
JUMP_MIN_DEGREES, JUMP_FACTOR = 30.0, 5.0  # a turn between neighbouring frames past both: poses broken


def pose_jumps(poses_bounds, min_degrees=JUMP_MIN_DEGREES, factor=JUMP_FACTOR):
    """Where the poses of ordered frames (a video, a walk in shooting order) break: neighbours whose
    viewing directions differ by more than ``min_degrees`` and ``factor`` times the median turn
    between neighbours. A hand-held camera turns a few degrees from one frame to the next; a jump
    of 100 degrees means structure from motion registered a frame against a look-alike view (floor
    tiles, a symmetric object) and the model folded, which a NeRF shows as fog and ghosts.

    Args:
        poses_bounds: ``(N, 17)`` LLFF rows in frame order (columns down, right, back).
    Returns:
        list of ``(i, degrees)``: frames ``i`` and ``i + 1`` are that far apart, largest first.
    """
    forward = -poses_bounds[:, :15].reshape(-1, 3, 5)[:, :, 2]
    forward = forward / np.linalg.norm(forward, axis=1, keepdims=True)
    if len(forward) < 3:
        return []
    turn = np.degrees(np.arccos(np.clip((forward[1:] * forward[:-1]).sum(1), -1.0, 1.0)))  # (N - 1,)
    limit = max(min_degrees, factor * float(np.median(turn)))
    return sorted(((int(i), float(turn[i])) for i in np.nonzero(turn > limit)[0]), key=lambda j: -j[1])


def jump_warning(poses_bounds, names):
    """The warning (without a "warning: " prefix) naming the frames where the poses break
    (``pose_jumps``), or None."""
    jumps = pose_jumps(poses_bounds)
    if not jumps:
        return None
    where = ", ".join(f"{names[i]} -> {names[i + 1]} ({deg:.0f} degrees)" for i, deg in jumps[:3])
    return (f"the poses jump between neighbouring frames at {where}" + (" ..." if len(jumps) > 3 else "")
            + "; the camera moves a few degrees per frame elsewhere. Structure from motion probably matched "
            "look-alike views (floor tiles, a symmetric object) and these poses are wrong: the model will be "
            "foggy. Try the other --matcher, or a clip with a slower walk and more texture in view")


def aspect_wh(size, width):
    """A ``(W, H)`` of about ``width`` pixels wide with the aspect ratio of ``size`` (W, H) (the
    nearest width at or above it, up to the full size, whose rounded height keeps the ratio)."""
    w0, h0 = size
    width = int(min(max(8, width), w0))
    return next((w, round(w * h0 / w0)) for w in range(width, w0 + 1) if same_aspect((w, round(w * h0 / w0)), size))


def recommended_training(poses_bounds, size):
    """How a capture suits ``train.py``: ``{"turn": degrees, "walk_around": bool, "flags": [...],
    "img_wh": (W, H)}``: ``--unbounded --fast`` for a walk around an object (a room or landscape
    behind it), NDC rays (no flag) for a forward-facing one; a quarter of the photos' width."""
    turn = orbit_coverage(poses_bounds)
    walk = turn > WALK_AROUND_DEGREES
    return {"turn": turn, "walk_around": walk, "flags": ["--unbounded", "--fast"] if walk else [],
            "img_wh": aspect_wh(size, size[0] // 4)}


def training_hint(scene_dir, poses_bounds, size):
    """The train.py command that suits the capture (``recommended_training``), as a line to print."""
    rec = recommended_training(poses_bounds, size)
    wh = "--img_wh {} {}".format(*rec["img_wh"])
    if rec["walk_around"]:
        return (f"the cameras turn {rec['turn']:.0f} degrees around the object: a 360-degree capture. Train with\n"
                f"  python train.py --dataset_name llff --root_dir {scene_dir} {wh} --unbounded --fast --max_time 10")
    return (f"the cameras turn {rec['turn']:.0f} degrees: a forward-facing capture. Train with\n"
            f"  python train.py --dataset_name llff --root_dir {scene_dir} {wh}")


def move_into_place(work, scene_dir):
    """Replace ``scene/sparse/0`` and the ``STAGED_FILES`` by the staged ones (same filesystem); an old
    file goes when none was staged (an old ``poses_bounds.npy`` would shadow the new model)."""
    target = os.path.join(scene_dir, "sparse", "0")
    if os.path.isdir(target):  # set aside in the work folder (deleted with it): two renames, no torn model
        os.replace(target, os.path.join(work, "replaced_sparse0"))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.replace(os.path.join(work, "sparse", "0"), target)
    for name in STAGED_FILES:
        staged, final = os.path.join(work, name), os.path.join(scene_dir, name)
        if os.path.isfile(staged):
            os.replace(staged, final)
        elif os.path.isfile(final):
            os.remove(final)

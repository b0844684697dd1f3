"""Camera poses from a folder of photos with pycolmap (CPU): the work behind ``imgs2poses.py``.

Stages: SIFT features -> matching (exhaustive for small sets, sequential for ordered frames of a
walk or a video) -> mapping -> ``SCENE/sparse/0`` (COLMAP binary model), ``SCENE/poses_bounds.npy``
(LLFF rows sorted by image name, near/far from the depths of the points each image sees) and
``SCENE/transforms.json`` + ``SCENE/sparse_pc.ply`` (nerfstudio's format,
``process_data.nerfstudio_json``: for nerfstudio, instant-ngp and splatting trainers).
Frames in shooting order are posed by up to five strategies (``plan_strategies``: which pairs are
matched, which mapper). A model that folds (``turn_jumps``: a jump of 100 degrees between
neighbouring frames where the camera turns a few degrees a frame elsewhere) is dropped, and of the
rest the one the others agree with is kept (``pose_with_retries``). ``SCENE/sfm.json`` records
what was tried.
Everything is built in a work folder inside ``SCENE`` and moved into place only when it all
succeeded, so a failure leaves the scene as it was.

Written against pycolmap 4.2 (its option classes changed a lot between versions).
"""
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass

import cv2
import numpy as np

from datasets.colmap import model_to_poses_bounds, read_model
from datasets.image_utils import common_size, list_images, same_aspect
from process_data.nerfstudio_json import PLY_NAME, model_to_transforms, write_points_ply
from process_data.pose_compare import compare_poses, model_poses
from utils.errors import UserError

EXHAUSTIVE_MAX_IMAGES = 40  # "auto" matcher: all pairs up to this many images, neighbours beyond
SEQUENTIAL_OVERLAP = 10  # each image is matched with this many neighbours by name order
MIN_REGISTERED = 0.8  # below this share of registered photos the run fails; above, the rest are skipped
# the models SfM may estimate; the loader casts each pixel's ray through the lens estimated
# (datasets.distortion), so the photos are used as they are
CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE")
DEFAULT_PEAK_THRESHOLD = 0.02 / 3  # SIFT's default (0.02 / octave_resolution)
SFM_LOG = "sfm.json"  # the strategies tried and the one kept (``pose_with_retries``)
STAGED_FILES = ("poses_bounds.npy", "transforms.json", PLY_NAME, SFM_LOG)  # written beside sparse/0, all or none


class UnregisteredError(UserError):
    """Too few photos registered. ``missing``: the names of those that did not; ``registered``,
    ``total``: the counts (for callers that word the advice differently, e.g. frames of a video)."""

    def __init__(self, message, missing, registered, total):
        super().__init__(message)
        self.missing, self.registered, self.total = missing, registered, total


class FoldedError(UserError):
    """Each strategy that registered enough photos put them on a folded path (``turn_jumps``).
    ``tried``: the attempts as ``pose_with_retries`` lists them."""

    def __init__(self, tried):
        worst = max(tried, key=lambda t: t["registered"])
        names = sorted({n for t in tried for a, b, _ in t["jumps"] for n in (a, b)})
        listed = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
        super().__init__(
            f"the camera path folds with every strategy tried ({len(tried)}: {'; '.join(t['strategy'] for t in tried)}): "
            f"with {worst['strategy']} it jumps at {describe_jumps(worst['jumps'])}, where the camera moves a few "
            "degrees a frame elsewhere. Look-alike views (floor tiles, a symmetric object) were matched. Nothing was "
            f"written. Film more slowly with more texture in view, or drop the frames around the jumps ({listed}) "
            "and run again")
        self.tried = tried


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


@dataclass(frozen=True)
class Strategy:
    """One way to pose the photos: which pairs are matched and which mapper builds the model.

    ``matcher``: ``exhaustive`` (all pairs) or ``sequential`` (each photo with its ``overlap`` next
    ones in name order, and no others: COLMAP's default adds pairs 16, 32, 64 ... frames apart, and
    on a walk over floor tiles or around a symmetric object those pair look-alike views and fold the
    model, RESULTS §22). ``mapper``: ``incremental`` (COLMAP's, one image at a time) or ``global``
    (GLOMAP's rotation and position averaging over the whole view graph, ``pycolmap.global_mapping``).
    """
    matcher: str
    overlap: int = SEQUENTIAL_OVERLAP
    mapper: str = "incremental"

    @property
    def name(self):
        pairs = "all pairs" if self.matcher == "exhaustive" else f"{self.overlap} neighbours"
        return f"{pairs}, {self.mapper} mapper"


# frames in shooting order: each with its next few only (no pairs far apart in time: COLMAP's default
# adds them, and on beer's walk over floor tiles they fold the model), posed five ways; the model
# nearest the others is kept (``pose_with_retries``). Each alone lands 1-17% of the orbit off from one
# run to the next, or folds (RESULTS §22). Fewer neighbours pair fewer look-alike views (over 3, the
# global mapper was the most often right on beer), and the incremental mapper decides image by
# image, on other evidence than GLOMAP's global averaging
ORDERED = Strategy("sequential", 3, "global")
AGREE = 5.0  # % of the orbit: two models this close agree (good ones of beer are 1-4% apart, folds 80-100%)
OTHER_STRATEGIES = (Strategy("sequential", 3, "incremental"), Strategy("sequential", 5, "global"),
                    Strategy("sequential", 5, "incremental"), Strategy("sequential", SEQUENTIAL_OVERLAP, "incremental"))
WITNESS = 0.5  # a continuous model of at least this share of the frames votes, even when it lacks the rest


def plan_strategies(matcher, ordered):
    """The strategies run, in order of preference. Ordered frames (whose folds ``turn_jumps`` sees):
    ``ORDERED`` (or all pairs, when ``matcher`` asks for them) and ``OTHER_STRATEGIES``. Photos in no
    known order: the matcher asked for, with the incremental mapper, once."""
    if not ordered:
        return (Strategy(matcher),)
    first = ORDERED if matcher == "sequential" else Strategy(matcher)
    return (first,) + tuple(s for s in OTHER_STRATEGIES if s != first)


def extract_features(image_dir, names, db, camera_model, single_camera, max_side):
    """SIFT features of the images ``names`` of ``image_dir`` into the COLMAP database ``db``."""
    import pycolmap

    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = camera_model
    extraction = pycolmap.FeatureExtractionOptions()
    # small images have few features at SIFT's default contrast threshold: keep weaker ones there
    extraction.sift.peak_threshold = float(np.clip(DEFAULT_PEAK_THRESHOLD * max_side / 1600, 0.002,
                                                   DEFAULT_PEAK_THRESHOLD))
    mode = pycolmap.CameraMode.SINGLE if single_camera else pycolmap.CameraMode.PER_IMAGE
    pycolmap.extract_features(db, image_dir, image_names=names, camera_mode=mode, reader_options=reader,
                              extraction_options=extraction, device=pycolmap.Device.cpu)


def match_and_map(strategy, db, image_dir, out, seed, log):
    """Match the pairs of ``strategy`` in ``db`` (features extracted) and map them into ``out``.

    Returns the pycolmap Reconstruction with the most registered images (None if none).
    """
    import pycolmap

    device = pycolmap.Device.cpu
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.random_seed = seed  # every random draw seeded: the same photos, the same poses
    if strategy.matcher == "exhaustive":
        pycolmap.match_exhaustive(db, verification_options=verification, device=device)
    else:
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = strategy.overlap
        pairing.quadratic_overlap = False
        pycolmap.match_sequential(db, pairing_options=pairing, verification_options=verification, device=device)
    os.makedirs(out)
    if strategy.mapper == "global":
        options = pycolmap.GlobalPipelineOptions()
        options.random_seed = seed
        # one thread: with more, the solvers' sums run in another order each time and the same photos
        # can come out 1-5% of the orbit apart; on 24-71 frames one thread is no slower
        options.num_threads = options.mapper.num_threads = 1
        mapper = options.mapper
        for part in (mapper, mapper.rotation_averaging, mapper.global_positioning, mapper.retriangulation):
            part.random_seed = seed
        models = pycolmap.global_mapping(db, image_dir, out, options=options)
    else:
        options = pycolmap.IncrementalPipelineOptions()
        options.random_seed = options.mapper.random_seed = options.triangulation.random_seed = seed
        # all threads here: on one, 8 of beer's photos (a short arc) settled on a focal 25% short with
        # each seed tried, on more about 2 runs in 3 found the right one; runs differ slightly
        count = [0]

        def registered():
            count[0] += 1
            if count[0] % 20 == 0:
                log(f"      {count[0]} images registered")

        models = pycolmap.incremental_mapping(db, image_dir, out, options=options, next_image_callback=registered)
    if not models:
        return None
    return max(models.values(), key=lambda rec: rec.num_reg_images())


def model_forwards(poses):
    """The registered images' names, sorted, and their viewing directions ``(N, 3)`` (world), from
    ``model_poses``' dict."""
    names = sorted(poses)
    return names, np.array([poses[n][0][2] for n in names]).reshape(-1, 3)


def pose_distance(poses_a, poses_b):
    """How far two models of the same frames are apart: the mean centre error, in % of the orbit's
    radius, after a similarity fit, averaged over both directions (each is in its reference's units)."""
    errors = [compare_poses(poses_a, poses_b), compare_poses(poses_b, poses_a)]
    return sum(100.0 if e is None else e["centre_mean"] for e in errors) / 2


def pose_with_retries(image_dir, names, work, matcher, ordered, camera_model, single_camera, max_side, seed, log):
    """Pose ``names`` with the strategies of ``plan_strategies``.

    Photos in no known order: the one strategy. Frames in shooting order: a model counts when it
    registers ``MIN_REGISTERED`` of the frames along a path without a jump (``turn_jumps``). A
    model can also fold smoothly (the right turn from frame to frame, the cameras along the wrong
    path: 80% of the orbit off on beer's half walk) or bend (10-17%), and models that are right
    agree with each other (``pose_distance``). When the first two (the global and the incremental
    mapper over 3 neighbours) register the same frames and agree within ``AGREE``, the first is
    kept. Otherwise the others run too, and of the counted models that register the most frames,
    the one nearest the others (median distance) is kept, the earlier in the plan on a tie.
    Continuous models of at least ``WITNESS`` of the frames vote too (on the frames they share).
    Wrong models can agree with each other too (two incremental runs that bend alike): the vote
    lowers the odds of a bend, it does not rule one out.

    Returns ``(rec, chosen, tried)``: the model, its Strategy, and one dict per strategy tried
    (``strategy``, ``registered``, ``jumps``: ``[(name_a, name_b, degrees)]``, ``seconds``, and for
    counted models ``distance``: to the other or the median to the others). Raises UnregisteredError
    when no strategy registered enough photos, FoldedError when each that did folds.
    """
    feats = os.path.join(work, "features.db")
    t0 = time.time()
    log("[1/2] extracting SIFT features ...")
    extract_features(image_dir, names, feats, camera_model, single_camera, max_side)
    log(f"      done in {time.time() - t0:.0f} s")
    plan = plan_strategies(matcher, ordered)
    tried, models, counted = [], [], []  # counted: (index in plan, model, poses) of continuous models
    witnesses = []  # (index in plan, poses) of continuous models, complete or not, that vote
    need = max(3, MIN_REGISTERED * len(names))
    for k, strategy in enumerate(plan):
        t0 = time.time()
        log(f"[2/2] matching {strategy.name} ..." if k == 0 else f"      {strategy.name} ...")
        db = os.path.join(work, f"strategy{k}.db")
        shutil.copy(feats, db)
        rec = match_and_map(strategy, db, image_dir, os.path.join(work, f"models{k}"), seed, log)
        poses = model_poses(rec) if rec is not None else {}
        done, forward = model_forwards(poses)
        jumps = [(done[i], done[i + 1], deg) for i, deg in turn_jumps(forward)] if ordered else []
        tried.append({"strategy": strategy.name, "registered": len(done), "total": len(names), "jumps": jumps,
                      "seconds": round(time.time() - t0, 1)})
        models.append(rec)
        verdict = f"{len(done)} of {len(names)} registered"
        if len(done) >= need and jumps:
            verdict += ", but the path folds at " + describe_jumps(jumps)
        elif len(done) >= need and ordered:
            verdict += ", a continuous path"
        log(f"      {verdict} ({time.time() - t0:.0f} s)")
        if len(done) >= max(3, WITNESS * len(names)) and not jumps and ordered:
            witnesses.append((k, poses))
        if len(done) >= need and not jumps:
            if not ordered:
                return rec, strategy, tried
            counted.append((k, rec, witnesses[-1][1]))
        if k == 1 and len(counted) == 2 and tried[0]["registered"] == tried[1]["registered"]:
            distance = pose_distance(counted[0][2], counted[1][2])
            tried[0]["distance"] = tried[1]["distance"] = round(distance, 2)
            if distance < AGREE:  # the two preferred strategies agree: no need for the others
                log(f"      poses by {plan[0].name} ({plan[1].name} agrees within {distance:.1f}% of the orbit)")
                return counted[0][1], plan[0], tried
    if counted:
        for c in counted:
            others = [pose_distance(c[2], w[1]) for w in witnesses if w[0] != c[0]]
            tried[c[0]]["distance"] = round(float(np.median(others)), 2) if others else None
        most = max(tried[c[0]]["registered"] for c in counted)
        # a tie (two complete models, the voters split) goes to the strategy preferred in the plan
        k, rec, _ = min((c for c in counted if tried[c[0]]["registered"] >= 0.98 * most),
                        key=lambda c: (tried[c[0]]["distance"] or 0.0, c[0]))
        folded = sum(1 for t in tried if t["jumps"])
        log(f"      poses by {plan[k].name}" + (f": of {len(counted)} complete continuous models, the nearest the others "
                                                f"({tried[k]['distance']:.1f}% of the orbit)" if len(counted) > 1 else "")
            + (f"; {folded} folded" if folded else ""))
        return rec, plan[k], tried
    best = max(range(len(tried)), key=lambda i: tried[i]["registered"])
    if tried[best]["registered"] >= need:  # enough registered each time, but along a folded path
        raise FoldedError(tried)
    missing = [n for n in names if models[best] is None or n not in model_poses(models[best])]
    listed = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
    hint = "" if matcher == "exhaustive" else ", or --matcher exhaustive"
    raise UnregisteredError(f"only {tried[best]['registered']} of {len(names)} images registered; not registered: "
                            f"{listed}. Remove them from images/ (or add photos that overlap them) and run again"
                            f"{hint}; a smaller --downscale also helps", missing, tried[best]["registered"], len(names))


def summarize_tries(tried):
    """One line on the strategies ``pose_with_retries`` ran (the ``tried`` of ``SFM_LOG``)."""
    def one(t):
        if t["jumps"]:
            return f"{t['strategy']}: folded at {describe_jumps(t['jumps'], most=1)}"
        return f"{t['strategy']}: {t['registered']}/{t['total']} registered" + \
            (f", {t['distance']:.1f}% of the orbit from the others" if t.get("distance") is not None else "")
    return f"{len(tried)} way{'s' if len(tried) > 1 else ''} run: " + "; ".join(one(t) for t in tried)


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
        seed: random seed of the mappers (runs are repeatable).
        ordered: the names are in shooting order (frames of a video; None: when matching is
            sequential). A fold of their path (``turn_jumps``) is then seen, and the other
            strategies of ``plan_strategies`` are tried until one poses them without it.
    Returns:
        ``poses_bounds`` ``(N_registered, 17)``. Raises UserError (leaving the scene untouched)
        for bad input, when fewer than ``MIN_REGISTERED`` of the photos register, and when every
        strategy folds (FoldedError). When some photos do not register, only ``sparse/0`` is written
        (the loader skips the photos it lacks). ``SCENE/sfm.json`` says which strategies ran.
    """
    import pycolmap

    if downscale < 1:
        raise UserError(f"--downscale must be >= 1, got {downscale}")
    names, size = check_inputs(scene_dir, overwrite)
    matcher = choose_matcher(matcher, len(names))
    ordered = matcher == "sequential" if ordered is None else ordered
    pycolmap.logging.minloglevel = 0 if verbose else 2  # COLMAP's own log: errors only unless --verbose
    work = tempfile.mkdtemp(prefix=".imgs2poses-", dir=scene_dir)
    t_start = time.time()
    try:
        image_dir, sfm_size = os.path.join(scene_dir, "images"), size
        if downscale > 1:
            image_dir = os.path.join(work, "images")
            sfm_size = write_downscaled(scene_dir, names, size, downscale, image_dir)
        log(f"{len(names)} images of {size[0]}x{size[1]}"
            + (f", SfM on copies of {sfm_size[0]}x{sfm_size[1]}" if downscale > 1 else ""))
        rec, chosen, tried = pose_with_retries(image_dir, names, work, matcher, ordered, camera_model, single_camera,
                                               max(sfm_size), seed, log)
        done = set(model_poses(rec))
        missing = [n for n in names if n not in done]
        listed = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
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
        with open(os.path.join(work, SFM_LOG), "w") as f:
            json.dump({"strategy": chosen.name, "ordered": ordered, "tried": tried,
                       "seconds": round(time.time() - t_start, 1)}, f, indent=1)
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
    return poses_bounds


def orbit_coverage(poses_bounds):
    """Degrees of the turn the cameras' viewing directions make about the capture's up axis: ~0-60
    for a forward-facing capture, 360 for a walk around an object. ``poses_bounds``: ``(N, 17)`` LLFF
    rows (columns down, right, back)."""
    llff = poses_bounds[:, :15].reshape(-1, 3, 5)
    return turn_about(-llff[:, :, 2], -llff[:, :, 0].mean(0))


def turn_about(forward, up):
    """``orbit_coverage`` of viewing directions ``forward`` ``(N, 3)`` about the axis ``up`` ``(3,)``."""
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


def turn_jumps(forward, min_degrees=JUMP_MIN_DEGREES, factor=JUMP_FACTOR):
    """Where the poses of ordered frames (a video, a walk in shooting order) break: neighbours whose
    viewing directions differ by more than ``min_degrees`` and ``factor`` times the median turn
    between neighbours. A hand-held camera turns a few degrees from one frame to the next; a jump
    of 100 degrees means structure from motion registered a frame against a look-alike view (floor
    tiles, a symmetric object) and the model folded, which a NeRF shows as fog and ghosts.

    Args:
        forward: ``(N, 3)`` viewing directions in frame order (any length, any frame).
    Returns:
        list of ``(i, degrees)``: frames ``i`` and ``i + 1`` are that far apart, largest first.
    """
    if len(forward) < 3:
        return []
    forward = forward / np.linalg.norm(forward, axis=1, keepdims=True)
    turn = np.degrees(np.arccos(np.clip((forward[1:] * forward[:-1]).sum(1), -1.0, 1.0)))  # (N - 1,)
    limit = max(min_degrees, factor * float(np.median(turn)))
    return sorted(((int(i), float(turn[i])) for i in np.nonzero(turn > limit)[0]), key=lambda j: -j[1])


def pose_jumps(poses_bounds, **limits):
    """``turn_jumps`` of ``(N, 17)`` LLFF rows in frame order (columns down, right, back)."""
    return turn_jumps(-poses_bounds[:, :15].reshape(-1, 3, 5)[:, :, 2], **limits)


def describe_jumps(jumps, most=3):
    """``"a -> b (159 degrees), ..."`` for ``[(name_a, name_b, degrees)]``, largest first."""
    return ", ".join(f"{a} -> {b} ({deg:.0f} degrees)" for a, b, deg in jumps[:most]) + \
        (" ..." if len(jumps) > most else "")


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

"""Frames from a video for structure from motion: the work behind ``imgs2poses.py --video``.

The clip is cut into ``num_frames`` stretches of equal camera motion and the sharpest frame of each
is kept (variance of the Laplacian of a grayscale copy at most ``SCORE_SIDE`` pixels long). Motion is
the mean optical flow between consecutive frames on copies ``MOTION_SIDE`` pixels long, taken as a
pace (``path_positions``): an even pace is cut as equal windows of time, a pause or a slow start
counts for little, a quick swing for more. So a pause does not take the frames that a fast stretch
needs to stay matched; and motion-blurred frames are passed over.

Decoding is ffmpeg's (the binary that imageio-ffmpeg ships), in two passes: one scores every frame
on small grayscale copies, one writes the chosen frames at full size.

Display rotation: phones store a portrait clip as landscape frames plus a rotation in the container
(a display matrix; older files a ``rotate`` tag). Measured with imageio-ffmpeg 0.8.1 and its ffmpeg
9.0: ffmpeg turns the frames by default; imageio-ffmpeg's ``size`` is then the turned one (it reads
the size of what ffmpeg pipes out), ``source_size`` the stored one, and its ``rotate`` says 0 (it
only knows the legacy tag, which this ffmpeg neither prints nor writes); OpenCV 5's reader turns
them too. Older ffmpeg builds and wrappers differed (no auto-rotation, or a size from before it),
so nothing here relies on it: frames are decoded as stored (``-noautorotate``, where the size is
unambiguous) and turned upright here by the rotation ffmpeg prints for the stream.

``video2poses`` runs it all in a staging folder inside the scene (frames, then SfM with sequential
matching) and moves ``images/``, ``sparse/0`` and ``poses_bounds.npy`` into place only when
everything succeeded: a failure leaves the scene as it was.
"""
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

import cv2
import numpy as np
from tqdm import tqdm

from process_data.colmap_sfm import UnregisteredError, check_outputs, imgs2poses, move_into_place
from utils.errors import UserError

DEFAULT_NUM_FRAMES = 150
MIN_FRAMES = 3  # structure from motion needs at least this many views
SCORE_SIDE = 640  # frames are scored on grayscale copies at most this long (never enlarged)
# Variance of the Laplacian at SCORE_SIDE below which a frame counts as blurred or blank. Measured on
# 24 of beer's 720x1280 photos encoded as H.264 and scored as here (at 360x640): sharp 17-98 (median
# 62); Gaussian blur of sigma 3 px 1.9-6.8 (median 3.5), of 4 px 1.2-4.1; black 0. A clip smaller
# than SCORE_SIDE is scored at its own size, where the same view scores higher (beer at 90x160: sharp
# 126-830, blurred by 4 px there 3-3.5), so the threshold is only more lenient for it.
BLUR_THRESHOLD = 5.0
MOTION_SIDE = 96  # consecutive frames are compared (dense optical flow) on copies at most this long
# Pace: a step between frames is measured against the clip's typical step (the 75th percentile, so a
# long pause does not make it 0). Flow is no measure of the turn (near things flow more): on beer's
# walk at an even pace it varies 0.4-1.6x from frame to frame, and frames spread by it left gaps that
# SfM could not bridge. So steps between STILL and FAST times the typical one count as equal (time),
# slower ones less (a pause: nearly nothing), faster ones more (a quick swing gets more frames).
STILL, FAST, MIN_WEIGHT = 0.25, 2.0, 0.05
DARK_LEVEL = 16  # mean gray level (0-255) below which a frame counts as black / too dark
MIN_GOOD_SHARE = 0.1  # fewer good frames than this share of those chosen (or than 3): refuse the clip
JPEG_QUALITY = 95
STILL_IMAGE_DEMUXERS = ("image2",)  # and every "*_pipe" one: jpeg_pipe, png_pipe, ...


def ffmpeg_exe():
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def first_video_stream(header):
    """The lines of ffmpeg's description of the input's first video stream (its ``Stream`` line,
    then its metadata and side data, up to the next stream or output section), or [] if none."""
    lines, out = header.splitlines(), []
    for line in lines:
        if out:
            if re.match(r"\s*(Stream #|Output #|Input #)", line):
                break
            out.append(line)
        elif re.match(r"\s*Stream #0:\d+.*: Video: ", line):
            out.append(line)
    return out


def parse_rotation(stream_lines):
    """Counter-clockwise degrees (0, 90, 180 or 270) to turn the stored frames for display.

    ffmpeg prints a display matrix as ``displaymatrix: rotation of -90.00 degrees`` (4.x-7.x) or
    ``Display Matrix: rotation of -90.00 degrees`` (8+), counter-clockwise; older files and ffmpeg
    builds also show the legacy tag ``rotate : 90``, clockwise. The display matrix wins when both are
    there (they agree).
    """
    text = "\n".join(stream_lines)
    match = re.search(r"rotation of (-?\d+(?:\.\d+)?) degrees", text, re.IGNORECASE)
    if match:
        degrees = float(match.group(1))
    else:
        match = re.search(r"^\s*rotate\s*:\s*(-?\d+)\s*$", text, re.MULTILINE)
        degrees = -float(match.group(1)) if match else 0.0
    return int(round(degrees / 90)) % 4 * 90


def probe(video):
    """``(stored_size (W, H), rotation)`` of the clip's first video stream, from ffmpeg's description
    of it; UserError when ffmpeg cannot open it, or it is a still image or holds no video."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", video], capture_output=True,
                          text=True, errors="replace")
    header = proc.stderr
    demuxer = re.search(r"^Input #0, ([^,]+),", header, re.MULTILINE)
    if demuxer is None:
        errors = [ln.split(":", 1)[-1].strip() for ln in header.splitlines() if "Error opening input" in ln]
        why = errors[-1] if errors else (header.strip().splitlines() or ["ffmpeg cannot read it"])[-1]
        raise UserError(f"{video} is not a video ffmpeg can read ({why})")
    if demuxer.group(1).endswith("_pipe") or demuxer.group(1) in STILL_IMAGE_DEMUXERS:
        raise UserError(f"{video} is a still image ({demuxer.group(1)}), not a video: give a video clip "
                        "(mp4, mov, ...), or put photos in SCENE/images and run without --video")
    stream = first_video_stream(header)
    size = re.search(r" (\d+)x(\d+)[ ,\[]", stream[0]) if stream else None
    if size is None or 0 in (int(size.group(1)), int(size.group(2))):
        raise UserError(f"{video} holds no video stream ffmpeg can read")
    return (int(size.group(1)), int(size.group(2))), parse_rotation(stream)


def frame_rate(video):
    """Frames per second of the clip's first video stream (ffmpeg's ``N fps``), or None if not stated."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", video], capture_output=True,
                          text=True, errors="replace")
    stream = first_video_stream(proc.stderr)
    match = re.search(r"([\d.]+) fps", stream[0]) if stream else None
    return float(match.group(1)) if match and float(match.group(1)) > 0 else None


def count_packets(video):
    """Frames in the first video stream as stored (a stream copy, no decoding: fast); None if unknown.
    Only for the progress bar and an early check: the decoded count is the one relied on."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", video, "-map", "0:v:0", "-c", "copy",
                           "-fps_mode", "passthrough", "-f", "null", "-"], capture_output=True, text=True,
                          errors="replace")
    counts = re.findall(r"frame=\s*(\d+)", proc.stderr)
    return int(counts[-1]) if proc.returncode == 0 and counts else None


def decode(video, pix_fmt, size=None):
    """Frames of the first video stream as stored (not rotated), as uint8 arrays ``(H, W[, 3])``:
    ``pix_fmt`` ``gray`` or ``bgr24``; ``size`` ``(W, H)`` to scale them (area). Every decoded frame
    comes out once (no frame-rate conversion: phones record variable frame rates)."""
    import imageio_ffmpeg

    channels = {"gray": 1, "bgr24": 3}[pix_fmt]
    output = ["-map", "0:v:0", "-fps_mode", "passthrough"]
    if size is not None:
        output += ["-vf", f"scale={size[0]}:{size[1]}:flags=area"]
    quiet = logging.getLogger("imageio_ffmpeg")  # it warns when the output size differs from the stored one
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        frames = imageio_ffmpeg.read_frames(video, pix_fmt=pix_fmt, bits_per_pixel=8 * channels,
                                            input_params=["-noautorotate"], output_params=output)
        try:
            W, H = next(frames)["size"]  # the size ffmpeg says it writes to the pipe
        finally:
            quiet.setLevel(level)
        shape = (H, W) if channels == 1 else (H, W, channels)
        try:
            for buf in frames:
                yield np.frombuffer(buf, np.uint8).reshape(shape)
        finally:
            frames.close()  # stops ffmpeg at once when the caller stops early
    except (OSError, RuntimeError, IndexError, ValueError) as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip() and not ln.startswith("===")]
        raise UserError(f"cannot decode {video}: {lines[-1] if lines else err}") from None


def sharpness(gray):
    """Variance of the Laplacian of a grayscale image: high for crisp edges, near 0 when blurred or blank."""
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def window_bounds(n_frames, n_windows):
    """``n_windows + 1`` frame indices cutting ``range(n_frames)`` into equal windows (sizes differ by
    at most one; none empty when ``n_frames >= n_windows``)."""
    return np.arange(n_windows + 1) * n_frames // n_windows


def frame_motion(prev, cur):
    """How far the view moved between two grayscale frames of one size ``(h, w)`` (``MOTION_SIDE``
    long): the mean magnitude of the dense optical flow (Farneback), in units of the long side."""
    levels = int(np.clip(np.log2(min(prev.shape) / 8), 0, 3))  # a pyramid no coarser than ~8 pixels
    flow = cv2.calcOpticalFlowFarneback(prev, cur, None, pyr_scale=0.5, levels=levels, winsize=9, iterations=3,
                                        poly_n=5, poly_sigma=1.1, flags=0)
    return float(np.linalg.norm(flow, axis=-1).mean()) / max(prev.shape)


def path_positions(steps):
    """Where each frame ends along the walk, in frames of an even pace: ``steps`` ``(N - 1,)``, the
    motion between consecutive frames (``frame_motion``) -> ``(N,)`` increasing, the last the walk's
    length. A frame's share is the mean weight of its steps (``STILL``, ``FAST``): 1 at an even
    pace (then ``motion_bounds`` gives ``window_bounds``' windows), near 0 in a pause."""
    steps = np.asarray(steps, np.float64)
    if len(steps) == 0:  # one frame
        return np.ones(1)
    typical = float(np.percentile(steps, 75))
    if typical <= 0:  # nothing moves: time
        weight = np.ones(len(steps))
    else:
        r = steps / typical
        weight = np.where(r < STILL, np.maximum(r / STILL, MIN_WEIGHT), np.where(r > FAST, r / FAST, 1.0))
    padded = np.concatenate([weight[:1], weight, weight[-1:]])
    return np.cumsum((padded[:-1] + padded[1:]) / 2)


def motion_bounds(positions, n_windows):
    """``n_windows + 1`` frame indices cutting the frames into stretches of equal length along the walk
    (``positions``, ``path_positions``), none empty: ``window_bounds`` over distance instead of time
    (a window ends after the last frame that ends within it)."""
    n = len(positions)
    edges = positions[-1] * np.arange(n_windows + 1) / n_windows
    bounds = np.searchsorted(positions, edges, side="right")
    bounds[0], bounds[-1] = 0, n
    for k in range(1, n_windows):  # at least one frame per stretch, and room left for the rest
        bounds[k] = min(max(bounds[k], bounds[k - 1] + 1), n - (n_windows - k))
    return bounds


def pick_sharpest(scores, n_windows, positions=None):
    """Index of the highest score in each of ``n_windows`` windows of ``scores`` (the first on ties):
    equal in frames, or in distance along the walk when ``positions`` (``path_positions``) is given."""
    bounds = window_bounds(len(scores), n_windows) if positions is None else motion_bounds(positions, n_windows)
    return [int(lo + np.argmax(scores[lo:hi])) for lo, hi in zip(bounds[:-1], bounds[1:])]


def describe_pace(chosen):
    """A few words on how the chosen frames sit in time: how many frames of the clip lie between
    them, least to most (a pause, or a slow start, shows as a long gap)."""
    gaps = np.diff(chosen)
    if len(gaps) == 0:
        return "one frame"
    lo, hi = int(gaps.min()), int(gaps.max())
    return f"{lo} frame{'s' if lo != 1 else ''} apart" if lo == hi else f"{lo} to {hi} frames apart"


def upright(frame, rotation):
    """The stored frame turned ``rotation`` degrees counter-clockwise, as the clip is meant to be shown."""
    return np.ascontiguousarray(np.rot90(frame, rotation // 90))


def frame_name(k):
    return f"frame_{k + 1:05d}.jpg"


def check_num_frames(num_frames):
    if num_frames < MIN_FRAMES:
        raise UserError(f"--num_frames must be at least {MIN_FRAMES} (structure from motion needs "
                        f"{MIN_FRAMES} views; 100-200 suit a NeRF), got {num_frames}")


def too_few_frames(video, n_frames, num_frames):
    if n_frames < MIN_FRAMES:
        return UserError(f"{video} has only {n_frames} frame(s): structure from motion needs at least {MIN_FRAMES}")
    return UserError(f"{video} has only {n_frames} frames, fewer than --num_frames {num_frames} asks for: "
                     f"pass --num_frames {n_frames} (or fewer)")


def check_frames(video, chosen, scores, means, log):
    """UserError when nearly all chosen frames are black or blurred; a warning naming the few that are."""
    dark = means[chosen] < DARK_LEVEL
    bad = dark | (scores[chosen] < BLUR_THRESHOLD)
    n_good = int((~bad).sum())
    if n_good < max(MIN_FRAMES, math.ceil(MIN_GOOD_SHARE * len(chosen))):
        what = ("black or too dark" if dark.sum() * 2 >= bad.sum() else
                f"blurred or without detail (variance of the Laplacian below {BLUR_THRESHOLD:g}: out of "
                "focus, moving fast, too dark or a blank view)")
        raise UserError(f"{int(bad.sum())} of the {len(chosen)} frames chosen from {video} are {what}: "
                        "nothing for structure from motion to match. Film in good light, move slowly, "
                        "and check that the clip plays")
    if bad.any():
        names = [frame_name(k) for k in np.flatnonzero(bad)]
        log(f"warning: {len(names)} of {len(chosen)} frames look blurred or dark and may not register: "
            + ", ".join(names[:10]) + (" ..." if len(names) > 10 else ""))


def extract_frames(video, out_dir, num_frames=DEFAULT_NUM_FRAMES, log=print, progress=True):
    """Write the sharpest frame of each of ``num_frames`` equal windows of ``video`` to
    ``out_dir/frame_00001.jpg ...``, upright. Returns the chosen frame indices (0-based, in the clip).

    UserError for a clip ffmpeg cannot read, one with fewer than ``num_frames`` frames, and one whose
    frames are nearly all black or blurred (all found before anything is written). A failure while
    writing can leave ``out_dir`` part-filled: ``video2poses`` gives it a staging folder.
    """
    check_num_frames(num_frames)
    (W, H), rotation = probe(video)
    upright_wh = (H, W) if rotation in (90, 270) else (W, H)
    n_packets = count_packets(video)
    if n_packets is not None and n_packets < num_frames:
        raise too_few_frames(video, n_packets, num_frames)
    turn = {90: "90 degrees counter-clockwise", 180: "180 degrees", 270: "90 degrees clockwise"}.get(rotation)
    shown = f" (stored {W}x{H}, shown turned {turn})" if rotation else ""
    log(f"{video}: {upright_wh[0]}x{upright_wh[1]} frames{shown}"
        + (f", {n_packets} in all" if n_packets is not None else ""))

    scale = min(1.0, SCORE_SIDE / max(W, H))
    small = (max(1, round(W * scale)), max(1, round(H * scale))) if scale < 1 else None
    scores, means, steps, prev = [], [], [], None
    bar = tqdm(decode(video, "gray", small), total=n_packets, desc="[video 1/2] reading and scoring frames",
               unit="frame", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    for gray in bar:
        scores.append(sharpness(gray))
        means.append(float(gray.mean()))
        f = MOTION_SIDE / max(gray.shape)
        tiny = cv2.resize(gray, (max(8, round(gray.shape[1] * f)), max(8, round(gray.shape[0] * f))),
                          interpolation=cv2.INTER_AREA) if f < 1 else gray
        if prev is not None:
            steps.append(frame_motion(prev, tiny))
        prev = tiny
    bar.close()
    scores, means = np.array(scores), np.array(means)
    if len(scores) < num_frames:
        raise too_few_frames(video, len(scores), num_frames)
    positions = path_positions(steps)
    chosen = pick_sharpest(scores, num_frames, positions)
    log(f"      kept {num_frames} of {len(scores)} frames: the sharpest of each of {num_frames} stretches of "
        f"equal camera motion ({describe_pace(chosen)})")
    check_frames(video, chosen, scores, means, log)

    os.makedirs(out_dir, exist_ok=True)
    wanted = {idx: k for k, idx in enumerate(chosen)}
    bar = tqdm(total=num_frames, desc="[video 2/2] writing frames", unit="frame", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    frames = decode(video, "bgr24")
    written = 0
    try:
        for idx, frame in enumerate(frames):
            if idx in wanted:
                path = os.path.join(out_dir, frame_name(wanted[idx]))
                if not cv2.imwrite(path, upright(frame, rotation), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
                    raise UserError(f"cannot write {path} (disk full?)")
                written += 1
                bar.update()
                if written == num_frames:
                    break
    finally:
        frames.close()  # stops ffmpeg when the last chosen frame comes before the end
        bar.close()
    if written < num_frames:
        raise UserError(f"{video} gave fewer frames on a second read ({written} of the {num_frames} chosen): "
                        "is the file still being written or copied?")
    log(f"      wrote {num_frames} frames of {upright_wh[0]}x{upright_wh[1]} (JPEG quality {JPEG_QUALITY})")
    return chosen


def check_scene(scene_dir, overwrite):
    """UserError unless the scene can take new ``images/`` (none there with files in it, or
    ``overwrite``) and outputs. Returns the folders to create for it, outermost first."""
    if os.path.exists(scene_dir) and not os.path.isdir(scene_dir):
        raise UserError(f"{scene_dir} is a file: give a folder for the scene (it is created if missing)")
    images = os.path.join(scene_dir, "images")
    if os.path.exists(images) and not os.path.isdir(images):
        raise UserError(f"{images} is a file: move it away first")
    if os.path.isdir(images) and os.listdir(images) and not overwrite:
        raise UserError(f"{images} already holds {len(os.listdir(images))} file(s): pass --overwrite to replace "
                        "them with the video's frames, or give another scene folder")
    if os.path.isdir(scene_dir):
        check_outputs(scene_dir, overwrite)
        return []
    missing, folder = [], os.path.abspath(scene_dir)
    while not os.path.exists(folder):
        missing.insert(0, folder)
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise UserError(f"cannot create {scene_dir}: {folder} is not a writable folder")
    return missing


def commit(stage, scene_dir):
    """Move the staged ``images/``, ``sparse/0`` and ``poses_bounds.npy`` into the scene (renames on one
    filesystem). An ``images/`` already there (empty, or replaced with --overwrite) is set aside in the
    stage, deleted with it, and put back if the moves fail (the new frames are then removed)."""
    images, aside = os.path.join(scene_dir, "images"), os.path.join(stage, "replaced_images")
    had_images = os.path.isdir(images)
    if had_images:
        os.replace(images, aside)
    moved = False
    try:
        os.replace(os.path.join(stage, "images"), images)
        moved = True
        move_into_place(stage, scene_dir)
    except BaseException:
        if moved:
            shutil.rmtree(images, ignore_errors=True)
        if had_images:
            os.replace(aside, images)
        raise


def video2poses(scene_dir, video, num_frames=DEFAULT_NUM_FRAMES, overwrite=False, matcher="auto", downscale=1.0,
                log=print, progress=True, **sfm_options):
    """Frames of ``video`` into ``SCENE/images`` and their poses into ``SCENE/sparse/0`` and
    ``SCENE/poses_bounds.npy``, all or nothing.

    Args:
        scene_dir: the scene folder (created if missing). An ``images/`` there that holds files is
            replaced only with ``overwrite`` (and only once everything succeeded).
        video: the clip; num_frames: how many frames to keep (>= 3).
        matcher: ``auto`` means sequential here (frames of a video); downscale and ``sfm_options``
            (camera_model, single_camera, seed, verbose) go to ``imgs2poses``.
    Returns ``poses_bounds`` as ``imgs2poses`` does. Raises UserError for a bad clip, a scene that
    would lose photos, or frames that do not register; the scene is left as it was.
    """
    if not os.path.exists(video):
        raise UserError(f"{video} not found")
    if os.path.isdir(video):
        raise UserError(f"{video} is a folder: give a video file (for photos, put them in SCENE/images "
                        "and run without --video)")
    check_num_frames(num_frames)
    if downscale < 1:
        raise UserError(f"--downscale must be >= 1, got {downscale}")
    created = check_scene(scene_dir, overwrite)
    os.makedirs(scene_dir, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=".imgs2poses-video-", dir=scene_dir)
    try:
        extract_frames(video, os.path.join(stage, "images"), num_frames, log=log, progress=progress)
        # SfM on the staged scene; its messages name the scene the files are moved to
        stage_log = lambda msg: log(msg.replace(stage, scene_dir))  # noqa: E731
        try:
            poses_bounds = imgs2poses(stage, matcher="sequential" if matcher == "auto" else matcher,
                                      downscale=downscale, log=stage_log, ordered=True, **sfm_options)
        except UnregisteredError as err:
            listed = ", ".join(err.missing[:10]) + (" ..." if len(err.missing) > 10 else "")
            raise UserError(f"only {err.registered} of {err.total} frames registered; not registered: {listed}. "
                            "Nothing was written. Try more frames (--num_frames), a clip that moves more "
                            "slowly (more overlap between frames), or a smaller --downscale") from None
        commit(stage, scene_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in reversed(created):  # made above, empty again
            try:
                os.rmdir(folder)
            except OSError:
                break
        raise
    shutil.rmtree(stage, ignore_errors=True)
    log(f"frames in {os.path.join(scene_dir, 'images')} ({frame_name(0)} ... {frame_name(num_frames - 1)})")
    return poses_bounds

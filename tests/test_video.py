"""imgs2poses.py --video: frames from a clip (spread evenly over the walk, sharpest per stretch, upright), bad clips
refused in one line with the scene left as it was, and a short clip of beer through SfM.

Clips are made here from beer's photos, downscaled (90x160 for the frame tests, 270x480 for SfM)
and encoded with imageio's ffmpeg writer; portrait ones are stored landscape with a display
rotation set by the bundled ffmpeg, as phones do.
"""
import os

import cv2
import imageio
import imageio_ffmpeg
import numpy as np
import pytest

from benchmarks import make_clip
from conftest import run_script
from process_data import video as vid

SMALL = (90, 160)  # W, H of the frame tests' clips (portrait, like beer)


def beer_frames(beer_dir, indices, size=SMALL):
    """Beer photos ``indices`` resized to ``size`` (W, H), RGB uint8."""
    out = []
    for i in indices:
        img = cv2.imread(str(beer_dir / "images" / f"{i:04d}.jpg"))
        out.append(cv2.resize(img, size, interpolation=cv2.INTER_AREA)[:, :, ::-1].copy())
    return out


def write_clip(path, frames, display_rotation=0):
    """An H.264 mp4 of ``frames`` (RGB, as stored), 10 fps (``benchmarks/make_clip.write_clip``).
    ``display_rotation``: counter-clockwise degrees a player turns them (a phone's portrait clip: -90)."""
    return make_clip.write_clip(path, frames, fps=10, display_rotation=display_rotation, quality=10)


def stored_as(upright, display_rotation):
    """What a camera stores so that turning it ``display_rotation`` degrees counter-clockwise shows ``upright``."""
    return np.rot90(upright, -display_rotation // 90)


def read_jpgs(folder):
    names = sorted(os.listdir(folder))
    return names, [cv2.imread(os.path.join(folder, n))[:, :, ::-1].astype(np.float32) for n in names]


def mad(a, b):
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


# ---------------------------------------------------------------- pure parts


def test_windows_are_even_and_pick_the_sharpest():
    assert vid.window_bounds(10, 4).tolist() == [0, 2, 5, 7, 10]
    assert vid.window_bounds(12, 4).tolist() == [0, 3, 6, 9, 12]
    for n, k in ((150, 150), (451, 150), (1000, 7), (5, 3)):
        sizes = np.diff(vid.window_bounds(n, k))
        assert sizes.sum() == n and sizes.min() >= 1 and sizes.max() - sizes.min() <= 1
    # equal scores: the first frame of each window, i.e. an even spread
    assert vid.pick_sharpest(np.ones(12), 4) == [0, 3, 6, 9]
    scores = np.array([1, 5, 2, 9, 0, 0, 3, 3, 4, 0.5])
    assert vid.pick_sharpest(scores, 4) == [1, 3, 6, 8]  # windows [0,2) [2,5) [5,7) [7,10)


def test_stretches_follow_the_motion_not_the_seconds():
    """A walk that stands still for half its frames: the stretches of equal motion give the still
    part one frame where equal windows of time give it half of them. A quick swing gets more frames
    than time gives it; an even pace (flow varying 0.4-1.6x, as on beer's walk) is cut as time cuts
    it; no stretch is ever empty."""
    steps = [1.0] * 10 + [0.0] * 20 + [1.0] * 10  # 41 frames: 0-10 move, 11-30 stand still, 31-40 move
    pos = vid.path_positions(steps)
    assert len(pos) == 41 and np.all(np.diff(pos) > 0)  # a still frame still counts a little
    still = lambda picks: sum(11 <= i <= 30 for i in picks)  # noqa: E731
    by_motion, by_time = vid.pick_sharpest(np.ones(41), 8, pos), vid.pick_sharpest(np.ones(41), 8)
    assert still(by_motion) <= 1 and still(by_time) >= 4, (by_motion, by_time)
    swing = vid.pick_sharpest(np.ones(41), 10, vid.path_positions([1.0] * 34 + [6.0] * 6))  # frames 34-40 fast
    assert sum(i >= 34 for i in swing) >= 3 > sum(i >= 34 for i in vid.pick_sharpest(np.ones(41), 10)), swing
    even = np.random.default_rng(0).uniform(0.4, 1.6, 40)
    for n in (8, 24, 41):
        assert vid.motion_bounds(vid.path_positions(even), n).tolist() == vid.window_bounds(41, n).tolist()
    for steps, n in (([0.0] * 20, 5), ([0.0] * 10 + [100.0] + [0.0] * 10, 5), ([1.0] * 149, 150), ([3.0] * 6, 7)):
        bounds = vid.motion_bounds(vid.path_positions(steps), n)
        assert bounds[0] == 0 and bounds[-1] == len(steps) + 1 and np.diff(bounds).min() >= 1, bounds


def test_rotation_is_read_from_every_ffmpeg_wording():
    stream = "  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p, 1920x1080, 30 fps"
    cases = {  # ffmpeg 8+, 4.x-7.x (side data), the legacy tag of older builds/files (clockwise)
        "      Display Matrix: rotation of -90.00 degrees": 270,
        "      displaymatrix: rotation of 90.00 degrees": 90,
        "      displaymatrix: rotation of -180.00 degrees": 180,
        "      rotate          : 90": 270,
        "      rotate          : 270": 90,
        "      handler_name    : VideoHandler": 0,
    }
    for line, rotation in cases.items():
        header = f"Input #0, mov,mp4, from 'x.mp4':\n{stream}\n    Metadata:\n{line}\n  Stream #0:1: Audio: aac"
        assert vid.parse_rotation(vid.first_video_stream(header)) == rotation, line
    # a rotation of another stream is not the video's
    header = f"{stream}\n  Stream #0:1: Video: mjpeg, 320x240\n      Display Matrix: rotation of -90.00 degrees"
    assert vid.parse_rotation(vid.first_video_stream(header)) == 0
    frame = np.arange(6).reshape(2, 3)
    assert vid.upright(frame, 270).tolist() == [[3, 0], [4, 1], [5, 2]]  # turned clockwise


# ---------------------------------------------------------------- frames from real clips


@pytest.mark.parametrize("display_rotation", [-90, 90, 180, 0])
def test_rotated_clip_gives_upright_frames(beer_dir, tmp_path, display_rotation):
    """A portrait clip stored landscape (or upside down) with a display rotation: the frames written
    are upright portrait and match the photos, and agree with ffmpeg's own auto-rotation."""
    src = beer_frames(beer_dir, [0, 1, 2])
    clip = write_clip(tmp_path / "clip.mp4", [stored_as(f, display_rotation) for f in src], display_rotation)
    raw = imageio_ffmpeg.read_frames(str(clip), input_params=["-noautorotate"])
    stored_size = next(raw)["source_size"]
    raw.close()
    assert stored_size == ((160, 90) if display_rotation in (90, -90) else (90, 160))  # really stored so

    chosen = vid.extract_frames(str(clip), str(tmp_path / "out"), num_frames=3, progress=False, log=lambda m: None)
    assert chosen == [0, 1, 2]
    names, frames = read_jpgs(tmp_path / "out")
    assert names == ["frame_00001.jpg", "frame_00002.jpg", "frame_00003.jpg"]
    for frame, want in zip(frames, src):
        assert frame.shape == (160, 90, 3)
        right, flipped = mad(frame, want), mad(frame, want[::-1, ::-1])
        assert right < 6 and flipped > 3 * right, (right, flipped)
    with imageio.get_reader(str(clip), "ffmpeg") as reader:  # ffmpeg's default: rotated for display
        assert mad(frames[0], reader.get_data(0)) < 6


def test_sharpest_frame_of_each_stretch_is_kept(beer_dir, tmp_path):
    """12 different photos of an even walk, so 4 stretches of 3; in each all but one are blurred: the
    sharp one is kept, in order, whatever its place in the stretch."""
    src = beer_frames(beer_dir, range(30, 42))
    sharp = [0, 5, 7, 11]  # first, last, middle, last of the stretches [0,3) [3,6) [6,9) [9,12)
    clip = [f if i in sharp else cv2.GaussianBlur(f, (0, 0), 1.5) for i, f in enumerate(src)]
    path = write_clip(tmp_path / "clip.mp4", clip)
    chosen = vid.extract_frames(str(path), str(tmp_path / "out"), num_frames=4, progress=False, log=lambda m: None)
    assert chosen == sharp
    names, frames = read_jpgs(tmp_path / "out")
    assert names == [f"frame_{k:05d}.jpg" for k in (1, 2, 3, 4)]
    for frame, i in zip(frames, sharp):
        diffs = [mad(frame, s) for s in src]
        assert int(np.argmin(diffs)) == i and diffs[i] < 6, diffs


def test_a_pause_in_the_clip_does_not_take_the_frames(beer_dir, tmp_path):
    """A clip that stands on its first view for 20 frames, then walks through 19 more photos: of 10
    frames kept, equal windows of time would give 5 to the pause; stretches of equal motion give
    every stretch of the walk its frame (9 or more different photos), and the log says how far apart."""
    photos = beer_frames(beer_dir, range(20))
    path = write_clip(tmp_path / "clip.mp4", [photos[0]] * 20 + photos[1:])
    lines = []
    chosen = vid.extract_frames(str(path), str(tmp_path / "out"), num_frames=10, progress=False, log=lines.append)
    shown = {max(0, i - 19) for i in chosen}  # clip frame i shows photo max(0, i - 19)
    assert len(shown) >= 9, chosen
    assert any("stretches of equal camera motion" in line and "frames apart" in line for line in lines), lines


# ---------------------------------------------------------------- bad input, through the script


def bad_video_run(scene, *args):
    """Run imgs2poses.py SCENE args: it must fail with one ``error:`` line and leave no images/,
    sparse/, poses_bounds.npy or staging folder in SCENE."""
    proc = run_script("imgs2poses.py", scene, *args, check=False, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-2000:]
    if os.path.isdir(scene):
        outputs = ("images", "sparse", "poses_bounds.npy", "transforms.json", "sparse_pc.ply")
        left = [p for p in os.listdir(scene) if p in outputs or p.startswith(".")]
        assert not left, left
    return lines[0]


def test_bad_clips_are_refused_in_one_line(beer_dir, tmp_path):
    scene = tmp_path / "new" / "scene"  # made by the run: a failed one must not leave it (or new/) behind
    assert "not found" in bad_video_run(scene, "--video", tmp_path / "nope.mp4")

    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    assert "is not a video" in bad_video_run(scene, "--video", text)
    jpeg = tmp_path / "photo.mp4"
    jpeg.write_bytes((beer_dir / "images" / "0000.jpg").read_bytes())
    assert "still image" in bad_video_run(scene, "--video", jpeg)
    assert "is a folder" in bad_video_run(scene, "--video", tmp_path)

    short = write_clip(tmp_path / "short.mp4", beer_frames(beer_dir, range(8)))
    line = bad_video_run(scene, "--video", short, "--num_frames", 20)
    assert "has only 8 frames" in line and "--num_frames 8" in line
    assert "at least 3" in bad_video_run(scene, "--video", short, "--num_frames", 2)
    assert "--num_frames goes with --video" in bad_video_run(scene, "--num_frames", 5)

    black = write_clip(tmp_path / "black.mp4", [np.zeros((160, 90, 3), np.uint8)] * 8)
    assert "black" in bad_video_run(scene, "--video", black, "--num_frames", 4)
    blurred = write_clip(tmp_path / "blurred.mp4",
                         [cv2.GaussianBlur(f, (0, 0), 6) for f in beer_frames(beer_dir, range(8))])
    assert "blurred" in bad_video_run(scene, "--video", blurred, "--num_frames", 4)
    assert not (tmp_path / "new").exists()


def test_photos_already_in_the_scene_are_kept(beer_dir, tmp_path):
    """images/ with photos: refused without --overwrite; with it, a failed SfM (frames of noise that
    cannot register, named in the message) still leaves the photos as they were."""
    pytest.importorskip("pycolmap")
    scene = tmp_path / "scene"
    os.makedirs(scene / "images")
    (scene / "images" / "mine.jpg").write_bytes(b"a photo")
    clip = write_clip(tmp_path / "clip.mp4", beer_frames(beer_dir, range(8)))
    line = bad_video_run_keep(scene, "--video", clip, "--num_frames", 4)
    assert "already holds 1 file" in line and "--overwrite" in line

    rng = np.random.default_rng(0)
    noise = write_clip(tmp_path / "noise.mp4", rng.integers(0, 256, (6, 160, 90, 3), dtype=np.uint8))
    line = bad_video_run_keep(scene, "--video", noise, "--num_frames", 6, "--overwrite")
    assert "frames registered; not registered: frame_00001.jpg" in line and "Nothing was written" in line


def bad_video_run_keep(scene, *args):
    """``bad_video_run`` for a scene holding the user's images/mine.jpg: it must still be there, unchanged."""
    proc = run_script("imgs2poses.py", scene, *args, check=False, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert sorted(os.listdir(scene)) == ["images"] and os.listdir(scene / "images") == ["mine.jpg"]
    assert (scene / "images" / "mine.jpg").read_bytes() == b"a photo"
    return lines[0]


# ---------------------------------------------------------------- end to end


def test_phone_clip_to_poses(beer_dir, tmp_path):
    """Ten neighbouring beer photos at 360x640 as a phone's portrait clip (stored landscape, rotation
    tag), into a scene whose images/ it replaces (--overwrite): upright frames, every one registered, cameras matching the capture's own poses (centres up
    to a similarity, orientations after the same rotation: a frame left on its side would be 90 deg off)."""
    pytest.importorskip("pycolmap")
    from process_data.pose_compare import llff_rotation_errors, umeyama

    idx = list(range(20, 30))
    src = beer_frames(beer_dir, idx, size=(360, 640))
    clip = write_clip(tmp_path / "walk.mp4", [stored_as(f, -90) for f in src], -90)
    scene = tmp_path / "scene"
    os.makedirs(scene / "images")
    (scene / "images" / "old_photo.jpg").write_bytes(b"from an earlier try")  # replaced: --overwrite
    proc = run_script("imgs2poses.py", scene, "--video", clip, "--num_frames", 10, "--overwrite", timeout=300)
    for stage in ("(stored 640x360, shown turned 90 degrees clockwise)", "[video 1/2] reading and scoring",
                  "[video 2/2] writing frames", "[1/2] extracting", "[2/2] matching 3 neighbours, global mapper",
                  "wrote"):
        assert stage in proc.stdout + proc.stderr, stage
    # no staging left
    assert sorted(os.listdir(scene)) == ["images", "poses_bounds.npy", "sfm.json", "sparse", "sparse_pc.ply",
                                         "transforms.json"]
    names, frames = read_jpgs(scene / "images")
    assert names == [f"frame_{k:05d}.jpg" for k in range(1, 11)]
    assert max(mad(f, s) for f, s in zip(frames, src)) < 6

    ours = np.load(scene / "poses_bounds.npy")
    assert ours.shape == (10, 17) and tuple(ours[0, [4, 9]]) == (640, 360)  # hwf of upright frames
    # the capture's focal at half size; ten frames over a short arc pin it loosely (470-560 in repeated runs)
    assert ours[0, 14] == pytest.approx(1117.47 / 2, rel=0.25)
    ref = np.load(beer_dir / "poses_bounds.npy")
    c_ours = ours[:, :15].reshape(-1, 3, 5)[:, :, 3]
    c_ref = ref[idx, :15].reshape(-1, 3, 5)[:, :, 3]
    s, R, t = umeyama(c_ours, c_ref)
    err = np.linalg.norm(s * c_ours @ R.T + t - c_ref, axis=1)
    all_centres = ref[:, :15].reshape(-1, 3, 5)[:, :, 3]
    radius = np.linalg.norm(all_centres - all_centres.mean(0), axis=1).mean()
    assert err.max() < 0.03 * radius, (err, radius)  # 0.005-0.01 of it in repeated runs
    # orientations after the rotation that best maps ours onto the capture's (a short arc of centres
    # leaves the similarity's rotation loose about it)
    assert llff_rotation_errors(ours, ref[idx]).max() < 6.0

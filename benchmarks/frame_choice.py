"""Frames kept from a clip that pauses: windows of time against stretches of equal motion (RESULTS §26).

    python benchmarks/frame_choice.py --size 640 --num_frames 40

The clip is made here from the procedural demo scene (``datasets/demo_scene.py``), rendered on
white: ``--pause`` seconds standing at the first view, then 1.5 turns around the solids in
``--walk`` frames, the elevation swinging 30 ± 15 degrees, at 12 fps. For each way of choosing
(``process_data.video``: ``time``, the sharpest of equal windows of frames, as before issue 31;
``motion``, of stretches of equal camera motion, today's) it keeps ``--num_frames`` frames, poses
them with ``imgs2poses`` (sequential matching, its retries) and prints one JSON line: the frames
taken from the pause, the frames registered and, when the walk posed, the pose error against the
views' true cameras (``process_data.pose_compare``). ``--no_sfm``: the choice only.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from benchmarks.make_clip import write_clip  # noqa: E402
from datasets.demo_scene import look_at_pose, render  # noqa: E402
from process_data import video  # noqa: E402

FPS = 12


def walk_views(pause_frames, walk_frames):
    """(azimuth, elevation) in radians per frame: a pause at the first view, then 1.5 turns."""
    views = [(0.0, np.radians(30))] * pause_frames
    for t in np.linspace(0, 1, walk_frames):
        views.append((3 * np.pi * t, np.radians(30 + 15 * np.sin(3 * np.pi * t))))
    return views


def make_clip(path, size, views):
    """Render ``views`` (``walk_views``) at ``size`` x ``size`` on white into an mp4; returns the
    camera-to-world ``(4, 4)`` of each frame (OpenGL axes, as ``look_at_pose``)."""
    frames, poses, done = [], [], {}
    for view in views:
        if view not in done:  # a pause repeats one view: render it once
            c2w = look_at_pose(*view)
            rgba = render(c2w, size, supersample=2).astype(np.float32) / 255
            rgb = rgba[..., :3] * rgba[..., 3:] + 1 - rgba[..., 3:]
            done[view] = ((rgb * 255 + 0.5).astype(np.uint8), c2w)
        frames.append(done[view][0])
        poses.append(done[view][1])
    write_clip(path, frames, fps=FPS)
    return poses


def choose(clip, out_dir, n, way):
    """Frames of ``clip`` kept into ``out_dir/images`` the ``way`` asked (``time`` or ``motion``)."""
    by_motion = video.pick_sharpest
    if way == "time":  # the windows of time: the motion's positions ignored
        video.pick_sharpest = lambda scores, k, positions=None: by_motion(scores, k)
    try:
        return video.extract_frames(clip, os.path.join(out_dir, "images"), n, log=lambda *a: None, progress=False)
    finally:
        video.pick_sharpest = by_motion


def pose(scene, chosen, truth):
    """imgs2poses on ``scene``; registered frames and the pose error against ``truth`` (or the failure)."""
    import pycolmap

    from process_data.colmap_sfm import imgs2poses
    from process_data.pose_compare import compare_poses, model_poses
    from utils.errors import UserError

    try:
        imgs2poses(scene, matcher="sequential", log=lambda *a: None)
    except UserError as err:
        return {"registered": None, "failed": str(err)[:200]}
    ours = model_poses(pycolmap.Reconstruction(os.path.join(scene, "sparse", "0")))
    ref = {}
    for k, idx in enumerate(chosen):
        c2w = truth[idx]  # OpenGL camera axes -> COLMAP's world-to-camera (x right, y down, z forward)
        ref[video.frame_name(k)] = (np.diag([1.0, -1.0, -1.0]) @ c2w[:3, :3].T, c2w[:3, 3])
    return {"registered": len(ours), "error": compare_poses(ours, ref)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=640, help="frame side in pixels (default 640)")
    p.add_argument("--pause", type=float, default=2.0, help="seconds standing still at the start (default 2)")
    p.add_argument("--walk", type=int, default=96, help="frames of the 1.5-turn walk (default 96)")
    p.add_argument("--num_frames", type=int, default=40, help="frames kept for the poses (default 40)")
    p.add_argument("--ways", nargs="+", default=["time", "motion"], choices=("time", "motion"))
    p.add_argument("--no_sfm", action="store_true", help="only choose the frames")
    p.add_argument("--out", default=None, help="append the lines to this file")
    args = p.parse_args(argv)
    pause = round(args.pause * FPS)
    work = tempfile.mkdtemp(prefix="frame_choice-")
    try:
        clip = os.path.join(work, "walk.mp4")
        t0 = time.time()
        truth = make_clip(clip, args.size, walk_views(pause, args.walk))
        print(f"{clip}: {pause} still frames, then {args.walk} walking, {args.size}x{args.size} "
              f"({time.time() - t0:.0f} s)", file=sys.stderr)
        rows = []
        for way in args.ways:
            scene = os.path.join(work, way)
            chosen = choose(clip, scene, args.num_frames, way)
            row = {"way": way, "size": args.size, "num_frames": args.num_frames, "chosen": chosen,
                   "from_pause": sum(i < pause for i in chosen),
                   "distinct_views": len({max(i, pause - 1) for i in chosen})}
            if not args.no_sfm:
                row.update(pose(scene, chosen, truth))
            rows.append(row)
            print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

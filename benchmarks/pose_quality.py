"""Poses made here against a capture's own: each SfM strategy, and the retrying flow of ``imgs2poses.py``.

    python benchmarks/pose_quality.py                      # beer: its photos, and as clips (RESULTS §22)
    python benchmarks/pose_quality.py --scene DIR --downscale 2 --inputs photos

A scene is a folder with ``images/`` (in shooting order by name) and its own COLMAP model
``sparse/0``, the reference. Inputs made from it:

- ``photos``: the photos themselves (SfM on copies reduced by ``--downscale``);
- ``clip``: the photos as a portrait phone clip (``make_clip.py``, ``--clip_wh``, 12 fps), from
  which ``imgs2poses.py --video`` keeps ``--clip_frames`` frames, as ``capture.py --minutes 15`` does;
- ``half``: the first ``--half`` photos as a clip with 24 frames kept (``capture.py --minutes 6``).

A frame of a clip is matched to its photo by its look (the nearest photo at 36x64). For each input
it prints one row per strategy (``process_data.colmap_sfm``: each alone, without retries) and one
for ``imgs2poses`` as it runs (the first strategy, then the retries when the path folds):
registered frames, the turn the cameras cover, the largest turn between neighbours, the centre
error in % of the orbit's radius and the rotation error, after a similarity fit to the reference
(``process_data.pose_compare``). ``--out FILE``: the rows as JSON.
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

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.make_clip import main as make_clip  # noqa: E402
from datasets.image_utils import list_images  # noqa: E402
from process_data.colmap_sfm import (OTHER_STRATEGIES, ORDERED, SFM_LOG, Strategy, extract_features, imgs2poses,  # noqa: E402
                                     match_and_map, model_forwards, turn_about, turn_jumps,
                                     write_downscaled)
from process_data.pose_compare import compare_poses, model_poses  # noqa: E402
from process_data.video import extract_frames  # noqa: E402
from utils.errors import UserError, cli_main  # noqa: E402

BEER = os.path.join(ROOT, "..", "shared", "data", "nerf_llff_data", "beer")
STRATEGIES = (Strategy("exhaustive"), ORDERED) + OTHER_STRATEGIES
LOOK = (36, 64)  # frames are matched to photos at this size


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scene", default=BEER, help="folder with images/ and its own sparse/0 (default: beer)")
    p.add_argument("--inputs", nargs="+", default=["photos", "clip", "half"], choices=("photos", "clip", "half"))
    p.add_argument("--downscale", type=float, default=2.0, help="photos: SfM on copies reduced by this (default 2)")
    p.add_argument("--clip_wh", type=int, nargs=2, default=[360, 640], metavar=("W", "H"), help="clips' frame size")
    p.add_argument("--clip_frames", type=int, default=60, help="frames kept from the whole clip (default 60)")
    p.add_argument("--half", type=int, default=41, help="photos in the half walk's clip (default 41)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the rows here as JSON")
    a = p.parse_args(argv)
    for need in ("images", os.path.join("sparse", "0")):
        if not os.path.isdir(os.path.join(a.scene, need)):
            raise UserError(f"{os.path.join(a.scene, need)} is missing: --scene needs a folder with images/ and its "
                            "own COLMAP model in sparse/0 (the reference)")
    return a


def look(path):
    return cv2.resize(cv2.imread(path, cv2.IMREAD_GRAYSCALE), LOOK, interpolation=cv2.INTER_AREA).astype(np.float32)


def frames_to_photos(frame_dir, photos):
    """``frame name -> photo name``: the photo each frame of a clip was made from (nearest look)."""
    looks = {os.path.basename(p): look(p) for p in photos}
    return {os.path.basename(f): min(looks, key=lambda n: float(((looks[n] - look(f)) ** 2).mean()))
            for f in list_images(frame_dir)}


def make_inputs(a, work):
    """``[(label, scene folder with images/, frame -> photo names, downscale)]``."""
    photos = list_images(os.path.join(a.scene, "images"))
    inputs = []
    for kind in a.inputs:
        if kind == "photos":
            inputs.append((f"photos ({len(photos)})", a.scene, None, a.downscale))
            continue
        subset, n_frames = (photos, a.clip_frames) if kind == "clip" else (photos[:a.half], 24)
        src = os.path.join(work, f"{kind}_photos")
        os.makedirs(src)
        for p in subset:
            os.symlink(os.path.abspath(p), os.path.join(src, os.path.basename(p)))
        video = os.path.join(work, f"{kind}.mp4")
        make_clip([src, video, "--size", *map(str, a.clip_wh), "--fps", "12", "--portrait"])
        scene = os.path.join(work, kind)
        extract_frames(video, os.path.join(scene, "images"), n_frames, log=lambda *_: None, progress=False)
        label = f"clip of {len(subset)} photos, {n_frames} frames"
        inputs.append((label, scene, frames_to_photos(os.path.join(scene, "images"), subset), 1.0))
    return inputs


def row(label, strategy, rec, names, rename, reference, seconds):
    poses = model_poses(rec) if rec is not None else {}
    done, forward = model_forwards(poses)
    jumps = turn_jumps(forward)
    turns = np.degrees(np.arccos(np.clip((forward[1:] * forward[:-1]).sum(1), -1, 1))) if len(done) > 1 else [0]
    err = compare_poses({rename.get(n, n): p for n, p in poses.items()}, reference) or {}
    return {"input": label, "strategy": strategy, "registered": len(done), "frames": len(names),
            "turn_covered": round(turn_about(forward, -sum(p[0][1] for p in poses.values())), 1) if done else 0.0,
            "largest_turn": round(float(np.max(turns)), 1), "folds": len(jumps),
            **{k: round(v, 2) for k, v in err.items() if k != "n"}, "seconds": round(seconds, 1)}


def main(argv=None):
    import pycolmap

    a = parse_args(argv)
    pycolmap.logging.minloglevel = 2
    reference = model_poses(pycolmap.Reconstruction(os.path.join(a.scene, "sparse", "0")))
    rows = []
    work = tempfile.mkdtemp(prefix="pose_quality-")
    print("| input | strategy | registered | turn covered | largest turn | folds | centre error (mean / median, "
          "% of radius) | rotation error (mean / median) | s |\n|---|---|---|---|---|---|---|---|---|", flush=True)

    def show(r):
        rows.append(r)
        err = (f"{r['centre_mean']:.1f} / {r['centre_median']:.1f} | {r['rotation_mean']:.2f}° / "
               f"{r['rotation_median']:.2f}°") if "centre_mean" in r else "- | -"
        print(f"| {r['input']} | {r['strategy']} | {r['registered']}/{r['frames']} | {r['turn_covered']:.0f}° | "
              f"{r['largest_turn']:.0f}° | {r['folds']} | {err} | {r['seconds']:.0f} |", flush=True)

    try:
        for label, scene, rename, downscale in make_inputs(a, work):
            rename = rename or {}
            names = [os.path.relpath(p, os.path.join(scene, "images")) for p in list_images(os.path.join(scene, "images"))]
            image_dir = os.path.join(scene, "images")
            run_dir = tempfile.mkdtemp(dir=work)
            if downscale > 1:
                size = cv2.imread(os.path.join(image_dir, names[0])).shape[1::-1]
                image_dir = os.path.join(run_dir, "images")
                write_downscaled(scene, names, size, downscale, image_dir)
            max_side = max(cv2.imread(os.path.join(image_dir, names[0])).shape[:2])
            feats = os.path.join(run_dir, "features.db")
            extract_features(image_dir, names, feats, "SIMPLE_RADIAL", True, max_side)
            for k, strategy in enumerate(STRATEGIES):
                db = os.path.join(run_dir, f"s{k}.db")
                shutil.copy(feats, db)
                t0 = time.time()
                rec = match_and_map(strategy, db, image_dir, os.path.join(run_dir, f"m{k}"), a.seed, lambda *_: None)
                show(row(label, strategy.name, rec, names, rename, reference, time.time() - t0))
            # the flow as imgs2poses.py runs it, retries included, on a copy of the scene
            flow = os.path.join(run_dir, "flow")
            os.makedirs(flow)
            os.symlink(os.path.abspath(os.path.join(scene, "images")), os.path.join(flow, "images"))
            t0 = time.time()
            try:
                imgs2poses(flow, matcher="sequential", downscale=downscale, seed=a.seed, log=lambda *_: None)
                with open(os.path.join(flow, SFM_LOG)) as f:
                    chosen = json.load(f)["strategy"]
                rec = pycolmap.Reconstruction(os.path.join(flow, "sparse", "0"))
                show(row(label, f"**imgs2poses: {chosen}**", rec, names, rename, reference, time.time() - t0))
            except Exception as err:  # a folded or unregistered capture: say so in the table
                print(f"| {label} | imgs2poses | failed: {str(err)[:120]} |", flush=True)
                rows.append({"input": label, "strategy": "imgs2poses", "error": str(err)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    cli_main(main)()

"""The input of a capture and the manifest (``DIR/capture.json``) that ties an output folder to it."""
import json
import os

import numpy as np

from datasets.image_utils import common_size, list_images
from pipeline.budget import FRAMES_PER_SECOND, MAX_FRAMES, MIN_FRAMES
from utils.errors import UserError
from utils.io import write_json_atomic

MANIFEST = "capture.json"

def describe_input(path, num_frames):
    """What the input is, checked before anything is written: ``{"kind": "video"|"photos", "path",
    "size", "frames", "wh", "num_frames"}``. UserError for a missing file, something that is neither
    a video nor a folder of photos, and too few frames or photos."""
    from process_data.video import count_packets, frame_rate, probe

    if not os.path.exists(path):
        raise UserError(f"{path} not found: give a video (mp4, mov, ...) or a folder of photos")
    real = os.path.realpath(path)
    if os.path.isdir(path):
        photos = list_images(path)
        if not photos:
            raise UserError(f"{path} is a folder without photos (png/jpg): give a video or a folder of photos")
        if num_frames is not None:
            raise UserError("--num_frames is for a video (how many frames to take from it); a folder's photos "
                            "are all used")
        if len(photos) < MIN_FRAMES:
            raise UserError(f"{path} holds only {len(photos)} photo(s): a capture needs at least {MIN_FRAMES} "
                            "(30-150 suit a NeRF)")
        wh = common_size(photos)
        return {"kind": "photos", "path": real, "size": len(photos), "frames": len(photos), "wh": list(wh),
                "num_frames": len(photos)}
    (W, H), rotation = probe(path)  # UserError: not a video, a still image
    wh = [H, W] if rotation in (90, 270) else [W, H]
    frames = count_packets(path) or 0
    if frames < MIN_FRAMES:
        raise UserError(f"{path} has only {frames} frame(s): a capture needs at least {MIN_FRAMES} "
                        "(film a few seconds, moving slowly around the object)")
    if num_frames is None:
        fps = frame_rate(path) or 30.0  # a phone's, when the clip does not say
        num_frames = min(int(np.clip(round(FRAMES_PER_SECOND * frames / fps), MIN_FRAMES, MAX_FRAMES)), frames)
    elif num_frames < MIN_FRAMES:
        raise UserError(f"--num_frames {num_frames} is too few: a capture needs at least {MIN_FRAMES}")
    elif num_frames > frames:
        raise UserError(f"{path} has only {frames} frames, fewer than --num_frames {num_frames}: "
                        f"pass --num_frames {frames} (or fewer)")
    return {"kind": "video", "path": real, "size": os.path.getsize(path), "frames": frames, "wh": wh,
            "num_frames": num_frames}


def same_input(a, b):
    return a["kind"] == b["kind"] and a["path"] == b["path"] and a["size"] == b["size"]


def read_manifest(out_dir):
    path = os.path.join(out_dir, MANIFEST)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise UserError(f"{path} is unreadable ({err}): delete {out_dir} to start over") from None


def write_manifest(out_dir, manifest):
    """Atomically: a torn manifest would be taken for another capture's."""
    write_json_atomic(os.path.join(out_dir, MANIFEST), manifest, indent=1)


def check_out_dir(out_dir, source):
    """The manifest of the capture already in ``out_dir`` (None when it is new). UserError when
    ``out_dir`` is a file, holds other files, or holds the capture of another input."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"--out {out_dir} is a file: give a folder (it is created if missing)")
    manifest = read_manifest(out_dir) if os.path.isdir(out_dir) else None
    if manifest is None:
        if os.path.isdir(out_dir) and os.listdir(out_dir):
            raise UserError(f"--out {out_dir} already holds files that are not a capture: give a new or empty folder")
        return None
    if not same_input(manifest["input"], source):
        raise UserError(f"--out {out_dir} holds the capture of {manifest['input']['path']}, not of {source['path']}: "
                        "give another --out (or delete the folder to start over)")
    return manifest



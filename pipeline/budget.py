"""The time budget of a capture (``capture.py --minutes``): how many frames, what training size, and
estimates of the stages around training, so that the whole run fits in the minutes asked for.

The constants are estimates for 2 CPU cores, on the slow side (a barely trained fast-path model
marches more of its grid than a trained one); a GPU divides the render and mesh costs by ``GPU_SPEEDUP``.
Only training's length is set from them: the stages before it are measured as they run.
"""
import math

import numpy as np

from process_data.colmap_sfm import aspect_wh

# frames taken from a video for its poses: 10 per second of clip, whatever the minutes (a walk around
# an object filmed in 6 s turns ~6 degrees between them; 24 frames 15 degrees apart registered 3 of
# them); posing 60 frames takes 15-30 s. All are trained on: the minutes set the training's length
FRAMES_PER_SECOND = 10
MIN_FRAMES, MAX_FRAMES = 10, 150  # ... within these; fewer than MIN_FRAMES is refused
SFM_LONG_SIDE = 960  # SfM runs on copies of the frames at most this long (imgs2poses --downscale)
SFM_SECONDS_PER_FRAME = 0.6  # at SFM_LONG_SIDE or less (60 frames of a phone clip: 25 s)
MIN_TRAIN_SECONDS = 30  # less training than this is no capture: --minutes is refused
STAGE_OVERHEAD = 8  # loading a checkpoint and a scene, per stage after training
RENDER_SECONDS_PER_PIXEL = 8e-5  # a fast-path model on the CPU (held-out views, the video): ~7x a trained
# lego model in the viewer (2.9 s per 512x512 frame), as a short training leaves more of the grid occupied
MESH_SECONDS_PER_VOXEL = 2e-5  # density lattice, shell and colours at N_grid^3
REPORT_SECONDS = 15
SAFETY = 1.3  # estimates of the stages after training are multiplied by this
GPU_SPEEDUP = 20  # render and mesh costs on a GPU
PATH_FRAMES = 120  # the llff reader's path split
CPU_LONG_SIDE_10MIN = 120  # training image's long side for 10 minutes on 2 cores (68x120 for a phone)
VAL_STEPS = 300  # validate (and write last.ckpt) about every this many training steps (CPU)


def fmt_time(seconds):
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def on_gpu():
    import torch

    return torch.cuda.is_available()


def training_wh(wh, train_seconds, gpu):
    """The training size: the long side ``CPU_LONG_SIDE_10MIN`` for 10 minutes on the CPU, scaled by
    the square root of the time (pixels in proportion to it), the photos' aspect ratio kept; on a GPU
    a quarter of the photos' width (what imgs2poses recommends)."""
    W, H = wh
    if gpu:
        long_side = max(W, H) / 4
    else:
        long_side = CPU_LONG_SIDE_10MIN * math.sqrt(max(train_seconds, 1) / 600)
        long_side = float(np.clip(long_side, 32, min(240, max(W, H))))
    return list(aspect_wh((W, H), round(long_side * W / max(W, H))))


def mesh_size(train_seconds, gpu):
    """(N_grid, n_views) of the mesh: finer lattices for longer (better) trainings."""
    if gpu:
        return 256, 30
    return (64, 8) if train_seconds < 180 else (96, 12) if train_seconds < 480 else (128, 16)


def after_training_seconds(n_views, n_held, img_wh, walk_around, train_seconds, gpu):
    """Estimated seconds of the stages after training (held-out views, video, mesh, report)."""
    pixels = img_wh[0] * img_wh[1]
    speed = GPU_SPEEDUP if gpu else 1
    render = (n_held + PATH_FRAMES) * pixels * RENDER_SECONDS_PER_PIXEL / speed
    mesh = 0.0
    if walk_around:
        N, views = mesh_size(train_seconds, gpu)
        mesh = N ** 3 * MESH_SECONDS_PER_VOXEL / speed + views * pixels * RENDER_SECONDS_PER_PIXEL / speed
    return SAFETY * (render + mesh + REPORT_SECONDS + 3 * STAGE_OVERHEAD)


def sfm_seconds(source):
    """Estimated seconds of frames and SfM for an input described by ``pipeline.inputs.describe_input``."""
    long_side = min(max(source["wh"]), SFM_LONG_SIDE)
    return 5 + SFM_SECONDS_PER_FRAME * source["num_frames"] * (long_side / SFM_LONG_SIDE) ** 2


def smallest_minutes(seconds):
    """Minutes to ask for, rounded up to the half minute."""
    return math.ceil(seconds / 30) / 2



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
RENDER_SECONDS_PER_PIXEL = 4e-5  # a model on the CPU (held-out views, the video): the fast path with the
# fused encoding alone (RESULTS §23) ran 9 views of beer at 360x640 in 86 s after 3 minutes, 4.1e-5; after
# 9.5 minutes 3.1e-5 (held-out views) and 2.3e-5 (the video's frames); SAFETY covers a shorter training
FUSED_RENDER_SPEEDUP = 3.0  # a walk around (the fast path) rendered by the fused kernels' one pass per ray
# (RESULTS §24-25): with the grid lookup fused too, beer's video at 142x252 after 9 minutes took 8.3e-6 s a pixel
# (4.8x RENDER_SECONDS_PER_PIXEL), its held-out renders about as fast
VIEW_FRACTION = 0.5  # the view size (held-out scores, the video, the viewer): half the frames' by default ...
HELDOUT_SHARE = 0.12  # ... capped so that the held-out views at that size take at most this share of --minutes
VIDEO_SHARE = 0.12  # the circle video at the view size when its frames fit this share, else smaller
ALIGN_SECONDS_PER_VIEW = 4.5  # a held-out view's pose aligned to a refined model (eval.py, 100 steps of 1024 rays,
# any size; 8 views of beer's clip on the fused kernels: 30-38 s with the model's loading)
MESH_SECONDS_PER_VOXEL = 6e-6  # TSDF fusion at N_grid^3 (beer at 128^3 and 16 views: 8.9 s in all)
REPORT_SECONDS = 15
SAFETY = 1.15  # estimates of the stages after training are multiplied by this
GPU_SPEEDUP = 20  # render and mesh costs on a GPU
PATH_FRAMES = 120  # the llff reader's path split
CPU_LONG_SIDE_10MIN = 120  # training image's long side for 10 minutes on 2 cores (68x120 for a phone)
VAL_STEPS = 300  # validate (and write last.ckpt) about every this many training steps (CPU) ...
VAL_SHARE = 0.05  # ... or less often, when validating at a large training size would take more of training
STEPS_PER_SECOND = 15  # fast-path steps a second on 2 cores (beer: 11-20); only spaces the validations


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


def fit_pixels(wh, pixels, floor_wh=None):
    """``wh`` (W, H), or the largest size of its aspect ratio with at most ``pixels`` pixels; never
    smaller than ``floor_wh`` (a size of the same aspect, e.g. the thumbnail size)."""
    W, H = wh
    if W * H <= pixels:
        return [W, H]
    width = int(W * math.sqrt(pixels / (W * H)))
    out = list(aspect_wh((W, H), width))
    while out[0] * out[1] > pixels and out[0] > 8:  # aspect_wh rounds up to a width that keeps the ratio
        width -= 1
        out = list(aspect_wh((W, H), width))
    if floor_wh is not None and out[0] * out[1] < floor_wh[0] * floor_wh[1]:
        return list(floor_wh)
    return out


def render_speedup(gpu, fused=False):
    """How many times faster than ``RENDER_SECONDS_PER_PIXEL`` the renders go: ``GPU_SPEEDUP`` on a GPU,
    ``FUSED_RENDER_SPEEDUP`` for a fast-path model with the fused CPU kernels (``fused``), else 1. With
    ``fused`` False, also the factor of the TSDF fusion and the held-out alignment (the GPU's or 1)."""
    return GPU_SPEEDUP if gpu else FUSED_RENDER_SPEEDUP if fused else 1.0


def view_sizes(frames_wh, n_held, budget_seconds, small_wh, gpu, asked=None, fused=False):
    """``(view_wh, video_wh)``: the size the held-out views are scored and shown at, and the circle
    video's. The view size is ``asked`` (``--view_size``) or half the frames', the latter capped so the
    held-out views render within ``HELDOUT_SHARE`` of the budget; the video is at the view size when
    its ``PATH_FRAMES`` fit ``VIDEO_SHARE``, else at the largest size that does. Neither is smaller
    than ``small_wh``, the thumbnail size (``training_wh``), unless asked. ``fused``: see ``render_speedup``."""
    seconds_per_pixel = RENDER_SECONDS_PER_PIXEL / render_speedup(gpu, fused)
    if asked is not None:
        view = list(asked)
    else:
        half = aspect_wh(frames_wh, round(frames_wh[0] * VIEW_FRACTION))
        view = fit_pixels(half, HELDOUT_SHARE * budget_seconds / (max(n_held, 1) * seconds_per_pixel), small_wh)
    video = fit_pixels(view, VIDEO_SHARE * budget_seconds / (PATH_FRAMES * seconds_per_pixel), small_wh)
    if video[0] * video[1] > view[0] * view[1]:  # a view size asked for below the thumbnail size
        video = list(view)
    return view, video


def mesh_size(train_seconds, gpu):
    """(N_grid, n_views) of the mesh: finer lattices for longer (better) trainings."""
    if gpu:
        return 256, 30
    return (64, 8) if train_seconds < 180 else (96, 12) if train_seconds < 480 else (128, 16)


def after_training_seconds(n_views, n_held, img_wh, walk_around, train_seconds, gpu, view_wh=None, video_wh=None,
                           fused=False, refined=False):
    """Estimated seconds of the stages after training: held-out views (at ``img_wh``, the thumbnail
    size, and at ``view_wh``), the video (at ``video_wh``), the mesh (its views at ``img_wh``), report.
    Sizes left out are ``img_wh``; ``fused``: see ``render_speedup``; ``refined``: a model trained with
    camera refinement, whose held-out views are aligned before each of their two scorings."""
    pixels = img_wh[0] * img_wh[1]
    view_px = pixels if view_wh is None else view_wh[0] * view_wh[1]
    video_px = pixels if video_wh is None else video_wh[0] * video_wh[1]
    speed = render_speedup(gpu, fused)
    render = (n_held * (pixels + view_px) + PATH_FRAMES * video_px) * RENDER_SECONDS_PER_PIXEL / speed
    if refined:
        render += 2 * n_held * ALIGN_SECONDS_PER_VIEW / render_speedup(gpu)
    mesh = 0.0
    if walk_around:
        N, views = mesh_size(train_seconds, gpu)
        mesh = N ** 3 * MESH_SECONDS_PER_VOXEL / render_speedup(gpu) + views * pixels * RENDER_SECONDS_PER_PIXEL / speed
    return SAFETY * (render + mesh + REPORT_SECONDS + 3 * STAGE_OVERHEAD)


def sfm_seconds(source):
    """Estimated seconds of frames and SfM for an input described by ``pipeline.inputs.describe_input``."""
    long_side = min(max(source["wh"]), SFM_LONG_SIDE)
    return 5 + SFM_SECONDS_PER_FRAME * source["num_frames"] * (long_side / SFM_LONG_SIDE) ** 2


def smallest_minutes(seconds):
    """Minutes to ask for, rounded up to the half minute."""
    return math.ceil(seconds / 30) / 2



"""Render a trained NeRF along a split: frames, gif/mp4, depth maps and metrics.

    python eval.py --ckpt_path ckpts/lego/last.ckpt --root_dir data/lego --split test

    python eval.py --ckpt_path ckpts/lego/last.ckpt --path_json my_path.json   # a path saved in viewer.py

writes ``results/{dataset_name}/{scene_name}/{split}/`` (a path JSON: ``.../{json stem}/``), so that
runs of different splits never touch each other's files: ``NNN.png`` frames in the split's order,
``{scene_name}.gif`` / ``.mp4``, ``depth/NNN.pfm`` with ``{scene_name}_depth.gif`` / ``.mp4``
(one colour scale for all frames), ``metrics.json`` (PSNR, SSIM, GMSD, when the split has ground truth)
and ``render_info.json``. Model and scene flags not typed come from the checkpoint.
"""
import json
import os
from argparse import Namespace

import imageio.v2 as imageio
import numpy as np
import torch
from tqdm import tqdm

# data
from datasets import make_dataset, resolve_dataset_name
from datasets.base import CameraPath
# models
from models import load_model
from models.camera_opt import align_views
from models.rendering import eval_render_kwargs, render_chunked
# metrics
from metrics import image_scores
# options, output
from opt import check_opts, get_parser, parse_args
from utils.device import pick_device
from utils.errors import UserError, cli_main
from utils.io import VideoWriter, check_out_dir, publish, write_pfm
from utils.quiet import quiet
from utils.visualization import depth_to_rgb, to_uint8
from viewer.camera import scene_cameras, view_dataset
from viewer.paths import read_path

SPLITS = ("train", "val", "test", "path")
DEFAULT_SPLIT = {"blender": "test", "llff": "path", "nerfstudio": "path"}
ALIGN_STEPS = 100  # held-out pose alignment of models trained with --optimize_cameras (steps per view)


def get_eval_parser():
    parser = get_parser("Render a trained NeRF: frames, videos, depth maps and metrics.", training=False)
    ev = parser.add_argument_group("eval")
    ev.add_argument("--ckpt_path", type=str, required=True,
                    help="training checkpoint (.ckpt) or weights-only file (save_weights_only.py)")
    ev.add_argument("--scene_name", type=str, default=None,
                    help="name of the results folder and videos (default: the name of --root_dir)")
    ev.add_argument("--split", type=str, default=None, choices=SPLITS,
                    help="views to render (default: test for blender, the render path for llff and nerfstudio)")
    ev.add_argument("--path_json", type=str, default=None,
                    help="render the camera path of this JSON file (saved by viewer.py) instead of a split")
    ev.add_argument("--out_dir", type=str, default=None,
                    help="output folder (default: results/{dataset_name}/{scene_name}/{split}, "
                         "or .../{json stem} with --path_json)")
    ev.add_argument("--fps", type=int, default=30, help="frames per second of the videos")
    ev.add_argument("--save_depth", dest="save_depth", action="store_true", default=True,
                    help="write depth maps (.pfm) and a depth video (the default)")
    ev.add_argument("--no_depth", dest="save_depth", action="store_false",
                    help="skip the depth maps and the depth video")
    ev.add_argument("--device", type=str, default="auto", help="auto (a GPU if present), cpu, cuda, cuda:1, ...")
    ev.add_argument("--align_steps", type=int, default=None,
                    help="steps that align each held-out view's pose (6 numbers, the field frozen) before it is "
                         f"scored: {ALIGN_STEPS} by default for models trained with --optimize_cameras, none for "
                         "others; 0: score the poses as read; N > 0 aligns any model (to compare a model "
                         "trained without --optimize_cameras the same way)")
    return parser


def align_held_out(fields, ds, h, ckpt, device):
    """Models trained with --optimize_cameras learned slightly moved cameras: align each view with
    ground truth to the field before scoring it (``models.camera_opt.align_views``). Returns a line
    for metrics.json saying what was done, or None when nothing was."""
    steps = h.align_steps if h.align_steps is not None else \
        (ALIGN_STEPS if ckpt["hparams"].get("optimize_cameras") else 0)
    if ds.rgbs is None or steps <= 0:
        return None
    ds.to(device)
    kwargs = {**eval_render_kwargs(h, ds.white_back), "test_time": False}  # a differentiable pass
    bar = tqdm(total=len(ds.poses), desc="aligning held-out poses", unit="view")
    ds.poses = align_views(fields, ds, kwargs, steps=steps, progress=lambda i: bar.update())
    bar.close()
    return (f"each view's pose aligned to the trained scene before scoring ({steps} steps on its own "
            f"photo, 6 numbers per view, the model frozen), as nerfstudio and BARF evaluate")


def check_split(h):
    """UserError when a Blender scene lacks ``h.split`` (no ``transforms_{split}.json``), naming
    the splits it has. Other formats report a missing split from their reader."""
    if h.dataset_name != "blender" or not os.path.isdir(h.root_dir):
        return  # make_dataset reports a missing folder
    have = [s for s in SPLITS if os.path.isfile(os.path.join(h.root_dir, f"transforms_{s}.json"))]
    if "train" in have:
        have.append("path")  # a turntable around the training cameras' orbit
    if h.split not in have:
        raise UserError(f"the scene {h.root_dir} has no '{h.split}' split (transforms_{h.split}.json); "
                        f"it has: {', '.join(have) or 'none'}. Pick one with --split")


def depth_range(depth, opacity, near, far, everywhere=False):
    """One colour scale for all depth frames: the 1st-99th percentiles of the first frame's depth
    where it is opaque (empty pixels have no meaningful depth; ``everywhere``: all pixels, as in
    an unbounded scene, where the background is content too), or (near, far) if degenerate."""
    d = depth.flatten() if everywhere else depth[opacity > 0.5]
    d = d if d.numel() >= 16 else depth.flatten()
    lo, hi = np.percentile(d.numpy(), [1, 99])
    if not np.isfinite([lo, hi]).all() or hi - lo < 1e-6:
        lo, hi = near, far
    return [float(lo), float(hi)]


def load_views(h, ckpt):
    """The dataset to render. A weights-only file may carry its render path (``extras["path"]``):
    it is used for ``--split path`` when the scene folder is not at hand. With ``--path_json``:
    the path's cameras in the training scene's setting (near/far, NDC, background)."""
    if h.path_json:
        path = read_path(h.path_json)
        return view_dataset(scene_cameras(h, ckpt, with_images=False), path["poses"], path["Ks"], path["img_wh"])
    state = ckpt["extras"].get("path") if isinstance(ckpt["extras"], dict) else None
    if h.split == "path" and state and not (h.root_dir and os.path.isdir(h.root_dir)):
        state = {k: (v.numpy() if torch.is_tensor(v) else v) for k, v in state.items()}
        (w0, h0), (w, hh) = state["img_wh"], h.img_wh
        K = np.array(state["K"], dtype=np.float32)
        K[..., 0, :] *= w / w0  # the path was stored at the training size: rescale to --img_wh
        K[..., 1, :] *= hh / h0
        return CameraPath.from_state({**state, "K": K, "img_wh": list(h.img_wh)})
    if not h.root_dir:
        raise UserError("--root_dir is required: the checkpoint does not name the scene it was trained on")
    if h.split == "path" and not os.path.isdir(h.root_dir):
        raise UserError(f"--root_dir {h.root_dir} is not a folder, and {h.ckpt_path} carries no render path: "
                        f"point --root_dir at the scene (or use a file from save_weights_only.py "
                        f"made where the scene was readable)")
    check_split(h)
    return make_dataset(h, h.split)


def render_view(fields, ds, i, h, device):
    """Render image ``i`` of ``ds``: rgb ``(H, W, 3)``, depth ``(H, W)``, opacity ``(H, W)`` on the CPU.
    Rays are built for this image only; render_chunked moves every chunk's outputs to the CPU,
    so the device holds at most one image of rays and one chunk of samples."""
    W, H = ds.img_wh
    out = render_chunked(fields, ds.rays(i).to(device), chunk=h.chunk, to_cpu=True, **eval_render_kwargs(h, ds.white_back))
    return out["rgb"].view(H, W, 3).clamp(0, 1), out["depth"].view(H, W), out["opacity"].view(H, W)


def render_all(fields, ds, h, device, tmp):
    """Render every view of ``ds`` into folder ``tmp``; returns (per-view metrics, depth range)."""
    n = len(ds.poses)
    digits = max(3, len(str(n - 1)))
    per_view, vrange = [], None
    unbounded = bool(getattr(h, "unbounded", False))  # the background is content: inverse-depth colours
    if h.save_depth:
        os.makedirs(os.path.join(tmp, "depth"))
    with VideoWriter(os.path.join(tmp, h.scene_name), h.fps) as video, \
            VideoWriter(os.path.join(tmp, h.scene_name + "_depth"), h.fps) as depth_video:
        for i in tqdm(range(n), desc=f"rendering {h.split}", unit="view"):
            rgb, depth, opacity = render_view(fields, ds, i, h, device)
            frame = to_uint8(rgb)
            imageio.imwrite(os.path.join(tmp, f"{i:0{digits}d}.png"), frame)
            video.append(frame)
            if h.save_depth:
                write_pfm(os.path.join(tmp, "depth", f"{i:0{digits}d}.pfm"), depth)
                vrange = vrange or depth_range(depth, opacity, ds.near, ds.far, everywhere=unbounded)
                depth_video.append(depth_to_rgb(depth, *vrange, inverse=unbounded))
            if ds.rgbs is not None:  # metrics on the device: SSIM of a 4K frame is slow on a CPU
                pred, gt = rgb.to(device), ds.rgbs[i].view_as(rgb).to(device)
                per_view.append({"index": i, "image": ds.image_names[i] if ds.image_names else None,
                                 **image_scores(pred, gt)})
    return per_view, vrange


def write_summary(tmp, h, ds, per_view, vrange, cameras=None):
    info = {"ckpt_path": os.path.abspath(h.ckpt_path), "dataset_name": h.dataset_name, "split": h.split,
            "scene_name": h.scene_name, "img_wh": list(ds.img_wh), "n_views": len(ds.poses), "fps": h.fps,
            "depth_range": vrange, "image_names": ds.image_names}
    with open(os.path.join(tmp, "render_info.json"), "w") as f:
        json.dump(info, f, indent=1)
    if not per_view:
        return None
    metrics = {"split": h.split, "n_views": len(per_view), **({"cameras": cameras} if cameras else {}),
               "psnr": float(np.mean([v["psnr"] for v in per_view])),
               "ssim": float(np.mean([v["ssim"] for v in per_view])),
               "gmsd": float(np.mean([v["gmsd"] for v in per_view])), "per_view": per_view}
    with open(os.path.join(tmp, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    return metrics


@cli_main
def main(argv=None):
    quiet()  # the project's lines only (utils/quiet.py)
    args, explicit = parse_args(get_eval_parser(), argv)
    if args.fps <= 0:
        raise UserError(f"--fps must be positive, got {args.fps}")
    if args.align_steps is not None and args.align_steps < 0:
        raise UserError(f"--align_steps must be >= 0, got {args.align_steps}")
    device = pick_device(args.device)
    fields, h, ckpt = load_model(args, explicit, device)
    if resolve_dataset_name(h, required=False).dataset_name is None:  # a model file without flags
        raise UserError(f"{h.ckpt_path} does not say which scene format it was trained on: give --root_dir "
                        "(the scene folder tells it) or --dataset_name")
    check_opts(Namespace(**{**vars(h), "root_dir": h.root_dir or "(from the checkpoint)"}))
    if h.path_json and h.split:
        raise UserError("--path_json and --split both choose the views to render: give one")
    h.split = "path_json" if h.path_json else h.split or DEFAULT_SPLIT.get(h.dataset_name, "test")
    root_name = os.path.basename(os.path.abspath(h.root_dir)) if h.root_dir else ""
    h.scene_name = h.scene_name or root_name or "scene"
    folder = os.path.splitext(os.path.basename(h.path_json))[0] if h.path_json else h.split
    h.out_dir = h.out_dir or os.path.join("results", h.dataset_name, h.scene_name, folder)
    check_out_dir(h.out_dir)
    ds = load_views(h, ckpt)
    if h.path_json:
        h.fps = h.fps if "fps" in explicit else read_path(h.path_json)["fps"]
    cameras = align_held_out(fields, ds, h, ckpt, device)

    with publish(h.out_dir) as tmp:
        per_view, vrange = render_all(fields, ds, h, device, tmp)
        metrics = write_summary(tmp, h, ds, per_view, vrange, cameras)
    if metrics:
        print(f"{h.split}: mean PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}, GMSD "
              f"{metrics['gmsd']:.4f} over {metrics['n_views']} views at {ds.img_wh[0]}x{ds.img_wh[1]}")
    print(f"results in {h.out_dir}")


if __name__ == "__main__":
    main()

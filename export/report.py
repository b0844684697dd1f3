"""``report.html`` of a capture (``capture.py``): one file, its pictures inside it.

Every picture the page shows is embedded as a base64 ``data:`` URI, so the page alone can be mailed
or attached: the held-out views as ground truth | render | depth with their PSNR, the mean, crops at
the view size beside the thumbnail-size photos scaled up (with SSIM and GMSD), the PSNR
of the few validation views (``--val_num``) against training time (from the TensorBoard events in
``logs/``), the circle video's first frame, pictures of the mesh from two held-out cameras, the
cameras seen from above, and the commands that reproduce each stage. Only the circle video (mp4, and
its gif) and the mesh stay beside the page, linked by relative paths inside the capture folder (no
network, no script or style sheet from elsewhere). The page is written beside its place and renamed
into it, so an interrupted run leaves the old report or none.
"""
import base64
import functools
import glob
import html
import io
import json
import os
import shlex
import shutil
from argparse import Namespace

import numpy as np

OLD_ASSETS = "report"  # where reports before the one-file page kept their pictures (removed)
CKPT = os.path.join("ckpts", "capture", "last.ckpt")
LOGS = os.path.join("logs", "capture")
UPSCALE = 3  # held-out strips (at most) and mesh pictures are this many times the training size
STRIP_PIXELS = 440  # enlarged strips stop at this height: twice the page's 220 px (sharp on hi-DPI screens)


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------- pictures inside the page


def data_uri(data, mime):
    """``data:MIME;base64,...`` of the file contents ``data`` (bytes): a picture the page carries."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def encoded_image(rgb, ext=".png"):
    """``(H, W, 3)`` uint8 RGB as the bytes of a ``.png`` or ``.jpg`` file (JPEG quality 90)."""
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, 90] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]), params)
    if not ok:
        raise ValueError(f"could not encode a {rgb.shape} image as {ext}")
    return buf.tobytes()


def file_uri(path):
    """``data_uri`` of a picture file (``.png``, ``.jpg``/``.jpeg`` or ``.gif``)."""
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}
    with open(path, "rb") as f:
        return data_uri(f.read(), mime[os.path.splitext(path)[1].lower()])


def figure_png(fig, dpi=110):
    """The bytes of a matplotlib figure as a PNG file; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    _plt().close(fig)
    return buf.getvalue()


# ---------------------------------------------------------------- held-out views


@functools.lru_cache(maxsize=32)
def held_out_photo(path, wh):
    """A held-out photo at ``wh`` (a tuple) as float32 ``(H, W, 3)`` in [0, 1], read once for the page's
    sections that show it (the strips and the detail crops). Callers do not change it."""
    from datasets.image_utils import read_image

    return read_image(path, wh)


def heldout_strips(out_dir, hparams):
    """A JPEG (ground truth | render | depth, enlarged) for each held-out view; ``hparams``: the
    checkpoint's flags (``load_hparams``).

    Returns ``(metrics, [(jpeg bytes, name, psnr, ssim), ...])`` from ``results/test/metrics.json``."""
    import cv2

    from utils.io import read_pfm
    from utils.visualization import depth_to_rgb

    test = os.path.join(out_dir, "results", "test")
    with open(os.path.join(test, "metrics.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(test, "render_info.json")) as f:
        info = json.load(f)
    W, H = info["img_wh"]
    unbounded = bool(hparams.get("unbounded"))
    scale = max(1, min(UPSCALE, STRIP_PIXELS // H))
    pngs = sorted(p for p in os.listdir(test) if p.endswith(".png"))
    rows = []
    for view, png in zip(metrics["per_view"], pngs):
        gt = (held_out_photo(os.path.join(out_dir, "scene", view["image"]), (W, H)) * 255 + 0.5).astype(np.uint8)
        render = cv2.imread(os.path.join(test, png))[:, :, ::-1]
        parts = [gt, render]
        depth_file = os.path.join(test, "depth", os.path.splitext(png)[0] + ".pfm")
        if os.path.isfile(depth_file):
            lo, hi = info["depth_range"] or (None, None)
            parts.append(depth_to_rgb(read_pfm(depth_file), lo, hi, inverse=unbounded))
        strip = np.concatenate(parts, 1)
        if scale > 1:
            strip = cv2.resize(strip, (strip.shape[1] * scale, strip.shape[0] * scale), interpolation=cv2.INTER_CUBIC)
        rows.append((encoded_image(strip, ".jpg"), view["image"], view["psnr"], view["ssim"]))
    return metrics, rows


# ---------------------------------------------------------------- detail at the view size


CROP_VIEWS = 3  # held-out views in the detail picture: those with the most edges


def detail_crops(out_dir, plan):
    """Detail at the view size: for the held-out views with the most edges, a crop of a third of the
    frame around the photo's sharpest region, photo | render | the photo at the thumbnail size (the
    plan's ``thumbnail_wh``, what the budget would train at) scaled up: the "perfect thumbnail" a model
    of that size can at best match, pixel for pixel.

    Returns ``(png bytes, thumbnail)``, ``thumbnail`` the mean ``{"psnr", "ssim", "gmsd"}`` of the
    scaled-up photos over every held-out view; None for a capture scored at one size only."""
    import torch

    from datasets.image_utils import read_image
    from metrics import image_scores
    from utils.visualization import sharpest_crop, to_uint8, upscale

    test = os.path.join(out_dir, "results", "test")
    view_wh, train_wh = plan.get("view_wh"), plan.get("thumbnail_wh", plan.get("img_wh"))
    if not view_wh or view_wh == train_wh or not os.path.isfile(os.path.join(test, "metrics.json")):
        return None
    with open(os.path.join(test, "metrics.json")) as f:
        metrics = json.load(f)
    pngs = sorted(p for p in os.listdir(test) if p.endswith(".png"))
    photos, renders, thumbs = [], [], []
    for view, png in zip(metrics["per_view"], pngs):
        path = os.path.join(out_dir, "scene", view["image"])
        photos.append(torch.from_numpy(held_out_photo(path, tuple(view_wh))))
        renders.append(torch.from_numpy(read_image(os.path.join(test, png), view_wh)))
        thumbs.append(upscale(torch.from_numpy(read_image(path, train_wh)), view_wh))
    scores = [image_scores(t, p) for t, p in zip(thumbs, photos)]
    thumbnail = {k: float(np.mean([v[k] for v in scores])) for k in scores[0]}
    size = max(8, min(view_wh) // 3)
    edges = [float((p[1:] - p[:-1]).abs().mean()) for p in photos]
    rows = []
    for i in sorted(range(len(photos)), key=lambda i: -edges[i])[:CROP_VIEWS]:
        top, left = sharpest_crop(photos[i], size)
        tiles = [to_uint8(t[top:top + size, left:left + size]) for t in (photos[i], renders[i], thumbs[i])]
        gap = np.full((size, 4, 3), 255, np.uint8)
        rows += [np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], 1), np.full((4, 3 * size + 8, 3), 255, np.uint8)]
    return encoded_image(np.concatenate(rows[:-1], 0)), thumbnail


# ---------------------------------------------------------------- PSNR against training time


def read_scalars(events_dir, tags):
    """``{tag: [(step, wall_time, value), ...]}`` of the TensorBoard event files in ``events_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(events_dir, size_guidance={"scalars": 0})
    acc.Reload()
    have = acc.Tags().get("scalars", [])
    return {t: [(e.step, e.wall_time, e.value) for e in acc.Scalars(t)] for t in tags if t in have}


def training_curves(logs_dir, tags=("val/psnr", "train/psnr")):
    """``{tag: [(seconds of training, value), ...]}`` over all runs of a training (``version_*``, one
    per start): a resumed run's time starts where the run it resumed stood at its first step, and
    what the earlier run logged after that step (lost with it) is dropped."""
    versions = sorted(glob.glob(os.path.join(logs_dir, "version_*")), key=lambda p: int(p.rsplit("_", 1)[-1]))
    merged = {t: [] for t in tags}  # tag -> [(step, seconds, value)]
    clock = []  # (step, seconds) of every logged point so far, for offsets
    for v in versions:
        scalars = read_scalars(v, tags)
        points = sorted((s, w) for pts in scalars.values() for s, w, _ in pts)
        if not points:
            continue
        first_step, first_wall = points[0]
        if clock:
            steps, secs = zip(*[c for c in clock if c[0] <= first_step] or [(0, 0.0)])
            offset = float(np.interp(first_step, steps, secs))
            clock = [c for c in clock if c[0] < first_step]
            merged = {t: [p for p in pts if p[0] < first_step] for t, pts in merged.items()}
        else:
            offset = 0.0
        for tag, pts in scalars.items():
            merged[tag] += [(s, offset + w - first_wall, val) for s, w, val in pts]
        clock += [(s, offset + w - first_wall) for s, w in points]
        clock.sort()
    return {t: [(sec, val) for _, sec, val in sorted(pts)] for t, pts in merged.items() if pts}


def validation_views(val_num, n_held_out):
    """What the validation PSNR during training averages, in words: ``"2 of the 3 held-out views"``.
    train.py validates on ``--val_num`` evenly spread views of the held-out ones (LLFF's val and test
    views are the same), not on all of them; ``val_num`` None (not in the flags): ``"a few of ..."``."""
    if val_num is None:
        return f"a few of the {n_held_out} held-out views"
    from datasets.base import evenly_spread  # the views train.py's val_dataloader picks

    used = len(evenly_spread(n_held_out, int(val_num)))
    return f"all {n_held_out} held-out views" if used == n_held_out else f"{used} of the {n_held_out} held-out views"


def psnr_plot(out_dir, views):
    """PNG bytes of the PSNR logged during training against its minutes: ``val/psnr`` (the mean over
    the validation views, ``views`` in words, ``validation_views``) and ``train/psnr`` (the training
    batches); None when the training logged no validation."""
    from utils.visualization import plot_psnr_curves

    curves = training_curves(os.path.join(out_dir, LOGS))
    if "val/psnr" not in curves:
        return None
    labels = {"val/psnr": f"validation: mean of {views}", "train/psnr": "training batches"}
    shown = {labels[t]: [(s / 60, v) for s, v in pts] for t, pts in curves.items()}
    buf = io.BytesIO()
    plot_psnr_curves(shown, buf, title=f"PSNR during training, validated on {views}",
                     xlabel="training time (minutes)", ylabel="PSNR (dB)")
    return buf.getvalue()


# ---------------------------------------------------------------- cameras and mesh


def load_hparams(out_dir):
    import torch

    raw = torch.load(os.path.join(out_dir, CKPT), map_location="cpu", weights_only=False)
    return dict(raw.get("hyper_parameters") or {})


def cameras_top_view(out_dir, holdout=8):
    """PNG bytes of the camera centres and viewing directions seen from above (along the cameras'
    mean up axis), the held-out ones (every ``holdout``-th) in red."""
    from datasets.llff import read_capture

    capture = read_capture(os.path.join(out_dir, "scene"))
    poses = capture.poses  # (N, 3, 4) LLFF columns: down, right, back, centre
    centres, forward = poses[:, :, 3], -poses[:, :, 2]
    up = -poses[:, :, 0].mean(0)
    up /= np.linalg.norm(up)
    ax_x = forward.mean(0) - (forward.mean(0) @ up) * up
    if np.linalg.norm(ax_x) < 1e-6:  # a full circle: the first camera's direction
        ax_x = forward[0] - (forward[0] @ up) * up
    ax_x /= np.linalg.norm(ax_x)
    ax_y = np.cross(up, ax_x)
    xy, dirs = centres @ np.stack([ax_x, ax_y], 1), forward @ np.stack([ax_x, ax_y], 1)
    extent = max(np.ptp(xy, 0).max(), 1e-6)
    held = np.zeros(len(poses), bool)
    if holdout:
        held[::holdout] = True
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    for mask, colour, label in ((~held, "tab:blue", "training"), (held, "tab:red", "held out")):
        ax.quiver(xy[mask, 0], xy[mask, 1], dirs[mask, 0], dirs[mask, 1], color=colour, angles="xy",
                  scale_units="xy", scale=1 / (0.12 * extent), width=0.004)
        ax.plot(xy[mask, 0], xy[mask, 1], "o", color=colour, ms=4, label=f"{label} ({int(mask.sum())})")
    ax.plot(xy[:1, 0], xy[:1, 1], "k+", ms=12, mew=2, label="first frame")
    tips = np.concatenate([xy, xy + 0.12 * extent * dirs])
    lo, hi = tips.min(0), tips.max(0)
    pad = 0.08 * (hi - lo).max()
    half = (hi - lo).max() / 2 + pad  # a square view: directions keep their angles
    mid = (lo + hi) / 2
    ax.set_xlim(mid[0] - half, mid[0] + half)
    ax.set_ylim(mid[1] - half, mid[1] + half)
    ax.set_aspect("equal")
    ax.set_title("cameras seen from above (arrows: viewing directions)")
    ax.legend(loc="best", fontsize=8, framealpha=0.6)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return figure_png(fig, dpi=110)


def project(vertices, c2w, K):
    """Pixels ``(V, 2)`` and depths ``(V,)`` (> 0 in front) of ``vertices`` ``(V, 3)`` seen by a camera
    ``c2w`` ``(3, 4)`` (columns right, up, back: OpenGL) with intrinsics ``K`` ``(3, 3)``."""
    cam = (vertices - c2w[:, 3]) @ c2w[:, :3]  # camera coordinates
    depth = -cam[:, 2]
    z = np.maximum(depth, 1e-6)
    u = K[0, 0] * cam[:, 0] / z + K[0, 2]
    v = -K[1, 1] * cam[:, 1] / z + K[1, 2]
    return np.stack([u, v], 1), depth


def mesh_picture(vertices, triangles, colors, c2w, K, img_wh, ax):
    """Draw the mesh as a camera sees it on a matplotlib axis: triangles far to near (painter's
    algorithm), each in its vertices' mean colour, shaded by how squarely it faces the camera."""
    from matplotlib.collections import PolyCollection

    uv, depth = project(vertices, c2w, K)
    tri_depth = depth[triangles]
    keep = (tri_depth > 1e-3).all(1)
    tris = triangles[keep]
    order = np.argsort(-depth[tris].mean(1))  # far first
    tris = tris[order]
    v0, v1, v2 = (vertices[tris[:, i]] for i in range(3))
    normals = np.cross(v1 - v0, v2 - v0)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    view = c2w[:, 3] - (v0 + v1 + v2) / 3
    view /= np.maximum(np.linalg.norm(view, axis=1, keepdims=True), 1e-12)
    shade = 0.55 + 0.45 * np.abs((normals * view).sum(1))
    face = np.clip(colors[tris].mean(1) * shade[:, None], 0, 1)
    ax.add_collection(PolyCollection(uv[tris], facecolors=face, edgecolors=face, linewidths=0.2))
    ax.set_xlim(0, img_wh[0])
    ax.set_ylim(img_wh[1], 0)
    ax.set_aspect("equal")
    ax.set_facecolor("white")
    ax.set_xticks([])
    ax.set_yticks([])


def mesh_pictures(out_dir, mesh_path, hparams):
    """PNG bytes of the mesh seen from two held-out cameras (the first and the middle one); None when
    it has no triangles. ``hparams``: the checkpoint's flags (``load_hparams``)."""
    import open3d as o3d

    from datasets import make_dataset

    mesh = o3d.io.read_triangle_mesh(mesh_path)
    vertices, triangles = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
    colors = np.asarray(mesh.vertex_colors) if mesh.has_vertex_colors() else np.full_like(vertices, 0.7)
    if len(triangles) == 0:
        return None
    hp = dict(hparams, root_dir=os.path.join(out_dir, "scene"))
    ds = make_dataset(Namespace(**hp), "test")
    W, H = ds.img_wh
    picks = sorted({0, len(ds.poses) // 2})
    plt = _plt()
    fig, axes = plt.subplots(1, len(picks), figsize=(3 * len(picks) * W / max(W, H) + 0.5, 3 * H / max(W, H) + 0.4),
                             squeeze=False)
    for ax, i in zip(axes[0], picks):
        K = np.asarray(ds.Ks[i], dtype=np.float64)  # (3, 3)
        mesh_picture(vertices, triangles, colors, np.asarray(ds.poses[i], dtype=np.float64), K, (W, H), ax)
        ax.set_title(f"from held-out view {i}", fontsize=8)
    fig.suptitle(f"mesh: {len(vertices)} vertices, {len(triangles)} triangles", fontsize=9)
    fig.tight_layout()
    return figure_png(fig, dpi=110 * UPSCALE // 2)


# ---------------------------------------------------------------- the page

STYLE = """body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#222}
img,video{max-width:100%;border:1px solid #ccc}video{height:360px;background:#000}figure{display:inline-block;margin:.4em;vertical-align:top}
figcaption{font-size:.85em}img.strip{height:220px}img.plot{width:560px}pre{background:#f4f4f4;padding:.6em;overflow-x:auto;font-size:.8em}
td,th{padding:.2em .6em;text-align:left}.note{color:#666;font-size:.9em}"""


def viewer_command(out, manifest):
    """The viewer.py command line for a capture in ``out``: its model, its mesh, at most the view size wide."""
    stages, plan = manifest["stages"], manifest["plan"].get("train", {})
    cmd = ["python", os.path.join(manifest["repo"], "viewer.py"), "--ckpt_path", os.path.join(out, CKPT)]
    if "mesh" in stages and "skipped" not in stages["mesh"]:
        cmd += ["--mesh", os.path.join(out, "mesh", f"{manifest['name']}.ply")]
    if plan.get("view_wh"):
        cmd += ["--max_width", str(max(plan["view_wh"]))]  # the view size, either way up
    return shlex.join(cmd)


def section(title, body):
    return f"<h2>{html.escape(title)}</h2>\n{body}\n"


def write_report(out_dir, manifest):
    """Write ``out_dir/report.html``, its pictures inside it, from the capture's outputs and
    ``manifest`` (capture.json). Returns the page's path."""
    out_dir = os.path.abspath(out_dir)
    hparams = load_hparams(out_dir)
    name, stages, plan = manifest["name"], manifest["stages"], manifest["plan"].get("train", {})
    esc = html.escape
    parts = [f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{esc(name)}: capture report</title>"
             f"<style>{STYLE}</style></head><body>\n<h1>{esc(name)}</h1>"]
    src = manifest["input"]
    parts.append(f"<p>{esc(src['kind'])} <code>{esc(src['path'])}</code>: {plan.get('n_views', '?')} posed views, "
                 f"{plan.get('n_held_out', '?')} held out (every 8th); the cameras turn {plan.get('turn', 0):.0f} degrees "
                 f"({'a walk around: --unbounded --fast' if plan.get('walk_around') else 'forward-facing: NDC rays'}); "
                 f"trained at {'x'.join(map(str, plan.get('img_wh', [])))} for {plan.get('train_seconds', 0) / 60:.1f} "
                 "minutes.</p>")
    poses = stages.get("poses", {})
    if poses.get("strategy"):
        parts.append(f"<p id='poses-strategy'>Poses: structure from motion with {esc(poses['strategy'])}"
                     + (f" ({esc(poses['strategies'])})" if poses.get("strategies") else "") + ".</p>")

    metrics, rows = heldout_strips(out_dir, hparams)
    figs = "".join(f"<figure><img class='strip' src='{data_uri(jpg, 'image/jpeg')}' alt='held-out view {esc(n)}'>"
                   f"<figcaption>{esc(n)}: PSNR <b>{p:.2f} dB</b>, SSIM {s:.3f}</figcaption></figure>\n"
                   for jpg, n, p, s in rows)
    held = stages.get("heldout", {})
    size = "x".join(map(str, held.get("img_wh", plan.get("img_wh", []))))
    small = held.get("thumbnail_size")
    gmsd = f", GMSD {metrics['gmsd']:.3f}" if "gmsd" in metrics else ""
    parts.append(section("Held-out views", f"<p>Mean PSNR <b id='mean-psnr'>{metrics['psnr']:.2f} dB</b>, SSIM "
                         f"{metrics['ssim']:.3f}{gmsd} over {metrics['n_views']} views never seen in training, at "
                         f"{size}"
                         + (f" (at the thumbnail size, {'x'.join(map(str, small['img_wh']))}: <b id='psnr-thumbnail-size'>"
                            f"{small['psnr']:.2f} dB</b>, SSIM {small['ssim']:.3f})" if small else "")
                         + (f". Camera refinement: {esc(metrics['cameras'])}" if metrics.get("cameras") else "")
                         + f". Each: ground truth | render | depth.</p>\n{figs}"))

    detail = detail_crops(out_dir, plan)
    held_out_photo.cache_clear()  # read once for this page; the next page reads its own
    if detail is not None:
        png, thumb = detail
        small_size = "x".join(map(str, plan.get("thumbnail_wh", plan["img_wh"])))
        better = [k for k in ("ssim", "gmsd") if (metrics[k] > thumb[k] if k == "ssim" else metrics[k] < thumb[k])]
        verdict = ("sharper than" if len(better) == 2 else "level with" if better else "blurrier than")
        parts.append(section(f"Detail at {size}", (
            f"<p id='detail'>At the view size the render scores SSIM <b>{metrics['ssim']:.3f}</b>, GMSD "
            f"<b>{metrics['gmsd']:.3f}</b> (lower is sharper), PSNR {metrics['psnr']:.2f} dB; the "
            f"{small_size} photos (the size these minutes would show each pixel many times), scaled up "
            f"to {size}, score SSIM {thumb['ssim']:.3f}, GMSD {thumb['gmsd']:.3f}, PSNR {thumb['psnr']:.2f} dB: the "
            f"render is <b id='detail-verdict'>{verdict}</b> a perfect {small_size} thumbnail. Crops, pixel for "
            f"pixel: photo | render | the {small_size} photo scaled up.</p>\n"
            f"<img src='{data_uri(png, 'image/png')}' alt='detail crops at {size}'>")))

    views = validation_views(hparams.get("val_num"), metrics["n_views"])
    plot = psnr_plot(out_dir, views)
    caption = (f"<p id='psnr-curve'>PSNR during training: at each validation, the mean over {views} "
               f"(train.py's <code>--val_num {esc(str(hparams.get('val_num', '?')))}</code>, TensorBoard tag "
               f"<code>val/psnr</code>), beside that of the training batches. The mean PSNR above is over all "
               f"{metrics['n_views']} held-out views, rendered after training.</p>")
    parts.append(section("PSNR during training", caption + f"<img src='{data_uri(plot, 'image/png')}' "
                         f"alt='PSNR during training, validated on {views}'>"
                         if plot else "<p class='note'>no validation was logged</p>"))

    mp4 = f"results/path/{name}.mp4"
    gif = f"results/path/{name}.gif"
    frames = sorted(glob.glob(os.path.join(out_dir, "results", "path", "*.png")))
    poster = f" poster='{file_uri(frames[0])}'" if frames else ""
    parts.append(section("Circle video", f"<video src='{mp4}'{poster} controls autoplay loop muted playsinline>"
                         f"<a href='{gif}'>{gif}</a></video>\n"
                         f"<p class='note'>beside this page, not inside it: <a href='{mp4}'>{mp4}</a>, also as a "
                         f"gif: <a href='{gif}'>{gif}</a></p>"))

    mesh = stages.get("mesh", {})
    mesh_file = os.path.join("mesh", f"{name}.ply")
    if "skipped" in mesh:
        body = f"<p class='note'>no mesh: {esc(mesh['skipped'])}</p>"
    elif os.path.isfile(os.path.join(out_dir, mesh_file)):
        picture = mesh_pictures(out_dir, os.path.join(out_dir, mesh_file), hparams)
        body = (f"<img src='{data_uri(picture, 'image/png')}' alt='the mesh'>" if picture
                else "<p class='note'>the mesh is empty</p>")
        body += f"<p><a href='{mesh_file}'>{mesh_file}</a> (vertex colours; opens in MeshLab, Blender, ...)</p>"
    else:
        body = "<p class='note'>no mesh</p>"
    parts.append(section("Mesh", body))

    parts.append(section("Cameras", f"<img src='{data_uri(cameras_top_view(out_dir), 'image/png')}' "
                                    "alt='cameras seen from above'>"))

    lines = [f"cd {out_dir}"]
    for stage, entry in stages.items():
        lines += [f"# {stage} ({entry.get('seconds', 0):.0f} s)"] + list(entry.get("commands", []))
    parts.append(section("Commands that reproduce each stage",
                         f"<pre id='commands'>{esc(chr(10).join(lines))}</pre>"))
    parts.append(f"<p class='note'>Look around: <code id='viewer'>{esc(viewer_command(out_dir, manifest))}</code></p>"
                 "\n</body></html>\n")
    page = os.path.join(out_dir, "report.html")
    with open(page + ".partial", "w") as f:  # beside its place, then renamed: present means complete
        f.write("\n".join(parts))
    os.replace(page + ".partial", page)
    shutil.rmtree(os.path.join(out_dir, OLD_ASSETS), ignore_errors=True)  # an earlier report's pictures
    return page

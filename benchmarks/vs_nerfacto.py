"""Our ``--unbounded --fast`` against nerfstudio's nerfacto: held-out PSNR at equal wall clock.

    python benchmarks/vs_nerfacto.py --scene ../shared/data/nerf_llff_data/beer --img_wh 72 128 --minutes 10
    python benchmarks/vs_nerfacto.py --scene DIR --img_wh 360 640 --minutes 5 --device cuda   # on a GPU

(the first is the recorded comparison: run it on an idle machine, about 35 minutes of training plus
the renders of the measurements; the first run also installs nerfstudio, below.)

One capture (an LLFF scene: ``images/`` with ``poses_bounds.npy`` or ``sparse/0``), one split (the
held-out views are every ``--llff_holdout``-th image sorted by name, 0, 8, 16, ..., as our reader
makes them; the rest train), one resolution (the images resized by ``datasets.image_utils.read_image``,
as our reader resizes them), the same training minutes, one run after the other, each in a process
of its own:

- ``ours``: ``train.py``'s fast path with ``--ours_flags`` (default ``--unbounded --fast``), trained
  as ``benchmarks/capture_quality.py`` trains it (the same loop, schedule and grid upkeep as
  ``train.py --max_time MINUTES``);
- ``nerfacto_R`` for each R of ``--rays``: nerfstudio 1.1.5's nerfacto at R rays per batch (4096 is
  its default; fewer rays make more steps in the same time), with the torch hash encoding (no
  tiny-cuda-nn), camera refinement off (``camera_optimizer.mode="off"``; ours has none), driven by
  ``benchmarks/nerfacto_driver.py`` in a venv of its own. nerfstudio is never a dependency of this
  project: the venv (``--venv``, default ``~/.cache/nerf_pl_bench/nerfstudio-venv``, about 8 GB with
  PyPI's torch) is made on first use with ``python -m venv`` and ``pip install nerfstudio==1.1.5``.
  nerfacto gets the same pixels: the training and held-out images are written at ``--img_wh`` as
  PNG files, with their cameras (OpenGL axes, as ours) and the split, into a nerfstudio
  ``transforms.json`` (``train_filenames`` / ``val_filenames``); nerfstudio recentres and rescales the
  poses its own way, which changes no rendered frame.

Every ``--eval_every`` seconds of training (and at 0 and at the end) each run renders every held-out
view to a PNG file; rendering is not counted as training time. Then ONE scorer (``metrics.psnr`` and
``metrics.ssim``) scores every run's frames against the same ground truth, so the figures are
comparable. Writes ``--out`` (JSON lines: method, rays per batch, minute, step, mean/worst PSNR,
SSIM, PSNR per view), beside it a PSNR-vs-minutes plot (``.png``) and the last frames of the
first, middle and last held-out views next to the ground truth (``_frames.png``), keeps every
frame and the nerfstudio scene under ``--work`` (default: beside ``--out``, ``{name}_work/``), and
prints a table. ``--score_only`` scores the frames in ``--work`` again; ``--add_rows EARLIER.jsonl``
puts an earlier run's rows (same scene and size) in the table and plot, so one more run (say
``--methods nerfacto --rays 1024``) joins a comparison without training the others again.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from datasets import make_dataset  # noqa: E402
from datasets.image_utils import read_image  # noqa: E402
from metrics import psnr, ssim  # noqa: E402
from opt import get_opts  # noqa: E402
from utils.errors import UserError, cli_main  # noqa: E402
from utils.io import write_json_atomic  # noqa: E402
from utils.visualization import plot_psnr_curves, to_uint8  # noqa: E402

BEER = os.path.join(os.path.dirname(ROOT), "shared", "data", "nerf_llff_data", "beer")
NERFSTUDIO = "nerfstudio==1.1.5"
DEFAULT_VENV = os.path.join(os.path.expanduser("~"), ".cache", "nerf_pl_bench", "nerfstudio-venv")
VENV_READY = ".nerf_pl_ready"  # written into the venv once the install succeeded
DRIVER = os.path.join(ROOT, "benchmarks", "nerfacto_driver.py")
MEASURES = "measures.jsonl"  # per run folder: one line per measurement {"t", "step", "dir"}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scene", default=BEER, help="an LLFF capture folder (default: beer)")
    p.add_argument("--img_wh", type=int, nargs=2, default=[72, 128], metavar=("W", "H"), help="training resolution")
    p.add_argument("--minutes", type=float, default=10.0, help="training minutes per run")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--rays", type=int, nargs="+", default=[4096, 1024], help="nerfacto's rays per batch, a run each")
    p.add_argument("--methods", nargs="+", choices=("ours", "nerfacto"), default=["ours", "nerfacto"])
    p.add_argument("--ours_flags", default="--unbounded --fast", help="train.py flags of our run (quoted)")
    p.add_argument("--llff_holdout", type=int, default=8, help="every N-th image is held out (as train.py's flag)")
    p.add_argument("--eval_every", type=float, default=60.0, help="training seconds between measurements")
    p.add_argument("--threads", type=int, default=2, help="torch threads of each run")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "vs_nerfacto_beer.jsonl"))
    p.add_argument("--work", help="frames and the nerfstudio scene (default: beside --out, NAME_work)")
    p.add_argument("--venv", default=DEFAULT_VENV, help="nerfstudio's own venv (made on first use)")
    p.add_argument("--score_only", action="store_true", help="train nothing: score the runs already in --work")
    p.add_argument("--add_rows", metavar="JSONL",
                   help="an earlier --out of this script on the same scene and size: its rows join the table and "
                        "plot (not scored again; their frames are not in the frames picture)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if not a.out.endswith(".jsonl"):
        raise UserError(f"--out {a.out} must end in .jsonl (the plot goes beside it as .png)")
    if a.minutes <= 0 or a.eval_every <= 0 or a.threads <= 0 or min(a.rays) <= 0:
        raise UserError("--minutes, --eval_every, --threads and --rays must be positive")
    # the worker trains only: the earlier rows are the parent's business
    a.earlier = read_earlier_rows(a) if a.add_rows and a.worker is None else []
    if not os.path.isdir(a.scene):
        raise UserError(f"--scene {a.scene} is not a folder: point it at an LLFF capture (images/ + poses_bounds.npy)")
    a.work = a.work or a.out[: -len(".jsonl")] + "_work"
    return a


def scene_name(a):
    """The capture's folder name, as the rows and the plot's title name it."""
    return os.path.basename(os.path.normpath(a.scene))


def read_earlier_rows(a):
    """``--add_rows``: the rows of an earlier run of this script; UserError unless it scored the same
    scene at the same size (the one scorer, the same ground truth: the figures compare)."""
    if not os.path.isfile(a.add_rows):
        raise UserError(f"--add_rows {a.add_rows} is not a file: give an earlier --out of this script")
    with open(a.add_rows) as f:
        try:
            rows = [json.loads(line) for line in f if line.strip()]
        except json.JSONDecodeError:
            rows = None
    scene = scene_name(a)
    if not rows or any(not isinstance(r, dict) or "method" not in r for r in rows):
        raise UserError(f"--add_rows {a.add_rows} holds no rows of vs_nerfacto.py: give an earlier --out of it")
    other = {(r.get("scene"), tuple(r.get("img_wh", ()))) for r in rows} - {(scene, tuple(a.img_wh))}
    if other:
        s, wh = sorted(other, key=str)[0]
        raise UserError(f"--add_rows {a.add_rows} scored {s} at {wh}, not {scene} at {tuple(a.img_wh)}: "
                        "give the same --scene and --img_wh")
    return rows


def scene_flags(a):
    """The train.py flags naming the capture, as ``capture_quality.py --scene`` takes them."""
    W, H = a.img_wh
    return f"--dataset_name llff --root_dir {a.scene} --img_wh {W} {H} --llff_holdout {a.llff_holdout}"


def split_datasets(a):
    """Our reader's ``train`` and ``test`` splits of the capture at ``--img_wh`` (the held-out
    views and their ground truth, ``rgbs`` ``(N, H*W, 3)``, for every method)."""
    h = get_opts([*scene_flags(a).split(), "--num_gpus", "0", *a.ours_flags.split()])
    return make_dataset(h, "train"), make_dataset(h, "test")


def frame_name(image_name):
    """The PNG name of a view's rendered frame: its image's name, folders dropped, ``.png``."""
    return os.path.splitext(os.path.basename(image_name))[0] + ".png"


def write_png(path, rgb):
    """``rgb`` ``(H, W, 3)`` float in [0, 1] -> an 8-bit PNG."""
    import imageio.v2 as imageio

    imageio.imwrite(path, to_uint8(rgb))


def export_nerfstudio_scene(train, test, out_dir):
    """Write the split as a nerfstudio scene: ``images/*.png`` at our resolution and ``transforms.json``.

    Each frame has its own camera (``fl_x, fl_y, cx, cy`` in pixels of the W x H image, and the lens's
    ``k1 k2 p1 p2`` when it has one) and its
    camera-to-world ``transform_matrix`` ``(4, 4)`` in our frame (x right, y up, looking along -z:
    nerfstudio's OpenGL convention too). ``train_filenames`` / ``val_filenames`` / ``test_filenames``
    fix nerfstudio's split to ours. Returns the path of ``transforms.json``.
    """
    W, H = train.img_wh
    images = os.path.join(out_dir, "images")
    os.makedirs(images, exist_ok=True)
    frames, split_names = [], {"train": [], "test": []}
    for name, ds in (("train", train), ("test", test)):
        for i, image_name in enumerate(ds.image_names):
            rel = os.path.join("images", frame_name(image_name))
            write_png(os.path.join(out_dir, rel), ds.rgbs[i].view(H, W, 3))
            c2w = np.eye(4)
            c2w[:3] = ds.poses[i].cpu().numpy()
            K = ds.Ks[i]
            frame = {"file_path": rel, "transform_matrix": c2w.tolist(), "w": W, "h": H,
                     "fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2])}
            lens = ds.lenses[i]  # the capture's lens (e.g. beer's SIMPLE_RADIAL k1): nerfstudio models it too
            if lens is not None and (lens.model != "opencv" or lens.params[4:].any()):
                raise UserError(f"{train.root_dir}: only OPENCV lenses (k1 k2 p1 p2) go into this comparison")
            if lens is not None:
                frame.update(zip(("k1", "k2", "p1", "p2"), (float(v) for v in lens.params[:4])))
            frames.append(frame)
            split_names[name].append(rel)
    names = [f["file_path"] for f in frames]
    if len(set(names)) != len(names):
        raise UserError(f"two images of {train.root_dir} share a name once their extensions are dropped: rename one")
    meta = {"camera_model": "OPENCV", "frames": frames, "train_filenames": split_names["train"],
            "val_filenames": split_names["test"], "test_filenames": split_names["test"]}
    path = os.path.join(out_dir, "transforms.json")
    write_json_atomic(path, meta, indent=1)
    return path


def ours_worker(a, run_dir):
    """Train ours as capture_quality.py does; at each measurement write every held-out frame."""
    from benchmarks import capture_quality

    os.makedirs(run_dir, exist_ok=True)
    W, H = a.img_wh

    measured = []

    def on_measure(line, frames, test):
        sub = f"m{len(measured):03d}"  # by number: two measurements can fall in the same second
        measured.append(sub)
        os.makedirs(os.path.join(run_dir, sub), exist_ok=True)
        for (rgb, _), image_name in zip(frames, test.image_names):
            write_png(os.path.join(run_dir, sub, frame_name(image_name)), rgb.view(H, W, 3))
        with open(os.path.join(run_dir, MEASURES), "a") as f:
            f.write(json.dumps({"t": line["t"], "step": line["step"], "dir": sub}) + "\n")

    gpus = "1" if a.device == "cuda" else "0"
    h = get_opts([*scene_flags(a).split(), "--num_gpus", gpus, *a.ours_flags.split()])
    with open(os.path.join(run_dir, "run.json"), "w") as f:
        json.dump({"method": "ours", "rays": h.batch_size, "flags": a.ours_flags, "device": a.device,
                   "threads": a.threads}, f)
    cq = types.SimpleNamespace(scene=scene_flags(a), minutes=a.minutes, threads=a.threads, eval_every=a.eval_every,
                               out_dir=run_dir, tag="train_log", device=a.device)
    capture_quality.train_variant(cq, "ours", a.ours_flags, on_measure=on_measure)


def venv_python(venv):
    return os.path.join(venv, "bin", "python")


def ensure_nerfstudio(venv):
    """The venv's python, after making the venv and installing nerfstudio into it if not done yet.

    Slow the first time (a few minutes, ~8 GB); UserError if pip fails (it needs PyPI).
    """
    if os.path.isfile(os.path.join(venv, VENV_READY)):
        return venv_python(venv)
    print(f"installing {NERFSTUDIO} into {venv} (first use: a few minutes, ~8 GB) ...", flush=True)
    if not os.path.isfile(venv_python(venv)):
        subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
    pip = subprocess.run([venv_python(venv), "-m", "pip", "install", "-q", NERFSTUDIO], capture_output=True, text=True)
    if pip.returncode != 0:
        # pip's last ERROR line says why; its notes about local mirrors lacking a package do not
        lines = [x for x in (pip.stderr + pip.stdout).splitlines() if x.strip() and "is ignored: it is neither" not in x]
        why = next((x for x in reversed(lines) if x.startswith("ERROR")), lines[-1] if lines else "no output")
        raise UserError(f"pip install {NERFSTUDIO} into --venv {venv} failed ({why.strip()}): check PyPI is reachable")
    open(os.path.join(venv, VENV_READY), "w").close()
    return venv_python(venv)


def nerfacto_run(a, python, scene_dir, rays, run_dir):
    """Train nerfacto in its venv (``nerfacto_driver.py``) at ``rays`` rays per batch."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of this project's venv
    env["PYTHONWARNINGS"] = "ignore"  # nerfstudio 1.1.5 on a recent torch warns at every camera indexing
    cmd = [python, DRIVER, "--data", scene_dir, "--rays", str(rays), "--minutes", str(a.minutes),
           "--eval_every", str(a.eval_every), "--device", a.device, "--threads", str(a.threads), "--out", run_dir]
    subprocess.run(cmd, check=True, env=env)


def score_run(run_dir, test):
    """Score every measurement of one run: its frames against ``test``'s ground truth.

    Frames are read back with ``read_image`` (the size already matches: no resizing). Returns a
    list of dicts: t (seconds), step, psnr (mean over views), psnr_min, ssim, psnr_views.
    """
    W, H = test.img_wh
    with open(os.path.join(run_dir, MEASURES)) as f:
        measures = [json.loads(line) for line in f if line.strip()]
    rows = []
    for m in measures:
        p, s = [], []
        for i, image_name in enumerate(test.image_names):
            path = os.path.join(run_dir, m["dir"], frame_name(image_name))
            pred = torch.from_numpy(read_image(path, (W, H)))
            gt = test.rgbs[i].view(H, W, 3)
            p.append(psnr(pred, gt).item())
            s.append(ssim(pred, gt).item())
        rows.append({"t": m["t"], "step": m["step"], "psnr": float(np.mean(p)), "psnr_min": min(p),
                     "ssim": float(np.mean(s)), "psnr_views": p})
    return rows


def frames_figure(test, run_dirs, labels, path):
    """One PNG: a row per held-out view (first, middle, last): ground truth | each run's last frame."""
    import imageio.v2 as imageio

    from utils.visualization import image_strip

    W, H = test.img_wh
    last = []
    for run_dir in run_dirs:
        with open(os.path.join(run_dir, MEASURES)) as f:
            last.append(os.path.join(run_dir, [json.loads(line) for line in f if line.strip()][-1]["dir"]))
    rows = []
    for i in sorted({0, len(test.image_names) // 2, len(test.image_names) - 1}):
        name = frame_name(test.image_names[i])
        row = [to_uint8(test.rgbs[i].view(H, W, 3))] + [imageio.imread(os.path.join(d, name))[..., :3] for d in last]
        rows.append(image_strip(*row))
    imageio.imwrite(path, np.concatenate(rows, 0))
    print(f"frames: ground truth | {' | '.join(labels)} (last measurement)")


def run_label(info):
    return "ours" if info["method"] == "ours" else f"nerfacto_{info['rays']}"


def report(a, test, run_dirs):
    """Score all runs, write ``--out`` and the plot, print the table; returns the JSON rows."""
    rows, made_now = [], []
    for run_dir in run_dirs:
        with open(os.path.join(run_dir, "run.json")) as f:
            info = json.load(f)
        made_now.append(run_label(info))
        for r in score_run(run_dir, test):
            rows.append({"method": info["method"], "rays": info["rays"], "minute": round(r["t"] / 60, 3),
                         "step": r["step"], "psnr": round(r["psnr"], 3), "psnr_min": round(r["psnr_min"], 3),
                         "ssim": round(r["ssim"], 4), "psnr_views": [round(x, 2) for x in r["psnr_views"]],
                         "scene": scene_name(a), "img_wh": list(a.img_wh),
                         "device": info.get("device", a.device), "threads": info.get("threads", a.threads)})
    rows = [r for r in a.earlier if run_label(r) not in made_now] + rows  # a run made now replaces its namesake
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out + ".partial", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    os.replace(a.out + ".partial", a.out)
    curves = {}
    for r in rows:
        curves.setdefault(run_label(r), []).append((r["minute"], r["psnr"]))
    W, H = a.img_wh
    where = f"{rows[0]['threads']} CPU threads" if rows and rows[0]["device"] == "cpu" else "GPU"
    if rows and {(r["device"], r["threads"]) for r in rows} != {(rows[0]["device"], rows[0]["threads"])}:
        where = "runs on different devices or threads"
    plot_psnr_curves(curves, a.out[: -len(".jsonl")] + ".png", xlabel=f"training minutes ({where})",
                     title=f"{scene_name(a)} {W}x{H}, {len(test.image_names)} held-out views")
    frames_figure(test, run_dirs, made_now, a.out[: -len(".jsonl")] + "_frames.png")
    print(f"{'run':<16}{'minute':>8}{'step':>8}{'PSNR':>8}{'worst':>8}{'SSIM':>8}")
    for r in rows:
        print(f"{run_label(r):<16}{r['minute']:>8.2f}{r['step']:>8}{r['psnr']:>8.2f}{r['psnr_min']:>8.2f}{r['ssim']:>8.3f}")
    return rows


@cli_main
def main(argv=None):
    a = parse(argv)
    if a.worker == "ours":
        ours_worker(a, os.path.join(a.work, "ours"))
        return
    train, test = split_datasets(a)  # checks the scene and --img_wh before anything runs
    if a.score_only:
        runs = sorted(d.path for d in os.scandir(a.work) if os.path.isfile(os.path.join(d.path, MEASURES))) \
            if os.path.isdir(a.work) else []
        if not runs:
            raise UserError(f"--score_only: no run in --work {a.work}: run without --score_only first")
        report(a, test, sorted(runs, key=lambda d: os.path.basename(d) != "ours"))  # ours first, as a full run
        return
    python = ensure_nerfstudio(a.venv) if "nerfacto" in a.methods else None
    os.makedirs(a.work, exist_ok=True)
    for d in os.scandir(a.work):  # an earlier run's frames would be scored again: only what this script wrote goes
        if d.is_dir() and (d.name in ("ours", "nerfstudio_scene") or d.name.startswith("nerfacto_")):
            shutil.rmtree(d.path)
    run_dirs = []
    if "ours" in a.methods:  # a process of its own, as nerfacto's: each run has the cores to itself
        subprocess.run([sys.executable, os.path.abspath(__file__), *(argv or sys.argv[1:]), "--worker", "ours"],
                       check=True)
        run_dirs.append(os.path.join(a.work, "ours"))
    if "nerfacto" in a.methods:
        scene_dir = os.path.join(a.work, "nerfstudio_scene")
        export_nerfstudio_scene(train, test, scene_dir)
        for rays in a.rays:
            run_dir = os.path.join(a.work, f"nerfacto_{rays}")
            nerfacto_run(a, python, scene_dir, rays, run_dir)
            run_dirs.append(run_dir)
    report(a, test, run_dirs)


if __name__ == "__main__":
    main()

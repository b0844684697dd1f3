"""Held-out quality on a scene shot through a strong lens: the distortion modelled vs ignored.

    python benchmarks/distortion_quality.py --size 100 --steps 1500 [--lens -0.3 0.1 0.001 0.001]

Writes the procedural demo scene (``datasets.demo_scene``) with every view shot through an OpenCV
lens (``k1 k2 p1 p2``, named in its transforms json), and a copy whose json lacks the distortion
keys (the same photos read as pinhole ones: what a loader that drops the coefficients sees). Trains
the same model on each with ``train.py`` (same flags, same steps), then scores the held-out views
(``test`` split, the photos as shot) with ``eval.py``: modelled, each test ray goes through its
undistorted direction; ignored, through the pinhole one. Prints PSNR/SSIM of both and appends one
JSON line to ``--out``. The two runs go one after the other, each ``train.py`` and ``eval.py`` in a
process of its own (learning rate constant over the run: ``--decay_step`` past its end).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


from datasets.demo_scene import write_scene  # noqa: E402
from datasets.distortion import make_distortion  # noqa: E402

TINY = "--net_depth 4 --net_width 64 --N_samples 32 --N_importance 32 --lr 2e-3 --noise_std 0"
# the demo scene's narrow field of view (40 degrees) takes large coefficients for a lens that moves
# the objects (not only the corners) by pixels: this barrel shifts the 32x32 photos by up to 2.5 px
STRONG_LENS = (-0.7, 0.4, 0.01, 0.01)
LENS_KEYS = ("camera_model", "k1", "k2", "k3", "k4", "p1", "p2", "is_fisheye")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=100, help="image width and height")
    p.add_argument("--n_train", type=int, default=60, help="training views")
    p.add_argument("--n_test", type=int, default=8, help="held-out views (a turntable)")
    p.add_argument("--steps", type=int, default=1500, help="training steps of each run")
    p.add_argument("--lens", type=float, nargs=4, default=list(STRONG_LENS), metavar=("K1", "K2", "P1", "P2"),
                   help="the OpenCV lens the views are shot through (default: a strong barrel)")
    p.add_argument("--flags", default=f"{TINY} --batch_size 1024",
                   help="train.py flags of both runs (quoted; TINY: the tiny vanilla model)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--work_dir", help="where scenes and checkpoints go (default: a temporary folder, removed)")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "distortion_quality.jsonl"),
                   help="JSON-lines file the result is appended to")
    return p.parse_args(argv)


def strip_lens(src, dst):
    """A copy of the scene ``src`` whose transforms jsons name no lens (the photos are the same)."""
    shutil.copytree(src, dst)
    for name in os.listdir(dst):
        if name.startswith("transforms") and name.endswith(".json"):
            path = os.path.join(dst, name)
            with open(path) as f:
                meta = json.load(f)
            with open(path, "w") as f:
                json.dump({k: v for k, v in meta.items() if k not in LENS_KEYS}, f, indent=1)


def train_and_score(a, scene, name, work):
    """Train on ``scene`` for ``a.steps`` with ``train.py`` (no learning-rate decay within the run),
    then score its held-out views with ``eval.py``: their mean PSNR/SSIM (``metrics.json``)."""
    flags = a.flags.replace("TINY", TINY).split()
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    train = [sys.executable, os.path.join(ROOT, "train.py"), "--root_dir", scene, "--img_wh", str(a.size), str(a.size),
             "--num_gpus", "0", "--max_steps", str(a.steps), "--decay_step", str(10 * a.steps), "--val_num", "1",
             "--exp_name", name, *flags]
    out_dir = os.path.join(work, "eval", name)
    score = [sys.executable, os.path.join(ROOT, "eval.py"), "--ckpt_path", os.path.join("ckpts", name, "last.ckpt"),
             "--split", "test", "--out_dir", out_dir, "--no_depth"]
    for cmd in (train, score):
        print("  " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"error: {os.path.basename(cmd[1])} failed on {name}:\n{proc.stderr[-2000:]}")
    with open(os.path.join(out_dir, "metrics.json")) as f:
        metrics = json.load(f)
    return {"psnr": round(float(metrics["psnr"]), 3), "ssim": round(float(metrics["ssim"]), 4)}


def main(argv=None):
    a = parse(argv)
    work = a.work_dir or tempfile.mkdtemp(prefix="distortion_quality-")
    try:
        os.makedirs(work, exist_ok=True)
        lensed, plain = os.path.join(work, "scene_lens"), os.path.join(work, "scene_ignored")
        for d in (lensed, plain):
            shutil.rmtree(d, ignore_errors=True)
        write_scene(lensed, a.size, a.n_train, n_val=2, n_test=a.n_test, distortion=make_distortion("opencv", a.lens))
        strip_lens(lensed, plain)
        scores = {name: train_and_score(a, scene, name, work) for name, scene in (("modelled", lensed), ("ignored", plain))}
    finally:
        if not a.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    line = {"bench": "distortion_quality", "size": a.size, "n_train": a.n_train, "n_test": a.n_test,
            "steps": a.steps, "lens": a.lens, "flags": a.flags, **{f"{k}_{m}": v[m] for k, v in scores.items()
                                                                    for m in ("psnr", "ssim")}}
    for name, s in scores.items():
        print(f"{name:9s} PSNR {s['psnr']:.2f} dB  SSIM {s['ssim']:.4f}")
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(line) + "\n")
    print(json.dumps(line))
    return line


if __name__ == "__main__":
    main()

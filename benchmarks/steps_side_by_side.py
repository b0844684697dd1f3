"""Steps, held-out PSNR and peak memory of one timed training run per code tree, one after the other.

    python benchmarks/steps_side_by_side.py --trees /tmp/base . . --variants "" "" "--kernels eager" \\
        -- --dataset_name llff --root_dir ../shared/data/nerf_llff_data/beer --unbounded --fast \\
           --img_wh 72 128 --batch_size 512 --max_time 3

Each tree (a git worktree of an older commit, or this one) runs its own ``train.py`` with the flags
after ``--`` plus its variant's (one per tree), in a process and a folder of its own under ``--work``,
alone: the runs take turns. Then this tree's ``eval.py`` scores each run's last checkpoint on the
same held-out views (``--split``; the latest eval for every run, so only the training differs).
Prints one JSON line per run: the training steps done (the checkpoint's ``global_step``), steps per
minute, held-out PSNR/SSIM, the training process's peak resident memory, and its wall time; then the
ratios to the first run. For issue 29's targets (RESULTS §20).
"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def run_training(tree, flags, exp_name, run_dir):
    """train.py of ``tree`` with ``flags``, run in ``run_dir`` (its ckpts/ and logs/ go there); returns
    (wall seconds, peak RSS in MB)."""
    cmd = [sys.executable, os.path.join(tree, "train.py"), *flags, "--exp_name", exp_name]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the tree's own modules, nothing else
    t0 = time.perf_counter()
    with open(os.path.join(run_dir, "train.log"), "w") as log:
        proc = subprocess.Popen(cmd, cwd=run_dir, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(map(shlex.quote, cmd))} failed: see {run_dir}/train.log")
    return wall, usage.ru_maxrss / 1024


def score(exp_name, run_dir, split):
    """This tree's eval.py on the run's last checkpoint, on ``split``: (steps, PSNR, SSIM, views)."""
    ckpt = os.path.join(run_dir, "ckpts", exp_name, "last.ckpt")
    out_dir = os.path.join(run_dir, "eval")
    cmd = [sys.executable, os.path.join(ROOT, "eval.py"), "--ckpt_path", ckpt, "--split", split, "--no_depth",
           "--out_dir", out_dir]
    with open(os.path.join(run_dir, "eval.log"), "w") as log:
        subprocess.run(cmd, cwd=run_dir, stdout=log, stderr=subprocess.STDOUT, check=True)
    with open(os.path.join(out_dir, "metrics.json")) as f:
        m = json.load(f)
    import torch

    step = torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"]
    return step, m["psnr"], m["ssim"], len(m["per_view"])


def absolute_paths(flags):
    """train.py's flags with the value of --root_dir made absolute (the runs happen in their own folders)."""
    flags = list(flags)
    for i, f in enumerate(flags[:-1]):
        if f == "--root_dir":
            flags[i + 1] = os.path.abspath(flags[i + 1])
    return flags


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trees", nargs="+", default=[ROOT], help="code trees to run train.py from, in this order (repeat one "
                                                            "to run it twice)")
    p.add_argument("--variants", nargs="+", default=None, help="extra flags per tree, each a quoted string (default: none)")
    p.add_argument("--split", default="test", help="held-out views to score (Blender scenes without a test split: val)")
    p.add_argument("--tag", default="side", help="prefix of the runs' --exp_name")
    p.add_argument("--work", default=os.path.join(ROOT, "logs", "side_by_side"), help="logs and renders")
    a = p.parse_args(argv[:cut])
    flags = absolute_paths(argv[cut + 1:])
    if not flags:
        p.error("give train.py's flags after --")
    variants = a.variants or [""] * len(a.trees)
    if len(variants) != len(a.trees):
        sys.exit(f"give one --variants string per tree ({len(a.trees)}), '' for none")
    rows = []
    for i, (tree, variant) in enumerate(zip(a.trees, variants)):
        tree = os.path.abspath(tree)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True,
                                text=True).stdout.strip()
        if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=tree, capture_output=True,
                          text=True).stdout.strip():
            commit += "+changes"
        exp = f"{a.tag}_{i}"
        run_dir = os.path.join(os.path.abspath(a.work), exp)
        shutil.rmtree(run_dir, ignore_errors=True)  # never resume an older run of the same name
        os.makedirs(run_dir)
        wall, peak_mb = run_training(tree, flags + shlex.split(variant), exp, run_dir)
        steps, psnr, ssim, views = score(exp, run_dir, a.split)
        row = {"tree": tree, "commit": commit, "variant": variant, "steps": steps,
               "steps_per_min": round(steps / (wall / 60), 1), "test_psnr": round(psnr, 2),
               "test_ssim": round(ssim, 4), "test_views": views, "peak_rss_mb": round(peak_mb),
               "wall_s": round(wall, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    first = rows[0]
    for row in rows[1:]:
        print(json.dumps({"vs_first": f"{row['commit']} {row['variant']}".strip(),
                          "steps_ratio": round(row["steps"] / first["steps"], 2),
                          "psnr_gain_db": round(row["test_psnr"] - first["test_psnr"], 2),
                          "peak_memory_ratio": round(row["peak_rss_mb"] / first["peak_rss_mb"], 2)}), flush=True)


if __name__ == "__main__":
    main()

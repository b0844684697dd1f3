"""Shared test fixtures: paths to the real scenes, a tiny demo scene, and tiny trained checkpoints.

Real scenes live in ``../shared/data`` beside the project; tests that need them skip with a
reason when it is absent (a user's fresh clone). Trained checkpoints are made once per session
by running ``train.py`` as a user would, in a temporary folder.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
LEGO = SHARED_DATA / "nerf_synthetic" / "lego"
BEER = SHARED_DATA / "nerf_llff_data" / "beer"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# tiny network flags used by every training test (0.1-0.5 s per step on 2 CPU cores)
TINY = ["--net_depth", "4", "--net_width", "64", "--N_samples", "32", "--N_importance", "32",
        "--num_gpus", "0", "--batch_size", "1024"]


def run_script(script, *args, cwd=None, timeout=1200, check=True):
    """Run ``python ROOT/script args...`` in ``cwd`` as a user would; return the CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    cmd = [sys.executable, str(ROOT / script), *map(str, args)]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session", autouse=True)
def fused_kernels_built():
    """Build the fused CPU kernels (models/kernels.py) once, before any test: on a fresh machine the
    build takes ~30 s, which would otherwise land inside whichever timed training run came first."""
    from models import kernels

    kernels.extension()


@pytest.fixture(scope="session")
def lego_dir():
    if not (LEGO / "transforms_train.json").is_file():
        pytest.skip(f"needs the lego scene at {LEGO} (../shared/data beside the project)")
    return LEGO


@pytest.fixture(scope="session")
def beer_dir():
    if not (BEER / "poses_bounds.npy").is_file():
        pytest.skip(f"needs the beer capture at {BEER} (../shared/data beside the project)")
    return BEER


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    """The procedural demo scene at 32x32 (train 30, val 4, test 8 views)."""
    from datasets.demo_scene import write_scene

    out = tmp_path_factory.mktemp("demo_scene")
    return Path(write_scene(str(out), size=32, n_train=30, n_val=4, n_test=8))


@pytest.fixture(scope="session")
def demo_ckpt(tmp_path_factory, demo_dir):
    """A tiny model trained for 40 steps on the demo scene: (checkpoint path, work dir).

    For tests of the plumbing around a checkpoint (eval, weights-only files, the notebook);
    it is not trained enough to judge quality.
    """
    work = tmp_path_factory.mktemp("demo_run")
    run_script("train.py", "--root_dir", demo_dir, "--img_wh", 32, 32, *TINY, "--max_steps", 40,
               "--exp_name", "tiny", "--val_num", 2, cwd=work)
    return work / "ckpts" / "tiny" / "last.ckpt", work


@pytest.fixture(scope="session")
def demo_mesh_ckpt(tmp_path_factory, demo_dir):
    """The demo scene at 32x32 trained for 150 steps (about a minute on 2 free CPU cores), enough
    for its solids to have a surface: (checkpoint path, work dir). For mesh quality against the
    scene's analytic surface (tests/test_tsdf.py)."""
    work = tmp_path_factory.mktemp("demo_mesh_run")
    run_script("train.py", "--root_dir", demo_dir, "--img_wh", 32, 32, *TINY, "--max_steps", 150,
               "--lr", "2e-3", "--decay_step", 1000, "--noise_std", 0, "--val_num", 2,
               "--exp_name", "demo_mesh", cwd=work)
    return work / "ckpts" / "demo_mesh" / "last.ckpt", work


@pytest.fixture(scope="session")
def lego_ckpt(tmp_path_factory, lego_dir):
    """A tiny model trained on lego at 32x32 for 300 steps (about 2 minutes on 2 CPU cores):
    (checkpoint path, work dir). Shared by the learning test, eval and mesh tests."""
    work = tmp_path_factory.mktemp("lego_run")
    run_script("train.py", "--root_dir", lego_dir, "--img_wh", 32, 32, *TINY, "--max_steps", 300,
               "--lr", "2e-3", "--decay_step", 1000, "--noise_std", 0, "--val_num", 4,
               "--exp_name", "lego_tiny", cwd=work)
    return work / "ckpts" / "lego_tiny" / "last.ckpt", work

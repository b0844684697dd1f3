"""train.py as a user runs it: smoke, learning, exact resume, weights loading, DDP, bad input."""
import os
import shutil

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import TINY, run_script
from datasets.blender import BlenderDataset
from metrics import psnr
from models import load_model
from models.rendering import render_chunked
from opt import get_opts
from utils.checkpoint import load_checkpoint
from utils.errors import UserError


def scalars(work, exp, tag):
    runs = sorted((work / "logs" / exp).glob("version_*"))
    acc = EventAccumulator(str(runs[-1]), size_guidance={"images": 0, "scalars": 0}).Reload()
    return [e.value for e in acc.Scalars(tag)], acc


def test_smoke_logs_and_checkpoints(demo_ckpt):
    ckpt, work = demo_ckpt
    assert ckpt.is_file()
    assert any(p.name.startswith("best-") for p in ckpt.parent.iterdir())
    # last.ckpt holds the final step even when the final validation is not the best one
    assert load_checkpoint(str(ckpt))["raw"]["global_step"] == 40
    losses, acc = scalars(work, "tiny", "train/loss")
    tags = acc.Tags()
    assert {"train/loss", "train/psnr", "lr", "val/psnr", "val/ssim", "val/loss"} <= set(tags["scalars"])
    assert "val/GT_pred_depth" in tags["images"]
    img = acc.Images("val/GT_pred_depth")[0]
    assert img.width == 3 * 32 and img.height == 32  # GT | prediction | depth
    assert np.isfinite(losses).all()


def test_learning_on_lego_beats_the_white_baseline(lego_ckpt, lego_dir):
    """300 steps of a tiny model at 32x32: held-out PSNR well above an all-white prediction."""
    ckpt, work = lego_ckpt
    val_psnr, _ = scalars(work, "lego_tiny", "val/psnr")
    # an independent check on other held-out views than the ones validated during training
    h = get_opts(["--root_dir", str(lego_dir), "--ckpt_path", str(ckpt)])
    fields, h, _ = load_model(h)
    ds = BlenderDataset(str(lego_dir), "val", img_wh=(32, 32))
    ours, white = [], []
    for i in range(1, 100, 20):
        out = render_chunked(fields, ds[i]["rays"], n_samples=h.N_samples, n_importance=h.N_importance,
                             white_back=True, test_time=True)
        gt = ds[i]["rgbs"]
        ours.append(psnr(out["rgb"], gt).item())
        white.append(psnr(torch.ones_like(gt), gt).item())
    print(f"val/psnr during training {val_psnr[-1]:.2f} dB; held-out {np.mean(ours):.2f} dB vs white {np.mean(white):.2f} dB")
    assert val_psnr[-1] > val_psnr[0] or len(val_psnr) == 1
    assert np.mean(ours) > np.mean(white) + 6.0
    assert abs(np.mean(ours) - val_psnr[-1]) < 2.0  # the logged metric agrees with a recomputation


def test_resume_is_exact(demo_dir, tmp_path):
    """Two epochs in one go == stopping (at an epoch end, or half-way through an epoch) and resuming
    from last.ckpt: same weights, same step, same LR schedule, with the default sample jitter and
    density noise (the random state travels in the checkpoint)."""
    flags = ["--root_dir", demo_dir, "--img_wh", 16, 16, *TINY, "--perturb", 1, "--noise_std", 1,
             "--val_num", 1, "--lr_scheduler", "steplr", "--decay_step", 1, "--decay_gamma", 0.5,
             "--num_epochs", 2]  # 30 views x 256 px / 1024 rays = 8 steps per epoch
    run_script("train.py", *flags, "--exp_name", "full", cwd=tmp_path)
    run_script("train.py", *flags, "--exp_name", "epoch", "--max_steps", 8, cwd=tmp_path)
    run_script("train.py", *flags, "--exp_name", "mid", "--max_steps", 4, "--val_every", 0.5, cwd=tmp_path)
    ckpts = tmp_path / "ckpts"
    run_script("train.py", *flags, "--exp_name", "epoch_resumed", "--ckpt_path", ckpts / "epoch" / "last.ckpt",
               cwd=tmp_path)
    run_script("train.py", *flags, "--exp_name", "mid_resumed", "--ckpt_path", ckpts / "mid" / "last.ckpt",
               "--val_every", 0.5, cwd=tmp_path)
    a = load_checkpoint(str(ckpts / "full" / "last.ckpt"))
    assert load_checkpoint(str(ckpts / "mid" / "last.ckpt"))["raw"]["global_step"] == 4
    for name in ("epoch_resumed", "mid_resumed"):
        b = load_checkpoint(str(ckpts / name / "last.ckpt"))
        assert a["raw"]["global_step"] == b["raw"]["global_step"] == 16
        for k, v in a["state_dict"].items():
            assert torch.allclose(v, b["state_dict"][k], atol=1e-6), (name, k)
        # the schedule resumed too: stepped after each of the two epochs
        assert a["raw"]["lr_schedulers"][0]["last_epoch"] == b["raw"]["lr_schedulers"][0]["last_epoch"] == 2


def test_prefixes_to_ignore_skips_those_weights(demo_ckpt, demo_dir):
    from train import NeRFSystem, load_start_weights

    ckpt, _ = demo_ckpt
    h = get_opts(["--root_dir", str(demo_dir), *map(str, TINY), "--ckpt_path", str(ckpt),
                  "--prefixes_to_ignore", "nerf_fine"])
    torch.manual_seed(123)
    system = NeRFSystem(h, train_dataset=None, val_dataset=None)
    fresh_fine = {k: v.clone() for k, v in system.nerf_fine.state_dict().items()}
    resume = load_start_weights(system, h)
    assert resume is None  # loading a subset of weights starts a new run
    saved = load_checkpoint(str(ckpt))["state_dict"]
    for k, v in system.nerf_coarse.state_dict().items():
        assert torch.equal(v, saved["nerf_coarse." + k])
    for k, v in system.nerf_fine.state_dict().items():
        assert torch.equal(v, fresh_fine[k]) and not torch.equal(v, saved["nerf_fine." + k])
    # a prefix covering every network ("nerf"): nothing is loaded, a fresh run starts
    h.prefixes_to_ignore = ["nerf"]
    system = NeRFSystem(h)
    fresh = {k: v.clone() for k, v in system.nerf_coarse.state_dict().items()}
    assert load_start_weights(system, h) is None
    assert all(torch.equal(v, fresh[k]) for k, v in system.nerf_coarse.state_dict().items())
    # with the default prefixes a full checkpoint resumes
    h.prefixes_to_ignore = ["loss"]
    assert load_start_weights(NeRFSystem(h), h) == str(ckpt)


def test_ddp_two_cpu_processes_learn_like_one(demo_dir, tmp_path):
    flags = ["--root_dir", demo_dir, "--img_wh", 16, 16, *TINY, "--max_steps", 30, "--lr", "2e-3",
             "--val_num", 4, "--noise_std", 0]
    run_script("train.py", *flags, "--exp_name", "single", cwd=tmp_path)
    # two processes of 512 rays each: the same 1024 rays per step in total
    run_script("train.py", *flags, "--exp_name", "ddp", "--cpu_processes", 2, "--batch_size", 512, cwd=tmp_path)
    single, _ = scalars(tmp_path, "single", "val/psnr")
    ddp, _ = scalars(tmp_path, "ddp", "val/psnr")
    assert (tmp_path / "ckpts" / "ddp" / "last.ckpt").is_file()
    assert load_checkpoint(str(tmp_path / "ckpts" / "ddp" / "last.ckpt"))["raw"]["global_step"] == 30
    print(f"val PSNR after 30 steps: single {single[-1]:.2f} dB, 2-process DDP {ddp[-1]:.2f} dB")
    assert abs(single[-1] - ddp[-1]) < 1.5


def _bad(tmp_path, *args):
    proc = run_script("train.py", *args, cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    err_lines = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(err_lines) == 1, proc.stderr
    assert not (tmp_path / "ckpts").exists() and not (tmp_path / "logs").exists()
    return err_lines[0]


@pytest.mark.parametrize("flags, expect", [
    (["--precision", "fp16"], "--precision fp16 is not one of"), (["--lr", "-1"], "--lr must be positive"),
    (["--weight_decay", "-1"], "--weight_decay must be >= 0"), (["--max_steps", "0"], "--max_steps must be positive"),
    (["--max_time", "soon"], "--max_time soon is not a duration"), (["--max_time", "0"], "--max_time 0 is not"),
    (["--max_time", "00:15:00"], "DD:HH:MM:SS"),
    (["--unbounded", "--dataset_name", "blender"], "--unbounded is for real 360-degree captures"),
    (["--distortion_loss", "0.01"], "--distortion_loss applies to the fast path"),
    (["--fast", "--distortion_loss", "-1"], "--distortion_loss must be >= 0"),
])
def test_bad_training_flags_are_named(flags, expect):
    with pytest.raises(UserError, match=expect):
        get_opts(["--root_dir", "scene", *flags])


def test_bad_input_gives_one_clear_line(demo_dir, demo_ckpt, tmp_path):
    tiny = [*TINY, "--max_steps", 1]
    assert "--precision" in _bad(tmp_path, "--root_dir", demo_dir, *tiny, "--precision", "fp16")
    assert "--root_dir" in _bad(tmp_path, *tiny)
    assert "nowhere" in _bad(tmp_path, "--root_dir", tmp_path / "nowhere", *tiny)
    assert "transforms_train.json" in _bad(tmp_path, "--root_dir", tmp_path, *tiny)
    assert "--img_wh" in _bad(tmp_path, "--root_dir", demo_dir, "--img_wh", 0, 32, *tiny)
    assert "dataset_name" in _bad(tmp_path, "--root_dir", demo_dir, "--dataset_name", "colmapx", *tiny)
    assert "--spheric_bounds" in _bad(tmp_path, "--root_dir", demo_dir, "--spheric_bounds", "wide", *tiny)
    assert "--ndc_viewdirs" in _bad(tmp_path, "--root_dir", demo_dir, "--ndc_viewdirs", "camera", *tiny)

    scene = tmp_path / "scene"
    shutil.copytree(demo_dir, scene)
    (scene / "train" / "r_3.png").write_bytes(b"\x89PNG garbage")
    assert "r_3.png" in _bad(tmp_path, "--root_dir", scene, *tiny)
    os.remove(scene / "train" / "r_3.png")
    assert "r_3.png" in _bad(tmp_path, "--root_dir", scene, *tiny)

    import socket

    with socket.socket() as taken:  # --viewer on a port in use: named, with the flag to change
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _bad(tmp_path, "--root_dir", demo_dir, *tiny, "--viewer", "--viewer_port", port)
    assert f"port {port} is in use" in line and "try --viewer_port " in line

    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    assert "junk.ckpt" in _bad(tmp_path, "--root_dir", demo_dir, "--ckpt_path", junk, *tiny)
    ckpt, _ = demo_ckpt  # a 4x64 checkpoint into an 8x128 network
    line = _bad(tmp_path, "--root_dir", demo_dir, "--ckpt_path", ckpt, *tiny, "--net_width", 128)
    assert "4x64" in line and "4x128" in line


def test_max_time_stops_training_and_still_validates(demo_dir, tmp_path):
    """A 4-second budget on a run of 10,000 steps: it stops early, validates and writes last.ckpt."""
    run_script("train.py", "--root_dir", demo_dir, "--img_wh", 16, 16, *TINY, "--max_steps", 10000,
               "--max_time", "00:00:00:04", "--val_num", 1, "--exp_name", "timed", cwd=tmp_path)
    ckpt = load_checkpoint(str(tmp_path / "ckpts" / "timed" / "last.ckpt"))
    assert 0 < ckpt["raw"]["global_step"] < 10000
    val, _ = scalars(tmp_path, "timed", "val/psnr")
    assert len(val) >= 1


def test_max_time_formats_and_cpu_preset():
    from opt import parse_max_time

    assert parse_max_time("15") == 900 and parse_max_time("0.5") == 30
    assert parse_max_time("01:02:03:04") == ((24 + 2) * 60 + 3) * 60 + 4
    h = get_opts(["--root_dir", "scene", "--fast", "--num_gpus", "0"])
    assert (h.batch_size, h.grid_resolution, h.hash_levels, h.hash_max_res) == (1024, 64, 8, 256)
    h = get_opts(["--root_dir", "scene", "--fast", "--num_gpus", "0", "--hash_levels", "12", "--batch_size", "2048"])
    assert (h.hash_levels, h.batch_size, h.grid_resolution) == (12, 2048, 64)  # typed flags win
    h = get_opts(["--root_dir", "scene", "--fast", "--num_gpus", "0", "--unbounded"])
    assert (h.hash_levels, h.hash_max_res, h.hash_log2_size, h.batch_size) == (8, 1024, 17, 512)  # sharper for rooms
    assert (h.grid_decay, h.alpha_threshold, h.distortion_loss) == (0.8, 0.01, 0.001)  # prunes the haze in a CPU budget
    blender = get_opts(["--root_dir", "scene", "--fast", "--num_gpus", "0"])
    assert (blender.grid_decay, blender.alpha_threshold, blender.distortion_loss) == (0.95, 0.0, 0.0)  # unchanged
    h = get_opts(["--root_dir", "scene", "--fast", "--num_gpus", "0", "--unbounded", "--distortion_loss", "0"])
    assert h.distortion_loss == 0.0  # a typed 0 turns it off
    h = get_opts(["--root_dir", "scene", "--fast", "--num_gpus", "0", "--unbounded", "--batch_size", "2048"])
    assert (h.batch_size, h.hash_max_res) == (2048, 1024)  # typed flags win here too
    h = get_opts(["--root_dir", "scene", "--fast", "--num_gpus", "0", "--unbounded", "--hash_max_res", "512"])
    assert (h.hash_max_res, h.hash_log2_size) == (512, 17)


def test_the_fast_presets_steps_not_the_epochs_set_the_length():
    """The fast path's --max_steps (with --max_time) alone sets how long it trains: 16 epochs of a small
    capture are fewer steps than its minutes allow, and stopped a capture.py budget early."""
    from train import build_trainer

    fast = get_opts(["--root_dir", "scene", "--fast", "--num_gpus", "0", "--max_time", "10"])
    trainer = build_trainer(fast, steps_per_epoch=50)
    assert fast.max_steps > 0 and trainer.max_epochs == -1 and trainer.max_steps == fast.max_steps
    vanilla = get_opts(["--root_dir", "scene", "--num_gpus", "0", "--num_epochs", "3"])
    assert vanilla.max_steps <= 0 and build_trainer(vanilla, steps_per_epoch=50).max_epochs == 3

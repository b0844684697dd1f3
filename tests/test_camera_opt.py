"""Camera refinement (--optimize_cameras): pose corrections, gradients through both renderers,
held-out alignment, and the commands."""
import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from conftest import TINY, run_script
from datasets.base import CameraPath
from datasets.demo_scene import look_at_pose
from models.camera_opt import (PoseCorrection, align_views, apply_correction, level_weights, so3_exp,
                               trained_poses)
from models.hash_encoding import HashEncoding
from models.rendering import render_chunked


def test_so3_exp_matches_rodrigues():
    w = torch.tensor([[0.0, 0.0, 0.0], [0.3, -0.2, 0.5], [1e-6, 2e-6, -1e-6], [2.0, 1.0, -0.5]], dtype=torch.float64)
    R = so3_exp(w)
    for wi, Ri in zip(w.numpy(), R.numpy()):
        np.testing.assert_allclose(Ri, cv2.Rodrigues(wi)[0], atol=1e-9)
    # the gradient at zero is finite (the Taylor branch)
    z = torch.zeros(1, 3, requires_grad=True)
    (so3_exp(z) * torch.arange(9.0).view(1, 3, 3)).sum().backward()  # a plain sum of a rotation's skew part is 0
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_correction_acts_in_the_camera_frame():
    c2w = torch.as_tensor(look_at_pose(0.7, 0.3)[:3], dtype=torch.float32)[None]
    np.testing.assert_allclose(apply_correction(c2w, torch.zeros(1, 6)), c2w)  # zero: the pose as read
    moved = apply_correction(c2w, torch.tensor([[0, 0, 0, 0, 0, 0.5]]))  # half a unit along camera +z (backwards)
    np.testing.assert_allclose(moved[0, :, 3], c2w[0, :, 3] + 0.5 * c2w[0, :, 2], atol=1e-6)
    pc = PoseCorrection(3)
    assert pc(c2w.expand(2, 3, 4), torch.tensor([0, 2])).shape == (2, 3, 4)
    assert pc.magnitudes() == (0.0, 0.0)


def test_level_weights_schedule():
    w0, wmid, wend = (level_weights(p, 8, end=0.3) for p in (0.0, 0.15, 0.3))
    assert w0[:2].tolist() == [1.0, 1.0] and w0[3:].sum() == 0  # the coarsest quarter only
    assert (wmid[:-1] >= wmid[1:]).all() and 0 < wmid.sum() < 8
    assert wend.tolist() == [1.0] * 8
    assert level_weights(0.0, 8, end=0.0).tolist() == [1.0] * 8  # off


def test_hash_encoding_gradient_wrt_points():
    """Camera refinement needs d(encoding)/d(points): compare with finite differences."""
    torch.manual_seed(0)
    enc = HashEncoding([[-1, -1, -1], [1, 1, 1]], n_levels=4, log2_size=10, max_res=64).double()
    with torch.no_grad():
        enc.table.uniform_(-1, 1)
    x = (torch.rand(5, 3, dtype=torch.float64) * 1.6 - 0.8).requires_grad_(True)
    g = torch.randn(5, enc.out_channels, dtype=torch.float64)
    (enc(x) * g).sum().backward()
    eps, numeric = 1e-6, torch.zeros_like(x)
    with torch.no_grad():
        for a in range(3):
            dx = torch.zeros_like(x)
            dx[:, a] = eps
            numeric[:, a] = ((enc(x + dx) - enc(x - dx)) * g).sum(-1) / (2 * eps)
    np.testing.assert_allclose(x.grad.numpy(), numeric.numpy(), rtol=1e-4, atol=1e-6)
    # training the field alone does not ask for (or pay for) point gradients
    y = torch.rand(5, 3, dtype=torch.float64)
    enc(y).sum().backward()
    assert y.grad is None and enc.table.grad is not None


class Blob(nn.Module):
    """An analytic field: a soft ball of radius 0.8 with a colour that varies in space."""

    def query_density(self, x):
        return 60 * torch.sigmoid((0.8 - x.norm(dim=-1)) * 30)

    def forward(self, x, d):
        rgb = torch.stack([0.5 + 0.5 * torch.sin(4 * x[:, 0]), 0.5 + 0.5 * torch.cos(5 * x[:, 1]),
                           0.5 + 0.5 * torch.sin(3 * x[:, 2] + 2 * x[:, 0])], -1)
        return self.query_density(x), rgb


def test_align_views_recovers_perturbed_poses():
    """A held-out view whose pose is off by ~2 degrees and 0.08 units is pulled back to its true pose."""
    torch.manual_seed(0)
    fields = {"coarse": Blob()}
    size, K = 32, np.array([[40.0, 0, 16], [0, 40, 16], [0, 0, 1]], dtype=np.float32)
    true = np.stack([look_at_pose(t, 0.3, radius=3.0)[:3] for t in (0.2, 2.4)]).astype(np.float32)
    kwargs = dict(n_samples=48, n_importance=0, white_back=True)
    truth = CameraPath(K, (size, size), true, near=1.5, far=4.5, white_back=True)
    gt = torch.stack([render_chunked(fields, truth.rays(i), **kwargs)["rgb"] for i in range(2)])  # (2, H*W, 3)
    error = torch.tensor([[0.03, -0.02, 0.025, 0.06, -0.05, 0.03], [-0.025, 0.03, -0.02, -0.05, 0.04, 0.05]])
    off = CameraPath(K, (size, size), apply_correction(torch.as_tensor(true), error).numpy(), near=1.5, far=4.5,
                     white_back=True)
    off.rgbs = gt

    def mse(ds, poses):
        return float(np.mean([((render_chunked(fields, ds.rays(i, c2w=poses[i]), **kwargs)["rgb"] - gt[i]) ** 2)
                              .mean() for i in range(2)]))

    aligned = align_views(fields, off, kwargs, steps=150, batch=512, lr=3e-3)
    before, after = mse(off, off.poses), mse(off, aligned)
    assert after < 0.2 * before, (before, after)
    pose_err = lambda p: float((p - torch.as_tensor(true)).abs().max())  # noqa: E731
    assert pose_err(aligned) < 0.5 * pose_err(off.poses)
    assert torch.equal(off.poses, torch.as_tensor(apply_correction(torch.as_tensor(true), error)))  # ds unchanged


def test_trained_poses_apply_the_checkpoint_corrections():
    """extract_mesh.py reads the photos' colours at the cameras a refined model learned."""
    g = torch.Generator().manual_seed(0)
    poses = torch.cat([torch.linalg.qr(torch.randn(4, 3, 3, generator=g))[0], torch.randn(4, 3, 1, generator=g)], -1)
    delta = 0.1 * torch.randn(4, 6, generator=g)
    out, corrected = trained_poses({"camera_opt.delta": delta}, poses)
    assert corrected and torch.allclose(out, apply_correction(poses, delta))
    assert (out - poses).abs().max() > 1e-3
    for state in ({}, {"camera_opt.delta": delta[:3]}):  # no refinement; corrections for another split
        out, corrected = trained_poses(state, poses)
        assert not corrected and out is poses


@pytest.mark.parametrize("fast", [False, True], ids=["vanilla", "fast"])
def test_train_and_eval_with_optimize_cameras(tmp_path, demo_dir, fast):
    """train.py --optimize_cameras learns corrections (saved in the checkpoint); eval.py aligns the
    held-out views and metrics.json says so; --align_steps 0 scores the poses as read."""
    flags = ["--fast", "--max_steps", 40] if fast else [*TINY, "--max_steps", 30]
    run_script("train.py", "--root_dir", demo_dir, "--img_wh", 32, 32, "--num_gpus", 0, *flags, "--optimize_cameras",
               "--camera_lr", "1e-2", "--exp_name", "cams", "--val_num", 1, cwd=tmp_path)
    ckpt = tmp_path / "ckpts" / "cams" / "last.ckpt"
    delta = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]["camera_opt.delta"]
    assert delta.shape == (30, 6) and delta.abs().max() > 0
    run_script("eval.py", "--ckpt_path", ckpt, "--split", "val", "--align_steps", 3, "--out_dir", tmp_path / "a",
               "--no_depth", cwd=tmp_path)
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert "aligned" in metrics["cameras"] and metrics["n_views"] == 4
    run_script("eval.py", "--ckpt_path", ckpt, "--split", "val", "--align_steps", 0, "--out_dir", tmp_path / "b",
               "--no_depth", cwd=tmp_path)
    assert "cameras" not in json.loads((tmp_path / "b" / "metrics.json").read_text())
    proc = run_script("extract_mesh.py", "--ckpt_path", ckpt, "--preview_only", "--preview_N", 16, cwd=tmp_path)
    assert "training cameras as the model refined them" in proc.stdout


@pytest.mark.parametrize("flag,value,expect", [("--camera_lr", "0", "--camera_lr must be positive"),
                                               ("--camera_c2f", "1.5", "--camera_c2f must be")])
def test_bad_camera_flags(tmp_path, demo_dir, flag, value, expect):
    proc = run_script("train.py", "--root_dir", demo_dir, "--img_wh", 32, 32, *TINY, "--optimize_cameras", flag, value,
                      cwd=tmp_path, check=False)
    assert proc.returncode != 0 and expect in proc.stderr and not (tmp_path / "ckpts").exists()


def test_bad_align_steps(tmp_path, demo_ckpt):
    ckpt, _ = demo_ckpt
    proc = run_script("eval.py", "--ckpt_path", ckpt, "--align_steps", -1, "--out_dir", tmp_path / "x", cwd=tmp_path,
                      check=False)
    assert proc.returncode != 0 and "--align_steps must be >= 0" in proc.stderr and not (tmp_path / "x").exists()


def test_align_steps_aligns_any_model_when_asked(tmp_path, demo_ckpt):
    """A model trained without --optimize_cameras is scored on the poses as read, unless --align_steps N
    asks for the alignment (to compare it with one trained with --optimize_cameras the same way)."""
    ckpt, _ = demo_ckpt
    run_script("eval.py", "--ckpt_path", ckpt, "--split", "val", "--no_depth", "--out_dir", tmp_path / "a", cwd=tmp_path)
    plain = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert "cameras" not in plain
    run_script("eval.py", "--ckpt_path", ckpt, "--split", "val", "--no_depth", "--align_steps", 20,
               "--out_dir", tmp_path / "b", cwd=tmp_path)
    aligned = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert "20 steps" in aligned["cameras"]
    assert aligned["psnr"] >= plain["psnr"] - 0.1  # the true poses: alignment finds nothing better to move to

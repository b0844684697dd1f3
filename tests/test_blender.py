import json
import shutil

import numpy as np
import pytest
import torch

from datasets.base import RayBatchSampler, evenly_spread
from datasets.blender import BlenderDataset
from utils.errors import UserError


def test_lego_loader_shapes_and_white_background(lego_dir):
    ds = BlenderDataset(str(lego_dir), "val", img_wh=(40, 40))
    assert len(ds) == 100
    sample = ds[0]
    rays, rgbs = sample["rays"], sample["rgbs"]
    assert rays.origins.shape == (1600, 3) and rgbs.shape == (1600, 3)
    assert torch.allclose(rays.directions.norm(dim=-1), torch.ones(1600), atol=1e-5)
    assert (rays.near == 2).all() and (rays.far == 6).all()
    # the corners of a lego view are background: composited on white
    img = rgbs.view(40, 40, 3)
    assert img[0, 0].min() > 0.99 and img[-1, -1].min() > 0.99
    # focal scales with width: 0.5 W / tan(0.5 camera_angle_x)
    meta = json.load(open(lego_dir / "transforms_val.json"))
    assert np.isclose(ds.K[0, 0], 0.5 * 40 / np.tan(0.5 * meta["camera_angle_x"]), rtol=1e-5)


def test_train_split_batches_cover_every_ray_once(demo_dir):
    ds = BlenderDataset(str(demo_dir), "train", img_wh=(16, 16))
    sampler = RayBatchSampler(ds.n_rays, 1000, seed=0)
    idx = torch.cat(list(sampler))
    assert len(idx) == ds.n_rays == 30 * 256
    assert torch.equal(torch.sort(idx)[0], torch.arange(ds.n_rays))
    batch = ds[idx[:1000]]
    assert batch["rays"].origins.shape == (1000, 3) and batch["rgbs"].shape == (1000, 3)
    # a ray's colour is the pixel it was built from
    k = int(idx[5])
    img, pix = k // 256, k % 256
    whole = ds.rays(img)
    assert torch.allclose(batch["rays"].directions[5], whole.directions[pix])
    assert torch.allclose(batch["rgbs"][5], ds.rgbs[img, pix])
    # a new epoch gives a new order, two ranks get disjoint rays
    sampler.set_epoch(1)
    assert not torch.equal(torch.cat(list(sampler)), idx)
    r0 = torch.cat(list(RayBatchSampler(ds.n_rays, 500, rank=0, world_size=2)))
    r1 = torch.cat(list(RayBatchSampler(ds.n_rays, 500, rank=1, world_size=2)))
    assert len(set(r0.tolist()) & set(r1.tolist())) == 0 and len(r0) + len(r1) == ds.n_rays


def test_validation_views_are_evenly_spread():
    """train.py validates on ``--val_num`` views from the first to the last held-out one."""
    assert evenly_spread(10, 4) == [0, 3, 6, 9]
    assert evenly_spread(3, 8) == [0, 1, 2]  # fewer views than --val_num: all of them
    assert evenly_spread(5, 1) == [0] and evenly_spread(0, 8) == []


def test_any_resolution_scales_the_intrinsics(demo_dir):
    # the demo images are 32x32; resizing to 24x24 scales the focal length and centre by 24/32
    ds = BlenderDataset(str(demo_dir), "val", img_wh=(24, 24))
    assert ds[0]["rgbs"].shape == (24 * 24, 3)
    f0 = 0.5 * 32 / np.tan(0.5 * json.load(open(demo_dir / "transforms_val.json"))["camera_angle_x"])
    assert np.allclose([ds.K[0, 0], ds.K[1, 1], ds.K[0, 2], ds.K[1, 2]], [f0 * 24 / 32, f0 * 24 / 32, 12, 12])
    # a size that would stretch the images is refused, naming one that keeps their aspect
    with pytest.raises(UserError, match=r"aspect ratio of the 32x32 images: use --img_wh 24 24"):
        BlenderDataset(str(demo_dir), "val", img_wh=(24, 16))


def test_scene_without_a_val_split_validates_on_test(demo_dir, tmp_path, capsys):
    scene = tmp_path / "scene"
    shutil.copytree(demo_dir, scene)
    (scene / "transforms_val.json").unlink()
    val = BlenderDataset(str(scene), "val", img_wh=(8, 8))
    assert "validating on the test views" in capsys.readouterr().out
    assert val.image_names == BlenderDataset(str(scene), "test", img_wh=(8, 8)).image_names


def test_missing_and_corrupt_inputs(demo_dir, tmp_path):
    with pytest.raises(UserError, match="transforms_test.json"):
        BlenderDataset(str(tmp_path), "test", img_wh=(8, 8))
    scene = tmp_path / "scene"
    shutil.copytree(demo_dir, scene)
    (scene / "val" / "r_1.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="r_1.png"):
        BlenderDataset(str(scene), "val", img_wh=(8, 8))
    (scene / "val" / "r_1.png").unlink()
    with pytest.raises(UserError, match="not found"):
        BlenderDataset(str(scene), "val", img_wh=(8, 8))


def test_path_split_is_a_turntable(demo_dir, demo_ckpt, tmp_path):
    """``--split path`` on a Blender scene: 120 cameras on a circle about +z at the training
    cameras' mean radius and height, all looking at the origin; eval.py renders them."""
    train = BlenderDataset(str(demo_dir), "train", img_wh=(8, 8))
    path = BlenderDataset(str(demo_dir), "path", img_wh=(8, 8))
    assert path.rgbs is None and path.poses.shape == (120, 3, 4) and len(path) == 120
    c, c_train = path.poses[:, :, 3].double(), train.poses[:, :, 3].double()
    assert torch.allclose(c[:, :2].norm(dim=1), c_train[:, :2].norm(dim=1).mean(), rtol=1e-4)
    assert torch.allclose(c[:, 2], c_train[:, 2].mean(), atol=1e-4)
    look = -path.poses[:, :, 2].double()
    assert torch.allclose(look, -c / c.norm(dim=1, keepdim=True), atol=1e-5)  # at the origin
    assert (path.poses[:, 2, 1] > 0).all()  # the image's up points up the z axis
    from conftest import run_script

    ckpt, _ = demo_ckpt
    run_script("eval.py", "--ckpt_path", ckpt, "--split", "path", "--img_wh", 8, 8, "--no_depth",
               "--scene_name", "turn", cwd=tmp_path)
    out = tmp_path / "results" / "blender" / "turn" / "path"
    assert len(list(out.glob("[0-9][0-9][0-9].png"))) == 120 and (out / "turn.mp4").stat().st_size > 0

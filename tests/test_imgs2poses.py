"""imgs2poses.py: poses from photos with pycolmap, checked against the beer capture's own poses.

A handful of neighbouring beer photos (SfM on 2x downscaled copies, about 20-30 s on 2 cores)
must register and give camera centres that match the shipped poses (computed from all 71 photos
at full resolution) up to a similarity transform.
"""
import json
import os
import shutil

import cv2
import numpy as np
import pytest
import torch

from conftest import run_script
from datasets.colmap import camera_intrinsics, qvec_to_rotmat, read_model
from datasets.llff import LLFFDataset
from datasets.nerfstudio import NerfstudioDataset

pytest.importorskip("pycolmap")

SUBSET = [f"{i:04d}.jpg" for i in range(20, 28)]


def umeyama(src, dst):
    """Similarity ``(s, R, t)`` minimizing ``|s R src + t - dst|^2`` (Umeyama 1991). src, dst: (N, 3)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    cov = (dst - mu_d).T @ (src - mu_s) / len(src)
    U, D, Vt = np.linalg.svd(cov)
    E = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        E[2, 2] = -1
    R = U @ E @ Vt
    s = np.trace(np.diag(D) @ E) / ((src - mu_s) ** 2).sum(1).mean()
    return s, R, mu_d - s * R @ mu_s


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(10, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    s, R, t = umeyama(src, 2.5 * src @ q.T + [1, 2, 3])
    assert s == pytest.approx(2.5) and np.allclose(R, q) and np.allclose(t, [1, 2, 3])


@pytest.fixture(scope="module")
def beer_subset(beer_dir, tmp_path_factory):
    scene = tmp_path_factory.mktemp("beer_subset")
    os.makedirs(scene / "images")
    for name in SUBSET:
        shutil.copy(beer_dir / "images" / name, scene / "images" / name)
    proc = run_script("imgs2poses.py", scene, "--downscale", 2, timeout=600)
    return scene, proc


def test_subset_registers_and_matches_the_capture(beer_dir, beer_subset):
    scene, proc = beer_subset
    for stage in ("[1/3]", "[2/3] exhaustive", "[3/3]", "wrote", "transforms.json"):
        assert stage in proc.stdout
    assert not [p for p in os.listdir(scene) if p.startswith(".imgs2poses")]  # work folder removed
    ours = np.load(scene / "poses_bounds.npy")
    assert ours.shape == (8, 17)
    ref = np.load(beer_dir / "poses_bounds.npy")
    idx = [int(n[:4]) for n in SUBSET]
    c_ours = ours[:, :15].reshape(-1, 3, 5)[:, :, 3]
    c_ref = ref[idx, :15].reshape(-1, 3, 5)[:, :, 3]
    s, R, t = umeyama(c_ours, c_ref)
    err = np.linalg.norm(s * c_ours @ R.T + t - c_ref, axis=1)
    all_centres = ref[:, :15].reshape(-1, 3, 5)[:, :, 3]
    radius = np.linalg.norm(all_centres - all_centres.mean(0), axis=1).mean()  # about 3.5 units
    assert err.max() < 0.03 * radius, (err.max(), radius)
    # orientations agree too, after the same rotation (LLFF columns: down, right, back)
    rot_ours, rot_ref = ours[:, :15].reshape(-1, 3, 5)[:, :, :3], ref[idx, :15].reshape(-1, 3, 5)[:, :, :3]
    cos = [(np.trace(R @ a @ b.T) - 1) / 2 for a, b in zip(rot_ours, rot_ref)]
    assert np.degrees(np.arccos(np.clip(min(cos), -1, 1))) < 3.0
    # intrinsics scaled back to the photos: hwf for 720x1280, focal within 10% of the capture's
    assert tuple(ours[0, [4, 9]]) == (1280, 720)
    assert ours[0, 14] == pytest.approx(1117.47, rel=0.1)
    assert np.all(ours[:, 15] > 0) and np.all(ours[:, 16] > ours[:, 15])


def test_written_model_is_consistent_at_full_resolution(beer_subset):
    """Cameras and keypoints were scaled back together: points reproject onto their keypoints."""
    scene, _ = beer_subset
    cameras, images, points = read_model(str(scene / "sparse" / "0"))
    assert sorted(im.name for im in images.values()) == SUBSET and len(cameras) == 1
    cam = cameras[1]
    assert (cam.width, cam.height) == (720, 1280)
    fx, fy, cx, cy = camera_intrinsics(cam)
    errs = []
    for im in images.values():
        seen = im.point3D_ids >= 0
        xyz = np.stack([points[i].xyz for i in im.point3D_ids[seen]])
        cam_xyz = xyz @ qvec_to_rotmat(im.qvec).T + im.tvec
        uv = np.c_[fx * cam_xyz[:, 0] / cam_xyz[:, 2] + cx, fy * cam_xyz[:, 1] / cam_xyz[:, 2] + cy]
        errs.append(np.median(np.linalg.norm(uv - im.xys[seen], axis=1)))
    assert max(errs) < 3.0, errs  # full-resolution pixels (radial distortion ignored)
    # and the scene loads for training, from the npy and from the model alone
    ds = LLFFDataset(str(scene), split="train", img_wh=(36, 64), spheric_poses=True, holdout=4)
    assert len(ds.poses) == 6


def test_transforms_json_gives_the_rays_of_sparse0(beer_subset, tmp_path):
    """The transforms.json written beside sparse/0 (nerfstudio's format) read back by the nerfstudio
    reader: the same images, intrinsics, distortion and rays as the LLFF reader gets from sparse/0."""
    scene, _ = beer_subset
    meta = json.loads((scene / "transforms.json").read_text())
    cameras, images, _ = read_model(str(scene / "sparse" / "0"))
    f, cx, cy, k = cameras[1].params
    assert meta["camera_model"] == "OPENCV" and (meta["w"], meta["h"]) == (720, 1280)  # SIMPLE_RADIAL's k as k1
    assert (meta["fl_x"], meta["fl_y"], meta["cx"], meta["cy"], meta["k1"], meta["k2"], meta["p1"], meta["p2"]) == \
        (f, f, cx, cy, k, 0, 0, 0)
    assert [fr["file_path"] for fr in meta["frames"]] == [f"images/{n}" for n in SUBSET]
    assert meta["ply_file_path"] == "sparse_pc.ply" and (scene / "sparse_pc.ply").is_file()

    colmap_only = tmp_path / "colmap_only"  # sparse/0 without poses_bounds.npy: the LLFF reader reads the model
    shutil.copytree(scene / "images", colmap_only / "images")
    shutil.copytree(scene / "sparse", colmap_only / "sparse")
    for unbounded in (True, False):
        kw = dict(split="train", img_wh=(36, 64), holdout=0, unbounded=unbounded, spheric_poses=True)
        ref, ours = LLFFDataset(str(colmap_only), **kw), NerfstudioDataset(str(scene), **kw)
        assert ours.image_names == ref.image_names == [f"images/{n}" for n in SUBSET]
        np.testing.assert_allclose(ours.Ks, ref.Ks, rtol=1e-6)
        assert all(d.model == "opencv" and d.params.tolist() == [k, 0, 0, 0, 0, 0, 0, 0] for d in ours.distortion)
        for i in range(len(SUBSET)):
            a, b = ref.rays(i), ours.rays(i)
            if unbounded:  # the same normalization (the ball around the cameras): the same rays
                assert torch.allclose(a.origins, b.origins, atol=1e-4)
                assert torch.allclose(a.directions, b.directions, atol=1e-5)
            else:  # scaled by different depth bounds: the same rays in COLMAP's world
                back, json_to_colmap = [], np.linalg.inv(np.vstack([meta["applied_transform"], [0, 0, 0, 1]]))
                for ds, r, to_colmap in ((ref, a, np.eye(4)), (ours, b, json_to_colmap)):
                    m = to_colmap @ np.linalg.inv(ds.world_to_scene)
                    d = r.directions.numpy() @ m[:3, :3].T
                    back.append((r.origins.numpy() @ m[:3, :3].T + m[:3, 3], d / np.linalg.norm(d, axis=1, keepdims=True)))
                np.testing.assert_allclose(back[0][0], back[1][0], atol=1e-4)
                np.testing.assert_allclose(back[0][1], back[1][1], atol=1e-5)
        if not unbounded:  # depth bounds from the points in each view vs from the points each image observes
            ratio = ours.near / ref.near * np.cbrt(np.linalg.det(ref.world_to_scene[:3, :3]) /
                                                   np.linalg.det(ours.world_to_scene[:3, :3]))
            assert 0.5 < ratio < 1.5, ratio


def bad_run(scene, *args, fresh=True):
    proc = run_script("imgs2poses.py", scene, *args, check=False, timeout=600)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-2000:]
    if fresh:  # nothing written
        assert not (scene / "sparse").exists() and not (scene / "poses_bounds.npy").exists()
        assert not (scene / "transforms.json").exists()
    assert not [p for p in os.listdir(scene) if p.startswith(".imgs2poses")]
    return lines[0]


def test_bad_inputs(tmp_path, beer_dir):
    empty = tmp_path / "empty"
    os.makedirs(empty / "images")
    assert "no images" in bad_run(empty)

    mixed = tmp_path / "mixed"
    os.makedirs(mixed / "images")
    for name, size in (("a.png", (16, 12)), ("b.png", (16, 12)), ("c.png", (12, 16))):
        cv2.imwrite(str(mixed / "images" / name), np.zeros((size[1], size[0], 3), np.uint8))
    line = bad_run(mixed)
    assert "differ in size" in line and "16x12" in line and "12x16" in line


def test_existing_outputs_need_overwrite(beer_subset):
    scene, _ = beer_subset
    before = (scene / "poses_bounds.npy").read_bytes()
    proc = run_script("imgs2poses.py", scene, check=False)
    assert proc.returncode != 0 and "--overwrite" in proc.stderr and "Traceback" not in proc.stderr
    assert (scene / "poses_bounds.npy").read_bytes() == before


def test_unregistered_images_are_named(beer_dir, tmp_path):
    """Five overlapping photos and one of noise: the noise cannot register; it is named and skipped
    (sparse/0 only, which the loader reads). With three of noise, too few register: nothing is written."""
    scene = tmp_path / "scene"
    os.makedirs(scene / "images")
    for name in SUBSET[:5]:
        shutil.copy(beer_dir / "images" / name, scene / "images" / name)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(scene / "images" / "zz_noise.jpg"), rng.integers(0, 255, (1280, 720, 3), dtype=np.uint8))
    (scene / "poses_bounds.npy").write_bytes(b"stale")  # from an earlier run: must not shadow the new model
    proc = run_script("imgs2poses.py", scene, "--downscale", 2, "--overwrite")
    assert "did not register and will be skipped: zz_noise.jpg" in proc.stdout
    assert not (scene / "poses_bounds.npy").exists()
    assert [fr["file_path"] for fr in json.loads((scene / "transforms.json").read_text())["frames"]] == \
        [f"images/{n}" for n in SUBSET[:5]]  # the registered photos only
    ds = LLFFDataset(str(scene), split="train", img_wh=(36, 64), spheric_poses=True, holdout=0)
    assert ds.image_names == [f"images/{n}" for n in SUBSET[:5]]

    model = (scene / "sparse" / "0" / "images.bin").read_bytes()
    for k in (1, 2):
        cv2.imwrite(str(scene / "images" / f"zz_noise{k}.jpg"), rng.integers(0, 255, (1280, 720, 3), dtype=np.uint8))
    line = bad_run(scene, "--downscale", 2, "--overwrite", fresh=False)
    assert "only 5 of 8 images registered" in line and "zz_noise1.jpg" in line
    assert (scene / "sparse" / "0" / "images.bin").read_bytes() == model  # untouched
    assert len(json.loads((scene / "transforms.json").read_text())["frames"]) == 5


def orbit_poses_bounds(n=60, degrees_per_frame=6.0):
    """LLFF rows ``(n, 17)`` of cameras walking a circle around the origin, looking at it."""
    from datasets.demo_scene import look_at_pose

    rows = []
    for k in range(n):
        c2w = look_at_pose(np.radians(k * degrees_per_frame), 0.3, 4.0)[:3]  # OpenGL: x right, y up, z back
        llff = np.stack([-c2w[:, 1], c2w[:, 0], c2w[:, 2], c2w[:, 3]], 1)  # columns down, right, back, centre
        rows.append(np.concatenate([np.concatenate([llff, [[100], [100], [80]]], 1).ravel(), [1.0, 10.0]]))
    return np.array(rows)


def test_pose_jumps_find_a_folded_reconstruction():
    """Ordered frames turn a few degrees each; one registered against a look-alike view (the fold seen on
    a clip of beer's tiled floor: 104-160 degree jumps) is named, a smooth walk is not."""
    from process_data.colmap_sfm import jump_warning, pose_jumps

    walk = orbit_poses_bounds()
    assert pose_jumps(walk) == [] and jump_warning(walk, [f"f{k}" for k in range(60)]) is None
    folded = walk.copy()
    folded[30:] = orbit_poses_bounds(90)[60:]  # from frame 30 on, the walk continues from 180 degrees further
    jumps = pose_jumps(folded)
    assert [i for i, _ in jumps] == [29] and jumps[0][1] > 120, jumps  # 145 degrees at this elevation
    names = [f"frame_{k + 1:05d}.jpg" for k in range(60)]
    assert f"frame_00030.jpg -> frame_00031.jpg ({jumps[0][1]:.0f} degrees)" in jump_warning(folded, names)


def test_beer_poses_have_no_jump(beer_dir):
    """The capture's own COLMAP poses (71 photos in shooting order, ~8 degrees apart) raise no warning."""
    from process_data.colmap_sfm import pose_jumps

    assert pose_jumps(np.load(beer_dir / "poses_bounds.npy")) == []

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
from process_data.pose_compare import compare_poses, llff_rotation_errors, umeyama

pytest.importorskip("pycolmap")

SUBSET = [f"{i:04d}.jpg" for i in range(20, 28)]


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(10, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    s, R, t = umeyama(src, 2.5 * src @ q.T + [1, 2, 3])
    assert s == pytest.approx(2.5) and np.allclose(R, q) and np.allclose(t, [1, 2, 3])


def test_compare_poses_measures_errors_after_the_similarity():
    """A copy of poses moved by a similarity scores 0; one camera displaced by 10% of the orbit's
    radius and turned 5 degrees shows in the means (and the medians stay near 0)."""
    def rot(v):
        return cv2.Rodrigues(np.asarray(v, dtype=np.float64))[0]

    rng = np.random.default_rng(0)
    ref = {}
    for k in range(12):
        c = np.array([np.cos(k / 2), np.sin(k / 2), 0.3]) * 2.0
        ref[f"{k:02d}"] = (rot(rng.normal(size=3)), c)
    q = rot([0.3, -0.2, 1.0])
    moved = {n: (R @ q.T, 0.5 * q @ c + [1, 2, 3]) for n, (R, c) in ref.items()}  # world x -> 0.5 q x + t
    same = compare_poses(moved, ref)
    assert same["n"] == 12 and same["centre_mean"] < 1e-6 and same["rotation_mean"] < 1e-4
    turned = dict(moved, **{"05": (rot([0, 0, np.radians(5)]) @ moved["05"][0], moved["05"][1])})
    off = compare_poses(turned, ref)  # a rotation alone leaves the fit of the centres as it was
    # ... and pulls the orientations' fit by 5/12 degrees: 11 cameras off by that, the turned one by the rest
    assert off["rotation_mean"] == pytest.approx((11 * 5 / 12 + 55 / 12) / 12, rel=1e-2)
    assert off["rotation_median"] == pytest.approx(5 / 12, rel=1e-2) and off["centre_mean"] < 1e-6
    line = {n: (R, np.array([k * 0.3, 0.0, 0.0])) for k, (n, (R, _)) in enumerate(ref.items())}
    on_line = compare_poses({n: (R @ q.T, q @ c) for n, (R, c) in line.items()}, line)
    assert on_line["rotation_mean"] < 1e-4  # centres on a line leave a similarity loose about it, not this
    shifted = dict(moved, **{"05": (moved["05"][0], moved["05"][1] + [0.1, 0, 0])})  # 0.2 units: 10% of the radius
    off = compare_poses(shifted, ref)
    assert 10.0 / 12 < off["centre_mean"] < 2 * 10.0 / 12 and off["centre_median"] < 2.0
    assert compare_poses({"a": ref["00"]}, ref) is None


def test_llff_rotation_errors_ignore_the_world_rotation():
    """LLFF rows of a world turned as a whole score 0 degrees; one camera turned 4 degrees about its
    own axis shows in that camera (the other 7 pulled by about 4/8)."""
    rng = np.random.default_rng(1)
    c2w = np.stack([cv2.Rodrigues(rng.normal(size=3))[0] for _ in range(8)])  # (8, 3, 3)
    q = cv2.Rodrigues(np.array([0.4, 0.1, -0.7]))[0]

    def rows(R):
        return np.concatenate([R, np.ones((len(R), 3, 2))], 2).reshape(len(R), 15)

    assert llff_rotation_errors(rows(q @ c2w), rows(c2w)).max() < 1e-4
    turned = q @ c2w
    turned[3] = turned[3] @ cv2.Rodrigues(np.array([0.0, np.radians(4), 0.0]))[0]
    err = llff_rotation_errors(rows(turned), rows(c2w))
    assert err.argmax() == 3 and 3.0 < err[3] < 4.0 and np.median(err) == pytest.approx(0.5, abs=0.1)


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
    for stage in ("[1/2] extracting", "[2/2] matching all pairs, incremental mapper", "wrote", "transforms.json"):
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
    # orientations agree too, after the rotation that best maps ours onto the capture's (LLFF columns:
    # down, right, back, camera-to-world; the 8 centres lie on a short arc that leaves R loose about it)
    worst = llff_rotation_errors(ours, ref[idx]).max()
    assert worst < 3.0, worst
    # intrinsics scaled back to the photos: hwf for 720x1280, focal near the capture's (8 photos on a
    # short arc leave the focal loose: 815-1070 seen; an unscaled one would be half of it)
    assert tuple(ours[0, [4, 9]]) == (1280, 720)
    assert ours[0, 14] == pytest.approx(1117.47, rel=0.3)
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
    from process_data.colmap_sfm import describe_jumps, pose_jumps

    walk = orbit_poses_bounds()
    assert pose_jumps(walk) == []
    folded = walk.copy()
    folded[30:] = orbit_poses_bounds(90)[60:]  # from frame 30 on, the walk continues from 180 degrees further
    jumps = pose_jumps(folded)
    assert [i for i, _ in jumps] == [29] and jumps[0][1] > 120, jumps  # 145 degrees at this elevation
    names = [f"frame_{k + 1:05d}.jpg" for k in range(60)]
    named = [(names[i], names[i + 1], deg) for i, deg in jumps]
    assert describe_jumps(named) == f"frame_00030.jpg -> frame_00031.jpg ({jumps[0][1]:.0f} degrees)"


def test_beer_poses_have_no_jump(beer_dir):
    """The capture's own COLMAP poses (71 photos in shooting order, ~8 degrees apart) raise no warning."""
    from process_data.colmap_sfm import pose_jumps

    assert pose_jumps(np.load(beer_dir / "poses_bounds.npy")) == []


class FakeModel:
    """Stands in for a pycolmap Reconstruction in the retry tests: the poses of the frames it registered
    (``name -> (R, centre)``, as ``pose_compare.model_poses`` gives them)."""

    def __init__(self, rows, reprojection=0.5):
        llff = rows[:, :15].reshape(-1, 3, 5)  # columns down, right, back, centre
        self.poses = {f"frame_{k + 1:05d}.jpg": (np.stack([m[:, 1], m[:, 0], -m[:, 2]]), m[:, 3])
                      for k, m in enumerate(llff)}
        self.reprojection = reprojection

    def compute_mean_reprojection_error(self):
        return self.reprojection


def fake_sfm(monkeypatch, outcomes):
    """``match_and_map`` returns, strategy after strategy, the models in ``outcomes`` (FakeModel or
    LLFF rows of the registered frames, or None); features are not extracted. Returns the strategies
    asked for."""
    from process_data import colmap_sfm

    asked = []

    def match_and_map(strategy, db, image_dir, out, seed, log):
        model = outcomes[len(asked)]
        asked.append(strategy)
        return FakeModel(model) if isinstance(model, np.ndarray) else model

    monkeypatch.setattr(colmap_sfm, "extract_features", lambda image_dir, names, db, *a: open(db, "w").close())
    monkeypatch.setattr(colmap_sfm, "match_and_map", match_and_map)
    monkeypatch.setattr(colmap_sfm, "model_poses", lambda rec: rec.poses)
    return asked


def folded_walk(n=60):
    walk = orbit_poses_bounds(n)
    walk[n // 2:] = orbit_poses_bounds(n + 30)[n:]  # the second half continues 180 degrees further on
    return walk


def smoothly_folded_walk(n=60):
    """The right turn from frame to frame, but the centres on a wrong path (an ellipse 3 times as long
    as it is wide, not the circle): no jump, and far from the real poses."""
    walk = orbit_poses_bounds(n)
    walk[:, 3::5][:, 0] *= 3.0  # the centres' first coordinate
    return walk


def test_folds_are_dropped_and_the_model_nearest_the_others_kept(monkeypatch, tmp_path):
    """Ordered frames: a model that folds is dropped; when the first two agree the first is kept, else every
    strategy runs and of the complete continuous models the one nearest the others is kept, so a smooth
    fold loses to the models that agree. A partial continuous model votes; with the voters split, the
    earlier strategy in the plan wins. Photos in no known order get one strategy, whatever it gives."""
    from process_data.colmap_sfm import ORDERED, OTHER_STRATEGIES, pose_with_retries

    names = [f"frame_{k + 1:05d}.jpg" for k in range(60)]
    lines = []
    good, other_good = orbit_poses_bounds(), orbit_poses_bounds()
    other_good[:, 3::5] *= 1.5  # the same poses at another scale: SfM's scale is free
    partial = orbit_poses_bounds(40)  # the first 40 of the 60 frames: too few to keep, enough to vote

    def run(outcomes, folder, ordered=True):
        asked = fake_sfm(monkeypatch, outcomes)
        os.makedirs(tmp_path / folder)
        out = pose_with_retries("imgs", names, str(tmp_path / folder), "sequential" if ordered else "exhaustive",
                                ordered, "SIMPLE_RADIAL", True, 640, 0, lines.append)
        return asked, *out

    asked, rec, chosen, tried = run([folded_walk(), good, other_good, FakeModel(smoothly_folded_walk()), None], "a")
    assert asked == [ORDERED, *OTHER_STRATEGIES] and chosen == OTHER_STRATEGIES[0] and len(rec.poses) == 60
    assert [t["strategy"] for t in tried] == [ORDERED.name] + [s.name for s in OTHER_STRATEGIES]
    assert tried[0]["jumps"][0][:2] == ("frame_00030.jpg", "frame_00031.jpg") and "distance" not in tried[0]
    assert tried[1]["jumps"] == [] and tried[1]["distance"] < tried[3]["distance"]
    assert any("path folds at frame_00030.jpg -> frame_00031.jpg" in ln for ln in lines)
    assert lines[-1].startswith(f"      poses by {OTHER_STRATEGIES[0].name}: of 3 complete continuous models, the")
    assert lines[-1].endswith("; 1 folded")

    asked, _, chosen, tried = run([good, other_good], "g")  # the first two agree: the others are not run
    assert asked == [ORDERED, OTHER_STRATEGIES[0]] and chosen == ORDERED and tried[0]["distance"] < 1e-6
    assert lines[-1] == f"      poses by {ORDERED.name} ({OTHER_STRATEGIES[0].name} agrees within 0.0% of the orbit)"

    _, _, chosen, tried = run([FakeModel(smoothly_folded_walk(), 0.1), good, other_good, None, None], "s")
    assert chosen == OTHER_STRATEGIES[0] and tried[0]["jumps"] == []  # a smooth fold, alone against two

    smooth = FakeModel(smoothly_folded_walk())
    _, _, chosen, tried = run([smooth, good, partial, None, None], "w")
    assert chosen == OTHER_STRATEGIES[0] and "distance" not in tried[2]  # the partial model votes for `good`
    _, _, chosen, _ = run([smooth, good, None, None, None], "d")
    assert chosen == ORDERED  # two that disagree and no one else: the plan's first

    asked, _, chosen, tried = run([folded_walk()], "u", ordered=False)  # a fold cannot be seen: one strategy
    assert len(asked) == 1 and chosen.matcher == "exhaustive" and tried[0]["jumps"] == []


def test_every_strategy_folding_stops_with_one_line_and_writes_nothing(monkeypatch, tmp_path):
    """When each strategy folds, imgs2poses stops with FoldedError naming the frames and what to do,
    and the scene holds nothing new; when none registers enough frames, the frames are named too."""
    from process_data.colmap_sfm import FoldedError, UnregisteredError, imgs2poses, plan_strategies

    scene = tmp_path / "scene"
    os.makedirs(scene / "images")
    for k in range(60):
        cv2.imwrite(str(scene / "images" / f"frame_{k + 1:05d}.jpg"), np.full((16, 24, 3), 4 * k, np.uint8))
    n_plan = len(plan_strategies("sequential", True))
    assert n_plan >= 3
    fake_sfm(monkeypatch, [folded_walk()] * n_plan)
    with pytest.raises(FoldedError) as err:
        imgs2poses(str(scene), matcher="sequential", log=lambda *_: None)
    message = str(err.value)
    assert "\n" not in message and f"folds with every strategy tried ({n_plan}" in message
    assert "frame_00030.jpg -> frame_00031.jpg" in message and "Nothing was written" in message
    assert "Film more slowly" in message and "drop the frames around the jumps (frame_00030.jpg" in message
    assert sorted(os.listdir(scene)) == ["images"]  # no sparse/, no work folder left
    fake_sfm(monkeypatch, [orbit_poses_bounds(20), None] + [orbit_poses_bounds(30)] * (n_plan - 2))
    with pytest.raises(UnregisteredError) as err:
        imgs2poses(str(scene), matcher="sequential", log=lambda *_: None)
    assert "only 30 of 60 images registered; not registered: frame_00031.jpg" in str(err.value)
    assert sorted(os.listdir(scene)) == ["images"]


def test_beer_half_walk_folds_and_is_mended(beer_dir, tmp_path, monkeypatch):
    """A real fold, made here: 24 frames of beer's first 41 photos (the half walk of RESULTS §14, 360x640),
    with COLMAP's incremental mapper over 10 neighbours as the first strategy, folds by 110-150 degrees
    near frames 13-15 (the walk drops from a high view of the wall to a low one). imgs2poses sees it,
    retries, and keeps a continuous path within 20% of the orbit of the capture's own poses."""
    import pycolmap

    from process_data import colmap_sfm
    from process_data.pose_compare import model_poses

    folding, plan = colmap_sfm.Strategy("sequential", 10, "incremental"), colmap_sfm.plan_strategies
    monkeypatch.setattr(colmap_sfm, "plan_strategies", lambda matcher, ordered: (folding,) + plan(matcher, ordered))
    picked = [f"{i:04d}.jpg" for i in np.round(np.linspace(0, 40, 24)).astype(int)]
    os.makedirs(tmp_path / "images")
    for k, name in enumerate(picked):
        img = cv2.resize(cv2.imread(str(beer_dir / "images" / name)), (360, 640), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(tmp_path / "images" / f"frame_{k + 1:05d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    lines = []
    colmap_sfm.imgs2poses(str(tmp_path), matcher="sequential", log=lines.append)
    log = json.loads((tmp_path / "sfm.json").read_text())
    assert log["tried"][0]["strategy"] == folding.name and log["tried"][0]["jumps"], log  # the fold is seen
    kept = [t for t in log["tried"] if t["strategy"] == log["strategy"]]
    assert log["strategy"] != folding.name and kept[0]["jumps"] == []  # and mended
    ours = model_poses(pycolmap.Reconstruction(str(tmp_path / "sparse" / "0")))
    ref = model_poses(pycolmap.Reconstruction(str(beer_dir / "sparse" / "0")))
    err = compare_poses({picked[int(n[6:11]) - 1]: p for n, p in ours.items()}, ref)
    # a fold is 90-98% of the orbit off and turns cameras by over 100 degrees. The model kept is mended
    # but not always straight: 0.8-6% in one session's 9 runs, 4.2-10.6% and 3-8+ degrees in another's 8
    # (the mappers vary from run to run, and two models that bend alike can outvote a straight one:
    # the loop-closure check that would rule a bend out is still to come, issue 31)
    assert err["n"] == 24 and err["centre_mean"] < 20.0 and err["rotation_median"] < 15.0, err

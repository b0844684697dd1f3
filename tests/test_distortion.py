"""Lens distortion at the ray level (datasets/distortion.py, the ray generator, the readers).

Independent references: OpenCV's ``cv2.undistortPoints`` / ``cv2.fisheye.undistortPoints`` (run to
convergence) for the inverted lens models, mapped back to pixels with K; the demo scene's ray caster
for the rays of a held-out view shot through a lens.
"""
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from conftest import ROOT, TINY, run_script
from datasets.base import CameraPath
from datasets.blender import BlenderDataset
from datasets.colmap import Camera, camera_intrinsics
from datasets.demo_scene import _shade, render, write_scene
from datasets.distortion import distort, distort_angle, from_colmap, make_distortion, undistort
from datasets.llff import LLFFDataset
from datasets.ray_utils import get_ray_directions, get_rays
from utils.errors import UserError

W, H = 640, 480
FX, FY, CX, CY = 500.0, 510.0, 322.0, 238.0
K = np.array([[FX, 0, CX], [0, FY, CY], [0, 0, 1]])
CONVERGED = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 500, 1e-15)
STRONG = [-0.3, 0.1, 1e-3, 1e-3]  # k1 k2 p1 p2: about 40 px of barrel at the corners of 640x480
LENS = make_distortion("opencv", [-0.3, 0.1, 1e-3, 1e-3])


def pixel_grid():
    """``(N, 2)`` pixels over the whole image, the four corners (and the corner pixels' centres) included."""
    u, v = np.meshgrid(np.linspace(0, W, 33), np.linspace(0, H, 25))
    corners = [[0.5, 0.5], [W - 0.5, 0.5], [0.5, H - 0.5], [W - 0.5, H - 0.5]]
    return np.concatenate([np.stack([u.ravel(), v.ravel()], -1), corners])


def to_pixels(dirs):
    """OpenCV-frame directions ``(N, 3)`` -> pinhole pixels through K."""
    return np.stack([dirs[:, 0] / dirs[:, 2] * FX + CX, dirs[:, 1] / dirs[:, 2] * FY + CY], -1)


@pytest.mark.parametrize("coeffs", [STRONG, [0.25, -0.08, -2e-3, 1.5e-3, 0.02], [-0.28, 0.09, 1e-3, -1e-3, 0.01, 0.05, 0.01, 0.002],
                                    [-0.05]])
def test_opencv_undistortion_matches_cv2(coeffs):
    uv = pixel_grid()
    lens = make_distortion("opencv", coeffs)
    ours = to_pixels(undistort((uv[:, 0] - CX) / FX, (uv[:, 1] - CY) / FY, lens))
    ref = cv2.undistortPoints(uv[:, None], K, lens.params, P=K, criteria=CONVERGED)[:, 0]
    assert np.abs(ours - ref).max() < 0.01
    assert np.abs(ours - uv).max() > 5 or coeffs == [-0.05]  # the lens moves the corners a lot
    # and the forward model takes the undistorted points back where they were seen
    und = undistort((uv[:, 0] - CX) / FX, (uv[:, 1] - CY) / FY, lens)
    xd, yd = distort(und[:, 0], und[:, 1], lens)
    np.testing.assert_allclose(np.stack([xd * FX + CX, yd * FY + CY], -1), uv, atol=1e-6)


def test_fisheye_undistortion_matches_cv2_and_sees_past_90_degrees():
    lens = make_distortion("fisheye", [0.05, -0.01, 0.002, -0.0005])
    uv = pixel_grid()
    dirs = undistort((uv[:, 0] - CX) / FX, (uv[:, 1] - CY) / FY, lens)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=-1), 1, atol=1e-12)  # unit directions
    ref = cv2.fisheye.undistortPoints(uv[:, None], K, lens.params, P=K, criteria=CONVERGED)[:, 0]
    assert np.abs(to_pixels(dirs) - ref).max() < 0.01
    # a 220-degree lens: pixels far off the axis look beside and behind the camera
    wide = make_distortion("fisheye", [0.0, 0.0, 0.0, 0.0])
    theta = np.linspace(0, np.radians(110), 50)
    phi = np.linspace(-np.pi, np.pi, 50)
    xd, yd = distort_angle(theta, phi, wide)
    d = undistort(xd, yd, wide)
    np.testing.assert_allclose(np.arccos(d[:, 2]), theta, atol=1e-9)
    np.testing.assert_allclose(np.arctan2(d[1:, 1], d[1:, 0]), np.arctan2(np.sin(phi[1:]), np.cos(phi[1:])), atol=1e-9)
    assert (d[theta > np.pi / 2, 2] < 0).all()
    # as a strong polynomial lens the same
    strong = make_distortion("fisheye", [-0.02, 0.003, -0.0004, 0.00002])
    d = undistort(*distort_angle(theta, phi, strong), strong)
    np.testing.assert_allclose(np.arccos(np.clip(d[:, 2], -1, 1)), theta, atol=1e-8)


def test_ray_directions_through_a_lens():
    """Our axes (y up, looking along -z); pinhole and OpenCV keep z = -1, fisheye gives unit vectors."""
    Kt = torch.tensor(K, dtype=torch.float32)
    pinhole = get_ray_directions(H, W, Kt)
    assert torch.equal(pinhole, get_ray_directions(H, W, Kt, None))
    d = get_ray_directions(H, W, Kt, LENS)  # (H, W, 3)
    assert d.shape == (H, W, 3) and d.dtype == torch.float32 and (d[..., 2] == -1).all()
    uv = np.array([[0.5, 0.5], [W - 0.5, H - 0.5], [100.5, 400.5]])
    ref = cv2.undistortPoints(uv[:, None], K, np.array(STRONG), P=K, criteria=CONVERGED)[:, 0]
    for (u, v), (ru, rv) in zip(uv, ref):
        x, y, _ = d[int(v), int(u)].double().numpy()
        assert abs(x * FX + CX - ru) < 0.01 and abs(-y * FY + CY - rv) < 0.01
    # barrel: the corner pixel's ray points further out than the pinhole's
    assert d[0, 0, 0] < pinhole[0, 0, 0] and d[0, 0, 1] > pinhole[0, 0, 1]
    fish = get_ray_directions(H, W, Kt, make_distortion("fisheye", [0, 0, 0, 0]))
    torch.testing.assert_close(fish.norm(dim=-1), torch.ones(H, W))
    assert fish[H // 2, W // 2, 2] < -0.99


@pytest.mark.parametrize("model, params, intr, lens", [
    ("SIMPLE_PINHOLE", [500, 320, 240], (500, 500, 320, 240), None),
    ("PINHOLE", [500, 510, 320, 240], (500, 510, 320, 240), None),
    ("SIMPLE_RADIAL", [500, 320, 240, 0.1], (500, 500, 320, 240), ("opencv", [0.1, 0, 0, 0, 0, 0, 0, 0])),
    ("SIMPLE_RADIAL", [500, 320, 240, 0.0], (500, 500, 320, 240), None),
    ("RADIAL", [500, 320, 240, 0.1, 0.01], (500, 500, 320, 240), ("opencv", [0.1, 0.01, 0, 0, 0, 0, 0, 0])),
    ("OPENCV", [500, 510, 320, 240, 0.1, 0.01, 0.001, 0.002], (500, 510, 320, 240),
     ("opencv", [0.1, 0.01, 0.001, 0.002, 0, 0, 0, 0])),
    ("FULL_OPENCV", [500, 510, 320, 240, *range(1, 9)], (500, 510, 320, 240), ("opencv", list(range(1, 9)))),
    ("OPENCV_FISHEYE", [500, 510, 320, 240, 0.1, 0.2, 0.3, 0.4], (500, 510, 320, 240), ("fisheye", [0.1, 0.2, 0.3, 0.4])),
])
def test_from_colmap(model, params, intr, lens):
    cam = Camera(1, model, 640, 480, np.array(params, float))
    got_intr, got_lens = from_colmap(cam)
    assert got_intr == intr and camera_intrinsics(cam) == intr
    if lens is None:
        assert got_lens is None
    else:
        assert got_lens.model == lens[0] and got_lens.params.dtype == np.float64
        np.testing.assert_array_equal(got_lens.params, lens[1])


def test_unsupported_colmap_models_are_refused():
    with pytest.raises(UserError, match="FOV is not supported.*image_undistorter"):
        from_colmap(Camera(1, "FOV", 640, 480, np.array([500, 510, 320, 240, 0.1])))
    with pytest.raises(UserError, match="OPENCV has 5 parameters: expected 8"):
        from_colmap(Camera(1, "OPENCV", 640, 480, np.arange(5.0)))


# ---------------------------------------------------------------- readers and BaseDataset


@pytest.fixture(scope="module")
def lens_scene(tmp_path_factory):
    """The demo scene at 32x32 shot through the strong lens (train 6, val 2, test 2 views)."""
    return write_scene(str(tmp_path_factory.mktemp("lens_scene")), size=32, n_train=6, n_val=2, n_test=2,
                       distortion=LENS)


def test_blender_reader_reads_the_lens_and_held_out_rays_are_the_distorted_ones(lens_scene):
    val = BlenderDataset(lens_scene, split="val", img_wh=(32, 32))
    assert val.distortion.model == "opencv"
    np.testing.assert_array_equal(val.distortion.params, LENS.params)
    assert val.directions.shape == (32 * 32, 3) and val.camera_of is None  # one table for all images
    torch.testing.assert_close(val.directions, get_ray_directions(32, 32, val.K, LENS).view(-1, 3))
    # the rays eval.py renders for a held-out view see what the photo shows, pixel for pixel
    c2w = np.eye(4)
    c2w[:3] = val.poses[0].double().numpy()
    shot = render(c2w, 32, supersample=1, distortion=LENS).reshape(-1, 4) / 255.0  # one ray per pixel centre
    shot = shot[:, :3] * shot[:, 3:]

    def photo(rays):  # what the demo scene shows along these rays (premultiplied colour)
        rgb, alpha = _shade(rays.origins.double().numpy(), rays.directions.double().numpy())
        return rgb * alpha[:, None]

    modelled = np.abs(photo(val[0]["rays"]) - shot).mean()
    ignored = np.abs(photo(CameraPath(val.K, (32, 32), val.poses, 2, 6).rays(0)) - shot).mean()  # pinhole rays
    assert modelled < 1e-3 and ignored > 10 * modelled, (modelled, ignored)
    # render paths are pinhole, and so is every camera handed on from a dataset
    path = BlenderDataset(lens_scene, split="path", img_wh=(32, 32))
    assert path.distortion is None and (path.directions[:, 2] == -1).all()
    rebuilt = CameraPath.from_state(val.camera_state())
    assert rebuilt.distortion is None and "distortion" not in val.camera_state()
    torch.testing.assert_close(rebuilt.directions, get_ray_directions(32, 32, val.K).view(-1, 3))


def test_blender_json_lens_keys(lens_scene, tmp_path):
    scene = tmp_path / "s"
    shutil.copytree(lens_scene, scene)
    meta_path = scene / "transforms_val.json"
    meta = json.loads(meta_path.read_text())
    meta.update(camera_model="OPENCV_FISHEYE", k1=0.01, k2=0.0, k3=0.0, k4=0.0)
    meta_path.write_text(json.dumps(meta))
    fish = BlenderDataset(str(scene), split="val", img_wh=(32, 32))
    assert fish.distortion.model == "fisheye" and fish.distortion.params[0] == 0.01
    meta_path.write_text(json.dumps({**meta, "camera_model": "FOV"}))
    with pytest.raises(UserError, match="transforms_val.json: camera_model 'FOV' is not supported"):
        BlenderDataset(str(scene), split="val", img_wh=(32, 32))
    del meta["camera_model"], meta["k3"], meta["k4"]
    meta_path.write_text(json.dumps({**meta, "is_fisheye": True}))  # instant-ngp's way of saying it
    assert BlenderDataset(str(scene), split="val", img_wh=(32, 32)).distortion.model == "fisheye"
    meta_path.write_text(json.dumps({**meta, "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}))
    assert BlenderDataset(str(scene), split="val", img_wh=(32, 32)).distortion is None


def test_frustum_Ks_hold_every_ray(lens_scene):
    val = BlenderDataset(lens_scene, split="val", img_wh=(32, 32))
    Ks = val.frustum_Ks()
    assert Ks.shape == (2, 3, 3)
    d = val.directions.double()
    u = Ks[0, 0, 0] * d[:, 0] / -d[:, 2] + Ks[0, 0, 2]
    v = -Ks[0, 1, 1] * d[:, 1] / -d[:, 2] + Ks[0, 1, 2]
    assert u.min() >= 0.5 - 1e-4 and u.max() <= 31.5 + 1e-4 and v.min() >= 0.5 - 1e-4 and v.max() <= 31.5 + 1e-4
    assert Ks[0, 0, 0] < val.K[0, 0]  # barrel: the photo sees wider than its pinhole


def beer_with_camera(beer_dir, scene, line, keep_poses_bounds=False):
    """A copy of beer (images linked) whose sparse/0 holds the camera ``line`` of cameras.txt."""
    pycolmap = pytest.importorskip("pycolmap")
    os.makedirs(scene / "sparse" / "0")
    os.symlink(beer_dir / "images", scene / "images")
    pycolmap.Reconstruction(str(beer_dir / "sparse" / "0")).write_text(str(scene / "sparse" / "0"))
    cams = scene / "sparse" / "0" / "cameras.txt"
    cams.write_text("".join(x for x in cams.read_text().splitlines(True) if x.startswith("#")) + line + "\n")
    if keep_poses_bounds:
        shutil.copy(beer_dir / "poses_bounds.npy", scene / "poses_bounds.npy")
    return scene


@pytest.mark.parametrize("line, model", [
    ("1 OPENCV 720 1280 1117.47 1117.47 361 641 -0.2 0.05 0.001 -0.001", "opencv"),
    ("1 OPENCV_FISHEYE 720 1280 1117.47 1117.47 360 640 0.1 -0.02 0.003 0.0", "fisheye"),
])
def test_colmap_capture_keeps_the_lens(beer_dir, tmp_path, line, model):
    scene = beer_with_camera(beer_dir, tmp_path, line)
    val = LLFFDataset(str(scene), split="val", img_wh=(36, 64), spheric_poses=True)
    params = [float(x) for x in line.split()[8:]]
    assert all(lens.model == model for lens in val.distortion) and len(val.distortion) == len(val.poses)
    np.testing.assert_allclose(val.distortion[0].params[:len(params)], params)
    assert val.directions.shape == (36 * 64, 3)  # one camera: one direction table for every image
    torch.testing.assert_close(val.directions, get_ray_directions(64, 36, val.K, val.distortion[0]).view(-1, 3))
    assert val.K[0, 2] == pytest.approx(361 * 36 / 720) if model == "opencv" else True
    path = LLFFDataset(str(scene), split="path", img_wh=(36, 64), spheric_poses=True)
    assert path.distortion is None


def test_beer_keypoints_lie_on_the_rays_through_their_pixels(beer_dir):
    """Real data: beer's SIMPLE_RADIAL lens (k = 0.027). The ray the loader casts through each
    keypoint (the lens inverted) passes closer to the keypoint's 3D point than the pinhole ray does."""
    from datasets.colmap import read_model

    ds = LLFFDataset(str(beer_dir), split="val", img_wh=(72, 128), spheric_poses=True)
    lens = ds.distortion[0]
    assert lens.model == "opencv" and lens.params[0] == pytest.approx(0.0265291, abs=1e-6)
    cameras, images, points = read_model(str(beer_dir / "sparse" / "0"))
    f, cx, cy = cameras[1].params[:3]
    by_name = {im.name: im for im in images.values()}
    errors = {"lens": [], "pinhole": []}
    for k, name in enumerate(ds.image_names):
        im = by_name[os.path.basename(name)]
        # keypoints with a 3D point, in the outer part of the photo (where the lens moves them most)
        seen = (im.point3D_ids >= 0) & (np.hypot(im.xys[:, 0] - cx, im.xys[:, 1] - cy) > 0.4 * f)
        xyz = np.stack([points[i].xyz for i in im.point3D_ids[seen]])
        xyz = (ds.world_to_scene @ np.c_[xyz, np.ones(len(xyz))].T).T[:, :3]
        c2w = ds.poses[k].numpy().astype(np.float64)
        to_point = xyz - c2w[:, 3]
        to_point /= np.linalg.norm(to_point, axis=1, keepdims=True)
        xd, yd = (im.xys[seen, 0] - cx) / f, (im.xys[seen, 1] - cy) / f
        for key, l in (("lens", lens), ("pinhole", None)):
            d = undistort(xd, yd, l) * [1, -1, -1] @ c2w[:, :3].T  # our axes, then world
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            errors[key].append(np.arccos(np.clip((d * to_point).sum(1), -1, 1)) * f)  # ~ pixels at 720x1280
    lens_err, pinhole_err = (np.median(np.concatenate(errors[k])) for k in ("lens", "pinhole"))
    assert lens_err < 1.0 and pinhole_err > 2 * lens_err, (lens_err, pinhole_err)  # measured 0.59 and 2.45 px


def test_poses_bounds_takes_the_lens_of_its_own_model(beer_dir, tmp_path):
    """imgs2poses writes poses_bounds.npy and sparse/0 side by side: the lens comes from sparse/0."""
    scene = beer_with_camera(beer_dir, tmp_path / "same", "1 RADIAL 720 1280 1117.4699908031969 360 640 -0.1 0.02",
                             keep_poses_bounds=True)
    val = LLFFDataset(str(scene), split="val", img_wh=(36, 64), spheric_poses=True)
    np.testing.assert_allclose(val.distortion[0].params[:2], [-0.1, 0.02])
    # a model from another run (another focal length) is not this capture's: pinhole, as the rows say
    other = beer_with_camera(beer_dir, tmp_path / "other", "1 RADIAL 720 1280 900 360 640 -0.1 0.02",
                             keep_poses_bounds=True)
    assert LLFFDataset(str(other), split="val", img_wh=(36, 64), spheric_poses=True).distortion is None


def test_ndc_rays_through_a_lens(tmp_path):
    """Forward-facing scenes: the lens bends the world rays, and the NDC map (a projective map of
    world space, the same for every ray) carries each bent ray onto its NDC ray: points along the
    world ray land on the NDC ray."""
    from test_llff import write_forward_facing

    from datasets.ray_utils import get_ndc_rays

    class LensLLFF(LLFFDataset):
        def read_meta(self, split, **kw):
            super().read_meta(split, **kw)
            if split != "path":
                self.distortion = LENS

    write_forward_facing(tmp_path)
    val = LensLLFF(str(tmp_path), split="val", img_wh=(16, 12), holdout=4)
    assert val.ndc and val.distortion is LENS
    rays = val.rays(1)
    world_o, world_d = get_rays(val.directions, val.poses[1])  # (H*W, 3) before the NDC map
    torch.testing.assert_close((rays.origins, rays.directions),
                               get_ndc_rays(12, 16, float(val.K[0, 0]), 1.0, world_o, world_d))
    focal, o, d = float(val.K[0, 0]), world_o.double(), world_d.double()
    for t in (1.5, 4.0, 30.0):
        p = o + t * d  # a point on the bent world ray, mapped to NDC by hand (NeRF's eq. 25)
        ndc = torch.stack([-2 * focal / 16 * p[:, 0] / p[:, 2], -2 * focal / 12 * p[:, 1] / p[:, 2], 1 + 2 / p[:, 2]], -1)
        s_along = (ndc[:, 2] - rays.origins[:, 2].double()) / rays.directions[:, 2].double()
        on_ray = rays.origins.double() + s_along[:, None] * rays.directions.double()
        torch.testing.assert_close(on_ray, ndc, atol=1e-4, rtol=1e-4)
    assert LensLLFF(str(tmp_path), split="path", img_wh=(16, 12), holdout=4).distortion is None


def test_cameras_are_deduplicated(tmp_path, lens_scene):
    """Per-image lenses: one direction table per distinct (K, lens), each image pointing at its own."""
    class Mixed(BlenderDataset):
        def read_meta(self, split, **kw):
            super().read_meta(split, **kw)
            other = make_distortion("opencv", [0.1])
            self.distortion = [LENS, None, other, LENS, None, other][:len(self.poses)]

    train = Mixed(lens_scene, split="train", img_wh=(32, 32))
    assert train.directions.shape == (3, 32 * 32, 3)
    assert train.camera_of.tolist() == [0, 1, 2, 0, 1, 2]
    for i in (0, 3, 4):
        torch.testing.assert_close(train.rays(i).directions, get_rays(train.directions[[0, 1, 2, 0, 1, 2][i]], train.poses[i])[1])
    batch = train[torch.tensor([4 * 1024 + 7])]["rays"]
    torch.testing.assert_close(batch.directions[0], train.rays(4).directions[7])
    assert train.frustum_Ks().shape == (6, 3, 3)


# ---------------------------------------------------------------- learning, README


def test_distortion_benchmark_plumbing(tmp_path):
    """benchmarks/distortion_quality.py end to end, a few steps: both variants scored on the held-out
    photos, one JSON line appended, and the "ignored" copy's jsons name no lens."""
    from benchmarks.distortion_quality import LENS_KEYS, main

    line = main(["--size", "16", "--n_train", "4", "--n_test", "2", "--steps", "2", "--flags", "TINY --N_importance 0",
                 "--out", str(tmp_path / "r.jsonl"), "--work_dir", str(tmp_path / "work")])
    assert {"modelled_psnr", "ignored_psnr", "modelled_ssim", "ignored_ssim"} <= set(line)
    assert json.loads((tmp_path / "r.jsonl").read_text()) == line
    lensed = json.loads((tmp_path / "work" / "scene_lens" / "transforms_test.json").read_text())
    plain = json.loads((tmp_path / "work" / "scene_ignored" / "transforms_test.json").read_text())
    assert lensed["camera_model"] == "OPENCV" and not set(LENS_KEYS) & set(plain) and plain["fl_x"] == lensed["fl_x"]


FAST_TINY = "--fast --grid_resolution 32 --march_steps 256 --hash_log2_size 14 --hash_levels 8 --hash_max_res 128 --batch_size 1024"


@pytest.mark.skipif(os.environ.get("DISTORTION_LEARNING") != "1",
                    reason="not yet measured to pass (the shared CPU was too loaded to finish it): "
                           "run with DISTORTION_LEARNING=1")
def test_modelling_the_lens_scores_better_than_ignoring_it(tmp_path):
    """A small hash-grid model (the fast path, shrunk) on the 32x32 demo scene shot through a strong
    barrel lens (benchmarks/distortion_quality.py's default): held-out PSNR, same steps, is clearly
    higher with the lens modelled than with the same photos read as pinhole ones."""
    from benchmarks.distortion_quality import main

    line = main(["--size", "32", "--n_train", "30", "--n_test", "4", "--steps", "200", "--flags", FAST_TINY,
                 "--out", str(tmp_path / "r.jsonl"), "--work_dir", str(tmp_path / "work")])
    assert line["modelled_psnr"] > line["ignored_psnr"] + 1.0, line
    assert json.loads((tmp_path / "r.jsonl").read_text())["modelled_psnr"] == line["modelled_psnr"]


def test_docs_lens_commands(tmp_path):
    """docs/captures.md's "Lenses with distortion" commands, as written there (training cut to 2 tiny steps)."""
    from test_docs import doc_section

    section = doc_section("docs/captures.md", "## Lenses with distortion")
    cmds = [c.split()[1:] for c in section.split("```")[1].splitlines() if c.startswith(".venv/bin/python ")]
    scene_cmd, train_cmd = cmds  # python's arguments
    assert scene_cmd[:2] == ["-m", "datasets.demo_scene"] and train_cmd[0] == "train.py"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, *scene_cmd], cwd=tmp_path, env=env, check=True, capture_output=True)
    meta = json.loads((tmp_path / scene_cmd[2] / "transforms_train.json").read_text())
    assert meta["camera_model"] == "OPENCV" and meta["k1"] == float(scene_cmd[scene_cmd.index("--opencv") + 1])
    proc = run_script("train.py", *train_cmd[1:], "--max_steps", 2, *TINY, "--val_num", 1, cwd=tmp_path)
    assert (tmp_path / "ckpts" / "demo_lens" / "last.ckpt").is_file(), proc.stdout[-500:]


def test_sfm_on_downscaled_copies_keeps_the_lens():
    """imgs2poses --downscale: the model is scaled back to the photos; the lens (normalized) stays."""
    from types import SimpleNamespace

    pycolmap = pytest.importorskip("pycolmap")
    from process_data.colmap_sfm import CAMERA_MODELS, rescale_model

    assert "OPENCV_FISHEYE" in CAMERA_MODELS
    params = [100.0, 110.0, 50.0, 40.0, -0.2, 0.05, 0.001, 0.002]
    cam = pycolmap.Camera(model="OPENCV", width=100, height=80, params=params)
    rescale_model(SimpleNamespace(cameras={1: cam}, images={}), (300, 240), (100, 80))
    intr, lens = from_colmap(Camera(1, cam.model.name, cam.width, cam.height, np.array(cam.params)))
    assert intr == (300, 330, 150, 120) and (cam.width, cam.height) == (300, 240)
    np.testing.assert_array_equal(lens.params[:4], params[4:])

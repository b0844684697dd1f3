"""datasets/colmap.py: COLMAP models (binary/text, read by pycolmap) as records, and the model ->
poses_bounds conversion.

The reference for the conversion is the beer capture's own ``poses_bounds.npy``, computed from
the same ``sparse/0`` model (each image's near/far = the 0.1 / 99.9 percentiles of the depths of
its observations). The text files are written by pycolmap.
"""
import shutil

import numpy as np
import pytest

from datasets.colmap import (Camera, camera_intrinsics, model_to_poses_bounds, qvec_to_rotmat, read_model)
from utils.errors import UserError


@pytest.fixture(scope="module")
def beer_model(beer_dir):
    return read_model(str(beer_dir / "sparse" / "0"))


def test_binary_model_contents(beer_model):
    cameras, images, points = beer_model
    assert len(cameras) == 1 and len(images) == 71 and len(points) == 4659  # the data README's figures
    cam = cameras[1]
    assert (cam.model, cam.width, cam.height) == ("SIMPLE_RADIAL", 720, 1280)
    assert cam.params[0] == pytest.approx(1117.47, abs=0.01)
    n_obs = sum(len(p.image_ids) for p in points.values())
    assert n_obs == 24733  # pycolmap's summary: num_observations
    # every observation is mirrored by a keypoint of the image that points back at the point
    some = list(points.values())[:200]
    for p in some:
        for image_id, idx in zip(p.image_ids, p.point2D_idxs):
            assert images[image_id].point3D_ids[idx] == p.id
    assert sum((im.point3D_ids >= 0).sum() for im in images.values()) == n_obs


def test_poses_bounds_from_model_match_the_shipped_file(beer_dir, beer_model):
    ours, names = model_to_poses_bounds(*beer_model)
    ref = np.load(beer_dir / "poses_bounds.npy")
    assert names == sorted(names) and len(names) == 71 and names[0] == "0000.jpg"
    assert ours.shape == ref.shape == (71, 17)
    # rotation, centre and hwf: the same numbers up to float64 round-off
    np.testing.assert_allclose(ours[:, :15], ref[:, :15], rtol=0, atol=1e-9)
    # bounds: the same definition as the shipped file (observations, 0.1 / 99.9 percentiles)
    np.testing.assert_allclose(ours[:, 15:], ref[:, 15:], rtol=1e-9)
    # and the LLFF axis order: the first column is the camera's down axis (COLMAP's +y)
    _, images, _ = beer_model
    first = min(images.values(), key=lambda im: im.name)
    R = qvec_to_rotmat(first.qvec)
    np.testing.assert_allclose(ours[0, :15].reshape(3, 5)[:, 0], R[1], atol=1e-12)


def test_text_model_equals_binary(beer_dir, beer_model, tmp_path):
    pycolmap = pytest.importorskip("pycolmap")
    pycolmap.Reconstruction(str(beer_dir / "sparse" / "0")).write_text(str(tmp_path))
    cameras, images, points = read_model(str(tmp_path))
    bc, bi, bp = beer_model
    assert cameras.keys() == bc.keys() and images.keys() == bi.keys() and points.keys() == bp.keys()
    np.testing.assert_allclose(cameras[1].params, bc[1].params, rtol=1e-12)
    for i in list(bi)[:10]:
        assert images[i].name == bi[i].name and images[i].camera_id == bi[i].camera_id
        np.testing.assert_allclose(images[i].qvec, bi[i].qvec, rtol=1e-12)
        np.testing.assert_allclose(images[i].xys, bi[i].xys, rtol=1e-6)
        np.testing.assert_array_equal(images[i].point3D_ids, bi[i].point3D_ids)
    for k in list(bp)[:100]:
        np.testing.assert_array_equal(points[k].image_ids, bp[k].image_ids)
        np.testing.assert_allclose(points[k].xyz, bp[k].xyz, rtol=1e-12)
    text_pb, _ = model_to_poses_bounds(cameras, images, points)
    np.testing.assert_allclose(text_pb, np.load(beer_dir / "poses_bounds.npy"), rtol=1e-9, atol=1e-9)


def test_model_with_an_unregistered_image(beer_dir, tmp_path):
    """A model where one frame did not register (COLMAP then leaves it out of images.bin)."""
    pycolmap = pytest.importorskip("pycolmap")
    rec = pycolmap.Reconstruction(str(beer_dir / "sparse" / "0"))
    dropped = rec.image(5).name
    rec.deregister_frame(rec.image(5).frame_id)
    rec.write_binary(str(tmp_path))
    poses_bounds, names = model_to_poses_bounds(*read_model(str(tmp_path)))
    assert len(names) == 70 and dropped not in names and poses_bounds.shape == (70, 17)
    ref = np.load(beer_dir / "poses_bounds.npy")
    keep = [i for i in range(71) if f"{i:04d}.jpg" != dropped]
    np.testing.assert_allclose(poses_bounds[:, :15], ref[keep, :15], atol=1e-9)


def test_qvec_to_rotmat():
    half = np.pi / 4  # 90 degrees about z: x -> y
    R = qvec_to_rotmat([np.cos(half), 0, 0, np.sin(half)])
    np.testing.assert_allclose(R @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    q = np.random.default_rng(0).normal(size=4)
    R = qvec_to_rotmat(q)  # normalizes
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)


@pytest.mark.parametrize("model, params, expected", [
    ("SIMPLE_PINHOLE", [500, 320, 240], (500, 500, 320, 240)),
    ("PINHOLE", [500, 510, 320, 240], (500, 510, 320, 240)),
    ("SIMPLE_RADIAL", [500, 320, 240, 0.1], (500, 500, 320, 240)),
    ("RADIAL", [500, 320, 240, 0.1, 0.01], (500, 500, 320, 240)),
    ("OPENCV", [500, 510, 320, 240, 0.1, 0.01, 0.001, 0.002], (500, 510, 320, 240)),
])
def test_camera_intrinsics(model, params, expected):
    assert camera_intrinsics(Camera(1, model, 640, 480, np.array(params, float))) == expected


def test_unsupported_camera_is_refused():
    """OPENCV_FISHEYE is read (tests/test_distortion.py); models without an inverse here are not."""
    assert camera_intrinsics(Camera(1, "OPENCV_FISHEYE", 640, 480, np.arange(1.0, 9.0))) == (1, 2, 3, 4)
    with pytest.raises(UserError, match="undistort"):
        camera_intrinsics(Camera(1, "RADIAL_FISHEYE", 640, 480, np.zeros(5)))


def test_truncated_or_missing_model(beer_dir, tmp_path):
    for name in ("cameras.bin", "images.bin", "points3D.bin"):
        shutil.copy(beer_dir / "sparse" / "0" / name, tmp_path / name)
    data = (tmp_path / "images.bin").read_bytes()
    (tmp_path / "images.bin").write_bytes(data[:len(data) // 2])
    with pytest.raises(UserError, match="truncated"):
        read_model(str(tmp_path))
    with pytest.raises(UserError, match="no COLMAP model"):
        read_model(str(tmp_path / "nothing"))

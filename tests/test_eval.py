"""eval.py, save_weights_only.py and utils/io.py: outputs, metrics, portable scenes, bad input.

Metrics are checked against an independent computation: the saved PNG frames and the scene's
ground-truth images are read with imageio and compared with numpy only.
"""
import json
import os
from pathlib import Path

import imageio.v2 as imageio
import imageio.v3 as iio
import numpy as np
import pytest
import torch

from conftest import run_script
from utils.io import pad_even, read_pfm, write_pfm

# ---------------------------------------------------------------- independent reference code


def area_matrix(n_in, n_out):
    """(n_out, n_in) weights of exact area averaging: output pixel j covers input span
    [j s, (j + 1) s), s = n_in / n_out, and each input pixel counts by its overlap with it."""
    s = n_in / n_out
    edges = np.arange(n_out + 1) * s
    pixels = np.arange(n_in)
    overlap = np.minimum(edges[1:, None], pixels + 1.0) - np.maximum(edges[:-1, None], pixels)
    return np.clip(overlap, 0, None) / s


def ground_truth(scene, split, size):
    """Ground-truth images of a Blender split, in the json's order: RGBA composited on white,
    then area-averaged to ``size`` = (W, H). Returns a list of (H, W, 3) float64 in [0, 1]."""
    meta = json.loads((Path(scene) / f"transforms_{split}.json").read_text())
    images = []
    for frame in meta["frames"]:
        path = Path(scene) / frame["file_path"]
        path = path if path.suffix else path.with_suffix(".png")
        rgba = imageio.imread(path).astype(np.float64) / 255.0
        rgb = rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])
        ay, ax = area_matrix(rgb.shape[0], size[1]), area_matrix(rgb.shape[1], size[0])
        images.append(np.einsum("yi,ijc,xj->yxc", ay, rgb, ax, optimize=True))  # two matrix products
    return images


def frame_psnr(png, gt):
    err = np.mean((imageio.imread(png)[..., :3].astype(np.float64) / 255.0 - gt) ** 2)
    return -10 * np.log10(err)


def pngs(folder):
    return sorted(p.name for p in Path(folder).glob("*.png"))


def eval_script(*args, cwd, check=True):
    return run_script("eval.py", *args, cwd=cwd, check=check)


def check_outputs(out, scene_name, n, wh):
    """The files one eval run writes, and their frame counts and sizes."""
    w, h = wh
    assert pngs(out) == [f"{i:03d}.png" for i in range(n)]
    assert imageio.imread(out / "000.png").shape == (h, w, 3)
    for stem in (scene_name, scene_name + "_depth"):
        gif = iio.imread(out / f"{stem}.gif", index=None)
        assert gif.shape[:3] == (n, h, w)
        reader = imageio.get_reader(out / f"{stem}.mp4")
        assert reader.count_frames() == n
        assert tuple(reader.get_meta_data()["size"]) == (w + w % 2, h + h % 2)  # padded to even
        reader.close()
    depth = sorted((out / "depth").glob("*.pfm"))
    assert [p.name for p in depth] == [f"{i:03d}.pfm" for i in range(n)]
    assert read_pfm(depth[0]).shape == (h, w)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def demo_eval(demo_ckpt, demo_dir):
    """eval.py on the demo checkpoint, default split (test: 8 views), default output folder
    (``results/{dataset_name}/{scene_name}/{split}``)."""
    ckpt, work = demo_ckpt
    eval_script("--ckpt_path", ckpt, cwd=work)
    return work / "results" / "blender" / demo_dir.name / "test"


@pytest.fixture(scope="module")
def weights_file(demo_ckpt, tmp_path_factory):
    ckpt, _ = demo_ckpt
    out = tmp_path_factory.mktemp("weights") / "tiny.pth"
    proc = run_script("save_weights_only.py", "--ckpt_path", ckpt, "--out", out)
    assert "MB" in proc.stdout
    return out


# ---------------------------------------------------------------- outputs and metrics


def test_demo_outputs(demo_eval, demo_dir):
    check_outputs(demo_eval, demo_dir.name, 8, (32, 32))
    metrics = json.loads((demo_eval / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n_views"] == 8 and len(metrics["per_view"]) == 8
    assert metrics["psnr"] == pytest.approx(np.mean([v["psnr"] for v in metrics["per_view"]]))
    info = json.loads((demo_eval / "render_info.json").read_text())
    lo, hi = info["depth_range"]
    assert info["n_views"] == 8 and lo < hi
    depth = np.stack([read_pfm(p) for p in sorted((demo_eval / "depth").glob("*.pfm"))])
    assert np.isfinite(depth).all() and depth.min() >= 0 and depth.max() <= 6.0 + 1e-3  # Blender far


def test_demo_metrics_match_saved_frames(demo_eval, demo_dir):
    metrics = json.loads((demo_eval / "metrics.json").read_text())
    gts = ground_truth(demo_dir, "test", (32, 32))
    ours = [frame_psnr(demo_eval / f"{i:03d}.png", gt) for i, gt in enumerate(gts)]
    # metrics.json is computed before 8-bit rounding: allow a few hundredths of a dB
    np.testing.assert_allclose([v["psnr"] for v in metrics["per_view"]], ours, atol=0.05)


def test_lego_val_100_frames_and_independent_psnr(lego_ckpt, lego_dir, tmp_path):
    ckpt, work = lego_ckpt
    out = tmp_path / "lego_val"
    proc = eval_script("--ckpt_path", ckpt, "--split", "val", "--out_dir", out, cwd=work)
    check_outputs(out, "lego", 100, (32, 32))
    metrics = json.loads((out / "metrics.json").read_text())
    ours = [frame_psnr(out / f"{i:03d}.png", gt) for i, gt in enumerate(ground_truth(lego_dir, "val", (32, 32)))]
    np.testing.assert_allclose([v["psnr"] for v in metrics["per_view"]], ours, atol=0.05)
    assert metrics["psnr"] == pytest.approx(np.mean(ours), abs=0.05)
    assert f"{metrics['psnr']:.2f}" in proc.stdout  # the mean is printed
    assert metrics["psnr"] > 15.0  # 300 tiny steps; an all-white guess gives about 9.6 dB
    assert 0.3 < metrics["ssim"] <= 1.0


def test_lego_test_split_written_by_us(lego_ckpt, lego_dir, tmp_path):
    """A test split that is not in ../shared: 6 val frames listed in a new order; the frames
    must come out in that order and score what an independent computation says."""
    ckpt, work = lego_ckpt
    scene = tmp_path / "lego_with_test"
    scene.mkdir()
    for name in ("train", "val", "transforms_train.json", "transforms_val.json"):
        (scene / name).symlink_to(lego_dir / name)
    meta = json.loads((lego_dir / "transforms_val.json").read_text())
    meta["frames"] = [meta["frames"][i] for i in (42, 7, 99, 0, 63, 15)]
    (scene / "transforms_test.json").write_text(json.dumps(meta))

    eval_script("--ckpt_path", ckpt, "--root_dir", scene, "--scene_name", "lego", "--no_depth", cwd=tmp_path)
    out = tmp_path / "results" / "blender" / "lego" / "test"
    assert pngs(out) == [f"{i:03d}.png" for i in range(6)]
    assert not (out / "depth").exists() and not (out / "lego_depth.mp4").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "test"
    gts = ground_truth(scene, "test", (32, 32))
    ours = [frame_psnr(out / f"{i:03d}.png", gt) for i, gt in enumerate(gts)]
    np.testing.assert_allclose([v["psnr"] for v in metrics["per_view"]], ours, atol=0.05)
    # order: frame 1 is val view 7, so it matches val view 7's ground truth best among the six
    frame1 = out / "001.png"
    assert int(np.argmax([frame_psnr(frame1, gt) for gt in gts])) == 1


# ---------------------------------------------------------------- depth files


def test_pfm_round_trip_and_layout(tmp_path):
    depth = np.random.default_rng(0).uniform(2, 6, (5, 7)).astype(np.float32)
    write_pfm(tmp_path / "d.pfm", torch.from_numpy(depth))
    assert np.array_equal(read_pfm(tmp_path / "d.pfm"), depth)
    raw = (tmp_path / "d.pfm").read_bytes()
    header = b"Pf\n7 5\n-1.0\n"
    assert raw.startswith(header) and len(raw) == len(header) + 5 * 7 * 4
    # PFM stores the bottom row first
    assert np.array_equal(np.frombuffer(raw[len(header):len(header) + 28], "<f4"), depth[-1])


def test_pad_even():
    frame = np.arange(5 * 3 * 3, dtype=np.uint8).reshape(5, 3, 3)
    padded = pad_even(frame)
    assert padded.shape == (6, 4, 3)
    assert np.array_equal(padded[:5, :3], frame) and np.array_equal(padded[5, :3], frame[4])


# ---------------------------------------------------------------- weights-only files


def test_weights_only_file(weights_file, demo_ckpt):
    ckpt, _ = demo_ckpt
    data = torch.load(weights_file, map_location="cpu", weights_only=True)
    assert data["format"] == "nerf_pl-weights-v1"
    assert data["state_dict"] and all(k.split(".")[0] in ("nerf_coarse", "nerf_fine") for k in data["state_dict"])
    assert any(k.startswith("nerf_fine.") for k in data["state_dict"])
    assert all(v.dtype == torch.float32 for v in data["state_dict"].values())
    assert data["hparams"]["net_width"] == 64 and data["hparams"]["N_importance"] == 32
    assert os.path.getsize(weights_file) < 0.5 * os.path.getsize(ckpt)


def test_weights_only_renders_identical_frames(weights_file, demo_eval, demo_dir, tmp_path):
    eval_script("--ckpt_path", weights_file, "--out_dir", tmp_path / "w", cwd=tmp_path)
    check_outputs(tmp_path / "w", demo_dir.name, 8, (32, 32))
    for name in pngs(demo_eval):
        diff = np.abs(imageio.imread(demo_eval / name).astype(int) - imageio.imread(tmp_path / "w" / name))
        assert diff.max() <= 1, name


def test_weights_only_default_size_and_name(tmp_path):
    """The default 8x256 coarse + fine networks make a file of about 4.8 MB, named after the checkpoint."""
    from models import build_fields

    fields = build_fields({"N_importance": 64})
    state = {f"nerf_{lvl}.{k}": v for lvl, f in fields.items() for k, v in f.state_dict().items()}
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"N_importance": 64}, "optimizer_states": []}, ckpt)
    run_script("utils/save_weights_only.py", "--ckpt_path", ckpt, cwd=tmp_path)  # the old path still works
    out = tmp_path / "last_weights.pth"
    assert 4.5e6 < os.path.getsize(out) < 5.0e6


def portable_file(demo_ckpt, demo_dir, split, out):
    """A weights-only file of the demo model whose render path is the demo ``split``'s cameras,
    and whose scene folder does not exist (as on another machine). Returns ``out``."""
    from datasets.blender import BlenderDataset
    from utils.checkpoint import load_checkpoint

    ckpt = load_checkpoint(str(demo_ckpt[0]))
    cams = BlenderDataset(str(demo_dir), split, img_wh=(32, 32)).camera_state()
    path = {k: torch.as_tensor(v) if hasattr(v, "shape") else v for k, v in cams.items()}
    hparams = dict(ckpt["hparams"], dataset_name="llff", root_dir=str(out.parent / "gone" / "myscene"))
    torch.save({"format": "nerf_pl-weights-v1", "state_dict": ckpt["state_dict"], "hparams": hparams,
                "extras": {"path": path}}, out)
    return out


def test_portable_render_path_without_scene(demo_ckpt, demo_eval, demo_dir, tmp_path):
    """A weights-only file that carries its render path renders it with no scene folder at all."""
    portable = portable_file(demo_ckpt, demo_dir, "test", tmp_path / "portable.pth")
    eval_script("--ckpt_path", portable, cwd=tmp_path)  # llff: the default split is the path
    out = tmp_path / "results" / "llff" / "myscene" / "path"
    check_outputs(out, "myscene", 8, (32, 32))
    assert not (out / "metrics.json").exists()  # a path has no ground truth
    for name in pngs(demo_eval):  # same cameras, same weights: same frames as the blender test split
        assert np.abs(imageio.imread(out / name).astype(int) - imageio.imread(demo_eval / name)).max() <= 1


def test_llff_weights_carry_render_path(beer_dir, tmp_path):
    """save_weights_only stores beer's spheric render path; eval renders it without the photos."""
    from datasets import dataset_dict
    from datasets.base import CameraPath
    from models import build_fields

    if "llff" not in dataset_dict:
        pytest.skip("datasets/llff.py is not there yet")
    flags = {"net_depth": 4, "net_width": 64, "N_samples": 8, "N_importance": 8, "dataset_name": "llff",
             "root_dir": str(beer_dir), "img_wh": [9, 16], "spheric_poses": True, "llff_holdout": 8}
    torch.manual_seed(0)
    fields = build_fields(flags)
    state = {f"nerf_{lvl}.{k}": v for lvl, f in fields.items() for k, v in f.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": flags, "optimizer_states": []}, tmp_path / "beer.ckpt")
    run_script("save_weights_only.py", "--ckpt_path", tmp_path / "beer.ckpt", cwd=tmp_path)
    data = torch.load(tmp_path / "beer_weights.pth", map_location="cpu", weights_only=False)
    path = CameraPath.from_state({k: v.numpy() if torch.is_tensor(v) else v for k, v in data["extras"]["path"].items()})
    ref = dataset_dict["llff"](str(beer_dir), split="path", img_wh=(9, 16), spheric_poses=True)
    assert torch.allclose(path.poses, ref.poses) and np.allclose(path.K, ref.K) and path.ndc == ref.ndc
    assert (path.near, path.far) == pytest.approx((ref.near, ref.far))

    eval_script("--ckpt_path", tmp_path / "beer_weights.pth", "--root_dir", tmp_path / "elsewhere" / "beer",
                "--no_depth", cwd=tmp_path)
    assert len(pngs(tmp_path / "results" / "llff" / "beer" / "path")) == len(ref.poses)


# ---------------------------------------------------------------- bad input, failures


def test_bad_inputs_fail_cleanly(demo_ckpt, demo_dir, tmp_path):
    ckpt, _ = demo_ckpt
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    clash = tmp_path / "clash"  # a folder whose own 000.png eval.py must not overwrite
    clash.mkdir()
    (clash / "000.png").write_bytes(b"a user's picture")
    torch.save({"state_dict": {"layer.weight": torch.zeros(2)}}, tmp_path / "foreign.ckpt")
    no_test = tmp_path / "no_test"
    no_test.mkdir()
    for name in ("train", "val", "transforms_train.json", "transforms_val.json"):
        (no_test / name).symlink_to(demo_dir / name)
    cases = {
        "missing": (["--ckpt_path", tmp_path / "nope.ckpt"], "not found"),
        "not torch": (["--ckpt_path", tmp_path / "notes.txt"], "cannot read checkpoint"),
        "not nerf": (["--ckpt_path", tmp_path / "foreign.ckpt"], "not a NeRF checkpoint"),
        "shape": (["--ckpt_path", ckpt, "--net_width", 32], "4x64"),
        "no test split": (["--ckpt_path", ckpt, "--root_dir", no_test], "it has: train, val"),
        "unknown split": (["--ckpt_path", ckpt, "--split", "tset"], "invalid choice"),
        "no root": (["--ckpt_path", ckpt, "--root_dir", tmp_path / "missing"], "not a folder"),
        "fps": (["--ckpt_path", ckpt, "--fps", 0], "--fps"),
        "name clash": (["--ckpt_path", ckpt, "--out_dir", clash], "not written by eval.py"),
        "out_dir is a file": (["--ckpt_path", ckpt, "--out_dir", tmp_path / "notes.txt"], "is a file"),
    }
    for name, (args, message) in cases.items():
        proc = eval_script(*args, cwd=tmp_path, check=False)
        assert proc.returncode != 0, name
        assert "error:" in proc.stderr and message in proc.stderr, (name, proc.stderr)
        assert "Traceback" not in proc.stderr, name
        assert not (tmp_path / "results").exists(), name
    assert sorted(p.name for p in clash.iterdir()) == ["000.png"]  # untouched
    assert (clash / "000.png").read_bytes() == b"a user's picture"
    proc = run_script("save_weights_only.py", "--ckpt_path", tmp_path / "foreign.ckpt", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "error:" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("*.pth*"))


def test_failure_mid_render_leaves_nothing(demo_ckpt, tmp_path, monkeypatch):
    import importlib

    eval_mod = importlib.import_module("eval")
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated out of memory")
        return real(*args, **kwargs)

    real = eval_mod.render_chunked
    monkeypatch.setattr(eval_mod, "render_chunked", failing)
    out = tmp_path / "res" / "deep" / "scene"
    with pytest.raises(RuntimeError, match="simulated"):
        eval_mod.main(["--ckpt_path", str(demo_ckpt[0]), "--out_dir", str(out)])
    assert len(calls) == 3
    assert list(tmp_path.iterdir()) == []  # no partial folder, no parent folders left behind


def test_rerun_replaces_earlier_results_and_keeps_other_files(demo_ckpt, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "scene.ply").write_bytes(b"a mesh from extract_mesh.py")
    eval_script("--ckpt_path", demo_ckpt[0], "--out_dir", out, "--split", "test", cwd=tmp_path)  # 8 views
    assert len(pngs(out)) == 8 and (out / "depth").is_dir()
    eval_script("--ckpt_path", demo_ckpt[0], "--out_dir", out, "--split", "val", "--no_depth", cwd=tmp_path)
    assert pngs(out) == ["000.png", "001.png", "002.png", "003.png"]  # the demo val split: 4 views
    assert not (out / "depth").exists()  # the earlier run's depth maps went with its frames
    assert (out / "scene.ply").read_bytes() == b"a mesh from extract_mesh.py"  # not ours: kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folders left


def test_4k_renders_one_view_at_a_time(demo_ckpt, demo_dir, tmp_path, monkeypatch):
    """At 3840x2160 the renderer is handed one view's rays at a time and sends every chunk's
    outputs to the CPU, so device memory is bounded by one chunk (whatever the resolution). The
    network is replaced by a stand-in here (a real 4K render takes minutes on a CPU); the rest of
    the pipeline (rays, PNG/PFM/video writers) runs for real at 4K, on a 4-view render path."""
    import importlib

    eval_mod = importlib.import_module("eval")
    calls = []

    def stand_in(fields, rays, chunk, keys=("rgb", "depth", "opacity"), to_cpu=False, **kwargs):
        calls.append((len(rays), chunk, to_cpu, kwargs["perturb"], kwargs["noise_std"], kwargs["test_time"]))
        t = rays.origins[:, :1].abs()  # (N_rays, 1): something that varies over the image
        return {"rgb": (t / t.max()).expand(-1, 3), "depth": t[:, 0] + 2, "opacity": torch.ones(len(rays))}

    monkeypatch.setattr(eval_mod, "render_chunked", stand_in)
    portable = portable_file(demo_ckpt, demo_dir, "val", tmp_path / "portable.pth")
    out = tmp_path / "uhd"
    eval_mod.main(["--ckpt_path", str(portable), "--img_wh", "3840", "2160", "--chunk", "4096",
                   "--out_dir", str(out)])
    assert calls == [(3840 * 2160, 4096, True, 0.0, 0.0, True)] * 4
    check_outputs(out, "myscene", 4, (3840, 2160))

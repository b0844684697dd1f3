"""The benchmark scripts run and print the figures they promise (tiny settings: this checks the
scripts, not the speed)."""
import json

import pytest

from conftest import run_script


def json_lines(proc):
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_render_speed_reports_rays_per_second_per_resolution():
    proc = run_script("benchmarks/render_speed.py", "--device", "cpu", "--img_wh", 8, 8, 16, 12,
                      "--model_flags", "--net_depth 2 --net_width 32 --N_samples 8 --N_importance 8")
    rows = json_lines(proc)
    assert [r["img_wh"] for r in rows] == [[8, 8], [16, 12]]
    assert [r["rays"] for r in rows] == [64, 192]
    assert all(r["rays_per_s"] > 0 and r["peak_mem_mb"] > 0 for r in rows)


@pytest.mark.parametrize("fast", [False, True])
def test_profile_step_shares_add_up(demo_dir, fast):
    proc = run_script("benchmarks/profile_step.py", "--root_dir", demo_dir, "--device", "cpu", "--img_wh", 16, 16,
                      "--steps", 1, "--warmup", 1, *(["--fast"] if fast else []))
    (row,) = json_lines(proc)
    assert row["mode"] == ("fast" if fast else "vanilla") and row["s_per_step_profiled"] > 0
    assert sum(row["share"].values()) == pytest.approx(1.0, abs=0.02)
    field = row["share"]["mlp"] + row["share"]["encoding"] + row["share"]["backward"]
    assert field > 0.4  # the fields (encodings, MLPs, their backward) dominate a step


def test_compile_field_times_each_mode_in_its_own_process():
    proc = run_script("benchmarks/compile_field.py", "--modes", "eager", "eager", "--points", 500, "--repeats", 3)
    rows = json_lines(proc)
    assert [r["mode"] for r in rows] == ["eager", "eager"] and all(r["points"] == 500 for r in rows)
    assert all(r["median_ms"] > 0 and r["first_s"] > 0 for r in rows)


def test_cpu_quality_curves_for_today_and_default(demo_dir, tmp_path):
    small = "--batch_size 128 --march_steps 64 --grid_resolution 16 --hash_log2_size 12"
    proc = run_script("benchmarks/cpu_quality.py", "--root_dir", demo_dir, "--img_wh", 8, 8, "--minutes", 0.03,
                      "--eval_every", 1, "--n_val", 1, "--threads", 1, "--out_dir", tmp_path,
                      "--variants", f"today:{small} --max_steps 3", f"default:{small}")
    rows = json_lines(proc)
    summary = rows[-1]["summary"]
    assert set(summary) == {"today", "default"} and summary["today"]["step"] <= 3
    curves = [r for r in rows if "variant" in r]
    assert all(5 < r["psnr"] < 60 for r in curves) and curves[0]["t"] == 0
    assert (tmp_path / "cpu_quality.png").stat().st_size > 1000
    assert len((tmp_path / "cpu_quality.jsonl").read_text().splitlines()) == len(curves)


def test_capture_quality_scores_every_held_out_view(beer_dir, tmp_path):
    small = "--batch_size 128 --march_steps 64 --grid_resolution 16 --hash_log2_size 12 --max_steps 3"
    proc = run_script("benchmarks/capture_quality.py", "--minutes", 0.02, "--eval_every", 1, "--threads", 1,
                      "--out_dir", tmp_path, "--tag", "cq",
                      "--scene", f"--dataset_name llff --root_dir {beer_dir} --img_wh 9 16",
                      "--variants", "vanilla:--unbounded TINY --max_steps 3", f"fast:--unbounded --fast {small}")
    rows = json_lines(proc)
    summary = rows[-1]["summary"]
    assert set(summary) == {"vanilla", "fast"} and all(v["step"] <= 3 for v in summary.values())
    curves = [r for r in rows if "variant" in r]
    assert all(len(r["psnr_views"]) == 9 and r["psnr_min"] <= r["psnr"] for r in curves)  # all 9 held-out views
    assert any(r["samples_per_ray"] for r in curves if r["variant"] == "fast")
    assert (tmp_path / "cq.png").stat().st_size > 1000 and (tmp_path / "cq_frames.png").stat().st_size > 1000


# packages the GPU image lacks: the GPU check must run without them
NOT_ON_GPU_IMAGE = ("kornia", "mcubes", "open3d", "pycolmap", "imageio_ffmpeg", "viser")


def test_gpu_check_dry_run_without_the_packages_the_gpu_image_lacks(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    blocked = tmp_path / "blocked"
    for name in NOT_ON_GPU_IMAGE:
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is not on the GPU image')\n")
    env = dict(os.environ, PYTHONPATH=f"{blocked}{os.pathsep}{ROOT}", PYTHONWARNINGS="ignore")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--dry_run", "--out", str(out),
                           "--device", "cpu"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    fast = report["fast"]
    assert fast["status"] == "ok", fast.get("error")
    assert fast["points"] and fast["steps"] >= 1 and 0 < fast["psnr"] < 60 and fast["s_per_step"] > 0
    assert (out / "gpu_check_fast_psnr.png").stat().st_size > 1000
    render = report["render"]
    assert render["status"] == "ok" and render["fast"]["rays_per_s"] > 0 and render["vanilla"]["rays_per_s"] > 0
    seed_dir = ROOT.parent / "shared" / "peers" / "nerf_pl"
    if seed_dir.is_dir():  # the seed's code is beside the project: both sides were timed
        assert report["vs_seed"]["status"] == "ok", report["vs_seed"].get("error")
        assert report["vs_seed"]["fp32"]["ratio"] > 0 and report["vs_seed"]["fp32"]["steps_each"] >= 2
        assert render["seed"]["rays_per_s"] > 0
    else:
        assert report["vs_seed"]["status"] == "error"  # recorded, and the render section still ran


def test_gpu_check_sections_record_failures_and_go_on(tmp_path):
    from benchmarks.gpu_check import Report

    report = Report(str(tmp_path / "r.json"), {})
    with report.section("one") as entry:
        entry["x"] = 1
        raise ValueError("boom")
    with report.section("two") as entry:
        entry["y"] = 2
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["one"]["status"] == "error" and "boom" in saved["one"]["error"] and saved["one"]["x"] == 1
    assert saved["two"] == {"status": "ok", "y": 2, "section_wall_s": saved["two"]["section_wall_s"]}


def test_make_clip_writes_a_portrait_phone_clip(tmp_path):
    """benchmarks/make_clip.py --portrait: frames stored sideways with a -90 display rotation, which
    the video reader turns upright again (the top of each photo stays on top)."""
    import cv2
    import numpy as np

    from process_data.video import extract_frames, probe

    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(6):
        img = np.zeros((64, 40, 3), np.uint8)  # portrait, upright: red on top, blue below
        img[:32, :, 2], img[32:, :, 0], img[:, :4 * (k + 1), 1] = 255, 255, 120
        cv2.imwrite(str(photos / f"{k:04d}.png"), img)
    clip = tmp_path / "clip.mp4"
    proc = run_script("benchmarks/make_clip.py", photos, clip, "--size", 40, 64, "--fps", 6, "--portrait")
    assert "6 frames, 40x64 upright" in proc.stdout
    stored, rotation = probe(str(clip))
    assert stored == (64, 40) and rotation % 360 == 270, (stored, rotation)  # -90: a quarter turn clockwise
    extract_frames(str(clip), str(tmp_path / "frames"), num_frames=6, log=lambda *a: None, progress=False)
    first = cv2.imread(str(tmp_path / "frames" / "frame_00001.jpg"))[:, :, ::-1]  # RGB
    assert first.shape == (64, 40, 3)
    assert first[:24, :, 0].mean() > 200 and first[40:, :, 2].mean() > 200  # red on top, blue below


def test_mesh_views_draws_each_mesh_from_held_out_cameras(demo_ckpt, tmp_path):
    import open3d as o3d

    sphere = o3d.geometry.TriangleMesh.create_sphere(radius=0.5, resolution=10)
    sphere.paint_uniform_color([0.9, 0.2, 0.1])
    path = tmp_path / "sphere.ply"
    o3d.io.write_triangle_mesh(str(path), sphere)
    ckpt, work = demo_ckpt
    out = tmp_path / "views.png"
    proc = run_script("benchmarks/mesh_views.py", "--ckpt_path", ckpt, "--meshes", path, path, "--labels", "a", "b",
                      "--out", out, cwd=work)
    assert proc.stdout.count(f"{len(sphere.triangles)} triangles, 1 connected piece(s)") == 2
    import imageio.v2 as imageio

    img = imageio.imread(out)
    red = (img[..., 0] > 180) & (img[..., 1] < 120)
    assert red.sum() > 500  # the sphere is drawn, in its colour


def test_profile_step_any_scene_with_train_presets(tmp_path):
    """--scene takes train.py's flags: here the CPU preset for --unbounded (512 rays per step, the
    distortion loss) applies, to the step and to its loss."""
    from datasets.demo_scene import write_nerfstudio_scene

    write_nerfstudio_scene(tmp_path / "ns", size=16, n_frames=12)
    scene = f"--dataset_name nerfstudio --root_dir {tmp_path / 'ns'} --img_wh 16 16 --unbounded"
    proc = run_script("benchmarks/profile_step.py", "--scene", scene, "--device", "cpu", "--fast",
                      "--steps", 2, "--warmup", 1)
    (row,) = json_lines(proc)
    assert row["mode"] == "fast" and row["img_wh"] == [16, 16] and row["batch_size"] == 512
    assert row["distortion_loss"] == 0.001 and "loss" in row["share"]
    assert row["samples_per_ray"] > 0
    assert row["samples_per_s"] == pytest.approx(row["samples_per_ray"] * 512 / row["s_per_step_profiled"], rel=0.01)
    assert "occupancy" in row["share"]  # the grid's refresh, named on its own
    assert sum(row["share"].values()) == pytest.approx(1.0, abs=0.02)


def test_hash_kernel_cpp_checks_then_times_both_paths():
    proc = run_script("benchmarks/hash_kernel_cpp.py", "--points", 500, "--repeats", 3)
    rows = json_lines(proc)
    assert rows[0]["build_or_load_s"] >= 0
    assert max(rows[1]["max_abs_error"].values()) < 1e-4 * max(1.0, rows[1]["table_grad_max"])
    parts = [r["part"] for r in rows[2:]]
    assert parts.count("fused_forward_backward") == 2 and parts.count("eager_forward_backward") == 2
    assert all(r["median_ms"] > 0 for r in rows[2:])


def test_steps_side_by_side_scores_each_run_on_the_same_views(demo_dir, tmp_path):
    """Two trees (here this one twice, once with --kernels eager): steps, held-out PSNR, memory, ratios."""
    from conftest import ROOT

    proc = run_script("benchmarks/steps_side_by_side.py", "--trees", ROOT, ROOT, "--variants", "", "--kernels eager",
                      "--tag", "t", "--work", tmp_path, "--", "--root_dir", demo_dir, "--img_wh", 16, 16, "--fast",
                      "--max_steps", 6, "--num_gpus", 0, "--val_num", 1, "--hash_levels", 4, "--hash_log2_size", 12,
                      "--hash_max_res", 64, cwd=tmp_path)
    runs, (ratio,) = json_lines(proc)[:2], json_lines(proc)[2:]
    assert [r["variant"] for r in runs] == ["", "--kernels eager"]
    assert all(r["steps"] == 6 and r["test_views"] == 8 and r["peak_rss_mb"] > 100 for r in runs)
    assert abs(runs[0]["test_psnr"] - runs[1]["test_psnr"]) < 0.5  # same training, either path
    assert ratio["steps_ratio"] == 1.0


def test_detail_quality_scores_render_and_thumbnail_at_the_view_size(demo_ckpt, tmp_path):
    ckpt, _ = demo_ckpt
    out = tmp_path / "detail"
    proc = run_script("benchmarks/detail_quality.py", "--ckpt_path", ckpt, "--view_wh", 32, 32, "--thumbnail", 16, 16,
                      "--crops", 2, "--out", out)
    render, thumb = json_lines(proc)
    assert render["method"] == "render" and thumb["method"] == "thumbnail" and thumb["thumbnail_wh"] == [16, 16]
    for r in (render, thumb):
        assert r["view_wh"] == [32, 32] and r["views"] == 8 and len(r["per_view"]) == 8
        assert 0 < r["ssim"] <= 1 and r["gmsd"] >= 0 and r["psnr"] > 5
    assert thumb["psnr"] > render["psnr"]  # a 40-step model is no match for the photos themselves
    import imageio.v2 as imageio

    crops = imageio.imread(out / "crops.png")
    size = 32 // 3
    assert crops.shape == (2 * size + 4, 3 * size + 2 * 4, 3)  # 2 views x (photo | render | thumbnail)
    assert json.loads((out / "scores.json").read_text())["columns"] == ["photo", "render", "thumbnail"]


def test_detail_quality_needs_something_to_score(tmp_path):
    proc = run_script("benchmarks/detail_quality.py", "--view_wh", 32, 32, "--out", tmp_path / "x", check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "give --ckpt_path" in proc.stderr and not (tmp_path / "x").exists()


def test_pose_quality_rows_for_each_strategy_and_the_flow(beer_dir, tmp_path):
    out = tmp_path / "rows.json"
    proc = run_script("benchmarks/pose_quality.py", "--inputs", "half", "--half", 30, "--out", out)
    rows = json.loads(out.read_text())
    strategies = [r["strategy"] for r in rows]
    assert strategies[0] == "all pairs, incremental mapper" and len(rows) == 7, strategies  # 6 strategies, the flow
    flow = rows[-1]
    assert flow["strategy"].startswith("**imgs2poses: ") and flow["frames"] == 24 and flow["registered"] >= 20
    assert flow["folds"] == 0 and flow["centre_mean"] < 10 and flow["rotation_median"] < 5, flow  # it kept no fold
    assert proc.stdout.count("| clip of 30 photos, 24 frames |") == 7


def test_pose_quality_needs_a_reference_model(tmp_path):
    (tmp_path / "images").mkdir()
    proc = run_script("benchmarks/pose_quality.py", "--scene", tmp_path, "--out", tmp_path / "rows.json", check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "sparse/0 is missing" in proc.stderr
    assert not (tmp_path / "rows.json").exists()


def test_frame_choice_spends_no_frames_on_a_pause():
    """benchmarks/frame_choice.py --no_sfm on a tiny demo walk that stands still for its first second:
    windows of time keep 3 frames of the one still view, stretches of equal motion keep 1."""
    from benchmarks import frame_choice

    rows = frame_choice.main(["--size", "64", "--walk", "36", "--pause", "1", "--num_frames", "12", "--no_sfm"])
    by = {r["way"]: r for r in rows}
    assert by["time"]["from_pause"] >= 3 and by["motion"]["from_pause"] <= 1
    assert by["motion"]["distinct_views"] == 12 > by["time"]["distinct_views"]
    assert all(len(r["chosen"]) == 12 for r in rows)

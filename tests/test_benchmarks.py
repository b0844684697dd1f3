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
    assert row["share"]["mlp"] + row["share"]["backward"] > 0.3  # the networks dominate a step


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

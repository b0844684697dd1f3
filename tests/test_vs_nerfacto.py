"""benchmarks/vs_nerfacto.py: both sides see the same split, pixels and cameras; one scorer scores
both. nerfstudio itself runs only where its venv is already installed (never installed here)."""
import json
import os

import numpy as np
import pytest

from conftest import run_script

SMALL = "--batch_size 128 --march_steps 64 --grid_resolution 16 --hash_log2_size 12 --max_steps 3"


def test_export_gives_nerfstudio_our_split_pixels_and_cameras(beer_dir, tmp_path):
    import imageio.v2 as imageio

    from benchmarks.vs_nerfacto import export_nerfstudio_scene, parse, split_datasets
    from datasets.image_utils import list_images
    from utils.visualization import to_uint8

    a = parse(["--scene", str(beer_dir), "--img_wh", "9", "16", "--out", str(tmp_path / "r.jsonl")])
    train, test = split_datasets(a)
    meta = json.loads(open(export_nerfstudio_scene(train, test, str(tmp_path / "ns"))).read())
    stems = [os.path.splitext(os.path.basename(p))[0] for p in list_images(os.path.join(beer_dir, "images"))]
    held = [f"images/{s}.png" for s in stems[::8]]  # every 8th image sorted by name, from the first
    assert meta["val_filenames"] == meta["test_filenames"] == held and len(held) == 9
    assert sorted(meta["train_filenames"] + held) == sorted(f"images/{s}.png" for s in stems)
    frames = {f["file_path"]: f for f in meta["frames"]}
    for ds, names in ((train, meta["train_filenames"]), (test, held)):
        for i in (0, len(names) - 1):
            f = frames[names[i]]
            png = imageio.imread(tmp_path / "ns" / names[i])
            assert png.shape == (16, 9, 3) and (f["w"], f["h"]) == (9, 16)
            assert np.array_equal(png, to_uint8(ds.rgbs[i].view(16, 9, 3)))  # our reader's pixels
            assert np.allclose(f["transform_matrix"], np.vstack([ds.poses[i].numpy(), [0, 0, 0, 1]]), atol=1e-6)
            assert np.allclose([f["fl_x"], f["fl_y"], f["cx"], f["cy"]], ds.Ks[i][[0, 1, 0, 1], [0, 1, 2, 2]])


def test_ours_side_is_scored_from_its_frames(beer_dir, tmp_path):
    out = tmp_path / "vs.jsonl"
    proc = run_script("benchmarks/vs_nerfacto.py", "--scene", beer_dir, "--img_wh", 9, 16, "--methods", "ours",
                      "--minutes", 0.02, "--eval_every", 1, "--threads", 1, "--ours_flags", f"--unbounded --fast {SMALL}",
                      "--out", out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and {r["method"] for r in rows} == {"ours"} and rows[0]["minute"] == 0 and rows[-1]["step"] <= 3
    assert all(len(r["psnr_views"]) == 9 and r["psnr_min"] <= r["psnr"] and 0 < r["ssim"] <= 1 for r in rows)
    assert rows[0]["rays"] == 128  # the batch size ours trained with
    # the one scorer (8-bit frames read back) agrees with the PSNR ours measured on its float renders
    logged = [json.loads(line) for line in (tmp_path / "vs_work" / "ours" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [r["step"] for r in logged]
    for r, m in zip(rows, logged):
        assert r["psnr"] == pytest.approx(m["psnr"], abs=0.05)
    assert (tmp_path / "vs.png").stat().st_size > 1000 and (tmp_path / "vs_frames.png").is_file()
    assert "PSNR" in proc.stdout and "ours" in proc.stdout
    out.unlink()  # --score_only scores the frames already there again, training nothing
    run_script("benchmarks/vs_nerfacto.py", "--scene", beer_dir, "--img_wh", 9, 16, "--score_only", "--out", out)
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows
    # --add_rows: an earlier run's rows join the table; the run made now replaces its namesake
    earlier = tmp_path / "earlier.jsonl"
    old_ours = dict(rows[0], psnr=1.0)
    nerfacto = dict(rows[0], method="nerfacto", rays=4096, psnr=2.0)
    earlier.write_text(json.dumps(old_ours) + "\n" + json.dumps(nerfacto) + "\n")
    both = tmp_path / "both.jsonl"
    proc = run_script("benchmarks/vs_nerfacto.py", "--scene", beer_dir, "--img_wh", 9, 16, "--score_only",
                      "--work", tmp_path / "vs_work", "--add_rows", earlier, "--out", both)
    assert [json.loads(line) for line in both.read_text().splitlines()] == [nerfacto] + rows
    assert "nerfacto_4096" in proc.stdout
    proc = run_script("benchmarks/vs_nerfacto.py", "--scene", beer_dir, "--img_wh", 18, 32, "--score_only",
                      "--work", tmp_path / "vs_work", "--add_rows", earlier, "--out", tmp_path / "x.jsonl", check=False)
    assert proc.returncode == 2 and "give the same --scene and --img_wh" in proc.stderr
    assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.parametrize("flags,message", [
    (["--out", "x.json"], "must end in .jsonl"),
    (["--scene", "/no/such/scene"], "is not a folder"),
    (["--minutes", "0"], "must be positive"),
    (["--add_rows", "none.jsonl"], "is not a file"),
])
def test_bad_flags_name_the_flag(tmp_path, flags, message):
    proc = run_script("benchmarks/vs_nerfacto.py", "--out", tmp_path / "r.jsonl", *flags, check=False, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_score_only_without_runs_says_so(beer_dir, tmp_path):
    proc = run_script("benchmarks/vs_nerfacto.py", "--scene", beer_dir, "--img_wh", 9, 16, "--score_only",
                      "--out", tmp_path / "r.jsonl", check=False)
    assert proc.returncode == 2 and "no run in --work" in proc.stderr and not list(tmp_path.iterdir())


def test_failed_nerfstudio_install_is_one_line_and_writes_nothing(beer_dir, tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\necho 'ERROR: No matching distribution found' >&2\nexit 1\n")
    (venv / "bin" / "python").chmod(0o755)
    out = tmp_path / "out" / "r.jsonl"
    proc = run_script("benchmarks/vs_nerfacto.py", "--scene", beer_dir, "--img_wh", 9, 16, "--methods", "nerfacto",
                      "--venv", venv, "--out", out, check=False)
    assert proc.returncode == 2 and "pip install nerfstudio==1.1.5" in proc.stderr and "No matching" in proc.stderr
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]  # (the reader's progress bar aside)
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0]
    assert not (tmp_path / "out").exists() and not (venv / ".nerf_pl_ready").exists()


def nerfstudio_venv():
    """nerfstudio's venv where vs_nerfacto.py made it (or $NERF_PL_NERFSTUDIO_VENV); skip when absent."""
    from benchmarks.vs_nerfacto import DEFAULT_VENV, VENV_READY

    venv = os.environ.get("NERF_PL_NERFSTUDIO_VENV", DEFAULT_VENV)
    if not os.path.isfile(os.path.join(venv, VENV_READY)):
        pytest.skip(f"nerfstudio's venv is not installed at {venv} (benchmarks/vs_nerfacto.py makes it on first use)")
    return venv


# run by nerfstudio's python: a held-out camera's rays, taken back to the frame of transforms.json
NERFSTUDIO_RAYS = """
import sys
from pathlib import Path
import numpy as np
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
out = NerfstudioDataParserConfig(data=Path(sys.argv[1]), downscale_factor=1).setup().get_dataparser_outputs("val")
i = int(sys.argv[2])
rays = out.cameras.generate_rays(camera_indices=i)
T, s = out.dataparser_transform.numpy(), out.dataparser_scale
o, d = rays.origins.reshape(-1, 3).numpy(), rays.directions.reshape(-1, 3).numpy()
np.savez(sys.argv[3], name=str(out.image_filenames[i]), origins=(o / s - T[:, 3]) @ T[:, :3], directions=d @ T[:, :3])
"""


def test_nerfstudio_casts_our_rays_through_the_held_out_views(beer_dir, tmp_path):
    import subprocess

    from benchmarks.vs_nerfacto import export_nerfstudio_scene, frame_name, parse, split_datasets, venv_python

    venv = nerfstudio_venv()
    a = parse(["--scene", str(beer_dir), "--img_wh", "18", "32", "--out", str(tmp_path / "r.jsonl")])
    train, test = split_datasets(a)
    export_nerfstudio_scene(train, test, str(tmp_path / "ns"))
    i = 3
    subprocess.run([venv_python(venv), "-W", "ignore", "-c", NERFSTUDIO_RAYS, str(tmp_path / "ns"), str(i),
                    str(tmp_path / "rays.npz")], check=True, capture_output=True, env={"PATH": os.environ["PATH"]})
    theirs = np.load(tmp_path / "rays.npz")
    assert os.path.basename(str(theirs["name"])) == frame_name(test.image_names[i])
    ours = test.rays(i)
    unit = ours.directions / ours.directions.norm(dim=-1, keepdim=True)
    assert np.allclose(theirs["origins"], ours.origins.numpy(), atol=1e-5)
    assert np.allclose(theirs["directions"], unit.numpy(), atol=1e-5)  # the same pixel centres, the same camera


def test_nerfacto_side_when_its_venv_is_installed(beer_dir, tmp_path):
    venv = nerfstudio_venv()
    out = tmp_path / "vs.jsonl"
    run_script("benchmarks/vs_nerfacto.py", "--scene", beer_dir, "--img_wh", 9, 16, "--methods", "nerfacto",
               "--rays", 256, "--minutes", 0.01, "--eval_every", 60, "--threads", 1, "--venv", venv, "--out", out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["method"], r["rays"]) for r in rows} == {("nerfacto", 256)}
    assert rows[0]["minute"] == 0 and rows[-1]["step"] >= 1
    assert all(len(r["psnr_views"]) == 9 and 3 < r["psnr"] < 60 for r in rows)

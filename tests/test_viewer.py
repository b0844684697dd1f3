"""viewer/ and viewer.py: camera conventions, camera paths, the page in a real browser, eval.py
--path_json against the viewer's render, the live-training callback, and bad input.

The browser test needs Chromium (Debian: ``apt-get install chromium``; ``.ci/run`` installs it
where it can) and skips with a reason without it.
"""
import json
import math
import socket
import time
from argparse import Namespace
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from opt import parse_args
from utils.errors import UserError
from viewer.browser import find_chromium, screenshot
from viewer.camera import c2w_to_viser, matrix_to_quat, quat_to_matrix, viser_to_c2w
from viewer.cli import build_viewer, get_viewer_parser
from viewer.paths import interpolate, make_path, read_path, write_path
from viewer.server import free_port


def random_rotation(rng):
    q = rng.normal(size=4)
    return quat_to_matrix(q / np.linalg.norm(q))


# ---------------------------------------------------------------- conventions


def test_camera_conversion_round_trip_and_axes():
    rng = np.random.default_rng(0)
    for _ in range(50):
        c2w = np.concatenate([random_rotation(rng), rng.normal(size=(3, 1))], 1)
        wxyz, pos = c2w_to_viser(c2w)
        assert np.allclose(viser_to_c2w(wxyz, pos), c2w, atol=1e-6)
        assert np.allclose(quat_to_matrix(matrix_to_quat(c2w[:, :3])), c2w[:, :3], atol=1e-9)
    # an OpenGL camera at the identity looks along -z with y up; in OpenCV terms its +z (forward)
    # is world -z and its +y (down) is world -y: a half-turn about x, quaternion (0, 1, 0, 0)
    wxyz, _ = c2w_to_viser(np.eye(4)[:3])
    assert np.allclose(np.abs(wxyz), [0, 1, 0, 0], atol=1e-9)
    R_cv = quat_to_matrix(wxyz)
    assert np.allclose(R_cv @ [0, 0, 1], [0, 0, -1]) and np.allclose(R_cv @ [0, 1, 0], [0, -1, 0])


def test_camera_path_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    keys = [{"c2w": np.concatenate([random_rotation(rng), rng.normal(size=(3, 1))], 1), "fov_y": f}
            for f in (0.6, 0.9, 0.7)]
    data = make_path(keys, (40, 30), fps=10, seconds=2.0)
    write_path(str(tmp_path / "p.json"), data)
    back = read_path(str(tmp_path / "p.json"))
    assert back["img_wh"] == (40, 30) and back["fps"] == 10 and len(back["poses"]) == 20
    # the path starts and ends at the first and last keyframes, and passes the middle one
    assert np.allclose(back["poses"][0], keys[0]["c2w"], atol=1e-5)
    assert np.allclose(back["poses"][-1], keys[-1]["c2w"], atol=1e-5)
    poses, fovs = interpolate(keys, 5)
    assert np.allclose(poses[2], keys[1]["c2w"], atol=1e-6) and math.isclose(fovs[2], 0.9)
    assert np.allclose(back["Ks"][0][1, 1], 15 / math.tan(0.3), rtol=1e-5)  # fy = H/2 / tan(fov/2)
    for rot in back["poses"][:, :, :3]:  # interpolated rotations stay rotations
        assert np.allclose(rot @ rot.T, np.eye(3), atol=1e-5)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(UserError, match="bad.json"):
        read_path(str(bad))
    with pytest.raises(UserError, match="not found"):
        read_path(str(tmp_path / "missing.json"))


# ---------------------------------------------------------------- the page in a browser


@pytest.fixture(scope="module")
def viewer(lego_ckpt, tmp_path_factory):
    """A viewer of the tiny lego checkpoint (shared with the eval and mesh tests) on a free port, in
    this process, stopped after the module. (The 40-step demo checkpoint renders all white.)"""
    out = tmp_path_factory.mktemp("viewer_out")
    args, explicit = parse_args(get_viewer_parser(), ["--ckpt_path", str(lego_ckpt[0]), "--port", str(free_port()),
                                                      "--host", "127.0.0.1", "--max_width", "64",
                                                      "--out_dir", str(out)])
    server = build_viewer(args, explicit)
    yield server
    server.stop()


def test_browser_shows_the_rendered_scene(viewer, tmp_path):
    if find_chromium() is None:
        pytest.skip("needs Chromium for a real browser (Debian: apt-get install chromium)")
    sessions = []

    def final_frame_sent():
        sessions[:] = list(viewer.sessions.values())
        return any(s.last is not None and s.last[2] == 64 for s in sessions)

    shot = tmp_path / "shot.png"
    assert screenshot(f"http://127.0.0.1:{viewer.port}", str(shot), size=(800, 600), ready=final_frame_sent,
                      timeout=40, settle=1.5), "the page never received its full-resolution frame"
    session = sessions[0]
    img = imageio.imread(shot)[..., :3].astype(np.float64)
    frame = session.last[0]
    assert frame.shape == (48, 64, 3)  # the canvas aspect (800 x 600) at --max_width
    # the server's frame, stretched over the canvas as the page shows it (nearest pixel)
    rows, cols = np.arange(600) * 48 // 600, np.arange(800) * 64 // 800
    expect = frame[rows][:, cols].astype(np.float64)
    ys, xs = slice(170, 560), slice(70, 440)  # clear of the GUI panel, the notification and the axes
    a, b = img[ys, xs], expect[ys, xs]
    assert b.std() > 5, "the model's render is uniform: not a useful comparison"
    corr = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert corr > 0.9 and np.median(np.abs(a - b)) < 10, (corr, np.median(np.abs(a - b)))
    # the tab opened at the first training camera: its position and viewing direction (the page's
    # orbit controls may level a slight roll of the training camera about the world's up)
    c2w, _, _ = session.camera()
    assert np.allclose(c2w[:, 3], viewer.poses[0][:, 3], atol=1e-4)
    assert np.allclose(c2w[:, 2], viewer.poses[0][:, 2], atol=1e-3)
    # the closed browser leaves no session and no running render thread behind
    deadline = time.time() + 10
    while (viewer.sessions or session.thread.is_alive()) and time.time() < deadline:
        time.sleep(0.1)
    assert not viewer.sessions and not session.thread.is_alive()


def test_several_browsers_at_once(viewer, tmp_path):
    """Three tabs at once: each gets its own session and its full-resolution frame of the scene,
    and all sessions and their render threads are gone once the browsers close."""
    if find_chromium() is None:
        pytest.skip("needs Chromium for a real browser (Debian: apt-get install chromium)")
    import threading

    seen = {}

    def all_done():
        live = list(viewer.sessions.values())
        for sess in live:
            seen[sess.client.client_id] = sess
        return len(live) >= 3 and all(sess.last is not None and sess.last[2] == 64 for sess in live)

    results = [None] * 3

    def open_tab(i):
        results[i] = screenshot(f"http://127.0.0.1:{viewer.port}", str(tmp_path / f"tab{i}.png"), size=(400, 300),
                                ready=all_done, timeout=90, settle=1.0)

    tabs = [threading.Thread(target=open_tab, args=(i,)) for i in range(3)]
    for t in tabs:
        t.start()
    for t in tabs:
        t.join()
    assert all(results), "not every tab received its full-resolution frame while the others were open"
    assert len(seen) >= 3
    for i in range(3):
        img = imageio.imread(tmp_path / f"tab{i}.png")[..., :3].astype(np.float64)
        assert img[60:280, 30:220].std() > 5, f"tab {i} shows a uniform picture, not the scene"
    deadline = time.time() + 15
    while (viewer.sessions or any(sess.thread.is_alive() for sess in seen.values())) and time.time() < deadline:
        time.sleep(0.1)
    assert not viewer.sessions and not any(sess.thread.is_alive() for sess in seen.values())


def test_save_png_and_path_from_a_session(viewer):
    """The page's buttons, called as their handlers do: a PNG of the view, a path JSON."""

    class FakeCamera:  # what viser's camera handle gives: OpenCV-style wxyz, position, fov, aspect
        wxyz, position = c2w_to_viser(viewer.poses[1])
        fov, aspect = viewer.fov0, 4 / 3

    class FakeClient:
        client_id, camera = -1, FakeCamera()

        def add_notification(self, *a, **k):
            pass

    from viewer.render import ClientSession
    session = ClientSession(FakeClient(), viewer.renderer, {"max_width": 24, "frame_time": 0.2, "mode": "depth"})
    png = viewer.save_png(session)
    assert imageio.imread(png).shape == (18, 24, 3) and Path(png).parent == Path(viewer.out_dir)
    session.keyframes = [{"c2w": viewer.poses[0], "fov_y": 0.7}, {"c2w": viewer.poses[1], "fov_y": 0.7}]
    path = read_path(viewer.save_path(session, seconds=0.5, fps=6))
    assert len(path["poses"]) == 3 and path["img_wh"] == (24, 18)


# ---------------------------------------------------------------- eval.py --path_json and output folders


def test_eval_path_json_equals_the_viewer_render(viewer, lego_ckpt, tmp_path, monkeypatch):
    import eval as eval_mod

    keys = [{"c2w": viewer.poses[0], "fov_y": 0.8}, {"c2w": viewer.poses[3], "fov_y": 0.6}]
    write_path(str(tmp_path / "fly.json"), make_path(keys, (20, 14), fps=4, seconds=0.75))  # 3 frames
    monkeypatch.chdir(tmp_path)
    eval_mod.main(["--ckpt_path", str(lego_ckpt[0]), "--path_json", str(tmp_path / "fly.json"), "--no_depth"])
    out = tmp_path / "results" / "blender" / "lego" / "fly"  # results/{dataset}/{scene}/{json stem}
    assert sorted(p.name for p in out.glob("*.png")) == ["000.png", "001.png", "002.png"]
    assert (out / "lego.gif").is_file() and (out / "lego.mp4").is_file()
    assert json.loads((out / "render_info.json").read_text())["fps"] == 4  # the path's fps
    path = read_path(str(tmp_path / "fly.json"))
    for i, (c2w, K) in enumerate(zip(path["poses"], path["Ks"])):
        fov = 2 * math.atan(7 / float(K[1, 1]))
        mine = viewer.renderer.render(c2w, fov, (20, 14))["rgb"].numpy()
        theirs = imageio.imread(out / f"{i:03d}.png").astype(np.float64) / 255
        assert np.abs(mine - theirs).max() <= 1 / 255 + 1e-6  # PNG rounding only


def test_eval_splits_get_their_own_folders(demo_ckpt, tmp_path, monkeypatch):
    """`eval.py --split test` then `--split val` (default folders): both runs' files stay."""
    import eval as eval_mod

    monkeypatch.chdir(tmp_path)
    base = ["--ckpt_path", str(demo_ckpt[0]), "--no_depth", "--img_wh", "8", "8", "--scene_name", "demo"]
    eval_mod.main(base + ["--split", "test"])
    eval_mod.main(base + ["--split", "val"])
    for split, n in (("test", 8), ("val", 4)):
        folder = tmp_path / "results" / "blender" / "demo" / split
        assert json.loads((folder / "metrics.json").read_text())["n_views"] == n
        assert len(list(folder.glob("*.png"))) == n
    with pytest.raises(SystemExit) as exc:
        eval_mod.main(base + ["--split", "test", "--path_json", "x.json"])
    assert exc.value.code == 2


# ---------------------------------------------------------------- train.py --viewer


def test_live_callback_serves_and_refreshes_a_weight_copy(demo_dir):
    """The callback on a stand-in training module: it serves the page from its own copy of the
    weights, copies new weights only while a tab is open, and stops cleanly."""
    from datasets import make_dataset
    from models import build_fields
    from viewer.callback import ViewerCallback

    h = Namespace(dataset_name="blender", root_dir=str(demo_dir), img_wh=[16, 16], spheric_poses=False,
                  white_back=True, llff_holdout=8, net_depth=2, net_width=16, N_emb_xyz=4, N_emb_dir=2,
                  N_samples=8, N_importance=0, use_disp=False, fast=False, chunk=4096, aabb=None)

    class Module:  # what the callback reads from NeRFSystem
        train_dataset = make_dataset(h, "train")
        fields = build_fields(h)
        hparams = {k: v for k, v in vars(h).items()}
        device = torch.device("cpu")

    class Trainer:
        global_rank, global_step = 0, 10

    cb = ViewerCallback(port=free_port(), every=5, out_dir="unused")
    cb.on_fit_start(Trainer(), Module())
    try:
        copy = cb.renderer.fields["coarse"]
        assert copy is not Module.fields["coarse"]
        with torch.no_grad():
            for p in Module.fields["coarse"].parameters():
                p.add_(1.0)
        cb.on_train_batch_end(Trainer(), Module(), None, None, 0)  # no tab open: nothing copied
        assert cb.renderer.weights_version == 0
        cb.server.sessions[0] = type("S", (), {"touch": lambda self: None})()  # a tab is open
        cb.on_train_batch_end(Trainer(), Module(), None, None, 0)
        assert cb.renderer.weights_version == 1
        for a, b in zip(copy.parameters(), Module.fields["coarse"].parameters()):
            assert torch.equal(a, b)
        cb.server.sessions.pop(0)
    finally:
        cb.close()
    assert cb.server is None


# ---------------------------------------------------------------- bad input


def run_viewer_cli(argv, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("viewer_cli", Path(__file__).resolve().parents[1] / "viewer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exc:
        module.main(argv)
    err = capsys.readouterr().err
    return exc.value.code, err


def test_bad_input(demo_ckpt, tmp_path, capsys):
    ckpt = str(demo_ckpt[0])
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = run_viewer_cli(["--ckpt_path", ckpt, "--port", str(port)], capsys)
    assert code == 2 and f"port {port} is in use" in err and "--port " in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    free = str(free_port())
    code, err = run_viewer_cli(["--ckpt_path", str(tmp_path / "nope.ckpt"), "--port", free], capsys)
    assert code == 2 and "checkpoint not found" in err  # eval.py's loader and message
    code, err = run_viewer_cli(["--ckpt_path", ckpt, "--port", free, "--mesh", str(tmp_path / "m.ply")], capsys)
    assert code == 2 and "m.ply: file not found" in err
    (tmp_path / "notes.ply").write_text("not a mesh\n")
    code, err = run_viewer_cli(["--ckpt_path", ckpt, "--port", free, "--mesh", str(tmp_path / "notes.ply")], capsys)
    assert code == 2 and "notes.ply is not a triangle mesh" in err and "Traceback" not in err


def test_viewer_render_at_a_training_camera_equals_eval(viewer, lego_ckpt):
    """Independent of viewer.camera.view_dataset: the browser's camera at training view 0 (through
    the OpenCV round trip), at the training size and field of view, renders what eval.py renders
    from the dataset's own rays for that view."""
    from datasets import make_dataset
    from eval import render_view

    r = viewer.renderer
    ds = make_dataset(r.h, "train")
    c2w = viser_to_c2w(*c2w_to_viser(ds.poses[0].numpy()))
    mine = r.render(c2w, viewer.fov0, ds.img_wh)["rgb"]
    ref = render_view(r.fields, ds, 0, r.h, "cpu")[0]
    assert (mine - ref).abs().max() < 1e-4


def test_a_real_mesh_is_shown(lego_ckpt, tmp_path):
    """--mesh with a real triangle mesh: read whole and put in the page's scene (toggled in the GUI)."""
    import open3d

    box = open3d.geometry.TriangleMesh.create_box(0.5, 0.5, 0.5)
    open3d.io.write_triangle_mesh(str(tmp_path / "box.ply"), box)
    from viewer.server import load_mesh

    verts, faces = load_mesh(str(tmp_path / "box.ply"))
    assert verts.shape == (8, 3) and faces.shape == (12, 3)
    args, explicit = parse_args(get_viewer_parser(), ["--ckpt_path", str(lego_ckpt[0]), "--port", str(free_port()),
                                                      "--host", "127.0.0.1", "--max_width", "32",
                                                      "--mesh", str(tmp_path / "box.ply"), "--out_dir", str(tmp_path)])
    server = build_viewer(args, explicit)
    try:
        assert server.has_mesh
    finally:
        server.stop()

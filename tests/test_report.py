"""export/report.py: the capture's report.html is one file. Its pictures are inside it as ``data:``
URIs (only the video and the mesh stay beside it), and its training curve says what it averages: the
few validation views (``--val_num``), not all the held-out ones.

A capture folder is made by hand here (24 photos on a circle, 3 held out, renders, a TensorBoard run,
the checkpoint's flags), so the page is checked in seconds; tests/test_capture.py checks the page a
real ``capture.py`` run writes.
"""
import base64
import json
import re
import shutil
from html.parser import HTMLParser

import cv2
import numpy as np
import torch

from export.report import psnr_plot, validation_views, write_report
from utils.io import write_pfm

W, H, N = 24, 16, 24  # 24 photos: every 8th held out -> 3 held-out views


class Tags(HTMLParser):
    """``(tag, {attribute: value})`` of every start tag of a page."""

    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def fake_capture(out, val_num=2):
    """What write_report reads in a capture folder ``out``; returns the manifest."""
    rng = np.random.default_rng(0)
    images = out / "scene" / "images"
    images.mkdir(parents=True)
    rows = []
    for i in range(N):
        cv2.imwrite(str(images / f"{i:03d}.png"), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
        a = 2 * np.pi * i / N
        centre = np.array([4 * np.cos(a), 4 * np.sin(a), 0.5])
        back = centre / np.linalg.norm(centre)  # the camera looks at the origin
        right = np.cross([0.0, 0.0, 1.0], back)
        right /= np.linalg.norm(right)
        up = np.cross(back, right)
        pose = np.stack([-up, right, back, centre, [H, W, 20.0]], 1)  # LLFF columns: down, right, back, centre, hwf
        rows.append(np.concatenate([pose.ravel(), [1.0, 8.0]]))
    np.save(out / "scene" / "poses_bounds.npy", np.stack(rows))

    test = out / "results" / "test"
    (test / "depth").mkdir(parents=True)
    held = list(range(0, N, 8))
    per_view = [{"index": k, "image": f"images/{i:03d}.png", "psnr": 20.0 + k, "ssim": 0.5} for k, i in enumerate(held)]
    for k in range(len(held)):
        cv2.imwrite(str(test / f"{k:03d}.png"), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    write_pfm(str(test / "depth" / "000.pfm"), np.linspace(1, 5, H * W, dtype=np.float32).reshape(H, W))
    metrics = {"psnr": 21.0, "ssim": 0.5, "n_views": len(held), "per_view": per_view}
    (test / "metrics.json").write_text(json.dumps(metrics))
    (test / "render_info.json").write_text(json.dumps({"img_wh": [W, H], "depth_range": [1.0, 5.0]}))
    path = out / "results" / "path"
    path.mkdir(parents=True)
    cv2.imwrite(str(path / "000.png"), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))

    (out / "ckpts" / "capture").mkdir(parents=True)
    torch.save({"hyper_parameters": {"val_num": val_num, "unbounded": False}}, out / "ckpts" / "capture" / "last.ckpt")
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / "logs" / "capture" / "version_0"))
    for step in range(0, 50, 10):
        writer.add_scalar("train/psnr", 15 + step / 10, step, walltime=1000.0 + 6 * step)
        writer.add_scalar("val/psnr", 14 + step / 10, step, walltime=1000.5 + 6 * step)
    writer.close()
    return {"name": "toy", "repo": "/repo", "input": {"kind": "video", "path": "/clips/toy.mp4"},
            "plan": {"train": {"n_views": N, "n_held_out": len(held), "img_wh": [W, H], "train_seconds": 60}},
            "stages": {"poses": {"seconds": 3, "commands": ["python imgs2poses.py scene"]},
                       "mesh": {"skipped": "no surface at this threshold"}}}


def decoded(uri):
    """The picture of a ``data:image/...;base64,`` URI, as an ``(H, W, 3)`` array."""
    m = re.fullmatch(r"data:image/(png|jpeg|gif);base64,([A-Za-z0-9+/=]+)", uri)
    assert m, uri[:80]
    img = cv2.imdecode(np.frombuffer(base64.b64decode(m.group(2)), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, uri[:80]
    return img


def test_report_is_one_file_with_its_pictures_inside(tmp_path):
    out = tmp_path / "toy"
    manifest = fake_capture(out)
    (out / "report").mkdir()  # the picture folder of a report written before pages were one file
    (out / "report" / "psnr.png").write_bytes(b"old")
    page_path = write_report(str(out), manifest)
    assert page_path == str(out / "report.html")
    assert sorted(p.name for p in out.iterdir()) == ["ckpts", "logs", "report.html", "results", "scene"]

    page = (out / "report.html").read_text()
    parser = Tags()
    parser.feed(page)
    imgs = [a for tag, a in parser.tags if tag == "img"]
    assert len(imgs) == 3 + 2  # 3 held-out strips, the curve, the cameras (no mesh: skipped)
    assert all(a["src"].startswith("data:image/") for a in imgs), [a["src"][:40] for a in imgs]
    assert not re.search(r"<img[^>]*src=['\"](?!data:)", page)  # no picture from a file beside the page
    video = next(a for tag, a in parser.tags if tag == "video")
    assert video["src"] == "results/path/toy.mp4" and video["poster"].startswith("data:image/png;base64,")
    beside = sorted({v for _, a in parser.tags for k, v in a.items() if k in ("src", "href", "poster")
                     and not v.startswith("data:")})
    assert beside == ["results/path/toy.gif", "results/path/toy.mp4"]  # only the video stays beside it

    by_alt = {a["alt"]: a["src"] for a in imgs}
    strip = decoded(by_alt["held-out view images/000.png"])
    assert strip.shape == (H * 3, W * 3 * 3, 3)  # ground truth | render | depth, enlarged 3 times
    plot = decoded(by_alt["PSNR during training, validated on 2 of the 3 held-out views"])
    assert plot.shape[0] > 200 and plot.std() > 10  # a drawn figure
    assert decoded(by_alt["cameras seen from above"]).shape[0] > 200
    assert decoded(video["poster"]).shape == (H, W, 3)

    # the curve says what it averages, and that the held-out mean above is another number
    caption = re.search(r"<p id='psnr-curve'>(.*?)</p>", page).group(1)
    assert "the mean over 2 of the 3 held-out views" in caption, caption
    assert "--val_num 2" in caption and "val/psnr" in caption and "over all 3 held-out views" in caption, caption


def test_curve_names_its_views(tmp_path, monkeypatch):
    """The plot's title and legend say how many views the validation PSNR averages."""
    fake_capture(tmp_path / "toy")
    drawn = {}
    monkeypatch.setattr("utils.visualization.plot_psnr_curves",
                        lambda curves, path, **kw: drawn.update(curves=curves, **kw) or path.write(b"png"))
    assert psnr_plot(str(tmp_path / "toy"), validation_views(2, 3)) == b"png"
    assert drawn["title"] == "PSNR during training, validated on 2 of the 3 held-out views"
    assert sorted(drawn["curves"]) == ["training batches", "validation: mean of 2 of the 3 held-out views"]
    assert drawn["ylabel"] == "PSNR (dB)" and drawn["xlabel"] == "training time (minutes)"
    assert [round(t * 60) for t, _ in drawn["curves"]["training batches"]] == [0, 60, 120, 180, 240]

    assert validation_views(8, 3) == "all 3 held-out views"  # --val_num above the held-out count
    assert validation_views(1, 3) == "1 of the 3 held-out views"
    assert validation_views(None, 3) == "a few of the 3 held-out views"  # flags without --val_num


def test_no_curve_without_validation(tmp_path):
    out = tmp_path / "toy"
    manifest = fake_capture(out)
    shutil.rmtree(out / "logs")  # a training that logged nothing
    page = open(write_report(str(out), manifest)).read()
    assert "no validation was logged" in page and "psnr-curve" not in page

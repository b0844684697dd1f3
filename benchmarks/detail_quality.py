"""Detail at the size people look at: held-out views scored at a named size, with PSNR, SSIM and GMSD.

    python benchmarks/detail_quality.py --ckpt_path ckpts/beer/last.ckpt --view_wh 360 640 --thumbnail 72 128 \\
        --out benchmarks/results/beer_detail

Renders every held-out view of the checkpoint's scene (``--split``, default test) at ``--view_wh``
with the one renderer (``eval.render_view``), and scores it against the photos at that size (read
from the originals, as eval.py reads them). ``--thumbnail W H``: also scores "the perfect thumbnail",
the photos at W x H (what a model trained at that size sees) scaled back up with bicubic
interpolation, the bar a model of that training size has to beat. Without ``--ckpt_path`` it scores
the thumbnail alone (``--root_dir``, ``--dataset_name`` and the scene's flags name the scene).

GMSD (gradient magnitude similarity deviation, ``metrics.gmsd``) rises as edges blur; lower is
better. PSNR at a large size hides blur on smooth walls and tables; GMSD does not.

Prints one JSON line per method (means over the views, and each view's scores) and writes
``--out``/crops.png: for the views with the most edges, a crop of a third of the frame around the
photo's sharpest region, photo | render | thumbnail, at the view size, pixel for pixel. Issue 30.
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from datasets import make_dataset  # noqa: E402
from eval import get_eval_parser, render_view  # noqa: E402
from metrics import image_scores  # noqa: E402
from models import load_model  # noqa: E402
from opt import check_opts, parse_args  # noqa: E402
from utils.errors import UserError, cli_main  # noqa: E402
from utils.visualization import sharpest_crop, to_uint8, upscale  # noqa: E402


def main(argv=None):
    parser = get_eval_parser()
    parser.description = __doc__.splitlines()[0]
    parser._option_string_actions["--ckpt_path"].required = False
    d = parser.add_argument_group("detail")
    d.add_argument("--view_wh", nargs=2, type=int, required=True, metavar=("W", "H"), help="the size the views are looked at")
    d.add_argument("--thumbnail", nargs=2, type=int, default=None, metavar=("W", "H"),
                   help="also score the photos at this size scaled back up (the perfect thumbnail)")
    d.add_argument("--crops", type=int, default=3, help="views in the crops picture")
    d.add_argument("--out", default=None, help="folder for crops.png and scores.json (default: none written)")
    h, explicit = parse_args(parser, argv)
    if h.ckpt_path is None and h.thumbnail is None:
        raise UserError("give --ckpt_path (a model to score) or --thumbnail W H (the photos scaled up), or both")
    fields = None
    if h.ckpt_path:
        fields, h, _ = load_model(h, explicit)
    h.split = h.split or "test"
    h.img_wh = list(h.view_wh)
    check_opts(h)
    ds = make_dataset(h, h.split)
    if ds.rgbs is None:
        raise UserError(f"the '{h.split}' split has no photos to score against: pick another with --split")
    W, H = ds.img_wh
    photos = [ds.rgbs[i].view(H, W, 3) for i in range(len(ds.poses))]
    methods = {}
    if fields is not None:
        device = torch.device("cpu")
        with torch.no_grad():
            methods["render"] = [render_view(fields, ds, i, h, device)[0] for i in range(len(photos))]
    if h.thumbnail:
        h.img_wh = list(h.thumbnail)
        small = make_dataset(h, h.split)
        w, hh = small.img_wh
        methods["thumbnail"] = [upscale(small.rgbs[i].view(hh, w, 3), (W, H)) for i in range(len(photos))]
    results = {}
    for name, images in methods.items():
        per_view = [image_scores(img, photo) for img, photo in zip(images, photos)]
        mean = {k: float(np.mean([v[k] for v in per_view])) for k in per_view[0]}
        results[name] = {"method": name, "view_wh": [W, H], "split": h.split, "views": len(per_view),
                         **{k: round(v, 4) for k, v in mean.items()},
                         "per_view": [{k: round(v, 4) for k, v in s.items()} for s in per_view]}
        if name == "thumbnail":
            results[name]["thumbnail_wh"] = list(h.thumbnail)
        print(json.dumps(results[name]), flush=True)
    if h.out:
        import imageio.v2 as imageio

        os.makedirs(h.out, exist_ok=True)
        size = max(8, min(W, H) // 3)
        edges = [float((p[1:] - p[:-1]).abs().mean()) for p in photos]  # the views with the most detail
        rows = []
        for i in sorted(range(len(photos)), key=lambda i: -edges[i])[:h.crops]:
            top, left = sharpest_crop(photos[i], size)
            tiles = [photos[i]] + [methods[m][i] for m in methods]
            gap = torch.ones(size, 4, 3)
            row = []
            for t in tiles:
                row += [t[top:top + size, left:left + size], gap]
            rows.append(torch.cat(row[:-1], 1))
            rows.append(torch.ones(4, rows[-1].shape[1], 3))
        imageio.imwrite(os.path.join(h.out, "crops.png"), to_uint8(torch.cat(rows[:-1], 0)))
        with open(os.path.join(h.out, "scores.json"), "w") as f:
            json.dump({"columns": ["photo", *methods], **results}, f, indent=1)
        print(f"crops (photo | {' | '.join(methods)}) in {os.path.join(h.out, 'crops.png')}")


if __name__ == "__main__":
    cli_main(main)()

"""Portable scenes: keep only what rendering needs from a training checkpoint.

    python save_weights_only.py --ckpt_path ckpts/lego/last.ckpt [--out lego.pth]

writes ``ckpts/lego/last_weights.pth`` (default: ``<checkpoint stem>_weights.pth`` beside the
checkpoint): ``{"format", "state_dict", "hparams", "extras"}`` with the float32 network weights
(``nerf_coarse.*``, ``nerf_fine.*``; about 4.8 MB for the default 8x256 coarse + fine), the
checkpoint's flags, and when the scene folder is readable, the cameras of its render path
(``extras["path"]``), so that ``eval.py --split path`` works from this one file. eval.py and
extract_mesh.py load it like a checkpoint.
"""
import argparse
import os
import sys

import torch

from opt import HelpFormatter
from utils.checkpoint import FIELD_PREFIXES, WEIGHTS_FORMAT, load_checkpoint
from utils.errors import UserError, cli_main


def default_out(ckpt_path):
    stem, _ = os.path.splitext(ckpt_path)
    return stem + "_weights.pth"


def render_path_state(hparams):
    """``camera_state()`` of the scene's render path (LLFF spiral or circle, Blender turntable),
    as tensors, or None when its folder cannot be read here (the file then needs ``--root_dir``)."""
    from datasets import dataset_dict, make_dataset
    from opt import get_parser

    root = hparams.get("root_dir")
    if hparams.get("dataset_name") not in dataset_dict or not root or not os.path.isdir(root):
        return None
    flags = get_parser(training=False).parse_args([])  # defaults for anything the checkpoint lacks
    vars(flags).update(hparams)
    try:
        state = make_dataset(flags, "path").camera_state()
    except UserError as err:
        print(f"warning: render path not stored ({err})", file=sys.stderr)
        return None
    # tensors, not numpy arrays: loadable with torch.load(weights_only=True) as well
    return {k: torch.as_tensor(v) if hasattr(v, "shape") else v for k, v in state.items()}


def weights_only(ckpt):
    """The dict written to disk (see the module docstring) from a ``load_checkpoint`` result."""
    prefixes = tuple(p + "." for p in FIELD_PREFIXES.values())
    # clone: a slice of a larger storage would otherwise be saved with all of that storage
    state = {k: v.detach().to(torch.float32).clone().contiguous()
             for k, v in ckpt["state_dict"].items() if k.startswith(prefixes)}
    extras = dict(ckpt["extras"]) if isinstance(ckpt["extras"], dict) else {}
    path = render_path_state(ckpt["hparams"])
    if path is not None:
        extras["path"] = path
    return {"format": WEIGHTS_FORMAT, "state_dict": state, "hparams": dict(ckpt["hparams"]), "extras": extras}


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--ckpt_path", type=str, required=True, help="training checkpoint (.ckpt)")
    parser.add_argument("--out", type=str, default=None,
                        help="output file (default: <checkpoint stem>_weights.pth beside the checkpoint)")
    args = parser.parse_args(argv)
    ckpt = load_checkpoint(args.ckpt_path)
    out = args.out or default_out(args.ckpt_path)
    if os.path.abspath(out) == os.path.abspath(args.ckpt_path):
        raise UserError(f"--out {out} is the checkpoint itself: choose another file name")
    if os.path.dirname(os.path.abspath(out)) and not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        raise UserError(f"--out {out}: folder {os.path.dirname(out)} does not exist")
    data = weights_only(ckpt)
    tmp = out + ".partial"
    try:
        torch.save(data, tmp)
        os.replace(tmp, out)  # never leave a truncated file under the final name
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    n = sum(v.numel() for v in data["state_dict"].values())
    path_note = ", with its render path" if "path" in data["extras"] else ""
    print(f"{out}: {n:,} parameters, {os.path.getsize(out) / 1e6:.2f} MB{path_note}")


if __name__ == "__main__":
    main()

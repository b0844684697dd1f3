"""Ray datasets, one per scene format. ``dataset_dict`` maps ``--dataset_name`` to a class."""
import os

from datasets.blender import BlenderDataset
from datasets.llff import LLFFDataset
from utils.errors import UserError

dataset_dict = {"blender": BlenderDataset, "llff": LLFFDataset}


def dataset_kwargs(hparams):
    """Reader options that come from flags (shared by train.py, eval.py and extract_mesh.py)."""
    kwargs = {}
    white_back = getattr(hparams, "white_back", None)
    if hparams.dataset_name == "blender":
        kwargs["white_back"] = True if white_back is None else bool(white_back)
    else:
        kwargs["white_back"] = False if white_back is None else bool(white_back)
        kwargs["spheric_poses"] = bool(getattr(hparams, "spheric_poses", False))
        kwargs["unbounded"] = bool(getattr(hparams, "unbounded", False))
        kwargs["spheric_bounds"] = getattr(hparams, "spheric_bounds", "seed")
        kwargs["ndc_viewdirs"] = getattr(hparams, "ndc_viewdirs", "ndc")
        kwargs["holdout"] = int(getattr(hparams, "llff_holdout", 8))
    return kwargs


def make_dataset(hparams, split):
    """The dataset named by ``hparams.dataset_name`` for ``split``; UserError if it cannot be read."""
    if hparams.dataset_name not in dataset_dict:
        raise UserError(f"unknown --dataset_name '{hparams.dataset_name}': choose one of {sorted(dataset_dict)}")
    if not hparams.root_dir or not os.path.isdir(hparams.root_dir):
        raise UserError(f"--root_dir {hparams.root_dir} is not a folder: point it at the scene to use")
    cls = dataset_dict[hparams.dataset_name]
    return cls(hparams.root_dir, split=split, img_wh=tuple(hparams.img_wh), **dataset_kwargs(hparams))

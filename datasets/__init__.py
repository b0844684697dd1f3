"""Ray datasets, one per scene format. ``dataset_dict`` maps ``--dataset_name`` to a class;
``find_dataset_name`` tells the format from the files of a scene folder."""
import os

from datasets.blender import BlenderDataset
from datasets.llff import LLFFDataset
from datasets.nerfstudio import NerfstudioDataset
from utils.errors import UserError

dataset_dict = {"blender": BlenderDataset, "llff": LLFFDataset, "nerfstudio": NerfstudioDataset}

# what each format's folder holds, in the order they are looked for: a folder imgs2poses.py wrote
# has transforms.json beside sparse/0 and poses_bounds.npy, and this project's own reader of
# those (LLFF: bounds from the points each photo sees, NDC for forward-facing captures) comes first
SIGNS = (("transforms_train.json", "blender"), ("poses_bounds.npy", "llff"), ("sparse", "llff"),
         ("transforms.json", "nerfstudio"))


def find_dataset_name(root_dir):
    """The ``--dataset_name`` of the scene in ``root_dir`` and the file that tells it; UserError
    listing what was looked for when nothing matches."""
    if not root_dir or not os.path.isdir(root_dir):
        raise UserError(f"--root_dir {root_dir} is not a folder: point it at the scene to use")
    for name, dataset in SIGNS:
        if os.path.exists(os.path.join(root_dir, name)):
            return dataset, name
    looked = ", ".join(f"{n}{'/' if n == 'sparse' else ''} ({d})" for n, d in SIGNS)
    raise UserError(f"{root_dir} holds no scene this project reads: looked for {looked}; point --root_dir at "
                    "a scene folder (or compute poses for your photos with imgs2poses.py)")


def resolve_dataset_name(hparams, required=True):
    """Set ``hparams.dataset_name`` from ``hparams.root_dir`` when it is None (printing one line);
    an explicit name (or a checkpoint's) is kept. ``required=False``: leave it None when ``root_dir``
    is no folder (a model file that carries its cameras). Returns hparams."""
    root = getattr(hparams, "root_dir", None)
    if not required and not (root and os.path.isdir(root)):
        return hparams
    if getattr(hparams, "dataset_name", None) is None:
        hparams.dataset_name, sign = find_dataset_name(hparams.root_dir)
        print(f"dataset: {hparams.dataset_name} ({sign} in {hparams.root_dir}; --dataset_name sets it)")
    return hparams


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
    """The dataset named by ``hparams.dataset_name`` (found from the folder when None) for ``split``;
    UserError if it cannot be read."""
    resolve_dataset_name(hparams)
    if hparams.dataset_name not in dataset_dict:
        raise UserError(f"unknown --dataset_name '{hparams.dataset_name}': choose one of {sorted(dataset_dict)}")
    if not hparams.root_dir or not os.path.isdir(hparams.root_dir):
        raise UserError(f"--root_dir {hparams.root_dir} is not a folder: point it at the scene to use")
    cls = dataset_dict[hparams.dataset_name]
    return cls(hparams.root_dir, split=split, img_wh=tuple(hparams.img_wh), **dataset_kwargs(hparams))

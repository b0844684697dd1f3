"""Networks, encodings, the volume renderer and the fast path's occupancy grid."""
import math

import torch

from models import kernels
from models.contraction import CONTRACTED_RADIUS
from models.nerf import NeRF
from models.ngp import NGPField
from models.occupancy import OccupancyGrid
from utils.checkpoint import load_checkpoint, load_fields_state, merge_hparams


def setup_fast_path(hparams, train_ds):
    """What the fast path needs before ``build_fields`` (train.py and the benchmarks): the scene box
    ``hparams.aabb`` from the training cameras unless ``--aabb`` set it, and TF32 matmuls on GPUs.
    Does nothing without ``hparams.fast``."""
    if not hparams.fast:
        return
    if getattr(hparams, "unbounded", False):  # the grids cover contracted space, whatever --aabb says
        r = CONTRACTED_RADIUS
        hparams.aabb = [-r, -r, -r, r, r, r]
    elif getattr(hparams, "aabb", None) is None:
        hparams.aabb = train_ds.scene_aabb()
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 matmuls: the hash grid's MLPs do not need fp32


def build_fields(hparams, cameras=None):
    """What the renderer needs, as the flags describe it (``hparams``: namespace or dict).

    Vanilla (the seed's NeRF): ``{"coarse": NeRF, "fine": NeRF}``, without ``"fine"`` when
    ``N_importance == 0``. Fast path (``--fast``, ``aabb`` set): ``{"coarse": NGPField,
    "occupancy": OccupancyGrid}``; ``models.rendering.render_rays`` then marches rays through the grid.
    ``unbounded``: the fields contract points and the grid covers contracted space
    (``models.contraction``). ``cameras`` (the training dataset, fast path only): grid cells no training camera sees start
    (and stay) empty; leave it out when the grid comes from a checkpoint.
    ``kernels`` (fast path): ``models.kernels.set_mode``, for every field in this process.
    ``appearance_dim > 0``: each field owns a code per training image (``models.appearance``); their
    number is ``n_train_images`` (train.py stores it in the flags, so checkpoints carry it), or
    without it the number of ``cameras``' images (the benchmarks build fields that way).
    """
    get = hparams.get if isinstance(hparams, dict) else lambda k, d=None: getattr(hparams, k, d)
    appearance = {}
    if get("appearance_dim", 0):
        n_images = get("n_train_images") or (len(cameras.poses) if cameras is not None else 0)
        if not n_images:
            raise ValueError("appearance codes need hparams.n_train_images (train.py sets it from the dataset)")
        appearance = dict(appearance_dim=int(get("appearance_dim")), n_images=int(n_images))
    if get("fast", False):
        kernels.set_mode(get("kernels", "auto"))  # a process-wide choice: every hash grid takes it
        aabb = get("aabb")
        if aabb is None:
            raise ValueError("the fast path needs hparams.aabb (train.py sets it from the dataset)")
        lo, hi = aabb[:3], aabb[3:]
        step = math.dist(lo, hi) / get("march_steps", 1024)
        unbounded = bool(get("unbounded", False))
        field = NGPField([lo, hi], n_levels=get("hash_levels", 16), log2_size=get("hash_log2_size", 19),
                         max_res=get("hash_max_res", 2048), contract=unbounded, **appearance)
        grid = OccupancyGrid([lo, hi], get("grid_resolution", 128), step, contracted=unbounded,
                             decay=get("grid_decay", 0.95), alpha_threshold=get("alpha_threshold", 0.0))
        if cameras is not None and not cameras.ndc:  # NDC: every cell is in some camera's frustum
            # a lens sees past its pinhole frustum: frustum_Ks holds its rays (None: a fisheye past 90 degrees)
            Ks = cameras.frustum_Ks() if hasattr(cameras, "frustum_Ks") else cameras.Ks
            if Ks is not None:
                grid.mark_invisible(Ks, cameras.poses.cpu(), cameras.img_wh, near=cameras.near)
        return {"coarse": field, "occupancy": grid}
    kwargs = dict(depth=get("net_depth", 8), width=get("net_width", 256), n_freqs_xyz=get("N_emb_xyz", 10),
                  n_freqs_dir=get("N_emb_dir", 4), contract=bool(get("unbounded", False)), **appearance)
    fields = {"coarse": NeRF(**kwargs)}
    if get("N_importance", 0) > 0:
        fields["fine"] = NeRF(**kwargs)
    return fields


def load_model(hparams, explicit=(), device="cpu"):
    """The one way eval.py, extract_mesh.py and test.ipynb get a trained model.

    Reads ``hparams.ckpt_path`` (a training checkpoint or a weights-only file), merges its flags
    (``utils.checkpoint.merge_hparams``), builds the fields and loads their weights.

    Returns:
        fields (dict level -> NeRF, in eval mode on ``device``), the merged hparams, and the
        ``utils.checkpoint.load_checkpoint`` dict (for ``extras``).
    """
    ckpt = load_checkpoint(hparams.ckpt_path)
    hparams = merge_hparams(hparams, set(explicit), ckpt)
    fields = build_fields(hparams)
    load_fields_state(fields, ckpt["state_dict"], source=hparams.ckpt_path)
    for f in fields.values():
        f.to(device).eval()
    return fields, hparams, ckpt

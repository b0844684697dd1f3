"""Command-line flags: the single parser shared by train.py, eval.py and extract_mesh.py.

Every flag of the seed (kwea123/nerf_pl) keeps its name and default; eval.py and
extract_mesh.py add their own flags to ``get_parser()`` instead of redeclaring these.
"""
import argparse
import sys

from utils.errors import UserError

DATASETS = ("blender", "llff", "nerfstudio")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, unless its help already says what the default is."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS) or isinstance(action.default, bool):
            return text
        return super()._get_help_string(action)


def get_parser(description="Train a NeRF (PyTorch Lightning).", training=True):
    """The shared parser. ``training=False`` drops the training-only flags (eval, mesh)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=HelpFormatter, allow_abbrev=False
    )
    data = parser.add_argument_group("data")
    data.add_argument("--root_dir", type=str, default=None,
                      help="scene folder (Blender: transforms_*.json; LLFF: poses_bounds.npy or sparse/0 + images/; "
                           "nerfstudio / instant-ngp: transforms.json + images/)")
    data.add_argument("--dataset_name", type=str, default=None, choices=DATASETS,
                      help="dataset format (default: found from the files in --root_dir: transforms_train.json "
                           "-> blender, poses_bounds.npy or sparse/ -> llff, transforms.json -> nerfstudio)")
    data.add_argument("--img_wh", nargs=2, type=int, default=[800, 800],
                      help="resolution (width height) the images are resized to")
    data.add_argument("--spheric_poses", "--spheric", dest="spheric_poses", action="store_true", default=False,
                      help="LLFF: the scene is 360 degrees inward-facing (metric rays, no NDC; nerfstudio scenes "
                           "always are)")
    data.add_argument("--unbounded", action="store_true", default=False,
                      help="LLFF, nerfstudio: a 360-degree capture with a room or landscape behind the object (implies "
                           "--spheric_poses): a foreground ball holding the cameras, mip-NeRF 360's contraction "
                           "beyond it, samples linear in depth inside and in disparity outside")
    data.add_argument("--spheric_bounds", default="seed", choices=("seed", "full"),
                      help="LLFF with --spheric_poses: ray range. seed: nearest depth bound to min(8 x it, the "
                           "farthest); full: 0.9 x the nearest to 1.1 x the farthest (see benchmarks/RESULTS.md)")
    data.add_argument("--ndc_viewdirs", default="ndc", choices=("ndc", "world"),
                      help="LLFF forward-facing (NDC) scenes: the view direction fields see. ndc: the NDC ray "
                           "direction (the seed); world: the unit world-space direction (the original NeRF)")
    data.add_argument("--llff_holdout", type=int, default=8,
                      help="LLFF, nerfstudio (without split lists): hold out every N-th view for val/test "
                           "(0: train on all views)")
    data.add_argument("--white_back", type=int, default=None, choices=(0, 1),
                      help="composite on a white background (default: 1 for blender, 0 for llff and nerfstudio)")

    model = parser.add_argument_group("model")
    model.add_argument("--N_samples", type=int, default=64, help="number of coarse samples per ray")
    model.add_argument("--N_importance", type=int, default=128,
                       help="number of additional fine samples per ray (0: coarse network only)")
    model.add_argument("--use_disp", action="store_true", default=False,
                       help="sample linearly in disparity rather than depth")
    model.add_argument("--net_depth", type=int, default=8, help="number of layers of each MLP")
    model.add_argument("--net_width", type=int, default=256, help="width of each MLP layer")
    model.add_argument("--N_emb_xyz", type=int, default=10, help="positional-encoding frequencies for xyz")
    model.add_argument("--N_emb_dir", type=int, default=4, help="positional-encoding frequencies for directions")
    model.add_argument("--appearance_dim", type=int, default=0,
                       help="per-image appearance codes (NeRF-W): each training image learns a code of N floats "
                            "that the colour head sees (not the density), to absorb exposure and white-balance "
                            "drift between frames; held-out views, render paths, the viewer and mesh colours use "
                            "the mean training code. 0: off (default)")
    fast = parser.add_argument_group("fast path (--fast): hash-grid field, occupancy grid, ray marching")
    fast.add_argument("--fast", action="store_true", default=False,
                      help="train the fast path instead of the seed's NeRF (defaults: FAST_PRESET in opt.py, and FAST_CPU_PRESET when training on the CPU, with FAST_CPU_UNBOUNDED_PRESET for --unbounded)")
    fast.add_argument("--aabb", nargs=6, type=float, default=None,
                      help="scene box xmin ymin zmin xmax ymax zmax (default: from the dataset)")
    fast.add_argument("--grid_resolution", type=int, default=128, help="occupancy grid cells per side")
    fast.add_argument("--grid_decay", type=float, default=0.95,
                      help="occupancy grid: each refresh (every 16 steps) keeps this share of a cell's old opacity "
                           "(lower: empty space is pruned sooner; the CPU preset for --unbounded: 0.8)")
    fast.add_argument("--alpha_threshold", type=float, default=0.0,
                      help="ray marching skips samples whose opacity (alpha) is below this, in training and rendering "
                           "alike (nerfacc's alpha_thre; 0: keep every sample in an occupied cell; the CPU preset for "
                           "--unbounded: 0.01)")
    fast.add_argument("--march_steps", type=int, default=1024,
                      help="ray-marching steps along the scene box diagonal (step = diagonal / this)")
    fast.add_argument("--hash_levels", type=int, default=16, help="hash encoding levels")
    fast.add_argument("--hash_log2_size", type=int, default=19, help="log2 of the hash table size per level")
    fast.add_argument("--hash_max_res", type=int, default=2048, help="finest hash grid resolution")
    fast.add_argument("--kernels", type=str, default="auto", choices=("auto", "eager"),
                      help="auto: the hash encoding as one fused C++ loop on the CPU (built once with g++, ~30 s "
                           "inside --max_time, then cached; one line and the eager code where it cannot be "
                           "built); eager: always the PyTorch code. Same results (models/kernels.py)")
    model.add_argument("--chunk", type=int, default=32 * 1024,
                       help="rays rendered at once (lower it if you run out of memory)")

    if training:
        train = parser.add_argument_group("training")
        train.add_argument("--perturb", type=float, default=1.0, help="factor to perturb coarse samples (0: none)")
        train.add_argument("--noise_std", type=float, default=1.0,
                           help="std of the noise added to densities during training (0: none)")
        train.add_argument("--loss_type", type=str, default="mse", choices=("mse",),
                           help="photometric loss on coarse and fine colours")
        train.add_argument("--distortion_loss", type=float, default=0.0,
                           help="--fast: weight of mip-NeRF 360's distortion loss (it pulls each ray's weight onto "
                                "one surface; 0: off; the CPU preset for --unbounded: 0.001; 0.01 empties the scene; "
                                "benchmarks/RESULTS.md §15, §18)")
        train.add_argument("--batch_size", type=int, default=1024, help="rays per step (per device)")
        train.add_argument("--num_epochs", type=int, default=16,
                           help="epochs; one epoch visits every training ray once")
        train.add_argument("--max_steps", type=int, default=-1,
                           help="stop after this many optimizer steps (-1: train for --num_epochs)")
        train.add_argument("--max_time", type=str, default=None,
                           help="stop training after this long: minutes (e.g. 15 or 7.5) or DD:HH:MM:SS; the final "
                                "validation and checkpoint are still written. With --fast the learning-rate "
                                "decay follows whichever of --max_steps and --max_time runs out first")
        train.add_argument("--num_gpus", type=int, default=1,
                           help="GPUs per node (0, or no GPU present: train on the CPU)")
        train.add_argument("--cpu_processes", type=int, default=1,
                           help="when training on the CPU: number of DDP processes (for testing multi-device runs)")
        train.add_argument("--num_nodes", type=int, default=1, help="number of nodes for multi-node DDP")
        train.add_argument("--precision", type=str, default="32-true",
                           help="Lightning precision, e.g. 32-true, bf16-mixed, 16-mixed")
        train.add_argument("--seed", type=int, default=0, help="random seed")
        train.add_argument("--num_workers", type=int, default=0,
                           help="dataloader workers (rays are in memory, so 0 is usually fastest)")
        train.add_argument("--val_every", type=float, default=1.0,
                           help="validate every N epochs (<1 : fraction of an epoch; >1 rounds to int)")
        train.add_argument("--val_num", type=int, default=8,
                           help="number of validation images rendered at each validation")

        train.add_argument("--ckpt_path", type=str, default=None,
                           help="checkpoint to resume training from (or to start from, see --prefixes_to_ignore)")
        train.add_argument("--prefixes_to_ignore", nargs="+", type=str, default=["loss"],
                           help="with --ckpt_path: weights whose names start with these are not loaded; "
                                "any prefix other than 'loss' loads weights only and starts a new run")

        cams = parser.add_argument_group("camera refinement")
        cams.add_argument("--optimize_cameras", action="store_true", default=False,
                          help="learn a pose correction per training image (SO(3) x R^3 in the camera's frame) "
                               "with the field: for poses from video or photos, which are never exact. eval.py "
                               "then aligns each held-out view's pose (its 6 numbers only, the field frozen) "
                               "before scoring it, and metrics.json says so")
        cams.add_argument("--no_optimize_cameras", dest="optimize_cameras", action="store_false",
                          help="undo an --optimize_cameras given earlier on the line (capture.py passes it for a "
                               "walk around on the CPU)")
        cams.add_argument("--camera_lr", type=float, default=1e-3,
                          help="--optimize_cameras: learning rate of the pose corrections (decays with --lr's schedule)")
        cams.add_argument("--camera_c2f", type=float, default=0.3,
                          help="--optimize_cameras with --fast: share of the run over which the hash grid's fine "
                               "levels fade in (coarse to fine, as BARF), so poses settle before fine detail can "
                               "absorb their error; 0: all levels from the start")

        optim = parser.add_argument_group("optimizer")
        optim.add_argument("--optimizer", type=str, default="adam", choices=("sgd", "adam", "radam", "ranger"),
                           help="optimizer")
        optim.add_argument("--lr", type=float, default=5e-4, help="learning rate")
        optim.add_argument("--momentum", type=float, default=0.9, help="momentum (sgd)")
        optim.add_argument("--weight_decay", type=float, default=0, help="weight decay")
        optim.add_argument("--lr_scheduler", type=str, default="steplr", choices=("steplr", "cosine", "poly"),
                           help="learning-rate schedule, stepped once per epoch")
        optim.add_argument("--warmup_multiplier", type=float, default=1.0,
                           help="lr is multiplied by this after warmup (1: warm up from 0 to --lr)")
        optim.add_argument("--warmup_epochs", type=int, default=0, help="epochs of linear warmup (0: none)")
        optim.add_argument("--decay_step", nargs="+", type=int, default=[20], help="steplr: epochs at which to decay")
        optim.add_argument("--decay_gamma", type=float, default=0.1, help="steplr: decay factor")
        optim.add_argument("--poly_exp", type=float, default=0.9, help="poly: exponent")

        view = parser.add_argument_group("live viewer")
        view.add_argument("--viewer", action="store_true",
                          help="serve the viewer's page (viewer.py) live while training, at --viewer_port")
        view.add_argument("--viewer_port", type=int, default=7007, help="port of the live viewer's page")
        view.add_argument("--viewer_every", type=int, default=50,
                          help="refresh the live viewer's weights every N steps (while a browser is open)")

        parser.add_argument("--exp_name", type=str, default="exp",
                            help="experiment name: logs in logs/EXP, checkpoints in ckpts/EXP")
    return parser


# the values Lightning 2.x accepts for Trainer(precision=...)
PRECISIONS = ("32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true", "64-true", "64")

# What --fast changes, for the flags not typed on the command line (the fast path trains with
# per-step learning-rate decay: x0.33 at 50%, 75% and 90% of --max_steps, after a 1% warmup).
FAST_PRESET = {"lr": 1e-2, "batch_size": 4096, "max_steps": 20000, "noise_std": 0.0, "N_importance": 0}
# ... and on a machine without a GPU (or with --num_gpus 0): grids and batches sized for a few CPU
# cores and images of up to ~200 pixels (benchmarks/RESULTS.md measures them on 2 cores).
FAST_CPU_PRESET = {"batch_size": 1024, "grid_resolution": 64, "hash_levels": 8, "hash_log2_size": 15,
                   "hash_max_res": 256, "march_steps": 384}
# ... and for --unbounded on the CPU: a finer, larger hash grid. Over contracted space the unit ball of
# the foreground spans half of each axis, so 256 cells leave an object ~20 cells wide; 1024 with 2^17
# entries per level is sharper in the same minutes (beer, RESULTS §15) at about the same step time.
# Half the rays per step: a few CPU minutes are a few hundred steps, and twice as many smaller ones
# learn more (beer: +1.1 dB at 5 minutes, +1.0 at 10; 256 rays tie with 512 at 10 minutes).
# The grid's decay: a few CPU minutes are a few hundred refreshes, so 0.95 (tuned for 20k GPU steps)
# keeps the first minutes' haze occupied; 0.8 prunes it (beer: 100 -> 76 samples per ray, +0.25 dB at
# 10 minutes, RESULTS §16). Samples under 1% opacity skipped (nerfacc's alpha_thre for unbounded scenes):
# the mean level, the worst held-out view of beer +0.5 dB in two runs of 10 minutes (RESULTS §17).
# mip-NeRF 360's distortion loss at 0.001 (a tenth of its paper's weight, which empties the scene in a
# few CPU minutes): each ray's weight gathers on one surface, so the grid prunes the rest (beer: 67 -> 19
# samples per ray, 1.5x the steps) and the floor's depth comes out clean (RESULTS §18).
FAST_CPU_UNBOUNDED_PRESET = {"hash_max_res": 1024, "hash_log2_size": 17, "batch_size": 512, "grid_decay": 0.8,
                             "alpha_threshold": 0.01, "distortion_loss": 0.001}


def apply_fast_preset(hparams, explicit):
    """Fill the fast path's defaults into ``hparams`` for flags the user did not type: the GPU
    preset (with bf16 autocast where supported), or the CPU one when training runs on the CPU."""
    if getattr(hparams, "fast", False):
        preset = dict(FAST_PRESET)
        import torch

        on_gpu = torch.cuda.is_available() and getattr(hparams, "num_gpus", 1) > 0
        if on_gpu and torch.cuda.is_bf16_supported():
            preset["precision"] = "bf16-mixed"  # bf16 autocast: the MLP's matmuls at tensor-core speed
        if not on_gpu:
            preset.update(FAST_CPU_PRESET)
            if getattr(hparams, "unbounded", False):
                preset.update(FAST_CPU_UNBOUNDED_PRESET)
        for key, value in preset.items():
            if key not in explicit and hasattr(hparams, key):
                setattr(hparams, key, value)
    return hparams


def parse_max_time(value):
    """``--max_time`` as seconds (float): minutes ("15", "7.5") or Lightning's "DD:HH:MM:SS".
    Raises UserError on anything else."""
    text = str(value).strip()
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 4 or min(parts) < 0:
                raise ValueError
            days, hours, minutes, seconds = parts
            total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
        else:
            total = float(text) * 60
    except ValueError:
        total = None
    if total is None or not total > 0 or total == float("inf"):
        raise UserError(f"--max_time {value} is not a duration: give minutes (e.g. 15) or DD:HH:MM:SS (e.g. 00:00:15:00)")
    return total


def check_opts(hparams):
    """Reject values no run can use, with a line that names the flag. Raises UserError."""
    w, h = hparams.img_wh
    if w <= 0 or h <= 0:
        raise UserError(f"--img_wh must be two positive integers (width height), got {w} {h}")
    positive = ["N_samples", "net_depth", "net_width", "chunk", "batch_size", "num_epochs"]
    for name in positive:
        value = getattr(hparams, name, None)
        if value is not None and value <= 0:
            raise UserError(f"--{name} must be positive, got {value}")
    for name in ["N_importance", "N_emb_xyz", "N_emb_dir", "appearance_dim", "num_gpus", "num_workers", "llff_holdout"]:
        value = getattr(hparams, name, None)
        if value is not None and value < 0:
            raise UserError(f"--{name} must be >= 0, got {value}")
    if getattr(hparams, "N_samples", 2) < 2:
        raise UserError("--N_samples must be at least 2")
    if getattr(hparams, "lr", 1) is not None and getattr(hparams, "lr", 1) <= 0:
        raise UserError(f"--lr must be positive, got {hparams.lr}")
    if getattr(hparams, "optimize_cameras", False):
        if not getattr(hparams, "camera_lr", 1) > 0:
            raise UserError(f"--camera_lr must be positive, got {hparams.camera_lr}")
        if not 0 <= getattr(hparams, "camera_c2f", 0) < 1:
            raise UserError(f"--camera_c2f must be a share of the run in [0, 1), got {hparams.camera_c2f}")
    if getattr(hparams, "distortion_loss", 0) < 0:
        raise UserError(f"--distortion_loss must be >= 0, got {hparams.distortion_loss}")
    if getattr(hparams, "distortion_loss", 0) > 0 and not getattr(hparams, "fast", False):
        raise UserError("--distortion_loss applies to the fast path's ray marching: add --fast, or drop it")
    for name in ["weight_decay", "momentum"]:
        value = getattr(hparams, name, None)
        if value is not None and value < 0:
            raise UserError(f"--{name} must be >= 0, got {value}")
    steps = getattr(hparams, "max_steps", -1)
    if steps is not None and (steps == 0 or steps < -1):
        raise UserError(f"--max_steps must be positive (or -1: train for --num_epochs), got {steps}")
    if getattr(hparams, "max_time", None) is not None:
        parse_max_time(hparams.max_time)
    precision = getattr(hparams, "precision", None)
    if precision is not None and str(precision) not in PRECISIONS:
        raise UserError(f"--precision {precision} is not one of {', '.join(PRECISIONS)}")
    if getattr(hparams, "fast", False):
        if getattr(hparams, "max_steps", 1) is not None and getattr(hparams, "max_steps", 1) <= 0:
            raise UserError("--fast trains for --max_steps steps: give a positive --max_steps")
        if not 0 < getattr(hparams, "grid_decay", 0.95) <= 1:
            raise UserError(f"--grid_decay must be in (0, 1], got {hparams.grid_decay}")
        if not 0 <= getattr(hparams, "alpha_threshold", 0.0) < 1:
            raise UserError(f"--alpha_threshold must be in [0, 1), got {hparams.alpha_threshold}")
        aabb = getattr(hparams, "aabb", None)
        if aabb is not None and not all(lo < hi for lo, hi in zip(aabb[:3], aabb[3:])):
            raise UserError(f"--aabb must be xmin ymin zmin xmax ymax zmax with min < max, got {aabb}")
    if getattr(hparams, "unbounded", False) and hparams.dataset_name == "blender":
        raise UserError("--unbounded is for real 360-degree captures (llff, nerfstudio); Blender scenes are bounded")
    if hparams.root_dir is None:
        raise UserError("--root_dir is required: the folder of the scene to use")
    return hparams


def parse_args(parser, argv=None):
    """Parse ``argv`` (None: sys.argv) and also return the set of flag names the user typed.

    eval.py and extract_mesh.py use the second value so that typed flags override the ones
    stored in a checkpoint, while untyped ones come from the checkpoint.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    explicit = set()
    for action in parser._actions:
        for opt in action.option_strings:
            if any(tok == opt or tok.startswith(opt + "=") for tok in argv):
                explicit.add(action.dest)
    return args, explicit


def get_opts(argv=None):
    """Parse training flags (``argv=None``: sys.argv), apply the --fast preset, find the dataset format
    when --dataset_name is not given, validate."""
    from datasets import resolve_dataset_name  # here: opt.py stays importable without the readers

    hparams, explicit = parse_args(get_parser(), argv)
    hparams = check_opts(apply_fast_preset(hparams, explicit))  # the flags alone first: the most direct errors
    # then the format (one printed line when found; no folder: reading the scene says so) and what depends on it
    return check_opts(resolve_dataset_name(hparams, required=False))

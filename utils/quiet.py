"""Quiet runs: the command-line scripts print the project's own lines, not their libraries' chatter.

Each entry point (train.py, eval.py, extract_mesh.py, capture.py, imgs2poses.py, viewer.py) calls
``quiet()`` first thing in its ``main``; capture.py runs the other scripts' ``main`` in its own
process, and each of them calls it again (it is idempotent). Only the messages listed below are
hidden, each matched by its text (and where it comes from) and each with the reason it is noise
here. Everything else still shows: a warning of ours or of a user's, and any Lightning, torch or
other library warning not listed, however new.

Lightning prints its information through the ``logging`` module (``rank_zero_info`` and a few
module loggers); those records are dropped by a ``logging.Filter`` on the logger that emits them.
Python warnings get a ``warnings.filterwarnings("ignore", message=..., module=...)`` each.
"""
import logging
import re
import warnings

# ---------------------------------------------------------------- Lightning's information lines

# the loggers that Lightning's ``rank_zero_info`` writes to: pytorch_lightning (or the ``lightning``
# bundle) points it at its own, lightning_fabric alone at fabric's
RANK_ZERO_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero",
                     "lightning_fabric.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")

# logger names -> patterns (re.search on the formatted message) of the records dropped
LOG_LINES = {
    RANK_ZERO_LOGGERS: (
        # advertisements for Lightning's cloud services (litlogger, litmodels), at every run
        r"💡 Tip:",
        # "GPU available: False, used: False", "TPU available: ...", "HPU available: ..." (older
        # versions): train.py says itself, once, when it trains on the CPU for want of a GPU
        r"^[GTH]PU available: ",
        # a GPU run without torch.set_float32_matmul_precision: advice about Lightning's defaults;
        # the fast path sets TF32 itself (models.setup_fast_path), the vanilla MLPs keep fp32 on purpose
        r"^You are using a CUDA device .* that has Tensor Cores",
        # the autocast the user (or the fast path's GPU preset, opt.py) asked for with --precision
        r"^Using (16bit|bfloat16) Automatic Mixed Precision \(AMP\)",
        # DDP's banner (dashes, "distributed_backend=gloo", "All distributed processes registered"):
        # train.py prints one line for a distributed run
        r"All distributed processes registered\. Starting with \d+ processes",
        # resuming: two lines for one event; train.py says "resuming from ..." itself
        r"^Restoring states from the checkpoint path at ",
        r"^Restored all states from the checkpoint at ",
        # the run ended where it was asked to; the last validation line follows
        r"^`Trainer\.fit` stopped: `max_(steps|epochs)=\d+` reached\.",
    ),
    # once per process of a distributed run: "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2"
    ("lightning_fabric.utilities.distributed", "lightning.fabric.utilities.distributed"): (
        r"^Initializing distributed: GLOBAL_RANK: \d+",
    ),
    # once per process on GPUs: "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0]"
    ("pytorch_lightning.accelerators.cuda", "lightning.pytorch.accelerators.cuda"): (
        r"^LOCAL_RANK: \d+ - CUDA_VISIBLE_DEVICES: ",
    ),
}

# ---------------------------------------------------------------- warnings

LIGHTNING = r"(pytorch_lightning|lightning\.pytorch|lightning_fabric|lightning\.fabric)(\.|$)"

# (message pattern, category, module pattern): each hidden with warnings.filterwarnings("ignore", ...).
# The message pattern is matched from the start of the warning's text; the module is the one the
# warning is attributed to (where the library code that warns is called from).
WARNINGS = (
    # torch deprecated LeafSpec; Lightning's own pytree helper (pytorch_lightning/utilities/_pytree.py)
    # still makes one, at every training run. Nothing of ours uses it: Lightning's to change.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, LIGHTNING),
    # num_workers 0 is the project's choice: the rays are in memory and RayBatchSampler hands out
    # index batches (train.py), so worker processes would only add start-up time; Lightning suggests
    # more on any machine with more than two cores
    (r"The '(train|val)_dataloader' does not have many workers", UserWarning, LIGHTNING),
    # RayBatchSampler resumes mid-epoch itself (NeRFSystem.on_train_start): the data order is that of
    # an uninterrupted run, which is what Lightning warns may not be so
    (r"You're resuming from a checkpoint that ended before the epoch ended and your dataloader is\s+not resumable",
     UserWarning, LIGHTNING),
    # resuming with a new --exp_name: best-checkpoint bookkeeping starts afresh in the new folder,
    # as it should (the old folder keeps its files)
    (r"The dirpath has changed from .* won't be reloaded", UserWarning, LIGHTNING),
    # a GPU machine trained with --num_gpus 0 (the user's choice; Lightning's advice names its own
    # Trainer argument, not ours)
    (r"GPU available but not used\.", UserWarning, LIGHTNING),
)


class DropLines(logging.Filter):
    """Drops the log records whose message matches one of ``patterns``; lets the rest through."""

    def __init__(self, patterns):
        super().__init__()
        self.patterns = [re.compile(p, re.S) for p in patterns]

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: not ours to judge, let logging report it
            return True
        return not any(p.search(message) for p in self.patterns)


_FILTERS = {names: DropLines(patterns) for names, patterns in LOG_LINES.items()}


def quiet():
    """Hide the known library messages above, and only those. Safe to call more than once; needs
    no library imported first (the loggers are the ones the libraries will take by name)."""
    for names, drop in _FILTERS.items():
        for name in names:
            logging.getLogger(name).addFilter(drop)  # addFilter adds one only once
    for message, category, module in WARNINGS:
        # filterwarnings replaces an identical filter rather than stacking a second one
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def expect_checkpoints_in(dirpath):
    """A run that resumes from a checkpoint in its own checkpoint folder (train.py --ckpt_path
    ckpts/EXP/last.ckpt --exp_name EXP, capture.py run again): Lightning's "Checkpoint directory
    ... exists and is not empty" is then expected. Hidden for that folder only: a fresh run into a
    folder an earlier run filled is still warned."""
    message = rf"Checkpoint directory {re.escape(str(dirpath))} exists and is not empty"
    warnings.filterwarnings("ignore", message=message, category=UserWarning, module=LIGHTNING)

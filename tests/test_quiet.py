"""Quiet runs (utils/quiet.py): train.py and eval.py print the project's lines only, with no tips,
deprecation warnings or device lines from the libraries, and no line once per DDP process; and
the helper hides the known messages only, so a warning of ours, of a user's or a new one from a
library still shows.

The scripts run here as a user runs them: without the ``PYTHONWARNINGS=ignore`` that
``conftest.run_script`` sets for the other tests.
"""
import logging
import os
import subprocess
import sys
import warnings

import pytest
import torch

from conftest import ROOT, TINY
from utils import quiet as quiet_module
from utils.quiet import expect_checkpoints_in, quiet

# what no run may print (a library's line or warning); matched in stdout and stderr together
NOISE = ("Tip:", "litlogger", "litmodels", "GPU available", "TPU available", "HPU available", "deprecated",
         "Warning:", "site-packages", "Initializing distributed", "distributed_backend", "CUDA_VISIBLE_DEVICES",
         "Restoring states", "Restored all states", "`Trainer.fit` stopped")


def run_loud(script, *args, cwd):
    """``python ROOT/script args...`` with the user's default warning filters; returns stdout + stderr."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, str(ROOT / script), *map(str, args)]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}"
    return out


def assert_quiet(out):
    lines = out.replace("\r", "\n").splitlines()
    noisy = [line for line in lines if any(n.lower() in line.lower() for n in NOISE)]
    assert not noisy, "library lines in the output:\n" + "\n".join(noisy)


def tiny_flags(demo_dir, steps=4):
    # TINY asks for --num_gpus 0; without it train.py uses the GPU when there is one (and says so when not)
    flags = [a for a in TINY if a not in ("--num_gpus", "0")]
    return ["--root_dir", demo_dir, "--img_wh", 16, 16, *flags, "--max_steps", steps, "--val_num", 2]


@pytest.fixture(scope="module")
def quiet_run(demo_dir, tmp_path_factory):
    """A tiny training run: (its work dir, its whole output)."""
    work = tmp_path_factory.mktemp("quiet_run")
    return work, run_loud("train.py", *tiny_flags(demo_dir), "--exp_name", "quiet", cwd=work)


def test_training_prints_the_project_lines_only(quiet_run):
    work, out = quiet_run
    assert_quiet(out)
    assert "last validation: PSNR" in out
    if not torch.cuda.is_available():  # the note that was a UserWarning: one plain line
        assert out.count("no GPU found: training on the CPU") == 1, out[-3000:]
    assert (work / "ckpts" / "quiet" / "last.ckpt").is_file()


def test_resume_in_place_and_ddp_print_each_line_once(quiet_run, demo_dir):
    work, _ = quiet_run
    ckpt = work / "ckpts" / "quiet" / "last.ckpt"
    # resuming in its own folder: no "exists and is not empty", no "Restoring states", one line of ours
    out = run_loud("train.py", *tiny_flags(demo_dir, steps=6), "--exp_name", "quiet", "--ckpt_path", ckpt, cwd=work)
    assert_quiet(out)
    assert "exists and is not empty" not in out
    assert out.count(f"resuming from {ckpt}") == 1 and "last validation: PSNR" in out
    # two CPU processes: the DDP lines of each process are gone, ours comes once
    out = run_loud("train.py", *tiny_flags(demo_dir), "--num_gpus", 0, "--cpu_processes", 2, "--batch_size", 512,
                   "--exp_name", "quiet_ddp", cwd=work)
    assert_quiet(out)
    assert out.count("distributed training (DDP): 2 processes on the CPU") == 1, out[-3000:]
    assert out.count("last validation: PSNR") == 1


def test_fresh_run_into_a_filled_folder_is_still_warned(quiet_run, demo_dir):
    """Only resuming in place expects an existing checkpoint folder: a new run over an old one's
    files keeps Lightning's warning."""
    work, _ = quiet_run
    (work / "ckpts" / "filled").mkdir(parents=True)
    (work / "ckpts" / "filled" / "best-epoch=00-step=9.ckpt").write_bytes(b"an earlier run's")
    out = run_loud("train.py", *tiny_flags(demo_dir, steps=1), "--exp_name", "filled", cwd=work)
    assert "exists and is not empty" in out


def test_eval_prints_the_project_lines_only(quiet_run):
    work, _ = quiet_run
    out = run_loud("eval.py", "--ckpt_path", work / "ckpts" / "quiet" / "last.ckpt", "--split", "test", cwd=work)
    assert_quiet(out)
    assert "test: mean PSNR" in out


# ---------------------------------------------------------------- the helper itself


@pytest.fixture
def quieted():
    """quiet() applied for one test; the warning filters and the loggers' filters put back after."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # under the helper's filters: every other warning shows, every time
        quiet()
        yield
    for names in quiet_module.LOG_LINES:
        for name in names:
            for f in list(logging.getLogger(name).filters):
                if isinstance(f, quiet_module.DropLines):
                    logging.getLogger(name).removeFilter(f)


def emit(message, category, module):
    """A warning as the library module ``module`` raises it."""
    warnings.warn_explicit(message, category, filename=module.replace(".", "/") + ".py", lineno=1, module=module)


KNOWN_WARNINGS = [
    ("`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and treespec.is_leaf()` "
     "instead.", FutureWarning, "pytorch_lightning.utilities._pytree"),
    ("The 'train_dataloader' does not have many workers which may be a bottleneck. Consider increasing the value of "
     "the `num_workers` argument` to `num_workers=15` in the `DataLoader` to improve performance.",
     UserWarning, "pytorch_lightning.trainer.connectors.data_connector"),
    ("You're resuming from a checkpoint that ended before the epoch ended and your dataloader is not resumable. "
     "This can cause unreliable results if further training is done.", UserWarning,
     "pytorch_lightning.loops.training_epoch_loop"),
    ("The dirpath has changed from '/a/ckpts/x' to '/a/ckpts/y', therefore `best_model_score`, `kth_best_model_path`, "
     "`kth_value`, `last_model_path` and `best_k_models` won't be reloaded. Only `best_model_path` will be reloaded.",
     UserWarning, "pytorch_lightning.callbacks.model_checkpoint"),
    ("GPU available but not used. You can set it by doing `Trainer(accelerator='gpu')`.", UserWarning,
     "pytorch_lightning.trainer.setup"),
]


OTHER_WARNINGS = [
    ("a user's warning", UserWarning, "__main__"),
    ("something our code warns about", UserWarning, "models.rendering"),
    ("something new from Lightning", UserWarning, "pytorch_lightning.trainer.trainer"),  # not in the list
    # a known text, from elsewhere than Lightning: not the message the filter is for
    ("GPU available but not used. Ours.", UserWarning, "train"),
    ("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, "mylib.trees"),
    # Lightning's own deprecations are not hidden wholesale
    ("`Trainer(foo=...)` is deprecated", DeprecationWarning, "pytorch_lightning.trainer.trainer"),
    ("You passed `Trainer(accelerator='cpu', precision='16-mixed')` but AMP with fp16 is not supported on CPU.",
     UserWarning, "pytorch_lightning.trainer.connectors.accelerator_connector"),
]


def caught_after_quiet(warns):
    """The messages of ``warns`` (message, category, module) that still show once quiet() is applied."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning, every time ...
        quiet()  # ... but for the helper's, put in front again as each script's main does
        for message, category, module in warns:
            emit(message, category, module)
    return [str(w.message) for w in caught]


@pytest.mark.parametrize("known", KNOWN_WARNINGS, ids=lambda v: v[0][:30])
def test_each_known_warning_is_hidden_and_the_others_show(quieted, known):
    assert caught_after_quiet([known, *OTHER_WARNINGS]) == [m for m, _, _ in OTHER_WARNINGS]


def test_a_warning_of_ours_still_shows(quieted):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own default for UserWarning
        quiet()
        warnings.warn("a user's warning")
    assert [str(w.message) for w in caught] == ["a user's warning"]


def test_checkpoint_folder_warning_only_for_that_folder(quieted):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        expect_checkpoints_in("/runs/ckpts/a+b")
        emit("Checkpoint directory /runs/ckpts/a+b exists and is not empty.", UserWarning,
             "pytorch_lightning.callbacks.model_checkpoint")
        emit("Checkpoint directory /runs/ckpts/other exists and is not empty.", UserWarning,
             "pytorch_lightning.callbacks.model_checkpoint")
    assert [str(w.message) for w in caught] == ["Checkpoint directory /runs/ckpts/other exists and is not empty."]


KNOWN_LINES = [
    ("pytorch_lightning.utilities.rank_zero", "💡 Tip: For seamless cloud logging and experiment tracking, try "
     "installing [litlogger](https://pypi.org/project/litlogger/) to enable LitLogger."),
    ("pytorch_lightning.utilities.rank_zero", "💡 Tip: For seamless cloud uploads and versioning, try installing "
     "[litmodels](https://pypi.org/project/litmodels/) to enable LitModelCheckpoint."),
    ("pytorch_lightning.utilities.rank_zero", "GPU available: False, used: False"),
    ("pytorch_lightning.utilities.rank_zero", "GPU available: True (cuda), used: True"),
    ("pytorch_lightning.utilities.rank_zero", "TPU available: False, using: 0 TPU cores"),
    ("pytorch_lightning.utilities.rank_zero", "HPU available: False, using: 0 HPUs"),
    ("lightning.pytorch.utilities.rank_zero", "GPU available: False, used: False"),
    ("lightning_fabric.utilities.rank_zero", "TPU available: False, using: 0 TPU cores"),
    ("pytorch_lightning.utilities.rank_zero", "You are using a CUDA device ('NVIDIA H100 80GB HBM3') that has Tensor "
     "Cores. To properly utilize them, you should set `torch.set_float32_matmul_precision('medium' | 'high')`"),
    ("pytorch_lightning.utilities.rank_zero", "Using bfloat16 Automatic Mixed Precision (AMP)"),
    ("pytorch_lightning.utilities.rank_zero", f"{'-' * 100}\ndistributed_backend=gloo\nAll distributed processes "
     f"registered. Starting with 2 processes\n{'-' * 100}\n"),
    ("pytorch_lightning.utilities.rank_zero", "Restoring states from the checkpoint path at ckpts/x/last.ckpt"),
    ("pytorch_lightning.utilities.rank_zero", "Restored all states from the checkpoint at ckpts/x/last.ckpt"),
    ("pytorch_lightning.utilities.rank_zero", "`Trainer.fit` stopped: `max_steps=10` reached."),
    ("lightning_fabric.utilities.distributed", "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2"),
    ("pytorch_lightning.accelerators.cuda", "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0]"),
]
OTHER_LINES = [
    ("pytorch_lightning.utilities.rank_zero", "`Trainer.fit` stopped: No training batches."),
    ("pytorch_lightning.callbacks.timer", "Time limit reached. Elapsed time is 0:00:05. Signaling Trainer to stop."),
    ("pytorch_lightning.utilities.rank_zero", "something new from Lightning"),
    ("lightning_fabric.utilities.distributed", "torch.distributed is not available"),
]


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_known_lightning_lines_are_dropped_and_others_kept(quieted):
    handler = Lines()
    loggers = {logging.getLogger(name) for name, _ in KNOWN_LINES + OTHER_LINES}
    saved = {lg: (lg.level, lg.propagate) for lg in loggers}
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
        lg.propagate = False
    try:
        for name, line in KNOWN_LINES + OTHER_LINES:
            logging.getLogger(name).info(line)
    finally:
        for lg, (level, propagate) in saved.items():
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate
    assert handler.lines == [line for _, line in OTHER_LINES]


def test_quiet_is_idempotent(quieted):
    n = len(warnings.filters)
    quiet()
    quiet()
    assert len(warnings.filters) == n
    for names, drop in quiet_module._FILTERS.items():
        assert all(logging.getLogger(name).filters.count(drop) == 1 for name in names)

"""Train nerfstudio's nerfacto for a wall-clock budget; render the held-out views as it goes.

Run by ``benchmarks/vs_nerfacto.py`` with the python of nerfstudio's own venv (nerfstudio 1.1.5;
this file imports nothing of the project, whose requirements that venv lacks):

    VENV/bin/python benchmarks/nerfacto_driver.py --data SCENE --rays 4096 --minutes 10 --out RUN_DIR

``SCENE`` is a nerfstudio scene written by ``vs_nerfacto.export_nerfstudio_scene``: PNG images at
the compared resolution and a ``transforms.json`` whose ``train_filenames`` / ``val_filenames`` fix
the split. The trainer is nerfstudio's (``ns-train nerfacto``'s config, callbacks, optimizers and
schedules) with four changes: the LPIPS metric is a stub (building it downloads AlexNet weights,
and only ``ns-eval`` uses it), camera refinement is off, the hash encoding is nerfstudio's torch
one (no tiny-cuda-nn), and the images are used as they are (``downscale_factor=1``). The data
manager is the plain one (no loader process beside the trainer: the compared run has the cores
to itself, as ours does).

Every ``--eval_every`` seconds of training (and at 0 and at the end) it renders each held-out view
to ``RUN_DIR/mNNN/NAME.png`` (NNN: the measurement's number) and appends ``{"t", "step", "dir"}`` to ``RUN_DIR/measures.jsonl``;
rendering time is not counted. ``RUN_DIR/run.json`` says what ran.
"""
import argparse
import importlib.metadata
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


class NoLPIPS(torch.nn.Module):
    """Stands in for torchmetrics' LPIPS (whose constructor downloads weights): returns NaN."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, *args, **kwargs):
        return torch.tensor(float("nan"))


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="folder with transforms.json and images/")
    p.add_argument("--rays", type=int, default=4096, help="training rays per batch")
    p.add_argument("--minutes", type=float, required=True, help="training minutes")
    p.add_argument("--eval_every", type=float, default=60.0, help="training seconds between renders")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True, help="run folder (frames, measures.jsonl)")
    return p.parse_args()


def nerfacto_config(a):
    """``ns-train nerfacto``'s TrainerConfig with the changes of the module doc."""
    from nerfstudio.configs.method_configs import method_configs
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig

    config = method_configs["nerfacto"]
    parser = config.pipeline.datamanager.dataparser
    parser.data = Path(a.data)
    parser.downscale_factor = 1
    config.pipeline.datamanager = VanillaDataManagerConfig(
        dataparser=parser, train_num_rays_per_batch=a.rays, eval_num_rays_per_batch=a.rays)
    model = config.pipeline.model
    model.implementation = "torch"
    model.camera_optimizer.mode = "off"
    model.eval_num_rays_per_chunk = 1 << 13 if a.device == "cpu" else 1 << 15
    config.machine.device_type = a.device
    config.machine.num_devices = 1
    config.vis = "tensorboard"  # not the viewer (a web server); nothing is logged unless asked
    config.output_dir = Path(a.out) / "nerfstudio_outputs"
    config.experiment_name, config.timestamp = "vs_nerfacto", "run"
    config.max_num_iterations = 10 ** 9  # the clock stops it
    return config


def save_frames(pipeline, names, out_dir, index, t, step, device):
    """Render every held-out camera; write ``out_dir/mNNN/NAME.png`` (NNN: ``index``); log the measurement."""
    sub = f"m{index:03d}"  # by number: two measurements can fall in the same second
    os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    cameras = pipeline.datamanager.eval_dataset.cameras
    pipeline.eval()
    with torch.no_grad():
        for i, name in enumerate(names):
            out = pipeline.model.get_outputs_for_camera(cameras[i:i + 1].to(device))
            rgb = out["rgb"].float().clamp(0, 1).cpu().numpy()  # (H, W, 3)
            Image.fromarray((rgb * 255 + 0.5).astype(np.uint8)).save(os.path.join(out_dir, sub, name))
    pipeline.train()
    with open(os.path.join(out_dir, "measures.jsonl"), "a") as f:
        f.write(json.dumps({"t": round(t, 1), "step": step, "dir": sub}) + "\n")
    print(json.dumps({"nerfacto_rays": pipeline.datamanager.get_train_rays_per_batch(), "t": round(t, 1),
                      "step": step}), flush=True)


def main():
    a = parse()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    import torchmetrics.image.lpip

    torchmetrics.image.lpip.LearnedPerceptualImagePatchSimilarity = NoLPIPS  # before the model imports it
    from nerfstudio.engine.callbacks import TrainingCallbackLocation
    from nerfstudio.engine.trainer import Trainer

    os.makedirs(a.out, exist_ok=True)
    trainer = Trainer(nerfacto_config(a))
    trainer.setup(test_mode="val")
    pipeline, device = trainer.pipeline, trainer.device
    names = [Path(p).stem + ".png" for p in pipeline.datamanager.eval_dataset._dataparser_outputs.image_filenames]
    with open(os.path.join(a.out, "run.json"), "w") as f:
        json.dump({"method": "nerfacto", "rays": a.rays, "nerfstudio": importlib.metadata.version("nerfstudio"),
                   "held_out": names, "n_train": len(pipeline.datamanager.train_dataset), "device": a.device,
                   "threads": a.threads}, f)

    budget, clock, step, next_eval, n_measured = a.minutes * 60, 0.0, 0, 0.0, 0
    while True:
        if clock >= next_eval or clock >= budget:
            save_frames(pipeline, names, a.out, n_measured, clock, step, device)
            n_measured += 1
            next_eval += a.eval_every
            if clock >= budget:
                return
        t0 = time.perf_counter()
        # Trainer.train's body for one step, without its logging and viewer
        trainer.step = step
        pipeline.train()
        for cb in trainer.callbacks:
            cb.run_callback_at_location(step, location=TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        trainer.train_iteration(step)
        for cb in trainer.callbacks:
            cb.run_callback_at_location(step, location=TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
        if a.device == "cuda":
            torch.cuda.synchronize()
        clock += time.perf_counter() - t0
        step += 1


if __name__ == "__main__":
    sys.exit(main())

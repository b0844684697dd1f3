"""Train a NeRF: one LightningModule (``NeRFSystem``) and the Trainer that runs it.

    python train.py --root_dir DIR --img_wh 400 400 --N_importance 64 ...   (--dataset_name: found from DIR)

Logs go to ``logs/EXP`` (TensorBoard), checkpoints to ``ckpts/EXP`` (best by val PSNR + last).
"""
import math
import os
from argparse import Namespace
from datetime import timedelta

import torch
from torch.utils.data import DataLoader

# data
from datasets import make_dataset
from datasets.base import IndexBatches, RayBatchSampler, evenly_spread

# models
from models import build_fields, setup_fast_path
from models.camera_opt import PoseCorrection, level_weights
from models.rendering import final_level, render_chunked, render_rays, train_render_kwargs

# optimizer, checkpoints
from opt import get_opts, parse_max_time
from utils.callbacks import BestAndLastCheckpoint, time_budget_used
from utils.checkpoint import load_checkpoint, load_fields_state
from utils.errors import UserError, cli_main
from utils.optim import get_learning_rate, get_optimizer, get_scheduler
from utils.quiet import expect_checkpoints_in, quiet
from utils.visualization import depth_to_rgb, image_strip, to_uint8

# losses, metrics
from losses import build_loss, loss_dict
from metrics import psnr, ssim

# lightning
import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only
# the live viewer (--viewer)
from viewer.callback import viewer_callbacks


class NeRFSystem(pl.LightningModule):
    """The whole training system: coarse and fine NeRFs, the renderer, loss, metrics and logging."""

    def __init__(self, hparams, train_dataset=None, val_dataset=None):
        super().__init__()
        hparams = dict(vars(hparams) if isinstance(hparams, Namespace) else hparams)
        if train_dataset is not None:  # sizes the appearance codes; stored, so a checkpoint rebuilds them
            hparams["n_train_images"] = len(train_dataset.poses)
        self.save_hyperparameters(hparams)
        fields = build_fields(self.hparams, cameras=train_dataset)
        self.nerf_coarse = fields["coarse"]
        if "fine" in fields:
            self.nerf_fine = fields["fine"]
        if "occupancy" in fields:  # fast path
            self.occupancy = fields["occupancy"]
        if self.hparams.get("optimize_cameras"):  # kept apart from the fields: only training uses it
            self.camera_opt = PoseCorrection(self.hparams["n_train_images"])
        self.loss = build_loss(self.hparams)
        self.train_dataset, self.val_dataset = train_dataset, val_dataset
        self.train_sampler = None

    @property
    def fields(self):
        """``{"coarse": ..., "fine": ...}`` (or ``"occupancy"``) as ``models.rendering`` expects."""
        out = {"coarse": self.nerf_coarse}
        for level, name in (("fine", "nerf_fine"), ("occupancy", "occupancy")):
            if hasattr(self, name):
                out[level] = getattr(self, name)
        return out

    def render_kwargs(self, train):
        """Renderer options: training perturbs samples and adds density noise, evaluation does not."""
        return train_render_kwargs(self.hparams, (self.val_dataset or self.train_dataset).white_back, train)

    def setup(self, stage):
        if self.train_dataset is None:
            self.train_dataset = make_dataset(Namespace(**self.hparams), "train")
        if self.val_dataset is None:
            self.val_dataset = make_dataset(Namespace(**self.hparams), "val")

    def configure_optimizers(self):
        cams = [{"params": list(self.camera_opt.parameters()), "lr": self.hparams.camera_lr, "weight_decay": 0.0}] \
            if self.hparams.get("optimize_cameras") else []
        optimizer = get_optimizer(self.hparams, list(self.fields.values()), extra_groups=cams)
        scheduler = get_scheduler(self.hparams, optimizer, time_fraction=self.time_fraction)
        interval = "step" if self.hparams.get("fast") else "epoch"  # the fast path decays per step
        return [optimizer], [{"scheduler": scheduler, "interval": interval}]

    def time_fraction(self):
        """Share of the ``--max_time`` budget used so far (0 without one, or outside a Trainer)."""
        return time_budget_used(self.trainer) if self._trainer else 0.0

    def progress(self):
        """Share of the run done: the larger of the steps' share and the time budget's."""
        total = self.trainer.estimated_stepping_batches
        steps = self.global_step / total if 0 < total < float("inf") else 0.0
        return max(steps, self.time_fraction())

    @property
    def rays_in_step(self):
        """True when the training step builds its rays from ray indices (fast path, camera refinement)."""
        return bool(self.hparams.get("fast") or self.hparams.get("optimize_cameras"))

    def train_dataloader(self):
        self.train_sampler = RayBatchSampler(self.train_dataset.n_rays, self.hparams.batch_size,
                                             seed=self.hparams.seed, rank=self.global_rank,
                                             world_size=self.trainer.world_size)
        # the fast path keeps the images on the device: the loader then only yields ray indices (so does
        # camera refinement: rays are built from the corrected poses inside the step)
        source = IndexBatches() if self.rays_in_step else self.train_dataset
        # own generators: creating a loader's iterator then draws no number from the global stream,
        # which the training steps alone consume (so resuming reproduces it, see on_train_start)
        return DataLoader(source, sampler=self.train_sampler, batch_size=None, generator=torch.Generator(),
                          num_workers=self.hparams.num_workers, persistent_workers=self.hparams.num_workers > 0)

    def val_dataloader(self):
        picks = evenly_spread(len(self.val_dataset), self.hparams.val_num)  # shared out across ranks
        mine = picks[self.global_rank::self.trainer.world_size] or picks[:1]
        return DataLoader(torch.utils.data.Subset(self.val_dataset, mine), batch_size=None, num_workers=0,
                          generator=torch.Generator())

    def on_fit_start(self):
        if self.rays_in_step:
            self.train_dataset.to(self.device)

    def on_train_start(self):
        # resumed part-way through an epoch: skip the batches this epoch already used, so the data
        # order is exactly that of an uninterrupted run (Lightning restarts the dataloader)
        done = self.trainer.fit_loop.epoch_loop.batch_progress.current.completed
        if self.trainer.fit_loop.restarted_mid_epoch and 0 < done < self.trainer.num_training_batches:
            self.train_sampler.skip = done
        # and the random stream (sample jitter, density noise) goes on where the saved run was
        rng = getattr(self, "_rng_to_restore", None)
        if rng is not None:
            torch.set_rng_state(rng["cpu"])
            if rng.get("cuda") is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"], self.device)
            self._rng_to_restore = None

    def on_save_checkpoint(self, checkpoint):
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        checkpoint["rng_state"] = {"cpu": torch.get_rng_state(), "cuda": cuda}

    def on_load_checkpoint(self, checkpoint):
        self._rng_to_restore = checkpoint.get("rng_state")  # applied in on_train_start, after setup

    def training_step(self, batch, batch_idx):
        cams = self.hparams.get("optimize_cameras")
        if self.rays_in_step:
            batch = self.train_dataset.ray_batch(batch.to(self.device), pose_fn=self.camera_opt if cams else None)
        if cams and self.hparams.get("fast"):  # coarse to fine while the poses settle
            weights = level_weights(self.progress(), self.nerf_coarse.encoding.n_levels, end=self.hparams.camera_c2f)
            self.nerf_coarse.set_level_weights(weights)
        if self.hparams.get("fast"):
            self.occupancy.update(self.global_step, self.nerf_coarse.query_density)
        results = render_rays(self.fields, batch["rays"], **self.render_kwargs(train=True))
        loss = self.loss(results, batch["rgbs"])
        with torch.no_grad():
            train_psnr = psnr(results[f"rgb_{final_level(results)}"].float(), batch["rgbs"])
        n = len(batch["rgbs"])
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/psnr", train_psnr, prog_bar=True, batch_size=n)
        self.log("lr", get_learning_rate(self.optimizers().optimizer))
        if "n_samples" in results:
            self.log("train/samples_per_ray", results["n_samples"].float() / n)
        if cams and self.global_step % self.trainer.log_every_n_steps == 0:  # magnitudes() syncs a GPU
            rot, trans = self.camera_opt.magnitudes()
            self.log("train/camera_rotation_deg", rot)
            self.log("train/camera_translation", trans)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        # after the very last step, always validate (and so write last.ckpt): asking Lightning to
        # stop makes its loop run the validation it would otherwise skip between intervals
        t = self.trainer
        last_step = 0 < t.max_steps <= t.global_step
        last_batch = t.current_epoch == t.max_epochs - 1 and batch_idx + 1 == t.num_training_batches
        if last_step or last_batch:
            t.should_stop = True

    def validation_step(self, batch, batch_idx):
        W, H = self.val_dataset.img_wh
        out = render_chunked(self.fields, batch["rays"], chunk=self.hparams.chunk, **self.render_kwargs(train=False))
        pred, gt = out["rgb"].view(H, W, 3).float(), batch["rgbs"].view(H, W, 3)
        self.log("val/loss", ((pred - gt) ** 2).mean(), sync_dist=True, batch_size=1)
        self.log("val/psnr", psnr(pred, gt), prog_bar=True, sync_dist=True, batch_size=1)
        self.log("val/ssim", ssim(pred, gt), sync_dist=True, batch_size=1)
        if batch_idx == 0 and self.global_rank == 0 and isinstance(self.logger, TensorBoardLogger):
            depth = depth_to_rgb(out["depth"].view(H, W), inverse=bool(self.hparams.get("unbounded")))
            strip = image_strip(to_uint8(gt), to_uint8(pred), depth)  # GT | prediction | depth
            self.logger.experiment.add_image("val/GT_pred_depth", strip, self.global_step, dataformats="HWC")


def trainer_devices(hparams):
    """(accelerator, devices, strategy) from --num_gpus/--num_nodes/--cpu_processes and the machine."""
    if hparams.num_gpus > 0 and torch.cuda.is_available():
        n = min(hparams.num_gpus, torch.cuda.device_count())
        accelerator, devices = "gpu", n
    else:  # main says so when a GPU was asked for (say_setup)
        accelerator, devices = "cpu", hparams.cpu_processes
    distributed = devices > 1 or hparams.num_nodes > 1
    return accelerator, devices, ("ddp" if distributed else "auto")


def load_start_weights(system, hparams):
    """Handle --ckpt_path. Returns the checkpoint to resume from, or None.

    A full training checkpoint with only the default ``--prefixes_to_ignore loss`` resumes
    exactly (weights, optimizer, schedule, step). Other prefixes, or a weights-only file, load
    the weights (minus the ignored ones) and start a new run from step 0.
    """
    if not hparams.ckpt_path:
        return None
    ckpt = load_checkpoint(hparams.ckpt_path)
    ignore = [p for p in hparams.prefixes_to_ignore if p != "loss"]
    load_fields_state(system.fields, ckpt["state_dict"], ignore, source=hparams.ckpt_path)
    return hparams.ckpt_path if ckpt["lightning"] and not ignore else None


def build_trainer(hparams, steps_per_epoch, extra_callbacks=()):
    accelerator, devices, strategy = trainer_devices(hparams)
    # validate every --val_every epochs, counted in steps so that it also works across epochs
    val_every = max(1, round(hparams.val_every * steps_per_epoch))
    ckpt_cb = BestAndLastCheckpoint(dirpath=os.path.join("ckpts", hparams.exp_name), filename="best-{epoch:02d}-{step}",
                                    monitor="val/psnr", mode="max", save_top_k=1, save_last=True)
    max_time = None if hparams.max_time is None else timedelta(seconds=parse_max_time(hparams.max_time))
    return pl.Trainer(
        # --max_steps (the fast path's preset) sets the length alone: 16 epochs of a small capture are
        # 13k fast steps, which ended a 10.9-minute capture.py budget at 8.9 minutes, its decay unfinished
        max_epochs=-1 if hparams.max_steps > 0 else hparams.num_epochs, max_steps=hparams.max_steps, max_time=max_time,
        accelerator=accelerator, devices=devices, num_nodes=hparams.num_nodes, strategy=strategy,
        precision=hparams.precision, use_distributed_sampler=False,  # RayBatchSampler shards itself
        callbacks=[ckpt_cb, TQDMProgressBar(refresh_rate=10), *extra_callbacks],
        logger=TensorBoardLogger(save_dir="logs", name=hparams.exp_name, default_hp_metric=False),
        val_check_interval=val_every, check_val_every_n_epoch=None,
        num_sanity_val_steps=1 if accelerator == "gpu" else 0,
        log_every_n_steps=min(50, steps_per_epoch), benchmark=accelerator == "gpu",
        enable_model_summary=False,
    )


@rank_zero_only
def say_setup(hparams, accelerator, world, resume):
    """The project's lines for what Lightning's own device and resume lines said (utils/quiet.py
    hides those): once, on rank 0 (a DDP run starts this script again in each other process)."""
    if accelerator == "cpu" and hparams.num_gpus > 0:
        print("no GPU found: training on the CPU")
    if world > 1:
        where = " on the CPU" if accelerator == "cpu" else ", one GPU each"
        print(f"distributed training (DDP): {world} processes{where}")
    if resume:
        print(f"resuming from {resume}")


@cli_main
def main(argv=None):
    quiet()  # the project's lines only: known library tips and warnings hidden (utils/quiet.py)
    hparams = get_opts(argv)
    hparams.root_dir = os.path.abspath(hparams.root_dir)  # eval.py finds the scene from anywhere
    if hparams.loss_type not in loss_dict:
        raise UserError(f"unknown --loss_type {hparams.loss_type}")
    pl.seed_everything(hparams.seed, workers=True, verbose=False)
    # read the scene (and the checkpoint) before anything is written, so bad input leaves nothing behind
    train_ds, val_ds = make_dataset(hparams, "train"), make_dataset(hparams, "val")
    setup_fast_path(hparams, train_ds)
    system = NeRFSystem(hparams, train_ds, val_ds)
    resume = load_start_weights(system, hparams)

    accelerator, devices, _ = trainer_devices(hparams)
    world = devices * hparams.num_nodes
    say_setup(hparams, accelerator, world, resume)
    ckpt_dir = os.path.realpath(os.path.join("ckpts", hparams.exp_name))
    if resume and os.path.realpath(os.path.dirname(resume)) == ckpt_dir:  # resuming in place
        expect_checkpoints_in(ckpt_dir)
    steps_per_epoch = math.ceil(train_ds.n_rays / (hparams.batch_size * world))
    live = viewer_callbacks(hparams)  # --viewer: checks the port now, serves from on_fit_start
    trainer = build_trainer(hparams, steps_per_epoch, live)
    trainer.fit(system, ckpt_path=resume)
    report_last_validation(trainer, hparams, val_ds)
    return trainer


def report_last_validation(trainer, hparams, val_ds):
    """Say what the last logged val/psnr stands on: the views it averages out of the held-out ones."""
    metrics = trainer.callback_metrics
    if trainer.global_rank != 0 or "val/psnr" not in metrics:
        return
    n, used = len(val_ds), min(len(val_ds), hparams.val_num)
    whole = "all" if used == n else f"{used} evenly spread of the"
    split = "test" if hparams.dataset_name == "llff" else "val"  # LLFF's val and test are the same views
    print(f"last validation: PSNR {float(metrics['val/psnr']):.2f} dB, SSIM {float(metrics.get('val/ssim', float('nan'))):.4f} "
          f"on {whole} {n} held-out views" + ("" if used == n else f" (all of them: eval.py --split {split})"))


if __name__ == "__main__":
    main()

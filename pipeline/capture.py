"""From a phone video (or a folder of photos) to a model, held-out scores, a circle video, a mesh and a
report page: the stages behind ``capture.py``, their time budget and their resumability.

Every stage calls an existing script's ``main(argv)`` in this process (no second start-up of torch),
with ``DIR`` as the working folder, and records the exact command line that reproduces it::

    poses    frames of the video (imgs2poses.py --video) or the photos, then their poses (SfM)
    train    train.py with what imgs2poses recommends (--unbounded --fast for a walk around, NDC
             rays for a forward-facing capture), at a size and for a time the budget allows
    heldout  eval.py --split test: every 8th frame, held out of training, rendered and scored
    video    eval.py --split path: the circle (or spiral) video
    mesh     extract_mesh.py --method tsdf (MESH_METHOD): the object's box found in the density
    report   DIR/report.html (export/report.py)

The folder ``DIR``::

    capture.json             the manifest: the input, the plan, per stage its commands, its seconds
                             and ``done`` (written, atomically, only once the stage's outputs are in place)
    scene/                   images/, sparse/0, poses_bounds.npy
    ckpts/capture/last.ckpt  logs/capture/version_*/ (TensorBoard)
    results/test/  results/path/  mesh/NAME.ply  report.html (one file, its pictures inside)

The time budget (frames, training size and length, estimates of the later stages) is in
``pipeline/budget.py``; the input's checks and the manifest in ``pipeline/inputs.py``.

Resuming: a stage marked done in the manifest whose outputs exist is skipped; training goes on from
``last.ckpt`` (Lightning's Timer state is in it, so ``--max_time`` counts the earlier time too). Each
stage writes its outputs atomically (eval.py publishes a whole folder; the mesh and the report are
written beside their place and renamed into it), so ``kill -9`` at any moment leaves nothing that a
later run takes as done.
"""
import gc
import json
import math
import os
import shlex
import shutil
import time

import numpy as np

from datasets.image_utils import list_images
from pipeline.budget import (MIN_TRAIN_SECONDS, SFM_LONG_SIDE, VAL_STEPS, after_training_seconds, fmt_time,
                             mesh_size, on_gpu, sfm_seconds, smallest_minutes, training_wh)
from pipeline.inputs import check_out_dir, describe_input, write_manifest
from process_data.colmap_sfm import SFM_LOG, recommended_training, summarize_tries
from utils.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("poses", "train", "heldout", "video", "mesh", "report")
EXP = "capture"  # train.py's --exp_name: ckpts/capture, logs/capture
CKPT = os.path.join("ckpts", EXP, "last.ckpt")
SCENE = "scene"

# How the mesh is made: "tsdf" fuses depth and colour rendered from the training cameras (one piece;
# benchmarks/RESULTS.md §13 measures it against marching cubes on the demo's true surface and on beer,
# where it alone keeps the can's colours); "density" is extract_mesh.py's marching cubes on the density.
MESH_METHOD = "tsdf"

# the tiny vanilla model of SPEC.md, for forward-facing (NDC) captures trained on the CPU
TINY_VANILLA = ["--net_depth", "4", "--net_width", "64", "--N_samples", "32", "--N_importance", "32", "--lr", "2e-3"]


# ---------------------------------------------------------------- running stages


def run_main(script, argv):
    """Run ``script``'s ``main(argv)`` here (UserError passes through with its one line). Returns
    what main returned."""
    import importlib

    module = importlib.import_module(os.path.splitext(script)[0])
    main = getattr(module.main, "__wrapped__", module.main)  # without cli_main's sys.exit
    try:
        return main([str(a) for a in argv])
    except SystemExit as err:  # argparse: its own message is above
        raise UserError(f"{script} refused the options {shlex.join(map(str, argv))} (see above)") from None


def command_line(script, argv):
    return "python " + shlex.join([os.path.join(ROOT, script), *map(str, argv)])


class Capture:
    """One capture run: the input, the output folder and its manifest, the clock and the plan."""

    def __init__(self, args, extra):
        self.args, self.extra = args, list(extra)
        self.t0 = time.time()
        self.budget = args.minutes * 60
        self.out = os.path.abspath(args.out)
        self.name = "".join(c if c.isalnum() or c in "-_" else "_" for c in os.path.basename(self.out)) or "capture"
        self.gpu = on_gpu()
        self.manifest = None

    # -- clock and messages
    def left(self):
        return self.budget - (time.time() - self.t0)

    def say(self, msg):
        print(f"[capture] {msg}", flush=True)

    def stage_done(self, stage):
        entry = self.manifest["stages"].get(stage)
        return bool(entry and entry.get("done"))

    def mark(self, stage, commands, seconds, **info):
        self.manifest["stages"][stage] = {"done": True, "commands": commands, "seconds": round(seconds, 1), **info}
        write_manifest(self.out, self.manifest)

    # -- the whole run
    def run(self):
        args = self.args
        source = describe_input(args.input, args.num_frames)
        self.check_extra()
        manifest = check_out_dir(self.out, source)
        fresh = manifest is None
        made = not os.path.exists(self.out)
        if fresh:
            self.check_budget_before(source)
            os.makedirs(self.out, exist_ok=True)
            manifest = {"input": source, "name": self.name, "repo": ROOT, "stages": {}, "plan": {}}
        self.manifest = manifest
        os.chdir(self.out)  # the scripts write ckpts/, logs/, results/ under the working folder
        if fresh:
            write_manifest(self.out, manifest)
        if args.redo:
            self.forget(args.redo)
        self.say(f"{source['kind']} {args.input} -> {self.out}, {args.minutes:g} minutes"
                 + ("" if fresh else " (resuming: stages already done are skipped)"))
        try:
            self.stage_poses(fresh)
        except BaseException:
            if fresh and not self.stage_done("poses"):  # nothing was made: leave nothing behind
                os.chdir(ROOT)
                for entry in ([self.out] if made else [os.path.join(self.out, e) for e in os.listdir(self.out)]):
                    shutil.rmtree(entry, ignore_errors=True) if os.path.isdir(entry) else os.remove(entry)
            raise
        self.stage_train()
        self.stage_heldout()
        self.stage_video()
        self.stage_mesh()
        self.stage_report()
        self.summary()

    def check_extra(self):
        """The options for train.py, checked now (an unknown flag is refused before any work)."""
        from opt import get_parser

        parser = get_parser()
        try:
            parser.parse_args(["--root_dir", "x", *self.extra])
        except SystemExit:
            raise UserError(f"unknown option(s) {shlex.join(self.extra)}: capture.py passes unknown options to "
                            "train.py, which does not take them (see python train.py --help)") from None

    def check_budget_before(self, source):
        """Refuse, before anything is written, a --minutes that cannot hold the capture."""
        sfm = sfm_seconds(source)
        wh = training_wh(source["wh"], MIN_TRAIN_SECONDS, self.gpu)
        n_held = math.ceil(source["num_frames"] / 8)
        after = after_training_seconds(source["num_frames"], n_held, wh, True, MIN_TRAIN_SECONDS, self.gpu)
        need = sfm + MIN_TRAIN_SECONDS + after
        if need > self.budget:
            raise UserError(f"--minutes {self.args.minutes:g} is too short for this capture ({source['num_frames']} "
                            f"frames: about {sfm:.0f} s of poses, {MIN_TRAIN_SECONDS} s of training at least, "
                            f"{after:.0f} s of rendering, mesh and report): the smallest that fits is "
                            f"--minutes {smallest_minutes(need):g}")

    def forget(self, stage):
        """--redo STAGE: that stage and those after it run again (their outputs are removed now)."""
        if stage not in STAGES:
            raise UserError(f"--redo {stage}: choose one of {', '.join(STAGES)}")
        for s in STAGES[STAGES.index(stage):]:
            self.manifest["stages"].pop(s, None)
            if s == "train":
                self.manifest["plan"].pop("train", None)
                for folder in (os.path.join("ckpts", EXP), os.path.join("logs", EXP)):
                    shutil.rmtree(folder, ignore_errors=True)
        write_manifest(self.out, self.manifest)

    def header(self, i, stage, budget=None):
        extra = f", budget {fmt_time(budget)}" if budget is not None else ""
        self.say(f"[{i}/{len(STAGES)}] {stage}{extra}; {fmt_time(self.left())} left of {fmt_time(self.budget)}")

    def skip(self, i, stage, outputs=()):
        if self.stage_done(stage) and all(os.path.exists(p) for p in outputs):
            self.say(f"[{i}/{len(STAGES)}] {stage}: done before, skipped")
            return True
        self.manifest["stages"].pop(stage, None)
        return False

    # -- stages
    def stage_poses(self, fresh):
        if self.skip(1, "poses", [os.path.join(SCENE, "sparse", "0")]):
            return
        self.header(1, "poses", sfm_seconds(self.manifest["input"]))
        t = time.time()
        source = self.manifest["input"]
        scene_dir = SCENE
        if os.path.isdir(scene_dir):  # an interrupted earlier try: its staging folders go
            for e in os.listdir(scene_dir):
                if e.startswith(".imgs2poses"):
                    shutil.rmtree(os.path.join(scene_dir, e), ignore_errors=True)
        downscale = max(1.0, round(max(source["wh"]) / SFM_LONG_SIDE, 2))
        if self.args.downscale is not None:
            downscale = self.args.downscale
        sfm = ["--overwrite"] + (["--downscale", f"{downscale:g}"] if downscale > 1 else [])
        commands = []
        if source["kind"] == "video":
            argv = [scene_dir, "--video", source["path"], "--num_frames", source["num_frames"], *sfm]
        else:
            commands.append(self.link_photos(source["path"], scene_dir))
            argv = [scene_dir, *sfm]
        commands.append(command_line("imgs2poses.py", argv))
        run_main("imgs2poses.py", argv)
        info = {}
        log_file = os.path.join(scene_dir, SFM_LOG)  # the strategies tried (a fold is retried, not kept)
        if os.path.isfile(log_file):
            with open(log_file) as f:
                sfm_log = json.load(f)
            info["strategy"] = sfm_log["strategy"]
            info["strategies"] = summarize_tries(sfm_log["tried"])
        self.mark("poses", commands, time.time() - t, **info)

    def link_photos(self, folder, scene_dir):
        """The photos into scene/images (hard links where possible), whole or not at all."""
        photos = list_images(folder)
        stage = os.path.join(self.out, ".photos-partial")
        shutil.rmtree(stage, ignore_errors=True)
        os.makedirs(stage)
        for p in photos:
            dst = os.path.join(stage, os.path.relpath(p, folder))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            try:
                os.link(p, dst)
            except OSError:
                shutil.copy2(p, dst)
        images = os.path.join(scene_dir, "images")
        shutil.rmtree(images, ignore_errors=True)
        os.makedirs(scene_dir, exist_ok=True)
        os.replace(stage, images)
        self.say(f"{len(photos)} photos linked into {os.path.join(self.out, images)}")
        return f"mkdir -p {images} && cp -r {shlex.quote(folder)}/. {images}/"

    def scene_info(self):
        """(recommendation of imgs2poses, number of posed views, photo size) of the posed scene."""
        from datasets.llff import read_capture

        capture = read_capture(SCENE)
        n = len(capture.poses)
        llff = np.concatenate([capture.poses, np.zeros((n, 3, 1))], 2)  # (N, 3, 5) LLFF rows (hwf unused)
        poses_bounds = np.concatenate([llff.reshape(n, 15), capture.bounds], 1)
        size = tuple(int(round(v)) for v in capture.size)
        return recommended_training(poses_bounds, size), n, size

    def plan_training(self):
        """train.py's options: the recommended flags, the size and the time the budget leaves."""
        rec, n_views, size = self.scene_info()
        n_held = len(range(0, n_views, 8))
        after = lambda wh, secs: after_training_seconds(n_views, n_held, wh, rec["walk_around"], secs, self.gpu)  # noqa: E731
        left = self.left()
        # the image size depends on the training time and the time after training on the size: two rounds settle it
        train_s = left - after(training_wh(size, max(left, 1), self.gpu), left)
        wh = self.args.img_wh or training_wh(size, train_s, self.gpu)
        train_s = left - after(wh, train_s)
        if train_s < MIN_TRAIN_SECONDS:
            used = time.time() - self.t0
            need = used + after(wh, MIN_TRAIN_SECONDS) + MIN_TRAIN_SECONDS
            raise UserError(f"--minutes {self.args.minutes:g} is too short for this capture: the poses took "
                            f"{fmt_time(used)} and rendering, mesh and report need about {fmt_time(after(wh, 0))}, "
                            f"leaving under {MIN_TRAIN_SECONDS} s of training; the smallest that fits is --minutes "
                            f"{smallest_minutes(need):g} (the poses are kept: run again with it)")
        n_train = n_views - n_held
        batch = 4096 if self.gpu else 1024
        steps_per_epoch = math.ceil(n_train * wh[0] * wh[1] / batch)
        val_every = min(1.0, (VAL_STEPS * (5 if self.gpu else 1)) / steps_per_epoch)
        model = rec["flags"] or ([] if self.gpu else TINY_VANILLA)
        argv = ["--dataset_name", "llff", "--root_dir", SCENE, "--img_wh", *wh, *model,
                "--max_time", f"{train_s / 60:.2f}", "--exp_name", EXP, "--val_every", f"{val_every:.3g}",
                "--val_num", 2, *([] if self.gpu else ["--num_gpus", 0]), *self.extra]
        plan = {"argv": [str(a) for a in argv], "img_wh": list(wh), "train_seconds": round(train_s, 1),
                "walk_around": rec["walk_around"], "turn": round(rec["turn"], 1), "n_views": n_views,
                "n_held_out": n_held}
        self.say(f"the cameras turn {rec['turn']:.0f} degrees: "
                 + ("a walk around the object: --unbounded --fast" if rec["walk_around"] else
                    "a forward-facing capture: NDC rays")
                 + f"; training at {wh[0]}x{wh[1]} for {fmt_time(train_s)} ({n_views - n_held} views, "
                   f"{n_held} held out)")
        return plan

    def stage_train(self):
        if self.skip(2, "train", [CKPT]):
            return
        plan = self.manifest["plan"].get("train")
        if plan is None:
            plan = self.manifest["plan"]["train"] = self.plan_training()
            write_manifest(self.out, self.manifest)
        self.header(2, "train", plan["train_seconds"])
        t = time.time()
        argv = list(plan["argv"])
        if os.path.isfile(CKPT):
            self.say(f"resuming from {CKPT} (the time trained before counts)")
            run_argv = argv + ["--ckpt_path", CKPT]
        else:
            run_argv = argv
        trainer = run_main("train.py", run_argv)
        del trainer
        gc.collect()
        self.mark("train", [command_line("train.py", argv)], time.time() - t)

    def eval_argv(self, split, out_dir, *more):
        return ["--ckpt_path", CKPT, "--root_dir", SCENE, "--split", split, "--scene_name", self.name,
                "--out_dir", out_dir, *more]

    def stage_heldout(self):
        out = os.path.join("results", "test")
        if self.skip(3, "heldout", [os.path.join(out, "metrics.json")]):
            return
        self.header(3, "heldout")
        t = time.time()
        argv = self.eval_argv("test", out)
        run_main("eval.py", argv)
        with open(os.path.join(out, "metrics.json")) as f:
            psnr = json.load(f)["psnr"]
        self.mark("heldout", [command_line("eval.py", argv)], time.time() - t, psnr=psnr)

    def stage_video(self):
        out = os.path.join("results", "path")
        if self.skip(4, "video", [os.path.join(out, f"{self.name}.mp4")]):
            return
        self.header(4, "video")
        t = time.time()
        argv = self.eval_argv("path", out, "--no_depth")
        run_main("eval.py", argv)
        self.mark("video", [command_line("eval.py", argv)], time.time() - t)

    def mesh_path(self):
        return os.path.join("mesh", f"{self.name}.ply")

    def stage_mesh(self):
        skipped = "skipped" in self.manifest["stages"].get("mesh", {})  # no mesh, and the reason recorded
        if self.skip(5, "mesh", [] if skipped else [self.mesh_path()]):
            return
        self.header(5, "mesh")
        t = time.time()
        plan = self.manifest["plan"]["train"]
        if not plan["walk_around"]:
            self.say("no mesh: a forward-facing capture is trained with NDC rays, which extract_mesh.py cannot mesh")
            self.mark("mesh", [], 0.0, skipped="forward-facing capture (NDC rays): no mesh")
            return
        N, views = mesh_size(plan["train_seconds"], self.gpu)
        stage = ".mesh-partial"
        shutil.rmtree(stage, ignore_errors=True)
        method = [] if MESH_METHOD == "density" else ["--method", MESH_METHOD]
        base = ["--ckpt_path", CKPT, "--root_dir", SCENE, "--scene_name", self.name, *method,
                "--N_grid", N, "--n_views", views]
        argv = base + ["--out", os.path.join(stage, f"{self.name}.ply")]
        try:
            try:
                run_main("extract_mesh.py", argv)
            except UserError as err:  # an empty mesh at the default threshold: take the one it suggests
                import re

                m = re.search(r"no density above .*try --sigma_threshold ([0-9.eE+-]+)", str(err))
                if not m:
                    raise
                self.say(f"{err}: retrying with --sigma_threshold {m.group(1)}")
                base += ["--sigma_threshold", m.group(1)]
                argv = base + ["--out", os.path.join(stage, f"{self.name}.ply")]
                run_main("extract_mesh.py", argv)
        except UserError as err:  # the report is still worth having: it says why there is no mesh
            shutil.rmtree(stage, ignore_errors=True)
            self.say(f"no mesh: {err} (run extract_mesh.py yourself, then --redo report; or --redo mesh)")
            self.mark("mesh", [command_line("extract_mesh.py", base + ["--out", self.mesh_path()])],
                      time.time() - t, skipped=f"extract_mesh.py failed: {err}")
            return
        shutil.rmtree("mesh", ignore_errors=True)
        os.replace(stage, "mesh")
        self.mark("mesh", [command_line("extract_mesh.py", base + ["--out", self.mesh_path()])], time.time() - t)

    def stage_report(self):
        if self.skip(6, "report", ["report.html"]):
            return
        self.header(6, "report")
        t = time.time()
        from export.report import write_report

        write_report(self.out, self.manifest)
        self.mark("report", [f"python {os.path.join(ROOT, 'capture.py')} {shlex.quote(self.args.input)} "
                             f"--out {shlex.quote(self.args.out)} --redo report"], time.time() - t)

    def summary(self):
        out = self.out
        stages = self.manifest["stages"]
        used = sum(s.get("seconds", 0) for s in stages.values())
        self.say(f"done in {fmt_time(time.time() - self.t0)} ({fmt_time(used)} of stage time in all runs); "
                 f"everything is in {out}:")
        rows = [("report", "report.html"), ("model", CKPT),
                ("held-out", os.path.join("results", "test")
                 + f"  (mean PSNR {stages['heldout']['psnr']:.2f} dB)"),
                ("video", os.path.join("results", "path", f"{self.name}.mp4"))]
        if "skipped" not in stages.get("mesh", {}):
            rows.append(("mesh", self.mesh_path()))
        for what, rel in rows:
            print(f"  {what:9s}{os.path.join(out, rel)}")
        mesh = "" if "skipped" in stages.get("mesh", {}) else f" --mesh {shlex.quote(os.path.join(out, self.mesh_path()))}"
        print(f"look around: python {os.path.join(ROOT, 'viewer.py')} --ckpt_path "
              f"{shlex.quote(os.path.join(out, CKPT))}{mesh}  (then open http://localhost:7007)")


def run_capture(args, extra):
    """Run (or resume) the capture that ``capture.py``'s ``args`` describe; ``extra``: train.py flags."""
    here = os.getcwd()
    try:
        Capture(args, extra).run()
    finally:
        os.chdir(here)

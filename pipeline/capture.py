"""From a phone video (or a folder of photos) to a model, held-out scores, a circle video, a mesh and a
report page: the stages behind ``capture.py``, their time budget and their resumability.

Every stage calls an existing script's ``main(argv)`` in this process (no second start-up of torch),
with ``DIR`` as the working folder, and records the exact command line that reproduces it::

    poses    frames of the video (imgs2poses.py --video) or the photos, then their poses (SfM)
    train    train.py with what imgs2poses recommends (--unbounded --fast for a walk around, NDC
             rays for a forward-facing capture), at a size and for a time the budget allows
    heldout  eval.py --split test: every 8th frame, held out of training, rendered and scored at the
             view size (--view_size: half the frames' by default) and at the thumbnail size
    video    eval.py --split path: the circle (or spiral) video, at the view size when the budget
             can render it, else at the largest size it can
    mesh     extract_mesh.py --method tsdf (MESH_METHOD): the object's box found in the density
    report   DIR/report.html (export/report.py)

The folder ``DIR``::

    capture.json             the manifest: the input, the plan, per stage its commands, its seconds
                             and ``done`` (written, atomically, only once the stage's outputs are in place)
    scene/                   images/, sparse/0, poses_bounds.npy
    ckpts/capture/last.ckpt  logs/capture/version_*/ (TensorBoard)
    results/test/            the held-out views at the view size (results/test_thumbnail_size/: at the
                             size the budget would train at, whose photos scaled up are the report's bar)
    results/path/  mesh/NAME.ply  report.html (one file, its pictures inside)

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

from datasets.image_utils import check_img_wh, list_images
from export.report import viewer_command
from pipeline.budget import (MIN_TRAIN_SECONDS, RENDER_SECONDS_PER_PIXEL, SFM_LONG_SIDE, STEPS_PER_SECOND,
                             VAL_SHARE, VAL_STEPS, VIEW_FRACTION, after_training_seconds, fmt_time, mesh_size, on_gpu,
                             render_speedup, sfm_seconds, smallest_minutes, training_wh, view_sizes)
from pipeline.inputs import check_out_dir, describe_input, write_manifest
from process_data.colmap_sfm import SFM_LOG, aspect_wh, recommended_training, summarize_tries
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

VAL_NUM = 2  # held-out views validated during training (the report's PSNR curve)
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
        self.check_view_size(source["wh"])
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
        self.replan_views()
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

    def parse_extra(self, **defaults):
        """The extra options as train.py's own parser reads them (``--kernels=eager``, the last of two flags
        winning), ``defaults`` in place of its own: None tells an option the user did not give."""
        from opt import get_parser

        parser = get_parser()
        parser.set_defaults(**defaults)
        return parser.parse_args(["--root_dir", "x", *self.extra])

    def check_extra(self):
        """The options for train.py, checked now (an unknown flag is refused before any work)."""
        try:
            self.parse_extra()
        except SystemExit:
            raise UserError(f"unknown option(s) {shlex.join(self.extra)}: capture.py passes unknown options to "
                            "train.py, which does not take them (see python train.py --help)") from None

    def check_view_size(self, frames_wh):
        """Refuse, before anything is written, a --view_size larger than the frames or of another shape."""
        if self.args.view_size is None:
            return
        (w, h), (W, H) = self.args.view_size, frames_wh
        if w > W or h > H or w < 16 or h < 16:
            half = aspect_wh((W, H), round(W * VIEW_FRACTION))
            raise UserError(f"--view_size {w} {h} is {'larger than' if w > W or h > H else 'too small for'} the "
                            f"{W}x{H} frames: use at most --view_size {W} {H} (half: --view_size {half[0]} {half[1]})")
        check_img_wh((w, h), (W, H), flag="--view_size")

    def replan_views(self):
        """A --view_size other than the one planned: the held-out views, video and report are made again."""
        plan = self.manifest["plan"].get("train")
        asked = self.args.view_size
        if plan is None or asked is None or list(asked) == plan.get("view_wh"):
            return
        _, _, size = self.scene_info()
        small = plan.get("thumbnail_wh", plan["img_wh"])
        plan["view_wh"], plan["video_wh"] = view_sizes(size, plan["n_held_out"], self.budget, small, self.gpu, asked=asked,
                                                       fused=self.fused_renders(plan["walk_around"]))
        for stage in ("heldout", "video", "report"):
            self.manifest["stages"].pop(stage, None)
        write_manifest(self.out, self.manifest)
        self.say(f"--view_size {asked[0]} {asked[1]}: the held-out views, video and report are made again")

    def check_budget_before(self, source):
        """Refuse, before anything is written, a --minutes that cannot hold the capture."""
        sfm = sfm_seconds(source)
        wh = training_wh(source["wh"], MIN_TRAIN_SECONDS, self.gpu)
        n_held = math.ceil(source["num_frames"] / 8)
        views = view_sizes(source["wh"], n_held, self.budget, wh, self.gpu, asked=self.args.view_size)
        after = after_training_seconds(source["num_frames"], n_held, wh, True, MIN_TRAIN_SECONDS, self.gpu, *views)
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
        """train.py's options: the recommended flags, the size and the time the budget leaves.

        Two sizes come from the budget: the thumbnail size, which the minutes could show each
        training pixel many times (``training_wh``), and the view size (``view_sizes``). A walk around
        an object trains on the CPU at the view size: at equal time it scores better there than a
        model trained at the thumbnail size, and about as well at the thumbnail size (RESULTS §23).
        The held-out views are scored at both, the mesh's views are rendered at the thumbnail size."""
        rec, n_views, size = self.scene_info()
        n_held = len(range(0, n_views, 8))
        asked = self.args.view_size
        fused = self.fused_renders(rec["walk_around"])  # before the clock is read: a first build takes ~30 s
        refine = self.camera_refinement(fused)

        def after(small, secs):
            views = view_sizes(size, n_held, self.budget, small, self.gpu, asked=asked, fused=fused)
            return after_training_seconds(n_views, n_held, small, rec["walk_around"], secs, self.gpu, *views, fused=fused,
                                          refined=refine)

        left = self.left()
        # the thumbnail size depends on the training time and the time after training on the size: two rounds settle it
        train_s = left - after(training_wh(size, max(left, 1), self.gpu), left)
        small = training_wh(size, train_s, self.gpu)
        train_s = left - after(small, train_s)
        if train_s < MIN_TRAIN_SECONDS:
            used = time.time() - self.t0
            need = used + after(small, MIN_TRAIN_SECONDS) + MIN_TRAIN_SECONDS
            raise UserError(f"--minutes {self.args.minutes:g} is too short for this capture: the poses took "
                            f"{fmt_time(used)} and rendering, mesh and report need about {fmt_time(after(small, 0))}, "
                            f"leaving under {MIN_TRAIN_SECONDS} s of training; the smallest that fits is --minutes "
                            f"{smallest_minutes(need):g} (the poses are kept: run again with it)")
        view_wh, video_wh = view_sizes(size, n_held, self.budget, small, self.gpu, asked=asked, fused=fused)
        wh = self.args.img_wh or (view_wh if rec["walk_around"] and not self.gpu else small)
        model = rec["flags"] or ([] if self.gpu else TINY_VANILLA)
        argv = ["--dataset_name", "llff", "--root_dir", SCENE, "--img_wh", *wh, *model,
                "--max_time", f"{train_s / 60:.2f}", "--exp_name", EXP,
                "--val_every", f"{self.val_every(wh, n_views - n_held, train_s, rec['walk_around']):.3g}",
                "--val_num", VAL_NUM, *([] if self.gpu else ["--num_gpus", 0]),
                *(["--optimize_cameras"] if refine else []), *self.extra]
        plan = {"argv": [str(a) for a in argv], "img_wh": list(wh), "train_seconds": round(train_s, 1),
                "walk_around": rec["walk_around"], "turn": round(rec["turn"], 1), "n_views": n_views,
                "n_held_out": n_held, "view_wh": view_wh, "video_wh": video_wh, "thumbnail_wh": small,
                "refined": refine}
        self.say(f"the cameras turn {rec['turn']:.0f} degrees: "
                 + ("a walk around the object: --unbounded --fast" if rec["walk_around"] else
                    "a forward-facing capture: NDC rays")
                 + f"; training at {wh[0]}x{wh[1]} for {fmt_time(train_s)} ({n_views - n_held} views, "
                   f"{n_held} held out)"
                 + ("; with camera refinement: each photo's pose is corrected as it trains, and each held-out view's "
                    "is aligned before it is scored" if refine else ""))
        self.say(f"held-out views scored at {view_wh[0]}x{view_wh[1]} (the view size) and at {small[0]}x{small[1]} "
                 f"(the thumbnail size); the video at {video_wh[0]}x{video_wh[1]}"
                 + ("" if video_wh == view_wh else " (the view size would not fit --minutes)"))
        return plan

    def camera_refinement(self, fused):
        """Whether training refines the cameras (``--optimize_cameras``): by default where the renders are
        fused, a walk around on the CPU's kernels, where it wins at equal time (RESULTS §25: +1.4 dB at the
        view size on beer's clip; without the kernels a refined step costs 2.3x); the last of
        ``--optimize_cameras`` and ``--no_optimize_cameras`` among the extra flags decides otherwise."""
        said = self.parse_extra(optimize_cameras=None).optimize_cameras
        return fused if said is None else said

    def fused_renders(self, walk_around):
        """Whether the renders after training run on the fused CPU kernels (``budget.render_speedup``): a walk
        around (the fast path) on the CPU, without ``--kernels eager``, where the kernels build (here, once:
        the first build takes ~30 s that training would take otherwise; later runs load it from the cache)."""
        if self.gpu or not walk_around:
            return False
        if getattr(self, "_fused", None) is None:
            from models import kernels

            self._fused = self.parse_extra().kernels != "eager" and kernels.extension() is not None
        return self._fused

    def val_every(self, wh, n_train, train_s, fast):
        """train.py's --val_every (in epochs): every VAL_STEPS steps (each writes last.ckpt, where a
        run resumes), or less often when validating at ``wh`` would take over VAL_SHARE of training."""
        batch = 4096 if self.gpu else 512 if fast else 1024  # the fast path's CPU preset, the tiny vanilla model
        steps_per_epoch = math.ceil(n_train * wh[0] * wh[1] / batch)
        seconds = VAL_NUM * wh[0] * wh[1] * RENDER_SECONDS_PER_PIXEL / render_speedup(self.gpu, self.fused_renders(fast))
        most = max(1.0, VAL_SHARE * train_s / seconds)  # validations that fit the share
        steps = max(VAL_STEPS * (5 if self.gpu else 1), train_s * STEPS_PER_SECOND / most)
        return min(1.0, steps / steps_per_epoch)

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
        """The held-out views at the view size (results/test) and at the thumbnail size
        (results/test_thumbnail_size: the size earlier captures trained at and were judged by)."""
        out, small = os.path.join("results", "test"), os.path.join("results", "test_thumbnail_size")
        plan = self.manifest["plan"]["train"]
        view_wh = plan.get("view_wh", plan["img_wh"])
        small_wh = plan.get("thumbnail_wh", plan["img_wh"])
        runs = [(out, view_wh)] + ([(small, small_wh)] if view_wh != small_wh else [])
        if self.skip(3, "heldout", [os.path.join(o, "metrics.json") for o, _ in runs]):
            return
        self.header(3, "heldout")
        t = time.time()
        commands, scores = [], {}
        for folder, wh in runs:
            argv = self.eval_argv("test", folder, "--img_wh", *wh)
            run_main("eval.py", argv)
            commands.append(command_line("eval.py", argv))
            with open(os.path.join(folder, "metrics.json")) as f:
                m = json.load(f)
            scores[folder] = {"img_wh": list(wh), **{k: m[k] for k in ("psnr", "ssim", "gmsd")}}
        info = scores.pop(out)
        if scores:
            info["thumbnail_size"] = scores[small]
        self.mark("heldout", commands, time.time() - t, **info)

    def stage_video(self):
        out = os.path.join("results", "path")
        if self.skip(4, "video", [os.path.join(out, f"{self.name}.mp4")]):
            return
        self.header(4, "video")
        t = time.time()
        plan = self.manifest["plan"]["train"]
        argv = self.eval_argv("path", out, "--no_depth", "--img_wh", *plan.get("video_wh", plan["img_wh"]))
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
                "--N_grid", N, "--n_views", views, "--img_wh", *plan.get("thumbnail_wh", plan["img_wh"])]
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
        held = stages["heldout"]
        scores = f"mean PSNR {held['psnr']:.2f} dB" + (f", SSIM {held['ssim']:.3f}, GMSD {held['gmsd']:.3f} at "
                                                       f"{'x'.join(map(str, held['img_wh']))}" if "gmsd" in held else "")
        if "thumbnail_size" in held:
            scores += f"; {held['thumbnail_size']['psnr']:.2f} dB at {'x'.join(map(str, held['thumbnail_size']['img_wh']))}"
        rows = [("report", "report.html"), ("model", CKPT),
                ("held-out", os.path.join("results", "test") + f"  ({scores})"),
                ("video", os.path.join("results", "path", f"{self.name}.mp4"))]
        if "skipped" not in stages.get("mesh", {}):
            rows.append(("mesh", self.mesh_path()))
        for what, rel in rows:
            print(f"  {what:9s}{os.path.join(out, rel)}")
        print(f"look around: {viewer_command(out, self.manifest)}  (then open http://localhost:7007)")


def run_capture(args, extra):
    """Run (or resume) the capture that ``capture.py``'s ``args`` describe; ``extra``: train.py flags."""
    here = os.getcwd()
    try:
        Capture(args, extra).run()
    finally:
        os.chdir(here)

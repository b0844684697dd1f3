"""Rendering for the viewer: one model shared by all browser tabs, a progressive loop per tab.

A view is rendered exactly as ``eval.py`` renders a frame (``models.rendering.eval_render_kwargs``, rays from
``viewer.camera.view_dataset``), but in pieces, so that a camera move cancels the render within a
piece, and several tabs take turns on the model (a lock per piece).
"""
import math
import threading
import time

import numpy as np
import torch

from models.rendering import eval_render_kwargs, render_chunked
from utils.visualization import depth_to_rgb, to_uint8
from viewer.camera import intrinsics, view_dataset

MODES = ("rgb", "depth", "opacity")


class Cancelled(Exception):
    """A render was abandoned: the camera moved, the settings changed, or the tab closed."""


class SceneRenderer:
    """The model and the scene setting, shared by every tab (and swapped by training).

    Args:
        fields: dict level -> field (eval mode), as ``models.load_model`` returns.
        h: the merged hparams (sampling flags, ``chunk``).
        scene: ``viewer.camera.scene_cameras`` output.
        device: where the fields live.
        duty: the share of wall time rendering may take (1: all; during training less, so that
            training keeps the rest): after each piece, a pause of ``piece_time * (1 - duty) / duty``.
    """

    def __init__(self, fields, h, scene, device, duty=1.0):
        self.fields, self.h, self.scene, self.device = fields, h, scene, torch.device(device)
        self.duty = float(duty)
        self.lock = threading.Lock()  # one piece at a time on the model, whoever asks
        self.rays_per_s = 20000.0  # running estimate of rendering alone (rays / s), sizes the pieces
        self.image_rays_per_s = None  # the same for whole images sent (rays, picture and sending), sizes first images
        self.weights_version = 0

    def set_fields(self, fields):
        """Swap in new weights (a copy made by the training callback)."""
        with self.lock:
            self.fields = fields
            self.weights_version += 1

    def render(self, c2w, fov_y, img_wh, cancelled=lambda: False, piece_s=0.1):
        """Render one view at ``img_wh`` ``(W, H)``.

        Args:
            c2w: ``(3, 4)`` camera-to-world, project convention (x right, y up, looking along -z).
            fov_y: vertical field of view, radians.
            cancelled: polled between pieces; when it returns True, ``Cancelled`` is raised.
            piece_s: target duration of one piece (rays per piece from the running rays/s).
        Returns:
            dict ``rgb (H, W, 3)``, ``depth (H, W)``, ``opacity (H, W)``: float32 CPU tensors.
        """
        W, H = img_wh
        ds = view_dataset(self.scene, np.asarray(c2w)[None], intrinsics(fov_y, img_wh), img_wh)
        rays = ds.rays(0)
        kwargs = eval_render_kwargs(self.h, ds.white_back)
        outs, start = [], 0
        while start < len(rays):
            if cancelled():
                raise Cancelled()
            n = max(256, int(self.rays_per_s * piece_s))
            t0 = time.perf_counter()
            with self.lock:
                out = render_chunked(self.fields, rays[start:start + n].to(self.device), chunk=self.h.chunk,
                                     to_cpu=True, **kwargs)
            dt = time.perf_counter() - t0
            got = min(n, len(rays) - start)
            self.rays_per_s = 0.7 * self.rays_per_s + 0.3 * got / max(dt, 1e-4)
            outs.append(out)
            start += n
            if self.duty < 1.0:
                time.sleep(dt * (1.0 - self.duty) / self.duty)
        cat = {k: torch.cat([o[k] for o in outs]) for k in ("rgb", "depth", "opacity")}
        return {"rgb": cat["rgb"].view(H, W, 3).clamp(0, 1), "depth": cat["depth"].view(H, W),
                "opacity": cat["opacity"].view(H, W)}

    def first_image_width(self, frame_time, aspect, max_w):
        """Width of the first image after a move: what ``frame_time`` seconds afford at the rate whole
        images were sent at so far (rendering alone runs faster: rays, pictures and sending cost too)."""
        rate = min(self.rays_per_s, self.image_rays_per_s or self.rays_per_s)
        return first_width(rate, frame_time, aspect, max_w)

    def note_image(self, n_rays, seconds):
        """Update the whole-image rate with an image of ``n_rays`` sent in ``seconds``."""
        rate = n_rays / max(seconds, 1e-4)
        self.image_rays_per_s = rate if self.image_rays_per_s is None else 0.5 * self.image_rays_per_s + 0.5 * rate

    def calibrate(self, c2w, fov_y):
        """Measure rays/s on a small image (twice: the first pass also warms up), so that the first
        image after a move is sized right from the start; every later piece refines the estimate."""
        for _ in range(2):
            self.render(c2w, fov_y, (48, 32), piece_s=1e9)

    def depth_range(self):
        """Colour scale of depth pictures: the scene's near/far (NDC scenes: 0-1), and whether to
        space the colours in inverse depth (unbounded scenes)."""
        return float(self.scene["near"]), float(self.scene["far"]), bool(getattr(self.h, "unbounded", False))


def picture(out, mode, vrange):
    """``(H, W, 3)`` uint8 of a render: its colours, its depth (colormapped over ``vrange``: near,
    far and whether in inverse depth), or its opacity (grey)."""
    if mode == "depth":
        return depth_to_rgb(out["depth"], *vrange[:2], inverse=vrange[2] if len(vrange) > 2 else False)
    if mode == "opacity":
        return to_uint8(out["opacity"][..., None].expand(-1, -1, 3))
    return to_uint8(out["rgb"])


def level_widths(first_w, max_w):
    """Widths of the progressive levels: ``first_w``, doubling, ending exactly at ``max_w``."""
    widths, w = [], max(8, min(first_w, max_w))
    while w < max_w:
        widths.append(w)
        w *= 2
    return widths + [max_w]


def first_width(rays_per_s, budget_s, aspect, max_w):
    """Width of the first image after a move, so that it takes about ``budget_s``: the rays it
    affords, ``rays_per_s * budget_s``, in an image of ``aspect`` = W / H."""
    n = rays_per_s * budget_s
    return int(max(16, min(max_w, math.sqrt(n * aspect))))


class ClientSession:
    """The render state of one browser tab: its camera, settings and a progressive render thread.

    The thread sleeps until the camera or a setting changes; then it sends a coarse image sized to
    take ``frame_time`` seconds, then finer ones (width doubling) up to ``max_width``, each
    abandoned as soon as the camera moves again. ``stop()`` (the tab closed) ends it within a piece.
    """

    def __init__(self, client, renderer, settings):
        self.client, self.renderer, self.settings = client, renderer, settings
        self.version = 0  # bumped by every camera move or settings change
        self.wake = threading.Event()
        self.stopped = threading.Event()
        self.last = None  # (picture uint8, version, width) of the finest image sent
        self.frames_sent = 0
        self.thread = threading.Thread(target=self._loop, name=f"viewer-client-{client.client_id}", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def touch(self):
        """Something changed (camera, settings, weights): start over with a coarse image."""
        self.version += 1
        self.wake.set()

    def stop(self):
        self.stopped.set()
        self.wake.set()

    def camera(self):
        """The tab's camera now: ``(c2w (3, 4), fov_y, aspect)`` in the project convention."""
        from viewer.camera import viser_to_c2w
        cam = self.client.camera
        return viser_to_c2w(cam.wxyz, cam.position), float(cam.fov), float(cam.aspect)

    def _loop(self):
        while not self.stopped.is_set():
            self.wake.wait()
            self.wake.clear()
            if self.stopped.is_set():
                break
            try:
                self._progressive(self.version)
            except Cancelled:
                continue
            except Exception as err:  # a render bug must not kill the tab's thread silently
                print(f"viewer: render failed for client {self.client.client_id}: {type(err).__name__}: {err}")

    def _progressive(self, version):
        s, r = self.settings, self.renderer
        c2w, fov, aspect = self.camera()
        max_w = int(s["max_width"])
        cancelled = lambda: self.stopped.is_set() or self.version != version  # noqa: E731
        widths = level_widths(r.first_image_width(float(s["frame_time"]), aspect, max_w), max_w)
        for w in widths:
            wh = (w, max(1, int(round(w / aspect))))
            t0 = time.perf_counter()
            out = r.render(c2w, fov, wh, cancelled)
            pic = picture(out, s["mode"], r.depth_range())
            if cancelled():
                raise Cancelled()
            final = w == widths[-1]
            self.client.scene.set_background_image(pic, format="png" if final else "jpeg", jpeg_quality=90)
            r.note_image(wh[0] * wh[1], time.perf_counter() - t0)
            self.frames_sent += 1
            self.last = (pic, version, w, c2w, fov)

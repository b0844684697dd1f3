"""``train.py --viewer``: the viewer's page live during training, from a copy of the weights.

Training never waits on the viewer: the page renders from its own copy of the fields, in the
viewer's threads, with a bounded share of the time (``SceneRenderer.duty``); the copy is refreshed
every ``--viewer_every`` steps only while a browser tab is open, and only when the renderer is
not in the middle of a piece (otherwise the next step tries again). A closed browser costs nothing.
"""
import copy
import os
from argparse import Namespace

import pytorch_lightning as pl
import torch

from viewer.camera import scene_box
from viewer.render import SceneRenderer
from viewer.server import ViewerServer, check_port

TRAIN_DUTY = 0.3  # rendering takes at most ~30% of wall time while training runs


class ViewerCallback(pl.Callback):
    """Serve the viewer on ``port`` from rank 0 for the length of ``trainer.fit``.

    Args:
        port: the page's port (checked at construction, before anything is written).
        every: refresh the viewer's weights every this many optimizer steps.
        out_dir: where the page's snapshots and camera paths go.
    """

    def __init__(self, port=7007, every=50, out_dir="viewer_out", host="0.0.0.0"):
        if os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0":
            check_port(port, host, flag="--viewer_port")  # only the process that will serve (DDP re-runs train.py per rank)
        self.port, self.every, self.out_dir, self.host = port, max(1, int(every)), out_dir, host
        self.server = self.renderer = None

    def on_fit_start(self, trainer, pl_module):
        if trainer.global_rank != 0:
            return
        ds = pl_module.train_dataset
        h = Namespace(**dict(pl_module.hparams))
        scene = {**ds.camera_state(), "rgbs": ds.rgbs.cpu() if ds.rgbs is not None else None, "aabb": scene_box(h, ds)}
        fields = self._copy_fields(pl_module)
        self.renderer = SceneRenderer(fields, h, scene, pl_module.device, duty=TRAIN_DUTY)
        self.server = ViewerServer(self.renderer, port=self.port, host=self.host, out_dir=self.out_dir,
                                   aabb=scene["aabb"], title="nerf_pl viewer (training)")
        print(f"\nviewer: http://localhost:{self.port}  (live while training; weights every {self.every} steps)")

    @staticmethod
    def _copy_fields(pl_module):
        out = {}
        for level, module in pl_module.fields.items():
            out[level] = copy.deepcopy(module).eval().requires_grad_(False)
        return out

    def refresh(self, pl_module):
        """Copy the current weights into the viewer's fields; False when skipped (renderer busy)."""
        r = self.renderer
        if not r.lock.acquire(blocking=False):
            return False
        try:
            with torch.no_grad():
                for level, module in pl_module.fields.items():
                    target = r.fields[level].state_dict()
                    for k, v in module.state_dict().items():
                        target[k].copy_(v)
            r.weights_version += 1
        finally:
            r.lock.release()
        self.server.refresh_all()
        return True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.server is None or trainer.global_step % self.every or not self.server.sessions:
            return
        self.refresh(pl_module)

    def on_fit_end(self, trainer, pl_module):
        self.close()

    def on_exception(self, trainer, pl_module, exception):
        self.close()

    def close(self):
        if self.server is not None:
            self.server.stop()
            self.server = None


def viewer_callbacks(hparams):
    """The callbacks ``train.py`` adds for ``--viewer`` (none without it)."""
    if not getattr(hparams, "viewer", False):
        return []
    out_dir = os.path.join("results", hparams.dataset_name, os.path.basename(hparams.root_dir.rstrip("/")), "viewer")
    return [ViewerCallback(port=hparams.viewer_port, every=hparams.viewer_every, out_dir=out_dir)]

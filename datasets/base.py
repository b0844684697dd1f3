"""What every dataset shares: the split logic, rays built from poses on demand, batching."""
import math

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from datasets.ray_utils import get_ndc_rays, get_ray_directions, get_rays
from utils.rays import Rays


class BaseDataset(Dataset):
    """A scene: cameras, images and the rays through them.

    A format reader subclasses this and implements ``read_meta(split)``, which must set

    - ``self.K``: ``(3, 3)`` intrinsics at ``img_wh`` resolution, or ``(N_images, 3, 3)`` when the
      images come from cameras with different intrinsics (``self.K`` then becomes their mean, a
      reference camera for NDC and render paths, and ``self.Ks`` keeps one per image);
    - ``self.poses``: ``(N_images, 3, 4)`` float32 camera-to-world, in the convention of
      ``datasets.ray_utils`` (x right, y up, looking along -z);
    - ``self.rgbs``: ``(N_images, H*W, 3)`` float32 in [0, 1], or None when the split has no
      ground truth (a rendering path);
    - ``self.near``, ``self.far``: scene bounds in units of the (normalized) ray directions;
    - optionally ``self.ndc = True`` (forward-facing scenes: rays are mapped to NDC) and
      ``self.image_names`` (one per pose).

    Splits: ``"train"`` yields batches of random rays (indexed by a ``LongTensor`` of flat ray
    indices from ``RayBatchSampler``); every other split yields whole images, one per index.
    Rays are built from the pose and the pixel on demand, so memory holds colours, not rays.
    """

    ndc = False
    ndc_viewdirs = False  # NDC rays: give fields unit world-space view directions (--ndc_viewdirs world)
    ndc_ref = None  # (focal, W, H) of the camera defining the NDC map; None: this dataset's own
    white_back = False

    def __init__(self, root_dir, split="train", img_wh=(800, 800), **kwargs):
        self.root_dir = root_dir
        self.split = split
        self.img_wh = tuple(int(v) for v in img_wh)
        self.image_names = None
        self.read_meta(split, **kwargs)
        W, H = self.img_wh
        self.poses = torch.as_tensor(np.asarray(self.poses), dtype=torch.float32)
        K = np.asarray(self.K, dtype=np.float32)
        if K.ndim == 3 and np.allclose(K, K[:1], rtol=1e-6, atol=0):
            K = K[0]  # one shared camera after all
        if K.ndim == 3:  # a camera per image: a direction per pixel of each image (N_images, H*W, 3)
            self.Ks, self.K = K, K.mean(0)
            self.directions = torch.stack([get_ray_directions(H, W, k).view(-1, 3) for k in K])
        else:
            self.K, self.Ks = K, np.repeat(K[None], len(self.poses), 0)  # Ks: (N_images, 3, 3)
            self.directions = get_ray_directions(H, W, K).view(-1, 3)  # (H*W, 3)
        if self.rgbs is not None:
            self.rgbs = torch.as_tensor(np.asarray(self.rgbs), dtype=torch.float32).view(len(self.poses), H * W, 3)

    def read_meta(self, split, **kwargs):
        raise NotImplementedError

    @property
    def n_rays(self):
        W, H = self.img_wh
        return len(self.poses) * W * H

    def to(self, device):
        """Move images, poses and directions to ``device`` (the fast path keeps them on the GPU)."""
        self.poses, self.directions = self.poses.to(device), self.directions.to(device)
        if self.rgbs is not None:
            self.rgbs = self.rgbs.to(device)
        return self

    def scene_aabb(self):
        """A box that holds the scene, ``[xmin, ymin, zmin, xmax, ymax, zmax]`` (fast path).

        NDC scenes fill [-1, 1]^3 (a margin in x, y for rays at the image edges); otherwise a cube
        around the origin reaching the cameras, which look at the object from outside.
        Readers that know better override this.
        """
        if self.ndc:
            return [-1.5, -1.5, -1.0, 1.5, 1.5, 1.0]
        r = float(self.poses[:, :, 3].norm(dim=-1).max())
        return [-r, -r, -r, r, r, r]

    def camera_state(self):
        """The cameras as plain arrays (no images): ``CameraPath.from_state`` rebuilds them."""
        K = self.Ks if self.directions.dim() == 3 else self.K
        return dict(K=np.array(K, dtype=np.float32), img_wh=list(self.img_wh),
                    poses=self.poses.cpu().numpy(), near=float(self.near), far=float(self.far),
                    ndc=bool(self.ndc), white_back=bool(self.white_back), image_names=self.image_names,
                    ndc_viewdirs=bool(self.ndc_viewdirs))

    def __len__(self):
        if self.split == "train":
            raise TypeError("the train split is indexed by batches of rays: use RayBatchSampler")
        return len(self.poses)

    def rays(self, img_idx, pix_idx=None, c2w=None):
        """Rays through pixels of one or several images.

        Args:
            img_idx: an image index, or a ``LongTensor`` ``(N_rays,)`` of image indices.
            pix_idx: ``LongTensor`` ``(N_rays,)`` of flat pixel indices (``v * W + u``);
                None: every pixel of image ``img_idx``, row by row.
            c2w: the camera(s) to use instead of ``self.poses[img_idx]``: ``(3, 4)`` or
                ``(N_rays, 3, 4)`` (refined poses, ``models.camera_opt``; gradients flow to them).
        Returns:
            ``Rays`` of N_rays (H*W for a whole image). In the train split ``image`` holds each
            ray's image index (the training image whose appearance code colours it); other splits
            leave it None (held-out views render with the mean code).
        """
        if self.directions.dim() == 3:  # a camera per image
            dirs = self.directions[img_idx] if pix_idx is None else self.directions[img_idx, pix_idx]
        else:
            dirs = self.directions if pix_idx is None else self.directions[pix_idx]  # (N_rays, 3)
        c2w = self.poses[img_idx] if c2w is None else c2w  # (3, 4) or (N_rays, 3, 4)
        rays_o, rays_d = get_rays(dirs, c2w)
        viewdirs = None
        if self.ndc:
            focal, W, H = self.ndc_ref or (float(self.K[0, 0]), *self.img_wh)
            viewdirs = rays_d if self.ndc_viewdirs else None  # unit, world space, before the NDC map
            rays_o, rays_d = get_ndc_rays(H, W, focal, 1.0, rays_o, rays_d)
        ones = torch.ones_like(rays_o[:, :1])
        image = None
        if self.split == "train":
            image = torch.as_tensor(img_idx, dtype=torch.long, device=rays_o.device).expand(len(rays_o))
        return Rays(rays_o, rays_d, ones * self.near, ones * self.far, image, viewdirs)

    def __getitem__(self, idx):
        if self.split == "train":
            return self.ray_batch(idx)
        sample = {"rays": self.rays(idx), "img_idx": idx}
        if self.rgbs is not None:
            sample["rgbs"] = self.rgbs[idx]  # (H*W, 3)
        return sample


    def ray_batch(self, idx, pose_fn=None):
        """A training batch: ``idx`` ``(B,)`` flat indices into all pixels of all training images ->
        ``{"rays": Rays, "rgbs": (B, 3)}``. ``pose_fn(c2w (B, 3, 4), image (B,))`` -> ``(B, 3, 4)``:
        cameras to use instead of the poses read (``--optimize_cameras``)."""
        W, H = self.img_wh
        img_idx, pix_idx = idx // (W * H), idx % (W * H)
        c2w = None if pose_fn is None else pose_fn(self.poses[img_idx], img_idx)
        return {"rays": self.rays(img_idx, pix_idx, c2w=c2w), "rgbs": self.rgbs[img_idx, pix_idx]}


class RayBatchSampler(Sampler):
    """Batches of random ray indices: every ray once per epoch, in a new order each epoch.

    Under DDP each rank takes its own ``batch_size`` slice of each global batch of
    ``batch_size * world_size`` rays, so all ranks see disjoint rays and the same number of steps.
    The order depends only on ``seed`` and the epoch (``set_epoch``, called by Lightning), and
    ``skip`` batches can be skipped once, to resume mid-epoch exactly.

    Yields ``LongTensor`` ``(batch_size,)`` (the last batch of an epoch may be smaller).
    """

    def __init__(self, n_rays, batch_size, seed=0, rank=0, world_size=1):
        self.n_rays, self.batch_size = n_rays, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return math.ceil(self.n_rays / (self.batch_size * self.world_size))

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        perm = torch.randperm(self.n_rays, generator=gen)
        step = self.batch_size * self.world_size
        start, self.skip = self.skip, 0
        for i in range(start, len(self)):
            chunk = perm[i * step:(i + 1) * step]
            mine = chunk[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
            if len(mine) == 0:  # the last global batch ran out before this rank: reuse its start
                mine = chunk[:self.batch_size]
            yield mine


class CameraPath(BaseDataset):
    """Cameras without images, built from arrays: a render path carried by a weights-only file.

    ``BaseDataset.camera_state()`` of any split gives the dict this is rebuilt from, so
    ``eval.py --split path`` can render a scene from the model file alone. ``ndc_ref``
    ``(focal, W, H)``: the training camera whose NDC map a view of another size or field of
    view must keep (the viewer, ``eval.py --path_json``).
    """

    def __init__(self, K, img_wh, poses, near, far, ndc=False, white_back=False, image_names=None, ndc_ref=None,
                 ndc_viewdirs=False):
        self._state = dict(K=np.asarray(K, dtype=np.float32), poses=np.asarray(poses, dtype=np.float32),
                           near=float(near), far=float(far), ndc=bool(ndc), white_back=bool(white_back),
                           ndc_viewdirs=bool(ndc_viewdirs))
        super().__init__(root_dir=None, split="path", img_wh=img_wh)
        self.image_names = image_names
        self.ndc_ref = tuple(float(v) for v in ndc_ref) if ndc_ref else None

    def read_meta(self, split, **_):
        s = self._state
        self.K, self.poses, self.near, self.far = s["K"], s["poses"], s["near"], s["far"]
        self.ndc, self.white_back, self.rgbs = s["ndc"], s["white_back"], None
        self.ndc_viewdirs = s["ndc_viewdirs"]

    @classmethod
    def from_state(cls, state):
        return cls(**state)

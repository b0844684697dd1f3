"""What every dataset shares: the split logic, rays built from poses on demand, batching."""
import math

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from datasets.distortion import Distortion
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
    - optionally ``self.ndc = True`` (forward-facing scenes: rays are mapped to NDC),
      ``self.image_names`` (one per pose) and ``self.distortion``: the lens
      (``datasets.distortion.Distortion``) of every image, a list of one per image, or None
      (pinhole cameras). Render paths (split ``"path"``) stay pinhole.

    Pixel directions are computed once per distinct camera (intrinsics and lens) at ``img_wh``:
    ``self.directions`` is ``(H*W, 3)`` when every image shares one camera, else
    ``(N_cameras, H*W, 3)`` with ``self.camera_of`` ``(N_images,)`` the camera of each image.

    Splits: ``"train"`` yields batches of random rays (indexed by a ``LongTensor`` of flat ray
    indices from ``RayBatchSampler``); every other split yields whole images, one per index.
    Rays are built from the pose and the pixel on demand, so memory holds colours, not rays.
    """

    ndc = False
    ndc_viewdirs = False  # NDC rays: give fields unit world-space view directions (--ndc_viewdirs world)
    ndc_ref = None  # (focal, W, H) of the camera defining the NDC map; None: this dataset's own
    white_back = False
    distortion = None  # pinhole cameras unless read_meta sets a lens

    def __init__(self, root_dir, split="train", img_wh=(800, 800), **kwargs):
        self.root_dir = root_dir
        self.split = split
        self.img_wh = tuple(int(v) for v in img_wh)
        self.image_names = None
        self.read_meta(split, **kwargs)
        W, H = self.img_wh
        self.poses = torch.as_tensor(np.asarray(self.poses), dtype=torch.float32)
        n = len(self.poses)
        K = np.asarray(self.K, dtype=np.float32)
        if K.ndim == 3 and np.allclose(K, K[:1], rtol=1e-6, atol=0):
            K = K[0]  # one shared camera after all
        self.per_image_K = K.ndim == 3
        if self.per_image_K:  # the mean: a reference camera for NDC and render paths
            self.Ks, self.K = K, K.mean(0)
        else:
            self.K, self.Ks = K, np.repeat(K[None], n, 0)  # Ks: (N_images, 3, 3)
        self.lenses = self._lens_per_image(n)  # (N_images,) Distortion or None
        # one direction table per distinct (K, lens): a 300-photo capture from one camera costs one
        keys, tables, camera_of = {}, [], []
        for k, lens in zip(self.Ks, self.lenses):
            key = (k.tobytes(), None if lens is None else (lens.model, lens.params.tobytes()))
            if key not in keys:
                keys[key] = len(tables)
                tables.append(get_ray_directions(H, W, k, lens).view(-1, 3))
            camera_of.append(keys[key])
        if len(tables) == 1:
            self.directions, self.camera_of = tables[0], None  # (H*W, 3)
        else:
            self.directions = torch.stack(tables)  # (N_cameras, H*W, 3)
            self.camera_of = torch.as_tensor(camera_of, dtype=torch.long)  # (N_images,)
        if self.rgbs is not None:
            self.rgbs = torch.as_tensor(np.asarray(self.rgbs), dtype=torch.float32).view(len(self.poses), H * W, 3)

    def read_meta(self, split, **kwargs):
        raise NotImplementedError

    def _lens_per_image(self, n):
        """``self.distortion`` as a list of N_images Distortion-or-None (after checking it)."""
        lens = self.distortion
        if lens is None or isinstance(lens, Distortion):
            return [lens] * n
        lens = list(lens)
        if len(lens) != n:
            raise ValueError(f"{type(self).__name__}.distortion lists {len(lens)} lenses for {n} images")
        return lens

    @property
    def has_distortion(self):
        return any(lens is not None for lens in self.lenses)

    def frustum_Ks(self):
        """Pinhole intrinsics ``(N_images, 3, 3)`` whose image holds every ray of each image: ``Ks``
        for pinhole cameras, widened to the undistorted directions' extent for a lens (what the fast
        path's grid uses to tell which cells some camera sees). None when a ray points 90 degrees or
        more off the axis (a wide fisheye): no pinhole image holds it."""
        if not self.has_distortion:
            return self.Ks
        W, H = self.img_wh
        tables = self.directions if self.camera_of is not None else self.directions[None]
        cams = self.camera_of.cpu().numpy() if self.camera_of is not None else np.zeros(len(self.Ks), dtype=int)
        wide = []
        for d in tables.cpu().double():  # (H*W, 3)
            if (d[:, 2] > -1e-6).any():
                return None
            x, y = (d[:, 0] / -d[:, 2]).numpy(), (d[:, 1] / d[:, 2]).numpy()  # pinhole plane, y down
            fx, fy = (W - 1) / max(np.ptp(x), 1e-9), (H - 1) / max(np.ptp(y), 1e-9)  # centres span 0.5 .. W - 0.5
            wide.append([[fx, 0, 0.5 - x.min() * fx], [0, fy, 0.5 - y.min() * fy], [0, 0, 1]])
        return np.asarray(wide, dtype=np.float32)[cams]

    @property
    def n_rays(self):
        W, H = self.img_wh
        return len(self.poses) * W * H

    def to(self, device):
        """Move images, poses and directions to ``device`` (the fast path keeps them on the GPU)."""
        self.poses, self.directions = self.poses.to(device), self.directions.to(device)
        if self.camera_of is not None:
            self.camera_of = self.camera_of.to(device)
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
        K = self.Ks if self.per_image_K else self.K  # pinhole: render paths and the viewer ignore the lens
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
        if self.camera_of is not None:  # several cameras
            cam = self.camera_of[img_idx]
            dirs = self.directions[cam] if pix_idx is None else self.directions[cam, pix_idx]
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


class IndexBatches(Dataset):
    """Passes ``RayBatchSampler``'s ray indices through, for a loader whose step builds the rays itself
    (the fast path gathers them on the device; camera refinement builds them from corrected poses)."""

    def __getitem__(self, idx):
        return idx


def evenly_spread(n, k):
    """Sorted indices of ``min(k, n)`` of ``range(n)`` spread evenly from the first to the last (all
    ``n`` when ``k >= n``; the first alone when ``k == 1``): the views train.py validates on
    (``--val_num``)."""
    k = min(k, n)  # then the step (n - 1) / (k - 1) is at least 1: k distinct indices
    return sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})


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

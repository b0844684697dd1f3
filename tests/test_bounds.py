"""Where a capture is meshed (``export/bounds.py``): the surface level found where the training views'
rays stop, and the box of the object found at that level, on analytic sphere scenes (no training)."""
import numpy as np
import torch

from datasets.demo_scene import look_at_pose
from datasets.ray_utils import get_ray_directions, get_rays
from export.bounds import object_box, search_box, surface_level, surface_points
from export.mesh import density_lattice, marching_cubes
from test_mesh import RENDER, SpheresField, uniform
from utils.rays import Rays

GREY = (0.5, 0.5, 0.5)


class Cameras:
    """The part of a dataset ``surface_points`` reads: ``n`` cameras 2 units around the origin."""

    def __init__(self, n=8, size=32):
        focal = float(size)
        self.K = torch.tensor([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1]])
        self.poses = torch.stack([torch.tensor(look_at_pose(t, p, 2.0)[:3], dtype=torch.float32)
                                  for t, p in zip(np.linspace(0, 2 * np.pi, n, endpoint=False), [-0.3, 0.4] * n)])
        self.directions = get_ray_directions(size, size, self.K).view(-1, 3)

    def rays(self, i):
        o, d = get_rays(self.directions, self.poses[i])
        ones = torch.ones_like(o[:, :1])
        return Rays(o, d, ones * 0.2, ones * 5.0)


def test_surface_level_is_where_rays_stop():
    """A soft sphere (density 2 + 100 (r - |x|), as low as a real thin object's, not 300): the rays stop in
    it, the level found there is below the seed's 20 and above 0, and the iso-surface at that level lies
    among the points where the rays stop."""
    radius = 0.3
    field = SpheresField([((0.0, 0.0, 0.0), radius, uniform(GREY))], linear=True)
    field.query_density = lambda x, f=field: torch.relu(20 + 100 * (radius - x.norm(dim=-1)) - 18)
    ds = Cameras()
    points = surface_points({"coarse": field}, ds, range(len(ds.poses)), dict(RENDER, n_samples=256), 4096, "cpu")
    r = points.norm(dim=-1)
    # a soft surface: central rays go deeper into it than grazing ones (measured: radius 0.22 to 0.29)
    assert len(points) > 500 and 0.2 < r.min() and r.max() < radius + 0.02, (len(points), r.min(), r.max())
    level, n = surface_level(field, points, np.zeros(3), 0.5)
    assert n == len(points) and 0 < level < 20, level
    v, _ = marching_cubes(density_lattice(field, [(-0.5, 0.5)] * 3, 64), level, [(-0.5, 0.5)] * 3)
    print(f"rays stop at radius {float(r.median()):.3f}; level {level:.2f}; its surface at radius "
          f"{np.linalg.norm(v, axis=1).mean():.3f}")
    assert float(r.min()) < np.linalg.norm(v, axis=1).mean() < float(r.max())
    # nothing near the centre asked about: no level
    assert surface_level(field, points, np.array([5.0, 0, 0]), 0.5) == (None, 0)


def test_object_box_finds_the_object_not_the_floor_or_a_floater():
    """An object at the centre standing on a faint floor, and a dense floater in a corner of the search box:
    at the object's level the box is the object's (grown by a little), whatever the search box holds."""
    obj = ((0.0, 0.0, 0.1), 0.15, uniform(GREY))
    floater = ((0.45, 0.45, 0.45), 0.05, uniform(GREY))
    field = SpheresField([obj, floater])
    base = field.query_density
    field.query_density = lambda x: base(x) + 3.0 * (x[:, 2] < -0.05)  # a floor below the object, density 3
    search = [(-0.6, 0.6)] * 3
    box = object_box(field, search, 20.0, np.zeros(3), 0.3, n=64)
    lo, hi = np.array([b[0] for b in box]), np.array([b[1] for b in box])
    # the iso-surface at 20 of the sigmoid shell lies at radius 0.178; the box grows by 0.054 (2 cells + 5%)
    np.testing.assert_allclose(lo, np.array([-0.178, -0.178, -0.078]) - 0.054, atol=0.02)
    np.testing.assert_allclose(hi, np.array([0.178, 0.178, 0.278]) + 0.054, atol=0.02)
    # at a level below the floor's density the floor's top joins the piece: the box spans the search box
    box = object_box(field, search, 2.0, np.zeros(3), 0.3, n=64)
    assert box[0] == search[0] and box[1] == search[1]
    # nothing near the centre: no box
    assert object_box(field, search, 20.0, np.array([-0.4, 0.4, -0.4]), 0.1, n=64) is None


def test_search_box_stays_inside_the_cameras():
    hint = dict(target=np.array([0.1, 0, 0]), box=[(-0.2, 0.4), (-0.3, 0.3), (-0.3, 0.3)])
    poses = np.zeros((2, 3, 4))
    poses[:, :, 3] = [[2.1, 0, 0], [0.1, 0.5, 0]]  # the nearest camera 0.5 away
    box = search_box(hint, poses)
    np.testing.assert_allclose(box, [(-0.3, 0.5), (-0.4, 0.4), (-0.4, 0.4)])
    poses[1, :, 3] = [0.1, 5.0, 0]
    np.testing.assert_allclose(search_box(hint, poses)[0], (-0.5, 0.7))  # 2 hint radii

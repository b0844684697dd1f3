import math

import torch

from models.compositing import composite
from models.rendering import render_chunked, render_rays, sample_pdf, stratified_samples
from utils.rays import Rays


class SphereField:
    """Density ``value`` inside a ball of ``radius`` at the origin, 0 outside; colour from position."""

    def __init__(self, radius=1.0, value=50.0):
        self.radius, self.value = radius, value

    def query_density(self, x):
        return torch.where(x.norm(dim=-1) < self.radius, self.value, 0.0).to(x)

    def __call__(self, x, d):
        return self.query_density(x), (x.clamp(-1, 1) + 1) / 2


def make_rays(n=16, dist=4.0, near=2.0, far=6.0):
    """Rays from (0, 0, dist) towards the origin, slightly spread in x."""
    o = torch.tensor([0.0, 0.0, dist]).expand(n, 3).clone()
    d = torch.stack([torch.linspace(-0.05, 0.05, n), torch.zeros(n), -torch.ones(n)], -1)
    d = d / d.norm(dim=-1, keepdim=True)
    ones = torch.ones(n, 1)
    return Rays(o, d, ones * near, ones * far)


def test_stratified_samples_sorted_and_inside_bounds():
    near, far = torch.full((100, 1), 2.0), torch.full((100, 1), 6.0)
    z = stratified_samples(near, far, 16, perturb=1.0)
    assert z.shape == (100, 16)
    assert (z >= 2).all() and (z <= 6).all()
    assert (z[:, 1:] >= z[:, :-1]).all()
    z0 = stratified_samples(near, far, 5)
    assert torch.allclose(z0[0], torch.tensor([2.0, 3.0, 4.0, 5.0, 6.0]))
    zd = stratified_samples(near, far, 3, use_disp=True)  # evenly spaced in 1/z
    assert torch.allclose(1 / zd[0], torch.tensor([1 / 2, (1 / 2 + 1 / 6) / 2, 1 / 6]))


def test_sample_pdf_concentrates_on_heavy_bins():
    bins = torch.linspace(0, 10, 11).expand(50, 11).contiguous()
    weights = torch.zeros(50, 10)
    weights[:, 7] = 1.0  # all mass in [7, 8]
    s = sample_pdf(bins, weights, 64, det=False)
    assert s.shape == (50, 64)
    assert (s >= 0).all() and (s <= 10).all()
    assert ((s >= 7) & (s <= 8)).float().mean() > 0.95
    sd = sample_pdf(bins, weights, 64, det=True)
    assert (sd[:, 1:] >= sd[:, :-1]).all()  # deterministic quantiles come out sorted
    assert torch.equal(sd, sample_pdf(bins, weights, 64, det=True))


def test_composite_constant_density_slab_closed_form():
    # one ray through a slab of density s between distances a and b: opacity = 1 - exp(-s (b - a))
    s, a, b = 0.7, 1.0, 3.0
    z = torch.linspace(0, 4, 401)[None]  # spacing 0.01, a and b fall on samples
    sigma = torch.where((z >= a - 1e-6) & (z < b - 1e-6), s, 0.0)
    out = composite(sigma, None, z, torch.tensor([[0.0, 0.0, 1.0]]))
    assert math.isclose(out["opacity"].item(), 1 - math.exp(-s * (b - a)), rel_tol=1e-4)
    # intervals are scaled by |d|: a direction of length 2 doubles the optical depth
    out2 = composite(sigma, None, z, torch.tensor([[0.0, 0.0, 2.0]]))
    assert math.isclose(out2["opacity"].item(), 1 - math.exp(-2 * s * (b - a)), rel_tol=1e-4)


def test_composite_matches_the_closed_form_weights_and_white_background():
    torch.manual_seed(0)
    sigma, z = torch.rand(8, 20) * 3, torch.sort(torch.rand(8, 20) * 4 + 2, -1)[0]
    rgbs = torch.rand(8, 20, 3)
    d = torch.nn.functional.normalize(torch.randn(8, 3), dim=-1)
    out = composite(sigma, rgbs, z, d)
    # second route: w_i = exp(-sum_{j<i} s_j delta_j) (1 - exp(-s_i delta_i)), with the last delta infinite
    delta = torch.cat([z[:, 1:] - z[:, :-1], torch.full((8, 1), 1e10)], -1)
    tau = sigma * delta
    trans = torch.exp(-torch.cat([torch.zeros(8, 1), torch.cumsum(tau, -1)[:, :-1]], -1))
    w = trans * (1 - torch.exp(-tau))
    assert torch.allclose(out["weights"], w, atol=1e-6)
    assert torch.allclose(out["rgb"], (w[..., None] * rgbs).sum(1), atol=1e-6)
    assert torch.allclose(out["depth"], (w * z).sum(1), atol=1e-5)
    # a fully transparent ray shows the background: white with white_back, black without
    empty = composite(torch.zeros(2, 20), torch.rand(2, 20, 3), z[:2], d[:2], white_back=True)
    assert torch.allclose(empty["rgb"], torch.ones(2, 3))
    assert torch.allclose(composite(torch.zeros(2, 20), torch.rand(2, 20, 3), z[:2], d[:2])["rgb"], torch.zeros(2, 3))


def test_composite_gradients():
    torch.manual_seed(0)
    sigma = (torch.rand(3, 6, dtype=torch.float64) * 2).requires_grad_()
    rgbs = torch.rand(3, 6, 3, dtype=torch.float64, requires_grad=True)
    z = torch.sort(torch.rand(3, 6, dtype=torch.float64), -1)[0] + 1
    d = torch.ones(3, 3, dtype=torch.float64)

    def f(s, c):
        out = composite(s, c, z, d)
        return out["rgb"], out["opacity"], out["depth"]

    assert torch.autograd.gradcheck(f, (sigma, rgbs))


def test_depth_of_a_hard_surface():
    rays = make_rays()
    out = render_rays({"coarse": SphereField(value=1e4)}, rays, n_samples=512)
    # the rays hit the unit sphere at distance ~3 from the camera at z = 4
    assert torch.allclose(out["depth_coarse"], torch.full((16,), 3.0), atol=0.02)
    assert torch.allclose(out["opacity_coarse"], torch.ones(16), atol=1e-4)


def test_fine_samples_concentrate_where_coarse_weights_are():
    rays = make_rays(n=64)
    out = render_rays({"coarse": SphereField(), "fine": SphereField()}, rays, n_samples=32, n_importance=64)
    z_fine = out["z_vals_fine"]
    assert z_fine.shape == (64, 96)
    assert (z_fine[:, 1:] >= z_fine[:, :-1]).all()
    # the surface is at distance ~3: most new samples should land within a coarse bin (4/31) of it
    near_surface = ((z_fine - 3.0).abs() < 4 / 31).float().sum(1)
    assert (near_surface >= 40).all()
    assert set(out) >= {"rgb_coarse", "rgb_fine", "depth_fine", "opacity_fine", "weights_fine"}


def test_coarse_only_and_test_time():
    rays = make_rays()
    out = render_rays({"coarse": SphereField()}, rays, n_samples=16, n_importance=0, test_time=True)
    assert "rgb_coarse" in out and "rgb_fine" not in out
    out = render_rays({"coarse": SphereField(), "fine": SphereField()}, rays, n_samples=16, n_importance=8,
                      test_time=True)
    assert "rgb_coarse" not in out and "rgb_fine" in out  # coarse colours skipped at test time


def test_render_chunked_equals_one_pass():
    rays = make_rays(n=50)
    fields = {"coarse": SphereField(), "fine": SphereField()}
    kw = dict(n_samples=16, n_importance=16, white_back=True)
    full = render_rays(fields, rays, **kw)
    chunked = render_chunked(fields, rays, chunk=7, to_cpu=True, **kw)
    assert torch.allclose(full["rgb_fine"], chunked["rgb"], atol=1e-6)
    assert torch.allclose(full["depth_fine"], chunked["depth"], atol=1e-5)

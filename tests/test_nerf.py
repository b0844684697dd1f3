import pytest
import torch

from models import build_fields
from models.nerf import NeRF


def test_parameter_count_at_the_defaults():
    # 8x256 MLP, skip at layer 4, 63/27 input channels: the seed's 595,844 parameters per network
    assert sum(p.numel() for p in NeRF().parameters()) == 595_844


def test_shapes_and_ranges():
    net = NeRF(depth=4, width=32)
    x, d = torch.randn(10, 3), torch.randn(10, 3)
    sigma, rgb = net(x, d)
    assert sigma.shape == (10,) and rgb.shape == (10, 3)
    assert (rgb >= 0).all() and (rgb <= 1).all()
    assert torch.allclose(net.query_density(x), sigma)


def test_density_ignores_view_direction():
    net = NeRF(depth=2, width=16)
    x = torch.randn(5, 3)
    s1, c1 = net(x, torch.randn(5, 3))
    s2, c2 = net(x, torch.randn(5, 3))
    assert torch.allclose(s1, s2)
    assert not torch.allclose(c1, c2)


def test_build_fields_coarse_only():
    assert set(build_fields({"N_importance": 0, "net_depth": 2, "net_width": 8})) == {"coarse"}
    assert set(build_fields({"N_importance": 4, "net_depth": 2, "net_width": 8})) == {"coarse", "fine"}


def test_one_direction_per_ray_equals_one_per_sample():
    from models.compositing import query_field

    torch.manual_seed(0)
    net = NeRF(depth=6, width=32)
    x, d = torch.randn(5 * 7, 3), torch.randn(5, 3)
    per_sample = net(x, d.repeat_interleave(7, 0))
    per_ray = net(x, d)
    for a, b in zip(per_ray, per_sample):
        torch.testing.assert_close(a, b)
    pieces = query_field(net, x, d, max_points=10)  # split into pieces of whole rays (1 ray = 7 points)
    for a, b in zip(pieces, per_sample):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="do not split"):
        net(x[:-1], d)

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

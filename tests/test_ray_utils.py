import math

import torch

from datasets.ray_utils import get_ndc_rays, get_ray_directions, get_rays


def test_directions_for_a_known_camera():
    # 4x2 image, focal 2: pixel centres at u + 0.5, v + 0.5, principal point at (2, 1)
    dirs = get_ray_directions(2, 4, 2.0)
    assert dirs.shape == (2, 4, 3)
    assert torch.allclose(dirs[0, 0], torch.tensor([(0.5 - 2) / 2, -(0.5 - 1) / 2, -1.0]))
    assert torch.allclose(dirs[1, 3], torch.tensor([(3.5 - 2) / 2, -(1.5 - 1) / 2, -1.0]))
    # an even-sized image is symmetric about the centre
    assert torch.allclose(dirs[0, 0, :2], -dirs[1, 3, :2])


def test_intrinsics_matrix_equals_focal():
    K = torch.tensor([[3.0, 0, 5.0], [0, 3.0, 4.0], [0, 0, 1]])
    assert torch.allclose(get_ray_directions(8, 10, K), get_ray_directions(8, 10, 3.0))


def test_world_rays_follow_the_pose():
    # camera at (0, 0, 4) rotated 90 degrees about y: its -z axis looks along world -x
    c = math.cos(math.pi / 2)
    R = torch.tensor([[c, 0, 1.0], [0, 1, 0], [-1.0, 0, c]])
    c2w = torch.cat([R, torch.tensor([[0.0], [0.0], [4.0]])], 1)
    dirs = get_ray_directions(3, 3, 1.0).view(-1, 3)
    o, d = get_rays(dirs, c2w)
    assert torch.allclose(o, torch.tensor([0.0, 0.0, 4.0]).expand(9, 3))
    assert torch.allclose(d.norm(dim=-1), torch.ones(9))
    assert torch.allclose(d[4], torch.tensor([-1.0, 0.0, 0.0]), atol=1e-6)  # the centre pixel
    # per-ray poses give the same answer as one shared pose
    o2, d2 = get_rays(dirs, c2w.expand(9, 3, 4))
    assert torch.allclose(d, d2) and torch.allclose(o, o2)


def test_ndc_maps_near_plane_to_minus_one_and_infinity_to_one():
    H, W, focal = 20, 30, 25.0
    dirs = get_ray_directions(H, W, focal).view(-1, 3)
    o, d = get_rays(dirs, torch.eye(4)[:3])
    o_ndc, d_ndc = get_ndc_rays(H, W, focal, 1.0, o, d)
    assert torch.allclose(o_ndc[:, 2], -torch.ones(H * W), atol=1e-5)  # origins on the near plane
    far = o_ndc + d_ndc  # t = 1 in NDC is infinitely far
    assert torch.allclose(far[:, 2], torch.ones(H * W), atol=1e-5)
    # x, y of NDC origins span [-1, 1] across the image
    assert o_ndc[:, 0].abs().max() < 1 and o_ndc[:, 0].abs().max() > 0.9

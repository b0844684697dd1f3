"""Image metrics: GMSD (metrics.gmsd) against properties it must have."""
import torch
import torch.nn.functional as F

from metrics import gmsd


def _textured(size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = F.avg_pool2d(torch.rand(1, 3, size, size, generator=g), 4)  # smooth patches with edges between them
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)[0].permute(1, 2, 0)


def _box_blur(img, k):
    t = F.pad(img.permute(2, 0, 1)[None], (k // 2,) * 4, mode="replicate")
    return F.avg_pool2d(t, k, stride=1)[0].permute(1, 2, 0)


def test_gmsd_is_zero_for_equal_images_and_grows_with_blur():
    x = _textured()
    assert gmsd(x, x).item() == 0
    scores = [gmsd(_box_blur(x, k), x).item() for k in (3, 5, 7)]
    assert 0 < scores[0] < scores[1] < scores[2]


def test_gmsd_cares_about_edges_more_than_brightness():
    """A small brightness and contrast change keeps the edges where they are: far below a blur."""
    x = _textured()
    assert gmsd(0.9 * x + 0.05, x) < 0.3 * gmsd(_box_blur(x, 5), x)


def test_gmsd_of_a_constant_image_against_itself_and_shapes():
    flat = torch.full((16, 20, 3), 0.5)
    assert gmsd(flat, flat).item() == 0
    assert gmsd(_textured(32)[:16, :20], flat).dim() == 0

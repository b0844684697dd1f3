import math

import torch

from models.encoding import PosEmbedding


def test_output_width_and_values():
    emb = PosEmbedding(n_freqs=2)
    assert emb.out_channels == 3 * (2 * 2 + 1) == 15
    x = torch.tensor([[0.5, -1.0, 2.0]])
    out = emb(x)
    assert out.shape == (1, 15)
    # layout: x, then per frequency 2^k: sin(2^k x) (3 ch), cos(2^k x) (3 ch)
    expected = [0.5, -1.0, 2.0]
    for k in range(2):
        f = 2.0 ** k
        expected += [math.sin(f * v) for v in (0.5, -1.0, 2.0)]
        expected += [math.cos(f * v) for v in (0.5, -1.0, 2.0)]
    assert torch.allclose(out[0], torch.tensor(expected), atol=1e-6)


def test_default_widths_match_the_paper():
    assert PosEmbedding(10).out_channels == 63
    assert PosEmbedding(4).out_channels == 27


def test_batch_dims_preserved():
    out = PosEmbedding(3)(torch.rand(4, 5, 3))
    assert out.shape == (4, 5, 21)

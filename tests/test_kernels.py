"""The fused CPU hash encoding (models/kernels.py) against the eager one: values, gradients, the
fallback when it cannot be built, and training runs that match at equal steps."""
import os
import time

import pytest
import torch

from conftest import run_script
from models import build_fields, kernels
from models.hash_encoding import HashEncoding
from test_fast import _reference_encoding

BOX = [[-1.5] * 3, [1.5] * 3]


@pytest.fixture
def kernel_state():
    """Each test starts from --kernels auto with the build's outcome as it is, and leaves it so."""
    saved = dict(kernels._state)
    kernels.set_mode("auto")
    yield
    kernels._state.update(saved)


@pytest.fixture
def ext(kernel_state):
    e = kernels.extension()
    if e is None:  # the fallback has its own test; here the kernel itself is under test
        pytest.fail(f"the fused kernels did not build here: {kernels._state['failure']}")
    return e


def _encoding(levels=6, log2_size=10, max_res=96):
    torch.manual_seed(0)
    enc = HashEncoding(BOX, n_levels=levels, log2_size=log2_size, base_res=4, max_res=max_res)
    with torch.no_grad():
        enc.table.uniform_(-1, 1)
    assert enc.dense.any() and not enc.dense.all()  # both kinds of level are under test
    return enc


def _points(n=3000):
    x = torch.rand(n, 3) * 3.4 - 1.7  # some outside the box: clamped to its faces
    x[:8] = torch.tensor(BOX[1])  # u = 1 exactly: the last cell, not one past it
    x[8:16] = torch.tensor(BOX[0])
    return x


@pytest.mark.parametrize("threads", [1, 2, 3, 16])
def test_fused_values_and_table_gradient_equal_eager(ext, threads):
    """Forward bit-equal; the table's gradient equal to float rounding, for any thread count (16
    threads over 6 levels split each level's rows between threads)."""
    enc, x = _encoding(), _points()
    grad = torch.randn(len(x), enc.out_channels)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fused = enc(x)
        assert fused.grad_fn is not None and type(fused.grad_fn).__name__ == "HashEncodeBackward"
        fused.backward(grad)
        g_fused, enc.table.grad = enc.table.grad, None
    finally:
        torch.set_num_threads(before)
    eager = enc.forward_eager(x)
    eager.backward(grad)
    assert torch.equal(fused, eager)
    assert torch.allclose(fused, _reference_encoding(enc, x), atol=1e-6)
    scale = enc.table.grad.abs().max()
    assert scale > 1
    assert (g_fused - enc.table.grad).abs().max() <= 1e-5 * scale
    assert g_fused.count_nonzero() == enc.table.grad.count_nonzero()


def test_fused_gradient_is_the_same_for_any_thread_count(ext):
    """Each row sums its points in order whoever owns it: bit-equal gradients for 1, 2 and 16 threads."""
    enc, x = _encoding(), _points()
    grad = torch.randn(len(x), enc.out_channels)
    before, grads = torch.get_num_threads(), []
    try:
        for threads in (1, 2, 16):
            torch.set_num_threads(threads)
            enc.table.grad = None
            enc(x).backward(grad)
            grads.append(enc.table.grad)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[0], grads[2])


def test_points_that_need_a_gradient_take_the_eager_path(ext):
    """Camera refinement moves the points: their gradient comes from the eager code."""
    enc, x = _encoding(), _points(200).requires_grad_()
    out = enc(x)
    assert type(out.grad_fn).__name__ != "HashEncodeBackward"
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_kernels_eager_is_the_pytorch_code(kernel_state):
    """--kernels eager: the flag reaches every field built from the flags, and nothing is built."""
    calls = []
    kernels._state["ext"] = None
    original = kernels.build
    kernels.build = lambda: calls.append(1) or original()
    try:
        f = build_fields({"fast": True, "aabb": [-1.5] * 3 + [1.5] * 3, "grid_resolution": 16, "hash_levels": 4,
                          "hash_log2_size": 12, "hash_max_res": 64, "kernels": "eager"})
        out = f["coarse"].encoding(_points(100))
    finally:
        kernels.build = original
    assert kernels.mode() == "eager" and not calls
    assert type(out.grad_fn).__name__ != "HashEncodeBackward"
    with pytest.raises(ValueError, match="auto, eager"):
        kernels.set_mode("fused")


def test_a_failed_build_says_one_line_and_gives_eager_results(kernel_state, monkeypatch, capsys):
    """No compiler: one line on stderr, once; the encoding goes on with the eager code, same values."""
    def no_compiler():
        raise RuntimeError("Ninja is required to load C++ extensions\nmore detail that is not shown")

    monkeypatch.setattr(kernels, "build", no_compiler)
    kernels._state.update(ext=None, failure=None)
    enc, x = _encoding(), _points(500)
    first, second = enc(x), enc(x)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "fused kernels unavailable (Ninja is required to load C++ extensions)" in err[0]
    assert "eager" in err[0] and "more detail" not in err[0]
    assert torch.equal(first, enc.forward_eager(x)) and torch.equal(second, first)
    assert type(first.grad_fn).__name__ != "HashEncodeBackward"


def _fit(steps=60):
    """A hash-grid field fitted to a fixed random field for ``steps`` Adam steps: the losses."""
    torch.manual_seed(1)
    f = build_fields({"fast": True, "aabb": [-1.5] * 3 + [1.5] * 3, "grid_resolution": 16, "hash_levels": 6,
                      "hash_log2_size": 12, "hash_max_res": 128})["coarse"]
    opt = torch.optim.Adam(f.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(2)
    losses = []
    for _ in range(steps):
        x = torch.rand(2048, 3, generator=gen) * 3 - 1.5
        d = torch.nn.functional.normalize(torch.randn(2048, 3, generator=gen), dim=-1)
        target = 0.5 + 0.4 * torch.sin(3 * x)  # a smooth colour field
        sigma, rgb = f(x, d)
        loss = (rgb - target).square().mean() + 1e-4 * sigma.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_training_matches_eager_at_equal_steps(ext):
    """The same field fitted with each path: the same losses step after step, to float noise."""
    fused = _fit()
    kernels.set_mode("eager")
    eager = _fit()
    assert eager[-1] < 0.7 * eager[0]  # it learns
    for a, b in zip(fused, eager):
        assert abs(a - b) <= 1e-3 * b


def test_train_py_runs_fused_and_eager_to_the_same_quality(demo_dir, tmp_path, ext):
    """train.py --fast on the demo scene, 100 steps each way: the held-out PSNR agrees within 0.3 dB."""
    from test_train import scalars

    flags = ["--root_dir", demo_dir, "--img_wh", 32, 32, "--fast", "--max_steps", 100, "--batch_size", 1024,
             "--grid_resolution", 32, "--hash_levels", 8, "--hash_log2_size", 14, "--hash_max_res", 256,
             "--march_steps", 256, "--num_gpus", 0, "--val_num", 4]
    psnr = {}
    for mode in ("auto", "eager"):
        proc = run_script("train.py", *flags, "--kernels", mode, "--exp_name", mode, cwd=tmp_path)
        assert "unavailable" not in proc.stdout + proc.stderr
        psnr[mode] = scalars(tmp_path, mode, "val/psnr")[0][-1]
    print(f"100 steps: fused {psnr['auto']:.2f} dB, eager {psnr['eager']:.2f} dB")
    assert psnr["eager"] > 20
    assert abs(psnr["auto"] - psnr["eager"]) < 0.3


def test_a_build_killed_half_way_does_not_hang_later_runs(tmp_path, monkeypatch):
    """torch waits for a build's lock file to go: one left by a killed build is removed when old,
    and a live build's (recent) lock is left alone."""
    from torch.utils import cpp_extension

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    name = f"nerf_kernels_{kernels._cpu_tag()}"
    stale = tmp_path / "py3_cpu" / name / "lock"
    stale.parent.mkdir(parents=True)
    stale.write_text("")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    live = tmp_path / "py3_other" / name / "lock"
    live.parent.mkdir(parents=True)
    live.write_text("")
    seen = {}
    monkeypatch.setattr(cpp_extension, "load_inline", lambda n, **kw: seen.setdefault("name", n))
    assert kernels.build() == name and seen["name"] == name
    assert not stale.exists() and live.exists()

"""The fused CPU hash encoding (models/kernels.py) against the eager one: values, gradients, the
fallback when it cannot be built, and training runs that match at equal steps."""
import math
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


def test_points_gradient_equals_eager(ext):
    """Camera refinement moves the points: the fused backward gives their gradient too, the eager one's
    to float rounding (points outside the box: 0, the clamp's), beside the same table gradient."""
    enc, x = _encoding(), _points(2000)
    grad = torch.randn(len(x), enc.out_channels)
    results = []
    for encode in (enc.forward, enc.forward_eager):
        xi = x.clone().requires_grad_()
        enc.table.grad = None
        out = encode(xi)
        out.backward(grad)
        results.append((type(out.grad_fn).__name__, xi.grad, enc.table.grad))
    (kind, gx_fused, gt_fused), (_, gx_eager, gt_eager) = results
    assert kind == "HashEncodeBackward"
    scale = gx_eager.abs().max()
    assert scale > 1 and (gx_eager == 0).any()  # points beyond the box's faces get none
    assert (gx_fused - gx_eager).abs().max() <= 1e-4 * scale
    assert torch.equal(gx_fused == 0, gx_eager == 0)
    assert (gt_fused - gt_eager).abs().max() <= 1e-5 * gt_eager.abs().max()


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


def _random_field(unbounded, appearance_dim=0):
    """A fast-path field with random weights (so densities vary and colours differ from point to point)."""
    torch.manual_seed(3)
    box = [-2.0] * 3 + [2.0] * 3 if unbounded else [-1.5] * 3 + [1.5] * 3
    f = build_fields({"fast": True, "aabb": box, "grid_resolution": 16, "hash_levels": 8, "hash_log2_size": 12,
                      "hash_max_res": 256, "unbounded": unbounded, "appearance_dim": appearance_dim,
                      "n_train_images": 5})["coarse"]
    with torch.no_grad():
        f.encoding.table.uniform_(-1, 1)
        for p in [*f.density_mlp.parameters(), *f.color_mlp.parameters()]:
            p.normal_(0, 0.3)
        f.density_mlp[-1].bias[0] += 2.5  # dense enough that rays end inside the scene
        if appearance_dim:
            f.appearance.weight.normal_(0, 0.5)
    return f


def _marched(f, unbounded, n=300):
    """Rays from inside the scene, marched through an all-occupied grid: rays, t, dt, mask (N, M)."""
    from models.marching import march, march_unbounded
    from models.occupancy import OccupancyGrid
    from utils.rays import Rays

    gen = torch.Generator().manual_seed(4)
    o = torch.randn(n, 3, generator=gen) * 0.3
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1)
    rays = Rays(o, d, torch.full((n, 1), 0.05), torch.full((n, 1), 100.0 if unbounded else 4.0))
    grid = OccupancyGrid(f.encoding.aabb.flatten().tolist(), resolution=16, step_size=0.02, contracted=unbounded)
    t, dt, mask = (march_unbounded if unbounded else march)(rays, grid, 0.02, perturb=True)
    mask &= torch.rand(mask.shape, generator=gen) < 0.8  # some empty cells along the way
    return rays, t, dt, mask


@pytest.mark.parametrize("unbounded", [False, True])
def test_fused_density_equals_eager(ext, unbounded):
    """query_density without gradients runs as one C++ pass: the eager values to float rounding (points
    outside the box: 0), with level weights too; with gradients the eager code runs."""
    f = _random_field(unbounded)
    x = torch.randn(4000, 3) * 1.5
    with torch.no_grad():
        fused = f.query_density(x)
        kernels.set_mode("eager")
        eager = f.query_density(x)
        kernels.set_mode("auto")
    assert (eager > 0).any() and ((eager == 0).any() or unbounded)  # contracted points are all inside
    assert torch.allclose(fused, eager, rtol=1e-4, atol=1e-6)
    assert f.query_density(x).grad_fn is not None  # training's own calls keep their gradients
    plain = fused
    f.set_level_weights(torch.linspace(0, 1, f.encoding.n_levels))  # camera refinement's coarse to fine
    with torch.no_grad():
        fused = f.query_density(x)
        kernels.set_mode("eager")
        eager = f.query_density(x)
        kernels.set_mode("auto")
    assert f._fused_density(x) is None  # gradients wanted: eager
    assert torch.allclose(fused, eager, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(fused, plain, rtol=1e-2)  # the weights were applied


@pytest.mark.parametrize("unbounded", [False, True])
def test_fused_sample_picking_equals_eager(ext, unbounded):
    """Training's gradient-free pass (marching._visible_samples): the same samples kept, with and
    without --alpha_threshold's faint-sample skip, and with camera refinement's level weights."""
    from models.marching import _visible_samples

    f = _random_field(unbounded)
    rays, t, dt, mask = _marched(f, unbounded)
    for min_od in (0.0, -math.log1p(-0.01), "level weights"):
        if min_od == "level weights":
            f.set_level_weights(torch.linspace(0.2, 1, f.encoding.n_levels))
            min_od = 0.0
        with torch.no_grad():
            fused = _visible_samples(f, rays, t, dt, mask, 1e-4, min_od=min_od)
            kernels.set_mode("eager")
            eager = _visible_samples(f, rays, t, dt, mask, 1e-4, min_od=min_od)
            kernels.set_mode("auto")
        stopped = (mask & ~eager).any(1)  # rays whose end or faint samples were dropped
        assert 0 < eager.sum() < mask.sum() and stopped.any()
        assert (fused != eager).sum() <= 1e-4 * mask.numel()  # a sample on the threshold may tip


@pytest.mark.parametrize("unbounded,appearance", [(False, False), (True, False), (True, True)])
def test_fused_rendering_equals_eager(ext, unbounded, appearance):
    """Inference's one pass (marching._render_one_pass): weights and colours to float rounding, the
    mean appearance code and per-ray codes alike; fewer samples evaluated (each ray stops at its end)."""
    from models.marching import _render_one_pass

    f = _random_field(unbounded, appearance_dim=4 if appearance else 0)
    rays, t, dt, mask = _marched(f, unbounded)
    codes = [None, f.appearance(torch.arange(len(t)) % 5)] if appearance else [None]
    for code in codes:
        with torch.no_grad():
            w, rgb, n = _render_one_pass(f, rays, t, dt, mask, 1e-4, code, min_od=0.01)
            kernels.set_mode("eager")
            w_e, rgb_e, n_e = _render_one_pass(f, rays, t, dt, mask, 1e-4, code, min_od=0.01)
            kernels.set_mode("auto")
        assert rgb_e.std() > 0.05 and (w_e.sum(1) > 0.99).any()
        assert (w - w_e).abs().max() < 1e-5 and (rgb - rgb_e).abs().max() < 1e-5
        assert n < n_e


@pytest.mark.parametrize("contracted", [False, True])
def test_fused_occupancy_lookup_equals_eager(ext, contracted):
    """The marchers' grid lookup (OccupancyGrid.occupied_along) as one loop: the same cells."""
    from models.occupancy import OccupancyGrid

    torch.manual_seed(5)
    box = [-2.0] * 3 + [2.0] * 3 if contracted else [-1.5] * 3 + [1.5] * 3
    grid = OccupancyGrid(box, resolution=32, step_size=0.01, contracted=contracted)
    grid.occupied = torch.rand(32 ** 3) < 0.5
    o = torch.randn(512, 3) * 0.7
    d = torch.nn.functional.normalize(torch.randn(512, 3), dim=-1)
    t = torch.rand(512, 150).sort(1).values * (20 if contracted else 4)  # past the box too
    fused = grid.occupied_along(o, d, t)
    kernels.set_mode("eager")
    eager = grid.occupied_along(o, d, t)
    kernels.set_mode("auto")
    assert 0.3 < eager.float().mean() < 0.7
    assert (fused != eager).sum() <= 1e-4 * eager.numel()  # a point on a cell border may tip


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

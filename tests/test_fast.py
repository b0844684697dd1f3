"""The fast path's pieces: hash encoding, occupancy grid, ray marching, and a short training run."""
import math

import numpy as np
import pytest
import torch

from conftest import run_script
from models.hash_encoding import HashEncoding
from models.marching import march, render_marched
from models.occupancy import OccupancyGrid
from models.rendering import render_rays
from opt import get_opts
from utils.errors import UserError
from utils.rays import Rays
from test_rendering import SphereField, make_rays

BOX = [[-1.5] * 3, [1.5] * 3]


def test_hash_encoding_interpolates_its_table():
    enc = HashEncoding(BOX, n_levels=4, n_features=2, log2_size=10, base_res=4, max_res=32)
    assert enc.out_channels == 8
    assert enc.dense.tolist()[0] and not enc.dense.tolist()[-1]  # 5^3 fits the table, 33^3 is hashed
    with torch.no_grad():
        enc.table.normal_()
    # at a grid vertex of the coarsest level (res 4), level 0 returns that vertex's table row exactly
    x = torch.tensor([[-1.5 + 3 * 1 / 4, -1.5 + 3 * 2 / 4, -1.5 + 3 * 3 / 4]])  # vertex (1, 2, 3)
    row = 1 + 5 * (2 + 5 * 3)
    assert torch.allclose(enc(x)[0, :2], enc.table[row], atol=1e-5)
    # half-way along x between vertices (1,2,3) and (2,2,3): the mean of the two rows
    xm = x + torch.tensor([[3 / 8, 0, 0]])
    assert torch.allclose(enc(xm)[0, :2], 0.5 * (enc.table[row] + enc.table[row + 1]), atol=1e-5)
    # continuous across cell boundaries, and differentiable into the table
    eps = torch.tensor([[1e-4, 0, 0]])
    assert torch.allclose(enc(x + eps), enc(x - eps), atol=1e-2)
    enc(torch.rand(64, 3) * 3 - 1.5).sum().backward()
    assert enc.table.grad.abs().sum() > 0


def _reference_encoding(enc, x):
    """The hash encoding written out corner by corner in int64 (the paper's formulas), for
    checking the fused implementation: ``(N, 3)`` -> ``(N, L * F)``."""
    u = ((x - enc.aabb[0]) / (enc.aabb[1] - enc.aabb[0])).clamp(0, 1)
    outs, offset = [], 0
    for level in range(enc.n_levels):
        r = int(enc.res[level])
        size = min(enc.table_size, (r + 1) ** 3)
        pos = u * r
        cell = pos.floor().clamp(max=r - 1)
        frac = pos - cell
        cell = cell.long()
        acc = 0
        for corner in range(8):
            bits = torch.tensor([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
            v = cell + bits  # (N, 3)
            if (r + 1) ** 3 <= enc.table_size:
                i = v[:, 0] + (r + 1) * (v[:, 1] + (r + 1) * v[:, 2])
            else:
                i = ((v[:, 0] * 1) ^ (v[:, 1] * 2654435761) ^ (v[:, 2] * 805459861)) % enc.table_size
            w = torch.where(bits.bool(), frac, 1 - frac).prod(-1, keepdim=True)  # (N, 1)
            acc = acc + w * enc.table[offset + i]
        outs.append(acc)
        offset += size
    return torch.cat(outs, -1)


def test_hash_encoding_matches_the_papers_formulas():
    enc = HashEncoding(BOX, n_levels=6, n_features=2, log2_size=9, base_res=3, max_res=40)
    assert 0 < enc.n_dense < 6  # both dense and hashed levels are exercised
    with torch.no_grad():
        enc.table.normal_()
    x = torch.cat([torch.rand(500, 3) * 3.2 - 1.6, torch.tensor([[1.5, 1.5, 1.5], [-1.5, -1.5, -1.5]])])
    out = enc(x)
    ref = _reference_encoding(enc, x)
    assert torch.allclose(out, ref, atol=1e-5)
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad((out * g).sum(), enc.table)
    (grad_ref,) = torch.autograd.grad((ref * g).sum(), enc.table)
    assert torch.allclose(grad, grad_ref, atol=1e-5)


def test_table_gradient_is_the_same_either_way():
    """The CPU's bincount and the GPU's index_add_ accumulate the same table gradient, in the
    corner-major layout the encoding hands them (collisions included: 40 rows for 8 x 300 corners)."""
    from models.hash_encoding import _accumulate_rows

    torch.manual_seed(0)
    L, N, F, rows = 3, 100, 2, 40
    idx = torch.randint(0, rows, (L, 8, N), dtype=torch.int32)
    w, grad = torch.rand(L, 8, N), torch.randn(L, N, F)
    ref = torch.zeros(rows, F)
    for level in range(L):
        for c in range(8):
            for n in range(N):
                ref[idx[level, c, n]] += w[level, c, n] * grad[level, n]
    for method in ("bincount", "index_add"):
        out = _accumulate_rows(idx, w, grad, rows, method=method)
        assert out.shape == (rows, F) and out.dtype == grad.dtype
        assert torch.allclose(out, ref, atol=1e-4), method


def _sphere_grid(radius=0.8, res=32):
    grid = OccupancyGrid(BOX, resolution=res, step_size=3 * math.sqrt(3) / 256)
    field = SphereField(radius=radius, value=100.0)
    for step in range(0, 64, 16):
        grid.update(step, field.query_density, every=16, warmup_steps=256)
    return grid, field


def _covering_sphere_grid(radius=0.8, res=32):
    """A grid whose occupied cells are exactly those that may touch the sphere (centre within
    radius + half a cell diagonal): deterministic, unlike the jittered samples of ``update``, so
    render comparisons never lose a sliver of the sphere to a boundary cell that was missed."""
    grid, field = _sphere_grid(radius, res)
    centres = grid.cell_points(torch.arange(res ** 3), jitter=False)
    grid.occupied = centres.norm(dim=-1) < radius + 0.5 * grid.cell_size.norm()
    return grid, field


def test_occupancy_grid_finds_the_object():
    grid, _ = _sphere_grid(radius=0.8)
    centres = grid.cell_points(torch.arange(32 ** 3), jitter=False)
    dist = centres.norm(dim=-1)
    half_diag = 0.5 * grid.cell_size.norm()
    assert grid.occupied[dist < 0.8 - half_diag].all()  # every cell wholly inside is occupied
    assert not grid.occupied[dist > 0.8 + half_diag].any()  # none wholly outside
    assert 0.05 < grid.occupancy_rate() < 0.2  # (4/3 pi 0.8^3) / 27 = 0.079 plus the boundary shell


def test_grid_decay_prunes_a_vanished_object_sooner():
    """--grid_decay: after the object shrinks, a low decay empties the cells it left within a few
    refreshes; the default 0.95 still keeps them (their old opacity, 2.0, decays to 1.5)."""
    from models import build_fields

    shells = {}
    for decay in (0.95, 0.3):
        h = dict(fast=True, aabb=[-1.5, -1.5, -1.5, 1.5, 1.5, 1.5], grid_resolution=16, march_steps=256,
                 hash_levels=2, hash_log2_size=8, hash_max_res=32, grid_decay=decay)
        grid = build_fields(h)["occupancy"]
        assert grid.decay == decay
        big, small = SphereField(radius=0.8, value=100.0), SphereField(radius=0.4, value=100.0)
        grid.update(0, big.query_density)
        for step in range(16, 16 * 7, 16):  # six refreshes of every cell (still in warm-up)
            grid.update(step, small.query_density)
        centres = grid.cell_points(torch.arange(16 ** 3), jitter=False).norm(dim=-1)
        half_diag = 0.5 * grid.cell_size.norm()
        shells[decay] = grid.occupied[(centres > 0.4 + half_diag) & (centres < 0.8 - half_diag)].float().mean()
        assert grid.occupied[centres < 0.4 - half_diag].all()  # what is still there stays
    assert shells[0.95] == 1 and shells[0.3] == 0
    with pytest.raises(UserError, match="--grid_decay"):
        get_opts(["--root_dir", "x", "--fast", "--grid_decay", "0"])


def test_cells_no_camera_sees_are_never_occupied():
    grid = OccupancyGrid(BOX, resolution=16)
    # one camera at z = 4 looking down -z with a narrow field of view: only a central column is seen
    K = torch.tensor([[100.0, 0, 16], [0, 100.0, 16], [0, 0, 1]])
    c2w = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4]])
    grid.mark_invisible(K, c2w[None], (32, 32), near=2.0)
    centres = grid.cell_points(torch.arange(16 ** 3), jitter=False)
    assert grid.occupied[(centres[:, :2].abs() < 0.2).all(-1)].all()
    assert not grid.occupied[(centres[:, :2].abs() > 1.0).any(-1)].any()
    assert (grid.opacity[~grid.occupied] == -1).all()
    grid.update(0, lambda x: torch.full((len(x),), 1e3), warmup_steps=256)
    assert not grid.occupied[(centres[:, :2].abs() > 1.0).any(-1)].any()  # stays excluded


def test_a_grid_of_identical_cells_never_empties():
    """Densities that are the same everywhere (all underflowed to 0, say) must not leave the grid
    empty: no cell would then be sampled, no gradient would flow, and training could not recover."""
    grid = OccupancyGrid(BOX, resolution=8)
    grid.opacity[:10] = -1  # unseen cells stay excluded
    for step in range(0, 64, 16):
        grid.update(step, lambda x: torch.zeros(len(x)))
    assert grid.occupied[10:].all() and not grid.occupied[:10].any()
    grid.update(64, SphereField(radius=0.8, value=100.0).query_density)  # real structure: pruned again
    assert 0 < grid.occupancy_rate() < 0.5


def test_a_fresh_field_under_bf16_keeps_its_grid():
    """The GPU default (bf16 autocast): a fresh hash grid's densities all round to one bf16 value,
    so the first update found no cell above the mean and the grid emptied for good (seen on an
    H200: zero samples per ray, held-out PSNR flat). The grid must stay sampled."""
    from models.ngp import NGPField

    torch.manual_seed(0)
    field = NGPField(BOX, n_levels=8, log2_size=15, max_res=256)  # the CPU preset's grid
    # the GPU preset's step (diagonal / 1024): each cell's opacity is then below the 0.01 threshold
    grid = OccupancyGrid(BOX, resolution=16, step_size=3 * math.sqrt(3) / 1024)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        grid.update(0, field.query_density)
        out = render_marched(field, grid, make_rays(64), float(grid.step_size), perturb=True)
    # all cells alike (the fallback keeps every one) or, when bf16 rounding splits them into two
    # values (it varies between processes), the half above the mean: never an empty grid
    assert grid.occupancy_rate() >= 0.5 and out["n_samples"] > 0


def test_march_keeps_only_occupied_samples_inside_the_range():
    grid, _ = _sphere_grid()
    rays = make_rays(n=32)
    t, dt, mask = march(rays, grid, float(grid.step_size))
    x = rays.origins[:, None] + rays.directions[:, None] * t[..., None]
    assert mask.any()
    assert (x[mask].norm(dim=-1) < 0.8 + grid.cell_size.norm()).all()
    assert (t[mask] >= 2).all() and (t[mask] <= 6).all()
    assert torch.allclose(dt, torch.full_like(dt, float(grid.step_size)))  # unit directions


def test_marched_render_matches_the_vanilla_render():
    grid, field = _covering_sphere_grid()
    field.value = 5.0  # semi-transparent, so every sample along the chord matters
    rays = make_rays(n=64)
    out = render_marched(field, grid, rays, float(grid.step_size), white_back=True)
    ref = render_rays({"coarse": field}, rays, n_samples=4096, white_back=True)
    assert torch.allclose(out["opacity_coarse"], ref["opacity_coarse"], atol=0.02)
    assert torch.allclose(out["rgb_coarse"], ref["rgb_coarse"], atol=0.02)
    assert torch.allclose(out["depth_coarse"], ref["depth_coarse"], atol=0.05)
    # render_rays dispatches to the marcher when the fields carry an occupancy grid
    via = render_rays({"coarse": field, "occupancy": grid}, rays, white_back=True)
    assert torch.allclose(via["rgb_coarse"], out["rgb_coarse"])


def test_early_termination_stops_at_the_first_surface():
    grid, field = _sphere_grid()
    grid.occupied[:] = True  # every cell: only early termination may cut the samples
    field.value = 1e4  # opaque
    rays = make_rays(n=16)
    t, _, mask = march(rays, grid, float(grid.step_size))
    out = render_marched(field, grid, rays, float(grid.step_size))
    # first hit of a ray from (0, 0, 4) with unit direction d on the sphere of radius 0.8
    b = (rays.origins * rays.directions).sum(-1)  # o . d
    hit = -b - torch.sqrt(b ** 2 - (16 - 0.8 ** 2))
    assert torch.allclose(out["depth_coarse"], hit, atol=float(grid.step_size))
    # occupied samples run through the whole box; evaluated ones stop right behind the surface
    t_in = 4 - 1.5 / rays.directions[:, 2].abs()  # entry into the box (its z = 1.5 face)
    in_front = ((hit - t_in) / float(grid.step_size)).ceil()
    assert out["n_samples"] <= (in_front + 2).sum()
    assert out["n_samples"] < 0.3 * mask.sum()


def test_fast_training_learns(demo_dir, tmp_path):
    """--fast with a CPU-sized hash grid: held-out PSNR well above the white baseline in 150 steps."""
    run_script("train.py", "--root_dir", demo_dir, "--img_wh", 32, 32, "--fast", "--max_steps", 150,
               "--batch_size", 1024, "--grid_resolution", 32, "--hash_levels", 8, "--hash_log2_size", 14,
               "--hash_max_res", 256, "--march_steps", 256, "--num_gpus", 0, "--val_num", 4,
               "--exp_name", "fast", cwd=tmp_path)
    from test_train import scalars

    val, _ = scalars(tmp_path, "fast", "val/psnr")
    from datasets.blender import BlenderDataset
    from metrics import psnr

    ds = BlenderDataset(str(demo_dir), "val", img_wh=(32, 32))
    white = torch.stack([psnr(torch.ones_like(ds[i]["rgbs"]), ds[i]["rgbs"]) for i in range(len(ds))]).mean()
    print(f"fast path, 150 steps: val PSNR {val[-1]:.2f} dB (white {white:.2f} dB)")
    assert val[-1] > white + 8


def test_fast_fields_start_with_unseen_cells_empty(demo_dir):
    """build_fields(cameras=...) empties the cells no training camera sees; without cameras, none."""
    from datasets.blender import BlenderDataset
    from models import build_fields

    train = BlenderDataset(str(demo_dir), "train", img_wh=(16, 16))
    h = {"fast": True, "aabb": [-4, -4, -4, 4, 4, 4], "grid_resolution": 32, "hash_levels": 4,
         "hash_log2_size": 12, "hash_max_res": 64}
    grid = build_fields(h, cameras=train)["occupancy"]
    unseen = (grid.opacity < 0).float().mean().item()
    # the cameras sit on a sphere around the object: the box's corners behind them are unseen
    assert 0.05 < unseen < 0.9 and not grid.occupied[grid.opacity < 0].any()
    assert (build_fields(h)["occupancy"].opacity >= 0).all()


def test_bf16_autocast_trains_both_paths():
    """GPUs run --fast (and optionally vanilla) under bf16 autocast; CPU autocast exercises the same
    dtype handling: both renderers run forward and backward and give finite, close results."""
    from models import build_fields

    torch.manual_seed(0)
    rays = make_rays(n=64)
    vanilla = build_fields({"N_importance": 8, "net_depth": 2, "net_width": 32})
    fast = build_fields({"fast": True, "aabb": [-1.5, -1.5, -1.5, 1.5, 1.5, 1.5], "grid_resolution": 16,
                         "hash_levels": 4, "hash_log2_size": 12, "hash_max_res": 64, "march_steps": 128})
    for fields, kw in ((vanilla, dict(n_samples=16, n_importance=8)), (fast, {})):
        if "occupancy" in fields:
            fields["occupancy"].update(0, fields["coarse"].query_density)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = render_rays(fields, rays, perturb=0.0, white_back=True, **kw)
        level = "fine" if "rgb_fine" in out else "coarse"
        ref = render_rays(fields, rays, perturb=0.0, white_back=True, **kw)[f"rgb_{level}"]
        assert torch.isfinite(out[f"rgb_{level}"]).all() and out.get("n_samples", 1) > 0
        assert (out[f"rgb_{level}"].float() - ref).abs().max() < 0.05  # bf16 keeps ~3 significant digits
        out[f"rgb_{level}"].float().mean().backward()
        grads = [p.grad for p in fields[level].parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)


def _rays_across_the_box(unbounded, n=256):
    """``n`` random rays from inside the unit ball (unbounded) or from radius 3, aimed roughly at the
    origin, with the near and far bounds of each kind of scene."""
    o = torch.randn(n, 3)
    o = o / o.norm(dim=-1, keepdim=True) * (0.9 if unbounded else 3.0)
    d = -o + 0.3 * torch.randn(n, 3)
    d = d / d.norm(dim=-1, keepdim=True)
    ones = torch.ones(n, 1)
    return Rays(o, d, ones * 0.05, ones * (100.0 if unbounded else 6.0))


@pytest.mark.parametrize("unbounded", [False, True])
def test_inference_renders_each_sample_once_with_the_same_result(unbounded):
    """Without gradients the marched renderer takes one pass (density and colour together); it must
    give the pixels of the training path's two passes (up to early termination's last samples)."""
    from models import build_fields

    torch.manual_seed(0)
    box = [-2.0] * 3 + [2.0] * 3 if unbounded else [-1.5] * 3 + [1.5] * 3
    f = build_fields(dict(fast=True, unbounded=unbounded, aabb=box, grid_resolution=32, march_steps=256,
                          hash_levels=4, hash_log2_size=12, hash_max_res=64))
    with torch.no_grad():
        for p in f["coarse"].density_mlp.parameters():
            p.mul_(3)  # a denser field: rays stop part-way, so early termination matters
    rays = _rays_across_the_box(unbounded)
    step = float(f["occupancy"].step_size)
    two = render_marched(f["coarse"], f["occupancy"], rays, step)  # with gradients: the training path
    with torch.no_grad():
        one = render_marched(f["coarse"], f["occupancy"], rays, step)
    if not unbounded:  # (unbounded, every ray ends in the background: all opaque)
        assert two["opacity_coarse"].min() < 0.99 < two["opacity_coarse"].max()
    # each sample the training path keeps is evaluated once (plus a block's tail past termination)
    assert two["n_samples"] <= one["n_samples"] <= 1.1 * two["n_samples"]
    torch.testing.assert_close(one["rgb_coarse"], two["rgb_coarse"].detach(), atol=1e-4, rtol=0)
    torch.testing.assert_close(one["opacity_coarse"], two["opacity_coarse"].detach(), atol=1e-4, rtol=0)
    torch.testing.assert_close(one["weights_coarse"], two["weights_coarse"].detach(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("unbounded", [False, True])
def test_alpha_threshold_skips_faint_samples_in_training_and_rendering(unbounded):
    """--alpha_threshold: training back-propagates through fewer samples, every sample that still
    carries weight has at least that opacity, and the one-pass render composites the same samples."""
    from models import build_fields

    torch.manual_seed(0)
    box = [-2.0] * 3 + [2.0] * 3 if unbounded else [-1.5] * 3 + [1.5] * 3
    f = build_fields(dict(fast=True, unbounded=unbounded, aabb=box, grid_resolution=32, march_steps=256,
                          hash_levels=4, hash_log2_size=12, hash_max_res=64, alpha_threshold=0.05))
    grid = f["occupancy"]
    assert grid.alpha_threshold == 0.05  # from the flags, as eval.py and the viewer build it
    with torch.no_grad():  # a field of varied density: some samples faint, some not
        f["coarse"].encoding.table.uniform_(-1, 1)
        for p in f["coarse"].density_mlp.parameters():
            p.mul_(3)
    rays = _rays_across_the_box(unbounded)
    step = float(grid.step_size)
    grid.alpha_threshold = 0.0
    every = render_marched(f["coarse"], grid, rays, step)
    grid.alpha_threshold = 0.05
    two = render_marched(f["coarse"], grid, rays, step)
    with torch.no_grad():
        one = render_marched(f["coarse"], grid, rays, step)
    assert 0 < two["n_samples"] < 0.9 * every["n_samples"]
    w = two["weights_coarse"].detach()
    transmittance = 1 - (torch.cumsum(w, -1) - w)  # in front of each sample
    alpha = w / transmittance.clamp(min=1e-6)
    assert (alpha[w > 1e-6] >= 0.05 - 1e-4).all()
    torch.testing.assert_close(one["rgb_coarse"], two["rgb_coarse"].detach(), atol=1e-4, rtol=0)
    torch.testing.assert_close(one["weights_coarse"], w, atol=1e-4, rtol=0)
    # the faint samples are gone from the picture too, not only from the gradients
    assert (every["rgb_coarse"] - two["rgb_coarse"]).abs().max() > 1e-3
    with pytest.raises(UserError, match="--alpha_threshold"):
        get_opts(["--root_dir", "x", "--fast", "--alpha_threshold", "1"])


def test_distortion_loss_is_its_double_sum_and_prefers_one_surface():
    """The prefix-sum form equals mip-NeRF 360's double sum; a ray's weight in one interval costs less
    than the same weight split between two surfaces; the marched training render reports each sample's
    normalized parameter (sorted, in [0, 1]), which MSELoss adds the loss on."""
    from losses import MSELoss, distortion_loss

    g = torch.Generator().manual_seed(0)
    w, d = torch.rand(5, 9, generator=g), 0.1 * torch.rand(5, 9, generator=g)
    m = torch.sort(torch.rand(5, 9, generator=g), -1).values
    brute = (w[:, :, None] * w[:, None] * (m[:, :, None] - m[:, None]).abs()).sum((1, 2)) + (w * w * d).sum(-1) / 3
    assert torch.allclose(distortion_loss(w, m, d), brute.mean(), rtol=1e-5)
    s = torch.linspace(0.05, 0.95, 10)[None]
    width = torch.full_like(s, 0.1)
    one = torch.zeros_like(s).index_fill_(1, torch.tensor([4]), 1.0)
    two = torch.zeros_like(s).index_fill_(1, torch.tensor([2, 7]), 0.5)
    assert distortion_loss(one, s, width) < distortion_loss(two, s, width) / 3

    grid, field = _covering_sphere_grid()
    field.value = 5.0
    rays = make_rays(n=16)
    with torch.enable_grad():
        out = render_marched(field, grid, rays, float(grid.step_size))
        s_mid = out["s_mid_coarse"]
        assert (s_mid >= 0).all() and (s_mid <= 1).all() and (s_mid[:, 1:] >= s_mid[:, :-1]).all()
        target = torch.zeros(len(rays), 3)
        plain, with_d = MSELoss()(out, target), MSELoss(distortion=0.01)(out, target)
        assert with_d > plain
    w.requires_grad_(True)
    grad, = torch.autograd.grad(distortion_loss(w, m, d), w)
    assert torch.isfinite(grad).all() and (grad > 0).all()  # every weight costs: it clears haze


def test_train_py_adds_the_distortion_loss(demo_dir, tmp_path):
    """train.py --fast --distortion_loss: the loss takes part in training (stored with the run, finite)."""
    from test_train import scalars
    from utils.checkpoint import load_checkpoint

    run_script("train.py", "--root_dir", demo_dir, "--img_wh", 32, 32, "--fast", "--num_gpus", 0, "--max_steps", 4,
               "--batch_size", 256, "--distortion_loss", 0.002, "--val_num", 1, "--exp_name", "dist", cwd=tmp_path)
    assert load_checkpoint(str(tmp_path / "ckpts" / "dist" / "last.ckpt"))["hparams"]["distortion_loss"] == 0.002
    losses, _ = scalars(tmp_path, "dist", "train/loss")
    assert len(losses) and np.isfinite(losses).all()

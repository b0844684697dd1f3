"""Per-image appearance codes (``--appearance_dim``, ``models.appearance``).

Off (0, the default) nothing changes; on, each training image learns a code that the colour head
sees, training rays carry their image (``Rays.image``), and every other view renders with the mean
training code. Tiny sizes throughout: the whole file takes well under a minute on 2 CPU cores.
"""
import imageio.v2 as imageio
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import TINY, run_script
from datasets.blender import BlenderDataset
from models import build_fields, load_model
from models.compositing import query_field
from models.nerf import NeRF
from models.ngp import NGPField
from models.rendering import render_chunked, render_rays
from opt import get_opts, get_parser
from utils.checkpoint import load_checkpoint
from utils.errors import UserError
from utils.rays import Rays
from utils.visualization import to_uint8

AABB = [[-1.5] * 3, [1.5] * 3]


def inward_rays(n, seed=0, image=None):
    """``n`` rays from a sphere of radius 3 towards the origin (jittered), near 1, far 5."""
    g = torch.Generator().manual_seed(seed)
    o = F.normalize(torch.randn(n, 3, generator=g), dim=-1) * 3
    d = F.normalize(-o + 0.3 * torch.randn(n, 3, generator=g), dim=-1)
    ones = torch.ones(n, 1)
    return Rays(o, d, ones, ones * 5, image)


def ngp_fields(appearance_dim=0, n_images=0):
    """A tiny fast-path field; its grid is all occupied until its first update."""
    h = dict(fast=True, aabb=[-1.5, -1.5, -1.5, 1.5, 1.5, 1.5], hash_levels=4, hash_log2_size=10, hash_max_res=64,
             grid_resolution=8, march_steps=48, appearance_dim=appearance_dim, n_train_images=n_images)
    return build_fields(h)


# ------------------------------------------------------------------ (1) off: nothing changes


def test_off_builds_the_same_networks_with_the_same_outputs():
    assert sum(p.numel() for p in NeRF(appearance_dim=0, n_images=100).parameters()) == 595_844
    torch.manual_seed(0)
    old = build_fields({"N_importance": 8, "net_depth": 3, "net_width": 32})
    torch.manual_seed(0)
    new = build_fields({"N_importance": 8, "net_depth": 3, "net_width": 32, "appearance_dim": 0, "n_train_images": 7})
    for level in ("coarse", "fine"):
        a, b = old[level].state_dict(), new[level].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert not hasattr(new[level], "appearance")

    # the colour head is still dir_layer(cat[xyz_final(h), enc(d)]), as the seed computes it
    net = new["coarse"]
    x, d = torch.randn(12, 3), torch.randn(12, 3)
    sigma, rgb = net(x, d)
    h = net._features(x)
    ref = net.rgb(net.dir_layer(torch.cat([net.xyz_final(h), net.embed_dir(d)], -1)))
    torch.testing.assert_close(rgb, ref)
    torch.testing.assert_close(sigma, net.sigma(h).squeeze(-1))

    # rays of training images (with ``image``) render exactly as rays without
    rays = inward_rays(20)
    with_image = inward_rays(20, image=torch.arange(20) % 7)
    kw = dict(n_samples=8, n_importance=8)
    out_a, out_b = render_rays(new, rays, **kw), render_rays(new, with_image, **kw)
    assert torch.equal(out_a["rgb_fine"], out_b["rgb_fine"]) and torch.equal(out_a["rgb_coarse"], out_b["rgb_coarse"])

    torch.manual_seed(0)
    f0 = NGPField(AABB, n_levels=4, log2_size=10, max_res=64)
    torch.manual_seed(0)
    f1 = NGPField(AABB, n_levels=4, log2_size=10, max_res=64, appearance_dim=0, n_images=7)
    assert f0.state_dict().keys() == f1.state_dict().keys()
    x = torch.rand(30, 3) * 2 - 1
    for a, b in zip(f0(x, d.repeat(3, 1)[:30]), f1(x, d.repeat(3, 1)[:30])):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="no appearance codes"):
        net(x, d.repeat(3, 1)[:30], torch.zeros(30, 2))


def test_old_checkpoint_without_codes_still_loads(tmp_path):
    """A file whose flags predate --appearance_dim (no appearance_dim, no n_train_images) loads."""
    fields = build_fields({"N_importance": 0, "net_depth": 2, "net_width": 16})
    state = {f"nerf_coarse.{k}": v for k, v in fields["coarse"].state_dict().items()}
    path = tmp_path / "old.pth"
    torch.save({"state_dict": state, "hparams": {"net_depth": 2, "net_width": 16, "N_importance": 0}}, path)
    args = get_parser(training=False).parse_args(["--root_dir", str(tmp_path)])
    args.ckpt_path = str(path)
    loaded, h, _ = load_model(args)
    assert h.appearance_dim == 0 and not hasattr(loaded["coarse"], "appearance")
    # typing --appearance_dim for it is named as the problem
    args.appearance_dim = 4
    with pytest.raises(UserError, match="trained without appearance codes"):
        load_model(args, explicit={"appearance_dim"})


def test_weights_without_flags_rebuild_their_codes(tmp_path):
    """A bare state dict (no stored flags): the codes' shape is read off the weights."""
    fields = build_fields({"N_importance": 0, "net_depth": 2, "net_width": 16, "appearance_dim": 3, "n_train_images": 5})
    state = {f"nerf_coarse.{k}": v for k, v in fields["coarse"].state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "bare.pth")
    args = get_parser(training=False).parse_args(["--root_dir", str(tmp_path)])
    args.ckpt_path = str(tmp_path / "bare.pth")
    loaded, h, _ = load_model(args)
    assert (h.appearance_dim, h.n_train_images, h.N_emb_dir) == (3, 5, 4)
    assert torch.equal(loaded["coarse"].appearance.weight, fields["coarse"].appearance.weight)


# ------------------------------------------------------------------ the protocol: codes in, mean code out


def test_codes_follow_the_rays_through_pieces_and_both_renderers():
    torch.manual_seed(0)
    net = NeRF(depth=3, width=32, appearance_dim=3, n_images=5)
    assert net.dir_layer[0].in_features == 32 + net.embed_dir.out_channels + 3
    assert torch.equal(net.appearance.weight, torch.zeros(5, 3))  # every image starts at the mean
    with torch.no_grad():
        net.appearance.weight.normal_()
        net.sigma.bias.fill_(2.0)  # some density along every ray
    x, d, code = torch.randn(5 * 7, 3), torch.randn(5, 3), torch.randn(5, 3)
    per_sample = net(x, d.repeat_interleave(7, 0), code.repeat_interleave(7, 0))
    per_ray = net(x, d, code)
    pieces = query_field(net, x, d, max_points=10, code=code)  # pieces of whole rays (1 ray = 7 points)
    for a, b, c in zip(per_ray, per_sample, pieces):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(c, b)
    assert not torch.allclose(per_ray[1], net(x, d)[1])  # the code changes the colour ...
    torch.testing.assert_close(per_ray[0], net(x, d)[0])  # ... never the density
    with pytest.raises(ValueError, match="do not match"):
        net(x, d, code[:4])

    # the renderers: rays of an image whose code is the mean render as rays without an image
    for fields, kw in (({"coarse": net}, dict(n_samples=8)), (ngp_fields(3, 5), {})):
        field = fields["coarse"]
        with torch.no_grad():
            field.appearance.weight.normal_()
            field.appearance.weight[2] = field.appearance.weight[[0, 1, 3, 4]].mean(0)  # image 2 = the mean
        rays = inward_rays(16)
        ray_image = lambda i: inward_rays(16, image=torch.full((16,), i))  # noqa: E731
        plain = render_rays(fields, rays, **kw)["rgb_coarse"]
        assert plain.abs().sum() > 0
        torch.testing.assert_close(render_rays(fields, ray_image(2), **kw)["rgb_coarse"], plain)
        assert not torch.allclose(render_rays(fields, ray_image(0), **kw)["rgb_coarse"], plain)
        # a batch of mixed images renders each ray with its own code
        mixed = torch.arange(16) % 5
        out = render_rays(fields, inward_rays(16, image=mixed), **kw)["rgb_coarse"]
        for i in range(5):
            alone = render_rays(fields, ray_image(i), **kw)["rgb_coarse"]
            torch.testing.assert_close(out[mixed == i], alone[mixed == i])


def test_rays_carry_the_training_image_only_in_the_train_split(demo_dir):
    train = BlenderDataset(str(demo_dir), "train", (32, 32))
    idx = torch.tensor([0, 5, 1023, 1024, 30 * 1024 - 1])
    rays = train[idx]["rays"]
    assert rays.image.dtype == torch.long and rays.image.tolist() == [0, 0, 0, 1, 29]
    assert rays[1:3].image.tolist() == [0, 0] and rays.to("cpu", torch.float64).image.dtype == torch.long
    assert train.rays(7).image.tolist() == [7] * 1024  # a whole training image (eval.py --split train)
    val = BlenderDataset(str(demo_dir), "val", (32, 32))
    assert val[0]["rays"].image is None and val.rays(0).image is None
    both = Rays.cat([rays, rays])
    assert both.image.tolist() == rays.image.tolist() * 2 and Rays.cat([rays, val.rays(0)]).image is None


# ------------------------------------------------------------------ (2) the codes learn the exposure


def test_codes_learn_which_images_are_darker():
    """8 views of one object, images 4-7 darker by x0.6: a tiny field with 2-float codes learns it,
    so the dark images' own codes render darker than the mean code, the bright ones' brighter."""
    torch.manual_seed(0)
    n_images, dark = 8, 0.6
    net = NeRF(depth=2, width=32, n_freqs_xyz=3, n_freqs_dir=2, appearance_dim=2, n_images=n_images)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)

    def target(rays):  # a colour that depends on the ray, times the image's exposure
        base = 0.45 + 0.3 * rays.directions
        return base * torch.where(rays.image >= 4, dark, 1.0)[:, None]

    for step in range(250):
        rays = inward_rays(256, seed=step, image=torch.randint(0, n_images, (256,)))
        out = render_rays({"coarse": net}, rays, n_samples=12, perturb=1.0)
        loss = ((out["rgb_coarse"] - target(rays)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    held_out = inward_rays(512, seed=10_000)
    with torch.no_grad():
        mean = render_rays({"coarse": net}, held_out, n_samples=12)["rgb_coarse"].mean().item()
        own = [render_rays({"coarse": net}, inward_rays(512, seed=10_000, image=torch.full((512,), i)),
                           n_samples=12)["rgb_coarse"].mean().item() for i in range(n_images)]
        base = (0.45 + 0.3 * held_out.directions).mean().item()
    bright, darker = own[:4], own[4:]
    assert max(darker) < mean < min(bright), (own, mean)
    ratio = np.mean(darker) / np.mean(bright)
    assert abs(ratio - dark) < 0.05, (ratio, own)
    assert abs(np.mean(bright) - base) < 0.08 and abs(mean - base * (1 + dark) / 2) < 0.08, (own, mean, base)


# ------------------------------------------------------------------ (3) + (4) train.py -> eval.py


def test_train_with_codes_then_eval_renders_with_the_mean_code(demo_dir, tmp_path):
    run_script("train.py", "--root_dir", demo_dir, "--img_wh", 32, 32, *TINY, "--max_steps", 6, "--lr", "1e-2",
               "--appearance_dim", 4, "--val_num", 1, "--exp_name", "codes", cwd=tmp_path)
    ckpt_path = tmp_path / "ckpts" / "codes" / "last.ckpt"
    ckpt = load_checkpoint(str(ckpt_path))
    assert ckpt["hparams"]["appearance_dim"] == 4 and ckpt["hparams"]["n_train_images"] == 30
    for level in ("nerf_coarse", "nerf_fine"):
        codes = ckpt["state_dict"][f"{level}.appearance.weight"]
        assert codes.shape == (30, 4) and codes.abs().sum() > 0  # trained away from zero

    out = tmp_path / "eval"
    run_script("eval.py", "--ckpt_path", ckpt_path, "--split", "val", "--out_dir", out, "--no_depth",
               "--device", "cpu", cwd=tmp_path)
    frame = imageio.imread(out / "000.png")

    # the same view rendered here: the model rebuilt from the checkpoint, the mean code
    args = get_parser(training=False).parse_args([])
    args.ckpt_path = str(ckpt_path)
    fields, h, _ = load_model(args)
    assert h.appearance_dim == 4 and fields["coarse"].appearance.weight.shape == (30, 4)
    val = BlenderDataset(str(demo_dir), "val", (32, 32))
    kw = dict(n_samples=h.N_samples, n_importance=h.N_importance, white_back=True, test_time=True)
    mine = render_chunked(fields, val.rays(0), **kw)["rgb"]
    assert np.abs(to_uint8(mine.view(32, 32, 3)).astype(int) - frame.astype(int)).max() <= 1

    # asking for other codes than the checkpoint's is named in one line
    args.appearance_dim = 8
    with pytest.raises(UserError, match="appearance codes 30 x 4 but the flags ask for .*appearance codes 30 x 8"):
        load_model(args, explicit={"appearance_dim"})

    # codes set to the mean give the same frame (a held-out view has no code of its own)
    for f in fields.values():
        with torch.no_grad():
            f.appearance.weight[:] = f.mean_code()
    same = render_chunked(fields, val.rays(0), **kw)["rgb"]
    torch.testing.assert_close(same, mine)


def test_fast_path_trains_with_codes(demo_dir, tmp_path):
    run_script("train.py", "--root_dir", demo_dir, "--img_wh", 32, 32, "--fast", "--num_gpus", 0, "--max_steps", 4,
               "--batch_size", 256, "--appearance_dim", 2, "--val_num", 1, "--exp_name", "fast_codes", cwd=tmp_path)
    ckpt = load_checkpoint(str(tmp_path / "ckpts" / "fast_codes" / "last.ckpt"))
    assert ckpt["state_dict"]["nerf_coarse.appearance.weight"].shape == (30, 2)


# ------------------------------------------------------------------ (5) bad values


def test_negative_appearance_dim_is_one_error_line(tmp_path):
    with pytest.raises(UserError, match="--appearance_dim must be >= 0, got -1"):
        get_opts(["--root_dir", "scene", "--appearance_dim", "-1"])
    proc = run_script("train.py", "--root_dir", tmp_path, "--appearance_dim", -1, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == ["error: --appearance_dim must be >= 0, got -1"], proc.stderr
    assert not (tmp_path / "ckpts").exists()

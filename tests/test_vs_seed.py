"""Our vanilla step against the seed's own code (``../shared/peers/nerf_pl``) on identical inputs and
weights: the algorithm is the seed's, so outputs, loss, gradients and the Adam step agree to float
precision where the sampling is deterministic (no perturbation, no density noise)."""
import pytest
import torch

from conftest import ROOT

SEED_DIR = ROOT.parent / "shared" / "peers" / "nerf_pl"
pytestmark = pytest.mark.skipif(not (SEED_DIR / "models" / "rendering.py").is_file(),
                                reason=f"needs the seed's code at {SEED_DIR} (../shared/peers beside the project)")


def make_pair(cfg):
    from benchmarks.vs_seed import OursStep, SeedStep

    torch.manual_seed(0)
    ours = OursStep(cfg, torch.device("cpu"), perturb=0.0)
    seed = SeedStep(cfg, torch.device("cpu"), str(SEED_DIR), perturb=0.0)
    seed.load_ours(ours)
    return ours, seed


@pytest.mark.parametrize("cfg", [dict(D=6, W=32, N_samples=16, N_importance=24), dict(D=2, W=16, N_samples=8, N_importance=0)])
def test_one_training_step_matches_the_seed(cfg):
    from benchmarks.vs_seed import random_batch, seed_state_from_ours

    ours, seed = make_pair(cfg)
    rays, rgbs = random_batch(96, torch.device("cpu"), torch.Generator().manual_seed(1))
    rays[:8, :3] *= 10  # some rays start outside the unit ball: samples beyond the scene, too
    out_o, out_s = ours.forward(rays), seed.forward(rays)
    assert set(out_o) == set(out_s) == ({"coarse", "fine"} if cfg["N_importance"] else {"coarse"})
    for level in out_o:
        torch.testing.assert_close(out_o[level], out_s[level], rtol=1e-5, atol=1e-6)
    loss_o = ours.loss_fn({f"rgb_{k}": v for k, v in out_o.items()}, rgbs)
    loss_s = seed.loss_fn(out_s, rgbs)
    torch.testing.assert_close(loss_o, loss_s, rtol=1e-5, atol=1e-7)
    loss_o.backward()
    loss_s.backward()
    for m_seed, level in zip(seed.models, ("coarse", "fine")):
        grads = seed_state_from_ours({k: p.grad for k, p in ours.fields[level].named_parameters()})
        for name, p in m_seed.named_parameters():
            torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-7, msg=f"{level} {name}")
    ours.opt.step()
    seed.opt.step()
    for m_seed, level in zip(seed.models, ("coarse", "fine")):
        after = seed_state_from_ours(ours.fields[level].state_dict())
        for name, p in m_seed.named_parameters():
            # Adam's first step is lr * g / (|g| + eps): tiny gradients amplify float noise, so the
            # tolerance is a fraction of a step (lr 5e-4)
            torch.testing.assert_close(after[name], p.detach(), rtol=1e-5, atol=2e-5)


def test_whole_training_steps_agree_over_a_few_steps():
    from benchmarks.vs_seed import random_batch

    ours, seed = make_pair(dict(D=4, W=32, N_samples=8, N_importance=8))
    g1, g2 = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    losses = [(float(ours(*random_batch(64, torch.device("cpu"), g1))), float(seed(*random_batch(64, torch.device("cpu"), g2))))
              for _ in range(3)]
    for lo, ls in losses:
        assert lo == pytest.approx(ls, rel=1e-4)
    assert losses[-1][0] != losses[0][0]  # the weights moved


def test_vs_seed_rejects_a_malformed_config(capsys):
    from benchmarks.vs_seed import parse

    with pytest.raises(SystemExit) as err:
        parse(["--configs", "8x256-64+64"])
    assert err.value.code == 2 and "DxW:N_samples+N_importance" in capsys.readouterr().err

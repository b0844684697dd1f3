import copy

import pytest
import torch

from opt import get_parser
from utils.optim import get_optimizer, get_scheduler, lr_factor


def hp(**kw):
    h = get_parser().parse_args(["--root_dir", "x"])
    for k, v in kw.items():
        setattr(h, k, v)
    return h


def lrs(h, epochs):
    model = torch.nn.Linear(2, 1)
    opt = get_optimizer(h, model)
    sched = get_scheduler(h, opt)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        model(torch.randn(4, 2)).sum().backward()
        opt.step()
        sched.step()
    return out


def test_steplr_follows_the_milestones():
    out = lrs(hp(lr=1.0, decay_step=[2, 4], decay_gamma=0.5), 6)
    assert out == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "radam", "ranger"])
@pytest.mark.parametrize("scheduler", ["steplr", "cosine", "poly"])
def test_every_optimizer_and_schedule_runs(optimizer, scheduler):
    # the seed's poly schedule crashed (LambdaLR hidden behind a star import): ours must not
    out = lrs(hp(optimizer=optimizer, lr_scheduler=scheduler, num_epochs=4), 4)
    assert out[0] == pytest.approx(5e-4)
    assert all(b <= a + 1e-12 for a, b in zip(out, out[1:]))  # never increases without warmup
    if scheduler != "steplr":
        assert out[-1] < out[0]


def test_cosine_and_poly_values():
    h = hp(lr_scheduler="cosine", num_epochs=4)
    assert lr_factor(2, h) == pytest.approx(0.5)
    h = hp(lr_scheduler="poly", num_epochs=4, poly_exp=2.0)
    assert lr_factor(2, h) == pytest.approx(0.25)


def test_warmup_rises_then_decays():
    h = hp(warmup_epochs=3, warmup_multiplier=1.0, decay_step=[2], decay_gamma=0.1)
    f = [lr_factor(e, h) for e in range(7)]
    assert f[0] > 0 and f[0] < f[1] < f[2] < 1  # never zero, rising
    assert f[3:] == pytest.approx([1, 1, 0.1, 0.1])  # then the schedule from its start
    h = hp(warmup_epochs=2, warmup_multiplier=4.0)
    assert [lr_factor(e, h) for e in range(3)] == pytest.approx([1, 2.5, 4])


def test_ranger_state_round_trip():
    torch.manual_seed(0)
    h = hp(optimizer="ranger", lr=1e-2)
    model = torch.nn.Linear(3, 1)
    opt = get_optimizer(h, model)
    for _ in range(8):  # past one lookahead sync (k = 6)
        opt.zero_grad()
        model(torch.randn(5, 3)).pow(2).sum().backward()
        opt.step()
    state = copy.deepcopy(opt.state_dict())  # as torch.save/load would: no shared tensors
    model2 = torch.nn.Linear(3, 1)
    model2.load_state_dict(model.state_dict())
    opt2 = get_optimizer(h, model2)
    opt2.load_state_dict(state)
    x = torch.randn(5, 3)
    for m, o in ((model, opt), (model2, opt2)):
        for _ in range(5):
            o.zero_grad()
            m(x).pow(2).sum().backward()
            o.step()
    assert torch.allclose(model.weight, model2.weight)
    assert opt2.param_groups is opt2.base.param_groups


def test_fast_schedule_follows_time_when_the_budget_runs_out_first():
    from utils.optim import fast_lr_factor

    assert fast_lr_factor(500, 20000) == 1.0  # 2.5% of the steps: no decay yet
    assert fast_lr_factor(500, 20000, time_fraction=0.6) == pytest.approx(0.33)  # 60% of --max_time used
    assert fast_lr_factor(500, 20000, time_fraction=0.95) == pytest.approx(0.33 ** 3)
    assert fast_lr_factor(15000, 20000, time_fraction=0.1) == pytest.approx(0.33 ** 2)  # steps decide
    assert fast_lr_factor(10, 20000, time_fraction=0.99) < 0.1  # warmup comes first

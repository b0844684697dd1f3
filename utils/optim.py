"""Optimizer and learning-rate schedule factories (``configure_optimizers`` just calls these)."""
import math

import torch
from torch.optim import SGD, Adam, RAdam
from torch.optim.lr_scheduler import LambdaLR


class Lookahead(torch.optim.Optimizer):
    """Lookahead (Zhang et al. 2019) around a base optimizer: every ``k`` steps the slow weights
    move ``alpha`` of the way to the fast ones and the fast weights restart from there.

    Shares ``param_groups`` and ``state`` with the base optimizer, so LR schedulers see one
    optimizer; the slow weights travel in ``state_dict()["lookahead_slow"]``. With RAdam as the
    base this is "Ranger".
    """

    def __init__(self, base, k=6, alpha=0.5):
        self.base, self.k, self.alpha = base, k, alpha
        super().__init__(base.param_groups, base.defaults)
        self._share()
        # the slow weights start at the initial weights (kept apart from the base optimizer's state,
        # which it initializes lazily when empty)
        self.slow = [p.detach().clone() for p in self._params()]

    def _params(self):
        return [p for group in self.param_groups for p in group["params"]]

    def _share(self):
        self.param_groups, self.state = self.base.param_groups, self.base.state
        for group in self.param_groups:
            group.setdefault("lookahead_step", 0)

    @torch.no_grad()
    def step(self, closure=None):
        loss = self.base.step(closure)
        i = 0
        for group in self.param_groups:
            group["lookahead_step"] += 1
            params = group["params"]
            if group["lookahead_step"] % self.k == 0:
                for p, slow in zip(params, self.slow[i:i + len(params)]):
                    slow.add_(p.detach() - slow, alpha=self.alpha)
                    p.copy_(slow)
            i += len(params)
        return loss

    def state_dict(self):
        sd = self.base.state_dict()
        sd["lookahead_slow"] = [s.clone() for s in self.slow]
        return sd

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        slow = state_dict.pop("lookahead_slow", None)
        self.base.load_state_dict(state_dict)
        self._share()
        if slow is not None:
            self.slow = [s.to(p.device, p.dtype).clone() for s, p in zip(slow, self._params())]


def get_parameters(models):
    """Trainable parameters of a module or a list/dict of modules."""
    if isinstance(models, dict):
        models = list(models.values())
    if not isinstance(models, (list, tuple)):
        models = [models]
    return [p for m in models for p in m.parameters() if p.requires_grad]


def get_optimizer(hparams, models, extra_groups=()):
    """``--optimizer`` sgd | adam | radam | ranger with ``--lr``, ``--momentum``, ``--weight_decay``.
    ``extra_groups``: parameter groups with options of their own (e.g. the pose corrections' lr)."""
    params, eps = get_parameters(models), 1e-8
    if extra_groups:
        params = [{"params": params}, *extra_groups]
    name = hparams.optimizer
    if getattr(hparams, "fast", False) and name == "adam":  # Instant-NGP's settings for hash tables
        kwargs = dict(lr=hparams.lr, eps=1e-15, betas=(0.9, 0.99), weight_decay=hparams.weight_decay)
        if getattr(hparams, "kernels", "auto") == "auto":
            # torch's fused Adam: one kernel over every parameter instead of a loop of ops per tensor
            # (the 1.6M-entry hash table of the CPU preset: 0.55 ms a step against 5.6, RESULTS §20)
            try:
                return Adam(params, fused=True, **kwargs)
            except (RuntimeError, ValueError, TypeError):  # a device or torch without it
                pass
        return Adam(params, **kwargs)
    if name == "sgd":
        return SGD(params, lr=hparams.lr, momentum=hparams.momentum, weight_decay=hparams.weight_decay)
    if name == "adam":
        return Adam(params, lr=hparams.lr, eps=eps, weight_decay=hparams.weight_decay)
    if name == "radam":
        return RAdam(params, lr=hparams.lr, eps=eps, weight_decay=hparams.weight_decay)
    if name == "ranger":
        return Lookahead(RAdam(params, lr=hparams.lr, eps=eps, weight_decay=hparams.weight_decay))
    raise ValueError(f"unknown optimizer {name}")


def decay_factor(epoch, hparams):
    """The schedule's LR multiplier at ``epoch`` (0-based, counted after warmup)."""
    name = hparams.lr_scheduler
    if name == "steplr":
        return hparams.decay_gamma ** sum(epoch >= m for m in hparams.decay_step)
    if name == "cosine":
        return max(1e-8, 0.5 * (1 + math.cos(math.pi * min(epoch, hparams.num_epochs) / hparams.num_epochs)))
    if name == "poly":
        return max(0.0, 1 - epoch / hparams.num_epochs) ** hparams.poly_exp
    raise ValueError(f"unknown lr_scheduler {name}")


def lr_factor(epoch, hparams):
    """LR multiplier at ``epoch`` including warmup.

    With ``--warmup_epochs W`` the LR rises linearly for W epochs, from ``lr`` to
    ``lr * warmup_multiplier`` when the multiplier is above 1, or from ``lr / (W + 1)`` to ``lr``
    when it is 1 (never 0, so no epoch is wasted); then the schedule runs from its start, scaled by
    the multiplier (as the seed's GradualWarmupScheduler does).
    """
    W, m = hparams.warmup_epochs, hparams.warmup_multiplier
    if W > 0 and epoch < W:
        return (m - 1) * epoch / W + 1 if m > 1 else (epoch + 1) / (W + 1)
    return (m if W > 0 else 1.0) * decay_factor(epoch - max(W, 0), hparams)


def fast_lr_factor(step, max_steps, time_fraction=0.0):
    """The fast path's per-step schedule: linear warmup over 1% of the steps, then x0.33 at 50%,
    75% and 90% of the run (nerfacc's Instant-NGP recipe). The run's progress is the larger of
    ``step / max_steps`` and ``time_fraction`` (the share of a ``--max_time`` budget used), so a
    time-limited run still decays before it stops."""
    warmup = max(1, max_steps // 100)
    if step < warmup:
        return 0.01 + 0.99 * step / warmup
    progress = max(step / max_steps, time_fraction)
    return 0.33 ** sum(progress >= f for f in (0.5, 0.75, 0.9))


def get_scheduler(hparams, optimizer, time_fraction=None):
    """A ``LambdaLR`` stepped once per epoch (``--lr_scheduler``, ``--warmup_epochs``), or once per
    step for the fast path (``fast_lr_factor``; ``time_fraction``: a callable giving the share of
    the ``--max_time`` budget used so far, or None)."""
    if getattr(hparams, "fast", False):
        return LambdaLR(optimizer, lambda step: fast_lr_factor(step, hparams.max_steps,
                                                               time_fraction() if time_fraction else 0.0))
    return LambdaLR(optimizer, lambda epoch: lr_factor(epoch, hparams))


def get_learning_rate(optimizer):
    return optimizer.param_groups[0]["lr"]

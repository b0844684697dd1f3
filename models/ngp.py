"""The fast path's radiance field: a hash-grid encoding and two small MLPs (Instant-NGP style)."""
import torch
import torch.nn.functional as F
from torch import nn

from models import kernels
from models.appearance import AppearanceCodes, make_appearance
from models.contraction import contract as contract_points
from models.encoding import SHEncoding
from models.hash_encoding import HashEncoding


class _TruncExp(torch.autograd.Function):
    """exp(x) with its gradient computed from exp(min(x, 15)): densities stay positive and large
    pre-activations cannot blow up the gradients."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15))


def trunc_exp(x):
    return _TruncExp.apply(x)


class NGPField(AppearanceCodes, nn.Module):
    """Hash-grid field: ``HashEncoding`` -> 64-unit MLP -> (density, 15 geometry features); then
    features + spherical-harmonic view direction -> two 64-unit layers -> sigmoid RGB.

    Same interface as ``models.nerf.NeRF``: ``forward(x, d) -> (sigma (N,), rgb (N, 3))`` and
    ``query_density(x) -> sigma (N,)``. Densities are already positive (exp activation); points
    outside ``aabb`` ``(2, 3)`` have zero density. ``contract``: points are first contracted
    (``models.contraction``; unbounded scenes, ``aabb`` then the contracted box ``[-2, 2]^3``).

    ``appearance_dim > 0``: per-training-image appearance codes (``appearance``, ``n_images`` x
    ``appearance_dim``, starting at zero) enter the colour MLP beside the features and the view
    direction, as in ``models.nerf.NeRF``: ``forward(x, d, code)`` with ``code`` ``(N, appearance_dim)``,
    one per point, or None for the mean training code (held-out views).
    """

    def __init__(self, aabb, n_levels=16, log2_size=19, max_res=2048, width=64, geo_features=15, contract=False,
                 appearance_dim=0, n_images=0):
        super().__init__()
        self.width, self.contract = width, bool(contract)
        self.appearance_dim = int(appearance_dim)
        if self.appearance_dim > 0:
            self.appearance = make_appearance(n_images, self.appearance_dim)
        self.encoding = HashEncoding(aabb, n_levels=n_levels, log2_size=log2_size, max_res=max_res)
        self.density_mlp = nn.Sequential(nn.Linear(self.encoding.out_channels, width), nn.ReLU(True),
                                         nn.Linear(width, 1 + geo_features))
        self.dir_encoding = SHEncoding()
        n_color_in = geo_features + self.dir_encoding.out_channels + self.appearance_dim
        self.level_scale = None  # (n_levels * n_features,) or None: see set_level_weights
        self.color_mlp = nn.Sequential(nn.Linear(n_color_in, width), nn.ReLU(True),
                                       nn.Linear(width, width), nn.ReLU(True), nn.Linear(width, 3), nn.Sigmoid())

    def set_level_weights(self, weights):
        """Scale each hash level's features by ``weights`` ``(n_levels,)`` (coarse-to-fine training with
        camera refinement, ``models.camera_opt.level_weights``); None: every level as it is."""
        self.level_scale = None if weights is None else \
            weights.to(self.encoding.table.device).repeat_interleave(self.encoding.n_features)

    def _density_and_features(self, x, features=True):
        if self.contract:
            x = contract_points(x)
        feats = self.encoding(x)
        if self.level_scale is not None:
            feats = feats * self.level_scale.to(feats.dtype)
        if features:
            h = self.density_mlp(feats)
        else:  # the density alone: the output layer's first row, not all 1 + geo_features of them
            last = self.density_mlp[-1]
            h = F.linear(self.density_mlp[:-1](feats), last.weight[:1], last.bias[:1])
        aabb = self.encoding.aabb
        inside = ((x >= aabb[0]) & (x <= aabb[1])).all(-1)
        sigma = trunc_exp(h[:, 0].float()) * inside
        return sigma, h[:, 1:]

    def query_density(self, x):
        """Args: x ``(N, 3)``. Returns: sigma ``(N,)`` (non-negative)."""
        fused = self._fused_density(x)
        if fused is not None:  # one C++ pass over the points (models/kernels.py): the same values
            ext, weights = fused
            return ext.density_points(x.contiguous(), weights, self.encoding.table_size, self.contract)
        return self._density_and_features(x, features=False)[0]

    def march_visible(self, origins, directions, t, delta, mask, max_tau, min_od):
        """``models.marching._visible_samples`` in one fused pass (``models/kernels.py``): each ray walks
        its masked samples front to back and stops at optical depth ``max_tau``, so no sample past a
        ray's end is evaluated. ``origins``, ``directions`` ``(N, 3)``; ``t``, ``delta`` ``(N, M)``
        distances and world-unit steps; ``mask`` ``(N, M)`` bool. Returns keep ``(N, M)`` bool (the
        marcher's own loop's samples), or None where the fused density does not serve."""
        fused = self._fused_density(t)
        if fused is None:
            return None
        ext, weights = fused
        return ext.march_density(origins.contiguous(), directions.contiguous(), t.contiguous(), delta.contiguous(),
                                 mask.contiguous(), weights, self.encoding.table_size, self.contract,
                                 float(max_tau), float(min_od))

    def march_render(self, origins, directions, view_dirs, code, t, delta, mask, max_tau, min_od):
        """``models.marching._render_one_pass`` in one fused pass (inference): each ray composites its
        masked samples front to back and stops at optical depth ``max_tau``; colour is evaluated only
        where a sample's weight is not 0. ``view_dirs`` ``(N, 3)``; ``code`` ``(N, appearance_dim)`` or
        None (the mean code); the rest as ``march_visible``. Returns weights ``(N, M)``, rgb ``(N, 3)``
        (no background) and the number of samples evaluated, or None where the fused kernel does not serve."""
        fused = self._fused_density(t)
        geo = self.density_mlp[-1].out_features - 1
        if fused is None or self.color_mlp[0].weight.dtype != torch.float32 or geo > 256:  # the kernel's buffers
            return None
        ext, weights = fused
        first, second, third = self.color_mlp[0], self.color_mlp[2], self.color_mlp[4]
        # what a ray's direction and code add to the colour MLP's first layer: once per ray, not per sample
        per_ray = [self.dir_encoding(view_dirs).float()]
        if self.appearance_dim:
            per_ray.append((self.mean_code().expand(len(t), -1) if code is None else code).float())
        ray_in = F.linear(torch.cat(per_ray, -1), first.weight[:, geo:], first.bias)
        last = self.density_mlp[-1]
        color = [last.weight.t().contiguous(), last.bias, first.weight[:, :geo].t().contiguous(),
                 second.weight.t().contiguous(), second.bias, third.weight.t().contiguous(), third.bias]
        w, rgb, evaluated = ext.march_render(origins.contiguous(), directions.contiguous(), t.contiguous(),
                                             delta.contiguous(), mask.contiguous(), weights, self.encoding.table_size,
                                             self.contract, [c.detach().contiguous() for c in color],
                                             ray_in.contiguous(), float(max_tau), float(min_od))
        return w, rgb, int(evaluated)

    def _fused_density(self, x):
        """``(extension, weights)`` when the fused density serves points like ``x``: no gradient (nor
        autocast) wanted, the CPU in float32; else None. Level weights (camera refinement's coarse to
        fine) go in with the weights."""
        enc, first, last = self.encoding, self.density_mlp[0], self.density_mlp[-1]
        if (torch.is_grad_enabled() or torch.is_autocast_enabled("cpu")
                or not kernels.applies(x, enc.table) or first.weight.dtype != torch.float32
                or enc.n_features != 2 or enc.n_levels > 32 or self.width > 256):
            return None
        ext = kernels.extension()
        if ext is None:
            return None
        weights = [enc.aabb.contiguous(), enc.res, enc.offsets, enc.dense, enc.table.detach().contiguous(),
                   first.weight.detach().t().contiguous(), first.bias.detach(),
                   torch.cat([last.weight.detach()[0], last.bias.detach()[:1]])]
        if self.level_scale is not None:
            weights.append(self.level_scale.float().contiguous())
        return ext, weights

    def forward(self, x, d, code=None):
        """Args: x, d ``(N, 3)``; code: ``(N, appearance_dim)`` or None (the mean training code), for
        fields with ``appearance_dim > 0`` only. Returns: sigma ``(N,)``, rgb ``(N, 3)`` in [0, 1]."""
        sigma, geo = self._density_and_features(x)
        inputs = [geo, self.dir_encoding(d).to(geo.dtype)]
        if self.appearance_dim:
            if code is None:
                code = self.mean_code().expand(len(x), -1)
            elif code.shape != (len(x), self.appearance_dim):
                raise ValueError(f"codes {tuple(code.shape)} do not match {len(x)} points of "
                                 f"appearance_dim {self.appearance_dim}")
            inputs.append(code.to(geo.dtype))
        elif code is not None:
            raise ValueError("this field has no appearance codes (appearance_dim 0)")
        rgb = self.color_mlp(torch.cat(inputs, -1))
        return sigma, rgb

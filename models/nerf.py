"""The NeRF MLP (a radiance field): points and view directions -> density and colour."""
import torch
import torch.nn.functional as F
from torch import nn

from models.appearance import AppearanceCodes, make_appearance
from models.contraction import contract as contract_points
from models.encoding import PosEmbedding


class NeRF(AppearanceCodes, nn.Module):
    """The MLP of the NeRF paper, with its own positional encodings.

    ``depth`` layers of ``width`` units on the encoded point, the input re-injected before
    layer ``skips`` (4 by default), a density head, then one 128-unit layer that also sees the
    encoded view direction and gives the colour through a sigmoid. At the defaults (8x256,
    10 and 4 frequencies) it has 595,844 parameters.

    A radiance field for ``models.rendering``: ``forward(x, d) -> (sigma, rgb)`` and the
    density-only twin ``query_density(x) -> sigma``. Points and directions are in world (or NDC)
    coordinates; directions need not be normalized (the seed feeds them as they come).
    ``d`` may also hold one direction per ray (``per_ray_directions``): it is then encoded once per
    ray and broadcast over the ray's samples, as the seed does. ``contract``: points are first
    contracted (``models.contraction``; unbounded scenes), so the encoding sees the ball of radius 2.

    ``appearance_dim > 0`` (NeRF-W's appearance embedding, ``models.appearance``): the field owns
    ``appearance``, one learned code of ``appearance_dim`` floats per training image (``n_images``
    of them, starting at zero), and the colour layer also sees a code: ``forward(x, d, code)`` with
    ``code`` laid out like ``d`` (one per ray or one per point). The density never sees it. Without a code (held-out
    views, render paths, exports) the mean of the training codes is used. ``appearance_dim == 0``
    builds exactly the network above.
    """

    per_ray_directions = True  # forward accepts d (N_rays, 3) for N_rays * S consecutive samples

    def __init__(self, depth=8, width=256, n_freqs_xyz=10, n_freqs_dir=4, skips=(4,), contract=False,
                 appearance_dim=0, n_images=0):
        super().__init__()
        self.depth, self.width, self.skips, self.contract = depth, width, tuple(skips), bool(contract)
        self.embed_xyz = PosEmbedding(n_freqs_xyz)
        self.embed_dir = PosEmbedding(n_freqs_dir)
        in_xyz, in_dir = self.embed_xyz.out_channels, self.embed_dir.out_channels

        layers = []
        for i in range(depth):
            n_in = in_xyz if i == 0 else width
            if i in self.skips:
                n_in += in_xyz
            layers.append(nn.Sequential(nn.Linear(n_in, width), nn.ReLU(True)))
        self.xyz_layers = nn.ModuleList(layers)
        self.xyz_final = nn.Linear(width, width)
        self.sigma = nn.Linear(width, 1)
        self.appearance_dim, self.in_dir = int(appearance_dim), in_dir
        if self.appearance_dim > 0:
            self.appearance = make_appearance(n_images, self.appearance_dim)
        # dir_layer's input: [xyz_final(h) (width), enc(d) (in_dir), code (appearance_dim)]
        self.dir_layer = nn.Sequential(nn.Linear(width + in_dir + self.appearance_dim, width // 2), nn.ReLU(True))
        self.rgb = nn.Sequential(nn.Linear(width // 2, 3), nn.Sigmoid())

    def _features(self, x):
        x_enc = self.embed_xyz(contract_points(x) if self.contract else x)
        h = x_enc
        for i, layer in enumerate(self.xyz_layers):
            if i in self.skips:
                # layer(cat[x_enc, h]) as two products into one output: no concatenated copy, and
                # no gradient is computed for x_enc's block (x_enc needs none)
                lin, n = layer[0], x_enc.shape[-1]
                h = torch.relu_(torch.addmm(F.linear(x_enc, lin.weight[:, :n], lin.bias), h, lin.weight[:, n:].t()))
            else:
                h = layer(h)
        return h

    def query_density(self, x):
        """Raw density (before any activation; the renderer applies ReLU).

        Args: x ``(N, 3)``. Returns: sigma ``(N,)``.
        """
        return self.sigma(self._features(x)).squeeze(-1)

    def forward(self, x, d, code=None):
        """Args: x ``(N, 3)`` points; d ``(N, 3)`` their view directions, or ``(R, 3)`` one per ray
        when x holds ``S = N / R`` consecutive samples of each of R rays (ray-major, as the renderer
        lays them out); code (fields with ``appearance_dim > 0`` only): ``(R, appearance_dim)``
        appearance codes, one per row of ``d``, or None for the mean training code.

        Returns: sigma ``(N,)`` raw density, rgb ``(N, 3)`` in [0, 1].
        """
        n, n_dirs = x.shape[0], d.shape[0]
        if n_dirs and n % n_dirs:
            raise ValueError(f"{n} points do not split into samples of {n_dirs} rays")
        h = self._features(x)
        sigma = self.sigma(h).squeeze(-1)
        # dir_layer(cat[xyz_final(h), enc(d), code]) with its weights split in blocks: the products of
        # the direction and the code are taken once per ray and broadcast over that ray's samples
        lin, w, in_dir = self.dir_layer[0], self.width, self.in_dir
        dir_part = F.linear(self.embed_dir(d), lin.weight[:, w:w + in_dir], lin.bias)  # (R, W/2)
        if self.appearance_dim:
            if code is None:
                code = self.mean_code()[None]  # (1, dim): the same for every ray
            elif code.shape != (n_dirs, self.appearance_dim):
                raise ValueError(f"codes {tuple(code.shape)} do not match {n_dirs} directions of "
                                 f"appearance_dim {self.appearance_dim}")
            dir_part = dir_part + F.linear(code.to(dir_part.dtype), lin.weight[:, w + in_dir:])
        elif code is not None:
            raise ValueError("this field has no appearance codes (appearance_dim 0)")
        h = F.linear(self.xyz_final(h), lin.weight[:, :self.width])  # (N, W/2)
        h = h.view(n_dirs, n // max(n_dirs, 1), -1).add_(dir_part[:, None]).view(n, -1)
        return sigma, self.rgb(torch.relu_(h))

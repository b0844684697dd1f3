"""Vertex colours for NeRF meshes, from the training images (occlusion-aware) or the field.

Cameras follow ``datasets.ray_utils``: c2w ``(3, 4)`` = ``[R | t]``, camera x right, y up,
looking along -z; pixel (u, v) has its centre at (u + 0.5, v + 0.5), v counted from the top.

Image route (``fuse_view_colors``): each vertex is projected into every chosen view. A view
counts for a vertex when the vertex faces it and the NeRF sees no matter in front of it: the ray
from the camera centre towards the vertex is rendered up to a margin before the vertex, and
its accumulated opacity must stay below ``occ_threshold`` (the seed's test), counting only matter
denser than a floor (``without_haze``: extract_mesh.py uses half the surface's density). The margin is the
soft shell a blurry density has in front of its iso-surface (``shell_thickness``) plus a little,
measured from the vertex's tangent plane (so longer along oblique rays). The colour is the
bilinearly sampled pixel, averaged over those views with weight cos(normal, direction to camera);
grazing views (which sample silhouette pixels mixed with the background) count least or not at all.
Vertices no view sees take the colour of nearby seen vertices on the mesh, else that of the
least occluded view.

Normal route (``normal_colors``): a short ray starts ``near_t`` outside the vertex along its
normal and looks back at it; its rendered colour (normalized by opacity) is the vertex colour.
"""
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from datasets.distortion import distort
from models.rendering import render_chunked
from utils.rays import Rays


class DensityFloor:
    """A field whose raw density is lowered by ``floor`` everywhere, so that after the renderer's
    ReLU the haze below ``floor`` is empty space. Visibility rays use it: only matter at least that
    dense counts as an occluder (an under-trained NeRF fills the air with a faint density that,
    summed over a long camera ray, would hide every vertex)."""

    def __init__(self, field, floor):
        self.field, self.floor = field, float(floor)

    def query_density(self, x):
        return self.field.query_density(x) - self.floor

    def __call__(self, x, d):
        sigma, rgb = self.field(x, d)
        return sigma - self.floor, rgb


def without_haze(fields, floor):
    """``fields`` with every radiance field wrapped in ``DensityFloor`` (other entries kept)."""
    return {k: DensityFloor(f, floor) if k in ("coarse", "fine") else f for k, f in fields.items()}


def project_points(points, c2w, K, distortion=None):
    """Project world points into a camera.

    Args:
        points: ``(P, 3)``; c2w: ``(3, 4)``; K: ``(3, 3)`` (all torch, same device).
        distortion: the camera's lens (``datasets.distortion.Distortion``) or None (a pinhole):
            with a lens, points land where the photo shows them (the lens applied after the
            pinhole projection), so colours come from the right pixels of the photo as shot.
    Returns:
        uv ``(P, 2)`` continuous pixel coordinates, depth ``(P,)`` along the viewing axis
        (positive in front of the camera), dist ``(P,)`` Euclidean distance to the camera centre.
    """
    cam = (points - c2w[:, 3]) @ c2w[:, :3]  # R^T (p - t): (P, 3) in camera axes
    depth = -cam[:, 2]
    z = torch.where(depth.abs() < 1e-8, torch.full_like(depth, 1e-8), depth)
    x, y = cam[:, 0] / z, -cam[:, 1] / z  # normalized, y down (image rows grow downwards, camera y upwards)
    if distortion is not None:
        xd, yd = distort(x.detach().cpu().numpy(), y.detach().cpu().numpy(), distortion)
        x, y = (torch.as_tensor(a, dtype=cam.dtype, device=cam.device) for a in (xd, yd))
    u = K[0, 0] * x + K[0, 2]
    v = K[1, 1] * y + K[1, 2]
    return torch.stack([u, v], -1), depth, cam.norm(dim=-1)


def sample_bilinear(image, uv):
    """Bilinear colours of ``image`` ``(H, W, 3)`` at pixel coordinates ``uv`` ``(P, 2)`` -> ``(P, 3)``."""
    H, W = image.shape[:2]
    grid = torch.stack([2 * uv[:, 0] / W - 1, 2 * uv[:, 1] / H - 1], -1)  # pixel centres: align_corners=False
    out = F.grid_sample(image.permute(2, 0, 1)[None].float(), grid[None, None].float(), mode="bilinear",
                        padding_mode="border", align_corners=False)  # (1, 3, 1, P)
    return out[0, :, 0].T


def opacity_in_front(fields, points, cam_centre, near, margin, render_kwargs, chunk=32 * 1024):
    """Accumulated opacity on the ray from ``cam_centre`` ``(3,)`` towards each point ``(P, 3)``,
    from ``near`` up to ``margin`` (a float or ``(P,)``) before the point.
    Returns ``(P,)`` in [0, 1] on the points' device."""
    origins = cam_centre.expand_as(points)
    dirs = points - origins
    dist = dirs.norm(dim=-1, keepdim=True)  # (P, 1)
    dirs = dirs / dist.clamp(min=1e-8)
    near_t = torch.full_like(dist, float(near))
    margin = torch.as_tensor(margin, dtype=dist.dtype, device=dist.device).reshape(-1, 1)
    far_t = torch.maximum(dist - margin, near_t + 1e-4)  # a point closer than near: nothing in front
    rays = Rays(origins, dirs, near_t, far_t)
    if "occupancy" in fields:  # the fast path marches with real step lengths: its opacity is the answer
        return render_chunked(fields, rays, chunk, keys=("opacity",), **render_kwargs)["opacity"]
    out = render_chunked(fields, rays, chunk, keys=("weights",), **render_kwargs)
    # leave out the last sample: the renderer gives it an infinite interval, so any density
    # there would make the whole path opaque; the rest sums to 1 - transmittance up to far
    return out["weights"][:, :-1].sum(-1)


@torch.no_grad()
def shell_thickness(fields, vertices, normals, max_offset, occ_threshold, render_kwargs, chunk=32 * 1024,
                    device="cpu"):
    """How far outside each vertex its surface already looks opaque: a ray from
    ``vertex + max_offset * normal`` down to the vertex accumulates ``occ_threshold`` opacity at
    this distance from the vertex (0 when it never does: a sharp surface).

    A soft (under-trained) density has a shell in front of its iso-surface that a camera ray
    crosses before reaching the vertex; the visibility rays stop this much earlier.
    Returns ``(V,)`` float32 in ``[0, max_offset]``.
    """
    pts = torch.as_tensor(np.asarray(vertices), dtype=torch.float32, device=device)
    nrm = torch.as_tensor(np.asarray(normals), dtype=torch.float32, device=device)
    if "occupancy" in fields or len(pts) == 0:  # the fast path's padded samples do not concatenate
        return np.zeros(len(pts), dtype=np.float32)
    ones = torch.ones_like(pts[:, :1])
    rays = Rays(pts + max_offset * nrm, -nrm, 0 * ones, max_offset * ones)
    out = render_chunked(fields, rays, chunk, keys=("weights", "z_vals"), **dict(render_kwargs, use_disp=False))
    cum = out["weights"][:, :-1].cumsum(-1)  # the last sample (at the vertex) has an infinite interval
    reached = cum >= occ_threshold
    z = out["z_vals"][:, :-1].gather(1, reached.float().argmax(-1, keepdim=True))[:, 0]
    return torch.where(reached.any(-1), max_offset - z, torch.zeros_like(z)).cpu().numpy().astype(np.float32)


def pick_views(n_total, n_views):
    """``n_views`` evenly spaced indices out of ``n_total`` (all when ``n_views <= 0`` or larger)."""
    if n_views <= 0 or n_views >= n_total:
        return list(range(n_total))
    return sorted({int(round(i)) for i in np.linspace(0, n_total - 1, n_views)})


@torch.no_grad()
def fuse_view_colors(fields, vertices, normals, poses, images, K, near, render_kwargs, occ_threshold=0.2,
                     margin=0.05, chunk=32 * 1024, device="cpu", triangles=None, fill_rounds=10, min_cos=0.2,
                     progress=True, lenses=None):
    """Occlusion-aware average of the training images' colours at each vertex.

    Args:
        fields: dict of radiance fields (as for ``render_rays``), on ``device``.
        vertices: ``(V, 3)``; normals: ``(V, 3)`` outward unit normals, or None (all views weigh 1).
        poses: ``(N_views, 3, 4)`` c2w; images: ``(N_views, H, W, 3)`` in [0, 1]; K: ``(3, 3)``,
            or ``(N_views, 3, 3)`` for views with different intrinsics.
        near: start of the visibility rays; render_kwargs: for ``render_rays`` (n_samples, ...).
        occ_threshold: a view counts when the opacity in front of the vertex is below this.
        margin: float or ``(V,)``: the visibility ray stops this far (scene units) from the
            vertex's tangent plane (margin / cos along the ray), so that the vertex's own surface
            does not hide it (see ``shell_thickness``).
        min_cos: views that see the surface more obliquely than this (cos of the angle between
            normal and direction to the camera) are skipped: they sample silhouette pixels.
        triangles: ``(T, 3)``; when given, vertices no view sees take the colour of seen vertices
            up to ``fill_rounds`` edges away. Vertices still without a colour take the view
            with the least opacity in front of them (the seed's fallback, for hazy models).
        lenses: None (pinhole photos) or one ``Distortion``-or-None per view: each photo's lens,
            so that vertices are looked up where the distorted photo shows them.
    Returns:
        colors ``(V, 3)`` float32 in [0, 1], and n_seen ``(V,)`` the number of views used per vertex.
    """
    pts = torch.as_tensor(np.asarray(vertices), dtype=torch.float32, device=device)
    nrm = None if normals is None else torch.as_tensor(np.asarray(normals), dtype=torch.float32, device=device)
    poses = torch.as_tensor(np.asarray(poses), dtype=torch.float32)
    Ks = torch.as_tensor(np.asarray(K), dtype=torch.float32, device=device).expand(len(poses), 3, 3)
    margin = torch.as_tensor(np.broadcast_to(np.asarray(margin, dtype=np.float32), (len(pts),)).copy(),
                             device=device)
    color_sum = torch.zeros(len(pts), 3, device=device)
    weight_sum = torch.zeros(len(pts), device=device)
    n_seen = torch.zeros(len(pts), dtype=torch.long, device=device)
    best_opacity = torch.full((len(pts),), float("inf"), device=device)  # fallback: the least occluded view
    best_color = torch.full((len(pts), 3), 0.5, device=device)
    for i in tqdm(range(len(poses)), desc="colouring from views", leave=False, disable=not progress):
        c2w, image = poses[i].to(device), torch.as_tensor(images[i], dtype=torch.float32, device=device)
        H, W = image.shape[:2]
        uv, depth, dist = project_points(pts, c2w, Ks[i], None if lenses is None else lenses[i])
        weight = torch.ones_like(depth)
        if nrm is not None:
            weight = ((c2w[:, 3] - pts) * nrm).sum(-1) / dist.clamp(min=1e-8)  # cos(normal, to camera)
        cand = ((depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] <= W) & (uv[:, 1] >= 0) & (uv[:, 1] <= H)
                & (weight > min_cos)).nonzero()[:, 0]
        if len(cand) == 0:
            continue
        # stop where the ray is `margin` above the vertex's tangent plane: along a grazing ray the
        # soft shell of the vertex's own surface would otherwise count as an occluder
        stop = margin[cand] / weight[cand] if nrm is not None else margin[cand]
        opacity = opacity_in_front(fields, pts[cand], c2w[:, 3], near, stop, render_kwargs, chunk)
        sampled = sample_bilinear(image, uv[cand])  # (P_cand, 3)
        better = opacity < best_opacity[cand]
        best_opacity[cand[better]], best_color[cand[better]] = opacity[better], sampled[better]
        ok = opacity < occ_threshold
        vis = cand[ok]
        color_sum[vis] += weight[vis, None] * sampled[ok]
        weight_sum[vis] += weight[vis]
        n_seen[vis] += 1
    known = (weight_sum > 0).cpu().numpy()
    colors = (color_sum / weight_sum.clamp(min=1e-8)[:, None]).cpu().numpy()
    if triangles is not None:  # small hidden patches (creases, concavities): their neighbours' colour
        colors, known = fill_from_neighbours(colors, known, triangles, max_rounds=fill_rounds)
    colors[~known] = best_color.cpu().numpy()[~known]  # grey where no view faces the vertex at all
    return colors.astype(np.float32), n_seen.cpu().numpy()


def fill_from_neighbours(colors, known, triangles, max_rounds=10):
    """Give vertices without a colour the mean colour of their coloured mesh neighbours, growing
    inwards one ring of edges per round, for at most ``max_rounds`` rounds.

    colors ``(V, 3)``, known ``(V,)`` bool, triangles ``(T, 3)`` -> (colors ``(V, 3)``, known ``(V,)``).
    """
    colors, known = colors.copy(), known.copy()
    tri = np.asarray(triangles)
    edges = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    src, dst = np.concatenate([edges[:, 0], edges[:, 1]]), np.concatenate([edges[:, 1], edges[:, 0]])
    for _ in range(max_rounds):
        if known.all():
            break
        m = known[src] & ~known[dst]
        if not m.any():
            break
        count = np.bincount(dst[m], minlength=len(colors))
        new = count > 0
        for c in range(3):
            colors[new, c] = np.bincount(dst[m], weights=colors[src[m], c], minlength=len(colors))[new] / count[new]
        known |= new
    return colors, known


@torch.no_grad()
def normal_colors(fields, vertices, normals, near_t, render_kwargs, chunk=32 * 1024, device="cpu"):
    """Colour each vertex with the field's colour seen from ``near_t`` outside it, along its normal.

    The ray starts at ``vertex + near_t * normal``, looks back along ``-normal`` and runs to
    ``near_t`` past the vertex; the rendered colour is divided by its opacity (no background).
    Returns ``(V, 3)`` float32 in [0, 1].
    """
    pts = torch.as_tensor(np.asarray(vertices), dtype=torch.float32, device=device)
    nrm = torch.as_tensor(np.asarray(normals), dtype=torch.float32, device=device)
    nrm = nrm / nrm.norm(dim=-1, keepdim=True).clamp(min=1e-8)
    ones = torch.ones_like(pts[:, :1])
    rays = Rays(pts + near_t * nrm, -nrm, 0 * ones, 2 * near_t * ones)
    kwargs = dict(render_kwargs, white_back=False, use_disp=False)  # near 0: disparity is undefined
    out = render_chunked(fields, rays, chunk, keys=("rgb", "opacity"), **kwargs)
    rgb = out["rgb"] / out["opacity"].clamp(min=1e-6)[:, None]
    return rgb.clamp(0, 1).cpu().numpy().astype(np.float32)

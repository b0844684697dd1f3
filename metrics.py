"""Image metrics: MSE, PSNR, SSIM, GMSD (LPIPS needs downloaded weights, so it is left out); mesh
metrics: Chamfer distances between a mesh and a known surface."""
import numpy as np
import torch


def mse(pred, gt, mask=None):
    """Mean squared error over all elements (or the ``mask``ed ones). Shapes must match."""
    err = (pred - gt) ** 2
    return err[mask].mean() if mask is not None else err.mean()


def psnr(pred, gt, mask=None):
    """PSNR in dB for images in [0, 1]: ``-10 log10(MSE)``."""
    return -10.0 * torch.log10(mse(pred, gt, mask))


def ssim(pred, gt, window_size=11):
    """Mean SSIM with an 11x11 Gaussian window (sigma 1.5), the usual setting of NeRF papers.

    Args: pred, gt: ``(H, W, 3)`` or ``(N, 3, H, W)`` in [0, 1]. Returns a scalar tensor.
    (The seed used a 3x3 window, which gives different numbers.)
    """
    from kornia.metrics import ssim as kornia_ssim  # imported here: PSNR alone needs no kornia (e.g. on a bare GPU image)

    if pred.dim() == 3:
        pred, gt = pred.permute(2, 0, 1)[None], gt.permute(2, 0, 1)[None]
    return kornia_ssim(pred.float(), gt.float(), window_size).mean()


def gmsd(pred, gt, c=170 / 255 ** 2):
    """Gradient magnitude similarity deviation (Xue et al. 2014): how unevenly the edges of ``pred``
    match those of ``gt``; 0 for equal images, higher as edges blur or shift. Lower is better.

    Args: pred, gt: ``(H, W, 3)`` in [0, 1] (H, W >= 6). As in the paper: luminance, a 2x2 mean and
    downsampling by 2, Prewitt gradients (3x3, each /3), similarity ``(2 m_p m_g + c) / (m_p^2 + m_g^2 + c)``
    per pixel with the paper's c = 170 on a 0-255 scale, and its standard deviation. Returns a scalar tensor.
    """
    import torch.nn.functional as F

    luma = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32, device=pred.device)
    imgs = torch.stack([(pred.float() * luma).sum(-1), (gt.float() * luma).sum(-1)])[:, None]  # (2, 1, H, W)
    imgs = F.avg_pool2d(imgs, 2)
    hx = torch.tensor([[1.0, 0, -1], [1, 0, -1], [1, 0, -1]], device=pred.device) / 3
    k = torch.stack([hx, hx.T])[:, None]  # (2, 1, 3, 3)
    g = F.conv2d(imgs, k)  # (2, 2, H', W'): the x and y gradients of each image, inside the frame
    m = g.square().sum(1).sqrt()  # (2, H', W') gradient magnitudes
    gms = (2 * m[0] * m[1] + c) / (m[0].square() + m[1].square() + c)
    return gms.std(unbiased=False)


def image_scores(pred, gt):
    """``{"psnr", "ssim", "gmsd"}`` (floats) of ``pred`` against ``gt``, both ``(H, W, 3)`` in [0, 1]."""
    return {"psnr": psnr(pred, gt).item(), "ssim": ssim(pred, gt).item(), "gmsd": gmsd(pred, gt).item()}


def sample_mesh_surface(vertices, triangles, n, seed=0):
    """``n`` points ``(n, 3)`` spread evenly by area over a triangle mesh (``vertices`` ``(V, 3)``,
    ``triangles`` ``(T, 3)``), so meshes with different vertex densities compare fairly."""
    rng = np.random.default_rng(seed)
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(triangles)]  # (T, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=-1)
    pick = rng.choice(len(tri), n, p=area / area.sum())
    a, b = rng.uniform(size=(2, n))
    flip = a + b > 1  # fold the unit square onto the triangle
    a, b = np.where(flip, 1 - a, a), np.where(flip, 1 - b, b)
    t = tri[pick]
    return t[:, 0] + a[:, None] * (t[:, 1] - t[:, 0]) + b[:, None] * (t[:, 2] - t[:, 0])


def chamfer_distances(mesh_points, surface_points, surface_sdf=None):
    """Chamfer distance between points on a mesh and points on the true surface, both ways.

    Args:
        mesh_points: ``(N, 3)`` points on the mesh (``sample_mesh_surface``).
        surface_points: ``(M, 3)`` points on the (visible) true surface.
        surface_sdf: optional function ``(N, 3) -> (N,)``, the true surface's signed distance:
            mesh -> surface is then the exact distance to the surface, not to its samples.
    Returns:
        dict of means (scene units): ``mesh_to_surface`` (accuracy: how far the mesh strays),
        ``surface_to_mesh`` (completeness: how far the surface is from the mesh), ``chamfer``
        (their average), and the 90th percentiles ``*_p90``.
    """
    from scipy.spatial import cKDTree

    mesh_points, surface_points = np.asarray(mesh_points), np.asarray(surface_points)
    if surface_sdf is not None:
        m2s = np.abs(surface_sdf(mesh_points))
    else:
        m2s = cKDTree(surface_points).query(mesh_points)[0]
    s2m = cKDTree(mesh_points).query(surface_points)[0]
    return dict(mesh_to_surface=float(m2s.mean()), surface_to_mesh=float(s2m.mean()),
                chamfer=float(0.5 * (m2s.mean() + s2m.mean())), mesh_to_surface_p90=float(np.percentile(m2s, 90)),
                surface_to_mesh_p90=float(np.percentile(s2m, 90)))

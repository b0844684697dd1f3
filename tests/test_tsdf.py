"""TSDF meshes (``extract_mesh.py --method tsdf``, ``export/tsdf.py``): camera and depth conventions
on analytic depth maps (no training), the demo scene against its analytic surface, bad input, and
extract_mesh.py's outputs appearing whole or not at all.
"""
import os

import numpy as np
import pytest
import torch

import extract_mesh
from conftest import ROOT, run_script
from datasets.demo_scene import look_at_pose, camera_centres, signed_distance, surface_samples
from datasets.ray_utils import get_ray_directions, get_rays
from export.tsdf import expected_surface, opencv_extrinsic, rgbd_for_fusion, tsdf_fuse
from metrics import chamfer_distances, sample_mesh_surface
from utils.io import staged_files

CENTRE, RADIUS = np.array([0.1, -0.2, 0.05]), 0.5


def sphere_views(size=48, extrinsic_of=None):
    """Exact renders of a sphere from 24 cameras around it, as the renderer gives them: distance along
    unit rays, opacity 1 on the sphere, 0 elsewhere; in the form ``tsdf_fuse`` takes."""
    focal = 1.2 * size
    K = np.array([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1]])
    box = [(-1.0, 1.0)] * 3
    for theta in np.linspace(0, 2 * np.pi, 8, endpoint=False):
        for phi in (-0.5, 0.3, 1.0):
            c2w = look_at_pose(theta, phi, 3.0)[:3]
            o, d = get_rays(get_ray_directions(size, size, K).view(-1, 3), torch.tensor(c2w, dtype=torch.float32))
            oc = o.double().numpy() - CENTRE
            b = (oc * d.double().numpy()).sum(-1)
            disc = b * b - (oc * oc).sum(-1) + RADIUS ** 2
            t = np.where(disc > 0, -b - np.sqrt(np.maximum(disc, 0)), np.inf).reshape(size, size)
            opacity = (disc > 0).reshape(size, size).astype(np.float32)
            rgb = np.full((size, size, 3), 0.5, np.float32)
            colour, depth, _ = rgbd_for_fusion(rgb, t, opacity, c2w, K, 0.1, 10.0, box)
            yield colour, depth, c2w, K


def test_fused_analytic_sphere_lies_on_the_sphere():
    """OpenGL -> OpenCV extrinsics, ray distance -> z-depth and the pixel-centre convention: the
    mesh fused from exact depth maps of a sphere lies on it within a fraction of a voxel."""
    voxel = 0.02
    mesh = tsdf_fuse(sphere_views(), voxel, [(-1.0, 1.0)] * 3)
    v = np.asarray(mesh.vertices)
    err = np.linalg.norm(v - CENTRE, axis=1) - RADIUS
    assert len(v) > 5000
    assert np.abs(err).mean() < 0.4 * voxel and np.abs(err).max() < 1.5 * voxel, (np.abs(err).mean() / voxel)
    np.testing.assert_allclose(v.max(0) - v.min(0), 2 * RADIUS, atol=2 * voxel)  # the whole sphere, once
    np.testing.assert_allclose(0.5 * (v.max(0) + v.min(0)), CENTRE, atol=voxel)


def test_a_convention_bug_is_caught(monkeypatch):
    """The same fusion with the OpenGL pose inverted as is (no y/z flip) does not give the sphere:
    the check above can fail."""
    import export.tsdf as tsdf

    monkeypatch.setattr(tsdf, "opencv_extrinsic", lambda c2w: np.linalg.inv(np.vstack([c2w[:3, :4], [0, 0, 0, 1]])))
    mesh = tsdf.tsdf_fuse(sphere_views(size=24), 0.04, [(-1.0, 1.0)] * 3)
    v = np.asarray(mesh.vertices)
    assert len(v) == 0 or np.abs(np.linalg.norm(v - CENTRE, axis=1) - RADIUS).mean() > 0.1


class LensViews:
    """The part of a dataset ``render_and_fuse`` reads: ``n`` cameras around the origin, each photo
    shot through ``lens`` (rays through its undistorted directions, as the readers make them)."""

    def __init__(self, lens, size=40, n=12, distance=2.0):
        self.img_wh, self.near, self.far, self.white_back = (size, size), 0.3, 6.0, True
        focal = 0.5 * size  # 90 degrees across: a lens moves what lies off the axis
        K = torch.tensor([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1]])
        self.Ks = K.expand(n, 3, 3)
        self.poses = torch.stack([torch.tensor(look_at_pose(t, p, distance)[:3], dtype=torch.float32)
                                  for t, p in zip(np.linspace(0, 2 * np.pi, n, endpoint=False), [-0.4, 0.2, 0.8] * n)])
        self.lenses = [lens] * n
        self.directions = get_ray_directions(size, size, K, lens).view(-1, 3)

    def rays(self, i):
        from utils.rays import Rays
        o, d = get_rays(self.directions, self.poses[i])
        ones = torch.ones_like(o[:, :1])
        return Rays(o, d, ones * self.near, ones * self.far)


def test_views_through_a_lens_fuse_as_the_pinhole_views_do():
    """Training photos shot through a strong lens: each view is rendered as the pinhole camera that
    open3d projects with, so the fused sphere is the one fused from pinhole photos of the same poses;
    fusing the lens's renders as pinhole images (the bug this guards against) shrinks it by a voxel."""
    from datasets.distortion import make_distortion
    from export.tsdf import render_and_fuse
    from test_mesh import RENDER, SpheresField, uniform

    centre, radius = np.array([0.05, -0.1, 0.0]), 1.0  # its rim 30 degrees off each camera's axis
    field = {"coarse": SpheresField([(centre, radius, uniform((0.8, 0.3, 0.2)))])}
    voxel, box = 0.03, [(-1.3, 1.3)] * 3

    def signed_error(ds):
        """Mean signed distance of the fused vertices to the sphere (outside > 0), in voxels."""
        v, _, c, _ = render_and_fuse(field, ds, range(len(ds.poses)), box, voxel, dict(RENDER, n_samples=96),
                                     8192, "cpu")
        assert len(v) > 5000 and np.allclose(c.mean(0), (0.8, 0.3, 0.2), atol=0.05)
        return (np.linalg.norm(v - centre, axis=1) - radius).mean() / voxel

    lens = make_distortion("opencv", [-0.4, 0.16])
    pinhole = signed_error(LensViews(None))
    fused = signed_error(LensViews(lens))
    ignored = LensViews(lens)
    ignored.lenses = [None] * len(ignored.poses)  # the lens's renders read as pinhole photos
    ignored = signed_error(ignored)
    print(f"mean signed distance to the sphere, voxels: pinhole photos {pinhole:.2f}, through the lens "
          f"{fused:.2f}, the lens ignored {ignored:.2f}")
    # measured: 0.86 (the soft shell of the renders), 0.86, -0.75
    assert abs(fused - pinhole) < 0.1 and ignored < pinhole - 1.0, (pinhole, fused, ignored)


def test_rgbd_for_fusion_depth_masks_and_colour():
    """Depth along unit rays -> z-depth (a fronto-parallel plane has one z); a half-opaque pixel's
    depth is divided by its opacity; pixels too transparent, past far or outside the box give no
    depth; the white background is taken out of the colour."""
    H = W = 8
    K = np.array([[8.0, 0, 4], [0, 8.0, 4], [0, 0, 1]])
    c2w = np.eye(4)[:3]  # at the origin looking along -z
    dirs = get_ray_directions(H, W, K)
    t = 2.0 * dirs.norm(dim=-1)  # the plane z = -2: distance along the unit ray
    opacity = torch.ones(H, W)
    opacity[0, 0], opacity[0, 1] = 0.5, 0.2
    distance = t * opacity  # the renderer's depth: sum of weights times distances
    colour_in = torch.full((H, W, 3), 0.4)
    colour_in[0, 0] = 0.5 * 0.4 + 0.5  # on white: opacity * colour + (1 - opacity)
    box = [(-5, 5), (-5, 5), (-5, 5)]
    surface = expected_surface(distance, opacity)
    colour, depth, kept = rgbd_for_fusion(colour_in, surface, opacity, c2w, K, 0.1, 10.0, box, 0.3, white_back=True)
    assert depth[0, 1] == 0 and kept == (H * W - 1) / (H * W)
    np.testing.assert_allclose(np.delete(depth.ravel(), 1), 2.0, rtol=1e-5)
    assert abs(int(colour[0, 0, 0]) - 102) <= 1  # 0.4 * 255
    _, depth, _ = rgbd_for_fusion(colour_in, surface, opacity, c2w, K, 0.1, 1.5, box, 0.3)
    assert (depth == 0).all()  # past far
    _, depth, _ = rgbd_for_fusion(colour_in, surface, opacity, c2w, K, 0.1, 10.0, [(-5, 5), (-5, 5), (-1, 5)], 0.3)
    assert (depth == 0).all()  # the plane z = -2 lies outside the box
    surface[1, 1] = float("inf")  # no surface on this ray (a median depth never reached)
    _, depth, kept = rgbd_for_fusion(colour_in, surface, opacity, c2w, K, 0.1, 10.0, box, 0.3)
    assert depth[1, 1] == 0 and kept == (H * W - 2) / (H * W)
    # OpenCV extrinsic: the camera's -z (OpenGL forward) becomes +z, y flips
    np.testing.assert_allclose(opencv_extrinsic(c2w)[:3, :3], np.diag([1.0, -1.0, -1.0]))


# ----------------------------------------------------------------------------- the script

# the command of docs/results.md (its --ckpt_path is the fixture's)
DOCS_TSDF = ["--method", "tsdf", "--n_views", "30", "--scene_name", "demo",
               "--x_range", "-1.1", "1.1", "--y_range", "-1.1", "1.1", "--z_range", "-0.8", "0.8"]


def test_demo_tsdf_mesh_near_the_true_surface(demo_mesh_ckpt, demo_dir, tmp_path):
    """docs/results.md's command on a short demo run: one coloured piece near the analytic surface."""
    import open3d as o3d
    from test_docs import doc_section

    page = doc_section("docs/results.md", "## TSDF fusion").replace("\\\n", " ")
    assert "extract_mesh.py --ckpt_path ckpts/demo/last.ckpt " + " ".join(DOCS_TSDF) in " ".join(page.split())
    ckpt, _ = demo_mesh_ckpt
    proc = run_script("extract_mesh.py", "--ckpt_path", ckpt, *DOCS_TSDF, cwd=tmp_path)
    out = tmp_path / "results" / "blender" / "demo"
    assert sorted(os.listdir(out)) == ["demo.ply", "demo_density.png"]
    assert "tsdf: 30 training views fused" in proc.stdout and "in 1 piece(s)" in proc.stdout
    mesh = o3d.io.read_triangle_mesh(str(out / "demo.ply"))
    v, t, c = np.asarray(mesh.vertices), np.asarray(mesh.triangles), np.asarray(mesh.vertex_colors)
    assert len(v) > 2000 and len(c) == len(v)
    assert v.min(0)[2] > -0.85 and v.max(0)[2] < 0.6  # within the box: the plinth's bottom to the cylinder's top
    assert c.std(0).mean() > 0.03 and len(np.unique((c * 8).astype(int), axis=0)) > 6  # not one flat colour
    eyes = camera_centres(demo_dir)
    d = chamfer_distances(sample_mesh_surface(v, t, 20000), surface_samples(20000, eyes), signed_distance)
    print(proc.stdout[-400:], d)
    # measured on this fixture's recipe (32x32, 150 steps): 0.063 and 0.129 scene units (a pixel
    # spans about 0.09 at the solids); the bounds leave room for run-to-run change
    assert d["mesh_to_surface"] < 0.09 and d["surface_to_mesh"] < 0.18, d


@pytest.mark.parametrize("args, message", [
    (["--method", "foo"], "invalid choice: 'foo'"),
    (["--method", "tsdf", "--tsdf_voxel", "0"], "--tsdf_voxel must be positive"),
    (["--method", "tsdf", "--tsdf_voxel", "0.001"], "use --tsdf_voxel"),
    (["--method", "tsdf", "--tsdf_min_opacity", "0"], "--tsdf_min_opacity must be in (0, 1]"),
])
def test_bad_tsdf_input_one_line_no_outputs(demo_ckpt, tmp_path, args, message):
    ckpt, _ = demo_ckpt
    proc = run_script("extract_mesh.py", "--ckpt_path", ckpt, "--preview_N", 16, *args, cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert message in proc.stderr and [line for line in proc.stderr.splitlines() if "error" in line][-1]
    assert not (tmp_path / "results").exists()


def test_ndc_scene_refused_for_tsdf(beer_dir, tmp_path):
    """A forward-facing (NDC) model: the mesh needs metric rays, said in one line, nothing written."""
    from models import build_fields
    from utils.checkpoint import WEIGHTS_FORMAT

    hp = dict(dataset_name="llff", root_dir=str(beer_dir), img_wh=[18, 32], net_depth=2, net_width=32,
              N_samples=8, N_importance=0, N_emb_xyz=4, N_emb_dir=2, use_disp=False)
    state = {f"nerf_coarse.{k}": v for k, v in build_fields(hp)["coarse"].state_dict().items()}
    torch.save({"format": WEIGHTS_FORMAT, "state_dict": state, "hparams": hp}, tmp_path / "w.pt")
    proc = run_script("extract_mesh.py", "--ckpt_path", "w.pt", "--method", "tsdf", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--method tsdf: this scene uses NDC rays" in proc.stderr
    assert not (tmp_path / "results").exists()


# ----------------------------------------------------------------------------- whole or nothing

def tetrahedron(*_args, **_kwargs):
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64) * 0.5
    return v, np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]), np.full((4, 3), 0.5)


def test_failed_run_leaves_no_output(demo_ckpt, tmp_path, monkeypatch):
    """A run that fails after the mesh is computed, while writing (the glb after the ply), leaves no
    file under a final name and no staging folder; a run killed outright leaves only a hidden
    staging folder, which the next run removes. The same run without the failure writes everything."""
    ckpt, _ = demo_ckpt
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(extract_mesh, "tsdf_surface", tetrahedron)  # no rendering: the writing is tested
    real_write = extract_mesh.write_mesh

    def failing_write(path, *args):
        real_write(path, *args)
        if str(path).endswith(".glb"):
            raise RuntimeError("disk full")

    argv = ["--ckpt_path", str(ckpt), "--method", "tsdf", "--preview_N", 16, "--format", "ply", "glb",
            "--export_volume", "--volume_N", 8, "--out", "mesh/m.ply"]
    argv = [str(a) for a in argv]
    monkeypatch.setattr(extract_mesh, "write_mesh", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        extract_mesh.main(argv)
    assert not (tmp_path / "mesh").exists()  # the folder this run made is gone too

    os.makedirs("mesh/.m.partial-killed")  # what a kill -9 while writing leaves
    open("mesh/.m.partial-killed/m.ply", "w").close()
    open("mesh/keep.txt", "w").close()
    monkeypatch.setattr(extract_mesh, "write_mesh", real_write)
    extract_mesh.main(argv)
    assert sorted(os.listdir("mesh")) == ["keep.txt", "m.glb", "m.ply", "m_density.png", "m_volume.json",
                                          "m_volume.raw"]


def test_staged_files_moves_the_named_files_last(tmp_path, monkeypatch):
    moved = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (moved.append(os.path.basename(b)), real_replace(a, b)))
    with staged_files(tmp_path / "out", "s", last=["s.ply", "s.glb"]) as tmp:
        for name in ("s.glb", "s.ply", "s_density.png", "a.json"):
            open(os.path.join(tmp, name), "w").close()
        assert not (tmp_path / "out" / "s.ply").exists()  # nothing under a final name before the end
    assert moved == ["a.json", "s_density.png", "s.ply", "s.glb"]
    assert sorted(os.listdir(tmp_path / "out")) == ["a.json", "s.glb", "s.ply", "s_density.png"]


def test_median_depth_stays_on_a_thin_half_transparent_object():
    """A thin object that stops 60% of the light in front of a wall: the expected depth lands between
    the two (1.8), the median depth on the object (1.0); one that stops 40% lets the median reach the
    wall; a ray that sees through (opacity < 0.5) has no median depth."""
    from models.rendering import median_depth

    z = torch.tensor([[0.5, 1.0, 2.0, 3.0]]).expand(3, 4)
    weights = torch.tensor([[0.0, 0.6, 0.0, 0.4], [0.0, 0.4, 0.0, 0.6], [0.0, 0.2, 0.0, 0.1]])
    med = median_depth(weights, z)
    assert med[0] == 1.0 and med[1] == 3.0 and torch.isinf(med[2])
    expected = expected_surface((weights * z).sum(-1), weights.sum(-1))
    assert abs(float(expected[0]) - 1.8) < 1e-6

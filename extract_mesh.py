"""Extract a coloured mesh (and optionally a volume texture) from a trained NeRF.

    python extract_mesh.py --ckpt_path ckpts/lego/last.ckpt --N_grid 256 --sigma_threshold 20 \
        [--x_range -1.2 1.2 ...] [--format ply obj glb] [--export_volume] [--preview_only]
    python extract_mesh.py --ckpt_path ckpts/lego/last.ckpt --method tsdf [--tsdf_voxel 0.01]

``--method mc`` (default): marching cubes on the density lattice, colours from the training images.
``--method tsdf``: depth and colour rendered from the training cameras fused into a TSDF volume
(``export/tsdf.py``), the largest piece kept.

Writes ``results/{dataset_name}/{scene_name}/{scene_name}.ply`` (or ``--out``), always with
``{scene_name}_density.png``, a preview of the density to choose the threshold and ranges by.
Scene and model flags not typed on the command line come from the checkpoint. Files appear
whole or not at all: they are written into a hidden staging folder and renamed into place at the
end, the meshes last (an interrupted run leaves no file a later run could take for finished).
"""
import os

import numpy as np
import torch

# data, models
from datasets import make_dataset, resolve_dataset_name
from models import load_model
from models.camera_opt import trained_poses
from models.rendering import eval_render_kwargs
from opt import check_opts, get_parser, parse_args
from utils.errors import UserError, cli_main
from utils.io import staged_files
from utils.quiet import quiet

# mesh
from export.bounds import (check_scene_bounds, object_box, scene_bounds_hint, search_box, surface_level,
                           surface_points)
from export.mesh import (MESH_FORMATS, check_ranges, density_lattice, keep_large_components, marching_cubes,
                         vertex_normals, write_mesh)
from export.mesh_color import fuse_view_colors, normal_colors, pick_views, shell_thickness, without_haze
from export.tsdf import DEPTHS, default_voxel, render_and_fuse, tsdf_resolution
from export.volume import (density_preview, format_stats, save_preview_png, sigma_stats, suggest_threshold,
                           volume_lattice, write_volume)


OCCLUDER_FRACTION = 0.5  # visibility rays ignore density below this fraction of --sigma_threshold
MAX_TSDF_RESOLUTION = 512  # voxels per side: a dense 512^3 volume is about 2.7 GB
SEED_THRESHOLD = 20.0  # the seed's --sigma_threshold (Blender scenes, and captures whose level is not found)
SURFACE_VIEWS = 12  # training views whose rays find a capture's surface level


def build_parser():
    parser = get_parser("Extract a coloured mesh from a trained NeRF.", training=False)
    m = parser.add_argument_group("mesh")
    m.add_argument("--ckpt_path", type=str, required=True, help="checkpoint (or weights-only file) to load")
    m.add_argument("--scene_name", type=str, default=None, help="output name (None: the scene folder's name)")
    m.add_argument("--method", type=str, default="mc", choices=("mc", "tsdf"),
                   help="mc: marching cubes on the density; tsdf: fuse rendered depth and colour from the "
                        "training cameras into a TSDF volume")
    m.add_argument("--N_grid", type=int, default=256, help="lattice size per axis for marching cubes")
    for a in "xyz":
        m.add_argument(f"--{a}_range", nargs=2, type=float, default=[-1.2, 1.2], metavar=("LOW", "HIGH"),
                       help=f"{a} extent of the box to mesh, in scene units (captures, when no range is "
                            "given: the box of the dense piece where the cameras converge)")
    m.add_argument("--sigma_threshold", type=float, default=None,
                   help="density of the extracted surface (None: 20 for Blender scenes; for captures half the "
                        "density where the training views' rays stop near the object)")
    m.add_argument("--occ_threshold", type=float, default=0.2,
                   help="a view colours a vertex when the opacity in front of the vertex is below this "
                        "(counting density above half of --sigma_threshold)")
    m.add_argument("--occ_margin", type=float, default=None,
                   help="visibility rays stop this far (scene units) in front of the vertex "
                        "(None: per vertex, 2 voxels beyond the soft shell measured along its normal)")
    m.add_argument("--n_views", type=int, default=30,
                   help="training views used for colours (mc) or rendered and fused (tsdf), evenly picked (0: all)")
    m.add_argument("--tsdf_voxel", type=float, default=None,
                   help="--method tsdf: voxel size in scene units (None: the box diagonal / 256); the signed "
                        "distance is truncated at 4 voxels")
    m.add_argument("--tsdf_min_opacity", type=float, default=0.5,
                   help="--method tsdf: pixels rendered less opaque than this are not fused (empty space, soft edges)")
    m.add_argument("--tsdf_depth", type=str, default="median", choices=DEPTHS,
                   help="--method tsdf: the rendered depth fused: median (where the ray's transmittance falls "
                        "to 0.5: stays on thin, half-transparent objects) or expected (the weighted mean distance)")
    m.add_argument("--use_vertex_normal", action="store_true",
                   help="colour vertices by rendering along their normals instead of from the training images")
    m.add_argument("--near_t", type=float, default=1.0,
                   help="with --use_vertex_normal: the ray starts this far (scene units) outside the vertex")
    m.add_argument("--min_cluster_frac", type=float, default=None,
                   help="drop connected pieces with fewer triangles than this fraction of the largest "
                        "(1: largest only; None: 0.05 for mc, 1 for tsdf)")
    m.add_argument("--format", nargs="+", choices=MESH_FORMATS, default=["ply"], help="mesh file formats")
    m.add_argument("--out", type=str, default=None,
                   help="mesh path (None: results/{dataset_name}/{scene_name}/{scene_name}.ply)")
    m.add_argument("--preview_N", type=int, default=128, help="lattice size of the density preview")
    m.add_argument("--preview_only", action="store_true", help="write only the density preview PNG")
    m.add_argument("--export_volume", action="store_true",
                   help="also write {scene_name}_volume.raw + .json (colour and density on a lattice)")
    m.add_argument("--volume_N", type=int, default=128, help="lattice size per axis of the exported volume")
    m.add_argument("--volume_dtype", type=str, default="float32", choices=("float32", "float16"),
                   help="sample type of the exported volume")
    m.add_argument("--device", type=str, default=None, help="torch device (None: cuda when present, else cpu)")
    return parser


def output_paths(hp, explicit):
    """(folder, stem, formats) of the mesh files."""
    scene = hp.scene_name or os.path.basename(os.path.normpath(hp.root_dir))
    out = hp.out or os.path.join("results", hp.dataset_name, scene, f"{scene}.ply")
    stem, ext = os.path.splitext(os.path.basename(out))
    formats = list(dict.fromkeys(hp.format))
    if "format" not in explicit and ext.lstrip(".").lower() in MESH_FORMATS:
        formats = [ext.lstrip(".").lower()]  # --out mesh.obj alone means obj
    return os.path.dirname(out) or ".", stem, formats


def check_flags(args):
    for name in ("N_grid", "preview_N", "volume_N"):
        if getattr(args, name) < 8:
            raise UserError(f"--{name} must be at least 8, got {getattr(args, name)}")
    if args.min_cluster_frac is None:
        args.min_cluster_frac = 1.0 if args.method == "tsdf" else 0.05
    if not 0 <= args.min_cluster_frac <= 1:
        raise UserError(f"--min_cluster_frac must be in [0, 1], got {args.min_cluster_frac}")
    if args.sigma_threshold is not None and not args.sigma_threshold > 0:
        raise UserError(f"--sigma_threshold must be positive, got {args.sigma_threshold:g}")
    if not 0 < args.occ_threshold <= 1:
        raise UserError(f"--occ_threshold must be in (0, 1], got {args.occ_threshold:g}")
    if not args.near_t > 0 or (args.occ_margin is not None and args.occ_margin < 0) or args.n_views < 0:
        raise UserError("--near_t must be positive, --occ_margin and --n_views >= 0")
    if args.tsdf_voxel is not None and not args.tsdf_voxel > 0:
        raise UserError(f"--tsdf_voxel must be positive, got {args.tsdf_voxel:g}")
    if not 0 < args.tsdf_min_opacity <= 1:
        raise UserError(f"--tsdf_min_opacity must be in (0, 1], got {args.tsdf_min_opacity:g}")
    return check_ranges([args.x_range, args.y_range, args.z_range])


def tsdf_surface(fields, hp, ds, ranges, render_kwargs, device):
    """TSDF fusion of depth and colour rendered from ``--n_views`` training views (``export/tsdf.py``).
    Returns vertices, triangles, colours. UserError for a voxel size the box cannot hold or an empty mesh."""
    voxel = hp.tsdf_voxel or default_voxel(ranges)
    n = tsdf_resolution(ranges, voxel)
    if n > MAX_TSDF_RESOLUTION:
        raise UserError(f"--tsdf_voxel {voxel:g} needs {n}^3 voxels for the box (at most {MAX_TSDF_RESOLUTION}^3): "
                        f"use --tsdf_voxel {max(hi - lo for lo, hi in ranges) / MAX_TSDF_RESOLUTION:.3g} or more, "
                        "or a smaller box")
    idx = pick_views(len(ds.poses), hp.n_views)
    print(f"tsdf: {len(idx)} training views fused into a {n}^3 volume, voxel {voxel:.4g} scene units")
    vertices, triangles, colors, stats = render_and_fuse(fields, ds, idx, ranges, voxel, render_kwargs, hp.chunk,
                                                         device, hp.tsdf_min_opacity, hp.min_cluster_frac,
                                                         depth=hp.tsdf_depth)
    if len(triangles) == 0:
        raise UserError(f"empty mesh: {100 * stats['pixels_fused']:.1f}% of the rendered pixels had depth inside "
                        f"the box and opacity >= --tsdf_min_opacity {hp.tsdf_min_opacity:g}: check the box on the "
                        "density preview (--preview_only), or lower --tsdf_min_opacity")
    print(f"tsdf: {100 * stats['pixels_fused']:.1f}% of the rendered pixels fused; {len(vertices)} vertices, "
          f"{len(triangles)} triangles in {stats['pieces']} piece(s) ({stats['dropped']} small piece(s) dropped)")
    return vertices, triangles, colors


def surface(field, hp, ranges, stats, device):
    """Marching cubes of the density lattice, floaters dropped. UserError if nothing is left."""
    grid = density_lattice(field, ranges, hp.N_grid, device, desc=f"density {hp.N_grid}^3")
    t = hp.sigma_threshold
    if grid.max() <= t or grid.min() >= t:
        side = ("no density above" if grid.max() <= t else "the whole box is denser than")
        raise UserError(f"empty mesh: {side} --sigma_threshold {t:g} in the box (max {grid.max():.3g}, "
                        f"99th percentile {stats['p99']:.3g}); try --sigma_threshold {suggest_threshold(stats):.3g}"
                        f"{'' if grid.max() <= t else ' or wider ranges'}, or look at --preview_only")
    vertices, triangles = marching_cubes(grid, t, ranges)
    del grid
    vertices, triangles, (kept, dropped) = keep_large_components(vertices, triangles, hp.min_cluster_frac)
    print(f"marching cubes: {len(vertices)} vertices, {len(triangles)} triangles in {kept} piece(s) "
          f"({dropped} small piece(s) dropped)")
    return vertices, triangles


def capture_level_and_box(fields, hp, ds, orbit, fit_box, render_kwargs, device):
    """A capture's surface level (``--sigma_threshold`` when not typed) and, with ``fit_box``, the box of
    the object found at that level (``export/bounds.py``). Returns (level, box or None)."""
    field = fields.get("fine", fields["coarse"])
    level = hp.sigma_threshold
    radius = 0.5 * (orbit["box"][0][1] - orbit["box"][0][0])
    if level is None:
        points = surface_points(fields, ds, pick_views(len(ds.poses), SURFACE_VIEWS), render_kwargs, hp.chunk, device)
        level, n = surface_level(field, points, orbit["target"], radius, device)
        if level is None:
            level = SEED_THRESHOLD
            print(f"sigma threshold: {SEED_THRESHOLD:g} (only {n} of the training views' surface points lie near "
                  "the object)")
        else:
            print(f"sigma threshold: {level:.3g}, half the density where {n} of the training views' rays stop near "
                  "the object (--sigma_threshold to choose)")
    if not fit_box:
        return level, None
    box = object_box(field, search_box(orbit, ds.poses.numpy()), level, orbit["target"], radius, device=device)
    if box is None:
        print(f"ranges not given, and no piece denser than {level:.3g} near where the cameras converge: meshing "
              "the box around the ball every camera sees there")
    else:
        print("ranges not given: meshing the box of the object found there: "
              + " ".join(f"--{a}_range {lo:.3f} {hi:.3f}" for a, (lo, hi) in zip("xyz", box)))
    return level, box


def show_hint(hint, ranges):
    """Print where the cameras look (and warn when the box misses it); return the hint box or None."""
    if hint is None:
        return None
    target, box = hint["target"], hint["box"]
    print(f"scene bounds hint: the cameras converge on ({', '.join(f'{t:.2f}' for t in target)}); the ball all of "
          f"them see fits in " + " ".join(f"--{a}_range {lo:.2f} {hi:.2f}" for a, (lo, hi) in zip("xyz", box)))
    if not all(lo <= t <= hi for t, (lo, hi) in zip(target, ranges)):
        print("warning: the chosen ranges do not contain that point: check them on the density preview")
    return box


def colorize(fields, hp, ds, vertices, triangles, ranges, render_kwargs, device):
    normals = vertex_normals(vertices, triangles)
    if hp.use_vertex_normal:
        return normal_colors(fields, vertices, normals, hp.near_t, render_kwargs, hp.chunk, device)
    fields = without_haze(fields, OCCLUDER_FRACTION * hp.sigma_threshold)  # faint haze does not occlude
    if hp.occ_margin is not None:
        margin = hp.occ_margin
    else:  # two voxels beyond the soft shell measured in front of each vertex
        extent = max(hi - lo for lo, hi in ranges)
        shell = shell_thickness(fields, vertices, normals, 0.1 * extent, hp.occ_threshold, render_kwargs,
                                hp.chunk, device)
        margin = shell + 2 * extent / (hp.N_grid - 1)
        print(f"surface shell in front of the vertices: median {np.median(shell):.3f}, "
              f"90th percentile {np.percentile(shell, 90):.3f} scene units")
    idx = pick_views(len(ds.poses), hp.n_views)
    W, H = ds.img_wh
    images = ds.rgbs[idx].view(len(idx), H, W, 3)
    colors, n_seen = fuse_view_colors(fields, vertices, normals, ds.poses[idx], images, ds.Ks[idx], ds.near, render_kwargs,
                                      hp.occ_threshold, margin, hp.chunk, device, triangles,
                                      lenses=[ds.lenses[i] for i in idx])
    unseen = float((n_seen == 0).mean())
    print(f"colours from {len(idx)} training views; {100 * unseen:.1f}% of vertices passed no view's occlusion "
          f"test (coloured from nearby vertices or their least occluded view)")
    if unseen > 0.5:
        print("warning: most vertices look occluded in every view (a hazy density in front of the surface): "
              "try a higher --sigma_threshold or --occ_threshold")
    return colors


@cli_main
def main(argv=None):
    quiet()  # the project's lines only (utils/quiet.py)
    args, explicit = parse_args(build_parser(), argv)
    ranges = check_flags(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    fields, hp, ckpt = load_model(args, explicit, device)
    check_opts(resolve_dataset_name(hp))
    ds = make_dataset(hp, "train")
    ds.poses, refined = trained_poses(ckpt["state_dict"], ds.poses)
    if refined:  # the photos' colours are read where the model saw them, not where SfM put the cameras
        print("training cameras as the model refined them (--optimize_cameras)")
    if ds.ndc:
        raise UserError(f"--method {args.method}: this scene uses NDC rays (forward-facing LLFF): meshes need "
                        "metric rays; train with --spheric_poses for 360-degree captures")
    orbit = scene_bounds_hint(ds.poses.numpy(), ds.K, ds.img_wh)
    render_kwargs = eval_render_kwargs(hp, ds.white_back)
    capture = bool(orbit) and hp.dataset_name != "blender"
    fit_box = capture and not explicit & {"x_range", "y_range", "z_range"}
    if fit_box:  # a capture's own frame: the ±1.2 default (Blender's object box) means nothing there
        ranges = check_ranges(orbit["box"])
    hint = show_hint(orbit, ranges)
    if capture and (fit_box or hp.sigma_threshold is None):
        hp.sigma_threshold, box = capture_level_and_box(fields, hp, ds, orbit, fit_box, render_kwargs, device)
        ranges = check_ranges(box) if box is not None else ranges
    elif hp.sigma_threshold is None:
        hp.sigma_threshold = SEED_THRESHOLD
    up = [0.0, 0.0, 1.0] if hp.dataset_name == "blender" else (orbit["up"].tolist() if orbit else None)
    check_scene_bounds(ranges, hp.dataset_name, ds.poses.numpy(), ds.K, ds.img_wh, ds.near, ds.far)
    folder, stem, formats = output_paths(hp, explicit)
    field = fields.get("fine", fields["coarse"])  # the fine field has the sharper density

    preview, preview_ranges, inside = density_preview(field, ranges, hp.preview_N, include=hint, device=device)
    stats = sigma_stats(inside, hp.sigma_threshold)
    print(format_stats(stats))
    peak = np.unravel_index(np.argmax(preview), preview.shape)
    print(f"densest voxel of the preview region: sigma {preview[peak]:.3g} at "
          f"({', '.join(f'{lo + i * (hi - lo) / (hp.preview_N - 1):.2f}' for i, (lo, hi) in zip(peak, preview_ranges))})")
    title = f"{stem}: density preview ({hp.preview_N}^3)"
    preview_path = os.path.join(folder, f"{stem}_density.png")
    if hp.preview_only:
        with staged_files(folder, stem) as tmp:
            save_preview_png(os.path.join(tmp, os.path.basename(preview_path)), preview, preview_ranges, ranges,
                             hp.sigma_threshold, stats, title, hint)
        print(f"wrote {preview_path}")
        return

    if hp.method == "tsdf":
        vertices, triangles, colors = tsdf_surface(fields, hp, ds, ranges, render_kwargs, device)
    else:
        vertices, triangles = surface(field, hp, ranges, stats, device)
        colors = colorize(fields, hp, ds, vertices, triangles, ranges, render_kwargs, device)
    volume = volume_lattice(field, ranges, hp.volume_N, device) if hp.export_volume else None

    # everything is computed: only now write files, staged and renamed into place, the meshes last
    meshes = [f"{stem}.{fmt}" for fmt in formats]
    with staged_files(folder, stem, last=meshes) as tmp:
        save_preview_png(os.path.join(tmp, os.path.basename(preview_path)), preview, preview_ranges, ranges,
                         hp.sigma_threshold, stats, title, hint)
        written = [preview_path]
        if volume is not None:
            written += [os.path.join(folder, os.path.basename(p)) for p in write_volume(
                tmp, stem, volume, ranges, hp.volume_dtype, source=hp.ckpt_path, up_axis=up,
                sigma_threshold=hp.sigma_threshold, sigma_stats=stats)]
        for name in meshes:
            write_mesh(os.path.join(tmp, name), vertices, triangles, colors, up)
            written.append(os.path.join(folder, name))
    size = vertices.max(0) - vertices.min(0)
    print(f"mesh: {len(vertices)} vertices, {len(triangles)} triangles, bounding box "
          f"{size[0]:.3f} x {size[1]:.3f} x {size[2]:.3f} scene units "
          f"(from {np.round(vertices.min(0), 3).tolist()} to {np.round(vertices.max(0), 3).tolist()})")
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

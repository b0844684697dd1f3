"""A small procedural Blender-format scene, ray-cast by this file (no download, no Blender).

    python -m datasets.demo_scene data/demo [--size 128] [--n_train 60] [--opencv K1 K2 P1 P2 | --fisheye K1 K2 K3 K4]
    python -m datasets.demo_scene data/demo_ns --format nerfstudio [--size 128] [--n_train 60]

Three textured solids (a striped sphere, a checkered box, a ringed cylinder) on a round plinth,
Lambertian-shaded with a fixed light so colours do not depend on the view, written as RGBA PNGs
with soft (supersampled) alpha edges, plus ``transforms_{train,val,test}.json`` exactly as Blender's
NeRF exporter writes them. World z is up; the objects fit in [-1, 1]^3 and cameras sit at
distance 4, so the Blender near/far (2, 6) apply. The test split is a turntable. With a lens
(``--opencv`` / ``--fisheye``) every view is shot through it and the json names it.
``--format nerfstudio`` writes the same objects as nerfstudio's ``ns-process-data`` lays a capture out
instead: one ``transforms.json`` (PINHOLE ``fl_x fl_y cx cy w h``, OpenGL ``transform_matrix``) listing
``--n_train`` views, RGB photos on a white background in ``images/`` and half-size copies in ``images_2/``.
"""
import argparse
import json
import os

import cv2
import numpy as np

from datasets.distortion import make_distortion, undistort

CAMERA_ANGLE_X = 0.6911112070083618  # lego's field of view
LIGHT = np.array([0.4, -0.5, 0.77]) / np.linalg.norm([0.4, -0.5, 0.77])
# the solids, in world units (z up)
SPHERE = (np.array([0.35, -0.3, -0.05]), 0.4)  # centre, radius
BOX = (np.array([-0.75, -0.15, -0.45]), np.array([-0.15, 0.45, 0.15]))  # low and high corners
CYLINDER = ((0.3, 0.5), 0.22, -0.45, 0.55)  # vertical: axis (x, y), radius, z from, z to
PLINTH = ((0.0, 0.0), 0.95, -0.6, -0.45)


def look_at_pose(theta, phi, radius=4.0):
    """Camera-to-world (4, 4) for a camera at azimuth ``theta``, elevation ``phi`` (radians),
    looking at the origin, in Blender/OpenGL convention (x right, y up, looking along -z)."""
    eye = radius * np.array([np.cos(phi) * np.cos(theta), np.cos(phi) * np.sin(theta), np.sin(phi)])
    back = eye / np.linalg.norm(eye)  # camera +z points away from the target
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, back, eye
    return c2w


def _hit_sphere(o, d, center, radius):
    oc = o - center
    b = (oc * d).sum(-1)
    c = (oc * oc).sum(-1) - radius ** 2
    disc = b * b - c
    t = -b - np.sqrt(np.maximum(disc, 0))
    t = np.where((disc > 0) & (t > 0), t, np.inf)
    n = o + t[:, None] * d - center
    return t, n / radius


def _hit_box(o, d, lo, hi):
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t0, t1 = (lo - o) * inv, (hi - o) * inv
    tmin, tmax = np.minimum(t0, t1), np.maximum(t0, t1)
    t_near, t_far = tmin.max(-1), tmax.min(-1)
    t = np.where((t_near < t_far) & (t_near > 0), t_near, np.inf)
    axis = tmin.argmax(-1)
    n = np.zeros_like(o)
    n[np.arange(len(o)), axis] = -np.sign(d[np.arange(len(o)), axis])
    return t, n


def _hit_cylinder(o, d, center, radius, z0, z1):
    """Vertical capped cylinder around ``center`` (x, y) between heights z0 and z1."""
    ox, oy = o[:, 0] - center[0], o[:, 1] - center[1]
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = ox * d[:, 0] + oy * d[:, 1]
    c = ox ** 2 + oy ** 2 - radius ** 2
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-b - np.sqrt(np.maximum(disc, 0))) / a
    z = o[:, 2] + t_side * d[:, 2]
    t_side = np.where((disc > 0) & (t_side > 0) & (z >= z0) & (z <= z1), t_side, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_cap = (z1 - o[:, 2]) / d[:, 2]  # top cap only: the bottom rests on the plinth
    px, py = o[:, 0] + t_cap * d[:, 0] - center[0], o[:, 1] + t_cap * d[:, 1] - center[1]
    t_cap = np.where((t_cap > 0) & (px ** 2 + py ** 2 <= radius ** 2), t_cap, np.inf)
    t = np.minimum(t_side, t_cap)
    p = o + np.where(np.isfinite(t), t, 0)[:, None] * d
    n_side = np.stack([p[:, 0] - center[0], p[:, 1] - center[1], np.zeros(len(o))], -1) / radius
    n = np.where((t_cap < t_side)[:, None], np.array([0.0, 0.0, 1.0]), n_side)
    return t, n


def _hits(o, d):
    """Each solid's (name, first hit distance (inf: none), normal) for rays ``o``, ``d`` ``(N, 3)``."""
    return [
        ("sphere",) + _hit_sphere(o, d, *SPHERE),
        ("box",) + _hit_box(o, d, *BOX),
        ("cylinder",) + _hit_cylinder(o, d, *CYLINDER),
        ("plinth",) + _hit_cylinder(o, d, *PLINTH),
    ]


def _shade(o, d):
    """Colour and coverage of rays ``o``, ``d`` ``(N, 3)`` -> rgb ``(N, 3)``, alpha ``(N,)``."""
    hits = _hits(o, d)
    ts = np.stack([h[1] for h in hits], -1)
    which = ts.argmin(-1)
    t = ts.min(-1)
    hit = np.isfinite(t)
    p = o + np.where(hit, t, 0)[:, None] * d
    normal = np.zeros_like(o)
    rgb = np.ones_like(o)
    for k, (name, _, n) in enumerate(hits):
        m = which == k
        normal[m] = n[m]
        x, y, z = p[m, 0], p[m, 1], p[m, 2]
        if name == "sphere":  # red with yellow latitude stripes
            stripe = (np.floor((z + 0.05) * 12) % 2)[:, None]
            rgb[m] = np.where(stripe > 0, [0.95, 0.8, 0.1], [0.85, 0.15, 0.1])
        elif name == "box":  # blue/white checker
            check = ((np.floor(x * 8) + np.floor(y * 8) + np.floor(z * 8)) % 2)[:, None]
            rgb[m] = np.where(check > 0, [0.15, 0.3, 0.85], [0.9, 0.92, 0.95])
        elif name == "cylinder":  # green with dark rings
            ring = (np.floor(z * 10) % 3 == 0)[:, None]
            rgb[m] = np.where(ring, [0.1, 0.3, 0.1], [0.2, 0.75, 0.3])
        else:  # grey plinth with a radial pattern
            ang = np.floor((np.arctan2(y, x) + np.pi) / (2 * np.pi) * 16) % 2
            rgb[m] = np.where(ang[:, None] > 0, [0.55, 0.5, 0.45], [0.75, 0.7, 0.62])
    normal = np.where(hit[:, None], normal, 0.0)  # rays that miss everything carry inf normals
    light = 0.35 + 0.65 * np.clip((normal * LIGHT).sum(-1), 0, 1)
    rgb = np.where(hit[:, None], rgb * light[:, None], 0.0)
    return np.clip(rgb, 0, 1), hit.astype(np.float64)


def _sdf_cylinder(p, axis, radius, z0, z1):
    d = np.stack([np.hypot(p[:, 0] - axis[0], p[:, 1] - axis[1]) - radius, np.abs(p[:, 2] - 0.5 * (z0 + z1))
                  - 0.5 * (z1 - z0)], -1)
    return np.linalg.norm(np.maximum(d, 0), axis=-1) + np.minimum(d.max(-1), 0)


def signed_distance(points):
    """Signed distance ``(N,)`` from ``points`` ``(N, 3)`` to the scene's solids (their union;
    negative inside; exact outside, a bound inside). Its zero set is the true surface."""
    p = np.asarray(points, dtype=np.float64)
    (c, r), (lo, hi) = SPHERE, BOX
    q = np.abs(p - 0.5 * (lo + hi)) - 0.5 * (hi - lo)
    box = np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0)
    return np.minimum.reduce([np.linalg.norm(p - c, axis=-1) - r, box, _sdf_cylinder(p, *CYLINDER),
                              _sdf_cylinder(p, *PLINTH)])


def _cylinder_samples(rng, n, axis, radius, z0, z1):
    areas = np.array([2 * np.pi * radius * (z1 - z0), np.pi * radius ** 2, np.pi * radius ** 2])
    part = rng.choice(3, n, p=areas / areas.sum())  # side, top, bottom
    ang = rng.uniform(0, 2 * np.pi, n)
    rad = np.where(part == 0, radius, radius * np.sqrt(rng.uniform(0, 1, n)))  # caps: uniform over the disc
    z = np.select([part == 0, part == 1], [rng.uniform(z0, z1, n), np.full(n, z1)], np.full(n, z0))
    return np.stack([axis[0] + rad * np.cos(ang), axis[1] + rad * np.sin(ang), z], -1)


def surface_samples(n, eyes, seed=0):
    """Points spread evenly (by area) over the part of the true surface that some camera sees.

    Args:
        n: points drawn over all the solids' surfaces before the hidden ones are dropped (faces
            inside another solid, the plinth's underside, spots no camera sees).
        eyes: ``(M, 3)`` camera centres (e.g. the training poses' translations).
    Returns:
        ``(K, 3)`` points, K <= n.
    """
    rng = np.random.default_rng(seed)
    (c, r), (lo, hi) = SPHERE, BOX
    size = hi - lo
    box_faces = 2 * np.array([size[1] * size[2], size[0] * size[2], size[0] * size[1]])
    cyl = lambda axis, radius, z0, z1: 2 * np.pi * radius * (z1 - z0 + radius)
    areas = np.array([4 * np.pi * r ** 2, box_faces.sum(), cyl(*CYLINDER), cyl(*PLINTH)])
    counts = rng.multinomial(n, areas / areas.sum())
    sphere = rng.normal(size=(counts[0], 3))
    sphere = c + r * sphere / np.linalg.norm(sphere, axis=-1, keepdims=True)
    axis = rng.choice(3, counts[1], p=box_faces / box_faces.sum())  # the axis the face is normal to
    box = lo + rng.uniform(0, 1, (counts[1], 3)) * size
    box[np.arange(counts[1]), axis] = np.where(rng.uniform(size=counts[1]) < 0.5, lo[axis], hi[axis])
    points = np.concatenate([sphere, box, _cylinder_samples(rng, counts[2], *CYLINDER),
                             _cylinder_samples(rng, counts[3], *PLINTH)])
    points = points[signed_distance(points) > -1e-6]  # not inside another solid
    seen = np.zeros(len(points), dtype=bool)
    for eye in np.asarray(eyes, dtype=np.float64):
        d = points - eye
        dist = np.linalg.norm(d, axis=-1)
        t = np.min([h[1] for h in _hits(np.broadcast_to(eye, d.shape), d / dist[:, None])], axis=0)
        seen |= t >= dist - 1e-4  # the first thing the ray meets is the point itself
    return points[seen]


def camera_centres(scene_dir, split="train"):
    """``(N, 3)`` centres of a written scene's cameras (``transforms_{split}.json``)."""
    with open(os.path.join(scene_dir, f"transforms_{split}.json")) as f:
        frames = json.load(f)["frames"]
    return np.array([np.asarray(fr["transform_matrix"], dtype=np.float64)[:3, 3] for fr in frames])


def render(c2w, size, supersample=3, distortion=None):
    """RGBA uint8 ``(size, size, 4)`` of the scene seen from ``c2w`` (4, 4), through the lens
    ``distortion`` (``datasets.distortion.Distortion``, None: a pinhole): each sub-pixel's ray
    goes through its undistorted direction, so the image is what that lens would photograph."""
    n = size * supersample
    focal = 0.5 * n / np.tan(0.5 * CAMERA_ANGLE_X)
    v, u = np.meshgrid(np.arange(n) + 0.5, np.arange(n) + 0.5, indexing="ij")
    # OpenCV's axes (y down, z forward) -> ours (y up, looking along -z)
    dirs = undistort((u - n / 2) / focal, (v - n / 2) / focal, distortion) * np.array([1.0, -1.0, -1.0])
    dirs = dirs.reshape(-1, 3)
    d = dirs @ c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = np.broadcast_to(c2w[:3, 3], d.shape)
    rgb, alpha = _shade(o, d)
    premult = (rgb * alpha[:, None]).reshape(n, n, 3)
    alpha = alpha.reshape(n, n, 1)
    # average the supersamples: premultiplied colour and coverage, then un-premultiply
    premult = premult.reshape(size, supersample, size, supersample, 3).mean((1, 3))
    alpha = alpha.reshape(size, supersample, size, supersample, 1).mean((1, 3))
    rgb = np.where(alpha > 0, premult / np.maximum(alpha, 1e-8), 0)
    return (np.concatenate([rgb, alpha], -1) * 255 + 0.5).astype(np.uint8)


def lens_keys(distortion, size):
    """The json keys that describe the camera of a ``size`` image with ``distortion``: intrinsics
    ``fl_x fl_y cx cy w h`` and instant-ngp's / nerfstudio's distortion keys."""
    focal = 0.5 * size / np.tan(0.5 * CAMERA_ANGLE_X)
    keys = {"fl_x": focal, "fl_y": focal, "cx": size / 2, "cy": size / 2, "w": size, "h": size}
    p = [float(v) for v in distortion.params]
    if distortion.model == "fisheye":
        return {**keys, "camera_model": "OPENCV_FISHEYE", "k1": p[0], "k2": p[1], "k3": p[2], "k4": p[3]}
    if any(p[5:]):
        raise ValueError("the json keys hold k1 k2 p1 p2 k3 only: k4..k6 must be zero")
    return {**keys, "camera_model": "OPENCV", "k1": p[0], "k2": p[1], "p1": p[2], "p2": p[3], "k3": p[4]}


def write_scene(out_dir, size=128, n_train=60, n_val=8, n_test=40, seed=0, distortion=None):
    """Write the scene to ``out_dir`` (train/val/test PNGs + transforms json). Returns out_dir.

    ``distortion`` (a ``datasets.distortion.Distortion``): every view is shot through that lens,
    and the json names it (``lens_keys``) for the reader."""
    rng = np.random.default_rng(seed)
    splits = {
        "train": [(rng.uniform(0, 2 * np.pi), np.arcsin(rng.uniform(0.05, 0.95))) for _ in range(n_train)],
        "val": [(rng.uniform(0, 2 * np.pi), np.arcsin(rng.uniform(0.1, 0.9))) for _ in range(n_val)],
        "test": [(2 * np.pi * i / n_test, np.radians(30)) for i in range(n_test)],  # turntable
    }
    for split, views in splits.items():
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
        frames = []
        for i, (theta, phi) in enumerate(views):
            c2w = look_at_pose(theta, phi)
            rgba = render(c2w, size, distortion=distortion)
            cv2.imwrite(os.path.join(out_dir, split, f"r_{i}.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w.tolist()})
        with open(os.path.join(out_dir, f"transforms_{split}.json"), "w") as f:
            meta = {"camera_angle_x": CAMERA_ANGLE_X, **(lens_keys(distortion, size) if distortion else {})}
            json.dump({**meta, "frames": frames}, f, indent=1)
    return out_dir


def write_nerfstudio_scene(out_dir, size=128, n_frames=60, seed=0, extension=True, distortion=None):
    """Write the scene as a nerfstudio capture (module doc) of ``n_frames`` views around it. Returns out_dir.

    ``extension=False``: ``file_path`` without ``.png`` (nerfstudio and instant-ngp read both).
    ``distortion`` (a ``datasets.distortion.Distortion``): every photo is shot through that lens and
    the json names it (``camera_model`` OPENCV with ``k1 k2 p1 p2``, or OPENCV_FISHEYE with ``k1..k4``)."""
    rng = np.random.default_rng(seed)
    focal = 0.5 * size / np.tan(0.5 * CAMERA_ANGLE_X)
    half = max(1, size // 2)
    for folder in ("images", "images_2"):
        os.makedirs(os.path.join(out_dir, folder), exist_ok=True)
    frames = []
    for i in range(n_frames):
        c2w = look_at_pose(rng.uniform(0, 2 * np.pi), np.arcsin(rng.uniform(0.05, 0.95)))
        rgba = render(c2w, size, distortion=distortion).astype(np.float64) / 255
        rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])  # photos: composited on white
        bgr = cv2.cvtColor((rgb * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR)
        name = f"frame_{i + 1:05d}.png"
        cv2.imwrite(os.path.join(out_dir, "images", name), bgr)
        small = cv2.resize(bgr, (half, half), interpolation=cv2.INTER_AREA)
        cv2.imwrite(os.path.join(out_dir, "images_2", name), small)
        frames.append({"file_path": f"images/{name if extension else name[:-4]}", "transform_matrix": c2w.tolist()})
    meta = {"camera_model": "PINHOLE", "fl_x": focal, "fl_y": focal, "cx": size / 2, "cy": size / 2,
            "w": size, "h": size, "frames": frames}
    if distortion is not None and distortion.model == "fisheye":
        meta.update(camera_model="OPENCV_FISHEYE", **dict(zip(("k1", "k2", "k3", "k4"), distortion.params.tolist())))
    elif distortion is not None:
        if distortion.params[4:].any():
            raise ValueError("a nerfstudio OPENCV camera holds k1 k2 p1 p2 only")
        meta.update(camera_model="OPENCV", **dict(zip(("k1", "k2", "p1", "p2"), distortion.params[:4].tolist())))
    with open(os.path.join(out_dir, "transforms.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return out_dir


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", help="folder to write the scene into")
    parser.add_argument("--size", type=int, default=128, help="image width and height")
    parser.add_argument("--n_train", type=int, default=60, help="training views")
    parser.add_argument("--format", default="blender", choices=("blender", "nerfstudio"),
                        help="layout: Blender's transforms_{train,val,test}.json, or nerfstudio's one transforms.json "
                             "(--n_train views in all)")
    parser.add_argument("--force", action="store_true", help="rewrite an existing scene")
    lens = parser.add_mutually_exclusive_group()
    lens.add_argument("--opencv", type=float, nargs=4, metavar=("K1", "K2", "P1", "P2"),
                      help="shoot every view through this OpenCV lens (e.g. -0.3 0.1 0.001 0.001: strong barrel)")
    lens.add_argument("--fisheye", type=float, nargs=4, metavar=("K1", "K2", "K3", "K4"),
                      help="shoot every view through this OpenCV fisheye lens (angle-proportional: 0 0 0 0)")
    args = parser.parse_args()
    marker = "transforms_test.json" if args.format == "blender" else "transforms.json"
    if os.path.isfile(os.path.join(args.out_dir, marker)) and not args.force:
        print(f"demo scene already in {args.out_dir}")
        return
    lens = (make_distortion("opencv", args.opencv) if args.opencv is not None
            else make_distortion("fisheye", args.fisheye) if args.fisheye is not None else None)
    if args.format == "nerfstudio":
        write_nerfstudio_scene(args.out_dir, args.size, args.n_train, distortion=lens)
    else:
        write_scene(args.out_dir, args.size, args.n_train, distortion=lens)
    print(f"demo scene written to {args.out_dir}")


if __name__ == "__main__":
    main()

"""One ``transforms.json`` per scene, as nerfstudio (``ns-process-data``) and instant-ngp (``colmap2nerf``) write it.

    SCENE/transforms.json   camera keys (top level, or per frame) + frames of file_path / transform_matrix
    SCENE/images/...        the photos (file_path is relative to the json, with or without extension)
    SCENE/images_2, _4, _8  nerfstudio's downscaled copies (optional: read when they suffice for --img_wh)

Camera keys: ``fl_x fl_y cx cy w h`` (or ``camera_angle_x``/``camera_angle_y``), ``camera_model``
(PINHOLE, OPENCV, OPENCV_FISHEYE, ...) and the distortion keys (``datasets.distortion.distortion_from_json``).
``transform_matrix`` is camera-to-world in the OpenGL convention (x right, y up, looking along -z),
ours. ``applied_transform`` (the 3x4 nerfstudio applied to COLMAP's world) is accepted and not needed:
nerfstudio writes its ``ply_file_path`` points already in the frames' world.

The scene goes through the LLFF pipeline (``LLFFDataset``: centring, scaling, ``--unbounded``, render
path), always with metric rays (captures in this format walk around an object; no NDC). The json holds
no depth bounds: they come from the ``ply_file_path`` points when there are some (each camera's 0.1 and
99.9 percentiles of the depths of the points in its view, as ``datasets.colmap`` does from a model), else
from the cameras: the ball every camera sees whole (around the point their optical axes pass closest
to), widened by ``BALL_MARGIN``, from each camera's nearest to farthest point of it. That ball is also
the fast path's box (``scene_aabb``).

Splits: ``train_filenames`` / ``val_filenames`` / ``test_filenames`` when the json has them, else every
``--llff_holdout``-th frame by file name is held out for val and test, as for LLFF.
"""
import json
import os

import numpy as np

from datasets.distortion import distortion_from_json
from datasets.image_utils import check_img_wh, common_size
from datasets.llff import Capture, LLFFDataset, split_indices
from datasets.ray_utils import orbit_of_cameras
from utils.errors import UserError

META_FILE = "transforms.json"
IMAGE_EXTS = (".png", ".PNG", ".jpg", ".JPG", ".jpeg", ".JPEG")
DOWNSCALES = (8, 4, 2)  # nerfstudio's images_N folders, smallest first
BALL_MARGIN = 1.5  # the object may reach this far beyond the ball every camera sees whole
PERCENTILES = (0.1, 99.9)  # of the point depths in each camera's view (LLFF's choice)


def load_meta(root_dir):
    """The parsed json, its path and its frames list; UserError naming the file when it is not one."""
    path = os.path.join(root_dir, META_FILE)
    if not os.path.isfile(path):
        raise UserError(f"{path} not found: is --root_dir a nerfstudio / instant-ngp scene?")
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path} ({err})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise UserError(f"{path} has no 'frames' list: not a nerfstudio / instant-ngp transforms file")
    if not meta["frames"]:
        raise UserError(f"{path} lists no frames")
    return meta, path


def resolve_image(root_dir, file_path, json_path):
    """The image file of a frame's ``file_path`` (relative to the json; the extension may be left
    out), or its would-be path when missing. UserError when it points outside the scene folder."""
    if not isinstance(file_path, str) or not file_path:
        raise UserError(f"{json_path}: a frame has no 'file_path': give every frame the image it shows")
    root = os.path.abspath(root_dir)  # not realpath: images/ may be a link to another disk
    path = os.path.normpath(os.path.join(root, file_path))
    if os.path.commonpath([root, path]) != root:
        raise UserError(f"{json_path}: file_path '{file_path}' leaves the scene folder: move the images into "
                        f"{root_dir} and give paths relative to {META_FILE}")
    if not os.path.isfile(path):
        for ext in IMAGE_EXTS:
            if os.path.isfile(path + ext):
                return path + ext
    return path


def frame_pose(frame, json_path, name):
    """``(3, 4)`` camera-to-world of a frame; UserError unless it has a 4x4 (or 3x4) ``transform_matrix``."""
    if "transform_matrix" not in frame:
        raise UserError(f"{json_path}: frame {name} has no 'transform_matrix': every frame needs its 4x4 "
                        "camera-to-world matrix")
    try:
        m = np.array(frame["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError):
        m = np.zeros(0)
    if m.shape not in ((4, 4), (3, 4)) or not np.all(np.isfinite(m)):
        raise UserError(f"{json_path}: frame {name} has a transform_matrix of shape {m.shape}: it must be a 4x4 "
                        "camera-to-world matrix of numbers")
    return m[:3, :4]


def camera_of(keys, json_path, name, first_image):
    """``(w, h, fx, fy, cx, cy)`` of a frame (its own keys over the top level's)."""
    def num(key):
        try:
            return float(keys[key])
        except (TypeError, ValueError):
            raise UserError(f"{json_path}: '{key}' is {keys[key]!r}, not a number") from None

    if "w" in keys and "h" in keys:
        w, h = num("w"), num("h")
    else:  # instant-ngp's older files: the size from the image itself
        if not os.path.isfile(first_image):
            raise UserError(f"{json_path} has no 'w'/'h' and the image {first_image} is missing: add w and h")
        w, h = common_size([first_image])
    if "fl_x" in keys or "fl_y" in keys:
        fx = num("fl_x") if "fl_x" in keys else num("fl_y")
        fy = num("fl_y") if "fl_y" in keys else fx
    elif "camera_angle_x" in keys or "camera_angle_y" in keys:
        fx = 0.5 * w / np.tan(0.5 * num("camera_angle_x")) if "camera_angle_x" in keys else None
        fy = 0.5 * h / np.tan(0.5 * num("camera_angle_y")) if "camera_angle_y" in keys else None
        fx, fy = fx or fy, fy or fx
    else:
        raise UserError(f"{json_path}: no focal length for frame {name} (neither fl_x/fl_y nor camera_angle_x at "
                        "the top level or in the frame): add fl_x and fl_y in pixels")
    cx = num("cx") if "cx" in keys else w / 2
    cy = num("cy") if "cy" in keys else h / 2
    if not (w > 0 and h > 0 and fx > 0 and fy > 0):
        raise UserError(f"{json_path}: frame {name} has w {w:g}, h {h:g}, fl_x {fx:g}, fl_y {fy:g}: all must be "
                        "positive")
    return w, h, fx, fy, cx, cy


def downscaled_paths(root_dir, paths, size, img_wh):
    """The images of nerfstudio's smallest ``images_N`` folder still at least ``img_wh`` (reading them
    is faster than shrinking the photos), or ``paths`` when none fits. Only paths under ``images/``
    have copies; a folder is used only when it holds every one of them."""
    images = os.path.join(os.path.abspath(root_dir), "images")
    for n in DOWNSCALES:
        if size[0] / n < img_wh[0] - 0.5 or size[1] / n < img_wh[1] - 0.5:
            continue
        folder = os.path.join(os.path.abspath(root_dir), f"images_{n}")
        if not os.path.isdir(folder) or not all(os.path.commonpath([images, p]) == images for p in paths):
            continue
        small = [os.path.join(folder, os.path.relpath(p, images)) for p in paths]
        if all(os.path.isfile(p) for p in small):
            return small, n
    return paths, 1


def read_ply_points(path):
    """``(N, 3)`` float64 vertex positions of a PLY file (ASCII or binary little-endian; ``x y z``
    among the vertex properties). UserError naming the file otherwise."""
    types = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
             "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
             "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
    try:
        with open(path, "rb") as f:
            if f.readline().strip() != b"ply":
                raise ValueError("no 'ply' magic")
            fmt, count, props, element = None, 0, [], None
            while True:
                line = f.readline()
                if not line:
                    raise ValueError("no end_header")
                words = line.decode("ascii", "replace").split()
                if not words or words[0] in ("comment", "obj_info"):
                    continue
                if words[0] == "end_header":
                    break
                if words[0] == "format":
                    fmt = words[1]
                elif words[0] == "element":
                    element = words[1]
                    if element == "vertex":
                        count = int(words[2])
                elif words[0] == "property" and element == "vertex":
                    if words[1] == "list":
                        raise ValueError("list properties in vertices")
                    props.append((words[2], types[words[1]]))
                elif words[0] == "property" and element is None:
                    raise ValueError("a property before any element")
            names = [p[0] for p in props]
            if not {"x", "y", "z"} <= set(names):
                raise ValueError("vertices without x, y, z")
            if fmt == "ascii":
                rows = [f.readline().split() for _ in range(count)]
                table = np.array(rows, dtype=np.float64).reshape(count, len(props))
                xyz = table[:, [names.index(a) for a in "xyz"]]
            elif fmt == "binary_little_endian":
                dtype = np.dtype([(n, "<" + t) for n, t in props])
                data = np.frombuffer(f.read(dtype.itemsize * count), dtype=dtype, count=count)
                xyz = np.stack([data[a].astype(np.float64) for a in "xyz"], 1)
            else:
                raise ValueError(f"format {fmt} (only ascii and binary_little_endian are read)")
    except (OSError, ValueError, KeyError, IndexError) as err:
        raise UserError(f"cannot read the point cloud {path} ({err}): fix or remove ply_file_path") from None
    return xyz[np.all(np.isfinite(xyz), 1)]


def point_bounds(points, c2w, intrinsics, size):
    """``(N, 2)`` near/far depths per camera: the ``PERCENTILES`` of the depths of the points in front of
    it that project into its image (all points in front when none do), or NaN when none is in front.

    Args:
        points: ``(P, 3)``; c2w: ``(N, 3, 4)`` OpenGL camera-to-world; intrinsics: ``(N, 4)`` fx, fy, cx,
        cy in pixels of images of ``size`` (W, H).
    """
    W, H = size
    bounds = np.full((len(c2w), 2), np.nan)
    for i, (pose, (fx, fy, cx, cy)) in enumerate(zip(c2w, intrinsics)):
        cam = (points - pose[:, 3]) @ pose[:, :3]  # (P, 3) in camera axes: x right, y up, z back
        depth = -cam[:, 2]
        front = depth > 1e-9
        u = fx * cam[front, 0] / depth[front] + cx
        v = -fy * cam[front, 1] / depth[front] + cy
        seen = depth[front][(u >= 0) & (u <= W) & (v >= 0) & (v <= H)]
        zs = seen if seen.size else depth[front]
        if zs.size:
            bounds[i] = np.percentile(zs, PERCENTILES)
    return bounds


def object_ball(c2w, intrinsics, size):
    """Centre ``(3,)`` and radius of the ball the cameras look at: around the point nearest to every
    optical axis, ``BALL_MARGIN`` x the radius every camera sees whole (the nearest camera's distance
    times the sine of the smallest half field of view). None when that point is not in front of most
    cameras (they do not look at one object)."""
    centre = orbit_of_cameras(c2w)["target"]
    rel = centre - c2w[:, :, 3]  # (N, 3)
    ahead = (rel * -c2w[:, :, 2]).sum(-1) / np.maximum(np.linalg.norm(rel, axis=1), 1e-12)  # cos to the axis
    if np.mean(ahead > 0.5) < 0.5:
        return None
    W, H = size
    half_fov = np.minimum(np.arctan(0.5 * W / intrinsics[:, 0]), np.arctan(0.5 * H / intrinsics[:, 1])).min()
    return centre, BALL_MARGIN * float(np.linalg.norm(rel, axis=1).min()) * float(np.sin(half_fov))


class NerfstudioDataset(LLFFDataset):
    """A scene described by one ``transforms.json`` (see the module doc); splits as ``LLFFDataset``'s."""

    metric_rays = True

    def read_capture(self):
        """The json's frames with an image as a ``Capture`` sorted by file name (OpenGL poses turned to
        LLFF's axis order), their distortion, and the split lists; warns once about missing images."""
        meta, json_path = load_meta(self.root_dir)
        frames = []
        for k, fr in enumerate(meta["frames"]):
            if not isinstance(fr, dict):
                raise UserError(f"{json_path}: frame {k} is not an object with file_path and transform_matrix")
            path = resolve_image(self.root_dir, fr.get("file_path"), json_path)
            frames.append((os.path.relpath(path, os.path.abspath(self.root_dir)), path, fr))
        frames.sort(key=lambda f: f[0])
        names = [f[0] for f in frames]
        if len(set(names)) < len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise UserError(f"{json_path}: two frames show the same image {dup}: list each image once")

        missing = [n for n, p, _ in frames if not os.path.isfile(p)]
        if missing and self.split != "val":  # train.py reads val second: one warning per run
            print(f"warning: {len(missing)} of {len(frames)} frames of {json_path} have no image and are skipped: "
                  + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
        self._splits = self.split_lists(meta, json_path, names, set(missing))
        frames = [f for f in frames if os.path.isfile(f[1])]
        if not frames:
            raise UserError(f"none of the {len(names)} images {json_path} lists exists (e.g. {missing[0]}): "
                            f"put them beside {META_FILE} as its file_path entries say")
        top = {k: v for k, v in meta.items() if k != "frames"}
        if "applied_transform" in top:
            frame_pose({"transform_matrix": top["applied_transform"]}, json_path, "applied_transform")
        c2w = np.stack([frame_pose(fr, json_path, n) for n, _, fr in frames])  # (N, 3, 4) OpenGL
        cams, distortion = [], []
        for n, p, fr in frames:
            keys = {**top, **{k: v for k, v in fr.items() if k not in ("file_path", "transform_matrix")}}
            cams.append(camera_of(keys, json_path, n, p))
            distortion.append(distortion_from_json(keys, json_path))  # its errors name json_path
        cams = np.array(cams)  # (N, 6): w h fx fy cx cy
        sizes = {(round(w), round(h)) for w, h in cams[:, :2]}
        if len(sizes) > 1:
            listed = ", ".join(f"{w}x{h}" for w, h in sorted(sizes))
            raise UserError(f"{json_path}: frames of different sizes ({listed}): "
                            "use one camera size per scene")
        size = (float(cams[0, 0]), float(cams[0, 1]))
        self.check_image_sizes([p for _, p, _ in frames], [n for n, _, _ in frames], size, json_path)
        check_img_wh(self.img_wh, (round(size[0]), round(size[1])))
        paths, factor = downscaled_paths(self.root_dir, [p for _, p, _ in frames], size, self.img_wh)
        if factor > 1:
            self.check_image_sizes(paths, [os.path.relpath(p, self.root_dir) for p in paths],
                                   (size[0] / factor, size[1] / factor), json_path)
        intrinsics = cams[:, 2:6]
        bounds = self.bounds(meta, json_path, c2w, intrinsics, size)
        llff = np.concatenate([-c2w[:, :, 1:2], c2w[:, :, 0:1], c2w[:, :, 2:4]], -1)  # [down, right, back | centre]
        self._names = [n for n, _, _ in frames]
        return Capture(llff, bounds, intrinsics, size, paths, META_FILE,
                       None if all(d is None for d in distortion) else distortion)

    @staticmethod
    def check_image_sizes(paths, names, size, json_path):
        """UserError naming the first image whose size is not ``size`` (W, H; within a pixel: nerfstudio's
        ``images_N`` copies round)."""
        from PIL import Image

        for path, name in zip(paths, names):
            try:
                with Image.open(path) as im:
                    w, h = im.size
            except OSError:
                raise UserError(f"cannot read image (corrupt or not an image): {path}") from None
            if abs(w - size[0]) >= 1 or abs(h - size[1]) >= 1:
                raise UserError(f"{name} is {w}x{h} but {json_path} says w {size[0]:g}, h {size[1]:g}: fix w/h "
                                "(and the intrinsics) or use the images the poses were computed on")

    def split_lists(self, meta, json_path, names, missing):
        """``{split: set of image names}`` from ``train/val/test_filenames`` (None without any). Names are
        taken relative to the json like ``file_path``; a name no frame lists is a UserError."""
        lists = {s: meta.get(f"{s}_filenames") for s in ("train", "val", "test")}
        if all(v is None for v in lists.values()):
            return None
        # a list may give a name with its extension where the frame (its image missing) gave none
        known = {**{os.path.splitext(n)[0]: n for n in names}, **{n: n for n in names}}
        out = {}
        for split, files in lists.items():
            if files is None:
                continue
            if not isinstance(files, list):
                raise UserError(f"{json_path}: {split}_filenames must be a list of file paths")
            chosen = set()
            for f in files:
                name = os.path.relpath(resolve_image(self.root_dir, f, json_path), os.path.abspath(self.root_dir))
                name = known.get(name, known.get(os.path.splitext(name)[0]))
                if name is None:
                    raise UserError(f"{json_path}: {split}_filenames names {f}, which no frame's file_path lists: "
                                    "fix the name or add its frame")
                chosen.add(name)
            out[split] = chosen - missing
        return out

    def split_indices(self, capture, split, holdout):
        """The json's split lists when it has them (val falls back on test's and test on val's; without
        ``train_filenames`` every frame no other list names trains), else LLFF's every-``holdout``-th."""
        lists = self._splits
        if lists is None:
            return split_indices(len(capture.poses), split, holdout)
        if split == "train" and "train" not in lists:
            held = set().union(*lists.values())
            chosen = set(self._names) - held
        else:
            other = {"val": "test", "test": "val"}.get(split)
            chosen = lists.get(split, lists.get(other))
            if chosen is None:
                raise UserError(f"{os.path.join(self.root_dir, META_FILE)} has split lists but no {split}_filenames: "
                                f"add it, or remove the lists to hold out every --llff_holdout-th frame")
        idx = np.array([i for i, n in enumerate(self._names) if n in chosen], dtype=np.int64)
        if len(idx) == 0:
            raise UserError(f"the {split} split of {os.path.join(self.root_dir, META_FILE)} has no frame with an "
                            "image: list existing images in its *_filenames")
        return idx

    def bounds(self, meta, json_path, c2w, intrinsics, size):
        """``(N, 2)`` near/far depth per camera (json units), from the point cloud or the cameras (module doc);
        printed once per run. Also keeps the ball the cameras look at for ``scene_aabb``."""
        self._ball = object_ball(c2w, intrinsics, size)
        ply = meta.get("ply_file_path")
        if ply:
            ply_path = resolve_image(self.root_dir, ply, json_path)
            if not os.path.isfile(ply_path):
                raise UserError(f"{json_path}: ply_file_path {ply} not found: fix or remove the key")
            points = read_ply_points(ply_path)
            bounds = point_bounds(points, c2w, intrinsics, size)
            source = f"the {len(points)} points of {ply}"
            if np.isnan(bounds).all():
                raise UserError(f"no point of {ply_path} lies in front of any camera: is it in the frames' world "
                                "(nerfstudio's applied_transform)? Fix or remove ply_file_path")
            bounds = np.where(np.isnan(bounds), np.nanmedian(bounds, 0), bounds)  # cameras that see none
        elif self._ball is not None:
            centre, radius = self._ball
            dist = np.linalg.norm(c2w[:, :, 3] - centre, axis=1)
            bounds = np.stack([np.maximum(dist - radius, 0.05 * dist), dist + radius], 1)
            source = "the cameras (the ball they look at)"
        else:
            raise UserError(f"{json_path}: the cameras do not look at one object and there is no ply_file_path: "
                            "add the sparse points (ply_file_path) so the depth range can be measured")
        if self.split != "val":  # train.py reads val second: one line per run
            print(f"depth bounds from {source}: near {bounds[:, 0].min():.3g}, far {bounds[:, 1].max():.3g} "
                  f"({META_FILE} units)")
        return bounds

    def scene_aabb(self):
        """The box around the ball the cameras look at (module doc), in this dataset's frame; without
        one, the cube reaching the cameras (``BaseDataset``'s)."""
        if self._ball is None:
            return super().scene_aabb()
        centre, radius = self._ball
        # the json world -> ours is a rotation, a translation and a uniform scale (world_to_scene)
        m = self.world_to_scene
        c = m[:3, :3] @ centre + m[:3, 3]
        r = radius * float(np.cbrt(np.linalg.det(m[:3, :3])))
        return [*(c - r).tolist(), *(c + r).tolist()]

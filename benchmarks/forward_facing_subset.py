"""A forward-facing LLFF capture cut out of a Blender scene, for benchmarks of the NDC path.

    python benchmarks/forward_facing_subset.py ../shared/data/nerf_synthetic/lego /tmp/lego_ff --max_angle 35

Keeps the training views whose cameras sit within ``--max_angle`` degrees of the first view's
direction from the origin (all of them look at the object from one side, as a forward-facing
capture does) and writes ``OUT/images/*.png`` (RGBA as in the scene) and ``OUT/poses_bounds.npy``
(LLFF layout: pose columns [down, right, back, centre], then H, W, focal; near/far depth bounds
from the object's bounding sphere of radius ``--radius``). Train it with
``--dataset_name llff --white_back 1`` (without ``--spheric_poses``: NDC rays).
"""
import argparse
import json
import os
import shutil

import imageio.v2 as imageio
import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("blender_dir")
    p.add_argument("out_dir")
    p.add_argument("--max_angle", type=float, default=35.0, help="degrees from the first view's direction")
    p.add_argument("--radius", type=float, default=1.5, help="radius of the object's bounding sphere")
    a = p.parse_args(argv)
    with open(os.path.join(a.blender_dir, "transforms_train.json")) as f:
        meta = json.load(f)
    frames = meta["frames"]
    c2ws = np.array([f["transform_matrix"] for f in frames], dtype=np.float64)[:, :3]  # (N, 3, 4), x right y up z back
    centres = c2ws[:, :, 3]
    dirs = centres / np.linalg.norm(centres, axis=1, keepdims=True)
    keep = np.degrees(np.arccos(np.clip(dirs @ dirs[0], -1, 1))) <= a.max_angle
    os.makedirs(os.path.join(a.out_dir, "images"), exist_ok=True)
    rows = []
    for i in np.nonzero(keep)[0]:
        src = os.path.join(a.blender_dir, frames[i]["file_path"].lstrip("./") + ".png")
        shutil.copy(src, os.path.join(a.out_dir, "images", f"{len(rows):03d}.png"))
        H, W = imageio.imread(src).shape[:2]
        focal = 0.5 * W / np.tan(0.5 * meta["camera_angle_x"])
        c2w = c2ws[i]
        llff = np.stack([-c2w[:, 1], c2w[:, 0], c2w[:, 2], c2w[:, 3], [H, W, focal]], 1)  # (3, 5)
        dist = np.linalg.norm(c2w[:, 3])
        rows.append(np.concatenate([llff.ravel(), [dist - a.radius, dist + a.radius]]))
    np.save(os.path.join(a.out_dir, "poses_bounds.npy"), np.array(rows))
    print(f"wrote {len(rows)} views of {len(frames)} to {a.out_dir}")


if __name__ == "__main__":
    main()

"""Camera poses for your own photos, ready for ``train.py --dataset_name llff``.

    python imgs2poses.py SCENE_DIR [--matcher auto|exhaustive|sequential] [--downscale 2] [--overwrite]

reads the photos in ``SCENE_DIR/images`` and writes ``SCENE_DIR/sparse/0`` (a COLMAP model) and
``SCENE_DIR/poses_bounds.npy`` (LLFF format), using pycolmap on the CPU: no COLMAP build needed.
"""
import argparse

from opt import HelpFormatter
from process_data.colmap_sfm import CAMERA_MODELS, imgs2poses
from utils.errors import cli_main


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter, allow_abbrev=False)
    parser.add_argument("scene_dir", help="scene folder holding images/ (photos of one size)")
    parser.add_argument("--matcher", default="auto", choices=("auto", "exhaustive", "sequential"),
                        help="image pairs to match: all pairs, or each photo with its neighbours in name order "
                             "(best for frames of a walk or a video); auto: exhaustive up to 40 photos")
    parser.add_argument("--downscale", type=float, default=1.0,
                        help="run SfM on copies of the photos reduced by this factor (faster; the poses and "
                             "intrinsics written are for the full-size photos)")
    parser.add_argument("--camera_model", default="SIMPLE_RADIAL", choices=CAMERA_MODELS,
                        help="COLMAP camera model (distortion is estimated but ignored by the NeRF loader)")
    parser.add_argument("--per_image_camera", action="store_true",
                        help="one camera per photo instead of one shared camera (photos from different devices)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the mapper")
    parser.add_argument("--overwrite", action="store_true", help="replace existing sparse/0 and poses_bounds.npy")
    parser.add_argument("--verbose", action="store_true", help="show COLMAP's own log")
    return parser


@cli_main
def main(argv=None):
    args = get_parser().parse_args(argv)
    imgs2poses(args.scene_dir, matcher=args.matcher, downscale=args.downscale, overwrite=args.overwrite,
               camera_model=args.camera_model, single_camera=not args.per_image_camera, seed=args.seed,
               verbose=args.verbose)


if __name__ == "__main__":
    main()

"""Camera poses for your own photos or video, ready for ``train.py --dataset_name llff``.

    python imgs2poses.py SCENE_DIR [--matcher auto|exhaustive|sequential] [--downscale 2] [--overwrite]
    python imgs2poses.py SCENE_DIR --video clip.mp4 [--num_frames 150] [--downscale 2]

reads the photos in ``SCENE_DIR/images`` and writes ``SCENE_DIR/sparse/0`` (a COLMAP model),
``SCENE_DIR/poses_bounds.npy`` (LLFF format) and ``SCENE_DIR/transforms.json`` + ``sparse_pc.ply``
(nerfstudio's format, for nerfstudio, instant-ngp and splatting trainers), using pycolmap on the CPU:
no COLMAP build needed.
With ``--video``, the photos are first taken from the clip: the sharpest frame of each of
``--num_frames`` stretches of equal camera motion, upright (a phone's rotation tag is honoured), written as
``SCENE_DIR/images/frame_00001.jpg ...``; SfM then matches each frame with its neighbours. Frames
in shooting order (a video, or more than 40 photos) are checked for a fold (the path jumping by 100
degrees between neighbours: look-alike views matched) and posed again another way when one shows;
``SCENE_DIR/sfm.json`` says which way won. Nothing is left in SCENE_DIR when any step fails.
"""
import argparse

from opt import HelpFormatter
from process_data.colmap_sfm import CAMERA_MODELS, imgs2poses
from process_data.video import DEFAULT_NUM_FRAMES, video2poses
from utils.errors import UserError, cli_main
from utils.quiet import quiet


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter, allow_abbrev=False)
    parser.add_argument("scene_dir", help="scene folder holding images/ (photos of one size); with --video, "
                                          "where images/ is written (created if missing)")
    parser.add_argument("--video", metavar="FILE",
                        help="take the photos from this clip (mp4, mov, ...): frames spread evenly over the walk "
                             "(stretches of equal camera motion), the sharpest of each, written to SCENE_DIR/images")
    parser.add_argument("--num_frames", type=int, metavar="N",
                        help=f"with --video: how many frames to keep (default {DEFAULT_NUM_FRAMES})")
    parser.add_argument("--matcher", default="auto", choices=("auto", "exhaustive", "sequential"),
                        help="image pairs to match: all pairs, or each photo with its next few in name order "
                             "(frames of a walk or a video: posed two to five ways, folded models dropped, the one "
                             "the others agree with kept); auto: exhaustive up to 40 photos, sequential with --video")
    parser.add_argument("--downscale", type=float, default=1.0,
                        help="run SfM on copies of the photos reduced by this factor (faster; the poses and "
                             "intrinsics written are for the full-size photos)")
    parser.add_argument("--camera_model", default="SIMPLE_RADIAL", choices=CAMERA_MODELS,
                        help="COLMAP camera model; its lens distortion is estimated and kept: train.py casts each "
                             "pixel's ray through it (OPENCV for strong wide-angle lenses, OPENCV_FISHEYE for fisheyes)")
    parser.add_argument("--per_image_camera", action="store_true",
                        help="one camera per photo instead of one shared camera (photos from different devices)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the mapper")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing sparse/0, poses_bounds.npy and transforms.json (with --video, "
                             "images/ too)")
    parser.add_argument("--verbose", action="store_true", help="show COLMAP's own log")
    return parser


@cli_main
def main(argv=None):
    quiet()  # the project's lines only (utils/quiet.py)
    args = get_parser().parse_args(argv)
    sfm = dict(camera_model=args.camera_model, single_camera=not args.per_image_camera, seed=args.seed,
               verbose=args.verbose)
    if args.video is not None:
        num_frames = DEFAULT_NUM_FRAMES if args.num_frames is None else args.num_frames
        video2poses(args.scene_dir, args.video, num_frames=num_frames, overwrite=args.overwrite,
                    matcher=args.matcher, downscale=args.downscale, **sfm)
        return
    if args.num_frames is not None:
        raise UserError("--num_frames goes with --video (how many frames to take from the clip)")
    imgs2poses(args.scene_dir, matcher=args.matcher, downscale=args.downscale, overwrite=args.overwrite, **sfm)


if __name__ == "__main__":
    main()

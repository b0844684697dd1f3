"""From a phone video (or a folder of photos) to a model, a circle video, a mesh and a report, in one command.

    python capture.py clip.mp4 --out captures/NAME --minutes 15
    python capture.py PHOTO_FOLDER --out captures/NAME [--minutes 15] [--view_size 360 640] [--img_wh 68 120]

Stages: frames (or photos) and their poses (imgs2poses.py) -> training (train.py, what imgs2poses
recommends: --unbounded --fast for a walk around, NDC rays for a forward-facing capture; a walk
around at the view size on the CPU, else at the size the budget allows) -> every 8th frame, held out
of training, scored at the view size, half the frames' by default, and at the thumbnail size the
budget allows (eval.py --split test) -> the circle video (eval.py --split path) -> a mesh
(extract_mesh.py) -> OUT/report.html. The whole run fits in about --minutes. Run the same command
again after an interruption: the stages already done are skipped and training resumes from its last
checkpoint. Options capture.py does not know go to train.py (e.g. --appearance_dim 8).
The stages live in pipeline/capture.py, the report in export/report.py.
"""
import argparse

from opt import HelpFormatter
from pipeline.capture import STAGES, run_capture
from utils.errors import UserError, cli_main
from utils.quiet import quiet


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("input", help="a video (mp4, mov, ...) or a folder of photos (png/jpg)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (created): scene, checkpoints, results, mesh and report.html")
    parser.add_argument("--minutes", type=float, default=15.0,
                        help="time for the whole run, poses to report (training gets what the other stages leave)")
    parser.add_argument("--img_wh", type=int, nargs=2, metavar=("W", "H"), default=None,
                        help="training size (default: the view size for a walk around on the CPU, else from the "
                             "budget and the device; the frames' aspect kept)")
    parser.add_argument("--view_size", type=int, nargs=2, metavar=("W", "H"), default=None,
                        help="the size the held-out views are scored and shown at, and the video's (default: half "
                             "the frames' size, smaller when --minutes cannot render it; the frames' aspect)")
    parser.add_argument("--num_frames", type=int, default=None,
                        help="frames taken from a video for the poses, all trained on (default: 10 per second of "
                             "clip, 10 to 150)")
    parser.add_argument("--downscale", type=float, default=None,
                        help="SfM on frames reduced by this factor (default: to at most 960 pixels long)")
    parser.add_argument("--redo", choices=STAGES, default=None,
                        help="run this stage and those after it again (the others are kept)")
    return parser


@cli_main
def main(argv=None):
    quiet()  # the project's lines only (utils/quiet.py); the stages run here, and call it too
    args, extra = get_parser().parse_known_args(argv)
    if not args.minutes > 0:
        raise UserError(f"--minutes must be positive, got {args.minutes:g}")
    run_capture(args, extra)


if __name__ == "__main__":
    main()

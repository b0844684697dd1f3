"""Look around a trained NeRF in the browser (viser): a live, progressively refined view.

    python viewer.py --ckpt_path ckpts/lego/last.ckpt [--port 7007] [--mesh results/blender/lego/lego.ply]

then open http://localhost:7007. Model and scene flags not typed come from the checkpoint (as in
eval.py); snapshots and camera paths go to ``results/{dataset_name}/{scene_name}/viewer/``.
"""
import os

from opt import parse_args
from utils.errors import cli_main
from utils.quiet import quiet
from viewer.cli import build_viewer, get_viewer_parser


@cli_main
def main(argv=None):
    quiet()  # the project's lines only (utils/quiet.py)
    args, explicit = parse_args(get_viewer_parser(), argv)
    viewer = build_viewer(args, explicit)
    print(f"viewer: http://localhost:{viewer.port}  (Ctrl-C stops it)")
    print(f"viewer: snapshots and camera paths go to {os.path.abspath(viewer.out_dir)}")
    viewer.serve_forever()


if __name__ == "__main__":
    main()

"""viewer.py's command line: flags, input checks, and the server built from a checkpoint."""
import os
from argparse import Namespace

from datasets import resolve_dataset_name
from opt import check_opts, get_parser
from models import load_model
from utils.device import pick_device
from utils.errors import UserError
from viewer.camera import scene_cameras
from viewer.render import SceneRenderer
from viewer.server import ViewerServer, check_port, load_mesh


def get_viewer_parser():
    parser = get_parser("Look around a trained NeRF in the browser.", training=False)
    v = parser.add_argument_group("viewer")
    v.add_argument("--ckpt_path", type=str, required=True,
                   help="training checkpoint (.ckpt) or weights-only file (save_weights_only.py)")
    v.add_argument("--port", type=int, default=7007, help="port of the web page (http://localhost:PORT)")
    v.add_argument("--host", type=str, default="0.0.0.0", help="address to listen on (127.0.0.1: this machine only)")
    v.add_argument("--mesh", type=str, default=None, help="also show this mesh (.ply from extract_mesh.py)")
    v.add_argument("--scene_name", type=str, default=None, help="name of the output folder (default: of --root_dir)")
    v.add_argument("--out_dir", type=str, default=None,
                   help="where snapshots and camera paths go (default: results/{dataset_name}/{scene_name}/viewer)")
    v.add_argument("--max_width", type=int, default=512, help="initial max resolution (pixels wide)")
    v.add_argument("--frame_time", type=float, default=0.2,
                   help="initial time (s) the first, coarse image after a camera move may take")
    v.add_argument("--device", type=str, default="auto", help="auto (a GPU if present), cpu, cuda, cuda:1, ...")
    return parser


def build_viewer(args, explicit):
    """Check the input, load the model and start the server; returns the ``ViewerServer``."""
    check_port(args.port, args.host)
    if args.max_width < 16 or args.frame_time <= 0:
        raise UserError("--max_width must be at least 16 and --frame_time positive")
    mesh = load_mesh(args.mesh) if args.mesh else None
    device = pick_device(args.device)
    fields, h, ckpt = load_model(args, explicit, device)
    if resolve_dataset_name(h, required=False).dataset_name is None:  # a model file without flags
        raise UserError(f"{h.ckpt_path} does not say which scene format it was trained on: give --root_dir "
                        "(the scene folder tells it) or --dataset_name")
    check_opts(Namespace(**{**vars(h), "root_dir": h.root_dir or "(from the checkpoint)"}))
    scene = scene_cameras(h, ckpt)
    root_name = os.path.basename(os.path.abspath(h.root_dir)) if h.root_dir else ""
    out_dir = h.out_dir or os.path.join("results", h.dataset_name, h.scene_name or root_name or "scene", "viewer")
    return ViewerServer(SceneRenderer(fields, h, scene, device), port=args.port, host=args.host, out_dir=out_dir,
                        mesh=mesh, aabb=scene["aabb"], max_width=args.max_width, frame_time=args.frame_time)

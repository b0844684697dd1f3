"""Make a phone-style video clip from a folder of photos, to measure ``capture.py`` on a clip.

A phone held upright stores its frames sideways (landscape) and writes a display rotation into the
mp4 that players apply; this script does the same (``--portrait``), so the clip exercises the
rotation handling of ``imgs2poses.py --video`` exactly as a real portrait clip does::

    python benchmarks/make_clip.py ../shared/data/nerf_llff_data/beer/images beer_portrait.mp4 \
        --size 360 640 --fps 12 --portrait

``--size W H`` is the upright frame size (beer's photos are 720x1280 portrait). Frames are taken in
file-name order, i.e. the order the photos were shot in.
"""
import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import cv2  # noqa: E402
import imageio  # noqa: E402
import imageio_ffmpeg  # noqa: E402
import numpy as np  # noqa: E402

from datasets.image_utils import list_images  # noqa: E402
from utils.errors import UserError  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", help="folder of photos (jpg/png), in shooting order by name")
    p.add_argument("out", help="the mp4 to write")
    p.add_argument("--size", type=int, nargs=2, default=[360, 640], metavar=("W", "H"),
                   help="upright frame size (default 360 640)")
    p.add_argument("--fps", type=float, default=12.0, help="frames per second of the clip (default 12)")
    p.add_argument("--portrait", action="store_true",
                   help="store frames sideways with a -90 display rotation, as a phone held upright does")
    return p.parse_args(argv)


def write_clip(path, frames, fps=10.0, display_rotation=0, quality=10):
    """An H.264 mp4 of ``frames`` (RGB uint8 ``(H, W, 3)``, as stored). ``display_rotation``:
    counter-clockwise degrees a player turns them (ffmpeg's display matrix; a phone's portrait clip
    has -90). Returns ``path``."""
    plain = str(path) + ".plain.mp4" if display_rotation else str(path)
    writer = imageio.get_writer(plain, fps=fps, codec="libx264", quality=quality, macro_block_size=1,
                                ffmpeg_log_level="error")
    for frame in frames:
        writer.append_data(np.ascontiguousarray(frame))
    writer.close()
    if display_rotation:
        # "-metadata:s:v:0 rotate=90" is ignored by current ffmpeg; -display_rotation (an input option) works
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-display_rotation",
                        str(display_rotation), "-i", plain, "-c", "copy", str(path)], check=True)
        os.remove(plain)
    return path


def main(argv=None):
    a = parse_args(argv)
    try:
        paths = list_images(a.photos)
    except UserError as err:
        sys.exit(f"error: {err}")
    if not paths:
        sys.exit(f"error: no jpg/png photos in {a.photos}")

    def frames():
        for path in paths:
            img = cv2.resize(cv2.imread(path)[:, :, ::-1], tuple(a.size), interpolation=cv2.INTER_AREA)
            yield np.rot90(img, 1) if a.portrait else img  # stored sideways; -90 turns it upright again

    write_clip(a.out, frames(), a.fps, -90 if a.portrait else 0, quality=9)
    print(f"{a.out}: {len(paths)} frames, {a.size[0]}x{a.size[1]} upright, {a.fps:g} fps"
          f"{' (stored sideways, display rotation -90)' if a.portrait else ''}")


if __name__ == "__main__":
    main()

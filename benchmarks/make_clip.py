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

import cv2
import imageio
import imageio_ffmpeg
import numpy as np


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


def main(argv=None):
    a = parse_args(argv)
    names = sorted(n for n in os.listdir(a.photos) if n.lower().endswith((".jpg", ".jpeg", ".png")))
    if not names:
        sys.exit(f"error: no jpg/png photos in {a.photos}")
    plain = a.out + ".plain.mp4" if a.portrait else a.out
    writer = imageio.get_writer(plain, fps=a.fps, codec="libx264", quality=9, macro_block_size=1,
                                ffmpeg_log_level="error")
    for n in names:
        img = cv2.imread(os.path.join(a.photos, n))[:, :, ::-1]
        img = cv2.resize(img, tuple(a.size), interpolation=cv2.INTER_AREA)
        if a.portrait:
            img = np.rot90(img, 1)  # stored sideways; the -90 display rotation turns it upright again
        writer.append_data(np.ascontiguousarray(img))
    writer.close()
    if a.portrait:
        # ffmpeg's -display_rotation (an input option) writes the display matrix phones write
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-display_rotation", "-90",
                        "-i", plain, "-c", "copy", a.out], check=True)
        os.remove(plain)
    print(f"{a.out}: {len(names)} frames, {a.size[0]}x{a.size[1]} upright, {a.fps:g} fps"
          f"{' (stored sideways, display rotation -90)' if a.portrait else ''}")


if __name__ == "__main__":
    main()

"""The README's picture of a capture, put together from figures already in ``benchmarks/results``.

Three held-out views of beer (a phone walk around a can, 72x128, 10 minutes on 2 CPU cores,
RESULTS §18): the photo, the render and its inverse depth, then the TSDF mesh of RESULTS §13.
Nothing is trained here; run it again after those figures change:

    .venv/bin/python benchmarks/readme_figure.py [--out docs/capture.png]
"""
import argparse
from pathlib import Path

from PIL import Image, ImageDraw

RESULTS = Path(__file__).resolve().parent / "results"
FRAME_W, FRAME_H = 72, 128  # one frame of beer_dist_10min_frames.png
# columns of that strip: photo, then the preset without the loss, 0.0005, 0.001, 0.002, then their depths
PHOTO, RENDER, DEPTH = 0, 3, 7  # the distortion loss at 0.001: today's CPU preset
SCALE = 2
MESH_PANEL = (583, 60, 836, 513)  # inside the frame of beer_meshes.png's first TSDF (median depth) panel


def frame(strip, row, col):
    """One ``FRAME_W x FRAME_H`` frame of the strip, scaled up ``SCALE`` times (nearest: no made-up detail)."""
    box = (col * FRAME_W, row * FRAME_H, (col + 1) * FRAME_W, (row + 1) * FRAME_H)
    return strip.crop(box).resize((FRAME_W * SCALE, FRAME_H * SCALE), Image.NEAREST)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "capture.png"))
    a = p.parse_args(argv)
    strip = Image.open(RESULTS / "beer_dist_10min_frames.png").convert("RGB")
    meshes = Image.open(RESULTS / "beer_meshes.png").convert("RGB")
    rows = strip.height // FRAME_H
    mesh = meshes.crop(MESH_PANEL)
    mesh = mesh.crop(Image.eval(mesh.convert("L"), lambda v: 255 if v < 235 else 0).getbbox())  # trim the white
    mesh = mesh.resize((mesh.width * SCALE, mesh.height * SCALE), Image.LANCZOS)  # the frames' scale
    pad, title = 6, 22
    cell_w = FRAME_W * SCALE
    width = 3 * (cell_w + pad) + mesh.width + pad
    out = Image.new("RGB", (width, rows * (FRAME_H * SCALE + pad) + title), "white")
    draw = ImageDraw.Draw(out)
    for c, name in enumerate(("photo (held out)", "render", "inverse depth")):
        draw.text((c * (cell_w + pad) + 4, 4), name, fill="black")
    draw.text((3 * (cell_w + pad) + 4, 4), "TSDF mesh", fill="black")
    for r in range(rows):
        for c, col in enumerate((PHOTO, RENDER, DEPTH)):
            out.paste(frame(strip, r, col), (c * (cell_w + pad), title + r * (FRAME_H * SCALE + pad)))
    out.paste(mesh, (3 * (cell_w + pad), title + (out.height - title - mesh.height) // 2))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    out.save(a.out)
    print(f"wrote {a.out} ({out.width}x{out.height})")


if __name__ == "__main__":
    main()

"""Writing renders to disk: PFM depth maps, streamed videos (mp4 + gif), and results folders
that appear whole or not at all."""
import contextlib
import os
import re
import shutil
import tempfile

import imageio_ffmpeg
import numpy as np

from utils.errors import UserError


def write_pfm(path, data):
    """Write a single-channel float map as PFM (``Pf``, little-endian float32).

    Args:
        data: ``(H, W)`` array or tensor (e.g. a depth map), row 0 at the top of the image.
    PFM stores rows bottom to top, so the rows are flipped on disk; ``read_pfm`` flips them back.
    """
    d = data.detach().cpu().numpy() if hasattr(data, "detach") else np.asarray(data)
    d = np.ascontiguousarray(d, dtype="<f4")
    if d.ndim != 2:
        raise ValueError(f"write_pfm expects an (H, W) map, got shape {d.shape}")
    h, w = d.shape
    with open(path, "wb") as f:
        f.write(f"Pf\n{w} {h}\n-1.0\n".encode("ascii"))  # negative scale: little-endian
        f.write(np.flipud(d).tobytes())


def read_pfm(path):
    """Read a PFM file (``Pf`` grey or ``PF`` colour, either byte order).

    Returns: float32 ``(H, W)`` for ``Pf``, ``(H, W, 3)`` for ``PF``, row 0 at the top.
    """
    with open(path, "rb") as f:
        header = f.readline().strip()
        if header not in (b"Pf", b"PF"):
            raise ValueError(f"{path} is not a PFM file (header {header[:8]!r})")
        dims = f.readline()
        while dims.startswith(b"#"):  # tolerate comment lines some writers add
            dims = f.readline()
        m = re.match(rb"^\s*(\d+)\s+(\d+)\s*$", dims)
        if not m:
            raise ValueError(f"{path}: malformed PFM size line {dims!r}")
        w, h = int(m.group(1)), int(m.group(2))
        scale = float(f.readline().strip())
        dtype = "<f4" if scale < 0 else ">f4"
        channels = 3 if header == b"PF" else 1
        data = np.frombuffer(f.read(w * h * channels * 4), dtype=dtype)
    if data.size != w * h * channels:
        raise ValueError(f"{path}: truncated PFM ({data.size} of {w * h * channels} values)")
    shape = (h, w, 3) if channels == 3 else (h, w)
    return np.flipud(data.reshape(shape)).astype(np.float32)


def pad_even(frame):
    """Pad an ``(H, W, 3)`` uint8 frame to even H and W by repeating its last row/column
    (H.264 with yuv420p needs even sizes)."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


# ffmpeg filters for a gif: one palette per frame (streams, no whole-video buffering), no dithering
GIF_FILTER = "split[a][b];[a]palettegen=stats_mode=single:reserve_transparent=0[p];[b][p]paletteuse=new=1:dither=none"


class VideoWriter:
    """Stream frames into ``{stem}.mp4`` (H.264, yuv420p, sizes padded to even) and ``{stem}.gif``
    with ffmpeg (imageio-ffmpeg), holding no more than a frame in memory.

    Every appended frame is a frame of both files, identical neighbours included (Pillow's gif
    writer would merge those, so a still scene would lose frames). Use as a context manager;
    ``append`` takes ``(H, W, 3)`` uint8 RGB frames, all of one size.
    """

    def __init__(self, stem, fps=30):
        self.paths = (stem + ".mp4", stem + ".gif")
        self.fps = fps
        self.writers = None
        self.n_frames = 0

    def _open(self, w, h):
        common = dict(fps=self.fps, macro_block_size=1, ffmpeg_log_level="error")
        mp4 = imageio_ffmpeg.write_frames(self.paths[0], (w + w % 2, h + h % 2), codec="libx264",
                                          pix_fmt_out="yuv420p", quality=8, **common)
        gif = imageio_ffmpeg.write_frames(self.paths[1], (w, h), codec="gif", pix_fmt_out="pal8",
                                          output_params=["-vf", GIF_FILTER, "-loop", "0"], **common)
        for writer in (mp4, gif):
            writer.send(None)  # start ffmpeg
        return mp4, gif

    def append(self, frame):
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if self.writers is None:
            self.writers = self._open(frame.shape[1], frame.shape[0])
        self.writers[0].send(np.ascontiguousarray(pad_even(frame)))
        self.writers[1].send(frame)
        self.n_frames += 1

    def close(self):
        if self.writers is not None:
            for w in self.writers:
                w.close()
            self.writers = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


RESULTS_MARKER = "render_info.json"  # every folder eval.py writes has one


def check_out_dir(out_dir, marker=RESULTS_MARKER):
    """Refuse an output folder that ``publish`` could not safely replace. Raises UserError.

    A new path, an empty folder or an earlier results folder (it holds ``marker``) is fine;
    any other existing folder or file is left alone.
    """
    if not os.path.exists(out_dir):
        return
    if not os.path.isdir(out_dir):
        raise UserError(f"--out_dir {out_dir} is a file: choose a folder")
    if os.listdir(out_dir) and not os.path.isfile(os.path.join(out_dir, marker)):
        raise UserError(f"--out_dir {out_dir} holds files that are not results of eval.py: "
                        f"choose a new or empty folder")


@contextlib.contextmanager
def publish(out_dir):
    """Write into a temporary folder beside ``out_dir``; it becomes ``out_dir`` only when the block
    succeeds (an earlier ``out_dir`` is replaced). On any failure the temporary folder, and the
    parent folders this call created, are removed: nothing half-written is left.

    Yields: the temporary folder's path.
    """
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    created, p = [], parent
    while not os.path.exists(p):
        created.append(p)
        p = os.path.dirname(p)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.partial-", dir=parent)
    try:
        yield tmp
        old = None
        if os.path.exists(out_dir):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old-", dir=parent)
            os.replace(out_dir, os.path.join(old, "previous"))
        os.replace(tmp, out_dir)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for p in created:  # deepest first
            try:
                os.rmdir(p)
            except OSError:
                break
        raise

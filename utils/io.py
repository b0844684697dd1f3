"""Writing renders to disk: PFM depth maps, streamed videos (mp4 + gif), and results folders
that appear whole or not at all."""
import contextlib
import json
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


MANIFEST = ".eval_outputs.json"  # what the last eval.py run placed in a results folder


def check_out_dir(out_dir):
    """Refuse an ``--out_dir`` that is a file. Raises UserError. (A folder may hold other files,
    e.g. the mesh of extract_mesh.py: ``publish`` only replaces what eval.py wrote there.)"""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"--out_dir {out_dir} is a file: choose a folder")


SUMMARIES = ("render_info.json", "metrics.json")  # moved into place after the frames and videos


def write_json_atomic(path, obj, indent=None):
    """Write ``obj`` as JSON to ``path`` atomically (beside it, then renamed): a torn JSON file (a
    manifest that says what is done) would make every later run fail or misjudge."""
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=indent)
    os.replace(path + ".tmp", path)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


@contextlib.contextmanager
def publish(out_dir):
    """Write into a temporary folder beside ``out_dir``; its contents move into ``out_dir`` only
    when the block succeeds. There they replace what an earlier run placed (listed in a hidden
    manifest, so stale frames of a longer render go too) and leave every other file alone. A name
    clash with a file this code did not write is refused before anything moves. On any failure
    the temporary folder, and the parent folders this call created, are removed: nothing
    half-written is left.

    Yields: the temporary folder's path.
    """
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    created, p = [], out_dir
    while not os.path.exists(p):
        created.append(p)
        p = os.path.dirname(p)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.partial-", dir=parent)
    try:
        yield tmp
        manifest = os.path.join(out_dir, MANIFEST)
        previous = []
        if os.path.isfile(manifest):
            with open(manifest) as f:
                previous = json.load(f)
        entries = sorted(os.listdir(tmp))
        clash = [e for e in entries if os.path.lexists(os.path.join(out_dir, e)) and e not in previous]
        if clash:
            raise UserError(f"--out_dir {out_dir} already holds {', '.join(clash[:3])}, not written by eval.py: "
                            f"choose another folder")
        os.makedirs(out_dir, exist_ok=True)
        # a run killed while moving leaves a mix of old and new files: the manifest names both sets
        # first, so the next run replaces them all (no clash) rather than refusing its own files
        write_json_atomic(manifest, sorted(set(previous) | set(entries)))
        for e in previous:
            _remove(os.path.join(out_dir, e))
        for e in sorted(entries, key=lambda e: e in SUMMARIES):  # the summaries last: present means complete
            os.replace(os.path.join(tmp, e), os.path.join(out_dir, e))
        write_json_atomic(manifest, entries)
        os.rmdir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for p in created:  # deepest first; out_dir itself may never have been made
            try:
                if os.path.isdir(p):
                    os.rmdir(p)
            except OSError:  # not empty: something else lives there now
                break
        raise


STAGE_PREFIX = ".partial-"  # staging folders of ``staged_files``: hidden, never taken for outputs


@contextlib.contextmanager
def staged_files(folder, stem, last=()):
    """Write a script's output files whole or not at all (extract_mesh.py).

    Yields a temporary folder beside the outputs (``folder/.{stem}.partial-XXXX``): write every file
    there under its final name. When the block succeeds each file moves into ``folder`` by a rename
    (atomic on one file system), those named in ``last`` last, so that when they exist, so does
    everything else (a later run may take them as the sign of a finished run). On any failure the
    staging folder, and the folders this call created, are removed. A run killed outright leaves
    only its hidden staging folder, which the next call with the same ``stem`` removes; files of
    other names in ``folder`` are never touched.
    """
    folder = os.path.abspath(folder)
    created, p = [], folder
    while not os.path.exists(p):
        created.append(p)
        p = os.path.dirname(p)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserError(f"{folder} is a file: the outputs need a folder there")
    os.makedirs(folder, exist_ok=True)
    prefix = f".{stem}{STAGE_PREFIX}"
    for stale in os.listdir(folder):  # left by a killed run
        if stale.startswith(prefix):
            shutil.rmtree(os.path.join(folder, stale), ignore_errors=True)
    tmp = tempfile.mkdtemp(prefix=prefix, dir=folder)
    try:
        yield tmp
        last = list(last)
        names = sorted(os.listdir(tmp), key=lambda e: (e in last, last.index(e) if e in last else 0, e))
        for e in names:
            if os.path.isdir(os.path.join(folder, e)):  # os.replace cannot put a file over a folder
                _remove(os.path.join(folder, e))
            os.replace(os.path.join(tmp, e), os.path.join(folder, e))
        os.rmdir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for p in created:  # deepest first
            try:
                os.rmdir(p)
            except OSError:  # not empty: something else lives there now
                break
        raise

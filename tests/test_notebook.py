"""test.ipynb runs top to bottom on a tiny checkpoint (so it cannot rot), and shows what it promises."""
import json
import re

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT, run_script


def execute(env, monkeypatch):
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))  # the kernel inherits this process's environment
    nb = nbformat.read(ROOT / "test.ipynb", as_version=4)
    # "python3" is the kernel of the interpreter running the tests (ipykernel's own spec)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    return nb


def outputs(nb, kind):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == kind]


def test_notebook_runs_and_shows_view(demo_ckpt, demo_dir, tmp_path, monkeypatch):
    ckpt, _ = demo_ckpt
    # only the checkpoint and the view: scene, dataset and size come from the checkpoint
    nb = execute({"CKPT_PATH": ckpt, "SPLIT": "val", "VIEW": 1}, monkeypatch)
    assert not outputs(nb, "error")
    images = [o for o in outputs(nb, "display_data") if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the 4-panel view (GT | prediction | depth | opacity) and the ray's weights
    assert all(c.cell_type == "markdown" for c in nb.cells[::2])  # every step is explained first

    # the PSNR the notebook prints for view 1 is the one eval.py reports for that view
    text = "".join(o.get("text", "") for o in outputs(nb, "stream"))
    m = re.search(r"PSNR ([\d.]+) dB", text)
    assert m, text
    run_script("eval.py", "--ckpt_path", ckpt, "--split", "val", "--out_dir", tmp_path / "val", "--no_depth",
               cwd=tmp_path)
    per_view = json.loads((tmp_path / "val" / "metrics.json").read_text())["per_view"]
    assert float(m.group(1)) == pytest.approx(per_view[1]["psnr"], abs=0.01)


def test_notebook_is_committed_clean():
    """The committed notebook carries no outputs (they would go stale) and is valid nbformat v4."""
    nb = nbformat.read(ROOT / "test.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")

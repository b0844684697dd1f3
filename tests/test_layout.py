"""The import rules between the project's parts, read from the code with ``ast`` (nothing is run).

A part is a top-level folder (``models``, ``datasets``, ``export``, ``process_data``, ``utils``, ...)
or a top-level module (``train``, ``metrics``, ...). The rules keep the arrows one way:
the datasets and the networks do not know each other, no library part reaches back into an
entry-point script, ``utils`` holds helpers that know nothing of the rest, and the losses and
metrics work on tensors, not on models.
"""
import ast
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# entry points and the parser they share: library code must not import them
SCRIPTS = {"train", "eval", "opt", "extract_mesh", "imgs2poses", "save_weights_only", "viewer"}
FORBIDDEN = {
    "models": {"datasets"} | SCRIPTS,
    "datasets": {"models"} | SCRIPTS,
    "export": SCRIPTS,
    "process_data": SCRIPTS,
    "viewer": SCRIPTS - {"opt"},  # the viewer package (its flags extend the shared parser)
    "utils": {"models", "datasets", "export", "process_data"} | SCRIPTS,
    "metrics": {"models"},
    "losses": {"models"},
}
SKIP_DIRS = {"tests", "__pycache__"}


def python_files(root):
    """Every ``.py`` file under ``root`` (paths relative to it), tests and hidden folders aside."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        for name in sorted(files):
            if name.endswith(".py"):
                yield Path(folder, name).relative_to(root)


def imported_parts(tree, rel):
    """``(line, top-level name, import as written)`` for every import in the module, function-local
    ones included. Relative imports resolve to the file's own folder."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0], f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom):
            names = ", ".join(a.name for a in node.names)
            written = f"from {'.' * node.level}{node.module or ''} import {names}"
            if node.level:
                base = rel.parts[:-1][: len(rel.parts) - node.level]
                top = base[0] if base else (node.module or "").split(".")[0]
            else:
                top = node.module.split(".")[0]
            yield node.lineno, top, written


def offenders(root):
    """``"file:line: import ..."`` for each import that breaks a rule in ``FORBIDDEN``."""
    found = []
    for rel in python_files(root):
        part = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        banned = FORBIDDEN.get(part)
        if not banned:
            continue
        tree = ast.parse((Path(root) / rel).read_text(), filename=str(rel))
        for line, top, written in imported_parts(tree, rel):
            if top in banned and top != part:
                who = f"{part}/" if len(rel.parts) > 1 else rel.name
                found.append(f"{rel.as_posix()}:{line}: {written}  ({who} must not import {top})")
    return sorted(found)


def test_no_forbidden_imports():
    bad = offenders(ROOT)
    assert not bad, "imports that cross the layout's rules:\n" + "\n".join(bad)


def test_checker_names_planted_offenders(tmp_path):
    """A tree with one bad import per kind of rule (and allowed ones): each bad one is named."""
    files = {
        "models/a.py": "import torch\nfrom datasets.ray_utils import get_rays\n",
        "datasets/b.py": "from utils.rays import Rays\n\ndef f():\n    import models.rendering\n",
        "export/c.py": "from models.rendering import query_field\nfrom opt import get_parser\n",
        "process_data/d.py": "from datasets.colmap import read_model\nimport imgs2poses\n",
        "utils/e.py": "from . import errors\nfrom export.mesh import x\n",
        "metrics.py": "from models import build_fields\n",
        "losses.py": "import torch\n",
        "train.py": "from models import build_fields\nfrom datasets import make_dataset\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    bad = offenders(tmp_path)
    assert bad == [
        "datasets/b.py:4: import models.rendering  (datasets/ must not import models)",
        "export/c.py:2: from opt import get_parser  (export/ must not import opt)",
        "metrics.py:1: from models import build_fields  (metrics.py must not import models)",
        "models/a.py:2: from datasets.ray_utils import get_rays  (models/ must not import datasets)",
        "process_data/d.py:2: import imgs2poses  (process_data/ must not import imgs2poses)",
        "utils/e.py:2: from export.mesh import x  (utils/ must not import export)",
    ], bad

"""The import rules between the project's parts, read from the code with ``ast`` (nothing is run).

A part is a top-level folder (``models``, ``datasets``, ``export``, ``process_data``, ``utils``, ...)
or a top-level module (``train``, ``metrics``, ...). The rules keep the arrows one way:
the datasets and the networks do not know each other, no library part reaches back into an
entry-point script, ``utils`` holds helpers that know nothing of the rest, and the losses and
metrics work on tensors, not on models. Two more rules hold for every module: the product (all
but ``benchmarks/`` and ``tests/``) never imports ``benchmarks``, and no modules import each other
in a cycle (``models.rendering`` -> ``models.marching`` -> ``models.rendering``), a package's
``__init__`` counting as the package.
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
NOT_PRODUCT = {"benchmarks"}  # may import the product; the product may not import it


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


def write_tree(root, files):
    """Write ``{relative path: text}`` under ``root``."""
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


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
    write_tree(tmp_path, files)
    bad = offenders(tmp_path)
    assert bad == [
        "datasets/b.py:4: import models.rendering  (datasets/ must not import models)",
        "export/c.py:2: from opt import get_parser  (export/ must not import opt)",
        "metrics.py:1: from models import build_fields  (metrics.py must not import models)",
        "models/a.py:2: from datasets.ray_utils import get_rays  (models/ must not import datasets)",
        "process_data/d.py:2: import imgs2poses  (process_data/ must not import imgs2poses)",
        "utils/e.py:2: from export.mesh import x  (utils/ must not import export)",
    ], bad


# ---------------------------------------------------------------- the product does not import benchmarks


def benchmark_importers(root):
    """``"file:line: import ..."`` for each import of ``benchmarks`` in a product file (function-local
    ones included); ``benchmarks/`` and ``tests/`` themselves may import it."""
    found = []
    for rel in python_files(root):
        if rel.parts[0] in NOT_PRODUCT:
            continue
        tree = ast.parse((Path(root) / rel).read_text(), filename=str(rel))
        for line, top, written in imported_parts(tree, rel):
            if top in NOT_PRODUCT:
                found.append(f"{rel.as_posix()}:{line}: {written}  (the product must not import {top})")
    return sorted(found)


def test_product_does_not_import_benchmarks():
    bad = benchmark_importers(ROOT)
    assert not bad, "product files that import the benchmarks:\n" + "\n".join(bad)


def test_benchmark_checker_names_planted_offenders(tmp_path):
    files = {
        "train.py": "import benchmarks.plots\n",
        "export/report.py": "import os\n\ndef plot():\n    from benchmarks.plots import plot_psnr_curves\n",
        "utils/u.py": "from benchmarks import plots\n",
        "models/m.py": "from utils.visualization import plot_psnr_curves\n",  # allowed
        "benchmarks/b.py": "from benchmarks.plots import plot_psnr_curves\nimport train\n",  # allowed
        "tests/test_b.py": "import benchmarks.b\n",  # allowed
    }
    write_tree(tmp_path, files)
    assert benchmark_importers(tmp_path) == [
        "export/report.py:4: from benchmarks.plots import plot_psnr_curves  (the product must not import benchmarks)",
        "train.py:1: import benchmarks.plots  (the product must not import benchmarks)",
        "utils/u.py:1: from benchmarks import plots  (the product must not import benchmarks)",
    ]
    for rel in ("train.py", "export/report.py", "utils/u.py"):
        (tmp_path / rel).unlink()
    assert benchmark_importers(tmp_path) == []


# ---------------------------------------------------------------- no import cycles


def module_name(rel):
    """``models/rendering.py`` -> ``models.rendering``; a package's ``__init__.py`` -> the package."""
    parts = rel.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree, rel, modules):
    """``(line, module, import as written)`` for every import of a module in ``modules`` (the project's),
    function-local ones included. ``from P import n`` imports the module ``P.n`` when there is one,
    else ``P`` (a name that ``P``, maybe a package's ``__init__``, defines or re-exports)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                known = [".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in modules]
                if known:  # the longest part of the dotted name that is a project module
                    yield node.lineno, known[0], f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom):
            written = f"from {'.' * node.level}{node.module or ''} import {', '.join(a.name for a in node.names)}"
            if node.level:  # relative to the file's package
                package = list(rel.parts[:-1])
                base = package[: len(package) - node.level + 1]
                source = ".".join(base + (node.module.split(".") if node.module else []))
            else:
                source = node.module
            for target in dict.fromkeys(f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source
                                        for a in node.names):
                if target in modules:
                    yield node.lineno, target, written


def import_graph(root):
    """``{module: {imported module: "file:line: import ..."}}`` over the project's modules (the first
    import of each module), ``tests/`` aside."""
    files = {module_name(rel): rel for rel in python_files(root)}
    graph = {}
    for name, rel in files.items():
        tree = ast.parse((Path(root) / rel).read_text(), filename=str(rel))
        edges = graph.setdefault(name, {})
        for line, target, written in imported_modules(tree, rel, files):
            if target != name:
                edges.setdefault(target, f"{rel.as_posix()}:{line}: {written}")
    return graph


def shortest_cycle(graph, start):
    """The shortest ``[start, ..., start]`` along ``graph``'s edges, or None (breadth first)."""
    parent, queue = {start: None}, [start]
    while queue:
        following = []
        for node in queue:
            for target in sorted(graph.get(node, {})):
                if target == start:
                    path = []
                    while node is not None:
                        path.append(node)
                        node = parent[node]
                    return path[::-1] + [start]
                if target not in parent:
                    parent[target] = node
                    following.append(target)
        queue = following
    return None


def import_cycles(root):
    """``"a -> b -> a  (where each import is)"`` for the shortest cycle through each module (in name
    order) that is on no cycle named before it."""
    graph = import_graph(root)
    found, named = [], set()
    for start in sorted(graph):
        cycle = None if start in named else shortest_cycle(graph, start)
        if cycle:
            named.update(cycle)
            where = " | ".join(graph[a][b] for a, b in zip(cycle, cycle[1:]))
            found.append(f"{' -> '.join(cycle)}  ({where})")
    return found


def test_no_import_cycles():
    cycles = import_cycles(ROOT)
    assert not cycles, "modules that import each other:\n" + "\n".join(cycles)


def test_cycle_checker_names_planted_cycles(tmp_path):
    """Cycles through a function-local import, a package ``__init__``'s re-export and relative imports
    are each named once; a package that re-exports its own modules, and imports of them, are not cycles."""
    files = {
        "p/__init__.py": "",
        "p/one.py": "from p.two import g\n",
        "p/two.py": "def g():\n    from p import one\n",
        "q/__init__.py": "from q.core import run\nVERSION = 1\n",
        "q/core.py": "from q import VERSION\n\ndef run():\n    pass\n",
        "r/__init__.py": "",
        "r/a.py": "from .b import x\n",
        "r/b.py": "x = 1\n\ndef f():\n    from . import a\n",
        "ok/__init__.py": "from ok.leaf import f\nfrom .other import h\n",
        "ok/leaf.py": "import torch\n\ndef f():\n    pass\n",
        "ok/other.py": "from ok.leaf import f\n\ndef h():\n    pass\n",
        "main.py": "import ok\nfrom ok.leaf import f\nfrom p.one import g\nimport q\n",
    }
    write_tree(tmp_path, files)
    assert import_cycles(tmp_path) == [
        "p.one -> p.two -> p.one  (p/one.py:1: from p.two import g | p/two.py:2: from p import one)",
        "q -> q.core -> q  (q/__init__.py:1: from q.core import run | q/core.py:1: from q import VERSION)",
        "r.a -> r.b -> r.a  (r/a.py:1: from .b import x | r/b.py:4: from . import a)",
    ]
    for rel in ("p/two.py", "q/core.py", "r/b.py"):
        (tmp_path / rel).write_text("def g():\n    pass\n")
    assert import_cycles(tmp_path) == []


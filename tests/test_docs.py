"""The README and docs/ as a user reads them: short, every link resolves, every command is one the
project's scripts take.

A command is a line of a fenced block, or an inline code span, that runs one of the project's
scripts (``train.py ...``, ``.venv/bin/python eval.py ...``, ``python -m datasets.demo_scene ...``).
Each one is checked against its script's own ``-h``: the script exists, takes every flag written,
and a flag with choices is given one of them. The commands the pages lead with are also run end to end
on tiny settings by their modules' tests (``doc_section`` below is how those tests find them).
"""
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
INLINE = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^( *)```[^\n]*\n(.*?)^\1```", re.S | re.M)


def doc_section(page, heading):
    """The text of ``page`` (a path under the project) from the line ``heading`` to the next heading of
    the same or a higher level. A missing page or heading fails the calling test with its name."""
    text = (ROOT / page).read_text()
    lines = text.splitlines()
    level = len(heading) - len(heading.lstrip("#"))
    try:
        start = lines.index(heading)
    except ValueError:
        pytest.fail(f"{page} has no heading {heading!r}")
    end = next((i for i in range(start + 1, len(lines))
                if re.match(rf"#{{1,{level}}} ", lines[i]) and not in_fence(lines, i)), len(lines))
    return "\n".join(lines[start:end])


def in_fence(lines, i):
    """Whether line ``i`` is inside a fenced block (a ``# comment`` there is no heading)."""
    return sum(1 for ln in lines[:i] if ln.lstrip().startswith("```")) % 2 == 1


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped (``_`` and ``-`` kept), spaces to ``-``."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page):
    lines = page.read_text().splitlines()
    return {slug(ln.lstrip("#")) for i, ln in enumerate(lines) if re.match(r"#{1,6} ", ln) and not in_fence(lines, i)}


def relative_links(page):
    """``(target, anchor)`` for every link of ``page`` that is not a web address."""
    text = FENCE.sub("", page.read_text())
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        yield path, anchor


def test_readme_is_a_short_page():
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines: the depth belongs in docs/"


def test_docs_pages_are_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    for page in PAGES[1:]:
        assert f"](docs/{page.name})" in readme, f"docs/{page.name} is not linked from the README"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page):
    bad = []
    for path, anchor in relative_links(page):
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            bad.append(f"{path}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            bad.append(f"{path}#{anchor}: no such heading in {target.name}")
    assert not bad, f"{page.name}: " + "; ".join(bad)


def test_link_checker_finds_planted_faults(tmp_path):
    """A page with a missing file and a missing heading is faulted; its good links pass."""
    (tmp_path / "b.md").write_text("# Title\n\n## The fast path (`--fast`)\n```bash\n# not a heading\n```\n")
    page = tmp_path / "a.md"
    page.write_text("[ok](b.md#the-fast-path---fast) [x](missing.md) [y](b.md#not-a-heading) "
                    "[web](https://example.com/x.md)\n```\n[in code](nowhere.md)\n```\n")
    links = list(relative_links(page))
    assert links == [("b.md", "the-fast-path---fast"), ("missing.md", ""), ("b.md", "not-a-heading")]
    assert anchors(tmp_path / "b.md") == {"title", "the-fast-path---fast"}


# ---------------------------------------------------------------- the commands


def commands(text):
    """``(script, args)`` for each command in ``text`` that runs a script of the project. ``script`` is a
    path relative to the project (``-m pkg.mod`` becomes ``pkg/mod.py``); ``args`` are the words after
    it, with the optional ``[...]`` brackets of a usage line and ``...`` placeholders dropped."""
    fenced = [ln for block in FENCE.findall(text) for ln in block[1].replace("\\\n", " ").splitlines()]
    inline = INLINE.findall(FENCE.sub("", text))
    found = []
    for line in fenced + inline:
        try:
            words = shlex.split(line, comments=True)
        except ValueError:  # an inline span that is not a command, e.g. an unmatched quote
            continue
        for k, w in enumerate(words):
            if w == "-m" and k + 1 < len(words):
                script, rest = words[k + 1].replace(".", "/") + ".py", words[k + 2:]
                if not (ROOT / script).is_file():  # another package's module (pytest, pip)
                    break
            elif w.endswith(".py") and not w.startswith(("-", "$")):
                script, rest = w, words[k + 1:]
            else:
                continue
            args = [a.strip("[]") for a in rest if a.strip("[]") not in ("", "...")]
            if args or line in fenced:  # an inline file name alone (`models/ngp.py`) is no command
                found.append((script, args))
            break
    return found


@lru_cache(maxsize=None)
def help_text(script):
    """``script -h`` as the user would run it from the project root (empty when it fails)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # as `python -m datasets.demo_scene` finds the project
    proc = subprocess.run([sys.executable, script, "-h"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    return proc.stdout if proc.returncode == 0 else ""


def flag_faults(script, args):
    """What is wrong with ``script args`` against the script's help: a flag it does not take, a value
    outside a flag's choices. ``capture.py`` hands flags it does not know to ``train.py``; a benchmark
    that runs training takes ``train.py``'s flags after a bare ``--``."""
    if not (ROOT / script).is_file():
        return [f"{script}: no such script"]
    if "--" in args:
        cut = args.index("--")
        return flag_faults(script, args[:cut]) + flag_faults("train.py", args[cut + 1:])
    helps = [help_text(script)] + ([help_text("train.py")] if script == "capture.py" else [])
    if not helps[0]:
        return [f"{script} -h failed"]
    faults = []
    for k, word in enumerate(args):
        if not re.fullmatch(r"--\w[\w-]*(=.*)?", word):  # a quoted value like "--unbounded --fast" is no flag
            continue
        flag = word.split("=")[0]
        if not any(re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", h) for h in helps):
            faults.append(f"{script}: no flag {flag}")
            continue
        for h in helps:
            m = re.search(rf"(?<![\w-]){re.escape(flag)} \{{([^}}]*)\}}", h)
            value = word.split("=", 1)[1] if "=" in word else (args[k + 1] if k + 1 < len(args) else None)
            if m and value is not None and value not in m.group(1).split(","):
                faults.append(f"{script}: {flag} {value} is not one of {{{m.group(1)}}}")
    return faults


def all_commands():
    return [(page, script, args) for page in PAGES for script, args in commands(page.read_text())]


def test_every_command_in_the_pages_is_one_the_scripts_take():
    found = all_commands()
    scripts = sorted({s for _, s, _ in found if (ROOT / s).is_file()})
    assert {"train.py", "eval.py", "extract_mesh.py", "viewer.py", "capture.py", "imgs2poses.py"} <= set(scripts)
    with ThreadPoolExecutor(2) as pool:  # the helps, two at a time (each imports torch)
        list(pool.map(help_text, scripts + ["train.py"]))
    faults = [f"{page.name}: {f}" for page, script, args in found for f in flag_faults(script, args)]
    assert not faults, "\n".join(faults)
    print(f"{len(found)} commands of {len(scripts)} scripts checked")


def test_command_checker_finds_planted_faults():
    text = ("```bash\n.venv/bin/python train.py --root_dir X \\\n   --no_such_flag 1   # a comment --bogus\n"
            "python eval.py --ckpt_path C --split sideways\n```\n"
            "and inline: `train.py --fast [--max_time 15] ...` and `nowhere.py --x 1`, "
            "`python -m datasets.demo_scene data/d --size 32`, `--img_wh W H` alone is no command.\n")
    found = commands(text)
    assert found == [("train.py", ["--root_dir", "X", "--no_such_flag", "1"]),
                     ("eval.py", ["--ckpt_path", "C", "--split", "sideways"]),
                     ("train.py", ["--fast", "--max_time", "15"]),
                     ("nowhere.py", ["--x", "1"]),
                     ("datasets/demo_scene.py", ["data/d", "--size", "32"])]
    faults = [f for script, args in found for f in flag_faults(script, args)]
    assert faults == ["train.py: no flag --no_such_flag",
                      "eval.py: --split sideways is not one of {train,val,test,path}",
                      "nowhere.py: no such script"], faults


def test_make_targets_in_the_pages_exist():
    makefile = (ROOT / "Makefile").read_text()
    for page in PAGES:
        for block in FENCE.findall(page.read_text()):
            for line in block[1].splitlines():
                m = re.match(r"\s*make (\w[\w-]*)", line)
                if m:
                    assert re.search(rf"^{m.group(1)}:", makefile, re.M), f"{page.name}: no make target {m.group(1)}"


def test_flags_after_a_bare_double_dash_are_train_py_s():
    """benchmarks/steps_side_by_side.py hands what follows ``--`` to train.py: checked against train.py."""
    script = "benchmarks/steps_side_by_side.py"
    assert flag_faults(script, ["--tag", "x", "--", "--fast", "--img_wh", "8", "8"]) == []
    assert flag_faults(script, ["--fast", "--", "--no_such_flag"]) == [f"{script}: no flag --fast",
                                                                       "train.py: no flag --no_such_flag"]

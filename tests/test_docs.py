"""Every full example in docs/ runs.

A fenced ```python block whose first line is ``# runnable`` is a full example: it is run as
a script, in a fresh folder, and must exit with code 0. Other blocks are fragments.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
PAGES = ("index.md", "lifecycle.md", "deep-state.md", "async-effects.md", "guards.md", "storage.md")
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
MARK = "# runnable"


def runnable_blocks() -> list[tuple[str, str]]:
    blocks = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            code = match.group(1)
            if code.lstrip("\n").startswith(MARK):
                line = text.count("\n", 0, match.start()) + 1
                blocks.append((f"{page.name}:{line}", code))
    return blocks


BLOCKS = runnable_blocks()


def test_pages_exist_and_have_examples():
    for name in PAGES:
        assert (DOCS / name).is_file(), name
        assert any(block_id.startswith(name + ":") for block_id, _ in BLOCKS), f"{name} has no runnable example"


@pytest.mark.parametrize("page", sorted(p.name for p in (DOCS / "plugins").glob("*.md") if p.name != "writing.md"))
def test_plugin_pages_have_an_example_and_an_install_line(page):
    text = (DOCS / "plugins" / page).read_text(encoding="utf-8")
    assert any(block_id.startswith(page + ":") for block_id, _ in BLOCKS), f"{page} has no runnable example"
    stem = page.removesuffix(".md")
    assert re.search(rf"pip install .*clp-{stem}\b", text), f"{page} does not show how to install clp-{stem}"


def test_links_between_pages_resolve():
    for page in DOCS.rglob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).is_file(), f"{page.name} links to missing {target}"


@pytest.mark.parametrize("code", [c for _, c in BLOCKS], ids=[i for i, _ in BLOCKS])
def test_runnable_block(code, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

"""The documentation site builds with ``mkdocs build --strict`` (a broken link, a page left out
of the navigation or an API reference that does not resolve fails), every page under docs/ is
in the navigation and linked from docs/index.md, and the API reference lists the public names.

Marked ``docs_site``; needs the ``docs`` extra (scripts/test installs it); CLP_SKIP_SLOW=1 skips.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.docs_site

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))


def _nav_pages(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in _nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return []


def _config() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")  # comes with mkdocs
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_every_page_is_in_the_navigation_once() -> None:
    nav = _nav_pages(_config()["nav"])
    assert sorted(nav) == PAGES, {"not in nav": sorted(set(PAGES) - set(nav)), "missing": sorted(set(nav) - set(PAGES))}


def test_index_links_every_page() -> None:
    text = (DOCS / "index.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", text))
    assert set(PAGES) - {"index.md"} <= linked, sorted(set(PAGES) - {"index.md"} - linked)


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("CLP_SKIP_SLOW") == "1":
        pytest.skip("CLP_SKIP_SLOW=1")
    try:
        import mkdocs  # noqa: F401
        import mkdocstrings  # noqa: F401
    except ImportError:
        pytest.fail("mkdocs is missing: install clp-core[docs] (scripts/test does)")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                           cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stdout}\n{build.stderr}"
    return out


def test_site_builds_strict_with_every_page(site: Path) -> None:
    for page in PAGES:
        html = "index.html" if page == "index.md" else page.removesuffix(".md") + "/index.html"
        assert (site / html).is_file(), html


@pytest.mark.parametrize(("page", "module"), [("clp_core", "clp_core"), ("errors", "clp_core.errors"),
                                              ("ops", "clp_core.ops"), ("testing", "clp_core.testing.storage")])
def test_api_reference_lists_the_public_names(site: Path, page: str, module: str) -> None:
    import importlib
    import inspect

    html = (site / "reference" / page / "index.html").read_text(encoding="utf-8")
    mod = importlib.import_module(module)
    names = [n for n in getattr(mod, "__all__", vars(mod)) if not n.startswith("_")]
    # what the module itself offers (not typing names an __all__ may have swept in), submodules aside
    offered = [n for n in names if not inspect.ismodule(getattr(mod, n))
               and getattr(getattr(mod, n), "__module__", module).startswith("clp_core")]
    missing = [n for n in offered if f'id="{module}.{n}"' not in html]
    assert not missing, missing


def test_broken_link_fails_the_build(tmp_path: Path) -> None:
    """The check is real: the same configuration with one bad link does not build."""
    if os.environ.get("CLP_SKIP_SLOW") == "1":
        pytest.skip("CLP_SKIP_SLOW=1")
    pytest.importorskip("mkdocs")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\nSee [the missing page](missing.md).\n", encoding="utf-8")
    (tmp_path / "mkdocs.yml").write_text("site_name: t\nstrict: true\nnav:\n  - Home: index.md\n", encoding="utf-8")
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert build.returncode != 0 and "missing.md" in build.stderr

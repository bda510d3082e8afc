"""One plugin API: the first-party plugins import from ``clp_core`` and ``clp_core.plugin_api``
only, so the core's modules can move without breaking them."""

from __future__ import annotations

import ast
from pathlib import Path

import clp_core.plugin_api as plugin_api

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
ALLOWED = {"clp_core", "clp_core.plugin_api"}


def core_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("clp_core"):
            found.append((node.lineno, node.module or ""))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("clp_core")]
    return found


def plugin_sources() -> list[Path]:
    return sorted(p for p in PLUGINS.glob("*/clp_*/**/*.py") if "build" not in p.parts)


def test_first_party_plugins_import_only_the_plugin_api() -> None:
    sources = plugin_sources()
    assert len(sources) > 30  # every plugin's package is looked at
    outside = [f"{p.relative_to(PLUGINS)}:{line} imports {module}"
               for p in sources for line, module in core_imports(p) if module not in ALLOWED]
    assert outside == []


def test_the_check_sees_an_internal_import(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text("from clp_core.state import plain\nimport clp_core.lifecycle.runtime\nfrom clp_core import ops\n")
    assert core_imports(source) == [(1, "clp_core.state"), (2, "clp_core.lifecycle.runtime"), (3, "clp_core")]


def test_every_name_of_the_plugin_api_resolves() -> None:
    for name in plugin_api.__all__:
        assert getattr(plugin_api, name) is not None, name
    assert plugin_api.StorageAdapterSuite.__module__ == "clp_core.testing.storage"

"""Each plugin installs alone next to clp-core in a fresh virtual environment, is discovered
through its entry point and imports (slow: one venv per plugin; CLP_SKIP_SLOW=1 skips)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").is_file())

CHECK = """
import importlib, json, sys
from clp_core.plugins import plugin_statuses
statuses = {s.name: s for s in plugin_statuses()}
if sys.argv[2]:  # a library plugin (clp-llm): no hooks, so no entry point; it imports
    importlib.import_module(sys.argv[2])
    print(json.dumps({"names": sorted(statuses), "error": None, "distribution": sys.argv[1]}))
else:
    me = statuses[sys.argv[1]]
    print(json.dumps({"names": sorted(statuses), "enabled": me.enabled, "error": me.error,
                      "distribution": me.distribution}))
"""


def _library_module(plugin: str) -> str:
    """The module of a plugin without a ``clp`` entry point (it implements no hooks), or ''."""
    text = (ROOT / "plugins" / plugin / "pyproject.toml").read_text(encoding="utf-8")
    return "" if "[project.entry-points.clp]" in text else plugin.replace("-", "_")


@pytest.mark.parametrize("plugin", PLUGINS)
def test_plugin_installs_alone_with_clp_core(plugin: str, tmp_path: Path) -> None:
    if os.environ.get("CLP_SKIP_SLOW") == "1":
        pytest.skip("CLP_SKIP_SLOW=1")
    venv = tmp_path / "venv"
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv:  # the same install as pip's, in seconds
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
        pip = [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python")]
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    result = subprocess.run([*pip, str(ROOT), str(ROOT / "plugins" / plugin)], capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr
    library = _library_module(plugin)
    check = subprocess.run([str(venv / "bin" / "python"), "-c", CHECK, plugin, library], capture_output=True,
                           text=True, cwd=tmp_path, timeout=120)
    assert check.returncode == 0, check.stderr
    found = json.loads(check.stdout)
    assert found["error"] is None and found["distribution"] == plugin
    expected = [] if library else [plugin]
    assert found["names"] == expected  # nothing else came along (built-in plugins are not entry points)

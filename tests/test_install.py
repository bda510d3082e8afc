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
import json, sys
from clp_core.plugins import plugin_statuses
statuses = {s.name: s for s in plugin_statuses()}
me = statuses[sys.argv[1]]
print(json.dumps({"names": sorted(statuses), "enabled": me.enabled, "error": me.error,
                  "distribution": me.distribution}))
"""


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
    check = subprocess.run([str(venv / "bin" / "python"), "-c", CHECK, plugin], capture_output=True, text=True,
                           cwd=tmp_path, timeout=120)
    assert check.returncode == 0, check.stderr
    found = json.loads(check.stdout)
    assert found["error"] is None and found["distribution"] == plugin
    assert found["names"] == [plugin]  # nothing else came along (built-in plugins are not entry points)

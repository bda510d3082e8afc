"""Replays docs/plugins/writing.md as a new user would: files written from the page, commands
run in a fresh virtual environment (slow: it creates a venv and installs clp-core into it)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "plugins" / "writing.md"
BLOCK = re.compile(r"<!-- (file: (?P<file>\S+)|commands) -->\n```\w*\n(?P<body>.*?)```", re.S)


def test_the_walkthrough_works_in_a_fresh_venv(tmp_path: Path) -> None:
    if os.environ.get("CLP_SKIP_SLOW") == "1":
        pytest.skip("CLP_SKIP_SLOW=1")
    outputs: list[str] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLP_", "VIRTUAL_ENV", "PYTHONPATH"))}
    for match in BLOCK.finditer(PAGE.read_text()):
        body = match["body"]
        if match["file"]:
            target = tmp_path / match["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body)
            continue
        for line in body.strip().splitlines():
            line = line.replace("/path/to/clp", str(ROOT)).replace("python3 -m venv", f"{sys.executable} -m venv")
            assignments = {}
            words = shlex.split(line)
            while "=" in words[0] and not words[0].startswith("-"):
                name, _, value = words.pop(0).partition("=")
                assignments[name] = value
            result = subprocess.run(words, cwd=tmp_path, env={**env, **assignments}, capture_output=True,
                                    text=True, timeout=600)
            assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
            outputs.append(result.stdout)
    listing = subprocess.run([str(tmp_path / "venv/bin/clp"), "plugins", "--json"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, check=True)
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    hello = rows["clp-hello"]
    assert (hello["distribution"], hello["version"], hello["enabled"]) == ("clp-hello", "0.1.0", True)
    assert hello["hooks"] == ["after_commit", "on_guard_deny"]
    demo_runs = [o for o in outputs if "committed" in o]
    assert demo_runs and all(o.count("committed") == 1 for o in demo_runs)  # the disabled runtime printed nothing
    assert demo_runs[0] == "hello: increment committed ['count']\nhello: guard no_negative said no to increment\n"
    assert "bonjour: increment committed ['count']" in demo_runs[-1]  # options from clp.toml
    assert any(re.search(r"\d+ passed", o) for o in outputs)

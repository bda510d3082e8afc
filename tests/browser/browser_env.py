"""Where the browser test finds its tools, and the wheels it loads into Pyodide.

Used by scripts/setup-browser (``python tests/browser/browser_env.py wheels``) and by the
tests (loaded by path: the tests run with ``--import-mode=importlib``). Everything lives in
``.browser-cache/`` at the repository root (gitignored):

- ``node_modules/pyodide``, ``node_modules/playwright-core``: from the npm registry;
- ``wheels/``: clp-core built from this tree, its pure-Python dependencies from PyPI (the
  versions installed in the venv running this, so the browser runs what the CPython tests
  ran), and micropip from PyPI at the version Pyodide's lock file names (the npm package
  ships no packages; Pyodide's own micropip wheel is a rebuild, so its sha256 differs);
  ``wheels/manifest.json`` lists them in install order.

Only the standard library and ``packaging`` (which pytest brings) are imported here.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("CLP_BROWSER_CACHE", ROOT / ".browser-cache"))
NODE_MODULES = CACHE / "node_modules"
PYODIDE_DIR = NODE_MODULES / "pyodide"
PLAYWRIGHT_DIR = NODE_MODULES / "playwright-core"
WHEELS = CACHE / "wheels"
MANIFEST = WHEELS / "manifest.json"
CHROMIUM = Path(os.environ.get("CLP_CHROMIUM", "/usr/bin/chromium"))

# What clp-core's wheel is built from: a change to any of these makes the wheel stale.
_SOURCES = ("pyproject.toml", "README.md")
_SOURCE_DIRS = ("clp_core",)


def source_hash() -> str:
    """A digest of the files clp-core's wheel is built from."""
    digest = hashlib.sha256()
    files = [ROOT / name for name in _SOURCES]
    for folder in _SOURCE_DIRS:
        files += sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def pyodide_lock() -> dict[str, Any]:
    return json.loads((PYODIDE_DIR / "pyodide-lock.json").read_text())  # type: ignore[no-any-return]


def missing_tools() -> list[str]:
    """What scripts/setup-browser installs that is not there (empty when all is)."""
    missing = []
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"{CHROMIUM} (Debian's chromium)")
    if shutil.which("node") is None:
        missing.append("node")
    for folder in (PYODIDE_DIR, PLAYWRIGHT_DIR):
        if not (folder / "package.json").exists():
            missing.append(f"{folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder} (npm)")
    return missing


def read_manifest() -> dict[str, Any] | None:
    try:
        manifest = json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        return None
    if not all((WHEELS / name).exists() for name in [*manifest.get("install", []), manifest.get("micropip", "")]):
        return None
    return manifest  # type: ignore[no-any-return]


def _requirement_name(requirement: str) -> tuple[str, str]:
    """(name, marker) of a requirement string, e.g. ``cattrs>=23.2`` -> ("cattrs", "")."""
    spec, _, marker = requirement.partition(";")
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    assert name, requirement
    return name.group(1), marker.strip()


def _marker_applies(marker: str, python: str) -> bool:
    """Evaluate a dependency marker for Pyodide (CPython ``python``, emscripten, no extras)."""
    if not marker:
        return True
    from packaging.markers import Marker  # installed with pytest

    env = {
        "python_version": ".".join(python.split(".")[:2]), "python_full_version": python,
        "implementation_name": "cpython", "platform_python_implementation": "CPython",
        "sys_platform": "emscripten", "platform_system": "Emscripten", "os_name": "posix",
        "platform_machine": "wasm32", "extra": "",
    }
    return bool(Marker(marker).evaluate(env))


def dependency_closure(python: str) -> list[tuple[str, str]]:
    """(name, installed version) of clp-core's dependencies, theirs etc., dependencies first."""
    order: list[tuple[str, str]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            return
        seen.add(key)
        dist = importlib.metadata.distribution(name)
        for requirement in dist.requires or []:
            dep, marker = _requirement_name(requirement)
            if _marker_applies(marker, python):
                visit(dep)
        order.append((dist.metadata["Name"], dist.version))

    for requirement in importlib.metadata.requires("clp-core") or []:
        dep, marker = _requirement_name(requirement)
        if _marker_applies(marker, python):
            visit(dep)
    return order


def _pip(*args: str) -> None:
    """Run pip quietly; its output (setuptools' warnings...) is shown only if it fails."""
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode:
        raise SystemExit(f"pip {' '.join(args)} failed:\n{done.stdout}")


def _download(requirements: list[str], python: str) -> dict[str, str]:
    """Pure-Python wheels of ``requirements`` (``name==version``) for ``python``, from PyPI or
    pip's cache, in one pip call; returns {requirement: wheel file name in WHEELS}."""
    if not requirements:
        return {}
    found: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        _pip("download", "--no-deps", "--only-binary=:all:", "--platform", "any",
             "--python-version", ".".join(python.split(".")[:2]), "--implementation", "py",
             "-d", tmp, *requirements)
        wheels = {_normalise(path.name.split("-")[0]): path for path in Path(tmp).glob("*.whl")}
        for requirement in requirements:
            path = wheels[_normalise(requirement.split("==")[0])]
            shutil.move(str(path), WHEELS / path.name)
            found[requirement] = path.name
    return found


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _build_clp_core() -> Path:
    """clp-core's wheel, built from a clean copy of the tree (no stale build/ leftovers)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in _SOURCES:
            shutil.copy2(ROOT / name, src / name)
        for folder in _SOURCE_DIRS:
            shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        _pip("wheel", "--no-deps", "-w", str(Path(tmp) / "out"), str(src))
        (built,) = (Path(tmp) / "out").glob("clp_core-*.whl")
        for old in WHEELS.glob("clp_core-*.whl"):
            old.unlink()
        target = WHEELS / built.name
        shutil.move(str(built), target)
        return target


def ensure_wheels(*, verbose: bool = False) -> dict[str, Any]:
    """Build or fetch what is missing or stale; a no-op (milliseconds) when all is current."""
    lock = pyodide_lock()
    python = lock["info"]["python"]
    micropip = lock["packages"]["micropip"]
    deps = dependency_closure(python)
    current = source_hash()
    manifest = read_manifest() or {}
    wanted_deps = [f"{name}=={version}" for name, version in deps]
    if (manifest.get("source_hash") == current and manifest.get("deps") == wanted_deps
            and manifest.get("micropip_version") == micropip["version"] and manifest.get("python") == python):
        return manifest
    WHEELS.mkdir(parents=True, exist_ok=True)
    say = print if verbose else (lambda *a, **k: None)

    # Pyodide's own micropip wheel is rebuilt (its sha256 differs from PyPI's), and is not in
    # the npm package: take the same version from PyPI; the page loads it by URL.
    micropip_requirement = f"micropip=={micropip['version']}"
    have = dict(zip(manifest.get("deps", []), manifest.get("install", [])[:-1], strict=False))
    if manifest.get("micropip_version") == micropip["version"] and manifest.get("micropip"):
        have[micropip_requirement] = manifest["micropip"]
    fetch = [r for r in [*wanted_deps, micropip_requirement] if r not in have or not (WHEELS / have[r]).exists()]
    if fetch:
        say(f"  fetching {', '.join(fetch)} (pure-Python wheels for Python {python})")
        have.update(_download(fetch, python))
    install = [have[requirement] for requirement in wanted_deps]
    micropip_wheel = have[micropip_requirement]

    if manifest.get("source_hash") != current or not list(WHEELS.glob("clp_core-*.whl")):
        say("  building clp-core wheel from this tree")
        clp_wheel = _build_clp_core().name
    else:
        clp_wheel = manifest["install"][-1]
    install.append(clp_wheel)

    keep = {*install, micropip_wheel, MANIFEST.name}
    for stale in WHEELS.iterdir():
        if stale.name not in keep:
            stale.unlink()
    manifest = {"python": python, "pyodide": lock["info"].get("version") or _pyodide_version(),
                "source_hash": current, "deps": wanted_deps, "install": install,
                "micropip": micropip_wheel, "micropip_version": micropip["version"]}
    MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _pyodide_version() -> str:
    return json.loads((PYODIDE_DIR / "package.json").read_text())["version"]  # type: ignore[no-any-return]


if __name__ == "__main__":
    if sys.argv[1:] != ["wheels"]:
        raise SystemExit("usage: browser_env.py wheels")
    result = ensure_wheels(verbose=True)
    print(f"  wheels for Pyodide {result['pyodide']} (Python {result['python']}): {', '.join(result['install'])}")

"""LocalStorageAdapter in a real browser: state committed before a page reload is hydrated after it.

A local HTTP server (127.0.0.1, a thread) serves page/index.html, page/app.py, the npm
``pyodide`` files and the wheels scripts/setup-browser built. Headless Debian Chromium, driven
by playwright-core (drive.cjs, under Node), loads the page: Pyodide boots from the local server,
micropip installs the local wheels (``deps=False``), and app.py runs a CLP counter with
``storage=LocalStorageAdapter()``. The driver increments 3 times, reloads the page (a new
Python interpreter), and the fresh runtime must hydrate 3 from ``localStorage``; one more
increment gives 4, stored as the codec's versioned envelope. The page makes no request
outside the local server. Screenshots go to artifacts/browser/.

Without chromium, node or the npm packages the test skips, or fails when CLP_REQUIRE_BROWSER
is set (CI sets it after running scripts/setup-browser).
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

HERE = Path(__file__).resolve().parent


def _load_browser_env() -> ModuleType:
    spec = importlib.util.spec_from_file_location("clp_browser_env", HERE / "browser_env.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


env = _load_browser_env()
ARTIFACTS = env.ROOT / "artifacts" / "browser"


def _browser_required() -> bool:
    return os.environ.get("CLP_REQUIRE_BROWSER", "") not in ("", "0")


@pytest.fixture(scope="module")
def wheels() -> dict[str, Any]:
    missing = env.missing_tools()
    if missing:
        message = f"browser test needs {', '.join(missing)}: run scripts/setup-browser"
        if _browser_required():
            pytest.fail(f"{message} (CLP_REQUIRE_BROWSER is set)", pytrace=False)
        pytest.skip(message)
    manifest: dict[str, Any] = env.ensure_wheels()  # rebuilds clp-core's wheel if this tree changed since the setup
    return manifest


class _Handler(http.server.SimpleHTTPRequestHandler):
    """/ and /app.py from page/, /pyodide/* from the npm package, /wheels/* from the cache."""

    extensions_map = {  # noqa: RUF012 (the base class's own attribute)
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript",
        ".json": "application/json", ".whl": "application/octet-stream", ".zip": "application/zip",
        ".py": "text/plain; charset=utf-8", ".html": "text/html; charset=utf-8",
    }
    roots: ClassVar[dict[str, Path]] = {"pyodide": env.PYODIDE_DIR, "wheels": env.WHEELS}

    def __init__(self, *args: Any, served: list[str], **kwargs: Any) -> None:
        self.served = served
        super().__init__(*args, **kwargs)

    def translate_path(self, path: str) -> str:
        parts = [p for p in urllib.parse.unquote(urllib.parse.urlsplit(path).path).split("/") if p]
        if any(p in (".", "..") or "\\" in p for p in parts):
            return str(HERE / "page" / "missing")
        if not parts:
            return str(HERE / "page" / "index.html")
        if parts[0] in self.roots:
            return str(self.roots[parts[0]].joinpath(*parts[1:]))
        return str((HERE / "page").joinpath(*parts))

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")  # the reload fetches (and the log shows) everything again
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        self.served.append(self.path)


@pytest.fixture(scope="module")
def server(wheels: dict[str, Any]) -> Iterator[tuple[str, list[str]]]:
    served: list[str] = []
    handler = functools.partial(_Handler, served=served)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, name="clp-browser-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _drive(base: str, tmp_path: Path) -> dict[str, Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("pyodide-*.png"):
        old.unlink()
    node = shutil.which("node")
    assert node
    user_data = tmp_path / "chromium-profile"  # fresh: localStorage starts empty
    process = subprocess.run(
        [node, str(HERE / "drive.cjs"), base, str(user_data), str(ARTIFACTS)],
        env={**os.environ, "PLAYWRIGHT_CORE": str(env.PLAYWRIGHT_DIR), "CHROMIUM": str(env.CHROMIUM)},
        capture_output=True, text=True, timeout=120,
    )
    try:
        result: dict[str, Any] = json.loads(process.stdout)
    except ValueError:
        pytest.fail(f"the driver printed no JSON (exit {process.returncode}):\n{process.stdout[-3000:]}\n"
                    f"{process.stderr[-3000:]}", pytrace=False)
    (ARTIFACTS / "pyodide-reload.json").write_text(json.dumps(result, indent=1) + "\n")
    if "error" in result:
        console = "\n".join(result.get("console", [])[-30:])
        pytest.fail(f"the browser run failed: {result['error']}\npage console:\n{console}", pytrace=False)
    return result


def test_state_written_before_a_reload_is_hydrated_after_it(
    server: tuple[str, list[str]], wheels: dict[str, Any], tmp_path: Path
) -> None:
    base, served = server
    started = time.monotonic()
    result = _drive(base, tmp_path)
    elapsed = time.monotonic() - started

    first, second = result["first"], result["second"]
    assert first["platform"] == "emscripten" and first["python"] == wheels["python"]
    assert first["adapter"] == "LocalStorageAdapter" and first["backend"] == "localstorage"
    assert first["hydrated"] == 0, "a fresh profile's localStorage should be empty"
    assert result["afterThree"] == 3
    stored = json.loads(result["storedBeforeReload"])
    assert stored["data"] == {"version": 3, "document": stored["data"]["document"]}
    assert stored["data"]["document"]["state"] == {"count": 3}

    # the reload started a new interpreter: 3 can only have come from localStorage
    assert (first["navigation"], second["navigation"]) == ("navigate", "reload")
    assert second["interpreter"] != first["interpreter"]
    assert second["hydrated"] == 3
    assert result["afterOneMore"] == 4

    envelope = json.loads(result["localStorage"]["clp:clp:counter"])
    assert envelope["format"] == "clp/1"
    assert envelope["data"]["version"] == 4
    assert envelope["data"]["document"]["state"] == {"count": 4}
    assert set(result["localStorage"]) == {"clp:clp:counter"}, "the checks must leave no keys behind"

    checks = result["checks"]
    assert checks["quota"].startswith("StorageError: [localstorage]"), checks["quota"]
    assert "quota" in checks["quota"].lower()
    assert checks["quota_key_absent"] is True
    assert checks["corrupt"].startswith("CorruptStateError: [localstorage]"), checks["corrupt"]
    assert checks["corrupt_deleted"] is True
    assert checks["count_after_checks"] == {"count": 4}

    # everything came from the local server: Pyodide, micropip and the wheels, twice (two loads)
    outside = [url for url in result["requests"] if not url.startswith(base + "/")]
    assert outside == [], f"the page fetched from outside the local server: {outside}"
    for wheel in wheels["install"]:
        assert served.count(f"/wheels/{wheel}") == 2, f"{wheel} served {served.count(f'/wheels/{wheel}')} times"
    assert served.count("/pyodide/pyodide.asm.wasm") == 2

    for name in ("pyodide-before-reload.png", "pyodide-after-reload.png"):
        assert (ARTIFACTS / name).stat().st_size > 1000
    assert elapsed < 60, f"the browser run took {elapsed:.1f} s"

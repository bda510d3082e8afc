"""The packages install as documented: ``scripts/build`` makes a wheel and an sdist of clp-core
and of every plugin (single-sourced versions, py.typed, the MIT license, classifiers, a README
that renders: ``twine check --strict``), and the wheels install offline into a fresh venv
(``pip install --no-index --find-links dist clp-core clp-redis``) and commit to Redis.

Marked ``packaging`` (``-m packaging`` runs only these; ``-m "not packaging"`` skips them);
CLP_SKIP_SLOW=1 skips them too. The build runs once per session (about 30 s).
"""

from __future__ import annotations

import ast
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import uuid
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from clp_core.testing.pytest_plugin import service_unavailable

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = {"clp-core": ROOT, **{p.name: p for p in sorted((ROOT / "plugins").iterdir())
                                 if (p / "pyproject.toml").is_file()}}
BIN = Path(sys.executable).parent


def _tool(name: str) -> str | None:
    return shutil.which(name, path=str(BIN)) or shutil.which(name)


def _source_version(project: str) -> str:
    """``__version__`` as written in the package's ``__init__.py`` (the one place it is written)."""
    package = project.replace("-", "_")
    tree = ast.parse((PROJECTS[project] / package / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            return str(ast.literal_eval(node.value))
    raise AssertionError(f"{package}/__init__.py has no __version__")


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("CLP_SKIP_SLOW") == "1":
        pytest.skip("CLP_SKIP_SLOW=1")
    uv = _tool("uv")
    if uv is None:
        pytest.fail("uv is missing: it is in clp-core's test extras")
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "UV": uv, "PYTHON": sys.executable}
    build = subprocess.run([str(ROOT / "scripts" / "build"), str(out)], capture_output=True, text=True, env=env,
                           timeout=600)
    assert build.returncode == 0, f"scripts/build failed:\n{build.stdout}\n{build.stderr}"
    assert "PASSED" in build.stdout and "FAILED" not in build.stdout  # twine check --strict
    return out


def _metadata(wheel: Path) -> tuple[list[str], dict[str, list[str]]]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        text = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    message = Parser().parsestr(text)
    return names, {key: message.get_all(key) or [] for key in set(message.keys())}


@pytest.mark.parametrize("project", sorted(PROJECTS))
def test_wheel_and_sdist_metadata(dist: Path, project: str) -> None:
    package = project.replace("-", "_")
    version = _source_version(project)
    wheel = dist / f"{package}-{version}-py3-none-any.whl"
    sdist = dist / f"{package}-{version}.tar.gz"
    assert wheel.is_file() and sdist.is_file(), sorted(p.name for p in dist.iterdir())
    names, meta = _metadata(wheel)
    assert meta["Version"] == [version]
    assert f"{package}/py.typed" in names
    assert f"{package}-{version}.dist-info/licenses/LICENSE" in names
    assert meta["License-Expression"] == ["MIT"]
    assert "Typing :: Typed" in meta["Classifier"] and "Programming Language :: Python :: 3.11" in meta["Classifier"]
    assert meta["Description-Content-Type"] == ["text/markdown"] and meta["Requires-Python"] == [">=3.11"]
    if project != "clp-core":
        core = [r for r in meta["Requires-Dist"] if r.startswith("clp-core")]
        assert core and all(r.replace("[cli]", "") == "clp-core>=0.2" for r in core), core
    with tarfile.open(sdist) as archive:
        members = {m.name.split("/", 1)[1] for m in archive.getmembers() if "/" in m.name}
    assert {"LICENSE", "README.md", "pyproject.toml", f"{package}/py.typed"} <= members


def test_every_pyproject_takes_its_version_from_the_package() -> None:
    for project, folder in PROJECTS.items():
        text = (folder / "pyproject.toml").read_text(encoding="utf-8")
        package = project.replace("-", "_")
        assert 'dynamic = ["version"]' in text and f'attr = "{package}.__version__"' in text, project
        assert "\nversion =" not in text.split("[tool.setuptools.dynamic]")[0], project
        assert (folder / "LICENSE").read_text() == (ROOT / "LICENSE").read_text(), project


INSTALLED_CHECK = """
import asyncio, importlib.metadata, sys
import clp_core as clp

url, key = sys.argv[1], sys.argv[2]
assert importlib.metadata.version("clp-core") == clp.__version__
contract = clp.create_contract(
    intents={"add": {"inputs": {"n": "number"}}},
    transitions={"t": {"effects": lambda ctx: {"count": (ctx.state.get("count") or 0) + ctx.intent.payload["n"]}}},
)

async def main():
    async with clp.create_runtime(contract, storage=url, storage_key=key) as rt:
        await rt.execute("add", {"n": 2})
        await rt.execute("add", {"n": 3})
    async with clp.create_runtime(contract, storage=url, storage_key=key) as rt:  # read back from Redis
        assert rt.get_state("count") == 5, rt.get_state()
    from clp_core.resolve import resolve_storage
    adapter = resolve_storage(url)
    assert type(adapter).__module__.startswith("clp_redis")
    await adapter.delete(key)
    close = getattr(adapter, "close", None)
    if close is not None:
        await close()
    print("committed", clp.__version__)

asyncio.run(main())
"""


def _redis_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
        return True
    except OSError:
        return False


def test_wheels_install_offline_and_commit_to_redis(dist: Path, tmp_path: Path,
                                                    request: pytest.FixtureRequest) -> None:
    if not _redis_reachable():
        service_unavailable(request.config, "Redis at 127.0.0.1:6379")
    uv = _tool("uv")
    assert uv is not None
    version = _source_version("clp-core")
    wheels = [dist / f"clp_core-{version}-py3-none-any.whl",
              dist / f"clp_redis-{_source_version('clp-redis')}-py3-none-any.whl"]
    # the dependencies' wheels next to ours: the wheelhouse `scripts/build --wheelhouse` makes
    house = tmp_path / "wheelhouse"
    download = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--dest", str(house), "--only-binary",
                               ":all:", "--find-links", str(dist), *map(str, wheels)],
                              capture_output=True, text=True, timeout=300)
    assert download.returncode == 0, download.stderr
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run([uv, "pip", "install", "-q", "--python", str(python), "--no-index",
                              "--find-links", str(dist), "--find-links", str(house), "clp-core", "clp-redis"],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    key = f"clp:test-packaging:{uuid.uuid4().hex}"
    check = subprocess.run([str(python), "-c", INSTALLED_CHECK, "redis://127.0.0.1:6379/0", key],
                           capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == f"committed {version}"


def test_readme_says_how_to_install_and_lists_every_plugin() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = [line for line in readme.splitlines() if line.startswith("| clp-")]
    listed = {line.split("|")[1].strip() for line in table}
    assert listed == set(PROJECTS) - {"clp-core"}
    assert "scripts/build" in readme and "--no-index --find-links dist" in readme
    assert "pip install './[cli]'" in readme

"""The package as users get it: sdist and wheel built from this checkout, the wheel
installed with ``[server]`` into a fresh virtual environment, and run from there.

An editable install hides packaging mistakes: a template, a stylesheet, a Lua script or
``py.typed`` left out of the wheel still works from src/. Here nothing can come from the
checkout: the venvs live in a temporary directory, every command runs with its cwd there
and without PYTHONPATH, and a test checks that ``bearerguard`` is imported from the venv.
The files the installed package must contain come from ``git ls-files src/bearerguard``,
so a file added later is covered without touching this test. A second venv gets the
wheel without extras, as the README's "Installing" section describes it.

Building (``python -m build``: the sdist, then the wheel from the sdist) and installing
happen once per module; each venv is made without pip and filled by this environment's
pip (``pip --python``), which saves the ensurepip step. The venvs' interpreter is this
one, or ``$BEARERGUARD_WHEEL_PYTHON`` to run the same checks on another Python.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import BytesParser
from pathlib import Path

import httpx
import pytest

import bearerguard
from helpers import remember_secret, require_tools
from live_service import LiveService

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]
# The extras installed into the fresh venv: the service, and what the framework
# integrations import (Starlette comes with `server`).
EXTRAS = "server,flask,fastapi"
VENV_PYTHON = os.environ.get("BEARERGUARD_WHEEL_PYTHON", sys.executable)


def run(
    cmd: list[str], *, cwd: Path, timeout: float = 300, env: dict[str, str] | None = None
) -> str:
    """Run `cmd` to completion; fail the test with its output unless it exits 0."""
    done = subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


@dataclass
class Built:
    """The sdist and the wheel, built into a temporary directory outside the checkout."""

    sdist: Path
    wheel: Path
    base: Path


@dataclass
class Installed:
    """A fresh venv with the wheel installed, and an empty directory to run in."""

    venv: Path
    home: Path  # outside the checkout: the cwd of every command

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def run(self, *args: str) -> str:
        """Run a program of the venv (``bearerguard``, ``python``) with cwd `home`."""
        return run([str(self.bin / args[0]), *args[1:]], cwd=self.home, timeout=60)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    base = tmp_path_factory.mktemp("packaging")
    assert not base.resolve().is_relative_to(ROOT), "the venvs must live outside the checkout"
    run([sys.executable, "-m", "build", "--outdir", str(base / "dist"), str(ROOT)], cwd=ROOT)
    (sdist,) = (base / "dist").glob("*.tar.gz")
    (wheel,) = (base / "dist").glob("*.whl")
    with pytest.MonkeyPatch.context() as mp:
        # Nothing may point a venv's interpreter back at the checkout.
        for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
            mp.delenv(name, raising=False)
        yield Built(sdist, wheel, base)


def install(built: Built, name: str, extras: str) -> Installed:
    """Install the wheel (with `extras`, if any) into a new venv ``NAME`` beside it."""
    venv, home = built.base / name, built.base / f"{name}-home"
    home.mkdir()
    run([VENV_PYTHON, "-m", "venv", "--without-pip", str(venv)], cwd=home)
    requirement = f"{built.wheel}[{extras}]" if extras else str(built.wheel)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    run([*pip, "install", "--quiet", "--disable-pip-version-check", requirement], cwd=home)
    return Installed(venv, home)


@pytest.fixture(scope="module")
def installed(built: Built) -> Installed:
    return install(built, "venv", EXTRAS)


@pytest.fixture(scope="module")
def bare(built: Built) -> Installed:
    return install(built, "bare", "")


# -- the distributions -----------------------------------------------------------------
def test_metadata_passes_twine_check_and_says_what_is_true(
    built: Built, installed: Installed
) -> None:
    twine = [sys.executable, "-m", "twine", "check", "--strict"]
    run([*twine, str(built.sdist), str(built.wheel)], cwd=installed.home)
    with zipfile.ZipFile(built.wheel) as zf:
        raw = zf.read(f"bearerguard-{bearerguard.__version__}.dist-info/METADATA")
        names = zf.namelist()
    meta = BytesParser().parsebytes(raw)
    # The version is the one in src/bearerguard/__init__.py (the only place it is written).
    assert meta["Version"] == bearerguard.__version__
    assert meta["License-Expression"] == "MIT"
    assert f"bearerguard-{bearerguard.__version__}.dist-info/licenses/LICENSE" in names
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().startswith("# bearerguard")
    # The Python the wheel was tested on is allowed and listed.
    assert meta["Requires-Python"] == ">=3.10"
    tested = installed.run("python", "-c", "import sys; print('%d.%d' % sys.version_info[:2])")
    assert f"Programming Language :: Python :: {tested.strip()}" in meta.get_all("Classifier", [])
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


# -- the installed package -------------------------------------------------------------
def test_installed_package_has_every_file_git_has(installed: Installed) -> None:
    where = installed.run(
        "python",
        "-c",
        "import bearerguard, pathlib; print(pathlib.Path(bearerguard.__file__).parent)",
    ).strip()
    package = Path(where)
    assert package.is_relative_to(installed.venv), f"imported from {package}, not the venv"
    tracked = run(["git", "ls-files", "-z", "src/bearerguard"], cwd=ROOT).split("\0")
    expected = {Path(name).relative_to("src/bearerguard") for name in tracked if name}
    assert Path("py.typed") in expected
    missing = sorted(str(rel) for rel in expected if not (package / rel).is_file())
    assert not missing, f"tracked in git under src/bearerguard but not installed: {missing}"


def test_version_from_the_one_source(installed: Installed) -> None:
    version = bearerguard.__version__
    assert installed.run("bearerguard", "--version").strip() == f"bearerguard {version}"
    printed = installed.run(
        "python",
        "-c",
        "import importlib.metadata as m, bearerguard; "
        "print(bearerguard.__version__, m.version('bearerguard'))",
    )
    assert printed.split() == [version, version]


def test_framework_integrations_import(installed: Installed) -> None:
    installed.run(
        "python", "-c", "import bearerguard.flask, bearerguard.starlette, bearerguard.fastapi"
    )


def test_without_extras_the_core_works_and_serve_names_its_extra(bare: Installed) -> None:
    # What the README promises without extras: middleware, introspection, memory and SQLite.
    bare.run(
        "python",
        "-c",
        "from bearerguard import BearerGuardMiddleware, IntrospectionBackend, StoreBackend, "
        "WSGIBearerGuard, open_store; open_store('memory://'); open_store('sqlite:///bare.db')",
    )
    done = subprocess.run(
        [str(bare.bin / "bearerguard"), "serve", "--store", "memory://"],
        cwd=bare.home,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "bearerguard: error: this command needs the server extra (no module 'uvicorn'): "
        "pip install 'bearerguard[server]'\n"
    )


# -- the installed auth service --------------------------------------------------------
@pytest.fixture(scope="module")
def service(installed: Installed) -> Iterator[LiveService]:
    """``bearerguard serve`` from the venv over a SQLite file in the temporary directory."""
    store = "sqlite:///" + str(installed.home / "bearerguard.db")
    with LiveService(
        store, command=[str(installed.bin / "bearerguard")], cwd=str(installed.home)
    ) as svc:
        yield svc


def test_keys_create_serve_and_the_documented_curl_jq_flow(service: LiveService) -> None:
    require_tools("curl", "jq")
    # `bearerguard keys create --api dns --api vps --json`, as the README shows.
    key_id, secret = service.create_key(["dns", "vps"])
    rs_id, rs_secret = service.create_key(["dns"], introspect=True)
    listed = json.loads(service.cli("keys", "list", "--json").stdout)
    assert {key["key_id"] for key in listed} == {key_id, rs_id}
    script = (
        'TOKEN=$(curl -s -d grant_type=client_credentials -u "$KEY_ID:$SECRET" "$URL/login"'
        " | jq -r .access_token)\n"
        'printf "%s\\n" "$TOKEN"\n'
        'curl -s -o "$HOME/introspect.json" -w "%{http_code}\\n" -u "$RS_ID:$RS_SECRET" '
        '-d "token=$TOKEN" "$URL/introspect"\n'
        "jq -c '{active, client_id, scope}' \"$HOME/introspect.json\"\n"
    )
    env = {
        "KEY_ID": key_id,
        "SECRET": secret,
        "RS_ID": rs_id,
        "RS_SECRET": rs_secret,
        "URL": service.base_url,
        "HOME": service.cwd or "",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    token, status, info = done.stdout.split("\n")[:3]
    remember_secret(token)
    assert len(token) >= 43 and token != "null"
    assert status == "200"
    assert json.loads(info) == {"active": True, "client_id": key_id, "scope": "dns vps"}


# Pages the installed service serves. Pages rendered from package data go here too, so a
# template or stylesheet missing from the wheel fails this test.
SERVED_PAGES = [
    ("/health", 200, "application/json"),
    ("/.well-known/oauth-authorization-server", 200, "application/json"),
    ("/panel/signin", 200, "text/html"),
    ("/panel/static/panel.css", 200, "text/css"),
]


@pytest.mark.parametrize(("path", "status", "content_type"), SERVED_PAGES)
def test_installed_service_serves_page(
    service: LiveService, path: str, status: int, content_type: str
) -> None:
    r = httpx.get(service.base_url + path, timeout=10)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(content_type)

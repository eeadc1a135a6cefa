"""`pip install .` gives a `gpt-image` command that behaves exactly like `python scripts/gpt_image.py`.

One test (so that pytest-xdist builds the virtual environment once): a fresh venv, the project installed
into it from a copy of its files (an in-tree build would leave build/ and *.egg-info in the work tree),
then the same command lines through both entry points, compared byte for byte against the fake API.
Needs pip to reach the build backend (setuptools) from the package index, as CI can.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from conftest import REPO, SCRIPT
from fakeapi import FakeAPI, error_reply

pytestmark = pytest.mark.slow

# pip must see the environment as it was before the env fixture cleaned it (index settings, proxies).
PIP_ENV = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")


def bin_dir(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin")


def make_installed(tmp: Path) -> Tuple[Path, Path]:
    """Copy the project's packaged files, create a venv, pip install; return (venv python, gpt-image)."""
    source = tmp / "project"
    (source / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "pyproject.toml", source / "pyproject.toml")
    shutil.copy2(SCRIPT, source / "scripts" / SCRIPT.name)
    for extra in ("README.md", "LICENSE", "LICENSE.txt", "LICENSE.md"):
        if (REPO / extra).exists():
            shutil.copy2(REPO / extra, source / extra)
    venv = tmp / "venv"
    # No pip inside the venv (ensurepip costs seconds): this interpreter's pip installs into it (--python).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = bin_dir(venv) / ("python.exe" if os.name == "nt" else "python")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        timeout=240,
        env=PIP_ENV,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    command = bin_dir(venv) / ("gpt-image.exe" if os.name == "nt" else "gpt-image")
    assert command.exists(), sorted(p.name for p in bin_dir(venv).iterdir())
    return python, command


def run(argv: List[str], cwd: Path, fake: FakeAPI) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    environ = dict(os.environ, OPENAI_BASE_URL=fake.base_url)
    return subprocess.run(
        argv, capture_output=True, cwd=str(cwd), env=environ, timeout=60, stdin=subprocess.DEVNULL
    )


def request_view(fake: FakeAPI) -> Dict[str, object]:
    """What the last request carried: method, path, the headers the program sets, and the body."""
    last = fake.last
    headers = {
        name: last.header(name)
        for name in ("Authorization", "Content-Type", "Accept", "User-Agent", "Content-Length")
    }
    return {"method": last.method, "path": last.path, "headers": headers, "body": last.body}


@pytest.mark.timeout(400)
def test_pip_install_gives_the_same_command(
    fake: FakeAPI, env: Path, images_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    python, command = make_installed(tmp_path_factory.mktemp("package"))
    script = [str(python), str(SCRIPT)]
    installed = [str(command)]

    def both(*args: str) -> Tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:  # type: ignore[type-arg]
        return run([*script, *args], env, fake), run([*installed, *args], env, fake)

    def same(*args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
        a, b = both(*args)
        assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr), args
        return a

    # help and version: identical text and exit codes
    for args in (
        ["--help"],
        ["generations", "--help"],
        ["edits", "--help"],
        ["responses", "--help"],
        ["--version"],
    ):
        result = same(*args)
        assert result.returncode == 0 and result.stdout

    # dry runs (JSON bodies: nothing random in them)
    dry = same(
        "generations", "--prompt", "a lighthouse", "--output", "dry.png", "--size", "1536x1024", "--dry-run"
    )
    assert json.loads(dry.stdout)["body"]["size"] == "1536x1024"
    same("responses", "--input-text", "a poster", "--input-image", str(images_dir / "product.png"),
         "--output", "dry.webp", "--dry-run")  # fmt: skip
    # refusals: the same exit code and message
    assert same("generations", "--output", "x.png").returncode == 2
    assert same("generations", "--prompt", "x", "--output", "x.png", "--nope", "--json").returncode == 2
    assert fake.requests == []

    # a real generation through each entry point: same stdout, exit code, request and file
    args = ["generations", "--prompt", "a lighthouse", "--output", "out/{name}.png", "--quality", "low"]
    views, outputs = [], []
    for name, argv in (("script", script), ("installed", installed)):
        result = run([*argv, *[a.replace("{name}", name) for a in args], "--quiet"], env, fake)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout.replace(name.encode(), b"NAME"))
        views.append(request_view(fake))
        assert (env / "out" / f"{name}.png").read_bytes() == fake.last.sent_images[0]
    assert outputs[0] == outputs[1] == b"out/NAME.png\n"
    assert views[0] == views[1]  # the output name is not sent, so everything must match
    assert json.loads(views[0]["body"]) == {  # type: ignore[arg-type]
        "model": "gpt-image-2",
        "prompt": "a lighthouse",
        "quality": "low",
    }  # no output_format: .png is the API's default and --format was not given

    # an API error: the same exit code, JSON envelope and stderr
    for _ in range(2):
        fake.queue(
            error_reply(
                400, "Invalid size.", code="invalid_value", param="size", headers={"x-request-id": "req_1"}
            )
        )
    failed = same("generations", "--prompt", "x", "--output", "err.png", "--json")
    assert failed.returncode == 4
    assert json.loads(failed.stdout)["error"]["request_id"] == "req_1"

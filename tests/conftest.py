"""Shared pytest fixtures: a loopback fake of the API and ways to run the CLI against it.

No test may touch the network. The CLI always gets OPENAI_BASE_URL pointing at the fake,
proxy variables are removed, and an autouse guard refuses in-process connections and name
lookups for anything but loopback addresses (and fails the test that tried).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SCRIPTS = REPO / "scripts"
SCRIPT = SCRIPTS / "gpt_image.py"

for _path in (str(SCRIPTS), str(TESTS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from fakeapi import FakeAPI, _encode_png, _png_chunk, make_image, make_mask  # noqa: E402

#: The API key every test runs with; it must never show up in any output.
SENTINEL_KEY = "sk-test-SENTINEL-0123456789abcdef"

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")

#: Colours of the reference files written by the ``images_dir`` fixture.
REF_COLORS = {
    "subject.png": (200, 30, 30),
    "background.png": (30, 30, 200),
    "product.png": (30, 160, 30),
    "photo.jpg": (200, 200, 30),
    "photo.webp": (30, 200, 200),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than a couple of seconds")


# --------------------------------------------------------------------------------------
# Network guard
# --------------------------------------------------------------------------------------

_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "0:0:0:0:0:0:0:1", ""}


def _is_loopback(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).strip("[]").lower()
    return host in _LOOPBACK_NAMES or host.startswith("127.")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[List[str]]:
    """Refuse (in this process) connections and lookups of non-loopback hosts."""
    attempts: List[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def check(host: Any, what: str) -> None:
        if not _is_loopback(host):
            attempts.append(f"{what} {host!r}")
            raise OSError(f"network access blocked in tests: {what} {host!r}")

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        check(host, "getaddrinfo")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            check(address[0], "connect")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            check(address[0], "connect")
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield attempts
    if attempts:
        pytest.fail("test tried to reach the network: " + "; ".join(attempts), pytrace=False)


# --------------------------------------------------------------------------------------
# The fake API and the environment
# --------------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeAPI]:
    """A started FakeAPI (see tests/fakeapi.py), stopped after the test."""
    api = FakeAPI().start()
    try:
        yield api
    finally:
        api.stop()
    if api.errors:
        pytest.fail("the fake API itself failed:\n" + "\n".join(api.errors), pytrace=False)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A clean environment for the CLI: no OPENAI_*, AZURE_OPENAI_* or proxy variables, the sentinel key,
    and the working directory in tmp_path (so no stray .env is read). Returns tmp_path."""
    for name in list(os.environ):
        if name.upper().startswith(("OPENAI_", "AZURE_OPENAI_")) or name.lower() in _PROXY_VARS:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL_KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@dataclass
class Result:
    """What one CLI run produced."""

    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        """stdout parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.out)
        except ValueError:
            return None

    @property
    def lines(self) -> List[str]:
        """Non-empty stdout lines."""
        return [line for line in self.out.splitlines() if line.strip()]


# The --json envelope (design.md, "What it prints"): on success these keys are always there ...
SUCCESS_KEYS = frozenset(
    {
        "ok",
        "command",
        "model",
        "images",
        "partials",
        "revised_prompt",
        "usage",
        "request_id",
        "response_id",
        "elapsed_s",
    }
)
# ... and these are the only extra keys allowed;
SUCCESS_EXTRA = frozenset(
    {"estimated_cost_usd", "saved_response", "metadata", "text", "image_model", "size", "steps"}
)
# each entry of "images" and "partials" has exactly these;
IMAGE_KEYS = frozenset({"path", "index", "bytes", "format", "width", "height", "alpha"})
#: What --json says of the fake's default images: 64x48 pixels, no alpha channel.
DIMENSIONS = {"width": 64, "height": 48, "alpha": False}
# a failure is {"ok": false, "error": {...}}, with "response_id" beside them when a response was created;
FAILURE_KEYS = frozenset({"ok", "error"})
FAILURE_EXTRA = frozenset({"response_id"})
# its "error" object always has these keys, and may have only these others.
ERROR_KEYS = frozenset({"type", "message", "status", "code", "param", "request_id"})
ERROR_EXTRA = frozenset({"hint", "exit_code"})


HINT_OPEN = " (hint: "


def split_hint(line: str) -> Tuple[str, str]:
    """A failure's one stderr line, `error: MESSAGE (hint: HINT)`, as (`error: MESSAGE`, `HINT`).

    Without a hint: (line, ""). The hint is the last parenthesis, closing the line (a message may hold
    parentheses of its own, so the split is at the last ` (hint: `).
    """
    at = line.rfind(HINT_OPEN)
    if at < 0:
        return line, ""
    assert line.endswith(")"), f"the hint must close the error line: {line!r}"
    hint = line[at + len(HINT_OPEN) : -1]
    assert hint.strip(), f"an empty hint: {line!r}"
    return line[:at], hint


def error_lines(result: Union[Result, str]) -> List[str]:
    """The `error:` lines of a run's stderr."""
    err = result if isinstance(result, str) else result.err
    return [line for line in err.splitlines() if line.startswith("error:")]


def assert_one_error(
    result: Result,
    code: Union[int, Tuple[int, ...]],
    *words: str,
    hint: Sequence[str] = (),
    then: Sequence[str] = (),
) -> str:
    """A failure as the contract has it: exit `code` (or one of several), no traceback, no key anywhere, and
    exactly one `error:` line, last on stderr, its hint inline, holding `words` (case-insensitive) and naming
    `hint` in the hint; returns the line without its hint. `then`: the lines that follow it instead (a jobs
    file's further bad lines), one prefix each."""
    codes = code if isinstance(code, tuple) else (code,)
    assert SENTINEL_KEY not in result.out, "the API key leaked to stdout"
    assert SENTINEL_KEY not in result.err, "the API key leaked to stderr"
    assert result.code in codes, f"exit {result.code}, expected {' or '.join(map(str, codes))}\n{result.err}"
    assert "Traceback" not in result.err and "Traceback" not in result.out
    lines = [line for line in result.err.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(errors) == 1, f"expected one error line:\n{result.err}"
    assert not any(line.startswith("hint:") for line in lines), f"a hint line of its own:\n{result.err}"
    after = lines[errors[0] + 1 :]
    assert len(after) == len(then), f"lines after the error: {after}"
    for line, prefix in zip(after, then):
        assert line.startswith(prefix), f"{line!r} does not start with {prefix!r}"
    message, hint_text = split_hint(lines[errors[0]])
    for word in words:
        assert word.lower() in lines[errors[0]].lower(), f"{word!r} not in {lines[errors[0]]!r}"
    if hint:
        assert hint_text, f"expected an inline (hint: ...) on {lines[errors[0]]!r}"
    for word in hint:
        assert word.lower() in hint_text.lower(), f"{word!r} not in hint {hint_text!r}"
    return message


# --------------------------------------------------------------------------------------
# The files on disk before and after a run
# --------------------------------------------------------------------------------------

_MiB = 1024 * 1024
#: Files bigger than this are compared by digest (and scanned for the key block by block).
BIG_FILE = 8 * _MiB


def _file_contents(path: Path) -> bytes:
    """A file's bytes; for a big one, a digest (checked for the sentinel key on the way)."""
    if path.stat().st_size <= BIG_FILE:
        return path.read_bytes()
    digest = hashlib.sha256()
    key, tail = SENTINEL_KEY.encode("utf-8"), b""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_MiB), b""):
            assert key not in tail + block, f"the API key leaked into {path}"
            tail = block[-len(key) :]
            digest.update(block)
    return b"big file, sha256 " + digest.hexdigest().encode()


def snapshot_tree(root: Path) -> Dict[str, Optional[bytes]]:
    """Every entry under root: relative name -> bytes (None for a folder, a digest for a big file)."""
    tree: Dict[str, Optional[bytes]] = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        tree[name] = None if path.is_dir() else _file_contents(path)
    return tree


def is_temporary(name: str) -> bool:
    """A name a writer uses for work in progress: hidden (a leading dot), or ending .part, .tmp or ~."""
    base = name.rsplit("/", 1)[-1]
    return base.startswith(".") or base.endswith((".part", ".tmp", "~"))


class Tree:
    """A folder tree before a run; ``added()`` checks the invariants after it and returns what is new.

    After the run: no temporaries (a ``.part`` anywhere; a new hidden entry, or a new one in a hidden
    folder; a new ``.tmp`` or ``~``), nothing that existed is gone or has other bytes, and the sentinel key
    is in no file.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.before = snapshot_tree(root)

    def added(self) -> Dict[str, Optional[bytes]]:
        """Entries that are new (or changed from a folder to a file), after checking the invariants."""
        after = snapshot_tree(self.root)
        temporaries = [
            n
            for n in after
            if n.endswith(".part") or (n not in self.before and (is_temporary(n) or "/." in "/" + n))
        ]
        assert not temporaries, f"temporary files left behind: {temporaries}"
        gone = sorted(set(self.before) - set(after))
        assert not gone, f"files that existed before the run are gone: {gone}"
        replaced = sorted(n for n, data in self.before.items() if data is not None and after.get(n) != data)
        assert not replaced, f"files that existed before the run were replaced: {replaced}"
        for name, data in after.items():
            assert SENTINEL_KEY.encode("utf-8") not in (data or b""), f"the API key leaked into {name}"
        return {n: d for n, d in after.items() if n not in self.before or self.before[n] != d}

    def files(self) -> Dict[str, bytes]:
        """The new files (not folders)."""
        return {n: d for n, d in self.added().items() if d is not None}

    def unchanged(self) -> None:
        """Nothing at all was created, changed or removed."""
        assert self.added() == {}


def _import_cli() -> Any:
    """Import scripts/gpt_image.py lazily (it may not exist while the suite is being written)."""
    import importlib

    return importlib.import_module("gpt_image")


Stdin = Optional[Union[str, bytes]]


@pytest.fixture
def cli(
    env: Path, fake: FakeAPI, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    """Run the program in-process: ``cli(*args, stdin=None) -> Result(code, out, err)``.

    Calls ``gpt_image.main(list(args))`` with OPENAI_BASE_URL set to the fake; SystemExit
    (argparse) becomes the exit code; other exceptions propagate and fail the test.
    """
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    module = _import_cli()

    def run_cli(*args: str, stdin: Stdin = None) -> Result:
        capsys.readouterr()  # drop anything printed before this run
        if stdin is not None:
            data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
        extra_err = ""
        try:
            returned = module.main([str(a) for a in args])
            code = 0 if returned is None else int(returned)
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:  # sys.exit("message") prints the message and exits 1
                code, extra_err = 1, f"{exc.code}\n"
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err + extra_err)

    return run_cli


@pytest.fixture
def run(env: Path, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run the program as a subprocess: ``run(*args, stdin=None, timeout=60, extra_env=None)``.

    Uses this interpreter, cwd = tmp_path and the test's environment (sentinel key,
    OPENAI_BASE_URL = the fake). ``extra_env`` values of None remove a variable.
    """
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)

    def run_script(
        *args: str,
        stdin: Stdin = None,
        timeout: float = 60,
        extra_env: Optional[Dict[str, Optional[str]]] = None,
    ) -> Result:
        child_env = dict(os.environ)
        for name, value in (extra_env or {}).items():
            if value is None:
                child_env.pop(name, None)
            else:
                child_env[name] = str(value)
        data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), *[str(a) for a in args]],
            input=data,
            env=child_env,
            cwd=str(env),
            capture_output=True,
            timeout=timeout,
        )
        return Result(
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )

    return run_script


@pytest.fixture
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch API polls a few milliseconds apart (the fake advances a batch one status a poll)."""
    import gpt_image

    monkeypatch.setattr(gpt_image, "BATCH_POLL_FIRST_S", 0.01)
    monkeypatch.setattr(gpt_image, "BATCH_POLL_MOST_S", 0.02)


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    """Reference inputs in tmp_path/refs (all 64x48): subject.png, background.png, product.png
    (RGB PNGs), photo.jpg, photo.webp, mask.png (RGBA, alpha 0 in the centre) and
    notanimage.png (plain text). Colours are in REF_COLORS. Returns the refs folder."""
    refs = tmp_path / "refs"
    refs.mkdir()
    for name, colour in REF_COLORS.items():
        fmt = {"png": "png", "jpg": "jpeg", "webp": "webp"}[name.rsplit(".", 1)[1]]
        (refs / name).write_bytes(make_image(fmt, (64, 48), colour))
    (refs / "mask.png").write_bytes(make_mask((64, 48)))
    (refs / "notanimage.png").write_text("this is not an image, just text\n", encoding="utf-8")
    return refs


# --------------------------------------------------------------------------------------
# PNGs by hand: fakeapi's encoder is the one builder; these are the shapes tests need of it
# --------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk (length, type, data, CRC), fakeapi's: for tests that assemble odd PNGs."""
    return _png_chunk(kind, data)


def png_head(width: int, height: int, colour_type: int = 2) -> bytes:
    """A PNG's signature and IHDR chunk (8 bits a sample, no interlace; colour type 2 is RGB, 6 RGBA)."""
    return PNG_SIGNATURE + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))


def solid_png(size: Tuple[int, int], colour: Sequence[int]) -> bytes:
    """A solid-colour PNG from fakeapi's own encoder, never Pillow's: RGB for three values, RGBA for four."""
    width, height = size
    return _encode_png(width, height, (b"\x00" + bytes(colour) * width) * height, len(colour))


def png_of_size(nbytes: int, width: int = 1024, height: int = 1024) -> bytes:
    """A structurally valid RGB PNG of exactly ``nbytes`` bytes (57 or more): one IDAT of zeros, right CRCs."""
    head, end = png_head(width, height), png_chunk(b"IEND", b"")
    return head + png_chunk(b"IDAT", bytes(max(nbytes - len(head) - len(end) - 12, 0))) + end


def write_padded_png(
    path: Path, size: int, width: int, height: int, colour_type: int = 2, real_bytes: int = 0
) -> Path:
    """A PNG head and the header of an IDAT that runs to ``size``, then random bytes up to ``real_bytes`` into
    the file and a hole up to ``size``: reading it gives ``size`` bytes, the disk holds about ``real_bytes``."""
    head = png_head(width, height, colour_type)
    head += struct.pack(">I", max(0, size - len(head) - 12)) + b"IDAT"
    with open(path, "wb") as handle:
        handle.write(head + os.urandom(max(0, real_bytes - len(head))))
        handle.truncate(size)
    return path


# Linux copies the parent's peak into a child's ru_maxrss (vfork and fork both share or copy its memory until
# exec, and exec keeps the larger figure), so measuring straight from pytest would report pytest's size. A fresh,
# small helper interpreter starts the CLI instead; its RUSAGE_CHILDREN is then the CLI's own peak (or the
# helper's ~10 MiB, whichever is larger).
_HELPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "with open(sys.argv[1], 'w') as f:\n"
    "    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code if code >= 0 else 128 - code)\n"
)


def run_measured(
    argv: List[str], env: Dict[str, str], cwd: Path, timeout: float = 120
) -> Tuple[int, str, str, int, float]:
    """Run a child; return (exit code, stdout, stderr, peak RSS in bytes, seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = os.path.join(tmp, "maxrss")
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-c", _HELPER, rss_file, *argv],
            env=env,
            cwd=str(cwd),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        seconds = time.monotonic() - start
        with open(rss_file, encoding="ascii") as handle:
            peak = int(handle.read()) * 1024  # KiB on Linux
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), peak, seconds

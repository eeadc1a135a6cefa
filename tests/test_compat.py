"""Portability: non-UTF-8 consoles, non-ASCII text and paths, Windows-only constraints, Python 3.9 to 3.13,
and the standard library only.
"""

from __future__ import annotations

import ast
import glob
import json
import ntpath
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import gpt_image
import pytest
from conftest import REPO, SCRIPT, SENTINEL_KEY
from fakeapi import FakeAPI

SOURCE = SCRIPT.read_text(encoding="utf-8")
TREE = ast.parse(SOURCE)

PROMPT = "Café ☕ au crépuscule — naïve «ünïcödé» 漢字"


def run_script(
    fake: FakeAPI,
    cwd: Path,
    *args: str,
    python: str = sys.executable,
    extra: Optional[Dict[str, Optional[str]]] = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    """Run scripts/gpt_image.py in a child process against the fake; bytes in, bytes out."""
    environ = dict(os.environ, OPENAI_BASE_URL=fake.base_url)
    for name, value in (extra or {}).items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return subprocess.run(
        [python, str(SCRIPT), *args],
        capture_output=True,
        env=environ,
        cwd=str(cwd),
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def legacy_console(encoding: str) -> Dict[str, Optional[str]]:
    """A console that is not UTF-8: the stdio encoding of a Windows code page, and the C locale."""
    return {
        "PYTHONIOENCODING": encoding,
        "LC_ALL": "C",
        "LANG": "C",
        "PYTHONUTF8": None,
        "PYTHONLEGACYWINDOWSSTDIO": None,
    }


# --------------------------------------------------------------------------------------------------------
# Encodings
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["cp1252", "ascii"])
def test_non_utf8_console_json(fake: FakeAPI, env: Path, encoding: str) -> None:
    output = "out/café-☕.png"
    proc = run_script(
        fake,
        env,
        "generations",
        "--prompt",
        PROMPT,
        "--output",
        output,
        "--json",
        extra=legacy_console(encoding),
    )
    stdout, stderr = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")  # both must be UTF-8
    assert proc.returncode == 0, stderr
    obj = json.loads(stdout)
    assert obj["ok"] is True
    assert obj["images"][0]["path"] == output
    assert (env / output).is_file()
    assert fake.last.json["prompt"] == PROMPT
    assert f"image 1 saved: {output}" in stderr


@pytest.mark.parametrize("encoding", ["cp1252", "ascii"])
def test_non_utf8_console_plain_paths_and_errors(fake: FakeAPI, env: Path, encoding: str) -> None:
    proc = run_script(
        fake,
        env,
        "generations",
        "--prompt",
        PROMPT,
        "--output",
        "☕/naïve.png",
        extra=legacy_console(encoding),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode("utf-8") == "☕/naïve.png\n"
    assert (env / "☕" / "naïve.png").is_file()
    # An error message that quotes non-ASCII text must not turn into an encoding crash.
    refused = run_script(
        fake,
        env,
        "generations",
        "--prompt",
        PROMPT,
        "--output",
        "☕/naïve.png",
        extra=legacy_console(encoding),
    )
    assert refused.returncode == 2
    err = refused.stderr.decode("utf-8")
    assert "error: output ☕/naïve.png already exists" in err
    assert "Traceback" not in err


def test_dry_run_on_a_non_utf8_console(fake: FakeAPI, env: Path) -> None:
    proc = run_script(
        fake, env, "responses", "--input-text", PROMPT, "--output", "é.png", "--dry-run",
        extra=legacy_console("cp1252"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    described = json.loads(proc.stdout.decode("utf-8"))
    assert described["body"]["input"][0]["content"][0]["text"] == PROMPT
    assert fake.requests == []


def test_prompt_file_and_env_file_are_utf8(fake: FakeAPI, env: Path) -> None:
    """A prompt file and a .env with non-ASCII text (one with a BOM and CRLF, as Windows editors save)."""
    prompt = "Ein Bäcker in Köln — 夜の街, ☕\nzweite Zeile"
    (env / "prompt.txt").write_bytes(b"\xef\xbb\xbf" + prompt.replace("\n", "\r\n").encode("utf-8") + b"\r\n")
    dotenv = (
        f'\ufeff# Kommentar: Grüße\r\nOPENAI_API_KEY={SENTINEL_KEY}\r\nOPENAI_IMAGE_USER="nutzer-ü-☕"\r\n'
    )
    (env / ".env").write_bytes(dotenv.encode("utf-8"))
    proc = run_script(
        fake, env, "generations", "--prompt-file", "prompt.txt", "--output", "out.png",
        extra={**legacy_console("cp1252"), "OPENAI_API_KEY": None},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode("utf-8")
    sent = fake.last.json
    assert sent["prompt"].replace("\r\n", "\n") == prompt
    assert sent["user"] == "nutzer-ü-☕"
    assert fake.last.header("Authorization") == f"Bearer {SENTINEL_KEY}"


def test_a_non_utf8_prompt_file_is_refused_clearly(fake: FakeAPI, env: Path) -> None:
    (env / "prompt.txt").write_bytes("Café".encode("cp1252"))
    proc = run_script(fake, env, "generations", "--prompt-file", "prompt.txt", "--output", "o.png", "--json")
    assert proc.returncode == 2
    obj = json.loads(proc.stdout.decode("utf-8"))
    assert "UTF-8" in obj["error"]["message"]
    assert fake.requests == []


def test_paths_with_spaces(fake: FakeAPI, env: Path, images_dir: Path) -> None:
    inputs = env / "my inputs"
    inputs.mkdir()
    photo = inputs / "the photo ☕.png"
    photo.write_bytes((images_dir / "subject.png").read_bytes())
    (inputs / "the prompt.txt").write_text("put it on a beach", encoding="utf-8")
    (env / "conf dir").mkdir()
    (env / "conf dir" / "my settings.env").write_text("OPENAI_IMAGE_SIZE=1536x1024\n", encoding="utf-8")
    proc = run_script(
        fake, env, "edits", "--prompt-file", "my inputs/the prompt.txt", "--image", str(photo),
        "--output", "my outputs/sub dir/an image {index}.png", "--n", "2",
        "--env-file", "conf dir/my settings.env", "--metadata",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode("utf-8")
    paths = proc.stdout.decode("utf-8").splitlines()
    assert paths == ["my outputs/sub dir/an image 1.png", "my outputs/sub dir/an image 2.png"]
    for path in paths:
        assert (env / path).is_file() and (env / (path + ".json")).is_file()
    assert [part.filename for part in fake.last.files()] == ["the photo ☕.png"]
    assert fake.last.fields["size"] == "1536x1024"
    assert fake.last.fields["prompt"] == "put it on a beach"


def test_a_backslash_is_an_ordinary_character_on_posix(fake: FakeAPI, env: Path) -> None:
    if os.sep == "\\":
        pytest.skip("on Windows a backslash separates folders")
    proc = run_script(fake, env, "generations", "--prompt", "x", "--output", "back\\slash.png")
    assert proc.returncode == 0, proc.stderr
    assert (env / "back\\slash.png").is_file()


def test_windows_paths_with_backslashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The path logic under Windows path rules (ntpath): backslashes, drive letters, spaces, dots in folders."""
    with monkeypatch.context() as patch:
        patch.setattr(gpt_image.os, "path", ntpath)
        plan = gpt_image.OutputPlan("C:\\Users\\Me\\My Pictures.v2\\poster.png", 3)
        finals = [plan.final(i) for i in (1, 2, 3)]
        partial = plan.partial(2, 1)
        single = gpt_image.OutputPlan("D:\\out dir\\img.png", 1).final(1)
        pattern = gpt_image.OutputPlan("D:\\a b\\shot-{index}.webp", 2).final(2)
        sidecar = gpt_image.metadata_path(single)
    assert finals == [f"C:\\Users\\Me\\My Pictures.v2\\poster-{i}.png" for i in (1, 2, 3)]
    assert partial == "C:\\Users\\Me\\My Pictures.v2\\poster-2.partial-1.png"
    assert single == "D:\\out dir\\img.png"
    assert pattern == "D:\\a b\\shot-2.webp"
    assert sidecar == "D:\\out dir\\img.png.json"


def test_an_output_ending_in_a_backslash_is_a_folder(fake: FakeAPI, env: Path) -> None:
    proc = run_script(fake, env, "generations", "--prompt", "x", "--output", "out\\", "--json")
    assert proc.returncode == 2
    assert "folder" in json.loads(proc.stdout)["error"]["message"]
    assert fake.requests == []


# --------------------------------------------------------------------------------------------------------
# No POSIX-only calls, standard library only
# --------------------------------------------------------------------------------------------------------

POSIX_ONLY_MODULES = {"fcntl", "termios", "tty", "pty", "pwd", "grp", "resource", "posix", "syslog", "crypt"}
# os.link is not here: Windows has it too (NTFS hard links), and the atomic writer falls back where it fails.
POSIX_ONLY_ATTRIBUTES = {
    "os": {
        "fork", "forkpty", "getuid", "geteuid", "getgid", "getegid", "getpgid", "setsid", "setuid", "killpg",
        "kill", "chown", "lchown", "mkfifo", "mknod", "statvfs", "uname", "getloadavg", "wait", "waitpid",
        "WNOHANG", "O_NOFOLLOW", "O_NONBLOCK", "nice", "sync", "pipe2", "openpty", "ttyname", "sched_getaffinity",
        "getppid", "symlink", "chroot", "setpgrp", "tcgetpgrp", "posix_spawn",
    },
    "signal": {
        "SIGKILL", "SIGHUP", "SIGALRM", "SIGPIPE", "SIGUSR1", "SIGUSR2", "SIGCHLD", "SIGQUIT", "SIGSTOP",
        "SIGTSTP", "SIGCONT", "SIGWINCH", "alarm", "setitimer", "pause", "siginterrupt", "pthread_kill",
        "sigwait", "SIG_BLOCK", "pthread_sigmask",
    },
    "select": {"poll", "epoll", "kqueue"},
    "socket": {"AF_UNIX", "SO_REUSEPORT", "socketpair"},
    "time": {"tzset"},
}  # fmt: skip


def imported_modules(tree: ast.AST) -> List[Tuple[str, int]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
    return found


def posix_only_uses(tree: ast.AST) -> List[str]:
    """Imports and attribute uses in tree that exist only on POSIX systems."""
    problems = []
    aliases: Dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name] = alias.name
                if alias.name.split(".")[0] in POSIX_ONLY_MODULES:
                    problems.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in POSIX_ONLY_MODULES:
                problems.append(f"line {node.lineno}: from {node.module} import ...")
            for alias in node.names:
                if alias.name in POSIX_ONLY_ATTRIBUTES.get(node.module, set()):
                    problems.append(f"line {node.lineno}: from {node.module} import {alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = aliases.get(node.value.id, "")
            if node.attr in POSIX_ONLY_ATTRIBUTES.get(module, set()):
                problems.append(f"line {node.lineno}: {module}.{node.attr}")
        # getattr(module, "NAME", default) is the portable way to use a name where it exists: not flagged.
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and (node.func.id == "hasattr" or (node.func.id == "getattr" and len(node.args) == 2))
            and len(node.args) >= 2
        ):
            target, name = node.args[0], node.args[1]
            module = aliases.get(target.id, "") if isinstance(target, ast.Name) else ""
            if isinstance(name, ast.Constant) and name.value in POSIX_ONLY_ATTRIBUTES.get(module, set()):
                problems.append(f"line {node.lineno}: getattr({module}, {name.value!r})")
    return problems


def test_no_posix_only_calls() -> None:
    assert posix_only_uses(TREE) == []


def test_the_posix_check_would_catch_a_posix_call() -> None:
    """The detector is not vacuous: it flags the calls it is meant to flag."""
    sample = ast.parse(
        "import os, signal\nimport fcntl\nfrom pwd import getpwnam\nos.kill(1, signal.SIGKILL)\n"
        "getattr(os, 'getuid')()\nsignal.signal(signal.SIGTERM, None)\n"
        "hup = getattr(signal, 'SIGHUP', None)\n"
    )
    found = posix_only_uses(sample)
    assert len(found) == 5, found
    assert not any("SIGTERM" in line or "SIGHUP" in line for line in found)


def test_only_the_standard_library() -> None:
    if sys.version_info < (3, 10):
        pytest.skip("sys.stdlib_module_names needs Python 3.10")
    names = {name.split(".")[0] for name, _ in imported_modules(TREE)}
    assert names, "no imports found: the parse is wrong"
    assert {"argparse", "json", "urllib"} <= names
    outside = sorted(names - set(sys.stdlib_module_names) - {"__future__"})
    assert outside == []


def test_no_import_fallbacks() -> None:
    """Stdlib only and shown as such: no try/except ImportError around imports."""
    for node in ast.walk(TREE):
        if isinstance(node, ast.Try):
            caught = " ".join(ast.unparse(h.type) for h in node.handlers if h.type is not None)
            assert "ImportError" not in caught and "ModuleNotFoundError" not in caught, node.lineno


def test_requires_python_matches() -> None:
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^requires-python\s*=\s*">=3\.9"', pyproject, re.M)


def vermin(*args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    # vermin has no __main__ module, so call its entry point the way its console script does.
    code = "import sys; from vermin import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=str(REPO)
    )


def test_vermin_confirms_python_3_9() -> None:
    """vermin (from PyPI, in the dev extras) finds nothing the script uses that needs more than 3.9."""
    pytest.importorskip("vermin", reason="needs vermin (dev extra)")
    strict = vermin("--no-tips", "-t=3.9-", "--violations", "--eval-annotations", "scripts/gpt_image.py")
    assert strict.returncode == 0, strict.stdout + strict.stderr
    # --violations alone exits 0 when it is inconclusive, so also read the minimum it computed.
    report = vermin("--no-tips", "-t=3.9-", "scripts/gpt_image.py")
    assert report.returncode == 0, report.stdout + report.stderr
    match = re.search(r"Minimum required versions:\s*(?:~2, )?3\.(\d+)", report.stdout)
    assert match, report.stdout
    assert int(match.group(1)) <= 9


@pytest.mark.skipif(
    sys.version_info < (3, 10), reason="vermin parses with the running Python's ast: no match on 3.9"
)
def test_vermin_would_notice_newer_syntax(tmp_path: Path) -> None:
    pytest.importorskip("vermin", reason="needs vermin (dev extra)")
    sample = tmp_path / "newer.py"
    sample.write_text("def f(x):\n    match x:\n        case 1:\n            return 1\n", encoding="utf-8")
    result = vermin("--no-tips", "-t=3.9-", "--violations", str(sample))
    assert result.returncode != 0


# --------------------------------------------------------------------------------------------------------
# Every Python from 3.9 to 3.13 on this machine
# --------------------------------------------------------------------------------------------------------


def pyenv_versions() -> Optional[str]:
    """pyenv's versions folder, found as pyenv finds it: $PYENV_ROOT, else `pyenv root`, else ~/.pyenv."""
    root = os.environ.get("PYENV_ROOT")
    if not root and shutil.which("pyenv"):
        try:
            root = subprocess.run(
                ["pyenv", "root"], capture_output=True, text=True, timeout=20, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            root = None
    root = root or os.path.expanduser("~/.pyenv")
    versions = os.path.join(root, "versions")
    return versions if os.path.isdir(versions) else None


PYENV_VERSIONS = pyenv_versions()


def find_interpreters() -> List[Tuple[str, str]]:
    """(version, python) for each pyenv interpreter 3.9..3.13, one per version."""
    found: Dict[str, str] = {}
    for root in [PYENV_VERSIONS] if PYENV_VERSIONS else []:
        for python in sorted(glob.glob(os.path.join(root, "*", "bin", "python3"))):
            match = re.match(r"3\.(\d+)\.\d+$", os.path.basename(os.path.dirname(os.path.dirname(python))))
            if match and 9 <= int(match.group(1)) <= 13 and os.access(python, os.X_OK):
                found.setdefault(f"3.{match.group(1)}", python)
    return sorted(found.items(), key=lambda item: int(item[0].split(".")[1]))


INTERPRETERS = find_interpreters()


@pytest.mark.skipif(not INTERPRETERS, reason="no pyenv interpreters 3.9..3.13 on this machine")
@pytest.mark.parametrize(
    "version,python", INTERPRETERS or [("none", "none")], ids=[v for v, _ in INTERPRETERS] or ["none"]
)
def test_smoke_under_each_python(
    fake: FakeAPI, env: Path, images_dir: Path, version: str, python: str
) -> None:
    # --help
    helped = run_script(fake, env, "--help", python=python)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.decode("utf-8").startswith("usage: gpt-image")
    # a dry run
    dry = run_script(fake, env, "edits", "--prompt", "x", "--image", str(images_dir / "subject.png"),
                     "--mask", str(images_dir / "mask.png"), "--output", "dry.png", "--dry-run", python=python)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["dry_run"] is True
    assert fake.requests == []
    # a real generation against the fake
    made = run_script(
        fake, env, "generations", "--prompt", "x", "--output", "gen.png", "--json", python=python
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["images"][0]["path"] == "gen.png"
    assert (env / "gen.png").read_bytes() == fake.last.sent_images[0]
    assert f"Python {version};" in (fake.last.header("User-Agent") or ""), "not the interpreter under test"
    # a streaming Responses run with previews
    streamed = run_script(fake, env, "responses", "--input-text", "x", "--output", "resp.png", "--stream",
                          "--partial-images", "2", python=python)  # fmt: skip
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout.decode("utf-8") == "resp.png\n"
    assert (env / "resp.png").read_bytes() == fake.last.sent_images[0]
    assert [(env / f"resp.partial-{k}.png").read_bytes() for k in (1, 2)] == fake.last.sent_partials
    # an expected failure is one line and its exit code, on every version
    failed = run_script(fake, env, "generations", "--prompt", "x", "--output", "gen.png", python=python)
    assert failed.returncode == 2
    assert b"Traceback" not in failed.stderr


def test_the_interpreters_are_found() -> None:
    """On the development machine pyenv has 3.9..3.13; elsewhere the smoke test is skipped instead."""
    if PYENV_VERSIONS is None:
        pytest.skip("no pyenv on this machine (PYENV_ROOT, `pyenv root` and ~/.pyenv name none)")
    versions: Set[str] = {v for v, _ in INTERPRETERS}
    present = {
        f"3.{m.group(1)}"
        for name in os.listdir(PYENV_VERSIONS)
        for m in [re.match(r"3\.(\d+)\.\d+$", name)]
        if m and 9 <= int(m.group(1)) <= 13
    }
    assert versions == present

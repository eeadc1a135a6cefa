"""Ctrl-C and SIGTERM: the CLI runs as a subprocess against the fake and is signalled mid-run.

Whatever it was doing (waiting for headers, sleeping before a retry, streaming previews), it must exit 130
quietly: one ``interrupted`` line, no traceback, no temporary files, previews already saved kept, no final
image and no half-written --save-response file.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Tuple

import pytest
from conftest import SCRIPT, SENTINEL_KEY
from fakeapi import SSE, FakeAPI, Hang, error_reply, images_stream_events, responses_stream_events

pytestmark = pytest.mark.skipif(
    sys.platform == "win32",
    reason="POSIX signals: Windows has no SIGINT/SIGTERM delivery to a child like this",
)

SIGNALS = [signal.SIGINT, signal.SIGTERM]
SIGNAL_IDS = ["SIGINT", "SIGTERM"]
GEN = ("generations", "--prompt", "a red fox in the snow")


def start(fake: FakeAPI, cwd: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start the CLI in cwd with the test environment (sentinel key, base URL = the fake)."""
    child_env = dict(os.environ, OPENAI_BASE_URL=fake.base_url, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        cwd=str(cwd),
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_until(condition: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            _out, err = proc.communicate()
            pytest.fail(f"the CLI exited early ({proc.returncode}):\n{err.decode(errors='replace')}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the CLI to get there")
        time.sleep(0.01)


def interrupt(proc: subprocess.Popen[bytes], signum: int) -> Tuple[int, str, str, float]:
    """Send signum; return (exit code, stdout, stderr, seconds it took to exit)."""
    sent = time.monotonic()
    proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the CLI did not stop within 10 s of {signal.Signals(signum).name}")
    return (
        proc.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
        time.monotonic() - sent,
    )


def files(root: Path) -> Dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def check_quiet_exit(code: int, out: str, err: str, took: float, root: Path) -> Dict[str, bytes]:
    """The shared promises of an interrupted run; returns the files left under root."""
    assert code == 130, err
    assert "Traceback" not in err and "Traceback" not in out
    assert err.splitlines()[-1] == "interrupted", err
    assert SENTINEL_KEY not in out + err
    assert took < 5, f"took {took:.1f} s to stop"
    left = files(root)
    assert not [n for n in left if n.endswith(".part") or Path(n).name.startswith(".")], left
    assert not any(SENTINEL_KEY.encode() in data for data in left.values())
    return left


@pytest.mark.parametrize("signum", SIGNALS, ids=SIGNAL_IDS)
def test_signal_while_waiting_for_headers(env: Path, fake: FakeAPI, signum: int) -> None:
    fake.queue(Hang(seconds=30))
    proc = start(fake, env, *GEN, "--output", "out/fox.png", "--save-response", "out/raw.json")
    fake.wait_for(1, timeout=10)
    time.sleep(0.2)  # let it block in the read of the status line
    code, out, err, took = interrupt(proc, signum)
    left = check_quiet_exit(code, out, err, took, env)
    assert left == {}
    assert out == ""
    assert len(fake.requests) == 1


@pytest.mark.parametrize("signum", SIGNALS, ids=SIGNAL_IDS)
def test_signal_while_sleeping_before_a_retry(env: Path, fake: FakeAPI, signum: int) -> None:
    fake.queue(error_reply(429, "slow down", "rate_limit_exceeded", headers={"retry-after": "60"}))
    proc = start(fake, env, *GEN, "--output", "fox.png")
    fake.wait_for(1, timeout=10)
    time.sleep(0.3)
    code, out, err, took = interrupt(proc, signum)
    left = check_quiet_exit(code, out, err, took, env)
    assert "retrying in 60.0 s" in err
    assert left == {}
    assert len(fake.requests) == 1  # it never got to the retry


@pytest.mark.parametrize("signum", SIGNALS, ids=SIGNAL_IDS)
def test_signal_mid_stream_keeps_previews(env: Path, fake: FakeAPI, signum: int) -> None:
    events = images_stream_events("generation", partials=3)
    fake.queue(SSE(events, delay=1.0))  # one event a second: a preview lands, then a long pause
    proc = start(
        fake,
        env,
        *GEN,
        "--output",
        "out/fox.png",
        "--stream",
        "--partial-images",
        "3",
        "--save-response",
        "raw.sse",
    )
    wait_until(lambda: (env / "out" / "fox.partial-1.png").exists(), proc)
    time.sleep(0.1)
    code, out, err, took = interrupt(proc, signum)
    left = check_quiet_exit(code, out, err, took, env)
    # The preview written before the signal stays, byte for byte; no final image, no saved response.
    assert "out/fox.partial-1.png" in left
    assert "out/fox.png" not in left and "raw.sse" not in left
    assert set(left) <= {"out/fox.partial-1.png", "out/fox.partial-2.png"}
    assert left["out/fox.partial-1.png"] == base64.b64decode(events[0]["b64_json"])


def test_sigint_mid_responses_stream_with_json(env: Path, fake: FakeAPI) -> None:
    events = responses_stream_events(partials=2)
    first = next(e for e in events if e["type"] == "response.image_generation_call.partial_image")
    events.remove(first)
    fake.queue(SSE([first, *events], delay=1.0))  # the first preview at once, then one event a second
    proc = start(
        fake,
        env,
        "responses",
        "--input-text",
        "a fox",
        "--output",
        "fox.png",
        "--stream",
        "--partial-images",
        "2",
        "--json",
    )
    wait_until(lambda: (env / "fox.partial-1.png").exists(), proc)
    code, out, err, took = interrupt(proc, signal.SIGINT)
    left = check_quiet_exit(code, out, err, took, env)
    assert "fox.png" not in left and "fox.partial-1.png" in left
    doc = json.loads(out)
    assert doc["ok"] is False and doc["error"]["type"] == "interrupted" and doc["error"]["exit_code"] == 130


def test_overwrite_interrupted_leaves_the_old_file(env: Path, fake: FakeAPI) -> None:
    (env / "fox.png").write_bytes(b"the old picture")
    fake.queue(Hang(seconds=30))
    proc = start(fake, env, *GEN, "--output", "fox.png", "--overwrite")
    fake.wait_for(1, timeout=10)
    time.sleep(0.2)
    code, out, err, took = interrupt(proc, signal.SIGTERM)
    left = check_quiet_exit(code, out, err, took, env)
    assert left == {"fox.png": b"the old picture"}

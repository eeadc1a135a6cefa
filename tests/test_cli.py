"""The command line as agents and people meet it: the --json envelope, --help, progress, usage and cost,
and the --metadata sidecar. Everything runs the real program against the loopback fake (tests/fakeapi.py).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import gpt_image
import pytest
from conftest import (
    ERROR_EXTRA,
    ERROR_KEYS,
    FAILURE_EXTRA,
    FAILURE_KEYS,
    IMAGE_KEYS,
    REPO,
    SCRIPT,
    SENTINEL_KEY,
    SUCCESS_EXTRA,
    SUCCESS_KEYS,
    Result,
    error_lines,
    split_hint,
)
from fakeapi import (
    IMAGES_USAGE,
    RESPONSES_USAGE,
    SSE,
    FakeAPI,
    Hang,
    Reply,
    Reset,
    error_reply,
    images_body,
    images_stream_events,
    make_image,
    make_mask,
    responses_body,
)

# api-facts.md section 7: USD per 1M tokens for gpt-image-2 (text in, image in, image out).
GPT2_PRICES = (5.00, 8.00, 30.00)

ROUTES = ("generations", "edits", "responses")

CLI = Callable[..., Result]


def one_object(out: str) -> Dict[str, Any]:
    """stdout must hold exactly one JSON object and nothing else."""
    text = out.strip()
    assert text, "stdout is empty"
    obj, end = json.JSONDecoder().raw_decode(text)
    assert text[end:].strip() == "", f"more than one JSON value on stdout: {text[end:][:200]!r}"
    assert isinstance(obj, dict)
    return obj


def route_args(route: str, refs: Path, prompt: str = "a red kite over the sea") -> List[str]:
    """The smallest valid command line for a route (output out/img.png)."""
    if route == "generations":
        return ["generations", "--prompt", prompt, "--output", "out/img.png"]
    if route == "edits":
        return ["edits", "--prompt", prompt, "--image", str(refs / "subject.png"), "--output", "out/img.png"]
    return ["responses", "--input-text", prompt, "--output", "out/img.png"]


def check_success(obj: Dict[str, Any], route: str, fmt: str = "png") -> None:
    assert obj["ok"] is True
    assert set(obj) >= SUCCESS_KEYS, SUCCESS_KEYS - set(obj)
    assert set(obj) <= SUCCESS_KEYS | SUCCESS_EXTRA, set(obj) - SUCCESS_KEYS - SUCCESS_EXTRA
    assert obj["command"] == route
    if route == "responses":  # the model named with --model, and the tool's image model beside it
        assert (obj["model"], obj["image_model"]) == ("gpt-5.4", "gpt-image-2")
    else:
        assert obj["model"] == "gpt-image-2" and "image_model" not in obj
    assert isinstance(obj["elapsed_s"], (int, float)) and obj["elapsed_s"] >= 0
    for image in obj["images"] + obj["partials"]:
        assert set(image) == IMAGE_KEYS
        assert os.path.getsize(image["path"]) == image["bytes"]
        assert image["format"] == fmt


def check_failure(obj: Dict[str, Any], exit_code: int) -> Dict[str, Any]:
    assert obj["ok"] is False
    assert set(obj) in (FAILURE_KEYS, FAILURE_KEYS | FAILURE_EXTRA)
    error = obj["error"]
    assert set(error) >= ERROR_KEYS, ERROR_KEYS - set(error)
    assert set(error) <= ERROR_KEYS | ERROR_EXTRA
    assert isinstance(error["message"], str) and error["message"]
    assert error.get("exit_code", exit_code) == exit_code
    return error  # type: ignore[no-any-return]


def one_error_line(err: str, hint: Optional[str]) -> str:
    """A failure's single `error:` line, last on stderr, carrying `hint` inline; returns it without the hint."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(error_lines(err)) == 1 and lines[-1].startswith("error:"), err
    assert not any(line.startswith("hint:") for line in lines), f"the hint belongs on the error line:\n{err}"
    message, inline = split_hint(lines[-1])
    assert inline == (hint or ""), (inline, hint)
    return message


def child_env(fake: FakeAPI, **extra: Optional[str]) -> Dict[str, str]:
    """The test's environment (set up by the env fixture) for a subprocess of the CLI."""
    environ = dict(os.environ, OPENAI_BASE_URL=fake.base_url)
    for name, value in extra.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return environ


# --------------------------------------------------------------------------------------------------------
# --json: success
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("route", ROUTES)
def test_json_success_envelope(cli: CLI, fake: FakeAPI, images_dir: Path, route: str, stream: bool) -> None:
    args = [*route_args(route, images_dir), "--json"]
    if stream:
        args += ["--stream", "--partial-images", "2"]
    result = cli(*args)
    assert result.code == 0, result.err
    obj = one_object(result.out)
    check_success(obj, route)
    assert [img["path"] for img in obj["images"]] == ["out/img.png"]
    assert obj["images"][0]["index"] == 1
    assert obj["request_id"] == fake.last.request_id and obj["request_id"]
    assert obj["usage"] == (RESPONSES_USAGE if route == "responses" else IMAGES_USAGE)
    if stream:
        assert [p["path"] for p in obj["partials"]] == ["out/img.partial-1.png", "out/img.partial-2.png"]
        assert [p["index"] for p in obj["partials"]] == [1, 2]
    else:
        assert obj["partials"] == []
    if route == "responses":
        assert str(obj["response_id"]).startswith("resp_")
        assert obj["revised_prompt"] == "Revised: a red kite over the sea"
        assert obj["text"]
    else:
        assert obj["response_id"] is None
    assert SENTINEL_KEY not in result.out + result.err


def test_json_success_several_images(cli: CLI, fake: FakeAPI) -> None:
    result = cli(
        "generations", "--prompt", "three kites", "--output", "out/k-{index}.webp", "--n", "3", "--json"
    )
    assert result.code == 0, result.err
    obj = one_object(result.out)
    check_success(obj, "generations", "webp")
    assert [(i["path"], i["index"], i["format"]) for i in obj["images"]] == [
        (f"out/k-{n}.webp", n, "webp") for n in (1, 2, 3)
    ]
    assert [os.path.getsize(i["path"]) for i in obj["images"]] == [i["bytes"] for i in obj["images"]]


def test_json_dry_run_is_one_object(cli: CLI, fake: FakeAPI) -> None:
    result = cli("generations", "--prompt", "a kite", "--output", "out/img.png", "--dry-run", "--json")
    assert result.code == 0, result.err
    obj = one_object(result.out)
    assert obj["ok"] is True and obj["dry_run"] is True
    assert fake.requests == []


# --------------------------------------------------------------------------------------------------------
# --json: failure, one case per exit code and route
# --------------------------------------------------------------------------------------------------------


def _text_only(route: str) -> Reply:
    if route == "responses":
        return Reply(json=responses_body(n_images=0, text="I would rather not draw that."))
    return Reply(json={"created": 1, "data": []})


FAILURES: Dict[str, Tuple[int, str]] = {
    "api": (4, "invalid_request_error"),
    "usage": (2, "usage_error"),
    "config": (3, "config_error"),
    "network": (5, "network_error"),
    "response": (6, "response_error"),
}


@pytest.mark.parametrize("kind", sorted(FAILURES))
@pytest.mark.parametrize("route", ROUTES)
def test_json_failure_envelope(
    cli: CLI, fake: FakeAPI, images_dir: Path, monkeypatch: pytest.MonkeyPatch, route: str, kind: str
) -> None:
    args = [*route_args(route, images_dir), "--json", "--retries", "0"]
    if kind == "api":
        fake.queue(error_reply(400, "Invalid size, try again", code="invalid_value", param="size"))
    elif kind == "usage":
        args += ["--size", "1000x1000"]
    elif kind == "config":
        monkeypatch.delenv("OPENAI_API_KEY")
    elif kind == "network":
        fake.queue(Reset())
    else:
        fake.queue(_text_only(route))
    result = cli(*args)
    exit_code, error_type = FAILURES[kind]
    assert result.code == exit_code, result.err
    error = check_failure(one_object(result.out), exit_code)
    assert error["type"] == error_type
    one_error_line(result.err, error["hint"])  # the envelope's hint is the one shown inline on stderr
    assert "Traceback" not in result.err
    assert SENTINEL_KEY not in result.out + result.err
    if kind == "api":
        assert (error["status"], error["code"], error["param"]) == (400, "invalid_value", "size")
        assert error["request_id"] == fake.last.request_id
        assert "Invalid size, try again" in error["message"]
    else:
        assert error["status"] is None
    if kind in ("usage", "config"):
        assert fake.requests == [], "nothing may be sent when the run is refused before sending"
        assert error["hint"], "a refusal says how to fix it"
    assert not os.path.exists("out/img.png")


@pytest.mark.parametrize(
    "args",
    [
        ["generations", "--prompt", "x", "--output", "o.png", "--no-such-flag"],
        ["--no-such-flag", "generations"],
        ["generations", "--prompt", "x"],  # --output missing
        [],  # no subcommand
        ["pictures", "--output", "o.png"],  # unknown subcommand
        ["generations", "--prompt", "x", "--output", "o.png", "--n", "three"],
        ["edits", "--prompt", "x", "--output", "o.png", "--image-field-style", "curly"],
        ["responses", "--input-text", "x", "--output", "o.png", "--action"],  # missing value
    ],
    ids=[
        "unknown-flag",
        "unknown-flag-top",
        "missing-output",
        "no-command",
        "bad-command",
        "bad-int",
        "bad-choice",
        "missing-value",
    ],
)
def test_json_argparse_errors(cli: CLI, fake: FakeAPI, args: List[str]) -> None:
    result = cli(*args, "--json")
    assert result.code == 2
    error = check_failure(one_object(result.out), 2)
    assert error["type"] == "usage_error"
    assert "--help" in (error["hint"] or "")
    assert len(result.err.splitlines()) == 1, result.err
    one_error_line(result.err, error["hint"])
    assert "usage:" not in result.err, "argparse's usage block would make the error hard to find"
    assert fake.requests == []


def test_argparse_error_without_json_prints_nothing_on_stdout(cli: CLI) -> None:
    result = cli("generations", "--prompt", "x", "--output", "o.png", "--no-such-flag")
    assert result.code == 2
    assert result.out == ""
    assert len(result.err.splitlines()) == 1, result.err
    message, hint = split_hint(result.err.rstrip("\n"))
    assert message == "error: unrecognized arguments: --no-such-flag"
    assert "--help" in hint


@pytest.mark.parametrize("prefix", ["--js", "--dry", "--over", "--qu"])
def test_options_are_never_abbreviated(cli: CLI, fake: FakeAPI, prefix: str) -> None:
    """A prefix of an option is an unknown option, not that option (nor one added later)."""
    result = cli("generations", "--prompt", "x", "--output", "o.png", prefix)
    assert result.code == 2, result.err
    assert result.out == "", "--js did not turn on --json"
    assert len(result.err.splitlines()) == 1, result.err
    message, hint = split_hint(result.err.rstrip("\n"))
    assert message == f"error: unrecognized arguments: {prefix}" and "--help" in hint
    assert fake.requests == []
    assert not os.path.exists("o.png")


def test_json_usage_error_in_a_real_process(fake: FakeAPI, env: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "generations", "--output", "o.png", "--bogus", "--json"],
        capture_output=True,
        env=child_env(fake),
        cwd=str(env),
        timeout=60,
    )
    assert proc.returncode == 2
    error = check_failure(one_object(proc.stdout.decode("utf-8")), 2)
    assert error["type"] == "usage_error"


def test_json_internal_error_envelope(cli: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"simulated bug holding {SENTINEL_KEY}")

    monkeypatch.setattr(gpt_image, "estimate_cost", broken)
    result = cli("generations", "--prompt", "x", "--output", "o.png", "--dry-run", "--json")
    assert result.code == 1
    error = check_failure(one_object(result.out), 1)
    assert error["type"] == "internal_error"
    assert "simulated bug" in error["message"]
    assert SENTINEL_KEY not in result.out + result.err
    assert "Traceback" not in result.err


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM to a child is POSIX-only")
def test_json_interrupted_envelope(fake: FakeAPI, env: Path) -> None:
    fake.queue(Hang(30))
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "generations", "--prompt", "x", "--output", "out/o.png", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(fake),
        cwd=str(env),
    )
    try:
        fake.wait_for(1, timeout=20)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    error = check_failure(one_object(out.decode("utf-8")), 130)
    assert error["type"] == "interrupted"
    assert not (env / "out").exists() or list((env / "out").iterdir()) == []


# --------------------------------------------------------------------------------------------------------
# --help and --version
# --------------------------------------------------------------------------------------------------------


def docstring_exit_table() -> str:
    """The exit-code table of the module docstring, verbatim."""
    doc = gpt_image.__doc__ or ""
    assert "Exit codes:" in doc
    table = "Exit codes:" + doc.split("Exit codes:", 1)[1].rstrip()
    return table


def test_docstring_exit_table_matches_the_constants() -> None:
    rows = dict(
        (int(m.group(1)), m.group(2))
        for m in re.finditer(r"^\s+(\d+)\s+(\S.*)$", docstring_exit_table(), re.M)
    )
    constants = {getattr(gpt_image, name): name for name in dir(gpt_image) if name.startswith("EXIT_")}
    assert sorted(rows) == sorted(constants) == [0, 1, 2, 3, 4, 5, 6, 7, 130]


@pytest.mark.parametrize("command", [None, *ROUTES])
def test_help_teaches(cli: CLI, command: Optional[str]) -> None:
    args = ["--help"] if command is None else [command, "--help"]
    result = cli(*args)
    assert result.code == 0
    text = result.out
    assert text.startswith("usage: gpt-image")
    # The exit-code table is printed exactly as the module docstring has it.
    assert docstring_exit_table() in text
    if command is None:
        for route in ROUTES:
            assert f"gpt_image.py {route} " in text, f"no example for {route}"
        assert "OPENAI_API_KEY" in text and ".env" in text
    else:
        assert "examples:" in text
        examples = [line.strip() for line in text.splitlines() if line.strip().startswith("gpt_image.py ")]
        assert examples and all(e.split()[1] == command for e in examples)
        assert "--output" in text and "--json" in text and "--dry-run" in text
    assert result.err == ""


def help_examples(text: str) -> List[List[str]]:
    return [
        shlex.split(line.strip())[1:]
        for line in text.splitlines()
        if line.strip().startswith("gpt_image.py ")
    ]


@pytest.mark.parametrize("command", [None, *ROUTES])
def test_help_examples_run(cli: CLI, fake: FakeAPI, env: Path, command: Optional[str]) -> None:
    """Every example in --help is a command that works as written (checked with --dry-run)."""
    for name in ("photo.png", "product.png", "a.png", "b.png"):
        (env / name).write_bytes(make_image("png", (64, 48), (90, 90, 90)))
    (env / "mask.png").write_bytes(make_mask((64, 48)))
    (env / "jobs.jsonl").write_text('a red kite\n{"prompt": "a blue kite", "quality": "low"}\n', "utf-8")
    text = cli(*(["--help"] if command is None else [command, "--help"])).out
    examples = help_examples(text)
    assert examples
    for example in examples:
        result = cli(*example, "--dry-run")
        assert result.code == 0, f"{example}: {result.err}"
        if "--batch" in example:  # a JSON line per job, then the summary
            *jobs, summary = [json.loads(line) for line in result.out.splitlines()]
            assert summary["summary"] is True and summary["jobs"] == len(jobs) == 2
            assert all(job["dry_run"] is True for job in jobs)
        else:
            assert one_object(result.out)["dry_run"] is True
    assert fake.requests == []


def _walk(parser: argparse.ArgumentParser, path: str) -> List[Tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _walk(sub, f"{path} {name}")
            for choice in action._choices_actions:
                found.append((f"{path} {choice.dest}", choice))
        else:
            found.append((path, action))
    return found


def test_every_option_has_help() -> None:
    actions = _walk(gpt_image.build_parser(), "gpt-image")
    assert len(actions) > 60
    missing = [
        f"{where}: {'/'.join(action.option_strings) or action.dest}"
        for where, action in actions
        if not action.help or action.help == argparse.SUPPRESS or len(action.help.strip()) < 8
    ]
    assert missing == []


def test_version(cli: CLI) -> None:
    result = cli("--version")
    assert result.code == 0
    assert result.out.strip() == f"gpt-image {gpt_image.__version__}"
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^version\s*=\s*"([^"]+)"', pyproject, re.M)
    assert match and match.group(1) == gpt_image.__version__


# --------------------------------------------------------------------------------------------------------
# Progress on stderr
# --------------------------------------------------------------------------------------------------------


def test_progress_without_a_terminal_is_plain_milestones(fake: FakeAPI, env: Path) -> None:
    fake.queue(SSE(images_stream_events("generation", partials=2), delay=0.3))
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "generations",
            "--prompt",
            "x",
            "--output",
            "out/p.png",
            "--stream",
            "--partial-images",
            "2",
        ],
        capture_output=True,
        env=child_env(fake),
        cwd=str(env),
        timeout=60,
    )
    err = proc.stderr.decode("utf-8")
    assert proc.returncode == 0, err
    assert proc.stdout.decode("utf-8") == "out/p.png\n"
    assert "\r" not in err and "\x1b" not in err
    lines = err.splitlines()
    assert lines[0].startswith("generations: streaming gpt-image-2 at http://127.0.0.1:")
    expected = [
        "preview 1 saved: out/p.partial-1.png",
        "preview 2 saved: out/p.partial-2.png",
        "image 1 saved: out/p.png",
    ]
    assert lines[1:4] == expected
    assert lines[4].startswith("done in ")
    assert len(lines) == 5, lines


def test_quiet_silences_progress_but_not_warnings_or_errors(cli: CLI, fake: FakeAPI) -> None:
    loud = cli("generations", "--prompt", "x", "--output", "out/a.png", "--model", "my-gateway-image")
    assert loud.code == 0, loud.err
    assert "image 1 saved" in loud.err and "done in" in loud.err
    quiet = cli(
        "generations", "--prompt", "x", "--output", "out/b.png", "--model", "my-gateway-image", "--quiet"
    )
    assert quiet.code == 0
    assert quiet.out == "out/b.png\n"
    assert quiet.err.splitlines() == [
        "warning: unknown model my-gateway-image: only the generic checks apply"
    ]
    fake.queue(error_reply(400, "nope", code="invalid_value"))
    failed = cli("generations", "--prompt", "x", "--output", "out/c.png", "--quiet")
    assert failed.code == 4
    assert len(failed.err.splitlines()) == 1 and error_lines(failed.err), failed.err  # hint, if any, inline
    assert "generations:" not in failed.err


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX-only")
@pytest.mark.parametrize("quiet", [False, True], ids=["tty", "tty-quiet"])
def test_progress_on_a_terminal_updates_one_line(fake: FakeAPI, env: Path, quiet: bool) -> None:
    import fcntl
    import pty
    import struct
    import termios

    columns = 60
    # Three previews and the final image, 0.5 s apart: about 1.5 s of streaming.
    fake.queue(SSE(images_stream_events("generation", partials=3), delay=0.5))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    args = [sys.executable, str(SCRIPT), "generations", "--prompt", "x", "--output", "out/t.png", "--stream",
            "--partial-images", "3"]  # fmt: skip
    proc = subprocess.Popen(
        args + (["--quiet"] if quiet else []),
        stdout=subprocess.PIPE,
        stderr=slave,
        env=child_env(fake),
        cwd=str(env),
    )
    os.close(slave)
    received = bytearray()
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            received += chunk
        out, _ = proc.communicate(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = received.decode("utf-8", "replace")
    assert proc.returncode == 0, text
    assert out == b"out/t.png\n"
    if quiet:
        assert text == "", text
        return
    assert "\x1b" not in text, "escape sequences show up as garbage on older Windows consoles"
    # The status line is rewritten in place after a carriage return (the terminal turns \n into \r\n).
    pieces = text.replace("\r\n", "\n").split("\r")
    status = [
        (piece.rstrip(), match)
        for piece in pieces
        for match in [re.match(r"generations: streaming .* (\d+)s(?:, (\d+) preview\(s\))? *$", piece)]
        if match
    ]
    assert status, f"no updating status line in {text!r}"
    for line, _ in status:
        assert len(line) < columns, f"the status line would wrap on a {columns}-column terminal: {line!r}"
    seconds = [int(match.group(1)) for _, match in status]
    assert seconds == sorted(seconds) and max(seconds) >= 1, seconds
    previews = [int(match.group(2)) for _, match in status if match.group(2)]
    assert previews == sorted(previews) and previews, status
    assert "image 1 saved: out/t.png" in text
    # The status line is cleared before each milestone line and at the end, so the summary is the last line.
    assert text.rstrip().splitlines()[-1].startswith("done in ")
    for before, after in zip(pieces, pieces[1:]):
        if re.match(r"generations: streaming", before):
            assert after.strip() == "" or re.match(r"generations: streaming", after), (before, after)


# --------------------------------------------------------------------------------------------------------
# Usage and cost
# --------------------------------------------------------------------------------------------------------


def formula_tokens(width: int, height: int, quality: str) -> int:
    """api-facts.md section 7, written out independently of the script."""
    f = {"low": 16, "medium": 48, "high": 96}[quality]
    long_edge, short_edge = max(width, height), min(width, height)
    saf = (2 * f * short_edge + long_edge) // (2 * long_edge)
    return math.ceil(f * saf * (2_000_000 + width * height) / 4_000_000)


# The table in api-facts.md section 7.
PUBLISHED_TOKENS = {
    ("1024x1024", "low"): 196,
    ("1024x1024", "medium"): 1756,
    ("1024x1024", "high"): 7024,
    ("1536x1024", "low"): 158,
    ("1536x1024", "medium"): 1372,
    ("1536x1024", "high"): 5488,
    ("2048x2048", "low"): 397,
    ("2048x2048", "medium"): 3568,
    ("2048x2048", "high"): 14272,
    ("3840x2160", "low"): 371,
    ("3840x2160", "medium"): 3336,
    ("3840x2160", "high"): 13342,
}


@pytest.mark.parametrize("size,quality", sorted(PUBLISHED_TOKENS))
def test_dry_run_estimated_cost(cli: CLI, fake: FakeAPI, size: str, quality: str) -> None:
    result = cli(
        "generations", "--prompt", "x", "--output", "o.png", "--size", size, "--quality", quality, "--dry-run"
    )
    assert result.code == 0, result.err
    estimate = one_object(result.out)["estimated_cost"]
    width, height = (int(v) for v in size.split("x"))
    tokens = formula_tokens(width, height, quality)
    assert tokens == PUBLISHED_TOKENS[(size, quality)]
    assert estimate["output_tokens"] == tokens
    assert estimate["usd"] == pytest.approx(tokens * GPT2_PRICES[2] / 1_000_000, abs=5e-5)
    assert "estimate" in estimate["basis"]
    assert fake.requests == []


@pytest.mark.parametrize("size", ["1024x1536", "1024x3072", "2560x1440", "1920x1088", "816x816"])
def test_dry_run_estimate_follows_the_formula_for_other_sizes(cli: CLI, size: str) -> None:
    result = cli(
        "generations",
        "--prompt",
        "x",
        "--output",
        "o.png",
        "--size",
        size,
        "--quality",
        "medium",
        "--n",
        "3",
        "--dry-run",
    )
    assert result.code == 0, result.err
    estimate = one_object(result.out)["estimated_cost"]
    width, height = (int(v) for v in size.split("x"))
    assert estimate["output_tokens"] == 3 * formula_tokens(width, height, "medium")
    assert estimate["usd"] == pytest.approx(estimate["output_tokens"] * 30 / 1_000_000, abs=5e-5)


def test_dry_run_estimate_marks_auto_as_an_assumption(cli: CLI) -> None:
    result = cli("generations", "--prompt", "x", "--output", "o.png", "--dry-run")
    estimate = one_object(result.out)["estimated_cost"]
    assert estimate["output_tokens"] == formula_tokens(1024, 1024, "high")
    assert any("auto" in note for note in estimate["notes"])


CUSTOM_USAGE = {
    "input_tokens": 1234,
    "input_tokens_details": {"text_tokens": 234, "image_tokens": 1000},
    "output_tokens": 5488,
    "total_tokens": 6722,
}


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_usage_and_cost_are_reported(cli: CLI, fake: FakeAPI, as_json: bool) -> None:
    fake.queue(Reply(json=images_body(usage=CUSTOM_USAGE)))
    result = cli("generations", "--prompt", "x", "--output", "o.png", *(["--json"] if as_json else []))
    assert result.code == 0, result.err
    text_price, image_price, out_price = GPT2_PRICES
    expected = (234 * text_price + 1000 * image_price + 5488 * out_price) / 1_000_000
    if as_json:
        obj = one_object(result.out)
        assert obj["usage"] == CUSTOM_USAGE
        assert obj["estimated_cost_usd"] == pytest.approx(expected, abs=5e-5)
    else:
        summary = [line for line in result.err.splitlines() if line.startswith("done in")]
        assert len(summary) == 1
        assert "5,488 output tokens" in summary[0]
        assert f"${expected:.4f}" in summary[0] and "estimate" in summary[0]


def test_responses_usage_is_reported(cli: CLI, fake: FakeAPI) -> None:
    text = cli("responses", "--input-text", "x", "--output", "a.png")
    assert text.code == 0, text.err
    assert f"{RESPONSES_USAGE['output_tokens']:,} output tokens" in text.err
    obj = one_object(cli("responses", "--input-text", "x", "--output", "b.png", "--json").out)
    assert obj["usage"] == RESPONSES_USAGE


# --------------------------------------------------------------------------------------------------------
# --metadata
# --------------------------------------------------------------------------------------------------------


def read_sidecar(image: str) -> Dict[str, Any]:
    with open(image + ".json", encoding="utf-8") as handle:
        return json.load(handle)  # type: ignore[no-any-return]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_time(record: Dict[str, Any], started: float) -> None:
    created = datetime.datetime.strptime(record["created"], "%Y-%m-%dT%H:%M:%SZ")
    stamp = created.replace(tzinfo=datetime.timezone.utc).timestamp()
    assert started - 2 <= stamp <= time.time() + 2


def test_metadata_generations(cli: CLI, fake: FakeAPI) -> None:
    body = images_body(usage=CUSTOM_USAGE)
    body["data"][0]["revised_prompt"] = "A kite, revised."
    fake.queue(Reply(json=body))
    started = time.time()
    result = cli(
        "generations",
        "--prompt",
        "a kite",
        "--output",
        "out/k.png",
        "--size",
        "1536x1024",
        "--quality",
        "low",
        "--metadata",
        "--json",
    )
    assert result.code == 0, result.err
    obj = one_object(result.out)
    assert obj["metadata"] == ["out/k.png.json"]
    record = read_sidecar("out/k.png")
    assert record["prompt"] == "a kite"
    assert record["revised_prompt"] == "A kite, revised." == obj["revised_prompt"]
    assert record["model"] == "gpt-image-2"
    assert record["sent"] == fake.last.json  # every parameter exactly as sent
    assert record["request_id"] == fake.last.request_id
    assert record["response_id"] is None
    assert record["usage"] == CUSTOM_USAGE
    assert record["inputs"] == []
    assert record["image"]["path"] == "out/k.png"
    check_time(record, started)
    assert SENTINEL_KEY not in Path("out/k.png.json").read_text(encoding="utf-8")


def test_metadata_edits_records_input_hashes(cli: CLI, fake: FakeAPI, images_dir: Path) -> None:
    subject, background, mask = (
        images_dir / "subject.png",
        images_dir / "background.png",
        images_dir / "mask.png",
    )
    result = cli(
        "edits",
        "--prompt",
        "blend",
        "--image",
        subject,
        "--image",
        background,
        "--mask",
        mask,
        "--output",
        "out/e-{index}.png",
        "--n",
        "2",
        "--metadata",
    )
    assert result.code == 0, result.err
    for index in (1, 2):
        record = read_sidecar(f"out/e-{index}.png")
        assert record["inputs"] == [
            {"path": str(p), "sha256": sha256(p), "bytes": p.stat().st_size}
            for p in (subject, background, mask)
        ]
        assert record["sent"]["image[]"] == [str(subject), str(background)]
        assert record["sent"]["mask"] == str(mask)
        assert record["sent"]["n"] == fake.last.fields["n"] == "2"
        assert record["sent"]["prompt"] == "blend"
        assert record["request_id"] == fake.last.request_id
        assert record["image"]["index"] == index
        assert record["usage"] == IMAGES_USAGE


def test_metadata_responses(cli: CLI, fake: FakeAPI, images_dir: Path) -> None:
    product = images_dir / "product.png"
    result = cli(
        "responses",
        "--input-text",
        "a studio ad",
        "--input-image",
        product,
        "--output",
        "out/r.png",
        "--stream",
        "--metadata",
        "--json",
    )
    assert result.code == 0, result.err
    obj = one_object(result.out)
    record = read_sidecar("out/r.png")
    assert record["response_id"] == obj["response_id"] and record["response_id"].startswith("resp_")
    assert record["revised_prompt"] == "Revised: a studio ad"
    assert record["input_texts"] == ["a studio ad"]
    assert record["inputs"] == [
        {"path": str(product), "sha256": sha256(product), "bytes": product.stat().st_size}
    ]
    assert record["sent"]["tools"][0]["model"] == "gpt-image-2" == record["model"]
    assert record["sent"]["model"] == fake.last.json["model"] == record["text_model"]
    assert record["usage"] == RESPONSES_USAGE


def test_metadata_refuses_an_existing_sidecar(cli: CLI, fake: FakeAPI) -> None:
    Path("out").mkdir()
    Path("out/k.png.json").write_text("{}", encoding="utf-8")
    refused = cli("generations", "--prompt", "x", "--output", "out/k.png", "--metadata", "--json")
    assert refused.code == 2
    error = check_failure(one_object(refused.out), 2)
    assert "out/k.png.json" in error["message"] and "--overwrite" in (error["hint"] or "")
    assert fake.requests == [] and not Path("out/k.png").exists()
    assert Path("out/k.png.json").read_text(encoding="utf-8") == "{}"
    again = cli("generations", "--prompt", "x", "--output", "out/k.png", "--metadata", "--overwrite")
    assert again.code == 0, again.err
    assert read_sidecar("out/k.png")["prompt"] == "x"


def test_without_metadata_no_sidecar(cli: CLI, fake: FakeAPI) -> None:
    assert cli("generations", "--prompt", "x", "--output", "out/k.png").code == 0
    assert sorted(os.listdir("out")) == ["k.png"]

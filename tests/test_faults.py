"""Fault injection: every way the network, the API or the disk can fail, run against the loopback fake.

Each case runs the real program (in-process, ``cli``) and checks four things:

- the exit code (design.md, "Exit codes");
- stderr: exactly one ``error:`` line, its hint (if any) on the same line as ``(hint: ...)``, nothing after
  it, never a ``hint:`` line nor a traceback, and the content that makes the message actionable;
- the files on disk, names and bytes, before and after: no ``.part`` temporaries, no half-written image,
  files that existed before unchanged (conftest's ``Tree``);
- the sentinel API key appears nowhere: not in stdout, stderr, nor in any file under tmp_path.

The retry backoff is shortened (``fast_backoff``) so that the suite stays fast; the real schedule is
checked directly on ``retry_delay``.
"""

from __future__ import annotations

import base64
import email.utils
import json
import socket
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import gpt_image
import pytest
from conftest import ERROR_KEYS, SENTINEL_KEY, Result, Tree, assert_one_error, split_hint
from fakeapi import (
    SSE,
    FakeAPI,
    Hang,
    Reply,
    Reset,
    ResetMidBody,
    b64,
    error_reply,
    images_body,
    images_stream_events,
    make_image,
    moderation_reply,
    responses_body,
    responses_stream_events,
)

GEN = ("generations", "--prompt", "a red fox in the snow")
KEY_BYTES = SENTINEL_KEY.encode("utf-8")

# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the real retry logic but shrink the default backoff to milliseconds."""
    monkeypatch.setattr(gpt_image, "BACKOFF_BASE_S", 0.005)
    monkeypatch.setattr(gpt_image, "BACKOFF_MAX_S", 0.02)


def no_secret(res: Result) -> None:
    assert SENTINEL_KEY not in res.out, "the API key leaked to stdout"
    assert SENTINEL_KEY not in res.err, "the API key leaked to stderr"


error_line = assert_one_error


def quiet_lines(res: Result) -> List[str]:
    """stderr lines other than warnings (with --quiet: only the error line, hint inline, should remain)."""
    return [line for line in res.err.splitlines() if line.strip() and not line.startswith("warning:")]


def retry_notes(res: Result) -> List[str]:
    return [line for line in res.err.splitlines() if line.startswith("retrying")]


def failure_envelope(res: Result) -> Dict[str, Any]:
    """The --json failure object: exactly one JSON object on stdout with the documented keys."""
    doc = json.loads(res.out)
    assert doc["ok"] is False
    for key in sorted(ERROR_KEYS):
        assert key in doc["error"], key
    assert res.out.strip().count("\n") == 0, "stdout must hold one JSON object on one line"
    return doc["error"]  # type: ignore[no-any-return]


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def image_reply_bytes() -> bytes:
    return json.dumps(images_body(1, "png")).encode("utf-8")


# --------------------------------------------------------------------------------------
# Retries: 429 / 5xx / x-should-retry / retry-after
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after-ms": "20"},
        {"retry-after": "0"},
        {"retry-after": email.utils.formatdate(time.time() - 5, usegmt=True)},
    ],
    ids=["retry-after-ms", "retry-after-0", "retry-after-date"],
)
def test_429_then_success(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path, headers: Dict) -> None:
    fake.queue(
        error_reply(429, "Rate limit reached for images per minute.", "rate_limit_exceeded", headers=headers)
    )
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "out/fox.png")
    no_secret(res)
    assert res.code == 0, res.err
    assert len(fake.requests) == 2
    notes = retry_notes(res)
    assert len(notes) == 1 and "429" in notes[0] and "(1/2)" in notes[0]
    added = tree.added()
    assert set(added) == {"out", "out/fox.png"}
    assert added["out/fox.png"] == fake.sent_images[0]
    assert res.lines == [str(Path("out/fox.png"))]


def test_retry_after_ms_is_honoured(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    fake.queue(error_reply(429, "slow down", "rate_limit_exceeded", headers={"retry-after-ms": "300"}))
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png")
    assert res.code == 0, res.err
    no_secret(res)
    assert tree.added() == {"fox.png": fake.sent_images[0]}
    first, second = fake.requests
    assert second.received_at - first.received_at >= 0.28
    assert "retrying in 0.3 s" in res.err


def test_503_three_times_gives_up(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    busy = error_reply(
        503, "The engine is currently overloaded, please try again later.", type="server_error"
    )
    fake.queue(busy, busy, busy, Reply(json=images_body()))  # the 4th must never be asked for
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png")
    error_line(res, 4, "503", "overloaded", hint=["server error"])
    assert len(fake.requests) == 3
    assert len(retry_notes(res)) == 2
    assert fake.queued == 1
    tree.unchanged()


def test_retries_0_sends_once(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    fake.queue(error_reply(503, "overloaded", type="server_error"))
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--retries", "0")
    error_line(res, 4, "503")
    assert len(fake.requests) == 1 and retry_notes(res) == []
    tree.unchanged()


def test_retries_from_env(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_IMAGE_RETRIES", "1")
    busy = error_reply(502, "bad gateway", type="server_error")
    fake.queue(busy, busy, busy)
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png")
    error_line(res, 4, "502")
    assert len(fake.requests) == 2
    tree.unchanged()


def test_500_with_error_body(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    msg = "The server had an error while processing your request. Sorry about that!"
    headers = {"x-request-id": "req_fault500"}
    fake.queue(*[error_reply(500, msg, type="server_error", headers=headers)] * 3)
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--json")
    error_line(res, 4, "500", msg, "req_fault500", hint=["server error"])
    env = failure_envelope(res)
    assert env["status"] == 500 and env["type"] == "server_error" and env["request_id"] == "req_fault500"
    assert msg in env["message"]
    tree.unchanged()


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_errors_then_success(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path, status: int
) -> None:
    fake.queue(
        Reply(status=status, body=b"<html><body>Gateway trouble</body></html>", content_type="text/html")
    )
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png")
    assert res.code == 0, res.err
    no_secret(res)
    assert len(fake.requests) == 2
    assert any(str(status) in note for note in retry_notes(res))
    assert tree.added() == {"fox.png": fake.sent_images[0]}


def test_x_should_retry_false_on_500(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    fake.queue(
        error_reply(500, "do not retry this", type="server_error", headers={"x-should-retry": "false"})
    )
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png")
    error_line(res, 4, "500", "do not retry this")
    assert len(fake.requests) == 1 and retry_notes(res) == []
    tree.unchanged()


def test_x_should_retry_true_on_409_is_not_retried(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path
) -> None:
    fake.queue(error_reply(409, "conflict, try again", headers={"x-should-retry": "true"}))
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png")
    # "true" never extends retries beyond 429/500/502/503/504: another 4xx would fail the same way again.
    error_line(res, 4, "409", "conflict, try again")
    assert len(fake.requests) == 1 and retry_notes(res) == []
    tree.unchanged()


def test_retry_after_over_120_s_is_not_slept(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path
) -> None:
    fake.queue(
        error_reply(
            429, "Rate limit reached, come back later.", "rate_limit_exceeded", headers={"retry-after": "600"}
        )
    )
    tree = Tree(tmp_path)
    started = time.monotonic()
    res = cli(*GEN, "--output", "fox.png")
    assert time.monotonic() - started < 10
    message = error_line(res, 4, "429", "120 s", hint=["rate limited"])
    assert "Rate limit reached, come back later." in message  # the API's own words are kept
    assert len(fake.requests) == 1
    tree.unchanged()


def test_retry_delay_schedule() -> None:
    """The real schedule (not shortened here): backoff, retry-after-ms, seconds, HTTP date, the cap."""
    delay = gpt_image.retry_delay
    base, top = gpt_image.BACKOFF_BASE_S, gpt_image.BACKOFF_MAX_S
    for attempt in range(8):
        want = min(base * 2**attempt, top)
        for _ in range(20):
            got = delay(None, attempt)
            assert got is not None and 0.75 * want - 1e-9 <= got <= want
    assert delay({"retry-after-ms": "250"}, 0) == 0.25
    assert delay({"retry-after": "3"}, 0) == 3.0
    assert delay({"retry-after": "0"}, 5) == 0.0
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 27 <= (delay({"retry-after": future}, 0) or 0) <= 30
    assert delay({"retry-after": "121"}, 0) is None
    assert delay({"retry-after-ms": "120000"}, 0) == 120.0
    for junk in ("soon", "", "-5", "nan", "inf"):
        got = delay({"retry-after": junk}, 0)
        assert got is not None and 0 <= got <= base, junk


# --------------------------------------------------------------------------------------
# API refusals: one error line with an actionable hint
# --------------------------------------------------------------------------------------


def test_400_invalid_value_with_param(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    fake.queue(
        error_reply(
            400,
            "Invalid value: 'ultra'. Supported values are: 'low', 'medium', 'high', and 'auto'.",
            "invalid_value",
            param="quality",
            headers={"x-request-id": "req_badvalue"},
        )
    )
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--quiet", "--json")
    message = error_line(
        res, 4, "400", "invalid_value", "param quality", "Invalid value: 'ultra'", "req_badvalue"
    )
    quiet = quiet_lines(res)
    assert len(quiet) == 1 and split_hint(quiet[0])[0] == message  # --quiet: the error line alone
    assert len(fake.requests) == 1
    env = failure_envelope(res)
    assert env == {
        **env,
        "type": "invalid_request_error",
        "status": 400,
        "code": "invalid_value",
        "param": "quality",
        "request_id": "req_badvalue",
        "exit_code": 4,
    }
    tree.unchanged()


@pytest.mark.parametrize("stage", ["input", "output"])
def test_400_moderation_blocked(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path, stage: str
) -> None:
    fake.queue(moderation_reply(stage))
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--quiet")
    error_line(
        res, 4, "400", "moderation_blocked", "safety system", hint=[f"{stage} stage", "sexual", "rephrase"]
    )
    assert len(fake.requests) == 1
    tree.unchanged()


def test_401_echoing_the_key_is_redacted_everywhere(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path
) -> None:
    echoed = f"Incorrect API key provided: {SENTINEL_KEY}. You can find your API key at https://platform.openai.com."
    reply = error_reply(401, echoed, "invalid_api_key")
    fake.queue(reply)
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "out/fox.png", "--save-response", "out/raw.json", "--json")
    message = error_line(
        res, 4, "401", "invalid_api_key", "Incorrect API key provided: ***", hint=["OPENAI_API_KEY"]
    )
    assert "***" in message
    env = failure_envelope(res)
    assert env["status"] == 401 and "***" in env["message"]
    added = tree.added()  # also checks that no file holds the key
    assert set(added) == {"out", "out/raw.json"}
    saved = added["out/raw.json"] or b""
    assert saved == reply.payload().replace(KEY_BYTES, b"***")
    assert len(fake.requests) == 1
    assert fake.last.headers["Authorization"] == f"Bearer {SENTINEL_KEY}"  # it was sent, just never shown


def test_401_key_from_dotenv_is_redacted(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = "sk-dotenv-SECRET-9876543210fedcba"
    monkeypatch.delenv("OPENAI_API_KEY")
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "app.env").write_text(f"OPENAI_API_KEY='{other}'\n", encoding="utf-8")
    fake.queue(error_reply(401, f"Incorrect API key provided: {other}.", "invalid_api_key"))
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--env-file", "cfg/app.env", "--save-response", "raw.json")
    error_line(res, 4, "401", "***")
    assert other not in res.out + res.err
    added = tree.added()
    assert set(added) == {"raw.json"} and other.encode() not in (added["raw.json"] or b"")


def test_403_organization_verification(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    fake.queue(
        error_reply(
            403,
            "Your organization must be verified to use the model `gpt-image-2`. Please go to: "
            "https://platform.openai.com/settings/organization/general and click on Verify Organization.",
            type="invalid_request_error",
        )
    )
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--quiet")
    error_line(res, 4, "403", "must be verified", hint=["organization", "verified"])
    assert len(fake.requests) == 1
    tree.unchanged()


def test_404_model(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    fake.queue(
        error_reply(
            404, "The model `gpt-image-7` does not exist or you do not have access to it.", "model_not_found"
        )
    )
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--model", "gpt-image-7")
    assert "warning: unknown model gpt-image-7" in res.err
    error_line(res, 4, "404", "model_not_found", "gpt-image-7", hint=["model name", "--base-url"])
    assert len(fake.requests) == 1
    tree.unchanged()


def test_413_too_large(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    fake.queue(Reply(status=413, body=b"<html>413 Request Entity Too Large</html>", content_type="text/html"))
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png")
    error_line(res, 4, "413", "Request Entity Too Large", hint=["too large"])
    assert len(fake.requests) == 1
    tree.unchanged()


@pytest.mark.parametrize("rst", [True, False], ids=["rst", "fin"])
def test_error_status_whose_body_breaks(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path, rst: bool
) -> None:
    """A 4xx is reported as the API's refusal even when its body is cut short (nothing was billed)."""
    body = error_reply(400, "Invalid value for 'size'. " + "x" * 200, "invalid_value").payload()
    fake.queue(ResetMidBody(status=400, body=body, after=60, rst=rst))
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--save-response", "raw.json")
    message = error_line(res, 4, "API error 400", "Invalid value for")
    assert "billed" not in message
    assert len(fake.requests) == 1
    assert tree.added() == {"raw.json": body[:60]}


def test_json_200_with_an_error_object(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    fake.queue(Reply(json={"error": {"message": "Upstream refused the job", "code": "upstream_error"}}))
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--json")
    error_line(res, 4, "upstream_error", "Upstream refused the job")
    env = failure_envelope(res)
    assert env["code"] == "upstream_error" and env["status"] is None
    tree.unchanged()


# --------------------------------------------------------------------------------------
# The network: refused, reset, broken mid-body, silent
# --------------------------------------------------------------------------------------


def test_connection_refused_is_retried_then_exit_5(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path
) -> None:
    port = closed_port()
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--base-url", f"http://127.0.0.1:{port}/v1", "--json")
    error_line(
        res, 5, "cannot reach", f"127.0.0.1:{port}", "connection refused", "3 attempts", hint=["network"]
    )
    notes = retry_notes(res)
    assert len(notes) == 2 and all("connection refused" in n for n in notes)
    assert fake.requests == []
    env = failure_envelope(res)
    assert env["type"] == "network_error" and env["status"] is None and env["exit_code"] == 5
    tree.unchanged()


def test_reset_before_headers_is_retried(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    fake.queue(Reset())
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png")
    assert res.code == 0, res.err
    no_secret(res)
    assert len(fake.requests) == 2
    notes = retry_notes(res)
    assert len(notes) == 1 and "closed" in notes[0]
    assert tree.added() == {"fox.png": fake.sent_images[0]}


def test_reset_every_time_gives_up(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    fake.queue(Reset(), Reset(), Reset())
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--retries", "2")
    error_line(res, 5, "cannot reach", "closed before a response", "3 attempts")
    assert len(fake.requests) == 3
    tree.unchanged()


@pytest.mark.parametrize("rst", [True, False], ids=["rst", "fin"])
def test_reset_mid_body_is_not_retried(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path, rst: bool
) -> None:
    body = image_reply_bytes()
    fake.queue(ResetMidBody(body=body, after=len(body) // 2, rst=rst))
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--save-response", "raw.json")
    error_line(res, 5, "broke", "may already be billed")
    assert len(fake.requests) == 1 and retry_notes(res) == []
    # The raw bytes that did arrive are kept for a report; no image file.
    added = tree.added()
    assert set(added) <= {"raw.json"}
    if added:
        assert body.startswith(added["raw.json"] or b"-")


def test_server_never_answers(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    fake.queue(Hang(seconds=10))
    tree = Tree(tmp_path)
    started = time.monotonic()
    res = cli(*GEN, "--output", "fox.png", "--timeout", "1", "--json")
    elapsed = time.monotonic() - started
    error_line(res, 5, "no response within 1 s", "not retried", "billed", hint=["--timeout", "--stream"])
    assert 0.9 <= elapsed < 5
    assert len(fake.requests) == 1 and retry_notes(res) == []
    assert failure_envelope(res)["type"] == "network_error"
    tree.unchanged()


def test_stalled_stream_after_a_preview(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    events = images_stream_events("generation", partials=2)
    fake.queue(SSE(events, delay=3))
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--stream", "--partial-images", "2", "--timeout", "1")
    error_line(res, 5, "stalled", "billed", "1 preview(s) kept", "fox.partial-1.png", hint=["--timeout"])
    assert len(fake.requests) == 1
    assert tree.added() == {"fox.partial-1.png": base64.b64decode(events[0]["b64_json"])}


# --------------------------------------------------------------------------------------
# Unusable responses (exit 6)
# --------------------------------------------------------------------------------------


def test_truncated_json_text(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    body = image_reply_bytes()
    fake.queue(Reply(body=body[: len(body) // 2], content_type="application/json"))
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--json")
    error_line(res, 6, "not valid JSON", f"{len(body) // 2:,} bytes")
    assert failure_envelope(res)["type"] == "response_error"
    assert len(fake.requests) == 1
    tree.unchanged()


def test_non_json_200(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    fake.queue(Reply(body=b"<!doctype html><title>Captive portal</title>", content_type="text/html"))
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png")
    error_line(res, 6, "not valid JSON", "Captive portal", hint=["--base-url"])
    tree.unchanged()


@pytest.mark.parametrize(
    "payload, needle",
    [
        ({"created": 1, "data": []}, "holds no image"),
        ({"created": 1}, "no data list"),
        ({"created": 1, "data": [{"revised_prompt": "x"}]}, "no base64 image data"),
        ({"created": 1, "data": [{"url": "https://example.com/a.png"}]}, "image URL"),
        ([1, 2, 3], "no data list"),
    ],
    ids=["empty-data", "no-data", "no-b64", "url-only", "not-object"],
)
def test_json_200_without_image(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path, payload: Any, needle: str
) -> None:
    fake.queue(Reply(json=payload))
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png")
    error_line(res, 6, needle)
    tree.unchanged()


def test_responses_text_only(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    fake.queue(Reply(json=responses_body(n_images=0, text="I cannot draw that.")))
    tree = Tree(tmp_path)
    res = cli("responses", "--input-text", "draw a fox", "--output", "fox.png", "--json")
    error_line(res, 6, "no image", "I cannot draw that.")
    assert failure_envelope(res)["type"] == "response_error"
    tree.unchanged()


@pytest.mark.parametrize("length", [40, 4000], ids=["short", "lean-blob"])
def test_base64_that_does_not_decode(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path, length: int
) -> None:
    junk = ("iVBORw0K" + "@#$%" * length)[:length]
    fake.queue(Reply(json={"created": 1, "data": [{"b64_json": junk}]}))
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png")
    error_line(res, 6, "does not decode")
    tree.unchanged()


def test_base64_of_something_that_is_not_an_image(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path
) -> None:
    fake.queue(Reply(json={"created": 1, "data": [{"b64_json": b64(b"BM" + bytes(5000))}]}))  # a BMP header
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png")
    error_line(res, 6, "not a PNG, JPEG, WEBP, GIF or SVG image")
    tree.unchanged()


def test_second_image_bad_keeps_the_first(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    good = make_image("png", color=(230, 25, 75))
    fake.queue(Reply(json={"created": 1, "data": [{"b64_json": b64(good)}, {"b64_json": "!!!!"}]}))
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox-{index}.png", "--n", "2")
    error_line(res, 6, "image 2", "does not decode")
    assert tree.added() == {"fox-1.png": good}  # paid for and complete: kept


# --------------------------------------------------------------------------------------
# Event streams
# --------------------------------------------------------------------------------------

STREAM = (*GEN, "--output", "fox.png", "--stream", "--partial-images", "2")


def test_sse_ends_before_the_final_image(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    events = images_stream_events("generation", partials=2)
    fake.queue(SSE(events[:-1]))
    tree = Tree(tmp_path)
    res = cli(*STREAM, "--json")
    error_line(res, 6, "ended before the final image", "billed", "2 preview(s) kept", "fox.partial-2.png")
    assert tree.added() == {
        "fox.partial-1.png": base64.b64decode(events[0]["b64_json"]),
        "fox.partial-2.png": base64.b64decode(events[1]["b64_json"]),
    }
    assert failure_envelope(res)["type"] == "response_error"


def test_sse_error_event(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    events: List[Any] = images_stream_events("generation", partials=2)[:1]
    events.append(
        {
            "type": "error",
            "error": {"message": "Image generation failed", "code": "server_error", "type": "server_error"},
        }
    )
    fake.queue(SSE(events, headers={"x-request-id": "req_sse_err"}))
    tree = Tree(tmp_path)
    res = cli(*STREAM, "--json")
    error_line(res, 4, "server_error", "Image generation failed", "req_sse_err")
    env = failure_envelope(res)
    assert env["code"] == "server_error" and env["request_id"] == "req_sse_err" and env["status"] is None
    assert set(tree.added()) == {"fox.partial-1.png"}
    assert len(fake.requests) == 1


def test_responses_error_event(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    events: List[Any] = responses_stream_events(partials=1)[:3]
    events.append(
        {"type": "error", "code": "rate_limit_exceeded", "message": "Too many images", "param": None}
    )
    fake.queue(SSE(events))
    tree = Tree(tmp_path)
    res = cli("responses", "--input-text", "a fox", "--output", "fox.png", "--stream")
    error_line(res, 4, "rate_limit_exceeded", "Too many images")
    tree.unchanged()


def test_responses_failed_event(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    events: List[Any] = responses_stream_events(partials=0)[:2]
    response = dict(
        events[0]["response"],
        status="failed",
        error={"code": "image_content_policy_violation", "message": "refused"},
    )
    events.append({"type": "response.failed", "response": response})
    fake.queue(SSE(events))
    tree = Tree(tmp_path)
    res = cli("responses", "--input-text", "a fox", "--output", "fox.png", "--stream")
    error_line(res, 4, "image_content_policy_violation", "refused")
    tree.unchanged()


def test_sse_malformed_json(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    events: List[Any] = images_stream_events("generation", partials=2)[:1]
    events.append(
        b'event: image_generation.partial_image\ndata: {"type": "image_generation.partial_image", "b64\n\n'
    )
    fake.queue(SSE(events))
    tree = Tree(tmp_path)
    res = cli(*STREAM, "--save-response", "raw.sse")
    error_line(res, 6, "malformed JSON", "image_generation.partial_image", hint=["--save-response"])
    added = tree.added()
    assert set(added) == {"fox.partial-1.png", "raw.sse"}
    assert added["raw.sse"] == SSE(events).render()


def test_sse_truncated_mid_line(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    events = images_stream_events("generation", partials=2)
    whole = SSE(events).render()
    line = whole.index(b'data: {"type":"image_generation.completed"')
    cut = (line + whole.index(b"\n", line)) // 2  # in the middle of the final event's data line
    fake.queue(SSE(events, truncate_at=cut))
    tree = Tree(tmp_path)
    res = cli(*STREAM, "--save-response", "raw.sse")
    error_line(res, 6, "ended before the final image", "2 preview(s) kept")
    added = tree.added()
    assert set(added) == {"fox.partial-1.png", "fox.partial-2.png", "raw.sse"}
    assert added["raw.sse"] == whole[:cut]


def test_sse_truncated_by_reset(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    events = images_stream_events("generation", partials=2)
    whole = SSE(events).render()
    cut = whole.index(b"image_generation.completed") + 100
    fake.queue(SSE(events, truncate_at=cut, reset=True))
    tree = Tree(tmp_path)
    res = cli(*STREAM)
    message = error_line(res, 5, "broke", "reset by the server", "billed")
    assert "2 preview(s) kept" in message
    assert len(fake.requests) == 1
    assert set(tree.added()) == {"fox.partial-1.png", "fox.partial-2.png"}


@pytest.mark.parametrize("route", ["generations", "responses"])
def test_stream_broken_after_the_final_image_is_a_success(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path, route: str
) -> None:
    """The image is paid for and saved: a connection lost afterwards is a warning, not a failure."""
    if route == "generations":
        events = images_stream_events("generation", partials=1)
        last, key, args = len(events) - 1, "b64_json", GEN
    else:
        events = responses_stream_events(partials=1)
        last = next(i for i, e in enumerate(events) if e["type"] == "response.output_item.done")
        key, args = "result", ("responses", "--input-text", "a fox")
    final = base64.b64decode(events[last][key] if key in events[last] else events[last]["item"][key])
    cut = len(SSE(events[: last + 1]).render())
    fake.queue(SSE([*events, {"type": "padding", "text": "x" * 500}], truncate_at=cut + 20, reset=True))
    tree = Tree(tmp_path)
    res = cli(*args, "--output", "fox.png", "--stream", "--partial-images", "1")
    no_secret(res)
    assert res.code == 0, res.err
    assert "error:" not in res.err
    assert "warning: the event stream broke after the final image" in res.err
    assert res.lines == ["fox.png"]
    added = tree.added()
    assert set(added) == {"fox.png", "fox.partial-1.png"} and added["fox.png"] == final


def test_sse_bad_base64_in_final_event(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    events = images_stream_events("generation", partials=1)
    events[-1] = dict(events[-1], b64_json="%%%%" * 600)
    fake.queue(SSE(events))
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--stream", "--partial-images", "1")
    error_line(res, 6, "does not decode")
    assert set(tree.added()) == {"fox.partial-1.png"}


# --------------------------------------------------------------------------------------
# The disk, --save-response, --overwrite
# --------------------------------------------------------------------------------------


def test_output_under_a_regular_file(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    (tmp_path / "blocker").write_bytes(b"I am a file, not a folder\n")
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "blocker/sub/fox.png", "--json")
    error_line(res, 2, "blocker", "not a folder")
    assert fake.requests == []
    assert failure_envelope(res)["type"] == "usage_error"
    tree.unchanged()


def test_save_response_under_a_regular_file(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path
) -> None:
    (tmp_path / "blocker").write_bytes(b"x")
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--save-response", "blocker/raw.json")
    error_line(res, 2, "blocker")
    assert fake.requests == []
    tree.unchanged()


def test_save_response_keeps_the_error_body(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path
) -> None:
    reply = error_reply(400, "Invalid size", "invalid_value", param="size")
    fake.queue(reply)
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--save-response", "raw.json")
    error_line(res, 4, "400", "Invalid size")
    assert tree.added() == {"raw.json": reply.payload()}


def test_save_response_on_success_is_the_raw_body(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path
) -> None:
    body = image_reply_bytes()
    fake.queue(Reply(body=body, content_type="application/json", chunk_size=333))
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--save-response", "raw.json")
    assert res.code == 0, res.err
    added = tree.added()
    assert added["raw.json"] == body
    assert set(added) == {"fox.png", "raw.json"}


@pytest.mark.parametrize(
    "behaviour",
    [
        error_reply(400, "nope", "invalid_value"),
        ResetMidBody(body=b'{"created": 1, "data": [{"b64_json": "' + b"A" * 5000 + b'"}]}', after=900),
        Reply(json={"created": 1, "data": [{"b64_json": "not base64 at all!"}]}),
        Hang(seconds=10),
    ],
    ids=["api-error", "reset-mid-body", "bad-base64", "timeout"],
)
def test_existing_output_survives_a_failed_overwrite(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path, behaviour: Any
) -> None:
    original = make_image("png", color=(1, 2, 3))
    (tmp_path / "fox.png").write_bytes(original)
    (tmp_path / "raw.json").write_bytes(b"an old saved response\n")
    fake.queue(behaviour)
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--overwrite", "--timeout", "1")
    assert res.code in (4, 5, 6), res.err
    error_line(res, res.code)
    tree.unchanged()
    assert (tmp_path / "fox.png").read_bytes() == original


def test_existing_output_without_overwrite_is_refused(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path
) -> None:
    (tmp_path / "fox.png").write_bytes(b"precious")
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png")
    error_line(res, 2, "already exists", hint=["--overwrite"])
    assert fake.requests == []
    tree.unchanged()


# --------------------------------------------------------------------------------------
# Secret hygiene on the way out
# --------------------------------------------------------------------------------------


def test_plain_http_to_a_remote_host_warns(cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path) -> None:
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--base-url", "http://images.example.com/v1", "--dry-run")
    no_secret(res)
    assert res.code == 0, res.err
    warnings = [line for line in res.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "unencrypted" in warnings[0] and "images.example.com" in warnings[0]
    doc = json.loads(res.out)
    assert doc["headers"]["Authorization"] == "Bearer ***"
    assert doc["url"] == "http://images.example.com/v1/images/generations"
    assert fake.requests == []
    tree.unchanged()


@pytest.mark.parametrize(
    "url",
    ["https://images.example.com/v1", "http://127.0.0.1:9/v1", "http://localhost:9/v1", "http://[::1]:9/v1"],
)
def test_no_http_warning_for_tls_or_loopback(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path, url: str
) -> None:
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--base-url", url, "--dry-run")
    assert res.code == 0, res.err
    assert "unencrypted" not in res.err
    assert json.loads(res.out)["headers"]["Authorization"] == "Bearer ***"
    no_secret(res)
    assert fake.requests == []
    tree.unchanged()


def test_internal_error_text_is_redacted(
    cli: Callable[..., Result], fake: FakeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even a bug whose exception text carries the key prints one redacted line, exit 1."""

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"unexpected state with {SENTINEL_KEY}")

    monkeypatch.setattr(gpt_image, "consume_response", boom)
    tree = Tree(tmp_path)
    res = cli(*GEN, "--output", "fox.png", "--json")
    error_line(res, 1, "internal error", "RuntimeError", "***")
    assert json.loads(res.out)["error"]["type"] == "internal_error"
    tree.unchanged()


def test_an_api_message_with_line_breaks_stays_on_one_line(cli: Any, fake: FakeAPI) -> None:
    fake.queue(error_reply(400, "line one\nline two\r\nthree\rfour", code="invalid_value"))
    result = cli("generations", "--prompt", "x", "--output", "out.png")
    assert result.code == 4
    error_lines = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert error_lines[0].endswith("line one line two three four [request " + fake.requests[0].request_id + "]")
    assert result.err.endswith(error_lines[0] + "\n")

"""--batch FILE --batch-api: submitted, tracked and collected through the fake's Files and Batches APIs.

Polls are made fast by shrinking BATCH_POLL_FIRST_S in-process (and through a small launcher for the
subprocess that is interrupted); the fake advances a batch one status step per poll (BatchPlan).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import gpt_image
import pytest
from conftest import SCRIPTS, SENTINEL_KEY, Result, assert_one_error
from fakeapi import BatchPlan, FakeAPI, Lost, Reply, identify

CLI = Callable[..., Result]


pytestmark = pytest.mark.usefixtures("fast_polls")  # Batch API polls in milliseconds (conftest)


def jobs_file(path: Path, lines: List[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), "utf-8")
    return path


def json_lines(out: str) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def input_lines(fake: FakeAPI, index: int = 0) -> List[Dict[str, Any]]:
    batch = fake.batches[index]
    return [json.loads(line) for line in fake.file_content(batch["input_file_id"]).splitlines()]


ARGS = ("generations", "--batch", "jobs.jsonl", "--batch-api", "--output", "out/{job}-{index}.png")


def test_submit_wait_and_collect(cli: CLI, fake: FakeAPI, env: Path) -> None:
    jobs_file(env / "jobs.jsonl", ["a red kite", {"id": "pair", "prompt": "two kites", "n": 2, "quality": "low"}])
    result = cli(*ARGS, "--json")
    assert result.code == 0, result.err
    records = json_lines(result.out)
    summary = records.pop()
    assert (summary["saved"], summary["failed"], summary["batch_status"]) == (2, 0, "completed")
    assert summary["batch_id"] == fake.batches[0]["id"]
    assert sorted(r["job"] for r in records) == ["1", "pair"]
    (batch,) = fake.batches
    assert (batch["endpoint"], batch["completion_window"]) == ("/v1/images/generations", "24h")
    sent = input_lines(fake)
    assert [(s["custom_id"], s["method"], s["url"]) for s in sent] == [
        ("1", "POST", "/v1/images/generations"), ("pair", "POST", "/v1/images/generations")]  # fmt: skip
    assert sent[1]["body"] == {"model": "gpt-image-2", "prompt": "two kites", "quality": "low", "n": 2}
    upload = next(r for r in fake.requests if r.path == "/v1/files")
    assert upload.upload is not None and upload.upload.fields["purpose"] == "batch"
    for name in ("1-1", "pair-1", "pair-2"):
        assert identify((env / "out" / f"{name}.png").read_bytes()) is not None
    assert "estimated_cost_usd" in summary and SENTINEL_KEY not in result.err + result.out
    state = json.loads((env / "jobs.jsonl.batch-state.json").read_text("utf-8"))
    assert state["batch_id"] == batch["id"] and state["collected"] is True
    again = cli(*ARGS)  # done: nothing is sent again
    assert again.code == 0, again.err
    assert len(fake.batches) == 1 and len([r for r in fake.requests if r.path == "/v1/files"]) == 1


def test_no_wait_then_collect_submits_once(cli: CLI, fake: FakeAPI, env: Path, openai_sdk: Any) -> None:
    fake.batch_plan = BatchPlan(polls_per_step=3)
    jobs_file(env / "jobs.jsonl", ["one", "two", "three"])
    first = cli(*ARGS, "--no-wait")
    assert first.code == 0, first.err
    batch_id = first.out.strip()
    assert batch_id == fake.batches[0]["id"] and not (env / "out").exists()
    # The official SDK, as a second client, sees the batch the CLI made and the input it uploaded.
    client = openai_sdk.OpenAI(api_key=SENTINEL_KEY, base_url=fake.base_url, max_retries=0)
    seen = client.batches.retrieve(batch_id)
    assert seen.input_file_id == fake.batches[0]["input_file_id"] and seen.endpoint == "/v1/images/generations"
    content = client.files.content(seen.input_file_id).text
    assert [json.loads(x)["custom_id"] for x in content.splitlines()] == ["1", "2", "3"]
    second = cli(*ARGS)
    assert second.code == 0, second.err
    assert sorted(second.lines) == ["out/1-1.png", "out/2-1.png", "out/3-1.png"]
    assert len(fake.batches) == 1 and len([r for r in fake.requests if r.path == "/v1/files"]) == 1


@pytest.fixture
def openai_sdk() -> Any:
    return pytest.importorskip("openai", reason="the official SDK is a dev extra")


LAUNCHER = (
    "import sys; sys.path.insert(0, sys.argv[1]); import gpt_image; gpt_image.BATCH_POLL_FIRST_S = 0.05;"
    " gpt_image.BATCH_POLL_MOST_S = 0.05; sys.exit(gpt_image.main(sys.argv[2:]))"
)


def test_interrupt_while_waiting_detaches_and_resumes(fake: FakeAPI, env: Path) -> None:
    fake.batch_plan = BatchPlan(polls_per_step=10_000)  # stays in_progress until the test lets it go
    jobs_file(env / "jobs.jsonl", ["one", "two"])
    argv = [sys.executable, "-c", LAUNCHER, str(SCRIPTS), *ARGS]
    child = dict(os.environ, OPENAI_BASE_URL=fake.base_url)
    proc = subprocess.Popen(argv, cwd=str(env), env=child, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not fake.batches and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert b"keeps running" in err and b"run the same command again" in err and b"Traceback" not in err
    assert not (env / "out").exists()
    fake.advance_batch(fake.batches[0]["id"], steps=3)
    again = subprocess.run(argv, cwd=str(env), env=child, capture_output=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert sorted(again.stdout.decode().split()) == ["out/1-1.png", "out/2-1.png"]
    assert len(fake.batches) == 1


def test_cancel_then_collect_what_finished(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.batch_plan = BatchPlan(polls_per_step=1, lines_per_step=1)
    jobs_file(env / "jobs.jsonl", [f"p{i}" for i in range(5)])
    assert cli(*ARGS, "--no-wait").code == 0
    batch_id = fake.batches[0]["id"]
    fake.advance_batch(batch_id, steps=2)  # in_progress, one line run
    cancelled = cli(*ARGS, "--cancel")
    assert cancelled.code == 0, cancelled.err
    assert cancelled.out.strip() == batch_id and "cancelling" in cancelled.err
    result = cli(*ARGS, "--json")
    records = json_lines(result.out)
    summary = records.pop()
    assert result.code == 7 and summary["batch_status"] == "cancelled"
    assert summary["saved"] >= 1 and summary["saved"] + summary["failed"] == 5
    assert {r["job"] for r in records if r["ok"]} == {p.stem.split("-")[0] for p in (env / "out").iterdir()}


def test_requests_without_a_body_send_no_body_headers(cli: CLI, fake: FakeAPI, env: Path) -> None:
    """The Batch API's GETs carry no Content-Type and no Content-Length; the cancel POST (no body in the spec)
    carries Content-Length: 0 and no Content-Type."""
    fake.batch_plan = BatchPlan(polls_per_step=1, lines_per_step=1)
    jobs_file(env / "jobs.jsonl", ["one", "two", "three"])
    assert cli(*ARGS, "--no-wait").code == 0
    fake.advance_batch(fake.batches[0]["id"], steps=2)
    assert cli(*ARGS, "--cancel").code == 0
    assert cli(*ARGS).code == 7
    gets = [r for r in fake.requests if r.method == "GET"]
    assert {r.route.split("/")[2] for r in gets if r.route} == {"batches", "files"}
    assert any(r.path.endswith("/content") for r in gets)
    for rec in gets:
        assert (rec.path, rec.headers.get("Content-Type"), rec.headers.get("Content-Length")) == (rec.path, None, None)
    (cancel,) = [r for r in fake.requests if r.path.endswith("/cancel")]
    assert (cancel.method, cancel.headers.get("Content-Type"), cancel.headers.get("Content-Length")) == ("POST", None, "0")
    assert cancel.body_size == 0


def test_an_expired_batch_saves_what_finished(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.batch_plan = BatchPlan(expire_after=2)
    jobs_file(env / "jobs.jsonl", [f"p{i}" for i in range(5)])
    result = cli(*ARGS)
    assert_one_error(result, 7, "3 of 5 jobs failed")
    assert len(result.lines) == 2 and len(list((env / "out").iterdir())) == 2


def test_a_batch_that_fails_validation(cli: CLI, fake: FakeAPI, env: Path) -> None:
    failed = {"id": "batch_bad", "object": "batch", "status": "failed", "errors": {"object": "list", "data": [
        {"code": "invalid_value", "message": "Invalid size for this model.", "param": "body.size", "line": 2}]}}  # fmt: skip
    fake.queue(Reply(json=failed), route="GET /v1/batches/*")
    jobs_file(env / "jobs.jsonl", ["one", {"prompt": "two", "size": "2048x2048"}])
    result = cli(*ARGS)
    assert_one_error(result, 4, "failed validation", "line 2", "jobs file line 2", "Invalid size")
    assert not (env / "out").exists()


def test_a_lost_create_is_found_not_repeated(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.queue(Lost(), route="POST /v1/batches")  # the batch is made, its answer never arrives
    jobs_file(env / "jobs.jsonl", ["one", "two"])
    result = cli(*ARGS)
    assert result.code == 0, result.err
    assert len(fake.batches) == 1
    assert len([r for r in fake.requests if r.method == "POST" and r.path == "/v1/batches"]) == 1


def test_a_changed_jobs_file_is_refused_until_collected(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.batch_plan = BatchPlan(polls_per_step=50)
    jobs_file(env / "jobs.jsonl", ["one", "two"])
    assert cli(*ARGS, "--no-wait").code == 0
    jobs_file(env / "jobs.jsonl", ["one", "two", "three"])
    result = cli(*ARGS)
    assert_one_error(result, 2, "changed since batch", fake.batches[0]["id"], hint=["--cancel"])
    assert len(fake.batches) == 1


def test_a_truncated_output_is_fetched_again(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.batch_plan = BatchPlan(truncate_output_at=200, shuffle=False)
    jobs_file(env / "jobs.jsonl", ["one", "two", "three"])
    first = cli(*ARGS)
    assert_one_error(first, 7, "not collected")
    assert not (env / "out").exists() or len(list((env / "out").iterdir())) < 3
    state = json.loads((env / "jobs.jsonl.batch-state.json").read_text("utf-8"))
    assert state["collected"] is False
    fake._batches.outputs[fake.batches[0]["output_file_id"]].truncate_output_at = None  # the store recovers
    second = cli(*ARGS)
    assert second.code == 0, second.err
    assert len(list((env / "out").iterdir())) == 3 and len(fake.batches) == 1


def test_collection_keeps_no_copy_of_the_result_file(cli: CLI, fake: FakeAPI, env: Path) -> None:
    """design.md: results are saved a line at a time as the file streams in, and no copy of it is kept."""
    jobs_file(env / "jobs.jsonl", [f"p{i}" for i in range(4)])
    assert cli(*ARGS, "--no-wait").code == 0
    output = fake.advance_batch(fake.batches[0]["id"], steps=3)["output_file_id"]
    content = fake.file_content(output)
    # The same file served slowly, in eight pieces, so the folder can be looked at mid-download.
    piece = len(content) // 8 + 1
    fake.queue(Reply(body=content, chunk_size=piece, chunk_delay=0.05), route="GET /v1/files/*/content")
    seen: List[List[str]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            saved = [p for p in (env / "out").glob("*.png")] if (env / "out").is_dir() else []
            if 1 <= len(saved) < 4:  # mid-download: some jobs saved, not all (the state file is not saved then)
                seen.append(sorted(p.name for p in env.iterdir()))
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = cli(*ARGS)
    finally:
        stop.set()
        watcher.join()
    assert result.code == 0, result.err
    assert len(list((env / "out").glob("*.png"))) == 4
    assert seen, "the folder was never seen mid-download: the test proves nothing"
    assert {name for names in seen for name in names} == {"jobs.jsonl", "jobs.jsonl.batch-state.json", "out"}


def test_an_unknown_custom_id_is_ignored_with_a_warning(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.batch_plan = BatchPlan(unknown_custom_id=True)
    jobs_file(env / "jobs.jsonl", ["one"])
    result = cli(*ARGS)
    assert result.code == 0, result.err
    assert "unknown or repeated job" in result.err


@pytest.mark.parametrize("route", ["edits", "responses"])
def test_edits_and_responses_go_as_json_lines(
    cli: CLI, fake: FakeAPI, env: Path, images_dir: Path, route: str
) -> None:
    if route == "edits":
        lines: List[Any] = [{"prompt": "dusk", "image": str(images_dir / "subject.png"), "mask": str(images_dir / "mask.png")}]
    else:
        lines = [{"input_text": "a poster", "input_image": str(images_dir / "photo.jpg")}]
    jobs_file(env / "jobs.jsonl", lines)
    result = cli(route, "--batch", "jobs.jsonl", "--batch-api", "--output", "out/{job}.png")
    assert result.code == 0, result.err
    (sent,) = input_lines(fake)
    body = sent["body"]
    if route == "edits":
        assert sent["url"] == "/v1/images/edits"
        assert body["images"][0]["image_url"].startswith("data:image/png;base64,")
        assert body["mask"]["image_url"].startswith("data:image/png;base64,")
    else:
        assert sent["url"] == "/v1/responses" and "stream" not in body
        assert body["input"][0]["content"][1]["image_url"].startswith("data:image/jpeg;base64,")
    assert (env / "out" / "1.png").exists()


@pytest.mark.parametrize(
    "extra, setup, words",
    [
        (["--stream"], None, "does not stream"),
        ([], ("BATCH_API_MAX_JOBS", 2), "a batch takes at most 2"),
        ([], ("BATCH_API_MAX_BYTES", 250), "from job 3"),
        (["--no-wait"], "no-batch-api", "go with --batch-api"),
    ],
)
def test_pre_flight_refusals(
    cli: CLI, fake: FakeAPI, env: Path, monkeypatch: pytest.MonkeyPatch, extra: List[str], setup: Any, words: str
) -> None:
    jobs_file(env / "jobs.jsonl", ["one", "two", "three"])
    args = list(ARGS)
    if isinstance(setup, tuple):
        monkeypatch.setattr(gpt_image, *setup)
    elif setup == "no-batch-api":
        args.remove("--batch-api")
    result = cli(*args, *extra)
    every_line = extra == ["--stream"]  # a refusal of every line: the first, then the other two
    assert_one_error(result, 2, words, then=["jobs.jsonl:2: ", "jobs.jsonl:3: "] if every_line else [])
    assert fake.requests == []


def test_stdin_jobs_are_refused(cli: CLI, fake: FakeAPI) -> None:
    result = cli("generations", "--batch", "-", "--batch-api", "--output", "o/{job}.png", stdin="a\n")
    assert_one_error(result, 2, "needs a jobs file")


def test_a_dry_run_shows_the_input_and_the_batch_price(cli: CLI, fake: FakeAPI, env: Path, images_dir: Path) -> None:
    jobs_file(env / "jobs.jsonl", [{"prompt": "a", "image": str(images_dir / "subject.png")}, {"prompt": "b",
              "image": str(images_dir / "subject.png")}, {"prompt": "c", "image": str(images_dir / "subject.png")},
              {"prompt": "d", "image": str(images_dir / "subject.png")}])  # fmt: skip
    result = cli("edits", "--batch", "jobs.jsonl", "--batch-api", "--output", "out/{job}.png", "--quality", "low",
                 "--dry-run")  # fmt: skip
    assert result.code == 0, result.err
    shown = json.loads(result.out)
    assert shown["lines"] == 4 and len(shown["first_lines"]) == 3
    image_url = shown["first_lines"][0]["body"]["images"][0]["image_url"]
    assert image_url.startswith("data:image/png;base64,<") and "subject.png" in image_url
    assert shown["estimated_cost_usd"] == pytest.approx(shown["estimated_cost_sync_usd"] / 2, abs=1e-4)
    assert shown["input_bytes"] > 4 * (images_dir / "subject.png").stat().st_size
    assert fake.requests == []


@pytest.mark.parametrize("version", [None, "2025-04-01-preview"], ids=["v1", "classic"])
def test_the_batch_api_on_azure(
    cli: CLI, fake: FakeAPI, env: Path, monkeypatch: pytest.MonkeyPatch, version: Any
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", fake.azure_url)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", SENTINEL_KEY)
    if version:
        monkeypatch.setenv("AZURE_OPENAI_API_VERSION", version)
    jobs_file(env / "jobs.jsonl", ["one", "two"])
    result = cli(*ARGS)
    assert result.code == 0, result.err
    assert sorted(result.lines) == ["out/1-1.png", "out/2-1.png"]
    calls = [r for r in fake.requests if r.route in ("/v1/files", "/v1/batches") or (r.route or "").startswith(("/v1/files/", "/v1/batches/"))]
    assert calls and all(r.surface.startswith("azure") for r in calls)
    assert all(r.header("api-key") == SENTINEL_KEY and r.header("authorization") is None for r in calls)
    if version:
        assert all(r.api_version == version for r in calls)


# --------------------------------------------------------------------------------------------------------
# What a review of the merged Batch API found (each failed before its fix)
# --------------------------------------------------------------------------------------------------------


def test_a_submitted_batch_is_collected_though_its_inputs_are_gone(
    cli: CLI, fake: FakeAPI, env: Path, images_dir: Path
) -> None:
    fake.batch_plan = BatchPlan(polls_per_step=2)
    image = env / "product.png"
    image.write_bytes((images_dir / "product.png").read_bytes())
    jobs_file(env / "jobs.jsonl", [{"prompt": "on a beach", "image": "product.png"}])
    args = ("edits", "--batch", "jobs.jsonl", "--batch-api", "--output", "out/{job}.png")
    assert cli(*args, "--no-wait").code == 0
    image.unlink()  # paid for: its results must still be collectable, and cancellable
    result = cli(*args)
    assert result.code == 0, result.err
    assert result.lines == ["out/1.png"] and len(fake.batches) == 1


def test_an_incomplete_image_in_a_result_line_fails_its_job(cli: CLI, fake: FakeAPI, env: Path) -> None:
    from fakeapi import b64, make_image

    cut = make_image("png", (64, 48))[:-10]
    line = {"id": "r1", "custom_id": "1", "error": None,
            "response": {"status_code": 200, "request_id": "req_1", "body": {"created": 1, "data": [{"b64_json": b64(cut)}]}}}  # fmt: skip
    fake.queue(Reply(body=(json.dumps(line) + "\n").encode(), content_type="application/octet-stream"),
               route="GET /v1/files/*/content")  # fmt: skip
    jobs_file(env / "jobs.jsonl", ["one"])
    result = cli(*ARGS)
    assert_one_error(result, 7, "incomplete")
    assert not (env / "out").exists() or not list((env / "out").iterdir())


@pytest.mark.parametrize("answer", [[1, 2], {"id": "batch_x"}, {"status": "completed"}, {"id": "b\x1b[31m", "status": "completed"}])
def test_an_odd_batch_object_is_one_clear_error(cli: CLI, fake: FakeAPI, env: Path, answer: Any) -> None:
    fake.queue(Reply(json=answer), route="GET /v1/batches/*")
    jobs_file(env / "jobs.jsonl", ["one"])
    result = cli(*ARGS)
    message = assert_one_error(result, 6, "keeps running", "run the same command again")
    assert "\x1b" not in result.err + result.out, message


def test_batch_api_refusals_before_anything_is_sent(cli: CLI, fake: FakeAPI, env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jobs_file(env / "jobs.jsonl", ["one", "two"])
    for extra, words in ((["--save-response", "raw.json"], "does not go with --batch-api"),
                         (["--metadata"], "does not go with --batch-api"),
                         (["--quality", "high", "--max-cost", "0.01", "--dry-run"], "over --max-cost"),
                         (["--cancel"], "no submitted batch to cancel")):  # fmt: skip
        assert_one_error(cli(*ARGS, *extra), 2, words)
    monkeypatch.delenv("OPENAI_API_KEY")
    assert_one_error(cli(*ARGS), 3, "OPENAI_API_KEY is not set")
    assert fake.requests == []


def test_batch_api_edits_are_json_so_moderation_goes(cli: CLI, fake: FakeAPI, env: Path, images_dir: Path) -> None:
    jobs_file(env / "jobs.jsonl", [{"prompt": "x", "image": str(images_dir / "subject.png")}])
    result = cli("edits", "--batch", "jobs.jsonl", "--batch-api", "--moderation", "low", "--output", "o/{job}.png")
    assert result.code == 0, result.err
    assert input_lines(fake)[0]["body"]["moderation"] == "low"


def test_a_download_that_breaks_off_keeps_what_arrived(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.batch_plan = BatchPlan(shuffle=False)
    jobs_file(env / "jobs.jsonl", ["one", "two", "three"])
    assert cli(*ARGS, "--no-wait").code == 0
    batch_id = fake.batches[0]["id"]
    fake.advance_batch(batch_id, steps=3)
    output = fake.batches[0]["output_file_id"]
    first_line = fake.file_content(output).split(b"\n")[0]
    fake._batches.outputs[output].reset_output_after = len(first_line) + 10  # the connection drops in line 2
    first = cli(*ARGS)
    assert_one_error(first, 7, "not collected")
    assert "broke off" in first.err and len(list((env / "out").iterdir())) == 1
    fake._batches.outputs[output].reset_output_after = None
    second = cli(*ARGS)
    assert second.code == 0, second.err
    assert len(list((env / "out").iterdir())) == 3 and len(fake.batches) == 1

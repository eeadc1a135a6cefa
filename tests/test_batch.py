"""--batch FILE: many jobs in one run, against the loopback fake with latency, a rate limit and failures.

The fake counts requests and successful replies per prompt, so "nothing paid for twice" is checked as
"no prompt got two successful replies".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
from conftest import SCRIPT, SENTINEL_KEY, Result, assert_one_error, run_measured
from fakeapi import FakeAPI, RateLimit, identify, rate_limit_reply

CLI = Callable[..., Result]


def jobs_file(path: Path, lines: List[Any]) -> Path:
    """Write a jobs file: strings are written as they are, anything else as one JSON line."""
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), "utf-8")
    return path


def json_lines(out: str) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def tree(folder: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------------


def test_forty_jobs_through_a_rate_limit_are_all_saved_once(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.latency = 0.02
    fake.rate_limit = RateLimit(requests=6, window=0.25)
    prompts = [f"product shot {i}" for i in range(40)]
    jobs_file(env / "jobs.txt", prompts)
    result = cli("generations", "--batch", "jobs.txt", "--output", "out/{job}.png", "--jobs", "8", "--json")
    assert result.code == 0, result.err
    records = json_lines(result.out)
    summary = records.pop()
    assert summary["summary"] is True and summary["saved"] == 40 and summary["failed"] == 0
    assert sorted(r["job"] for r in records) == [f"{i:02d}" for i in range(1, 41)]
    assert all(r["ok"] for r in records)
    assert sum(fake.requests_per_prompt.values()) > 40, "the limit was never reached: the test proves nothing"
    assert dict(fake.successes_per_prompt) == {p: 1 for p in prompts}  # no job paid for twice
    for i in range(1, 41):
        assert identify((env / "out" / f"{i:02d}.png").read_bytes()) == ("final", 0)
    assert fake.peak_concurrency <= 8


def test_the_remaining_requests_header_pauses_every_worker(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.rate_limit = RateLimit(requests=3, window=0.3, headers=True)
    jobs_file(env / "jobs.txt", [f"p{i}" for i in range(9)])
    result = cli("generations", "--batch", "jobs.txt", "--output", "out/{job}.png", "--jobs", "3")
    assert result.code == 0, result.err
    # Each window's third reply says 0 remaining; the workers wait for the reset instead of hitting a 429.
    assert sum(fake.requests_per_prompt.values()) <= 9 + 3
    assert len(list((env / "out").iterdir())) == 9


def test_one_refused_prompt_among_twenty(cli: CLI, fake: FakeAPI, env: Path) -> None:
    prompts = [f"kite {i}" for i in range(20)]
    prompts[6] = "kite 6 [[refuse]]"
    jobs_file(env / "jobs.txt", prompts)
    result = cli("generations", "--batch", "jobs.txt", "--output", "out/{job}.png")
    message = assert_one_error(result, 7, "1 of 20 jobs failed", "job 07")
    assert "jobs.txt:7" in message
    assert len(result.lines) == 19
    assert sorted(os.listdir(env / "out")) == [f"{i:02d}.png" for i in range(1, 21) if i != 7]


def test_a_rejected_key_stops_the_batch_at_once(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.latency = 0.05
    jobs_file(env / "jobs.txt", ["first [[status:401]]"] + [f"p{i}" for i in range(30)])
    result = cli("generations", "--batch", "jobs.txt", "--output", "out/{job}.png", "--jobs", "2", "--json")
    assert_one_error(result, 4, "the batch stopped", "401")
    assert len(fake.requests) <= 3, "new sends go on after a 401"
    summary = json_lines(result.out)[-1]
    assert summary["exit_code"] == 4 and summary["not_run"] >= 28


def test_insufficient_quota_stops_the_batch(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.insufficient_quota = True
    jobs_file(env / "jobs.txt", [f"p{i}" for i in range(10)])
    result = cli("generations", "--batch", "jobs.txt", "--output", "out/{job}.png", "--jobs", "1")
    assert_one_error(result, 4, "quota")
    assert len(fake.requests) == 1
    assert not (env / "out").exists()


def test_a_long_retry_after_is_waited_out_not_failed(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.queue(rate_limit_reply(0.3), rate_limit_reply(0.3, retry_after=False, retry_after_ms=False))
    jobs_file(env / "jobs.txt", ["a", "b"])
    started = time.monotonic()
    result = cli("generations", "--batch", "jobs.txt", "--output", "out/{job}.png", "--retries", "0")
    assert result.code == 0, result.err  # rate limits use no retries: the account is busy, the job is fine
    assert time.monotonic() - started >= 0.3
    assert sorted(os.listdir(env / "out")) == ["1.png", "2.png"]


def test_resume_runs_only_what_is_left(cli: CLI, fake: FakeAPI, env: Path) -> None:
    jobs_file(env / "jobs.txt", [{"id": "a", "prompt": "a"}, {"id": "b", "prompt": "b"}, {"id": "c", "prompt": "c", "n": 2}])
    (env / "out").mkdir()
    (env / "out" / "a-1.png").write_bytes(b"from an earlier run")
    result = cli("generations", "--batch", "jobs.txt", "--output", "out/{job}-{index}.png", "--json")
    assert result.code == 0, result.err
    records = {r.get("job"): r for r in json_lines(result.out)}
    assert records["a"]["skipped"] is True
    assert (env / "out" / "a-1.png").read_bytes() == b"from an earlier run"  # a finished job is not touched
    assert sorted(fake.requests_per_prompt) == ["b", "c"]
    assert records[None]["skipped"] == 1 and records[None]["saved"] == 2


def test_a_job_cut_short_is_refused_not_replaced(cli: CLI, fake: FakeAPI, env: Path) -> None:
    jobs_file(env / "jobs.txt", [{"id": "c", "prompt": "c", "n": 2}])
    (env / "out").mkdir()
    (env / "out" / "c-1.png").write_bytes(b"someone's file, or half of an earlier job")
    result = cli("generations", "--batch", "jobs.txt", "--output", "out/{job}-{index}.png")
    assert_one_error(result, 2, "jobs.txt:1", "out/c-1.png exists but out/c-2.png does not", "--overwrite")
    assert fake.requests == [] and (env / "out" / "c-1.png").read_bytes().startswith(b"someone's")
    again = cli("generations", "--batch", "jobs.txt", "--output", "out/{job}-{index}.png", "--overwrite")
    assert again.code == 0, again.err
    assert identify((env / "out" / "c-1.png").read_bytes()) == ("final", 0)


def test_an_interrupted_batch_resumes_with_what_is_left(fake: FakeAPI, env: Path) -> None:
    fake.latency = 0.15
    prompts = [f"frame {i}" for i in range(16)]
    jobs_file(env / "jobs.txt", prompts)
    child = dict(os.environ, OPENAI_BASE_URL=fake.base_url)
    argv = [sys.executable, str(SCRIPT), "generations", "--batch", "jobs.txt", "--output", "out/{job}.png", "--jobs", "2"]
    proc = subprocess.Popen(argv, cwd=str(env), env=child, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while sum(fake.successes_per_prompt.values()) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    first = set(fake.successes_per_prompt)
    saved = sorted(os.listdir(env / "out"))
    assert 4 <= len(saved) < 16
    assert not [n for n in saved if n.endswith(".part") or n.startswith(".")], saved
    assert len(out.decode().split()) == len(saved)  # every saved image was reported
    again = subprocess.run(argv, cwd=str(env), env=child, capture_output=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert len(os.listdir(env / "out")) == 16
    assert all(count == 1 for count in fake.successes_per_prompt.values())  # nothing generated twice
    assert set(fake.successes_per_prompt) == set(prompts) and not (first & set(again.stdout.decode().split()))


@pytest.mark.parametrize("route", ["edits", "responses"])
def test_every_route_runs_a_batch(cli: CLI, fake: FakeAPI, env: Path, images_dir: Path, route: str) -> None:
    if route == "edits":
        lines = [{"prompt": "on a beach", "image": str(images_dir / "product.png")},
                 {"prompt": "two in one", "image": [str(images_dir / "subject.png"), str(images_dir / "background.png")]},
                 {"prompt": "refused [[refuse]]", "image": str(images_dir / "product.png")}]  # fmt: skip
        args = ["edits"]
    else:
        lines = [{"input_text": "a summit poster"}, {"input-text": ["a poster", "in blue"], "stream": True},
                 {"input_text": "refused [[refuse]]"}]  # fmt: skip
        args = ["responses"]
    jobs_file(env / "jobs.jsonl", lines)
    result = cli(*args, "--batch", "jobs.jsonl", "--output", "out/{job}.png", "--json")
    assert result.code == 7, result.err
    records = json_lines(result.out)
    summary = records.pop()
    assert (summary["saved"], summary["failed"]) == (2, 1)
    by_job = {r["job"]: r for r in records}
    assert by_job["3"]["ok"] is False and by_job["3"]["error"]["code"] == "moderation_blocked"
    for name in ("1", "2"):
        assert by_job[name]["ok"] is True
        assert (env / by_job[name]["images"][0]["path"]).exists()
    if route == "edits":
        sent = next(r for r in fake.requests if "two in one" in (r.fields.get("prompt") or ""))
        assert [p.name for p in sent.files()] == ["image[]", "image[]"]
    else:
        texts = [p["text"] for r in fake.requests for p in r.json["input"][0]["content"]]
        assert "in blue" in texts


def test_progress_and_paths_go_where_they_belong(cli: CLI, fake: FakeAPI, env: Path) -> None:
    jobs_file(env / "jobs.txt", ["a", "b", "c"])
    result = cli("generations", "--batch", "jobs.txt", "--output", "out/{job}.png")
    assert result.code == 0, result.err
    assert sorted(result.lines) == ["out/1.png", "out/2.png", "out/3.png"]
    assert "batch: 3/3 done, 0 failed" in result.err
    assert SENTINEL_KEY not in result.err + result.out


def test_memory_follows_jobs_not_the_job_count(fake: FakeAPI, env: Path) -> None:
    child = dict(os.environ, OPENAI_BASE_URL=fake.base_url)
    peaks = {}
    for count in (100, 1000):
        jobs_file(env / f"jobs{count}.txt", [f"job {count} {i}" for i in range(count)])
        code, _, err, peak, _ = run_measured(
            [sys.executable, str(SCRIPT), "generations", "--batch", f"jobs{count}.txt", "--output",
             f"out{count}/{{job}}.png", "--jobs", "4", "--quiet"], child, env,
        )  # fmt: skip
        assert code == 0, err
        peaks[count] = peak
    assert peaks[1000] < peaks[100] * 1.25, peaks


# --------------------------------------------------------------------------------------------------------
# Bad input: exit 2, FILE:LINE, how many lines are bad, nothing sent
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, words",
    [
        ({"prompt": "x", "colour": "red"}, "unknown option 'colour'"),
        ({"prompt": "x", "size": "1000x1000"}, "multiples of 16"),
        ({"prompt": "x", "quality": 3}, "is not one of"),
        ({"prompt": "x", "n": 2.5}, "whole number"),
        ({"prompt": "x", "stream": "yes"}, "true or false"),
        ({"prompt": "x", "jobs": 9}, "shapes the whole run"),
        ({"prompt": "x", "base-url": "http://127.0.0.1:1/v1"}, "shapes the whole run"),
        ({"prompt": "x", "dry_run": True}, "shapes the whole run"),
        ('{"prompt": "x",', "not valid JSON"),
        ('"an unterminated string', "not valid JSON"),
        ({"prompt": ""}, "prompt is empty"),
        ({"id": "x"}, "a prompt is required"),
        ({"prompt": "x", "id": "dup"}, "used by an earlier line"),
        ({"prompt": "x", "output": "out/1.png"}, "planned by job 1 too"),
    ],
)
def test_a_bad_line_is_refused_with_its_place(cli: CLI, fake: FakeAPI, env: Path, line: Any, words: str) -> None:
    jobs_file(env / "jobs.jsonl", ["fine", {"id": "dup", "prompt": "y"}, "# a comment", line, "also fine"])
    result = cli("generations", "--batch", "jobs.jsonl", "--output", "out/{job}.png")
    message = assert_one_error(result, 2, "jobs.jsonl:4", words)
    assert "nothing was sent" in result.err
    assert fake.requests == [] and not (env / "out").exists(), message


@pytest.mark.parametrize(
    "name, value",
    [("batch", "other.txt"), ("jobs", 2), ("dry-run", True), ("json", True), ("base-url", "http://127.0.0.1:1/v1"),
     ("env-file", ".env"), ("max-cost", 1), ("quiet", True), ("deadline", 60), ("batch-api", True),
     ("no-wait", True), ("cancel", True), ("command", "edits")],
)  # fmt: skip
def test_every_option_that_shapes_the_run_is_refused_in_a_line(
    cli: CLI, fake: FakeAPI, env: Path, name: str, value: Any
) -> None:
    jobs_file(env / "jobs.jsonl", [{"prompt": "x", name: value}])
    result = cli("generations", "--batch", "jobs.jsonl", "--output", "out/{job}.png")
    assert_one_error(result, 2, "jobs.jsonl:1", f"--{name} shapes the whole run")
    assert fake.requests == []


def test_every_bad_line_is_counted(cli: CLI, fake: FakeAPI, env: Path, images_dir: Path) -> None:
    good = {"prompt": "ok", "image": str(images_dir / "subject.png")}
    jobs_file(env / "jobs.jsonl", [{"prompt": "a", "image": "missing.png"}, {"prompt": "b", "size": "7x7"}, good,
                                   '{"broken"', {"prompt": "c", "mask": str(images_dir / "subject.png"),
                                                 "image": str(images_dir / "subject.png")}])  # fmt: skip
    result = cli("edits", "--batch", "jobs.jsonl", "--output", "out/{job}.png")
    message = assert_one_error(result, 2, "jobs.jsonl:1", "missing.png", "4 lines are bad",
                               then=["jobs.jsonl:2: ", "jobs.jsonl:4: ", "jobs.jsonl:5: "])  # fmt: skip
    assert fake.requests == [], message


def test_each_further_bad_line_has_its_own_line(cli: CLI, fake: FakeAPI, env: Path) -> None:
    jobs_file(env / "jobs.jsonl", [{"prompt": "a", "size": "7x7"}, "fine", {"prompt": "b", "colour": "red"},
                                   "fine too", '{"broken"'])  # fmt: skip
    result = cli("generations", "--batch", "jobs.jsonl", "--output", "out/{job}.png")
    message = assert_one_error(result, 2, "jobs.jsonl:1", "3 lines are bad in all", hint=["nothing was sent"],
                               then=["jobs.jsonl:3: unknown option 'colour'", "jobs.jsonl:5: not valid JSON"])  # fmt: skip
    assert "also line" not in message and result.out == ""
    assert fake.requests == []


def test_fifteen_bad_lines_list_ten_and_count_the_rest(cli: CLI, fake: FakeAPI, env: Path) -> None:
    jobs_file(env / "jobs.jsonl", ["fine"] + [{"prompt": f"p{i}", "size": "7x7"} for i in range(15)])
    result = cli("generations", "--batch", "jobs.jsonl", "--output", "out/{job}.png")
    further = [f"jobs.jsonl:{n}: " for n in range(3, 13)]
    assert_one_error(result, 2, "jobs.jsonl:2:", "15 lines are bad in all", then=[*further, "... and 4 more bad lines"])
    assert fake.requests == []


def test_bad_lines_in_json_are_a_list_in_the_error(cli: CLI, fake: FakeAPI, env: Path) -> None:
    jobs_file(env / "jobs.jsonl", [{"prompt": f"p{i}", "n": 0.5} for i in range(13)])
    result = cli("generations", "--batch", "jobs.jsonl", "--output", "out/{job}.png", "--json")
    assert_one_error(result, 2, "jobs.jsonl:1:", "13 lines are bad in all")  # stderr: the error line alone
    (failure,) = json_lines(result.out)
    error = failure["error"]
    assert failure["ok"] is False and error["type"] == "usage_error" and error["exit_code"] == 2
    assert error["message"].startswith("jobs.jsonl:1: ")
    assert [p.split(": ", 1)[0] for p in error["problems"]] == [f"jobs.jsonl:{n}" for n in range(2, 12)]
    assert all("whole number" in p for p in error["problems"]) and error["more_problems"] == 2
    assert fake.requests == []


def test_an_empty_jobs_file(cli: CLI, fake: FakeAPI, env: Path) -> None:
    jobs_file(env / "jobs.txt", ["", "# only comments", "   "])
    assert_one_error(cli("generations", "--batch", "jobs.txt", "--output", "o/{job}.png"), 2, "no jobs")
    assert_one_error(cli("generations", "--batch", "nope.txt", "--output", "o/{job}.png"), 2, "cannot read")


def test_one_output_for_every_job_is_refused(cli: CLI, fake: FakeAPI, env: Path) -> None:
    jobs_file(env / "jobs.txt", ["a", "b"])
    result = cli("generations", "--batch", "jobs.txt", "--output", "same.png")
    assert_one_error(result, 2, "jobs.txt:2", "planned by job 1 too", "{job}")
    assert fake.requests == []


def test_a_jobs_file_from_stdin(cli: CLI, fake: FakeAPI, env: Path) -> None:
    result = cli("generations", "--batch", "-", "--output", "out/{job}.png", stdin='"a quoted prompt"\nplain prompt\n')
    assert result.code == 0, result.err
    assert sorted(fake.requests_per_prompt) == ["a quoted prompt", "plain prompt"]


def test_a_large_jobs_file_is_validated_in_bounded_memory(fake: FakeAPI, env: Path) -> None:
    lines = [f"prompt number {i}" for i in range(100_000)] + [json.dumps({"prompt": "x", "size": "9x9"})]
    (env / "big.txt").write_text("\n".join(lines) + "\n", "utf-8")
    child = dict(os.environ, OPENAI_BASE_URL=fake.base_url)
    code, _, err, peak, _ = run_measured(
        [sys.executable, str(SCRIPT), "generations", "--batch", "big.txt", "--output", "out/{job}.png"], child, env,
        timeout=110,
    )  # fmt: skip
    assert code == 2 and "big.txt:100001" in err, err
    assert fake.requests == []
    assert peak < 200 * 2**20, f"{peak / 2**20:.0f} MiB to validate 100,000 lines"


# --------------------------------------------------------------------------------------------------------
# Dry runs and the budget
# --------------------------------------------------------------------------------------------------------


def test_a_dry_run_shows_every_request_and_the_total(cli: CLI, fake: FakeAPI, env: Path) -> None:
    jobs_file(env / "jobs.txt", [{"prompt": "a", "quality": "low"}, {"prompt": "b", "quality": "high", "n": 2}])
    result = cli("generations", "--batch", "jobs.txt", "--output", "out/{job}-{index}.png", "--size", "1024x1024",
                 "--dry-run")  # fmt: skip
    assert result.code == 0, result.err
    records = json_lines(result.out)
    summary = records.pop()
    assert [r["body"] for r in records] == [
        {"model": "gpt-image-2", "prompt": "a", "size": "1024x1024", "quality": "low"},
        {"model": "gpt-image-2", "prompt": "b", "size": "1024x1024", "quality": "high", "n": 2},
    ]
    assert records[1]["outputs"]["images"] == ["out/2-1.png", "out/2-2.png"]
    each = [r["estimated_cost"]["usd"] for r in records]
    assert summary["estimated_cost_usd"] == pytest.approx(sum(each), abs=1e-4) and summary["jobs"] == 2
    assert fake.requests == []


def test_max_cost_refuses_a_batch_over_budget(cli: CLI, fake: FakeAPI, env: Path) -> None:
    jobs_file(env / "jobs.txt", [f"p{i}" for i in range(10)])
    over = cli("generations", "--batch", "jobs.txt", "--output", "o/{job}.png", "--quality", "high", "--max-cost", "1")
    assert_one_error(over, 2, "over --max-cost 1")
    assert fake.requests == []
    under = cli("generations", "--batch", "jobs.txt", "--output", "o/{job}.png", "--quality", "low", "--max-cost", "1")
    assert under.code == 0, under.err


def test_max_cost_on_a_single_run(cli: CLI, fake: FakeAPI) -> None:
    result = cli("generations", "--prompt", "x", "--output", "o.png", "--n", "10", "--quality", "high",
                 "--max-cost", "0.5")  # fmt: skip
    assert_one_error(result, 2, "estimated at $2.1", "over --max-cost 0.5")
    assert fake.requests == []
    unknown = cli("generations", "--prompt", "x", "--output", "o.png", "--model", "some/gateway-model",
                  "--max-cost", "5")  # fmt: skip
    assert_one_error(unknown, 2, "cannot be estimated")


def test_output_is_required_without_a_batch(cli: CLI) -> None:
    result = cli("generations", "--prompt", "x")
    assert_one_error(result, 2, "-o/--output", hint=["--help"])


def test_a_prompt_file_from_stdin_serves_every_job(cli: CLI, fake: FakeAPI, env: Path) -> None:
    jobs_file(env / "jobs.jsonl", [{"id": "a"}, {"id": "b", "size": "1536x1024"}])
    result = cli("generations", "--batch", "jobs.jsonl", "--prompt-file", "-", "--output", "out/{job}.png",
                 stdin="a cat on a windowsill\n")  # fmt: skip
    assert result.code == 0, result.err
    assert dict(fake.successes_per_prompt) == {"a cat on a windowsill": 2}


def test_an_unknown_model_stops_only_its_own_jobs(cli: CLI, fake: FakeAPI, env: Path) -> None:
    from fakeapi import error_reply

    fake.queue(error_reply(404, "The model 'gpt-image-x' does not exist", code="model_not_found"))
    jobs_file(env / "jobs.jsonl", [{"prompt": "a", "model": "gpt-image-x"}, {"prompt": "b", "model": "gpt-image-x"},
                                   {"prompt": "c"}])  # fmt: skip
    result = cli("generations", "--batch", "jobs.jsonl", "--output", "out/{job}.png", "--jobs", "1")
    assert_one_error(result, 7, "2 of 3 jobs failed")
    assert sorted(fake.requests_per_prompt) == ["a", "c"]  # b was not sent: its model was already known bad
    assert os.listdir(env / "out") == ["3.png"]


def test_save_response_takes_the_job_name(cli: CLI, fake: FakeAPI, env: Path) -> None:
    jobs_file(env / "jobs.txt", ["a", "b"])
    result = cli("generations", "--batch", "jobs.txt", "--output", "out/{job}.png", "--save-response", "raw/{job}.json")
    assert result.code == 0, result.err
    assert sorted(os.listdir(env / "raw")) == ["1.json", "2.json"]


def test_an_unknown_command_line_model_stops_the_batch(cli: CLI, fake: FakeAPI, env: Path) -> None:
    from fakeapi import error_reply

    fake.queue(error_reply(404, "The model 'gpt-image-x' does not exist", code="model_not_found"))
    jobs_file(env / "jobs.txt", ["a", "b", "c"])
    result = cli("generations", "--batch", "jobs.txt", "--model", "gpt-image-x", "--output", "out/{job}.png",
                 "--jobs", "1")  # fmt: skip
    assert_one_error(result, 4, "the batch stopped", "does not exist")
    assert len(fake.requests) == 1

"""Routes as data, validation on plain values, and the defects the routes-as-data review found.

Each defect test failed against the script before the change that fixed it (commit 50c87b0).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List

import gpt_image as gi
import pytest
from conftest import SCRIPT, Result, assert_one_error
from fakeapi import FakeAPI, Reply, error_reply, responses_body

CLI = Callable[..., Result]


def dry_body(result: Result) -> Dict[str, Any]:
    """The body a --dry-run shows: the JSON body, or a multipart body's fields by name."""
    assert result.code == 0, result.err
    shown = json.loads(result.out)
    if "body" in shown:
        return shown["body"]  # type: ignore[no-any-return]
    return {part["name"]: part.get("value") for part in shown["parts"]}


# --------------------------------------------------------------------------------------------------------
# The route table
# --------------------------------------------------------------------------------------------------------


def test_the_parser_has_exactly_the_routes_of_the_table() -> None:
    parser = gi.build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, type(parser._subparsers._group_actions[0]))]  # type: ignore[union-attr]
    assert list(subparsers.choices) == [route.name for route in gi.ROUTES]
    for route in gi.ROUTES:
        dests = {a.dest for a in subparsers.choices[route.name]._actions}
        for argument in route.arguments:
            assert (argument if isinstance(argument, str) else argument[0]) in dests


def test_a_fourth_route_is_one_table_entry(cli: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new route needs its Route entry and its own functions: the parser, the validator and the runner
    pick it up from ROUTES without another edit."""

    def build_request(job: gi.Job) -> gi.HttpRequest:
        body = dict(gi.build_images_body(job), prompt=(job.prompt or "").upper())
        return gi.json_request(job.connection, "/images/generations", body, job.stream)

    shout = gi.Route(
        name="shout",
        endpoint="/images/generations",
        summary="generations with the prompt in capitals",
        description="A route made up for this test.",
        examples="",
        arguments=("model",),
        read_inputs=lambda settings, prompt, warnings: None,
        build_request=build_request,
        read_body=gi.read_images_body,
        read_event=gi.read_images_event,
    )
    monkeypatch.setattr(gi, "ROUTES", (*gi.ROUTES, shout))
    monkeypatch.setattr(gi, "ROUTE_NAMES", {**gi.ROUTE_NAMES, "shout": shout})
    result = cli("shout", "--prompt", "a quiet lake", "--output", "lake.png", "--json")
    assert result.code == 0, result.err
    assert fake.last.json == {"model": "gpt-image-2", "prompt": "A QUIET LAKE"}
    assert Path("lake.png").read_bytes() == fake.last.sent_images[0]
    assert json.loads(result.out)["command"] == "shout"


def test_validate_takes_plain_values_as_a_command_line_does(images_dir: Path, tmp_path: Path) -> None:
    """A mapping of option values (a jobs-file line) and a parsed command line make the same request."""
    argv = ["edits", "--prompt", "p", "--image", str(images_dir / "subject.png"), "--output", str(tmp_path / "o.png"),
            "--quality", "high", "--n", "2"]  # fmt: skip
    config = gi.load_config({"OPENAI_API_KEY": "sk-x"}, None, cwd=str(tmp_path), root=str(tmp_path))
    from_argv = gi.validate(vars(gi.build_parser().parse_args(argv)), config)
    plain = {"command": "edits", "prompt": "p", "image": str(images_dir / "subject.png"), "quality": "HIGH",
             "n": "2", "output": str(tmp_path / "o.png")}  # fmt: skip
    from_plain = gi.validate(plain, config)
    assert from_plain.route is from_argv.route is gi.EDITS
    assert from_plain.params == from_argv.params == {"quality": "high", "n": 2}
    assert from_plain.images == from_argv.images
    with pytest.raises(AttributeError):
        from_plain.model = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------------
# Defects
# --------------------------------------------------------------------------------------------------------


def test_a_responses_reply_without_an_image_still_shows_its_id(cli: CLI, fake: FakeAPI) -> None:
    reply = responses_body(n_images=0, text="I would rather describe it.", response_id="resp_noimage1")
    fake.queue(Reply(json=reply), Reply(json=reply))
    plain = cli("responses", "--input-text", "a castle", "--output", "c.png")
    assert_one_error(plain, 6, "no image")
    assert "response id: resp_noimage1" in plain.err
    as_json = cli("responses", "--input-text", "a castle", "--output", "c.png", "--json")
    assert as_json.code == 6
    assert json.loads(as_json.out)["response_id"] == "resp_noimage1"


def test_no_empty_model_said_line(cli: CLI, fake: FakeAPI) -> None:
    fake.queue(Reply(json=responses_body(text="  ")))
    result = cli("responses", "--input-text", "a castle", "--output", "c.png")
    assert result.code == 0, result.err
    assert "model said" not in result.err


def test_a_long_non_openai_error_body_shows_its_useful_part(cli: CLI, fake: FakeAPI) -> None:
    page = "gateway validation failed: " + "; ".join(f"field_{i} is fine" for i in range(33))
    page += "; THE-REAL-PROBLEM: size must be auto"
    assert 600 < len(page) < 950
    fake.queue(Reply(status=422, body=page.encode(), content_type="text/plain"))
    result = cli("generations", "--prompt", "x", "--output", "x.png", "--retries", "0")
    message = assert_one_error(result, 4, "THE-REAL-PROBLEM: size must be auto")
    assert len(message) < 1_300


def test_a_utf8_prompt_under_the_c_locale_is_sent_as_typed(fake: FakeAPI, env: Path) -> None:
    child = dict(os.environ, LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "generations", "--prompt", "一只在月光下的猫", "--output", "猫.png",
         "--dry-run"],
        env=child, cwd=str(env), capture_output=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    shown = json.loads(proc.stdout.decode("utf-8"))
    assert shown["body"]["prompt"] == "一只在月光下的猫"


@pytest.mark.parametrize(
    "route, extra, field, sent",
    [
        ("generations", ["--background", "OPAQUE"], "background", "opaque"),
        ("generations", ["--quality", "High"], "quality", "high"),
        ("generations", ["--moderation", "LOW"], "moderation", "low"),
        ("edits", ["--image-field-style", "BRACKETS"], None, None),
        ("edits", ["--model", "gpt-image-2.5-flare", "--input-fidelity", "HIGH"], "input_fidelity", "high"),
        ("responses", ["--tool-choice", "AUTO"], "tool_choice", "auto"),
        ("responses", ["--action", "Edit"], "action", "edit"),
        ("responses", ["--image-detail", "HIGH"], "detail", "high"),
    ],
)
def test_every_choice_takes_any_case_and_sends_lower_case(
    cli: CLI, images_dir: Path, route: str, extra: List[str], field: Any, sent: Any
) -> None:
    base = {
        "generations": ["generations", "--prompt", "x"],
        "edits": ["edits", "--prompt", "x", "--image", str(images_dir / "subject.png")],
        "responses": ["responses", "--input-text", "x", "--input-image-url", "https://example.com/a.png"],
    }[route]
    body = dry_body(cli(*base, *extra, "--output", "o.png", "--dry-run"))
    if route == "responses":
        tool = body["tools"][0]
        found = {"tool_choice": body["tool_choice"], "action": tool.get("action"),
                 "detail": body["input"][0]["content"][1].get("detail")}[field]  # fmt: skip
        assert found == sent
    elif field:
        assert body[field] == sent


def test_a_configured_choice_takes_any_case_too(cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_IMAGE_BACKGROUND", "OPAQUE")
    assert dry_body(cli("generations", "--prompt", "x", "--output", "o.png", "--dry-run"))["background"] == "opaque"


def test_brackets_in_any_case_name_the_parts(cli: CLI, fake: FakeAPI, images_dir: Path) -> None:
    result = cli("edits", "--prompt", "x", "--image", str(images_dir / "subject.png"), "--image-field-style",
                 "Brackets", "--output", "o.png", "--dry-run")  # fmt: skip
    assert result.code == 0, result.err
    assert [p["name"] for p in json.loads(result.out)["parts"] if "filename" in p] == ["image[]"]


def test_a_mask_file_id_may_edit_the_previous_responses_image(cli: CLI) -> None:
    result = cli("responses", "--input-text", "make the sky pink", "--previous-response-id", "resp_earlier",
                 "--mask-file-id", "file-mask1", "--output", "o.png", "--dry-run")  # fmt: skip
    body = dry_body(result)
    assert body["previous_response_id"] == "resp_earlier"
    assert body["tools"][0]["input_image_mask"] == {"file_id": "file-mask1"}


def test_a_mask_without_any_image_is_still_refused(cli: CLI, fake: FakeAPI) -> None:
    result = cli("responses", "--input-text", "x", "--mask-file-id", "file-m", "--output", "o.png")
    assert_one_error(result, 2, "mask needs an input image")
    assert fake.requests == []


def test_a_closed_stdout_is_not_an_internal_error(fake: FakeAPI, env: Path) -> None:
    for args, code in ((["--dry-run"], 0), ([], 0), (["--retries", "0", "--json"], 4)):
        if code == 4:
            fake.queue(error_reply(400, "no"))
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "generations", "--prompt", "x", "--output", f"o{len(args)}.png", *args],
            cwd=str(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=dict(os.environ, OPENAI_BASE_URL=fake.base_url),
        )  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader went away before the program printed anything
        err = proc.stderr.read().decode("utf-8", "replace")
        assert proc.wait(timeout=60) == code, err
        assert "internal error" not in err and "Traceback" not in err

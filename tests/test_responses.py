"""The responses route end to end against the loopback fake: request bodies, the event stream, the exits.

Every run is the real program (in-process through ``cli``, a few as a subprocess through ``run``); files are
compared byte for byte with what the fake sent, and request bodies with the files they came from.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
from conftest import DIMENSIONS, assert_one_error
from fakeapi import (
    DEFAULT_TEXT,
    SSE,
    FakeAPI,
    Reply,
    identify,
    make_image,
    parse_sse,
    responses_body,
    responses_stream_events,
)

POSTER_PROMPT = "Generate a poster for an AI developer summit"
STUDIO_PROMPT = "Turn this product shot into a clean studio ad"
POSTER = [
    "responses",
    "--input-text",
    POSTER_PROMPT,
    "--model",
    "gpt-5.4",
    "--output",
    "out/poster-{index}.png",
    "--stream",
    "--partial-images",
    "2",
    "--save-response",
    "out/poster-events.json",
]
STUDIO = [
    "responses",
    "--input-text",
    STUDIO_PROMPT,
    "--model",
    "gpt-5.4",
    "--input-image",
    "refs/product.png",
    "--mask",
    "refs/mask.png",
    "--output",
    "out/studio.png",
    "--action",
    "edit",
]

# Images the scripted streams carry: distinct, so a file can only match the one it came from.
FINAL = make_image("png", color=(12, 34, 56))
PREVIEWS = [make_image("png", color=(90 + 40 * k, 60, 60)) for k in range(3)]
RESPONSE_ID = "resp_test_0123456789"

Run = Callable[..., Any]


def decode_data_url(url: str) -> Tuple[str, bytes]:
    """('image/png', bytes) from a base64 data URL."""
    head, _, payload = url.partition(",")
    assert head.startswith("data:") and head.endswith(";base64"), head
    return head[len("data:") : -len(";base64")], base64.b64decode(payload, validate=True)


def stream(partials: int = 2, text: Optional[str] = DEFAULT_TEXT, **kwargs: Any) -> List[Dict[str, Any]]:
    """A complete Responses event stream for one image (FINAL) with ``partials`` previews."""
    return responses_stream_events(
        partials,
        "png",
        images=[FINAL],
        partial_images=PREVIEWS[:partials],
        response_id=RESPONSE_ID,
        text=text,
        **kwargs,
    )


def until(events: List[Dict[str, Any]], kind: str) -> List[Dict[str, Any]]:
    """The events before the first one of type ``kind``."""
    return events[: [e["type"] for e in events].index(kind)]


def body(fake: FakeAPI) -> Dict[str, Any]:
    """The JSON body of the only request the fake received."""
    assert len(fake.requests) == 1, [r.path for r in fake.requests]
    rec = fake.requests[0]
    assert (rec.method, rec.path) == ("POST", "/v1/responses")
    assert isinstance(rec.json, dict)
    return rec.json


def content(fake: FakeAPI) -> List[Dict[str, Any]]:
    (message,) = body(fake)["input"]
    assert message["role"] == "user"
    return message["content"]  # type: ignore[no-any-return]


def files_in(folder: Path) -> Dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


# --------------------------------------------------------------------------------------
# The "Done when" commands, exactly as written
# --------------------------------------------------------------------------------------


def check_poster_run(result: Any, fake: FakeAPI, tmp: Path) -> None:
    assert result.code == 0, result.err
    assert result.lines == ["out/poster-1.png"]
    assert len(fake.requests) == 1
    rec = fake.requests[0]
    sent_stream = rec.behaviour.render()
    out = tmp / "out"
    assert sorted(files_in(out)) == [
        "poster-1.partial-1.png",
        "poster-1.partial-2.png",
        "poster-1.png",
        "poster-events.json",
    ]
    assert (out / "poster-1.png").read_bytes() == rec.sent_images[0]
    assert (out / "poster-1.partial-1.png").read_bytes() == rec.sent_partials[0]
    assert (out / "poster-1.partial-2.png").read_bytes() == rec.sent_partials[1]
    assert identify((out / "poster-1.png").read_bytes()) == ("final", 0)
    assert identify((out / "poster-1.partial-2.png").read_bytes()) == ("partial", 1)
    assert (out / "poster-events.json").read_bytes() == sent_stream
    response_id = json.loads(parse_sse(sent_stream)[0]["data"])["response"]["id"]
    assert f"response id: {response_id}" in result.err
    sent = rec.json
    assert sent["model"] == "gpt-5.4" and sent["stream"] is True
    assert sent["input"] == [{"role": "user", "content": [{"type": "input_text", "text": POSTER_PROMPT}]}]
    # No output_format: the .png output is the API's default and --format was not given.
    assert sent["tools"] == [{"type": "image_generation", "model": "gpt-image-2", "partial_images": 2}]
    assert sent["tool_choice"] == {"type": "image_generation"}
    assert rec.header("accept") == "text/event-stream"


def test_done_when_streamed_poster(cli: Run, fake: FakeAPI, env: Path) -> None:
    check_poster_run(cli(*POSTER), fake, env)


def test_done_when_streamed_poster_as_a_subprocess(run: Run, fake: FakeAPI, env: Path) -> None:
    check_poster_run(run(*POSTER), fake, env)


def check_studio_request(fake: FakeAPI, refs: Path) -> None:
    sent = body(fake)
    assert sent["model"] == "gpt-5.4"
    assert "stream" not in sent
    text, image = content(fake)
    assert text == {"type": "input_text", "text": STUDIO_PROMPT}
    assert image["type"] == "input_image" and image["detail"] == "auto"
    assert decode_data_url(image["image_url"]) == ("image/png", (refs / "product.png").read_bytes())
    (tool,) = sent["tools"]
    assert tool["type"] == "image_generation" and tool["model"] == "gpt-image-2" and tool["action"] == "edit"
    assert decode_data_url(tool["input_image_mask"]["image_url"]) == (
        "image/png",
        (refs / "mask.png").read_bytes(),
    )
    assert list(tool["input_image_mask"]) == ["image_url"]
    assert sent["tool_choice"] == {"type": "image_generation"}


def test_done_when_studio_edit(cli: Run, fake: FakeAPI, env: Path, images_dir: Path) -> None:
    result = cli(*STUDIO)
    assert result.code == 0, result.err
    assert result.lines == ["out/studio.png"]
    assert sorted(files_in(env / "out")) == ["studio.png"]
    assert (env / "out" / "studio.png").read_bytes() == fake.requests[0].sent_images[0]
    check_studio_request(fake, images_dir)
    assert f"response id: {fake.requests[0].behaviour.json['id']}" in result.err


def test_done_when_studio_edit_as_a_subprocess(run: Run, fake: FakeAPI, env: Path, images_dir: Path) -> None:
    result = run(*STUDIO, "--json")
    assert result.code == 0, result.err
    reply = fake.requests[0].behaviour.json
    assert result.json["ok"] is True
    assert result.json["response_id"] == reply["id"]
    assert result.json["images"] == [
        {"path": "out/studio.png", "index": 1, "bytes": len(fake.requests[0].sent_images[0]), "format": "png", **DIMENSIONS}
    ]
    assert (env / "out" / "studio.png").read_bytes() == fake.requests[0].sent_images[0]
    check_studio_request(fake, images_dir)


# --------------------------------------------------------------------------------------
# Each event type
# --------------------------------------------------------------------------------------

STREAM_ARGS = ["responses", "--input-text", "a fox", "--output", "out/fox.png", "--stream"]


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "body"])
def test_response_id_on_stderr_in_text_mode_and_in_json(cli: Run, fake: FakeAPI, streaming: bool) -> None:
    if streaming:
        fake.queue(SSE(stream(0)), SSE(stream(0)), SSE(stream(0)))
        args = STREAM_ARGS
    else:
        reply = responses_body(images=[FINAL], response_id=RESPONSE_ID)
        fake.queue(Reply(json=reply), Reply(json=reply), Reply(json=reply))
        args = STREAM_ARGS[:-1]
    id_line = f"response id: {RESPONSE_ID}"
    text = cli(*args)
    assert text.code == 0, text.err
    assert text.err.count(id_line) == 1
    err = text.err.splitlines()
    saved = next(i for i, line in enumerate(err) if "image 1 saved" in line)
    if streaming:  # shown when response.created arrives, before the image is saved
        assert err.index(id_line) < saved, err
    else:  # shown once the image is saved
        assert err.index(id_line) > saved, err
    # --quiet keeps it: it is how a follow-up continues (--previous-response-id); nothing else is shown.
    quiet = cli(*args, "--quiet", "--overwrite")
    assert quiet.code == 0, quiet.err
    assert quiet.out == "out/fox.png\n"
    assert quiet.err.splitlines() == [id_line]
    as_json = cli(*args, "--json", "--overwrite")
    assert as_json.code == 0, as_json.err
    assert as_json.json["response_id"] == RESPONSE_ID
    assert len(as_json.out.strip().splitlines()) == 1  # exactly one JSON object on stdout
    assert "response id:" not in as_json.err  # in --json mode it is only the response_id key


def test_previews_are_written_the_moment_they_arrive(cli: Run, fake: FakeAPI, env: Path) -> None:
    events = stream(2)
    kinds = ("response.created", "response.image_generation_call.partial_image", "response.output_item.done")
    fake.queue(SSE([e for e in events if e["type"] in kinds or e is events[-1]], delay=0.15))
    seen: List[Tuple[bool, bool]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(((env / "out/fox.partial-1.png").exists(), (env / "out/fox.png").exists()))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = cli(*STREAM_ARGS, "--partial-images", "2")
    finally:
        stop.set()
        watcher.join()
    assert result.code == 0, result.err
    assert (True, False) in seen, "the first preview was not on disk before the final image"
    assert (env / "out/fox.partial-1.png").read_bytes() == PREVIEWS[0]
    assert (env / "out/fox.partial-2.png").read_bytes() == PREVIEWS[1]
    assert (env / "out/fox.png").read_bytes() == FINAL


def test_output_item_done_alone_delivers_the_image(cli: Run, fake: FakeAPI, env: Path) -> None:
    events = [e for e in stream(0) if e["type"] == "response.output_item.done"][:1]
    fake.queue(SSE(events))
    result = cli(*STREAM_ARGS, "--json")
    assert result.code == 0, result.err
    assert (env / "out/fox.png").read_bytes() == FINAL
    assert result.json["response_id"] is None


def test_image_only_in_response_completed_is_saved_once(cli: Run, fake: FakeAPI, env: Path) -> None:
    events = stream(0)
    fake.queue(SSE([events[0], events[-1]]))
    result = cli(*STREAM_ARGS, "--json")
    assert result.code == 0, result.err
    assert files_in(env / "out") == {"fox.png": FINAL}
    assert [img["path"] for img in result.json["images"]] == ["out/fox.png"]


def test_completed_event_gives_usage_text_and_revised_prompt(cli: Run, fake: FakeAPI, env: Path) -> None:
    usage = {"input_tokens": 7, "output_tokens": 1234, "total_tokens": 1241}
    fake.queue(SSE(stream(1, usage=usage, revised_prompt="a revised fox", text="Here it is.")))
    result = cli(*STREAM_ARGS, "--partial-images", "1", "--json")
    assert result.code == 0, result.err
    got = result.json
    assert got["usage"] == usage
    assert got["revised_prompt"] == "a revised fox"
    assert got["text"] == "Here it is."
    assert [p["path"] for p in got["partials"]] == ["out/fox.partial-1.png"]
    assert [i["path"] for i in got["images"]] == ["out/fox.png"]  # saved once, not again from completed
    assert files_in(env / "out") == {"fox.partial-1.png": PREVIEWS[0], "fox.png": FINAL}


@pytest.mark.parametrize(
    "error_event",
    [
        {"type": "error", "code": "server_error", "message": "The model is overloaded.", "param": None},
        {
            "type": "error",
            "error": {"type": "server_error", "code": "server_error", "message": "The model is overloaded."},
        },
    ],
    ids=["flat", "nested"],
)
def test_error_event_exits_4_with_its_message(
    cli: Run, fake: FakeAPI, env: Path, error_event: Dict[str, Any]
) -> None:
    events = [
        *until(stream(2), "response.image_generation_call.completed"),
        {**error_event, "sequence_number": 99},
    ]
    behaviour = SSE(events)
    fake.queue(behaviour)
    result = cli(*STREAM_ARGS, "--partial-images", "2", "--save-response", "out/events.txt", "--json")
    assert result.code == 4, result.err
    assert "The model is overloaded." in result.err
    error = result.json["error"]
    assert "The model is overloaded." in error["message"] and error["code"] == "server_error"
    assert error["exit_code"] == 4
    # The previews that arrived stay, and the raw stream up to the error is kept for a report.
    assert files_in(env / "out") == {
        "events.txt": behaviour.render(),
        "fox.partial-1.png": PREVIEWS[0],
        "fox.partial-2.png": PREVIEWS[1],
    }


def test_error_event_with_a_null_error_member_still_reports_its_message(cli: Run, fake: FakeAPI) -> None:
    fake.queue(
        SSE([{"type": "error", "error": None, "code": "rate_limit_exceeded", "message": "Slow down."}])
    )
    result = cli(*STREAM_ARGS)
    assert result.code == 4
    assert "Slow down." in result.err and "rate_limit_exceeded" in result.err


def terminal(status: str, **fields: Any) -> Dict[str, Any]:
    """A response.<status> event whose response has that status and the given fields."""
    response = responses_body(images=[FINAL], response_id=RESPONSE_ID)
    response.update(status=status, output=[], usage=None, **fields)
    return {"type": f"response.{status}", "response": response}


@pytest.mark.parametrize(
    "last, words",
    [
        (
            terminal(
                "failed", error={"code": "image_content_policy_violation", "message": "Refused by policy."}
            ),
            ["Refused by policy.", "image_content_policy_violation"],
        ),
        (terminal("failed"), ["failed"]),
        (
            terminal("incomplete", incomplete_details={"reason": "max_output_tokens"}),
            ["incomplete", "max_output_tokens"],
        ),
    ],
    ids=["failed", "failed-without-error", "incomplete"],
)
def test_failed_and_incomplete_events_exit_4(
    cli: Run, fake: FakeAPI, env: Path, last: Dict[str, Any], words: List[str]
) -> None:
    events = [*until(stream(1), "response.image_generation_call.completed"), last]
    fake.queue(SSE(events))
    result = cli(*STREAM_ARGS, "--partial-images", "1", "--json")
    assert result.code == 4, result.err
    for word in words:
        assert word in result.json["error"]["message"]
        assert word in result.err
    assert files_in(env / "out") == {"fox.partial-1.png": PREVIEWS[0]}


@pytest.mark.parametrize("damage", ["no-status", "no-response"])
def test_failed_event_is_an_error_even_if_its_response_is_partial(
    cli: Run, fake: FakeAPI, damage: str
) -> None:
    event = terminal("failed", error={"code": "server_error", "message": "Went wrong."})
    if damage == "no-status":
        del event["response"]["status"]
    else:
        del event["response"]
    fake.queue(SSE([*until(stream(0), "response.output_item.added"), event]))
    result = cli(*STREAM_ARGS)
    assert result.code == 4, result.err
    assert ("Went wrong." if damage == "no-status" else "the response failed") in result.err


def test_failed_image_call_item_exits_4(cli: Run, fake: FakeAPI) -> None:
    item = {"type": "image_generation_call", "id": "ig_1", "status": "failed", "result": None}
    fake.queue(SSE([{"type": "response.output_item.done", "output_index": 0, "item": item}]))
    result = cli(*STREAM_ARGS)
    assert result.code == 4, result.err
    assert "image generation call failed" in result.err


@pytest.mark.parametrize(
    "cut",
    ["before-completed", "truncated-mid-event", "done-marker", "text-only-completed"],
)
def test_stream_without_a_final_image_exits_6_and_keeps_the_previews(
    cli: Run, fake: FakeAPI, env: Path, cut: str
) -> None:
    events = stream(2)
    head = until(events, "response.image_generation_call.completed")
    if cut == "before-completed":
        behaviour = SSE(head)
    elif cut == "truncated-mid-event":
        full = SSE(events)
        done_at = full.render().index(b"event: response.output_item.done")
        behaviour = SSE(events, truncate_at=done_at + 200)
    elif cut == "done-marker":
        behaviour = SSE([*head, "data: [DONE]\n\n", *events[len(head) :]])
    else:
        completed = dict(events[-1], response=responses_body(n_images=0, response_id=RESPONSE_ID))
        behaviour = SSE([*head, completed])
    fake.queue(behaviour)
    result = cli(*STREAM_ARGS, "--partial-images", "2", "--json")
    assert result.code == 6, result.err
    assert "ended before the final image" in result.err
    assert "2 preview(s) kept" in result.err and "out/fox.partial-2.png" in result.err
    assert result.json["error"]["exit_code"] == 6
    assert files_in(env / "out") == {"fox.partial-1.png": PREVIEWS[0], "fox.partial-2.png": PREVIEWS[1]}


@pytest.mark.parametrize(
    "transport",
    [{"split": n} for n in range(1, 8)]
    + [
        {"line_end": "\r\n"},
        {"line_end": "\r"},
        {"comments": True},
        {"line_end": "\r\n", "comments": True, "split": 3},
        {"line_end": "\r", "comments": True, "split": 2, "done": True},
        {"event_field": False, "done": True},
    ],
    ids=lambda t: ",".join(f"{k}={v!r}" for k, v in t.items()),
)
def test_the_same_stream_however_it_is_framed_gives_the_same_files(
    cli: Run, fake: FakeAPI, env: Path, transport: Dict[str, Any]
) -> None:
    behaviour = SSE(stream(2), **transport)
    fake.queue(behaviour)
    result = cli(*STREAM_ARGS, "--partial-images", "2", "--save-response", "out/raw.sse")
    assert result.code == 0, result.err
    assert files_in(env / "out") == {
        "fox.partial-1.png": PREVIEWS[0],
        "fox.partial-2.png": PREVIEWS[1],
        "fox.png": FINAL,
        "raw.sse": behaviour.render(),
    }
    assert f"response id: {RESPONSE_ID}" in result.err


def test_malformed_json_in_an_event_exits_6(cli: Run, fake: FakeAPI) -> None:
    fake.queue(SSE([stream(0)[0], b"event: response.in_progress\ndata: {not json\n\n"]))
    result = cli(*STREAM_ARGS)
    assert result.code == 6
    assert "malformed JSON" in result.err and "response.in_progress" in result.err


# --------------------------------------------------------------------------------------
# Non-streaming bodies
# --------------------------------------------------------------------------------------

ARGS = ["responses", "--input-text", "a fox", "--output", "out/fox.png"]


def test_body_with_an_image_and_message_text(cli: Run, fake: FakeAPI, env: Path) -> None:
    reply = responses_body(
        images=[FINAL], response_id=RESPONSE_ID, revised_prompt="a fox, revised", text="Done!"
    )
    fake.queue(Reply(json=reply))
    result = cli(*ARGS, "--json")
    assert result.code == 0, result.err
    got = result.json
    assert got["images"] == [{"path": "out/fox.png", "index": 1, "bytes": len(FINAL), "format": "png", **DIMENSIONS}]
    assert got["partials"] == []
    assert got["text"] == "Done!" and got["revised_prompt"] == "a fox, revised"
    assert got["response_id"] == RESPONSE_ID and got["usage"] == reply["usage"]
    assert got["request_id"] == fake.requests[0].request_id
    assert files_in(env / "out") == {"fox.png": FINAL}


def test_body_with_two_images_saves_only_the_planned_one(cli: Run, fake: FakeAPI, env: Path) -> None:
    """One image is planned (design.md: a reply with more images than asked for saves only those planned),
    even when the model called the tool twice and --output has {index}."""
    second = make_image("png", color=(1, 200, 3))
    fake.queue(Reply(json=responses_body(n_images=2, images=[FINAL, second])))
    result = cli("responses", "--input-text", "two foxes", "--output", "out/fox-{index}.png")
    assert result.code == 0, result.err
    assert result.lines == ["out/fox-1.png"]
    assert files_in(env / "out") == {"fox-1.png": FINAL}
    assert "warning: the response holds more images than the 1 asked for" in result.err


def test_body_with_only_a_message_exits_6_and_quotes_the_model(cli: Run, fake: FakeAPI, env: Path) -> None:
    said = "I can't create that image, but I can describe it."
    fake.queue(Reply(json=responses_body(n_images=0, text=said)))
    result = cli(*ARGS)
    assert result.code == 6
    assert "no image" in result.err and said in result.err
    assert files_in(env / "out") == {}


def test_tool_choice_none_gets_text_only_and_exits_6(cli: Run, fake: FakeAPI) -> None:
    result = cli(*ARGS, "--tool-choice", "none")
    assert result.code == 6
    assert "--tool-choice none" in result.err  # warned up front
    assert DEFAULT_TEXT in result.err
    assert body(fake)["tool_choice"] == "none"


@pytest.mark.parametrize(
    "fields, words",
    [
        (
            {"status": "failed", "error": {"code": "server_error", "message": "Boom."}},
            ["Boom.", "server_error"],
        ),
        (
            {"status": "incomplete", "incomplete_details": {"reason": "content_filter"}},
            ["incomplete", "content_filter"],
        ),
    ],
    ids=["failed", "incomplete"],
)
def test_body_failed_or_incomplete_exits_4(
    cli: Run, fake: FakeAPI, fields: Dict[str, Any], words: List[str]
) -> None:
    reply = responses_body(n_images=0, text=None)
    reply.update(fields)
    fake.queue(Reply(json=reply))
    result = cli(*ARGS, "--json")
    assert result.code == 4, result.err
    for word in words:
        assert word in result.json["error"]["message"]


def test_http_error_from_responses_exits_4(cli: Run, fake: FakeAPI) -> None:
    from fakeapi import error_reply

    fake.queue(
        error_reply(400, "Invalid value for tools[0].model.", code="invalid_value", param="tools[0].model")
    )
    result = cli(*ARGS)
    assert result.code == 4
    assert "Invalid value for tools[0].model." in result.err
    assert len(fake.requests) == 1  # a 400 is not retried


# --------------------------------------------------------------------------------------
# What is sent
# --------------------------------------------------------------------------------------


def test_defaults_tool_model_and_tool_choice(cli: Run, fake: FakeAPI) -> None:
    assert cli(*ARGS).code == 0
    sent = body(fake)
    assert sent["model"] == "gpt-5.4"
    assert sent["tools"] == [{"type": "image_generation", "model": "gpt-image-2"}]  # .png: no output_format
    assert sent["tool_choice"] == {"type": "image_generation"}
    for absent in ("previous_response_id", "safety_identifier", "user", "stream"):
        assert absent not in sent


@pytest.mark.parametrize("choice", ["auto", "required", "none"])
def test_tool_choice_strings(cli: Run, fake: FakeAPI, choice: str) -> None:
    cli(*ARGS, "--tool-choice", choice)
    assert body(fake)["tool_choice"] == choice


def test_tool_choice_image_generation_is_the_object(cli: Run, fake: FakeAPI) -> None:
    assert cli(*ARGS, "--tool-choice", "image_generation").code == 0
    assert body(fake)["tool_choice"] == {"type": "image_generation"}


def test_previous_response_id_and_tool_model(cli: Run, fake: FakeAPI) -> None:
    result = cli(
        *ARGS,
        "--previous-response-id",
        "resp_prev_1",
        "--tool-model",
        "gpt-image-2.6-sunburst",
        "--model",
        "gpt-6-astra",
    )
    assert result.code == 0, result.err
    sent = body(fake)
    assert sent["previous_response_id"] == "resp_prev_1"
    assert sent["model"] == "gpt-6-astra"
    assert sent["tools"][0]["model"] == "gpt-image-2.6-sunburst"


def test_models_from_the_environment_and_flags_winning(
    cli: Run, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_RESPONSES_MODEL", "gpt-5.4-mini")
    monkeypatch.setenv("OPENAI_IMAGE_TOOL_MODEL", "gpt-image-2.6-sunburst")
    monkeypatch.setenv("OPENAI_IMAGE_MODEL", "gpt-image-2.5-flare")  # the Images routes' key: not used here
    assert cli(*ARGS).code == 0
    sent = fake.requests[-1].json
    assert (sent["model"], sent["tools"][0]["model"]) == ("gpt-5.4-mini", "gpt-image-2.6-sunburst")
    assert cli(*ARGS, "--overwrite", "--model", "gpt-5.4", "--tool-model", "gpt-image-2").code == 0
    sent = fake.requests[-1].json
    assert (sent["model"], sent["tools"][0]["model"]) == ("gpt-5.4", "gpt-image-2")


def test_models_from_a_dotenv_file(cli: Run, fake: FakeAPI, env: Path) -> None:
    (env / ".env").write_text("OPENAI_RESPONSES_MODEL=gpt-5.4-nano\nOPENAI_IMAGE_TOOL_MODEL=gpt-image-2.6-sunburst\n")
    assert cli(*ARGS).code == 0
    sent = body(fake)
    assert (sent["model"], sent["tools"][0]["model"]) == ("gpt-5.4-nano", "gpt-image-2.6-sunburst")


def test_image_parts_of_every_kind_with_detail(cli: Run, fake: FakeAPI, images_dir: Path) -> None:
    result = cli(
        "responses",
        "--prompt",
        "first",
        "--input-text",
        "second",
        "--input-text",
        "third",
        "--input-image",
        "refs/photo.jpg",
        "--input-image",
        "refs/photo.webp",
        "--input-image-url",
        "https://example.com/a.png",
        "--input-image-file-id",
        "file-abc123",
        "--image-detail",
        "high",
        "--output",
        "out/x.png",
    )
    assert result.code == 0, result.err
    parts = content(fake)
    assert parts[:3] == [{"type": "input_text", "text": t} for t in ("first", "second", "third")]
    jpeg, webp, url, file_id = parts[3:]
    assert decode_data_url(jpeg.pop("image_url")) == ("image/jpeg", (images_dir / "photo.jpg").read_bytes())
    assert decode_data_url(webp.pop("image_url")) == ("image/webp", (images_dir / "photo.webp").read_bytes())
    assert jpeg == webp == {"type": "input_image", "detail": "high"}
    assert url == {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "high"}
    assert file_id == {"type": "input_image", "file_id": "file-abc123", "detail": "high"}


def test_image_only_input_and_mask_file_id(cli: Run, fake: FakeAPI) -> None:
    result = cli(
        "responses",
        "--input-image-file-id",
        "file-img",
        "--mask-file-id",
        "file-mask",
        "--output",
        "out/x.png",
    )
    assert result.code == 0, result.err
    assert content(fake) == [{"type": "input_image", "file_id": "file-img", "detail": "auto"}]
    assert body(fake)["tools"][0]["input_image_mask"] == {"file_id": "file-mask"}


def test_image_options_go_into_the_tool(cli: Run, fake: FakeAPI) -> None:
    result = cli(
        "responses", "--input-text", "a fox", "--output", "out/fox.webp", "--size", "1536x1024",
        "--quality", "high", "--background", "opaque", "--compression", "80", "--moderation", "low",
        "--action", "generate", "--stream", "--partial-images", "3",
    )  # fmt: skip
    assert result.code == 0, result.err
    sent = body(fake)
    assert sent["tools"] == [
        {
            "type": "image_generation",
            "model": "gpt-image-2",
            "size": "1536x1024",
            "quality": "high",
            "background": "opaque",
            "output_format": "webp",
            "output_compression": 80,
            "moderation": "low",
            "partial_images": 3,
            "action": "generate",
        }
    ]
    for key in ("size", "quality", "background", "output_format", "moderation", "partial_images", "action"):
        assert key not in sent


def test_input_fidelity_goes_into_the_tool_for_a_model_that_takes_it(cli: Run, fake: FakeAPI) -> None:
    assert cli(*ARGS, "--tool-model", "gpt-image-2.6-sunburst", "--input-fidelity", "high").code == 0
    assert body(fake)["tools"][0]["input_fidelity"] == "high"


def test_user_is_sent_as_safety_identifier(cli: Run, fake: FakeAPI) -> None:
    assert cli(*ARGS, "--user", "user-42").code == 0
    sent = body(fake)
    assert sent["safety_identifier"] == "user-42"
    assert "user" not in sent and "user" not in sent["tools"][0]


def test_dry_run_shortens_data_urls_and_sends_nothing(
    cli: Run, fake: FakeAPI, images_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    result = cli(*STUDIO, "--dry-run")
    assert result.code == 0, result.err
    assert fake.requests == []
    shown = result.json
    assert shown["url"].endswith("/responses") and shown["text_model"] == "gpt-5.4"
    image = shown["body"]["input"][0]["content"][1]["image_url"]
    mask = shown["body"]["tools"][0]["input_image_mask"]["image_url"]
    product, mask_file = images_dir / "product.png", images_dir / "mask.png"
    assert image == f"data:image/png;base64,<{product.stat().st_size:,} bytes from refs/product.png>"
    assert mask == f"data:image/png;base64,<{mask_file.stat().st_size:,} bytes from refs/mask.png>"
    assert shown["outputs"]["images"] == ["out/studio.png"]
    assert not (images_dir.parent / "out").exists()


def test_dry_run_content_length_matches_what_is_sent(cli: Run, fake: FakeAPI, images_dir: Path) -> None:
    dry = cli(*STUDIO, "--dry-run")
    assert dry.code == 0
    assert cli(*STUDIO).code == 0
    assert (
        dry.json["content_length"]
        == fake.requests[0].body_size
        == int(fake.requests[0].header("content-length"))
    )


# --------------------------------------------------------------------------------------
# Refused before anything is sent
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, words",
    [
        (
            [
                "--input-text",
                "x",
                "--input-image",
                "refs/product.png",
                "--mask",
                "refs/mask.png",
                "--mask-file-id",
                "file-m",
            ],
            "not both",
        ),
        (["--input-text", "x", "--model", "gpt-image-2"], "image model"),
        (["--input-text", "x", "--model", "openai/gpt-image-1.5"], "image model"),
        ([], "need some input"),
        (["--input-text", "x", "--mask", "refs/mask.png"], "needs an input image"),
        (["--input-text", "x", "--mask-file-id", "file-m"], "needs an input image"),
        (["--input-text", "x", "--input-fidelity", "high"], "input-fidelity"),
        (
            ["--input-text", "x", "--input-fidelity", "low", "--tool-model", "gpt-image-2-2026-04-21"],
            "input-fidelity",
        ),
        (["--input-text", "   "], "empty"),
        (["--input-text", "x", "--input-image-url", "ftp://example.com/a.png"], "not an https or data: URL"),
        (["--input-text", "x", "--input-image", "refs/notanimage.png"], "not a PNG, JPEG or WEBP"),
        (["--input-text", "x", "--input-image", "refs/product.png", "--mask", "refs/subject.png"], "alpha"),
        (["--input-text", "x", "--partial-images", "2"], "--stream"),
        (["--input-text", "x", "--stream", "--partial-images", "4"], "partial"),
        (["--input-text", "x", "--tool-choice", "sometimes"], "is not one of"),
    ],
    ids=[
        "mask-and-mask-file-id",
        "image-model-as-model",
        "prefixed-image-model",
        "no-input",
        "mask-without-image",
        "mask-file-id-without-image",
        "input-fidelity-gpt-image-2",
        "input-fidelity-snapshot",
        "blank-text",
        "bad-url-scheme",
        "not-an-image",
        "mask-without-alpha",
        "partials-without-stream",
        "too-many-partials",
        "bad-tool-choice",
    ],
)
def test_usage_errors_exit_2_and_send_nothing(
    cli: Run, fake: FakeAPI, images_dir: Path, extra: List[str], words: str
) -> None:
    result = cli("responses", *extra, "--output", "out/x.png")
    assert result.code == 2, result.err
    assert words in result.err
    assert result.err.startswith("error: ") and "Traceback" not in result.err
    assert fake.requests == []


def _data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


@pytest.mark.parametrize(
    "url, words",
    [
        ("http://cdn.example.com/a.png", "plain http is refused"),
        ("ftp://cdn.example.com/a.png", "not an https or data: URL"),
        (_data_url(b"just some text, not an image"), "holds no PNG, JPEG or WEBP image"),
        (_data_url(make_image("png"), "text/plain"), "not a base64 data URL of a PNG"),
        ("data:image/png;base64,@@@not base64@@@", "does not decode"),
    ],
    ids=["http", "ftp", "data-url-not-an-image", "data-url-not-image-type", "data-url-bad-base64"],
)
def test_input_image_urls_follow_the_edits_rule(cli: Run, fake: FakeAPI, url: str, words: str) -> None:
    """--input-image-url takes what edits' --image-url takes, with the same messages: exit 2, nothing sent."""
    result = cli("responses", "--input-text", "x", "--input-image-url", url, "--output", "out/x.png")
    assert_one_error(result, 2, "--input-image-url", words)
    assert fake.requests == []


def test_https_and_image_data_urls_are_sent_as_given(cli: Run, fake: FakeAPI) -> None:
    given = _data_url(make_image("jpeg", (40, 30)), "image/jpeg")
    https = "https://cdn.example.com/a.png"
    result = cli("responses", "--input-text", "x", "--input-image-url", given, "--input-image-url", https,
                 "--output", "out/x.png")  # fmt: skip
    assert result.code == 0, result.err
    assert content(fake)[1:] == [
        {"type": "input_image", "image_url": given, "detail": "auto"},
        {"type": "input_image", "image_url": https, "detail": "auto"},
    ]


def test_image_model_from_the_environment_is_refused(
    cli: Run, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_RESPONSES_MODEL", "gpt-image-2")
    result = cli(*ARGS)
    assert result.code == 3  # a configured value is a configuration error, naming where it came from
    assert "image model" in result.err and "OPENAI_RESPONSES_MODEL" in result.err
    assert fake.requests == []


def test_usage_error_as_a_subprocess(run: Run, fake: FakeAPI) -> None:
    result = run(
        "responses", "--model", "gpt-image-2", "--input-text", "x", "--output", "out/x.png", "--json"
    )
    assert result.code == 2
    assert result.json["ok"] is False and result.json["error"]["exit_code"] == 2
    assert fake.requests == []


def test_error_event_as_a_subprocess(run: Run, fake: FakeAPI, env: Path) -> None:
    fake.queue(
        SSE(
            [
                *until(stream(1), "response.output_item.done"),
                {"type": "error", "code": "server_error", "message": "Overloaded."},
            ]
        )
    )
    result = run(*STREAM_ARGS, "--partial-images", "1")
    assert result.code == 4
    assert "Overloaded." in result.err and "Traceback" not in result.err
    assert files_in(env / "out") == {"fox.partial-1.png": PREVIEWS[0]}


# --------------------------------------------------------------------------------------
# Against the official OpenAPI spec (when it is available)
# --------------------------------------------------------------------------------------

SPEC_PATH = Path("/work/shared/openapi/openapi.json")


_SPEC: Dict[str, Any] = {}


def _spec() -> Dict[str, Any]:
    if not SPEC_PATH.is_file():
        pytest.skip(f"the OpenAPI spec is not at {SPEC_PATH}")
    if not _SPEC:
        _SPEC.update(json.loads(SPEC_PATH.read_text(encoding="utf-8")))
    return _SPEC


def _properties(schemas: Dict[str, Any], schema: Dict[str, Any]) -> set:
    """Every property name a schema allows, through $ref and allOf/anyOf/oneOf."""
    if "$ref" in schema:
        return _properties(schemas, schemas[schema["$ref"].rsplit("/", 1)[-1]])
    names = set(schema.get("properties", {}))
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key, []):
            names |= _properties(schemas, sub)
    return names


@pytest.mark.parametrize(
    "extra",
    [
        ["--input-image", "refs/product.png", "--mask", "refs/mask.png", "--action", "edit", "--user", "u-1"],
        [
            "--input-image-url",
            "https://example.com/a.png",
            "--tool-choice",
            "auto",
            "--previous-response-id",
            "resp_1",
        ],
        [
            "--input-image-file-id",
            "file-1",
            "--mask-file-id",
            "file-2",
            "--stream",
            "--partial-images",
            "1",
            "--image-detail",
            "original",
        ],
        ["--quality", "low", "--size", "1024x1536", "--moderation", "low", "--tool-choice", "required"],
    ],
)
def test_request_bodies_fit_the_openapi_spec(
    cli: Run, fake: FakeAPI, images_dir: Path, extra: List[str]
) -> None:
    osv = pytest.importorskip("openapi_schema_validator", reason="needs openapi-schema-validator (dev extra)")
    OAS31Validator = osv.OAS31Validator
    spec = _spec()
    schemas = spec["components"]["schemas"]

    def validator(name: str) -> Any:
        return OAS31Validator({"$ref": f"#/components/schemas/{name}", "components": spec["components"]})

    result = cli("responses", "--input-text", "x", *extra, "--output", "out/x.png")
    assert result.code == 0, result.err
    sent = body(fake)
    # The whole CreateResponse schema has ambiguous oneOfs, so check its pieces and its member names.
    assert set(sent) <= _properties(schemas, schemas["CreateResponse"])
    assert "safety_identifier" in _properties(schemas, schemas["CreateResponse"])
    (tool,) = sent["tools"]
    assert set(tool) <= _properties(schemas, schemas["ImageGenTool"])
    assert set(tool.get("input_image_mask", {})) <= {"image_url", "file_id"}
    for name, instance in [("ImageGenTool", tool), ("ToolChoiceParam", sent["tool_choice"])]:
        assert [e.message for e in validator(name).iter_errors(instance)] == [], name
    for part in content(fake):
        schema = "InputTextContent" if part["type"] == "input_text" else "InputImageContent"
        assert set(part) <= _properties(schemas, schemas[schema])
        assert [e.message for e in validator(schema).iter_errors(part)] == [], part
    # The whole message: openapi-schema-validator before 0.7 (the last for Python 3.9) reads the spec's
    # discriminated oneOf of content parts strictly and refuses every message, so only newer ones judge it here
    # (tests/test_conformance.py checks whole bodies on every version, with that quirk handled).
    if tuple(int(p) for p in osv.__version__.split(".")[:2]) >= (0, 7):
        assert [e.message for e in validator("EasyInputMessage").iter_errors(sent["input"][0])] == []


def test_body_with_image_items_without_ids_takes_the_first(cli: Run, fake: FakeAPI, env: Path) -> None:
    second = make_image("png", color=(1, 200, 3))
    reply = responses_body(n_images=2, images=[FINAL, second])
    for item in reply["output"]:
        item.pop("id", None)
    fake.queue(Reply(json=reply))
    result = cli(*ARGS, "--json")
    assert result.code == 0, result.err
    assert [(i["path"], i["index"]) for i in result.json["images"]] == [("out/fox.png", 1)]
    assert files_in(env / "out") == {"fox.png": FINAL}


def test_two_image_calls_in_one_stream_save_the_planned_image_and_its_previews(
    cli: Run, fake: FakeAPI, env: Path
) -> None:
    """The second call's previews and image are not planned: ignored, with one warning each kind."""
    second = make_image("png", color=(1, 200, 3))
    events = responses_stream_events(
        1, "png", n_images=2, images=[FINAL, second], partial_images=PREVIEWS[:1], response_id=RESPONSE_ID
    )
    fake.queue(SSE(events))
    result = cli(*STREAM_ARGS, "--partial-images", "1")
    assert result.code == 0, result.err
    assert result.lines == ["out/fox.png"]
    assert files_in(env / "out") == {"fox.partial-1.png": PREVIEWS[0], "fox.png": FINAL}
    assert "more images than the 1 asked for" in result.err


def test_a_json_body_answering_a_stream_request_is_read_as_a_body(cli: Run, fake: FakeAPI, env: Path) -> None:
    fake.queue(Reply(json=responses_body(images=[FINAL], response_id=RESPONSE_ID)))
    result = cli(*STREAM_ARGS, "--json")
    assert result.code == 0, result.err
    assert result.json["response_id"] == RESPONSE_ID
    assert files_in(env / "out") == {"fox.png": FINAL}


def test_connection_reset_mid_stream_exits_5_and_keeps_the_previews(
    cli: Run, fake: FakeAPI, env: Path
) -> None:
    kinds = ("response.created", "response.image_generation_call.partial_image", "response.output_item.done")
    events = [e for e in stream(2) if e["type"] in kinds]
    full = SSE(events).render()
    cut = full.index(b"event: response.output_item.done") + 100
    # The pause between events lets the previews be read before the reset, on any platform's TCP stack.
    fake.queue(SSE(events, truncate_at=cut, reset=True, delay=0.1))
    result = cli(*STREAM_ARGS, "--partial-images", "2", "--save-response", "out/raw.sse")
    assert result.code == 5, result.err
    assert "not retried" in result.err and "2 preview(s) kept" in result.err
    assert len(fake.requests) == 1
    kept = files_in(env / "out")
    assert {k: v for k, v in kept.items() if k != "raw.sse"} == {
        "fox.partial-1.png": PREVIEWS[0],
        "fox.partial-2.png": PREVIEWS[1],
    }
    assert full.startswith(kept["raw.sse"])  # what arrived before the reset, and nothing else


def test_mask_of_another_size_than_the_input_image_is_refused(
    cli: Run, fake: FakeAPI, images_dir: Path
) -> None:
    from fakeapi import make_mask

    (images_dir / "small-mask.png").write_bytes(make_mask((32, 32)))
    result = cli(*ARGS, "--input-image", "refs/product.png", "--mask", "refs/small-mask.png")
    assert result.code == 2
    assert "32x32" in result.err and "64x48" in result.err
    assert fake.requests == []


def test_an_event_with_a_null_error_member_is_not_an_error(cli: Run, fake: FakeAPI, env: Path) -> None:
    events = stream(0)
    events.insert(1, {"type": "keepalive", "error": None})  # e.g. from a gateway; "error": null is no error
    fake.queue(SSE(events))
    result = cli(*STREAM_ARGS)
    assert result.code == 0, result.err
    assert files_in(env / "out") == {"fox.png": FINAL}


def test_response_id_without_response_created_is_shown_at_the_end(cli: Run, fake: FakeAPI) -> None:
    events = [event for event in stream(0) if event["type"] != "response.created"]
    assert any(event.get("response", {}).get("id") == RESPONSE_ID for event in events)  # still carried
    fake.queue(SSE(events), SSE(events))
    quiet = cli(*STREAM_ARGS, "--quiet")
    assert quiet.code == 0, quiet.err
    assert quiet.err.splitlines() == [f"response id: {RESPONSE_ID}"]
    loud = cli(*STREAM_ARGS, "--overwrite")
    assert loud.code == 0, loud.err
    err = loud.err.splitlines()
    saved = next(i for i, line in enumerate(err) if "image 1 saved" in line)
    assert err.count(f"response id: {RESPONSE_ID}") == 1
    assert err.index(f"response id: {RESPONSE_ID}") > saved  # at the end, since no event announced it

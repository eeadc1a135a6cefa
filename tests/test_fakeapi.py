"""Tests of the fake API itself, driven with plain urllib / http.client (never the CLI)."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from fakeapi import (
    COMPLEXITIES,
    FINAL_COLORS,
    IMAGE_SIZE,
    OUTPUT_FAULTS,
    SSE,
    BatchPlan,
    FakeAPI,
    Hang,
    Lost,
    RateLimit,
    Reply,
    Reset,
    ResetMidBody,
    b64,
    data_url,
    error_reply,
    faulty_output,
    final_color,
    format_duration,
    identify,
    images_body,
    images_stream_events,
    make_gif,
    make_image,
    make_mask,
    make_svg,
    moderation_reply,
    noise_image,
    parse_sse,
    partial_color,
    pixel,
    render_sse,
    responses_body,
    responses_stream_events,
    sniff_image,
)
from PIL import Image

TESTS = Path(__file__).resolve().parent
AUTH = {"Authorization": "Bearer sk-test-fakeapi"}
AZURE_KEY = {"api-key": "azure-test-key"}
SPEC_PATH = TESTS.parent.parent / "shared" / "openapi" / "openapi.json"

# --------------------------------------------------------------------------------------
# Small client helpers
# --------------------------------------------------------------------------------------


def post_json(fake: FakeAPI, route: str, body: Any, timeout: float = 5) -> Tuple[int, Dict[str, str], bytes]:
    """POST JSON with urllib; returns (status, lower-cased headers, raw body), errors included."""
    req = urllib.request.Request(
        fake.base_url + route,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **AUTH},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def decode(b64_text: str) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(b64_text)))
    img.load()
    return img


def multipart(parts: List[Tuple[str, Optional[str], Optional[str], bytes]], boundary: str) -> bytes:
    """Hand-made multipart/form-data body from (name, filename, content_type, data) tuples."""
    out = b""
    for name, filename, ctype, data in parts:
        out += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        if ctype is not None:
            out += f"Content-Type: {ctype}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def post_multipart(fake: FakeAPI, route: str, body: bytes, boundary: str) -> Tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    try:
        conn.request(
            "POST",
            "/v1" + route,
            body=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}", **AUTH},
        )
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def raw_stream(fake: FakeAPI, behaviour: SSE) -> bytes:
    """Queue ``behaviour`` and return the raw response body bytes."""
    fake.queue(behaviour)
    status, headers, body = post_json(fake, "/images/generations", {"prompt": "x"})
    assert status == behaviour.status
    assert headers["content-type"].startswith("text/event-stream")
    assert "content-length" not in headers
    return body


# --------------------------------------------------------------------------------------
# Default routes
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "pil_name"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_generations_default_returns_requested_count_and_format(
    fake: FakeAPI, fmt: str, pil_name: str
) -> None:
    request = {"model": "gpt-image-2", "prompt": "a cat", "n": 3, "output_format": fmt, "quality": "high"}
    status, headers, raw = post_json(fake, "/images/generations", request)
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["x-request-id"].startswith("req_")
    body = json.loads(raw)
    assert body["output_format"] == fmt
    assert body["quality"] == "high"
    assert body["size"] == "1024x1024"
    assert body["background"] == "opaque"
    assert body["usage"]["total_tokens"] == 1806
    assert isinstance(body["created"], int)
    assert len(body["data"]) == 3
    for i, item in enumerate(body["data"]):
        img = decode(item["b64_json"])
        assert img.format == pil_name
        assert img.size == IMAGE_SIZE
        assert identify(base64.b64decode(item["b64_json"])) == ("final", i)
    # What was sent is on record, per request and for the whole fake.
    rec = fake.last
    assert [b64(x) for x in rec.sent_images] == [d["b64_json"] for d in body["data"]]
    assert fake.sent_images == rec.sent_images
    assert rec.request_id == headers["x-request-id"]
    assert rec.json == request
    assert rec.path == "/v1/images/generations"
    assert rec.header("CONTENT-TYPE") == "application/json"
    assert rec.body == json.dumps(request).encode()


def test_generations_defaults_when_unspecified(fake: FakeAPI) -> None:
    status, _, raw = post_json(
        fake, "/images/generations", {"model": "gpt-image-2", "prompt": "x", "quality": "auto"}
    )
    body = json.loads(raw)
    assert status == 200
    assert body["output_format"] == "png" and body["quality"] == "medium" and len(body["data"]) == 1
    assert decode(body["data"][0]["b64_json"]).format == "PNG"


def test_generations_stream_default_events(fake: FakeAPI) -> None:
    request = {
        "model": "gpt-image-2",
        "prompt": "x",
        "stream": True,
        "partial_images": 2,
        "output_format": "webp",
    }
    status, headers, raw = post_json(fake, "/images/generations", request)
    assert status == 200
    assert headers["connection"] == "close"
    events = parse_sse(raw)
    assert [e["event"] for e in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    data = [json.loads(e["data"]) for e in events]
    assert [d["type"] for d in data] == [e["event"] for e in events]
    assert [d.get("partial_image_index") for d in data] == [0, 1, None]
    for d in data:
        assert d["output_format"] == "webp" and decode(d["b64_json"]).format == "WEBP"
        assert {"size", "quality", "background", "created_at"} <= set(d)
    assert "usage" in data[-1]
    images = [base64.b64decode(d["b64_json"]) for d in data]
    assert [identify(x) for x in images] == [("partial", 0), ("partial", 1), ("final", 0)]
    assert fake.last.sent_partials == images[:2] and fake.last.sent_images == images[2:]


def test_generations_stream_without_partials(fake: FakeAPI) -> None:
    _, _, raw = post_json(fake, "/images/generations", {"prompt": "x", "stream": True})
    assert [e["event"] for e in parse_sse(raw)] == ["image_generation.completed"]


def test_edits_multipart_parsed_and_answered(fake: FakeAPI) -> None:
    # Image bytes full of CR/LF and high bytes must survive byte-for-byte.
    first = make_image("png", color=(1, 2, 3))
    second = make_image("jpeg", color=(9, 9, 9)) + b"\r\n--not-a-boundary\r\n\x00\xff"
    mask = make_mask()
    boundary = "----fakeapi-test-boundary-42"
    body = multipart(
        [
            ("prompt", None, None, "put them together, «quoted» ✓".encode()),
            ("model", None, None, b"gpt-image-2"),
            ("image[]", "a.png", "image/png", first),
            ("image[]", "b.jpg", "image/jpeg", second),
            ("mask", "mask.png", "image/png", mask),
            ("n", None, None, b"2"),
            ("output_format", None, None, b"jpeg"),
        ],
        boundary,
    )
    status, raw = post_multipart(fake, "/images/edits", body, boundary)
    assert status == 200, raw
    rec = fake.last
    assert rec.body == body and rec.body_size == len(body) and rec.is_multipart
    assert rec.multipart_defects == []
    assert [(p.name, p.filename, p.content_type) for p in rec.parts] == [
        ("prompt", None, None),
        ("model", None, None),
        ("image[]", "a.png", "image/png"),
        ("image[]", "b.jpg", "image/jpeg"),
        ("mask", "mask.png", "image/png"),
        ("n", None, None),
        ("output_format", None, None),
    ]
    assert [p.data for p in rec.files("image[]")] == [first, second]
    assert rec.files("mask")[0].data == mask
    assert rec.fields == {
        "prompt": "put them together, «quoted» ✓",
        "model": "gpt-image-2",
        "n": "2",
        "output_format": "jpeg",
    }
    reply = json.loads(raw)
    assert [decode(d["b64_json"]).format for d in reply["data"]] == ["JPEG", "JPEG"]


def test_edits_stream_uses_image_edit_events(fake: FakeAPI) -> None:
    boundary = "b0undary"
    body = multipart(
        [
            ("image", "a.png", "image/png", make_image()),
            ("prompt", None, None, b"edit"),
            ("stream", None, None, b"true"),
            ("partial_images", None, None, b"1"),
        ],
        boundary,
    )
    status, raw = post_multipart(fake, "/images/edits", body, boundary)
    assert status == 200
    assert [e["event"] for e in parse_sse(raw)] == ["image_edit.partial_image", "image_edit.completed"]


@pytest.mark.parametrize(
    ("parts", "code", "param"),
    [
        (
            [("image", "a.png", "image/png", b"x"), ("image", "b.png", "image/png", b"y")],
            "duplicate_parameter",
            "image",
        ),
        ([("image", "a.png", "application/octet-stream", b"x")], "invalid_value", "image"),
        ([("image", "a.png", None, b"x")], "invalid_value", "image"),
        ([], "missing_required_parameter", "image"),
    ],
)
def test_edits_strict_rejections(fake: FakeAPI, parts: list, code: str, param: str) -> None:
    body = multipart([("prompt", None, None, b"p"), *parts], "bnd")
    status, raw = post_multipart(fake, "/images/edits", body, "bnd")
    assert status == 400
    error = json.loads(raw)["error"]
    assert (error["code"], error["param"], error["type"]) == (code, param, "invalid_request_error")


def test_strict_can_be_turned_off(fake: FakeAPI) -> None:
    fake.strict = False
    body = multipart([("image", "a.png", "image/png", b"x"), ("image", "b.png", "image/png", b"y")], "bnd")
    assert post_multipart(fake, "/images/edits", body, "bnd")[0] == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt-image-2"}, "prompt"),
        ({"prompt": "x", "n": 11}, "n"),
        ({"prompt": "x", "n": "two"}, "n"),
        ({"prompt": "x", "output_format": "gif"}, "output_format"),
        ({"prompt": "x", "partial_images": 4}, "partial_images"),
    ],
)
def test_generations_strict_rejections(fake: FakeAPI, body: Dict[str, Any], param: str) -> None:
    status, _, raw = post_json(fake, "/images/generations", body)
    assert status == 400
    assert json.loads(raw)["error"]["param"] == param


def test_missing_api_key_is_a_401(fake: FakeAPI) -> None:
    req = urllib.request.Request(
        fake.base_url + "/images/generations",
        data=b'{"prompt": "x"}',
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert info.value.code == 401 and "API key" in json.loads(info.value.read())["error"]["message"]


def test_bad_json_is_a_400(fake: FakeAPI) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    conn.request(
        "POST", "/v1/images/generations", body=b"{nope", headers={"Content-Type": "application/json", **AUTH}
    )
    resp = conn.getresponse()
    assert resp.status == 400 and "error" in json.loads(resp.read())
    assert fake.last.json is None and fake.last.json_error
    conn.close()


def test_responses_default_body(fake: FakeAPI) -> None:
    request = {
        "model": "gpt-5.4",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "a red fox"}]}],
        "tools": [{"type": "image_generation", "model": "gpt-image-2", "output_format": "jpeg"}],
        "tool_choice": {"type": "image_generation"},
    }
    status, headers, raw = post_json(fake, "/responses", request)
    assert status == 200 and headers["x-request-id"].startswith("req_")
    body = json.loads(raw)
    assert body["object"] == "response" and body["status"] == "completed" and body["model"] == "gpt-5.4"
    assert body["id"].startswith("resp_") and isinstance(body["created_at"], int)
    assert [item["type"] for item in body["output"]] == ["image_generation_call", "message"]
    call = body["output"][0]
    assert call["id"].startswith("ig_") and call["status"] == "completed"
    assert call["revised_prompt"] == "Revised: a red fox"
    assert decode(call["result"]).format == "JPEG"
    assert identify(base64.b64decode(call["result"])) == ("final", 0)
    assert body["usage"]["total_tokens"] == 1920


def test_responses_without_image_tool_has_no_image(fake: FakeAPI) -> None:
    _, _, raw = post_json(fake, "/responses", {"model": "gpt-5.4", "input": "hi"})
    assert [item["type"] for item in json.loads(raw)["output"]] == ["message"]


def test_responses_stream_default_events(fake: FakeAPI) -> None:
    request = {
        "model": "gpt-5.4",
        "input": "a fox",
        "stream": True,
        "tools": [{"type": "image_generation", "partial_images": 2, "output_format": "png"}],
    }
    status, _, raw = post_json(fake, "/responses", request)
    assert status == 200
    events = parse_sse(raw)
    data = [json.loads(e["data"]) for e in events]
    assert [e["event"] for e in events] == [d["type"] for d in data]
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    types = [d["type"] for d in data]
    assert types[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.image_generation_call.in_progress",
        "response.image_generation_call.generating",
    ]
    assert types[5:9] == [
        "response.image_generation_call.partial_image",
        "response.image_generation_call.partial_image",
        "response.image_generation_call.completed",
        "response.output_item.done",
    ]
    assert types[-1] == "response.completed"
    item_id = data[2]["item"]["id"]
    assert data[2]["item"] == {"type": "image_generation_call", "id": item_id, "status": "in_progress"}
    for d in data[3:8]:
        assert d["item_id"] == item_id and d["output_index"] == 0
    partials = [d for d in data if d["type"].endswith("partial_image")]
    assert [p["partial_image_index"] for p in partials] == [0, 1]
    assert [identify(base64.b64decode(p["partial_image_b64"])) for p in partials] == [
        ("partial", 0),
        ("partial", 1),
    ]
    done = data[8]["item"]
    assert done["id"] == item_id and done["status"] == "completed" and decode(done["result"]).format == "PNG"
    final = data[-1]["response"]
    assert final["status"] == "completed" and final["usage"]
    assert final["output"][0]["result"] == done["result"]
    assert data[0]["response"]["id"] == final["id"]


def test_unknown_route_is_404(fake: FakeAPI) -> None:
    status, _, raw = post_json(fake, "/images/variations", {})
    assert status == 404
    assert json.loads(raw) == {
        "error": {
            "message": "Invalid URL (POST /v1/images/variations)",
            "type": "invalid_request_error",
            "param": None,
            "code": "unknown_url",
        }
    }
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(fake.base_url + "/images/generations", timeout=5)  # GET
    assert info.value.code == 404


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def test_body_and_event_helpers() -> None:
    body = images_body(2, "jpeg")
    assert [identify(base64.b64decode(d["b64_json"])) for d in body["data"]] == [("final", 0), ("final", 1)]
    assert images_body(images=[b"abc"])["data"] == [{"b64_json": b64(b"abc")}]
    events = images_stream_events("edit", partials=1, fmt="png", n=2)
    assert [e["type"] for e in events] == ["image_edit.partial_image", "image_edit.completed"] * 2
    with pytest.raises(ValueError):
        images_stream_events("variation")
    resp = responses_body("webp", n_images=2, text=None)
    assert [o["type"] for o in resp["output"]] == ["image_generation_call"] * 2
    stream = responses_stream_events(partials=0, text=None)
    assert [e["type"] for e in stream][-2:] == ["response.output_item.done", "response.completed"]


def test_images_and_colours() -> None:
    assert len(set(FINAL_COLORS)) == 10
    for fmt, name in (("png", "PNG"), ("jpg", "JPEG"), ("webp", "WEBP")):
        data = make_image(fmt, (20, 10), final_color(4))
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == name and img.size == (20, 10)
        assert identify(data) == ("final", 4)
    assert identify(make_image(color=partial_color(2))) == ("partial", 2)
    assert identify(make_image(color=(1, 255, 1))) is None
    rgba = make_image("png", color=(10, 20, 30, 128), mode="RGBA")
    assert pixel(rgba) == (10, 20, 30, 128)
    with Image.open(io.BytesIO(make_mask((64, 48)))) as mask:
        assert mask.mode == "RGBA" and mask.size == (64, 48)
        alphas = {mask.getpixel((x, y))[3] for x in range(64) for y in range(48)}
        assert alphas == {0, 255}
        assert mask.getpixel((32, 24))[3] == 0 and mask.getpixel((0, 0))[3] == 255


def test_error_reply_shape(fake: FakeAPI) -> None:
    reply = error_reply(429, "Slow down", code="rate_limit_exceeded", headers={"retry-after-ms": "5"})
    assert reply.json == {
        "error": {
            "message": "Slow down",
            "type": "invalid_request_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    fake.queue(reply, moderation_reply())
    status, headers, raw = post_json(fake, "/images/generations", {"prompt": "x"})
    assert status == 429 and headers["retry-after-ms"] == "5" and json.loads(raw) == reply.json
    status, _, raw = post_json(fake, "/images/generations", {"prompt": "x"})
    error = json.loads(raw)["error"]
    assert status == 400 and error["code"] == "moderation_blocked"
    assert (
        error["type"] == "image_generation_user_error"
        and error["moderation_details"]["moderation_stage"] == "input"
    )
    extra = error_reply(400, "m", extra={"foo": 1}).json["error"]
    assert extra["foo"] == 1


# --------------------------------------------------------------------------------------
# Queue and Reply
# --------------------------------------------------------------------------------------


def test_queue_is_fifo_then_defaults(fake: FakeAPI) -> None:
    seen: List[str] = []

    def dynamic(rec: Any) -> Reply:
        seen.append(rec.json["prompt"])
        return Reply(status=203, json={"echo": rec.json["prompt"]})

    fake.queue(Reply(status=201, json={"a": 1}), Reply(status=202, body=b"raw", content_type="text/plain"))
    fake.queue(dynamic, lambda rec: None)
    assert fake.queued == 4
    results = [post_json(fake, "/images/generations", {"prompt": f"p{i}"}) for i in range(5)]
    assert [r[0] for r in results] == [201, 202, 203, 200, 200]
    assert results[1][1]["content-type"] == "text/plain" and results[1][2] == b"raw"
    assert json.loads(results[2][2]) == {"echo": "p2"} and seen == ["p2"]
    assert "data" in json.loads(results[3][2])
    assert fake.queued == 0
    assert [r.json["prompt"] for r in fake.requests] == [f"p{i}" for i in range(5)]


def test_reply_headers_chunks_and_delay(fake: FakeAPI) -> None:
    payload = bytes(range(256)) * 40
    fake.queue(
        Reply(body=payload, chunk_size=1000, delay=0.05, headers={"x-request-id": None, "X-Extra": "1"})
    )
    start = time.monotonic()
    status, headers, raw = post_json(fake, "/x", {})
    assert time.monotonic() - start >= 0.05
    assert status == 200 and raw == payload and headers["content-length"] == str(len(payload))
    assert "x-request-id" not in headers and headers["x-extra"] == "1"
    assert fake.last.request_id is None


def test_keep_alive_connection_serves_several_requests(fake: FakeAPI) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    for _ in range(3):
        conn.request(
            "POST",
            "/v1/images/generations",
            body=b'{"prompt": "x"}',
            headers={"Content-Type": "application/json", **AUTH},
        )
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["data"]
    conn.close()
    assert len(fake.requests) == 3


# --------------------------------------------------------------------------------------
# SSE rendering
# --------------------------------------------------------------------------------------

A = {"type": "a.one", "x": 1}
B = {"type": "b.two", "y": "é"}


def test_sse_basic_bytes(fake: FakeAPI) -> None:
    expected = (
        b'event: a.one\ndata: {"type":"a.one","x":1}\n\n'
        b'event: b.two\ndata: {"type":"b.two","y":"\\u00e9"}\n\n'
    )
    assert render_sse([A, B]) == expected
    assert raw_stream(fake, SSE([A, B])) == expected
    assert raw_stream(fake, SSE([A, B], split=3)) == expected
    assert raw_stream(fake, SSE([A, B], split=1, delay=0.001)) == expected


@pytest.mark.parametrize("line_end", ["\r\n", "\r", "\n"])
def test_sse_line_ends_comments_done(fake: FakeAPI, line_end: str) -> None:
    le = line_end.encode()
    expected = (
        b"event: a.one" + le + b'data: {"type":"a.one","x":1}' + le + le
        + b": keep-alive" + le + le
        + b"event: b.two" + le + b'data: {"type":"b.two","y":"\\u00e9"}' + le + le
        + b": keep-alive" + le + le
        + b"data: [DONE]" + le + le
    )  # fmt: skip
    options: Dict[str, Any] = {"line_end": line_end, "comments": True, "done": True}
    assert render_sse([A, B], **options) == expected
    assert raw_stream(fake, SSE([A, B], **options)) == expected
    assert raw_stream(fake, SSE([A, B], split=2, **options)) == expected
    parsed = parse_sse(expected)
    assert [p["event"] for p in parsed] == ["a.one", "b.two", None]
    assert parsed[-1]["data"] == "[DONE]"


def test_sse_without_event_field_and_raw_items(fake: FakeAPI) -> None:
    raw = raw_stream(fake, SSE([A, "data: plain\n\n", b"\xff\xfe"], event_field=False))
    assert raw == b'data: {"type":"a.one","x":1}\n\ndata: plain\n\n\xff\xfe'


def test_sse_truncate(fake: FakeAPI) -> None:
    full = render_sse([A, B])
    assert raw_stream(fake, SSE([A, B], truncate_at=20)) == full[:20]
    assert raw_stream(fake, SSE([A, B], truncate_at=20, split=7)) == full[:20]
    # A truncation past the end sends everything and still closes.
    assert raw_stream(fake, SSE([A, B], truncate_at=10_000)) == full


def test_sse_truncate_with_reset(fake: FakeAPI) -> None:
    fake.queue(SSE([A, B], truncate_at=20, reset=True))
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    conn.request("POST", "/v1/x", body=b"{}", headers={"Content-Type": "application/json", **AUTH})
    resp = conn.getresponse()
    got, error = b"", None
    try:
        while True:
            chunk = resp.read1(100)
            if not chunk:
                break
            got += chunk
    except ConnectionResetError as exc:
        error = exc
    conn.close()
    assert error is not None, "a TCP reset, not a clean end of stream"
    assert render_sse([A, B])[:20].startswith(got)


def test_sse_status_and_headers(fake: FakeAPI) -> None:
    fake.queue(SSE([A], status=500, headers={"Content-Type": "text/event-stream"}))
    status, headers, raw = post_json(fake, "/x", {})
    assert status == 500 and headers["content-type"] == "text/event-stream"
    assert raw == render_sse([A])


# --------------------------------------------------------------------------------------
# Failures: Reset, ResetMidBody, Hang
# --------------------------------------------------------------------------------------


def test_reset_before_status_line(fake: FakeAPI) -> None:
    fake.queue(Reset())
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    conn.request(
        "POST",
        "/v1/images/generations",
        body=b'{"prompt": "x"}',
        headers={"Content-Type": "application/json", **AUTH},
    )
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        conn.getresponse()
    conn.close()
    assert fake.last.complete and fake.last.body == b'{"prompt": "x"}'
    # The server carries on.
    assert post_json(fake, "/images/generations", {"prompt": "x"})[0] == 200


def test_reset_without_reading_body(fake: FakeAPI) -> None:
    fake.queue(Reset(read_body=False))
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    with pytest.raises((ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)):
        conn.request("POST", "/v1/images/edits", body=b"x" * 5_000_000, headers={"Content-Type": "image/png"})
        conn.getresponse()
    conn.close()
    assert not fake.last.complete


def test_reset_mid_body(fake: FakeAPI) -> None:
    body = json.dumps(images_body()).encode()
    fake.queue(ResetMidBody(body=body, after=100))
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    conn.request(
        "POST", "/v1/images/generations", body=b"{}", headers={"Content-Type": "application/json", **AUTH}
    )
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Length") == str(len(body))
    with pytest.raises((ConnectionResetError, http.client.IncompleteRead)):
        resp.read()
    conn.close()


def test_reset_mid_body_with_fin_gives_incomplete_read(fake: FakeAPI) -> None:
    fake.queue(ResetMidBody(body=b"0123456789" * 10, after=30, rst=False))
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    conn.request("POST", "/v1/x", body=b"{}")
    resp = conn.getresponse()
    with pytest.raises(http.client.IncompleteRead) as info:
        resp.read()
    assert info.value.partial == b"0123456789" * 3
    conn.close()


def test_hang_times_out_client_and_stop_is_prompt() -> None:
    api = FakeAPI().start()
    api.queue(Hang(30), Hang(30))
    with pytest.raises((socket.timeout, TimeoutError)):
        post_json(api, "/images/generations", {"prompt": "x"}, timeout=0.3)
    # A second hanging request stays open while we stop the server.
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=5)
    conn.request(
        "POST", "/v1/images/generations", body=b"{}", headers={"Content-Type": "application/json", **AUTH}
    )
    api.wait_for(2)
    time.sleep(0.1)
    start = time.monotonic()
    api.stop()
    assert time.monotonic() - start < 1.0
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        conn.getresponse()  # woken by stop(), no reply
    conn.close()
    assert api.errors == []


def test_hang_ends_after_its_seconds(fake: FakeAPI) -> None:
    fake.queue(Hang(0.2))
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    conn.request("POST", "/v1/x", body=b"{}")
    with pytest.raises(http.client.RemoteDisconnected):
        conn.getresponse()
    assert 0.2 <= time.monotonic() - start < 2
    conn.close()


def test_client_disconnects_are_quiet(capfd: pytest.CaptureFixture[str]) -> None:
    api = FakeAPI().start()
    try:
        # Half a request line, then gone.
        with socket.create_connection(("127.0.0.1", api.port)) as s:
            s.sendall(b"POST /v1/images/gen")
        # Headers promising a body that never comes.
        with socket.create_connection(("127.0.0.1", api.port)) as s:
            s.sendall(b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        # A client that leaves mid-stream.
        api.queue(SSE([A] * 50, split=10, delay=0.01))
        with socket.create_connection(("127.0.0.1", api.port)) as s:
            s.sendall(b"POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            s.recv(10)
        api.wait_for(2)
        time.sleep(0.3)
        assert post_json(api, "/images/generations", {"prompt": "x"})[0] == 200
    finally:
        api.stop()
    assert api.errors == []
    promised = [r for r in api.requests if r.header("content-length") == "100"]
    assert len(promised) == 1 and not promised[0].complete and promised[0].body == b"{"
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# --------------------------------------------------------------------------------------
# Bodies: big, discarded, chunked
# --------------------------------------------------------------------------------------


def test_discarded_bodies_are_counted() -> None:
    with FakeAPI(keep_bodies=False) as api:
        boundary = "bb"
        big = os.urandom(3_000_000)
        body = multipart(
            [
                ("prompt", None, None, b"p"),
                ("output_format", None, None, b"webp"),
                ("image", "a.png", "image/png", big),
                ("n", None, None, b"2"),
            ],
            boundary,
        )
        status, raw = post_multipart(api, "/images/edits", body, boundary)
        rec = api.last
        assert status == 200 and rec.body == b"" and rec.body_size == len(body) and rec.complete
        assert rec.body_head == body[:65536] and rec.body_tail == body[-65536:]
        assert rec.parts == []
        # Small fields before/after the file were still sniffed for the default reply.
        reply = json.loads(raw)
        assert reply["output_format"] == "webp" and len(reply["data"]) == 2
        # Small JSON bodies are still parsed.
        post_json(api, "/images/generations", {"prompt": "x", "output_format": "jpeg"})
        assert api.last.json == {"prompt": "x", "output_format": "jpeg"} and api.last.body == b""


def test_chunked_upload_is_decoded(fake: FakeAPI) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    pieces = [b'{"prompt": ', b'"chunky"', b"}"]
    conn.request(
        "POST",
        "/v1/images/generations",
        body=iter(pieces),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked", **AUTH},
        encode_chunked=True,
    )
    resp = conn.getresponse()
    assert resp.status == 200
    resp.read()
    conn.close()
    assert fake.last.chunked and fake.last.json == {"prompt": "chunky"}


def test_image_bytes_makes_big_images() -> None:
    with FakeAPI(image_bytes=300_000) as api:
        _, _, raw = post_json(api, "/images/generations", {"prompt": "x", "n": 2})
        data = [base64.b64decode(d["b64_json"]) for d in json.loads(raw)["data"]]
    for item in data:
        assert 290_000 <= len(item) <= 310_000
        with Image.open(io.BytesIO(item)) as img:
            img.load()
            assert img.format == "PNG"


# --------------------------------------------------------------------------------------
# Standalone
# --------------------------------------------------------------------------------------


def test_standalone_server_starts_and_answers() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(TESTS / "fakeapi.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().decode().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        req = urllib.request.Request(
            url + "/images/generations",
            data=b'{"prompt": "x", "output_format": "jpeg"}',
            headers={"Content-Type": "application/json", **AUTH},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            body = json.load(resp)
        assert decode(body["data"][0]["b64_json"]).format == "JPEG"
    finally:
        proc.terminate()
        proc.wait(timeout=5)


# ======================================================================================
# Shared helpers for the Files / Batches / Azure / load tests
# ======================================================================================


def call(
    fake: FakeAPI,
    method: str,
    path: str,
    body: Any = None,
    headers: Optional[Dict[str, str]] = None,
    auth: bool = True,
    timeout: float = 10,
) -> Tuple[int, Dict[str, str], bytes]:
    """One request with http.client; ``path`` is absolute (``/v1/...`` or ``/openai/...``).
    A dict/list body is sent as JSON. Returns (status, lower-cased headers, raw body)."""
    sent = dict(headers or {})
    data: Optional[bytes] = None
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    elif isinstance(body, bytes):
        data = body
    if auth and not path.startswith("/openai/"):
        sent = {**AUTH, **sent}
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=sent)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def upload(
    fake: FakeAPI,
    data: bytes,
    filename: str = "input.jsonl",
    purpose: Optional[str] = "batch",
    content_type: str = "application/octet-stream",
    path: str = "/v1/files",
    headers: Optional[Dict[str, str]] = None,
) -> Tuple[int, Any]:
    parts: List[Tuple[str, Optional[str], Optional[str], bytes]] = []
    if purpose is not None:
        parts.append(("purpose", None, None, purpose.encode()))
    parts.append(("file", filename, content_type, data))
    boundary = "fakeapi-upload-boundary"
    status, _, raw = call(
        fake,
        "POST",
        path,
        multipart(parts, boundary),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}", **(headers or {})},
    )
    return status, json.loads(raw)


def jsonl(lines: List[Any]) -> bytes:
    return b"".join((json.dumps(x) if not isinstance(x, str) else x).encode() + b"\n" for x in lines)


def gen_line(
    custom_id: str, prompt: str = "a cat", url: str = "/v1/images/generations", **body: Any
) -> Dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": url,
        "body": {"model": "gpt-image-2", "prompt": prompt, **body},
    }


def make_batch(
    fake: FakeAPI, lines: List[Any], endpoint: str = "/v1/images/generations", **extra: Any
) -> Dict[str, Any]:
    status, file_obj = upload(fake, jsonl(lines))
    assert status == 200, file_obj
    status, _, raw = call(
        fake,
        "POST",
        "/v1/batches",
        {"input_file_id": file_obj["id"], "endpoint": endpoint, "completion_window": "24h", **extra},
    )
    assert status == 200, raw
    return dict(json.loads(raw))


def poll(fake: FakeAPI, batch_id: str) -> Dict[str, Any]:
    status, _, raw = call(fake, "GET", f"/v1/batches/{batch_id}")
    assert status == 200, raw
    return dict(json.loads(raw))


def poll_until(fake: FakeAPI, batch_id: str, done: Tuple[str, ...], limit: int = 50) -> List[Dict[str, Any]]:
    seen = []
    for _ in range(limit):
        seen.append(poll(fake, batch_id))
        if seen[-1]["status"] in done:
            return seen
    raise AssertionError(f"batch still {seen[-1]['status']} after {limit} polls")


def content_lines(fake: FakeAPI, file_id: Optional[str]) -> List[Dict[str, Any]]:
    assert file_id, "no such file"
    status, headers, raw = call(fake, "GET", f"/v1/files/{file_id}/content")
    assert status == 200 and int(headers["content-length"]) == len(raw)
    return [json.loads(line) for line in raw.splitlines()]


def error_of(raw: bytes) -> Dict[str, Any]:
    return dict(json.loads(raw)["error"])


def drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


@pytest.fixture(scope="module")
def spec_check() -> Any:
    """Validate an object against a schema of the official OpenAPI spec (skips without it).

    Nulls are dropped first: the spec types Batch/File fields such as ``output_file_id`` as plain
    strings, while the API (and the spec's own examples) send null for the unset ones."""
    if not SPEC_PATH.is_file():
        pytest.skip(f"the official OpenAPI spec is not at {SPEC_PATH}")
    osv = pytest.importorskip("openapi_schema_validator")
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    doc = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    registry = Registry().with_resource("urn:spec", DRAFT202012.create_resource(doc))

    def check(schema: str, obj: Any) -> None:
        ref = {"$ref": f"urn:spec#/components/schemas/{schema}"}
        osv.OAS31Validator(ref, registry=registry).validate(drop_nulls(obj))

    return check


@pytest.fixture(scope="module")
def openai_sdk() -> Any:
    return pytest.importorskip("openai", reason="the official SDK is a dev dependency")


@pytest.fixture
def sdk(openai_sdk: Any, fake: FakeAPI) -> Iterator[Any]:
    client = openai_sdk.OpenAI(api_key="sk-test-fakeapi", base_url=fake.base_url, max_retries=0)
    with client:
        yield client


# ======================================================================================
# JSON edits
# ======================================================================================

PNG = make_image("png", color=(10, 200, 10))
JPEG = make_image("jpeg", color=(200, 10, 10))
WEBP = make_image("webp", color=(10, 10, 200))


def json_edit(fake: FakeAPI, body: Dict[str, Any], path: str = "/v1/images/edits") -> Tuple[int, Any]:
    status, _, raw = call(fake, "POST", path, body)
    return status, json.loads(raw) if raw.startswith(b"{") else raw


def test_json_edits_answer_like_multipart_and_record_the_images(fake: FakeAPI, spec_check: Any) -> None:
    file_id = fake.add_file(WEBP, "ref.webp", purpose="user_data")
    body = {
        "model": "gpt-image-2",
        "prompt": "blend them",
        "images": [
            {"image_url": data_url(PNG)},
            {"image_url": data_url(JPEG, "image/jpeg")},
            {"file_id": file_id},
            {"image_url": "https://example.com/a.png"},
        ],
        "mask": {"image_url": data_url(make_mask())},
        "n": 2,
        "output_format": "jpeg",
        "quality": "low",
        "moderation": "low",
        "input_fidelity": "high",
        "output_compression": 50,
        "background": "opaque",
        "size": "1536x1024",
        "user": "u-1",
    }
    spec_check("EditImageBodyJsonParam", body)
    status, reply = json_edit(fake, body)
    assert status == 200, reply
    spec_check("ImagesResponse", reply)
    assert reply["output_format"] == "jpeg" and reply["quality"] == "low" and reply["size"] == "1536x1024"
    assert [decode(d["b64_json"]).format for d in reply["data"]] == ["JPEG", "JPEG"]
    rec = fake.last
    refs = rec.json_images()
    assert [(r.kind, r.format, r.media_type) for r in refs] == [
        ("data_url", "png", "image/png"),
        ("data_url", "jpeg", "image/jpeg"),
        ("file_id", "webp", None),
        ("url", None, None),
    ]
    assert [r.data for r in refs] == [PNG, JPEG, WEBP, None]
    assert refs[2].value == file_id and refs[3].value == "https://example.com/a.png"
    mask = rec.json_mask()
    assert mask is not None and mask.data == make_mask() and mask.format == "png"


def test_json_edits_stream_uses_image_edit_events(fake: FakeAPI) -> None:
    body = {"model": "gpt-image-2", "prompt": "p", "images": [{"image_url": data_url(PNG)}], "stream": True}
    status, raw = json_edit(fake, {**body, "partial_images": 2})
    assert status == 200
    assert [e["event"] for e in parse_sse(raw)] == [
        "image_edit.partial_image",
        "image_edit.partial_image",
        "image_edit.completed",
    ]
    assert fake.last.json_mask() is None


LONG_URL = "data:image/png;base64," + "A" * (20_971_520 - len("data:image/png;base64,") + 4)


@pytest.mark.parametrize(
    ("change", "status", "code", "param"),
    [
        ({"images": None}, 400, "missing_required_parameter", "images"),
        ({"prompt": None}, 400, "missing_required_parameter", "prompt"),
        ({"images": []}, 400, "empty_array", "images"),
        ({"images": [{"image_url": data_url(PNG)}] * 17}, 400, "array_above_max_length", "images"),
        ({"images": "x"}, 400, "invalid_type", "images"),
        ({"images": [{"image_url": data_url(PNG), "file_id": "file-a"}]}, 400, "invalid_value", "images[0]"),
        ({"images": [{}]}, 400, "missing_required_parameter", "images[0]"),
        (
            {"images": [{"image_url": data_url(PNG), "detail": "high"}]},
            400,
            "unknown_parameter",
            "images[0].detail",
        ),
        (
            {"images": [{"image_url": "http://example.com/a.png"}]},
            400,
            "invalid_image_url",
            "images[0].image_url",
        ),
        (
            {"images": [{"image_url": "data:image/png," + "x"}]},
            400,
            "invalid_image_url",
            "images[0].image_url",
        ),
        (
            {"images": [{"image_url": "data:image/gif;base64,R0lGOD"}]},
            400,
            "unsupported_image_media_type",
            "images[0].image_url",
        ),
        (
            {"images": [{"image_url": "data:image/png;base64,@@@"}]},
            400,
            "invalid_base64_image",
            "images[0].image_url",
        ),
        (
            {"images": [{"image_url": "data:image/png;base64," + b64(b"not an image at all")}]},
            400,
            "invalid_image_format",
            "images[0].image_url",
        ),
        ({"images": [{"image_url": LONG_URL}]}, 400, "string_above_max_length", "images[0].image_url"),
        ({"images": [{"file_id": "file-unknown"}]}, 404, None, "images[0].file_id"),
        ({"mask": {"file_id": "file-unknown"}}, 404, None, "mask.file_id"),
        (
            {"mask": {"image_url": "data:image/png;base64,AAAA"}},
            400,
            "invalid_image_format",
            "mask.image_url",
        ),
        ({"image": "x"}, 400, "unknown_parameter", "image"),
        ({"stream": "true"}, 400, "invalid_type", "stream"),
        ({"n": "2"}, 400, "invalid_type", "n"),
        ({"quality": "ultra"}, 400, "invalid_value", "quality"),
        ({"moderation": "high"}, 400, "invalid_value", "moderation"),
        ({"output_compression": 101}, 400, "invalid_value", "output_compression"),
        ({"size": "big"}, 400, "invalid_value", "size"),
        ({"output_format": "gif"}, 400, "invalid_value", "output_format"),
    ],
)
def test_json_edits_strict_rejections(
    fake: FakeAPI, change: Dict[str, Any], status: int, code: Optional[str], param: str
) -> None:
    body: Dict[str, Any] = {"model": "gpt-image-2", "prompt": "p", "images": [{"image_url": data_url(PNG)}]}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    got, reply = json_edit(fake, body)
    assert got == status, reply
    error = reply["error"]
    assert (error["code"], error["param"], error["type"]) == (code, param, "invalid_request_error")
    if status == 404:
        assert error["message"] == "No such File object: file-unknown"


def test_json_edits_file_ids_must_be_images_for_vision(fake: FakeAPI) -> None:
    batch_file = fake.add_file(b'{"a": 1}\n', "x.jsonl", purpose="batch")
    not_image = fake.add_file(b"plain text", "x.txt", purpose="user_data")
    for file_id, code in ((batch_file, "invalid_value"), (not_image, "invalid_image_format")):
        status, reply = json_edit(fake, {"prompt": "p", "images": [{"file_id": file_id}]})
        assert status == 400 and reply["error"]["code"] == code and file_id in reply["error"]["message"]
    # Lenient mode lets them through, and unknown ids are recorded as such.
    fake.strict = False
    status, _ = json_edit(fake, {"prompt": "p", "images": [{"file_id": "file-nope"}]})
    assert status == 200
    assert [(r.kind, r.value, r.data) for r in fake.last.json_images()] == [("file_id", "file-nope", None)]


def test_json_edits_with_the_sdk(sdk: Any, openai_sdk: Any, fake: FakeAPI) -> None:
    """The SDK only builds multipart edits, but its generic post() sends the JSON form and parses
    the reply (and the stream) with its own types."""
    body = {"model": "gpt-image-2", "prompt": "p", "images": [{"image_url": data_url(PNG)}], "n": 2}
    reply = sdk.post("/images/edits", body=body, cast_to=openai_sdk.types.ImagesResponse)
    assert [identify(base64.b64decode(d.b64_json)) for d in reply.data] == [("final", 0), ("final", 1)]
    assert fake.last.json == body and fake.last.json_images()[0].data == PNG
    stream = sdk.post(
        "/images/edits",
        body={**body, "n": 1, "stream": True, "partial_images": 1},
        cast_to=openai_sdk.types.ImageEditStreamEvent,
        stream=True,
        stream_cls=openai_sdk.Stream[openai_sdk.types.ImageEditStreamEvent],
    )
    assert [event.type for event in stream] == ["image_edit.partial_image", "image_edit.completed"]
    with pytest.raises(openai_sdk.BadRequestError) as info:
        sdk.post("/images/edits", body={**body, "images": []}, cast_to=openai_sdk.types.ImagesResponse)
    assert info.value.code == "empty_array" and info.value.param == "images"


def test_uploaded_images_are_usable_in_edits_and_responses(fake: FakeAPI) -> None:
    status, file_obj = upload(fake, JPEG, "photo.jpg", purpose="vision", content_type="image/jpeg")
    assert status == 200 and file_obj["purpose"] == "vision"
    status, _ = json_edit(fake, {"prompt": "p", "images": [{"file_id": file_obj["id"]}]})
    assert status == 200 and fake.last.json_images()[0].data == JPEG
    request = {
        "model": "gpt-5.4",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "edit"},
                    {"type": "input_image", "file_id": file_obj["id"], "detail": "high"},
                    {"type": "input_image", "image_url": data_url(PNG), "detail": "auto"},
                ],
            }
        ],
        "tools": [{"type": "image_generation", "input_image_mask": {"image_url": data_url(make_mask())}}],
    }
    status, _, raw = call(fake, "POST", "/v1/responses", request)
    assert status == 200, raw
    rec = fake.last
    assert [(r.kind, r.data) for r in rec.input_images()] == [("file_id", JPEG), ("data_url", PNG)]
    mask = rec.input_image_mask()
    assert mask is not None and mask.data == make_mask()
    # Unknown ids in Responses pass by default (check_file_ids); opt in to refuse them.
    request["input"][0]["content"][1]["file_id"] = "file-missing"
    assert call(fake, "POST", "/v1/responses", request)[0] == 200
    fake.check_file_ids = ("edits", "responses")
    status, _, raw = call(fake, "POST", "/v1/responses", request)
    assert status == 404 and error_of(raw)["param"] == "input[0].content[1].file_id"
    # A data URL that is no image is refused in strict mode.
    request["input"][0]["content"][1] = {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
    status, _, raw = call(fake, "POST", "/v1/responses", request)
    assert status == 400 and error_of(raw)["code"] == "invalid_image_format"


def test_image_helpers() -> None:
    assert [sniff_image(x) for x in (PNG, JPEG, WEBP, b"GIF89a")] == ["png", "jpeg", "webp", None]
    assert data_url(JPEG).startswith("data:image/jpeg;base64,")
    assert base64.b64decode(data_url(PNG).split(",", 1)[1]) == PNG


# ======================================================================================
# Files API
# ======================================================================================


def test_file_upload_retrieve_content_delete(fake: FakeAPI, spec_check: Any) -> None:
    data = jsonl([gen_line("a"), gen_line("b")])
    status, file_obj = upload(fake, data, "jobs.jsonl")
    assert status == 200, file_obj
    spec_check("OpenAIFile", file_obj)
    assert file_obj["id"].startswith("file-") and len(file_obj["id"]) == 27
    assert (file_obj["object"], file_obj["bytes"], file_obj["filename"], file_obj["purpose"]) == (
        "file",
        len(data),
        "jobs.jsonl",
        "batch",
    )
    assert file_obj["status"] == "processed"
    assert file_obj["expires_at"] - file_obj["created_at"] == 30 * 86400  # batch files expire in 30 days
    rec = fake.last
    assert rec.body == b"" and rec.body_size > len(data)  # the body went to disk, not into memory
    assert rec.upload is not None
    assert (rec.upload.fields, rec.upload.filename, rec.upload.size, rec.upload.file_id) == (
        {"purpose": "batch"},
        "jobs.jsonl",
        len(data),
        file_obj["id"],
    )
    status, _, raw = call(fake, "GET", f"/v1/files/{file_obj['id']}")
    assert status == 200 and json.loads(raw) == file_obj
    status, headers, raw = call(fake, "GET", f"/v1/files/{file_obj['id']}/content")
    assert status == 200 and raw == data and headers["content-length"] == str(len(data))
    assert fake.file_content(file_obj["id"]) == data and fake.files[file_obj["id"]] == file_obj
    status, _, raw = call(fake, "GET", "/v1/files?purpose=batch")
    assert status == 200 and [f["id"] for f in json.loads(raw)["data"]] == [file_obj["id"]]
    status, _, raw = call(fake, "DELETE", f"/v1/files/{file_obj['id']}")
    assert status == 200 and json.loads(raw) == {"id": file_obj["id"], "object": "file", "deleted": True}
    spec_check("DeleteFileResponse", json.loads(raw))
    for method, path in (("GET", ""), ("GET", "/content"), ("DELETE", "")):
        status, _, raw = call(fake, method, f"/v1/files/{file_obj['id']}{path}")
        assert status == 404 and error_of(raw)["message"] == f"No such File object: {file_obj['id']}"
    assert os.listdir(fake.tmp_dir) == []  # the upload's temporary file went with it


@pytest.mark.parametrize(
    ("purpose", "filename", "message"),
    [
        (None, "a.jsonl", "Missing required parameter: 'purpose'."),
        ("training", "a.jsonl", "Invalid value: 'training'."),
        ("batch", "a.txt", "Invalid file format for Batch API. Must be .jsonl"),
    ],
)
def test_file_upload_rejections(fake: FakeAPI, purpose: Optional[str], filename: str, message: str) -> None:
    status, reply = upload(fake, b"{}\n", filename, purpose=purpose)
    assert status == 400 and reply["error"]["message"].startswith(message)
    assert fake.files == {} and os.listdir(fake.tmp_dir) == []


def test_file_upload_needs_a_file_part_and_multipart(fake: FakeAPI) -> None:
    boundary = "bb"
    body = multipart([("purpose", None, None, b"batch")], boundary)
    status, _, raw = call(
        fake, "POST", "/v1/files", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert status == 400 and error_of(raw)["param"] == "file"
    status, _, raw = call(fake, "POST", "/v1/files", {"purpose": "batch"})
    assert status == 400 and "multipart/form-data" in error_of(raw)["message"]
    status, _, raw = call(
        fake, "POST", "/v1/files", b"--bb\r\nbroken", {"Content-Type": "multipart/form-data; boundary=bb"}
    )
    assert status == 400 and "multipart" in error_of(raw)["message"]
    fake.max_upload_bytes = 10
    status, reply = upload(fake, b"0123456789A", "a.jsonl")
    assert status == 400 and reply["error"]["code"] == "file_too_large"


def test_file_upload_is_streamed_to_disk(fake: FakeAPI, tmp_path: Path) -> None:
    """A big upload costs the fake no memory: it goes to a temporary file, and comes back from it."""
    import tracemalloc

    size = 40 * 1024 * 1024
    source = tmp_path / "big.jsonl"
    with open(source, "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(size >> 20):
            f.write(chunk)
    boundary = "big-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n'
        "Content-Type: application/jsonl\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body() -> Iterator[bytes]:
        yield head
        with open(source, "rb") as f:
            while True:
                data = f.read(1 << 20)
                if not data:
                    break
                yield data
        yield tail

    tracemalloc.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=30)
        conn.request(
            "POST",
            "/v1/files",
            body=body(),
            headers={
                **AUTH,
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(len(head) + size + len(tail)),
            },
        )
        resp = conn.getresponse()
        file_obj = json.loads(resp.read())
        assert resp.status == 200 and file_obj["bytes"] == size
        conn.request("GET", f"/v1/files/{file_obj['id']}/content", headers=AUTH)
        resp = conn.getresponse()
        assert resp.getheader("Content-Length") == str(size)
        got = 0
        with open(source, "rb") as f:
            while True:
                data = resp.read(1 << 20)
                if not data:
                    break
                assert data == f.read(len(data))
                got += len(data)
        conn.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == size
    assert peak < 12 * 1024 * 1024, f"peak {peak} bytes for a {size}-byte upload and download"


def test_files_with_the_sdk(sdk: Any, fake: FakeAPI, tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(jsonl([gen_line("x")]))
    with open(path, "rb") as f:
        created = sdk.files.create(file=f, purpose="batch")
    assert created.filename == "jobs.jsonl" and created.bytes == path.stat().st_size
    assert sdk.files.retrieve(created.id) == created
    assert sdk.files.content(created.id).read() == path.read_bytes()
    image = sdk.files.create(file=("ref.png", PNG, "image/png"), purpose="vision")
    assert [f.id for f in sdk.files.list()] == [image.id, created.id]
    assert sdk.files.delete(created.id).deleted is True
    assert fake.file_content(image.id) == PNG
    assert fake.last.upload is None  # list/delete are not uploads
    uploads = [r.upload for r in fake.requests if r.upload is not None]
    assert [(u.filename, u.content_type, u.fields) for u in uploads] == [
        ("jobs.jsonl", "application/octet-stream", {"purpose": "batch"}),
        ("ref.png", "image/png", {"purpose": "vision"}),
    ]


def test_scripted_upload_failures(fake: FakeAPI) -> None:
    """Queued behaviours keyed to the upload route hit only uploads; the body is still read (and
    dropped), and nothing is stored."""
    fake.queue(error_reply(500, "boom", type="server_error"), Reset(), route="POST /v1/files")
    assert call(fake, "POST", "/v1/images/generations", {"prompt": "x"})[0] == 200  # not consumed
    status, reply = upload(fake, b"{}\n")
    assert status == 500 and reply["error"]["message"] == "boom"
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        upload(fake, b"{}\n")
    assert fake.queued == 0 and fake.files == {}
    assert os.listdir(fake.tmp_dir) == []
    # Lost: the file is stored, the client never hears of it.
    fake.queue(Lost(), route="/v1/files")
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        upload(fake, b"{}\n", "lost.jsonl")
    assert [f["filename"] for f in fake.files.values()] == ["lost.jsonl"]
    assert fake.last.lost_reply.json["filename"] == "lost.jsonl"


# ======================================================================================
# Batch API
# ======================================================================================

BATCH_FIELDS = {
    "id",
    "object",
    "endpoint",
    "model",
    "errors",
    "input_file_id",
    "completion_window",
    "status",
    "output_file_id",
    "error_file_id",
    "created_at",
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
    "request_counts",
    "usage",
    "metadata",
}


def test_batch_lifecycle_output_and_error_files(fake: FakeAPI, spec_check: Any) -> None:
    lines = [gen_line(f"job-{i}", f"prompt {i}", output_format="jpeg" if i == 1 else "png") for i in range(6)]
    lines[3]["body"]["prompt"] = "something [[refuse]]"
    created = make_batch(fake, lines, metadata={"run": "r1"})
    spec_check("Batch", created)
    assert set(created) == BATCH_FIELDS
    assert created["id"].startswith("batch_") and created["object"] == "batch"
    assert (created["status"], created["endpoint"], created["completion_window"]) == (
        "validating",
        "/v1/images/generations",
        "24h",
    )
    assert created["expires_at"] == created["created_at"] + 86400 and created["metadata"] == {"run": "r1"}
    assert created["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    seen = poll_until(fake, created["id"], ("completed",))
    assert [b["status"] for b in seen] == ["in_progress", "finalizing", "completed"]
    done = seen[-1]
    spec_check("Batch", done)
    assert done["request_counts"] == {"total": 6, "completed": 5, "failed": 1}
    assert done["model"] == "gpt-image-2" and done["errors"] is None
    assert done["created_at"] <= done["in_progress_at"] <= done["finalizing_at"] <= done["completed_at"]
    assert done["usage"]["total_tokens"] == 5 * 1806
    assert poll(fake, created["id"]) == done  # a final status stays put

    output = content_lines(fake, done["output_file_id"])
    assert sorted(x["custom_id"] for x in output) == ["job-0", "job-1", "job-2", "job-4", "job-5"]
    assert [x["custom_id"] for x in output] != sorted(x["custom_id"] for x in output)  # shuffled
    for line in output:
        assert set(line) == {"id", "custom_id", "response", "error"} and line["error"] is None
        assert line["id"].startswith("batch_req_") and line["response"]["request_id"].startswith("req_")
        assert line["response"]["status_code"] == 200
        spec_check("ImagesResponse", line["response"]["body"])
        image = base64.b64decode(line["response"]["body"]["data"][0]["b64_json"])
        assert sniff_image(image) == ("jpeg" if line["custom_id"] == "job-1" else "png")
        assert identify(image) == ("final", 0)
    errors = content_lines(fake, done["error_file_id"])
    assert [(x["custom_id"], x["response"]["status_code"], x["error"]) for x in errors] == [
        ("job-3", 400, None)
    ]
    assert errors[0]["response"]["body"]["error"]["code"] == "moderation_blocked"
    for key, suffix in (("output_file_id", "output"), ("error_file_id", "error")):
        file_obj = fake.file(done[key])
        assert file_obj is not None
        spec_check("OpenAIFile", file_obj)
        assert (file_obj["purpose"], file_obj["filename"]) == ("batch_output", f"{done['id']}_{suffix}.jsonl")
    # The lines ran through the route defaults but were no HTTP requests.
    assert [r.path for r in fake.requests].count("/v1/images/generations") == 0
    assert fake.sent_images == []


def test_batch_output_order_is_seeded(tmp_path: Path) -> None:
    def order(seed: int, shuffle: bool = True) -> List[str]:
        with FakeAPI(seed=seed) as api:
            api.batch_plan = BatchPlan(shuffle=shuffle)
            batch = make_batch(api, [gen_line(f"j{i}") for i in range(12)])
            api.advance_batch(batch["id"], 3)
            return [x["custom_id"] for x in content_lines(api, api.batch(batch["id"])["output_file_id"])]

    first = order(7)
    assert first == order(7) and sorted(first) == sorted(order(8)) and first != order(8)
    assert order(7, shuffle=False) == [f"j{i}" for i in range(12)]


def test_batch_failed_lines_can_go_to_the_output_file(fake: FakeAPI) -> None:
    fake.batch_plan = BatchPlan(failures_in="output", shuffle=False)
    batch = make_batch(fake, [gen_line("ok"), gen_line("bad", "[[status:503]]")])
    done = poll_until(fake, batch["id"], ("completed",))[-1]
    assert done["error_file_id"] is None and done["request_counts"]["failed"] == 1
    output = content_lines(fake, done["output_file_id"])
    assert [(x["custom_id"], x["response"]["status_code"]) for x in output] == [("ok", 200), ("bad", 503)]
    assert output[1]["response"]["body"]["error"]["type"] == "server_error"


def test_batch_edits_and_responses_lines(fake: FakeAPI) -> None:
    file_id = fake.add_file(PNG, "ref.png", purpose="vision")
    edits = [
        gen_line("e1", url="/v1/images/edits", images=[{"image_url": data_url(JPEG)}], n=2),
        gen_line(
            "e2", url="/v1/images/edits", images=[{"file_id": file_id}], mask={"image_url": data_url(PNG)}
        ),
        gen_line("e3", url="/v1/images/edits", images=[{"file_id": "file-missing"}]),
        gen_line("e4", url="/v1/images/edits", images=[{"image_url": data_url(PNG)}], stream=True),
    ]
    batch = make_batch(fake, edits, endpoint="/v1/images/edits")
    done = fake.advance_batch(batch["id"], 3)
    assert done["status"] == "completed" and done["request_counts"] == {
        "total": 4,
        "completed": 2,
        "failed": 2,
    }
    output = {x["custom_id"]: x for x in content_lines(fake, done["output_file_id"])}
    assert len(output["e1"]["response"]["body"]["data"]) == 2 and set(output) == {"e1", "e2"}
    errors = {x["custom_id"]: x["response"] for x in content_lines(fake, done["error_file_id"])}
    assert errors["e3"]["status_code"] == 404 and errors["e4"]["body"]["error"]["param"] == "stream"

    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/responses",
            "body": {
                "model": "gpt-5.4",
                "input": f"a fox {i}",
                "tools": [{"type": "image_generation", "model": "gpt-image-2", "output_format": "webp"}],
            },
        }
        for i in range(2)
    ]
    batch = make_batch(fake, lines, endpoint="/v1/responses")
    done = fake.advance_batch(batch["id"], 3)
    output = {x["custom_id"]: x["response"]["body"] for x in content_lines(fake, done["output_file_id"])}
    assert output["r1"]["object"] == "response" and output["r1"]["status"] == "completed"
    call_item = output["r1"]["output"][0]
    assert (
        call_item["revised_prompt"] == "Revised: a fox 1"
        and sniff_image(base64.b64decode(call_item["result"])) == "webp"
    )
    assert done["model"] == "gpt-5.4" and done["usage"]["total_tokens"] == 2 * 1920


def test_batch_counts_fill_in_step_by_step(fake: FakeAPI) -> None:
    fake.queue_batch(BatchPlan(polls_per_step=2, lines_per_step=2))
    batch = make_batch(fake, [gen_line(f"j{i}") for i in range(5)])
    seen = [
        (b["status"], b["request_counts"]["completed"]) for b in poll_until(fake, batch["id"], ("completed",))
    ]
    assert seen == [
        ("validating", 0),
        ("in_progress", 0),
        ("in_progress", 0),
        ("in_progress", 2),
        ("in_progress", 2),
        ("in_progress", 4),
        ("in_progress", 4),
        ("finalizing", 5),
        ("finalizing", 5),
        ("completed", 5),
    ]
    # The queued plan was for that batch only.
    other = make_batch(fake, [gen_line("x")])
    assert [b["status"] for b in poll_until(fake, other["id"], ("completed",))] == [
        "in_progress",
        "finalizing",
        "completed",
    ]


@pytest.mark.parametrize(
    ("lines", "code", "line", "param"),
    [
        (["{not json"], "invalid_json_line", 1, None),
        ([gen_line("a"), "[1, 2]"], "invalid_json_line", 2, None),
        ([gen_line("a"), ""], "invalid_json_line", 2, None),
        ([gen_line("a"), gen_line("a")], "duplicate_custom_id", 2, "custom_id"),
        ([gen_line("a"), gen_line("b", url="/v1/images/edits")], "url_mismatch", 2, "url"),
        ([{**gen_line("a"), "method": "GET"}], "invalid_value", 1, "method"),
        ([{k: v for k, v in gen_line("a").items() if k != "body"}], "missing_required_parameter", 1, "body"),
        (
            [{k: v for k, v in gen_line("a").items() if k != "custom_id"}],
            "missing_required_parameter",
            1,
            "custom_id",
        ),
        ([gen_line("a"), gen_line("b", model="gpt-image-1.5")], "model_mismatch", 2, "body.model"),
    ],
)
def test_batch_input_validation_fails_the_batch(
    fake: FakeAPI, spec_check: Any, lines: List[Any], code: str, line: int, param: Optional[str]
) -> None:
    batch = make_batch(fake, lines)
    failed = poll(fake, batch["id"])
    spec_check("Batch", failed)
    assert failed["status"] == "failed" and failed["failed_at"] >= failed["created_at"]
    assert failed["output_file_id"] is None and failed["error_file_id"] is None
    assert failed["errors"]["object"] == "list"
    [error] = failed["errors"]["data"]
    assert (error["code"], error["line"], error["param"]) == (code, line, param) and error["message"]
    assert poll(fake, batch["id"])["status"] == "failed"


def test_batch_limits_fail_the_batch(fake: FakeAPI) -> None:
    fake.batch_max_lines = 3
    batch = make_batch(fake, [gen_line(f"j{i}") for i in range(4)])
    assert [e["code"] for e in poll(fake, batch["id"])["errors"]["data"]] == ["too_many_tasks"]
    fake.batch_max_lines, fake.batch_max_bytes = 50_000, 100
    batch = make_batch(fake, [gen_line(f"j{i}") for i in range(4)])
    assert [e["code"] for e in poll(fake, batch["id"])["errors"]["data"]] == ["file_too_large"]
    status, empty = upload(fake, b"", "empty.jsonl")
    assert status == 200 and empty["bytes"] == 0
    _, _, raw = call(
        fake,
        "POST",
        "/v1/batches",
        {"input_file_id": empty["id"], "endpoint": "/v1/images/generations", "completion_window": "24h"},
    )
    assert [e["code"] for e in poll(fake, json.loads(raw)["id"])["errors"]["data"]] == ["empty_file"]


@pytest.mark.parametrize(
    ("change", "status", "param"),
    [
        ({"input_file_id": None}, 400, "input_file_id"),
        ({"endpoint": None}, 400, "endpoint"),
        ({"completion_window": None}, 400, "completion_window"),
        ({"endpoint": "/v1/images/variations"}, 400, "endpoint"),
        ({"completion_window": "48h"}, 400, "completion_window"),
        ({"input_file_id": "file-nope"}, 404, "input_file_id"),
        ({"metadata": {"k": 1}}, 400, "metadata"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, 400, "metadata"),
        (
            {"output_expires_after": {"anchor": "created_at", "seconds": 60}},
            400,
            "output_expires_after.seconds",
        ),
        ({"output_expires_after": {"anchor": "now", "seconds": 3600}}, 400, "output_expires_after.anchor"),
        ({"priority": "high"}, 400, "priority"),
    ],
)
def test_batch_create_rejections(fake: FakeAPI, change: Dict[str, Any], status: int, param: str) -> None:
    _, file_obj = upload(fake, jsonl([gen_line("a")]))
    body = {"input_file_id": file_obj["id"], "endpoint": "/v1/images/generations", "completion_window": "24h"}
    body = {k: v for k, v in {**body, **change}.items() if v is not None}
    got, _, raw = call(fake, "POST", "/v1/batches", body)
    assert got == status and error_of(raw)["param"] == param
    assert fake.batches == []


def test_batch_input_must_have_purpose_batch(fake: FakeAPI) -> None:
    file_id = fake.add_file(jsonl([gen_line("a")]), "a.jsonl", purpose="user_data")
    body = {"input_file_id": file_id, "endpoint": "/v1/images/generations", "completion_window": "24h"}
    status, _, raw = call(fake, "POST", "/v1/batches", body)
    assert status == 400 and "purpose 'batch'" in error_of(raw)["message"]


def test_batch_output_expiry_follows_output_expires_after(fake: FakeAPI) -> None:
    batch = make_batch(fake, [gen_line("a")], output_expires_after={"anchor": "created_at", "seconds": 7200})
    done = fake.advance_batch(batch["id"], 3)
    file_obj = fake.file(done["output_file_id"])
    assert file_obj is not None and file_obj["expires_at"] - file_obj["created_at"] == 7200


def test_batch_list_newest_first_with_cursor(fake: FakeAPI, spec_check: Any) -> None:
    ids = [make_batch(fake, [gen_line("a")], metadata={"n": str(i)})["id"] for i in range(5)]
    status, _, raw = call(fake, "GET", "/v1/batches?limit=2")
    page = json.loads(raw)
    spec_check("ListBatchesResponse", page)
    assert status == 200 and page["object"] == "list" and page["has_more"] is True
    assert (
        [b["id"] for b in page["data"]] == ids[::-1][:2]
        and page["first_id"] == ids[4]
        and page["last_id"] == ids[3]
    )
    page = json.loads(call(fake, "GET", f"/v1/batches?limit=2&after={ids[3]}")[2])
    assert [b["id"] for b in page["data"]] == [ids[2], ids[1]] and page["has_more"] is True
    page = json.loads(call(fake, "GET", f"/v1/batches?after={ids[1]}")[2])
    assert [b["id"] for b in page["data"]] == [ids[0]] and page["has_more"] is False
    assert [b["id"] for b in fake.batches] == ids[::-1]
    for query in ("limit=0", "limit=101", "limit=x"):
        assert call(fake, "GET", f"/v1/batches?{query}")[0] == 400
    status, _, raw = call(fake, "GET", "/v1/batches/batch_nope")
    assert status == 404 and "batch_nope" in error_of(raw)["message"]


def test_batch_cancel_keeps_what_finished(fake: FakeAPI) -> None:
    fake.batch_plan = BatchPlan(lines_per_step=2)
    batch = make_batch(fake, [gen_line(f"j{i}") for i in range(5)])
    assert [poll(fake, batch["id"])["request_counts"]["completed"] for _ in range(2)] == [0, 2]
    status, _, raw = call(fake, "POST", f"/v1/batches/{batch['id']}/cancel")
    cancelling = json.loads(raw)
    assert status == 200 and cancelling["status"] == "cancelling" and cancelling["cancelling_at"]
    assert json.loads(call(fake, "POST", f"/v1/batches/{batch['id']}/cancel")[2])["status"] == "cancelling"
    done = poll(fake, batch["id"])
    assert done["status"] == "cancelled" and done["cancelled_at"] >= done["cancelling_at"]
    assert done["request_counts"] == {"total": 5, "completed": 2, "failed": 0}
    finished = {x["custom_id"] for x in content_lines(fake, done["output_file_id"])}
    errors = content_lines(fake, done["error_file_id"])
    assert len(finished) == 2 and {x["custom_id"] for x in errors} == {f"j{i}" for i in range(5)} - finished
    for line in errors:
        assert line["response"] is None and line["error"]["code"] == "batch_cancelled"
    status, _, raw = call(fake, "POST", f"/v1/batches/{batch['id']}/cancel")
    assert status == 409 and "cancelled" in error_of(raw)["message"]


def test_batch_cancel_while_validating_makes_no_files(fake: FakeAPI) -> None:
    batch = make_batch(fake, [gen_line("a")])
    assert json.loads(call(fake, "POST", f"/v1/batches/{batch['id']}/cancel")[2])["status"] == "cancelling"
    done = poll(fake, batch["id"])
    assert done["status"] == "cancelled" and done["output_file_id"] is None and done["error_file_id"] is None


def test_batch_expiry_after_k_lines(fake: FakeAPI) -> None:
    fake.queue_batch(BatchPlan(expire_after=3))
    batch = make_batch(fake, [gen_line(f"j{i}") for i in range(7)])
    seen = poll_until(fake, batch["id"], ("expired",))
    assert [b["status"] for b in seen] == ["in_progress", "expired"]
    done = seen[-1]
    assert done["expired_at"] and done["request_counts"] == {"total": 7, "completed": 3, "failed": 0}
    finished = {x["custom_id"] for x in content_lines(fake, done["output_file_id"])}
    expired = content_lines(fake, done["error_file_id"])
    assert len(finished) == 3 and len(expired) == 4 and not finished & {x["custom_id"] for x in expired}
    assert {(x["response"], x["error"]["code"]) for x in expired} == {(None, "batch_expired")}
    assert all(x["id"].startswith("batch_req_") and x["error"]["message"] for x in expired)


def test_batch_faults_keyed_to_routes(fake: FakeAPI) -> None:
    fake.queue(error_reply(503, "busy", type="server_error"), route="POST /v1/batches")
    fake.queue(Reset(), route="GET /v1/batches/*")
    _, file_obj = upload(fake, jsonl([gen_line("a"), gen_line("b")]))
    body = {"input_file_id": file_obj["id"], "endpoint": "/v1/images/generations", "completion_window": "24h"}
    status, _, raw = call(fake, "POST", "/v1/batches", body)
    assert status == 503 and error_of(raw)["message"] == "busy" and fake.batches == []
    batch = json.loads(call(fake, "POST", "/v1/batches", body)[2])
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        poll(fake, batch["id"])
    assert poll(fake, batch["id"])["status"] == "in_progress"  # the reset poll advanced nothing
    assert fake.queued == 0


def test_batch_create_whose_answer_is_lost_is_found_by_metadata(
    fake: FakeAPI, sdk: Any, openai_sdk: Any
) -> None:
    _, file_obj = upload(fake, jsonl([gen_line("a")]))
    make_batch(fake, [gen_line("other")], metadata={"run": "older"})
    fake.queue(Lost(), route="POST /v1/batches")
    with pytest.raises(openai_sdk.APIConnectionError):
        sdk.batches.create(
            input_file_id=file_obj["id"],
            endpoint="/v1/images/generations",
            completion_window="24h",
            metadata={"run": "mine"},
        )
    found = [b for b in sdk.batches.list(limit=1) if (b.metadata or {}).get("run") == "mine"]
    assert len(found) == 1
    lost = [r for r in fake.requests if r.path == "/v1/batches" and r.method == "POST"][-1]
    assert [b.id for b in found] == [lost.lost_reply.json["id"]]
    # Lost(after_bytes=N): the headers and a part of the body arrive, then a reset.
    fake.queue(Lost(after_bytes=20), route="POST /v1/batches")
    with pytest.raises(openai_sdk.APIConnectionError):
        sdk.batches.create(
            input_file_id=file_obj["id"], endpoint="/v1/images/generations", completion_window="24h"
        )
    assert len(fake.batches) == 3


def test_batch_truncated_and_reset_output_files(fake: FakeAPI) -> None:
    fake.queue_batch(
        BatchPlan(truncate_output_at=150),
        BatchPlan(reset_output_after=100),
        BatchPlan(unknown_custom_id=True),
    )
    results = []
    for _ in range(3):
        batch = make_batch(fake, [gen_line(f"j{i}") for i in range(3)])
        results.append(fake.advance_batch(batch["id"], 3))
    # Truncated: a well-formed reply whose content stops mid-line.
    file_obj = fake.file(results[0]["output_file_id"])
    assert file_obj is not None and file_obj["bytes"] > 150
    status, headers, raw = call(fake, "GET", f"/v1/files/{file_obj['id']}/content")
    assert status == 200 and headers["content-length"] == "150" and len(raw) == 150
    assert raw == fake.file_content(file_obj["id"])[:150] and not raw.endswith(b"\n")
    # Reset: the full length is announced, 100 bytes come, then the connection breaks.
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    conn.request("GET", f"/v1/files/{results[1]['output_file_id']}/content", headers=AUTH)
    resp = conn.getresponse()
    assert resp.getheader("Content-Length") == str(fake.file(results[1]["output_file_id"])["bytes"])
    with pytest.raises((ConnectionResetError, http.client.IncompleteRead)):
        resp.read()
    conn.close()
    # An extra line with a custom_id the input never had; the counts are unchanged.
    output = content_lines(fake, results[2]["output_file_id"])
    strangers = [x for x in output if x["custom_id"] not in ("j0", "j1", "j2")]
    assert len(output) == 4 and len(strangers) == 1 and strangers[0]["response"]["status_code"] == 200
    assert results[2]["request_counts"] == {"total": 3, "completed": 3, "failed": 0}


def test_batch_with_the_sdk(sdk: Any, fake: FakeAPI) -> None:
    fake.batch_plan = BatchPlan(shuffle=False)
    data = jsonl([gen_line("a"), gen_line("b", "[[refuse]]")])
    input_file = sdk.files.create(file=("jobs.jsonl", data), purpose="batch")
    batch = sdk.batches.create(
        input_file_id=input_file.id,
        endpoint="/v1/images/generations",
        completion_window="24h",
        metadata={"run": "sdk"},
        output_expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert batch.status == "validating" and batch.metadata == {"run": "sdk"}
    statuses = []
    for _ in range(10):
        batch = sdk.batches.retrieve(batch.id)
        statuses.append(batch.status)
        if batch.status == "completed":
            break
    assert statuses == ["in_progress", "finalizing", "completed"]
    assert batch.request_counts is not None and batch.request_counts.completed == 1
    assert batch.usage is not None and batch.usage.total_tokens == 1806
    output = sdk.files.content(batch.output_file_id).text.splitlines()
    errors = sdk.files.content(batch.error_file_id).text.splitlines()
    assert [json.loads(x)["custom_id"] for x in output] == ["a"] and [
        json.loads(x)["custom_id"] for x in errors
    ] == ["b"]
    other = sdk.batches.create(
        input_file_id=input_file.id, endpoint="/v1/images/generations", completion_window="24h"
    )
    assert [b.id for b in sdk.batches.list(limit=1)] == [other.id, batch.id]  # the SDK follows the cursor
    cancelled = sdk.batches.cancel(other.id)
    assert cancelled.status == "cancelling" and sdk.batches.retrieve(other.id).status == "cancelled"


@pytest.mark.slow
def test_batch_of_large_images_is_streamed() -> None:
    """200 lines of ~1 MB images: about 270 MB of JSONL, generated as it is sent, with a known
    length; the fake holds one copy of the image, not the file."""
    import tracemalloc

    count, image_bytes = 200, 1_000_000
    noise_image("png", image_bytes)  # built once, before measuring
    with FakeAPI(image_bytes=image_bytes) as api:
        batch = make_batch(api, [gen_line(f"j{i}") for i in range(count)])
        tracemalloc.start()
        try:
            done = api.advance_batch(batch["id"], 3)
            file_obj = api.file(done["output_file_id"])
            assert file_obj is not None
            conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=60)
            conn.request("GET", f"/v1/files/{file_obj['id']}/content", headers=AUTH)
            resp = conn.getresponse()
            assert (
                int(resp.getheader("Content-Length") or 0) == file_obj["bytes"] > count * image_bytes * 4 // 3
            )
            got, lines, pending = 0, 0, b""
            while True:
                data = resp.read(1 << 20)
                if not data:
                    break
                got += len(data)
                pending += data
                *whole, pending = pending.split(b"\n")
                for line in whole:
                    parsed = json.loads(line)
                    image = base64.b64decode(parsed["response"]["body"]["data"][0]["b64_json"])
                    assert len(image) == len(noise_image("png", image_bytes))
                    lines += 1
            conn.close()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert got == file_obj["bytes"] and lines == count and pending == b""
    assert peak < 60 * 1024 * 1024, f"peak {peak} bytes for {got} bytes of JSONL"


# ======================================================================================
# Azure OpenAI paths
# ======================================================================================

API_VERSION = "2025-04-01-preview"


@pytest.fixture
def azure(openai_sdk: Any, fake: FakeAPI) -> Iterator[Any]:
    """The SDK's AzureOpenAI client on the fake's classic surface."""
    client = openai_sdk.AzureOpenAI(
        api_key="azure-test-key", azure_endpoint=fake.azure_url, api_version=API_VERSION, max_retries=0
    )
    with client:
        yield client


def test_azure_classic_images_with_the_sdk(azure: Any, openai_sdk: Any, fake: FakeAPI) -> None:
    reply = azure.images.generate(model="gpt-image-2", prompt="a fox", n=2, output_format="jpeg")
    rec = fake.last
    assert (
        rec.path == "/openai/deployments/gpt-image-2/images/generations"
        and rec.query == f"api-version={API_VERSION}"
    )
    assert (rec.route, rec.surface, rec.deployment, rec.api_version) == (
        "/v1/images/generations",
        "azure-classic",
        "gpt-image-2",
        API_VERSION,
    )
    assert rec.header("api-key") == "azure-test-key" and rec.header("authorization") is None
    assert (
        reply.quality == "high"
        and [sniff_image(base64.b64decode(d.b64_json)) for d in reply.data] == ["jpeg"] * 2
    )
    edited = azure.images.edit(
        model="gpt-image-2", prompt="edit", image=[("a.png", PNG, "image/png"), ("b.png", PNG, "image/png")]
    )
    assert (
        fake.last.path == "/openai/deployments/gpt-image-2/images/edits"
        and len(fake.last.files("image[]")) == 2
    )
    assert len(edited.data) == 1
    with pytest.raises(openai_sdk.NotFoundError) as info:
        azure.images.generate(model="no-such-deployment", prompt="x")
    assert info.value.code == "DeploymentNotFound" and info.value.body["code"] == "DeploymentNotFound"
    with pytest.raises(openai_sdk.BadRequestError) as bad:
        azure.images.generate(model="gpt-image-2", prompt="x", output_format="webp")
    assert bad.value.param == "output_format"
    with pytest.raises(openai_sdk.BadRequestError) as filtered:
        azure.images.generate(model="gpt-image-2", prompt="something [[filter]]")
    assert filtered.value.code == "contentFilter"
    inner = filtered.value.body["innererror"]
    assert (
        inner["code"] == "ResponsibleAIPolicyViolation"
        and inner["content_filter_result"]["violence"]["filtered"]
    )


def test_azure_classic_responses_files_and_batches_with_the_sdk(azure: Any, fake: FakeAPI) -> None:
    response = azure.responses.create(
        model="gpt-5.4",
        input="a fox",
        tools=[{"type": "image_generation", "model": "gpt-image-2"}],
        extra_headers={"x-ms-oai-image-generation-deployment": "gpt-image-2"},
    )
    rec = fake.last
    assert rec.path == "/openai/responses" and rec.api_version == API_VERSION and rec.deployment == "gpt-5.4"
    assert rec.header("x-ms-oai-image-generation-deployment") == "gpt-image-2"
    assert response.output[0].type == "image_generation_call" and response.model == "gpt-5.4"
    input_file = azure.files.create(file=("jobs.jsonl", jsonl([gen_line("a")])), purpose="batch")
    assert fake.last.path == "/openai/files" and fake.last.upload is not None
    batch = azure.batches.create(
        input_file_id=input_file.id, endpoint="/v1/images/generations", completion_window="24h"
    )
    assert fake.last.path == "/openai/batches" and azure.batches.retrieve(batch.id).status == "in_progress"


def test_azure_v1_surface(fake: FakeAPI) -> None:
    body = {"model": "gpt-image-2", "prompt": "a fox"}
    status, _, raw = call(fake, "POST", "/openai/v1/images/generations", body, AZURE_KEY)
    assert status == 200 and json.loads(raw)["quality"] == "high"
    rec = fake.last
    assert (rec.route, rec.surface, rec.deployment, rec.api_version) == (
        "/v1/images/generations",
        "azure-v1",
        "gpt-image-2",
        None,
    )
    # JSON and multipart edits, Responses, on v1; an api-version there is accepted and recorded.
    edit = {"model": "gpt-image-2", "prompt": "p", "images": [{"image_url": data_url(PNG)}]}
    assert call(fake, "POST", "/openai/v1/images/edits?api-version=preview", edit, AZURE_KEY)[0] == 200
    assert fake.last.api_version == "preview" and fake.last.json_images()[0].data == PNG
    form = multipart(
        [
            ("model", None, None, b"gpt-image-2"),
            ("prompt", None, None, b"p"),
            ("image", "a.png", "image/png", PNG),
        ],
        "bb",
    )
    headers = {**AZURE_KEY, "Content-Type": "multipart/form-data; boundary=bb"}
    assert call(fake, "POST", "/openai/v1/images/edits", form, headers)[0] == 200
    status, _, raw = call(
        fake, "POST", "/openai/v1/responses", {"model": "gpt-5.4", "input": "hi"}, AZURE_KEY
    )
    assert status == 200 and json.loads(raw)["object"] == "response"
    # Deployments are configurable; unknown ones are Azure's 404.
    fake.azure_deployments["images-prod"] = "gpt-image-2"
    assert (
        call(fake, "POST", "/openai/v1/images/generations", {**body, "model": "images-prod"}, AZURE_KEY)[0]
        == 200
    )
    status, _, raw = call(fake, "POST", "/openai/v1/images/generations", {**body, "model": "nope"}, AZURE_KEY)
    assert status == 404 and json.loads(raw) == {
        "error": {
            "code": "DeploymentNotFound",
            "message": "The API deployment for this resource does not exist. If you created the deployment within "
            "the last 5 minutes, please wait a moment and try again.",
        }
    }
    status, _, raw = call(fake, "POST", "/openai/v1/images/generations", {"prompt": "x"}, AZURE_KEY)
    assert status == 400 and error_of(raw)["param"] == "model"
    # The image tool's deployment header must name a deployment too; webp is refused in the tool as well.
    tool = {
        "model": "gpt-5.4",
        "input": "x",
        "tools": [{"type": "image_generation", "output_format": "webp"}],
    }
    status, _, raw = call(fake, "POST", "/openai/v1/responses", tool, AZURE_KEY)
    assert status == 400 and error_of(raw)["param"] == "tools[0].output_format"
    headers = {**AZURE_KEY, "x-ms-oai-image-generation-deployment": "nope"}
    assert call(fake, "POST", "/openai/v1/responses", {"model": "gpt-5.4", "input": "x"}, headers)[0] == 404


def test_azure_auth_and_api_version(fake: FakeAPI) -> None:
    body = {"model": "gpt-image-2", "prompt": "x"}
    classic = f"/openai/deployments/gpt-image-2/images/generations?api-version={API_VERSION}"
    for path in ("/openai/v1/images/generations", classic):
        status, _, raw = call(fake, "POST", path, body, AUTH)  # an OpenAI-style Bearer key only
        assert status == 401 and json.loads(raw) == {
            "error": {
                "code": "401",
                "message": "Access denied due to missing subscription key. Make sure to include subscription key "
                "when making requests to an API.",
            }
        }
        assert fake.last.header("authorization") == AUTH["Authorization"]
    fake.azure_bearer_ok = True
    assert call(fake, "POST", "/openai/v1/images/generations", body, AUTH)[0] == 200
    fake.azure_api_key = "right-key"
    status, _, raw = call(fake, "POST", classic, body, {"api-key": "wrong-key"})
    assert status == 401 and "invalid subscription key" in error_of(raw)["message"]
    assert call(fake, "POST", classic, body, {"api-key": "right-key"})[0] == 200
    # Classic URLs need api-version in the query.
    status, _, raw = call(
        fake, "POST", "/openai/deployments/gpt-image-2/images/generations", body, {"api-key": "right-key"}
    )
    assert status == 400 and json.loads(raw) == {
        "error": {"code": "BadRequest", "message": "Missing required query parameter: api-version"}
    }
    status, _, raw = call(
        fake, "POST", "/openai/responses?x=1", {"model": "gpt-5.4", "input": "x"}, {"api-key": "right-key"}
    )
    assert status == 400
    # The OpenAI paths still want a Bearer key, not api-key.
    status, _, _ = call(fake, "POST", "/v1/images/generations", body, {"api-key": "right-key"}, auth=False)
    assert status == 401
    # Paths Azure does not have.
    for path in (
        "/openai/deployments/gpt-image-2/images/variations",
        "/openai/images/generations",
        "/openai/v1/nope",
    ):
        status, _, raw = call(fake, "POST", path, body, {"api-key": "right-key"})
        assert status == 404 and json.loads(raw) == {
            "error": {"code": "404", "message": "Resource not found"}
        }


def test_azure_classic_unknown_deployment_and_markers(fake: FakeAPI) -> None:
    path = f"/openai/deployments/dall-e-9/images/generations?api-version={API_VERSION}"
    status, _, raw = call(fake, "POST", path, {"prompt": "x"}, AZURE_KEY)
    assert status == 404 and error_of(raw)["code"] == "DeploymentNotFound"
    path = f"/openai/deployments/gpt-image-2/images/generations?api-version={API_VERSION}"
    status, _, raw = call(fake, "POST", path, {"prompt": "bad [[refuse]]"}, AZURE_KEY)
    assert status == 400 and error_of(raw)["code"] == "contentFilter"
    status, _, raw = call(fake, "POST", "/v1/images/generations", {"prompt": "bad [[filter]]"})
    assert status == 400 and error_of(raw)["code"] == "moderation_blocked"


# ======================================================================================
# Load simulation: latency, rate limits, quota, markers, counters
# ======================================================================================


def gen(fake: FakeAPI, prompt: str = "x", **body: Any) -> Tuple[int, Dict[str, str], bytes]:
    return call(fake, "POST", "/v1/images/generations", {"model": "gpt-image-2", "prompt": prompt, **body})


def test_latency_is_concurrent_and_peak_is_counted(fake: FakeAPI) -> None:
    def parallel(count: int) -> List[int]:
        results: List[int] = []
        threads = [
            threading.Thread(target=lambda i=i: results.append(gen(fake, f"p{i}")[0])) for i in range(count)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=15)
        return results

    # Eight handlers inside their latency at once: only a concurrent server gets past the barrier.
    barrier = threading.Barrier(8, timeout=10)
    fake.latency = lambda rec: barrier.wait() * 0
    assert parallel(8) == [200] * 8
    fake.wait_idle()
    assert fake.peak_concurrency == 8 and fake.in_flight == 0
    assert fake.requests_per_prompt == {f"p{i}": 1 for i in range(8)}
    assert fake.successes_per_prompt == fake.requests_per_prompt
    # A plain number: six 0.5 s requests take about 0.5 s together, not 3 s.
    fake.latency = 0.5
    start = time.monotonic()
    assert parallel(6) == [200] * 6
    assert 0.5 <= time.monotonic() - start < 2.5
    # Only the image routes wait; a callable picks the latency per request.
    start = time.monotonic()
    assert call(fake, "GET", "/v1/batches")[0] == 200
    assert time.monotonic() - start < 0.3
    fake.latency = lambda rec: 0.3 if rec.prompt == "slow" else 0.0
    start = time.monotonic()
    gen(fake, "fast")
    assert time.monotonic() - start < 0.25
    gen(fake, "slow")
    assert time.monotonic() - start >= 0.3
    fake.wait_idle()
    fake.reset_counters()
    assert fake.peak_concurrency == 0 and not fake.requests_per_prompt


def test_rate_limit_headers_and_429(fake: FakeAPI) -> None:
    now = [100.0]
    fake.rate_limit = RateLimit(requests=3, window=0.6, clock=lambda: now[0])
    fake.queue(Reply(json={"scripted": True}))
    answers = []
    for _ in range(3):
        answers.append(gen(fake))
        now[0] += 0.1
    assert [a[0] for a in answers] == [200, 200, 200]
    assert json.loads(answers[0][2]) == {"scripted": True}  # admitted requests consume the queue as usual
    assert [a[1]["x-ratelimit-limit-requests"] for a in answers] == ["3"] * 3
    assert [a[1]["x-ratelimit-remaining-requests"] for a in answers] == ["2", "1", "0"]
    assert [a[1]["x-ratelimit-reset-requests"] for a in answers] == ["600ms", "500ms", "400ms"]
    fake.queue(Reply(json={"scripted": 2}))
    status, headers, raw = gen(fake)
    assert status == 429 and fake.queued == 1  # a refused request takes nothing from the queue
    error = error_of(raw)
    assert (error["code"], error["type"]) == ("rate_limit_exceeded", "requests")
    assert error["message"].startswith("Rate limit reached for gpt-image-2 ")
    assert "Limit 3, Used 3, Requested 1. Please try again in 300ms." in error["message"]
    assert (headers["retry-after"], headers["retry-after-ms"]) == ("1", "300")
    assert headers["x-ratelimit-remaining-requests"] == "0"
    now[0] += 0.31  # the window is over
    status, headers, raw = gen(fake)
    assert (
        status == 200
        and json.loads(raw) == {"scripted": 2}
        and headers["x-ratelimit-remaining-requests"] == "2"
    )
    assert fake.requests_per_prompt["x"] == 5 and fake.successes_per_prompt["x"] == 4
    # Other routes are not limited.
    assert all(call(fake, "GET", "/v1/batches")[0] == 200 for _ in range(5))


@pytest.mark.parametrize(
    ("options", "present", "absent"),
    [
        ({"retry_after": False}, ["retry-after-ms"], ["retry-after"]),
        ({"retry_after_ms": False}, ["retry-after"], ["retry-after-ms"]),
        (
            {"retry_after": False, "retry_after_ms": False, "headers": False},
            [],
            ["retry-after", "retry-after-ms", "x-ratelimit-limit-requests"],
        ),
    ],
)
def test_rate_limit_delay_forms(
    fake: FakeAPI, options: Dict[str, Any], present: List[str], absent: List[str]
) -> None:
    fake.rate_limit = RateLimit(requests=1, window=30, **options)
    assert gen(fake)[0] == 200
    status, headers, raw = gen(fake)
    assert status == 429
    assert all(h in headers for h in present) and not any(h in headers for h in absent)
    assert re.search(r"Please try again in (\d+(\.\d+)?s)\.", error_of(raw)["message"])  # about 30 s
    fake.rate_limit = RateLimit(requests=0, window=30, in_message=False)
    assert "try again" not in error_of(gen(fake)[2])["message"]


def test_the_sdk_waits_out_the_rate_limit(sdk: Any, openai_sdk: Any, fake: FakeAPI) -> None:
    fake.rate_limit = RateLimit(requests=1, window=1.0, retry_after=False)
    client = sdk.with_options(max_retries=3)
    start = time.monotonic()
    assert len(client.images.generate(model="gpt-image-2", prompt="a").data) == 1
    assert (
        len(client.images.generate(model="gpt-image-2", prompt="a").data) == 1
    )  # retried after retry-after-ms
    assert time.monotonic() - start < 3
    assert [r.behaviour.status for r in fake.requests][:2] == [200, 429]
    with pytest.raises(openai_sdk.RateLimitError) as info:
        sdk.images.generate(model="gpt-image-2", prompt="a")
    assert info.value.code == "rate_limit_exceeded"


def test_insufficient_quota(sdk: Any, openai_sdk: Any, fake: FakeAPI) -> None:
    fake.insufficient_quota = True
    status, headers, raw = gen(fake)
    assert status == 429 and "retry-after" not in headers and "retry-after-ms" not in headers
    assert error_of(raw)["code"] == "insufficient_quota" and error_of(raw)["type"] == "insufficient_quota"
    with pytest.raises(openai_sdk.RateLimitError) as info:
        sdk.images.generate(model="gpt-image-2", prompt="a")
    assert info.value.code == "insufficient_quota"
    assert fake.successes_per_prompt == {} and fake.requests_per_prompt == {"x": 1, "a": 1}


def test_prompt_markers(fake: FakeAPI) -> None:
    status, _, raw = gen(fake, "please [[refuse]]")
    assert status == 400 and error_of(raw)["code"] == "moderation_blocked"
    status, _, raw = gen(fake, "[[status:503]]")
    assert status == 503 and error_of(raw)["type"] == "server_error"
    status, _, raw = gen(fake, "[[status:429]]")
    assert status == 429 and error_of(raw)["code"] == "rate_limit_exceeded"
    # [[break]]: a non-streamed reply is cut mid-body, a stream mid-event; both end in a reset.
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    conn.request(
        "POST",
        "/v1/images/generations",
        body=b'{"prompt": "[[break]]"}',
        headers={"Content-Type": "application/json", **AUTH},
    )
    resp = conn.getresponse()
    assert resp.status == 200
    with pytest.raises((ConnectionResetError, http.client.IncompleteRead)):
        resp.read()
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    body = {"prompt": "[[break]]", "stream": True, "partial_images": 1}
    conn.request(
        "POST",
        "/v1/images/generations",
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **AUTH},
    )
    resp = conn.getresponse()
    got = b""
    with pytest.raises(ConnectionResetError):
        for _ in range(1000):
            chunk = resp.read1(65536)
            if not chunk:
                break
            got += chunk
    conn.close()
    assert b"event: image_generation.partial_image" in got and not got.endswith(b"\n\n")
    final = parse_sse(got + b"\n\n")[-1]
    assert final["event"] == "image_generation.completed"
    with pytest.raises(ValueError):
        json.loads(final["data"])  # cut inside the final image
    # Responses and multipart edits read their prompt too.
    status, _, raw = call(fake, "POST", "/v1/responses", {"model": "gpt-5.4", "input": "a [[refuse]]"})
    assert status == 400
    form = multipart([("prompt", None, None, b"[[refuse]]"), ("image", "a.png", "image/png", PNG)], "bb")
    assert (
        call(fake, "POST", "/v1/images/edits", form, {"Content-Type": "multipart/form-data; boundary=bb"})[0]
        == 400
    )
    assert fake.requests_per_prompt["[[break]]"] == 2 and fake.successes_per_prompt["[[break]]"] == 0
    fake.markers = False
    assert gen(fake, "[[refuse]]")[0] == 200 and fake.successes_per_prompt["[[refuse]]"] == 1


def test_format_duration() -> None:
    assert [format_duration(x) for x in (0, 0.0004, 0.02, 0.5, 1, 1.234, 12.5, 60, 361.5)] == [
        "0ms",
        "1ms",
        "20ms",
        "500ms",
        "1s",
        "1.234s",
        "12.5s",
        "1m0s",
        "6m1.5s",
    ]


def test_keyed_queue_patterns(fake: FakeAPI) -> None:
    fake.queue(Reply(status=201, json={}), route="/v1/images/*")  # any method, by glob
    fake.queue(Reply(status=202, json={}), route="POST /v1/images/generations")
    fake.queue(Reply(status=203, json={}))  # the plain queue
    fake.queue(Reply(status=204, body=b""), route="POST /v1/images/generations")  # canonical route: Azure too
    assert gen(fake)[0] == 201
    assert call(fake, "GET", "/v1/batches")[0] == 203
    assert gen(fake)[0] == 202
    azure = f"/openai/deployments/gpt-image-2/images/generations?api-version={API_VERSION}"
    assert call(fake, "POST", azure, {"prompt": "x"}, AZURE_KEY)[0] == 204
    assert fake.queued == 0
    fake.queue(Reset(read_body=False), route="POST /v1/files")
    with pytest.raises((ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)):
        upload(fake, b"x" * 3_000_000)
    assert not fake.last.complete and fake.files == {}


def test_standalone_load_and_azure_flags() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(TESTS / "fakeapi.py"),
            "--rate-limit",
            "1",
            "--rate-window",
            "30",
            "--azure-deployment",
            "images-prod=gpt-image-2",
            "--latency",
            "0.05",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        root = proc.stdout.readline().decode().strip()[: -len("/v1")]
        port = int(root.rsplit(":", 1)[1])

        def post(path: str, headers: Dict[str, str]) -> Tuple[int, Dict[str, str]]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request(
                "POST",
                path,
                body=b'{"model": "images-prod", "prompt": "x"}',
                headers={"Content-Type": "application/json", **headers},
            )
            resp = conn.getresponse()
            resp.read()
            conn.close()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}

        status, headers = post("/openai/v1/images/generations", AZURE_KEY)
        assert status == 200 and headers["x-ratelimit-limit-requests"] == "1"
        status, headers = post("/v1/images/generations", AUTH)
        assert status == 429 and "retry-after-ms" in headers
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_azure_lenient_mode_still_records_the_deployment(fake: FakeAPI) -> None:
    fake.strict = False
    status, _, _ = call(fake, "POST", "/openai/v1/images/generations", {"model": "anything", "prompt": "x"})
    assert status == 200 and (fake.last.surface, fake.last.deployment) == ("azure-v1", "anything")
    status, _, _ = call(fake, "POST", "/openai/deployments/d1/images/edits", {"prompt": "x", "images": []})
    assert status == 200 and (fake.last.surface, fake.last.deployment) == ("azure-classic", "d1")


# ======================================================================================
# gpt-image-2.6: complexity, GIF and SVG outputs, their faults; strict body fields
# ======================================================================================

FLARE = "gpt-image-2.6-flare"
MODELS_26 = (FLARE, "gpt-image-2.6-sunburst", "gpt-image-2.6-sunburst-2026-11-04")
NOT_26 = ("gpt-image-2", "gpt-image-2.5-flare", "gpt-image-2.6", "gpt-image-2.6-flare-vip", None)


def api_error(raw: bytes) -> Tuple[str, Optional[str], str, str]:
    """(code, param, type, message) of an OpenAI error body."""
    error = json.loads(raw)["error"]
    return error["code"], error["param"], error["type"], error["message"]


def multipart_edit(fake: FakeAPI, **fields: str) -> Tuple[int, bytes]:
    parts = [
        ("image[]", "a.png", "image/png", PNG),
        *((k, None, None, v.encode()) for k, v in fields.items()),
    ]
    return post_multipart(fake, "/images/edits", multipart(parts, "b26"), "b26")


def tool_body(model: Optional[str], **tool: Any) -> Dict[str, Any]:
    image_tool = {"type": "image_generation", **({"model": model} if model else {}), **tool}
    return {"model": "gpt-5.4", "input": "a fox", "tools": [image_tool]}


def svg_root(data: bytes) -> Any:
    import xml.etree.ElementTree as ET

    return ET.fromstring(data)  # the fake's own small document: no DTD, nothing to expand


@pytest.mark.parametrize("model", MODELS_26)
def test_complexity_is_taken_by_the_26_models_on_every_route(fake: FakeAPI, model: str) -> None:
    for value in COMPLEXITIES:
        body = {"model": model, "prompt": "a cat", "complexity": value}
        assert post_json(fake, "/images/generations", body)[0] == 200
        assert fake.last.json["complexity"] == value
        edit = {**body, "images": [{"image_url": data_url(PNG)}]}
        assert post_json(fake, "/images/edits", edit)[0] == 200
        assert multipart_edit(fake, prompt="a cat", model=model, complexity=value)[0] == 200
        assert fake.last.fields["complexity"] == value
        assert post_json(fake, "/responses", tool_body(model, complexity=value))[0] == 200


@pytest.mark.parametrize("model", NOT_26)
def test_complexity_is_refused_for_other_models(fake: FakeAPI, model: Optional[str]) -> None:
    unsupported = "Unsupported parameter: 'complexity' is not supported with this model."
    base = {"prompt": "a cat", "complexity": "low", **({"model": model} if model else {})}
    status, _, raw = post_json(fake, "/images/generations", base)
    assert (status, api_error(raw)) == (
        400,
        ("unsupported_parameter", "complexity", "invalid_request_error", unsupported),
    )
    status, _, raw = post_json(fake, "/images/edits", {**base, "images": [{"image_url": data_url(PNG)}]})
    assert (status, api_error(raw)[:2]) == (400, ("unsupported_parameter", "complexity"))
    status, raw = multipart_edit(fake, **{k: str(v) for k, v in base.items()})
    assert (status, api_error(raw)[:2]) == (400, ("unsupported_parameter", "complexity"))
    status, _, raw = post_json(fake, "/responses", tool_body(model, complexity="low"))
    assert (status, api_error(raw)[:2]) == (400, ("unsupported_parameter", "tools[0].complexity"))


def test_a_bad_complexity_value_is_refused(fake: FakeAPI) -> None:
    wanted = "Invalid value: 'extreme'. Supported values are: 'low', 'medium', and 'high'."
    body = {"model": FLARE, "prompt": "a cat", "complexity": "extreme"}
    status, _, raw = post_json(fake, "/images/generations", body)
    assert (status, api_error(raw)) == (400, ("invalid_value", "complexity", "invalid_request_error", wanted))
    status, raw = multipart_edit(fake, prompt="a cat", model=FLARE, complexity="HIGH")
    assert (status, api_error(raw)[:2]) == (400, ("invalid_value", "complexity"))
    status, _, raw = post_json(
        fake, "/images/edits", {**body, "complexity": 3, "images": [{"image_url": data_url(PNG)}]}
    )
    assert (status, api_error(raw)[:2]) == (400, ("invalid_value", "complexity"))
    status, _, raw = post_json(fake, "/responses", tool_body(FLARE, complexity=None))
    assert status == 200  # null is the same as leaving it out
    status, _, raw = post_json(fake, "/responses", tool_body(FLARE, complexity="max"))
    assert (status, api_error(raw)[:2]) == (400, ("invalid_value", "tools[0].complexity"))


def test_svg_answers_carry_a_drawing_generation_ids_and_svg_usage(fake: FakeAPI) -> None:
    status, _, raw = post_json(
        fake, "/images/generations", {"model": FLARE, "prompt": "an icon", "output_format": "svg"}
    )
    assert status == 200
    body = json.loads(raw)
    assert body["output_format"] == "svg" and set(body["svg_usage"]) >= {"input_tokens", "output_tokens"}
    (item,) = body["data"]
    assert item["generation_id"].startswith("gen_")
    data = base64.b64decode(item["b64_json"])
    root = svg_root(data)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("64", "48", "0 0 64 48")
    assert b"<!DOCTYPE" not in data and b"<script" not in data
    assert identify(data) == ("final", 0) and fake.last.sent_images == [data]


@pytest.mark.parametrize("n", [1, 3])
def test_gif_answers_are_animations_identified_by_their_first_frame(fake: FakeAPI, n: int) -> None:
    body = {"model": "gpt-image-2.6-sunburst", "prompt": "a loop", "output_format": "gif", "n": n}
    status, _, raw = post_json(fake, "/images/generations", body)
    assert status == 200
    reply = json.loads(raw)
    assert reply["output_format"] == "gif" and "svg_usage" not in reply
    ids = {item["generation_id"] for item in reply["data"]}
    assert len(ids) == n
    for i, item in enumerate(reply["data"]):
        data = base64.b64decode(item["b64_json"])
        assert data[:6] == b"GIF89a" and data[-1:] == b";"
        with Image.open(io.BytesIO(data)) as img:
            assert img.n_frames >= 2 and img.size == IMAGE_SIZE
        assert identify(data) == ("final", i)


def test_gif_goes_wherever_png_goes_on_26(fake: FakeAPI) -> None:
    edit = {"model": FLARE, "prompt": "p", "output_format": "gif", "images": [{"image_url": data_url(PNG)}]}
    status, _, raw = post_json(fake, "/images/edits", edit)
    assert status == 200 and base64.b64decode(json.loads(raw)["data"][0]["b64_json"])[:6] == b"GIF89a"
    status, raw = multipart_edit(fake, prompt="p", model=FLARE, output_format="gif")
    assert status == 200 and json.loads(raw)["output_format"] == "gif"
    status, _, raw = post_json(fake, "/responses", tool_body(FLARE, output_format="gif"))
    assert status == 200
    result = base64.b64decode(json.loads(raw)["output"][0]["result"])
    with Image.open(io.BytesIO(result)) as img:
        assert img.n_frames >= 2
    # Streams: still GIF previews, then the animation.
    stream = {"model": FLARE, "prompt": "p", "output_format": "gif", "stream": True, "partial_images": 1}
    status, _, raw = post_json(fake, "/images/generations", stream)
    events = [json.loads(e["data"]) for e in parse_sse(raw)]
    assert status == 200 and [e["type"] for e in events] == [
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert all(e["output_format"] == "gif" for e in events)
    with Image.open(io.BytesIO(base64.b64decode(events[0]["b64_json"]))) as preview:
        assert getattr(preview, "n_frames", 1) == 1
    with Image.open(io.BytesIO(base64.b64decode(events[1]["b64_json"]))) as final:
        assert final.n_frames >= 2


@pytest.mark.parametrize("fmt", ["gif", "svg"])
@pytest.mark.parametrize("model", NOT_26)
def test_gif_and_svg_are_refused_for_other_models(fake: FakeAPI, model: Optional[str], fmt: str) -> None:
    wanted = f"Invalid value: '{fmt}'. Supported values are: 'png', 'jpeg', and 'webp'."
    body = {"prompt": "p", "output_format": fmt, **({"model": model} if model else {})}
    status, _, raw = post_json(fake, "/images/generations", body)
    assert (status, api_error(raw)) == (
        400,
        ("invalid_value", "output_format", "invalid_request_error", wanted),
    )
    status, raw = multipart_edit(fake, **{k: str(v) for k, v in body.items()})
    assert (status, api_error(raw)[:2]) == (400, ("invalid_value", "output_format"))
    status, _, raw = post_json(fake, "/responses", tool_body(model, output_format=fmt))
    assert (status, api_error(raw)[:2]) == (400, ("invalid_value", "tools[0].output_format"))


def test_svg_is_one_whole_generated_image(fake: FakeAPI) -> None:
    svg = {"model": FLARE, "prompt": "p", "output_format": "svg"}
    # Edits (both forms) and the Responses tool do not make SVG.
    listed = "Supported values are: 'png', 'jpeg', 'webp', and 'gif'."
    status, _, raw = post_json(fake, "/images/edits", {**svg, "images": [{"image_url": data_url(PNG)}]})
    assert status == 400 and api_error(raw)[1] == "output_format" and api_error(raw)[3].endswith(listed)
    status, raw = multipart_edit(fake, **svg)
    assert status == 400 and api_error(raw)[3] == f"Invalid value: 'svg'. {listed}"
    status, _, raw = post_json(fake, "/responses", tool_body(FLARE, output_format="svg"))
    assert (status, api_error(raw)[:2]) == (400, ("invalid_value", "tools[0].output_format"))
    # One image, no stream.
    status, _, raw = post_json(fake, "/images/generations", {**svg, "n": 2})
    assert (status, api_error(raw)) == (
        400,
        (
            "invalid_value",
            "n",
            "invalid_request_error",
            "Invalid 'n': output_format 'svg' makes one image per request; got 2.",
        ),
    )
    status, _, raw = post_json(fake, "/images/generations", {**svg, "stream": True})
    assert (status, api_error(raw)[:2]) == (400, ("invalid_value", "stream"))
    assert "streaming is not supported with output_format 'svg'" in api_error(raw)[3]
    assert post_json(fake, "/images/generations", {**svg, "n": 1, "stream": False})[0] == 200


def test_azure_refuses_gif_and_svg_like_webp(fake: FakeAPI) -> None:
    fake.azure_deployments["flare"] = FLARE
    for fmt in ("gif", "svg"):
        status, _, raw = call(
            fake,
            "POST",
            "/openai/v1/images/generations",
            {"model": "flare", "prompt": "p", "output_format": fmt},
            headers=AZURE_KEY,
        )
        assert (
            status == 400
            and error_of(raw)["message"] == f"Invalid value: '{fmt}'. Supported values are: 'png' and 'jpeg'."
        )
    # The deployment's model decides: complexity goes through to a 2.6 deployment only.
    body = {"model": "flare", "prompt": "p", "complexity": "low"}
    assert call(fake, "POST", "/openai/v1/images/generations", body, headers=AZURE_KEY)[0] == 200
    status, _, raw = call(
        fake, "POST", "/openai/v1/images/generations", {**body, "model": "gpt-image-2"}, headers=AZURE_KEY
    )
    assert status == 400 and error_of(raw)["param"] == "complexity"


def check_fault(kind: str, data: bytes) -> None:
    """What each broken output is, checked without the CLI's own checks."""
    import xml.parsers.expat

    if kind == "gif-truncated":
        assert data[:6] == b"GIF89a" and not data.endswith(b"\x00;")
        with Image.open(io.BytesIO(data)) as img, pytest.raises((OSError, EOFError, SyntaxError, ValueError)):
            for index in range(10):
                img.seek(index)
                img.load()
        return
    parser = xml.parsers.expat.ParserCreate()
    doctype: List[str] = []
    parser.StartDoctypeDeclHandler = lambda name, *_: doctype.append(name)
    if kind == "svg-truncated":
        with pytest.raises(xml.parsers.expat.ExpatError):
            parser.Parse(data, True)
        return
    if kind == "svg-bomb":
        # A billion laughs: ten levels of ten references each, refused before expansion by a careful reader.
        assert data.count(b"<!ENTITY") == 10 and b"&lol9;" in data
        parser.EntityDeclHandler = lambda *_: (_ for _ in ()).throw(RuntimeError("stop here"))
        with pytest.raises(RuntimeError, match="stop here"):
            parser.Parse(data, True)
        assert doctype == ["svg"]
        return
    assert kind == "svg-script"
    parser.Parse(data, True)
    root = svg_root(data)
    assert root.get("onload") and root.find("{http://www.w3.org/2000/svg}script") is not None


@pytest.mark.parametrize("kind", OUTPUT_FAULTS)
def test_broken_outputs_by_prompt_marker(fake: FakeAPI, kind: str) -> None:
    fmt = kind.split("-")[0]
    body = {"model": FLARE, "prompt": f"a loop [[{kind}]]", "output_format": fmt}
    status, _, raw = post_json(fake, "/images/generations", body)
    assert status == 200
    data = base64.b64decode(json.loads(raw)["data"][0]["b64_json"])
    assert data == faulty_output(kind) and fake.last.sent_images == [data]
    check_fault(kind, data)
    # Also in a stream (GIF) and in a batch line.
    if fmt == "gif":
        status, _, raw = post_json(fake, "/images/generations", {**body, "stream": True})
        final = json.loads(parse_sse(raw)[-1]["data"])
        assert final["type"] == "image_generation.completed" and base64.b64decode(final["b64_json"]) == data
    batch = make_batch(fake, [gen_line("c1", prompt=body["prompt"], model=FLARE, output_format=fmt)])
    done = fake.advance_batch(batch["id"], 3)
    (line,) = content_lines(fake, done["output_file_id"])
    assert base64.b64decode(line["response"]["body"]["data"][0]["b64_json"]) == data


def test_faulty_output_names_its_kinds() -> None:
    assert set(OUTPUT_FAULTS) == {"gif-truncated", "svg-bomb", "svg-script", "svg-truncated"}
    with pytest.raises(ValueError, match="gif-truncated"):
        faulty_output("svg-huge")
    assert make_svg()[:5] == b"<?xml" and svg_root(make_svg()).tag.endswith("svg")
    with Image.open(io.BytesIO(make_gif(colors=((1, 2, 3),)))) as still:
        assert getattr(still, "n_frames", 1) == 1


def test_batch_lines_get_the_26_checks(fake: FakeAPI) -> None:
    lines = [
        gen_line("ok", model=FLARE, complexity="medium", output_format="svg"),
        gen_line("bad", model=FLARE, complexity="huge"),
        gen_line("svg2", model=FLARE, output_format="svg", n=2),
        gen_line("extra", model=FLARE, frames=8),
    ]
    done = fake.advance_batch(make_batch(fake, lines)["id"], 3)
    (good,) = content_lines(fake, done["output_file_id"])
    assert good["custom_id"] == "ok" and good["response"]["body"]["output_format"] == "svg"
    assert "svg_usage" in good["response"]["body"] and "generation_id" in good["response"]["body"]["data"][0]
    errors = {
        x["custom_id"]: x["response"]["body"]["error"] for x in content_lines(fake, done["error_file_id"])
    }
    assert {k: (v["code"], v["param"]) for k, v in errors.items()} == {
        "bad": ("invalid_value", "complexity"),
        "svg2": ("invalid_value", "n"),
        "extra": ("unknown_parameter", "frames"),
    }
    # A batch runs one model: complexity on another model's lines is refused line by line.
    done = fake.advance_batch(make_batch(fake, [gen_line("old", complexity="low")])["id"], 3)
    (line,) = content_lines(fake, done["error_file_id"])
    assert line["response"]["status_code"] == 400
    assert line["response"]["body"]["error"]["code"] == "unsupported_parameter"


def test_unknown_fields_are_refused_by_default(fake: FakeAPI) -> None:
    assert fake.strict_fields and fake.accept_extra == ()
    gif = {"model": FLARE, "prompt": "p", "output_format": "gif", "frames": 8}
    status, _, raw = post_json(fake, "/images/generations", gif)
    assert (status, api_error(raw)) == (
        400,
        ("unknown_parameter", "frames", "invalid_request_error", "Unknown parameter: 'frames'."),
    )
    status, _, raw = post_json(fake, "/images/edits", {**gif, "images": [{"image_url": data_url(PNG)}]})
    assert (status, api_error(raw)[:2]) == (400, ("unknown_parameter", "frames"))
    status, raw = multipart_edit(fake, prompt="p", model=FLARE, frame_duration="80")
    assert (status, api_error(raw)[:2]) == (400, ("unknown_parameter", "frame_duration"))
    # The multipart schema has no moderation field (the JSON form has).
    status, raw = multipart_edit(fake, prompt="p", moderation="low")
    assert (status, api_error(raw)[:2]) == (400, ("unknown_parameter", "moderation"))
    status, _, raw = post_json(fake, "/responses", tool_body(FLARE, frames=8))
    assert (status, api_error(raw)[:2]) == (400, ("unknown_parameter", "tools[0].frames"))
    status, _, raw = post_json(fake, "/responses", {**tool_body(FLARE), "frames": 8})
    assert (status, api_error(raw)[:2]) == (400, ("unknown_parameter", "frames"))


def test_accept_extra_takes_the_named_fields_and_records_them() -> None:
    with FakeAPI(accept_extra=("frames", "frame_duration")) as fake:
        gif = {"model": FLARE, "prompt": "p", "output_format": "gif", "frames": 8, "frame_duration": 80}
        assert post_json(fake, "/images/generations", gif)[0] == 200
        assert (fake.last.json["frames"], fake.last.json["frame_duration"]) == (8, 80)
        assert post_json(fake, "/images/edits", {**gif, "images": [{"image_url": data_url(PNG)}]})[0] == 200
        assert multipart_edit(fake, prompt="p", model=FLARE, frames="8")[0] == 200
        assert fake.last.fields["frames"] == "8"
        assert post_json(fake, "/responses", tool_body(FLARE, frames=8))[0] == 200
        # Only the named ones.
        status, _, raw = post_json(fake, "/images/generations", {**gif, "loops": 2})
        assert (status, api_error(raw)[:2]) == (400, ("unknown_parameter", "loops"))
        # Any field, when strict_fields is off; strict checks of known fields stay.
        fake.strict_fields = False
        assert post_json(fake, "/images/generations", {**gif, "loops": 2})[0] == 200
        assert post_json(fake, "/images/generations", {**gif, "n": 11})[0] == 400


def test_the_known_fields_are_the_specs_plus_complexity() -> None:
    if not SPEC_PATH.is_file():
        pytest.skip(f"the official OpenAPI spec is not at {SPEC_PATH}")
    import fakeapi

    schemas = json.loads(SPEC_PATH.read_text(encoding="utf-8"))["components"]["schemas"]

    def fields(name: str) -> set:
        schema = schemas[name]
        found = set(schema.get("properties", {}))
        for sub in schema.get("allOf", []) + schema.get("anyOf", []):
            found |= (
                fields(sub["$ref"].rsplit("/", 1)[1]) if "$ref" in sub else set(sub.get("properties", {}))
            )
        return found

    plus = {"complexity"}
    assert set(fakeapi._GENERATION_FIELDS) == fields("CreateImageRequest") | plus
    assert set(fakeapi._MULTIPART_EDIT_FIELDS) == fields("CreateImageEditRequest") - {"image", "mask"} | plus
    assert set(fakeapi._JSON_EDIT_FIELDS) == fields("EditImageBodyJsonParam") | plus
    assert set(fakeapi._TOOL_FIELDS) == fields("ImageGenTool") | plus
    assert set(fakeapi._RESPONSES_FIELDS) == fields("CreateResponse")


def test_standalone_field_flags() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(TESTS / "fakeapi.py"), "--accept-extra", "frames"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().decode().strip()[: -len("/v1")].rsplit(":", 1)[1])

        def status_of(body: Dict[str, Any]) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request(
                "POST",
                "/v1/images/generations",
                json.dumps(body),
                {"Content-Type": "application/json", **AUTH},
            )
            resp = conn.getresponse()
            resp.read()
            conn.close()
            return resp.status

        assert status_of({"prompt": "p", "frames": 3}) == 200
        assert status_of({"prompt": "p", "loops": 3}) == 400
    finally:
        proc.terminate()
        proc.wait(timeout=5)

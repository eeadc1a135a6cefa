"""The event-stream parser (iter_sse_events) and the lean JSON decoding of image events.

sseclient-style: one stream, fed whole, split at every byte boundary, one byte at a time, with LF, CRLF and
CR line ends, must give the same events; a small reference parser written from the WHATWG rules checks
random streams and random splits. Then decode_json_lean / decode_image: big base64 values come back as
zero-copy blobs that decode to exactly what json.loads + b64decode would give, and bad payloads are refused.
"""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple

import gpt_image
import pytest
from fakeapi import make_image, noise_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EventTuple = Tuple[str, bytes, Optional[str], Optional[int]]
LINE_ENDS = {"LF": b"\n", "CRLF": b"\r\n", "CR": b"\r"}

# One stream holding every case the parser must handle, as lines without their line ends.
LINES = [
    ": a comment at the very start",
    "retry: 2500",
    "id: first-id",
    "event: response.created",
    'data: {"type": "response.created", "n": 1}',
    "",
    "data: line one",
    "data:line two",  # no space after the colon
    "data",  # a field with no colon: an empty data line
    "data:  two spaces",  # only the first space is dropped
    "",
    ": keep-alive",
    "event: lonely",  # an event without data is not dispatched ...
    "",
    "data: plain",  # ... and its type does not carry over to the next one
    "",
    "id",  # no colon: the last event id becomes empty
    "retry: soon",  # not digits: ignored
    "unknown: field",  # unknown fields are ignored
    "event: last",
    "data: closing",
    "",
    "event: open",
    "data: never dispatched",  # still open when the stream ends: dropped
]

# Worked out by hand from the rules above (WHATWG HTML, "Interpreting an event stream").
EXPECTED: List[EventTuple] = [
    ("response.created", b'{"type": "response.created", "n": 1}', "first-id", 2500),
    ("message", b"line one\nline two\n\n two spaces", "first-id", 2500),
    ("message", b"plain", "first-id", 2500),
    ("last", b"closing", "", 2500),
]


def stream_bytes(line_end: bytes, lines: Sequence[str] = LINES, trailing: bool = True) -> bytes:
    body = line_end.join(line.encode("utf-8") for line in lines)
    return body + line_end if trailing else body


def parse(chunks: Iterable[bytes]) -> List[EventTuple]:
    """Run the parser and flatten its events into plain tuples (data as bytes)."""
    return [(e.event, bytes(e.data), e.id, e.retry) for e in gpt_image.iter_sse_events(chunks)]


def reference_parse(raw: bytes) -> List[EventTuple]:
    """A deliberately naive event-stream parser straight from the WHATWG text: whole input, regex lines."""
    text = raw.decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = re.split(r"\r\n|\r|\n", text)[:-1]  # the text after the last line end is no complete line
    events: List[EventTuple] = []
    event_type, data, last_id, retry = "", "", None, None
    for line in lines:
        if line == "":
            if data:
                events.append((event_type or "message", data[:-1].encode("utf-8"), last_id, retry))
            event_type, data = "", ""
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            event_type = value
        elif name == "data":
            data += value + "\n"
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value and all("0" <= c <= "9" for c in value):
            retry = int(value)
    return events


def one_byte_at_a_time(raw: bytes) -> Iterator[bytes]:
    return (raw[i : i + 1] for i in range(len(raw)))


# --------------------------------------------------------------------------------------
# The fixed stream, every way of feeding it
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("trailing", [True, False], ids=["ends-in-line-end", "ends-mid-line"])
@pytest.mark.parametrize("line_end", list(LINE_ENDS), ids=list(LINE_ENDS))
def test_stream_fed_whole(line_end: str, trailing: bool) -> None:
    raw = stream_bytes(LINE_ENDS[line_end], trailing=trailing)
    assert parse([raw]) == EXPECTED
    assert reference_parse(raw) == EXPECTED  # the reference agrees with the hand-worked answer


@pytest.mark.parametrize("line_end", list(LINE_ENDS), ids=list(LINE_ENDS))
def test_stream_split_at_every_byte_boundary(line_end: str) -> None:
    raw = stream_bytes(LINE_ENDS[line_end])
    for cut in range(len(raw) + 1):
        assert parse([raw[:cut], raw[cut:]]) == EXPECTED, f"split at byte {cut}: {raw[:cut][-12:]!r}"


@pytest.mark.parametrize("line_end", list(LINE_ENDS), ids=list(LINE_ENDS))
def test_stream_one_byte_at_a_time(line_end: str) -> None:
    raw = stream_bytes(LINE_ENDS[line_end])
    assert parse(one_byte_at_a_time(raw)) == EXPECTED


def test_mixed_line_ends_and_empty_chunks() -> None:
    raw = b"data: a\r\ndata: b\rdata: c\n\r\nevent: x\rdata: d\n\n"
    expected = [("message", b"a\nb\nc", None, None), ("x", b"d", None, None)]
    assert parse([raw]) == expected == reference_parse(raw)
    chunks = [b""] + [piece for i in range(len(raw)) for piece in (raw[i : i + 1], b"")]
    assert parse(chunks) == expected


@pytest.mark.parametrize(
    "chunks, expected",
    [
        # CR ends one chunk, its LF starts the next: one line end, not a line end plus a blank line.
        ([b"data: a\r", b"\ndata: b\r\n\r\n"], [b"a\nb"]),
        ([b"data: a\r", b"", b"", b"\ndata: b\r\n\r\n"], [b"a\nb"]),
        ([b"data: a\r", b"\n", b"data: b\r", b"\n\r", b"\n"], [b"a\nb"]),
        # The blank line's CR ends a chunk: the event is out, and the LF after it is no second blank line.
        ([b"data: a\r\n\r", b"\ndata: b\r\n\r\n"], [b"a", b"b"]),
        # CR then CR across chunks really is a line end plus a blank line.
        ([b"data: a\r", b"\rdata: b\r\r"], [b"a", b"b"]),
        # An LF that does not follow a CR is a line end of its own.
        ([b"data: a\n", b"\ndata: b\n\n"], [b"a", b"b"]),
    ],
)
def test_crlf_split_between_chunks(chunks: List[bytes], expected: List[bytes]) -> None:
    assert [data for _, data, _, _ in parse(chunks)] == expected
    assert [data for _, data, _, _ in reference_parse(b"".join(chunks))] == expected


def test_events_are_yielded_as_soon_as_they_are_complete() -> None:
    """Incremental: the first event comes out before the parser asks for the chunk after it."""
    pulled: List[int] = []
    raw_chunks = [b"data: one\n", b"\n", b"data: two\n\n", b"data: three\n\n"]

    def source() -> Iterator[bytes]:
        for number, chunk in enumerate(raw_chunks):
            pulled.append(number)
            yield chunk

    events = gpt_image.iter_sse_events(source())
    assert bytes(next(events).data) == b"one"
    assert pulled == [0, 1]
    assert bytes(next(events).data) == b"two"
    assert pulled == [0, 1, 2]
    assert [bytes(e.data) for e in events] == [b"three"]


def test_last_event_id_persists_and_nul_ids_are_ignored() -> None:
    raw = b"id: 7\ndata: a\n\ndata: b\n\nid: x\x00y\ndata: c\n\nid:\ndata: d\n\n"
    assert [(bytes(e.data), e.id) for e in gpt_image.iter_sse_events([raw])] == [
        (b"a", "7"),
        (b"b", "7"),
        (b"c", "7"),
        (b"d", ""),
    ]


def test_a_leading_byte_order_mark_is_ignored() -> None:
    raw = b"\xef\xbb\xbfevent: first\ndata: x\n\n"
    assert parse([raw]) == [("first", b"x", None, None)]
    assert parse(one_byte_at_a_time(raw)) == [("first", b"x", None, None)]
    # Only at the very start: a BOM later on is part of the line (so this field name is unknown).
    assert parse([b"data: x\n\n\xef\xbb\xbfdata: y\n\n"]) == [("message", b"x", None, None)]


def test_empty_and_comment_only_streams() -> None:
    assert parse([]) == []
    assert parse([b""]) == []
    assert parse([b": ping\n\n: ping\r\n\r\n\n\n"]) == []
    assert parse([b"data: no blank line at the end\n"]) == []


def test_done_marker_is_an_ordinary_event() -> None:
    """[DONE] is the caller's business (consume_response stops on it); the parser just delivers it."""
    assert parse([b"data: {}\n\ndata: [DONE]\n\n"]) == [
        ("message", b"{}", None, None),
        ("message", b"[DONE]", None, None),
    ]


# --------------------------------------------------------------------------------------
# Random streams against the reference parser
# --------------------------------------------------------------------------------------

_value = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=12)
_line = st.one_of(
    st.just(""),
    st.just(""),
    _value.map(lambda v: ":" + v),
    _value.map(lambda v: "event: " + v),
    _value.map(lambda v: "data: " + v),
    _value.map(lambda v: "data:" + v),
    st.just("data"),
    _value.map(lambda v: "id: " + v),
    st.just("id"),
    st.just("id: with\0nul"),
    st.integers(0, 99_999).map(lambda n: f"retry: {n}"),
    _value.map(lambda v: "retry: " + v),
    _value.map(lambda v: v + ": " + v),
)
_stream = st.lists(st.tuples(_line, st.sampled_from([b"\n", b"\r\n", b"\r"])), max_size=25).map(
    lambda pairs: b"".join(line.encode("utf-8") + end for line, end in pairs)
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_stream, data=st.data())
def test_random_streams_and_random_splits_match_the_reference(raw: bytes, data: st.DataObject) -> None:
    expected = reference_parse(raw)
    assert parse([raw]) == expected
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]
    assert parse(pieces) == expected
    assert parse(one_byte_at_a_time(raw)) == expected


# --------------------------------------------------------------------------------------
# Size and speed
# --------------------------------------------------------------------------------------


def chunked(raw: bytes, size: int) -> Iterator[bytes]:
    return (raw[i : i + size] for i in range(0, len(raw), size))


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_a_large_data_line_in_64k_chunks_is_parsed_quickly(line_end: bytes) -> None:
    image = noise_image("png", 6_000_000)
    event = {"type": "response.output_item.done", "item": {"type": "image_generation_call", "id": "ig_1"}}
    event["item"]["result"] = base64.b64encode(image).decode("ascii")  # type: ignore[index]
    payload = json.dumps(event).encode("ascii")
    raw = b"event: response.output_item.done" + line_end + b"data: " + payload + line_end + line_end
    raw += b"data: after" + line_end + line_end
    assert len(payload) > 8_000_000
    started = time.perf_counter()
    events = list(gpt_image.iter_sse_events(chunked(raw, 64 * 1024)))
    elapsed = time.perf_counter() - started
    assert [e.event for e in events] == ["response.output_item.done", "message"]
    assert events[0].data == payload
    assert bytes(events[1].data) == b"after"
    # Linear is ~0.03 s (LF) to ~0.15 s (CR, CRLF) on a loaded machine; rescanning per chunk would be ~10 s.
    assert elapsed < 2.0, f"{len(payload):,} bytes took {elapsed:.2f} s"
    obj, blobs = gpt_image.decode_json_lean(events[0].data)
    assert gpt_image.decode_image(obj["item"]["result"], blobs, "the image") == image


def test_many_small_events_in_one_big_chunk_are_parsed_in_linear_time() -> None:
    one = b'event: response.image_generation_call.generating\ndata: {"sequence_number": 1}\n\n'
    started = time.perf_counter()
    count = sum(1 for _ in gpt_image.iter_sse_events([one * 50_000]))
    elapsed = time.perf_counter() - started
    assert count == 50_000
    # ~0.5 s; copying the rest of the 4 MB buffer after every line would take minutes.
    assert elapsed < 5.0, f"50,000 events took {elapsed:.2f} s"


# --------------------------------------------------------------------------------------
# decode_json_lean
# --------------------------------------------------------------------------------------

BLOB_KEYS = ("b64_json", "partial_image_b64", "result")


def resolve(obj: Any, blobs: Sequence[memoryview]) -> Any:
    """Put the blobs back as plain base64 strings, so the result compares with json.loads."""
    if isinstance(obj, dict):
        return {key: resolve(value, blobs) for key, value in obj.items()}
    if isinstance(obj, list):
        return [resolve(value, blobs) for value in obj]
    if isinstance(obj, str) and obj.startswith("\x00blob:"):
        return bytes(blobs[int(obj[len("\x00blob:") :])]).decode("ascii")
    return obj


def big_png(nbytes: int = 300_000) -> bytes:
    return noise_image("png", nbytes)


@pytest.mark.parametrize("key", BLOB_KEYS)
def test_big_base64_values_become_zero_copy_blobs(key: str) -> None:
    image = big_png()
    data = json.dumps({"type": "x", key: base64.b64encode(image).decode("ascii"), "after": 1}).encode()
    obj, blobs = gpt_image.decode_json_lean(data)
    assert len(blobs) == 1
    assert blobs[0].obj is data  # a view into the received bytes, not a copy
    assert obj["type"] == "x" and obj["after"] == 1
    assert resolve(obj, blobs) == json.loads(data)
    expected = base64.b64decode(json.loads(data)[key])
    assert gpt_image.decode_image(obj[key], blobs, "the image") == expected == image


def test_works_on_a_bytearray_as_the_parser_delivers_it() -> None:
    image = big_png()
    raw = bytearray(json.dumps({"b64_json": base64.b64encode(image).decode("ascii")}).encode())
    obj, blobs = gpt_image.decode_json_lean(raw)
    assert len(blobs) == 1
    assert gpt_image.decode_image(obj["b64_json"], blobs, "the image") == image


def test_short_values_and_other_keys_go_through_the_plain_parser() -> None:
    small = make_image("png")
    encoded = base64.b64encode(small).decode("ascii")
    assert len(encoded) < 1024
    big = base64.b64encode(big_png()).decode("ascii")
    data = json.dumps({"result": encoded, "revised_prompt": big, "text": 'a "result": "x"'}).encode()
    obj, blobs = gpt_image.decode_json_lean(data)
    assert blobs == []
    assert obj == json.loads(data)
    assert gpt_image.decode_image(obj["result"], blobs, "the image") == small


def test_values_with_escapes_are_decoded_by_json() -> None:
    image = big_png()
    encoded = base64.b64encode(image).decode("ascii")
    assert "/" in encoded
    data = ('{"partial_image_b64": "' + encoded.replace("/", "\\/") + '", "n": 2}').encode()
    obj, blobs = gpt_image.decode_json_lean(data)
    assert blobs == []
    assert obj == json.loads(data)
    assert obj["partial_image_b64"] == encoded
    assert gpt_image.decode_image(obj["partial_image_b64"], blobs, "the preview") == image


def test_null_result_and_spaces_around_the_colon() -> None:
    image = big_png()
    encoded = base64.b64encode(image).decode("ascii")
    data = ('{"result" : null, "item": {"b64_json"   :\t "' + encoded + '"}, "x": [1, "result"]}').encode()
    obj, blobs = gpt_image.decode_json_lean(data)
    assert obj["result"] is None
    assert len(blobs) == 1
    assert resolve(obj, blobs) == json.loads(data)
    assert gpt_image.decode_image(obj["item"]["b64_json"], blobs, "the image") == image
    with pytest.raises(gpt_image.ResponseError):
        gpt_image.decode_image(obj["result"], blobs, "the image")


def test_several_blobs_in_one_object_map_to_the_right_bytes() -> None:
    images = [big_png(200_000), big_png(260_000), big_png(330_000)]
    small = make_image("png")
    response = {
        "id": "resp_1",
        "output": [
            {"type": "image_generation_call", "id": "ig_1", "result": base64.b64encode(images[0]).decode()},
            {"type": "message", "content": [{"type": "output_text", "text": "done"}]},
            {"type": "image_generation_call", "id": "ig_2", "result": base64.b64encode(images[1]).decode()},
            {"type": "image_generation_call", "id": "ig_3", "result": base64.b64encode(small).decode()},
        ],
        "partial_image_b64": base64.b64encode(images[2]).decode(),
    }
    data = json.dumps(response, indent=1).encode()
    obj, blobs = gpt_image.decode_json_lean(data)
    assert len(blobs) == 3
    assert resolve(obj, blobs) == json.loads(data)
    output = obj["output"]
    decoded = [gpt_image.decode_image(output[i]["result"], blobs, "img") for i in (0, 2, 3)]
    assert decoded == [images[0], images[1], small]
    assert gpt_image.decode_image(obj["partial_image_b64"], blobs, "preview") == images[2]


@settings(max_examples=150, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 2000), min_size=1, max_size=4),
    spaces=st.lists(st.sampled_from(["", " ", "\t", "\n  "]), min_size=2, max_size=2),
    key=st.sampled_from([*BLOB_KEYS, "other"]),
)
def test_lean_decoding_always_agrees_with_json_loads(lengths: List[int], spaces: List[str], key: str) -> None:
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    values = [bytes(alphabet[(i * 7 + n) % 64] for i in range(n)).decode() for n in lengths]
    members = [f'"{key}"{spaces[0]}:{spaces[1]}"{value}"' for value in values]
    data = ("[" + ", ".join("{" + m + ', "k": 1}' for m in members) + "]").encode()
    obj, blobs = gpt_image.decode_json_lean(data)
    assert resolve(obj, blobs) == json.loads(data)
    assert all(len(blob) >= 1024 for blob in blobs)


def test_malformed_json_raises_value_error() -> None:
    big = base64.b64encode(big_png()).decode()
    for data in (b"{", b"", b'{"result": "' + big.encode() + b'"', b"\xff\xfe", b'{"a": 1} trailing'):
        with pytest.raises(ValueError):
            gpt_image.decode_json_lean(data)


# --------------------------------------------------------------------------------------
# decode_image
# --------------------------------------------------------------------------------------


def blob_of(encoded: bytes) -> Tuple[Any, List[memoryview]]:
    """decode_json_lean of {"result": <encoded>}: (the marker value, the blobs)."""
    obj, blobs = gpt_image.decode_json_lean(b'{"result": "' + encoded + b'"}')
    return obj["result"], blobs


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_decode_image_accepts_each_format_as_string_and_as_blob(fmt: str) -> None:
    small = make_image(fmt)
    assert gpt_image.decode_image(base64.b64encode(small).decode(), [], "x") == small
    big = noise_image(fmt, 200_000)
    value, blobs = blob_of(base64.b64encode(big))
    assert blobs
    assert gpt_image.decode_image(value, blobs, "x") == big


def test_decode_image_tolerates_line_breaks_in_a_plain_string() -> None:
    small = make_image("png")
    wrapped = base64.encodebytes(small).decode()  # 76-character lines, as MIME tools write
    assert "\n" in wrapped
    assert gpt_image.decode_image(wrapped, [], "x") == small


@pytest.mark.parametrize(
    "encoded",
    [
        "not base64 at all!",
        "iVBORw0KGgo*AAAA",
        "iVBORw0KGgoAAAA",  # one character short of a full group
        "iVBORw0-KGgoAAAA",  # the URL-safe alphabet is not what the API sends
    ],
)
def test_decode_image_rejects_non_base64_strings(encoded: str) -> None:
    with pytest.raises(gpt_image.ResponseError, match="does not decode"):
        gpt_image.decode_image(encoded, [], "the image")


@pytest.mark.parametrize("damage", ["star", "space", "url-safe", "padding-inside", "truncated", "extra"])
def test_decode_image_rejects_damaged_blobs(damage: str) -> None:
    encoded = bytearray(base64.b64encode(big_png()))
    middle = len(encoded) // 2
    if damage == "star":
        encoded[middle] = ord("*")
    elif damage == "space":
        encoded[middle] = ord(" ")
    elif damage == "url-safe":
        encoded[middle] = ord("-")
    elif damage == "padding-inside":
        encoded[middle : middle + 2] = b"=="
    elif damage == "truncated":
        del encoded[-1:]
    else:
        encoded += b"A"
    value, blobs = blob_of(bytes(encoded))
    assert blobs, "the damaged value should still be taken as a blob"
    with pytest.raises(gpt_image.ResponseError, match="does not decode"):
        gpt_image.decode_image(value, blobs, "the image")


@pytest.mark.parametrize("value", ["", "   ", None, 42, ["iVBORw0KGgo="]])
def test_decode_image_rejects_empty_and_missing_data(value: Any) -> None:
    with pytest.raises(gpt_image.ResponseError):
        gpt_image.decode_image(value, [], "the image")


@pytest.mark.parametrize(
    "payload",
    [b"hello, world: this is text", b"BM" + bytes(40), b"%PDF-1.7\n" + bytes(2000), b"\x00" * 3000],
)
def test_decode_image_rejects_payloads_that_are_not_images(payload: bytes) -> None:
    encoded = base64.b64encode(payload)
    names = gpt_image.format_names()  # every format of the table: PNG, JPEG, WEBP, GIF or SVG
    with pytest.raises(gpt_image.ResponseError, match=f"not a {names} image"):
        gpt_image.decode_image(encoded.decode(), [], "the image")
    if len(encoded) >= 1024:
        value, blobs = blob_of(encoded)
        assert blobs
        with pytest.raises(gpt_image.ResponseError, match=f"not a {names} image"):
            gpt_image.decode_image(value, blobs, "the image")


def test_decode_image_rejects_an_unknown_blob_marker() -> None:
    with pytest.raises(gpt_image.ResponseError):
        gpt_image.decode_image("\x00blob:3", [], "the image")

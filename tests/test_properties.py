"""Property-based tests (hypothesis) of the pure parts: .env, sizes, output paths, SSE, lean JSON, scrubbing.

Each property says what must hold for every input, not for a few chosen ones: arbitrary input gives a
result or the module's own clean error, never another exception, and the parsers agree with a simple model
of the format they read.
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

import gpt_image
import pytest
from gpt_image import (
    FIXED_SIZES,
    IMAGE_FORMATS,
    MODELS,
    ConfigError,
    OutputPlan,
    RawSink,
    UsageError,
    decode_json_lean,
    flexible_size_problem,
    iter_sse_events,
    nearest_fixed_size,
    nearest_flexible_size,
    parse_dotenv,
    redact,
    register_secret,
    rules_for,
    size_error,
)
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

EXTENSION_FORMATS = {ext: fmt.name for fmt in IMAGE_FORMATS.values() for ext in fmt.extensions}
FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SLOWER = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _no_leftover_secrets() -> Any:
    """register_secret() is process-global; leave it as main() would find it."""
    saved = list(gpt_image.current_run().secrets)
    yield
    gpt_image.current_run().secrets[:] = saved


# --------------------------------------------------------------------------------------
# .env
# --------------------------------------------------------------------------------------

ENV_ALPHABET = st.characters(blacklist_categories=("Cs",))
KEYS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)


@FAST
@given(st.text(ENV_ALPHABET, max_size=300))
@example("\ufeffA=1\r\nexport B='x' # c\rC=\"a\\nb\"")
@example('A="unterminated')
@example("=no key")
def test_dotenv_arbitrary_text_parses_or_config_error(text: str) -> None:
    try:
        result = parse_dotenv(text, "cfg.env")
    except ConfigError as exc:
        assert re.match(r"cfg\.env:\d+: ", exc.message), exc.message
        assert exc.exit_code == 3
        return
    assert isinstance(result, dict)
    lines = re.split(r"\r\n|\r|\n", text[1:] if text.startswith("\ufeff") else text)
    for key, (value, number) in result.items():
        assert isinstance(value, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key)
        assert 1 <= number <= len(lines) and key in lines[number - 1]


@FAST
@given(
    key=KEYS,
    secret=st.text(st.characters(whitelist_categories=("L", "N")), min_size=8, max_size=40),
    before=st.integers(0, 5),
    style=st.sampled_from(['"{}', "'{}", "'{}' trailing", '"{}" trailing']),
)
def test_dotenv_error_names_the_line_never_the_value(key: str, secret: str, before: int, style: str) -> None:
    assume(secret not in key and secret not in "cfg.env")
    text = "\n".join(["# comment"] * before + [f"{key}={style.format(secret)}", "OTHER=1"])
    with pytest.raises(ConfigError) as caught:
        parse_dotenv(text, "cfg.env")
    assert caught.value.message.startswith(f"cfg.env:{before + 1}: ")
    assert secret not in caught.value.message and secret not in caught.value.hint


def _quote(value: str, style: str) -> str:
    """Write a value the way a person would, in one of the three .env styles."""
    if style == "single":
        return f"'{value}'"
    if style == "double":
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return value


def _can_write(value: str, style: str) -> bool:
    if "\r" in value:
        return False  # a bare CR ends the line in every style
    if style == "single":
        return "'" not in value and "\n" not in value
    if style == "plain":
        return (
            "\n" not in value
            and value == value.strip()
            and not re.search(r"[ \t]#", value)
            and value[:1] not in ("'", '"', "#")
        )
    return True


@FAST
@given(
    entries=st.dictionaries(
        KEYS,
        st.tuples(
            st.text(ENV_ALPHABET, max_size=40),
            st.sampled_from(["single", "double", "plain"]),
            st.booleans(),  # export prefix
            st.booleans(),  # trailing comment
        ),
        max_size=8,
    ),
    line_end=st.sampled_from(["\n", "\r\n", "\r"]),
    bom=st.booleans(),
)
def test_dotenv_round_trip(entries: Dict[str, Tuple[str, str, bool, bool]], line_end: str, bom: bool) -> None:
    lines: List[str] = ["# generated"]
    expected: Dict[str, str] = {}
    for key, (value, style, export, comment) in entries.items():
        if not _can_write(value, style):
            style = "double"
            value = value.replace("\r", "")
        if style == "plain" and value == "" and comment:
            comment = False  # "KEY= # c" is an empty value; fine, but keep the model simple
        line = ("export " if export else "") + f"{key}={_quote(value, style)}"
        if comment:
            line += " # a comment"
        lines.append(line)
        lines.append("")
        expected[key] = value
    text = ("\ufeff" if bom else "") + line_end.join(lines) + line_end
    parsed = parse_dotenv(text)
    assert {k: v for k, (v, _) in parsed.items()} == expected


# --------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------

MODEL_NAMES = st.sampled_from([*MODELS, "openai/gpt-image-2-2026-04-21", "my-gateway-model"])
SIZE_TEXT = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"\s*\d{1,6}\s*[xX*×,: ]\s*\d{1,6}\s*", fullmatch=True),
    st.builds(lambda w, h: f"{w}x{h}", st.integers(0, 10**30), st.integers(0, 10**30)),
    st.builds(lambda w, h: f"{w}x{h}", st.integers(0, 5000), st.integers(0, 5000)),
)


@FAST
@given(SIZE_TEXT, MODEL_NAMES)
@example("1x" + "9" * 400, "gpt-image-2")
@example("1x" + "9" * 400, "gpt-image-1.5")
@example("0x0", "gpt-image-2")
def test_size_error_is_none_or_problem_and_fix(size: str, model: str) -> None:
    rules = rules_for(model)
    result = size_error(size, model, rules)
    if result is None:
        return
    problem, fix = result
    assert isinstance(problem, str) and problem and isinstance(fix, str) and fix
    suggested = re.search(r"--size (\d+x\d+)", fix)
    if suggested and rules is not None and "nearest" in fix:
        assert size_error(suggested.group(1), model, rules) is None, fix  # the fix itself is valid


@FAST
@given(st.integers(0, 10**12), st.integers(0, 10**12))
@example(0, 0)
@example(10**400, 1)
@example(3840, 2160)
def test_nearest_flexible_size_is_valid(width: int, height: int) -> None:
    w, h = nearest_flexible_size(width, height)
    assert flexible_size_problem(w, h) is None, (width, height, w, h)
    if flexible_size_problem(width, height) is None:
        assert (w, h) == (width, height)  # a valid size is its own nearest


@FAST
@given(st.integers(16, 3840).map(lambda v: v // 16 * 16), st.integers(16, 3840).map(lambda v: v // 16 * 16))
def test_nearest_flexible_size_is_nearest(width: int, height: int) -> None:
    """No valid size on the grid around the answer is closer (a local check of 'least squared distance')."""
    w, h = nearest_flexible_size(width, height)
    best = (w - width) ** 2 + (h - height) ** 2
    for dw in range(-3, 4):
        for dh in range(-3, 4):
            cw, ch = w + 16 * dw, h + 16 * dh
            if flexible_size_problem(cw, ch) is None:
                assert (cw - width) ** 2 + (ch - height) ** 2 >= best


@FAST
@given(st.integers(0, 10**400), st.integers(0, 10**400))
def test_nearest_fixed_size_is_a_fixed_size(width: int, height: int) -> None:
    assert nearest_fixed_size(width, height) in FIXED_SIZES


# --------------------------------------------------------------------------------------
# Output paths
# --------------------------------------------------------------------------------------

PATH_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=0, max_size=20
)


def _planned(output: str) -> Optional[Tuple[str, str]]:
    """What the validator makes of --output (pattern, format), or None when it refuses it."""
    config = gpt_image.Config({}, {}, None)
    try:
        return gpt_image.plan_output(output, gpt_image.Settings({"format": None}, config))
    except UsageError:
        return None


@FAST
@given(
    head=PATH_TEXT,
    tail=PATH_TEXT,
    with_index=st.booleans(),
    ext=st.sampled_from([*EXTENSION_FORMATS, ".PNG", ""]),
    count=st.integers(1, 10),
    partials=st.integers(0, 3),
)
def test_output_plan_paths_are_distinct_and_keep_the_extension(
    head: str, tail: str, with_index: bool, ext: str, count: int, partials: int
) -> None:
    planned = _planned(head + ("{index}" if with_index else "") + tail + ext)
    assume(planned is not None)
    assert planned is not None
    pattern, fmt = planned
    extension = os.path.splitext(pattern)[1]
    assert EXTENSION_FORMATS[extension.lower()] == fmt
    plan = OutputPlan(pattern, count)
    finals = [plan.final(i) for i in range(1, count + 1)]
    previews = [plan.partial(i, k) for i in range(1, count + 1) for k in range(1, partials + 1)]
    everything = finals + previews
    assert len(set(everything)) == len(everything), everything
    for path in everything:
        assert os.path.splitext(path)[1] == extension, path
    if count == 1 and "{index}" not in pattern:
        assert finals == [pattern]
    if "{index}" in pattern:
        assert finals == [pattern.replace("{index}", str(i)) for i in range(1, count + 1)]


# --------------------------------------------------------------------------------------
# Server-sent events
# --------------------------------------------------------------------------------------


def _events(chunks: Sequence[bytes]) -> List[Tuple[str, bytes, Optional[str], Optional[int]]]:
    return [(e.event, bytes(e.data), e.id, e.retry) for e in iter_sse_events(iter(chunks))]


def _split(data: bytes, cuts: Sequence[int]) -> List[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(data[last:point])
        last = point
    pieces.append(data[last:])
    return pieces


SSE_BYTES = st.one_of(
    st.binary(max_size=400),
    st.lists(
        st.sampled_from(
            [
                b"data: x",
                b"data:{}",
                b"event: e",
                b"id: 7",
                b"retry: 10",
                b":c",
                b"",
                b"\r",
                b"\n",
                b"\r\n",
                b"data",
                b"id: a\x00b",
                b"retry: x",
                b"\xff\xfe",
                b"data:  two",
            ]
        ),
        max_size=40,
    ).map(lambda parts: b"\n".join(parts)),
)


@FAST
@given(SSE_BYTES, st.lists(st.integers(0, 10_000), max_size=12))
@example(b"data: a\r", [8])
@example(b"data: a\r\n\r\n", [8, 9])
@example(b"data: a\r\rdata: b\n\n", [8])
def test_sse_arbitrary_bytes_any_split(data: bytes, cuts: List[int]) -> None:
    whole = _events([data])
    split = _events(_split(data, cuts))
    assert split == whole  # how the bytes arrive never changes what is parsed
    byte_by_byte = _events([data[i : i + 1] for i in range(len(data))])
    assert byte_by_byte == whole


LINE_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30
).map(lambda s: s.encode("utf-8"))


@st.composite
def event_streams(draw: Any) -> Tuple[bytes, List[Tuple[str, bytes]]]:
    """A stream of events serialised with mixed line ends, comments and unknown fields, and the model."""
    events = draw(
        st.lists(
            st.tuples(
                st.one_of(st.none(), st.from_regex(r"[a-z_.]{1,30}", fullmatch=True)),
                st.lists(LINE_TEXT, min_size=1, max_size=4),
            ),
            max_size=6,
        )
    )
    out = bytearray()
    expected: List[Tuple[str, bytes]] = []

    def end() -> bytes:
        # A CR then an LF would read as one CRLF, so an LF never follows a lone CR here.
        choices = [b"\r\n", b"\r"] if out.endswith(b"\r") else [b"\n", b"\r\n", b"\r"]
        return draw(st.sampled_from(choices))

    for name, lines in events:
        if draw(st.booleans()):
            out += b": keep-alive" + end() + end()
        if name is not None:
            out += b"event: " + name.encode() + end()
        for line in lines:
            out += draw(st.sampled_from([b"data: ", b"data:"])) if not line.startswith(b" ") else b"data: "
            out += line + end()
            if draw(st.booleans()):
                out += b"x-unknown: ignored" + end()
        out += end()
        expected.append((name or "message", b"\n".join(lines)))
    if draw(st.booleans()):
        out += b"data: never dispatched"  # an event cut off at the end is dropped
    return bytes(out), expected


@FAST
@given(event_streams(), st.lists(st.integers(0, 10_000), max_size=10))
def test_sse_generated_events_survive_any_split(
    stream: Tuple[bytes, List[Tuple[str, bytes]]], cuts: List[int]
) -> None:
    data, expected = stream
    for chunks in ([data], _split(data, cuts)):
        got = [(e.event, bytes(e.data)) for e in iter_sse_events(iter(chunks))]
        assert got == expected


# --------------------------------------------------------------------------------------
# Lean JSON decoding of big base64 values
# --------------------------------------------------------------------------------------

B64 = st.binary(min_size=0, max_size=1600).map(lambda b: base64.b64encode(b).decode("ascii"))
BLOB_KEYS = st.sampled_from(["b64_json", "partial_image_b64", "result"])
PLAIN = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=20).filter(lambda s: "\x00blob:" not in s),
)


def _json_docs() -> Any:
    leaf = st.one_of(PLAIN, B64)
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.one_of(BLOB_KEYS, st.text(max_size=10)), inner, max_size=4),
            st.dictionaries(BLOB_KEYS, B64, min_size=1, max_size=3),
        ),
        max_leaves=12,
    )


def _resolve(obj: Any, blobs: Sequence[memoryview]) -> Any:
    if isinstance(obj, str) and obj.startswith("\x00blob:"):
        return bytes(blobs[int(obj[len("\x00blob:") :])]).decode("utf-8")
    if isinstance(obj, list):
        return [_resolve(v, blobs) for v in obj]
    if isinstance(obj, dict):
        return {k: _resolve(v, blobs) for k, v in obj.items()}
    return obj


@SLOWER
@given(_json_docs(), st.sampled_from([None, 0, 2]), st.booleans(), st.booleans())
def test_decode_json_lean_agrees_with_json_loads(
    doc: Any, indent: Optional[int], ascii_only: bool, slash: bool
) -> None:
    text = json.dumps(doc, indent=indent, ensure_ascii=ascii_only)
    if slash:
        text = text.replace("/", "\\/")  # some servers escape slashes: such strings take the slow path
    data = text.encode("utf-8")
    obj, blobs = decode_json_lean(data)
    assert _resolve(obj, blobs) == json.loads(data)
    for blob in blobs:
        assert len(blob) >= 1024 and b"\\" not in bytes(blob)


@SLOWER
@given(st.binary(max_size=300))
def test_decode_json_lean_rejects_like_json(data: bytes) -> None:
    try:
        expected = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        expected = ValueError
    try:
        obj, blobs = decode_json_lean(data)
        got = _resolve(obj, blobs)
    except ValueError:
        got = ValueError
    assert got == expected


# --------------------------------------------------------------------------------------
# Secret scrubbing of --save-response, whatever the chunking
# --------------------------------------------------------------------------------------

SECRET = st.text(st.sampled_from("sk-abAB01_"), min_size=4, max_size=24)


@SLOWER
@given(
    secret=SECRET,
    pieces=st.lists(st.one_of(st.binary(max_size=30), st.just(b"<KEY>")), max_size=12),
    cuts=st.lists(st.integers(0, 10_000), max_size=10),
)
def test_raw_sink_scrubs_the_key_across_chunks(secret: str, pieces: List[bytes], cuts: List[int]) -> None:
    gpt_image.current_run().secrets[:] = []
    register_secret(secret)
    key = secret.encode()
    raw = b"".join(key if p == b"<KEY>" else p for p in pieces)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "raw.sse")
        sink = RawSink(path, overwrite=False)
        for chunk in _split(raw, cuts):
            sink.write(chunk)
        sink.commit()
        with open(path, "rb") as handle:
            saved = handle.read()
        assert os.listdir(folder) == ["raw.sse"]
    assert saved == raw.replace(key, b"***")
    assert key not in saved or key in raw.replace(key, b"***")
    assert redact(raw.decode("latin-1")) == raw.decode("latin-1").replace(secret, "***")

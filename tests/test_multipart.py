"""The hand-written multipart/form-data encoder of the edits route.

Golden bodies with a fixed boundary (the expected bytes are written out here by hand), header escaping,
the field-name styles, form values as the SDK writes them, Content-Length, re-iteration for retries,
lazy reading from disk, and a round trip through a different parser (the standard library's email
parser inside tests/fakeapi.py).
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Any, Callable, List, Sequence

import gpt_image as gi
import pytest
from conftest import SENTINEL_KEY, Result
from fakeapi import FakeAPI, Reply, error_reply, parse_multipart

# Tiny "images": only the first bytes matter to the sniffer, and the rest is chosen to look dangerous
# inside a multipart body (CRLF, "--", a fake boundary, a lone CR, the closing-delimiter shape).
PNG_BYTES = b"\x89PNG\r\n\x1a\n--BOUNDARY\r\n\r\n--x--\r"
JPEG_BYTES = b"\xff\xd8\xff\xe0\r\n--\r\n"
WEBP_BYTES = b"RIFF\x0c\x00\x00\x00WEBPVP8 "


def _write(folder: Path, name: str, data: bytes) -> str:
    path = folder / name
    path.write_bytes(data)
    return str(path)


def _image(folder: Path, name: str, data: bytes) -> gi.InputImage:
    return gi.inspect_image(_write(folder, name, data), "--image")


def _job(folder: Path, *args: str) -> gi.Job:
    """Validate an edits command line the way main() does (cwd-independent, no .env)."""
    parsed = gi.build_parser().parse_args(["edits", *args])
    config = gi.load_config({"OPENAI_API_KEY": SENTINEL_KEY}, None, cwd=str(folder), root=str(folder))
    return gi.validate(vars(parsed), config)


# --------------------------------------------------------------------------------------
# Golden bodies
# --------------------------------------------------------------------------------------


def test_golden_body_byte_for_byte(tmp_path: Path) -> None:
    png = _image(tmp_path, "a.png", PNG_BYTES)
    jpg = _image(tmp_path, "b.jpg", JPEG_BYTES)
    mask = _image(tmp_path, "m.png", PNG_BYTES)
    fields = [("model", "gpt-image-2"), ("prompt", 'two\r\nlines "quoted" \u00fc \u2014 --BOUNDARY')]
    files = [gi.FilePart("image[]", png), gi.FilePart("image[]", jpg), gi.FilePart("mask", mask)]

    body, content_type = gi.encode_multipart(fields, files, "BOUNDARY")

    expected = (
        b"--BOUNDARY\r\n"
        b'Content-Disposition: form-data; name="model"\r\n'
        b"\r\n"
        b"gpt-image-2\r\n"
        b"--BOUNDARY\r\n"
        b'Content-Disposition: form-data; name="prompt"\r\n'
        b"\r\n"
        b'two\r\nlines "quoted" \xc3\xbc \xe2\x80\x94 --BOUNDARY\r\n'
        b"--BOUNDARY\r\n"
        b'Content-Disposition: form-data; name="image[]"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n"
        b"\r\n"
        b"\x89PNG\r\n\x1a\n--BOUNDARY\r\n\r\n--x--\r"
        b"\r\n"
        b"--BOUNDARY\r\n"
        b'Content-Disposition: form-data; name="image[]"; filename="b.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n"
        b"\r\n"
        b"\xff\xd8\xff\xe0\r\n--\r\n"
        b"\r\n"
        b"--BOUNDARY\r\n"
        b'Content-Disposition: form-data; name="mask"; filename="m.png"\r\n'
        b"Content-Type: image/png\r\n"
        b"\r\n"
        b"\x89PNG\r\n\x1a\n--BOUNDARY\r\n\r\n--x--\r"
        b"\r\n"
        b"--BOUNDARY--\r\n"
    )
    assert content_type == "multipart/form-data; boundary=BOUNDARY"
    assert b"".join(body) == expected
    assert body.length == len(expected)


def test_golden_edits_request_from_the_command_line(tmp_path: Path) -> None:
    """The whole mapping: flags -> fields (order, values) -> parts -> bytes, for the issue's command."""
    refs = tmp_path / "refs"
    refs.mkdir()
    _write(refs, "subject.png", PNG_BYTES)
    _write(refs, "background.webp", WEBP_BYTES)
    job = _job(
        tmp_path,
        "--prompt",
        "Blend",
        "--image",
        str(refs / "subject.png"),
        "--image",
        str(refs / "background.webp"),
        "--output",
        str(tmp_path / "out" / "edit-{index}.png"),
        "--image-field-style",
        "brackets",
        "--n",
        "2",
    )

    request = gi.build_edits_request(job, boundary="b0undary")

    expected = (
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="model"\r\n\r\n'
        b"gpt-image-2\r\n"
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="prompt"\r\n\r\n'
        b"Blend\r\n"
        b"--b0undary\r\n"  # no output_format part: .png is the API's default and --format was not given
        b'Content-Disposition: form-data; name="n"\r\n\r\n'
        b"2\r\n"
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="image[]"; filename="subject.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
        b"\x89PNG\r\n\x1a\n--BOUNDARY\r\n\r\n--x--\r\r\n"
        b"--b0undary\r\n"
        b'Content-Disposition: form-data; name="image[]"; filename="background.webp"\r\n'
        b"Content-Type: image/webp\r\n\r\n"
        b"RIFF\x0c\x00\x00\x00WEBPVP8 \r\n"
        b"--b0undary--\r\n"
    )
    assert b"".join(request.body) == expected
    assert request.headers["Content-Type"] == "multipart/form-data; boundary=b0undary"
    assert request.method == "POST"
    assert request.url == "https://api.openai.com/v1/images/edits"
    assert request.describe()["content_length"] == len(expected)


def test_mask_is_the_last_part_named_mask(tmp_path: Path) -> None:
    png = _image(tmp_path, "one.png", PNG_BYTES)
    mask = _image(tmp_path, "mask.png", b"\x89PNG\r\n\x1a\n")
    body, _ = gi.encode_multipart([], [gi.FilePart("image", png), gi.FilePart("mask", mask)], "X")
    assert b"".join(body) == (
        b"--X\r\n"
        b'Content-Disposition: form-data; name="image"; filename="one.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
        b"\x89PNG\r\n\x1a\n--BOUNDARY\r\n\r\n--x--\r\r\n"
        b"--X\r\n"
        b'Content-Disposition: form-data; name="mask"; filename="mask.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
        b"\x89PNG\r\n\x1a\n\r\n"
        b"--X--\r\n"
    )


def test_empty_form_is_just_the_closing_delimiter() -> None:
    body, content_type = gi.encode_multipart([], [], "Q")
    assert b"".join(body) == b"--Q--\r\n"
    assert body.length == 7
    assert content_type == "multipart/form-data; boundary=Q"


# --------------------------------------------------------------------------------------
# Escaping
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "sent", "read_back"),
    [
        ('say "hi".png', b"say %22hi%22.png", "say %22hi%22.png"),
        ("two\r\nlines.png", b"two%0D%0Alines.png", "two%0D%0Alines.png"),
        ("cr\rlf\n.png", b"cr%0Dlf%0A.png", "cr%0Dlf%0A.png"),
        ("back\\slash.png", b"back\\\\slash.png", "back\\slash.png"),
        ("semi;colon=x.png", b"semi;colon=x.png", "semi;colon=x.png"),
        ("caf\u00e9.png", b"caf\xc3\xa9.png", "caf\u00e9.png"),
    ],
)
def test_file_names_are_escaped(tmp_path: Path, raw: str, sent: bytes, read_back: str) -> None:
    if sys.platform == "win32" and any(c in raw for c in '"\r\n\\'):
        pytest.skip("Windows cannot name a file like that")
    image = _image(tmp_path, raw, PNG_BYTES)
    body, content_type = gi.encode_multipart([("model", "m")], [gi.FilePart("image", image)], "B")
    data = b"".join(body)
    header = (
        b'Content-Disposition: form-data; name="image"; filename="'
        + sent
        + b'"\r\nContent-Type: image/png\r\n\r\n'
    )
    assert header in data
    parts, defects = parse_multipart(content_type, data)
    assert defects == []
    assert [(p.name, p.filename, p.content_type) for p in parts] == [
        ("model", None, None),
        ("image", read_back, "image/png"),
    ]
    assert parts[1].data == PNG_BYTES


def test_a_file_name_cannot_inject_headers_or_parts(tmp_path: Path) -> None:
    if sys.platform == "win32":
        pytest.skip("Windows cannot name a file like that")
    evil = 'x.png"\r\nContent-Type: evil-type\r\n\r\n--B\r\nContent-Disposition: form-data; name="model"\r\n\r\nevil'
    image = _image(tmp_path, evil, PNG_BYTES)
    body, content_type = gi.encode_multipart([("model", "gpt-image-2")], [gi.FilePart("image", image)], "B")
    data = b"".join(body)
    # Every CR and LF outside the file content belongs to the framing: the header is a single line.
    lines = data.split(b"\r\n")
    assert lines[5] == (
        b'Content-Disposition: form-data; name="image"; filename="x.png%22%0D%0AContent-Type: evil-type'
        b'%0D%0A%0D%0A--B%0D%0AContent-Disposition: form-data; name=%22model%22%0D%0A%0D%0Aevil"'
    )
    assert lines[6] == b"Content-Type: image/png"
    assert lines.count(b"--B") == 2
    parts, defects = parse_multipart(content_type, data)
    assert defects == []
    assert [p.name for p in parts] == ["model", "image"]
    assert parts[0].text == "gpt-image-2"
    assert parts[1].content_type == "image/png"
    assert parts[1].data == PNG_BYTES


def test_field_names_are_escaped_too() -> None:
    body, _ = gi.encode_multipart([('we"ird\r\nname', "v\r\n--B--\r\nstill the value")], [], "B")
    data = b"".join(body)
    assert data == (
        b"--B\r\n"
        b'Content-Disposition: form-data; name="we%22ird%0D%0Aname"\r\n\r\n'
        b"v\r\n--B--\r\nstill the value\r\n"  # values are content, not headers: sent as they are
        b"--B--\r\n"
    )


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="needs a file system that takes any bytes")
def test_a_file_name_that_is_not_utf8_is_sent_with_a_replacement(tmp_path: Path) -> None:
    raw = os.fsencode(str(tmp_path)) + b"/bad\xff.png"
    with open(raw, "wb") as handle:
        handle.write(PNG_BYTES)
    image = gi.inspect_image(os.fsdecode(raw), "--image")
    body, content_type = gi.encode_multipart([], [gi.FilePart("image", image)], "B")
    data = b"".join(body)
    assert b'filename="bad?.png"' in data
    assert body.length == len(data)
    parts, defects = parse_multipart(content_type, data)
    assert defects == [] and parts[0].data == PNG_BYTES


# --------------------------------------------------------------------------------------
# Field names and values
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "count", "names"),
    [
        ("auto", 1, ["image"]),
        ("auto", 2, ["image[]", "image[]"]),
        ("auto", 16, ["image[]"] * 16),
        ("simple", 1, ["image"]),
        ("simple", 3, ["image", "image", "image"]),
        ("brackets", 1, ["image[]"]),
        ("brackets", 3, ["image[]", "image[]", "image[]"]),
        ("indexed", 1, ["image[0]"]),
        ("indexed", 3, ["image[0]", "image[1]", "image[2]"]),
    ],
)
def test_image_field_names(style: str, count: int, names: List[str]) -> None:
    assert gi.image_field_names(style, count) == names


@pytest.mark.parametrize(
    ("value", "text"),
    [(True, "true"), (False, "false"), (2, "2"), (0, "0"), (100, "100"), ("high", "high"), ("", "")],
)
def test_form_values_as_the_sdk_sends_them(value: Any, text: str) -> None:
    assert gi.form_value(value) == text


@pytest.mark.parametrize(
    ("style", "count", "names"),
    [
        ("auto", 1, ["image"]),
        ("auto", 3, ["image[]"] * 3),
        ("simple", 3, ["image"] * 3),
        ("brackets", 3, ["image[]"] * 3),
        ("indexed", 3, ["image[0]", "image[1]", "image[2]"]),
    ],
)
def test_every_field_style_on_the_wire(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path, style: str, count: int, names: List[str]
) -> None:
    fake.strict = style != "simple"  # the real API refuses a repeated bare `image`; see the next test
    order = ["subject.png", "background.png", "product.png"][:count]
    args = [a for name in order for a in ("--image", f"refs/{name}")]
    result = cli("edits", "--prompt", "p", *args, "--output", "out.png", "--image-field-style", style)
    assert result.code == 0, result.err
    rec = fake.last
    files = rec.files()
    assert [p.name for p in files] == names
    assert [p.filename for p in files] == order
    assert [p.data for p in files] == [(images_dir / n).read_bytes() for n in order]
    assert all(p.content_type == "image/png" for p in files)
    assert rec.multipart_defects == []


def test_simple_style_with_several_images_is_what_the_api_refuses(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path
) -> None:
    result = cli(
        "edits", "--prompt", "p", "--image", "refs/subject.png", "--image", "refs/background.png",
        "--output", "out.png", "--image-field-style", "simple",
    )  # fmt: skip
    assert result.code == 4
    assert "Duplicate parameter: 'image'" in result.err
    assert len(fake.requests) == 1  # a 400 is not retried


def test_text_fields_as_the_sdk_sends_them(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path
) -> None:
    result = cli(
        "edits", "--prompt", "Make it \"pop\"\nsecond line", "--image", "refs/subject.png",
        "--output", "out/x.webp", "--compression", "80", "--quality", "high", "--size", "1024x1536",
        "--background", "opaque", "--user", "user-42", "--stream", "--partial-images", "1",
        "--model", "gpt-image-2.6-sunburst", "--input-fidelity", "high",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert fake.last.fields == {
        "model": "gpt-image-2.6-sunburst",
        "prompt": 'Make it "pop"\nsecond line',
        "size": "1024x1536",
        "quality": "high",
        "background": "opaque",
        "output_format": "webp",
        "output_compression": "80",
        "input_fidelity": "high",
        "user": "user-42",
        "partial_images": "1",
        "stream": "true",
    }


@pytest.mark.parametrize(
    "output, flags, sent",
    [("out.png", [], None), ("out.png", ["--format", "png"], "png"), ("out.jpg", [], "jpeg")],
)
def test_output_format_field_only_when_asked_for_or_not_png(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path, output: str, flags: List[str], sent: Any
) -> None:
    result = cli("edits", "--prompt", "p", "--image", "refs/subject.png", "--output", output, *flags)
    assert result.code == 0, result.err
    assert fake.last.fields.get("output_format") == sent
    assert [part.name for part in fake.last.parts].count("output_format") == (0 if sent is None else 1)


# --------------------------------------------------------------------------------------
# Content-Length, re-iteration, laziness
# --------------------------------------------------------------------------------------


def _sizes() -> Sequence[int]:
    chunk = gi.FILE_CHUNK_BYTES
    return (0, 1, 2, 3, chunk - 1, chunk, chunk + 1, 2 * chunk + 5)


@pytest.mark.parametrize("encoding", ["raw", "base64"])
def test_content_length_is_the_bytes_produced(tmp_path: Path, encoding: str) -> None:
    import base64

    rng = random.Random(7)
    for size in _sizes():
        data = rng.getrandbits(8 * size).to_bytes(size, "little") if size else b""
        path = _write(tmp_path, f"f{size}.bin", data)
        segment = gi.FileSegment(path, size, encoding)
        produced = b"".join(segment.chunks())
        assert len(produced) == segment.length
        assert produced == (data if encoding == "raw" else base64.b64encode(data))
        body = gi.StreamBody([b"head", segment, b"", b"tail"])
        assert body.length == len(b"".join(body)) == 8 + segment.length


def test_multipart_length_matches_for_many_parts(tmp_path: Path) -> None:
    rng = random.Random(3)
    files = []
    for i in range(16):
        size = rng.randrange(0, 3 * gi.FILE_CHUNK_BYTES // 2)
        data = PNG_BYTES + bytes(rng.getrandbits(8) for _ in range(64)) + b"\r\n--" * (size // 100)
        files.append(gi.FilePart("image[]", _image(tmp_path, f"i{i}.png", data)))
    fields = [("model", "gpt-image-2"), ("prompt", "\u00fc" * 1000), ("n", "3")]
    body, content_type = gi.encode_multipart(fields, files, gi.new_boundary())
    data = b"".join(body)
    assert body.length == len(data)
    parts, defects = parse_multipart(content_type, data)
    assert defects == []
    assert len(parts) == 19
    assert [p.data for p in parts[3:]] == [Path(f.image.path).read_bytes() for f in files]


def test_iterating_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    big = PNG_BYTES + os.urandom(2 * gi.FILE_CHUNK_BYTES + 123)
    image = _image(tmp_path, "big.png", big)
    body, _ = gi.encode_multipart([("model", "m")], [gi.FilePart("image", image)], "B")
    first = b"".join(body)
    second = b"".join(body)
    assert first == second
    assert len(first) == body.length
    assert big in first


def test_new_boundaries_differ_and_are_header_safe() -> None:
    seen = {gi.new_boundary() for _ in range(50)}
    assert len(seen) == 50
    for boundary in seen:
        assert 1 <= len(boundary) <= 70  # RFC 2046
        assert all(c.isalnum() or c in "-_" for c in boundary)


def test_the_body_holds_no_file_content_and_reads_in_bounded_chunks(tmp_path: Path) -> None:
    big = PNG_BYTES + os.urandom(5 * gi.FILE_CHUNK_BYTES)
    image = _image(tmp_path, "big.png", big)
    body, _ = gi.encode_multipart([("model", "m")], [gi.FilePart("image", image)], "B")
    in_memory = sum(len(s) for s in body.segments if isinstance(s, bytes))
    assert in_memory < 300  # headers and delimiters only; the file stays on disk
    chunks = list(body)
    assert max(len(c) for c in chunks) <= gi.FILE_CHUNK_BYTES


def test_the_file_is_read_when_sent_not_when_planned(tmp_path: Path) -> None:
    image = _image(tmp_path, "late.png", PNG_BYTES + b"AAAA")
    body, _ = gi.encode_multipart([], [gi.FilePart("image", image)], "B")
    Path(image.path).write_bytes(PNG_BYTES + b"BBBB")  # same size, new content, after planning
    data = b"".join(body)
    assert PNG_BYTES + b"BBBB" in data and b"AAAA" not in data


@pytest.mark.parametrize("change", [-1, +1, -len(PNG_BYTES) - 10, +5 * 1024 * 1024])
def test_a_file_that_changed_size_after_planning_stops_the_body(tmp_path: Path, change: int) -> None:
    original = PNG_BYTES + b"z" * 10
    image = _image(tmp_path, "moving.png", original)
    body, _ = gi.encode_multipart([("model", "m")], [gi.FilePart("image", image)], "B")
    new_size = max(0, len(original) + change)
    Path(image.path).write_bytes((original * (new_size // len(original) + 1))[:new_size])
    produced = bytearray()
    with pytest.raises(gi.UsageError, match="changed size while it was being sent"):
        for chunk in body:
            produced += chunk
    # Never more than planned, and never the closing delimiter: the server cannot see a whole body.
    assert len(produced) <= body.length - len(b"\r\n--B--\r\n")
    assert not produced.endswith(b"--B--\r\n")


def test_a_file_that_vanished_after_planning_is_a_usage_error(tmp_path: Path) -> None:
    image = _image(tmp_path, "gone.png", PNG_BYTES)
    body, _ = gi.encode_multipart([], [gi.FilePart("image", image)], "B")
    os.unlink(image.path)
    with pytest.raises(gi.UsageError, match="cannot read it while sending"):
        b"".join(body)


def _validate_then(action: Callable[[gi.Job], None], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run `action` on the Job between validation and sending (as if the user touched the files)."""
    real = gi.validate

    def validate_and_act(args: Any, config: Any) -> gi.Job:
        job = real(args, config)
        action(job)
        return job

    monkeypatch.setattr(gi, "validate", validate_and_act)


@pytest.mark.parametrize("how", ["grew", "shrank", "deleted"])
def test_changed_input_during_a_run_is_one_clean_error(
    cli: Callable[..., Result],
    fake: FakeAPI,
    images_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    def touch(job: gi.Job) -> None:
        path = Path(job.images[1].path)
        if how == "grew":
            path.write_bytes(path.read_bytes() + b"\0" * 3_000_000)
        elif how == "shrank":
            path.write_bytes(path.read_bytes()[:50])
        else:
            path.unlink()

    _validate_then(touch, monkeypatch)
    result = cli(
        "edits", "--prompt", "p", "--image", "refs/subject.png", "--image", "refs/background.png",
        "--output", "out.png", "--retries", "2",
    )  # fmt: skip
    assert result.code == 2, result.err
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "background.png" in errors[0], result.err
    assert "Traceback" not in result.err
    assert not (Path("out.png")).exists()
    # At most one attempt, and the fake never received a complete body.
    assert len(fake.requests) <= 1
    for rec in fake.requests:
        assert not rec.complete or rec.body_size < int(rec.header("content-length") or 0)


# --------------------------------------------------------------------------------------
# The fake's parser (email.parser) reads everything back
# --------------------------------------------------------------------------------------


def _nasty(seed: int, size: int) -> bytes:
    """Binary data dense in CR, LF, '-' and near-boundary strings, after a PNG signature."""
    rng = random.Random(seed)
    pieces = [b"\r\n", b"\r", b"\n", b"--", b"\r\n--", b"\r\n--gpt-image-", b"--\r\n", b"\x00", b"\xff"]
    out = bytearray(b"\x89PNG\r\n\x1a\n")
    while len(out) < size:
        out += rng.choice(pieces) if rng.random() < 0.5 else bytes([rng.randrange(256)])
    return bytes(out[:size])


@pytest.mark.parametrize("ending", [b"", b"\r\n", b"\r", b"\n", b"--", b"\r\n\r\n"])
def test_email_parser_reads_every_part_back_intact(tmp_path: Path, ending: bytes) -> None:
    datas = [_nasty(i, 5000 + 997 * i) + ending for i in range(4)]
    files = [gi.FilePart(f"image[{i}]", _image(tmp_path, f"n{i}.png", d)) for i, d in enumerate(datas)]
    fields = [("model", "gpt-image-2"), ("prompt", "a\r\n--b\r\n\r\nc" + ending.decode()), ("n", "2")]
    body, content_type = gi.encode_multipart(fields, files, gi.new_boundary())
    parts, defects = parse_multipart(content_type, b"".join(body))
    assert defects == []
    assert [(p.name, p.filename, p.content_type) for p in parts] == [
        ("model", None, None),
        ("prompt", None, None),
        ("n", None, None),
    ] + [(f"image[{i}]", f"n{i}.png", "image/png") for i in range(4)]
    assert [p.data for p in parts[3:]] == datas
    assert parts[1].data == ("a\r\n--b\r\n\r\nc" + ending.decode()).encode()
    assert parts[2].text == "2"


def test_the_fake_receives_identical_bytes_on_a_retry(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path
) -> None:
    noisy = _nasty(99, 3 * gi.FILE_CHUNK_BYTES // 2)
    (images_dir / "noisy.png").write_bytes(noisy)
    fake.queue(error_reply(500, "try again", type="server_error", headers={"retry-after-ms": "0"}))
    result = cli(
        "edits", "--prompt", "p", "--image", "refs/noisy.png", "--image", "refs/subject.png",
        "--mask", "refs/mask.png", "--output", "out.png",
    )  # fmt: skip
    # The mask (64x48) does not match noisy.png's unknown size: the sniffer finds no IHDR, so no check.
    assert result.code == 0, result.err
    first, second = fake.requests
    assert first.body == second.body
    assert first.header("content-type") == second.header("content-type")
    assert len(second.body) == int(second.header("content-length") or -1) == second.body_size
    assert [p.data for p in second.files()] == [
        noisy,
        (images_dir / "subject.png").read_bytes(),
        (images_dir / "mask.png").read_bytes(),
    ]
    assert [p.name for p in second.files()] == ["image[]", "image[]", "mask"]


def test_content_length_header_equals_the_bytes_received(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path
) -> None:
    fake.queue(Reply(json={"created": 1, "data": []}))  # no image: exit 6, but the request is what we check
    result = cli("edits", "--prompt", "p", "--image", "refs/photo.webp", "--output", "out.png")
    assert result.code == 6
    rec = fake.last
    assert rec.complete and not rec.chunked
    assert int(rec.header("content-length") or -1) == rec.body_size == len(rec.body)
    assert rec.files("image")[0].data == (images_dir / "photo.webp").read_bytes()

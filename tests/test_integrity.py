"""Complete images only (design.md "What it prints"): a final image is saved as a success only when its bytes
are whole. A PNG walks to IEND with valid chunk CRCs, a JPEG ends with its EOI marker, a WEBP is as long as
its RIFF header says. Anything else is exit 6 naming what is missing, with nothing at the planned path (the
paid-for bytes go to the temporary folder under a name with `incomplete` in it). A bad preview is a warning and
is not saved. Every real image from the fake still saves.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import gpt_image
import pytest
from conftest import Result, assert_one_error, png_chunk
from fakeapi import (
    SSE,
    FakeAPI,
    Reply,
    images_body,
    images_stream_events,
    make_image,
    make_mask,
    noise_image,
    responses_body,
    responses_stream_events,
)

CLI = Callable[..., Result]
FORMATS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}


@pytest.fixture(autouse=True)
def rescue_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The temporary folder where kept-aside bytes go, inside the test's own folder."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setattr(gpt_image, "skill_root", lambda: str(tmp_path / "no-skill-root"))
    return folder


def png_with_chunks(pieces: int = 4) -> bytes:
    """A real PNG (Pillow's, from the fake) with its image data split over several IDAT chunks, plus a tEXt."""
    original = make_image("png", (64, 48), (10, 120, 200))
    pos, idat, head = 8, b"", b""
    while pos < len(original):
        length = struct.unpack(">I", original[pos : pos + 4])[0]
        kind, data = original[pos + 4 : pos + 8], original[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            head = png_chunk(kind, data)
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    step = -(-len(idat) // pieces)
    body = b"".join(png_chunk(b"IDAT", idat[i : i + step]) for i in range(0, len(idat), step))
    return (
        original[:8] + head + png_chunk(b"tEXt", b"Comment\x00from the test") + body + png_chunk(b"IEND", b"")
    )


def png_chunk_offsets(data: bytes) -> List[Tuple[int, bytes, int]]:
    """(offset, type, length) of every chunk."""
    found, pos = [], 8
    while pos + 8 <= len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        found.append((pos, data[pos + 4 : pos + 8], length))
        pos += 12 + length
    return found


WHOLE = {
    "png": png_with_chunks(),
    "jpeg": make_image("jpeg", (64, 48), (200, 30, 30)),
    "webp": make_image("webp", (64, 48), (30, 200, 30)),
}


# --- check_complete on its own ---------------------------------------------------------------------------------


def every_real_image() -> List[Tuple[str, bytes]]:
    images = [(fmt, data) for fmt, data in WHOLE.items()]
    for fmt in FORMATS:
        for mode in ("RGB", "RGBA"):
            for size in ((1, 1), (64, 48), (1024, 8)):
                images.append((fmt, make_image(fmt, size, (1, 2, 3), mode)))
    images += [("png", make_mask((64, 48))), ("png", noise_image("png", 300_000))]
    images += [("jpeg", noise_image("jpeg", 50_000)), ("webp", noise_image("webp", 50_000))]
    return images


@pytest.mark.parametrize(
    "fmt, data", every_real_image(), ids=lambda v: v if isinstance(v, str) else str(len(v))
)
def test_real_images_are_complete(fmt: str, data: bytes) -> None:
    assert gpt_image.sniff_format(data[:16]) == fmt
    assert gpt_image.check_complete(data, fmt) is None
    assert gpt_image.check_complete(memoryview(data), fmt) is None
    assert gpt_image.check_complete(bytearray(data), fmt) is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_at_every_offset(fmt: str) -> None:
    whole = WHOLE[fmt]
    for cut in range(1, len(whole)):
        problem = gpt_image.check_complete(whole[:cut], fmt)
        assert problem, f"{fmt} cut at {cut} of {len(whole)} passed as complete"
        assert fmt.upper() in problem


def test_png_names_the_chunk_it_was_cut_in() -> None:
    whole = WHOLE["png"]
    for offset, kind, length in png_chunk_offsets(whole):
        if not length:
            continue  # IEND: cut inside it is cut before its end, below
        problem = gpt_image.check_complete(whole[: offset + 8 + length // 2 + 1], "png")
        assert problem and f"{kind.decode()} chunk at byte {offset:,}" in problem and "IEND" in problem
    assert "before its IEND" in (gpt_image.check_complete(whole[:-12], "png") or "")  # cut between chunks


@pytest.mark.parametrize("where", ["data", "crc", "type"])
def test_png_bad_crc_in_any_chunk(where: str) -> None:
    whole = WHOLE["png"]
    for offset, kind, length in png_chunk_offsets(whole):
        if where == "data" and not length:
            continue
        spot = {"data": offset + 8 + length // 2, "crc": offset + 8 + length, "type": offset + 5}[where]
        broken = bytearray(whole)
        broken[spot] ^= 0x20  # one flipped bit (in a type, the letter's case: the CRC covers the type too)
        problem = gpt_image.check_complete(bytes(broken), "png")
        assert problem, (kind, where)
        if where == "type" and kind == b"IHDR":
            assert "IHDR" in problem  # iHDR is not an IHDR
        else:
            assert "CRC" in problem and f"chunk at byte {offset:,}" in problem, problem


def test_png_without_iend_or_ihdr() -> None:
    whole = WHOLE["png"]
    no_iend = whole[: png_chunk_offsets(whole)[-1][0]]
    assert "before its IEND" in (gpt_image.check_complete(no_iend, "png") or "")
    headless = whole[:8] + whole[8 + 25 :]
    assert "IHDR" in (gpt_image.check_complete(headless, "png") or "")
    huge = whole[:8] + b"\xff\xff\xff\xffIHDR" + bytes(20)  # a length far past the end
    assert "cut short in its IHDR chunk" in (gpt_image.check_complete(huge, "png") or "")


def test_jpeg_without_eoi() -> None:
    whole = WHOLE["jpeg"]
    assert whole.endswith(b"\xff\xd9")
    for broken in (whole[:-2], whole[:-1], whole + b"\x00", whole[:-2] + b"\xff\xd8", whole + b"junk"):
        problem = gpt_image.check_complete(broken, "jpeg")
        assert problem and "end-of-image marker" in problem and "FF D9" in problem


@pytest.mark.parametrize("delta", [-50, -2, -1, 1, 2, 1000])
def test_webp_riff_length_must_match(delta: int) -> None:
    whole = WHOLE["webp"]
    declared = struct.unpack("<I", whole[4:8])[0]
    wrong = whole[:4] + struct.pack("<I", declared + delta) + whole[8:]
    problem = gpt_image.check_complete(wrong, "webp")
    assert problem and f"{len(whole):,} bytes" in problem and f"{declared + delta + 8:,}" in problem
    if delta > 0:
        assert "cut short" in problem
    longer = whole + b"\x00" * abs(delta)  # bytes after the end the header gives
    assert "RIFF header says" in (gpt_image.check_complete(longer, "webp") or "")


def test_webp_shorter_than_its_header() -> None:
    assert "shorter than its RIFF header" in (
        gpt_image.check_complete(b"RIFF\x00\x00\x00\x00WEB", "webp") or ""
    )


# --- Through the program: finals ---------------------------------------------------------------------------------


def kept_aside(folder: Path) -> List[Path]:
    return sorted(folder.iterdir())


# Where to cut a whole image of n bytes: in its header, in its data, just before its end.
CUTS: Dict[str, Callable[[int], int]] = {
    "at-16": lambda n: 16,
    "at-30": lambda n: 30,
    "a-third": lambda n: n // 3,
    "half": lambda n: n // 2,
    "end-12": lambda n: n - 12,
    "end-4": lambda n: n - 4,
    "end-2": lambda n: n - 2,
    "end-1": lambda n: n - 1,
}


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_truncated_final_is_exit_6_and_nothing_at_the_path(
    cli: CLI, fake: FakeAPI, env: Path, rescue_dir: Path, fmt: str, cut: str
) -> None:
    whole = WHOLE[fmt]
    broken = whole[: CUTS[cut](len(whole))]
    fake.queue(Reply(json=images_body(fmt=fmt, images=[broken])))
    output = f"out/poster{FORMATS[fmt]}"
    result = cli("generations", "--prompt", "a poster", "--output", output)
    assert_one_error(result, 6, "image 1 is incomplete", f"nothing was saved at {output}", "kept at")
    assert not (env / output).exists()
    assert not list((env / "out").glob(".*")), "a temporary file was left behind"
    (kept,) = kept_aside(rescue_dir)
    assert "incomplete" in kept.name and kept.suffix == FORMATS[fmt]
    assert kept.read_bytes() == broken  # the paid-for bytes, exactly
    assert str(kept) in result.err
    assert result.out == ""


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("route", ["generations", "edits", "responses"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_every_route_refuses_an_incomplete_final(
    cli: CLI, fake: FakeAPI, env: Path, images_dir: Path, rescue_dir: Path, fmt: str, route: str, stream: bool
) -> None:
    broken = WHOLE[fmt][:-3]
    if route == "responses":
        events: Any = responses_stream_events(partials=0, fmt=fmt, images=[broken])
        fake.queue(SSE(events) if stream else Reply(json=responses_body(fmt, images=[broken])))
        args = ["responses", "--input-text", "a poster"]
    else:
        kind = "generation" if route == "generations" else "edit"
        events = images_stream_events(kind, partials=0, fmt=fmt, images=[broken])
        fake.queue(SSE(events) if stream else Reply(json=images_body(fmt=fmt, images=[broken])))
        args = [route, "--prompt", "a poster"] + (["--image", "refs/subject.png"] if route == "edits" else [])
    output = f"out/p{FORMATS[fmt]}"
    result = cli(*args, "--output", output, *(["--stream"] if stream else []), "--json")
    assert result.code == 6, result.err
    failure = json.loads(result.out)
    assert failure["ok"] is False and failure["error"]["type"] == "response_error"
    assert failure["error"]["exit_code"] == 6 and "incomplete" in failure["error"]["message"]
    assert not (env / output).exists()
    assert len(kept_aside(rescue_dir)) == 1


def test_bad_crc_is_exit_6(cli: CLI, fake: FakeAPI, env: Path, rescue_dir: Path) -> None:
    broken = bytearray(WHOLE["png"])
    offset, _, length = png_chunk_offsets(bytes(broken))[3]  # the second IDAT
    broken[offset + 8 + length // 2] ^= 0xFF
    fake.queue(Reply(json=images_body(images=[bytes(broken)])))
    result = cli("generations", "--prompt", "a poster", "--output", "out/p.png")
    assert_one_error(result, 6, "CRC", f"IDAT chunk at byte {offset:,}", "out/p.png")
    assert not (env / "out" / "p.png").exists()


def test_missing_eoi_and_wrong_riff_are_exit_6(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.queue(Reply(json=images_body(fmt="jpeg", images=[WHOLE["jpeg"][:-2]])))
    result = cli("generations", "--prompt", "a poster", "--output", "out/p.jpg")
    assert_one_error(result, 6, "end-of-image marker")
    webp = WHOLE["webp"]
    wrong = webp[:4] + struct.pack("<I", len(webp)) + webp[8:]  # 8 bytes longer than the file
    fake.queue(Reply(json=images_body(fmt="webp", images=[wrong])))
    result = cli("generations", "--prompt", "a poster", "--output", "out/p.webp")
    assert_one_error(result, 6, "RIFF header says")
    assert not (env / "out" / "p.jpg").exists() and not (env / "out" / "p.webp").exists()


def test_one_bad_image_of_several(cli: CLI, fake: FakeAPI, env: Path, rescue_dir: Path) -> None:
    good = [make_image("png", color=(230, 25, 75)), make_image("png", color=(0, 130, 200))]
    fake.queue(Reply(json=images_body(n=3, images=[good[0], WHOLE["png"][:100], good[1]])))
    result = cli("generations", "--prompt", "a poster", "--output", "out/p-{index}.png", "--n", "3")
    message = assert_one_error(result, 6, "image 2 is incomplete", "saved as planned")
    assert "out/p-1.png" in message and "out/p-3.png" in message
    assert (env / "out" / "p-1.png").read_bytes() == good[0]
    assert (env / "out" / "p-3.png").read_bytes() == good[1]
    assert not (env / "out" / "p-2.png").exists()


def test_an_existing_file_is_left_alone(cli: CLI, fake: FakeAPI, env: Path) -> None:
    (env / "out").mkdir()
    (env / "out" / "p.png").write_bytes(b"precious")
    fake.queue(Reply(json=images_body(images=[WHOLE["png"][:-1]])))
    result = cli("generations", "--prompt", "a poster", "--output", "out/p.png", "--overwrite")
    assert result.code == 6, result.err
    assert (env / "out" / "p.png").read_bytes() == b"precious"


def test_when_the_bytes_cannot_be_kept(
    cli: CLI, fake: FakeAPI, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_room(*args: Any, **kwargs: Any) -> Tuple[int, str]:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", no_room)
    fake.queue(Reply(json=images_body(images=[WHOLE["png"][:-1]])))
    result = cli("generations", "--prompt", "a poster", "--output", "out/p.png")
    assert_one_error(result, 6, "incomplete", "could not be kept")
    assert not (env / "out" / "p.png").exists()


def test_save_response_keeps_the_raw_reply(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.queue(Reply(json=images_body(images=[WHOLE["png"][:-1]])))
    result = cli(
        "generations", "--prompt", "a poster", "--output", "out/p.png", "--save-response", "raw.json"
    )
    assert result.code == 6, result.err
    assert json.loads((env / "raw.json").read_bytes())["data"]  # what the API sent, for a report


# --- Previews -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_bad_preview_is_a_warning_and_not_saved(cli: CLI, fake: FakeAPI, env: Path, fmt: str) -> None:
    ext = FORMATS[fmt]
    previews = [WHOLE[fmt][:-5], make_image(fmt, color=(100, 100, 100))]
    final = make_image(fmt, color=(230, 25, 75))
    events = images_stream_events("generation", partials=2, fmt=fmt, images=[final], partial_images=previews)
    fake.queue(SSE(events))
    result = cli(
        "generations", "--prompt", "a poster", "--output", f"out/p{ext}", "--stream", "--partial-images", "2"
    )
    assert result.code == 0, result.err
    (warning,) = [line for line in result.err.splitlines() if line.startswith("warning:")]
    assert "preview 1 is incomplete" in warning and f"p.partial-1{ext}" in warning
    assert not (env / "out" / f"p.partial-1{ext}").exists()
    assert (env / "out" / f"p.partial-2{ext}").read_bytes() == previews[1]
    assert (env / "out" / f"p{ext}").read_bytes() == final
    assert result.out.split() == [f"out/p{ext}"]


def test_a_bad_responses_preview(cli: CLI, fake: FakeAPI, env: Path) -> None:
    previews = [WHOLE["png"][:50]]
    events = responses_stream_events(partials=1, images=[WHOLE["png"]], partial_images=previews)
    fake.queue(SSE(events))
    result = cli(
        "responses",
        "--input-text",
        "x",
        "--output",
        "out/r.png",
        "--stream",
        "--partial-images",
        "1",
        "--json",
    )
    assert result.code == 0, result.err
    obj = json.loads(result.out)
    assert obj["partials"] == [] and [i["path"] for i in obj["images"]] == ["out/r.png"]
    assert "preview 1 is incomplete" in result.err


# --- Every real image from the fake still saves -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("route", ["generations", "edits", "responses"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_the_fakes_images_all_save(
    cli: CLI, fake: FakeAPI, env: Path, images_dir: Path, rescue_dir: Path, fmt: str, route: str, stream: bool
) -> None:
    ext = FORMATS[fmt]
    args: List[str] = (
        ["responses", "--input-text", "x"]
        if route == "responses"
        else [route, "--prompt", "x"] + (["--image", "refs/subject.png"] if route == "edits" else [])
    )
    if stream:
        args += ["--stream", "--partial-images", "2"]
    result = cli(*args, "--output", f"out/a{ext}", "--json")
    assert result.code == 0, result.err
    obj: Dict[str, Any] = json.loads(result.out)
    saved = [Path(item["path"]) for item in obj["images"] + obj["partials"]]
    assert len(saved) == (3 if stream else 1)
    for path in saved:
        data = (env / path).read_bytes()
        assert gpt_image.check_complete(data, fmt) is None
    assert "warning" not in result.err
    assert kept_aside(rescue_dir) == []


def test_large_noise_images_save(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.image_bytes = 3_000_000
    result = cli(
        "generations", "--prompt", "x", "--output", "out/big.png", "--stream", "--partial-images", "1"
    )
    assert result.code == 0, result.err
    assert os.path.getsize(env / "out" / "big.png") >= 2_900_000

"""The edits route end to end against the fake: the issue's command, field names, content types from the
first bytes, pre-flight refusals (nothing sent), masks, input fidelity, streaming edits and --dry-run.
"""

from __future__ import annotations

import io
import os
import shlex
import sys
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest
from conftest import SCRIPT, Result, assert_one_error, error_lines, png_chunk, run_measured, write_padded_png
from fakeapi import SSE, FakeAPI, identify, make_image, make_mask

DONE_WHEN = (
    'edits --prompt "Blend the two references into one clean marketing illustration" '
    "--image refs/subject.png --image refs/background.png --mask refs/mask.png "
    "--output out/edit-{index}.png --image-field-style brackets --n 2"
)
PROMPT = "Blend the two references into one clean marketing illustration"
MiB = 1024 * 1024


def padded_png(path: Path, size: int, width: int = 64, height: int = 48, colour_type: int = 6) -> Path:
    """A PNG signature, IHDR and the start of an IDAT, then a hole up to `size` bytes (a sparse file)."""
    return write_padded_png(path, size, width, height, colour_type)


def pil_image(fmt: str, mode: str = "RGB", size: Tuple[int, int] = (64, 48), **options: object) -> bytes:
    from PIL import Image

    colour = (10, 120, 200, 100) if mode == "RGBA" else (10, 120, 200)
    out = io.BytesIO()
    Image.new(mode, size, colour[: len(mode)]).save(out, format=fmt, **options)  # type: ignore[arg-type]
    return out.getvalue()


def pil_mask(mode: str, **options: object) -> bytes:
    """A 64x48 PNG mask by Pillow in `mode`, opaque but for a clear box in the middle (a mask must mark
    something to change: one fully transparent pixel at least)."""
    from PIL import Image

    opaque: object = {"LA": (10, 255), "RGB": (10, 120, 200), "P": 1}[mode]
    clear: object = {"LA": (0, 0), "RGB": (0, 0, 0), "P": 0}[mode]
    image = Image.new(mode, (64, 48), opaque)  # type: ignore[arg-type]
    if mode == "P":
        image.putpalette([0, 0, 0, 10, 120, 200])
    image.paste(clear, (16, 12, 48, 36))  # type: ignore[arg-type]
    out = io.BytesIO()
    image.save(out, format="PNG", **options)  # type: ignore[arg-type]
    return out.getvalue()


def padded_mask(path: Path, size: int) -> Path:
    """A real, decodable 64x48 mask of exactly `size` bytes: a tEXt chunk of padding before IEND."""
    mask = make_mask((64, 48))
    filler = size - len(mask) - 12 - len(b"Comment\0")
    chunk = png_chunk(b"tEXt", b"Comment\0" + b"x" * filler)
    path.write_bytes(mask[:-12] + chunk + mask[-12:])
    assert path.stat().st_size == size
    return path


def assert_refused(result: Result, fake: FakeAPI, *needles: str) -> None:
    """Exit 2, exactly one error line naming the problem, no traceback, nothing sent, nothing written."""
    assert_one_error(result, 2, *needles)
    assert result.out == ""
    assert fake.requests == []
    assert not Path("out").exists()


def check_done_when(fake: FakeAPI, images_dir: Path, result: Result) -> None:
    assert result.code == 0, result.err
    assert result.lines == ["out/edit-1.png", "out/edit-2.png"]
    assert len(fake.requests) == 1
    rec = fake.last
    assert (rec.method, rec.path) == ("POST", "/v1/images/edits")
    assert rec.multipart_defects == []
    assert int(rec.header("content-length") or -1) == len(rec.body)
    # Parts in order: the text fields, then the images, then the mask; nothing else.
    assert [(p.name, p.filename, p.content_type) for p in rec.parts] == [
        ("model", None, None),
        ("prompt", None, None),  # no output_format: .png is the API's default and --format was not given
        ("n", None, None),
        ("image[]", "subject.png", "image/png"),
        ("image[]", "background.png", "image/png"),
        ("mask", "mask.png", "image/png"),
    ]
    assert rec.fields == {"model": "gpt-image-2", "prompt": PROMPT, "n": "2"}
    assert [p.data for p in rec.files()] == [
        (images_dir / name).read_bytes() for name in ("subject.png", "background.png", "mask.png")
    ]
    # The files are the images the fake sent, byte for byte, in order.
    written = [Path("out/edit-1.png").read_bytes(), Path("out/edit-2.png").read_bytes()]
    assert written == rec.sent_images
    assert [identify(data) for data in written] == [("final", 0), ("final", 1)]
    assert sorted(os.listdir("out")) == ["edit-1.png", "edit-2.png"]


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------


def test_done_when_command_in_process(cli: Callable[..., Result], fake: FakeAPI, images_dir: Path) -> None:
    check_done_when(fake, images_dir, cli(*shlex.split(DONE_WHEN)))


def test_done_when_command_as_a_subprocess(
    run: Callable[..., Result], fake: FakeAPI, images_dir: Path
) -> None:
    check_done_when(fake, images_dir, run(*shlex.split(DONE_WHEN)))


def test_done_when_command_with_json(cli: Callable[..., Result], fake: FakeAPI, images_dir: Path) -> None:
    result = cli(*shlex.split(DONE_WHEN), "--json")
    assert result.code == 0, result.err
    out = result.json
    assert out["ok"] is True and out["command"] == "edits" and out["model"] == "gpt-image-2"
    assert [(i["path"], i["index"], i["format"]) for i in out["images"]] == [
        ("out/edit-1.png", 1, "png"),
        ("out/edit-2.png", 2, "png"),
    ]
    assert [i["bytes"] for i in out["images"]] == [len(d) for d in fake.last.sent_images]
    assert out["request_id"] == fake.last.request_id


# --------------------------------------------------------------------------------------
# Field names and content types
# --------------------------------------------------------------------------------------


def test_single_image_is_the_field_image(cli: Callable[..., Result], fake: FakeAPI, images_dir: Path) -> None:
    result = cli("edits", "--prompt", "p", "--image", "refs/product.png", "--output", "out/one.png")
    assert result.code == 0, result.err
    assert [(p.name, p.filename) for p in fake.last.files()] == [("image", "product.png")]
    assert Path("out/one.png").read_bytes() == fake.last.sent_images[0]


def test_content_type_comes_from_the_first_bytes(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path
) -> None:
    # Misnamed on purpose: the extension must not decide the part's Content-Type.
    (images_dir / "really-jpeg.png").write_bytes((images_dir / "photo.jpg").read_bytes())
    (images_dir / "really-webp.jpg").write_bytes((images_dir / "photo.webp").read_bytes())
    (images_dir / "really-png.webp").write_bytes((images_dir / "subject.png").read_bytes())
    (images_dir / "no-extension").write_bytes((images_dir / "photo.jpg").read_bytes())
    names = [
        "photo.jpg",
        "photo.webp",
        "really-jpeg.png",
        "really-webp.jpg",
        "really-png.webp",
        "no-extension",
    ]
    args = [a for name in names for a in ("--image", f"refs/{name}")]
    result = cli("edits", "--prompt", "p", *args, "--output", "out/x.png")
    assert result.code == 0, result.err
    files = fake.last.files()
    assert [(p.filename, p.content_type) for p in files] == [
        ("photo.jpg", "image/jpeg"),
        ("photo.webp", "image/webp"),
        ("really-jpeg.png", "image/jpeg"),
        ("really-webp.jpg", "image/webp"),
        ("really-png.webp", "image/png"),
        ("no-extension", "image/jpeg"),
    ]
    assert [p.data for p in files] == [(images_dir / n).read_bytes() for n in names]
    assert all(p.content_type != "application/octet-stream" for p in fake.last.parts if p.filename)


def test_sixteen_images_are_allowed(cli: Callable[..., Result], fake: FakeAPI, images_dir: Path) -> None:
    result = cli("edits", "--prompt", "p", *["--image", "refs/subject.png"] * 16, "--output", "out/x.png")
    assert result.code == 0, result.err
    assert [p.name for p in fake.last.files()] == ["image[]"] * 16


# --------------------------------------------------------------------------------------
# Pre-flight refusals: exit 2, one error line, nothing sent
# --------------------------------------------------------------------------------------


def _refusal_cases() -> Dict[str, Tuple[Callable[[Path], List[str]], Tuple[str, ...]]]:
    def text_png(refs: Path) -> List[str]:
        return ["--image", "refs/notanimage.png"]

    def folder(refs: Path) -> List[str]:
        return ["--image", "refs"]

    def missing(refs: Path) -> List[str]:
        return ["--image", "refs/nope.png"]

    def seventeen(refs: Path) -> List[str]:
        return ["--image", "refs/subject.png"] * 17

    def too_big(refs: Path) -> List[str]:
        padded_png(refs / "huge.png", 50 * MiB + 1, colour_type=2)
        return ["--image", "refs/subject.png", "--image", "refs/huge.png"]

    def empty(refs: Path) -> List[str]:
        (refs / "empty.png").write_bytes(b"")
        return ["--image", "refs/empty.png"]

    def mask_no_alpha(refs: Path) -> List[str]:
        return ["--image", "refs/subject.png", "--mask", "refs/background.png"]

    def mask_jpeg(refs: Path) -> List[str]:
        return ["--image", "refs/subject.png", "--mask", "refs/photo.jpg"]

    def mask_jpeg_named_png(refs: Path) -> List[str]:
        (refs / "jmask.png").write_bytes((refs / "photo.jpg").read_bytes())
        return ["--image", "refs/subject.png", "--mask", "refs/jmask.png"]

    def mask_other_size(refs: Path) -> List[str]:
        (refs / "small-mask.png").write_bytes(make_mask((32, 32)))
        return ["--image", "refs/subject.png", "--mask", "refs/small-mask.png"]

    def mask_4mb(refs: Path) -> List[str]:
        padded_png(refs / "big-mask.png", 4 * MiB)
        return ["--image", "refs/subject.png", "--mask", "refs/big-mask.png"]

    def mask_60mb(refs: Path) -> List[str]:
        padded_png(refs / "huge-mask.png", 60 * MiB)
        return ["--image", "refs/subject.png", "--mask", "refs/huge-mask.png"]

    def mask_text(refs: Path) -> List[str]:
        return ["--image", "refs/subject.png", "--mask", "refs/notanimage.png"]

    def mask_folder(refs: Path) -> List[str]:
        return ["--image", "refs/subject.png", "--mask", "refs"]

    def no_image(refs: Path) -> List[str]:
        return []

    def moderation(refs: Path) -> List[str]:
        return ["--image", "refs/subject.png", "--moderation", "low"]

    def fidelity_gpt2(refs: Path) -> List[str]:
        return ["--image", "refs/subject.png", "--input-fidelity", "high"]

    def fidelity_gpt2_snapshot(refs: Path) -> List[str]:
        return ["--image", "refs/subject.png", "--input-fidelity", "low", "--model", "gpt-image-2-2026-04-21"]

    def output_is_an_input(refs: Path) -> List[str]:
        return ["--image", "refs/subject.png", "--output", "refs/subject.png", "--overwrite"]

    return {
        "text file named .png": (text_png, ("refs/notanimage.png", "not a PNG, JPEG or WEBP")),
        "folder": (folder, ("refs", "not a regular file")),
        "missing file": (missing, ("refs/nope.png", "no such file")),
        "17 images": (seventeen, ("17 images", "16")),
        "image over 50 MB": (too_big, ("refs/huge.png", "52,428,801 bytes", "52,428,800")),
        "empty file": (empty, ("refs/empty.png",)),
        "mask without alpha": (mask_no_alpha, ("refs/background.png", "alpha")),
        "mask that is a JPEG": (mask_jpeg, ("refs/photo.jpg", "JPEG", "PNG")),
        "mask that is a JPEG named .png": (mask_jpeg_named_png, ("refs/jmask.png", "JPEG")),
        "mask of another size": (mask_other_size, ("refs/small-mask.png", "32x32", "64x48")),
        "mask of 4 MiB": (mask_4mb, ("refs/big-mask.png", "4,194,304")),
        "mask of 60 MB": (mask_60mb, ("refs/huge-mask.png", "4,194,304")),
        "mask that is text": (mask_text, ("refs/notanimage.png",)),
        "mask that is a folder": (mask_folder, ("refs", "not a regular file")),
        "no image": (no_image, ("--image",)),
        "--moderation": (moderation, ("moderation",)),
        "--input-fidelity on gpt-image-2": (fidelity_gpt2, ("gpt-image-2", "--input-fidelity")),
        "--input-fidelity on a gpt-image-2 snapshot": (fidelity_gpt2_snapshot, ("--input-fidelity",)),
        "output over an input": (output_is_an_input, ("subject.png",)),
    }


REFUSALS = _refusal_cases()


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_before_anything_is_sent(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path, case: str
) -> None:
    make_args, needles = REFUSALS[case]
    args = make_args(images_dir)
    output = [] if "--output" in args else ["--output", "out/x.png"]
    assert_refused(cli("edits", "--prompt", "p", *args, *output), fake, *needles)


def test_refusals_as_a_subprocess(run: Callable[..., Result], fake: FakeAPI, images_dir: Path) -> None:
    for case in ("text file named .png", "mask without alpha", "image over 50 MB"):
        make_args, needles = REFUSALS[case]
        result = run("edits", "--prompt", "p", *make_args(images_dir), "--output", "out/x.png")
        assert_refused(result, fake, *needles)


@pytest.mark.skipif(sys.platform == "win32", reason="Windows command lines are UTF-16, never undecodable")
def test_a_prompt_that_is_not_utf8_is_refused(
    run: Callable[..., Result], fake: FakeAPI, images_dir: Path
) -> None:
    # The byte 0xFF on the command line arrives as a lone surrogate, which cannot be sent as UTF-8.
    prompt = os.fsdecode(b"Blend \xff them")
    result = run("edits", "--prompt", prompt, "--image", "refs/subject.png", "--output", "out/x.png")
    assert_refused(result, fake, "prompt", "UTF-8")


def test_refusal_with_json_is_one_object(cli: Callable[..., Result], fake: FakeAPI, images_dir: Path) -> None:
    result = cli(
        "edits", "--prompt", "p", "--image", "refs/notanimage.png", "--output", "out/x.png", "--json"
    )
    assert result.code == 2
    assert result.json["ok"] is False
    assert result.json["error"]["type"] == "usage_error"
    assert "refs/notanimage.png" in result.json["error"]["message"]
    assert fake.requests == []


@pytest.mark.parametrize(
    ("size", "ok"), [(50 * MiB, True), (50 * MiB + 1, False)], ids=["exactly 50 MiB", "one byte more"]
)
def test_the_50_mb_boundary(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path, size: int, ok: bool
) -> None:
    padded_png(images_dir / "edge.png", size, colour_type=2)
    result = cli("edits", "--prompt", "p", "--image", "refs/edge.png", "--output", "out/x.png", "--dry-run")
    assert result.code == (0 if ok else 2), result.err
    if ok:
        assert result.json["parts"][-1]["bytes"] == size


@pytest.mark.parametrize(
    ("size", "ok"), [(4 * MiB - 1, True), (4 * MiB, False)], ids=["just under 4 MiB", "exactly 4 MiB"]
)
def test_the_4_mb_mask_boundary(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path, size: int, ok: bool
) -> None:
    padded_mask(images_dir / "edge-mask.png", size)
    result = cli(
        "edits", "--prompt", "p", "--image", "refs/subject.png", "--mask", "refs/edge-mask.png",
        "--output", "out/x.png",
    )  # fmt: skip
    if ok:
        assert result.code == 0, result.err
        mask = fake.last.files("mask")[0]
        assert len(mask.data) == size and mask.content_type == "image/png"
    else:
        assert_refused(result, fake, "refs/edge-mask.png")


# --------------------------------------------------------------------------------------
# Masks that are accepted
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask", "kind"),
    [
        (lambda: make_mask((64, 48)), "RGBA (colour type 6)"),
        (lambda: pil_mask("LA"), "grey + alpha (colour type 4)"),
        (lambda: pil_mask("RGB", transparency=(0, 0, 0)), "RGB with a tRNS chunk"),
        (lambda: pil_mask("P", transparency=0), "palette with a tRNS chunk"),
    ],
    ids=["rgba", "grey-alpha", "rgb-trns", "palette-trns"],
)
def test_masks_with_alpha_are_sent(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path, mask: Callable[[], bytes], kind: str
) -> None:
    data = mask()
    if "tRNS" in kind:
        assert b"tRNS" in data
    (images_dir / "m.png").write_bytes(data)
    result = cli(
        "edits", "--prompt", "p", "--image", "refs/subject.png", "--mask", "refs/m.png", "--output", "o.png"
    )
    assert result.code == 0, (kind, result.err)
    sent = fake.last.files("mask")
    assert len(sent) == 1 and sent[0].data == data and sent[0].content_type == "image/png"


FIRST_IMAGES = {
    "jpeg": lambda: pil_image("JPEG"),
    "webp-vp8": lambda: pil_image("WEBP"),
    "webp-vp8l": lambda: pil_image("WEBP", lossless=True),
    "webp-vp8x": lambda: pil_image("WEBP", "RGBA"),
    "png": lambda: make_image("png", (64, 48)),
}


@pytest.mark.parametrize("first", list(FIRST_IMAGES))
@pytest.mark.parametrize("mask_size", [(64, 48), (48, 64), (32, 32)])
def test_mask_size_is_checked_against_the_first_image_of_any_format(
    cli: Callable[..., Result],
    fake: FakeAPI,
    images_dir: Path,
    first: str,
    mask_size: Tuple[int, int],
) -> None:
    (images_dir / "first.img").write_bytes(FIRST_IMAGES[first]())
    (images_dir / "m.png").write_bytes(make_mask(mask_size))
    result = cli(
        "edits", "--prompt", "p", "--image", "refs/first.img", "--image", "refs/subject.png",
        "--mask", "refs/m.png", "--output", "out/x.png",
    )  # fmt: skip
    if mask_size == (64, 48):
        assert result.code == 0, result.err
        assert [p.name for p in fake.last.files()] == ["image[]", "image[]", "mask"]
    else:
        assert_refused(result, fake, f"{mask_size[0]}x{mask_size[1]}", "64x48", "refs/first.img")


def test_the_mask_is_compared_with_the_first_image_only(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path
) -> None:
    (images_dir / "other.png").write_bytes(make_image("png", (100, 100)))
    result = cli(
        "edits", "--prompt", "p", "--image", "refs/subject.png", "--image", "refs/other.png",
        "--mask", "refs/mask.png", "--output", "out/x.png",
    )  # fmt: skip
    assert result.code == 0, result.err


# --------------------------------------------------------------------------------------
# Options: moderation, input fidelity
# --------------------------------------------------------------------------------------


def test_moderation_from_the_environment_is_not_sent_to_edits(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_IMAGE_MODERATION", "low")  # a default for the routes that take it
    result = cli("edits", "--prompt", "p", "--image", "refs/subject.png", "--output", "out/x.png")
    assert result.code == 0, result.err
    assert "moderation" not in fake.last.fields


@pytest.mark.parametrize("model", ["gpt-image-2.6-sunburst", "gpt-image-2.5-flare"])
@pytest.mark.parametrize("fidelity", ["high", "low"])
def test_input_fidelity_is_sent_where_the_model_allows_it(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path, model: str, fidelity: str
) -> None:
    result = cli(
        "edits", "--prompt", "p", "--image", "refs/subject.png", "--output", "out/x.png",
        "--model", model, "--input-fidelity", fidelity,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert fake.last.fields["input_fidelity"] == fidelity
    assert fake.last.fields["model"] == model


# --------------------------------------------------------------------------------------
# Streaming edits
# --------------------------------------------------------------------------------------


def test_streaming_edit_writes_previews_and_the_final(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path
) -> None:
    result = cli(
        "edits", "--prompt", PROMPT, "--image", "refs/subject.png", "--image", "refs/background.png",
        "--mask", "refs/mask.png", "--output", "out/edit.png", "--stream", "--partial-images", "2", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    rec = fake.last
    assert rec.header("accept") == "text/event-stream"
    assert rec.fields == {
        "model": "gpt-image-2",
        "prompt": PROMPT,
        "partial_images": "2",
        "stream": "true",
    }
    assert isinstance(rec.behaviour, SSE)
    assert [e["type"] for e in rec.behaviour.events] == [  # type: ignore[index]
        "image_edit.partial_image",
        "image_edit.partial_image",
        "image_edit.completed",
    ]
    previews = [Path("out/edit.partial-1.png").read_bytes(), Path("out/edit.partial-2.png").read_bytes()]
    assert previews == rec.sent_partials
    assert Path("out/edit.png").read_bytes() == rec.sent_images[0]
    assert [identify(p) for p in previews] == [("partial", 0), ("partial", 1)]
    out = result.json
    assert [i["path"] for i in out["images"]] == ["out/edit.png"]
    assert [p["path"] for p in out["partials"]] == ["out/edit.partial-1.png", "out/edit.partial-2.png"]
    assert out["usage"]["output_tokens"] > 0


def test_streaming_edit_with_a_scripted_stream(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path
) -> None:
    """Events split across reads, CRLF line ends, comments, [DONE]: the same files come out."""
    from fakeapi import images_stream_events

    finals = [make_image("webp", color=(1, 2, 250))]
    partials = [make_image("webp", color=(90, 90, 90)), make_image("webp", color=(200, 200, 200))]
    events = images_stream_events("edit", 2, "webp", images=finals, partial_images=partials)
    fake.queue(SSE(events, line_end="\r\n", comments=True, done=True, split=7))
    result = cli(
        "edits", "--prompt", "p", "--image", "refs/photo.jpg", "--output", "out/s.webp",
        "--stream", "--partial-images", "2",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert Path("out/s.webp").read_bytes() == finals[0]
    assert [Path(f"out/s.partial-{k}.webp").read_bytes() for k in (1, 2)] == partials
    assert fake.last.fields["output_format"] == "webp"


def test_streaming_edit_that_ends_early_keeps_previews_and_fails(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path
) -> None:
    from fakeapi import images_stream_events

    events = images_stream_events("edit", 2, "png")[:2]  # two previews, no completed event
    fake.queue(SSE(events))
    result = cli(
        "edits", "--prompt", "p", "--image", "refs/subject.png", "--output", "out/e.png",
        "--stream", "--partial-images", "2",
    )  # fmt: skip
    assert result.code == 6
    assert len(error_lines(result)) == 1
    assert Path("out/e.partial-2.png").exists() and not Path("out/e.png").exists()


# --------------------------------------------------------------------------------------
# --dry-run
# --------------------------------------------------------------------------------------


def test_dry_run_lists_the_parts_and_sends_nothing(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")  # no key needed
    result = cli(*shlex.split(DONE_WHEN), "--dry-run")
    assert result.code == 0, result.err
    assert fake.requests == []
    assert not Path("out").exists()
    plan = result.json
    assert plan["method"] == "POST" and plan["url"].endswith("/images/edits")
    assert plan["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")
    assert plan["headers"]["Authorization"].startswith("Bearer ***")
    # The body shows exactly what is sent: no output_format for a .png output without --format.
    assert [(p["name"], p.get("value")) for p in plan["parts"][:3]] == [
        ("model", "gpt-image-2"),
        ("prompt", PROMPT),
        ("n", "2"),
    ]
    assert [(p["name"], p["filename"], p["content_type"], p["bytes"]) for p in plan["parts"][3:]] == [
        ("image[]", "subject.png", "image/png", (images_dir / "subject.png").stat().st_size),
        ("image[]", "background.png", "image/png", (images_dir / "background.png").stat().st_size),
        ("mask", "mask.png", "image/png", (images_dir / "mask.png").stat().st_size),
    ]
    assert plan["outputs"]["images"] == ["out/edit-1.png", "out/edit-2.png"]
    # The announced length is what a real run sends (boundaries differ, but not in length).
    monkeypatch.setenv("OPENAI_API_KEY", "sk-other-key-for-the-real-run")
    assert cli(*shlex.split(DONE_WHEN)).code == 0
    assert plan["content_length"] == len(fake.last.body)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads peak RSS in KiB (Linux getrusage)")
def test_dry_run_does_not_read_whole_files(env: Path, fake: FakeAPI, images_dir: Path) -> None:
    child_env = dict(os.environ, OPENAI_BASE_URL=fake.base_url)
    # Real bytes (not a hole): a program that read the file whole would hold 45 MB.
    with open(images_dir / "large.png", "wb") as handle:
        handle.write(make_image("png", (64, 48)))
        block = os.urandom(MiB)
        for _ in range(45):
            handle.write(block)
    base = [sys.executable, str(SCRIPT), "edits", "--prompt", "p", "--output", "out/x.png", "--dry-run"]
    code, _, err, small_rss, _ = run_measured([*base, "--image", "refs/subject.png"], child_env, env)
    assert code == 0, err
    code, _, err, large_rss, seconds = run_measured([*base, "--image", "refs/large.png"], child_env, env)
    assert code == 0, err
    assert large_rss - small_rss < 8 * MiB, (small_rss, large_rss)
    assert seconds < 10
    assert fake.requests == []


def test_dry_run_on_a_refused_input_is_still_refused(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path
) -> None:
    result = cli(
        "edits", "--prompt", "p", "--image", "refs/notanimage.png", "--output", "out/x.png", "--dry-run"
    )
    assert_refused(result, fake, "refs/notanimage.png")


def test_help_for_edits_names_the_options(cli: Callable[..., Result]) -> None:
    result = cli("edits", "--help")
    assert result.code == 0
    for option in ("--image", "--mask", "--image-field-style", "--input-fidelity", "--n"):
        assert option in result.out


def _jpeg_with_big_metadata(size: Tuple[int, int]) -> bytes:
    # EXIF and ICC blocks push the frame header (and so the width and height) past the first 64 KiB.
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(
        out, "JPEG", exif=b"Exif\x00\x00" + b"\x00" * 60_000, icc_profile=b"\x00" * 100_000
    )
    data = out.getvalue()
    assert len(data) > 150_000
    return data


def test_mask_size_is_checked_against_a_jpeg_with_large_metadata(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path
) -> None:
    (images_dir / "deep.jpg").write_bytes(_jpeg_with_big_metadata((96, 80)))
    (images_dir / "mask-96x80.png").write_bytes(make_mask(size=(96, 80)))
    refused = cli(
        "edits", "--prompt", "x", "--image", "refs/deep.jpg", "--mask", "refs/mask.png", "--output", "o.png"
    )
    assert refused.code == 2
    assert "96x80" in refused.err and "64x48" in refused.err
    assert fake.requests == []
    accepted = cli(
        "edits",
        "--prompt",
        "x",
        "--image",
        "refs/deep.jpg",
        "--mask",
        "refs/mask-96x80.png",
        "--output",
        "o.png",
    )
    assert accepted.code == 0, accepted.err
    assert [p.content_type for p in fake.requests[0].parts if p.filename] == ["image/jpeg", "image/png"]

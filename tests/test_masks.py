"""Masks from coordinates (issue 22) end to end against the fake: --mask-box and --mask-ellipse make the mask
(the first image's size, transparent inside the shapes, antialiased), which is sent in all three request
forms (a multipart part, a data URL in the JSON edits form, the Responses tool's input_image_mask) and read
back here with Pillow pixel by pixel; percentages; --save-mask (in a dry run too); jobs-file lines and the
Batch API; every refusal (nothing sent, nothing written); a --mask with no transparent pixel refused; and no
temporary mask left behind, whether the run succeeds, fails or is refused.
"""

from __future__ import annotations

import base64
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, List, Sequence, Tuple

import pytest
from conftest import Result, Tree, assert_one_error, png_chunk, png_head, solid_png
from fakeapi import FakeAPI, error_reply, make_image, make_mask

W, H = 200, 100  # the first image's size: every mask here must be exactly this
SIZE = (W, H)
URL = "https://cdn.example.com/second.png"
CLI = Callable[..., Result]
Spec = Tuple[str, str]  # (kind, "X,Y,W,H")


@pytest.fixture
def temp_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The temporary folder the program makes its masks in (tempfile's), empty and watched."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def masks_left(folder: Path) -> List[str]:
    """The program's temporary masks still in folder (the fake keeps a folder of its own there too)."""
    return [name for name in os.listdir(folder) if name.startswith("gpt-image-mask-")]


@pytest.fixture
def photo(env: Path, temp_dir: Path) -> Path:
    """photo.png (200x100, RGB) in the working folder."""
    path = env / "photo.png"
    path.write_bytes(make_image("png", SIZE, (40, 90, 160)))
    return path


# --------------------------------------------------------------------------------------
# Pixel checks, with Pillow as the oracle
# --------------------------------------------------------------------------------------


def _numbers(spec: str) -> List[float]:
    return [
        float(v[:-1]) * (W, H)[i % 2] / 100 if v.endswith("%") else float(v)
        for i, v in enumerate(spec.split(","))
    ]


def reference_coverage(shapes: Sequence[Spec], scale: int = 16) -> bytes:
    """How much of each pixel the shapes cover (0..255), by Pillow drawing them 16 times larger and
    averaging each 16x16 block back down (the union of the shapes)."""
    from PIL import Image, ImageDraw

    big = Image.new("L", (W * scale, H * scale), 0)
    draw = ImageDraw.Draw(big)
    for kind, spec in shapes:
        x, y, w, h = _numbers(spec)
        box = [round(x * scale), round(y * scale), round((x + w) * scale) - 1, round((y + h) * scale) - 1]
        (draw.ellipse if kind == "ellipse" else draw.rectangle)(box, fill=255)
    return big.resize((W, H), Image.Resampling.BOX).tobytes()


def assert_mask(data: bytes, shapes: Sequence[Spec]) -> None:
    """The mask is an RGBA PNG of the first image's size, black, transparent inside the shapes and opaque
    outside them, its edges within 8 levels of Pillow's supersampled coverage."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.mode == "RGBA" and image.size == SIZE
    rgba = image.tobytes()
    assert rgba[0::4] == rgba[1::4] == rgba[2::4] == bytes(W * H), "the mask is not black"
    alpha = rgba[3::4]
    cover = reference_coverage(shapes)
    for i, (a, c) in enumerate(zip(alpha, cover)):
        where = f"pixel ({i % W},{i // W}): alpha {a}, covered {c}/255"
        if c == 0:
            assert a == 255, "outside the shapes, not opaque: " + where
        elif c == 255:
            assert a <= 8, "inside the shapes, not transparent: " + where
        assert abs(255 - c - a) <= 8, where
    assert alpha.count(0) > 0 and alpha.count(255) > 0


def assert_box_exact(data: bytes, x: int, y: int, w: int, h: int) -> None:
    """A box on whole pixels has no soft edge: alpha 0 exactly inside it, 255 exactly outside."""
    from PIL import Image

    alpha = Image.open(io.BytesIO(data)).getchannel("A").tobytes()
    for row in range(H):
        for col in range(W):
            inside = x <= col < x + w and y <= row < y + h
            assert alpha[row * W + col] == (0 if inside else 255), (col, row)


def shape_args(shapes: Sequence[Spec]) -> List[str]:
    return [arg for kind, spec in shapes for arg in (f"--mask-{kind}", spec)]


def decoded_data_url(url: str) -> bytes:
    head, _, data = url.partition(",")
    assert head == "data:image/png;base64"
    return base64.b64decode(data)


# --------------------------------------------------------------------------------------
# The three request forms, pixel by pixel
# --------------------------------------------------------------------------------------

BOX: List[Spec] = [("box", "20,10,60,30")]
ELLIPSE: List[Spec] = [("ellipse", "30.5,20,120,50.25")]
BOTH: List[Spec] = [("box", "0,0,100%,25%"), ("ellipse", "50%,40%,40%,60%")]  # percentages, clipped


def send(cli: CLI, fake: FakeAPI, form: str, shapes: Sequence[Spec], *extra: str) -> bytes:
    """Run one edit in `form` with the shapes as masks; the mask bytes the fake received."""
    if form == "responses":
        args = ["responses", "--input-text", "make the sky dusk", "--input-image", "photo.png"]
    else:
        args = ["edits", "--prompt", "make the sky dusk", "--image", "photo.png"]
        args += ["--image-url", URL] if form == "json" else []
    result = cli(*args, *shape_args(shapes), "--output", "out/x.png", *extra)
    assert result.code == 0, result.err
    assert len(fake.requests) == 1
    rec = fake.last
    if form == "multipart":
        assert rec.is_multipart
        (part,) = rec.files("mask")
        saved = "--save-mask" in extra
        assert part.content_type == "image/png" and part.filename.startswith("gpt-image-mask-") != saved
        assert [p.name for p in rec.files()] == ["image", "mask"]
        return part.data
    ref = rec.input_image_mask() if form == "responses" else rec.json_mask()
    assert ref is not None and ref.kind == "data_url" and ref.data is not None
    if form == "json":
        assert [r.kind for r in rec.json_images()] == ["data_url", "url"]
    return ref.data


@pytest.mark.parametrize("form", ["multipart", "json", "responses"])
@pytest.mark.parametrize("shapes", [BOX, ELLIPSE, BOTH], ids=["box", "ellipse", "box-and-ellipse-in-percent"])
def test_the_mask_sent_in_each_form(
    cli: CLI, fake: FakeAPI, photo: Path, temp_dir: Path, form: str, shapes: List[Spec]
) -> None:
    data = send(cli, fake, form, shapes)
    assert_mask(data, shapes)
    if shapes is BOX:
        assert_box_exact(data, 20, 10, 60, 30)
    assert masks_left(temp_dir) == []  # the temporary mask is gone
    assert sorted(os.listdir(photo.parent)) == ["out", "photo.png", "system-tmp"]


def test_percentages_are_of_the_first_image(cli: CLI, fake: FakeAPI, photo: Path) -> None:
    # 10% of 200 is 20, 10% of 100 is 10: the same box in pixels and in percentages, byte for byte.
    in_pixels = send(cli, fake, "multipart", [("box", "20,10,60,30")])
    fake.clear()
    in_percent = send(cli, fake, "multipart", [("box", "10%,10%,30%,30%")], "--overwrite")
    assert in_percent == in_pixels
    assert_box_exact(in_percent, 20, 10, 60, 30)


def test_a_jpeg_first_image_gives_its_size(cli: CLI, fake: FakeAPI, env: Path, temp_dir: Path) -> None:
    (env / "photo.jpg").write_bytes(make_image("jpeg", SIZE))
    result = cli("edits", "--prompt", "p", "--image", "photo.jpg", *shape_args(ELLIPSE), "--output", "o.png")
    assert result.code == 0, result.err
    assert_mask(fake.last.files("mask")[0].data, ELLIPSE)


def test_a_data_url_first_image_gives_its_size(cli: CLI, fake: FakeAPI, env: Path, temp_dir: Path) -> None:
    url = "data:image/png;base64," + base64.b64encode(make_image("png", SIZE)).decode()
    result = cli("edits", "--prompt", "p", "--image-url", url, *shape_args(BOX), "--output", "o.png")
    assert result.code == 0, result.err
    ref = fake.last.json_mask()
    assert ref is not None and ref.data is not None
    assert_box_exact(ref.data, 20, 10, 60, 30)


def test_the_mask_goes_with_several_images(cli: CLI, fake: FakeAPI, photo: Path, env: Path) -> None:
    # The mask is the first image's size, whatever the others are.
    (env / "small.png").write_bytes(make_image("png", (64, 48)))
    args = ["--image", "photo.png", "--image", "small.png", *shape_args(BOX), "--output", "o.png"]
    result = cli("edits", "--prompt", "p", *args)
    assert result.code == 0, result.err
    assert [p.name for p in fake.last.files()] == ["image[]", "image[]", "mask"]
    assert_box_exact(fake.last.files("mask")[0].data, 20, 10, 60, 30)


# --------------------------------------------------------------------------------------
# --save-mask
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["multipart", "json", "responses"])
def test_save_mask_is_what_was_sent(cli: CLI, fake: FakeAPI, photo: Path, temp_dir: Path, form: str) -> None:
    sent = send(cli, fake, form, BOTH, "--save-mask", "masks/sky.png")
    assert (photo.parent / "masks" / "sky.png").read_bytes() == sent
    assert_mask(sent, BOTH)
    if form == "multipart":
        assert fake.last.files("mask")[0].filename == "sky.png"
    assert masks_left(temp_dir) == []


def test_a_dry_run_writes_the_mask_then_the_run_sends_it(cli: CLI, fake: FakeAPI, photo: Path) -> None:
    args = ["edits", "--prompt", "p", "--image", "photo.png", *shape_args(BOTH), "--save-mask", "m.png"]
    dry = cli(*args, "--output", "out/x.png", "--dry-run")
    assert dry.code == 0, dry.err
    assert fake.requests == []
    saved = (photo.parent / "m.png").read_bytes()
    assert_mask(saved, BOTH)
    described = json.loads(dry.out)
    mask_part = [p for p in described["parts"] if p["name"] == "mask"]
    assert mask_part == [
        {
            "name": "mask",
            "filename": "m.png",
            "content_type": "image/png",
            "bytes": len(saved),
            "path": "m.png",
        }
    ]
    note = next(n for n in described["notes"] if "mask" in n)
    assert "200x100" in note and "--mask-box 0,0,100%,25%" in note and "m.png" in note
    assert not (photo.parent / "out").exists()
    # Looked at, the same command sends it: the file holds this very mask, so there is nothing to overwrite.
    result = cli(*args, "--output", "out/x.png")
    assert result.code == 0, result.err
    assert fake.last.files("mask")[0].data == saved == (photo.parent / "m.png").read_bytes()


def test_a_dry_run_without_save_mask_writes_nothing(
    cli: CLI, fake: FakeAPI, photo: Path, temp_dir: Path
) -> None:
    tree = Tree(photo.parent)
    result = cli(
        "responses",
        "--input-text",
        "p",
        "--input-image",
        "photo.png",
        *shape_args(BOX),
        "--output",
        "x.png",
        "--dry-run",
    )
    assert result.code == 0, result.err
    assert fake.requests == [] and tree.added() == {} and masks_left(temp_dir) == []
    tool = json.loads(result.out)["body"]["tools"][0]
    assert tool["input_image_mask"]["image_url"].startswith("data:image/png;base64,<")


def test_save_mask_keeps_another_file_unless_overwrite(cli: CLI, fake: FakeAPI, photo: Path) -> None:
    other = make_mask(SIZE)
    (photo.parent / "m.png").write_bytes(other)
    args = [
        "edits",
        "--prompt",
        "p",
        "--image",
        "photo.png",
        *shape_args(BOX),
        "--save-mask",
        "m.png",
        "--output",
        "o.png",
    ]
    refused = cli(*args)
    assert_one_error(refused, 2, "--save-mask m.png", "already exists", hint=["--overwrite"])
    assert fake.requests == [] and (photo.parent / "m.png").read_bytes() == other
    assert not (photo.parent / "o.png").exists()
    result = cli(*args, "--overwrite")
    assert result.code == 0, result.err
    assert (photo.parent / "m.png").read_bytes() == fake.last.files("mask")[0].data != other


# --------------------------------------------------------------------------------------
# Jobs files and the Batch API
# --------------------------------------------------------------------------------------


def write_jobs(path: Path, lines: List[Any]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), "utf-8")


def test_jobs_file_lines_take_shapes_as_strings_or_lists(
    cli: CLI, fake: FakeAPI, photo: Path, temp_dir: Path
) -> None:
    second: List[Spec] = [("box", "0,0,10,10"), ("box", "50%,50%,10,10"), ("ellipse", "20,20,40,40")]
    write_jobs(photo.parent / "jobs.jsonl", [
        {"id": "one", "prompt": "first", "image": "photo.png", "mask_box": "20,10,60,30"},
        {"id": "two", "prompt": "second", "image": "photo.png", "mask_box": ["0,0,10,10", "50%,50%,10,10"],
         "mask_ellipse": ["20,20,40,40"], "save_mask": "masks/two.png"},
        {"id": "three", "prompt": "third", "image": "photo.png"},
    ])  # fmt: skip
    result = cli("edits", "--batch", "jobs.jsonl", "--output", "out/{job}.png")
    assert result.code == 0, result.err
    by_prompt = {rec.fields["prompt"]: rec for rec in fake.requests}
    assert sorted(by_prompt) == ["first", "second", "third"]
    assert_box_exact(by_prompt["first"].files("mask")[0].data, 20, 10, 60, 30)
    assert_mask(by_prompt["second"].files("mask")[0].data, second)
    assert by_prompt["second"].files("mask")[0].data == (photo.parent / "masks" / "two.png").read_bytes()
    assert by_prompt["third"].files("mask") == []
    assert masks_left(temp_dir) == []


def test_job_in_save_mask_names_each_job_s_mask(cli: CLI, fake: FakeAPI, photo: Path, temp_dir: Path) -> None:
    write_jobs(photo.parent / "jobs.jsonl", [
        {"id": "left", "prompt": "first", "image": "photo.png", "mask_box": "0,0,50%,100%"},
        {"id": "right", "prompt": "second", "image": "photo.png", "mask_box": "50%,0,50%,100%"},
    ])  # fmt: skip
    result = cli("edits", "--batch", "jobs.jsonl", "--output", "out/{job}.png", "--save-mask", "masks/{job}.png")
    assert result.code == 0, result.err
    by_prompt = {rec.fields["prompt"]: rec for rec in fake.requests}
    for name, prompt in (("left", "first"), ("right", "second")):
        assert by_prompt[prompt].files("mask")[0].data == (photo.parent / "masks" / f"{name}.png").read_bytes()
    assert not (photo.parent / "masks" / "{job}.png").exists()


def test_a_jobs_file_line_with_a_shape_outside_is_refused(
    cli: CLI, fake: FakeAPI, photo: Path, temp_dir: Path
) -> None:
    write_jobs(photo.parent / "jobs.jsonl", [
        {"prompt": "fine", "image": "photo.png", "mask_box": "0,0,10,10"},
        {"prompt": "outside", "image": "photo.png", "mask_ellipse": ["0,0,10,10", "300,0,10,10"]},
    ])  # fmt: skip
    result = cli("edits", "--batch", "jobs.jsonl", "--output", "out/{job}.png")
    assert_one_error(
        result, 2, "jobs.jsonl:2", "--mask-ellipse", "'300,0,10,10'", "wholly outside the 200x100"
    )
    assert fake.requests == [] and masks_left(temp_dir) == []


def test_the_batch_api_line_carries_the_mask(cli: CLI, fake: FakeAPI, photo: Path, temp_dir: Path) -> None:
    write_jobs(
        photo.parent / "jobs.jsonl",
        [{"prompt": "dusk", "image": "photo.png", "mask_ellipse": "30.5,20,120,50.25"}],
    )
    result = cli("edits", "--batch", "jobs.jsonl", "--batch-api", "--output", "out/{job}.png")
    assert result.code == 0, result.err
    (line,) = [json.loads(x) for x in fake.file_content(fake.batches[0]["input_file_id"]).splitlines()]
    assert_mask(decoded_data_url(line["body"]["mask"]["image_url"]), ELLIPSE)
    assert (photo.parent / "out" / "1.png").exists()
    assert masks_left(temp_dir) == []


# --------------------------------------------------------------------------------------
# Refusals: exit 2, the reason, nothing sent, nothing written
# --------------------------------------------------------------------------------------

EDIT = ["edits", "--prompt", "p"]
RESPOND = ["responses", "--input-text", "p"]
LOCAL = ["--image", "photo.png"]
A_BOX = ["--mask-box", "0,0,10,10"]

REFUSALS = {
    "first image an https URL": ([*EDIT, "--image-url", URL, *LOCAL, *A_BOX], ["first image is an --image-url"]),
    "first image a file id": ([*EDIT, "--image-file-id", "file-abc", *LOCAL, *A_BOX], ["--image-file-id", "width and height"]),
    "responses: only an image URL": ([*RESPOND, "--input-image-url", URL, *A_BOX], ["no --input-image"]),
    "responses: an earlier response": ([*RESPOND, "--previous-response-id", "resp_1", *A_BOX], ["no --input-image"]),
    "with --mask": ([*EDIT, *LOCAL, "--mask", "mask.png", *A_BOX], ["make the mask", "--mask gives one"]),
    "with --mask-url": ([*EDIT, *LOCAL, "--mask-url", URL, *A_BOX], ["--mask-url gives one"]),
    "with --mask-file-id": ([*EDIT, *LOCAL, "--mask-file-id", "file-m", "--mask-ellipse", "0,0,9,9"], ["--mask-file-id"]),
    "responses: with --mask": ([*RESPOND, "--input-image", "photo.png", "--mask", "mask.png", *A_BOX], ["--mask gives one"]),
    "responses: with --mask-file-id": ([*RESPOND, "--input-image", "photo.png", "--mask-file-id", "f", *A_BOX], ["--mask-file-id"]),
    "a box wholly outside": ([*EDIT, *LOCAL, "--mask-box", "200,0,10,10"], ["--mask-box '200,0,10,10'", "wholly outside the 200x100 image"]),
    "an ellipse wholly outside, in percent": ([*EDIT, *LOCAL, "--mask-ellipse", "0,100%,10,10"], ["--mask-ellipse", "wholly outside"]),
    "responses: outside": ([*RESPOND, "--input-image", "photo.png", "--mask-box", "0,150,10,10"], ["wholly outside"]),
    "three numbers": ([*EDIT, *LOCAL, "--mask-box", "1,2,3"], ["'1,2,3' is not X,Y,W,H"]),
    "not numbers": ([*EDIT, *LOCAL, "--mask-box", "a,b,c,d"], ["'a' is not a number of pixels or a percentage"]),
    "a negative number": ([*EDIT, *LOCAL, "--mask-ellipse=-5,0,10,10"], ["'-5' is not a number"]),
    "no area": ([*EDIT, *LOCAL, "--mask-box", "10,10,0,5"], ["has no area"]),
    "a long spec": ([*EDIT, *LOCAL, "--mask-box", "1," * 60 + "1"], ["is not X,Y,W,H"]),
    "no whole pixel": ([*EDIT, *LOCAL, "--mask-box", "10,10,0.5,0.5"], ["cover no whole pixel"]),
    "--save-mask without a shape": ([*EDIT, *LOCAL, "--save-mask", "m.png"], ["--save-mask", "no shape"]),
    "--save-mask with --mask": ([*EDIT, *LOCAL, "--mask", "mask.png", "--save-mask", "m.png"], ["no shape"]),
    "--save-mask not .png": ([*EDIT, *LOCAL, *A_BOX, "--save-mask", "m.jpg"], ["--save-mask m.jpg", "PNG"]),
    "--save-mask the input": ([*EDIT, *LOCAL, *A_BOX, "--save-mask", "photo.png", "--overwrite"], ["is the input too"]),
    "--save-mask the output": ([*EDIT, *LOCAL, *A_BOX, "--save-mask", "out/x.png"], ["is the --output too"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_before_sending(cli: CLI, fake: FakeAPI, photo: Path, temp_dir: Path, case: str) -> None:
    (photo.parent / "mask.png").write_bytes(make_mask(SIZE))
    args, words = REFUSALS[case]
    tree = Tree(photo.parent)
    result = cli(*args, *([] if "--output" in args else ["--output", "out/x.png"]))
    assert_one_error(result, 2, *words)
    assert result.out == "" and fake.requests == []
    tree.unchanged()
    assert masks_left(temp_dir) == []


def test_a_later_refusal_leaves_no_temporary_mask(
    cli: CLI, fake: FakeAPI, photo: Path, temp_dir: Path
) -> None:
    # The mask is made while the inputs are read; the output check comes after it, and refuses.
    (photo.parent / "o.png").write_bytes(b"taken")
    result = cli(*EDIT, *LOCAL, *A_BOX, "--output", "o.png")
    assert_one_error(result, 2, "o.png already exists")
    assert fake.requests == [] and masks_left(temp_dir) == []


def test_a_failed_request_leaves_no_temporary_mask(
    cli: CLI, fake: FakeAPI, photo: Path, temp_dir: Path
) -> None:
    fake.queue(error_reply(400, "Invalid mask.", code="invalid_mask", param="mask"))
    result = cli(*EDIT, *LOCAL, *A_BOX, "--output", "o.png")
    assert_one_error(result, 4, "Invalid mask")
    assert len(fake.requests) == 1 and fake.last.files("mask")
    assert masks_left(temp_dir) == []


def test_the_process_leaves_no_temporary_mask(
    run: Callable[..., Result], fake: FakeAPI, env: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "process-tmp"
    folder.mkdir()
    (env / "photo.png").write_bytes(make_image("png", SIZE))
    result = run(*EDIT, *LOCAL, *shape_args(BOTH), "--output", "o.png", extra_env={"TMPDIR": str(folder)})
    assert result.code == 0, result.err
    (part,) = fake.last.files("mask")
    assert part.filename.startswith("gpt-image-mask-")
    assert_mask(part.data, BOTH)
    assert masks_left(folder) == []


# --------------------------------------------------------------------------------------
# A given --mask must mark something to change
# --------------------------------------------------------------------------------------


def broken_png() -> bytes:
    """A PNG whose header is fine (RGBA, 200x100) and whose pixel data is not zlib data."""
    return png_head(W, H, 6) + png_chunk(b"IDAT", b"not zlib data at all") + png_chunk(b"IEND", b"")


OPAQUE_MASKS = {
    "opaque": (lambda: solid_png(SIZE, (0, 0, 0, 255)), ["no pixel is fully transparent"]),
    "half transparent": (lambda: solid_png(SIZE, (0, 0, 0, 128)), ["no pixel is fully transparent"]),
    "malformed": (broken_png, ["not a readable PNG"]),
}


@pytest.mark.parametrize("route", ["edits", "responses"])
@pytest.mark.parametrize("kind", list(OPAQUE_MASKS))
def test_a_mask_that_marks_nothing_is_refused(
    cli: CLI, fake: FakeAPI, photo: Path, route: str, kind: str
) -> None:
    make, words = OPAQUE_MASKS[kind]
    (photo.parent / "m.png").write_bytes(make())
    inputs = [*EDIT, *LOCAL] if route == "edits" else [*RESPOND, "--input-image", "photo.png"]
    result = cli(*inputs, "--mask", "m.png", "--output", "o.png")
    assert_one_error(result, 2, "--mask m.png", *words, hint=["mask"])
    assert fake.requests == [] and not (photo.parent / "o.png").exists()


def test_one_transparent_pixel_is_enough(cli: CLI, fake: FakeAPI, photo: Path) -> None:
    (photo.parent / "m.png").write_bytes(make_mask(SIZE, box=(199, 99, 200, 100)))
    result = cli(*EDIT, *LOCAL, "--mask", "m.png", "--output", "o.png")
    assert result.code == 0, result.err
    assert fake.last.files("mask")[0].data == (photo.parent / "m.png").read_bytes()


def test_help_names_the_mask_options(cli: CLI) -> None:
    for route in ("edits", "responses"):
        result = cli(route, "--help")
        assert result.code == 0
        for flag in ("--mask-box X,Y,W,H", "--mask-ellipse X,Y,W,H", "--save-mask PATH"):
            assert flag in result.out, (route, flag)

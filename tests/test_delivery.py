"""Exact delivery sizes (--resize, --fit), every saved image's size reported, and contact sheets (design.md
"Pixels": "Delivery sizes", "Contact sheet"), end to end through the fake. Pillow is the oracle."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any, Callable, List, Tuple

import gpt_image as gi
import pytest
from conftest import Result, assert_one_error
from fakeapi import FakeAPI, Reply, error_reply, images_body, make_image
from PIL import Image, ImageDraw, ImageFilter

CLI = Callable[..., Result]


pytestmark = pytest.mark.usefixtures("fast_polls")  # Batch API polls in milliseconds (conftest)


def photo(width: int, height: int, seed: int = 7) -> bytes:
    """A photo-like PNG: gradients, hard-edged shapes and a little blur and noise, where a sloppy kernel shows."""
    rng = random.Random(seed)
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.randrange(width), rng.randrange(height)
        box = (x, y, x + rng.randrange(20, width // 3), y + rng.randrange(20, height // 3))
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)  # type: ignore[arg-type]
    image = image.filter(ImageFilter.GaussianBlur(0.6))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def differences(ours: Image.Image, reference: Image.Image) -> Tuple[float, int]:
    a, b = ours.convert("RGBA").tobytes(), reference.convert("RGBA").tobytes()
    diffs = [abs(x - y) for x, y in zip(a, b)]
    return sum(diffs) / len(diffs), max(diffs)


# --------------------------------------------------------------------------------------------------------
# --resize
# --------------------------------------------------------------------------------------------------------


def test_an_icon_set_of_four_sizes_from_one_generation(cli: CLI, fake: FakeAPI, env: Path) -> None:
    source = photo(1024, 1024)
    fake.queue(Reply(json=images_body(images=[source])))
    sizes = ["1024x1024", "512x512", "180x180", "32x32"]
    result = cli("generations", "--prompt", "an app icon", "--resize", ",".join(sizes[:2]), "--resize",
                 ",".join(sizes[2:]), "--output", "icons/icon.png", "--json")  # fmt: skip
    assert result.code == 0, result.err
    assert fake.last.json["size"] == "1024x1024"  # chosen for the targets: each is a downscale
    report = json.loads(result.out)
    assert [(i["path"], i["width"], i["height"]) for i in report["images"]] == [
        (f"icons/icon-{s}.png", *map(int, s.split("x"))) for s in sizes
    ]
    original = Image.open(io.BytesIO(source))
    for size in sizes:
        width, height = map(int, size.split("x"))
        ours = Image.open(env / "icons" / f"icon-{size}.png")
        assert ours.size == (width, height)
        mean, most = differences(ours, original.resize((width, height), Image.Resampling.LANCZOS))
        assert mean <= 1.5 and most <= 24, (size, mean, most)


def test_cover_crops_around_the_centre_like_pillow(cli: CLI, fake: FakeAPI, env: Path) -> None:
    source = photo(1536, 1024, seed=3)
    fake.queue(Reply(json=images_body(images=[source])))
    result = cli("generations", "--prompt", "a card", "--size", "1536x1024", "--resize", "1200x630",
                 "--output", "card.png")  # fmt: skip
    assert result.code == 0, result.err
    original = Image.open(io.BytesIO(source))
    box = gi._cover_box(1536, 1024, 1200, 630)
    reference = original.resize((1200, 630), Image.Resampling.LANCZOS, box=box)
    mean, most = differences(Image.open(env / "card.png"), reference)
    assert mean <= 1.5 and most <= 24, (mean, most)


def test_contain_pads_with_transparent_pixels(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.queue(Reply(json=images_body(images=[photo(1536, 1024)])))
    result = cli("generations", "--prompt", "x", "--size", "1536x1024", "--resize", "512x512", "--fit", "contain",
                 "--output", "boxed.png", "--json")  # fmt: skip
    assert result.code == 0, result.err
    image = Image.open(env / "boxed.png")
    assert image.size == (512, 512) and image.mode == "RGBA"
    alpha = image.getchannel("A")
    assert alpha.crop((0, 0, 512, 80)).getextrema() == (0, 0)  # 512x341 centred: 85 clear rows above
    assert alpha.crop((0, 90, 512, 420)).getextrema() == (255, 255)
    assert alpha.crop((0, 432, 512, 512)).getextrema() == (0, 0)
    assert json.loads(result.out)["images"][0]["alpha"] is True


def test_size_in_the_output_names_each_file(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.true_size = True
    result = cli("generations", "--prompt", "x", "--resize", "64x64,32x32", "--output", "out/{size}/logo.png")
    assert result.code == 0, result.err
    assert result.out.split() == ["out/64x64/logo.png", "out/32x32/logo.png"]
    assert Image.open(env / "out/32x32/logo.png").size == (32, 32)
    refused = cli("generations", "--prompt", "x", "--output", "out/{size}.png")
    assert_one_error(refused, 2, "{size}", hint=["--resize"])


def test_the_request_size_is_chosen_valid_and_a_downscale(cli: CLI, fake: FakeAPI) -> None:
    for targets, model in (("1200x630", "gpt-image-2"), ("1320x2868", "gpt-image-2"), ("180x180", "gpt-image-2"),
                           ("1200x630", "gpt-image-2.6-flare")):  # fmt: skip
        shown = json.loads(cli("generations", "--prompt", "x", "-m", model, "--resize", targets, "--output",
                               "o.png", "--dry-run").out)  # fmt: skip
        width, height = map(int, shown["body"]["size"].split("x"))
        assert gi.flexible_size_problem(width, height) is None
        want_w, want_h = map(int, targets.split("x"))
        assert width >= want_w and height >= want_h, (targets, shown["body"]["size"])
        assert abs(width / height - want_w / want_h) / (want_w / want_h) < 0.03
        assert shown["warnings"] == [] and any("--resize" in n for n in shown["notes"])
    assert fake.requests == []


def test_an_upscale_is_warned(cli: CLI, fake: FakeAPI) -> None:
    shown = cli("generations", "--prompt", "x", "--size", "1024x1024", "--resize", "2048x2048", "--output", "o.png",
                "--dry-run")  # fmt: skip
    assert shown.code == 0 and "2048x2048" in shown.err and "upscaled" in shown.err
    largest = json.loads(cli("generations", "--prompt", "x", "--resize", "4000x4000", "--output", "o.png",
                             "--dry-run").out)  # fmt: skip
    assert largest["body"]["size"] == "2880x2880" and "upscaled" in " ".join(largest["warnings"])


@pytest.mark.parametrize("output", ["o.jpg", "o.webp"])
def test_resize_needs_a_png_output(cli: CLI, fake: FakeAPI, output: str) -> None:
    assert_one_error(cli("generations", "--prompt", "x", "--resize", "64x64", "--output", output), 2,
                     "resize step", hint=[".png"])  # fmt: skip
    assert fake.requests == []


@pytest.mark.parametrize(
    "args, says",
    [(["--resize", "64"], "WIDTHxHEIGHT"), (["--resize", "0x64"], "1 to"), (["--resize", "99999x64"], "1 to 8,192"),
     (["--fit", "contain"], "--resize"), (["--resize", "64x64", "--fit", "squash"], "squash")],
)  # fmt: skip
def test_bad_resize_options_are_refused(cli: CLI, fake: FakeAPI, args: List[str], says: str) -> None:
    assert_one_error(cli("generations", "--prompt", "x", "--output", "o.png", *args), 2, says)
    assert fake.requests == []


def test_transparency_then_resize(cli: CLI, fake: FakeAPI, env: Path) -> None:
    result = cli("generations", "--prompt", "A flat fox logo", "--background", "transparent", "--resize", "128x128",
                 "--output", "fox.png", "--json")  # fmt: skip
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert [s["step"] for s in report["steps"]] == ["transparency", "resize"]
    image = Image.open(env / "fox.png")
    assert image.size == (128, 128) and image.getchannel("A").getextrema() == (0, 255)


def test_resize_in_a_batch_and_in_the_batch_api(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.true_size = True
    (env / "jobs.jsonl").write_text('{"id": "a", "prompt": "one"}\n{"id": "b", "prompt": "two", "resize": '
                                    '["48x48"]}\n', "utf-8")  # fmt: skip
    batch = cli("generations", "--batch", "jobs.jsonl", "--resize", "96x64", "--output", "out/{job}.png")
    assert batch.code == 0, batch.err
    assert Image.open(env / "out/a.png").size == (96, 64) and Image.open(env / "out/b.png").size == (48, 48)
    api = cli("generations", "--batch", "jobs.jsonl", "--batch-api", "--resize", "96x64,24x16", "--output",
              "api/{job}-{size}.png")  # fmt: skip
    assert api.code == 0, api.err
    state = json.loads((env / "jobs.jsonl.batch-state.json").read_text("utf-8"))
    assert state["jobs"]["a"]["sizes"] == ["96x64", "24x16"]
    assert Image.open(env / "api/a-24x16.png").size == (24, 16) and Image.open(env / "api/b-48x48.png").size == (48, 48)


# --------------------------------------------------------------------------------------------------------
# Sizes reported
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext, alpha", [("png", False), ("jpg", False), ("webp", False)])
def test_width_height_and_alpha_for_each_format(cli: CLI, fake: FakeAPI, env: Path, ext: str, alpha: bool) -> None:
    result = cli("generations", "--prompt", "x", "--output", f"o.{ext}", "--json", "--metadata")
    assert result.code == 0, result.err
    image = json.loads(result.out)["images"][0]
    assert (image["width"], image["height"], image["alpha"]) == (64, 48, alpha)
    sidecar = json.loads((env / f"o.{ext}.json").read_text("utf-8"))
    assert (sidecar["image"]["width"], sidecar["image"]["alpha"]) == (64, alpha)


def test_an_rgba_png_reports_alpha(cli: CLI, fake: FakeAPI) -> None:
    fake.queue(Reply(json=images_body(images=[make_image("png", color=(1, 2, 3, 128), mode="RGBA")])))
    result = cli("generations", "--prompt", "x", "--output", "o.png", "--json")
    assert json.loads(result.out)["images"][0]["alpha"] is True


def test_an_image_of_another_size_is_warned(cli: CLI, fake: FakeAPI) -> None:
    result = cli("generations", "--prompt", "x", "--size", "1536x1024", "--output", "o.png")
    assert result.code == 0 and "came back 64x48, not the 1536x1024 asked for" in result.err
    fake.true_size = True
    exact = cli("generations", "--prompt", "x", "--size", "1536x1024", "--output", "p.png")
    assert exact.code == 0 and "came back" not in exact.err


# --------------------------------------------------------------------------------------------------------
# Contact sheets
# --------------------------------------------------------------------------------------------------------

COLOURS = [(220, 30, 30), (30, 200, 40), (30, 40, 220), (230, 220, 20)]


def cell_colour(sheet: Image.Image, cell: Any) -> Tuple[int, ...]:
    return sheet.getpixel((cell["x"] + cell["width"] // 2, cell["y"] + cell["height"] // 2))[:3]  # type: ignore[index]


def test_a_contact_sheet_of_a_batch_with_a_failed_job(cli: CLI, fake: FakeAPI, env: Path) -> None:
    replies: List[Any] = [Reply(json=images_body(images=[make_image("png", (96, 64), c)])) for c in COLOURS]
    replies[2] = error_reply(400, "Your request was rejected by the safety system.", code="moderation_blocked")
    fake.queue(*replies)
    (env / "jobs.txt").write_text("one\ntwo\nthree\nfour\n", "utf-8")
    result = cli("generations", "--batch", "jobs.txt", "--jobs", "1", "--output", "out/{job}.png", "--retries", "0",
                 "--contact-sheet", "sheet.png", "--json")  # fmt: skip
    assert result.code == 7, result.err
    summary = json.loads(result.out.splitlines()[-1])
    made = summary["contact_sheet"]
    assert made["path"] == "sheet.png" and [c["job"] for c in made["cells"]] == ["1", "2", "4"]
    sheet = Image.open(env / "sheet.png")
    assert sheet.size == (made["width"], made["height"]) == (2 * 256 + 3 * 4, 2 * 256 + 3 * 4)
    for cell, colour in zip(made["cells"], [COLOURS[0], COLOURS[1], COLOURS[3]]):
        assert all(abs(a - b) <= 2 for a, b in zip(cell_colour(sheet, cell), colour)), cell
    # Resumed with a fifth job: the earlier images, read from disk, are on the new sheet too.
    with (env / "jobs.txt").open("a", encoding="utf-8") as handle:
        handle.write("five\n")
    before = len(fake.requests)
    again = cli("generations", "--batch", "jobs.txt", "--jobs", "1", "--output", "out/{job}.png",
                "--contact-sheet", "sheet.png", "--json")  # fmt: skip
    assert again.code == 0, again.err
    assert len(fake.requests) - before == 2  # jobs 3 and 5 only: the sheet is made anew, nothing paid twice
    cells = json.loads(again.out.splitlines()[-1])["contact_sheet"]["cells"]
    assert [c["job"] for c in cells] == ["1", "2", "3", "4", "5"]


def test_a_contact_sheet_of_n_images_with_transparency(cli: CLI, fake: FakeAPI, env: Path) -> None:
    result = cli("generations", "--prompt", "A flat fox logo", "--background", "transparent", "--n", "3",
                 "--output", "fox.png", "--contact-sheet", "sheet.png", "--json")  # fmt: skip
    assert result.code == 0, result.err
    made = json.loads(result.out)["contact_sheet"]
    assert [c["path"] for c in made["cells"]] == ["fox-1.png", "fox-2.png", "fox-3.png"]
    sheet = Image.open(env / "sheet.png").convert("RGB")
    first = made["cells"][0]
    corner = sheet.getpixel((first["x"] + 2, first["y"] + 2))
    assert corner in ((255, 255, 255), (204, 204, 204))  # the checkerboard behind the transparent corner


@pytest.mark.parametrize(
    "args, says",
    [(["--output", "o.png"], "--n above 1"), (["--output", "o.png", "--n", "2", "--contact-sheet", "s.jpg"], ".png"),
     (["--output", "o.jpg", "--n", "2"], "needs .png outputs")],
)  # fmt: skip
def test_contact_sheet_refusals(cli: CLI, fake: FakeAPI, args: List[str], says: str) -> None:
    result = cli("generations", "--prompt", "x", "--contact-sheet", "s.png", *args)
    assert_one_error(result, 2, says)
    assert fake.requests == []

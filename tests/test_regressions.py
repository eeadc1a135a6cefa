"""Defects a read-only review of today's code found, each with the test that shows it fixed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Callable

import gpt_image as gi
import pytest
from conftest import SCRIPT, Result, assert_one_error, png_chunk, png_head
from fakeapi import FakeAPI, Reply, images_body, make_image

CLI = Callable[..., Result]


pytestmark = pytest.mark.usefixtures("fast_polls")  # Batch API polls in milliseconds (conftest)


def test_batch_api_with_overwrite_saves_the_new_results(cli: CLI, fake: FakeAPI, env: Path) -> None:
    (env / "out").mkdir()
    (env / "out" / "1.png").write_bytes(b"an old image")
    (env / "jobs.txt").write_text("a kite\n", "utf-8")
    result = cli("generations", "--batch", "jobs.txt", "--batch-api", "--overwrite", "--output", "out/{job}.png")
    assert result.code == 0, result.err
    assert (env / "out" / "1.png").read_bytes() != b"an old image"
    assert "unknown or repeated" not in result.err


@pytest.mark.parametrize("sheet", ["o-1.png", "in.png"])
def test_a_contact_sheet_on_another_file_of_the_run_is_refused(
    cli: CLI, fake: FakeAPI, env: Path, sheet: str
) -> None:
    (env / "in.png").write_bytes(make_image("png"))
    result = cli("edits", "--prompt", "x", "--image", "in.png", "--n", "2", "--output", "o.png", "--overwrite",
                 "--contact-sheet", sheet)  # fmt: skip
    assert_one_error(result, 2, "also a file of the run")
    assert fake.requests == []


def test_a_resize_wider_than_three_to_one_is_cropped_not_a_crash(cli: CLI, fake: FakeAPI) -> None:
    result = cli("generations", "--prompt", "a banner", "--resize", "1584x396", "--output", "b.png", "--dry-run")
    assert result.code == 0, result.err
    width, height = map(int, json.loads(result.out)["body"]["size"].split("x"))
    assert width == 3 * height and gi.flexible_size_problem(width, height) is None


def test_a_long_run_of_digits_in_an_svg_is_read_in_linear_time() -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="' + b"1" * 20_000 + b'x" height="10"/>'
    started = time.monotonic()
    facts = gi.svg_check(svg, 1 << 20)
    assert time.monotonic() - started < 1.0
    assert facts.problem is None and facts.height == 10


def test_an_image_the_sheet_cannot_read_is_saved_and_left_off(cli: CLI, fake: FakeAPI, env: Path) -> None:
    # Whole by its chunks and CRCs, but its image data is not a zlib stream: saved as it is, left off the sheet.
    broken = png_head(4, 4) + png_chunk(b"IDAT", b"not zlib at all") + png_chunk(b"IEND", b"")
    good = make_image("png", (32, 32), (200, 30, 30))
    fake.queue(Reply(json=images_body(images=[broken, good])))
    result = cli("generations", "--prompt", "x", "--n", "2", "--output", "o.png", "--contact-sheet", "s.png",
                 "--json")  # fmt: skip
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert [c["path"] for c in report["contact_sheet"]["cells"]] == ["o-2.png"]
    assert (env / "o-1.png").read_bytes() == broken


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell redirections")
@pytest.mark.parametrize("redirect", ["2>&-", "2>/dev/full"])
def test_stderr_that_cannot_be_written_loses_no_image(redirect: str, env: Path, fake: FakeAPI) -> None:
    command = f"'{sys.executable}' '{SCRIPT}' generations --prompt x --size 1024x1024 --output o.png {redirect}"
    child = dict(os.environ, OPENAI_BASE_URL=fake.base_url)
    proc = subprocess.run(["/bin/sh", "-c", command], cwd=str(env), env=child, capture_output=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.decode().split() == ["o.png"] and (env / "o.png").exists()


def test_the_responses_prompt_counts_once_against_the_limit(cli: CLI, fake: FakeAPI) -> None:
    prompt = "a fox " * 2_900  # 17,400 characters: twice would be over 32,000
    result = cli("responses", "--prompt", prompt, "--background", "transparent", "--output", "r.png", "--dry-run")
    assert result.code == 0, result.err


@pytest.mark.parametrize("option", [["--key-color", "#FF00FF"], ["--transparency", "key"]])
def test_transparency_options_need_a_transparent_background(cli: CLI, fake: FakeAPI, option: list) -> None:
    assert_one_error(cli("generations", "--prompt", "x", "--output", "o.png", *option), 2, "--background transparent")


def test_a_deeply_nested_jobs_line_is_a_usage_error(cli: CLI, fake: FakeAPI, env: Path) -> None:
    (env / "jobs.jsonl").write_text("{" + '"a":[' * 100_000 + "\n", "utf-8")
    assert_one_error(cli("generations", "--batch", "jobs.jsonl", "--output", "{job}.png"), 2, "jobs.jsonl:1")


def test_a_deeply_nested_reply_is_an_unusable_response(cli: CLI, fake: FakeAPI) -> None:
    fake.queue(Reply(body=b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", content_type="application/json"))
    assert_one_error(cli("generations", "--prompt", "x", "--output", "o.png"), 6)


def test_an_absurd_usage_figure_costs_nothing_and_breaks_nothing(cli: CLI, fake: FakeAPI) -> None:
    body = images_body()
    body["usage"] = dict(body["usage"], output_tokens=1e400)
    fake.queue(Reply(body=json.dumps(body).replace("Infinity", "1e400").encode(), content_type="application/json"))
    result = cli("generations", "--prompt", "x", "--output", "o.png")
    assert result.code == 0, result.err


# From a read-only review of the pixel engine against hostile images.


def thin_png(width: int, height: int) -> bytes:
    rows = (b"\x00" + b"\x00\xff\x00" * width) * height
    return png_head(width, height) + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b"")


def test_a_server_image_of_no_api_shape_is_kept_not_worked_on(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.queue(Reply(json=images_body(images=[thin_png(1, 50_000)])))
    started = time.monotonic()
    result = cli("generations", "--prompt", "A flat fox logo", "--background", "transparent", "--output", "f.png")
    assert_one_error(result, 6, "1x50000", "not a size the API makes", "f.source.png")
    assert time.monotonic() - started < 20 and not (env / "f.png").exists()


def test_a_mask_for_an_image_over_the_pixel_cap_is_refused(cli: CLI, fake: FakeAPI, env: Path) -> None:
    (env / "huge.png").write_bytes(png_head(60_000, 60_000) + png_chunk(b"IEND", b""))
    result = cli("edits", "--prompt", "x", "--image", "huge.png", "--mask-box", "0,0,10,10", "--output", "o.png")
    assert_one_error(result, 2, "60000x60000", "pixels")
    assert fake.requests == []


@pytest.mark.parametrize("tones", [((255, 255, 255, 255), (204, 204, 204, 255)), ((128,) * 3 + (255,), (100,) * 3 + (255,))])
def test_a_clean_painted_checkerboard_is_found(tones: tuple) -> None:
    board = gi.checkerboard(512, 512, 16, tones[0], tones[1])
    assert gi._checker_cell(board) == 16


def test_empty_idat_chunks_cost_nothing() -> None:
    image = thin_png(8, 8)
    head, rest = image[:33], image[33:]
    padded = head + png_chunk(b"IDAT", b"") * 10_000 + rest
    assert gi.decode_png(padded) == gi.decode_png(image)


def test_an_svg_size_beyond_reason_is_no_size() -> None:
    facts = gi.svg_check(b'<svg xmlns="http://www.w3.org/2000/svg" width="1e308" height="10"/>', 1 << 20)
    assert facts.problem is None and facts.width != int(1e308)

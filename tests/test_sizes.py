"""Sizes by aspect ratio (design.md "Command line"): --size W:H and W:H@1k|2k|4k become the valid WxH nearest
that ratio at that tier, shown in the dry run (body and notes) and in the --json output; fixed-size models get
their nearest fixed size, with a note. The same text works from OPENAI_IMAGE_SIZE and in a plain options
mapping (what a jobs-file line is).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Tuple

import gpt_image
import pytest
from conftest import Result, assert_one_error
from fakeapi import FakeAPI

CLI = Callable[..., Result]
PROMPT = "A lighthouse on a cliff at dawn"

RATIOS = [
    "1:1", "4:3", "3:4", "3:2", "2:3", "16:9", "9:16", "16:10", "10:16", "21:9", "9:21", "5:4", "4:5",
    "2:1", "1:2", "3:1", "1:3", "2.39:1", "1.85:1", "7:5",
]  # fmt: skip
TIERS = ["1k", "2k", "4k"]
FLEXIBLE = ["gpt-image-2", "gpt-image-2.5-flare", "gpt-image-2.6-sunburst-2026-11-04", "my-gateway/image-x"]


@pytest.fixture(autouse=True)
def _no_skill_root_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(gpt_image, "skill_root", lambda: str(tmp_path / "no-skill-root"))


def ratio_of(text: str) -> float:
    width, height = (float(part) for part in text.split(":"))
    return width / height


def valid_flexible(width: int, height: int) -> bool:
    """The gpt-image-2 size rules of design.md, restated by the test."""
    return (
        width % 16 == 0
        and height % 16 == 0
        and 0 < max(width, height) <= 3840
        and max(width, height) <= 3 * min(width, height)
        and 655_360 <= width * height <= 8_294_400
    )


def parse_size(size: str) -> Tuple[int, int]:
    width, height = (int(part) for part in size.split("x"))
    return width, height


def largest_pixels_near(ratio: float, within: float) -> int:
    """The most pixels of any valid size within `within` (relative) of ratio, by brute force."""
    best = 0
    for width in range(16, 3841, 16):
        for height in range(16, 3841, 16):
            if abs(width / height / ratio - 1) <= within and valid_flexible(width, height):
                best = max(best, width * height)
    return best


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("ratio", RATIOS)
def test_each_ratio_and_tier_gives_a_valid_size_near_the_ratio(ratio: str, tier: str) -> None:
    resolved = gpt_image.resolve_aspect(f"{ratio}@{tier}", "gpt-image-2", gpt_image.MODELS["gpt-image-2"])
    assert resolved is not None
    size, note = resolved
    width, height = parse_size(size)
    assert valid_flexible(width, height), size
    assert abs(width / height / ratio_of(ratio) - 1) <= 0.02, (ratio, size)
    pixels = width * height
    if tier == "1k":
        assert abs(pixels / 1_048_576 - 1) <= 0.05, (ratio, size)  # about one megapixel
    elif tier == "2k":
        assert abs(pixels / 4_194_304 - 1) <= 0.05, (ratio, size)  # about four
    else:
        assert pixels >= 0.97 * largest_pixels_near(ratio_of(ratio), 0.02), (ratio, size)  # the largest
    assert size in note and ratio in note


@pytest.mark.parametrize("model", FLEXIBLE)
@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("ratio", RATIOS)
def test_the_dry_run_sends_the_resolved_size(cli: CLI, model: str, ratio: str, tier: str) -> None:
    result = cli(
        "generations", "--prompt", PROMPT, "--output", "out/a.png", "--model", model,
        "--size", f"{ratio}@{tier}", "--dry-run",
    )  # fmt: skip
    assert result.code == 0, result.err
    size = result.json["body"]["size"]
    width, height = parse_size(size)
    assert valid_flexible(width, height) and abs(width / height / ratio_of(ratio) - 1) <= 0.02
    assert gpt_image.size_error(size, model, gpt_image.rules_for(model)) is None
    note, *more = result.json["notes"]
    assert f"--size {ratio}@{tier} is {size}" in note
    # A size above 2560x1440 (in pixels) also gets the note that the API calls it experimental.
    experimental = [f"--size {size} is above 2560x1440, which the API calls experimental"]
    assert more == (experimental if width * height > 2560 * 1440 else [])
    if model != "my-gateway/image-x":  # an unknown model has no price data
        assert f"{width}x{height}" in result.json["estimated_cost"]["basis"]


def test_no_tier_means_1k(cli: CLI) -> None:
    plain = cli("generations", "--prompt", PROMPT, "--output", "out/a.png", "--size", "16:9", "--dry-run")
    tiered = cli("generations", "--prompt", PROMPT, "--output", "out/a.png", "--size", "16:9@1k", "--dry-run")
    assert plain.json["body"]["size"] == tiered.json["body"]["size"]


@pytest.mark.parametrize(
    "text, expected",
    [("1:1", "1024x1024"), ("1:1@2k", "2048x2048"), ("1:1@4k", "2880x2880"), ("16:9@4k", "3840x2160")],
)
def test_familiar_sizes(text: str, expected: str) -> None:
    resolved = gpt_image.resolve_aspect(text, "gpt-image-2", gpt_image.MODELS["gpt-image-2"])
    assert resolved is not None and resolved[0] == expected


def test_the_tier_is_case_insensitive() -> None:
    rules = gpt_image.MODELS["gpt-image-2"]
    upper, lower = (gpt_image.resolve_aspect(text, "m", rules) for text in ("4:3@2K", "4:3@2k"))
    assert upper is not None and lower is not None and upper[0] == lower[0]


@pytest.mark.parametrize(
    "model, ratio, expected",
    [
        ("gpt-image-1.5", "16:9", "1536x1024"),
        ("gpt-image-1.5", "9:16@4k", "1024x1536"),
        ("gpt-image-1.5", "1:1@2k", "1024x1024"),
        ("gpt-image-1-mini", "3:4", "1024x1536"),
        ("dall-e-3", "16:9", "1792x1024"),
        ("dall-e-2", "1:1@1k", "1024x1024"),
        ("dall-e-2", "4:3@4k", "1024x1024"),
    ],
)
def test_fixed_size_models_get_the_nearest_fixed_size(
    cli: CLI, model: str, ratio: str, expected: str
) -> None:
    result = cli(
        "generations", "--prompt", PROMPT, "--output", "out/a.png", "--model", model, "--allow-retired",
        "--size", ratio, "--dry-run",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert result.json["body"]["size"] == expected
    (note,) = result.json["notes"]
    assert "fixed sizes" in note and expected in note and ratio in note


@pytest.mark.parametrize(
    "size, words, hint",
    [
        ("4:1", ["4:1", "between 1:3 and 3:1"], "--size 3:1"),
        ("1:5@2k", ["1:5@2k", "between 1:3 and 3:1"], "--size 1:3@2k"),
        ("16:9@8k", ["16:9@8k", "1k, 2k, 4k"], "16:9@2k"),
        ("16:9@", ["tier"], "16:9@2k"),
        ("0:9", ["positive"], "16:9"),
        ("16:0@2k", ["positive"], "16:9"),
        ("1" + "0" * 400 + ":1", ["positive"], "16:9"),
        ("16 : 9", ["W:H"], "16:9"),
        ("16:9:2", ["W:H"], "16:9"),
        ("-16:9", ["W:H"], "16:9"),
        ("\uff13:\uff12", ["W:H"], "16:9"),  # fullwidth digits: Python's float() would take them
    ],
)
def test_bad_ratios_are_refused(cli: CLI, fake: FakeAPI, size: str, words: List[str], hint: str) -> None:
    result = cli("generations", "--prompt", PROMPT, "--output", "out/a.png", f"--size={size}")
    assert_one_error(result, 2, *words, hint=[hint])
    assert fake.requests == []


def test_from_the_environment(cli: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_IMAGE_SIZE", "21:9@2k")
    result = cli("generations", "--prompt", PROMPT, "--output", "out/a.png", "--json")
    assert result.code == 0, result.err
    sent = fake.last.json["size"]
    width, height = parse_size(sent)
    assert valid_flexible(width, height) and abs(width / height / (21 / 9) - 1) <= 0.02
    assert result.json["size"] == sent  # --json names the size that was sent
    assert f"--size 21:9@2k is {sent}" in result.err  # the note, as a progress line

    monkeypatch.setenv("OPENAI_IMAGE_SIZE", "9:1")
    refused = cli("generations", "--prompt", PROMPT, "--output", "out/b.png")
    assert_one_error(refused, 3, "9:1", "OPENAI_IMAGE_SIZE")


def test_json_size_is_the_plain_size_or_null(cli: CLI, fake: FakeAPI) -> None:
    result = cli("generations", "--prompt", PROMPT, "--output", "out/a.png", "--size", "1536x1024", "--json")
    assert result.json["size"] == "1536x1024"
    result = cli("generations", "--prompt", PROMPT, "--output", "out/b.png", "--json")
    assert result.json["size"] is None  # not sent: the API chooses


def test_edits_and_responses_send_the_resolved_size(cli: CLI, fake: FakeAPI, images_dir: Path) -> None:
    edit = cli(
        "edits", "--prompt", PROMPT, "--image", "refs/subject.png", "--output", "out/e.png", "--size", "3:2"
    )
    assert edit.code == 0, edit.err
    width, height = parse_size(fake.last.fields["size"])
    assert valid_flexible(width, height) and abs(width / height / 1.5 - 1) <= 0.02
    tool = cli("responses", "--input-text", PROMPT, "--output", "out/r.png", "--size", "2:3@2k")
    assert tool.code == 0, tool.err
    width, height = parse_size(fake.last.json["tools"][0]["size"])
    assert valid_flexible(width, height) and abs(width / height / (2 / 3) - 1) <= 0.02


def test_a_plain_options_mapping_resolves_the_same(env: Path) -> None:
    # A jobs-file line is a mapping of option names to values; it goes through the same validate().
    config = gpt_image.Config({}, {}, None)
    options = {"command": "generations", "prompt": PROMPT, "output": "out/a.png", "size": "16:9@2k"}
    job = gpt_image.validate(options, config)
    width, height = parse_size(job.params["size"])
    assert valid_flexible(width, height) and abs(width / height / (16 / 9) - 1) <= 0.02
    assert abs(width * height / 4_194_304 - 1) <= 0.05
    assert job.notes == (
        f"--size 16:9@2k is {width}x{height}" + job.notes[0].split(f"{width}x{height}", 1)[1],
        f"--size {width}x{height} is above 2560x1440, which the API calls experimental",
    )

"""Tests of the key route: key choice, prompt sentence, flood fill, matte quality, verification.

    /work/main/.ci-venv/bin/python -m pytest -q -p no:cacheprovider test_keyer.py

Quality is measured against the true alpha of synthetic subjects (render.py); Pillow reads the PNGs and
computes the measures, so nothing here depends on the project's own codec.
"""

from __future__ import annotations

import io
import random
from collections import deque
from typing import List, NamedTuple, Tuple

import gpt_image as keyer
import keyscenes as render
import pytest
from gpt_image import ImageDataError, Pixels
from PIL import Image, ImageChops, ImageFilter, ImageStat

GREEN, MAGENTA = (0, 255, 0), (255, 0, 255)
SIZE = (640, 480)


def load(png: bytes) -> Pixels:
    image = Image.open(io.BytesIO(png)).convert("RGBA")
    return Pixels(image.width, image.height, image.tobytes())


class Quality(NamedTuple):
    mean_error: float  # mean |alpha - true alpha| over the image, of 255
    edge_error: float  # the same within 2 px of a change in the true alpha
    spill: float  # share of visible pixels (outside the key-coloured window) showing the key's hue
    interior_kept: bool  # the enclosed key-coloured window is opaque and still key-coloured
    edge_spill: float  # the spill share among visible pixels within 2 px of an edge only


def measure(out: Pixels, scene: render.Scene, key: Tuple[int, int, int]) -> Quality:
    """Compare a keyed image with the scene's truth (all in Pillow, so it is fast and independent)."""
    size = (out.width, out.height)
    image = Image.frombytes("RGBA", size, out.rgba)
    alpha = image.getchannel("A")
    truth = Image.frombytes("L", size, scene.alpha)
    error = ImageChops.difference(alpha, truth)
    edge = ImageChops.subtract(truth.filter(ImageFilter.MaxFilter(5)), truth.filter(ImageFilter.MinFilter(5)))
    edge = edge.point(lambda v: 255 if v else 0)
    # Spill: the key's strong channels above its weak ones by more than 24, where the pixel is visible.
    strong, weak = keyer._key_channels(key)
    channels = image.split()
    high = channels[strong[0]]
    for c in strong[1:]:
        high = ImageChops.darker(high, channels[c])
    low = channels[weak[0]]
    for c in weak[1:]:
        low = ImageChops.lighter(low, channels[c])
    window = Image.frombytes("L", size, scene.interior).filter(ImageFilter.MaxFilter(5))
    visible = ImageChops.subtract(alpha.point(lambda v: 255 if v else 0), window)
    hue = ImageChops.subtract(high, low).point(lambda v: 255 if v > 24 else 0)
    spilled = ImageChops.multiply(hue, visible).histogram()[255]
    inside = Image.frombytes("L", size, scene.interior)
    opaque_inside = ImageChops.multiply(alpha.point(lambda v: 255 if v == 255 else 0), inside).histogram()[
        255
    ]
    kept_colour = ImageStat.Stat(image.convert("RGB"), inside).mean
    visible_edge = ImageChops.multiply(visible, edge)
    return Quality(
        ImageStat.Stat(error).mean[0],
        ImageStat.Stat(error, edge).mean[0],
        spilled / max(1, visible.histogram()[255]),
        opaque_inside == inside.histogram()[255] > 0
        and all(abs(a - b) <= 24 for a, b in zip(kept_colour, key)),
        ImageChops.multiply(hue, visible_edge).histogram()[255] / max(1, visible_edge.histogram()[255]),
    )


def key_scene(
    key: Tuple[int, int, int], scene: str, seed: int
) -> Tuple[render.Scene, Pixels, Tuple[int, int, int]]:
    rendered = render.render_key_scene(*SIZE, key, scene, seed)
    out, background = keyer.remove_key(load(rendered.png), key)
    return rendered, out, background


# --- Key colour and prompt ---


@pytest.mark.parametrize(
    ("prompt", "key"),
    [
        ("A red apple on a table", GREEN),
        ("Green tea in a cup", MAGENTA),
        ("GREENISH glass bottle", MAGENTA),
        ("two frogs on a log", MAGENTA),
        ("a cactus; three cacti", MAGENTA),
        ("autumn leaves", MAGENTA),
        ("a leaf", MAGENTA),
        ("a pine forest at dusk", MAGENTA),
        ("lime-flavoured soda", MAGENTA),
        ("an emerald ring", MAGENTA),
        ("Olive oil", MAGENTA),
        ("a greenhouse", GREEN),  # whole words only: a greenhouse is glass
        ("limestone cliffs", GREEN),
        ("mintage of coins", GREEN),
        ("a blue whale", GREEN),
        ("", GREEN),
    ],
)
def test_choose_key_color(prompt: str, key: Tuple[int, int, int]) -> None:
    assert keyer.choose_key_color(prompt) == key


@pytest.mark.parametrize(
    ("color", "words"),
    [(GREEN, ("green", "#00FF00")), (MAGENTA, ("magenta", "#FF00FF")), ((18, 52, 86), ("#123456",))],
)
def test_key_prompt_sentence(color: Tuple[int, int, int], words: Tuple[str, ...]) -> None:
    sentence = keyer.key_prompt_sentence(color)
    for word in (
        *words,
        "flat",
        "uniform",
        "shadow",
        "gradient",
        "texture",
        "floor",
        "reflection",
        "lighting",
    ):
        assert word in sentence
    assert sentence.endswith(".") and sentence.count(".") == 1  # one sentence
    assert "not use" in sentence


# --- Flood fill ---


def reference_flood(rows: List[int], width: int) -> List[int]:
    """Breadth-first search from the border over set bits, 4-connected: the slow, obvious answer."""
    height = len(rows)
    on = {(x, y) for y in range(height) for x in range(width) if rows[y] >> (width - 1 - x) & 1}
    queue = deque(p for p in on if p[0] in (0, width - 1) or p[1] in (0, height - 1))
    seen = set(queue)
    while queue:
        x, y = queue.popleft()
        for near in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            if near in on and near not in seen:
                seen.add(near)
                queue.append(near)
    out = [0] * height
    for x, y in seen:
        out[y] |= 1 << (width - 1 - x)
    return out


@pytest.mark.parametrize("density", [0.45, 0.6, 0.75])
def test_flood_matches_breadth_first_search(density: float) -> None:
    rng = random.Random(int(density * 100))
    for _ in range(40):
        width, height = rng.randint(1, 40), rng.randint(1, 30)
        rows = [sum(1 << b for b in range(width) if rng.random() < density) for _ in range(height)]
        assert keyer._flood_from_border(rows, width) == reference_flood(rows, width)


def test_flood_follows_a_spiral() -> None:
    # A corridor that turns many times: passes over the rows must repeat until nothing changes.
    size = 31
    grid = [[0] * size for _ in range(size)]
    x, y, step, direction = 0, 0, size - 1, 0
    moves = ((1, 0), (0, 1), (-1, 0), (0, -1))
    grid[0][0] = 1
    while step > 0:
        for _ in range(2 if direction else 1):
            dx, dy = moves[direction % 4]
            for _ in range(step):
                x, y = x + dx, y + dy
                grid[y][x] = 1
            direction += 1
        step -= 2
    rows = [int("".join(map(str, row)), 2) for row in grid]
    assert keyer._flood_from_border(rows, size) == reference_flood(rows, size)


def paint(
    width: int, height: int, shapes: List[Tuple[Tuple[int, int, int, int], Tuple[int, int, int]]]
) -> Pixels:
    image = Image.new("RGBA", (width, height), (10, 244, 12, 255))  # a model's shade of #00FF00
    for box, colour in shapes:
        image.paste((*colour, 255), box)
    return Pixels(width, height, image.tobytes())


def test_flood_keeps_an_enclosed_key_region_and_removes_one_open_by_a_channel() -> None:
    red, green = (200, 30, 30), (10, 244, 12)
    p = paint(
        120,
        60,
        [
            ((10, 10, 50, 50), red),  # a closed box with a key-coloured hole: the hole is a detail
            ((20, 20, 40, 40), green),
            ((65, 10, 105, 50), red),  # a box whose hole opens to the outside through a 1-px channel
            ((75, 20, 95, 40), green),
            ((84, 40, 85, 50), green),
            ((104, 8, 116, 20), red),  # a hole touching a notch of the outside only at a corner:
            ((104, 8, 108, 12), green),  # 4-connectivity keeps it
            ((108, 12, 112, 16), green),
        ],
    )
    out, _ = keyer.remove_key(p, GREEN)
    alpha = out.rgba[3::4]
    assert alpha[30 * 120 + 30] == 255  # the enclosed hole stays
    assert alpha[30 * 120 + 85] == 0  # the open hole goes
    assert alpha[45 * 120 + 84] == 0  # and so does its channel
    assert alpha[30 * 120 + 60] == 0  # the background between the boxes
    assert alpha[13 * 120 + 109] == 255 and alpha[12 * 120 + 108] == 255  # only diagonal contact outside
    assert alpha[11 * 120 + 107] == 0  # the notch is background
    assert alpha[0] == 0


def test_holes_option_keys_out_enclosed_regions() -> None:
    p = paint(60, 60, [((10, 10, 50, 50), (200, 30, 30)), ((20, 20, 40, 40), (10, 244, 12))])
    kept, _ = keyer.remove_key(p, GREEN)
    holed, _ = keyer.remove_key(p, GREEN, holes=True)
    assert kept.rgba[3::4][30 * 60 + 30] == 255 and holed.rgba[3::4][30 * 60 + 30] == 0
    assert keyer.verify_transparency(kept, GREEN, "key")[0].startswith("key colour left")
    assert keyer.verify_transparency(holed, GREEN, "key") == []


# --- Quality on rendered subjects ---


@pytest.mark.parametrize("key", [GREEN, MAGENTA])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_quality_against_true_alpha(key: Tuple[int, int, int], seed: int) -> None:
    scene, out, background = key_scene(key, "subject", seed)
    quality = measure(out, scene, key)
    assert quality.mean_error <= 1.0, quality
    assert quality.edge_error <= 6.0, quality
    assert quality.spill <= 0.0005 and quality.edge_spill <= 0.0005, quality
    assert quality.interior_kept, quality
    assert keyer.verify_transparency(out, background, "key") == []
    assert keyer._l1(background, scene.background) <= 12  # the measured shade, not the nominal key


def test_quality_measures_can_fail() -> None:
    # A hard matte (no soft edge) and colours left as they were (no despill) must fail the measures above.
    scene, out, _ = key_scene(GREEN, "subject", 1)
    source = load(scene.png).rgba
    hard = bytearray(source)
    hard[3::4] = out.rgba[3::4].translate(bytes(0 if v < 128 else 255 for v in range(256)))
    quality = measure(Pixels(out.width, out.height, bytes(hard)), scene, GREEN)
    assert quality.edge_error > 6.0 and quality.spill > 0.0005 and quality.edge_spill > 0.0005, quality
    holed = bytearray(out.rgba)
    holed[3::4] = bytes(0 if v else a for a, v in zip(out.rgba[3::4], scene.interior))
    assert not measure(Pixels(out.width, out.height, bytes(holed)), scene, GREEN).interior_kept


@pytest.mark.parametrize("key", [GREEN, MAGENTA])
def test_an_uneven_background_is_removed(key: Tuple[int, int, int]) -> None:
    # Models paint the "flat" background with a vignette and noise: corners 40 levels darker, noise +-12
    # (on the background only: on the subject it would change the subject's colours, not the background).
    scene = render.render_key_scene(*SIZE, key, "subject", 3)
    image = Image.open(io.BytesIO(scene.png)).convert("RGB")
    darker = ImageChops.subtract(image, Image.new("RGB", SIZE, (40, 40, 40)))
    image = Image.composite(darker, image, Image.radial_gradient("L").resize(SIZE))
    noisy = render._add_noise(image, 12, random.Random(1))
    image = Image.composite(
        image, noisy, Image.frombytes("L", SIZE, scene.alpha).point(lambda v: 255 if v else 0)
    )
    out, background = keyer.remove_key(Pixels(*SIZE, image.convert("RGBA").tobytes()), key)
    quality = measure(out, scene, key)
    assert quality.mean_error <= 1.0 and quality.edge_error <= 6.0 and quality.edge_spill <= 0.0005, quality
    assert keyer.verify_transparency(out, background, "key") == []


def test_transparent_pixels_are_stored_as_zero() -> None:
    _, out, _ = key_scene(MAGENTA, "subject", 4)
    clear = [i for i, a in enumerate(out.rgba[3::4]) if a == 0]
    assert clear and all(out.rgba[4 * i : 4 * i + 4] == b"\0\0\0\0" for i in clear)


def test_source_alpha_is_kept() -> None:
    p = paint(40, 30, [((10, 10, 30, 20), (40, 40, 200))])
    rgba = bytearray(p.rgba)
    rgba[4 * (15 * 40 + 20) + 3] = 100  # a pixel of the subject already partly transparent
    out, _ = keyer.remove_key(Pixels(40, 30, bytes(rgba)), GREEN)
    assert out.rgba[4 * (15 * 40 + 20) + 3] == 100
    assert out.rgba[4 * (15 * 40 + 15) + 3] == 255


@pytest.mark.parametrize(("width", "height"), [(1, 1), (1, 7), (7, 1), (2, 2), (5, 3)])
def test_tiny_images(width: int, height: int) -> None:
    p = Pixels(width, height, bytes((10, 244, 12, 255)) * (width * height))
    out, background = keyer.remove_key(p, GREEN)
    assert out.rgba == bytes(4 * width * height) and background == (10, 244, 12)
    assert keyer.verify_transparency(out, background, "key")  # all transparent: the share check fails


def test_wrong_length_is_an_image_data_error() -> None:
    with pytest.raises(ImageDataError):
        keyer.remove_key(Pixels(4, 4, bytes(10)), GREEN)


def test_no_background_keeps_the_nominal_key() -> None:
    p = Pixels(8, 8, bytes((90, 60, 200, 255)) * 64)
    out, background = keyer.remove_key(p, GREEN)
    assert background == GREEN and out.rgba == p.rgba


# --- Verification ---


@pytest.mark.parametrize(
    ("scene", "problem"),
    [
        ("checker", "no alpha"),
        ("checker", "checkerboard"),
        ("opaque", "no alpha"),
        ("gradient", "border"),
        ("shadow", "key colour left"),
        ("border", "border"),
    ],
)
@pytest.mark.parametrize("key", [GREEN, MAGENTA])
def test_fault_scenes_name_their_check(scene: str, problem: str, key: Tuple[int, int, int]) -> None:
    _, out, background = key_scene(key, scene, 5)
    problems = keyer.verify_transparency(out, background, "key")
    assert any(p.startswith(problem) for p in problems), problems


def test_painted_checkerboard_on_the_native_route() -> None:
    rendered = render.render_key_scene(*SIZE, GREEN, "checker", 6)
    problems = keyer.verify_transparency(load(rendered.png), None, "native")
    assert problems[0].startswith("no alpha") and problems[1].startswith("checkerboard"), problems


@pytest.mark.parametrize("seed", [1, 2])
def test_native_result_verifies(seed: int) -> None:
    problems, stats = keyer.inspect_transparency(load(render.render_native(*SIZE, seed)), None, "native")
    assert problems == []
    assert 0.5 < stats.transparent < 0.95 and 0 < stats.partial < 0.05 and stats.border_transparent == 1.0


def test_a_transparent_chessboard_subject_is_not_a_painted_checkerboard() -> None:
    # Black and white squares (a chessboard) on real transparency: contrast too high for a painted one.
    board = render._checkerboard(200, 200, 20, (0, 255)).convert("RGBA")
    canvas = Image.new("RGBA", (320, 320), (0, 0, 0, 0))
    canvas.paste(board, (60, 60))
    assert keyer.verify_transparency(Pixels(320, 320, canvas.tobytes()), None, "native") == []


def synthetic(
    box: Tuple[int, int, int, int],
    patch: Tuple[int, int, int, int] = (0, 0, 0, 0),
    colour: Tuple[int, int, int] = (0, 0, 0),
) -> Pixels:
    """100x100: a red opaque box on transparency, with a patch of another opaque colour."""
    image = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    image.paste((200, 30, 30, 255), box)
    if patch[2] > patch[0]:
        image.paste((*colour, 255), patch)
    return Pixels(100, 100, image.tobytes())


def shares(clear: int) -> Pixels:
    """100x100 with `clear` transparent pixels first (the top rows), the rest opaque red."""
    return Pixels(100, 100, bytes(4) * clear + bytes((200, 30, 30, 255)) * (10000 - clear))


@pytest.mark.parametrize(
    ("p", "problem"),
    [
        (synthetic((0, 0, 100, 100)), "no alpha"),
        (synthetic((0, 20, 100, 80)), "border"),  # the subject runs off both sides
        (shares(99), "transparent share"),
        (shares(9901), "transparent share"),
        (synthetic((20, 20, 80, 80), (30, 30, 40, 40), (8, 245, 12)), "key colour left"),
        (synthetic((20, 20, 80, 80), (30, 30, 60, 40), (3, 110, 5)), "key colour left"),  # a dark shadow
    ],
)
def test_each_check_can_fail(p: Pixels, problem: str) -> None:
    problems = keyer.verify_transparency(p, GREEN, "key")
    assert any(x.startswith(problem) for x in problems), problems


@pytest.mark.parametrize("clear", [100, 9900])
def test_share_limits_pass(clear: int) -> None:
    problems, stats = keyer.inspect_transparency(shares(clear), GREEN, "key")
    assert stats.transparent in (0.01, 0.99)
    assert not any(x.startswith("transparent share") for x in problems), problems


def test_a_verified_cut_out() -> None:
    problems, stats = keyer.inspect_transparency(
        synthetic((20, 20, 80, 80), (30, 30, 31, 31), (8, 245, 12)), GREEN, "key"
    )
    assert problems == [] and stats.opaque == 0.36


def test_key_coloured_check_is_key_route_only() -> None:
    p = synthetic((20, 20, 80, 80), (30, 30, 40, 40), (8, 245, 12))
    assert keyer.verify_transparency(p, None, "native") == []
    assert keyer.verify_transparency(p, GREEN, "native") == []


# --- The renderer ---


def test_renders_are_deterministic() -> None:
    a = render.render_key_scene(200, 150, GREEN, "subject", 9)
    b = render.render_key_scene(200, 150, GREEN, "subject", 9)
    c = render.render_key_scene(200, 150, GREEN, "subject", 10)
    assert a == b and a.png != c.png
    assert render.render_native(200, 150, 9) == render.render_native(200, 150, 9)
    png, alpha = render.render_key_subject(200, 150, MAGENTA, "shadow", 1)
    assert Image.open(io.BytesIO(png)).size == (200, 150) and len(alpha) == 200 * 150

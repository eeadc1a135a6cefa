"""Tests of ops.py with Pillow as the oracle (run: python -m pytest -q -p no:cacheprovider test_ops.py)."""

import math
import random
from typing import List, Sequence, Tuple

import gpt_image as ops
import pytest
from gpt_image import AlphaStats, ImageDataError, Pixels
from PIL import Image, ImageChops, ImageDraw, ImageFilter

MEAN_BOUND = 1.5  # levels a channel, mean absolute difference from Pillow's LANCZOS
MAX_BOUND = 24


# --- Helpers ---


def to_pixels(image: Image.Image) -> Pixels:
    rgba = image.convert("RGBA")
    return Pixels(rgba.width, rgba.height, rgba.tobytes())


def to_image(p: Pixels) -> Image.Image:
    return Image.frombytes("RGBA", (p.width, p.height), p.rgba)


def difference(a: Image.Image, b: Image.Image) -> Tuple[float, int]:
    """Mean and max absolute difference per channel."""
    assert a.size == b.size and a.mode == b.mode
    histogram = ImageChops.difference(a, b).histogram()
    mean = sum((i % 256) * n for i, n in enumerate(histogram)) / sum(histogram)
    return mean, max((i % 256 for i, n in enumerate(histogram) if n), default=0)


def photo(width: int, height: int, seed: int = 1) -> Image.Image:
    """Photo-like: two gradients, blurred noise and hard-edged boxes and ellipses."""
    rnd = random.Random(seed)
    red = Image.linear_gradient("L").resize((width, height))
    green = Image.linear_gradient("L").rotate(90).resize((width, height))
    noise = Image.frombytes("L", (width, height), rnd.randbytes(width * height)).filter(
        ImageFilter.BoxBlur(1)
    )
    image = Image.merge("RGB", (red, green, noise))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rnd.randrange(width), rnd.randrange(height)
        w, h = rnd.randrange(1, width // 3 + 2), rnd.randrange(1, height // 3 + 2)
        colour = (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256))
        if rnd.random() < 0.5:
            draw.rectangle([x, y, x + w, y + h], fill=colour)
        else:
            draw.ellipse([x, y, x + w, y + h], fill=colour)
    return image.convert("RGBA")


def hard_edges(width: int, height: int, seed: int = 2) -> Image.Image:
    """Black and white boxes, one-pixel lines and a fine checker: where a sloppy kernel shows."""
    rnd = random.Random(seed)
    image = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    for x in range(0, width, 7):
        draw.line([x, 0, x, height // 3], fill=(255, 255, 255))
    for y in range(height // 3, height, 3):
        for x in range(0, width // 2, 3):
            if (x // 3 + y // 3) % 2:
                draw.rectangle([x, y, x + 2, y + 2], fill=(255, 255, 255))
    for _ in range(30):
        x, y = rnd.randrange(width), rnd.randrange(height)
        fill = tuple(rnd.choice((0, 255)) for _ in range(3))
        draw.rectangle([x, y, x + rnd.randrange(1, 30), y + rnd.randrange(1, 30)], fill=fill)
    return image.convert("RGBA")


def cut_out(width: int, height: int, soft: bool) -> Image.Image:
    """A photo with an ellipse kept and the rest transparent; soft edges blur the alpha."""
    image = photo(width, height, seed=5)
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).ellipse([width * 0.2, height * 0.1, width * 0.8, height * 0.9], fill=255)
    ImageDraw.Draw(mask).rectangle([0, 0, width // 8, height // 8], fill=128)
    if soft:
        mask = mask.filter(ImageFilter.GaussianBlur(2))
    image.putalpha(mask)
    # Transparent pixels stored as 0,0,0,0, as the keyer delivers them.
    return Image.composite(
        image, Image.new("RGBA", image.size, (0, 0, 0, 0)), mask.point(lambda v: 255 * (v > 0))
    )


def cover_box(src: Tuple[int, int], size: Tuple[int, int]) -> Tuple[float, float, float, float]:
    """The crop of fit=cover, computed here independently: the centred box with the target's aspect ratio."""
    (sw, sh), (w, h) = src, size
    if sw / sh > w / h:
        box_w = sh * w / h
        return ((sw - box_w) / 2, 0, (sw + box_w) / 2, sh)
    box_h = sw * h / w
    return (0, (sh - box_h) / 2, sw, (sh + box_h) / 2)


def pillow_resize(image: Image.Image, size: Tuple[int, int], fit: str) -> Image.Image:
    """What resize(..., fit) should give, built from Pillow's own LANCZOS resize."""
    if fit == "stretch":
        return image.resize(size, Image.LANCZOS)
    if fit == "cover":
        return image.resize(size, Image.LANCZOS, box=cover_box(image.size, size))
    (sw, sh), (w, h) = image.size, size
    if sw * h > sh * w:  # wider than the box: full width, the height rounded half up
        inner = (w, max(1, math.floor(sh * w / sw + 0.5)))
    elif sw * h < sh * w:
        inner = (max(1, math.floor(sw * h / sh + 0.5)), h)
    else:
        inner = (w, h)
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    canvas.paste(image.resize(inner, Image.LANCZOS), ((w - inner[0]) // 2, (h - inner[1]) // 2))
    return canvas


# --- resize: accuracy against Pillow ---

OPAQUE_CASES = [
    ((1536, 1024), (1200, 630), "cover"),
    ((1536, 1024), (64, 64), "cover"),
    ((1536, 1024), (64, 64), "stretch"),  # a 24x shrink across
    ((1536, 1024), (512, 512), "contain"),
    ((300, 200), (701, 333), "stretch"),
    ((300, 200), (701, 333), "cover"),
    ((97, 61), (61, 97), "contain"),
    ((97, 61), (200, 150), "cover"),
    ((64, 48), (1000, 20), "stretch"),  # one axis enlarged a lot, the other shrunk
    ((1, 1), (7, 5), "stretch"),
    ((1, 1), (3, 3), "cover"),
    ((5, 1), (1, 1), "contain"),
    ((37, 53), (3, 1), "cover"),
    ((37, 53), (37, 20), "stretch"),  # one axis only
    ((37, 53), (80, 53), "stretch"),  # the other only
    ((255, 255), (17, 17), "contain"),
]


@pytest.mark.parametrize(("src", "size", "fit"), OPAQUE_CASES)
@pytest.mark.parametrize("source", [photo, hard_edges])
def test_resize_matches_pillow_on_opaque_images(src, size, fit, source) -> None:
    if source is hard_edges and src[0] * src[1] > 100_000:
        src = (src[0] // 2, src[1] // 2)
    image = source(*src)
    got = ops.resize(to_pixels(image), size[0], size[1], fit)
    assert (got.width, got.height) == size
    mean, largest = difference(to_image(got), pillow_resize(image, size, fit))
    assert mean <= MEAN_BOUND and largest <= MAX_BOUND, (mean, largest)


def test_resize_stretch_is_pillows_pixels() -> None:
    # With Pillow's weights, rounding and pass order (across, then down: what Pillow does unless the height
    # shrinks much more than the width, since Pillow 13) an opaque result is Pillow's to the level.
    image = photo(320, 200)
    for size in [(120, 75), (33, 400), (640, 401)]:
        got = to_image(ops.resize(to_pixels(image), size[0], size[1], "stretch"))
        assert difference(got, image.resize(size, Image.LANCZOS))[1] <= 1


def test_resize_identity_and_opaque_alpha() -> None:
    p = to_pixels(photo(40, 30))
    assert ops.resize(p, 40, 30, "stretch") == p
    assert ops.resize(p, 40, 30, "cover") == p
    assert set(ops.resize(p, 13, 71, "stretch").rgba[3::4]) == {255}


@pytest.mark.parametrize(
    ("src", "size", "fit", "soft"),
    [
        ((400, 300), (173, 97), "stretch", True),
        ((400, 300), (173, 97), "cover", False),
        ((300, 200), (701, 333), "stretch", False),
        ((300, 200), (31, 29), "contain", True),
        ((1536, 1024), (64, 64), "cover", True),
    ],
)
def test_resize_alpha_matches_pillow_premultiplied(src, size, fit, soft) -> None:
    image = cut_out(*src, soft=soft)
    got = to_image(ops.resize(to_pixels(image), size[0], size[1], fit))
    ref = pillow_resize(image, size, fit)  # Pillow premultiplies RGBA for resizing itself
    # Alpha directly; colour premultiplied (a level of alpha at alpha 9 is 28 levels of straight colour), with
    # Pillow's ringing above alpha clamped as a straight image must.
    mean, largest = difference(got.getchannel("A"), ref.getchannel("A"))
    assert mean <= MEAN_BOUND and largest <= MAX_BOUND
    alpha = ref.getchannel("A")
    ours, theirs = got.convert("RGBa").split(), ref.convert("RGBa").split()
    for mine, pillow in zip(ours[:3], theirs[:3]):
        mean, largest = difference(mine, ImageChops.darker(pillow, alpha))
        assert mean <= MEAN_BOUND and largest <= MAX_BOUND, (mean, largest)


def test_resize_alpha_has_no_dark_fringe_and_clears_transparent_pixels() -> None:
    # A red disc on transparent black: resampled on straight alpha its edge would darken towards black.
    image = Image.new("RGBA", (120, 90), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse([20, 10, 100, 80], fill=(255, 0, 0, 255))
    for size in [(37, 29), (300, 211)]:
        got = ops.resize(to_pixels(image), size[0], size[1], "stretch")
        rgba = got.rgba
        edge = [rgba[i : i + 4] for i in range(0, len(rgba), 4) if 0 < rgba[i + 3] < 255]
        assert edge, "the disc should have a soft edge"
        assert all(px[0] >= 250 and px[1] <= 3 and px[2] <= 3 for px in edge if px[3] >= 8)
        clear = [rgba[i : i + 4] for i in range(0, len(rgba), 4) if rgba[i + 3] == 0]
        assert clear and all(px == b"\0\0\0\0" for px in clear)


def test_resize_contain_pads_with_transparent_pixels_centred() -> None:
    p = to_pixels(Image.new("RGBA", (100, 50), (10, 200, 30, 255)))
    got = ops.resize(p, 60, 60, "contain")  # 60x30 inside, 15 rows above and below
    rows = [got.rgba[y * 240 : (y + 1) * 240] for y in range(60)]
    assert all(r == bytes(240) for r in rows[:15] + rows[45:])
    assert all(r == bytes((10, 200, 30, 255)) * 60 for r in rows[15:45])
    odd = ops.resize(p, 61, 61, "contain")  # 61x31 (30.5 rounds up), 15 above, 15 below
    assert odd.rgba[15 * 244 : 16 * 244] == bytes((10, 200, 30, 255)) * 61
    assert odd.rgba[14 * 244 : 15 * 244] == bytes(244) and odd.rgba[46 * 244 : 47 * 244] == bytes(244)


def test_resize_cover_crops_the_centre() -> None:
    # Three vertical bands: cover to a square keeps only the middle one.
    image = Image.new("RGBA", (300, 100), (255, 0, 0, 255))
    image.paste((0, 0, 255, 255), (90, 0, 210, 100))  # the kernel reaches 6 pixels beyond the crop
    got = ops.resize(to_pixels(image), 50, 50, "cover")
    assert set(got.rgba) <= {0, 255} and got.rgba == bytes((0, 0, 255, 255)) * 2500


def test_resize_refuses_bad_arguments() -> None:
    p = to_pixels(photo(8, 8))
    with pytest.raises(ImageDataError, match="fit"):
        ops.resize(p, 4, 4, "fill")
    for bad in [(0, 4), (4, -1), (2.5, 3)]:
        with pytest.raises(ImageDataError, match="positive"):
            ops.resize(p, *bad)  # type: ignore[arg-type]
    with pytest.raises(ImageDataError, match="does not match"):
        ops.resize(Pixels(3, 3, bytes(35)), 2, 2)


# --- premultiply and back: the bulk paths against the per-pixel formula ---


def every_pair(order: int) -> bytes:
    """Every (colour, alpha) pair as RGBA pixels; order 1 puts alpha in the outer loop."""
    if order:
        return b"".join(bytes((c, 255 - c, c // 2, a)) for a in range(256) for c in range(256))
    return b"".join(bytes((c, 255 - c, c // 2, a)) for c in range(256) for a in range(256))


def test_premultiply_bulk_and_sparse_paths_are_exact() -> None:
    data = every_pair(0)
    want = bytearray(data)
    for i in range(0, len(data), 4):
        a = data[i + 3]
        for c in range(3):
            x = data[i + c] * a + 128
            want[i + c] = (x + (x >> 8)) >> 8
    assert ops._premultiply(data) == want  # dense: the lane path
    sparse = data[: 4 * 256 * 8]  # alpha 0..255 for colours 0..7 then opaque padding: few partial pixels
    padded = sparse + bytes((1, 2, 3, 255)) * (len(sparse) // 4 * 30)
    assert ops._premultiply(padded)[: len(sparse)] == want[: len(sparse)]
    binary = bytes((9, 8, 7, 0, 1, 2, 3, 255)) * 10
    assert ops._premultiply(binary) == bytes((0, 0, 0, 0, 1, 2, 3, 255)) * 10


def test_unpremultiply_bulk_and_sparse_paths_agree_and_round() -> None:
    data = every_pair(1)
    dense = ops._unpremultiply(data)
    for i in range(0, len(data), 4):
        a = data[i + 3]
        for c in range(3):
            p = data[i + c]
            want = 0 if a == 0 else min(255, math.floor(p * 255 / a + 0.5))
            assert abs(dense[i + c] - want) <= (1 if a and (p * 510) % (2 * a) == a else 0), (p, a)
        assert dense[i + 3] == a
    # The sparse path (few partial pixels) gives the same bytes.
    for a in (1, 2, 77, 254):
        row = data[4 * 256 * a : 4 * 256 * (a + 1)]
        assert (
            ops._unpremultiply(row + bytes((1, 2, 3, 255)) * 4096)[: len(row)]
            == dense[len(row) * a : len(row) * (a + 1)]
        )


# --- crop, canvases ---


def test_crop_is_pillows_crop() -> None:
    image = photo(50, 40)
    p = to_pixels(image)
    for box in [(0, 0, 50, 40), (3, 4, 10, 7), (49, 39, 1, 1), (0, 10, 50, 1)]:
        x, y, w, h = box
        assert ops.crop(p, x, y, w, h).rgba == image.crop((x, y, x + w, y + h)).tobytes()
    for bad in [(-1, 0, 5, 5), (46, 0, 5, 5), (0, 36, 5, 5), (0, 0, 0, 5)]:
        with pytest.raises(ImageDataError):
            ops.crop(p, *bad)


def test_new_canvas_and_checkerboard() -> None:
    assert ops.new_canvas(3, 2).rgba == bytes(24)
    assert ops.new_canvas(2, 2, (1, 2, 3, 4)).rgba == bytes((1, 2, 3, 4)) * 4
    with pytest.raises(ImageDataError):
        ops.new_canvas(2, 2, (1, 2, 3, 256))
    board = ops.checkerboard(11, 7, cell=3, light=(250, 251, 252, 255), dark=(1, 2, 3, 255))
    for y in range(7):
        for x in range(11):
            want = (250, 251, 252, 255) if (x // 3 + y // 3) % 2 == 0 else (1, 2, 3, 255)
            assert tuple(board.rgba[4 * (y * 11 + x) : 4 * (y * 11 + x) + 4]) == want, (x, y)
    default = ops.checkerboard(20, 20)
    assert default.rgba[:4] == bytes((255, 255, 255, 255)) and default.rgba[32:36] == bytes(
        (204, 204, 204, 255)
    )


# --- paste ---


def random_rgba(width: int, height: int, seed: int, alphas: Sequence[int] = ()) -> Image.Image:
    rnd = random.Random(seed)
    data = bytearray(rnd.randbytes(4 * width * height))
    if alphas:
        data[3::4] = bytes(rnd.choice(alphas) for _ in range(width * height))
    return Image.frombytes("RGBA", (width, height), bytes(data))


def pillow_paste(canvas: Image.Image, image: Image.Image, x: int, y: int) -> Image.Image:
    out = canvas.copy()
    left, top = max(0, x), max(0, y)
    right, bottom = min(canvas.width, x + image.width), min(canvas.height, y + image.height)
    if left < right and top < bottom:
        part = image.crop((left - x, top - y, right - x, bottom - y))
        out.alpha_composite(part, (left, top))
    return out


@pytest.mark.parametrize(
    ("canvas_alphas", "image_alphas"),
    [
        ((), ()),  # everything random: partial over partial too
        ((255,), ()),  # an opaque canvas: the lane path
        ((), (0, 255)),  # a binary image: the select path
        ((), (255,)),
        ((), (0,)),
        ((0, 255), (0, 17, 255)),
    ],
)
def test_paste_is_pillows_alpha_composite(canvas_alphas, image_alphas) -> None:
    canvas = random_rgba(40, 30, 1, canvas_alphas)
    image = random_rgba(17, 13, 2, image_alphas)
    for x, y in [(0, 0), (5, 7), (-4, -3), (30, 25), (-17, 0), (40, 0), (23, 17)]:
        got = ops.paste(to_pixels(canvas), to_pixels(image), x, y)
        assert got.rgba == pillow_paste(canvas, image, x, y).tobytes(), (x, y)


# --- alpha_stats, has_alpha ---


def test_alpha_stats_and_has_alpha() -> None:
    # 4x3, alphas row by row; the ring is every pixel but (1,1) and (2,1).
    alphas = [0, 0, 255, 10, 0, 128, 255, 0, 255, 255, 0, 0]
    p = Pixels(4, 3, b"".join(bytes((9, 9, 9, a)) for a in alphas))
    stats = ops.alpha_stats(p)
    assert stats == AlphaStats(transparent=6 / 12, partial=2 / 12, opaque=4 / 12, border_transparent=6 / 10)
    assert ops.has_alpha(p)
    assert not ops.has_alpha(Pixels(2, 1, bytes((1, 2, 3, 255)) * 2))
    row = Pixels(3, 1, bytes((0, 0, 0, 0, 0, 0, 0, 255, 0, 0, 0, 0)))
    assert ops.alpha_stats(row).border_transparent == 2 / 3
    column = Pixels(1, 4, bytes((0, 0, 0, 255)) * 3 + bytes(4))
    assert ops.alpha_stats(column) == AlphaStats(0.25, 0.0, 0.75, 0.25)
    single = Pixels(1, 1, bytes(4))
    assert ops.alpha_stats(single) == AlphaStats(1.0, 0.0, 0.0, 1.0)


# --- draw_shapes ---


def alpha_plane(p: Pixels) -> List[List[int]]:
    a = p.rgba[3::4]
    return [list(a[y * p.width : (y + 1) * p.width]) for y in range(p.height)]


def test_draw_shapes_integer_box_is_exact() -> None:
    mask = ops.draw_shapes(10, 8, [("box", 2, 3, 5, 4)])
    for y, row in enumerate(alpha_plane(mask)):
        for x, a in enumerate(row):
            assert a == (0 if 2 <= x < 7 and 3 <= y < 7 else 255)
    assert set(mask.rgba[0::4] + mask.rgba[1::4] + mask.rgba[2::4]) == {0}


def test_draw_shapes_fractional_box_covers_by_area() -> None:
    mask = alpha_plane(ops.draw_shapes(6, 6, [("box", 1.5, 1.25, 2.0, 3.5)]))
    # x from 1.5 to 3.5: columns 1 and 3 half covered, 2 fully; y from 1.25 to 4.75: rows 1 and 4 three
    # quarters, 2 and 3 fully.
    cover = {
        (1, 1): 0.375,
        (2, 1): 0.75,
        (3, 1): 0.375,
        (1, 2): 0.5,
        (2, 2): 1.0,
        (1, 4): 0.375,
        (2, 4): 0.75,
    }
    for (x, y), share in cover.items():
        assert mask[y][x] == 255 - math.floor(255 * share + 0.5), (x, y)
    assert mask[0] == [255] * 6 and mask[5] == [255] * 6 and [row[0] for row in mask] == [255] * 6


def supersampled(width: int, height: int, shapes, factor: int = 8) -> Image.Image:
    """Pillow's coverage of the shapes: drawn at factor times the size, then box-averaged down."""
    big = Image.new("L", (width * factor, height * factor), 0)
    draw = ImageDraw.Draw(big)
    for kind, x, y, w, h in shapes:
        box = [x * factor, y * factor, (x + w) * factor - 1, (y + h) * factor - 1]
        (draw.rectangle if kind == "box" else draw.ellipse)(box, fill=255)
    return big.reduce(factor)


@pytest.mark.parametrize(
    "shapes",
    [
        [("ellipse", 10.3, 5.7, 60.2, 40.9)],
        [("ellipse", -20, -10, 50, 30), ("box", 40.5, 30.25, 30, 12.5)],
        [("ellipse", 30, 2, 4.5, 30), ("ellipse", 5, 40, 75, 3.5)],  # thin, apart (union is max, see below)
        [("ellipse", 2.5, 2.5, 1.0, 1.0)],
    ],
)
def test_draw_shapes_matches_pillow_supersampled(shapes) -> None:
    mask = ops.draw_shapes(80, 60, shapes)
    coverage = to_image(mask).getchannel("A").point(lambda v: 255 - v)
    mean, largest = difference(coverage, supersampled(80, 60, shapes))
    # Pillow's reference is itself quantised to 1/64 of a pixel and draws inclusive pixel boxes.
    assert mean <= 1.0 and largest <= 40, (mean, largest)


def test_draw_shapes_ellipse_inside_outside_and_monotonic_edge() -> None:
    mask = alpha_plane(ops.draw_shapes(100, 80, [("ellipse", 10, 10, 80, 60)]))
    assert mask[40][50] == 0 and mask[40][15] == 0 and mask[15][50] == 0
    assert mask[0][0] == 255 and mask[79][99] == 255 and mask[40][5] == 255 and mask[5][50] == 255
    row = mask[40][:50]  # from the left edge to the centre: alpha falls, never rises
    assert all(a >= b for a, b in zip(row, row[1:]))
    assert 0 < mask[40][10] < 255 or 0 < mask[40][9] < 255
    partial = sum(1 for r in mask for a in r if 0 < a < 255)
    assert 150 < partial < 600  # an edge about one pixel wide around a perimeter of about 220


def test_draw_shapes_union_and_colours() -> None:
    mask = ops.draw_shapes(
        8, 4, [("box", 0, 0, 4, 4), ("box", 2, 0, 4, 4)], (1, 2, 3, 4), (250, 251, 252, 253)
    )
    inside, outside = bytes((1, 2, 3, 4)), bytes((250, 251, 252, 253))
    assert mask.rgba[: 4 * 8] == inside * 6 + outside * 2
    half = ops.draw_shapes(2, 1, [("box", 0.5, 0, 1, 1)], (0, 0, 0, 0), (0, 0, 0, 255))
    assert half.rgba[3::4] == bytes((127, 127))
    union = alpha_plane(ops.draw_shapes(4, 1, [("box", 0.5, 0, 1, 1), ("box", 0.25, 0, 0.5, 1)]))
    assert union[0][0] == 127 and union[0][1] == 127  # the larger coverage wins, shares are not added


def test_draw_shapes_refuses_bad_shapes() -> None:
    for shape in [
        ("circle", 0, 0, 1, 1),
        ("box", 0, 0, -1, 1),
        ("box", 0, float("nan"), 1, 1),
        ("box", 0, 0),
    ]:
        with pytest.raises(ImageDataError):
            ops.draw_shapes(4, 4, [shape])  # type: ignore[list-item]


# --- contact_sheet ---


def solid(width: int, height: int, colour: Tuple[int, int, int, int]) -> Pixels:
    return Pixels(width, height, bytes(colour) * (width * height))


def pixel(p: Pixels, x: int, y: int) -> Tuple[int, ...]:
    return tuple(p.rgba[4 * (y * p.width + x) : 4 * (y * p.width + x) + 4])


def test_contact_sheet_grid_boxes_and_thumbnails() -> None:
    colours = [(200, 0, 0, 255), (0, 200, 0, 255), (0, 0, 200, 255), (90, 90, 0, 255), (0, 90, 90, 255)]
    images = [solid(300, 300, colours[0]), solid(600, 200, colours[1]), solid(50, 100, colours[2])]
    images += [solid(64, 64, c) for c in colours[3:]]
    sheet, boxes = ops.contact_sheet(images, max_width=400, cell=100, gap=4)
    # Five images: 3 columns, 2 rows; cells of min(100, (400 - 16) // 3) = 100.
    assert (sheet.width, sheet.height) == (3 * 100 + 4 * 4, 2 * 100 + 3 * 4)
    assert boxes == [
        (4, 4, 100, 100),
        (108, 4, 100, 100),
        (212, 4, 100, 100),
        (4, 108, 100, 100),
        (108, 108, 100, 100),
    ]
    for (x, y, w, h), colour in zip(boxes, colours):
        assert pixel(sheet, x + w // 2, y + h // 2) == colour
    assert pixel(sheet, 2, 2) == (255, 255, 255, 255)  # the rim
    assert pixel(sheet, 106, 50) == (255, 255, 255, 255)  # the gap between cells
    assert pixel(sheet, 250, 150) == (255, 255, 255, 255)  # the empty sixth cell
    # The 600x200 image is letterboxed in its cell (100x33), the 50x100 one pillarboxed (50x100).
    assert pixel(sheet, 150, 10) == (255, 255, 255, 255) and pixel(sheet, 150, 54) == colours[1]
    assert pixel(sheet, 220, 50) == (255, 255, 255, 255) and pixel(sheet, 240, 50) == colours[2]


def test_contact_sheet_shows_transparency_over_a_checkerboard_and_fits_max_width() -> None:
    clear = Pixels(32, 32, bytes(4 * 32 * 32))
    sheet, boxes = ops.contact_sheet([clear], max_width=2048, cell=64, gap=2, background=(0, 0, 0, 255))
    x, y, _, _ = boxes[0]
    assert (sheet.width, sheet.height) == (68, 68)
    assert pixel(sheet, x, y) == (255, 255, 255, 255) and pixel(sheet, x + 8, y) == (204, 204, 204, 255)
    many, boxes = ops.contact_sheet([solid(10, 10, (5, 5, 5, 255))] * 50, max_width=300, cell=256, gap=4)
    assert many.width <= 300 and len(boxes) == 50
    assert boxes[1][0] - boxes[0][0] == boxes[0][2] + 4 and (many.width - 4) % (boxes[0][2] + 4) == 0
    with pytest.raises(ImageDataError):
        ops.contact_sheet([])
    with pytest.raises(ImageDataError):
        ops.contact_sheet([clear] * 400, max_width=60)


@pytest.mark.parametrize("source", [photo, hard_edges])
def test_contact_sheet_thumbnails_are_pillows_thumbnails(source) -> None:
    # Thumbnails are made as Pillow's thumbnail() makes them: block averages, then Lanczos (reducing gap 2).
    image = source(700, 460)
    sheet, boxes = ops.contact_sheet([to_pixels(image)] * 2, max_width=1000, cell=200, gap=3)
    x, y, w, h = boxes[1]
    assert (w, h) == (200, 200)
    thumb = to_image(sheet).crop((x, y + 34, x + 200, y + 34 + 131))  # 700x460 in 200x200: 200x131, 34 above
    mean, largest = difference(thumb, image.resize((200, 131), Image.LANCZOS, reducing_gap=2.0))
    assert mean <= 0.1 and largest <= 3, (mean, largest)
    # And the direct resize stays close for photo-like content.
    if source is photo:
        mean, largest = difference(thumb, image.resize((200, 131), Image.LANCZOS))
        assert mean <= MEAN_BOUND and largest <= MAX_BOUND, (mean, largest)


@pytest.mark.parametrize(
    ("size", "box", "fx", "fy", "channels"),
    [
        ((17, 13), (0, 0, 17, 13), 3, 2, 3),  # partial last column and row blocks
        ((17, 13), (2, 1, 16, 13), 4, 5, 4),
        ((40, 30), (0, 0, 40, 30), 1, 7, 3),
        ((40, 30), (5, 5, 38, 29), 6, 1, 4),
        ((9, 9), (0, 0, 9, 9), 9, 9, 3),
        ((40, 30), (0, 0, 40, 30), 12, 11, 4),  # 132-pixel blocks: the 64-bit division
    ],
)
def test_reduce_is_the_rounded_block_average(size, box, fx, fy, channels) -> None:
    width, height = size
    data = bytearray(random.Random(fx * fy).randbytes(4 * width * height))
    if channels == 3:
        data[3::4] = b"\xff" * (width * height)
    got, out_w, out_h = ops._reduce(bytes(data), width, box, fx, fy, channels)
    left, top, right, bottom = box
    assert (out_w, out_h) == (-(-(right - left) // fx), -(-(bottom - top) // fy))
    for j in range(out_h):
        for i in range(out_w):
            xs = range(left + i * fx, min(right, left + (i + 1) * fx))
            ys = range(top + j * fy, min(bottom, top + (j + 1) * fy))
            n = len(xs) * len(ys)
            for c in range(4 if channels == 4 else 3):
                total = sum(data[4 * (y * width + x) + c] for y in ys for x in xs)
                assert got[4 * (j * out_w + i) + c] == (total + n // 2) // n, (i, j, c)
            if channels == 3:
                assert got[4 * (j * out_w + i) + 3] == 255

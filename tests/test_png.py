"""Tests of the PNG codec: PngSuite and a generated matrix against Pillow and the specification, round trips,
malformed and hostile files. Run: python -m pytest -q -p no:cacheprovider test_codec.py
"""

from __future__ import annotations

import io
import os
import random
import tracemalloc
import zlib
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import gpt_image as codec
import pytest
from gpt_image import MAX_PIXELS, ImageDataError, Pixels
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

HERE = Path(__file__).resolve().parent
SUITE = HERE / "data" / "pngsuite"
SIGNATURE = b"\x89PNG\r\n\x1a\n"
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


# --- A small, slow, independent PNG writer and reader of samples, for the tests only -----------------------


def chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def ihdr(
    width: int, height: int, depth: int, colour: int, interlace: int = 0, tail: bytes = b"\0\0"
) -> bytes:
    body = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes((depth, colour)) + tail
    return chunk(b"IHDR", body + bytes((interlace,)))


def paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_row(kind: int, row: bytes, prev: bytes, bpp: int) -> bytes:
    """Filter one row byte by byte, straight from the specification's formulas."""
    out = bytearray()
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        predictor = (0, a, b, (a + b) // 2, paeth(a, b, c))[kind]
        out.append((x - predictor) % 256)
    return bytes(out)


def pack_row(samples: Sequence[int], depth: int) -> bytes:
    if depth == 16:
        return b"".join(v.to_bytes(2, "big") for v in samples)
    if depth == 8:
        return bytes(samples)
    per_byte = 8 // depth
    out = bytearray()
    for i in range(0, len(samples), per_byte):
        byte = 0
        group = list(samples[i : i + per_byte]) + [0] * (per_byte - len(samples[i : i + per_byte]))
        for v in group:
            byte = (byte << depth) | v
        out.append(byte)
    return bytes(out)


Grid = List[List[Tuple[int, ...]]]  # rows of pixels, each a tuple of samples


def scanlines(grid: Grid, depth: int, filters: Callable[[int, int], int]) -> bytes:
    """The filtered scanlines of one (sub-)image; filters(row, pass-independent index) picks each row's type."""
    if not grid or not grid[0]:
        return b""
    bpp = max(1, len(grid[0][0]) * depth // 8)
    rows = [pack_row([v for pixel in row for v in pixel], depth) for row in grid]
    prev = bytes(len(rows[0]))
    out = bytearray()
    for y, row in enumerate(rows):
        kind = filters(y, len(out))
        out.append(kind)
        out += filter_row(kind, row, prev, bpp)
        prev = row
    return bytes(out)


def write_png(
    grid: Grid,
    colour: int,
    depth: int,
    interlace: int = 0,
    filters: Callable[[int, int], int] = lambda y, at: 0,
    palette: Optional[bytes] = None,
    trns: Optional[bytes] = None,
    idat_pieces: int = 1,
) -> bytes:
    height, width = len(grid), len(grid[0])
    if interlace:
        data = b"".join(
            scanlines([row[x0::dx] for row in grid[y0::dy]], depth, filters) for x0, y0, dx, dy in ADAM7
        )
    else:
        data = scanlines(grid, depth, filters)
    stream = zlib.compress(data, 9)
    parts = [
        SIGNATURE,
        ihdr(width, height, depth, colour, interlace),
        chunk(b"gAMA", (45455).to_bytes(4, "big")),
    ]
    if palette is not None:
        parts.append(chunk(b"PLTE", palette))
    if trns is not None:
        parts.append(chunk(b"tRNS", trns))
    step = max(1, -(-len(stream) // idat_pieces))
    parts += [chunk(b"IDAT", stream[i : i + step]) for i in range(0, len(stream), step)]
    parts.append(chunk(b"tEXt", b"Comment\0after the image data"))
    parts.append(chunk(b"IEND", b""))
    return b"".join(parts)


def expected_rgba(
    grid: Grid, colour: int, depth: int, palette: Optional[bytes] = None, trns: Optional[bytes] = None
) -> bytes:
    """What the specification says the image looks like in 8-bit RGBA, pixel by pixel."""

    def eight(v: int) -> int:
        if depth == 16:
            return v >> 8
        return v * 255 // ((1 << depth) - 1)

    out = bytearray()
    for row in grid:
        for pixel in row:
            if colour == 3:
                assert palette is not None
                index = pixel[0]
                alpha = trns[index] if trns is not None and index < len(trns) else 255
                out += palette[3 * index : 3 * index + 3] + bytes((alpha,))
            elif colour in (0, 2):
                key = None
                if trns is not None:
                    key = tuple(int.from_bytes(trns[i : i + 2], "big") for i in range(0, len(trns), 2))
                rgb = [eight(v) for v in pixel] * (3 if colour == 0 else 1)
                out += bytes([*rgb, 0 if tuple(pixel) == key else 255])
            elif colour == 4:
                out += bytes([eight(pixel[0])] * 3 + [eight(pixel[1])])
            else:
                out += bytes(eight(v) for v in pixel)
    return bytes(out)


def random_grid(
    rnd: random.Random, width: int, height: int, colour: int, depth: int, top: Optional[int] = None
) -> Grid:
    """Random samples, with smooth stretches (so filters have something to predict) and repeated pixels."""
    limit = (1 << depth) - 1 if top is None else top
    channels = CHANNELS[colour]
    grid: Grid = []
    for y in range(height):
        row: List[Tuple[int, ...]] = []
        for x in range(width):
            if rnd.random() < 0.5 and row:
                row.append(row[-1])
            elif rnd.random() < 0.3:
                row.append(tuple(min(limit, (x * 7 + y * 3 + c * 11) % (limit + 1)) for c in range(channels)))
            else:
                row.append(tuple(rnd.randint(0, limit) for _ in range(channels)))
        grid.append(row)
    return grid


def pillow_rgba(data: bytes) -> Tuple[int, int, bytes]:
    with Image.open(io.BytesIO(data)) as image:
        return image.width, image.height, image.convert("RGBA").tobytes()


def decoded(data: bytes) -> Pixels:
    pixels = codec.decode_png(data)
    assert len(pixels.rgba) == pixels.width * pixels.height * 4
    assert isinstance(pixels.rgba, bytes)
    return pixels


# --- PngSuite -----------------------------------------------------------------------------------------------

SUITE_FILES = sorted(path.name for path in SUITE.glob("*.png"))
VALID = [name for name in SUITE_FILES if not name.startswith("x")]
BROKEN = [name for name in SUITE_FILES if name.startswith("x")]


def test_the_suite_is_all_there() -> None:
    assert len(VALID) == 161 and len(BROKEN) == 14


def spec_rgba_of_suite_image(data: bytes) -> bytes:
    """Pillow's RGBA, corrected where Pillow departs from the specification.

    Pillow clips 16-bit greys to 255 where the specification keeps the high byte, and ignores tRNS on 1/2/4-bit
    and 16-bit greyscale; for those, the expected pixels are built here from Pillow's raw samples.
    """
    depth, colour = data[24], data[25]
    with Image.open(io.BytesIO(data)) as image:
        key = image.info.get("transparency")
        if colour == 0 and depth == 16:
            high = image.tobytes("raw", "I;16")[1::2]
            values = [int.from_bytes(pair, "little") for pair in zip_pairs(image.tobytes("raw", "I;16"))]
            alpha = bytes(0 if v == key else 255 for v in values)
            return interleave(high, high, high, alpha)
        if colour == 0 and depth < 8 and key is not None:
            grey = image.convert("L").tobytes()
            scaled = key * 255 // ((1 << depth) - 1)
            return interleave(grey, grey, grey, bytes(0 if v == scaled else 255 for v in grey))
        return bytes(image.convert("RGBA").tobytes())


def zip_pairs(data: bytes) -> List[bytes]:
    return [data[i : i + 2] for i in range(0, len(data), 2)]


def interleave(*planes: bytes) -> bytes:
    out = bytearray(len(planes[0]) * len(planes))
    for i, plane in enumerate(planes):
        out[i :: len(planes)] = plane
    return bytes(out)


@pytest.mark.parametrize("name", VALID)
def test_pngsuite_image_decodes_to_the_specified_pixels(name: str) -> None:
    data = (SUITE / name).read_bytes()
    pixels = decoded(data)
    width, height, _ = pillow_rgba(data)
    assert (pixels.width, pixels.height) == (width, height)
    assert pixels.rgba == spec_rgba_of_suite_image(data)


def test_pillow_departs_from_the_spec_where_we_say() -> None:
    # tbbn0g04: a 4-bit grey image with a tRNS key that Pillow ignores; the spec makes those pixels clear.
    data = (SUITE / "tbbn0g04.png").read_bytes()
    ours = decoded(data).rgba[3::4]
    assert pillow_rgba(data)[2][3::4].count(0) == 0
    assert ours.count(0) > 400 and ours.count(0) + ours.count(255) == len(ours)
    # basn0g16: Pillow clips 16-bit greys; the spec's high byte spans the whole range.
    data = (SUITE / "basn0g16.png").read_bytes()
    assert len(set(decoded(data).rgba[0::4])) > len(set(pillow_rgba(data)[2][0::4]))


@pytest.mark.parametrize("name", BROKEN)
def test_pngsuite_broken_image_is_refused(name: str) -> None:
    with pytest.raises(ImageDataError):
        codec.decode_png((SUITE / name).read_bytes())


# --- The generated matrix: every colour type, bit depth, interlace and filter --------------------------------

COMBOS = [(colour, depth) for colour in sorted(DEPTHS) for depth in DEPTHS[colour]]
FILTER_MODES: Dict[str, Callable[[int, int], int]] = {
    "none": lambda y, at: 0,
    "sub": lambda y, at: 1,
    "up": lambda y, at: 2,
    "average": lambda y, at: 3,
    "paeth": lambda y, at: 4,
    "mixed": lambda y, at: (y * 3 + at) % 5,
}


def palette_for(rnd: random.Random, depth: int) -> Tuple[bytes, bytes]:
    entries = min(256, (1 << depth) - (1 if depth > 1 else 0))  # one short of full, to test the range check
    palette = bytes(rnd.randrange(256) for _ in range(3 * entries))
    trns = bytes(rnd.randrange(256) for _ in range(entries // 2))
    return palette, trns


@pytest.mark.parametrize("interlace", [0, 1])
@pytest.mark.parametrize("mode", sorted(FILTER_MODES))
@pytest.mark.parametrize(("colour", "depth"), COMBOS)
def test_generated_image_decodes_to_the_specified_pixels(
    colour: int, depth: int, mode: str, interlace: int
) -> None:
    rnd = random.Random(f"{colour}-{depth}-{mode}-{interlace}")
    width, height = rnd.choice([(13, 11), (9, 17), (1, 5), (6, 1)])
    palette = trns = None
    top = None
    if colour == 3:
        palette, trns = palette_for(rnd, depth)
        top = len(palette) // 3 - 1
    grid = random_grid(rnd, width, height, colour, depth, top)
    if colour in (0, 2) and rnd.random() < 0.7:
        key = grid[height // 2][width // 2]  # a colour that occurs, so some pixels become transparent
        trns = b"".join(v.to_bytes(2, "big") for v in key)
    data = write_png(grid, colour, depth, interlace, FILTER_MODES[mode], palette, trns, idat_pieces=3)
    pixels = decoded(data)
    assert (pixels.width, pixels.height) == (width, height)
    want = expected_rgba(grid, colour, depth, palette, trns)
    assert pixels.rgba == want
    pillow_follows_spec = not (trns is not None and colour in (0, 2) and (depth != 8)) and (
        colour,
        depth,
    ) != (0, 16)
    if pillow_follows_spec:
        assert pillow_rgba(data)[2] == want


def test_transparent_key_compares_full_16_bit_samples() -> None:
    # Two greys with the same high byte: only the one equal to the key in all 16 bits is transparent.
    grid: Grid = [[(0x1234,), (0x1235,), (0x1234,)]]
    data = write_png(grid, 0, 16, trns=(0x1234).to_bytes(2, "big"))
    assert decoded(data).rgba == bytes((0x12, 0x12, 0x12, 0, 0x12, 0x12, 0x12, 255, 0x12, 0x12, 0x12, 0))
    grid = [[(1, 2, 0x300), (1, 2, 0x301)]]
    data = write_png(grid, 2, 16, trns=b"\0\1\0\2\3\0")
    assert decoded(data).rgba[3::4] == b"\0\xff"


def test_low_bit_grey_is_scaled_and_keyed_on_the_unscaled_sample() -> None:
    for depth, values in ((1, [0, 1]), (2, [0, 1, 2, 3]), (4, [0, 7, 15])):
        grid: Grid = [[(v,) for v in values]]
        data = write_png(grid, 0, depth, trns=values[-1].to_bytes(2, "big"))
        rgba = decoded(data).rgba
        assert list(rgba[0::4]) == [v * {1: 255, 2: 85, 4: 17}[depth] for v in values]
        assert list(rgba[3::4]) == [255] * (len(values) - 1) + [0]


@pytest.mark.parametrize("bpp_colour", [(2, 8), (6, 8), (6, 16), (0, 8), (0, 1)])
def test_wavefront_and_row_paths_agree_with_the_spec_on_larger_images(
    bpp_colour: Tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Wide enough that the decoder runs its Average/Paeth rows as a wavefront (when pixels are several bytes)
    # as well as by the loop.
    colour, depth = bpp_colour
    rnd = random.Random(colour * 100 + depth)
    grid = random_grid(rnd, 300, 70, colour, depth)
    rows = [4] * 40 + [3] * 10 + [rnd.choice([0, 1, 2, 3, 4]) for _ in range(20)]
    data = write_png(grid, colour, depth, 0, lambda y, at: rows[y])
    bands: List[int] = []
    wave = codec._png_unfilter_wave

    def counting_wave(*args: object) -> None:
        bands.append(1)
        wave(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(codec, "_png_unfilter_wave", counting_wave)
    assert decoded(data).rgba == expected_rgba(grid, colour, depth)
    assert bool(bands) == (CHANNELS[colour] * depth >= 24)


@pytest.mark.parametrize(("colour", "depth"), [(0, 1), (0, 16), (2, 8), (3, 4), (4, 8), (6, 8), (6, 16)])
def test_rows_longer_than_a_segment_are_rebuilt_piece_by_piece(
    colour: int, depth: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Segments of 8 bytes stand in for the 64 KB pieces of very wide rows: each filter must carry its left
    # neighbours from one piece to the next.
    monkeypatch.setattr(codec, "_PNG_SEGMENT", 8)
    rnd = random.Random(depth * 10 + colour)
    palette = bytes(rnd.randrange(256) for _ in range(48)) if colour == 3 else None
    grid = random_grid(rnd, 23, 12, colour, depth)
    data = write_png(grid, colour, depth, 0, lambda y, at: (y * 2 + 1) % 5, palette)
    assert decoded(data).rgba == expected_rgba(grid, colour, depth, palette)


def unfilter_reference(raw: bytes, row_bytes: int, height: int, bpp: int) -> bytes:
    out = bytearray()
    prev = bytes(row_bytes)
    for y in range(height):
        start = y * (row_bytes + 1)
        kind, line = raw[start], raw[start + 1 : start + 1 + row_bytes]
        row = bytearray(row_bytes)
        for i in range(row_bytes):
            a = row[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            row[i] = (line[i] + (0, a, b, (a + b) // 2, paeth(a, b, c))[kind]) % 256
        out += row
        prev = bytes(row)
    return bytes(out)


@settings(max_examples=60, deadline=None)
@given(
    bpp=st.sampled_from([1, 2, 3, 4, 6, 8]),
    units=st.integers(2, 9),
    height=st.integers(1, 9),
    seed=st.integers(0, 2**32),
)
def test_wavefront_matches_the_reference_on_any_band(bpp: int, units: int, height: int, seed: int) -> None:
    rnd = random.Random(seed)
    row_bytes = units * bpp
    raw = b"".join(bytes([rnd.randrange(5)]) + os.urandom(row_bytes) for _ in range(height))
    want = unfilter_reference(raw, row_bytes, height, bpp)
    split = rnd.randrange(height)  # rows before it by the row loop, the rest as one wavefront
    out = codec._png_unfilter(raw[: split * (row_bytes + 1)], 0, row_bytes, split, bpp) + bytearray(
        row_bytes * (height - split)
    )
    codec._png_unfilter_wave(raw, 0, out, split, height, row_bytes, bpp)
    assert bytes(out) == want
    assert bytes(codec._png_unfilter(raw, 0, row_bytes, height, bpp)) == want


# --- Encoding -----------------------------------------------------------------------------------------------


def photo_like(width: int, height: int, seed: int, alpha: bool) -> Image.Image:
    from PIL import ImageDraw, ImageFilter

    rnd = random.Random(seed)
    r = Image.linear_gradient("L").resize((width, height))
    g = Image.radial_gradient("L").resize((width, height))
    b = Image.linear_gradient("L").rotate(90).resize((width, height))
    image = Image.merge("RGB", (r, g, b))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = rnd.randrange(width), rnd.randrange(height)
        box = (x0, y0, x0 + rnd.randrange(width // 3), y0 + rnd.randrange(height // 3))
        draw.ellipse(box, fill=(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
    image = image.filter(ImageFilter.GaussianBlur(2))
    noise = Image.effect_noise((width, height), 12)
    image = Image.blend(
        image,
        Image.merge("RGB", (noise, noise.rotate(180), noise.transpose(Image.Transpose.FLIP_LEFT_RIGHT))),
        0.15,
    )
    if alpha:
        mask = Image.new("L", (width, height), 0)
        ImageDraw.Draw(mask).ellipse((width // 8, height // 8, width * 7 // 8, height * 7 // 8), fill=255)
        image.putalpha(mask.filter(ImageFilter.GaussianBlur(3)))
    return image


def colour_type(data: bytes) -> int:
    return data[25]


def filter_types(data: bytes) -> List[int]:
    pixels = codec.decode_png(data)
    bpp = 3 if colour_type(data) == 2 else 4
    stream = b""
    pos = 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == b"IDAT":
            stream += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(stream)
    return list(raw[0 :: pixels.width * bpp + 1])


@pytest.mark.parametrize("alpha", [False, True])
def test_encoding_a_photo_is_read_back_exactly_and_about_as_small_as_pillow(alpha: bool) -> None:
    image = photo_like(320, 200, 7, alpha)
    pixels = Pixels(image.width, image.height, image.convert("RGBA").tobytes())
    data = codec.encode_png(pixels)
    assert colour_type(data) == (6 if alpha else 2)
    assert pillow_rgba(data) == (pixels.width, pixels.height, pixels.rgba)
    assert codec.decode_png(data) == pixels
    pillow = io.BytesIO()
    image.save(pillow, "PNG")
    assert len(data) <= 1.10 * len(pillow.getvalue())
    assert len(set(filter_types(data))) >= 2  # the filter is chosen per row, not fixed


def test_each_filter_is_chosen_where_it_predicts_best() -> None:
    # Rows built so that one filter leaves only zeros: a flat row (Sub), a copy of the row above (Up),
    # a row of random bytes next to all-zero neighbours (None), and a smooth 2-D ramp (Paeth, or Average).
    width = 64
    rnd = random.Random(3)
    rows = [bytes(rnd.randrange(256) for _ in range(width * 4))]
    rows.append(rows[0])  # Up
    rows.append(bytes([10, 20, 30, 200]) * width)  # Sub
    rows.append(bytes(rnd.randrange(256) for _ in range(width * 4)))
    for y in range(4):
        rows.append(bytes((x + y * 3 + c) % 256 for x in range(width) for c in range(4)))
    data = codec.encode_png(Pixels(width, len(rows), b"".join(rows)))
    kinds = filter_types(data)
    assert kinds[1] == 2 and kinds[2] == 1
    assert set(kinds[5:]) & {3, 4}
    assert codec.decode_png(data).rgba == b"".join(rows)


@pytest.mark.parametrize("band", [16, 40, 1 << 15])
def test_rows_longer_than_a_band_are_filtered_piece_by_piece(
    band: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A band of 16 or 40 bytes stands in for very wide rows (filtered in pieces, one pixel of overlap).
    monkeypatch.setattr(codec, "_PNG_ENCODE_BAND", band)
    image = photo_like(37, 21, 3, alpha=True)
    pixels = Pixels(image.width, image.height, image.tobytes())
    data = codec.encode_png(pixels)
    assert pillow_rgba(data) == (pixels.width, pixels.height, pixels.rgba)
    assert len(set(filter_types(data))) >= 2
    opaque = Pixels(37, 21, image.convert("RGB").convert("RGBA").tobytes())
    assert pillow_rgba(codec.encode_png(opaque)) == (37, 21, opaque.rgba)


def test_opaque_image_is_written_as_rgb_and_transparent_as_rgba() -> None:
    opaque = Pixels(3, 2, bytes([1, 2, 3, 255]) * 6)
    assert colour_type(codec.encode_png(opaque)) == 2
    clear = Pixels(3, 2, bytes([1, 2, 3, 255]) * 5 + bytes(4))
    assert colour_type(codec.encode_png(clear)) == 6
    for pixels in (opaque, clear):
        assert codec.decode_png(codec.encode_png(pixels)) == pixels


def test_all_zero_rows_encode_to_a_tiny_file() -> None:
    pixels = Pixels(2000, 500, bytes(2000 * 500 * 4))
    data = codec.encode_png(pixels)
    assert len(data) < 5000
    assert codec.decode_png(data) == pixels


@pytest.mark.parametrize("size", [(0, 1), (1, 0), (2, 2)])
def test_encode_refuses_a_wrong_size(size: Tuple[int, int]) -> None:
    with pytest.raises(ImageDataError):
        codec.encode_png(Pixels(size[0], size[1], bytes(12)))


@st.composite
def small_images(draw: st.DrawFn) -> Pixels:
    width = draw(st.integers(1, 12))
    height = draw(st.integers(1, 8))
    opaque = draw(st.booleans())
    palette = draw(st.lists(st.binary(min_size=4, max_size=4), min_size=1, max_size=4))
    pixels = draw(
        st.lists(
            st.sampled_from(palette) | st.binary(min_size=4, max_size=4),
            min_size=width * height,
            max_size=width * height,
        )
    )
    rgba = bytearray(b"".join(pixels))
    if opaque:
        rgba[3::4] = b"\xff" * (width * height)
    return Pixels(width, height, bytes(rgba))


@settings(max_examples=150, deadline=None)
@given(small_images())
def test_round_trip_is_exact(pixels: Pixels) -> None:
    data = codec.encode_png(pixels)
    assert codec.decode_png(data) == pixels


def test_pillow_reads_our_files_exactly_at_odd_sizes() -> None:
    rnd = random.Random(11)
    for width, height in ((1, 1), (1, 300), (301, 1), (37, 23)):
        rgba = bytes(rnd.randrange(256) for _ in range(width * height * 4))
        pixels = Pixels(width, height, rgba)
        assert pillow_rgba(codec.encode_png(pixels)) == (width, height, rgba)


# --- Malformed and hostile files ----------------------------------------------------------------------------

GOOD = write_png([[(1, 2, 3), (4, 5, 6)], [(7, 8, 9), (10, 11, 12)]], 2, 8, filters=lambda y, at: 1)


def chunks_of(data: bytes) -> List[Tuple[bytes, bytes]]:
    out = []
    pos = 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        out.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def assemble(parts: Sequence[Tuple[bytes, bytes]]) -> bytes:
    return SIGNATURE + b"".join(chunk(kind, body) for kind, body in parts)


def refused(data: bytes, *words: str) -> str:
    with pytest.raises(ImageDataError) as caught:
        codec.decode_png(data)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


def replace_chunk(data: bytes, kind: bytes, body: bytes) -> bytes:
    return assemble([(k, body if k == kind else b) for k, b in chunks_of(data)])


def idat_of(raw: bytes) -> bytes:
    return zlib.compress(raw)


def test_good_file_decodes() -> None:
    assert decoded(GOOD).rgba == bytes([1, 2, 3, 255, 4, 5, 6, 255, 7, 8, 9, 255, 10, 11, 12, 255])


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", ("signature",)),
        (b"GIF89a" + GOOD[6:], ("signature",)),
        (GOOD[:-1], ("truncated",)),
        (GOOD[:8], ("truncated",)),
        (GOOD[: GOOD.index(b"IDAT") + 10], ("truncated", "IDAT")),
        (GOOD[:-12], ("truncated", "IEND")),
        (GOOD[:30] + bytes([GOOD[30] ^ 1]) + GOOD[31:], ("CRC",)),
    ],
)
def test_broken_framing_is_refused(data: bytes, words: Tuple[str, ...]) -> None:
    refused(data, *words)


def test_every_truncation_is_a_clear_error() -> None:
    for size in range(len(GOOD) - 1):
        refused(GOOD[:size])


def test_chunk_order_is_enforced() -> None:
    parts = chunks_of(GOOD)
    header, idat, end = parts[0], [p for p in parts if p[0] == b"IDAT"], parts[-1]
    refused(assemble([*idat, header, end]), "first chunk", "IHDR")
    refused(assemble([header, header, *idat, end]), "second IHDR")
    stream = idat[0][1]
    split = [(b"IDAT", stream[:5]), (b"tEXt", b"a\0b"), (b"IDAT", stream[5:])]
    refused(assemble([header, *split, end]), "not consecutive")
    refused(assemble([header, end]), "no IDAT")
    refused(assemble([header, *idat, (b"PLTE", bytes(6)), end]), "PLTE")
    refused(assemble([header, *idat, (b"tRNS", bytes(6)), end]), "tRNS")
    refused(assemble([header, (b"tRNS", bytes(6)), (b"tRNS", bytes(6)), *idat, end]), "second tRNS")
    refused(assemble([header, (b"CHNK", b""), *idat, end]), "critical chunk CHNK")
    refused(assemble([header, (b"c1nk", b""), *idat, end]), "ASCII letters")
    refused(SIGNATURE + (2**31).to_bytes(4, "big") + b"IHDR", "2^31-1")
    # An unknown ancillary chunk is skipped, and bytes after IEND are ignored.
    assert decoded(assemble([header, (b"zzZz", b"\1\2"), *idat, end]) + b"junk").width == 2


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ((0, 5, 8, 2, 0, 0, 0), ("size",)),
        ((5, 0, 8, 2, 0, 0, 0), ("size",)),
        ((2**31, 1, 8, 2, 0, 0, 0), ("size",)),
        ((1, 1, 8, 1, 0, 0, 0), ("colour type 1",)),
        ((1, 1, 8, 7, 0, 0, 0), ("colour type 7",)),
        ((1, 1, 4, 2, 0, 0, 0), ("bit depth 4",)),
        ((1, 1, 16, 3, 0, 0, 0), ("bit depth 16",)),
        ((1, 1, 2, 4, 0, 0, 0), ("bit depth 2",)),
        ((1, 1, 3, 0, 0, 0, 0), ("bit depth 3",)),
        ((1, 1, 8, 2, 1, 0, 0), ("compression",)),
        ((1, 1, 8, 2, 0, 1, 0), ("filter method",)),
        ((1, 1, 8, 2, 0, 0, 2), ("interlace method 2",)),
        ((MAX_PIXELS + 1, 1, 1, 0, 0, 0, 0), ("too large",)),
    ],
)
def test_forbidden_header_values_are_refused(fields: Tuple[int, ...], words: Tuple[str, ...]) -> None:
    width, height, depth, colour, compression, method, interlace = fields
    body = (
        width.to_bytes(4, "big")
        + height.to_bytes(4, "big")
        + bytes((depth, colour, compression, method, interlace))
    )
    refused(
        SIGNATURE + chunk(b"IHDR", body) + chunk(b"IDAT", idat_of(b"\0\0\0\0")) + chunk(b"IEND", b""), *words
    )
    refused(SIGNATURE + chunk(b"IHDR", body[:12]) + chunk(b"IEND", b""), "13")


def test_bad_image_data_is_refused() -> None:
    refused(
        replace_chunk(GOOD, b"IDAT", idat_of(b"\5" + bytes(6) + b"\0" + bytes(6))), "filter type 5", "row 0"
    )
    refused(replace_chunk(GOOD, b"IDAT", idat_of(b"\0" + bytes(6) + b"\0" + bytes(5))), "inflates to 13")
    refused(replace_chunk(GOOD, b"IDAT", idat_of(bytes(15))), "more than 14")
    refused(replace_chunk(GOOD, b"IDAT", idat_of(bytes(14))[:-6]), "ends before")
    refused(replace_chunk(GOOD, b"IDAT", b"not zlib at all"), "zlib")
    refused(replace_chunk(GOOD, b"IDAT", b""), "ends before")


def test_palette_rules_are_enforced() -> None:
    grid: Grid = [[(0,), (1,)], [(2,), (1,)]]
    good = write_png(grid, 3, 8, palette=bytes(range(9)))
    assert decoded(good).rgba[:4] == bytes([0, 1, 2, 255])
    refused(write_png(grid, 3, 8, palette=bytes(range(6))), "palette index 2", "2 entries")
    refused(write_png([[(3,)]], 3, 2, palette=bytes(9)), "palette index 3")
    refused(assemble([p for p in chunks_of(good) if p[0] != b"PLTE"]), "no PLTE")
    refused(write_png(grid, 3, 8, palette=bytes(10)), "PLTE holds 10")
    refused(write_png(grid, 3, 8, palette=bytes(3 * 257)), "PLTE holds")
    refused(write_png(grid, 3, 8, palette=bytes(9), trns=bytes(4)), "more alpha values")
    refused(write_png([[(0,)]], 0, 8, palette=bytes(3)), "greyscale image has a PLTE")
    parts = dict(chunks_of(write_png(grid, 3, 8, palette=bytes(9), trns=bytes(2))))
    order = [b"IHDR", b"tRNS", b"PLTE", b"IDAT", b"IEND"]
    refused(assemble([(kind, parts[kind]) for kind in order]), "tRNS comes before PLTE")
    refused(write_png([[(0, 0)]], 4, 8, trns=bytes(2)), "already has an alpha channel")
    refused(write_png([[(0,)]], 0, 8, trns=bytes(6)), "tRNS holds 6")


def test_decompression_bomb_stays_small() -> None:
    # A 1024x1024 RGBA header (4 MB of scanlines) over 300 KB of IDAT that would inflate to 300 MB.
    # After a full flush the compressor forgets everything, so each further megabyte of zeros deflates to the
    # same bytes: repeat them instead of compressing 300 MB (the stream's checksum is never reached).
    zeros = zlib.compressobj(9)
    first = zeros.compress(bytes(1 << 20)) + zeros.flush(zlib.Z_FULL_FLUSH)
    again = zeros.compress(bytes(1 << 20)) + zeros.flush(zlib.Z_FULL_FLUSH)
    stream = first + again * 299
    assert len(stream) < 400_000
    data = SIGNATURE + ihdr(1024, 1024, 8, 6) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")
    del stream
    tracemalloc.start()
    try:
        refused(data, "inflates to more than")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20


def test_large_image_in_one_small_idat_inflates_completely() -> None:
    # 4.4 MB of scanlines from a few KB of IDAT: the inflater's output is capped per call, and must be drained
    # even when no input is left.
    width, height = 1100, 1000
    last = (bytes(range(256)) * 18)[: width * 4]
    rows = (b"\0" + bytes(width * 4)) * (height - 1) + b"\0" + last
    data = (
        SIGNATURE + ihdr(width, height, 8, 6) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")
    )
    assert len(data) < 20_000 and len(rows) > codec._PNG_INFLATE_STEP
    pixels = decoded(data)
    assert pixels.rgba == bytes(width * 4 * (height - 1)) + last


@pytest.mark.parametrize("pieces", [1, 0])
def test_output_held_back_by_the_inflater_is_drained(monkeypatch: pytest.MonkeyPatch, pieces: int) -> None:
    # A stream of zeros cut before its Adler-32 checksum (all pixels are there, as libpng and Pillow accept),
    # in one IDAT or in one-byte IDATs, with a tiny output step: the decoder must keep asking for output
    # after the input is consumed, since a few input bytes hold kilobytes of output back.
    monkeypatch.setattr(codec, "_PNG_INFLATE_STEP", 64)
    width, height = 200, 100
    stream = zlib.compress((b"\0" + bytes(width * 4)) * height, 9)[:-4]
    step = len(stream) if pieces else 1
    idat = b"".join(chunk(b"IDAT", stream[i : i + step]) for i in range(0, len(stream), step))
    data = SIGNATURE + ihdr(width, height, 8, 6) + idat + chunk(b"IEND", b"")
    assert decoded(data).rgba == bytes(width * height * 4)


def test_huge_dimensions_are_refused_before_inflating() -> None:
    # 8000x6000 1-bit grey: 48 megapixels in 6 MB of zero scanlines that deflate to a few kilobytes.
    width, height = 8000, 6000
    stream = zlib.compress(bytes((width // 8 + 1) * height), 9)
    data = SIGNATURE + ihdr(width, height, 1, 0) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")
    assert len(data) < 10_000
    tracemalloc.start()
    try:
        refused(data, "too large", "48,000,000")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_random_corruption_is_always_a_clear_error_or_an_image() -> None:
    # Flip bytes in valid files, fixing each chunk's CRC so the damage reaches the decoder proper.
    rnd = random.Random(2024)
    seeds = [GOOD, (SUITE / "basi3p02.png").read_bytes(), (SUITE / "basn0g16.png").read_bytes()]
    seeds.append(write_png(random_grid(rnd, 7, 5, 6, 8), 6, 8, 1, lambda y, at: y % 5))
    outcomes = {"image": 0, "error": 0}
    for _ in range(400):
        parts = chunks_of(rnd.choice(seeds))
        index = rnd.randrange(len(parts))
        kind, body = parts[index]
        damaged = bytearray(body)
        for _ in range(rnd.randint(1, 3)):
            if damaged:
                damaged[rnd.randrange(len(damaged))] = rnd.randrange(256)
        parts[index] = (kind, bytes(damaged))
        try:
            pixels = codec.decode_png(assemble(parts))
        except ImageDataError as exc:
            assert str(exc)
            outcomes["error"] += 1
        else:
            assert len(pixels.rgba) == pixels.width * pixels.height * 4
            outcomes["image"] += 1
    assert outcomes["image"] > 20 and outcomes["error"] > 20

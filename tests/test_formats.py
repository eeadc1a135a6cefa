"""The GIF and SVG checks of the Images section (gpt-image-2.6's outputs): completeness, size, active content,
and their rows in the format table. Pillow is the GIF oracle; the SVG bombs are real (a plain parser expands
them)."""

from __future__ import annotations

import io
import random
import time
import tracemalloc
from typing import Callable, Dict, List, Tuple

import pytest
from gpt_image import (
    SVG_NAMESPACE,
    gif_check,
    gif_frames,
    gif_problem,
    gif_size,
    svg_check,
)
from PIL import Image

# --------------------------------------------------------------------------------------
# GIF fixtures
# --------------------------------------------------------------------------------------


def pillow_gif(frames: List[Image.Image], **options: object) -> bytes:
    out = io.BytesIO()
    if len(frames) > 1:
        frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], **options)
    else:
        frames[0].save(out, "GIF", **options)
    return out.getvalue()


def noise_frame(rng: random.Random, size: Tuple[int, int] = (40, 30)) -> Image.Image:
    data = bytes(rng.getrandbits(8) for _ in range(size[0] * size[1] * 3))
    return Image.frombytes("RGB", size, data)


def single_87a() -> bytes:
    return pillow_gif([Image.new("RGB", (20, 10), (200, 30, 30))])


def animated_89a() -> bytes:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    return pillow_gif([Image.new("RGB", (24, 16), c) for c in colours], duration=100, loop=0)


def local_palettes() -> bytes:
    """Frames with palettes of their own: Pillow writes local colour tables for all but the first."""
    frames = []
    for i in range(3):
        frame = Image.new("P", (8, 8), 0)
        frame.putpalette([i * 80 + 10, 5 * i, 200 - 50 * i] * 256)
        frames.append(frame)
    return pillow_gif(frames, duration=50)


def noisy_animation() -> bytes:
    rng = random.Random(7)
    return pillow_gif([noise_frame(rng) for _ in range(4)], duration=80, loop=0, comment=b"made in a test")


def blocks(data: bytes) -> List[Tuple[str, int, int]]:
    """An independent walk for the tests: (kind, start, end) of every top-level block of a whole GIF."""
    out = [("header", 0, 13)]
    pos = 13
    if data[10] & 0x80:
        out.append(("gct", 13, 13 + (3 << ((data[10] & 7) + 1))))
        pos = out[-1][2]

    def sub_blocks(p: int) -> int:
        while data[p]:
            p += 1 + data[p]
        return p + 1

    while data[pos] != 0x3B:
        if data[pos] == 0x21:
            end = sub_blocks(pos + 2)
            out.append(("extension", pos, end))
        else:
            assert data[pos] == 0x2C
            end = pos + 10
            if data[pos + 9] & 0x80:
                end += 3 << ((data[pos + 9] & 7) + 1)
            end = sub_blocks(end + 1)
            out.append(("image", pos, end))
        pos = end
    out.append(("trailer", pos, pos + 1))
    return out


def without_global_table(data: bytes) -> bytes:
    """Move the global colour table into every frame that has none: a valid GIF with no global table."""
    parts = blocks(data)
    assert parts[1][0] == "gct"
    table = data[parts[1][1] : parts[1][2]]
    bits = data[10] & 7
    out = bytearray(data[:13])
    out[10] &= 0x7F
    for kind, start, end in parts[2:]:
        chunk = bytearray(data[start:end])
        if kind == "image" and not chunk[9] & 0x80:
            chunk[9] = (chunk[9] & 0x78) | 0x80 | bits
            chunk[10:10] = table
        out += chunk
    return bytes(out)


def no_global_table() -> bytes:
    return without_global_table(animated_89a())


def no_global_table_noisy() -> bytes:
    return without_global_table(noisy_animation())


ALL_GIFS: Dict[str, Callable[[], bytes]] = {
    "single_87a": single_87a,
    "animated_89a": animated_89a,
    "local_palettes": local_palettes,
    "noisy_animation": noisy_animation,
    "no_global_table": no_global_table,
    "no_global_table_noisy": no_global_table_noisy,
}


# --------------------------------------------------------------------------------------
# GIF tests
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ALL_GIFS))
def test_pillow_gifs_are_complete_with_pillows_size_and_frames(name: str) -> None:
    data = ALL_GIFS[name]()
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        size, frames = img.size, getattr(img, "n_frames", 1)
    assert gif_problem(data) is None
    assert gif_size(data) == size
    assert gif_frames(data) == frames
    assert gif_check(data) == (None, size[0], size[1], frames)


def test_fixtures_cover_both_versions_and_both_table_kinds() -> None:
    assert single_87a()[:6] == b"GIF87a"
    assert animated_89a()[:6] == b"GIF89a"
    assert animated_89a()[10] & 0x80
    assert not ALL_GIFS["no_global_table"]()[10] & 0x80
    assert any(
        kind == "image" and local_palettes()[start + 9] & 0x80 for kind, start, _ in blocks(local_palettes())
    )
    # The rewritten GIF decodes to the same pixels as the one Pillow made.
    for original, rewritten in ((animated_89a(), ALL_GIFS["no_global_table"]()),):
        with Image.open(io.BytesIO(original)) as a, Image.open(io.BytesIO(rewritten)) as b:
            for index in range(a.n_frames):
                a.seek(index)
                b.seek(index)
                assert a.convert("RGB").tobytes() == b.convert("RGB").tobytes()


@pytest.mark.parametrize("name", sorted(ALL_GIFS))
def test_every_prefix_is_incomplete(name: str) -> None:
    data = ALL_GIFS[name]()
    for cut in range(len(data)):
        problem = gif_problem(data[:cut])
        assert problem, cut


@pytest.mark.parametrize("name", sorted(ALL_GIFS))
def test_cuts_at_block_boundaries_say_where(name: str) -> None:
    data = ALL_GIFS[name]()
    frames_before = 0
    for kind, start, end in blocks(data):
        if kind == "header":
            continue
        problem = gif_problem(data[:start])
        assert problem is not None
        if kind == "gct":
            assert "global colour table" in problem
        else:
            assert f"after {frames_before} frame" in problem and "before its trailer" in problem, problem
        if kind == "image":
            middle = gif_check(data[: (start + end) // 2])
            assert f"frame {frames_before + 1}" in str(middle.problem)
            assert middle.frames == frames_before
            frames_before += 1


def test_random_cuts_and_damage_never_raise() -> None:
    rng = random.Random(2026)
    data = noisy_animation()
    for _ in range(300):
        assert gif_problem(data[: rng.randrange(len(data))])
    for _ in range(300):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            damaged[rng.randrange(len(damaged))] = rng.getrandbits(8)
        facts = gif_check(bytes(damaged))  # any answer, no exception
        assert facts.frames >= 0
    for length in (0, 1, 5, 6, 12, 13, 50, 500):
        garbage = bytes(rng.getrandbits(8) for _ in range(length))
        assert gif_problem(garbage)
        assert gif_problem(b"GIF89a" + garbage)


def test_garbage_and_odd_blocks_are_named() -> None:
    data = animated_89a()
    assert gif_problem(b"") == "not a GIF (it does not start with GIF87a or GIF89a)"
    assert (
        gif_problem(b"\x89PNG\r\n\x1a\n" + bytes(40)) == "not a GIF (it does not start with GIF87a or GIF89a)"
    )
    assert gif_size(b"GIF89a\x01") is None
    assert gif_size(data[:13]) == (24, 16)
    trailer = len(data) - 1
    assert "unknown block 0x00" in str(gif_problem(data[:trailer] + b"\x00;"))
    assert gif_problem(data + b"\x00") == "1 byte follows the GIF's trailer"
    assert gif_problem(data + b"GIF89a") == "6 bytes follow the GIF's trailer"
    header = data[: blocks(data)[1][2]]
    assert gif_problem(header + b";") == "the GIF holds no image"
    # An LZW minimum code size of 0 (or above 11) cannot be decoded.
    image = next((start, end) for kind, start, end in blocks(data) if kind == "image")
    broken = bytearray(data)
    broken[image[0] + 10] = 0
    assert gif_problem(bytes(broken)) == "frame 1 has an invalid LZW minimum code size (0)"


def test_views_are_accepted() -> None:
    data = animated_89a()
    assert gif_check(memoryview(data)) == gif_check(bytearray(data)) == gif_check(data)


# --------------------------------------------------------------------------------------
# SVG fixtures and tests
# --------------------------------------------------------------------------------------

LIMIT = 1 << 20

DRAWING = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="120" height="80px" viewBox="0 0 12 8">'
    b'<rect width="12" height="8" fill="#336699" opacity="0.5"/><circle cx="6" cy="4" r="3" fill="gold"/>'
    b"<text x='1' y='7'>Tom &amp; Jerry &#169; &#x263A;</text><stop offset='1'/></svg>\n"
)


@pytest.mark.parametrize(
    ("document", "size"),
    [
        (DRAWING, (120, 80)),
        (b'<svg width="64" height="32"><g/></svg>', (64, 32)),  # no namespace
        (b"\xef\xbb\xbf" + DRAWING, (120, 80)),  # a UTF-8 byte order mark
        (b'<?xml version="1.0" encoding="UTF-8" standalone="no"?>' + DRAWING, (120, 80)),
        (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 300 150"/>', (300, 150)),
        (b'<svg viewBox="-10,-10 , 25.4 10.6"/>', (25, 11)),  # commas, decimals, rounding
        (b'<svg width="100%" height="50%" viewBox="0 0 40 30"/>', (40, 30)),  # percentages ignored
        (b'<svg width="10mm" height="2in" viewBox="0 0 40 30"/>', (40, 30)),  # other units ignored
        (b'<svg width="600" viewBox="0 0 300 150"/>', (600, 300)),  # the other side from the aspect
        (b'<svg height="75px" viewBox="0 0 300 150"/>', (150, 75)),
        (b'<svg width="  99.5px " height="1e2"/>', (100, 100)),
        (b'<svg width="64"/>', (64, None)),
        (b"<svg/>", (None, None)),
        (b'<svg width="1e999" height="0" viewBox="0 0 0 10"/>', (None, None)),
        (b'<s:svg xmlns:s="http://www.w3.org/2000/svg" width="5" height="6"/>', (5, 6)),
    ],
)
def test_valid_svgs_and_their_sizes(document: bytes, size: Tuple[object, object]) -> None:
    facts = svg_check(document, LIMIT)
    assert facts.problem is None
    assert (facts.width, facts.height) == size
    assert facts.active == []


@pytest.mark.parametrize(
    ("document", "words"),
    [
        (b"", "not well-formed"),
        (b"<svg>", "not well-formed"),
        (b"<svg></g></svg>", "not well-formed"),
        (b"<svg/><svg/>", "not well-formed"),
        (b"<svg x='1' x='2'/>", "not well-formed"),
        (b"<svg>&nbsp;</svg>", "not well-formed XML (undefined entity"),
        (b'<svg><a xlink:href="#x"/></svg>', "not well-formed XML (unbound prefix"),
        (b"just text", "not well-formed"),
        (b"<html><svg/></html>", "the root element is <html>, not <svg>"),
        (
            b'<svg xmlns="http://example.com/not-svg"/>',
            "the root element is <{http://example.com/not-svg}svg>",
        ),
        (b"<SVG/>", "the root element is <SVG>"),
    ],
)
def test_broken_or_foreign_documents_are_refused(document: bytes, words: str) -> None:
    facts = svg_check(document, LIMIT)
    assert facts.problem is not None and words in facts.problem, facts.problem


def test_every_cut_before_the_end_is_refused() -> None:
    end = DRAWING.rindex(b">")
    for cut in range(end + 1):
        assert svg_check(DRAWING[:cut], LIMIT).problem, cut
    assert svg_check(DRAWING[: end + 1], LIMIT).problem is None


def billion_laughs(levels: int) -> bytes:
    """Entity lolN holds ten lol(N-1): the text of lol<levels> is 3 * 10**levels bytes."""
    entities = b"".join(
        b' <!ENTITY lol%d "%s">\n' % (i, (b"&lol%d;" % (i - 1)) * 10) for i in range(1, levels + 1)
    )
    return (
        b'<?xml version="1.0"?>\n<!DOCTYPE svg [\n <!ENTITY lol0 "lol">\n'
        + entities
        + b']>\n<svg xmlns="http://www.w3.org/2000/svg"><text>&lol%d;</text></svg>\n' % levels
    )


def quadratic(length: int, references: int) -> bytes:
    """One long entity referenced many times: length * references bytes of text from a small document."""
    subset = b'<!DOCTYPE svg [<!ENTITY a "' + b"A" * length + b'">]>\n'
    return subset + b"<svg><text>" + b"&a;" * references + b"</text></svg>"


BILLION_LAUGHS = billion_laughs(9)
QUADRATIC = quadratic(200_000, 20_000)
EXTERNAL = b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><svg>&xxe;</svg>'
PARAMETER = b'<!DOCTYPE svg [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]><svg/>'
PUBLIC_DTD = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
    b'"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n<svg xmlns="http://www.w3.org/2000/svg" width="4" '
    b'height="4"/>'
)
EMPTY_SUBSET = b"<!DOCTYPE svg [ <!-- nothing here --> ]><svg/>"


@pytest.mark.parametrize(
    "document",
    [BILLION_LAUGHS, QUADRATIC, EXTERNAL, PARAMETER, PUBLIC_DTD, EMPTY_SUBSET, b"<!DOCTYPE svg><svg/>"],
)
def test_any_dtd_is_refused_fast_in_bounded_memory(document: bytes) -> None:
    tracemalloc.start()
    try:
        started = time.perf_counter()
        facts = svg_check(document, LIMIT)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert facts.problem is not None and "DTD" in facts.problem, facts.problem
    assert elapsed < 0.05
    assert peak < 10 * 1024 * 1024
    assert facts.width is None and facts.active == []


def test_the_bombs_would_explode_without_the_guard() -> None:
    """The fixtures are real: a plain expat parser expands small versions of them (big ones would take
    gigabytes, or trip the amplification limit of a recent expat)."""
    import xml.parsers.expat

    for document, expanded in ((billion_laughs(4), 3 * 10**4), (quadratic(2_000, 200), 2_000 * 200)):
        parser = xml.parsers.expat.ParserCreate()
        texts: List[str] = []
        parser.CharacterDataHandler = texts.append
        parser.Parse(document, True)
        assert sum(map(len, texts)) == expanded
        assert svg_check(document, LIMIT).problem is not None


@pytest.mark.parametrize(
    ("document", "active"),
    [
        (b"<svg><script>alert(1)</script></svg>", ["<script>"]),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script type="text/ecmascript"/></svg>', ["<script>"]),
        (
            b'<svg><foreignObject><h:script xmlns:h="http://www.w3.org/1999/xhtml">x</h:script>'
            b"</foreignObject></svg>",
            ["<script>"],
        ),
        (b'<svg onload="alert(1)"/>', ["on* event attributes"]),
        (b'<svg><rect onClick="x()"/></svg>', ["on* event attributes"]),
        (b'<svg><a href="javascript:alert(1)"><text>x</text></a></svg>', ["javascript: URL"]),
        (
            b'<svg xmlns:xlink="http://www.w3.org/1999/xlink"><a xlink:href="  JavaScript:alert(1)"/></svg>',
            ["javascript: URL"],
        ),
        (b'<svg><a href="&#9;java&#10;script:alert(1)"/></svg>', ["javascript: URL"]),
        (b'<svg><a><set attributeName="href" to="javascript:alert(1)"/></a></svg>', ["javascript: URL"]),
        (
            b'<svg onload="x"><script/><a href="javascript:x"/></svg>',
            ["<script>", "javascript: URL", "on* event attributes"],
        ),
        (b'<svg><a href="https://example.com/javascript:"/><g opacity="1" offset="0"/></svg>', []),
    ],
)
def test_active_content_is_reported_not_refused(document: bytes, active: List[str]) -> None:
    facts = svg_check(document, LIMIT)
    assert facts.problem is None
    assert facts.active == active


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ("<svg><text>café</text></svg>".encode("latin-1"), "not UTF-8 (byte 14"),
        ("<svg/>".encode("utf-16"), "not UTF-8"),
        (b'<?xml version="1.0" encoding="ISO-8859-1"?><svg/>', "declares the encoding 'ISO-8859-1'"),
        (b"<svg>\xff</svg>", "not UTF-8"),
    ],
)
def test_only_utf8_is_taken(document: bytes, words: str) -> None:
    facts = svg_check(document, LIMIT)
    assert facts.problem is not None and words in facts.problem, facts.problem


def test_limits_on_bytes_elements_and_depth() -> None:
    assert svg_check(DRAWING, len(DRAWING)).problem is None
    assert svg_check(DRAWING, len(DRAWING) - 1).problem == (
        f"the SVG is {len(DRAWING):,} bytes, over the limit of {len(DRAWING) - 1:,}"
    )
    many = b"<svg>" + b"<g/>" * 99 + b"</svg>"
    assert svg_check(many, LIMIT, max_elements=100).problem is None
    assert svg_check(many, LIMIT, max_elements=99).problem == "the SVG has more than 99 elements"
    deep = b"<svg>" + b"<g>" * 9 + b"</g>" * 9 + b"</svg>"
    assert svg_check(deep, LIMIT, max_depth=10).problem is None
    assert svg_check(deep, LIMIT, max_depth=9).problem == "the SVG nests elements deeper than 9"
    # The default caps hold a large document to a bounded time.
    huge = b"<svg>" + b"<g/>" * 600_000 + b"</svg>"
    started = time.perf_counter()
    assert svg_check(huge, 1 << 24).problem == "the SVG has more than 500,000 elements"
    assert time.perf_counter() - started < 5


def test_random_bytes_and_cuts_never_raise() -> None:
    rng = random.Random(5)
    for _ in range(300):
        blob = bytes(rng.getrandbits(8) for _ in range(rng.randrange(64)))
        assert svg_check(blob, LIMIT).problem
        damaged = bytearray(DRAWING)
        damaged[rng.randrange(len(damaged))] = rng.choice(b"<>&;\"'/!?x\x00\xff")
        svg_check(bytes(damaged), LIMIT)  # any answer, no exception


def test_the_namespace_constant_is_the_svg_one() -> None:
    assert svg_check(f'<svg xmlns="{SVG_NAMESPACE}"/>'.encode(), LIMIT).problem is None


# --------------------------------------------------------------------------------------
# The rows of the format table: how the rest of the program sees GIF and SVG
# --------------------------------------------------------------------------------------


def test_the_rows_say_what_the_api_makes() -> None:
    import gpt_image as gi

    gif, svg = gi.IMAGE_FORMATS["gif"], gi.IMAGE_FORMATS["svg"]
    assert (gif.mime, gif.extensions, svg.mime, svg.extensions) == (
        "image/gif",
        (".gif",),
        "image/svg+xml",
        (".svg",),
    )
    # Outputs only, no compression, no alpha channel (2.6 follows 2.5: a transparent background needs png or webp).
    for row in (gif, svg):
        assert not (row.input or row.compression or row.alpha)
    assert (gif.routes, gif.single, gif.streams) == ((), False, True)
    assert (svg.routes, svg.single, svg.streams) == (("generations",), True, False)
    assert gi.format_for_extension(".SVG") is svg and gi.image_format("GIF") is gif


@pytest.mark.parametrize("name", sorted(ALL_GIFS))
def test_gif_info_and_sniff_agree_with_pillow(name: str) -> None:
    import gpt_image as gi

    data = ALL_GIFS[name]()
    with Image.open(io.BytesIO(data)) as img:
        size, transparent = img.size, "transparency" in img.info
    assert gi.sniff_format(data) == "gif"
    assert gi.read_image_info(data[:65536]) == gi.ImageInfo("gif", size[0], size[1], transparent)
    assert gi.check_complete(data, "gif") is None
    assert gi.check_complete(
        data[:-1], "gif"
    ) == "the GIF ends at byte {:,}, after {} frame{} before its trailer (it was cut short)".format(
        len(data) - 1, gif_frames(data), "s," if gif_frames(data) != 1 else ","
    )


def test_a_gif_with_a_transparent_index_has_alpha() -> None:
    import gpt_image as gi

    frame = Image.new("P", (8, 8), 0)
    frame.putpalette([0, 0, 0, 255, 0, 0] * 128)
    still = pillow_gif([frame], transparency=0)
    animation = pillow_gif([frame, frame.copy()], transparency=0, duration=40)
    for data in (still, animation):
        info = gi.read_image_info(data)
        assert info is not None and info.has_alpha and (info.width, info.height) == (8, 8)
    assert not gi.read_image_info(single_87a()).has_alpha  # type: ignore[union-attr]
    assert not gi.read_image_info(animated_89a()).has_alpha  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "document",
    [
        DRAWING,
        b"\xef\xbb\xbf" + DRAWING,
        b'<?xml version="1.0" encoding="UTF-8"?>\n' + DRAWING,
        b"\n  <!-- a drawing -->\n" + DRAWING,
    ],
)
def test_svg_info_reads_the_root_from_the_first_bytes(document: bytes) -> None:
    import gpt_image as gi

    assert gi.sniff_format(document) == "svg"
    assert gi.read_image_info(document) == gi.ImageInfo("svg", 120, 80, False)
    # The root element is enough: a head cut anywhere after it still gives the size.
    cut = document.index(b">", document.index(b"<svg")) + 1
    assert gi.read_image_info(document[:cut]) == gi.ImageInfo("svg", 120, 80, False)
    assert gi.check_complete(document[:cut], "svg") is not None


@pytest.mark.parametrize("document", [BILLION_LAUGHS, PUBLIC_DTD, b"<svg width='3' height='4'", b"<?xml"])
def test_svg_info_never_expands_or_fails(document: bytes) -> None:
    import gpt_image as gi

    started = time.perf_counter()
    info = gi.IMAGE_FORMATS["svg"].info(document)
    assert time.perf_counter() - started < 0.05
    assert info == gi.ImageInfo("svg", None, None, False)


def test_svg_completeness_and_caution_through_the_row() -> None:
    import gpt_image as gi

    row = gi.IMAGE_FORMATS["svg"]
    assert row.caution is not None
    assert gi.check_complete(DRAWING, "svg") is None and row.caution(memoryview(DRAWING)) is None
    assert "DTD" in str(gi.check_complete(BILLION_LAUGHS, "svg"))
    said = row.caution(memoryview(b'<svg onload="x"><script/><a href="javascript:x"/></svg>'))
    assert said is not None
    assert (
        "<script>, javascript: URL and on* event attributes" in said
        and "run code where it is embedded" in said
    )
    assert "<img>" in said
    # Things that are not SVG are not taken for one.
    for other in (b"<html><body/></html>", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"just text"):
        assert gi.sniff_format(other) != "svg"

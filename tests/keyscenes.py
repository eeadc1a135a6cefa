"""Synthetic test subjects for the key route and the native route, with their true alpha (test-only; Pillow).

A subject is drawn as an alpha matte (antialiased by supersampling, one shape blurred) and a colour layer
that holds each shape's colour a little beyond its edge, so the composite over the key is exactly
``a * fg + (1 - a) * bg`` and the matte is the ground truth. Models never paint the exact key, so the
background is a slightly shifted shade with mild noise; the subject encloses a region in the exact key
colour, which a keyer must keep.

Scenes: "subject" (a good image), and the faults "checker" (a painted grey/white checkerboard, opaque),
"opaque" (no key background at all), "gradient" (a background that drifts far from the key towards the
bottom), "shadow" (a dark cast shadow on the key), "border" (the subject runs off the bottom edge).
Everything is deterministic for a seed; 1024x1024 renders in well under 0.5 s.
"""

from __future__ import annotations

import io
import math
import random
from typing import List, NamedTuple, Tuple

from PIL import Image, ImageChops, ImageDraw, ImageFilter

Color = Tuple[int, int, int]
SCENES = ("subject", "checker", "opaque", "gradient", "shadow", "border")


class Scene(NamedTuple):
    """A rendered key-route image and what is true about it."""

    png: bytes  # RGB PNG, as the API would send it
    alpha: bytes  # true alpha of the subject, one byte a pixel (width * height)
    interior: bytes  # 255 where the subject encloses the exact key colour (must stay opaque), else 0
    background: Color  # the shade the background was painted in (before noise)


def _supersample(width: int, height: int) -> int:
    # Antialiasing by drawing at k times the size; k shrinks for big images to bound memory and time.
    pixels = width * height
    return 3 if pixels <= 1_100_000 else 2


def _painted_shade(key: Color, rng: random.Random) -> Color:
    # Each channel moves 3..14 levels towards the middle, like (8, 245, 12) for #00FF00.
    r, g, b = (v - rng.randint(3, 14) if v >= 128 else v + rng.randint(3, 14) for v in key)
    return r, g, b


def _subject_colors(key: Color, rng: random.Random) -> List[Color]:
    # Colours far from both keys' hue, as a prompt that forbids the key colour would get.
    palette = [
        (200, 40, 40),
        (30, 60, 170),
        (240, 200, 30),
        (90, 50, 30),
        (235, 235, 230),
        (25, 25, 30),
        (230, 120, 20),
        (120, 110, 200),
        (60, 150, 200),
        (170, 170, 165),
    ]
    rng.shuffle(palette)
    return palette


def _noise_layer(size: Tuple[int, int], amplitude: int, rng: random.Random) -> Image.Image:
    # Uniform noise in -amplitude..+amplitude per channel, added with ImageChops.add's offset.
    count = size[0] * size[1] * 3
    table = bytes(v % (2 * amplitude + 1) for v in range(256))
    return Image.frombytes("RGB", size, rng.randbytes(count).translate(table))


def _add_noise(image: Image.Image, amplitude: int, rng: random.Random) -> Image.Image:
    return ImageChops.add(image, _noise_layer(image.size, amplitude, rng), 1.0, -amplitude)


def _draw_subject(
    width: int, height: int, key: Color, rng: random.Random, touch_border: bool
) -> Tuple[Image.Image, Image.Image, Image.Image]:
    """Return (colour layer RGB, true alpha L, interior-key mask L) of a subject of several shapes."""
    k = _supersample(width, height)
    big = (width * k, height * k)
    matte = Image.new("L", big, 0)  # antialiased shapes, drawn at k times the size
    colour = Image.new("RGB", (width, height), (128, 128, 128))
    colour_draw = ImageDraw.Draw(colour)
    matte_draw = ImageDraw.Draw(matte)
    colors = _subject_colors(key, rng)
    unit = min(width, height)

    def jitter(value: float, spread: float) -> float:
        return value + rng.uniform(-spread, spread) * unit

    # The body: a big ellipse, off-centre, or running off the bottom edge for the "border" fault.
    cx, cy = jitter(width * 0.45, 0.05), jitter(height * 0.5, 0.05)
    rx, ry = unit * rng.uniform(0.22, 0.28), unit * rng.uniform(0.2, 0.26)
    if touch_border:
        rx, cy, ry = width * 0.4, height * 0.8, height * 0.45
    grow = 3  # the colour layer holds each shape's colour a few pixels beyond its edge
    # A thin detail, its colour drawn first so the body covers its root: an antenna 2..3 px wide from the
    # body into the background, ending in a small knob.
    tx0, ty0 = cx - rx * 0.3, cy - ry * 0.8
    tx1, ty1 = tx0 - unit * rng.uniform(0.08, 0.14), ty0 - unit * rng.uniform(0.12, 0.18)
    line_width = rng.uniform(2.0, 3.0)
    matte_draw.line([(tx0 * k, ty0 * k), (tx1 * k, ty1 * k)], fill=255, width=max(1, round(line_width * k)))
    colour_draw.line([(tx0, ty0), (tx1, ty1)], fill=colors[2], width=round(line_width) + 2 * grow)
    knob = unit * 0.025
    matte_draw.ellipse([(tx1 - knob) * k, (ty1 - knob) * k, (tx1 + knob) * k, (ty1 + knob) * k], fill=255)
    colour_draw.ellipse(
        (tx1 - knob - grow, ty1 - knob - grow, tx1 + knob + grow, ty1 + knob + grow), fill=colors[2]
    )

    body = (cx - rx, cy - ry, cx + rx, cy + ry)
    matte_draw.ellipse([v * k for v in body], fill=255)
    colour_draw.ellipse((body[0] - grow, body[1] - grow, body[2] + grow, body[3] + grow), fill=colors[0])
    # A shading gradient across the body (lit from the top left), in the colour layer only.
    ramp = Image.linear_gradient("L")
    shade = ImageChops.add(ramp, ramp.transpose(Image.Transpose.TRANSPOSE), 2.0).resize((width, height))
    darker = tuple(max(0, int(c * 0.7)) for c in colors[0])
    shaded = Image.composite(Image.new("RGB", (width, height), darker), colour, shade.point(lambda v: v // 2))
    body_mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(body_mask).ellipse(
        (body[0] - grow, body[1] - grow, body[2] + grow, body[3] + grow), fill=255
    )
    colour.paste(shaded, (0, 0), body_mask)

    # A rotated rectangle overlapping the body (a hard polygon, antialiased).
    angle = rng.uniform(0, math.pi)
    hx, hy = unit * rng.uniform(0.1, 0.16), unit * rng.uniform(0.05, 0.08)
    px, py = cx + rx * 0.9, cy - ry * 0.4
    corners = []
    for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        corners.append(
            (
                px + sx * hx * math.cos(angle) - sy * hy * math.sin(angle),
                py + sx * hx * math.sin(angle) + sy * hy * math.cos(angle),
            )
        )
    matte_draw.polygon([(x * k, y * k) for x, y in corners], fill=255)
    colour_draw.polygon(corners, fill=colors[1], outline=colors[1], width=2 * grow)

    alpha = matte.resize((width, height), Image.Resampling.BOX)

    # A soft-edged blob (blurred matte, as a model's soft focus or fur gives), overlapping the body's left.
    bx, by, br = cx - rx * 0.95, cy + ry * 0.3, unit * rng.uniform(0.06, 0.09)
    blob = Image.new("L", (width, height), 0)
    ImageDraw.Draw(blob).ellipse((bx - br, by - br, bx + br, by + br), fill=255)
    blob = blob.filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 1.8)))
    colour_draw.ellipse(
        (bx - br - 3 * grow, by - br - 3 * grow, bx + br + 3 * grow, by + br + 3 * grow), fill=colors[3]
    )
    colour.paste(colors[3], (0, 0), blob.point(lambda v: 255 if v > 0 else 0))
    alpha = ImageChops.lighter(alpha, blob)

    # The enclosed region in the exact key colour (a window in the body), antialiased against the body.
    wx, wy, wr = cx + rx * 0.1, cy + ry * 0.05, max(6.0, unit * 0.016)
    left, top = int(wx - wr) - 1, int(wy - wr * 0.7) - 1
    box = (int(wx + wr) + 2 - left, int(wy + wr * 0.7) + 2 - top)
    pane = Image.new("L", (box[0] * k, box[1] * k), 0)  # drawn at k times the size in its own box only
    ImageDraw.Draw(pane).rounded_rectangle(
        [(wx - wr - left) * k, (wy - wr * 0.7 - top) * k, (wx + wr - left) * k, (wy + wr * 0.7 - top) * k],
        radius=wr * 0.3 * k,
        fill=255,
    )
    window = Image.new("L", (width, height), 0)
    window.paste(pane.resize(box, Image.Resampling.BOX), (left, top))
    colour.paste(key, (0, 0), window)
    return colour, alpha, window.point(lambda v: 255 if v == 255 else 0)


def _checkerboard(width: int, height: int, cell: int, tones: Tuple[int, int]) -> Image.Image:
    tile = Image.new("L", (2 * cell, 2 * cell), tones[0])
    tile_draw = ImageDraw.Draw(tile)
    tile_draw.rectangle((cell, 0, 2 * cell - 1, cell - 1), fill=tones[1])
    tile_draw.rectangle((0, cell, cell - 1, 2 * cell - 1), fill=tones[1])
    board = Image.new("L", (width, height))
    for y in range(0, height, 2 * cell):
        for x in range(0, width, 2 * cell):
            board.paste(tile, (x, y))
    return board.convert("RGB")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # Pillow's adaptive filters (its default at every level); zlib level 1, as level 6 doubles the time
    # spent on noisy images and changes nothing a decoder sees.
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def render_key_scene(width: int, height: int, key: Color, scene: str = "subject", seed: int = 0) -> Scene:
    """Render one key-route image (a good subject or a fault scene) and what is true about it."""
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}; expected one of {', '.join(SCENES)}")
    rng = random.Random(f"{scene}/{seed}/{width}x{height}/{key}")
    colour, alpha, interior = _draw_subject(width, height, key, rng, touch_border=scene == "border")
    shade = _painted_shade(key, rng)
    size = (width, height)
    if scene == "checker":
        background = _checkerboard(
            width, height, rng.choice((12, 16, 24)), rng.choice(((255, 204), (255, 230), (238, 204)))
        )
    elif scene == "opaque":
        sky = Image.linear_gradient("L").resize(size)
        background = Image.composite(
            Image.new("RGB", size, (70, 110, 170)), Image.new("RGB", size, (200, 215, 230)), sky
        )
    else:
        background = Image.new("RGB", size, shade)
        if scene == "gradient":
            # The lower part drifts far from the key (a floor the model painted), down to the bottom edge.
            ramp = Image.linear_gradient("L").resize(size).point(lambda v: max(0, v - 100) * 255 // 155)
            far = tuple(int(c * 0.45) + 40 for c in shade)
            background = Image.composite(Image.new("RGB", size, far), background, ramp)
        elif scene == "shadow":
            # A soft cast shadow beside the body: the key at 40% brightness in its core.
            spot = Image.new("L", size, 0)
            sx, sy = width * 0.72, height * 0.78
            ImageDraw.Draw(spot).ellipse(
                (sx - width * 0.2, sy - height * 0.07, sx + width * 0.2, sy + height * 0.07), fill=255
            )
            spot = spot.filter(ImageFilter.GaussianBlur(min(width, height) * 0.02))
            dark = tuple(int(c * 0.4) for c in shade)
            background = Image.composite(Image.new("RGB", size, dark), background, spot)
    image = Image.composite(colour, background, alpha)
    image = _add_noise(image, rng.randint(3, 6), rng)
    return Scene(_png(image), alpha.tobytes(), interior.tobytes(), shade)


def render_key_subject(
    width: int, height: int, key: Color, scene: str = "subject", seed: int = 0
) -> Tuple[bytes, bytes]:
    """Render a key-route image: (PNG bytes, true alpha one byte a pixel)."""
    rendered = render_key_scene(width, height, key, scene, seed)
    return rendered.png, rendered.alpha


def render_native(width: int, height: int, seed: int = 0) -> bytes:
    """Render a native-route result: an RGBA PNG with the subject on real transparency."""
    rng = random.Random(f"native/{seed}/{width}x{height}")
    colour, alpha, _ = _draw_subject(width, height, (0, 255, 0), rng, touch_border=False)
    colour = _add_noise(colour, 3, rng)
    image = colour.convert("RGBA")
    image.putalpha(alpha)
    # Fully transparent pixels carry no colour, as encoders that premultiply would leave them.
    clear = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    return _png(Image.composite(image, clear, alpha.point(lambda v: 255 if v else 0)))


def render_native_scene(width: int, height: int, scene: str = "subject", seed: int = 0, fmt: str = "png") -> bytes:
    """A native-route answer: the subject on real alpha; or a fault: a painted checkerboard (opaque, as models
    that cannot make alpha paint one) or an opaque image that claims nothing."""
    if scene == "checker":  # the subject on a painted checkerboard, every pixel opaque
        painted = render_key_scene(width, height, (0, 255, 0), "checker", seed).png
        image = Image.open(io.BytesIO(painted)).convert("RGBA")
    elif scene == "opaque":
        image = render_key_scene(width, height, (255, 255, 255), "opaque", seed).png
        image = Image.open(io.BytesIO(image)).convert("RGBA")
    else:
        image = Image.open(io.BytesIO(render_native(width, height, seed)))
    out = io.BytesIO()
    image.save(out, format="WEBP" if fmt == "webp" else "PNG", **({"lossless": True} if fmt == "webp" else {}))
    return out.getvalue()

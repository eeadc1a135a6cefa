"""A loopback fake of the OpenAI image APIs (and their Azure paths), for tests and benchmarks.

The fake is a real HTTP/1.1 server on 127.0.0.1 (``ThreadingHTTPServer`` in a daemon
thread), so the CLI under test talks to it through its ordinary urllib code path.

Usage in tests::

    with FakeAPI() as fake:
        fake.queue(error_reply(429, "slow down", code="rate_limit_exceeded"), Reply(json={...}))
        ...run the CLI with OPENAI_BASE_URL=fake.base_url...
        assert fake.requests[0].json["model"] == "gpt-image-2"

Every request is recorded (``fake.requests``). Each request consumes one scripted
behaviour from the FIFO ``fake.queue(...)``; when the queue is empty the route's default
behaviour answers, deriving format, count and streaming from the request itself.

Default images are small solid-colour pictures with deterministic colours:
final image *i* (0-based, per request) is ``final_color(i)``; partial image *k* is
``partial_color(k)``. ``identify(image_bytes)`` maps an image back to ("final", i) or
("partial", k). The exact bytes the defaults sent are also kept in ``fake.sent_images`` /
``fake.sent_partials`` and per request in ``Recorded.sent_images`` / ``.sent_partials``.

Routes (the defaults; ``strict`` rejections in brackets)
--------------------------------------------------------
- ``POST /v1/images/generations``, ``POST /v1/responses``: JSON, or SSE when ``stream``.
- ``POST /v1/images/edits``: multipart (``image`` / ``image[]``, ``mask``) or JSON
  (EditImageBodyJsonParam: ``images`` 1..16 of ``{image_url}`` (https or a base64
  ``data:image/png|jpeg|webp`` URL, <= 20,971,520 chars) or ``{file_id}``, optional ``mask``
  the same; [missing images/prompt, both or neither of image_url/file_id, unknown fields, a
  data URL that is not base64 of a PNG/JPEG/WEBP, an unknown file id (404 "No such File
  object"), a file that is not an image of purpose vision/user_data, bad enums/types]).
  ``Recorded.json_images()`` / ``.json_mask()`` give them decoded (``ImageRef``).
  Responses ``input_image`` parts and the tool's ``input_image_mask`` are checked the same
  way (file ids only when "responses" is in ``fake.check_file_ids``) and decoded by
  ``Recorded.input_images()`` / ``.input_image_mask()``.
- Files: ``POST /v1/files`` (multipart ``purpose`` + ``file``; the body is streamed to a
  file in ``fake.tmp_dir``, never into memory; [purpose missing or not one of assistants,
  batch, fine-tune, vision, user_data, evals; no file part; > ``max_upload_bytes``; purpose
  batch and not ``.jsonl``]) -> File object; ``GET /v1/files`` (``?purpose=``);
  ``GET /v1/files/{id}``; ``GET /v1/files/{id}/content`` (streamed, Content-Length);
  ``DELETE /v1/files/{id}``. Unknown ids -> 404 "No such File object: ID".
- Batches: ``POST /v1/batches`` ``{input_file_id, endpoint, completion_window: "24h",
  metadata?, output_expires_after?}`` -> a full Batch object in ``validating``; [missing
  fields, an endpoint outside the spec's list, a window other than 24h, bad metadata or
  output_expires_after, unknown fields, an unknown input file (404), a file whose purpose is
  not batch]. ``GET /v1/batches/{id}`` takes one status step every ``polls_per_step`` polls:
  validating -> in_progress (counts.total set) -> (lines run, ``lines_per_step`` at a time,
  counts filling in) -> finalizing -> completed; or validating -> failed with
  ``errors.data [{code, message, param, line}]`` (codes invalid_json_line,
  missing_required_parameter, duplicate_custom_id, invalid_value (method, body),
  url_mismatch, model_mismatch, empty_file, too_many_tasks (> ``batch_max_lines``),
  file_too_large (> ``batch_max_bytes``)). ``GET /v1/batches?limit=&after=`` lists newest
  first. ``POST /v1/batches/{id}/cancel`` -> cancelling, then cancelled on the next step
  (409 for a finished batch). Each line runs through the same code as an HTTP request (the
  markers below included; ``stream: true`` is a 400 line); output lines ``{"id":
  "batch_req_...", "custom_id", "response": {"status_code", "request_id", "body"}, "error":
  null}`` in a seeded shuffled order; lines whose request failed go to the error file (like
  the API; ``BatchPlan.failures_in="output"`` to change it); lines that never ran (expired,
  cancelled) go to the error file as ``{"id", "custom_id", "response": null, "error":
  {"code": "batch_expired" | "batch_cancelled", "message"}}``. Output files are generated as
  they are sent (a known Content-Length; each distinct image string held once).
  ``BatchPlan`` scripts a batch: steps, expiry after K lines, a truncated or reset output
  file, an extra line with an unknown custom_id.
- Azure (``fake.azure_url`` is the endpoint root): v1 ``/openai/v1/...`` (every route above;
  ``model`` = the deployment; ``api-version`` optional) and classic
  ``/openai/deployments/{deployment}/images/generations|edits?api-version=`` plus
  ``/openai/responses|files|batches...?api-version=``. [no ``api-key`` header -> 401
  ``{"error": {"code": "401", ...}}`` (a Bearer key alone is refused unless
  ``azure_bearer_ok``; ``azure_api_key`` makes other keys 401 too); classic without
  api-version -> 400 ``BadRequest``; a deployment (path, body ``model``, or the
  ``x-ms-oai-image-generation-deployment`` header) not in ``fake.azure_deployments`` -> 404
  ``DeploymentNotFound``; webp -> 400; unknown paths -> 404 "Resource not found"]. Quality
  defaults to high. ``Recorded.surface``, ``.deployment``, ``.api_version`` say what came.
- gpt-image-2.6 (``gpt-image-2.6-flare`` / ``-sunburst`` and dated snapshots; api-facts.md
  section 10, third-party facts): ``complexity`` low|medium|high on every image route (generations,
  JSON and multipart edits, the Responses tool, batch lines) [on another model: 400
  ``unsupported_parameter`` "Unsupported parameter: 'complexity' is not supported with this
  model."; another value: 400 ``invalid_value``]; ``output_format`` gif (all routes) and svg
  (generations only, ``n`` 1, no stream) [other models, routes, n or stream: 400]. GIFs are
  animations (``make_gif``; previews are still GIFs), SVGs a small drawing (``make_svg``); 2.6
  answers carry ``data[].generation_id`` and SVG answers an ``svg_usage`` block.
- Body fields [``strict_fields``, on by default: a field the spec (or 2.6's ``complexity``) does
  not know -> 400 ``unknown_parameter`` "Unknown parameter: 'frames'.", unless ``accept_extra``
  names it].
- Anything else -> 404 ``unknown_url``.

Scripting
---------
- ``fake.queue(*behaviours, route=None)``: behaviours are ``Reply``, ``SSE``, ``Reset``,
  ``ResetMidBody``, ``Hang``, ``Lost`` (run the default, e.g. create the batch, then lose the
  answer) or a callable ``(Recorded) -> behaviour | None``. ``route="POST /v1/batches"``
  (optional method + fnmatch glob on the raw path or the canonical route, so
  ``"POST /v1/images/generations"`` also catches the Azure paths) keeps them for matching
  requests only; they are taken before the plain queue.
- ``fake.batch_plan = BatchPlan(...)`` for all batches, ``fake.queue_batch(plan, ...)`` for
  the next ones created; ``fake.advance_batch(id, steps)`` steps one without polling.
- ``fake.add_file(data, filename, purpose, file_id=None) -> id`` stores a file as if uploaded;
  ``fake.file(id)``, ``fake.files``, ``fake.file_content(id)``, ``fake.batch(id)``,
  ``fake.batches`` (newest first) read the state without advancing anything.
- Prompt markers (``fake.markers = True``), in a prompt or a Responses input text, for HTTP
  requests and batch lines alike: ``[[refuse]]`` / ``[[filter]]`` -> 400 moderation_blocked
  (Azure: contentFilter), ``[[status:NNN]]`` -> that HTTP error with an OpenAI body,
  ``[[break]]`` -> the normal answer cut in half with a reset (a stream is cut inside its final
  event; in a batch, a 500 line). Broken 2.6 outputs in an otherwise normal answer (every final
  image, whatever the format asked): ``[[gif-truncated]]`` (no trailer), ``[[svg-bomb]]`` (a
  billion-laughs DTD), ``[[svg-script]]`` (<script> and onload), ``[[svg-truncated]]`` (not
  well-formed); ``faulty_output(kind)`` gives the same bytes.

Load simulation (image routes only: generations, edits, responses, on every surface)
-----------------------------------------------------------------------------------
- ``fake.latency = 0.2`` (or a callable ``(Recorded) -> seconds``) before each answer; the
  server is threaded, so concurrent requests wait concurrently.
- ``fake.rate_limit = RateLimit(requests=N, window=S, ...)``: x-ratelimit-* headers on
  admitted replies, 429 rate_limit_exceeded (retry-after, retry-after-ms, "Please try again
  in 1.234s.") past N per window; a refused request takes no queued behaviour.
- ``fake.insufficient_quota = True``: every image request gets 429 insufficient_quota.
- Counters: ``fake.requests_per_prompt`` / ``fake.successes_per_prompt`` (Counters by
  prompt: arrivals, and complete 200 replies), ``fake.peak_concurrency``, ``fake.in_flight``;
  ``fake.wait_idle()``; ``fake.reset_counters()``.

Standalone (manual use, benchmarks)::

    python tests/fakeapi.py --port 0 [--image-bytes N] [--discard-bodies] [--verbose]
        [--latency S] [--rate-limit N [--rate-window S]] [--azure-deployment NAME=MODEL] [--seed N]
        [--any-fields | --accept-extra NAME ...]

prints ``http://127.0.0.1:PORT/v1`` as its first stdout line and serves until killed.

Standard library only, except Pillow for JPEG/WebP/GIF images (PNG has a built-in fallback
encoder so the standalone server still works where Pillow is missing). Python >= 3.9.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import dataclasses
import email.parser
import email.policy
import email.utils
import fnmatch
import functools
import io
import json
import math
import os
import random
import re
import secrets
import select
import shutil
import socket
import string
import struct
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import zlib
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import (
    Any,
    BinaryIO,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

__all__ = [
    "AZURE_DEPLOYMENTS",
    "COMPLEXITIES",
    "FINAL_COLORS",
    "IMAGES_USAGE",
    "IMAGE_SIZE",
    "OUTPUT_FAULTS",
    "PARTIAL_COLORS",
    "RESPONSES_USAGE",
    "SSE",
    "SVG_USAGE",
    "BatchPlan",
    "FakeAPI",
    "Hang",
    "ImageRef",
    "Lost",
    "Part",
    "RateLimit",
    "Recorded",
    "Reply",
    "Reset",
    "ResetMidBody",
    "Upload",
    "azure_error_reply",
    "b64",
    "content_filter_reply",
    "data_url",
    "error_reply",
    "faulty_output",
    "final_color",
    "format_duration",
    "identify",
    "images_body",
    "images_stream_events",
    "is_model_26",
    "make_gif",
    "make_image",
    "make_mask",
    "make_svg",
    "moderation_reply",
    "noise_image",
    "parse_multipart",
    "parse_sse",
    "partial_color",
    "pixel",
    "quota_reply",
    "rate_limit_reply",
    "render_sse",
    "responses_body",
    "responses_stream_events",
    "sniff_image",
]

# --------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------

#: Pixel size of every default image (the API's reported "size" is independent of it).
IMAGE_SIZE = (64, 48)

#: Colour of final image i is FINAL_COLORS[i % 10]: saturated hues, far apart even after JPEG.
FINAL_COLORS: Tuple[Tuple[int, int, int], ...] = (
    (230, 25, 75),  # 0 red
    (60, 180, 75),  # 1 green
    (0, 130, 200),  # 2 blue
    (255, 225, 25),  # 3 yellow
    (145, 30, 180),  # 4 purple
    (245, 130, 48),  # 5 orange
    (70, 240, 240),  # 6 cyan
    (240, 50, 230),  # 7 magenta
    (128, 0, 0),  # 8 maroon
    (0, 0, 128),  # 9 navy
)

#: Colour of partial image k is PARTIAL_COLORS[k % 4]: greys, never used by finals.
PARTIAL_COLORS: Tuple[Tuple[int, int, int], ...] = (
    (40, 40, 40),
    (100, 100, 100),
    (160, 160, 160),
    (220, 220, 220),
)

_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}


def final_color(index: int) -> Tuple[int, int, int]:
    """Colour of the default final image number ``index`` (0-based within a request)."""
    return FINAL_COLORS[index % len(FINAL_COLORS)]


def partial_color(index: int) -> Tuple[int, int, int]:
    """Colour of the default partial image with ``partial_image_index == index``."""
    return PARTIAL_COLORS[index % len(PARTIAL_COLORS)]


def _norm_fmt(fmt: Optional[str]) -> str:
    """'jpg' -> 'jpeg'; None -> 'png'; other names lower-cased and kept."""
    f = (fmt or "png").lower()
    return "jpeg" if f == "jpg" else f


def _pil() -> Any:
    """Import Pillow lazily so the module imports (and serves PNGs) without it."""
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("Pillow is needed for JPEG/WebP images (pip install pillow)") from exc
    return Image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _encode_png(width: int, height: int, raw_rows: bytes, channels: int, level: int = 6) -> bytes:
    """Minimal PNG encoder. ``raw_rows`` holds filter byte + pixel bytes for every row."""
    color_type = {3: 2, 4: 6}[channels]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw_rows, level))
        + _png_chunk(b"IEND", b"")
    )


@functools.lru_cache(maxsize=256)
def _make_image_cached(fmt: str, size: Tuple[int, int], color: Tuple[int, ...], mode: str) -> bytes:
    fmt = _norm_fmt(fmt)
    if fmt not in _PIL_FORMATS:
        raise ValueError(f"unsupported image format {fmt!r}")
    w, h = size
    if len(color) == 3 and mode == "RGBA":
        color = (*color, 255)
    try:
        image_mod = _pil()
    except RuntimeError:
        if fmt != "png":
            raise
        row = b"\x00" + bytes(color[: len(mode)]) * w
        return _encode_png(w, h, row * h, len(mode))
    img = image_mod.new(mode, (w, h), color[: len(mode)])
    if fmt == "jpeg" and mode != "RGB":
        img = img.convert("RGB")
    out = io.BytesIO()
    options: Dict[str, Any] = {"quality": 95} if fmt in ("jpeg", "webp") else {}
    img.save(out, format=_PIL_FORMATS[fmt], **options)
    return out.getvalue()


def make_image(
    fmt: str = "png",
    size: Tuple[int, int] = IMAGE_SIZE,
    color: Sequence[int] = (200, 30, 30),
    mode: str = "RGB",
) -> bytes:
    """Encoded bytes of a solid-colour image. ``fmt``: png | jpeg (jpg) | webp, or gpt-image-2.6's
    gif (``make_gif``: an animation whose first frame is ``color``) | svg (``make_svg``).

    ``mode`` is "RGB" or "RGBA" (``color`` may then carry alpha as a 4th value; JPEG is
    always RGB). The result is cached and deterministic for the same arguments.
    """
    if mode not in ("RGB", "RGBA"):
        raise ValueError("mode must be 'RGB' or 'RGBA'")
    rgb = (int(color[0]), int(color[1]), int(color[2]))
    if _norm_fmt(fmt) == "gif":
        return make_gif(size, (rgb, _complement(rgb), rgb))
    if _norm_fmt(fmt) == "svg":
        return make_svg(size, rgb)
    return _make_image_cached(fmt, (int(size[0]), int(size[1])), tuple(int(c) for c in color), mode)


def _complement(rgb: Tuple[int, int, int]) -> Tuple[int, int, int]:
    return (255 - rgb[0], 255 - rgb[1], 255 - rgb[2])


@functools.lru_cache(maxsize=64)
def make_gif(
    size: Tuple[int, int] = IMAGE_SIZE,
    colors: Tuple[Tuple[int, int, int], ...] = ((230, 25, 75), (25, 230, 180)),
    duration: int = 100,
) -> bytes:
    """An animated GIF89a (Pillow), one solid frame per colour (one colour: a still GIF), looping
    forever, ``duration`` ms a frame. Cached and deterministic for the same arguments."""
    image_mod = _pil()
    frames = [image_mod.new("RGB", (int(size[0]), int(size[1])), tuple(c)) for c in colors]
    out = io.BytesIO()
    if len(frames) == 1:
        frames[0].save(out, format="GIF")
    else:
        frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=duration, loop=0)
    return out.getvalue()


def make_svg(size: Tuple[int, int] = IMAGE_SIZE, color: Sequence[int] = (200, 30, 30)) -> bytes:
    """A small SVG drawing (UTF-8, SVG namespace, width/height and viewBox): a background of
    ``color`` (what ``identify`` reads) with a circle and a caption on it."""
    w, h = int(size[0]), int(size[1])
    fill = "#" + bytes(int(c) for c in color[:3]).hex()
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">\n'
        f'  <rect width="{w}" height="{h}" fill="{fill}"/>\n'
        f'  <circle cx="{w // 2}" cy="{h // 2}" r="{min(w, h) // 3}" fill="#ffffff" fill-opacity="0.6"/>\n'
        f'  <text x="2" y="{h - 2}" font-size="6">fake &amp; small &#x2713;</text>\n'
        "</svg>\n"
    ).encode()


#: Broken gpt-image-2.6 outputs, as the prompt markers ``[[gif-truncated]]``, ``[[svg-bomb]]``,
#: ``[[svg-script]]`` and ``[[svg-truncated]]`` send them (see ``faulty_output``).
OUTPUT_FAULTS = ("gif-truncated", "svg-bomb", "svg-script", "svg-truncated")


def faulty_output(kind: str, size: Tuple[int, int] = IMAGE_SIZE) -> bytes:
    """A broken 2.6 output. ``kind``: "gif-truncated" (an animated GIF cut inside its last frame:
    no trailer), "svg-bomb" (a billion-laughs entity bomb in a DTD), "svg-script" (a well-formed
    SVG with a <script> element and an onload attribute), "svg-truncated" (an SVG cut short: not
    well-formed)."""
    if kind == "gif-truncated":
        whole = make_gif(size, (final_color(0), final_color(1), final_color(2)))
        return whole[: len(whole) - 8]
    if kind == "svg-bomb":
        lols = "".join(f'  <!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">\n' for i in range(1, 10))
        return (
            '<?xml version="1.0"?>\n<!DOCTYPE svg [\n  <!ENTITY lol0 "lol">\n'
            + lols
            + ']>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48"><text>&lol9;</text></svg>\n'
        ).encode("utf-8")
    if kind == "svg-script":
        svg = make_svg(size, final_color(0)).decode("utf-8")
        svg = svg.replace("<svg ", '<svg onload="alert(document.domain)" ', 1)
        return svg.replace("</svg>", "  <script>alert('fake')</script>\n</svg>").encode("utf-8")
    if kind == "svg-truncated":
        whole = make_svg(size, final_color(0))
        return whole[: whole.index(b"<circle")]
    raise ValueError(f"unknown output fault {kind!r}; expected one of {', '.join(OUTPUT_FAULTS)}")


def make_mask(
    size: Tuple[int, int] = IMAGE_SIZE,
    box: Optional[Tuple[int, int, int, int]] = None,
) -> bytes:
    """A PNG mask in RGBA: opaque white, with alpha 0 inside ``box`` (x0, y0, x1, y1, exclusive).

    The default box is the centre half of the image (the area the API would edit).
    """
    w, h = int(size[0]), int(size[1])
    x0, y0, x1, y1 = box if box is not None else (w // 4, h // 4, w - w // 4, h - h // 4)
    x0, x1 = max(0, min(x0, w)), max(0, min(x1, w))
    opaque, clear = b"\xff\xff\xff\xff", b"\xff\xff\xff\x00"
    plain_row = b"\x00" + opaque * w
    holed_row = b"\x00" + opaque * x0 + clear * max(0, x1 - x0) + opaque * (w - max(x0, x1))
    rows = [holed_row if y0 <= y < y1 else plain_row for y in range(h)]
    return _encode_png(w, h, b"".join(rows), 4)


@functools.lru_cache(maxsize=8)
def noise_image(fmt: str = "png", nbytes: int = 1_000_000) -> bytes:
    """A random-noise image of roughly ``nbytes`` bytes (cached; deterministic per arguments).

    PNG is built directly (stored zlib blocks: fast and within a few hundred bytes of the
    target). JPEG/WebP go through Pillow, sized from the measured bytes-per-pixel of a
    sample, so they are only approximately ``nbytes``.
    """
    fmt = _norm_fmt(fmt)
    rng = random.Random(nbytes)
    if fmt == "png":
        width = 512
        stride = 1 + 3 * width
        height = max(1, math.ceil(max(nbytes - 100, stride) / stride))
        raw = bytearray(_randbytes(rng, stride * height))
        raw[0::stride] = bytes(height)  # filter type 0 ("None") at the start of each row
        return _encode_png(width, height, bytes(raw), 3, level=0)
    image_mod = _pil()

    def encode(w: int, h: int) -> bytes:
        img = image_mod.frombytes("RGB", (w, h), _randbytes(rng, w * h * 3))
        out = io.BytesIO()
        img.save(out, format=_PIL_FORMATS[fmt], quality=90)
        return out.getvalue()

    sample = encode(128, 128)
    per_pixel = len(sample) / (128 * 128)
    pixels = max(1, int(nbytes / per_pixel))
    width = min(4096, max(16, int(math.sqrt(pixels))))
    height = max(16, min(16383, pixels // width))
    return encode(width, height)


def _randbytes(rng: random.Random, n: int) -> bytes:
    return rng.getrandbits(n * 8).to_bytes(n, "little") if n else b""


def b64(data: bytes) -> str:
    """Standard base64 (what the API puts in ``b64_json`` / ``result``) as str."""
    return base64.b64encode(data).decode("ascii")


@functools.lru_cache(maxsize=32)
def _b64_cached(data: bytes) -> str:
    # bytes objects cache their hash, so repeated big default images are encoded once.
    return b64(data)


def pixel(data: bytes, xy: Optional[Tuple[int, int]] = None) -> Tuple[int, ...]:
    """RGB(A) of one pixel (default: the centre) of an encoded image. Needs Pillow."""
    image_mod = _pil()
    with image_mod.open(io.BytesIO(data)) as img:
        img.load()
        x, y = xy if xy is not None else (img.width // 2, img.height // 2)
        value = img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB").getpixel((x, y))
        return tuple(value)


def identify(data: bytes, tolerance: int = 24) -> Optional[Tuple[str, int]]:
    """Which default image is this? -> ("final", i) | ("partial", k) | None.

    Compares the centre pixel with the palettes (tolerant of JPEG/WebP loss; a GIF's first
    frame; an SVG's background fill). For finals ``i`` is modulo 10 and for partials ``k`` modulo 4.
    """
    fill = re.search(rb'<rect [^>]*fill="#([0-9a-f]{6})"', data[:4096]) if b"<svg" in data[:512] else None
    rgb = tuple(bytes.fromhex(fill.group(1).decode("ascii"))) if fill else pixel(data)[:3]
    for kind, palette in (("final", FINAL_COLORS), ("partial", PARTIAL_COLORS)):
        for index, ref in enumerate(palette):
            if all(abs(a - b) <= tolerance for a, b in zip(rgb, ref)):
                return kind, index
    return None


def sniff_image(data: bytes) -> Optional[str]:
    """The image format told by the first bytes: "png" | "jpeg" | "webp", else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def data_url(data: bytes, media_type: Optional[str] = None) -> str:
    """A base64 ``data:`` URL of ``data``; the media type is sniffed when not given."""
    kind = media_type or f"image/{sniff_image(data) or 'png'}"
    return f"data:{kind};base64,{b64(data)}"


# --------------------------------------------------------------------------------------
# Reply bodies and event lists (also used by the defaults, so tests can tweak them)
# --------------------------------------------------------------------------------------

#: Usage block of Images API replies (medium 1024x1024 on gpt-image-2).
IMAGES_USAGE: Dict[str, Any] = {
    "input_tokens": 50,
    "input_tokens_details": {"text_tokens": 10, "image_tokens": 40},
    "output_tokens": 1756,
    "total_tokens": 1806,
}

#: Usage block of Responses API replies.
RESPONSES_USAGE: Dict[str, Any] = {
    "input_tokens": 120,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 1800,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 1920,
}

#: The ``svg_usage`` block of a gpt-image-2.6 SVG answer: the authoring model's tokens. Third-party
#: fact (the apiyi example names the block); these field names are the fake's guess, not confirmed.
SVG_USAGE: Dict[str, Any] = {
    "input_tokens": 180,
    "output_tokens": 2400,
    "total_tokens": 2580,
}

DEFAULT_REVISED_PROMPT = "A revised prompt from the fake API."
DEFAULT_TEXT = "Here is the image you asked for."


def _copy(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def _finals(fmt: str, n: int, images: Optional[Sequence[bytes]]) -> List[bytes]:
    if images is not None:
        return list(images)
    return [make_image(fmt, color=final_color(i)) for i in range(n)]


def _partials(fmt: str, count: int, partial_images: Optional[Sequence[bytes]]) -> List[bytes]:
    if partial_images is not None:
        return list(partial_images)
    return [_preview(fmt, partial_color(k)) for k in range(count)]


def _preview(fmt: str, color: Tuple[int, int, int]) -> bytes:
    """A default partial image: solid, and for gif a still (one frame) GIF."""
    return make_gif(IMAGE_SIZE, (color,)) if _norm_fmt(fmt) == "gif" else make_image(fmt, color=color)


def images_body(
    n: int = 1,
    fmt: str = "png",
    *,
    quality: str = "medium",
    size: str = "1024x1024",
    background: str = "opaque",
    images: Optional[Sequence[bytes]] = None,
    usage: Optional[Dict[str, Any]] = None,
    created: Optional[int] = None,
    generation_ids: bool = False,
    svg_usage: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """An ``ImagesResponse`` dict (generations and edits). ``images`` overrides the pictures.

    gpt-image-2.6 answers (third-party facts: the apiyi example, api-facts.md section 4) also
    carry ``data[].generation_id`` (``generation_ids=True``) and, for SVG, an ``svg_usage``
    block (pass one, e.g. ``SVG_USAGE``).
    """
    fmt = _norm_fmt(fmt)
    finals = _finals(fmt, n, images)
    data: List[Dict[str, Any]] = [{"b64_json": _b64_cached(img)} for img in finals]
    if generation_ids:
        for item in data:
            item["generation_id"] = _new_id("gen")
    body: Dict[str, Any] = {
        "created": int(time.time()) if created is None else created,
        "data": data,
        "background": background,
        "output_format": fmt,
        "quality": quality,
        "size": size,
        "usage": _copy(IMAGES_USAGE if usage is None else usage),
    }
    if svg_usage is not None:
        body["svg_usage"] = _copy(svg_usage)
    return body


def images_stream_events(
    kind: str = "generation",
    partials: int = 2,
    fmt: str = "png",
    *,
    n: int = 1,
    quality: str = "medium",
    size: str = "1024x1024",
    background: str = "opaque",
    images: Optional[Sequence[bytes]] = None,
    partial_images: Optional[Sequence[bytes]] = None,
    usage: Optional[Dict[str, Any]] = None,
) -> List[Dict[str, Any]]:
    """The Images API stream: for each of ``n`` images, ``partials`` x
    ``image_<kind>.partial_image`` then one ``image_<kind>.completed`` (kind: generation | edit).
    """
    if kind not in ("generation", "edit"):
        raise ValueError("kind must be 'generation' or 'edit'")
    fmt = _norm_fmt(fmt)
    prefix = "image_generation" if kind == "generation" else "image_edit"
    finals = _finals(fmt, n, images)
    previews = _partials(fmt, partials, partial_images)
    common = {"background": background, "output_format": fmt, "quality": quality, "size": size}
    events: List[Dict[str, Any]] = []
    for final in finals:
        for k, preview in enumerate(previews):
            events.append(
                {
                    "type": f"{prefix}.partial_image",
                    "b64_json": _b64_cached(preview),
                    "partial_image_index": k,
                    "created_at": int(time.time()),
                    **common,
                }
            )
        events.append(
            {
                "type": f"{prefix}.completed",
                "b64_json": _b64_cached(final),
                "created_at": int(time.time()),
                **common,
                "usage": _copy(IMAGES_USAGE if usage is None else usage),
            }
        )
    return events


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class _ResponseParts:
    """Consistent ids and items shared by ``responses_body`` and ``responses_stream_events``."""

    def __init__(
        self,
        fmt: str,
        n_images: int,
        model: str,
        revised_prompt: Optional[str],
        text: Optional[str],
        images: Optional[Sequence[bytes]],
        usage: Optional[Dict[str, Any]],
        response_id: Optional[str],
        tools: Optional[List[Any]],
        previous_response_id: Optional[str],
        tool_usage: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.fmt = _norm_fmt(fmt)
        self.model = model
        self.finals = _finals(self.fmt, n_images, images)
        self.revised_prompt = revised_prompt
        self.text = text
        self.usage = _copy(RESPONSES_USAGE if usage is None else usage)
        self.tool_usage = _copy(tool_usage)  # the whole `tool_usage` object (image_gen inside), when given
        self.id = response_id or _new_id("resp")
        self.created_at = int(time.time())
        self.tools = tools if tools is not None else [{"type": "image_generation", "output_format": self.fmt}]
        self.previous_response_id = previous_response_id
        self.image_ids = [_new_id("ig") for _ in self.finals]
        self.message_id = _new_id("msg")

    def image_item(self, i: int, done: bool) -> Dict[str, Any]:
        if not done:
            return {"type": "image_generation_call", "id": self.image_ids[i], "status": "in_progress"}
        item: Dict[str, Any] = {
            "type": "image_generation_call",
            "id": self.image_ids[i],
            "status": "completed",
            "background": "opaque",
            "output_format": self.fmt,
            "quality": "medium",
            "size": "1024x1024",
            "result": _b64_cached(self.finals[i]),
        }
        if self.revised_prompt is not None:
            item["revised_prompt"] = self.revised_prompt
        return item

    def message_item(self, done: bool) -> Dict[str, Any]:
        return {
            "type": "message",
            "id": self.message_id,
            "status": "completed" if done else "in_progress",
            "role": "assistant",
            "content": [self.text_part()] if done else [],
        }

    def text_part(self) -> Dict[str, Any]:
        return {"type": "output_text", "text": self.text or "", "annotations": []}

    def output(self) -> List[Dict[str, Any]]:
        items = [self.image_item(i, True) for i in range(len(self.finals))]
        if self.text is not None:
            items.append(self.message_item(True))
        return items

    def response(self, status: str) -> Dict[str, Any]:
        done = status == "completed"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": None,
            "incomplete_details": None,
            "model": self.model,
            "output": self.output() if done else [],
            "previous_response_id": self.previous_response_id,
            "tool_choice": {"type": "image_generation"},
            "tools": _copy(self.tools),
            "usage": _copy(self.usage) if done else None,
            **({"tool_usage": _copy(self.tool_usage)} if done and self.tool_usage is not None else {}),
        }


def responses_body(
    fmt: str = "png",
    n_images: int = 1,
    *,
    model: str = "gpt-5.4",
    revised_prompt: Optional[str] = DEFAULT_REVISED_PROMPT,
    text: Optional[str] = DEFAULT_TEXT,
    images: Optional[Sequence[bytes]] = None,
    usage: Optional[Dict[str, Any]] = None,
    response_id: Optional[str] = None,
    tools: Optional[List[Any]] = None,
    previous_response_id: Optional[str] = None,
    tool_usage: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """A completed Responses API ``response`` object: ``n_images`` image_generation_call items
    (with ``result``), then a ``message`` item unless ``text`` is None. ``n_images=0`` gives a
    text-only response (no image in it). ``tool_usage`` (e.g. ``{"image_gen": {...}}``) is added
    as the response's ``tool_usage`` when given, as gateways report the image tool's tokens.
    """
    parts = _ResponseParts(
        fmt, n_images, model, revised_prompt, text, images, usage, response_id, tools, previous_response_id,
        tool_usage,
    )  # fmt: skip
    return parts.response("completed")


def responses_stream_events(
    partials: int = 2,
    fmt: str = "png",
    *,
    n_images: int = 1,
    model: str = "gpt-5.4",
    revised_prompt: Optional[str] = DEFAULT_REVISED_PROMPT,
    text: Optional[str] = DEFAULT_TEXT,
    images: Optional[Sequence[bytes]] = None,
    partial_images: Optional[Sequence[bytes]] = None,
    usage: Optional[Dict[str, Any]] = None,
    response_id: Optional[str] = None,
    tools: Optional[List[Any]] = None,
    previous_response_id: Optional[str] = None,
    tool_usage: Optional[Dict[str, Any]] = None,
) -> List[Dict[str, Any]]:
    """The Responses API event stream for an image_generation tool call.

    response.created, response.in_progress, then per image (output_index i):
    response.output_item.added, response.image_generation_call.in_progress, .generating,
    ``partials`` x .partial_image (``partial_image_b64``), .completed, response.output_item.done
    (item with ``result``); then, unless ``text`` is None, a message item
    (output_item.added, content_part.added, output_text.delta, output_text.done,
    content_part.done, output_item.done); finally response.completed (with ``tool_usage`` when
    given). Every event has ``type`` and ``sequence_number`` 0, 1, 2, ...
    """
    parts = _ResponseParts(
        fmt, n_images, model, revised_prompt, text, images, usage, response_id, tools, previous_response_id,
        tool_usage,
    )  # fmt: skip
    previews = _partials(parts.fmt, partials, partial_images)
    events: List[Dict[str, Any]] = [
        {"type": "response.created", "response": parts.response("in_progress")},
        {"type": "response.in_progress", "response": parts.response("in_progress")},
    ]
    for i in range(len(parts.finals)):
        ids = {"output_index": i, "item_id": parts.image_ids[i]}
        events.append(
            {"type": "response.output_item.added", "output_index": i, "item": parts.image_item(i, False)}
        )
        events.append({"type": "response.image_generation_call.in_progress", **ids})
        events.append({"type": "response.image_generation_call.generating", **ids})
        for k, preview in enumerate(previews):
            events.append(
                {
                    "type": "response.image_generation_call.partial_image",
                    **ids,
                    "partial_image_index": k,
                    "partial_image_b64": _b64_cached(preview),
                    "background": "opaque",
                    "output_format": parts.fmt,
                    "quality": "medium",
                    "size": "1024x1024",
                }
            )
        events.append({"type": "response.image_generation_call.completed", **ids})
        events.append(
            {"type": "response.output_item.done", "output_index": i, "item": parts.image_item(i, True)}
        )
    if text is not None:
        i = len(parts.finals)
        ids = {"item_id": parts.message_id, "output_index": i, "content_index": 0}
        events += [
            {"type": "response.output_item.added", "output_index": i, "item": parts.message_item(False)},
            {"type": "response.content_part.added", **ids, "part": {**parts.text_part(), "text": ""}},
            {"type": "response.output_text.delta", **ids, "delta": text},
            {"type": "response.output_text.done", **ids, "text": text},
            {"type": "response.content_part.done", **ids, "part": parts.text_part()},
            {"type": "response.output_item.done", "output_index": i, "item": parts.message_item(True)},
        ]
    events.append({"type": "response.completed", "response": parts.response("completed")})
    for seq, event in enumerate(events):
        event["sequence_number"] = seq
    return events


# --------------------------------------------------------------------------------------
# Behaviours (what the fake does with one request)
# --------------------------------------------------------------------------------------

HeaderMap = Optional[Dict[str, Optional[str]]]


@dataclass
class Reply:
    """A plain HTTP reply. ``json`` is serialised (Content-Type application/json); else ``body``
    is sent raw. ``headers`` are added/override (a value of None removes a default header such
    as x-request-id). ``chunk_size`` writes the body in pieces (Content-Length still set),
    sleeping ``chunk_delay`` between them; ``delay`` waits before the status line.
    """

    status: int = 200
    json: Any = None
    body: Optional[bytes] = None
    headers: HeaderMap = None
    content_type: Optional[str] = None
    chunk_size: Optional[int] = None
    delay: float = 0.0
    chunk_delay: float = 0.0

    def payload(self) -> bytes:
        if self.json is not None and self.body is not None:
            raise ValueError("Reply takes json or body, not both")
        if self.json is not None:
            return json.dumps(self.json).encode("utf-8")
        return self.body or b""


@dataclass
class SSE:
    """A ``text/event-stream`` reply, close-delimited (Connection: close, no Content-Length).

    ``events``: dicts (written as ``event: <type>`` + ``data: <json>`` + blank line, using
    ``line_end``; ``event_field=False`` drops the ``event:`` line) or raw bytes/str written
    verbatim. ``comments=True`` puts a ``: keep-alive`` block between events; ``done=True``
    appends ``data: [DONE]``. ``split=N`` writes the stream in N-byte pieces, else one write per
    event; ``delay`` seconds between writes. ``truncate_at=N`` sends only the first N bytes,
    then closes (a FIN; ``reset=True`` makes it a TCP RST). ``render()`` gives the full bytes.
    """

    events: List[Union[Dict[str, Any], bytes, str]] = field(default_factory=list)
    line_end: str = "\n"
    split: Optional[int] = None
    comments: bool = False
    done: bool = False
    truncate_at: Optional[int] = None
    status: int = 200
    headers: HeaderMap = None
    event_field: bool = True
    delay: float = 0.0
    reset: bool = False

    def pieces(self) -> List[bytes]:
        """The stream as one bytes item per event (comments and [DONE] included)."""
        return _sse_pieces(self.events, self.line_end, self.comments, self.done, self.event_field)

    def render(self) -> bytes:
        """Everything the stream would send, before truncation."""
        return b"".join(self.pieces())


@dataclass
class Reset:
    """Drop the connection (TCP RST via SO_LINGER 0) before sending a status line. With
    ``read_body=False`` the request body is left unread (the client may fail while sending).
    """

    read_body: bool = True


@dataclass
class ResetMidBody:
    """Send the status line and headers with the full Content-Length of ``body``, then only the
    first ``after`` bytes, then abort (RST; ``rst=False`` closes with a FIN instead)."""

    status: int = 200
    body: bytes = b'{"created": 1, "data": [{"b64_json": "iVBORw0KGgoAAAANSUhEUgAA"}]}'
    after: int = 10
    content_type: str = "application/json"
    headers: HeaderMap = None
    rst: bool = True


@dataclass
class Hang:
    """Read the request, never answer; close (without a reply) after ``seconds``, when the
    client goes away, or when the server stops."""

    seconds: float = 30.0


@dataclass
class Lost:
    """Do what the route's default does (a batch is created, a file stored, an image made and
    billed), then lose the answer: reset the connection before the status line, or, with
    ``after_bytes=N``, after the headers (full Content-Length) and the first N body bytes.
    The reply that was lost is kept in ``Recorded.lost_reply``."""

    after_bytes: Optional[int] = None


Behaviour = Union[Reply, SSE, Reset, ResetMidBody, Hang, Lost]
_BEHAVIOURS = (Reply, SSE, Reset, ResetMidBody, Hang, Lost)
#: A queued item may also be a callable taking the Recorded request and returning a
#: behaviour (or None for the route's default).
QueueItem = Union[Behaviour, Callable[["Recorded"], Optional[Behaviour]]]


def error_reply(
    status: int,
    message: str,
    code: Optional[str] = None,
    type: str = "invalid_request_error",
    param: Optional[str] = None,
    headers: HeaderMap = None,
    extra: Optional[Dict[str, Any]] = None,
) -> Reply:
    """An OpenAI error reply: ``{"error": {"message", "type", "param", "code", **extra}}``."""
    error: Dict[str, Any] = {"message": message, "type": type, "param": param, "code": code}
    if extra:
        error.update(extra)
    return Reply(status=status, json={"error": error}, headers=headers)


def moderation_reply(stage: str = "input") -> Reply:
    """The 400 ``moderation_blocked`` error the image models give for refused prompts."""
    return error_reply(
        400,
        "Your request was rejected by the safety system. If you believe this is an error, contact us "
        "at help.openai.com and include the request ID. safety_violations=[sexual].",
        code="moderation_blocked",
        type="image_generation_user_error",
        extra={"moderation_details": {"moderation_stage": stage, "categories": ["sexual"]}},
    )


def azure_error_reply(
    status: int, code: str, message: str, extra: Optional[Dict[str, Any]] = None, headers: HeaderMap = None
) -> Reply:
    """An Azure-shaped error reply: ``{"error": {"code", "message", **extra}}`` (no type/param)."""
    error: Dict[str, Any] = {"code": code, "message": message}
    if extra:
        error.update(extra)
    return Reply(status=status, json={"error": error}, headers=headers)


def content_filter_reply() -> Reply:
    """Azure's 400 for a prompt its content filter blocked: ``code: "contentFilter"`` and an
    ``innererror`` carrying ``content_filter_result`` per category."""
    result = {
        name: {"filtered": name == "violence", "severity": "high" if name == "violence" else "safe"}
        for name in ("hate", "self_harm", "sexual", "violence")
    }
    return azure_error_reply(
        400,
        "contentFilter",
        "Your request was rejected as a result of our safety system. Your prompt may contain text that is "
        "not allowed by our safety system.",
        extra={
            "param": "prompt",
            "type": None,
            "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": result},
        },
    )


def quota_reply() -> Reply:
    """The 429 ``insufficient_quota`` error: not a rate limit, waiting never clears it."""
    return error_reply(
        429,
        "You exceeded your current quota, please check your plan and billing details. For more information "
        "on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        code="insufficient_quota",
        type="insufficient_quota",
    )


def format_duration(seconds: float) -> str:
    """A duration the way the API writes them in x-ratelimit-reset-* and 429 messages:
    ``20ms``, ``1s``, ``1.234s``, ``6m0s``."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{max(1, round(seconds * 1000)) if seconds > 0 else 0}ms"
    if seconds < 60:
        text = f"{seconds:.3f}".rstrip("0").rstrip(".")
        return f"{text}s"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".")
    return f"{int(minutes)}m{text}s"


def rate_limit_reply(
    delay: float,
    *,
    limit: int = 5,
    model: str = "gpt-image-2",
    retry_after: bool = True,
    retry_after_ms: bool = True,
    in_message: bool = True,
    headers: HeaderMap = None,
) -> Reply:
    """The 429 ``rate_limit_exceeded`` reply for a request-rate limit: ``retry-after`` (whole
    seconds, rounded up) and/or ``retry-after-ms``, and a message ending "Please try again in
    1.234s." (``in_message=False`` leaves the delay out of the message)."""
    wait = f" Please try again in {format_duration(delay)}." if in_message else ""
    message = (
        f"Rate limit reached for {model} in organization org-fakeapi on requests per min (RPM): "
        f"Limit {limit}, Used {limit}, Requested 1.{wait} Visit https://platform.openai.com/account/rate-limits "
        "to learn more."
    )
    extra: Dict[str, Optional[str]] = {}
    if retry_after:
        extra["retry-after"] = str(max(1, math.ceil(round(delay, 3))))
    if retry_after_ms:
        extra["retry-after-ms"] = str(max(1, math.ceil(round(delay * 1000, 3))))
    extra.update(headers or {})
    return error_reply(429, message, code="rate_limit_exceeded", type="requests", headers=extra)


@dataclass
class RateLimit:
    """A request-rate limit on the image routes (generations, edits, responses; both surfaces):
    at most ``requests`` admitted per fixed ``window`` of seconds (the window starts with the
    first request after the previous one ended). Admitted replies carry
    ``x-ratelimit-limit-requests``, ``x-ratelimit-remaining-requests`` and
    ``x-ratelimit-reset-requests`` (when ``headers``); a request past the limit gets
    ``rate_limit_reply`` (429) with the time left in the window, and consumes no queued
    behaviour. ``retry_after`` / ``retry_after_ms`` / ``in_message`` choose which delay forms
    the 429 carries. ``clock`` (seconds, default time.monotonic) can be a test's own."""

    requests: int = 5
    window: float = 60.0
    retry_after: bool = True
    retry_after_ms: bool = True
    in_message: bool = True
    headers: bool = True
    clock: Callable[[], float] = time.monotonic


@dataclass
class BatchPlan:
    """How one batch created on the fake runs (``FakeAPI.batch_plan`` for all, or
    ``FakeAPI.queue_batch(plan)`` for the next one created).

    - ``polls_per_step``: ``GET /v1/batches/{id}`` polls per status step.
    - ``lines_per_step``: lines run per in_progress step (None: all that are left).
    - ``expire_after``: stop after this many lines ran: status ``expired``, the rest in the error
      file with code ``batch_expired``.
    - ``shuffle``: output lines in a shuffled order (seeded by ``FakeAPI.seed`` and the batch's
      number), else in input order.
    - ``failures_in``: where lines whose request failed (4xx/5xx body) go: "error" (the error
      file, like the API) or "output".
    - ``truncate_output_at=N``: the output file's content is served cut to its first N bytes
      (a Content-Length of N: a well-formed reply of a truncated file).
    - ``reset_output_after=N``: the output file's content is announced in full, N bytes are sent,
      then the connection is reset.
    - ``unknown_custom_id``: one extra output line whose custom_id is not in the input.
    """

    polls_per_step: int = 1
    lines_per_step: Optional[int] = None
    expire_after: Optional[int] = None
    shuffle: bool = True
    failures_in: str = "error"
    truncate_output_at: Optional[int] = None
    reset_output_after: Optional[int] = None
    unknown_custom_id: bool = False


def _sse_pieces(
    events: Sequence[Union[Dict[str, Any], bytes, str]],
    line_end: str,
    comments: bool,
    done: bool,
    event_field: bool,
) -> List[bytes]:
    """One bytes item per event; a keep-alive comment block rides in front of events 2..n."""
    le = line_end.encode("ascii")
    comment = b": keep-alive" + le + le
    pieces: List[bytes] = []
    for event in events:
        if isinstance(event, bytes):
            frame = event
        elif isinstance(event, str):
            frame = event.encode("utf-8")
        else:
            frame = b""
            if event_field and "type" in event:
                frame += b"event: " + str(event["type"]).encode("utf-8") + le
            frame += b"data: " + json.dumps(event, separators=(",", ":")).encode("utf-8") + le + le
        pieces.append(comment + frame if comments and pieces else frame)
    if done:
        frame = b"data: [DONE]" + le + le
        pieces.append(comment + frame if comments and pieces else frame)
    return pieces


def render_sse(
    events: Sequence[Union[Dict[str, Any], bytes, str]],
    line_end: str = "\n",
    comments: bool = False,
    done: bool = False,
    event_field: bool = True,
) -> bytes:
    """The bytes an ``SSE`` behaviour with these settings sends (before truncation)."""
    return SSE(
        list(events), line_end=line_end, comments=comments, done=done, event_field=event_field
    ).render()


def parse_sse(raw: bytes) -> List[Dict[str, Any]]:
    """A small, strict-enough SSE parser for tests: returns one dict per dispatched event,
    ``{"event": name|None, "data": str}`` (comments skipped, LF/CRLF/CR line ends)."""
    text = raw.decode("utf-8")
    lines = re.split(r"\r\n|\r|\n", text)
    events: List[Dict[str, Any]] = []
    name: Optional[str] = None
    data: List[str] = []
    for line in lines:
        if line == "":
            if data:
                events.append({"event": name, "data": "\n".join(data)})
            name, data = None, []
        elif line.startswith(":"):
            continue
        else:
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
    return events


# --------------------------------------------------------------------------------------
# Recorded requests
# --------------------------------------------------------------------------------------


@dataclass
class Part:
    """One multipart/form-data part as the standard library email parser saw it."""

    name: Optional[str]
    filename: Optional[str]
    content_type: Optional[str]  # None when the part has no Content-Type header
    data: bytes
    headers: List[Tuple[str, str]] = field(default_factory=list, repr=False)

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


def parse_multipart(content_type: str, body: bytes) -> Tuple[List[Part], List[str]]:
    """Parse a multipart/form-data body with ``email.parser`` -> (parts, defects)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    defects = [type(d).__name__ for d in msg.defects]
    if not msg.is_multipart():
        return [], [*defects, "NotMultipart"]
    parts: List[Part] = []
    for sub in msg.iter_parts():
        defects += [type(d).__name__ for d in sub.defects]
        name = sub.get_param("name", header="content-disposition")
        if isinstance(name, tuple):  # RFC 2231 encoded
            name = email.utils.collapse_rfc2231_value(name)
        ctype = sub.get("content-type")
        payload = sub.get_payload(decode=True)
        parts.append(
            Part(
                name=None if name is None else str(name),
                filename=sub.get_filename(),
                content_type=None if ctype is None else str(ctype),
                data=payload if isinstance(payload, bytes) else b"",
                headers=[(k, str(v)) for k, v in sub.items()],
            )
        )
    return parts, defects


#: Longest image_url the API takes (a data URL of a ~15 MB image).
MAX_IMAGE_URL = 20_971_520


@dataclass
class ImageRef:
    """One image reference a request sent (JSON edits ``images[]`` / ``mask``, Responses
    ``input_image`` / ``input_image_mask``), decoded.

    ``kind``: "data_url" | "url" (https) | "file_id" | "invalid". ``value``: the image_url or
    file_id as sent. ``media_type``: the type a data URL declares. ``data``: the decoded data URL
    bytes, or the uploaded file's bytes for a known file_id (None for https URLs and unknown
    ids). ``format``: "png" | "jpeg" | "webp" sniffed from ``data``. ``error``: why an
    "invalid" reference could not be read.
    """

    kind: str
    value: str
    media_type: Optional[str] = None
    data: Optional[bytes] = None
    format: Optional[str] = None
    error: Optional[str] = None


@dataclass
class Upload:
    """A ``POST /v1/files`` upload as the fake saw it (the file itself went to disk, not into
    ``Recorded.body``): the text fields, the file part's filename, Content-Type and size, and
    the id it was stored under (None when the upload was refused or a scripted behaviour
    answered)."""

    fields: Dict[str, str]
    filename: Optional[str]
    content_type: Optional[str]
    size: int
    file_id: Optional[str] = None


class _RefProblem(Exception):
    def __init__(self, status: int, message: str, code: Optional[str], param: str) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


def _read_ref(
    obj: Any,
    where: str,
    lookup: Optional[Callable[[str], Any]],
    check_id: bool,
) -> ImageRef:
    """Read one ``{image_url} | {file_id}`` reference; raise _RefProblem where the API would refuse it."""
    if not isinstance(obj, dict):
        raise _RefProblem(400, f"Invalid type for '{where}': expected an object.", "invalid_type", where)
    for key in obj:
        if key not in ("image_url", "file_id"):
            raise _RefProblem(
                400, f"Unknown parameter: '{where}.{key}'.", "unknown_parameter", f"{where}.{key}"
            )
    url, file_id = obj.get("image_url"), obj.get("file_id")
    if url is not None and file_id is not None:
        raise _RefProblem(
            400,
            f"Invalid '{where}': provide exactly one of 'image_url' or 'file_id', not both.",
            "invalid_value",
            where,
        )
    if url is None and file_id is None:
        raise _RefProblem(
            400,
            f"Missing required parameter: '{where}.image_url' or '{where}.file_id'.",
            "missing_required_parameter",
            where,
        )
    if file_id is not None:
        return _read_file_ref(file_id, f"{where}.file_id", lookup, check_id)
    return _read_url_ref(url, f"{where}.image_url")


def _read_file_ref(file_id: Any, param: str, lookup: Optional[Callable[[str], Any]], check: bool) -> ImageRef:
    if not isinstance(file_id, str) or not file_id:
        raise _RefProblem(400, f"Invalid type for '{param}': expected a string.", "invalid_type", param)
    stored = lookup(file_id) if lookup is not None else None
    if stored is None:
        if check:
            raise _RefProblem(404, f"No such File object: {file_id}", None, param)
        return ImageRef("file_id", file_id)
    data = stored.read_all()
    fmt = sniff_image(data)
    if check and stored.purpose not in ("vision", "user_data"):
        raise _RefProblem(
            400,
            f"Invalid file '{file_id}': a file used as an image must be uploaded with purpose 'vision' or "
            f"'user_data', not '{stored.purpose}'.",
            "invalid_value",
            param,
        )
    if check and fmt is None:
        raise _RefProblem(
            400,
            f"Invalid file '{file_id}': unsupported image format. Supported formats are 'png', 'jpeg', and 'webp'.",
            "invalid_image_format",
            param,
        )
    return ImageRef("file_id", file_id, data=data, format=fmt)


def _read_url_ref(url: Any, param: str) -> ImageRef:
    if not isinstance(url, str):
        raise _RefProblem(400, f"Invalid type for '{param}': expected a string.", "invalid_type", param)
    if len(url) > MAX_IMAGE_URL:
        raise _RefProblem(
            400,
            f"Invalid '{param}': string too long. Expected a string with maximum length {MAX_IMAGE_URL}, but "
            f"got a string with length {len(url)} instead.",
            "string_above_max_length",
            param,
        )
    if url[:8].lower() == "https://":
        return ImageRef("url", url)
    if url[:5].lower() != "data:":
        raise _RefProblem(
            400, f"Invalid '{param}': expected an https URL or a base64 data URL.", "invalid_image_url", param
        )
    comma = url.find(",", 0, 512)
    if comma < 0:
        raise _RefProblem(400, f"Invalid '{param}': malformed data URL.", "invalid_image_url", param)
    header = url[5:comma].split(";")
    media_type = header[0].strip().lower()
    if not any(p.strip().lower() == "base64" for p in header[1:]):
        raise _RefProblem(400, f"Invalid '{param}': the data URL must be base64.", "invalid_image_url", param)
    if media_type not in ("image/png", "image/jpeg", "image/jpg", "image/webp"):
        raise _RefProblem(
            400,
            f"Invalid '{param}': unsupported image type '{media_type}'. Supported types are 'image/png', "
            "'image/jpeg', and 'image/webp'.",
            "unsupported_image_media_type",
            param,
        )
    try:
        data = base64.b64decode(url[comma + 1 :], validate=True)
    except (binascii.Error, ValueError):
        raise _RefProblem(
            400, f"Invalid '{param}': the data URL is not valid base64.", "invalid_base64_image", param
        ) from None
    fmt = sniff_image(data)
    if fmt is None:
        raise _RefProblem(
            400,
            f"Invalid '{param}': the data is not a PNG, JPEG or WEBP image.",
            "invalid_image_format",
            param,
        )
    return ImageRef("data_url", url, media_type=media_type, data=data, format=fmt)


def _ref_or_invalid(obj: Any, where: str, lookup: Optional[Callable[[str], Any]]) -> ImageRef:
    try:
        return _read_ref(obj, where, lookup, check_id=False)
    except _RefProblem as problem:
        value = obj.get("image_url") or obj.get("file_id") if isinstance(obj, dict) else None
        return ImageRef("invalid", str(value or ""), error=problem.message)


#: The canonical routes the image models answer on (Azure paths map onto them).
MODEL_ROUTES = ("/v1/images/generations", "/v1/images/edits", "/v1/responses")


@dataclass
class Recorded:
    """One request as the fake received it.

    ``body`` is the raw body (b"" when the fake runs with keep_bodies=False; ``body_size`` is
    always the byte count, ``body_head`` / ``body_tail`` the first/last 64 KiB). ``complete`` is
    False if the client went away mid-body. ``parts`` / ``fields`` are parsed lazily.

    ``route`` is the canonical ``/v1/...`` path the request maps to (Azure paths included;
    None for a path the fake does not know), ``surface`` "openai" | "azure-v1" |
    "azure-classic", ``deployment`` the Azure deployment (from a classic path, else the body's
    ``model`` on Azure), ``api_version`` the ``api-version`` query parameter. ``upload`` is set
    for ``POST /v1/files`` (whose bodies go to disk, never into ``body``).
    """

    method: str
    path: str
    query: str
    headers: Message
    body: bytes = b""
    body_size: int = 0
    body_head: bytes = b""
    body_tail: bytes = b""
    chunked: bool = False
    complete: bool = False
    json: Any = None
    json_error: Optional[str] = None
    request_id: Optional[str] = None
    behaviour: Any = None
    sent_images: List[bytes] = field(default_factory=list)
    sent_partials: List[bytes] = field(default_factory=list)
    received_at: float = 0.0
    route: Optional[str] = None
    surface: str = "openai"
    deployment: Optional[str] = None
    api_version: Optional[str] = None
    upload: Optional[Upload] = None
    lost_reply: Any = None
    in_batch: bool = False
    _multipart: Optional[Tuple[List[Part], List[str]]] = field(default=None, repr=False)
    _lookup: Optional[Callable[[str], Any]] = field(default=None, repr=False)
    _spool: Optional[str] = field(default=None, repr=False)
    _spool_kept: bool = field(default=False, repr=False)
    _extra_headers: List[Tuple[str, str]] = field(default_factory=list, repr=False)

    def header(self, name: str) -> Optional[str]:
        """Header value by case-insensitive name, or None."""
        value = self.headers.get(name)
        return None if value is None else str(value)

    @property
    def query_params(self) -> Dict[str, str]:
        """The query string as name -> value (the last one wins for repeats)."""
        return dict(urllib.parse.parse_qsl(self.query, keep_blank_values=True))

    @property
    def azure(self) -> bool:
        """True for requests on the Azure paths (``/openai/...``)."""
        return self.surface != "openai"

    @property
    def prompt(self) -> Optional[str]:
        """The prompt of an image request: ``prompt`` (JSON or multipart; sniffed from a discarded
        body), or the first input text of a Responses request. None elsewhere."""
        if self.route not in MODEL_ROUTES:
            return None
        if self.is_multipart:
            fields = self.fields if self.body else _sniff_fields(self.body_head, self.body_tail)
            return fields.get("prompt")
        body = self.json
        if body is None and self.json_error is None and self.body_size:
            body = _sniff_json(self.body_head, self.body_tail)
        if not isinstance(body, dict):
            return None
        if self.route == "/v1/responses":
            return _first_text(body.get("input"))
        value = body.get("prompt")
        return value if isinstance(value, str) else None

    def json_images(self) -> List[ImageRef]:
        """The ``images`` of a JSON edits request, decoded (data URLs to bytes; known file ids to the
        uploaded bytes). [] when there are none."""
        images = self.json.get("images") if isinstance(self.json, dict) else None
        if not isinstance(images, list):
            return []
        return [_ref_or_invalid(obj, f"images[{i}]", self._lookup) for i, obj in enumerate(images)]

    def json_mask(self) -> Optional[ImageRef]:
        """The ``mask`` of a JSON edits request, decoded; None when absent."""
        mask = self.json.get("mask") if isinstance(self.json, dict) else None
        return None if mask is None else _ref_or_invalid(mask, "mask", self._lookup)

    def input_images(self) -> List[ImageRef]:
        """The ``input_image`` parts of a Responses request, in order, decoded."""
        return [_ref_or_invalid(obj, where, self._lookup) for where, obj in _input_image_parts(self.json)]

    def input_image_mask(self) -> Optional[ImageRef]:
        """The image_generation tool's ``input_image_mask``, decoded; None when absent."""
        found = _tool_mask(self.json)
        return None if found is None else _ref_or_invalid(found[1], found[0], self._lookup)

    @property
    def content_type(self) -> str:
        """The media type, lower-cased, without parameters ("" when absent)."""
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    @property
    def is_multipart(self) -> bool:
        return self.content_type == "multipart/form-data"

    def _parse(self) -> Tuple[List[Part], List[str]]:
        if self._multipart is None:
            if self.is_multipart and self.body:
                self._multipart = parse_multipart(self.header("content-type") or "", self.body)
            else:
                self._multipart = ([], [])
        return self._multipart

    @property
    def parts(self) -> List[Part]:
        """All multipart parts in order ([] for other bodies or when bodies are discarded)."""
        return self._parse()[0]

    @property
    def multipart_defects(self) -> List[str]:
        """Names of the email parser's defect classes (empty for a well-formed body)."""
        return self._parse()[1]

    @property
    def fields(self) -> Dict[str, str]:
        """Non-file parts (no filename) as name -> text; the last one wins for repeats."""
        return {p.name or "": p.text for p in self.parts if p.filename is None}

    def files(self, name: Optional[str] = None) -> List[Part]:
        """File parts (those with a filename), optionally only those called ``name``."""
        return [p for p in self.parts if p.filename is not None and (name is None or p.name == name)]


# --------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------

_CHUNK = 1 << 20
_KEEP_EDGE = 64 * 1024


class _ClientGone(Exception):
    """The client closed the connection mid-request."""


class _Abort(Exception):
    """Raised after a deliberate abortive close, to unwind the handler quietly."""


@dataclass
class _Streamed:
    """A reply whose body is produced piece by piece (file contents) with a known length."""

    length: int
    chunks: Callable[[], Iterator[bytes]]
    status: int = 200
    content_type: str = "application/octet-stream"
    headers: HeaderMap = None
    reset_after: Optional[int] = None


class _Server(ThreadingHTTPServer):
    # Clients that open a connection per request (the CLI's urllib) reconnect all at once: a backlog of 5
    # overflows and stalls them for a retransmission.
    request_queue_size = 128
    daemon_threads = True
    block_on_close = False  # stop() must not wait for hanging handlers
    allow_reuse_address = True
    fake: FakeAPI

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Quiet: disconnects are normal; anything else is a bug in the fake, kept for tests.
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, _Abort, _ClientGone)):
            return
        self.fake.errors.append(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-openai/1.0"
    sys_version = ""
    server: _Server

    # ---- plumbing ------------------------------------------------------------------
    @property
    def fake(self) -> FakeAPI:
        return self.server.fake

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.fake._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.fake._untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        if self.fake.verbose:
            sys.stderr.write("fakeapi: " + (format % args) + "\n")

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self.fake._stopping.wait(seconds):
            self._abort(rst=False)

    def _abort(self, rst: bool = True) -> None:
        """Close the connection now (RST when ``rst``) and unwind the handler."""
        sock = self.connection
        if rst:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        else:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for stream in (self.wfile, self.rfile):
            try:
                stream.close()
            except OSError:
                pass
        sock.close()  # the makefile() reference is gone, so this really closes the fd
        self.close_connection = True
        raise _Abort()

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def _send_head(self, status: int, headers: List[Tuple[str, str]]) -> None:
        self._head_sent = True
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()

    def _headers(self, rec: Recorded, base: List[Tuple[str, str]], extra: HeaderMap) -> List[Tuple[str, str]]:
        """Defaults + x-request-id, overridden case-insensitively by ``extra`` (None removes)."""
        merged: Dict[str, Tuple[str, Optional[str]]] = {}
        for name, value in [*base, *rec._extra_headers, ("x-request-id", "req_" + secrets.token_hex(16))]:
            merged[name.lower()] = (name, value)
        for name, opt in (extra or {}).items():
            merged[name.lower()] = (name, opt)
        out = [(n, v) for n, v in merged.values() if v is not None]
        rid = merged.get("x-request-id", ("", None))[1]
        rec.request_id = rid
        return out

    # ---- request intake ------------------------------------------------------------
    def do_POST(self) -> None:
        self._dispatch()

    do_GET = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST

    def _dispatch(self) -> None:
        fake = self.fake
        path, _, query = self.path.partition("?")
        rec = Recorded(
            method=self.command, path=path, query=query, headers=self.headers, received_at=time.time()
        )
        rec.route, rec.surface, rec.deployment = _resolve_route(path)
        rec.api_version = rec.query_params.get("api-version")
        rec._lookup = fake._files.lookup
        fake._record(rec)
        self._head_sent = False
        fake._enter()
        try:
            self._serve(rec)
        finally:
            fake._leave()
            fake._files.discard_spool(rec)

    def _serve(self, rec: Recorded) -> None:
        fake = self.fake
        early = fake._pop_early_reset(rec)
        if early is not None:
            rec.behaviour = early
            self._abort(rst=True)
        try:
            self._read_body(rec, fake._files.spool_for(rec))
        except _ClientGone:
            self.close_connection = True
            return
        except ValueError as exc:  # bad Content-Length / chunk framing
            self.close_connection = True
            self._run(rec, error_reply(400, f"Malformed request body: {exc}"))
            return
        self._parse_json(rec)
        try:
            gate = fake._gate(rec)
            if gate is not None:
                self._run(rec, gate)
                return
            self._sleep(fake._latency_for(rec))
            self._run(rec, fake._next_behaviour(rec))
        except (_Abort, OSError):
            raise
        except Exception:
            # A bug in the fake (or in a callable behaviour): keep it for the test, answer 500.
            fake.errors.append(traceback.format_exc())
            if fake.verbose:
                sys.stderr.write(traceback.format_exc())
            self.close_connection = True
            if not self._head_sent:
                summary = traceback.format_exception_only(*sys.exc_info()[:2])[-1].strip()
                message = f"The fake API crashed ({summary}); see FakeAPI.errors."
                self._reply(rec, error_reply(500, message, type="server_error"))

    def _parse_json(self, rec: Recorded) -> None:
        if rec.content_type != "application/json":
            return
        # With keep_bodies=False a small body is still whole in body_head.
        raw = rec.body if self.fake.keep_bodies else rec.body_head
        if not rec.complete or len(raw) != rec.body_size:
            return
        if raw:
            try:
                rec.json = json.loads(raw.decode("utf-8"))
            except ValueError as exc:
                rec.json_error = str(exc)

    def _read_body(self, rec: Recorded, spool: Optional[BinaryIO] = None) -> None:
        """Read the body into memory, or count it (keep_bodies=False), or write it to ``spool``
        (file uploads); the first/last 64 KiB are kept in every case."""
        keep = self.fake.keep_bodies and spool is None
        chunks: List[bytes] = []
        head = bytearray()
        tail = bytearray()

        def take(data: bytes) -> None:
            rec.body_size += len(data)
            if spool is not None:
                spool.write(data)
            if keep:
                chunks.append(data)
            else:
                if len(head) < _KEEP_EDGE:
                    head.extend(data[: _KEEP_EDGE - len(head)])
                tail.extend(data[-_KEEP_EDGE:])
                del tail[:-_KEEP_EDGE]

        def read_exact(n: int) -> None:
            while n > 0:
                data = self.rfile.read(min(n, _CHUNK))
                if not data:
                    raise _ClientGone()
                take(data)
                n -= len(data)

        try:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                rec.chunked = True
                self._read_chunked(read_exact)
            else:
                length_text = self.headers.get("Content-Length")
                length = int(length_text) if length_text else 0
                if length < 0:
                    raise ValueError("negative Content-Length")
                read_exact(length)
            rec.complete = True
        finally:
            if spool is not None:
                spool.close()
            if keep:
                rec.body = b"".join(chunks)
                rec.body_head, rec.body_tail = rec.body[:_KEEP_EDGE], rec.body[-_KEEP_EDGE:]
            else:
                rec.body_head, rec.body_tail = bytes(head), bytes(tail)

    def _read_chunked(self, read_exact: Callable[[int], None]) -> None:
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise _ClientGone()
            size = int(line.split(b";")[0].strip() or b"x", 16)
            if size == 0:
                break
            read_exact(size)
            if self.rfile.readline(16) not in (b"\r\n", b"\n"):
                raise ValueError("bad chunk terminator")
        while True:  # trailers up to the blank line
            line = self.rfile.readline(65536)
            if line in (b"\r\n", b"\n", b""):
                return

    # ---- behaviours ----------------------------------------------------------------
    def _run(self, rec: Recorded, behaviour: Union[Behaviour, _Streamed]) -> None:
        rec.behaviour = behaviour
        self.fake._files.discard_spool(rec)  # an upload nobody kept is gone before the answer
        # A complete 200 is counted before it goes out (so a client that has it sees the count),
        # and uncounted if sending fails.
        ok = isinstance(behaviour, (Reply, SSE)) and behaviour.status == 200
        ok = ok and not (isinstance(behaviour, SSE) and behaviour.truncate_at is not None)
        if ok:
            self.fake._succeeded(rec)
        try:
            self._send_behaviour(rec, behaviour)
        except BaseException:
            if ok:
                self.fake._succeeded(rec, -1)
            raise

    def _send_behaviour(self, rec: Recorded, behaviour: Union[Behaviour, _Streamed]) -> None:
        if isinstance(behaviour, Reply):
            self._reply(rec, behaviour)
        elif isinstance(behaviour, SSE):
            self._sse(rec, behaviour)
        elif isinstance(behaviour, _Streamed):
            self._streamed(rec, behaviour)
        elif isinstance(behaviour, Reset):
            self._abort(rst=True)
        elif isinstance(behaviour, ResetMidBody):
            self._reset_mid_body(rec, behaviour)
        elif isinstance(behaviour, Hang):
            self._hang(behaviour)
        elif isinstance(behaviour, Lost):
            self._lost(rec, behaviour)
        else:
            raise TypeError(f"not a fake behaviour: {behaviour!r}")

    def _lost(self, rec: Recorded, lost: Lost) -> None:
        reply = rec.lost_reply
        if lost.after_bytes is None or not isinstance(reply, (Reply, SSE)):
            self._abort(rst=True)
        if isinstance(reply, SSE):
            body, ctype = reply.render(), "text/event-stream; charset=utf-8"
        else:
            body = reply.payload()
            ctype = reply.content_type or (
                "application/json" if reply.json is not None else "application/octet-stream"
            )
        base = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
        self._send_head(reply.status, self._headers(rec, base, reply.headers))
        self._write(body[: lost.after_bytes])
        time.sleep(0.05)  # let the bytes leave before the RST
        self._abort(rst=True)

    def _streamed(self, rec: Recorded, s: _Streamed) -> None:
        base = [("Content-Type", s.content_type), ("Content-Length", str(s.length))]
        self._send_head(s.status, self._headers(rec, base, s.headers))
        budget = s.length if s.reset_after is None else min(s.length, s.reset_after)
        for chunk in s.chunks():
            if budget <= 0:
                break
            piece = chunk[:budget]
            self._write(piece)
            budget -= len(piece)
        if s.reset_after is not None:
            time.sleep(0.05)  # let the bytes leave before the RST
            self._abort(rst=True)

    def _reply(self, rec: Recorded, r: Reply) -> None:
        body = r.payload()
        ctype = r.content_type or (
            "application/json" if r.json is not None else "application/octet-stream" if body else None
        )
        base = [("Content-Length", str(len(body)))]
        if ctype:
            base.insert(0, ("Content-Type", ctype))
        headers = self._headers(rec, base, r.headers)
        self._sleep(r.delay)
        self._send_head(r.status, headers)
        if r.chunk_size and r.chunk_size > 0:
            for start in range(0, len(body), r.chunk_size):
                if start:
                    self._sleep(r.chunk_delay)
                self._write(body[start : start + r.chunk_size])
        else:
            self._write(body)

    def _sse(self, rec: Recorded, s: SSE) -> None:
        base = [
            ("Content-Type", "text/event-stream; charset=utf-8"),
            ("Cache-Control", "no-cache"),
            ("Connection", "close"),
        ]
        headers = self._headers(rec, base, s.headers)
        self.close_connection = True
        pieces = s.pieces()
        if s.split and s.split > 0:
            blob = b"".join(pieces)
            pieces = [blob[i : i + s.split] for i in range(0, len(blob), s.split)]
        budget = s.truncate_at
        self._send_head(s.status, headers)
        for i, piece in enumerate(pieces):
            if i:
                self._sleep(s.delay)
            if budget is not None:
                piece = piece[:budget]
                budget -= len(piece)
            if piece:
                self._write(piece)
            if budget is not None and budget <= 0:
                break
        if s.truncate_at is not None:
            if s.reset:
                time.sleep(0.05)  # let the bytes leave before the RST
            self._abort(rst=s.reset)

    def _reset_mid_body(self, rec: Recorded, r: ResetMidBody) -> None:
        base = [("Content-Type", r.content_type), ("Content-Length", str(len(r.body)))]
        self._send_head(r.status, self._headers(rec, base, r.headers))
        self._write(r.body[: r.after])
        time.sleep(0.05)  # let the bytes leave before the RST
        self._abort(rst=r.rst)

    def _hang(self, h: Hang) -> None:
        deadline = time.monotonic() + h.seconds
        sock = self.connection
        while not self.fake._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                readable, _, _ = select.select([sock], [], [], min(left, 0.05))
                if readable and not sock.recv(1, socket.MSG_PEEK):
                    break  # the client gave up
            except (OSError, ValueError):
                break
        self._abort(rst=False)


# --------------------------------------------------------------------------------------
# Default behaviours per route
# --------------------------------------------------------------------------------------

_FORMATS = ("png", "jpeg", "webp")
#: gpt-image-2.6 (api-facts.md section 10, third-party facts kept here in one place, easy to correct):
#: the models (a dated snapshot ``-YYYY-MM-DD`` of either matches too), their ``complexity`` values, and
#: the output formats they add: gif wherever png goes, svg on generations only (one image, no stream).
_MODEL_26 = re.compile(r"^gpt-image-2\.6-(?:flare|sunburst)(?:-\d{4}-\d{2}-\d{2})?$")
COMPLEXITIES = ("low", "medium", "high")
_FORMATS_26 = {
    "generation": (*_FORMATS, "gif", "svg"),
    "edit": (*_FORMATS, "gif"),
    "tool": (*_FORMATS, "gif"),
}
_IMAGE_FIELD = re.compile(r"^image(\[\d*\])?$")
_ALLOWED_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")


def is_model_26(model: Any) -> bool:
    """True for the gpt-image-2.6 models (flare, sunburst, and their dated snapshots)."""
    return isinstance(model, str) and _MODEL_26.match(model) is not None


def _sniff_fields(head: bytes, tail: bytes) -> Dict[str, str]:
    """Best effort: small text fields visible in the kept head/tail of a discarded body."""
    found: Dict[str, str] = {}
    pattern = re.compile(rb'name="([^"]+)"\r\n\r\n([^\r\n]{0,200})\r\n--')
    for blob in (head, tail):
        for m in pattern.finditer(blob):
            found[m.group(1).decode("latin-1")] = m.group(2).decode("utf-8", "replace")
    return found


_JSON_KEYS = re.compile(
    rb'"(model|output_format|n|stream|partial_images|quality|size|background|prompt)"\s*:\s*'
    rb'("(?:[^"\\]|\\.){0,300}"|true|false|-?\d+)'
)


def _sniff_json(head: bytes, tail: bytes) -> Dict[str, Any]:
    """Best effort: scalar keys visible in the kept head/tail of a discarded JSON body (first
    occurrence wins, nesting ignored)."""
    found: Dict[str, Any] = {}
    for blob in (head, tail):
        for m in _JSON_KEYS.finditer(blob):
            try:
                found.setdefault(m.group(1).decode("ascii"), json.loads(m.group(2)))
            except ValueError:
                pass
    return found


class _BadRequest(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply)
        self.reply = reply


def _bad(message: str, param: Optional[str] = None, code: Optional[str] = "invalid_value") -> _BadRequest:
    return _BadRequest(error_reply(400, message, code=code, param=param))


def _int_param(value: Any, name: str, default: int, lo: int, hi: int, strict: bool) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
        if isinstance(value, (bool, float)) or str(number) != str(value).strip():
            raise ValueError
    except (TypeError, ValueError):
        if strict:
            raise _bad(f"Invalid type for '{name}': expected an integer.", name, "invalid_type") from None
        return default
    if not lo <= number <= hi:
        if strict:
            raise _bad(f"Invalid '{name}': expected a value between {lo} and {hi}, got {number}.", name)
        number = min(max(number, lo), hi)
    return number


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _first_text(value: Any) -> Optional[str]:
    """The first text in a Responses ``input`` (string, or messages with input_text parts)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                if item.get("type") == "input_text" and isinstance(item.get("text"), str):
                    return str(item["text"])
                found = _first_text(item.get("content"))
                if found:
                    return found
    return None


def _input_image_parts(body: Any) -> List[Tuple[str, Dict[str, Any]]]:
    """(where, {image_url?, file_id?}) of every ``input_image`` part of a Responses ``input``."""
    found: List[Tuple[str, Dict[str, Any]]] = []
    items = body.get("input") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return found

    def take(part: Any, where: str) -> None:
        if isinstance(part, dict) and part.get("type") == "input_image":
            found.append((where, {k: part[k] for k in ("image_url", "file_id") if part.get(k) is not None}))

    for i, item in enumerate(items):
        take(item, f"input[{i}]")
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, list):
            for j, part in enumerate(content):
                take(part, f"input[{i}].content[{j}]")
    return found


def _tool_mask(body: Any) -> Optional[Tuple[str, Any]]:
    """(where, mask) of the image_generation tool's ``input_image_mask``, if any."""
    tools = body.get("tools") if isinstance(body, dict) else None
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        if isinstance(tool, dict) and tool.get("type") == "image_generation":
            mask = tool.get("input_image_mask")
            if mask is not None:
                return f"tools[{i}].input_image_mask", mask
    return None


_CLASSIC_IMAGES = re.compile(r"^/openai/deployments/([^/]+)(/images/(?:generations|edits))$")
_CLASSIC_ROUTES = re.compile(r"^/openai/((?:responses|files|batches)(?:/.*)?)$")


def _resolve_route(path: str) -> Tuple[Optional[str], str, Optional[str]]:
    """A request path -> (canonical /v1 route or None, surface, deployment from the path)."""
    p = path.rstrip("/") or "/"
    if not p.startswith("/openai/"):
        return p, "openai", None
    if p.startswith("/openai/v1/"):
        return "/v1/" + p[len("/openai/v1/") :], "azure-v1", None
    m = _CLASSIC_IMAGES.match(p)
    if m:
        return "/v1" + m.group(2), "azure-classic", urllib.parse.unquote(m.group(1))
    m = _CLASSIC_ROUTES.match(p)
    if m:
        return "/v1/" + m.group(1), "azure-classic", None
    return None, "azure-classic", None


def _route_matches(pattern: str, rec: Recorded) -> bool:
    """``"METHOD /path/glob"`` or ``"/path/glob"`` against the raw path or the canonical route."""
    method, _, glob = pattern.partition(" ") if " " in pattern else ("*", "", pattern)
    if method != "*" and method.upper() != rec.method.upper():
        return False
    paths = [rec.path, *([rec.route] if rec.route else [])]
    return any(fnmatch.fnmatchcase(p, glob.strip()) for p in paths)


_SCENE_MARKER = re.compile(r"\[\[scene:(\w+)\]\]")
_MARKER = re.compile(
    r"\[\[(refuse|filter|break|status:(\d{3})|gif-truncated|svg-bomb|svg-script|svg-truncated)\]\]"
)


def _marker(prompt: Optional[str]) -> Optional[str]:
    m = _MARKER.search(prompt or "")
    return None if m is None else m.group(1)


def _status_reply(status: int) -> Reply:
    """The error reply a ``[[status:NNN]]`` marker asks for."""
    if status == 429:
        return rate_limit_reply(0.02)
    if status >= 500:
        return error_reply(
            status,
            "The server had an error while processing your request. Sorry about that!",
            type="server_error",
        )
    if status == 401:
        return error_reply(401, "Invalid authentication credentials.", code="invalid_api_key")
    return error_reply(status, f"A scripted error ({status}).", code="scripted_error")


# ---- files on disk ---------------------------------------------------------------------

_B62 = string.ascii_letters + string.digits


def _file_id() -> str:
    return "file-" + "".join(secrets.choice(_B62) for _ in range(22))


#: Content items of a generated file: bytes as they are, str is ASCII (big base64 strings).
ContentItem = Union[bytes, str]


@dataclass
class _StoredFile:
    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    expires_at: Optional[int] = None
    path: Optional[str] = None  # the bytes live in path[offset : offset + bytes]
    offset: int = 0
    items: Optional[List[ContentItem]] = None  # or they are generated from these items

    def object(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }

    def chunks(self) -> Iterator[bytes]:
        """The content, about 1 MiB at a time, read from disk or generated."""
        if self.items is not None:
            pending = bytearray()
            for item in self.items:
                if isinstance(item, bytes):
                    pending += item
                else:
                    for start in range(0, len(item), _CHUNK):
                        pending += item[start : start + _CHUNK].encode("ascii")
                        if len(pending) >= _CHUNK:
                            yield bytes(pending)
                            pending.clear()
                if len(pending) >= _CHUNK:
                    yield bytes(pending)
                    pending.clear()
            if pending:
                yield bytes(pending)
            return
        if self.path is None:
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            left = self.bytes
            while left > 0:
                data = f.read(min(_CHUNK, left))
                if not data:
                    return
                left -= len(data)
                yield data

    def read_all(self) -> bytes:
        return b"".join(self.chunks())

    def lines(self) -> Iterator[Tuple[int, bytes]]:
        """(absolute offset, raw line with its end) of a file on disk, one at a time."""
        if self.path is None:
            data = self.read_all()
            pos = 0
            for line in data.splitlines(keepends=True):
                yield pos, line
                pos += len(line)
            return
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            pos, left = self.offset, self.bytes
            while left > 0:
                line = f.readline(left)
                if not line:
                    return
                left -= len(line)
                yield pos, line
                pos += len(line)

    def read_at(self, offset: int, length: int) -> bytes:
        if self.path is None:
            return self.read_all()[offset : offset + length]
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(length)


@dataclass
class _SpooledPart:
    name: Optional[str]
    filename: Optional[str]
    content_type: Optional[str]
    start: int
    end: int


def _scan_multipart_file(
    path: str, boundary: str, max_parts: int = 64
) -> Tuple[List[_SpooledPart], List[str]]:
    """Find the parts of a multipart body on disk without reading it into memory."""
    delim = b"\r\n--" + boundary.encode("latin-1", "replace")
    positions: List[int] = []
    with open(path, "rb") as f:
        if f.read(len(delim) - 2) == delim[2:]:
            positions.append(-2)  # the body starts with the first boundary (no CRLF before it)
        f.seek(0)
        carry, base = b"", 0
        while len(positions) <= max_parts + 1:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            buf = carry + chunk
            start = 0
            while True:
                i = buf.find(delim, start)
                if i < 0:
                    break
                if base + i != -2:
                    positions.append(base + i)
                start = i + len(delim)
            keep = min(len(buf) - start, len(delim) - 1)
            base += len(buf) - keep
            carry = buf[len(buf) - keep :]
        if len(positions) > max_parts + 1:
            return [], ["TooManyParts"]
        parts: List[_SpooledPart] = []
        for k, pos in enumerate(positions):
            after = pos + len(delim)
            f.seek(after)
            if f.read(2) == b"--":
                return parts, []
            if k + 1 >= len(positions):
                break
            f.seek(after)
            header_start = after + len(f.readline(1024))
            end = positions[k + 1]
            f.seek(header_start)
            block = f.read(min(16384, max(0, end - header_start)))
            if block.startswith(b"\r\n"):
                header_bytes, content_start = b"", header_start + 2
            else:
                j = block.find(b"\r\n\r\n")
                if j < 0:
                    return parts, ["MissingHeaderBodySeparatorDefect"]
                header_bytes, content_start = block[: j + 2], header_start + j + 4
            msg = email.parser.BytesHeaderParser(policy=email.policy.HTTP).parsebytes(header_bytes + b"\r\n")
            name = msg.get_param("name", header="content-disposition")
            if isinstance(name, tuple):
                name = email.utils.collapse_rfc2231_value(name)
            ctype = msg.get("content-type")
            parts.append(
                _SpooledPart(
                    name=None if name is None else str(name),
                    filename=msg.get_filename(),
                    content_type=None if ctype is None else str(ctype),
                    start=content_start,
                    end=end,
                )
            )
    return parts, ["CloseBoundaryNotFoundDefect"]


#: Purposes ``POST /v1/files`` takes (CreateFileRequest in the spec).
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


class _Files:
    """The Files API: uploads streamed to disk, objects, contents streamed back."""

    def __init__(self, fake: FakeAPI) -> None:
        self.fake = fake
        self.files: Dict[str, _StoredFile] = {}
        self.lock = threading.RLock()

    # ---- spooling ------------------------------------------------------------------
    def spool_for(self, rec: Recorded) -> Optional[BinaryIO]:
        if rec.method != "POST" or rec.route != "/v1/files":
            return None
        fd, path = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=self.fake._tmp())
        rec._spool = path
        return os.fdopen(fd, "wb")

    def discard_spool(self, rec: Recorded) -> None:
        if rec._spool and not rec._spool_kept:
            try:
                os.unlink(rec._spool)
            except OSError:
                pass
            rec._spool = None

    # ---- store ---------------------------------------------------------------------
    def lookup(self, file_id: str) -> Optional[_StoredFile]:
        with self.lock:
            return self.files.get(file_id)

    def put(self, stored: _StoredFile) -> _StoredFile:
        with self.lock:
            self.files[stored.id] = stored
        return stored

    def add_bytes(
        self, data: bytes, filename: str, purpose: str, file_id: Optional[str] = None
    ) -> _StoredFile:
        fd, path = tempfile.mkstemp(prefix="file-", suffix=".data", dir=self.fake._tmp())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        now = int(time.time())
        expires = now + 30 * 86400 if purpose == "batch" else None
        stored = _StoredFile(file_id or _file_id(), filename, purpose, len(data), now, expires, path=path)
        return self.put(stored)

    def remove(self, file_id: str) -> Optional[_StoredFile]:
        with self.lock:
            stored = self.files.pop(file_id, None)
            still_used = stored is not None and any(f.path == stored.path for f in self.files.values())
        if stored is not None and stored.path and not still_used:
            try:
                os.unlink(stored.path)
            except OSError:
                pass
        return stored

    def clear(self) -> None:
        with self.lock:
            ids = list(self.files)
        for file_id in ids:
            self.remove(file_id)

    # ---- routes --------------------------------------------------------------------
    def handle(self, rec: Recorded) -> Union[Behaviour, _Streamed]:
        route = rec.route or ""
        if route == "/v1/files":
            return self.upload(rec) if rec.method == "POST" else self.listing(rec)
        m = re.match(r"^/v1/files/([^/]+)(/content)?$", route)
        if m is None:  # pragma: no cover - _known_route filters
            return error_reply(404, f"Invalid URL ({rec.method} {rec.path})", code="unknown_url")
        stored = self.lookup(m.group(1))
        if stored is None:
            return error_reply(404, f"No such File object: {m.group(1)}", param="id")
        if m.group(2):
            return self.content(stored)
        if rec.method == "DELETE":
            self.remove(stored.id)
            return Reply(json={"id": stored.id, "object": "file", "deleted": True})
        return Reply(json=stored.object())

    def content(self, stored: _StoredFile) -> _Streamed:
        plan = self.fake._batches.plan_for_output(stored.id)
        length, reset = stored.bytes, None
        if plan is not None and plan.truncate_output_at is not None:
            length = min(length, max(0, plan.truncate_output_at))
        if plan is not None and plan.reset_output_after is not None:
            reset = max(0, plan.reset_output_after)
        return _Streamed(length=length, chunks=stored.chunks, reset_after=reset)

    def listing(self, rec: Recorded) -> Reply:
        purpose = rec.query_params.get("purpose")
        with self.lock:
            files = [f for f in self.files.values() if purpose in (None, "", f.purpose)]
        data = [f.object() for f in reversed(files)]
        return Reply(
            json={
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": False,
            }
        )

    def upload(self, rec: Recorded) -> Reply:
        fake = self.fake
        if not rec.is_multipart or not rec._spool:
            raise _bad(
                f"Invalid Content-Type header ({rec.content_type or 'none'}), expected multipart/form-data.",
                code=None,
            )
        boundary = Message()
        boundary["content-type"] = rec.header("content-type") or ""
        parts, defects = _scan_multipart_file(rec._spool, str(boundary.get_param("boundary") or ""))
        if defects or not parts:
            raise _bad(f"Could not parse multipart form: {', '.join(defects) or 'no parts'}.", code=None)
        fields: Dict[str, str] = {}
        file_part: Optional[_SpooledPart] = None
        with open(rec._spool, "rb") as f:
            for part in parts:
                if part.filename is None:
                    f.seek(part.start)
                    fields[part.name or ""] = f.read(min(part.end - part.start, 1 << 20)).decode(
                        "utf-8", "replace"
                    )
                elif part.name == "file" and file_part is None:
                    file_part = part
        size = 0 if file_part is None else file_part.end - file_part.start
        rec.upload = Upload(
            fields=fields,
            filename=None if file_part is None else file_part.filename,
            content_type=None if file_part is None else file_part.content_type,
            size=size,
        )
        purpose = fields.get("purpose")
        if fake.strict:
            if not purpose:
                raise _bad("Missing required parameter: 'purpose'.", "purpose", "missing_required_parameter")
            if purpose not in FILE_PURPOSES:
                raise _bad(
                    f"Invalid value: '{purpose}'. Supported values are: 'assistants', 'batch', 'fine-tune', "
                    "'vision', 'user_data', and 'evals'.",
                    "purpose",
                )
            if file_part is None:
                if "file" in fields:
                    raise _bad("Invalid value for 'file': expected a file upload.", "file")
                raise _bad("Missing required parameter: 'file'.", "file", "missing_required_parameter")
            if size > fake.max_upload_bytes:
                raise _bad(
                    f"File is too large: {size} bytes; the maximum is {fake.max_upload_bytes} bytes.",
                    "file",
                    "file_too_large",
                )
            if purpose == "batch" and not (file_part.filename or "").lower().endswith(".jsonl"):
                raise _bad("Invalid file format for Batch API. Must be .jsonl", code=None)
        now = int(time.time())
        expires = now + 30 * 86400 if purpose == "batch" else None
        seconds = fields.get("expires_after[seconds]")
        if seconds is not None:
            try:
                value = int(seconds)
            except ValueError:
                value = -1
            if fake.strict and not 3600 <= value <= 2592000:
                raise _bad(
                    "Invalid 'expires_after.seconds': expected a value between 3600 and 2592000.",
                    "expires_after.seconds",
                )
            expires = now + value
        stored = _StoredFile(
            id=_file_id(),
            filename=(file_part.filename if file_part is not None else None) or "upload",
            purpose=purpose or "user_data",
            bytes=size,
            created_at=now,
            expires_at=expires,
            path=rec._spool,
            offset=0 if file_part is None else file_part.start,
        )
        rec._spool_kept = True
        rec.upload.file_id = stored.id
        self.put(stored)
        return Reply(json=stored.object())


# ---- batches -------------------------------------------------------------------------

#: The endpoints ``POST /v1/batches`` accepts (CreateBatchRequest in the spec).
BATCH_ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)
_BIG_STRING = 4096
_B64_TEXT = re.compile(r"^[A-Za-z0-9+/=]*$")
_NONCE = secrets.token_hex(6)
_PLACEHOLDER = re.compile(r'"\\u0000fakeapi' + _NONCE + r':(\d+)\\u0000"')


def _jsonl_items(obj: Any) -> List[ContentItem]:
    """One JSONL line as content items: the big base64 strings stay shared ``str`` objects (so a
    batch of large images holds each distinct image once), the rest is bytes."""
    bigs: List[str] = []

    def slim(value: Any) -> Any:
        if isinstance(value, str) and len(value) > _BIG_STRING and _B64_TEXT.match(value):
            bigs.append(value)
            return f"\x00fakeapi{_NONCE}:{len(bigs) - 1}\x00"
        if isinstance(value, dict):
            return {k: slim(v) for k, v in value.items()}
        if isinstance(value, list):
            return [slim(v) for v in value]
        return value

    text = json.dumps(slim(obj))
    pieces = _PLACEHOLDER.split(text)
    items: List[ContentItem] = []
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            items.append(
                ('"' if i else "").encode() + piece.encode("utf-8") + (b'"' if i + 1 < len(pieces) else b"")
            )
        else:
            items.append(bigs[int(piece)])
    items[-1] = items[-1] + b"\n" if isinstance(items[-1], bytes) else items[-1]
    return items


def _size(items: Sequence[ContentItem]) -> int:
    return sum(len(item) for item in items)


@dataclass
class _Line:
    number: int  # 1-based line number in the input file
    custom_id: str
    offset: int
    length: int


@dataclass
class _Batch:
    obj: Dict[str, Any]
    plan: BatchPlan
    number: int
    lines: List[_Line] = field(default_factory=list)
    order: List[int] = field(default_factory=list)
    done: int = 0
    polls: int = 0
    out: List[List[ContentItem]] = field(default_factory=list)
    err: List[List[ContentItem]] = field(default_factory=list)
    first_ok: Optional[_Line] = None
    output_expires: Optional[Dict[str, Any]] = None


class _Batches:
    """The Batch API: create, poll (a status step every ``polls_per_step`` polls), list, cancel."""

    def __init__(self, fake: FakeAPI) -> None:
        self.fake = fake
        self.batches: Dict[str, _Batch] = {}
        self.plans: List[BatchPlan] = []
        self.outputs: Dict[str, BatchPlan] = {}  # output file id -> its batch's plan
        self.lock = threading.RLock()
        self.count = 0

    def plan_for_output(self, file_id: str) -> Optional[BatchPlan]:
        with self.lock:
            return self.outputs.get(file_id)

    def clear(self) -> None:
        with self.lock:
            self.batches.clear()
            self.plans.clear()
            self.outputs.clear()

    # ---- routes --------------------------------------------------------------------
    def handle(self, rec: Recorded) -> Reply:
        route = rec.route or ""
        if route == "/v1/batches":
            return self.create(rec) if rec.method == "POST" else self.listing(rec)
        m = re.match(r"^/v1/batches/([^/]+)(/cancel)?$", route)
        if m is None:  # pragma: no cover - _known_route filters
            return error_reply(404, f"Invalid URL ({rec.method} {rec.path})", code="unknown_url")
        with self.lock:
            batch = self.batches.get(m.group(1))
            if batch is None:
                return error_reply(404, f"No batch found with id '{m.group(1)}'.", param="batch_id")
            if m.group(2):
                return self.cancel(batch)
            batch.polls += 1
            if batch.polls >= max(1, batch.plan.polls_per_step):
                batch.polls = 0
                self.step(batch)
            return Reply(json=_copy(batch.obj))

    def listing(self, rec: Recorded) -> Reply:
        query = rec.query_params
        try:
            limit = int(query.get("limit") or 20)
        except ValueError:
            raise _bad("Invalid type for 'limit': expected an integer.", "limit", "invalid_type") from None
        if not 1 <= limit <= 100:
            raise _bad(f"Invalid 'limit': expected a value between 1 and 100, got {limit}.", "limit")
        with self.lock:
            newest = sorted(self.batches.values(), key=lambda b: b.number, reverse=True)
            after = query.get("after")
            if after:
                ids = [b.obj["id"] for b in newest]
                newest = newest[ids.index(after) + 1 :] if after in ids else []
            page = [_copy(b.obj) for b in newest[:limit]]
            more = len(newest) > limit
        return Reply(
            json={
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": more,
            }
        )

    def create(self, rec: Recorded) -> Reply:
        fake = self.fake
        body = fake._json_params(rec)
        allowed = ("input_file_id", "endpoint", "completion_window", "metadata", "output_expires_after")
        if fake.strict:
            for key in body:
                if key not in allowed:
                    raise _bad(f"Unknown parameter: '{key}'.", key, "unknown_parameter")
            for key in ("input_file_id", "endpoint", "completion_window"):
                if body.get(key) in (None, ""):
                    raise _bad(f"Missing required parameter: '{key}'.", key, "missing_required_parameter")
            if body["endpoint"] not in BATCH_ENDPOINTS:
                listed = ", ".join(f"'{e}'" for e in BATCH_ENDPOINTS)
                raise _bad(
                    f"Invalid value: '{body['endpoint']}'. Supported values are: {listed}.", "endpoint"
                )
            if body["completion_window"] != "24h":
                raise _bad(
                    f"Invalid value: '{body['completion_window']}'. Supported values are: '24h'.",
                    "completion_window",
                )
            self._check_metadata(body.get("metadata"))
            self._check_expiry(body.get("output_expires_after"))
        stored = fake._files.lookup(str(body.get("input_file_id") or ""))
        if fake.strict and stored is None:
            raise _BadRequest(
                error_reply(404, f"No such File object: {body.get('input_file_id')}", param="input_file_id")
            )
        if fake.strict and stored is not None and stored.purpose != "batch":
            raise _bad(
                f"Invalid 'input_file_id': the file must have purpose 'batch', not '{stored.purpose}'.",
                "input_file_id",
            )
        now = int(time.time())
        with self.lock:
            self.count += 1
            plan = self.plans.pop(0) if self.plans else fake.batch_plan
            obj: Dict[str, Any] = {
                "id": "batch_" + secrets.token_hex(16),
                "object": "batch",
                "endpoint": body.get("endpoint"),
                "model": None,
                "errors": None,
                "input_file_id": body.get("input_file_id"),
                "completion_window": body.get("completion_window") or "24h",
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "created_at": now,
                "in_progress_at": None,
                "expires_at": now + 86400,
                "finalizing_at": None,
                "completed_at": None,
                "failed_at": None,
                "expired_at": None,
                "cancelling_at": None,
                "cancelled_at": None,
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "usage": {
                    "input_tokens": 0,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": 0,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": 0,
                },
                "metadata": _copy(body.get("metadata")),
            }
            expiry = body.get("output_expires_after")
            batch = _Batch(
                obj=obj,
                plan=dataclasses.replace(plan),
                number=self.count,
                output_expires=expiry if isinstance(expiry, dict) else None,
            )
            self.batches[obj["id"]] = batch
            return Reply(json=_copy(obj))

    @staticmethod
    def _check_metadata(metadata: Any) -> None:
        if metadata is None:
            return
        if not isinstance(metadata, dict) or len(metadata) > 16:
            raise _bad("Invalid 'metadata': expected an object with at most 16 keys.", "metadata")
        for key, value in metadata.items():
            if len(key) > 64 or not isinstance(value, str) or len(value) > 512:
                raise _bad(
                    "Invalid 'metadata': keys are at most 64 characters and values strings of at most 512.",
                    "metadata",
                )

    @staticmethod
    def _check_expiry(expiry: Any) -> None:
        if expiry is None:
            return
        if not isinstance(expiry, dict) or expiry.get("anchor") != "created_at":
            raise _bad(
                "Invalid 'output_expires_after.anchor': expected 'created_at'.", "output_expires_after.anchor"
            )
        seconds = expiry.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not 3600 <= seconds <= 2592000:
            raise _bad(
                "Invalid 'output_expires_after.seconds': expected an integer between 3600 and 2592000.",
                "output_expires_after.seconds",
            )

    def cancel(self, batch: _Batch) -> Reply:
        obj = batch.obj
        if obj["status"] in ("completed", "failed", "expired", "cancelled"):
            return error_reply(409, f"Cannot cancel a batch with status '{obj['status']}'.", code=None)
        if obj["status"] != "cancelling":
            obj["status"] = "cancelling"
            obj["cancelling_at"] = int(time.time())
            batch.polls = 0
        return Reply(json=_copy(obj))

    # ---- the state machine ---------------------------------------------------------
    def step(self, batch: _Batch) -> None:
        obj = batch.obj
        status = obj["status"]
        now = int(time.time())
        if status == "validating":
            errors = self.validate(batch)
            if errors:
                obj.update(status="failed", failed_at=now, errors={"object": "list", "data": errors})
            else:
                obj.update(status="in_progress", in_progress_at=now)
                obj["request_counts"]["total"] = len(batch.lines)
                order = list(range(len(batch.lines)))
                if batch.plan.shuffle:
                    random.Random(f"{self.fake.seed}:{batch.number}").shuffle(order)
                batch.order = order
        elif status == "in_progress":
            left = len(batch.lines) - batch.done
            count = (
                left if batch.plan.lines_per_step is None else min(left, max(1, batch.plan.lines_per_step))
            )
            limit = batch.plan.expire_after
            if limit is not None:
                count = max(0, min(count, limit - batch.done))
            for _ in range(count):
                self.run_line(batch, batch.lines[batch.order[batch.done]])
                batch.done += 1
            if batch.done >= len(batch.lines):
                obj.update(status="finalizing", finalizing_at=now)
            elif limit is not None and batch.done >= limit:
                self.unfinished(
                    batch,
                    "batch_expired",
                    "This request could not be executed before the completion window of 24h expired.",
                )
                obj.update(status="expired", expired_at=now)
                self.finish(batch)
        elif status == "finalizing":
            obj.update(status="completed", completed_at=now)
            self.finish(batch)
        elif status == "cancelling":
            if batch.order:
                self.unfinished(
                    batch, "batch_cancelled", "This request was not executed because the batch was cancelled."
                )
            obj.update(status="cancelled", cancelled_at=now)
            self.finish(batch)

    def validate(self, batch: _Batch) -> List[Dict[str, Any]]:
        fake = self.fake
        stored = fake._files.lookup(str(batch.obj["input_file_id"]))

        def error(
            code: str, message: str, param: Optional[str] = None, line: Optional[int] = None
        ) -> Dict[str, Any]:
            return {"code": code, "message": message, "param": param, "line": line}

        if stored is None:
            return [
                error("invalid_input_file", f"The input file {batch.obj['input_file_id']} was not found.")
            ]
        if stored.bytes == 0:
            return [error("empty_file", "The batch input file is empty.")]
        if stored.bytes > fake.batch_max_bytes:
            return [
                error(
                    "file_too_large",
                    f"The batch input file is {stored.bytes} bytes; the maximum is {fake.batch_max_bytes} bytes.",
                )
            ]
        errors: List[Dict[str, Any]] = []
        seen: Set[str] = set()
        endpoint = batch.obj["endpoint"]
        model: Optional[str] = None
        number = 0
        for offset, raw in stored.lines():
            number += 1
            if number > fake.batch_max_lines:
                return [
                    error(
                        "too_many_tasks",
                        f"The batch has more than {fake.batch_max_lines} requests; the maximum is "
                        f"{fake.batch_max_lines}.",
                    )
                ]
            if len(errors) >= 1000:
                continue
            problem = self._check_line(raw, number, endpoint, seen, model)
            if isinstance(problem, dict):
                errors.append(problem)
                continue
            custom_id, line_model = problem
            model = model or line_model
            batch.lines.append(_Line(number, custom_id, offset, len(raw)))
        if not errors and not batch.lines:
            return [error("empty_file", "The batch input file is empty.")]
        batch.obj["model"] = model
        if errors:
            batch.lines.clear()
        return errors

    @staticmethod
    def _check_line(
        raw: bytes, number: int, endpoint: str, seen: Set[str], model: Optional[str]
    ) -> Union[Dict[str, Any], Tuple[str, Optional[str]]]:
        def error(code: str, message: str, param: Optional[str] = None) -> Dict[str, Any]:
            return {"code": code, "message": message, "param": param, "line": number}

        try:
            obj = json.loads(raw.decode("utf-8"))
        except ValueError:
            return error("invalid_json_line", "This line is not parseable as valid JSON.")
        if not isinstance(obj, dict):
            return error("invalid_json_line", "This line is not a JSON object.")
        for key in ("custom_id", "method", "url", "body"):
            if obj.get(key) in (None, ""):
                return error("missing_required_parameter", f"Missing required parameter: '{key}'.", key)
        custom_id = obj["custom_id"]
        if not isinstance(custom_id, str):
            return error("invalid_value", "The custom_id must be a string.", "custom_id")
        if custom_id in seen:
            return error(
                "duplicate_custom_id",
                f"The custom_id '{custom_id}' is used more than once; each must be unique within a batch.",
                "custom_id",
            )
        seen.add(custom_id)
        if obj["method"] != "POST":
            return error(
                "invalid_value", f"Invalid method '{obj['method']}'. Only 'POST' is supported.", "method"
            )
        if obj["url"] != endpoint:
            return error(
                "url_mismatch",
                f"The URL provided for this request ('{obj['url']}') does not match the batch endpoint "
                f"('{endpoint}').",
                "url",
            )
        if not isinstance(obj["body"], dict):
            return error("invalid_value", "The body must be a JSON object.", "body")
        line_model = obj["body"].get("model")
        if model is not None and line_model != model:
            return error(
                "model_mismatch",
                f"The model '{line_model}' differs from the batch's model '{model}'; a batch runs one model.",
                "body.model",
            )
        return custom_id, line_model if isinstance(line_model, str) else None

    def run_line(self, batch: _Batch, line: _Line, custom_id: Optional[str] = None) -> None:
        fake = self.fake
        stored = fake._files.lookup(str(batch.obj["input_file_id"]))
        raw = stored.read_at(line.offset, line.length) if stored is not None else b"{}"
        obj = json.loads(raw.decode("utf-8"))
        status, body = fake._batch_answer(str(obj["url"]), obj["body"])
        counts = batch.obj["request_counts"]
        ok = status == 200
        counts["completed" if ok else "failed"] += 1
        if ok and isinstance(body, dict) and isinstance(body.get("usage"), dict):
            usage, got = batch.obj["usage"], body["usage"]
            for key in ("input_tokens", "output_tokens", "total_tokens"):
                value = got.get(key)
                usage[key] += value if isinstance(value, int) else 0
        envelope = {
            "id": "batch_req_" + secrets.token_hex(16),
            "custom_id": custom_id or line.custom_id,
            "response": {"status_code": status, "request_id": "req_" + secrets.token_hex(16), "body": body},
            "error": None,
        }
        items = _jsonl_items(envelope)
        if ok or batch.plan.failures_in == "output":
            batch.out.append(items)
            if ok and batch.first_ok is None:
                batch.first_ok = line
        else:
            batch.err.append(items)

    def unfinished(self, batch: _Batch, code: str, message: str) -> None:
        for index in batch.order[batch.done :]:
            line = batch.lines[index]
            envelope = {
                "id": "batch_req_" + secrets.token_hex(16),
                "custom_id": line.custom_id,
                "response": None,
                "error": {"code": code, "message": message},
            }
            batch.err.append(_jsonl_items(envelope))
        batch.done = len(batch.order)

    def finish(self, batch: _Batch) -> None:
        """Make the output and error files of a batch that reached a final status."""
        fake = self.fake
        if batch.plan.unknown_custom_id and batch.first_ok is not None:
            saved = _copy({k: batch.obj[k] for k in ("request_counts", "usage")})
            self.run_line(batch, batch.first_ok, custom_id="unknown-" + secrets.token_hex(6))
            batch.obj.update(saved)
            extra = batch.out.pop()
            position = random.Random(f"{fake.seed}:{batch.number}:x").randint(0, len(batch.out))
            batch.out.insert(position, extra)
        now = int(time.time())
        expiry = batch.output_expires
        seconds = expiry.get("seconds") if expiry is not None else None
        expires_at = now + seconds if isinstance(seconds, int) else None
        for key, lines, suffix in (
            ("output_file_id", batch.out, "output"),
            ("error_file_id", batch.err, "error"),
        ):
            if not lines:
                continue
            items = [item for line in lines for item in line]
            stored = _StoredFile(
                id=_file_id(),
                filename=f"{batch.obj['id']}_{suffix}.jsonl",
                purpose="batch_output",
                bytes=_size(items),
                created_at=now,
                expires_at=expires_at,
                items=items,
            )
            fake._files.put(stored)
            batch.obj[key] = stored.id
            if suffix == "output":
                self.outputs[stored.id] = batch.plan
        batch.out, batch.err = [], []


#: Azure deployments the fake knows by default: deployment name -> the model it serves.
AZURE_DEPLOYMENTS: Dict[str, str] = {
    "gpt-image-2": "gpt-image-2",
    "gpt-image-1.5": "gpt-image-1.5",
    "gpt-5.4": "gpt-5.4",
}

_AZURE_NO_KEY = (
    "Access denied due to missing subscription key. Make sure to include subscription key when making "
    "requests to an API."
)
_AZURE_BAD_KEY = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
    "for an active subscription and use a correct regional API endpoint for your resource."
)
_NO_DEPLOYMENT = (
    "The API deployment for this resource does not exist. If you created the deployment within the last 5 "
    "minutes, please wait a moment and try again."
)
_JSON_EDIT_FIELDS = (
    "model",
    "images",
    "mask",
    "prompt",
    "n",
    "size",
    "quality",
    "background",
    "output_format",
    "output_compression",
    "moderation",
    "input_fidelity",
    "stream",
    "partial_images",
    "user",
    "complexity",
)
# The other bodies' fields, from the spec's schemas (CreateImageRequest; CreateImageEditRequest's text
# fields, the image/mask file parts apart; ImageGenTool; CreateResponse), plus 2.6's `complexity`. With
# ``strict_fields`` anything else is an unknown parameter, as the API answers.
_GENERATION_FIELDS = (
    "model",
    "prompt",
    "n",
    "size",
    "quality",
    "background",
    "output_format",
    "output_compression",
    "moderation",
    "stream",
    "partial_images",
    "response_format",
    "style",
    "user",
    "complexity",
)
_MULTIPART_EDIT_FIELDS = (
    "model",
    "prompt",
    "n",
    "size",
    "quality",
    "background",
    "output_format",
    "output_compression",
    "input_fidelity",
    "stream",
    "partial_images",
    "response_format",
    "user",
    "complexity",
)
_TOOL_FIELDS = (
    "type",
    "model",
    "action",
    "background",
    "input_fidelity",
    "input_image_mask",
    "moderation",
    "output_compression",
    "output_format",
    "partial_images",
    "quality",
    "size",
    "complexity",
)
_RESPONSES_FIELDS = (
    "background",
    "context_management",
    "conversation",
    "include",
    "input",
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "metadata",
    "model",
    "moderation",
    "parallel_tool_calls",
    "previous_response_id",
    "prompt",
    "prompt_cache_key",
    "prompt_cache_options",
    "prompt_cache_retention",
    "reasoning",
    "safety_identifier",
    "service_tier",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "truncation",
    "user",
)
_ENUMS = {
    "quality": ("low", "medium", "high", "auto"),
    "background": ("transparent", "opaque", "auto"),
    "moderation": ("low", "auto"),
    "input_fidelity": ("high", "low"),
}
_SIZE = re.compile(r"^(auto|\d{2,5}x\d{2,5})$")


def _listing(values: Sequence[str]) -> str:
    quoted = [f"'{v}'" for v in values]
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}" if len(quoted) > 2 else " and ".join(quoted)


class FakeAPI:
    """The fake server. See the module docstring. All public attributes are safe to read from
    the test thread; the settings below may be changed any time.

    - ``keep_bodies=False``: request bodies are counted (``body_size``) and discarded, keeping
      only the first/last 64 KiB, so huge uploads don't cost the test process memory.
    - ``strict=True``: the default routes reject what the real API rejects (no
      ``Authorization: Bearer`` key -> 401; bad JSON, missing prompt, bad n/output_format/
      partial_images, repeated bare ``image`` parts, image parts without an image/png|jpeg|webp
      Content-Type, bad JSON-edit image references, bad uploads and batches; on Azure paths a
      missing ``api-key``, ``api-version``, unknown deployments and webp) with the API's errors.
    - ``strict_fields=True`` (with ``strict``): a body field the spec does not know (top level of the
      image bodies, multipart text fields, the Responses body and its image_generation tool) is a 400
      ``unknown_parameter`` ("Unknown parameter: 'frames'."), except names in ``accept_extra``
      (e.g. ``accept_extra=("frames", "frame_duration")``: accepted, recorded, otherwise ignored).
      ``strict_fields=False`` takes any field, as the fake did before for generations.
    - ``image_bytes=N``: default images are random-noise images of about N bytes (png/jpeg/webp).
    - ``seed``: seeds the fake's shuffles (batch output order).
    """

    def __init__(
        self,
        *,
        image_bytes: Optional[int] = None,
        keep_bodies: bool = True,
        strict: bool = True,
        strict_fields: bool = True,
        accept_extra: Sequence[str] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
        history: bool = True,
        seed: int = 0,
        tmp_dir: Optional[str] = None,
    ) -> None:
        self.image_bytes = image_bytes
        self.history = history
        self.keep_bodies = keep_bodies
        self.strict = strict
        self.strict_fields = strict_fields
        self.accept_extra: Tuple[str, ...] = tuple(accept_extra)
        self.verbose = verbose
        self.host = host
        self.seed = seed
        self._requested_port = port
        self.errors: List[str] = []  # tracebacks of bugs inside the fake (not client disconnects)
        self.sent_images: List[bytes] = []
        self.sent_partials: List[bytes] = []
        # Load simulation.
        self.latency: Union[float, Callable[[Recorded], float]] = 0.0
        self.rate_limit: Optional[RateLimit] = None
        self.insufficient_quota = False
        self.markers = True
        # Transparent-background requests answered with rendered subjects (tests/keyscenes.py); models that
        # refuse background: transparent as the API reportedly does since 2026-09-30 (api-facts.md section 10,
        # third-party: HTTP 400 invalid_value "Transparent background is not supported for this model.").
        self.transparency_scenes = True
        # Images at the size the request asked for, as the API makes them (off: the small default, which keeps
        # the suite fast; a run that asked for another size then warns that the size differs).
        self.true_size = False
        self.no_native_transparency: Tuple[str, ...] = ("gpt-image-2",)
        self.requests_per_prompt: collections.Counter[str] = collections.Counter()
        self.successes_per_prompt: collections.Counter[str] = collections.Counter()
        self.peak_concurrency = 0
        self.in_flight = 0
        # Files and batches.
        self.check_file_ids: Tuple[str, ...] = ("edits",)
        self.max_upload_bytes = 512 * 1024 * 1024
        self.batch_max_bytes = 200 * 1024 * 1024
        self.batch_max_lines = 50_000
        self.batch_plan = BatchPlan()
        # Azure.
        self.azure_deployments: Dict[str, str] = dict(AZURE_DEPLOYMENTS)
        self.azure_api_key: Optional[str] = None
        self.azure_bearer_ok = False
        self._requests: List[Recorded] = []
        self._queue: List[QueueItem] = []
        self._keyed: List[Tuple[str, QueueItem]] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._gate_lock = threading.Lock()
        self._window: Optional[Tuple[float, int]] = None  # (window start, admitted in it)
        self._conns: Set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._tmp_root = tmp_dir
        self._tmp_dir: Optional[str] = None
        self._files = _Files(self)
        self._batches = _Batches(self)

    # ---- lifecycle -----------------------------------------------------------------
    def start(self) -> FakeAPI:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self.host, self._requested_port), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="fakeapi", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and wake every handler (hanging ones included); returns promptly. Stored
        files and batches are dropped and the temporary folder removed."""
        server = self._server
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None
        self._files.clear()
        self._batches.clear()
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None

    def __enter__(self) -> FakeAPI:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeAPI is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """The OpenAI base URL: ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def azure_url(self) -> str:
        """The Azure endpoint root (what ``https://RES.openai.azure.com`` is): the v1 surface is
        ``{azure_url}/openai/v1``, the classic one ``{azure_url}/openai/deployments/...``."""
        return f"http://{self.host}:{self.port}"

    @property
    def tmp_dir(self) -> str:
        """The folder where uploads and stored files live (removed by stop())."""
        return self._tmp()

    def _tmp(self) -> str:
        with self._lock:
            if self._tmp_dir is None:
                self._tmp_dir = tempfile.mkdtemp(prefix="fakeapi-", dir=self._tmp_root)
            return self._tmp_dir

    # ---- scripting and inspection --------------------------------------------------
    def queue(self, *behaviours: QueueItem, route: Optional[str] = None) -> FakeAPI:
        """Append scripted behaviours; each request consumes one, first in first out.

        With ``route`` (``"POST /v1/batches"``, ``"GET /v1/batches/*"``, ``"/v1/files"``: an
        optional method and an fnmatch pattern matched against the raw path or the canonical
        route) they are kept apart and consumed only by matching requests, before the plain
        queue.
        """
        with self._lock:
            if route is None:
                self._queue.extend(behaviours)
            else:
                self._keyed.extend((route, b) for b in behaviours)
        return self

    @property
    def queued(self) -> int:
        """How many scripted behaviours are still waiting (keyed ones included)."""
        with self._lock:
            return len(self._queue) + len(self._keyed)

    def queue_batch(self, *plans: BatchPlan) -> FakeAPI:
        """Plans for the next batches created, in order (then ``batch_plan`` again)."""
        with self._batches.lock:
            self._batches.plans.extend(plans)
        return self

    @property
    def requests(self) -> List[Recorded]:
        """A snapshot list of the requests received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def last(self) -> Recorded:
        with self._lock:
            if not self._requests:
                raise AssertionError("the fake API received no request")
            return self._requests[-1]

    def wait_for(self, count: int, timeout: float = 5.0) -> List[Recorded]:
        """Block until at least ``count`` requests arrived (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} requests, got {len(self._requests)}")
                self._arrived.wait(left)
            return list(self._requests)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Block until no request is being handled (AssertionError on timeout): a client that has
        read its answer may return before the fake's handler has finished with it."""
        deadline = time.monotonic() + timeout
        while self.in_flight > 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.in_flight} requests still in flight")
            time.sleep(0.005)

    def clear(self) -> None:
        """Forget recorded requests, sent images, queued behaviours and the counters."""
        with self._lock:
            self._requests.clear()
            self._queue.clear()
            self._keyed.clear()
            self.sent_images.clear()
            self.sent_partials.clear()
        self.reset_counters()

    def reset_counters(self) -> None:
        """Zero requests_per_prompt, successes_per_prompt, peak_concurrency and the rate window."""
        with self._gate_lock:
            self.requests_per_prompt.clear()
            self.successes_per_prompt.clear()
            self.peak_concurrency = self.in_flight
            self._window = None

    # ---- files and batches, for tests ------------------------------------------------
    def add_file(
        self, data: bytes, filename: str = "image.png", purpose: str = "vision", file_id: Optional[str] = None
    ) -> str:
        """Store a file as if it had been uploaded; returns its id (``file_id`` to choose it)."""
        return self._files.add_bytes(data, filename, purpose, file_id).id

    def file(self, file_id: str) -> Optional[Dict[str, Any]]:
        """The File object of a stored file, or None."""
        stored = self._files.lookup(file_id)
        return None if stored is None else stored.object()

    @property
    def files(self) -> Dict[str, Dict[str, Any]]:
        """Every stored file's File object, by id, oldest first."""
        with self._files.lock:
            return {k: v.object() for k, v in self._files.files.items()}

    def file_content(self, file_id: str) -> bytes:
        """The whole content of a stored file (KeyError when unknown). Use the HTTP route for
        huge generated files."""
        stored = self._files.lookup(file_id)
        if stored is None:
            raise KeyError(file_id)
        return stored.read_all()

    def batch(self, batch_id: str) -> Dict[str, Any]:
        """The Batch object as it stands (KeyError when unknown); reading it advances nothing."""
        with self._batches.lock:
            return _copy(self._batches.batches[batch_id].obj)

    @property
    def batches(self) -> List[Dict[str, Any]]:
        """Every batch's object, newest first."""
        with self._batches.lock:
            ordered = sorted(self._batches.batches.values(), key=lambda b: b.number, reverse=True)
            return [_copy(b.obj) for b in ordered]

    def advance_batch(self, batch_id: str, steps: int = 1) -> Dict[str, Any]:
        """Take ``steps`` status steps now, as polls would; returns the Batch object."""
        with self._batches.lock:
            batch = self._batches.batches[batch_id]
            for _ in range(max(0, min(steps, 1000))):
                self._batches.step(batch)
            return _copy(batch.obj)

    # ---- internals used by the handler ---------------------------------------------
    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.add(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.discard(conn)

    def _record(self, rec: Recorded) -> None:
        with self._arrived:
            if self.history:
                self._requests.append(rec)
            self._arrived.notify_all()

    def _enter(self) -> None:
        with self._gate_lock:
            self.in_flight += 1
            self.peak_concurrency = max(self.peak_concurrency, self.in_flight)

    def _leave(self) -> None:
        with self._gate_lock:
            self.in_flight -= 1

    def _pop_queued(self, rec: Recorded, early_reset_only: bool = False) -> Tuple[bool, Optional[QueueItem]]:
        """(found, item): the first keyed item matching ``rec``, else the plain queue's head."""
        with self._lock:
            for i, (pattern, item) in enumerate(self._keyed):
                if _route_matches(pattern, rec):
                    if early_reset_only and not (isinstance(item, Reset) and not item.read_body):
                        return False, None
                    return True, self._keyed.pop(i)[1]
            if not self._queue:
                return False, None
            head = self._queue[0]
            if early_reset_only and not (isinstance(head, Reset) and not head.read_body):
                return False, None
            return True, self._queue.pop(0)

    def _pop_early_reset(self, rec: Recorded) -> Optional[Reset]:
        """Pop the next behaviour for ``rec`` if it is a Reset that must not wait for the body."""
        found, item = self._pop_queued(rec, early_reset_only=True)
        return item if found and isinstance(item, Reset) else None

    def _next_behaviour(self, rec: Recorded) -> Union[Behaviour, _Streamed]:
        _, item = self._pop_queued(rec)
        if callable(item) and not isinstance(item, _BEHAVIOURS):
            item = item(rec)
        if item is None:
            return self._safe_default(rec)
        if isinstance(item, Lost):
            rec.lost_reply = self._safe_default(rec)
        return item

    def _safe_default(self, rec: Recorded) -> Union[Behaviour, _Streamed]:
        try:
            return self._default(rec)
        except _BadRequest as bad:
            return bad.reply

    def _is_model_request(self, rec: Recorded) -> bool:
        return rec.method == "POST" and rec.route in MODEL_ROUTES

    def _gate(self, rec: Recorded) -> Optional[Reply]:
        """Count the prompt; refuse for quota or the rate limit (before any queued behaviour)."""
        if not self._is_model_request(rec):
            return None
        prompt = rec.prompt
        with self._gate_lock:
            if prompt is not None and self.history:
                self.requests_per_prompt[prompt] += 1
            if self.insufficient_quota:
                return quota_reply()
            limit = self.rate_limit
            if limit is None:
                return None
            now = limit.clock()
            window = max(0.001, float(limit.window))
            if self._window is None or now - self._window[0] >= window:
                self._window = (now, 0)
            start, used = self._window
            reset = start + window - now
            if used >= limit.requests:
                headers: Dict[str, Optional[str]] = {}
                if limit.headers:
                    headers = self._limit_headers(limit, 0, reset)
                return rate_limit_reply(
                    reset,
                    limit=limit.requests,
                    model=self._model_of(rec),
                    retry_after=limit.retry_after,
                    retry_after_ms=limit.retry_after_ms,
                    in_message=limit.in_message,
                    headers=headers,
                )
            self._window = (start, used + 1)
            if limit.headers:
                extra = self._limit_headers(limit, limit.requests - used - 1, reset)
                rec._extra_headers = [(k, v) for k, v in extra.items() if v is not None]
        return None

    @staticmethod
    def _limit_headers(limit: RateLimit, remaining: int, reset: float) -> Dict[str, Optional[str]]:
        return {
            "x-ratelimit-limit-requests": str(limit.requests),
            "x-ratelimit-remaining-requests": str(max(0, remaining)),
            "x-ratelimit-reset-requests": format_duration(reset),
        }

    def _model_of(self, rec: Recorded) -> str:
        params = self._peek_params(rec)
        model = params.get("model")
        if rec.azure:
            model = self.azure_deployments.get(str(rec.deployment or model), model)
        return str(model or "gpt-image-2")

    def _latency_for(self, rec: Recorded) -> float:
        if not self._is_model_request(rec):
            return 0.0
        latency = self.latency
        value = latency(rec) if callable(latency) else latency
        return max(0.0, float(value or 0.0))

    def _succeeded(self, rec: Recorded, count: int = 1) -> None:
        if not self._is_model_request(rec) or not self.history:
            return
        prompt = rec.prompt
        if prompt is not None:
            with self._gate_lock:
                self.successes_per_prompt[prompt] += count
                if self.successes_per_prompt[prompt] <= 0:
                    del self.successes_per_prompt[prompt]

    def _images(self, fmt: str, count: int, partial: bool, rec: Optional[Recorded] = None) -> List[bytes]:
        fault = _marker(rec.prompt) if rec is not None and self.markers and not partial else None
        if fault in OUTPUT_FAULTS:
            return [faulty_output(str(fault))] * count
        if rec is not None and not partial and fmt in ("png", "webp") and self.transparency_scenes:
            scene = self._transparency_scene(rec, fmt)
            if scene is not None:
                return [scene] * count
        if self.image_bytes and fmt in _FORMATS:
            return [noise_image(fmt, int(self.image_bytes))] * count
        if partial:
            return [_preview(fmt, partial_color(i)) for i in range(count)]
        size = IMAGE_SIZE
        if self.true_size and rec is not None:
            params = self._peek_params(rec)
            tool = next((t for t in params.get("tools") or [] if isinstance(t, dict)), {})
            asked = re.match(r"^(\d{1,4})x(\d{1,4})$", str(tool.get("size") or params.get("size") or ""))
            size = (int(asked.group(1)), int(asked.group(2))) if asked else IMAGE_SIZE
        return [make_image(fmt, size=size, color=final_color(i)) for i in range(count)]

    def _transparency_scene(self, rec: Recorded, fmt: str) -> Optional[bytes]:
        """A transparent-background request answered as a model would: the key route's prompt (a subject on a
        flat key colour, named by its #RRGGBB) gets a rendered subject on that colour, painted slightly off the
        key with noise; ``background: transparent`` gets a subject on real alpha. ``[[scene:NAME]]`` in the
        prompt picks a fault (tests/keyscenes.py SCENES: checker, opaque, gradient, shadow, border)."""
        import keyscenes

        params = self._peek_params(rec)
        tool = next((t for t in params.get("tools") or [] if isinstance(t, dict)), {})
        text = json.dumps(params.get("prompt") or params.get("input") or "")
        size = str(tool.get("size") or params.get("size") or "1024x1024")
        width, height = (int(v) for v in size.split("x")) if re.match(r"^\d+x\d+$", size) else (1024, 1024)
        width, height = min(width, 4096), min(height, 4096)
        picked = _SCENE_MARKER.search(text)
        scene = picked.group(1) if picked else "subject"
        seed = zlib.crc32(text.encode("utf-8"))
        key = re.search(r"perfectly flat.*?#([0-9A-Fa-f]{6})", text)
        if key is not None and fmt == "png":
            color = tuple(int(key.group(1)[i : i + 2], 16) for i in (0, 2, 4))
            return keyscenes.render_key_subject(width, height, color, scene, seed)[0]  # type: ignore[arg-type]
        if (tool.get("background") or params.get("background")) == "transparent":
            return keyscenes.render_native_scene(width, height, scene, seed, fmt)
        return None

    def _note(self, rec: Recorded, finals: List[bytes], partials: List[bytes]) -> None:
        rec.sent_images.extend(finals)
        rec.sent_partials.extend(partials)
        if not self.history or rec.in_batch:
            return
        with self._lock:
            self.sent_images.extend(finals)
            self.sent_partials.extend(partials)

    # ---- routing -------------------------------------------------------------------
    @staticmethod
    def _known_route(rec: Recorded) -> bool:
        route, method = rec.route or "", rec.method
        if route in MODEL_ROUTES:
            return method == "POST"
        if route in ("/v1/files", "/v1/batches"):
            return method in ("GET", "POST")
        if re.match(r"^/v1/files/[^/]+$", route):
            return method in ("GET", "DELETE")
        if re.match(r"^/v1/files/[^/]+/content$", route) or re.match(r"^/v1/batches/[^/]+$", route):
            return method == "GET"
        if re.match(r"^/v1/batches/[^/]+/cancel$", route):
            return method == "POST"
        return False

    def _default(self, rec: Recorded) -> Union[Behaviour, _Streamed]:
        if not self._known_route(rec):
            if rec.azure:
                return azure_error_reply(404, "404", "Resource not found")
            return error_reply(404, f"Invalid URL ({rec.method} {rec.path})", code="unknown_url")
        denied = self._auth_error(rec)
        if denied is not None:
            return denied
        if rec.surface == "azure-classic" and self.strict and not rec.api_version:
            return azure_error_reply(400, "BadRequest", "Missing required query parameter: api-version")
        route = rec.route or ""
        if route in MODEL_ROUTES:
            if rec.azure:
                self._azure_checks(rec)
            return self._model_default(rec)
        if route.startswith("/v1/files"):
            return self._files.handle(rec)
        return self._batches.handle(rec)

    def _auth_error(self, rec: Recorded) -> Optional[Reply]:
        if not self.strict:
            return None
        auth = rec.header("authorization") or ""
        bearer = auth.startswith("Bearer ") and bool(auth[7:].strip())
        if not rec.azure:
            if bearer:
                return None
            return error_reply(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        key = (rec.header("api-key") or "").strip()
        if not key:
            if bearer and self.azure_bearer_ok:
                return None
            return azure_error_reply(401, "401", _AZURE_NO_KEY)
        if self.azure_api_key is not None and key != self.azure_api_key:
            return azure_error_reply(401, "401", _AZURE_BAD_KEY)
        return None

    def _peek_params(self, rec: Recorded) -> Dict[str, Any]:
        """The request's parameters, best effort, never raising."""
        if rec.is_multipart:
            return dict(rec.fields) if rec.body else _sniff_fields(rec.body_head, rec.body_tail)
        if isinstance(rec.json, dict):
            return rec.json
        return _sniff_json(rec.body_head, rec.body_tail) if rec.body_size and rec.json_error is None else {}

    def _azure_checks(self, rec: Recorded) -> None:
        """Note the deployment; in strict mode refuse what Azure refuses."""
        params = self._peek_params(rec)
        if rec.surface == "azure-classic" and rec.route != "/v1/responses":
            deployment = rec.deployment
        else:
            model = params.get("model")
            deployment = rec.deployment = model if isinstance(model, str) and model else None
            if deployment is None and self.strict:
                raise _bad("Missing required parameter: 'model'.", "model", "missing_required_parameter")
        if not self.strict:
            return
        if deployment not in self.azure_deployments:
            raise _BadRequest(azure_error_reply(404, "DeploymentNotFound", _NO_DEPLOYMENT))
        image_deployment = rec.header("x-ms-oai-image-generation-deployment")
        if image_deployment is not None and image_deployment not in self.azure_deployments:
            raise _BadRequest(azure_error_reply(404, "DeploymentNotFound", _NO_DEPLOYMENT))
        if rec.route == "/v1/responses":
            tools = params.get("tools") if isinstance(params.get("tools"), list) else []
            found = [t for t in tools if isinstance(t, dict) and t.get("type") == "image_generation"]
            fmt, param = (found[0].get("output_format") if found else None), "tools[0].output_format"
        else:
            fmt, param = params.get("output_format"), "output_format"
        if isinstance(fmt, str) and fmt.lower() in ("webp", "gif", "svg"):
            raise _bad(f"Invalid value: '{fmt}'. Supported values are: 'png' and 'jpeg'.", param)

    def _model_default(self, rec: Recorded) -> Behaviour:
        """The answer of an image route (the HTTP routes and batch lines alike)."""
        marker = _marker(rec.prompt) if self.markers else None
        if marker in ("refuse", "filter"):
            return content_filter_reply() if rec.azure else moderation_reply()
        if marker and marker.startswith("status:"):
            return _status_reply(int(marker[7:]))
        if rec.route == "/v1/responses":
            behaviour = self._default_responses(rec)
        else:
            behaviour = self._default_images(rec, "edit" if rec.route == "/v1/images/edits" else "generation")
        if marker == "break":
            if rec.in_batch:
                return _status_reply(500)
            if isinstance(behaviour, SSE):
                # Cut inside the last event (the final image): the previews arrive, the image never does.
                pieces = behaviour.pieces()
                cut = sum(len(p) for p in pieces[:-1]) + len(pieces[-1]) // 2
                return SSE(behaviour.events, truncate_at=cut, reset=True)
            if isinstance(behaviour, Reply):
                body = behaviour.payload()
                return ResetMidBody(status=behaviour.status, body=body, after=len(body) // 2)
        return behaviour

    def _batch_answer(self, url: str, body: Dict[str, Any]) -> Tuple[int, Any]:
        """Run one batch line through the route's default: (status_code, body)."""
        headers = Message()
        headers["Content-Type"] = "application/json"
        rec = Recorded(method="POST", path=url, query="", headers=headers, complete=True, json=body)
        rec.route, rec.in_batch, rec._lookup = url, True, self._files.lookup
        if url not in MODEL_ROUTES:
            return 404, error_reply(404, f"Invalid URL (POST {url})", code="unknown_url").json
        if body.get("stream") is True:
            return 400, error_reply(400, "Streaming is not supported in the Batch API.", param="stream").json
        try:
            behaviour = self._model_default(rec)
        except _BadRequest as bad:
            behaviour = bad.reply
        if not isinstance(behaviour, Reply):  # pragma: no cover - defaults answer batch lines with a Reply
            behaviour = _status_reply(500)
        payload = behaviour.json if behaviour.json is not None else json.loads(behaviour.payload() or b"null")
        return behaviour.status, payload

    # ---- the image routes ----------------------------------------------------------
    def _json_params(self, rec: Recorded) -> Dict[str, Any]:
        if rec.json_error is not None or (
            rec.content_type == "application/json" and rec.json is None and not rec.body_size
        ):
            raise _bad(
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                "using your HTTP library correctly.)",
                code=None,
            )
        if not isinstance(rec.json, dict):
            raise _bad("The request body must be a JSON object.", code=None)
        return rec.json

    def _discarded(self, rec: Recorded) -> bool:
        """True when the body was not kept and could not be parsed whole from its head."""
        return not self.keep_bodies and rec.json is None and rec.json_error is None and rec.body_size > 0

    def _params(self, rec: Recorded, kind: str) -> Tuple[Dict[str, Any], bool]:
        """The request's parameters -> (params, exact); exact is False for best-effort sniffing."""
        if rec.is_multipart and kind == "edit":
            if not self.keep_bodies:
                return _sniff_fields(rec.body_head, rec.body_tail), False
            if self.strict:
                self._check_edit_parts(rec)
            return dict(rec.fields), True
        if rec.content_type == "application/json":
            if self._discarded(rec):
                return _sniff_json(rec.body_head, rec.body_tail), False
            return self._json_params(rec), True
        if self.strict:
            expected = "multipart/form-data or application/json" if kind == "edit" else "application/json"
            raise _bad(
                f"Invalid Content-Type header ({rec.content_type or 'none'}), expected {expected}.", code=None
            )
        return {}, False

    def _default_images(self, rec: Recorded, kind: str) -> Behaviour:
        params, exact = self._params(rec, kind)
        strict = self.strict and exact
        json_edit = kind == "edit" and rec.content_type == "application/json"
        if strict and json_edit:
            self._check_json_edit(params)
        elif strict:
            known = _GENERATION_FIELDS if kind == "generation" else _MULTIPART_EDIT_FIELDS
            self._check_fields([k for k in params if not (_IMAGE_FIELD.match(k) or k == "mask")], known)
        if strict and not str(params.get("prompt") or "").strip():
            raise _bad("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
        model = self._model_of(rec)
        if strict:
            self._check_complexity(params.get("complexity"), model, "complexity")
            self._check_native_transparency(params.get("background"), model, "background")

        fmt = _norm_fmt(params.get("output_format"))
        formats = _FORMATS_26[kind] if is_model_26(model) else _FORMATS
        if fmt not in formats:
            if strict:
                raise _bad(
                    f"Invalid value: '{params.get('output_format')}'. Supported values are: {_listing(formats)}.",
                    "output_format",
                )
            fmt = "png"
        n = _int_param(params.get("n"), "n", 1, 1, 10, strict)
        stream = _truthy(params.get("stream"))
        partials = _int_param(params.get("partial_images"), "partial_images", 0, 0, 3, strict)
        if strict and fmt == "svg":
            # SVG: one image, whole, from generations (api-facts.md section 10, third-party).
            if n != 1:
                raise _bad(f"Invalid 'n': output_format 'svg' makes one image per request; got {n}.", "n")
            if stream:
                raise _bad("Invalid 'stream': streaming is not supported with output_format 'svg'.", "stream")

        def pick(name: str, fallback: str) -> str:
            value = params.get(name)
            return fallback if value in (None, "", "auto") else str(value)

        quality, size, background = (
            pick("quality", "high" if rec.azure else "medium"),
            pick("size", "1024x1024"),
            pick("background", "opaque"),
        )
        finals = self._images(fmt, n, partial=False, rec=rec)
        previews = self._images(fmt, partials, partial=True) if stream else []
        self._note(rec, finals, previews * n)
        if stream:
            events = images_stream_events(
                kind,
                partials,
                fmt,
                n=n,
                quality=quality,
                size=size,
                background=background,
                images=finals,
                partial_images=previews,
            )
            return SSE(list(events))
        body = images_body(
            n,
            fmt,
            quality=quality,
            size=size,
            background=background,
            images=finals,
            generation_ids=is_model_26(model),
            svg_usage=SVG_USAGE if fmt == "svg" else None,
        )
        return Reply(json=body)

    def _check_fields(self, names: Iterable[str], known: Sequence[str], prefix: str = "") -> None:
        """With ``strict_fields``: a field the spec does not know, and ``accept_extra`` does not name, is refused."""
        if not self.strict_fields:
            return
        for name in names:
            if name not in known and name not in self.accept_extra:
                raise _bad(f"Unknown parameter: '{prefix}{name}'.", prefix + name, "unknown_parameter")

    def _check_native_transparency(self, value: Any, model: Optional[str], param: str) -> None:
        """background: transparent on a model whose preview was switched off: 400, not billed (third-party)."""
        bare = re.sub(r"-\d{4}-\d{2}-\d{2}$", "", str(model or "").rsplit("/", 1)[-1])
        if value == "transparent" and bare in self.no_native_transparency:
            raise _bad("Transparent background is not supported for this model.", param)

    @staticmethod
    def _check_complexity(value: Any, model: Optional[str], param: str) -> None:
        """gpt-image-2.6's ``complexity``: its models only, one of low | medium | high."""
        if value is None:
            return
        if not is_model_26(model):
            raise _bad(
                f"Unsupported parameter: '{param}' is not supported with this model.",
                param,
                "unsupported_parameter",
            )
        if value not in COMPLEXITIES:
            raise _bad(f"Invalid value: '{value}'. Supported values are: {_listing(COMPLEXITIES)}.", param)

    def _check_ref(self, obj: Any, where: str, route: str) -> None:
        try:
            _read_ref(obj, where, self._files.lookup, check_id=route in self.check_file_ids)
        except _RefProblem as problem:
            raise _BadRequest(
                error_reply(problem.status, problem.message, code=problem.code, param=problem.param)
            ) from None

    def _check_json_edit(self, params: Dict[str, Any]) -> None:
        """What the API checks in an EditImageBodyJsonParam body."""
        self._check_fields(params, _JSON_EDIT_FIELDS)
        images = params.get("images")
        if images is None:
            raise _bad("Missing required parameter: 'images'.", "images", "missing_required_parameter")
        if not isinstance(images, list):
            raise _bad(
                "Invalid type for 'images': expected an array of image references.", "images", "invalid_type"
            )
        if not images:
            raise _bad(
                "Invalid 'images': empty array. Expected an array with minimum length 1, but got an empty array "
                "instead.",
                "images",
                "empty_array",
            )
        if len(images) > 16:
            raise _bad(
                f"Invalid 'images': array too long. Expected an array with maximum length 16, but got an array "
                f"with length {len(images)} instead.",
                "images",
                "array_above_max_length",
            )
        for i, obj in enumerate(images):
            self._check_ref(obj, f"images[{i}]", "edits")
        if params.get("mask") is not None:
            self._check_ref(params["mask"], "mask", "edits")
        prompt = params.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise _bad("Invalid type for 'prompt': expected a string.", "prompt", "invalid_type")
        if isinstance(prompt, str) and len(prompt) > 32000:
            raise _bad(
                f"Invalid 'prompt': string too long. Expected a string with maximum length 32000, but got a "
                f"string with length {len(prompt)} instead.",
                "prompt",
                "string_above_max_length",
            )
        for name, allowed in _ENUMS.items():
            value = params.get(name)
            if value is not None and value not in allowed:
                raise _bad(f"Invalid value: '{value}'. Supported values are: {_listing(allowed)}.", name)
        size = params.get("size")
        if size is not None and not (isinstance(size, str) and _SIZE.match(size)):
            raise _bad(
                f"Invalid value: '{size}'. Supported values are: 'auto' or a WIDTHxHEIGHT size.", "size"
            )
        for name in ("n", "output_compression", "partial_images"):
            value = params.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise _bad(f"Invalid type for '{name}': expected an integer.", name, "invalid_type")
        compression = params.get("output_compression")
        if compression is not None and not 0 <= compression <= 100:
            raise _bad(
                f"Invalid 'output_compression': expected a value between 0 and 100, got {compression}.",
                "output_compression",
            )
        stream = params.get("stream")
        if stream is not None and not isinstance(stream, bool):
            raise _bad("Invalid type for 'stream': expected a boolean.", "stream", "invalid_type")
        for name in ("model", "user"):
            value = params.get(name)
            if value is not None and not isinstance(value, str):
                raise _bad(f"Invalid type for '{name}': expected a string.", name, "invalid_type")

    def _check_edit_parts(self, rec: Recorded) -> None:
        if rec.multipart_defects:
            raise _bad(f"Could not parse multipart form: {', '.join(rec.multipart_defects)}.", code=None)
        images = [p for p in rec.parts if p.name and _IMAGE_FIELD.match(p.name)]
        if sum(1 for p in images if p.name == "image") > 1:
            raise _bad(
                "Duplicate parameter: 'image'. You provided multiple values for this parameter, whereas only "
                "one is allowed. If you are trying to provide a list of values, use the array syntax instead "
                "e.g. 'image[]=<value>'.",
                "image",
                "duplicate_parameter",
            )
        if not images:
            raise _bad("Missing required parameter: 'image'.", "image", "missing_required_parameter")
        for part in images + [p for p in rec.parts if p.name == "mask"]:
            ctype = (part.content_type or "application/octet-stream").split(";")[0].strip().lower()
            if ctype not in _ALLOWED_IMAGE_TYPES:
                raise _bad(
                    f"Invalid file '{part.name}': unsupported mimetype ('{ctype}'). "
                    "Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'.",
                    part.name,
                )
            if part.filename is None:
                raise _bad(f"Invalid value for '{part.name}': expected a file upload.", part.name)

    def _default_responses(self, rec: Recorded) -> Behaviour:
        if rec.content_type != "application/json" and self.strict:
            raise _bad(
                f"Invalid Content-Type header ({rec.content_type or 'none'}), expected application/json."
            )
        if self._discarded(rec):
            # Rebuild the few keys the reply depends on from what is visible.
            seen = _sniff_json(rec.body_head, rec.body_tail)
            visible = {k: seen[k] for k in ("output_format", "partial_images") if k in seen}
            body: Dict[str, Any] = {
                "model": seen.get("model"),
                "stream": seen.get("stream"),
                "tools": [{"type": "image_generation", **visible}],
            }
        else:
            body = self._json_params(rec)
            if self.strict:
                self._check_fields(body, _RESPONSES_FIELDS)
                for i, item in enumerate(body.get("tools") if isinstance(body.get("tools"), list) else []):
                    if isinstance(item, dict) and item.get("type") == "image_generation":
                        self._check_fields(item, _TOOL_FIELDS, f"tools[{i}].")
                for where, ref in _input_image_parts(body):
                    self._check_ref(ref, where, "responses")
                mask = _tool_mask(body)
                if mask is not None:
                    self._check_ref(mask[1], mask[0], "responses")
        if self.strict and not body.get("model"):
            raise _bad("Missing required parameter: 'model'.", "model", "missing_required_parameter")
        tools: List[Any] = body["tools"] if isinstance(body.get("tools"), list) else []
        found = [t for t in tools if isinstance(t, dict) and t.get("type") == "image_generation"]
        use_tool = bool(found) and body.get("tool_choice") != "none"
        tool: Dict[str, Any] = found[0] if found else {}
        tool_model = tool.get("model")
        if rec.azure:
            tool_model = rec.header("x-ms-oai-image-generation-deployment") or tool_model
            tool_model = self.azure_deployments.get(str(tool_model), tool_model)
        strict = self.strict and not self._discarded(rec)
        if strict:
            self._check_complexity(tool.get("complexity"), tool_model, "tools[0].complexity")
            self._check_native_transparency(tool.get("background"), tool_model, "tools[0].background")
        fmt = _norm_fmt(tool.get("output_format"))
        if fmt not in (_FORMATS_26["tool"] if is_model_26(tool_model) else _FORMATS):
            if self.strict:
                raise _bad(f"Invalid value: '{tool.get('output_format')}'.", "tools[0].output_format")
            fmt = "png"
        stream = body.get("stream") is True
        partials = _int_param(tool.get("partial_images"), "tools[0].partial_images", 0, 0, 3, self.strict)
        prompt = _first_text(body.get("input"))
        model = str(body.get("model") or "gpt-5.4")
        if rec.azure:
            model = self.azure_deployments.get(model, model)
        options: Dict[str, Any] = {
            "model": model,
            "revised_prompt": f"Revised: {prompt}" if prompt else DEFAULT_REVISED_PROMPT,
            "tools": tools,
            "previous_response_id": body.get("previous_response_id"),
        }
        finals = self._images(fmt, 1 if use_tool else 0, partial=False, rec=rec)
        previews = self._images(fmt, partials, partial=True) if stream and use_tool else []
        self._note(rec, finals, previews)
        if stream:
            events = responses_stream_events(
                len(previews), fmt, n_images=len(finals), images=finals, partial_images=previews, **options
            )
            return SSE(list(events))
        return Reply(json=responses_body(fmt, len(finals), images=finals, **options))


# --------------------------------------------------------------------------------------
# Standalone entry point
# --------------------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Loopback fake of the OpenAI image APIs.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--image-bytes", type=int, default=None, help="make default images about N bytes")
    parser.add_argument("--discard-bodies", action="store_true", help="count request bodies, don't keep them")
    parser.add_argument("--lenient", action="store_true", help="don't reject requests the real API rejects")
    parser.add_argument(
        "--any-fields",
        action="store_true",
        help="take body fields the spec does not know (strict_fields=False)",
    )
    parser.add_argument(
        "--accept-extra",
        action="append",
        default=[],
        metavar="NAME",
        help="a body field to take (repeatable)",
    )
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds before answering an image request"
    )
    parser.add_argument(
        "--rate-limit", type=int, default=None, metavar="N", help="N image requests per window"
    )
    parser.add_argument("--rate-window", type=float, default=60.0, metavar="SECONDS", help="(default 60)")
    parser.add_argument(
        "--azure-deployment",
        action="append",
        default=[],
        metavar="NAME=MODEL",
        help="an extra Azure deployment (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the batch output shuffles")
    args = parser.parse_args(argv)
    fake = FakeAPI(
        image_bytes=args.image_bytes,
        keep_bodies=not args.discard_bodies,
        strict=not args.lenient,
        strict_fields=not args.any_fields,
        accept_extra=args.accept_extra,
        host=args.host,
        port=args.port,
        verbose=args.verbose,
        history=False,  # a long-running server must not accumulate requests
        seed=args.seed,
    )
    fake.latency = args.latency
    if args.rate_limit:
        fake.rate_limit = RateLimit(requests=args.rate_limit, window=args.rate_window)
    for spec in args.azure_deployment:
        name, _, model = spec.partition("=")
        fake.azure_deployments[name] = model or name
    if args.image_bytes:
        noise_image("png", args.image_bytes)  # build the common case before announcing the URL
    fake.start()
    print(fake.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

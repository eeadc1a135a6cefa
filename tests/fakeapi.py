"""A loopback fake of the OpenAI image APIs, for tests and benchmarks.

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

Standalone (manual use, benchmarks)::

    python tests/fakeapi.py --port 0 [--image-bytes N] [--discard-bodies] [--verbose]

prints ``http://127.0.0.1:PORT/v1`` as its first stdout line and serves until killed.

Standard library only, except Pillow for JPEG/WebP images (PNG has a built-in fallback
encoder so the standalone server still works where Pillow is missing). Python >= 3.9.
"""

from __future__ import annotations

import argparse
import base64
import email.parser
import email.policy
import email.utils
import functools
import io
import json
import math
import random
import re
import secrets
import select
import socket
import struct
import sys
import threading
import time
import traceback
import zlib
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

__all__ = [
    "FINAL_COLORS",
    "IMAGES_USAGE",
    "IMAGE_SIZE",
    "PARTIAL_COLORS",
    "RESPONSES_USAGE",
    "SSE",
    "FakeAPI",
    "Hang",
    "Part",
    "Recorded",
    "Reply",
    "Reset",
    "ResetMidBody",
    "b64",
    "error_reply",
    "final_color",
    "identify",
    "images_body",
    "images_stream_events",
    "make_image",
    "make_mask",
    "moderation_reply",
    "noise_image",
    "parse_multipart",
    "parse_sse",
    "partial_color",
    "pixel",
    "render_sse",
    "responses_body",
    "responses_stream_events",
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
    """Encoded bytes of a solid-colour image. ``fmt``: png | jpeg (jpg) | webp.

    ``mode`` is "RGB" or "RGBA" (``color`` may then carry alpha as a 4th value; JPEG is
    always RGB). The result is cached and deterministic for the same arguments.
    """
    if mode not in ("RGB", "RGBA"):
        raise ValueError("mode must be 'RGB' or 'RGBA'")
    return _make_image_cached(fmt, (int(size[0]), int(size[1])), tuple(int(c) for c in color), mode)


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

    Compares the centre pixel with the palettes (tolerant of JPEG/WebP loss). For finals
    ``i`` is modulo 10 and for partials ``k`` modulo 4.
    """
    rgb = pixel(data)[:3]
    for kind, palette in (("final", FINAL_COLORS), ("partial", PARTIAL_COLORS)):
        for index, ref in enumerate(palette):
            if all(abs(a - b) <= tolerance for a, b in zip(rgb, ref)):
                return kind, index
    return None


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
    return [make_image(fmt, color=partial_color(k)) for k in range(count)]


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
) -> Dict[str, Any]:
    """An ``ImagesResponse`` dict (generations and edits). ``images`` overrides the pictures."""
    fmt = _norm_fmt(fmt)
    finals = _finals(fmt, n, images)
    return {
        "created": int(time.time()) if created is None else created,
        "data": [{"b64_json": _b64_cached(img)} for img in finals],
        "background": background,
        "output_format": fmt,
        "quality": quality,
        "size": size,
        "usage": _copy(IMAGES_USAGE if usage is None else usage),
    }


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


Behaviour = Union[Reply, SSE, Reset, ResetMidBody, Hang]
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


@dataclass
class Recorded:
    """One request as the fake received it.

    ``body`` is the raw body (b"" when the fake runs with keep_bodies=False; ``body_size`` is
    always the byte count, ``body_head`` / ``body_tail`` the first/last 64 KiB). ``complete`` is
    False if the client went away mid-body. ``parts`` / ``fields`` are parsed lazily.
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
    _multipart: Optional[Tuple[List[Part], List[str]]] = field(default=None, repr=False)

    def header(self, name: str) -> Optional[str]:
        """Header value by case-insensitive name, or None."""
        value = self.headers.get(name)
        return None if value is None else str(value)

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


class _Server(ThreadingHTTPServer):
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
        for name, value in [*base, ("x-request-id", "req_" + secrets.token_hex(16))]:
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
        path, _, query = self.path.partition("?")
        rec = Recorded(
            method=self.command, path=path, query=query, headers=self.headers, received_at=time.time()
        )
        self.fake._record(rec)
        self._head_sent = False
        early = self.fake._pop_early_reset()
        if early is not None:
            rec.behaviour = early
            self._abort(rst=True)
        try:
            self._read_body(rec)
        except _ClientGone:
            self.close_connection = True
            return
        except ValueError as exc:  # bad Content-Length / chunk framing
            self.close_connection = True
            self._run(rec, error_reply(400, f"Malformed request body: {exc}"))
            return
        self._parse_json(rec)
        try:
            self._run(rec, self.fake._next_behaviour(rec))
        except (_Abort, OSError):
            raise
        except Exception:
            # A bug in the fake (or in a callable behaviour): keep it for the test, answer 500.
            self.fake.errors.append(traceback.format_exc())
            if self.fake.verbose:
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

    def _read_body(self, rec: Recorded) -> None:
        keep = self.fake.keep_bodies
        chunks: List[bytes] = []
        head = bytearray()
        tail = bytearray()

        def take(data: bytes) -> None:
            rec.body_size += len(data)
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
    def _run(self, rec: Recorded, behaviour: Behaviour) -> None:
        rec.behaviour = behaviour
        if isinstance(behaviour, Reply):
            self._reply(rec, behaviour)
        elif isinstance(behaviour, SSE):
            self._sse(rec, behaviour)
        elif isinstance(behaviour, Reset):
            self._abort(rst=True)
        elif isinstance(behaviour, ResetMidBody):
            self._reset_mid_body(rec, behaviour)
        elif isinstance(behaviour, Hang):
            self._hang(behaviour)
        else:
            raise TypeError(f"not a fake behaviour: {behaviour!r}")

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
_IMAGE_FIELD = re.compile(r"^image(\[\d*\])?$")
_ALLOWED_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")


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


class FakeAPI:
    """The fake server. See the module docstring. All public attributes are safe to read from
    the test thread; ``keep_bodies``, ``strict`` and ``image_bytes`` may be changed any time.

    - ``keep_bodies=False``: request bodies are counted (``body_size``) and discarded, keeping
      only the first/last 64 KiB, so huge uploads don't cost the test process memory.
    - ``strict=True``: the default routes reject what the real API rejects (no
      ``Authorization: Bearer`` key -> 401; bad JSON, missing prompt, bad n/output_format/partial_images, repeated bare ``image`` parts, image parts
      without an image/png|jpeg|webp Content-Type) with an OpenAI-shaped 400.
    - ``image_bytes=N``: default images are random-noise images of about N bytes.
    """

    def __init__(
        self,
        *,
        image_bytes: Optional[int] = None,
        keep_bodies: bool = True,
        strict: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
        history: bool = True,
    ) -> None:
        self.image_bytes = image_bytes
        self.history = history
        self.keep_bodies = keep_bodies
        self.strict = strict
        self.verbose = verbose
        self.host = host
        self._requested_port = port
        self.errors: List[str] = []  # tracebacks of bugs inside the fake (not client disconnects)
        self.sent_images: List[bytes] = []
        self.sent_partials: List[bytes] = []
        self._requests: List[Recorded] = []
        self._queue: List[QueueItem] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._conns: Set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

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
        """Stop serving and wake every handler (hanging ones included); returns promptly."""
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
        return f"http://{self.host}:{self.port}/v1"

    # ---- scripting and inspection --------------------------------------------------
    def queue(self, *behaviours: QueueItem) -> FakeAPI:
        """Append scripted behaviours; each request consumes one, first in first out."""
        with self._lock:
            self._queue.extend(behaviours)
        return self

    @property
    def queued(self) -> int:
        """How many scripted behaviours are still waiting."""
        with self._lock:
            return len(self._queue)

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

    def clear(self) -> None:
        """Forget recorded requests, sent images and queued behaviours."""
        with self._lock:
            self._requests.clear()
            self._queue.clear()
            self.sent_images.clear()
            self.sent_partials.clear()

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

    def _pop_early_reset(self) -> Optional[Reset]:
        """Pop the queue head if it is a Reset that must not wait for the request body."""
        with self._lock:
            head = self._queue[0] if self._queue else None
            if isinstance(head, Reset) and not head.read_body:
                return self._queue.pop(0)  # type: ignore[return-value]
        return None

    def _next_behaviour(self, rec: Recorded) -> Behaviour:
        with self._lock:
            item = self._queue.pop(0) if self._queue else None
        if callable(item) and not isinstance(item, (Reply, SSE, Reset, ResetMidBody, Hang)):
            item = item(rec)
        if item is None:
            try:
                return self._default(rec)
            except _BadRequest as bad:
                return bad.reply
        return item

    def _images(self, fmt: str, count: int, partial: bool) -> List[bytes]:
        if self.image_bytes:
            return [noise_image(fmt, int(self.image_bytes))] * count
        colour = partial_color if partial else final_color
        return [make_image(fmt, color=colour(i)) for i in range(count)]

    def _note(self, rec: Recorded, finals: List[bytes], partials: List[bytes]) -> None:
        rec.sent_images.extend(finals)
        rec.sent_partials.extend(partials)
        if not self.history:
            return
        with self._lock:
            self.sent_images.extend(finals)
            self.sent_partials.extend(partials)

    def _default(self, rec: Recorded) -> Behaviour:
        route = (rec.method, rec.path.rstrip("/"))
        known = route in (
            ("POST", "/v1/images/generations"),
            ("POST", "/v1/images/edits"),
            ("POST", "/v1/responses"),
        )
        auth = rec.header("authorization") or ""
        if known and self.strict and not (auth.startswith("Bearer ") and auth[7:].strip()):
            return error_reply(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        if route == ("POST", "/v1/images/generations"):
            return self._default_images(rec, "generation")
        if route == ("POST", "/v1/images/edits"):
            return self._default_images(rec, "edit")
        if route == ("POST", "/v1/responses"):
            return self._default_responses(rec)
        return error_reply(404, f"Invalid URL ({rec.method} {rec.path})", code="unknown_url")

    def _json_params(self, rec: Recorded) -> Dict[str, Any]:
        if rec.json_error is not None or (rec.content_type == "application/json" and not rec.body):
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
        if strict and not str(params.get("prompt") or "").strip():
            raise _bad("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
        if strict and kind == "edit" and rec.content_type == "application/json" and not params.get("images"):
            raise _bad("Missing required parameter: 'images'.", "images", "missing_required_parameter")

        fmt = _norm_fmt(params.get("output_format"))
        if fmt not in _FORMATS:
            if strict:
                raise _bad(
                    f"Invalid value: '{params.get('output_format')}'. Supported values are: 'png', 'jpeg', "
                    "and 'webp'.",
                    "output_format",
                )
            fmt = "png"
        n = _int_param(params.get("n"), "n", 1, 1, 10, strict)
        stream = _truthy(params.get("stream"))
        partials = _int_param(params.get("partial_images"), "partial_images", 0, 0, 3, strict)

        def pick(name: str, fallback: str) -> str:
            value = params.get(name)
            return fallback if value in (None, "", "auto") else str(value)

        quality, size, background = (
            pick("quality", "medium"),
            pick("size", "1024x1024"),
            pick("background", "opaque"),
        )
        finals = self._images(fmt, n, partial=False)
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
        body = images_body(n, fmt, quality=quality, size=size, background=background, images=finals)
        return Reply(json=body)

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
        if self.strict and not body.get("model"):
            raise _bad("Missing required parameter: 'model'.", "model", "missing_required_parameter")
        tools: List[Any] = body["tools"] if isinstance(body.get("tools"), list) else []
        found = [t for t in tools if isinstance(t, dict) and t.get("type") == "image_generation"]
        use_tool = bool(found) and body.get("tool_choice") != "none"
        tool: Dict[str, Any] = found[0] if found else {}
        fmt = _norm_fmt(tool.get("output_format"))
        if fmt not in _FORMATS:
            if self.strict:
                raise _bad(f"Invalid value: '{tool.get('output_format')}'.", "tools[0].output_format")
            fmt = "png"
        stream = body.get("stream") is True
        partials = _int_param(tool.get("partial_images"), "tools[0].partial_images", 0, 0, 3, self.strict)
        prompt = _first_text(body.get("input"))
        options: Dict[str, Any] = {
            "model": str(body.get("model") or "gpt-5.4"),
            "revised_prompt": f"Revised: {prompt}" if prompt else DEFAULT_REVISED_PROMPT,
            "tools": tools,
            "previous_response_id": body.get("previous_response_id"),
        }
        finals = self._images(fmt, 1 if use_tool else 0, partial=False)
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
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = parser.parse_args(argv)
    fake = FakeAPI(
        image_bytes=args.image_bytes,
        keep_bodies=not args.discard_bodies,
        strict=not args.lenient,
        host=args.host,
        port=args.port,
        verbose=args.verbose,
        history=False,  # a long-running server must not accumulate requests
    )
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

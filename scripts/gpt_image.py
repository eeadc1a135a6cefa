#!/usr/bin/env python3
"""gpt-image: make and edit images with OpenAI's GPT Image models from the command line.

One file, Python 3.9+ standard library only. One subcommand per API route:

  generations  text to image                  POST /v1/images/generations
    gpt_image.py generations --prompt "A bold product hero image" --output out/hero.png --size 1536x1024
  edits        edit or combine 1-16 images    POST /v1/images/edits (multipart, optional mask)
    gpt_image.py edits --prompt "Put the product on a beach" --image product.png --output out/beach.png
  responses    the Responses API with the image_generation tool    POST /v1/responses
    gpt_image.py responses --input-text "Make a summit poster" --output out/poster.png --stream --partial-images 2

Every run needs --output: a path, or a pattern with {index} (the 1-based image number). Everything that can
be checked locally is checked before anything is sent, so nothing is paid for when a request cannot succeed.
--dry-run prints the exact request instead of sending it (no API key needed).

Configuration, highest first: command-line flags, the process environment, a .env file (--env-file PATH,
else ./.env, else the .env beside SKILL.md), built-in defaults. An empty value counts as unset. Keys:
OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_ORG_ID, OPENAI_PROJECT_ID, OPENAI_IMAGE_MODEL, OPENAI_RESPONSES_MODEL,
OPENAI_IMAGE_TOOL_MODEL, and OPENAI_IMAGE_<OPTION> for SIZE, QUALITY, BACKGROUND, FORMAT, COMPRESSION,
MODERATION, INPUT_FIDELITY, USER, TIMEOUT and RETRIES.

stdout: the saved image paths, one a line (one JSON object with --json). stderr: progress, warnings, errors.
The API key is never printed.

Exit codes:
  0    ok
  1    internal error (a bug: please report it), or a paid-for image that could not be saved where asked
  2    usage or pre-flight validation error (nothing was sent)
  3    configuration error (no API key, bad .env)
  4    the API refused the request (HTTP error after retries, moderation)
  5    network error or timeout
  6    unusable response (malformed JSON or event stream, stream ended early, no image)
  130  interrupted
"""

from __future__ import annotations

import _thread
import argparse
import base64
import binascii
import io
import json
import math
import os
import re
import signal
import sys
import time
import urllib.parse
from typing import (
    IO,
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

# The network, temporary-file, hashing and thread modules (http.client, urllib.request, ssl, socket,
# email.utils, tempfile, hashlib, random, threading) are imported where they are used: a dry run or a refused
# command never pays for them, which halves the start-up time (tests/bench/bench_startup.py).
if TYPE_CHECKING:
    import http.client
    import threading

# --- Constants ---------------------------------------------------------------------------------------------

__version__ = "1.0.0"
PROG = "gpt-image"
USER_AGENT = f"gpt-image-2/{__version__} (Python {sys.version_info[0]}.{sys.version_info[1]}; urllib)"

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_IMAGE_MODEL = "gpt-image-2"
DEFAULT_RESPONSES_MODEL = "gpt-5.4"
DEFAULT_TOOL_MODEL = "gpt-image-2"
DEFAULT_TIMEOUT_S = 600.0  # high-quality 4K images take minutes; the SDKs also wait 600 s
DEFAULT_RETRIES = 2
MAX_RETRIES = 10
RETRY_STATUSES = (429, 500, 502, 503, 504)
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 8.0
RETRY_AFTER_MAX_S = 120.0  # a longer wait than this is reported, not slept through

QUALITIES = ("low", "medium", "high", "auto", "xhigh", "max")
BASE_QUALITIES = ("low", "medium", "high", "auto")
BACKGROUNDS = ("transparent", "opaque", "auto")
FORMATS = ("png", "jpeg", "webp")
FORMAT_ALIASES = {"jpg": "jpeg"}
EXTENSION_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}
FORMAT_EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
MODERATIONS = ("auto", "low")
INPUT_FIDELITIES = ("low", "high")
FIELD_STYLES = ("auto", "simple", "brackets", "indexed")
ACTIONS = ("auto", "generate", "edit")
TOOL_CHOICES = ("auto", "required", "none", "image_generation")
DETAILS = ("auto", "low", "high", "original")

MAX_PROMPT_CHARS = 32_000
MAX_IMAGES = 16
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_MASK_BYTES = 4 * 1024 * 1024
N_MIN, N_MAX = 1, 10
PARTIALS_MIN, PARTIALS_MAX = 0, 3
COMPRESSION_MIN, COMPRESSION_MAX = 0, 100

FIXED_SIZES = ("1024x1024", "1536x1024", "1024x1536")
FLEX_STEP = 16
FLEX_MAX_EDGE = 3840
FLEX_MAX_RATIO = 3
FLEX_MIN_PIXELS = 655_360
FLEX_MAX_PIXELS = 8_294_400

CHUNK_BYTES = 256 * 1024
FILE_CHUNK_BYTES = 1024 * 1024
ERROR_BODY_LIMIT = 1024 * 1024


class ModelRules(NamedTuple):
    """What one image model accepts; the validator and the cost estimate read nothing else."""

    family: str  # key into TOKEN_PRICES
    flexible_sizes: bool  # any WxH within the FLEX_* limits; otherwise FIXED_SIZES only
    qualities: Tuple[str, ...]
    transparent: str  # "yes", "preview" (refused unless --allow-transparent) or "no"
    input_fidelity: bool
    token_factors: Optional[Mapping[str, int]] = None  # output-token factor per quality (cost estimates)
    notice: str = ""  # a warning printed whenever the model is used


# Output-token factors reverse-engineered from OpenAI's calculator (api-facts.md section 7).
_GPT2_FACTORS = {"low": 16, "medium": 48, "high": 96}
_GPT25_FACTORS = {"low": 16, "medium": 24, "high": 48, "xhigh": 64, "max": 96}
_GPT2 = ModelRules("gpt-image-2", True, BASE_QUALITIES, "preview", False, _GPT2_FACTORS)
_GPT25 = ModelRules("gpt-image-2.5", True, QUALITIES, "yes", True, _GPT25_FACTORS)
_GPT26 = ModelRules("gpt-image-2.6", True, QUALITIES, "yes", True, _GPT25_FACTORS)
_GPT15 = ModelRules("gpt-image-1.5", False, BASE_QUALITIES, "yes", True)

# The capability table. Dated snapshots (name-YYYY-MM-DD) and provider prefixes (openai/...) map onto these.
MODELS: Dict[str, ModelRules] = {
    "gpt-image-2": _GPT2,
    "gpt-image-2.5-flare": _GPT25,
    "gpt-image-2.5-sunburst": _GPT25,
    "gpt-image-2.6-flare": _GPT26,
    "gpt-image-2.6-sunburst": _GPT26,
    "gpt-image-1.5": _GPT15,
    "chatgpt-image-latest": _GPT15,
    "gpt-image-1-mini": ModelRules("gpt-image-1-mini", False, BASE_QUALITIES, "yes", False),
    "gpt-image-1": ModelRules(
        "gpt-image-1",
        False,
        BASE_QUALITIES,
        "yes",
        True,
        notice="gpt-image-1 was shut down on 2026-10-23; the API will probably refuse it (use gpt-image-2)",
    ),
}

# USD per 1M tokens: (text input, image input, image output). Estimates only; the API's usage is the truth.
TOKEN_PRICES: Dict[str, Tuple[float, float, float]] = {
    "gpt-image-2": (5.00, 8.00, 30.00),
    "gpt-image-2.5": (5.00, 8.00, 30.00),
    "gpt-image-2.6": (5.00, 8.00, 30.00),
    "gpt-image-1.5": (5.00, 8.00, 32.00),
    "gpt-image-1": (5.00, 10.00, 40.00),
    "gpt-image-1-mini": (2.00, 2.50, 8.00),
}
# USD per image for the fixed-size models: quality -> (square, portrait or landscape).
IMAGE_PRICES: Dict[str, Dict[str, Tuple[float, float]]] = {
    "gpt-image-1.5": {"low": (0.009, 0.013), "medium": (0.034, 0.05), "high": (0.133, 0.20)},
    "gpt-image-1": {"low": (0.011, 0.016), "medium": (0.042, 0.063), "high": (0.167, 0.25)},
    "gpt-image-1-mini": {"low": (0.005, 0.006), "medium": (0.011, 0.015), "high": (0.036, 0.052)},
}

# Environment / .env keys for the options that take a configured default.
OPTION_ENV = {
    "size": "OPENAI_IMAGE_SIZE",
    "quality": "OPENAI_IMAGE_QUALITY",
    "background": "OPENAI_IMAGE_BACKGROUND",
    "format": "OPENAI_IMAGE_FORMAT",
    "compression": "OPENAI_IMAGE_COMPRESSION",
    "moderation": "OPENAI_IMAGE_MODERATION",
    "input_fidelity": "OPENAI_IMAGE_INPUT_FIDELITY",
    "user": "OPENAI_IMAGE_USER",
    "timeout": "OPENAI_IMAGE_TIMEOUT",
    "retries": "OPENAI_IMAGE_RETRIES",
}
CONFIG_KEYS = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "OPENAI_IMAGE_MODEL",
    "OPENAI_RESPONSES_MODEL",
    "OPENAI_IMAGE_TOOL_MODEL",
    *OPTION_ENV.values(),
)

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_API = 4
EXIT_NETWORK = 5
EXIT_RESPONSE = 6
EXIT_INTERRUPTED = 130

# --- Errors ------------------------------------------------------------------------------------------------


class GptImageError(Exception):
    """An expected failure: main() prints its message on one line and returns its exit code."""

    exit_code = EXIT_INTERNAL
    kind = "internal_error"

    def __init__(self, message: str, hint: str = "", **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details


class UsageError(GptImageError):
    """Bad arguments or a request that pre-flight validation refuses; nothing was sent."""

    exit_code = EXIT_USAGE
    kind = "usage_error"


class ConfigError(GptImageError):
    """No API key, an unreadable or malformed .env file, or a bad configured value."""

    exit_code = EXIT_CONFIG
    kind = "config_error"


class ApiError(GptImageError):
    """The API refused the request (HTTP error after retries, or an error event)."""

    exit_code = EXIT_API
    kind = "api_error"


class NetworkError(GptImageError):
    """Could not reach the API, or the connection failed or timed out."""

    exit_code = EXIT_NETWORK
    kind = "network_error"


class ResponseError(GptImageError):
    """The API answered with something unusable: malformed, truncated, or without an image."""

    exit_code = EXIT_RESPONSE
    kind = "response_error"


class OutputError(GptImageError):
    """A paid-for image (or a sidecar) could not be written where asked: disk full, permissions, a lock."""

    kind = "output_error"


class Interrupted(KeyboardInterrupt):
    """Raised by the SIGTERM handler so that a killed run cleans up like Ctrl-C."""


# Secrets registered here are replaced by *** in everything the program prints or writes.
_SECRETS: List[str] = []


def register_secret(value: Optional[str]) -> None:
    """Remember a secret so that redact() removes it from all output."""
    if value and len(value) >= 4 and value not in _SECRETS:
        _SECRETS.append(value)
        _SECRETS.sort(key=len, reverse=True)


def redact(text: str) -> str:
    """Replace every registered secret in text with ***."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


# --- Configuration -----------------------------------------------------------------------------------------

_ENV_KEY_RE = re.compile(r"(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=(.*)\Z", re.DOTALL)
_LINE_BREAK_RE = re.compile(r"\r\n|\r|\n")


def parse_dotenv(text: str, source: str = ".env") -> Dict[str, Tuple[str, int]]:
    """Parse .env text into {KEY: (value, line number)}; a malformed line is a ConfigError naming the line.

    KEY=VALUE lines with an optional `export `; single quotes are literal; double quotes understand \\n, \\"
    and \\\\; an unquoted value ends at ` #`. Blank lines and # comments are skipped. The value of a bad line
    is never quoted in the message, since it may be a secret.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    result: Dict[str, Tuple[str, int]] = {}
    for number, raw in enumerate(_LINE_BREAK_RE.split(text), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ENV_KEY_RE.match(line)
        if not match:
            raise ConfigError(f"{source}:{number}: expected KEY=VALUE", hint="fix or remove that line")
        key, rest = match.group(1), match.group(2)
        value = _parse_env_value(rest)
        if value is None:
            raise ConfigError(
                f"{source}:{number}: malformed value for {key} (unterminated quote or text after the quote)",
                hint="fix or remove that line",
            )
        result[key] = (value, number)
    return result


def _parse_env_value(rest: str) -> Optional[str]:
    """Decode the part after `=`; None when it is malformed."""
    value = rest.lstrip(" \t")
    if value.startswith("#") and len(value) < len(rest):
        return ""  # `KEY= # note` is empty plus a comment; as in a shell, `KEY=#abc` is the value #abc
    rest = value
    if rest[:1] == "'":
        end = rest.find("'", 1)
        if end < 0 or not _only_comment(rest[end + 1 :]):
            return None
        return rest[1:end]
    if rest[:1] == '"':
        out: List[str] = []
        i = 1
        while i < len(rest):
            ch = rest[i]
            if ch == "\\" and i + 1 < len(rest):
                nxt = rest[i + 1]
                out.append({"n": "\n", '"': '"', "\\": "\\"}.get(nxt, "\\" + nxt))
                i += 2
                continue
            if ch == '"':
                return "".join(out) if _only_comment(rest[i + 1 :]) else None
            out.append(ch)
            i += 1
        return None
    comment = re.search(r"[ \t]#", rest)
    return (rest[: comment.start()] if comment else rest).strip()


def _only_comment(tail: str) -> bool:
    tail = tail.strip()
    return not tail or tail.startswith("#")


class Config(NamedTuple):
    """The process environment and the .env file, looked up in that order."""

    environ: Mapping[str, str]
    dotenv: Mapping[str, Tuple[str, int]]
    dotenv_path: Optional[str]

    def get(self, key: str) -> Optional[Tuple[str, str]]:
        """Return (value, where it came from) for key, or None; an empty value counts as unset."""
        value = self.environ.get(key)
        if value:
            return value, f"environment variable {key}"
        entry = self.dotenv.get(key)
        if entry and entry[0]:
            return entry[0], f"{key} in {self.dotenv_path}:{entry[1]}"
        return None

    def value(self, key: str) -> Optional[str]:
        """Return the configured value of key, or None."""
        found = self.get(key)
        return found[0] if found else None


def skill_root() -> str:
    """The folder above scripts/: where SKILL.md and a skill-level .env live."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def find_dotenv(explicit: Optional[str], cwd: str, root: Optional[str]) -> Optional[str]:
    """Choose the .env file: --env-file (must exist), else ./.env, else the skill root's; never parents."""
    if explicit:
        if not os.path.isfile(explicit):
            raise ConfigError(
                f"--env-file {explicit}: no such file", hint="give the path of an existing .env file"
            )
        return explicit
    here = os.path.join(cwd, ".env")
    if os.path.isfile(here):
        return here
    if root and os.path.isfile(os.path.join(root, "SKILL.md")):
        beside = os.path.join(root, ".env")
        if os.path.isfile(beside):
            return beside
    return None


def load_config(
    environ: Mapping[str, str], env_file: Optional[str], cwd: Optional[str] = None, root: Optional[str] = None
) -> Config:
    """Read the environment and the chosen .env file into a Config (flags are applied by the validator)."""
    path = find_dotenv(env_file, cwd or os.getcwd(), root if root is not None else skill_root())
    values: Dict[str, Tuple[str, int]] = {}
    if path:
        try:
            with open(path, "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError(f"{path}:{line}: not valid UTF-8", hint="save the file as UTF-8") from None
        values = parse_dotenv(text, path)
    config = Config(dict(environ), values, path)
    register_secret(config.value("OPENAI_API_KEY"))
    return config


# --- Images on disk ----------------------------------------------------------------------------------------


def sniff_format(head: bytes) -> Optional[str]:
    """Return png, jpeg or webp from an image's first bytes, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


class ImageInfo(NamedTuple):
    """What the header of an image file says: format, dimensions and (for PNG) whether it has alpha."""

    format: str
    width: Optional[int]
    height: Optional[int]
    has_alpha: bool


def read_image_info(head: bytes) -> Optional[ImageInfo]:
    """Read format, width, height and alpha from the first bytes of a PNG, JPEG or WEBP file."""
    fmt = sniff_format(head)
    if fmt == "png":
        return _png_info(head)
    if fmt == "jpeg":
        width, height = _jpeg_size(head)
        return ImageInfo("jpeg", width, height, False)
    if fmt == "webp":
        return _webp_info(head)
    return None


def _png_info(head: bytes) -> ImageInfo:
    width = height = None
    alpha = False
    pos = 8
    while pos + 8 <= len(head):
        length = int.from_bytes(head[pos : pos + 4], "big")
        kind = head[pos + 4 : pos + 8]
        body = head[pos + 8 : pos + 8 + length]
        if kind == b"IHDR" and len(body) >= 10:
            width = int.from_bytes(body[0:4], "big")
            height = int.from_bytes(body[4:8], "big")
            alpha = body[9] in (4, 6)  # colour types 4 (grey + alpha) and 6 (RGBA)
        elif kind == b"tRNS":
            alpha = True
        elif kind in (b"IDAT", b"IEND"):
            break
        pos += 12 + length
    return ImageInfo("png", width, height, alpha)


def _jpeg_size(head: bytes) -> Tuple[Optional[int], Optional[int]]:
    return _jpeg_size_in_file(io.BytesIO(head))


def _jpeg_size_in_file(handle: IO[bytes]) -> Tuple[Optional[int], Optional[int]]:
    """Walk a JPEG's marker segments by seeking, for a size marker behind large EXIF or ICC blocks."""
    pos = 2
    for _ in range(100_000):
        handle.seek(pos)
        header = handle.read(9)
        if len(header) < 4 or header[0] != 0xFF:
            break
        marker = header[1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker == 0xDA:  # start of scan: no frame header came before it
            break
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and len(header) >= 9:
            return int.from_bytes(header[7:9], "big"), int.from_bytes(header[5:7], "big")
        pos += 2 + int.from_bytes(header[2:4], "big")
    return None, None


def _webp_info(head: bytes) -> ImageInfo:
    kind = head[12:16]
    width = height = None
    alpha = False
    if kind == b"VP8 " and len(head) >= 30:
        width = int.from_bytes(head[26:28], "little") & 0x3FFF
        height = int.from_bytes(head[28:30], "little") & 0x3FFF
    elif kind == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        width = (bits & 0x3FFF) + 1
        height = ((bits >> 14) & 0x3FFF) + 1
        alpha = bool((bits >> 28) & 1)
    elif kind == b"VP8X" and len(head) >= 30:
        alpha = bool(head[20] & 0x10)
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
    return ImageInfo("webp", width, height, alpha)


class InputImage(NamedTuple):
    """A local image file checked by the validator: its path, size in bytes and header facts."""

    path: str
    size: int
    info: ImageInfo

    @property
    def mime(self) -> str:
        """The Content-Type for this file, from its first bytes."""
        return MIME_TYPES[self.info.format]


def inspect_image(path: str, what: str, limit: int = MAX_IMAGE_BYTES) -> InputImage:
    """Check that path is a readable PNG, JPEG or WEBP file within limit bytes; raise UsageError if not."""
    if not os.path.exists(path):
        raise UsageError(f"{what} {path}: no such file", hint="check the path")
    if not os.path.isfile(path):
        raise UsageError(f"{what} {path}: not a regular file", hint="give the path of an image file")
    size = os.path.getsize(path)
    if size > limit:
        raise UsageError(
            f"{what} {path}: {size:,} bytes; the limit is {limit:,} bytes",
            hint="shrink or recompress the image",
        )
    try:
        with open(path, "rb") as handle:
            head = handle.read(64 * 1024)
            info = read_image_info(head)
            if info is not None and info.format == "jpeg" and info.width is None and size > len(head):
                width, height = _jpeg_size_in_file(handle)
                info = info._replace(width=width, height=height)
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    if info is None:
        raise UsageError(
            f"{what} {path}: not a PNG, JPEG or WEBP image (by its first bytes)",
            hint="convert it to PNG, JPEG or WEBP",
        )
    return InputImage(path, size, info)


def check_mask(path: str, first: Optional[InputImage]) -> InputImage:
    """Check a mask: a real PNG with an alpha channel, under 4 MB, the size of the first image."""
    mask = inspect_image(path, "--mask", MAX_MASK_BYTES)  # the 50 MB image limit would be the wrong figure
    if mask.info.format != "png":
        raise UsageError(
            f"--mask {path}: is {mask.info.format.upper()}; a mask must be a PNG with an alpha channel"
        )
    if mask.size >= MAX_MASK_BYTES:
        raise UsageError(f"--mask {path}: {mask.size:,} bytes; a mask must be under {MAX_MASK_BYTES:,} bytes")
    if not mask.info.has_alpha:
        raise UsageError(
            f"--mask {path}: the PNG has no alpha channel",
            hint="save it as RGBA; fully transparent pixels mark the area to edit",
        )
    if (
        first is not None
        and first.info.width
        and mask.info.width
        and ((mask.info.width, mask.info.height) != (first.info.width, first.info.height))
    ):
        raise UsageError(
            f"--mask {path}: {mask.info.width}x{mask.info.height} does not match the first image "
            f"{first.path} ({first.info.width}x{first.info.height})",
            hint="resize the mask to the first image's width and height",
        )
    return mask


def file_sha256(path: str) -> str:
    """SHA-256 of a file, read in chunks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(FILE_CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


# --- Sizes -------------------------------------------------------------------------------------------------

_SIZE_RE = re.compile(r"(\d+)x(\d+)\Z")
_LOOSE_SIZE_RE = re.compile(r"\s*(\d+)\s*[xX*×,: ]\s*(\d+)\s*\Z")


def flexible_size_problem(width: int, height: int) -> Optional[str]:
    """Say which gpt-image-2 size rule WxH breaks, or None when it is valid."""
    if width % FLEX_STEP or height % FLEX_STEP or width == 0 or height == 0:
        return f"width and height must be positive multiples of {FLEX_STEP}"
    if max(width, height) > FLEX_MAX_EDGE:
        return f"the longest edge must be at most {FLEX_MAX_EDGE}"
    if max(width, height) > FLEX_MAX_RATIO * min(width, height):
        return f"the long edge may be at most {FLEX_MAX_RATIO} times the short edge (1:3 to 3:1)"
    pixels = width * height
    if not FLEX_MIN_PIXELS <= pixels <= FLEX_MAX_PIXELS:
        return f"the total pixels ({pixels:,}) must be between {FLEX_MIN_PIXELS:,} and {FLEX_MAX_PIXELS:,}"
    return None


def nearest_flexible_size(width: int, height: int) -> Tuple[int, int]:
    """The valid gpt-image-2 size closest to WxH (least squared distance)."""
    best: Tuple[float, int, int] = (math.inf, 1024, 1024)
    for w in range(FLEX_STEP, FLEX_MAX_EDGE + 1, FLEX_STEP):
        low = max(-(-w // FLEX_MAX_RATIO), -(-FLEX_MIN_PIXELS // w))
        high = min(FLEX_MAX_RATIO * w, FLEX_MAX_PIXELS // w, FLEX_MAX_EDGE)
        low = -(-low // FLEX_STEP) * FLEX_STEP
        high = high // FLEX_STEP * FLEX_STEP
        if low > high:
            continue
        # Capping a huge height first keeps the float division finite; any height past the edge maps to high.
        h = min(max(round(min(height, 2 * FLEX_MAX_EDGE) / FLEX_STEP) * FLEX_STEP, low), high)
        distance = (w - width) ** 2 + (h - height) ** 2
        if distance < best[0]:
            best = (distance, w, h)
    return best[1], best[2]


def nearest_fixed_size(width: int, height: int) -> str:
    """The standard size whose aspect ratio is closest to WxH."""
    ratio = math.log(max(width, 1)) - math.log(max(height, 1))  # no float overflow for huge numbers

    def distance(size: str) -> float:
        w, h = (int(part) for part in size.split("x"))
        return abs(math.log(w / h) - ratio)

    return min(FIXED_SIZES, key=distance)


def size_error(size: str, model: str, rules: Optional[ModelRules]) -> Optional[Tuple[str, str]]:
    """Return (problem, fix) when size is not valid for the model, else None."""
    if size == "auto":
        return None
    match = _SIZE_RE.match(size)
    if not match:
        loose = _LOOSE_SIZE_RE.match(size)
        if loose:
            suggestion = f"{int(loose.group(1))}x{int(loose.group(2))}"
            return (
                f"size {size!r} is not of the form WIDTHxHEIGHT (lowercase x, digits only)",
                f"did you mean --size {suggestion}?",
            )
        return f"size {size!r} is not 'auto' or WIDTHxHEIGHT", "for example --size 1024x1024"
    width, height = int(match.group(1)), int(match.group(2))
    if rules is None:
        if width and height:
            return None
        return f"size {size} has a zero edge", "use positive numbers, e.g. --size 1024x1024"
    if not rules.flexible_sizes:
        if size in FIXED_SIZES:
            return None
        return (
            f"{model} accepts only auto, {', '.join(FIXED_SIZES)}; not {size}",
            f"the nearest is --size {nearest_fixed_size(width, height)}",
        )
    problem = flexible_size_problem(width, height)
    if problem is None:
        return None
    near_w, near_h = nearest_flexible_size(width, height)
    return (
        f"size {size} is not valid for {model}: {problem}",
        f"the nearest valid size is --size {near_w}x{near_h}",
    )


def rules_for(model: str) -> Optional[ModelRules]:
    """Look a model up in MODELS, after stripping a provider prefix and a -YYYY-MM-DD snapshot date."""
    name = model.rsplit("/", 1)[-1].strip().lower()
    if name in MODELS:
        return MODELS[name]
    return MODELS.get(re.sub(r"-\d{4}-\d{2}-\d{2}\Z", "", name))


# --- Output paths ------------------------------------------------------------------------------------------


class OutputPlan:
    """Where images go: --output expanded per image index, and .partial-K previews beside each final."""

    __slots__ = ("count", "pattern")

    def __init__(self, pattern: str, count: int) -> None:
        self.pattern = pattern
        self.count = count  # how many final images are planned

    def __repr__(self) -> str:
        return f"OutputPlan({self.pattern!r}, {self.count})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutputPlan) and (self.pattern, self.count) == (other.pattern, other.count)

    def __hash__(self) -> int:
        return hash((self.pattern, self.count))

    def final(self, index: int) -> str:
        """The path of final image `index` (1-based)."""
        if "{index}" in self.pattern:
            return self.pattern.replace("{index}", str(index))
        if self.count == 1 and index == 1:
            return self.pattern
        root, ext = os.path.splitext(self.pattern)
        return f"{root}-{index}{ext}"

    def partial(self, index: int, k: int) -> str:
        """The path of preview k (1-based) of final image `index`."""
        root, ext = os.path.splitext(self.final(index))
        return f"{root}.partial-{k}{ext}"


def metadata_path(image_path: str) -> str:
    """The --metadata sidecar of an image: the image path plus .json."""
    return image_path + ".json"


# --- Validation --------------------------------------------------------------------------------------------


class Job:
    """One validated run: everything the request builders and the runner need, nothing they must check."""

    def __init__(
        self,
        *,
        command: str,
        model: str,
        rules: Optional[ModelRules],
        params: Dict[str, Any],
        prompt: Optional[str],
        n: int,
        stream: bool,
        partial_images: int,
        output_format: str,
        outputs: OutputPlan,
        base_url: str,
        api_key: Optional[str],
        organization: Optional[str],
        project: Optional[str],
        timeout: float,
        retries: int,
        dry_run: bool,
        as_json: bool,
        overwrite: bool,
        quiet: bool,
        save_response: Optional[str],
        metadata: bool,
        text_model: Optional[str] = None,
        warnings: Optional[List[str]] = None,
        sources: Optional[Dict[str, str]] = None,
    ) -> None:
        self.command = command
        self.model = model  # the image model (the tool's model for responses)
        self.rules = rules
        self.params = params  # image parameters with API field names, only those the user set
        self.prompt = prompt
        self.n = n
        self.stream = stream
        self.partial_images = partial_images
        self.output_format = output_format
        self.outputs = outputs
        self.base_url = base_url
        self.api_key = api_key
        self.organization = organization
        self.project = project
        self.timeout = timeout
        self.retries = retries
        self.dry_run = dry_run
        self.as_json = as_json
        self.overwrite = overwrite
        self.quiet = quiet
        self.save_response = save_response
        self.metadata = metadata
        self.images: List[InputImage] = []
        self.mask: Optional[InputImage] = None
        self.field_style: str = "auto"
        self.text_model = text_model
        self.input_texts: List[str] = []
        self.image_urls: List[str] = []
        self.file_ids: List[str] = []
        self.mask_file_id: Optional[str] = None
        self.detail: str = "auto"
        self.tool_choice: str = "image_generation"
        self.previous_response_id: Optional[str] = None
        self.warnings: List[str] = warnings if warnings is not None else []
        self.sources: Dict[str, str] = sources if sources is not None else {}


class _Settings:
    """Resolve each option as flag > environment > .env > default, remembering where each value came from."""

    def __init__(self, args: argparse.Namespace, config: Config) -> None:
        self.args = args
        self.config = config
        self.sources: Dict[str, str] = {}

    def pick(self, name: str, env_key: Optional[str] = None, default: Any = None, flag: str = "") -> Any:
        """Return the value of option `name` by precedence, recording its source."""
        value = getattr(self.args, name, None)
        if value is not None and value != "":
            self.sources[name] = flag or "--" + name.replace("_", "-")
            return value
        if env_key:
            found = self.config.get(env_key)
            if found:
                self.sources[name] = found[1]
                return found[0]
        self.sources[name] = "default"
        return default

    def is_configured(self, name: str) -> bool:
        """True when option `name` came from the environment or .env rather than a flag or default."""
        source = self.sources.get(name, "default")
        return source != "default" and not source.startswith("--")

    def error(self, name: str, message: str, hint: str = "") -> GptImageError:
        """A UsageError for a flag's value, a ConfigError (naming the source) for a configured one."""
        if self.is_configured(name):
            return ConfigError(f"{message} (from {self.sources[name]})", hint=hint)
        return UsageError(message, hint=hint)

    def number(
        self,
        name: str,
        env_key: Optional[str],
        default: Any,
        kind: Callable[[str], Any],
        low: float,
        high: float,
        flag: str = "",
    ) -> Any:
        """Pick a numeric option and check its range."""
        raw = self.pick(name, env_key, default, flag)
        if raw is None:
            return None
        label = flag or "--" + name.replace("_", "-")
        try:
            value = kind(raw) if isinstance(raw, str) else raw
        except ValueError:
            raise self.error(name, f"{label} must be a number, not {raw!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(name, f"{label} must be a finite number")
        if not low <= value <= high:
            raise self.error(name, f"{label} must be between {low:g} and {high:g}, not {value:g}")
        return value

    def choice(
        self, name: str, env_key: Optional[str], choices: Sequence[str], flag: str = ""
    ) -> Optional[str]:
        """Pick an option that must be one of choices (lower-cased)."""
        raw = self.pick(name, env_key, None, flag)
        if raw is None:
            return None
        value = str(raw).strip().lower()
        if value not in choices:
            label = flag or "--" + name.replace("_", "-")
            raise self.error(name, f"{label} {raw!r} is not one of {', '.join(choices)}")
        return value


def read_prompt(args: argparse.Namespace) -> Optional[str]:
    """The prompt from --prompt or --prompt-file (UTF-8; '-' reads standard input)."""
    if args.prompt is not None and args.prompt_file is not None:
        raise UsageError("give --prompt or --prompt-file, not both")
    if args.prompt_file is None:
        return args.prompt  # type: ignore[no-any-return]
    try:
        if args.prompt_file == "-":
            data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
        else:
            with open(args.prompt_file, "rb") as handle:
                data = handle.read()
    except OSError as exc:
        raise UsageError(
            f"--prompt-file {args.prompt_file}: cannot read it ({exc.strerror or exc})"
        ) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(
            f"--prompt-file {args.prompt_file}: not valid UTF-8", hint="save it as UTF-8"
        ) from None
    return text.rstrip("\r\n")


def check_prompt(prompt: Optional[str], required: bool) -> Optional[str]:
    """Refuse an empty or over-long prompt."""
    if prompt is None:
        if required:
            raise UsageError("a prompt is required", hint="add --prompt TEXT or --prompt-file PATH")
        return None
    if not prompt.strip():
        raise UsageError("the prompt is empty", hint="describe the image you want")
    try:
        prompt.encode("utf-8")  # argv bytes that are not UTF-8 arrive as lone surrogates
    except UnicodeEncodeError:
        raise UsageError(
            "the prompt is not valid UTF-8 text", hint="check the terminal's encoding, or use --prompt-file"
        ) from None
    if len(prompt) > MAX_PROMPT_CHARS:
        raise UsageError(
            f"the prompt is {len(prompt):,} characters; the limit is {MAX_PROMPT_CHARS:,}",
            hint="shorten it",
        )
    return prompt


def plan_output(output: str, settings: _Settings) -> Tuple[str, str]:
    """Return (output pattern, format): the format from the extension, --format, OPENAI_IMAGE_FORMAT or png."""
    raw_format = settings.pick("format", OPTION_ENV["format"])
    given = None
    if raw_format is not None:
        given = str(raw_format).strip().lower()
        given = FORMAT_ALIASES.get(given, given)
        if given not in FORMATS:
            raise settings.error("format", f"--format {raw_format!r} is not one of {', '.join(FORMATS)}")
    if not output.strip():
        raise UsageError("--output is empty", hint="give a file path such as out/image.png")
    root, ext = os.path.splitext(output)
    if output.endswith(("/", "\\")) or os.path.isdir(output):
        raise UsageError(
            f"--output {output} is a folder",
            hint=f"give a file name, e.g. {os.path.join(output, 'image.png')}",
        )
    if not ext and os.path.basename(root).startswith(".") and os.path.basename(root).count(".") == 1:
        raise UsageError(
            f"--output {output} has no file name before the extension", hint="e.g. out/image.png"
        )
    if not ext:
        fmt = given or "png"
        return output + FORMAT_EXTENSIONS[fmt], fmt
    by_extension = EXTENSION_FORMATS.get(ext.lower())
    if by_extension is None:
        raise UsageError(
            f"--output {output}: unknown extension {ext}",
            hint="end it in .png, .jpg, .jpeg or .webp",
        )
    if given and given != by_extension and not settings.is_configured("format"):
        raise UsageError(
            f"--format {given} disagrees with the output extension {ext}",
            hint=f"drop --format, or name the output {root}{FORMAT_EXTENSIONS[given]}",
        )
    # A configured OPENAI_IMAGE_FORMAT is a default only; the extension the user typed wins over it.
    settings.sources["format"] = "--output extension"
    return output, by_extension


def check_writable(path: str, overwrite: bool, what: str = "output") -> None:
    """Refuse a planned file that exists (unless overwrite) or whose folder cannot be created or written."""
    if os.path.isdir(path):
        raise UsageError(f"{what} {path} is a folder")
    if os.path.lexists(path) and not overwrite:
        raise UsageError(f"{what} {path} already exists", hint="pass --overwrite, or choose another --output")
    folder = os.path.dirname(os.path.abspath(path))
    probe = folder
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise UsageError(
            f"cannot write {what} {path}: {probe} is not a folder", hint="choose another --output"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(
            f"cannot write {what} {path}: {probe} is not writable", hint="choose another --output"
        )


def check_base_url(raw: str, settings: _Settings) -> str:
    """Check the base URL is http(s) with a host; strip a trailing slash."""
    url = raw.strip().rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise settings.error(
            "base_url",
            f"base URL {raw!r} is not an http(s) URL",
            hint="for example https://api.openai.com/v1",
        )
    return url


_HEADER_SAFE_RE = re.compile(r"[\x21-\x7e]+\Z")


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


# Options that name files: the operating system takes any name it can hold, even one that is not UTF-8.
_PATH_OPTIONS = ("output", "image", "mask", "input_image", "save_response", "env_file", "prompt_file")


def check_text_options(args: argparse.Namespace) -> None:
    """Refuse option text that cannot be sent as UTF-8 (bytes the shell passed that are not UTF-8)."""
    for name, value in vars(args).items():
        if name in _PATH_OPTIONS or name == "prompt":  # the prompt has its own check, with its own message
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    flag = "--" + name.replace("_", "-")
                    raise UsageError(f"{flag} is not valid UTF-8 text", hint="pass it as UTF-8") from None


def validate(args: argparse.Namespace, config: Config) -> Job:
    """Check everything that can be checked locally and return the Job; raise UsageError/ConfigError if not.

    Runs once, before anything is sent, for all three subcommands: nothing is sent (and nothing paid for)
    when the request cannot succeed.
    """
    command = args.command
    check_text_options(args)
    settings = _Settings(args, config)
    warnings: List[str] = []
    responses = command == "responses"

    text_model = None
    if responses:
        text_model = str(settings.pick("model", "OPENAI_RESPONSES_MODEL", DEFAULT_RESPONSES_MODEL)).strip()
        bare = text_model.rsplit("/", 1)[-1].lower()
        if bare.startswith(("gpt-image", "chatgpt-image", "dall-e")):
            raise settings.error(
                "model",
                f"--model {text_model} is an image model; the Responses API needs a text model here",
                hint=f"use --model {DEFAULT_RESPONSES_MODEL} and put the image model in --tool-model",
            )
        model = str(settings.pick("tool_model", "OPENAI_IMAGE_TOOL_MODEL", DEFAULT_TOOL_MODEL)).strip()
        model_option = "tool_model"
    else:
        model = str(settings.pick("model", "OPENAI_IMAGE_MODEL", DEFAULT_IMAGE_MODEL)).strip()
        model_option = "model"
    if not model:
        raise settings.error(model_option, "the image model name is empty")
    rules = rules_for(model)
    if rules is None:
        warnings.append(f"unknown model {model}: only the generic checks apply")
    elif rules.notice:
        warnings.append(rules.notice)

    prompt = check_prompt(read_prompt(args), required=not responses)
    params: Dict[str, Any] = {}

    size = settings.pick("size", OPTION_ENV["size"])
    if size is not None:
        size = str(size).strip()
        problem = size_error(size, model, rules)
        if problem:
            raise settings.error("size", problem[0], hint=problem[1])
        params["size"] = size

    quality = settings.choice("quality", OPTION_ENV["quality"], QUALITIES)
    if quality is not None:
        allowed = rules.qualities if rules else QUALITIES
        if quality not in allowed:
            raise settings.error(
                "quality",
                f"{model} does not accept --quality {quality}",
                hint=f"use one of {', '.join(allowed)}",
            )
        params["quality"] = quality

    output, output_format = plan_output(args.output, settings)
    background = settings.choice("background", OPTION_ENV["background"], BACKGROUNDS)
    if background is not None:
        if background == "transparent":
            if rules and rules.transparent == "preview" and not args.allow_transparent:
                raise settings.error(
                    "background",
                    f"{model} does not reliably support transparent backgrounds (the API calls it a preview)",
                    hint="use --background opaque or auto, a model such as gpt-image-1.5, "
                    "or --allow-transparent to send it anyway",
                )
            if rules and rules.transparent == "no":
                raise settings.error("background", f"{model} does not support transparent backgrounds")
            if output_format not in ("png", "webp"):
                raise settings.error(
                    "background",
                    f"a transparent background needs png or webp, not {output_format}",
                    hint="name the output .png or .webp",
                )
        params["background"] = background
    # The extension (or --format) decides the file's format; png is the API's own default, so it is sent
    # only when asked for by --format, keeping the body to what the user set.
    if args.format or output_format != "png":
        params["output_format"] = output_format

    compression = settings.number(
        "compression", OPTION_ENV["compression"], None, int, COMPRESSION_MIN, COMPRESSION_MAX
    )
    if compression is not None:
        if output_format in ("jpeg", "webp"):
            params["output_compression"] = compression
        elif not settings.is_configured("compression"):
            raise UsageError(
                f"--compression applies to jpeg and webp only, not {output_format}",
                hint="drop --compression, or name the output .jpg or .webp",
            )

    moderation = settings.choice("moderation", OPTION_ENV["moderation"], MODERATIONS)
    if moderation is not None:
        if command == "edits":
            if not settings.is_configured("moderation"):
                raise UsageError(
                    "edits do not accept --moderation (the multipart edit API has no such field)",
                    hint="drop --moderation, or use the generations or responses route",
                )
        else:
            params["moderation"] = moderation

    fidelity = None
    if command in ("edits", "responses"):
        fidelity = settings.choice("input_fidelity", OPTION_ENV["input_fidelity"], INPUT_FIDELITIES)
        if fidelity is not None:
            if rules and not rules.input_fidelity:
                if not settings.is_configured("input_fidelity"):
                    raise UsageError(
                        f"{model} does not accept --input-fidelity",
                        hint="drop --input-fidelity; the model keeps inputs at high fidelity itself",
                    )
            else:
                params["input_fidelity"] = fidelity

    user = settings.pick("user", OPTION_ENV["user"])
    if user is not None:
        params["user"] = str(user)

    n = 1
    if not responses:
        n = settings.number("n", None, 1, int, N_MIN, N_MAX)
        if getattr(args, "n", None) is not None:
            params["n"] = n

    stream = bool(args.stream)
    partial_images = 0
    if args.partial_images is not None:
        if not stream:
            raise UsageError("--partial-images needs --stream", hint="add --stream")
        partial_images = settings.number("partial_images", None, 0, int, PARTIALS_MIN, PARTIALS_MAX)
        params["partial_images"] = partial_images
    if stream and n > 1:
        raise UsageError(
            "--stream works with one image per request (--n 1)", hint="drop --stream, or run once per image"
        )

    timeout = settings.number("timeout", OPTION_ENV["timeout"], DEFAULT_TIMEOUT_S, float, 1, 86_400)
    retries = settings.number("retries", OPTION_ENV["retries"], DEFAULT_RETRIES, int, 0, MAX_RETRIES)
    base_url = check_base_url(str(settings.pick("base_url", "OPENAI_BASE_URL", DEFAULT_BASE_URL)), settings)
    api_key = config.value("OPENAI_API_KEY")
    for key in ("OPENAI_API_KEY", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        found = config.get(key)
        if found and not _HEADER_SAFE_RE.match(found[0]):
            raise ConfigError(
                f"{key} has spaces, line breaks or other characters an HTTP header cannot carry (from {found[1]})",
                hint="remove the stray characters; a key copied from a CRLF file often ends in a carriage return",
            )
    host = urllib.parse.urlsplit(base_url).hostname or ""
    if base_url.startswith("http://") and api_key and not _is_loopback(host):
        warnings.append(f"the API key will be sent unencrypted over http:// to {host}")

    job = Job(
        command=command,
        model=model,
        rules=rules,
        params=params,
        prompt=prompt,
        n=n,
        stream=stream,
        partial_images=partial_images,
        output_format=output_format,
        outputs=OutputPlan(output, n),
        base_url=base_url,
        api_key=api_key,
        organization=config.value("OPENAI_ORG_ID"),
        project=config.value("OPENAI_PROJECT_ID"),
        timeout=float(timeout),
        retries=int(retries),
        dry_run=args.dry_run,
        as_json=args.json,
        overwrite=args.overwrite,
        quiet=args.quiet,
        save_response=args.save_response,
        metadata=args.metadata,
        text_model=text_model,
        warnings=warnings,
        sources=settings.sources,
    )
    if command == "edits":
        _validate_edit_inputs(args, job)
    elif responses:
        _validate_response_inputs(args, job)
    _validate_outputs(job)
    return job


def _validate_edit_inputs(args: argparse.Namespace, job: Job) -> None:
    paths = args.image or []
    if not paths:
        raise UsageError("edits need at least one --image", hint="add --image PATH (up to 16)")
    if len(paths) > MAX_IMAGES:
        raise UsageError(f"{len(paths)} images given; the limit is {MAX_IMAGES}")
    job.images = [inspect_image(path, "--image") for path in paths]
    if args.mask:
        job.mask = check_mask(args.mask, job.images[0])
    job.field_style = args.image_field_style or "auto"


def _validate_response_inputs(args: argparse.Namespace, job: Job) -> None:
    texts = [t for t in (args.input_text or [])]
    for text in texts:
        if not text.strip():
            raise UsageError("an --input-text is empty")
    if job.prompt is not None:
        texts.insert(0, job.prompt)
    if sum(len(t) for t in texts) > MAX_PROMPT_CHARS:
        raise UsageError(f"the input text is over {MAX_PROMPT_CHARS:,} characters", hint="shorten it")
    job.input_texts = texts
    job.images = [inspect_image(path, "--input-image") for path in (args.input_image or [])]
    for url in args.input_image_url or []:
        if not url.startswith(("https://", "http://", "data:image/")):
            raise UsageError(
                f"--input-image-url {url!r} is not an http(s) or data:image URL",
                hint="use --input-image for a local file",
            )
    job.image_urls = list(args.input_image_url or [])
    job.file_ids = [fid.strip() for fid in (args.input_image_file_id or [])]
    if any(not fid for fid in job.file_ids):
        raise UsageError("an --input-image-file-id is empty")
    if not (texts or job.images or job.image_urls or job.file_ids):
        raise UsageError(
            "responses need some input",
            hint="add --input-text TEXT (or --prompt), and any --input-image PATH",
        )
    if args.mask and args.mask_file_id:
        raise UsageError("give --mask or --mask-file-id, not both")
    if (args.mask or args.mask_file_id) and not (job.images or job.image_urls or job.file_ids):
        raise UsageError("a mask needs an input image to apply to", hint="add --input-image PATH")
    if args.mask:
        job.mask = check_mask(args.mask, job.images[0] if job.images else None)
    job.mask_file_id = args.mask_file_id
    if args.action is not None:
        job.params["action"] = args.action
    job.tool_choice = args.tool_choice or "image_generation"
    job.detail = args.image_detail or "auto"
    job.previous_response_id = args.previous_response_id
    if job.tool_choice == "none":
        job.warnings.append("--tool-choice none: the model will not call the image tool, so expect no image")


def _validate_outputs(job: Job) -> None:
    planned = planned_files(job)
    seen = set()
    for path in planned:
        key = os.path.normcase(os.path.abspath(path))
        if key in seen:
            raise UsageError(
                f"two outputs would both be written to {path}",
                hint="use {index} in --output, or choose distinct paths",
            )
        seen.add(key)
        check_writable(path, job.overwrite)
    inputs = {os.path.normcase(os.path.abspath(img.path)) for img in job.images}
    if job.mask:
        inputs.add(os.path.normcase(os.path.abspath(job.mask.path)))
    clash = inputs & seen
    if clash:
        raise UsageError(
            f"an output would overwrite the input {sorted(clash)[0]}", hint="choose another --output"
        )


def planned_files(job: Job) -> List[str]:
    """Every file the run plans to write: finals, previews, sidecars and the saved response."""
    files: List[str] = []
    for index in range(1, job.outputs.count + 1):
        final = job.outputs.final(index)
        files.append(final)
        files.extend(job.outputs.partial(index, k) for k in range(1, job.partial_images + 1))
        if job.metadata:
            files.append(metadata_path(final))
    if job.save_response:
        files.append(job.save_response)
    return files


# --- Cost estimates ----------------------------------------------------------------------------------------


def output_tokens(width: int, height: int, factor: int) -> int:
    """Output tokens of one image of WxH at a quality factor (OpenAI's calculator, reverse-engineered)."""
    long_edge, short_edge = max(width, height), min(width, height)
    scaled = (2 * factor * short_edge + long_edge) // (2 * long_edge)
    return -(-factor * scaled * (2_000_000 + width * height) // 4_000_000)


def estimate_cost(job: Job) -> Optional[Dict[str, Any]]:
    """An estimated USD cost of the images before sending (None when the model has no price data)."""
    rules = job.rules
    if rules is None:
        return None
    size = job.params.get("size", "auto")
    quality = job.params.get("quality", "auto")
    basis_size = "1024x1024" if size == "auto" else size
    width, height = (int(v) for v in basis_size.split("x"))
    notes = []
    if size == "auto":
        notes.append("size auto priced as 1024x1024")
    if quality == "auto":
        quality = "high"
        notes.append("quality auto priced as high (an upper bound)")
    images = job.n
    if rules.token_factors and quality in rules.token_factors:
        tokens = output_tokens(width, height, rules.token_factors[quality])
        usd = tokens * images * TOKEN_PRICES[rules.family][2] / 1_000_000
        result: Dict[str, Any] = {"usd": round(usd, 4), "output_tokens": tokens * images}
    elif rules.family in IMAGE_PRICES and quality in IMAGE_PRICES[rules.family]:
        square, other = IMAGE_PRICES[rules.family][quality]
        per_image = square if width == height else other
        result = {"usd": round(per_image * images, 4)}
    else:
        return None
    result["basis"] = f"{images} x {basis_size} {quality} on {rules.family}, output only; an estimate"
    if notes:
        result["notes"] = notes
    return result


def cost_from_usage(usage: Mapping[str, Any], rules: Optional[ModelRules]) -> Optional[float]:
    """Estimated USD from the usage the Images API returns (token prices of the model family)."""
    if rules is None or rules.family not in TOKEN_PRICES or not isinstance(usage, Mapping):
        return None
    text_price, image_price, out_price = TOKEN_PRICES[rules.family]
    details = usage.get("input_tokens_details") or {}
    try:
        input_tokens = int(usage.get("input_tokens") or 0)
        image_in = int(details.get("image_tokens") or 0) if isinstance(details, Mapping) else 0
        text_in = (
            int(details.get("text_tokens") or input_tokens - image_in)
            if isinstance(details, Mapping)
            else input_tokens
        )
        out = int(usage.get("output_tokens") or 0)
    except (TypeError, ValueError):
        return None
    return round((text_in * text_price + image_in * image_price + out * out_price) / 1_000_000, 4)


# --- HTTP requests -----------------------------------------------------------------------------------------


class FileSegment(NamedTuple):
    """A file streamed into a request body, raw or base64-encoded (for data URLs inside JSON)."""

    path: str
    size: int
    encoding: str = "raw"  # "raw" or "base64"

    @property
    def length(self) -> int:
        """The number of body bytes this segment produces."""
        return self.size if self.encoding == "raw" else 4 * -(-self.size // 3)

    def chunks(self) -> Iterator[bytes]:
        """Read the file in chunks; base64 chunks are whole 3-byte groups, so they concatenate correctly.

        Never more than the planned size: a file that changed since validation stops the upload before the
        body is complete, so the server never gets a well-formed body with the wrong content.
        """
        step = FILE_CHUNK_BYTES if self.encoding == "raw" else 3 * (FILE_CHUNK_BYTES // 4)
        left = self.size
        try:
            with open(self.path, "rb") as handle:
                while left > 0:
                    block = handle.read(min(step, left))
                    if not block:
                        break
                    left -= len(block)
                    yield block if self.encoding == "raw" else base64.b64encode(block)
                grew = bool(handle.read(1))
        except OSError as exc:
            # Raised inside urllib's send loop, an OSError would pass for a network failure (and be retried).
            raise UsageError(f"{self.path}: cannot read it while sending ({exc.strerror or exc})") from None
        if left or grew:
            raise UsageError(
                f"{self.path} changed size while it was being sent",
                hint="do not modify input files during a run",
            )


Segment = Union[bytes, FileSegment]


class StreamBody:
    """A request body made of byte strings and files, produced piece by piece with a known length.

    Iterating it re-opens the files, so a retried request sends the same bytes again; it never holds a
    whole file in memory.
    """

    def __init__(self, segments: Sequence[Segment]) -> None:
        self.segments = list(segments)
        self.length = sum(len(s) if isinstance(s, bytes) else s.length for s in self.segments)

    def __iter__(self) -> Iterator[bytes]:
        for segment in self.segments:
            if isinstance(segment, bytes):
                if segment:
                    yield segment
            else:
                yield from segment.chunks()


class HttpRequest:
    """A request ready to send: method, URL, headers, a re-iterable body, and its dry-run description."""

    def __init__(
        self, method: str, url: str, headers: Dict[str, str], body: StreamBody, description: Dict[str, Any]
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.description = description


def build_headers(job: Job, content_type: str) -> Dict[str, str]:
    """Authorization, content type, accept, user agent and the optional organization/project headers."""
    headers = {
        "Authorization": f"Bearer {job.api_key or ''}",
        "Content-Type": content_type,
        "Accept": "text/event-stream" if job.stream else "application/json",
        "User-Agent": USER_AGENT,
    }
    if job.organization:
        headers["OpenAI-Organization"] = job.organization
    if job.project:
        headers["OpenAI-Project"] = job.project
    return headers


def _describe_headers(headers: Mapping[str, str], api_key: Optional[str]) -> Dict[str, str]:
    shown = dict(headers)
    shown["Authorization"] = "Bearer ***" if api_key else "Bearer *** (OPENAI_API_KEY is not set)"
    return shown


class DataUrl:
    """A local image to be sent as a base64 data URL inside a JSON body, streamed from disk."""

    __slots__ = ("image",)

    def __init__(self, image: InputImage) -> None:
        self.image = image


def build_json_request(job: Job, path: str, body: Dict[str, Any]) -> HttpRequest:
    """A JSON POST; DataUrl values are spliced in as streamed base64 so large images never sit in memory."""
    token = f"@@gpt-image-data-url-{os.urandom(16).hex()}-"
    files: List[InputImage] = []

    def placeholder(value: Any) -> Any:
        if isinstance(value, DataUrl):
            files.append(value.image)
            return f"{token}{len(files) - 1}@@"
        raise TypeError(f"cannot encode {type(value).__name__}")

    text = json.dumps(body, ensure_ascii=False, default=placeholder)
    segments: List[Segment] = []
    pieces = re.split(re.escape(token) + r"(\d+)@@", text)
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            segments.append(piece.encode("utf-8"))
        else:
            image = files[int(piece)]
            segments.append(f"data:{image.mime};base64,".encode("ascii"))
            segments.append(FileSegment(image.path, image.size, "base64"))

    def shorten(value: Any) -> Any:
        if isinstance(value, DataUrl):
            img = value.image
            return f"data:{img.mime};base64,<{img.size:,} bytes from {img.path}>"
        raise TypeError(f"cannot encode {type(value).__name__}")

    shown = json.loads(json.dumps(body, ensure_ascii=False, default=shorten))
    headers = build_headers(job, "application/json")
    stream_body = StreamBody(segments)
    description = {
        "method": "POST",
        "url": job.base_url + path,
        "headers": _describe_headers(headers, job.api_key),
        "body": shown,
        "content_length": stream_body.length,
    }
    return HttpRequest("POST", job.base_url + path, headers, stream_body, description)


def _quote_header_value(value: str) -> str:
    # As browsers do (WHATWG multipart/form-data): escape quotes and line breaks so a part cannot break out.
    # A file name that is not valid UTF-8 (lone surrogates from os.fsdecode) gets "?" for the bad bytes.
    value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class FilePart(NamedTuple):
    """One file field of a multipart body."""

    name: str
    image: InputImage


def encode_multipart(
    fields: Sequence[Tuple[str, str]], files: Sequence[FilePart], boundary: str
) -> Tuple[StreamBody, str]:
    """Lay out a multipart/form-data body (RFC 7578) as segments; return (body, content type).

    Each part is `--boundary CRLF headers CRLF CRLF content CRLF`, and the body ends `--boundary-- CRLF`.
    File contents stay on disk until the body is sent.
    """
    dash = f"--{boundary}\r\n".encode("ascii")
    segments: List[Segment] = []
    for name, value in fields:
        segments.append(dash)
        segments.append(
            f'Content-Disposition: form-data; name="{_quote_header_value(name)}"\r\n\r\n'.encode()
        )
        segments.append(value.encode("utf-8") + b"\r\n")
    for part in files:
        filename = os.path.basename(part.image.path)
        segments.append(dash)
        segments.append(
            (
                f'Content-Disposition: form-data; name="{_quote_header_value(part.name)}"; '
                f'filename="{_quote_header_value(filename)}"\r\nContent-Type: {part.image.mime}\r\n\r\n'
            ).encode()
        )
        segments.append(FileSegment(part.image.path, part.image.size))
        segments.append(b"\r\n")
    segments.append(f"--{boundary}--\r\n".encode("ascii"))
    return StreamBody(segments), f"multipart/form-data; boundary={boundary}"


def form_value(value: Any) -> str:
    """A form field as the official SDK sends it: booleans as true/false, numbers as digits."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def image_field_names(style: str, count: int) -> List[str]:
    """The multipart field name of each image for --image-field-style."""
    if style == "auto":
        style = "simple" if count == 1 else "brackets"
    if style == "simple":
        return ["image"] * count
    if style == "brackets":
        return ["image[]"] * count
    return [f"image[{i}]" for i in range(count)]


def new_boundary() -> str:
    """A fresh multipart boundary: 128 random bits, as a uuid4 would carry (without importing uuid)."""
    return f"gpt-image-{os.urandom(16).hex()}"


def build_images_body(job: Job) -> Dict[str, Any]:
    """The Images API fields: model, prompt, then only what the user set (never response_format)."""
    body: Dict[str, Any] = {"model": job.model, "prompt": job.prompt}
    body.update(job.params)
    if job.stream:
        body["stream"] = True
    return body


def build_generations_request(job: Job) -> HttpRequest:
    """POST /images/generations as JSON."""
    return build_json_request(job, "/images/generations", build_images_body(job))


def build_edits_request(job: Job, boundary: Optional[str] = None) -> HttpRequest:
    """POST /images/edits as multipart/form-data streamed from disk."""
    fields = [(name, form_value(value)) for name, value in build_images_body(job).items()]
    names = image_field_names(job.field_style, len(job.images))
    files = [FilePart(name, image) for name, image in zip(names, job.images)]
    if job.mask:
        files.append(FilePart("mask", job.mask))
    body, content_type = encode_multipart(fields, files, boundary or new_boundary())
    headers = build_headers(job, content_type)
    url = job.base_url + "/images/edits"
    parts: List[Dict[str, Any]] = [{"name": name, "value": value} for name, value in fields]
    parts += [
        {
            "name": f.name,
            "filename": os.path.basename(f.image.path),
            "content_type": f.image.mime,
            "bytes": f.image.size,
            "path": f.image.path,
        }
        for f in files
    ]
    description = {
        "method": "POST",
        "url": url,
        "headers": _describe_headers(headers, job.api_key),
        "parts": parts,
        "content_length": body.length,
    }
    return HttpRequest("POST", url, headers, body, description)


def build_responses_body(job: Job) -> Dict[str, Any]:
    """The Responses API body: one user message, one image_generation tool, the tool choice."""
    content: List[Dict[str, Any]] = [{"type": "input_text", "text": text} for text in job.input_texts]
    content += [
        {"type": "input_image", "image_url": DataUrl(image), "detail": job.detail} for image in job.images
    ]
    content += [{"type": "input_image", "image_url": url, "detail": job.detail} for url in job.image_urls]
    content += [{"type": "input_image", "file_id": fid, "detail": job.detail} for fid in job.file_ids]
    tool: Dict[str, Any] = {"type": "image_generation", "model": job.model}
    for key, value in job.params.items():
        if key != "user":
            tool[key] = value
    if job.mask:
        tool["input_image_mask"] = {"image_url": DataUrl(job.mask)}
    elif job.mask_file_id:
        tool["input_image_mask"] = {"file_id": job.mask_file_id}
    body: Dict[str, Any] = {
        "model": job.text_model,
        "input": [{"role": "user", "content": content}],
        "tools": [tool],
    }
    if job.tool_choice == "image_generation":
        body["tool_choice"] = {"type": "image_generation"}
    else:
        body["tool_choice"] = job.tool_choice
    if job.previous_response_id:
        body["previous_response_id"] = job.previous_response_id
    if "user" in job.params:
        body["safety_identifier"] = job.params["user"]
    if job.stream:
        body["stream"] = True
    return body


def build_responses_request(job: Job) -> HttpRequest:
    """POST /responses as JSON."""
    return build_json_request(job, "/responses", build_responses_body(job))


class _RetryableFailure(Exception):
    """A connection failure before any response: safe to try again."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _describe_os_error(exc: BaseException) -> str:
    import http.client
    import socket

    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        exc = reason
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (ConnectionResetError, http.client.RemoteDisconnected)):
        return "the connection was closed before a response"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text)


def send(request: HttpRequest, timeout: float) -> http.client.HTTPResponse:
    """Send one request and return the response, whatever its status: the only function on the network.

    Raises _RetryableFailure when the connection fails before a response, NetworkError when no answer comes
    within the timeout after the request went out (not retried: the generation may be running and billed).
    """
    import http.client
    import socket
    import ssl
    import urllib.error
    import urllib.request

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        # urllib would replay the POST as a GET, with the key, to wherever Location points: refuse instead.
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    req = urllib.request.Request(
        request.url,
        data=request.body,
        headers={**request.headers, "Content-Length": str(request.body.length)},
        method=request.method,
    )
    opener = urllib.request.build_opener(NoRedirects)
    try:
        return opener.open(req, timeout=timeout)  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        return exc  # type: ignore[return-value]  # an HTTPError is also the response
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise NetworkError(
                f"TLS certificate verification failed for {request.url}: {reason.verify_message}",
                hint="check the clock, proxy and CA certificates (SSL_CERT_FILE)",
            ) from None
        if isinstance(reason, (BrokenPipeError, ConnectionResetError)):
            # urllib wraps errors raised while the request is written: the server hung up mid-upload, which
            # is how a server refuses a body it will not take (too large, say) before reading all of it.
            raise _RetryableFailure(
                "the server closed the connection while the request was being sent (it may refuse an upload "
                "this large)"
            ) from None
        raise _RetryableFailure(_describe_os_error(exc)) from None
    except (socket.timeout, TimeoutError):
        raise NetworkError(
            f"no response within {timeout:g} s after the request was sent; not retried, since the image may "
            "already be generating and billed",
            hint="raise --timeout (high-quality and large images take minutes), or use --stream",
        ) from None
    except (ConnectionError, http.client.HTTPException, OSError) as exc:
        raise _RetryableFailure(_describe_os_error(exc)) from None


def retry_delay(headers: Any, attempt: int) -> Optional[float]:
    """Seconds to wait before retry number attempt+1: retry-after-ms, retry-after, else jittered backoff.

    Returns None when the server asks for a longer wait than RETRY_AFTER_MAX_S.
    """
    import email.utils
    import random

    wait: Optional[float] = None
    raw_ms = headers.get("retry-after-ms") if headers else None
    raw = headers.get("retry-after") if headers else None
    try:
        if raw_ms is not None:
            wait = float(raw_ms) / 1000.0
    except ValueError:
        wait = None
    if wait is None and raw is not None:
        try:
            wait = float(raw)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(raw)
                wait = when.timestamp() - time.time()
            except (TypeError, ValueError, IndexError, OverflowError):
                wait = None
    if wait is not None and math.isfinite(wait):
        if wait > RETRY_AFTER_MAX_S:
            return None
        if wait >= 0:
            return wait
    backoff = min(BACKOFF_BASE_S * 2.0**attempt, BACKOFF_MAX_S)
    return backoff * (1 - 0.25 * random.random())


def _should_retry(response: http.client.HTTPResponse) -> bool:
    # The API's x-should-retry: false vetoes a retry; "true" never extends retries to other statuses, since
    # any other 4xx fails the same way again (design.md, "Network behaviour").
    if (response.headers.get("x-should-retry") or "").lower() == "false":
        return False
    return response.status in RETRY_STATUSES


def open_response(request: HttpRequest, job: Job, progress: Progress) -> http.client.HTTPResponse:
    """Send with retries (429/5xx and failures before a response); return the final response, any status."""
    attempt = 0
    while True:
        try:
            response = send(request, job.timeout)
        except _RetryableFailure as failure:
            if attempt >= job.retries:
                tries = f" after {attempt + 1} attempts" if attempt else ""
                raise NetworkError(
                    f"cannot reach {request.url}: {failure.reason}{tries}",
                    hint="check the network, proxy and --base-url",
                ) from None
            delay = retry_delay(None, attempt)
            progress.note(f"retrying in {delay:.1f} s ({attempt + 1}/{job.retries}): {failure.reason}")
        else:
            if response.status < 400 or attempt >= job.retries or not _should_retry(response):
                return response
            delay = retry_delay(response.headers, attempt)
            body = _drain(response)
            if delay is None:
                raise api_error(
                    response.status,
                    body,
                    response.headers,
                    extra="the API asked to wait over "
                    f"{RETRY_AFTER_MAX_S:g} s before retrying; try again later",
                )
            progress.note(f"retrying in {delay:.1f} s ({attempt + 1}/{job.retries}): HTTP {response.status}")
        time.sleep(delay or 0)
        attempt += 1


def _drain(response: http.client.HTTPResponse) -> bytes:
    """Read (up to a limit) and close a response that will not be used; return what was read."""
    import http.client

    try:
        return response.read(ERROR_BODY_LIMIT)
    except (OSError, http.client.HTTPException):
        return b""
    finally:
        response.close()


_HINTS = {
    401: "the API key was rejected: check OPENAI_API_KEY (and OPENAI_ORG_ID / OPENAI_PROJECT_ID)",
    404: "check the model name and --base-url; the key's project may not have access to that model",
    413: "the request is too large: use fewer or smaller input images",
}


def api_error(status: int, body: bytes, headers: Any, extra: str = "") -> ApiError:
    """Turn an HTTP error response into an ApiError with the API's message, code, param and request id."""
    try:
        payload = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError):
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if error is None and body:
        error = " ".join(body[:200].decode("utf-8", "replace").split())
    request_id = headers.get("x-request-id") if headers else None
    return error_from_api(error, status, request_id, extra)


def error_from_api(error: Any, status: Optional[int], request_id: Optional[str], extra: str = "") -> ApiError:
    """An ApiError from the API's error object (or text); status is None for an error inside a 200 response."""
    import http.client

    message, code, param, err_type, detail = "", None, None, None, None
    if isinstance(error, dict):
        message = str(error.get("message") or "")
        code, param, err_type = error.get("code"), error.get("param"), error.get("type")
        detail = error.get("moderation_details")
    elif error:
        message = str(error)
    hint = _HINTS.get(status or 0, "")
    if status == 403 and "verif" in message.lower():
        hint = "the organization must be verified to use GPT Image models (platform settings, Organization)"
    elif status == 429:
        hint = (
            "the account is out of credit or over its quota"
            if code == "insufficient_quota"
            else "rate limited: wait a minute, then run again with fewer requests at once"
        )
    elif code == "moderation_blocked" or (
        (err_type or "").endswith("user_error") and "safety" in message.lower()
    ):
        stage = detail.get("moderation_stage") if isinstance(detail, dict) else None
        categories = detail.get("categories") if isinstance(detail, dict) else None
        parts = [f"{stage} stage" if stage else "", ", ".join(map(str, categories)) if categories else ""]
        found = "; ".join(p for p in parts if p)
        hint = (
            "the safety system blocked it"
            + (f" ({found})" if found else "")
            + ": rephrase the prompt or change the input images"
        )
    elif status is not None and status >= 500:
        hint = "the API had a server error; try again later"
    text = (
        "API error" if status is None else f"API error {status} {http.client.responses.get(status, 'error')}"
    )
    tags = [t for t in (str(code) if code else "", f"param {param}" if param else "") if t]
    if tags:
        text += f" ({', '.join(tags)})"
    if message:
        text += f": {message}"
    if extra:
        text += f"; {extra}"
    if request_id:
        text += f" [request {request_id}]"
    return ApiError(
        text, hint=hint, status=status, code=code, param=param, type=err_type, request_id=request_id
    )


# --- Responses ---------------------------------------------------------------------------------------------


class Event(NamedTuple):
    """One server-sent event: its type (default 'message'), data, and last event id."""

    event: str = "message"
    data: Union[bytes, bytearray] = b""
    id: Optional[str] = None
    retry: Optional[int] = None


_BIG_LINE = 64 * 1024


def iter_sse_events(chunks: Iterable[bytes]) -> Iterator[Event]:
    """Parse a text/event-stream incrementally from any iterable of byte chunks.

    Follows the WHATWG HTML event-stream rules: lines end in CRLF, LF or CR (a CRLF may be split across
    chunks); a line starting with ':' is a comment; `field: value` drops one space after the colon; `data`
    lines join with LF; a blank line dispatches the event; an event still open when the stream ends is
    dropped; one leading byte order mark is ignored. Each byte is scanned once, and a long data line is
    handed over without copying it again.
    """
    buffer = bytearray()
    scanned = 0  # bytes of buffer already known to hold no line end
    skip_lf = False  # the previous chunk ended in CR: a leading LF belongs to it
    at_start = True  # a UTF-8 byte order mark may still come, perhaps split across chunks
    cr_seen = False  # until a CR shows up, there is no need to look for one
    event_type = ""
    data_lines: List[bytearray] = []
    last_id: Optional[str] = None
    retry: Optional[int] = None
    for chunk in chunks:
        if not chunk:
            continue
        if skip_lf:
            skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buffer += chunk
        cr_seen = cr_seen or b"\r" in chunk
        if at_start:
            if len(buffer) < 3 and b"\xef\xbb\xbf".startswith(buffer):
                continue
            at_start = False
            if buffer[:3] == b"\xef\xbb\xbf":
                del buffer[:3]
        while True:
            # The earliest CR or LF, each found with memchr: a regex scans ~100x slower on big data lines.
            end = buffer.find(b"\n", scanned)
            if cr_seen:
                cr = buffer.find(b"\r", scanned, end if end >= 0 else len(buffer))
                end = cr if cr >= 0 else end
            if end < 0:
                scanned = len(buffer)
                break
            consumed = end + 1
            if buffer[end] == 13:  # CR: swallow a following LF, or remember to if it is not here yet
                if consumed < len(buffer):
                    if buffer[consumed] == 10:
                        consumed += 1
                else:
                    skip_lf = True
            if end >= _BIG_LINE:
                # Hand the buffer itself over as the line and keep only the rest: no copy of a huge line.
                rest = buffer[consumed:]
                del buffer[end:]
                line, buffer = buffer, rest
            else:
                line = buffer[:end]
                del buffer[:consumed]
            scanned = 0
            if not line:
                if data_lines:  # WHATWG: dispatch when any data line came, even an empty one
                    data = data_lines[0] if len(data_lines) == 1 else bytearray(b"\n".join(data_lines))
                    yield Event(event_type or "message", data, last_id, retry)
                    del data  # drop the event's data line (tens of MB) before the next one piles up
                event_type, data_lines, value = "", [], bytearray()
                continue
            if line[:1] == b":":
                continue
            colon = line.find(b":")
            if colon < 0:
                name, value = bytes(line), bytearray()
            else:
                name = bytes(line[:colon])
                cut = colon + 2 if line[colon + 1 : colon + 2] == b" " else colon + 1
                del line[:cut]  # O(1) at the front of a bytearray
                value = line
            if name == b"data":
                data_lines.append(value)
            elif name == b"event":
                event_type = value.decode("utf-8", "replace")
            elif name == b"id":
                if b"\0" not in value:
                    last_id = value.decode("utf-8", "replace")
            elif name == b"retry" and value.isdigit():
                retry = int(value)


_BLOB_KEY_RE = re.compile(rb'"(?:b64_json|partial_image_b64|result)"\s*:\s*"')
_BLOB_MARK = "\x00blob:"


def decode_json_lean(data: Union[bytes, bytearray]) -> Tuple[Any, List[memoryview]]:
    """json.loads that leaves large base64 image strings in place and returns them as memoryviews.

    The JSON parser then sees a small skeleton instead of tens of megabytes of base64; the blobs are decoded
    straight from the received buffer. A string with an escape in it goes through the normal parser.
    """
    blobs: List[memoryview] = []
    pieces: List[Any] = []
    view = memoryview(data)
    pos = keep_from = 0
    while True:
        match = _BLOB_KEY_RE.search(data, pos)
        if match is None:
            break
        start = match.end()
        end = data.find(b'"', start)
        if end < 0:
            break
        pos = end + 1
        if end - start < 1024 or data.find(b"\\", start, end) >= 0:
            continue
        pieces.append(view[keep_from:start])
        pieces.append(b"\\u0000blob:%d" % len(blobs))
        blobs.append(view[start:end])
        keep_from = end
    if not blobs:
        return json.loads(data), blobs
    pieces.append(view[keep_from:])
    return json.loads(b"".join(pieces)), blobs


def decode_image(value: Any, blobs: Sequence[memoryview], what: str) -> bytes:
    """Decode a base64 image (a plain string or a lean blob) and check it really is PNG, JPEG or WEBP."""
    try:
        if isinstance(value, str) and value.startswith(_BLOB_MARK):
            blob = blobs[int(value[len(_BLOB_MARK) :])]
            image = binascii.a2b_base64(blob)
            padding = 2 if blob[-2:].tobytes() == b"==" else 1 if blob[-1:].tobytes() == b"=" else 0
            if len(image) != len(blob) * 3 // 4 - padding:
                raise ValueError("characters outside the base64 alphabet")
        elif isinstance(value, str):
            image = base64.b64decode("".join(value.split()), validate=True)
        else:
            raise ResponseError(f"{what} has no base64 image data")
    except (binascii.Error, ValueError, IndexError) as exc:
        raise ResponseError(
            f"{what}: the base64 image data does not decode ({exc})",
            hint="the response was damaged; run again",
        ) from None
    if not image:
        raise ResponseError(f"{what}: the image data is empty")
    if sniff_format(image[:16]) is None:
        raise ResponseError(f"{what}: the decoded data is not a PNG, JPEG or WEBP image")
    return image


class Progress:
    """Progress and notices on stderr: an updating line on a terminal, plain milestone lines otherwise."""

    def __init__(self, quiet: bool, stream: Optional[IO[str]] = None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.label = ""
        self.partials = 0
        self._status_width = 0  # characters of the status line now on the terminal (0: none)
        self._lock = _thread.allocate_lock()  # threading itself is loaded only for a terminal's ticker
        self._stop: Optional[threading.Event] = None
        self._ticker: Optional[threading.Thread] = None

    def _clear_status(self) -> None:
        # Spaces, not the ESC [K sequence, which older Windows consoles print literally.
        if self._status_width:
            self.stream.write("\r" + " " * self._status_width + "\r")
            self._status_width = 0

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            return 80

    def _write(self, text: str) -> None:
        with self._lock:
            self._clear_status()
            self.stream.write(redact(text) + "\n")
            self.stream.flush()

    def say(self, message: str) -> None:
        """A line that --quiet does not hide (a result, such as the response id)."""
        self._write(message)

    def warn(self, message: str) -> None:
        """A warning, shown even with --quiet."""
        self._write(f"warning: {message}")

    def note(self, message: str) -> None:
        """A milestone or notice, hidden by --quiet."""
        if not self.quiet:
            self._write(message)

    def begin(self, label: str) -> None:
        """Start timing a call: a ticking status line on a terminal, one plain line otherwise."""
        self.label = label
        self.started = time.monotonic()
        if self.quiet:
            return
        if not self.tty:
            self._write(label)
            return
        import threading

        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="gpt-image-progress", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        assert self._stop is not None
        while not self._stop.wait(0.5):
            elapsed = time.monotonic() - self.started
            tail = f" {elapsed:.0f}s" + (f", {self.partials} preview(s)" if self.partials else "")
            # One line shorter than the terminal: a wrapped status line could not be rewritten in place.
            room = max(self._columns() - 1 - len(tail), 12)
            label = self.label if len(self.label) <= room else self.label[: room - 3] + "..."
            status = redact(label + tail)
            with self._lock:
                self.stream.write("\r" + status.ljust(self._status_width))
                self.stream.flush()
                self._status_width = len(status)

    def partial(self, path: str) -> None:
        """A preview was saved."""
        self.partials += 1
        self.note(f"preview {self.partials} saved: {path}")

    def end(self) -> None:
        """Stop the status line."""
        if self._stop is not None:
            self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=1)
            self._ticker = None
        with self._lock:
            if self._status_width:
                self._clear_status()
                self.stream.flush()

    def elapsed(self) -> float:
        """Seconds since begin()."""
        return time.monotonic() - self.started


class OutputWriter:
    """Writes every output file atomically (a temporary file in the same folder, then a rename).

    Temporary files are removed on any failure; a file that existed before the run is replaced only with
    --overwrite, and only by a complete new file.
    """

    def __init__(self, overwrite: bool) -> None:
        self.overwrite = overwrite
        self.written: List[str] = []

    def _claim(self, path: str) -> str:
        """The path to write; an unplanned file that appeared meanwhile gets a free name instead."""
        if self.overwrite or not os.path.lexists(path):
            return path
        root, ext = os.path.splitext(path)
        counter = 2
        while os.path.lexists(f"{root}.{counter}{ext}"):
            counter += 1
        return f"{root}.{counter}{ext}"

    def rescue(self, path: str, data: Union[bytes, bytearray, memoryview]) -> Optional[str]:
        """Keep a paid-for image that could not go to path in the temporary folder; its path, or None."""
        import tempfile

        try:
            fd, rescued = tempfile.mkstemp(prefix="gpt-image-", suffix=os.path.splitext(path)[1])
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        except OSError:
            return None
        self.written.append(rescued)
        return rescued

    def write(self, path: str, data: Union[bytes, bytearray, memoryview]) -> str:
        """Write data to path atomically; return the path actually written."""
        return self.write_chunks(path, [data])

    def write_chunks(self, path: str, chunks: Iterable[Union[bytes, bytearray, memoryview]]) -> str:
        """Write chunks to path atomically; return the path actually written."""
        import tempfile

        target = self._claim(path)
        folder = os.path.dirname(os.path.abspath(target))
        os.makedirs(folder, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except BaseException:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise
        self.written.append(target)
        return target


class RawSink:
    """--save-response: the response bytes streamed to a temporary file as they arrive, renamed at the end.

    Any registered secret is replaced by *** even when it straddles two chunks.
    """

    def __init__(self, path: str) -> None:
        import tempfile

        self.path = path
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, self.temp = tempfile.mkstemp(
            prefix="." + os.path.basename(path) + ".", suffix=".part", dir=folder
        )
        self.handle: Optional[IO[bytes]] = os.fdopen(fd, "wb")
        self.secrets = [s.encode("utf-8") for s in _SECRETS]
        self.hold = max((len(s) for s in self.secrets), default=1) - 1
        self.pending = b""
        self.failure: Optional[OSError] = None  # a write that failed (disk full): reported at commit()

    def write(self, chunk: bytes) -> None:
        """Append a chunk of the raw response; a failing disk stops the copy, not the download."""
        if self.handle is None or self.failure is not None:
            return
        try:
            if not self.secrets:
                self.handle.write(chunk)
                return
            data = self.pending + chunk
            for secret in self.secrets:
                data = data.replace(secret, b"***")
            cut = max(len(data) - self.hold, 0)
            self.handle.write(data[:cut])
            self.pending = data[cut:]
        except OSError as exc:
            self.failure = exc

    def commit(self) -> str:
        """Finish the file and move it into place (raises the OSError of a failed write)."""
        assert self.handle is not None
        if self.failure is not None:
            raise self.failure
        self.handle.write(self.pending)
        self.handle.close()
        self.handle = None
        os.replace(self.temp, self.path)
        return self.path

    def discard(self) -> None:
        """Remove the temporary file."""
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        try:
            os.unlink(self.temp)
        except OSError:
            pass


class SavedImage:
    """An image written to disk."""

    def __init__(
        self, path: str, index: int, size: int, fmt: str, revised_prompt: Optional[str] = None
    ) -> None:
        self.path = path
        self.index = index
        self.bytes = size
        self.format = fmt
        self.revised_prompt = revised_prompt

    def as_dict(self) -> Dict[str, Any]:
        """The JSON form used in --json output."""
        return {"path": self.path, "index": self.index, "bytes": self.bytes, "format": self.format}


class Collector:
    """Receives decoded images as they arrive and writes them to their planned paths at once."""

    def __init__(self, job: Job, writer: OutputWriter, progress: Progress) -> None:
        self.job = job
        self.writer = writer
        self.progress = progress
        self.images: List[SavedImage] = []
        self.partials: List[SavedImage] = []
        self.unsaved: List[str] = []  # finals that could not be written where planned, with where they went
        self.usage: Optional[Dict[str, Any]] = None
        self.response_id: Optional[str] = None
        self.text: List[str] = []
        self.item_index: Dict[str, int] = {}  # responses: image_generation_call id -> final image index
        self.done_items: Set[str] = set()
        self.response_id_shown = False

    def announce_response_id(self) -> None:
        """Show the response id on stderr once, even with --quiet: it is how a follow-up continues."""
        if self.response_id and not self.response_id_shown and not self.job.as_json:
            self.progress.say(f"response id: {self.response_id}")
            self.response_id_shown = True

    def index_for(self, item_id: Optional[str]) -> int:
        """The final-image index of a Responses image call; without an id, that of the next final image."""
        if item_id is None:
            return len(self.images) + 1
        if item_id not in self.item_index:
            self.item_index[item_id] = max(len(self.item_index), len(self.images)) + 1
        return self.item_index[item_id]

    def _check_format(self, data: bytes, what: str) -> str:
        fmt = sniff_format(data[:16]) or self.job.output_format
        if fmt != self.job.output_format:
            self.progress.warn(f"{what} came back as {fmt}, not {self.job.output_format}; saved as is")
        return fmt

    def partial(self, index: int, k: int, data: bytes) -> None:
        """Save preview k (1-based) of final image `index`; a preview that cannot be written is skipped."""
        fmt = self._check_format(data, f"preview {k}")
        target = self.job.outputs.partial(index, k)
        try:
            path = self.writer.write(target, data)
        except OSError as exc:
            self.progress.warn(f"could not write preview {target}: {exc.strerror or exc}; skipped")
            return
        self.partials.append(SavedImage(path, k, len(data), fmt))
        self.progress.partial(path)

    def final(self, data: bytes, index: Optional[int] = None, revised_prompt: Any = None) -> None:
        """Save a final image; without an index, it is the next one.

        The image is paid for: when its path cannot be written (disk full, permissions, a file locked by a
        viewer on Windows), it is kept in the temporary folder instead and perform() reports where.
        """
        index = index if index is not None else len(self.images) + len(self.unsaved) + 1
        fmt = self._check_format(data, f"image {index}")
        target = self.job.outputs.final(index)
        try:
            path = self.writer.write(target, data)
        except OSError as exc:
            rescued = self.writer.rescue(target, data)
            where = f"kept at {rescued}" if rescued else "and could not be kept anywhere"
            self.unsaved.append(f"could not write {target} ({exc.strerror or exc}); the image is {where}")
            return
        if path != target:
            self.progress.warn(f"{target} appeared during the run, so the image was saved as {path}")
        prompt = revised_prompt if isinstance(revised_prompt, str) and revised_prompt else None
        self.images.append(SavedImage(path, index, len(data), fmt, prompt))
        self.progress.note(f"image {index} saved: {path}")


def _error_from_payload(
    error: Any, fallback: str = "the API reported an error", request_id: Optional[str] = None
) -> ApiError:
    """An ApiError from an error object that arrived inside a 200 response (a body or an event)."""
    return error_from_api(error if error else {"message": fallback}, None, request_id)


def read_images_body(obj: Any, blobs: Sequence[memoryview], collector: Collector) -> None:
    """A non-streamed Images API response: data[].b64_json, usage."""
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise ResponseError("the response has no data list of images")
    for position, item in enumerate(obj["data"], start=1):
        if not isinstance(item, dict):
            raise ResponseError(f"image {position} in the response is not an object")
        if item.get("b64_json") is None and item.get("url"):
            raise ResponseError(
                "the API returned an image URL, not image data (a DALL-E style reply)",
                hint="use a GPT image model; this tool saves base64 image data only",
            )
        collector.final(
            decode_image(item.get("b64_json"), blobs, f"image {position}"),
            position,
            item.get("revised_prompt"),
        )
    if isinstance(obj.get("usage"), dict):
        collector.usage = obj["usage"]


def read_images_event(obj: Dict[str, Any], blobs: Sequence[memoryview], collector: Collector) -> None:
    """One Images API stream event: image_generation.* or image_edit.* partial_image / completed."""
    kind = str(obj.get("type", ""))
    if kind.endswith(".partial_image"):
        k = _partial_number(obj.get("partial_image_index"), collector)
        collector.partial(1, k, decode_image(obj.get("b64_json"), blobs, f"preview {k}"))
    elif kind.endswith(".completed"):
        collector.final(
            decode_image(obj.get("b64_json"), blobs, "the final image"), None, obj.get("revised_prompt")
        )
        if isinstance(obj.get("usage"), dict):
            collector.usage = obj["usage"]


def _partial_number(raw: Any, collector: Collector) -> int:
    try:
        return int(raw) + 1
    except (TypeError, ValueError):
        return len(collector.partials) + 1


def read_responses_body(obj: Any, blobs: Sequence[memoryview], collector: Collector) -> None:
    """A non-streamed Responses API response: image_generation_call items, message text, usage, status."""
    if not isinstance(obj, dict):
        raise ResponseError("the response is not a JSON object")
    collector.response_id = obj.get("id") or collector.response_id
    if isinstance(obj.get("usage"), dict):
        collector.usage = obj["usage"]
    status = obj.get("status")
    output = obj["output"] if isinstance(obj.get("output"), list) else []
    for item in output:
        if isinstance(item, dict):
            read_output_item(item, blobs, collector)
    if status == "failed":
        raise _error_from_payload(obj.get("error"), fallback="the response failed")
    if status == "incomplete":
        details = obj.get("incomplete_details") or {}
        reason = details.get("reason") if isinstance(details, dict) else None
        raise _error_from_payload(
            {"message": f"the response is incomplete ({reason or 'no reason given'})", "code": reason}
        )


def read_output_item(item: Dict[str, Any], blobs: Sequence[memoryview], collector: Collector) -> None:
    """One Responses output item: save an image call's result, keep message text."""
    kind = item.get("type")
    if kind == "image_generation_call":
        item_id = item.get("id")
        if item_id is not None and item_id in collector.done_items:
            return
        if item.get("status") == "failed":
            raise _error_from_payload(item.get("error") or {"message": "the image generation call failed"})
        if item.get("result") is None:
            return
        collector.final(
            decode_image(item.get("result"), blobs, "the generated image"),
            collector.index_for(item_id),
            item.get("revised_prompt"),
        )
        if item_id is not None:
            collector.done_items.add(item_id)
    elif kind == "message":
        if item.get("id") is not None:
            if item["id"] in collector.done_items:
                return
            collector.done_items.add(item["id"])
        for part in item.get("content") or []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                collector.text.append(part["text"])


def read_responses_event(obj: Dict[str, Any], blobs: Sequence[memoryview], collector: Collector) -> None:
    """One Responses stream event: previews, the finished image item, and the terminal events."""
    kind = obj.get("type")
    response = obj.get("response") if isinstance(obj.get("response"), dict) else None
    if kind == "response.created" and response:
        collector.response_id = response.get("id")
        if collector.response_id:
            collector.announce_response_id()
    elif kind == "response.image_generation_call.partial_image":
        k = _partial_number(obj.get("partial_image_index"), collector)
        index = collector.index_for(obj.get("item_id"))
        collector.partial(index, k, decode_image(obj.get("partial_image_b64"), blobs, f"preview {k}"))
    elif kind == "response.output_item.done" and isinstance(obj.get("item"), dict):
        read_output_item(obj["item"], blobs, collector)
    elif kind in ("response.failed", "response.incomplete"):
        # The event type is the verdict, even when its response object lacks a status (or is missing).
        read_responses_body(dict(response or {}, status=kind.split(".", 1)[1]), blobs, collector)
    elif kind == "response.completed" and response:
        read_responses_body(response, blobs, collector)
    elif kind == "error":
        raise _error_from_payload(obj)


Reader = Callable[[Any, Sequence[memoryview], Collector], None]


def iter_body(
    response: http.client.HTTPResponse, sink: Optional[RawSink], timeout: float, collector: Collector
) -> Iterator[bytes]:
    """The response body in chunks as they arrive, copied to the --save-response sink on the way."""
    import http.client
    import socket

    read = getattr(response, "read1", None) or response.read
    while True:
        try:
            chunk = read(CHUNK_BYTES)
        except (socket.timeout, TimeoutError):
            raise NetworkError(
                f"the response stalled for {timeout:g} s and was abandoned; not retried, since the image may "
                "already be billed" + _kept(collector),
                hint="raise --timeout, or run again",
            ) from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            reason = (
                "reset by the server" if isinstance(exc, ConnectionResetError) else _describe_os_error(exc)
            )
            raise NetworkError(
                f"the connection broke while the response was arriving ({reason}); not "
                "retried, since the image may already be billed" + _kept(collector),
                hint="run again; --stream shows previews as they arrive",
            ) from None
        if not chunk:
            # read1() reports a connection closed before Content-Length as a plain end of data.
            missing = getattr(response, "length", None)
            if isinstance(missing, int) and missing > 0:
                raise NetworkError(
                    f"the connection broke {missing:,} bytes before the end of the response; not retried, "
                    "since the image may already be billed" + _kept(collector),
                    hint="run again; --stream shows previews as they arrive",
                )
            return
        if sink is not None:
            sink.write(chunk)
        yield chunk


def _kept(collector: Collector) -> str:
    if collector.partials:
        return f"; {len(collector.partials)} preview(s) kept, the last at {collector.partials[-1].path}"
    return ""


def _until_broken(chunks: Iterator[bytes], job: Job, collector: Collector) -> Iterator[bytes]:
    """Pass the stream on; if it breaks after every final image was saved, warn and end it instead."""
    try:
        yield from chunks
    except NetworkError:
        if len(collector.images) + len(collector.unsaved) < job.n:
            raise
        collector.progress.warn(
            "the event stream broke after the final image had arrived; the image is saved, the usage "
            "report may be missing"
        )


def read_error_body(
    response: http.client.HTTPResponse, sink: Optional[RawSink], job: Job, collector: Collector
) -> bytes:
    """Up to ERROR_BODY_LIMIT bytes of an error response; a body cut short still leaves a status to report."""
    body = bytearray()
    try:
        for chunk in iter_body(response, sink, job.timeout, collector):
            body += chunk
            if len(body) >= ERROR_BODY_LIMIT:
                break
    except NetworkError:
        pass  # nothing was generated, so nothing is billed: the status and what arrived say enough
    return bytes(body[:ERROR_BODY_LIMIT])


def consume_response(
    response: http.client.HTTPResponse,
    job: Job,
    collector: Collector,
    sink: Optional[RawSink],
    read_body: Reader,
    read_event: Reader,
) -> None:
    """Read a successful response, JSON or event stream (by Content-Type), handing images to the collector."""
    content_type = (response.headers.get("content-type") or "").lower()
    chunks = iter_body(response, sink, job.timeout, collector)
    if "text/event-stream" in content_type:
        for event in iter_sse_events(_until_broken(chunks, job, collector)):
            if event.data.strip() == b"[DONE]":
                break
            if not event.data.strip():  # an empty `data:` event is a keep-alive some proxies send
                continue
            try:
                obj, blobs = decode_json_lean(event.data)
            except ValueError:
                raise ResponseError(
                    f"malformed JSON in a {event.event!r} event of the stream",
                    hint="run again; --save-response keeps the raw stream for a report",
                ) from None
            if not isinstance(obj, dict):
                raise ResponseError(f"a {event.event!r} event of the stream is not a JSON object")
            event_type = str(obj.get("type", ""))
            # An `error` event may carry its fields at the top level, without an "error" object (both routes).
            if (obj.get("error") or event_type == "error") and not event_type.startswith("response."):
                raise _error_from_payload(
                    obj["error"] if obj.get("error") else obj, request_id=response.headers.get("x-request-id")
                )
            read_event(obj, blobs, collector)
            del event, obj, blobs  # free this event's buffer now, not when the next event is complete
        if not (collector.images or collector.unsaved):
            raise ResponseError(
                "the event stream ended before the final image arrived; the image may still be "
                "billed" + _kept(collector),
                hint="run again",
            )
        return
    body = bytearray()
    for chunk in chunks:
        body += chunk
    try:
        obj, blobs = decode_json_lean(body)
    except ValueError:
        snippet = " ".join(bytes(body[:120]).decode("utf-8", "replace").split())
        raise ResponseError(
            f"the response is not valid JSON ({len(body):,} bytes, starting {snippet!r})",
            hint="check --base-url points at the API; run again",
        ) from None
    if isinstance(obj, dict) and obj.get("error"):
        raise _error_from_payload(obj["error"], request_id=response.headers.get("x-request-id"))
    read_body(obj, blobs, collector)
    if not (collector.images or collector.unsaved):
        said = " ".join(collector.text).strip()
        raise ResponseError(
            "the response holds no image" + (f"; the model said: {said[:300]}" if said else ""),
            hint="make the request explicit about wanting an image" if said else "run again",
        )


class Outcome:
    """The result of a run, for printing."""

    def __init__(
        self,
        job: Job,
        collector: Optional[Collector] = None,
        request_id: Optional[str] = None,
        elapsed: float = 0.0,
        dry_run: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.job = job
        self.collector = collector
        self.request_id = request_id
        self.elapsed = elapsed
        self.dry_run = dry_run
        self.saved_response: Optional[str] = None
        self.metadata: List[str] = []


def describe_dry_run(job: Job, request: HttpRequest) -> Dict[str, Any]:
    """The --dry-run object: the exact request (key redacted) and the planned output files."""
    described: Dict[str, Any] = {"ok": True, "dry_run": True, "command": job.command, "model": job.model}
    if job.text_model:
        described["text_model"] = job.text_model
    described.update(request.description)
    finals = [job.outputs.final(i) for i in range(1, job.outputs.count + 1)]
    described["outputs"] = {
        "images": finals,
        "partials": [
            job.outputs.partial(i, k)
            for i in range(1, job.outputs.count + 1)
            for k in range(1, job.partial_images + 1)
        ],
        "save_response": job.save_response,
        "metadata": [metadata_path(p) for p in finals] if job.metadata else [],
    }
    described["timeout_s"] = job.timeout
    described["retries"] = job.retries
    described["estimated_cost"] = estimate_cost(job)
    described["warnings"] = job.warnings
    return described


def perform(job: Job, request: HttpRequest, read_body: Reader, read_event: Reader) -> Outcome:
    """Send the request (or describe it for --dry-run) and save what comes back."""
    if job.dry_run:
        return Outcome(job, dry_run=describe_dry_run(job, request))
    progress = Progress(job.quiet)
    writer = OutputWriter(job.overwrite)
    collector = Collector(job, writer, progress)
    what = "streaming" if job.stream else "waiting for"
    progress.begin(f"{job.command}: {what} {job.model} at {request.url}")
    sink: Optional[RawSink] = None
    try:
        response = open_response(request, job, progress)
        request_id = response.headers.get("x-request-id")
        with response:
            if job.save_response:
                try:
                    sink = RawSink(job.save_response)
                except OSError as exc:
                    raise OutputError(
                        f"cannot write --save-response {job.save_response}: {exc.strerror or exc}"
                    ) from None
            if 300 <= response.status < 400:
                location = response.headers.get("location") or "an unnamed address"
                raise ApiError(
                    f"API error {response.status}: redirected to {location}; not followed, so the key and the "
                    "request stay with --base-url",
                    hint="set --base-url (or OPENAI_BASE_URL) to the final address",
                    status=response.status,
                    request_id=request_id,
                )
            if response.status >= 400:
                raise api_error(
                    response.status, read_error_body(response, sink, job, collector), response.headers
                )
            consume_response(response, job, collector, sink, read_body, read_event)
    except BaseException as exc:
        progress.end()
        if sink is not None:
            # Keep what arrived when the API answered with an error; drop it on a local failure or Ctrl-C.
            try:
                if isinstance(exc, (ApiError, ResponseError, NetworkError)):
                    sink.commit()
                else:
                    sink.discard()
            except OSError:
                sink.discard()
        raise
    progress.end()
    outcome = Outcome(job, collector, request_id, progress.elapsed())
    try:
        if sink is not None:
            outcome.saved_response = sink.commit()
        if job.metadata:
            outcome.metadata = write_metadata(job, request, outcome, writer)
    except OSError as exc:
        if sink is not None:
            sink.discard()
        saved = ", ".join(image.path for image in collector.images)
        raise OutputError(
            f"could not write {exc.filename or 'an output file'}: {exc.strerror or exc}"
            + (f"; the images are saved: {saved}" if saved else ""),
            hint="free some space or fix the folder's permissions",
        ) from None
    if collector.unsaved:
        saved = ", ".join(image.path for image in collector.images)
        raise OutputError(
            "; ".join(collector.unsaved) + (f"; saved as planned: {saved}" if saved else ""),
            hint="the image was paid for: copy it from there; running again would pay again",
        )
    if collector.text and not job.quiet:
        progress.note("model said: " + " ".join(collector.text).strip()[:500])
    return outcome


def write_metadata(job: Job, request: HttpRequest, outcome: Outcome, writer: OutputWriter) -> List[str]:
    """Write a <image>.json sidecar per final image, so a result can be traced and reproduced."""
    assert outcome.collector is not None
    collector = outcome.collector
    sent = request.description.get("body")
    if sent is None:  # multipart: a repeated field (image[]) becomes a list, so no image is lost
        sent = {}
        for part in request.description.get("parts", []):
            value = part.get("value", part.get("path"))
            if part["name"] not in sent:
                sent[part["name"]] = value
            elif isinstance(sent[part["name"]], list):
                sent[part["name"]].append(value)
            else:
                sent[part["name"]] = [sent[part["name"]], value]
    inputs = [
        {"path": img.path, "sha256": file_sha256(img.path), "bytes": img.size}
        for img in job.images + ([job.mask] if job.mask else [])
    ]
    written = []
    for image in collector.images:
        record = {
            "tool": f"gpt-image-2 {__version__}",
            "command": job.command,
            "model": job.model,
            "text_model": job.text_model,
            "prompt": job.prompt,
            "input_texts": job.input_texts or None,
            "revised_prompt": image.revised_prompt,
            "url": request.url,
            "sent": sent,
            "inputs": inputs,
            "image": image.as_dict(),
            "request_id": outcome.request_id,
            "response_id": collector.response_id,
            "usage": collector.usage,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "elapsed_s": round(outcome.elapsed, 3),
        }
        text = redact(json.dumps(record, indent=2, ensure_ascii=False)) + "\n"
        written.append(writer.write(metadata_path(image.path), text.encode("utf-8")))
    return written


# --- Subcommands -------------------------------------------------------------------------------------------


def cmd_generations(job: Job) -> Outcome:
    """Text to image through POST /images/generations."""
    return perform(job, build_generations_request(job), read_images_body, read_images_event)


def cmd_edits(job: Job) -> Outcome:
    """Edit or combine images through POST /images/edits (multipart)."""
    return perform(job, build_edits_request(job), read_images_body, read_images_event)


def cmd_responses(job: Job) -> Outcome:
    """Generate or edit through POST /responses with the image_generation tool."""
    return perform(job, build_responses_request(job), read_responses_body, read_responses_event)


# --- CLI ---------------------------------------------------------------------------------------------------

_SUMMARY, _, _REST = (__doc__ or "").partition("\n\n")
_EXIT_CODES = "Exit codes:" + (__doc__ or "").split("Exit codes:", 1)[-1].rstrip()

GENERATIONS_EXAMPLES = """examples:
  gpt_image.py generations --prompt "A bold product hero image" --output out/hero.png --size 1536x1024 --quality high
  gpt_image.py generations --prompt "A cinematic city skyline at night" --output out/skyline-{index}.webp --n 3 --compression 90
  gpt_image.py generations --prompt "A minimal cover image" --output out/cover.png --stream --partial-images 2
  gpt_image.py generations --prompt "A minimal cover image" --output out/cover.png --dry-run
"""
EDITS_EXAMPLES = """examples:
  gpt_image.py edits --prompt "Replace the sky with a sunset" --image photo.png --mask mask.png --output out/sunset.png
  gpt_image.py edits --prompt "Blend the two into one illustration" --image a.png --image b.png --output out/blend-{index}.png --n 2

The mask is a PNG with an alpha channel, the size of the first image; its fully transparent pixels mark
where to edit. One image is sent as the field `image`, several as `image[]` (--image-field-style).
"""
RESPONSES_EXAMPLES = """examples:
  gpt_image.py responses --input-text "Generate a poster for an AI developer summit" --output out/poster-{index}.png --stream --partial-images 2
  gpt_image.py responses --input-text "Turn this product shot into a studio ad" --input-image product.png --output out/studio.png --action edit
  gpt_image.py responses --input-text "Now make it blue" --previous-response-id resp_123 --output out/blue.png

The response id is printed on stderr (response_id with --json): pass it to --previous-response-id to continue.
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors become UsageError (one line, exit 2) instead of exiting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations: `--js` must not silently mean --json (or a flag added later).
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, hint=f"see '{self.prog} --help'")


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=34, width=110)


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser: shared options in a parent, one subparser per route."""
    common = _Parser(add_help=False, formatter_class=_formatter)
    req = common.add_argument_group("prompt and output")
    req.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="PATH",
        help="where to save the image: a path, or a pattern with {index} (1-based); several images "
        "without {index} get -N before the extension; the extension sets the format",
    )
    req.add_argument(
        "-p", "--prompt", metavar="TEXT", help="what to make or change (up to 32,000 characters)"
    )
    req.add_argument("--prompt-file", metavar="PATH", help="read the prompt from a UTF-8 file ('-' = stdin)")
    img = common.add_argument_group(
        "image options (sent only when set; a non-png extension sets output_format; "
        "OPENAI_IMAGE_<NAME> sets defaults for size, quality, background, format, compression, moderation, user)"
    )
    img.add_argument(
        "-s",
        "--size",
        metavar="WxH",
        help="auto or WIDTHxHEIGHT; gpt-image-2: multiples of 16, edges <= 3840, ratio <= 3:1, "
        "655,360 to 8,294,400 pixels (e.g. 1024x1024, 1536x1024, 3840x2160)",
    )
    img.add_argument(
        "-q",
        "--quality",
        metavar="{" + ",".join(QUALITIES) + "}",
        help="low, medium, high or auto (xhigh and max on gpt-image-2.5 and later)",
    )
    img.add_argument(
        "--background",
        choices=BACKGROUNDS,
        help="transparent needs png or webp (and --allow-transparent on gpt-image-2)",
    )
    img.add_argument(
        "--format",
        metavar="{png,jpeg,webp}",
        help="output format; by default taken from the --output extension",
    )
    img.add_argument("--compression", type=int, metavar="0-100", help="jpeg/webp compression level")
    img.add_argument("--moderation", choices=MODERATIONS, help="content filtering strictness (not for edits)")
    img.add_argument("--user", metavar="ID", help="an end-user id for abuse monitoring")
    img.add_argument(
        "--allow-transparent",
        action="store_true",
        help="send --background transparent even where the model only previews it",
    )
    img.add_argument("--stream", action="store_true", help="stream the result; needed for --partial-images")
    img.add_argument(
        "--partial-images",
        type=int,
        metavar="0-3",
        help="previews to save while streaming, as <output>.partial-K.<ext>",
    )
    run = common.add_argument_group("running")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the exact request as JSON and send nothing (no key needed)",
    )
    run.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of paths")
    run.add_argument("--save-response", metavar="PATH", help="save the raw response (JSON or event stream)")
    run.add_argument(
        "--metadata",
        action="store_true",
        help="write <image>.json beside each image: prompt, parameters, ids, usage, input hashes",
    )
    run.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    run.add_argument(
        "--quiet",
        action="store_true",
        help="no progress lines on stderr (warnings, errors and the response id stay)",
    )
    run.add_argument("--env-file", metavar="PATH", help="read configuration from this .env file")
    run.add_argument(
        "--base-url", metavar="URL", help=f"API base URL (env OPENAI_BASE_URL; {DEFAULT_BASE_URL})"
    )
    run.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help=f"give up after this long without data (default {DEFAULT_TIMEOUT_S:g})",
    )
    run.add_argument(
        "--retries",
        type=int,
        metavar="N",
        help=f"retries on HTTP 429, 500, 502, 503, 504 and connection failures (default {DEFAULT_RETRIES}; 0 = none)",
    )

    parser = _Parser(
        prog=PROG,
        description=_SUMMARY + "\n\n" + _REST.split("Exit codes:")[0].strip(),
        epilog=_EXIT_CODES,
        formatter_class=_formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="{generations,edits,responses}")

    gen = subparsers.add_parser(
        "generations",
        parents=[common],
        formatter_class=_formatter,
        help="text to image (POST /images/generations)",
        description="Create images from a text prompt.",
        epilog=GENERATIONS_EXAMPLES + "\n" + _EXIT_CODES,
    )
    gen.add_argument(
        "-m", "--model", help=f"image model (env OPENAI_IMAGE_MODEL; default {DEFAULT_IMAGE_MODEL})"
    )
    gen.add_argument("-n", "--n", type=int, metavar="1-10", help="how many images (default 1)")
    gen.set_defaults(func=cmd_generations)

    edit = subparsers.add_parser(
        "edits",
        parents=[common],
        formatter_class=_formatter,
        help="edit or combine images (POST /images/edits)",
        description="Edit one image, or combine up to 16, guided by a prompt and a mask.",
        epilog=EDITS_EXAMPLES + "\n" + _EXIT_CODES,
    )
    edit.add_argument(
        "-m", "--model", help=f"image model (env OPENAI_IMAGE_MODEL; default {DEFAULT_IMAGE_MODEL})"
    )
    edit.add_argument(
        "-i",
        "--image",
        action="append",
        metavar="PATH",
        help="an input image (PNG, JPEG or WEBP, <= 50 MB); repeat for up to 16",
    )
    edit.add_argument("--mask", metavar="PATH", help="PNG with alpha, same size as the first image, < 4 MB")
    edit.add_argument(
        "--image-field-style",
        choices=FIELD_STYLES,
        help="multipart field names: auto (image, or image[] for several), simple, brackets, indexed",
    )
    edit.add_argument("-n", "--n", type=int, metavar="1-10", help="how many images (default 1)")
    edit.add_argument(
        "--input-fidelity",
        choices=INPUT_FIDELITIES,
        help="how closely to keep input details (not for gpt-image-2)",
    )
    edit.set_defaults(func=cmd_edits)

    resp = subparsers.add_parser(
        "responses",
        parents=[common],
        formatter_class=_formatter,
        help="the Responses API with the image_generation tool (POST /responses)",
        description="Generate or edit through a text model that calls the image tool: "
        "mixed text and image input, follow-ups, streaming previews.",
        epilog=RESPONSES_EXAMPLES + "\n" + _EXIT_CODES,
    )
    resp.add_argument(
        "-m",
        "--model",
        help=f"the top-level text model (env OPENAI_RESPONSES_MODEL; default {DEFAULT_RESPONSES_MODEL})",
    )
    resp.add_argument(
        "--tool-model",
        help="the image model of the tool, always sent "
        f"(env OPENAI_IMAGE_TOOL_MODEL; default {DEFAULT_TOOL_MODEL})",
    )
    resp.add_argument("--input-text", action="append", metavar="TEXT", help="a text input (repeatable)")
    resp.add_argument(
        "--input-image", action="append", metavar="PATH", help="a local image sent as a data URL (repeatable)"
    )
    resp.add_argument("--input-image-url", action="append", metavar="URL", help="an image URL (repeatable)")
    resp.add_argument(
        "--input-image-file-id", action="append", metavar="ID", help="an uploaded file id (repeatable)"
    )
    resp.add_argument("--image-detail", choices=DETAILS, help="detail of the input images (default auto)")
    resp.add_argument("--mask", metavar="PATH", help="PNG mask with alpha for the first input image")
    resp.add_argument("--mask-file-id", metavar="ID", help="an uploaded mask file id")
    resp.add_argument("--action", choices=ACTIONS, help="generate, edit, or let the model decide (auto)")
    resp.add_argument(
        "--tool-choice",
        choices=TOOL_CHOICES,
        help="default image_generation forces the tool; auto, required or none otherwise",
    )
    resp.add_argument("--previous-response-id", metavar="ID", help="continue from an earlier response")
    resp.add_argument(
        "--input-fidelity",
        choices=INPUT_FIDELITIES,
        help="how closely to keep input details (not for gpt-image-2)",
    )
    resp.set_defaults(func=cmd_responses)
    return parser


def _print_out(text: str) -> None:
    sys.stdout.write(redact(text) + "\n")
    sys.stdout.flush()


def _print_err(text: str) -> None:
    sys.stderr.write(redact(text) + "\n")
    sys.stderr.flush()


def _success_json(outcome: Outcome) -> Dict[str, Any]:
    job = outcome.job
    collector = outcome.collector
    assert collector is not None
    usage = collector.usage
    return {
        "ok": True,
        "command": job.command,
        "model": job.model,
        "images": [image.as_dict() for image in collector.images],
        "partials": [image.as_dict() for image in collector.partials],
        "revised_prompt": next((i.revised_prompt for i in collector.images if i.revised_prompt), None),
        "usage": usage,
        "estimated_cost_usd": cost_from_usage(usage, job.rules)
        if usage and job.command != "responses"
        else None,
        "request_id": outcome.request_id,
        "response_id": collector.response_id,
        "saved_response": outcome.saved_response,
        "metadata": outcome.metadata,
        "text": " ".join(collector.text).strip() or None,
        "elapsed_s": round(outcome.elapsed, 3),
    }


def _report_success(outcome: Outcome) -> None:
    job = outcome.job
    if outcome.dry_run is not None:
        _print_out(json.dumps(outcome.dry_run, indent=2, ensure_ascii=False))
        return
    collector = outcome.collector
    assert collector is not None
    if job.as_json:
        _print_out(json.dumps(_success_json(outcome), ensure_ascii=False))
        return
    for image in collector.images:
        _print_out(image.path)
    if collector.response_id and not collector.response_id_shown:
        collector.announce_response_id()
    if job.quiet:
        return
    summary = f"done in {outcome.elapsed:.1f} s: {len(collector.images)} image(s)"
    usage = collector.usage
    if usage:
        tokens = usage.get("output_tokens")
        if tokens is not None:
            summary += f", {tokens:,} output tokens" if isinstance(tokens, int) else ""
        cost = cost_from_usage(usage, job.rules) if job.command != "responses" else None
        if cost is not None:
            summary += f", about ${cost:.4f} (estimate)"
    _print_err(summary)


def _failure_json(exc: GptImageError) -> Dict[str, Any]:
    details = exc.details
    return {
        "ok": False,
        "error": {
            "type": details.get("type") or exc.kind,
            "message": exc.message,
            "status": details.get("status"),
            "code": details.get("code"),
            "param": details.get("param"),
            "request_id": details.get("request_id"),
            "hint": exc.hint or None,
            "exit_code": exc.exit_code,
        },
    }


def _use_utf8_streams() -> None:
    # Paths and prompts are Unicode; a Windows pipe or a C locale would otherwise fail to print them.
    for stream, errors in ((sys.stdout, "surrogateescape"), (sys.stderr, "backslashreplace")):
        encoding = (getattr(stream, "encoding", "") or "").lower().replace("-", "")
        reconfigure = getattr(stream, "reconfigure", None)
        if encoding != "utf8" and reconfigure is not None:
            try:
                reconfigure(encoding="utf-8", errors=errors)
            except (ValueError, OSError):
                pass


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Interrupted()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse, validate once, dispatch, and map every failure to one stderr line and its exit code."""
    _use_utf8_streams()
    del _SECRETS[:]
    as_json = "--json" in (sys.argv[1:] if argv is None else list(argv))
    previous_handler = None
    try:
        previous_handler = signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError, AttributeError):
        previous_handler = None  # not the main thread, or no SIGTERM on this platform
    try:
        args = build_parser().parse_args(argv)
        as_json = args.json
        config = load_config(os.environ, args.env_file)
        job = validate(args, config)
        if not job.dry_run and not job.api_key:
            raise ConfigError(
                "OPENAI_API_KEY is not set",
                hint="export OPENAI_API_KEY, put it in ./.env, or pass --env-file PATH",
            )
        warn = Progress(quiet=False)
        for message in job.warnings:
            warn.warn(message)
        outcome = args.func(job)
        _report_success(outcome)
        return EXIT_OK
    except GptImageError as exc:
        if as_json:
            _print_out(json.dumps(_failure_json(exc), ensure_ascii=False))
        # One line whatever the API said: line breaks in its message are folded into spaces.
        line = f"error: {exc.message}" + (f" (hint: {exc.hint})" if exc.hint else "")
        _print_err(" ".join(line.split()))
        return exc.exit_code
    except KeyboardInterrupt:
        if as_json:
            stopped = GptImageError("interrupted")
            stopped.kind, stopped.exit_code = "interrupted", EXIT_INTERRUPTED
            _print_out(json.dumps(_failure_json(stopped)))
        _print_err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_INTERNAL
    except Exception as exc:  # a bug: say so on one line, without the traceback or any secret
        message = redact(f"{type(exc).__name__}: {exc}")
        if as_json:
            _print_out(json.dumps(_failure_json(GptImageError(message)), ensure_ascii=False))
        _print_err(f"error: internal error ({message}); please report it with the command you ran")
        if os.environ.get("GPT_IMAGE_DEBUG"):
            import traceback

            _print_err(traceback.format_exc())
        return EXIT_INTERNAL
    finally:
        if previous_handler is not None:
            try:
                signal.signal(signal.SIGTERM, previous_handler)
            except (ValueError, OSError):
                pass


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""gpt-image: make and edit images with OpenAI's GPT Image models from the command line.

One file, Python 3.9+ standard library only. One subcommand per API route:

  generations  text to image                  POST /v1/images/generations
    gpt_image.py generations --prompt "A bold product hero image" --output out/hero.png --size 1536x1024
  edits        edit or combine 1-16 images    POST /v1/images/edits (optional mask): multipart from local
               files, JSON when an input is a URL or a file id (--image-url, --image-file-id)
    gpt_image.py edits --prompt "Put the product on a beach" --image product.png --output out/beach.png
  responses    the Responses API with the image_generation tool    POST /v1/responses
    gpt_image.py responses --input-text "Make a summit poster" --output out/poster.png --stream --partial-images 2

Every run needs --output: a path, or a pattern with {index} (the 1-based image number). Everything that can
be checked locally is checked before anything is sent, so nothing is paid for when a request cannot succeed.
--dry-run prints the exact request instead of sending it (no API key needed); --max-cost USD refuses a run
whose estimated cost is over USD. --timeout bounds each wait for data, --deadline the whole run (exit 5).

Many images: --batch FILE runs every job of a JSON Lines file (a prompt, or an object of long option names, a
line; the command line's options are its defaults), --jobs N at a time; every line is checked before anything
is sent, and the same command run again resumes. --batch-api sends the same jobs through OpenAI's Batch API
(half price, within 24 h) with a state file beside FILE: the same command again waits or collects, --no-wait
submits and exits, --cancel cancels.
    gpt_image.py generations --batch jobs.jsonl --output "out/{job}.png" --jobs 8

gpt-image-2.6 models add --complexity and .gif and .svg outputs. --extra-body JSON adds fields this version does
not know to the request body, as given (a field the tool sets itself is refused).
    gpt_image.py generations --model gpt-image-2.6-flare --prompt "A fox waving" --output out/fox.gif

Configuration, highest first: command-line flags, the process environment, a .env file (--env-file PATH,
else ./.env, else the .env beside SKILL.md), built-in defaults. An empty value counts as unset. Keys:
OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_ORG_ID, OPENAI_PROJECT_ID, OPENAI_IMAGE_MODEL, OPENAI_RESPONSES_MODEL,
OPENAI_IMAGE_TOOL_MODEL, and OPENAI_IMAGE_<OPTION> for SIZE, QUALITY, BACKGROUND, FORMAT, COMPRESSION,
MODERATION, INPUT_FIDELITY, USER, TIMEOUT and RETRIES.

Azure OpenAI: AZURE_OPENAI_ENDPOINT (https://RESOURCE.openai.azure.com), or an Azure host in --base-url /
OPENAI_BASE_URL, selects it; the key is AZURE_OPENAI_API_KEY (else OPENAI_API_KEY), sent as api-key; --model
and --tool-model name deployments. The v1 surface (/openai/v1/...) is the default; AZURE_OPENAI_API_VERSION
set to a dated version uses the classic deployment URLs. AZURE_OPENAI_DEPLOYMENT_MODEL names the model a
deployment serves when its name is not a model's.

stdout: the saved image paths, one a line (one JSON object with --json; with --batch, a JSON line per job and
a summary line). stderr: progress, warnings, errors. The API key is never printed.

Exit codes:
  0    ok
  1    internal error (a bug: please report it), or a paid-for image that could not be saved where asked
  2    usage or pre-flight validation error (nothing was sent)
  3    configuration error (no API key, bad .env)
  4    the API refused the request (HTTP error after retries, moderation)
  5    network error or timeout
  6    unusable response (malformed JSON or event stream, stream ended early, no image, an incomplete image)
  7    a batch finished with some jobs failed (each failed job has its own kind and code in the report)
  130  interrupted
"""

from __future__ import annotations

import _thread
import argparse
import base64
import binascii
import collections
import contextvars
import datetime
import functools
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

# --- Constants and the model table -------------------------------------------------------------------------

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
TRANSPARENCY_ROUTES = (
    "auto",
    "native",
    "key",
)  # how --background transparent is delivered (references/images.md)
NATIVE_TRANSPARENCY_OFF = (
    "the API called its transparent background a preview and reportedly switched it off on 2026-09-30 (HTTP "
    "400); the key route (--transparency key, the default here) makes one locally"
)
MODERATIONS = ("auto", "low")
INPUT_FIDELITIES = ("low", "high")
FIELD_STYLES = ("auto", "simple", "brackets", "indexed")
ACTIONS = ("auto", "generate", "edit")
TOOL_CHOICES = ("auto", "required", "none", "image_generation")
DETAILS = ("auto", "low", "high", "original")
COMPLEXITIES = ("low", "medium", "high")  # gpt-image-2.6; the API's default is high

MAX_PROMPT_CHARS = 32_000
MAX_IMAGES = 16
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_MASK_BYTES = 4 * 1024 * 1024
MAX_TARGET_EDGE = 8192  # the largest side of a --resize target
# A server's image whose pixels are worked on (steps, thumbnails) is at most this: the API makes 3840 at most
# and 3:1 at most; anything far past that is kept as it came, not decoded (hostile shapes cost minutes).
MAX_WORK_EDGE = 4096
MAX_WORK_RATIO = 4
MAX_TARGET_PIXELS = 2 * 3840 * 2160  # the most pixels of one target: time and memory stay those of a 4K image
MAX_TARGETS = 16  # sizes per --resize: each is a file of every image, all held while they are encoded
MAX_IMAGE_URL_CHARS = 20_971_520  # the spec's longest image_url: a data URL of a ~15 MB image
N_MIN, N_MAX = 1, 10
PARTIALS_MIN, PARTIALS_MAX = 0, 3
COMPRESSION_MIN, COMPRESSION_MAX = 0, 100

FIXED_SIZES = ("1024x1024", "1536x1024", "1024x1536")
FLEX_STEP = 16
FLEX_MAX_EDGE = 3840
FLEX_MAX_RATIO = 3
FLEX_MIN_PIXELS = 655_360
FLEX_MAX_PIXELS = 8_294_400
EXPERIMENTAL_PIXELS = 2560 * 1440  # the spec calls sizes above 2560x1440 "experimental" (read: more pixels)
JSON_EDIT_SIZES = ("auto", *FIXED_SIZES)  # all the spec's JSON edits schema lists (other sizes: unconfirmed)
# --size W:H@TIER: the pixels aimed at per tier (None: the largest valid size at that ratio).
ASPECT_TIERS: Dict[str, Optional[int]] = {"1k": 1024 * 1024, "2k": 2048 * 2048, "4k": None}
DEFAULT_ASPECT_TIER = "1k"
# Sizes within 1% of the asked ratio count as that ratio; of those, the one closest to the tier's pixels wins.
ASPECT_TOLERANCE = 0.01

CHUNK_BYTES = 256 * 1024
FILE_CHUNK_BYTES = 1024 * 1024
ERROR_BODY_LIMIT = 1024 * 1024
SHOWN_TEXT_LIMIT = 1000  # characters of a server's text (a non-JSON error body, say) shown on the error line

# What a server may send, each cap well above anything the API sends (a 4K PNG is under 40 MB of base64).
# Past one, the run ends with exit 6 naming it, so memory, disk and time cannot grow with a hostile reply.
# The readers look these up when they run (tests shrink them).
_MiB = 1024 * 1024
MAX_IMAGE_B64_BYTES = 48 * _MiB  # the base64 text of one image
MAX_JSON_BYTES = MAX_IMAGE_B64_BYTES + _MiB  # a JSON body; n planned images allow n * image + 1 MiB
MAX_LINE_BYTES = 48 * _MiB  # one line of an event stream
MAX_EVENT_BYTES = 48 * _MiB  # the data of one event
MAX_EVENT_LINES = 100_000  # the lines of one event
MAX_EVENTS = 100_000  # the events of one stream
MAX_INTERIM_ANSWERS = 100  # 1xx answers (103 Early Hints...) skipped before the real one
MAX_HEADER_LINE_BYTES = 65_536  # one header line, and at most MAX_HEADERS of them (http.client's own limits)
MAX_HEADERS = 100
NAME_ROOM_BYTES = 15  # kept free in every planned file name: the .N name of a clash, the temporary name
DEADLINE_MIN_S, DEADLINE_MAX_S = 0.1, 7 * 86_400
DEFAULT_JOBS = 4  # --batch: requests in flight at once
MAX_JOBS = 64
BATCH_API_MAX_JOBS = 50_000  # the Batch API's most requests in one batch


class ModelRules(NamedTuple):
    """What one image model accepts; the validator and the cost estimate read nothing else."""

    family: str  # key into TOKEN_PRICES
    flexible_sizes: bool  # any WxH within the FLEX_* limits; otherwise `sizes` only
    qualities: Tuple[str, ...]
    transparent: str  # "yes" (native), "preview" (the key route unless --transparency native) or "no"
    input_fidelity: bool
    token_factors: Optional[Mapping[str, int]] = None  # output-token factor per quality (cost estimates)
    notice: str = ""  # a warning printed whenever the model is used
    sizes: Tuple[str, ...] = FIXED_SIZES  # the only sizes (besides auto) of a model without flexible sizes
    shutdown: str = ""  # YYYY-MM-DD: from this day (local clock) the API no longer serves the model
    replacement: str = ""  # the model to suggest instead, once it is shut down or about to be
    complexity: bool = False  # takes `complexity` (COMPLEXITIES)
    formats: Tuple[str, ...] = ()  # output formats made only by the models that list them (IMAGE_FORMATS)
    token_scale: Mapping[str, float] = {}  # quality -> a multiple of token_factors' output tokens (estimates)
    token_source: str = ""  # what token_scale multiplies, and who says so: the estimate's basis quotes it
    batch_api: bool = True  # False: reported not to be taken by the Batch API yet (a warning; still sent)


# Output-token factors reverse-engineered from OpenAI's calculator (api-facts.md section 7).
_GPT2_FACTORS = {"low": 16, "medium": 48, "high": 96}
_GPT25_FACTORS = {"low": 16, "medium": 24, "high": 48, "xhigh": 64, "max": 96}
_GPT2 = ModelRules("gpt-image-2", True, BASE_QUALITIES, "preview", False, _GPT2_FACTORS)
_GPT25 = ModelRules("gpt-image-2.5", True, QUALITIES, "yes", True, _GPT25_FACTORS)
# gpt-image-2.6 (api-facts.md section 10, mostly third-party: each detail is one edit here). At low and medium
# it is reported to use 3 to 4 times 2.5's output tokens, at high and above about the same; the Batch API is
# reported not to take it yet.
_GPT26 = ModelRules(
    "gpt-image-2.6", True, QUALITIES, "yes", True, _GPT25_FACTORS,
    complexity=True, formats=("gif", "svg"), token_scale={"low": 3.5, "medium": 3.5},
    token_source="gpt-image-2.5's output tokens (a third-party figure)", batch_api=False,
)  # fmt: skip
# Shut down (OpenAI's deprecations page): still here so that a gateway serving an old name (--allow-retired)
# gets that model's own rules, and everyone else is told what to use instead.
_GPT15 = ModelRules(
    "gpt-image-1.5",
    False,
    BASE_QUALITIES,
    "yes",
    True,
    shutdown="2026-12-01",
    replacement="gpt-image-2.6-sunburst",
)
_DALLE2_SIZES = ("256x256", "512x512", "1024x1024")
_DALLE3_SIZES = ("1024x1024", "1792x1024", "1024x1792")

# The capability table, in order of preference (a suggestion names the first live model that fits). Dated
# snapshots (name-YYYY-MM-DD) and provider prefixes (openai/...) map onto these.
MODELS: Dict[str, ModelRules] = {
    "gpt-image-2": _GPT2,
    "gpt-image-2.6-sunburst": _GPT26,
    "gpt-image-2.6-flare": _GPT26,
    "gpt-image-2.5-sunburst": _GPT25,
    "gpt-image-2.5-flare": _GPT25,
    "gpt-image-1.5": _GPT15,
    "chatgpt-image-latest": _GPT15,
    "gpt-image-1-mini": ModelRules(
        "gpt-image-1-mini", False, BASE_QUALITIES, "yes", False,
        shutdown="2026-12-01", replacement="gpt-image-2.6-sunburst",
    ),
    "gpt-image-1": ModelRules(
        "gpt-image-1", False, BASE_QUALITIES, "yes", True, shutdown="2026-10-23", replacement="gpt-image-2"
    ),
    "dall-e-3": ModelRules(
        "dall-e-3", False, (), "no", False, sizes=_DALLE3_SIZES, shutdown="2026-05-12", replacement="gpt-image-2"
    ),
    "dall-e-2": ModelRules(
        "dall-e-2", False, (), "no", False, sizes=_DALLE2_SIZES, shutdown="2026-05-12", replacement="gpt-image-2"
    ),
}  # fmt: skip
LIFECYCLE_WARN_DAYS = 30  # a model this close to its shutdown date gets a warning


class TextModel(NamedTuple):
    """A top-level Responses text model's lifecycle, read by the same rules as an image model's."""

    shutdown: str  # YYYY-MM-DD, as ModelRules.shutdown
    replacement: str


# Text models with a shutdown date (OpenAI's deprecations page, api-facts.md section 10); dated snapshots and
# provider prefixes map onto these as for MODELS. The page names gpt-6.1-sol, gpt-6.1-terra and gpt-6-luna for
# the gpt-5 models and o3; which one replaces which is this table's reading (by size: pro and o3 the largest,
# nano the smallest). It names none for the GPT-4o and GPT-4.1 families: the suggestion is the default text
# model.
_GPT5_SHUTDOWN = "2026-12-11"
_GPT4_SHUTDOWN = "2027-01-14"
TEXT_MODELS: Dict[str, TextModel] = {
    "gpt-5": TextModel(_GPT5_SHUTDOWN, "gpt-6.1-sol"),
    "gpt-5-pro": TextModel(_GPT5_SHUTDOWN, "gpt-6.1-sol"),
    "o3": TextModel(_GPT5_SHUTDOWN, "gpt-6.1-sol"),
    "gpt-5-mini": TextModel(_GPT5_SHUTDOWN, "gpt-6.1-terra"),
    "gpt-5-nano": TextModel(_GPT5_SHUTDOWN, "gpt-6-luna"),
    "gpt-4o": TextModel(_GPT4_SHUTDOWN, DEFAULT_RESPONSES_MODEL),
    "gpt-4o-mini": TextModel(_GPT4_SHUTDOWN, DEFAULT_RESPONSES_MODEL),
    "gpt-4.1": TextModel(_GPT4_SHUTDOWN, DEFAULT_RESPONSES_MODEL),
    "gpt-4.1-mini": TextModel(_GPT4_SHUTDOWN, DEFAULT_RESPONSES_MODEL),
    "gpt-4.1-nano": TextModel(_GPT4_SHUTDOWN, DEFAULT_RESPONSES_MODEL),
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
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_API_VERSION",
    "AZURE_OPENAI_DEPLOYMENT_MODEL",
)

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_API = 4
EXIT_NETWORK = 5
EXIT_RESPONSE = 6
EXIT_BATCH_FAILED = 7
EXIT_INTERRUPTED = 130

# --- Errors and redaction ----------------------------------------------------------------------------------


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


class StepFailed(ResponseError):
    """A pixel step could not deliver an image: what failed, and the image the step made (kept as unverified)."""

    def __init__(self, message: str, hint: str = "", output: Optional[bytes] = None, **details: Any) -> None:
        super().__init__(message, hint, **details)
        self.output = output


class BatchFailed(GptImageError):
    """Some jobs of a batch failed (each with its own kind and code in the report); the others were saved."""

    exit_code = EXIT_BATCH_FAILED
    kind = "batch_failed"


class OutputError(GptImageError):
    """A paid-for image (or a sidecar) could not be written where asked: disk full, permissions, a lock."""

    kind = "output_error"


class NotRun(GptImageError):
    """A batch job that was never sent (the batch was stopping while it waited)."""


class Interrupted(KeyboardInterrupt):
    """Raised by the SIGTERM and SIGHUP handler so that a killed run cleans up like Ctrl-C."""


class RunState:
    """What one run of main() shares across its layers and threads, in one object instead of module globals.

    main() creates it for each run and sets it as the run's context (a context variable: the batch's worker
    threads are started in a copy of that context, and a test that calls main() in-process gets a fresh one).
    """

    def __init__(self) -> None:
        self.started = time.monotonic()  # --deadline counts from here, for every job of a batch alike
        # Secrets, in every form they can take in text, replaced by *** in all that the program prints or writes.
        self.secrets: List[str] = []
        # Temporary files not yet committed or removed: a batch that is aborted (a second Ctrl-C) removes them,
        # since its workers cannot be stopped mid-write.
        self.temp_files: Set[str] = set()
        self.aborting = False  # no new temporary file may be opened
        self.stdout_lost: Optional[str] = None  # why stdout could not be written (a closed pipe, a full disk)
        self.signalled = False  # a stop signal arrived during this run
        self.pixel_lock = _thread.allocate_lock()  # pixel steps run one image at a time
        # --contact-sheet: each delivered image's thumbnail by its path, and the side of the sheet's cells
        self.sheet: Optional[Dict[str, Any]] = None
        self.sheet_side = 0


_RUN: contextvars.ContextVar[RunState] = contextvars.ContextVar("gpt_image_run")


def run_thread(target: Callable[[], None], name: str, start: bool = True) -> threading.Thread:
    """A daemon thread that runs target in a copy of this run's context (a new thread starts in none)."""
    import threading

    thread = threading.Thread(target=contextvars.copy_context().run, args=(target,), name=name, daemon=True)
    if start:
        thread.start()
    return thread


def current_run() -> RunState:
    """The state of the run in progress (a new one for code called outside main(), as tests do)."""
    try:
        return _RUN.get()
    except LookupError:
        state = RunState()
        _RUN.set(state)
        return state


# Signals that end a run the way Ctrl-C does (SIGHUP: the terminal went away; there is none on Windows).
_STOP_SIGNALS = tuple(
    sig for sig in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if sig is not None
)


def set_handlers(handlers: Mapping[int, Any]) -> Dict[int, Any]:
    """Install signal handlers where this thread may (the main thread only); return those they replaced."""
    replaced = {}
    for sig, handler in handlers.items():
        try:
            replaced[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):
            pass  # not the main thread
    return replaced


def _on_stop_signal(signum: int, frame: Any) -> None:
    # The first one interrupts the run; the rest of a burst (and Ctrl-C from then on) is ignored, so that the
    # clean-up it started runs to its end and the process exits 130 instead of being killed (143) half-way.
    # A Python no-op, not SIG_IGN: signals already pending would make CPython print "Signal 15 ignored due
    # to race condition". Blocking them (POSIX) keeps them away until exit, when CPython restores SIG_DFL.
    run = current_run()
    if run.signalled:
        return
    run.signalled = True
    signals = (*_STOP_SIGNALS, signal.SIGINT)
    set_handlers(dict.fromkeys(signals, lambda signum, frame: None))
    block = getattr(signal, "pthread_sigmask", None)
    if block is not None:
        block(getattr(signal, "SIG_BLOCK", 0), signals)
    raise Interrupted()


def rearm_stop_signals() -> None:
    """After a batch's first stop (its in-flight jobs go on), let the next Ctrl-C or stop signal abort it."""
    current_run().signalled = False
    unblock = getattr(signal, "pthread_sigmask", None)
    if unblock is not None:
        unblock(getattr(signal, "SIG_UNBLOCK", 1), (*_STOP_SIGNALS, signal.SIGINT))
    set_handlers({**dict.fromkeys(_STOP_SIGNALS, _on_stop_signal), signal.SIGINT: signal.default_int_handler})


def register_secret(value: Optional[str]) -> None:
    """Remember a secret, raw, JSON-escaped and URL-encoded, so that redact() removes it from all output."""
    if not value:
        return
    forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    forms |= {urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value, safe="")}
    secrets = current_run().secrets
    for form in forms:
        if form not in secrets:
            secrets.append(form)
    secrets.sort(key=len, reverse=True)


def redact(text: str) -> str:
    """Replace every registered secret in text with ***."""
    for secret in current_run().secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


_LINE_END_RE = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, limit: Optional[int] = None) -> str:
    """Text a server sent, made safe to print on one line: redacted first, line breaks folded into spaces,
    other control characters escaped, then cut."""
    text = _CONTROL_RE.sub(
        lambda m: m.group().encode("unicode_escape").decode("ascii"), _LINE_END_RE.sub(" ", redact(text))
    )
    if limit is not None and len(text) > limit:
        text = text[:limit] + "..."
    return text


def shown_text(data: Union[bytes, bytearray], limit: int, cut: bool = False) -> str:
    """The start of a body a server sent, as one printable line of at most `limit` characters.

    Whitespace runs fold into one space and secrets are redacted before anything is cut, however the body is
    laid out (megabytes of blanks, one endless word). With `cut` (the body was read only up to a limit), its
    last characters may be the start of a secret, and are dropped.
    """
    longest = max((len(s.encode("utf-8")) for s in current_run().secrets), default=0)
    want = limit + longest + 1  # a secret that starts in what is shown ends within this
    words: List[bytes] = []
    size = 0
    for match in re.finditer(rb"[^ \t\n\r\f\v]{1,%d}" % want, data):
        words.append(match.group())
        size += len(words[-1]) + 1
        if size > want:
            cut = False  # what follows is never shown
            break
    text = redact(b" ".join(words).decode("utf-8", "replace"))
    if cut and longest > 1:
        text = text[: max(len(text) - longest + 1, 0)]
    return printable(text, limit)


def _print_out(text: str) -> bool:
    """One line on stdout; False when stdout cannot take it (closed, a reader gone, a full disk).

    That is not a failure of the run: the rest of stdout is dropped, and main() names on stderr the files the
    lost lines would have listed.
    """
    run = current_run()
    if run.stdout_lost is not None:
        return False
    try:
        if sys.stdout is None:  # started with descriptor 1 closed (`>&-`)
            raise OSError("standard output is closed")
        sys.stdout.write(redact(text) + "\n")
        sys.stdout.flush()
        return True
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        run.stdout_lost = "the reader went away" if isinstance(exc, BrokenPipeError) else reason
        try:  # point the descriptor at devnull, so the interpreter's final flush cannot fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            sys.stdout = None
        return False


# What json.dumps(ensure_ascii=False) leaves raw that a terminal acts on: DEL, C1 controls (\x9b is CSI), the
# bidirectional overrides and isolates, and the line separators. Inside JSON strings, \uXXXX says the same.
_JSON_UNSAFE_RE = re.compile("[\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def json_text(obj: Any, indent: Optional[int] = None) -> str:
    """A JSON document for stdout: UTF-8 kept readable, each character a terminal would act on escaped."""
    text = json.dumps(obj, ensure_ascii=False, indent=indent)
    return _JSON_UNSAFE_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def error_line(exc: GptImageError) -> str:
    """The one error line: `error: MESSAGE (hint: HINT)`, line breaks from the API folded into spaces."""
    line = f"error: {exc.message}" + (f" (hint: {exc.hint})" if exc.hint else "")
    return " ".join(line.split())


# --- Configuration -----------------------------------------------------------------------------------------

_ENV_KEY_RE = re.compile(r"(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=(.*)\Z", re.DOTALL)
_LINE_BREAK_RE = re.compile(r"\r\n|\r|\n")
_DOUBLE_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)  # backslash pairs inside


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
        quoted = _DOUBLE_QUOTED_RE.match(rest)
        if not quoted or not _only_comment(rest[quoted.end() :]):
            return None
        escapes = {"n": "\n", '"': '"', "\\": "\\"}  # any other backslash pair is kept as it is
        return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group()), quoted.group(1))
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
    for provider in PROVIDERS:  # every key that may be sent, whichever provider this run uses
        for key in provider.key_names:
            register_secret(config.value(key))
    return config


# Providers: where requests go, how they are signed, and what the service refuses. check_connection() picks
# one; Connection builds URLs and headers from it, so the routes never know which service they talk to.

# A URL builder: (root, endpoint, deployment, api_version) -> (url, whether the deployment went into the path).
UrlBuilder = Callable[[str, str, Optional[str], Optional[str]], Tuple[str, bool]]


class Provider(NamedTuple):
    """One service that speaks the OpenAI image APIs: how it is chosen, signed and addressed."""

    name: str  # as messages name it
    key_names: Tuple[str, ...]  # configuration keys of the API key, the first one set wins
    auth_header: str
    auth_prefix: str  # before the key in auth_header
    build_url: UrlBuilder
    root: Callable[[str], str]  # the configured URL -> the root that build_url starts from
    hosts: Tuple[str, ...] = ()  # host name suffixes that select this provider in a base URL
    endpoint_key: Optional[str] = None  # a configuration key that selects this provider and is its root
    version_key: Optional[str] = None  # a configuration key for the API version (sent as ?api-version=)
    versions: Optional[re.Pattern[str]] = None  # what version_key accepts
    served_model_key: Optional[str] = None  # model names are deployments; this key names the model served
    tool_header: Optional[str] = None  # responses: the header naming the image tool's deployment
    formats: Optional[Tuple[str, ...]] = None  # the output formats it makes (None: all of IMAGE_FORMATS)
    hints: Mapping[int, str] = {}  # hints for HTTP error statuses, over the general ones
    openai_headers: bool = True  # sends OpenAI-Organization / OpenAI-Project


# --- Azure OpenAI (api-facts.md section 9) ---

# A dated version (2025-04-01-preview) means the classic surface; preview and latest are v1's own.
_AZURE_VERSION_RE = re.compile(r"(?:\d{4}-\d{2}-\d{2}(?:-preview)?|preview|latest)\Z")
_AZURE_ROOT_RE = re.compile(r"/openai(?:/.*)?\Z", re.IGNORECASE | re.DOTALL)


def azure_root(url: str) -> str:
    """The resource endpoint in AZURE_OPENAI_ENDPOINT or an Azure base URL: scheme, host and any gateway path,
    without the /openai/... part people paste along (/openai/v1, or a whole deployment URL)."""
    parts = urllib.parse.urlsplit(url)
    path = _AZURE_ROOT_RE.sub("", parts.path.rstrip("/"))
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def build_azure_url(
    root: str, endpoint: str, deployment: Optional[str], api_version: Optional[str]
) -> Tuple[str, bool]:
    """Azure OpenAI. The v1 surface by default: {root}/openai/v1{endpoint}, the deployment in the body's
    model. With a dated API version, the classic surface: the Images endpoints under
    /openai/deployments/{deployment} (so the body carries no model), every other one (/responses, /files,
    /batches/...) under /openai. Any API version goes in the query, never in a header."""
    classic = bool(api_version and api_version[:1].isdigit())  # dated, as _AZURE_VERSION_RE checked
    in_path = classic and bool(deployment) and endpoint.startswith("/images/")
    if in_path:
        url = f"{root}/openai/deployments/{urllib.parse.quote(deployment or '', safe='')}{endpoint}"
    else:
        url = f"{root}/openai{endpoint}" if classic else f"{root}/openai/v1{endpoint}"
    if api_version:
        url += ("&" if "?" in endpoint else "?") + "api-version=" + urllib.parse.quote(api_version, safe="")
    return url, in_path


AZURE = Provider(
    name="Azure OpenAI",
    key_names=("AZURE_OPENAI_API_KEY", "OPENAI_API_KEY"),
    auth_header="api-key",
    auth_prefix="",
    build_url=build_azure_url,
    root=azure_root,
    hosts=(".openai.azure.com", ".services.ai.azure.com", ".cognitiveservices.azure.com"),
    endpoint_key="AZURE_OPENAI_ENDPOINT",
    version_key="AZURE_OPENAI_API_VERSION",
    versions=_AZURE_VERSION_RE,
    served_model_key="AZURE_OPENAI_DEPLOYMENT_MODEL",
    tool_header="x-ms-oai-image-generation-deployment",
    formats=("png", "jpeg"),
    hints={
        401: "the key was rejected: check AZURE_OPENAI_API_KEY, and that AZURE_OPENAI_ENDPOINT is the resource "
        "the key belongs to",
        403: "the resource refused access: check its network rules (firewall, private endpoint) and the key",
        404: "check the deployment name (on Azure, --model and --tool-model name deployments) and the API "
        "version (AZURE_OPENAI_API_VERSION: unset for the v1 surface, a dated version for the classic URLs)",
    },
    openai_headers=False,
)

OPENAI = Provider(
    name="OpenAI",
    key_names=("OPENAI_API_KEY",),
    auth_header="Authorization",
    auth_prefix="Bearer ",
    build_url=lambda root, endpoint, deployment, api_version: (root + endpoint, False),  # base URL + endpoint
    root=lambda url: url,
)

# Tried in this order for an endpoint key and a host; OpenAI (any other URL) comes last.
PROVIDERS = (AZURE, OPENAI)


def provider_for_host(host: str) -> Provider:
    """The provider whose host suffix matches host; OpenAI for any other host (gateways, proxies, loopback)."""
    host = host.lower().rstrip(".")
    return next((p for p in PROVIDERS if any(host.endswith(suffix) for suffix in p.hosts)), OPENAI)


# --- Images (pure): the output formats as data; how each is recognised, checked and measured -------------


class ImageDataError(ValueError):
    """An image that cannot be read or worked on: malformed, too large, or of a kind not supported. The pure
    image code raises only this; the edges make it exit 2 (a user's file) or exit 6 (a server's)."""


class ImageInfo(NamedTuple):
    """What the header of an image file says: format, dimensions and whether it has alpha."""

    format: str
    width: Optional[int]
    height: Optional[int]
    has_alpha: bool


def _png_complete(view: memoryview) -> Optional[str]:
    # PNG spec 5.3: after the 8-byte signature, chunks of length (4, big-endian), type (4), data and a CRC (4)
    # "calculated on the preceding bytes in the chunk, including the chunk type field"; IEND is last. The CRCs
    # run on memoryview slices (no copies), at memory speed.
    size, pos = len(view), 8
    while True:
        if pos + 12 > size:
            return f"the PNG ends at byte {size:,}, before its IEND chunk (it was cut short)"
        length = int.from_bytes(view[pos : pos + 4], "big")
        kind = bytes(view[pos + 4 : pos + 8])
        name = kind.decode("latin-1")
        end = pos + 12 + length
        if pos == 8 and kind != b"IHDR":
            return "the PNG does not start with its IHDR chunk"
        if end > size:
            return (
                f"the PNG is cut short in its {name} chunk at byte {pos:,} ({size - pos - 8:,} of "
                f"{length + 4:,} bytes arrived), before its IEND chunk"
            )
        if binascii.crc32(view[pos + 4 : end - 4]) != int.from_bytes(view[end - 4 : end], "big"):
            return f"the PNG's {name} chunk at byte {pos:,} fails its CRC check (the data is damaged)"
        if kind == b"IEND":
            return None
        pos = end


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


def _jpeg_complete(view: memoryview) -> Optional[str]:
    if len(view) < 4 or bytes(view[-2:]) != b"\xff\xd9":
        return "the JPEG does not end with its end-of-image marker (FF D9): it was cut short"
    return None


def _jpeg_info(head: bytes) -> ImageInfo:
    width, height = _jpeg_size_in_file(io.BytesIO(head))
    return ImageInfo("jpeg", width, height, False)


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


def _webp_complete(view: memoryview) -> Optional[str]:
    size = len(view)
    if size < 12:
        return "the WEBP is shorter than its RIFF header"
    declared = int.from_bytes(view[4:8], "little") + 8
    if declared != size:
        cut = " (it was cut short)" if size < declared else ""
        return f"the WEBP is {size:,} bytes but its RIFF header says {declared:,}{cut}"
    return None


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


# --- Images: GIF and SVG, gpt-image-2.6's outputs (completeness, size, active content) ---

GIF_SIGNATURES = (b"GIF87a", b"GIF89a")
GIF_TRAILER = 0x3B
GIF_IMAGE = 0x2C
GIF_EXTENSION = 0x21

Bytes = Union[bytes, bytearray, memoryview]


class GifFacts(NamedTuple):
    """What one walk over a GIF found: why it is not whole (None when it is), its screen size, its frames."""

    problem: Optional[str]
    width: Optional[int]
    height: Optional[int]
    frames: int


def _skip_sub_blocks(view: memoryview, pos: int) -> int:
    """The offset just past a run of data sub-blocks and its zero terminator, or -1 when the data ends first."""
    size = len(view)
    while pos < size:
        length = view[pos]
        pos += 1 + length
        if length == 0:
            return pos
    return -1


def gif_check(data: Bytes) -> GifFacts:
    """Walk a GIF block by block to its trailer, bounds-checked at every step; say what is missing or wrong."""
    view = memoryview(data).cast("B")
    size = len(view)
    if bytes(view[:6]) not in GIF_SIGNATURES:
        return GifFacts("not a GIF (it does not start with GIF87a or GIF89a)", None, None, 0)
    if size < 13:
        problem = f"the GIF ends at byte {size:,}, in its logical screen descriptor (it was cut short)"
        return GifFacts(problem, None, None, 0)
    width = view[6] | view[7] << 8
    height = view[8] | view[9] << 8

    def facts(problem: Optional[str], frames: int) -> GifFacts:
        return GifFacts(problem, width, height, frames)

    def cut(where: str, frames: int) -> GifFacts:
        return facts(f"the GIF ends at byte {size:,}, {where} (it was cut short)", frames)

    # GIF89a spec section 18: the packed byte's top bit flags a global colour table of 2^(N+1) RGB entries.
    pos = 13
    if view[10] & 0x80:
        pos += 3 << ((view[10] & 0x07) + 1)
        if pos > size:
            return cut("in its global colour table", 0)
    frames = 0
    while True:
        if pos >= size:
            return cut(f"after {frames} frame{'s' if frames != 1 else ''}, before its trailer", frames)
        block = view[pos]
        if block == GIF_TRAILER:
            extra = size - pos - 1
            if extra:
                # Decoders stop at the trailer, so extra bytes are never shown: they mean the data is not what
                # the encoder wrote (two files run together, framing gone wrong), and the contract says a
                # complete GIF ends with its trailer byte.
                return facts(
                    f"{extra:,} byte{'s follow' if extra != 1 else ' follows'} the GIF's trailer", frames
                )
            if frames == 0:
                return facts("the GIF holds no image", 0)
            return facts(None, frames)
        if block == GIF_EXTENSION:
            # Section 23 onwards: introducer, label, then data sub-blocks to a zero-length terminator.
            end = _skip_sub_blocks(view, pos + 2) if pos + 2 <= size else -1
            if end < 0:
                return cut(f"in an extension block after frame {frames}", frames)
            pos = end
        elif block == GIF_IMAGE:
            frame = frames + 1
            # Section 20: separator, left, top, width, height (2 bytes each), packed byte (local colour table).
            if pos + 10 > size:
                return cut(f"in frame {frame}'s image descriptor", frames)
            packed = view[pos + 9]
            pos += 10
            if packed & 0x80:
                pos += 3 << ((packed & 0x07) + 1)
                if pos > size:
                    return cut(f"in frame {frame}'s local colour table", frames)
            if pos >= size:
                return cut(f"in frame {frame}, before its image data", frames)
            # Section 22: codes start at min+1 bits and grow to at most 12, so the minimum is 1 to 11.
            code_size = view[pos]
            if not 1 <= code_size <= 11:
                return facts(f"frame {frame} has an invalid LZW minimum code size ({code_size})", frames)
            end = _skip_sub_blocks(view, pos + 1)
            if end < 0:
                return cut(f"in frame {frame}'s image data", frames)
            pos = end
            frames = frame
        else:
            return facts(
                f"the GIF has an unknown block 0x{block:02X} at byte {pos:,} after frame {frames}", frames
            )


def gif_problem(data: Bytes) -> Optional[str]:
    """Say why a GIF is not whole, or None when it walks cleanly to its trailer."""
    return gif_check(data).problem


def gif_size(data: Bytes) -> Optional[Tuple[int, int]]:
    """The GIF's logical screen width and height, or None when its header is not there."""
    facts = gif_check(data)
    if facts.width is None or facts.height is None:
        return None
    return facts.width, facts.height


def gif_frames(data: Bytes) -> int:
    """How many images (frames) the GIF holds, counting those before any point where it breaks off."""
    return gif_check(data).frames


SVG_NAMESPACE = "http://www.w3.org/2000/svg"
SVG_MAX_ELEMENTS = 500_000
SVG_MAX_DEPTH = 512
SVG_ACTIVE = ("<script>", "javascript: URL", "on* event attributes")

# SVG 1.1 section 7.10 / CSS lengths: a number, optionally "px"; other units and percentages are not pixels.
# No nested repeats over the same characters: a server's endless run of digits is read in linear time.
_SVG_LENGTH = re.compile(r"\s*([+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?:px)?\s*\Z")
MAX_SVG_EDGE = 1_000_000.0  # a width or height beyond this is not a size (a server's 1e308 reads as none)
_SVG_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# The URL parser strips C0 controls and spaces from the start and drops ASCII tab and newline anywhere, so
# " java&#9;script:" still runs: compare what is left.
_URL_IGNORED = re.compile(r"^[\x00-\x20]+|[\t\n\r]")


class SvgFacts(NamedTuple):
    """What parsing an SVG found: why it is refused (None when whole), its pixel size, what could run code."""

    problem: Optional[str]
    width: Optional[int]
    height: Optional[int]
    active: List[str]


class _SvgRefused(Exception):
    """A handler's reason to stop the parse (a DTD, an entity, a root that is not svg, a limit)."""


def _svg_length(value: Optional[str]) -> Optional[float]:
    """A width or height in pixels when it is a plain positive number or px, else None."""
    match = _SVG_LENGTH.match(value or "")
    if match is None:
        return None
    number = float(match.group(1))
    return number if 0 < number <= MAX_SVG_EDGE else None


def _svg_view_box(value: Optional[str]) -> Optional[Tuple[float, float]]:
    """The width and height of a viewBox (its third and fourth numbers) when both are positive."""
    numbers = _SVG_NUMBER.findall(value or "")
    if len(numbers) != 4:
        return None
    width, height = float(numbers[2]), float(numbers[3])
    if not (math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
        return None
    return width, height


def _svg_size(
    width: Optional[str], height: Optional[str], view_box: Optional[str]
) -> Tuple[Optional[int], Optional[int]]:
    """Pixel size from the root's width/height, the missing one from the viewBox's aspect, else the viewBox."""
    w, h, box = _svg_length(width), _svg_length(height), _svg_view_box(view_box)
    if box is not None:
        if w is not None and h is None:
            h = w * box[1] / box[0]
        elif h is not None and w is None:
            w = h * box[0] / box[1]
        elif w is None and h is None:
            w, h = box
    return (
        None if w is None or not math.isfinite(w) else int(w + 0.5),
        None if h is None or not math.isfinite(h) else int(h + 0.5),
    )


def svg_check(
    data: Bytes, max_bytes: int, max_elements: int = SVG_MAX_ELEMENTS, max_depth: int = SVG_MAX_DEPTH
) -> SvgFacts:
    """Parse an SVG with no DTD and no entities; say why it is refused, its size, and what in it could run code.

    Complete means UTF-8 (a BOM allowed), well-formed XML whose root is `svg` (in the SVG namespace or none),
    within max_bytes, max_elements and max_depth. A DTD is refused as soon as it starts, so no entity is ever
    declared or expanded and nothing external is fetched: the five predefined entities and character
    references are all a document can use. Active content (`script` elements in any namespace, attributes
    named on*, attribute values that are javascript: URLs) is reported, not refused.
    """
    if len(data) > max_bytes:
        return SvgFacts(f"the SVG is {len(data):,} bytes, over the limit of {max_bytes:,}", None, None, [])
    raw = bytes(data)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return SvgFacts(f"the SVG is not UTF-8 (byte {exc.start:,} is not)", None, None, [])
    found: List[str] = []
    root: List[Tuple[Optional[str], Optional[str], Optional[str]]] = []
    depth = 0
    elements = 0

    def refuse_dtd(*_: object) -> None:
        raise _SvgRefused("the SVG has a DTD (<!DOCTYPE ...>), which is refused: no entity is expanded")

    def refuse_entity(*_: object) -> None:
        raise _SvgRefused("the SVG declares or references an entity, which is refused")

    def refuse_external(*_: object) -> int:
        raise _SvgRefused("the SVG references an external entity, which is refused")

    def xml_declaration(_version: Optional[str], encoding: Optional[str], _standalone: int) -> None:
        if encoding is not None and encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
            raise _SvgRefused(f"the SVG declares the encoding {encoding!r}, not UTF-8")

    def note(kind: str) -> None:
        if kind not in found:
            found.append(kind)

    def start(name: str, attributes: List[str]) -> None:
        nonlocal depth, elements
        depth += 1
        elements += 1
        if depth > max_depth:
            raise _SvgRefused(f"the SVG nests elements deeper than {max_depth:,}")
        if elements > max_elements:
            raise _SvgRefused(f"the SVG has more than {max_elements:,} elements")
        namespace, _, local = name.rpartition(" ")
        if elements == 1:
            if local != "svg" or namespace not in ("", SVG_NAMESPACE):
                shown = f"{{{namespace}}}{local}" if namespace else local
                raise _SvgRefused(f"the root element is <{shown}>, not <svg>")
            values = dict(zip(attributes[0::2], attributes[1::2]))
            root.append((values.get("width"), values.get("height"), values.get("viewBox")))
        if local.lower() == "script":
            note("<script>")
        for key, value in zip(attributes[0::2], attributes[1::2]):
            if key.rpartition(" ")[2].lower().startswith("on"):
                note("on* event attributes")
            if _URL_IGNORED.sub("", value)[:11].lower() == "javascript:":
                note("javascript: URL")

    def end(_name: str) -> None:
        nonlocal depth
        depth -= 1

    # Imported here, not at the top: only an SVG pays for it (start-up time matters).
    import xml.parsers.expat

    # The document's own encoding declaration is overridden (UTF-8 was checked above); names come as
    # "namespace local" so a script element is found under any prefix.
    parser = xml.parsers.expat.ParserCreate(encoding="UTF-8", namespace_separator=" ")
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.ordered_attributes = True
    parser.XmlDeclHandler = xml_declaration
    parser.StartDoctypeDeclHandler = refuse_dtd
    parser.EntityDeclHandler = refuse_entity
    parser.UnparsedEntityDeclHandler = refuse_entity
    parser.ExternalEntityRefHandler = refuse_external
    parser.SkippedEntityHandler = refuse_entity
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    problem: Optional[str] = None
    try:
        parser.Parse(raw, True)
    except _SvgRefused as exc:
        problem = str(exc)
    except xml.parsers.expat.ExpatError as exc:
        problem = f"the SVG is not well-formed XML ({xml.parsers.expat.ErrorString(exc.code)} at line "
        problem += f"{exc.lineno}, column {exc.offset + 1})"
    width, height = _svg_size(*root[0]) if root else (None, None)
    active = [kind for kind in SVG_ACTIVE if kind in found]
    return SvgFacts(problem, width, height, active)


# How the format table below reads GIF and SVG. Both are gpt-image-2.6 outputs that no step decodes: they are
# checked whole, measured, and delivered as the API made them.


def _gif_complete(view: memoryview) -> Optional[str]:
    return gif_problem(view)


def _gif_transparent(data: Bytes) -> bool:
    """True when the first frame's Graphic Control Extension (GIF89a section 23) sets its transparency flag: a
    palette index drawn as transparent, a GIF's one kind of alpha (as a PNG's tRNS chunk). Later frames' flags
    mean "keep what the frame before drew" in an optimised animation, not a transparent image."""
    view = memoryview(data).cast("B")
    size = len(view)
    if size < 13:
        return False
    pos = 13 + (3 << ((view[10] & 0x07) + 1) if view[10] & 0x80 else 0)
    while 0 <= pos < size - 3 and view[pos] == GIF_EXTENSION:
        # Introducer, label 0xF9, block size 4, then the packed byte whose lowest bit is the flag.
        if view[pos + 1] == 0xF9 and view[pos + 3] & 0x01:
            return True
        pos = _skip_sub_blocks(view, pos + 2)
    return False


def _gif_info(head: bytes) -> ImageInfo:
    facts = gif_check(head)  # the logical screen size is in the first 13 bytes, whole or not
    return ImageInfo("gif", facts.width, facts.height, _gif_transparent(head))


def _svg_sniff(head: bytes) -> bool:
    # Markup, so only a guess from 16 bytes: what an SVG file starts with, after a byte order mark and blanks.
    # The completeness check decides (root element svg, no DTD).
    text = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    return text.lstrip().startswith((b"<svg", b"<?xml", b"<!--", b"<!DOCTYPE svg"))


def _svg_complete(view: memoryview) -> Optional[str]:
    # The bytes are already bounded by the image cap (the base64 of one image); the element and depth caps
    # bound the parse, and a DTD is refused before any entity could be declared.
    return svg_check(view, MAX_IMAGE_B64_BYTES).problem


class _SvgRoot(Exception):
    """The root element's attributes, found: the parse stops there."""


def _svg_info(head: bytes) -> ImageInfo:
    # Only the root element is read, from the first bytes, with the same guards as svg_check (no DTD, no
    # entities); width and height as svg_check reads them. Markup has no alpha channel.
    import xml.parsers.expat

    def start(name: str, attributes: List[str]) -> None:
        raise _SvgRoot(dict(zip(attributes[0::2], attributes[1::2])))

    def stop(*_: object) -> None:
        raise _SvgRefused("a DTD")

    parser = xml.parsers.expat.ParserCreate(encoding="UTF-8", namespace_separator=" ")
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.ordered_attributes = True
    parser.StartDoctypeDeclHandler = stop
    parser.StartElementHandler = start
    width = height = None
    try:
        parser.Parse(bytes(head), False)
    except _SvgRoot as found:
        values: Dict[str, str] = found.args[0]
        width, height = _svg_size(values.get("width"), values.get("height"), values.get("viewBox"))
    except (_SvgRefused, xml.parsers.expat.ExpatError):
        pass
    return ImageInfo("svg", width, height, False)


def _svg_caution(view: memoryview) -> Optional[str]:
    active = svg_check(view, MAX_IMAGE_B64_BYTES).active
    if not active:
        return None
    held = ", ".join(active[:-1]) + " and " + active[-1] if len(active) > 1 else active[0]
    return (
        f"the SVG holds {held}: it can run code where it is embedded (opened in a browser, inlined in a page, "
        "or in an <object> or <iframe>); as an <img> it cannot: use it so, or remove them first"
    )


class ImageFormat(NamedTuple):
    """One image format: its names, how its first bytes give it away, when it is whole, what it can hold."""

    name: str  # as --format takes it and output_format sends it
    extensions: Tuple[str, ...]  # of an --output; the first is added to an --output without one
    mime: str
    sniff: Callable[[bytes], bool]  # recognises the format from its first 16 bytes
    complete: Callable[[memoryview], Optional[str]]  # what is missing or damaged, or None when whole
    info: Callable[[bytes], ImageInfo]  # dimensions and alpha from the first 64 KiB
    alpha: bool  # can carry an alpha channel (a transparent background)
    compression: bool  # output_compression applies
    input: bool = True  # the API takes it as an input image
    aliases: Tuple[str, ...] = ()  # other names --format takes
    # Which models make it is the model table's say (ModelRules.formats); these say how the API makes it.
    routes: Tuple[str, ...] = ()  # the routes that make it (empty: every route)
    single: bool = False  # one image a request (--n 1)
    streams: bool = True  # --stream can deliver it
    caution: Optional[Callable[[memoryview], Optional[str]]] = None  # a warning about a whole image, or None


# The output formats, in the order messages name them. Every list of formats in the program reads this table
# when it runs (a test adds a row at run time).
IMAGE_FORMATS: Dict[str, ImageFormat] = {
    "png": ImageFormat(
        "png", (".png",), "image/png", lambda head: head.startswith(b"\x89PNG\r\n\x1a\n"), _png_complete,
        _png_info, alpha=True, compression=False,
    ),
    "jpeg": ImageFormat(
        "jpeg", (".jpg", ".jpeg"), "image/jpeg", lambda head: head.startswith(b"\xff\xd8\xff"), _jpeg_complete,
        _jpeg_info, alpha=False, compression=True, aliases=("jpg",),
    ),
    "webp": ImageFormat(
        "webp", (".webp",), "image/webp", lambda head: head[:4] == b"RIFF" and head[8:12] == b"WEBP",
        _webp_complete, _webp_info, alpha=True, compression=True,
    ),
    # gpt-image-2.6's (api-facts.md section 10, third-party details). Neither has an alpha channel (a GIF has one
    # transparent palette index at most), and 2.6 follows 2.5's rule that a transparent background needs png or
    # webp. SVG: generations only, one image, not streamed.
    "gif": ImageFormat(
        "gif", (".gif",), "image/gif", lambda head: head[:6] in GIF_SIGNATURES, _gif_complete, _gif_info,
        alpha=False, compression=False, input=False,
    ),
    "svg": ImageFormat(
        "svg", (".svg",), "image/svg+xml", _svg_sniff, _svg_complete, _svg_info, alpha=False, compression=False,
        input=False, routes=("generations",), single=True, streams=False, caution=_svg_caution,
    ),
}  # fmt: skip


def image_format(name: str) -> Optional[ImageFormat]:
    """The format of a name or alias (any case), or None."""
    name = name.strip().lower()
    return next((f for f in IMAGE_FORMATS.values() if name == f.name or name in f.aliases), None)


def format_for_extension(ext: str) -> Optional[ImageFormat]:
    """The format an output extension (with its dot, any case) stands for, or None."""
    return next((f for f in IMAGE_FORMATS.values() if ext.lower() in f.extensions), None)


def format_names(where: Callable[[ImageFormat], bool] = lambda f: True, joiner: str = ", ") -> str:
    """The names of the formats that pass `where`, upper case, for messages: "PNG, JPEG or WEBP"."""
    names = [f.name.upper() for f in IMAGE_FORMATS.values() if where(f)]
    return joiner.join(names[:-1]) + " or " + names[-1] if len(names) > 1 else "".join(names)


def sniff_format(head: bytes) -> Optional[str]:
    """The name of the format whose first bytes head starts with, or None."""
    return next((f.name for f in IMAGE_FORMATS.values() if f.sniff(bytes(head[:16]))), None)


def check_complete(data: Union[bytes, bytearray, memoryview], fmt: str) -> Optional[str]:
    """Say what is missing when an image is not whole, else None (a PNG walks to IEND with every CRC right, a
    JPEG ends with its EOI marker, a WEBP is as long as its RIFF header says)."""
    found = IMAGE_FORMATS.get(fmt)
    return found.complete(memoryview(data)) if found else None


def read_image_info(head: bytes) -> Optional[ImageInfo]:
    """Format, width, height and alpha from the first bytes of an image, or None for no known format."""
    fmt = sniff_format(head)
    return IMAGE_FORMATS[fmt].info(head) if fmt else None


# The pixel engine: a PNG codec and the operations on decoded images, all in bulk (style.md, "Pixels in pure
# Python, at C speed"): zlib, strided slices, bytes.translate, and big integers as many lanes at once; a plain
# loop only where each value depends on the one before it. Nothing here is computed until an image needs it.

MAX_PIXELS = 40_000_000  # the most pixels an image may have to be decoded (design.md: inputs up to 40 MP)


class Pixels(NamedTuple):
    """An image in memory: 8-bit RGBA, straight (not premultiplied) alpha, rows top to bottom, no padding."""

    width: int
    height: int
    rgba: bytes  # len == width * height * 4


class AlphaStats(NamedTuple):
    """How transparent an image is: shares of all pixels (0.0..1.0), and of its outermost ring of pixels."""

    transparent: float  # alpha == 0
    partial: float  # 0 < alpha < 255
    opaque: float  # alpha == 255
    border_transparent: float  # of the pixels on the outermost ring, the share with alpha == 0


# PNG decoding and encoding


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# "Allowed combinations of colour type and bit depth" (table 11.1), and samples per pixel for each type.
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Adam7 passes as (first column, first row, column step, row step) (section 8.2).
_PNG_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
_PNG_MAX_CHUNK = 0x7FFFFFFF  # "a four-byte unsigned integer ... restricted to 2^31-1": lengths and dimensions
_PNG_INFLATE_STEP = 1 << 22  # inflate at most this much per call, so a single huge IDAT never doubles memory
_PNG_SEGMENT = 1 << 16  # the decoder works on rows longer than this many bytes in pieces of this size
_PNG_ENCODE_BAND = 1 << 15  # the encoder filters about this many bytes of rows at a time (cache-sized)
_PNG_IDAT_SIZE = 1 << 16  # the encoder's IDAT chunk size (Pillow's too)


# PNG decoding


def decode_png(data: bytes) -> Pixels:
    """Decode a PNG file to 8-bit RGBA pixels (16-bit samples keep their high byte)."""
    import zlib

    try:
        return _png_decode(memoryview(data).cast("B"))
    except ImageDataError:
        raise
    except zlib.error as exc:
        raise ImageDataError(f"malformed PNG: its image data is not a valid zlib stream ({exc})") from exc
    except (ArithmeticError, LookupError, ValueError) as exc:
        # Every check above should have caught a malformed file first; never let one escape as a traceback.
        raise ImageDataError(f"malformed PNG ({exc.__class__.__name__} while decoding)") from exc


class _PngHeader(NamedTuple):
    """The IHDR fields the decoder uses."""

    width: int
    height: int
    depth: int
    colour: int
    interlace: int


def _png_decode(view: memoryview) -> Pixels:
    """Walk the chunks, inflate the image data with a bound, unfilter each pass and convert it to RGBA."""
    header, palette, trns, idat = _png_read_chunks(view)
    width, height = header.width, header.height
    bits = _PNG_CHANNELS[header.colour] * header.depth  # bits per pixel
    bpp = max(1, bits // 8)  # "bpp ... the number of bytes per complete pixel, rounding up to one" (7.3)
    passes = _PNG_ADAM7 if header.interlace else ((0, 0, 1, 1),)
    # Each pass is a sub-image of its own rows, "each scanline ... preceded by a filter-type byte";
    # an empty pass has no rows at all (8.2).
    layout: List[Tuple[int, int, int, int, int, int]] = []
    expected = 0
    for x0, y0, dx, dy in passes:
        pass_width = (width - x0 + dx - 1) // dx if width > x0 else 0
        pass_height = (height - y0 + dy - 1) // dy if height > y0 else 0
        if pass_width and pass_height:
            row_bytes = (pass_width * bits + 7) // 8
            layout.append((x0, y0, dx, dy, pass_width, pass_height))
            expected += pass_height * (row_bytes + 1)
    raw = _png_inflate(idat, expected)
    del idat
    if not header.interlace:
        plane = _png_unfilter(raw, 0, (width * bits + 7) // 8, height, bpp)
        del raw
        return Pixels(width, height, _png_to_rgba(plane, width, height, header, palette, trns))
    rgba = bytearray(width * height * 4)
    pixels_out = memoryview(rgba).cast("I")  # one 4-byte item per pixel, so a pass row is one strided store
    offset = 0
    for x0, y0, dx, dy, pass_width, pass_height in layout:
        row_bytes = (pass_width * bits + 7) // 8
        plane = _png_unfilter(raw, offset, row_bytes, pass_height, bpp)
        offset += pass_height * (row_bytes + 1)
        sub = memoryview(_png_to_rgba(plane, pass_width, pass_height, header, palette, trns)).cast("I")
        for row in range(pass_height):
            start = (y0 + row * dy) * width + x0
            pixels_out[start : start + (pass_width - 1) * dx + 1 : dx] = sub[
                row * pass_width : (row + 1) * pass_width
            ]
    return Pixels(width, height, bytes(rgba))


def _png_read_chunks(
    view: memoryview,
) -> Tuple[_PngHeader, Optional[bytes], Optional[bytes], List[memoryview]]:
    """Check the signature and every chunk's CRC and order; return IHDR, PLTE, tRNS and the IDAT data."""
    import zlib

    if len(view) < 8 or view[:8] != _PNG_SIGNATURE:
        raise ImageDataError("not a PNG file (its first 8 bytes are not the PNG signature)")
    header: Optional[_PngHeader] = None
    palette: Optional[bytes] = None
    trns: Optional[bytes] = None
    idat: List[memoryview] = []
    idat_ended = False
    pos, size = 8, len(view)
    while True:
        if pos + 8 > size:
            raise ImageDataError("truncated PNG: the file ends before its IEND chunk")
        length = int.from_bytes(view[pos : pos + 4], "big")
        kind = bytes(view[pos + 4 : pos + 8])
        if not kind.isalpha():  # "chunk types are restricted to ... A-Z and a-z" (5.3)
            raise ImageDataError(f"malformed PNG: a chunk type at byte {pos + 4} is not four ASCII letters")
        name = kind.decode("ascii")
        if length > _PNG_MAX_CHUNK:
            raise ImageDataError(f"malformed PNG: the {name} chunk's length {length} is over 2^31-1")
        end = pos + 12 + length
        if end > size:
            raise ImageDataError(f"truncated PNG: the {name} chunk runs past the end of the file")
        # "The CRC is calculated on the preceding bytes in the chunk, including the chunk type ... but not
        # including the length field" (5.3).
        if zlib.crc32(view[pos + 4 : end - 4]) != int.from_bytes(view[end - 4 : end], "big"):
            raise ImageDataError(f"corrupt PNG: the {name} chunk's CRC does not match its data")
        body = view[pos + 8 : end - 4]
        pos = end
        if header is None:
            if kind != b"IHDR":  # "The IHDR chunk shall be the first chunk in the PNG datastream" (11.2.2)
                raise ImageDataError(f"malformed PNG: the first chunk is {name}, not IHDR")
            header = _png_read_header(body)
            continue
        if idat and kind != b"IDAT":
            idat_ended = True
        if kind == b"IDAT":
            # "There may be multiple IDAT chunks; if so, they shall appear consecutively" (11.2.4)
            if idat_ended:
                raise ImageDataError("malformed PNG: its IDAT chunks are not consecutive")
            if header.colour == 3 and palette is None:
                raise ImageDataError("malformed PNG: an indexed-colour image has no PLTE chunk before IDAT")
            # An empty IDAT adds nothing (and millions of them must not cost memory); one keeps its place.
            if len(body) or not idat:
                idat.append(body)
        elif kind == b"IEND":
            break  # "IEND ... shall appear last": whatever follows it is not part of the image
        elif kind == b"IHDR":
            raise ImageDataError("malformed PNG: a second IHDR chunk")
        elif kind == b"PLTE":
            palette = _png_read_palette(body, header, palette is not None, bool(idat))
        elif kind == b"tRNS":
            trns = _png_read_trns(body, header, palette, trns is not None, bool(idat))
        elif not kind[0] & 0x20:
            # "Ancillary bit: ... 0 (uppercase) = critical": a decoder that meets an unknown critical chunk
            # "shall indicate to the user that the image contains information it cannot safely interpret".
            raise ImageDataError(f"unsupported PNG: unknown critical chunk {name}")
        # Any other ancillary chunk (gAMA, iCCP, tEXt, ...) is skipped; its CRC was still checked.
    if header is None:  # pragma: no cover - the loop either reads IHDR first or raises
        raise ImageDataError("malformed PNG: no IHDR chunk")
    if not idat:
        raise ImageDataError("malformed PNG: no IDAT chunk (no image data)")
    return header, palette, trns, idat


def _png_read_header(body: memoryview) -> _PngHeader:
    """Check IHDR's fields against the specification and the pixel cap, before any data is inflated."""
    if len(body) != 13:
        raise ImageDataError(f"malformed PNG: IHDR holds {len(body)} bytes, not 13")
    width = int.from_bytes(body[0:4], "big")
    height = int.from_bytes(body[4:8], "big")
    depth, colour, compression, filtering, interlace = body[8], body[9], body[10], body[11], body[12]
    # "Zero is an invalid value" for width and height, and both are at most 2^31-1 (11.2.2).
    if not (0 < width <= _PNG_MAX_CHUNK and 0 < height <= _PNG_MAX_CHUNK):
        raise ImageDataError(f"malformed PNG: IHDR gives a size of {width}x{height}")
    if colour not in _PNG_DEPTHS:
        raise ImageDataError(f"malformed PNG: IHDR gives colour type {colour} (PNG has 0, 2, 3, 4 and 6)")
    if depth not in _PNG_DEPTHS[colour]:
        raise ImageDataError(f"malformed PNG: bit depth {depth} is not allowed with colour type {colour}")
    if compression != 0 or filtering != 0:
        raise ImageDataError("malformed PNG: IHDR names an unknown compression or filter method")
    if interlace > 1:
        raise ImageDataError(f"malformed PNG: IHDR gives interlace method {interlace} (PNG has 0 and 1)")
    if width * height > MAX_PIXELS:
        raise ImageDataError(
            f"image too large: {width}x{height} is {width * height:,} pixels, over the limit of {MAX_PIXELS:,}"
        )
    return _PngHeader(width, height, depth, colour, interlace)


def _png_read_palette(body: memoryview, header: _PngHeader, seen: bool, after_idat: bool) -> bytes:
    """Check a PLTE chunk: one, before IDAT, 1 to 256 RGB entries, never on a greyscale image (11.2.3)."""
    if seen or after_idat:
        raise ImageDataError("malformed PNG: a second PLTE chunk, or one after the image data")
    if header.colour in (0, 4):
        raise ImageDataError("malformed PNG: a greyscale image has a PLTE chunk")
    if not body or len(body) % 3 or len(body) > 768:
        raise ImageDataError(
            f"malformed PNG: PLTE holds {len(body)} bytes, not 3 per entry for 1-256 entries"
        )
    return bytes(body)


def _png_read_trns(
    body: memoryview, header: _PngHeader, palette: Optional[bytes], seen: bool, after_idat: bool
) -> bytes:
    """Check a tRNS chunk: after PLTE, before IDAT, and of the size its colour type gives (11.3.2.1)."""
    if seen or after_idat:
        raise ImageDataError("malformed PNG: a second tRNS chunk, or one after the image data")
    if header.colour == 3:
        if palette is None:
            raise ImageDataError("malformed PNG: tRNS comes before PLTE")
        if len(body) > len(palette) // 3:
            raise ImageDataError("malformed PNG: tRNS holds more alpha values than the palette has entries")
    elif header.colour in (4, 6):
        raise ImageDataError("malformed PNG: tRNS on an image that already has an alpha channel")
    elif len(body) != (2 if header.colour == 0 else 6):
        raise ImageDataError(f"malformed PNG: tRNS holds {len(body)} bytes for colour type {header.colour}")
    return bytes(body)


def _png_inflate(pieces: List[memoryview], expected: int) -> bytes:
    """Inflate the IDAT data to exactly `expected` bytes, never producing more than one byte past it."""
    import zlib

    stream = zlib.decompressobj()
    parts: List[bytes] = []
    got = 0
    for piece in pieces:
        pending: Union[bytes, memoryview] = piece
        while True:
            limit = min(expected - got + 1, _PNG_INFLATE_STEP)
            part = stream.decompress(pending, limit)
            got += len(part)
            if got > expected:
                raise ImageDataError(
                    f"malformed PNG: its image data inflates to more than {expected:,} bytes"
                )
            parts.append(part)
            pending = stream.unconsumed_tail
            # A call that filled its whole limit may have more output held back, even with no input left.
            if stream.eof or (not pending and len(part) < limit):
                break
        if stream.eof:
            break  # bytes after the end of the zlib stream are ignored, as libpng does
    if got < expected:
        if not stream.eof:
            raise ImageDataError("truncated PNG: its image data ends before the zlib stream does")
        raise ImageDataError(f"malformed PNG: its image data inflates to {got:,} bytes, not {expected:,}")
    return b"".join(parts)


# Unfiltering
# "Filters are applied to bytes, not to pixels" (7.3): with x the byte being reconstructed, a the byte
# bpp to its left, b the byte above, c the byte above a (all 0 outside the image), the five filter types
# add 0, a, b, floor((a + b) / 2) or the Paeth predictor of (a, b, c) to the filtered byte, modulo 256.
# None, Sub and Up rows are done a whole row at a time as big integers. Average and Paeth depend on the
# byte just reconstructed, so a run of rows holding many of them is done as a wavefront over the
# anti-diagonals of pixels (each pixel depends only on its left, upper and upper-left neighbours, which
# lie on the two previous diagonals), one big integer per diagonal; a lone such row is a tight loop.

# Costs in nanoseconds, measured on CPython 3.9-3.13, that decide between the wavefront and the loop.
_PNG_LOOP_PAETH_NS = 200  # per byte of a Paeth row in the Python loop
_PNG_LOOP_AVERAGE_NS = 100  # per byte of an Average row in the Python loop
_PNG_WAVE_STEP_NS = 4000  # fixed cost of one diagonal of the wavefront, plus 1500 per byte of a pixel
_PNG_WAVE_BYTE_NS = 45  # per byte on a diagonal (Paeth included; without Paeth about half)
_PNG_WAVE_ROWS = 256  # the most rows one wavefront covers (longer diagonals stop paying for themselves)


def _png_lanes(value: int, count: int) -> int:
    """An integer holding `value` in each of `count` 16-bit lanes."""
    return int.from_bytes(value.to_bytes(2, "little") * count, "little")


def _png_unfilter(raw: bytes, offset: int, row_bytes: int, height: int, bpp: int) -> bytearray:
    """Undo the filters of the `height` rows at raw[offset:], each a filter byte and `row_bytes` bytes."""
    stride = row_bytes + 1
    kinds = raw[offset : offset + stride * height : stride]
    unknown = kinds.translate(None, b"\x00\x01\x02\x03\x04")
    if unknown:
        row = kinds.index(unknown[0])
        raise ImageDataError(f"malformed PNG: row {row} has filter type {unknown[0]} (PNG has 0 to 4)")
    out = bytearray(row_bytes * height)
    units = row_bytes // bpp  # pixels in a row (bytes when pixels are smaller than a byte)
    # Very wide rows are worked on in segments, so the big integers stay small whatever the width.
    segment = max(bpp, _PNG_SEGMENT // bpp * bpp)
    lanes = _PngByteLanes()
    # Rows whose Average or Paeth filter needs the loop or the wavefront ("heavy"), counted for the choice.
    heavy_before = [0]
    for y, kind in enumerate(kinds):
        heavy_before.append(heavy_before[-1] + (kind == 3 or (kind == 4 and y > 0)))
    prev = bytes(row_bytes)  # "for the first scanline ... the previous scanline is assumed to be zeros"
    y = 0
    while y < height:
        kind = kinds[y]
        if kind in (3, 4) and row_bytes <= _PNG_SEGMENT:
            end = _png_wave_end(kinds, heavy_before, y, units, bpp)
            if end > y + 1:
                _png_unfilter_wave(raw, offset, out, y, end, row_bytes, bpp)
                y = end
                prev = bytes(out[(y - 1) * row_bytes : y * row_bytes])
                continue
        start = offset + y * stride + 1
        if kind == 0:
            cur = raw[start : start + row_bytes]
        else:
            parts: List[bytes] = []
            left = [0] * bpp  # the last pixel of the previous segment (a), and the one above it (c)
            upper_left = [0] * bpp
            for first in range(0, row_bytes, segment):
                last = min(row_bytes, first + segment)
                line = raw[start + first : start + last]
                above = prev[first:last]
                if kind == 2:
                    parts.append(lanes.add(line, above))
                elif kind == 1 or (y == 0 and kind == 4):
                    # Sub (and Paeth on the first row, where b = c = 0 makes the predictor a).
                    parts.append(lanes.prefix_sum(line, bpp, bytes(left)))
                    left = list(parts[-1][-bpp:])
                elif kind == 3:
                    parts.append(_png_average_row(line, above, bpp, left))
                else:
                    parts.append(_png_paeth_row(line, above, bpp, left, upper_left))
            cur = parts[0] if len(parts) == 1 else b"".join(parts)
        out[y * row_bytes : (y + 1) * row_bytes] = cur
        prev = cur
        y += 1
    return out


class _PngByteLanes:
    """Bytewise addition modulo 256 on rows held as big integers, with its masks kept per row length.

    Add the low 7 bits of each byte, then put back the top bits with XOR, so no carry crosses into the next
    byte: ((x & 0x7f..) + (y & 0x7f..)) ^ ((x ^ y) & 0x80..).
    """

    def __init__(self) -> None:
        self.masks: Dict[int, Tuple[int, int, int]] = {}

    def _masks(self, size: int) -> Tuple[int, int, int]:
        masks = self.masks.get(size)
        if masks is None:
            low7 = int.from_bytes(b"\x7f" * size, "little")
            masks = (low7, int.from_bytes(b"\x80" * size, "little"), (1 << (8 * size)) - 1)
            self.masks[size] = masks
        return masks

    def add(self, line: bytes, above: bytes) -> bytes:
        """line + above, byte by byte: the Up filter's reconstruction."""
        low7, high, _ = self._masks(len(line))
        x = int.from_bytes(line, "little")
        y = int.from_bytes(above, "little")
        return (((x & low7) + (y & low7)) ^ ((x ^ y) & high)).to_bytes(len(line), "little")

    def prefix_sum(self, line: bytes, bpp: int, carry: bytes) -> bytes:
        """The Sub filter's reconstruction: each byte plus the rebuilt byte bpp to its left, `carry` before."""
        size = len(line)
        low7, high, full = self._masks(size)
        total = int.from_bytes(line, "little")
        before = int.from_bytes(carry, "little")  # added to the first pixel, the sum carries it along
        total = ((total & low7) + (before & low7)) ^ ((total ^ before) & high)
        # A prefix sum in log2(width) steps: add the row shifted by 1, 2, 4, ... pixels.
        shift = 8 * bpp
        while shift < 8 * size:
            moved = (total << shift) & full
            total = ((total & low7) + (moved & low7)) ^ ((total ^ moved) & high)
            shift <<= 1
        return total.to_bytes(size, "little")


def _png_wave_end(kinds: bytes, heavy_before: List[int], y: int, units: int, bpp: int) -> int:
    """Where a wavefront starting at row y should stop (y + 1: better not to start one), by estimated cost."""
    height = len(kinds)
    if units < 2:
        return y + 1
    best_end, best_gain = y + 1, 0.0
    # Try windows of a few heights; each must end on a heavy row (trailing light rows are cheap anyway).
    for rows in (16, 32, 64, 128, _PNG_WAVE_ROWS):
        end = min(height, y + rows)
        while end > y + 1 and kinds[end - 1] not in (3, 4):
            end -= 1
        if end <= y + 1:
            continue
        paeth = 4 in kinds[y:end]
        heavy = heavy_before[end] - heavy_before[y]
        average = kinds[y:end].count(3)
        loop_ns = units * bpp * ((heavy - average) * _PNG_LOOP_PAETH_NS + average * _PNG_LOOP_AVERAGE_NS)
        lane_ns = _PNG_WAVE_BYTE_NS if paeth else _PNG_WAVE_BYTE_NS // 2
        wave_ns = (units + end - y - 1) * (_PNG_WAVE_STEP_NS + 1500 * bpp + (end - y) * bpp * lane_ns)
        gain = (loop_ns - wave_ns) / (end - y)
        if gain > best_gain:
            best_end, best_gain = end, gain
    return best_end


def _png_average_row(line: bytes, prev: bytes, bpp: int, left: List[int]) -> bytes:
    """Undo the Average filter on (a segment of) one row: x + floor((a + b) / 2), one channel at a time.

    left[channel] holds a for the first pixel, and is updated to the segment's last pixel.
    """
    row = bytearray(len(line))
    for channel in range(bpp):
        a = left[channel]
        values: List[int] = []
        push = values.append
        for x, b in zip(line[channel::bpp], prev[channel::bpp]):
            a = (x + ((a + b) >> 1)) & 255
            push(a)
        row[channel::bpp] = bytes(values)
        left[channel] = a
    return bytes(row)


def _png_paeth_row(line: bytes, prev: bytes, bpp: int, left: List[int], upper_left: List[int]) -> bytes:
    """Undo the Paeth filter on (a segment of) one row, one channel at a time so a and c stay local.

    left and upper_left hold a and c for the first pixel, and are updated to the segment's last pixel.
    """
    row = bytearray(len(line))
    for channel in range(bpp):
        a, c = left[channel], upper_left[channel]
        values: List[int] = []
        push = values.append
        for x, b in zip(line[channel::bpp], prev[channel::bpp]):
            # "p = a + b - c; pa = abs(p - a); pb = abs(p - b); pc = abs(p - c); if pa <= pb and pa <= pc
            # then Pr = a else if pb <= pc then Pr = b else Pr = c" (9.4), with p - a = b - c, p - b = a - c.
            pa = b - c
            pb = a - c
            pc = pa + pb
            if pa < 0:
                pa = -pa
            if pb < 0:
                pb = -pb
            if pc < 0:
                pc = -pc
            if pa <= pb and pa <= pc:
                a = (x + a) & 255
            elif pb <= pc:
                a = (x + b) & 255
            else:
                a = (x + c) & 255
            push(a)
            c = b
        row[channel::bpp] = bytes(values)
        left[channel], upper_left[channel] = a, c
    return bytes(row)


def _png_paeth_lanes(a: int, b: int, c: int, one: int, bias: int, double_bias: int) -> int:
    """The Paeth predictor of every 16-bit lane of a, b, c (values 0-255), all lanes at once."""
    # Differences are kept biased by 512 so no lane ever borrows from the next; bit 9 is then the sign.
    b_c = b + bias - c  # b - c + 512
    a_c = a + bias - c  # a - c + 512
    sum_ = a_c + b_c - bias  # a + b - 2c + 512
    # |v| + 512 from v + 512: keep it where v >= 0, else flip the low 10 bits and add 1 (1023 - V + 1).
    neg = ((b_c >> 9) & one) ^ one
    pa = (b_c ^ (neg * 1023)) + neg  # |b - c| + 512 = |p - a| + 512
    neg = ((a_c >> 9) & one) ^ one
    pb = (a_c ^ (neg * 1023)) + neg  # |p - b| + 512
    neg = ((sum_ >> 9) & one) ^ one
    pc = (sum_ ^ (neg * 1023)) + neg  # |p - c| + 512
    # u <= v exactly when v + 1024 - u has bit 10 set.
    room = double_bias - pa
    pick_a = (((pb + room) & (pc + room)) >> 10) & one  # pa <= pb and pa <= pc
    pick_b = ((pc + double_bias - pb) >> 10) & one  # pb <= pc
    b_or_c = c ^ ((b ^ c) & (pick_b * 255))
    return b_or_c ^ ((a ^ b_or_c) & (pick_a * 255))


def _png_unfilter_wave(
    raw: bytes, offset: int, out: bytearray, y0: int, y1: int, row_bytes: int, bpp: int
) -> None:
    """Undo the filters of rows y0..y1-1 (any types) along anti-diagonals of pixels, into out."""
    stride = row_bytes + 1
    units = row_bytes // bpp
    rows = y1 - y0
    group = 16 * bpp  # bits of one pixel: bpp lanes of 16 bits
    lanes = rows * bpp
    size = 2 * lanes
    kinds = raw[offset + y0 * stride : offset + y1 * stride : stride]
    # Constants span one more pixel than the band: shifting b and c up a row pushes one pixel past the
    # top, where lanes may hold anything but must not borrow; the final mask drops it.
    one = _png_lanes(1, lanes + bpp)
    bias = _png_lanes(512, lanes + bpp)
    double_bias = _png_lanes(1024, lanes + bpp)
    low = _png_lanes(255, lanes)
    masks = [0] * 5
    for kind in set(kinds):
        mask = bytearray(size)
        for row, row_kind in enumerate(kinds):
            if row_kind == kind:
                mask[2 * row * bpp : 2 * (row + 1) * bpp] = b"\xff\x00" * bpp
        masks[kind] = int.from_bytes(mask, "little")
    _, sub_mask, up_mask, average_mask, paeth_mask = masks
    only_paeth = bool(paeth_mask) and not (sub_mask or up_mask or average_mask or masks[0])
    # The row above the band, spread into 16-bit lanes: lane 0's b and c while the diagonal meets row y0.
    seed = bytearray(2 * row_bytes)
    if y0:
        seed[0::2] = out[(y0 - 1) * row_bytes : y0 * row_bytes]
    pixel = 2 * bpp
    raw_step = stride - bpp  # from a pixel to the one left of it on the next row
    out_step = row_bytes - bpp
    raw_base = offset + y0 * stride + 1
    out_base = y0 * row_bytes
    lanes_in = bytearray(size)
    from_bytes = int.from_bytes
    previous = previous2 = 0  # the two previous diagonals, lane j holding row y0 + j
    # Lanes of rows a diagonal has not reached yet stay 0, as the bytes left of the image must be (their
    # inputs are all 0); lanes of rows it has passed keep leftovers that only ever feed each other.
    for diagonal in range(units + rows - 1):
        first = diagonal - units + 1 if diagonal >= units else 0  # rows first..last meet this diagonal
        last = diagonal if diagonal < rows else rows - 1
        count = last - first + 1
        x = diagonal - first
        raw_pos = raw_base + first * stride + x * bpp
        raw_end = raw_pos + raw_step * (count - 1) + 1
        lane_lo, lane_hi = 2 * first * bpp, 2 * (last + 1) * bpp
        for channel in range(bpp):
            lanes_in[lane_lo + 2 * channel : lane_hi : pixel] = raw[
                raw_pos + channel : raw_end + channel : raw_step
            ]
        filtered = from_bytes(lanes_in, "little")
        a = previous
        b = previous << group
        c = previous2 << group
        if diagonal < units:
            b |= from_bytes(seed[diagonal * pixel : (diagonal + 1) * pixel], "little")
            if diagonal:
                c |= from_bytes(seed[(diagonal - 1) * pixel : diagonal * pixel], "little")
        if only_paeth:
            predicted = _png_paeth_lanes(a, b, c, one, bias, double_bias)
        else:
            predicted = (a & sub_mask) | (b & up_mask)
            if average_mask:
                predicted |= ((a + b) >> 1) & average_mask
            if paeth_mask:
                predicted |= _png_paeth_lanes(a, b, c, one, bias, double_bias) & paeth_mask
        current = (filtered + predicted) & low
        done = current.to_bytes(size, "little")
        out_pos = out_base + first * row_bytes + x * bpp
        out_end = out_pos + out_step * (count - 1) + 1
        for channel in range(bpp):
            out[out_pos + channel : out_end + channel : out_step] = done[
                lane_lo + 2 * channel : lane_hi : pixel
            ]
        previous2, previous = previous, current


# From samples to RGBA


def _png_unpack(plane: bytearray, row_bytes: int, width: int, height: int, depth: int, scale: bool) -> bytes:
    """One byte per pixel from rows of 1-, 2- or 4-bit samples; greys scaled to 0-255 when `scale`."""
    per_byte = 8 // depth
    top = (1 << depth) - 1
    # "Scaling by ... multiplying by 255/(2^depth - 1)" is exact here: x255, x85, x17 (12.4, 13.12).
    factor = 255 // top if scale else 1
    samples = bytearray(len(plane) * per_byte)
    # "Pixels are always packed into scanlines with ... the leftmost pixel in the high-order bits" (7.2).
    for index in range(per_byte):
        shift = 8 - depth * (index + 1)
        table = bytes(((value >> shift) & top) * factor for value in range(256))
        samples[index::per_byte] = plane.translate(table)
    padded = row_bytes * per_byte
    if padded == width:
        return bytes(samples)
    view = memoryview(samples)
    return b"".join([view[row * padded : row * padded + width] for row in range(height)])


def _png_matches(planes: List[Tuple[Union[bytes, bytearray], int]], count: int) -> Union[bytes, bytearray]:
    """Alpha for a tRNS colour key: 0 where every plane's byte equals its value, else 255."""
    if len(planes) == 1:
        plane, value = planes[0]
        return plane.translate(b"\xff" * value + b"\x00" + b"\xff" * (255 - value))
    both = -1
    for plane, value in planes:
        hit = plane.translate(b"\x00" * value + b"\x01" + b"\x00" * (255 - value))
        both &= int.from_bytes(hit, "little")
    return both.to_bytes(count, "little").translate(b"\xff\x00" + b"\xff" * 254)


def _png_to_rgba(
    plane: bytearray,
    width: int,
    height: int,
    header: _PngHeader,
    palette: Optional[bytes],
    trns: Optional[bytes],
) -> bytes:
    """Convert unfiltered rows of samples to 8-bit RGBA, emptying `plane` as soon as it is read."""
    rgba = _png_fill_rgba(plane, width, height, header, palette, trns)
    if rgba is not plane:
        plane.clear()  # a few megabytes less at the peak, while the result is copied
    result = bytes(rgba)
    plane.clear()
    return result


def _png_fill_rgba(
    plane: bytearray,
    width: int,
    height: int,
    header: _PngHeader,
    palette: Optional[bytes],
    trns: Optional[bytes],
) -> bytearray:
    """The 8-bit RGBA of unfiltered rows of samples (for 8-bit RGBA, the rows themselves)."""
    colour, depth = header.colour, header.depth
    count = width * height
    if colour == 6:
        return plane if depth == 8 else bytearray(memoryview(plane)[0::2])
    rgba = bytearray(b"\xff") * (4 * count)
    if colour == 4:
        step = 2 if depth == 8 else 4
        luma = plane[0::step]
        rgba[0::4] = luma
        rgba[1::4] = luma
        rgba[2::4] = luma
        rgba[3::4] = plane[step // 2 :: step]
        return rgba
    row_bytes = len(plane) // height
    if colour == 3:
        if palette is None:  # pragma: no cover - the chunk walk refuses an indexed image without PLTE
            raise ImageDataError("malformed PNG: an indexed-colour image has no PLTE chunk")
        index = _png_unpack(plane, row_bytes, width, height, depth, False) if depth < 8 else bytes(plane)
        entries = len(palette) // 3
        if entries < 1 << depth:
            # An index past the last PLTE entry has no colour: an error (libpng's "invalid palette index").
            stray = index.translate(None, bytes(range(entries)))
            if stray:
                raise ImageDataError(f"malformed PNG: palette index {stray[0]} is past its {entries} entries")
        padding = bytes(3 * (256 - entries))
        for channel in range(3):
            rgba[channel::4] = index.translate((palette + padding)[channel::3])
        if trns:
            rgba[3::4] = index.translate(trns + b"\xff" * (256 - len(trns)))
        return rgba
    # Greyscale (0) and truecolour (2); tRNS names one colour, compared with the full-precision samples.
    key = int.from_bytes(trns, "big") if trns is not None and colour == 0 else -1
    if colour == 0 and depth < 8:
        grey = _png_unpack(plane, row_bytes, width, height, depth, True)
        rgba[0::4] = grey
        rgba[1::4] = grey
        rgba[2::4] = grey
        if 0 <= key <= (1 << depth) - 1:  # a key out of the depth's range matches no pixel
            rgba[3::4] = _png_matches([(grey, key * (255 // ((1 << depth) - 1)))], count)
        return rgba
    channels = 1 if colour == 0 else 3
    step = channels * (depth // 8)
    keys: List[Tuple[Union[bytes, bytearray], int]] = []
    values = trns if trns is not None else b""
    for channel in range(channels):
        start = channel * (depth // 8)
        high = plane[start::step]
        for target in range(3) if colour == 0 else (channel,):
            rgba[target::4] = high
        if trns is not None:
            wanted = int.from_bytes(values[2 * channel : 2 * channel + 2], "big")
            if depth == 8:
                if wanted <= 255:
                    keys.append((high, wanted))
                else:
                    keys.append((b"", -1))
            else:
                keys.append((high, wanted >> 8))
                keys.append((plane[start + 1 :: step], wanted & 255))
    if keys and all(value >= 0 for _, value in keys):
        rgba[3::4] = _png_matches(keys, count)
    return rgba


# PNG encoding


def encode_png(pixels: Pixels) -> bytes:
    """Encode 8-bit RGBA pixels as a PNG: RGB when every pixel is opaque, with a filter chosen per row."""
    import zlib

    width, height, rgba = pixels
    if not (0 < width <= _PNG_MAX_CHUNK and 0 < height <= _PNG_MAX_CHUNK) or len(rgba) != width * height * 4:
        raise ImageDataError(f"cannot encode {width}x{height} pixels from {len(rgba):,} bytes of RGBA")
    count = width * height
    data: bytes = rgba
    colour, bpp = 6, 4
    if rgba[3::4] == b"\xff" * count:
        colour, bpp = 2, 3
        image = bytearray(3 * count)
        for channel in range(3):
            image[channel::3] = rgba[channel::4]
        data = bytes(image)
        del image
    row_bytes = width * bpp
    # Level 6 with the strategy made for filtered image data: about 8% smaller than the default strategy.
    deflate = zlib.compressobj(6, zlib.DEFLATED, 15, 9, zlib.Z_FILTERED)
    compressed: List[bytes] = []
    states: Dict[Tuple[int, int], _PngFilterState] = {}
    if row_bytes <= _PNG_ENCODE_BAND:
        band = _PNG_ENCODE_BAND // row_bytes
        for y0 in range(0, height, band):
            state = _png_filter_state(states, row_bytes, bpp, min(band, height - y0))
            compressed.append(deflate.compress(_png_filter_band(data, y0, state)))
    else:
        for y in range(height):
            compressed.append(deflate.compress(_png_filter_wide_row(data, y, row_bytes, bpp, states)))
    compressed.append(deflate.flush())
    stream = b"".join(compressed)
    del compressed
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes((8, colour, 0, 0, 0))
    chunks = [_PNG_SIGNATURE, _png_chunk(b"IHDR", ihdr)]
    for start in range(0, len(stream), _PNG_IDAT_SIZE):
        chunks.append(_png_chunk(b"IDAT", stream[start : start + _PNG_IDAT_SIZE]))
    chunks.append(_png_chunk(b"IEND", b""))
    return b"".join(chunks)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    """One chunk: length, type, data, and the CRC of type and data."""
    import zlib

    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(body, zlib.crc32(kind)).to_bytes(4, "big")


class _PngFilterState:
    """Constants for filtering a block of `rows` rows of `row_bytes` bytes, built once per block shape."""

    __slots__ = (
        "bias",
        "bpp",
        "double_bias",
        "high",
        "left8",
        "left16",
        "low7",
        "low16",
        "one",
        "row_bytes",
        "rows",
        "score",
    )

    def __init__(self, row_bytes: int, bpp: int, rows: int) -> None:
        size = row_bytes * rows
        self.row_bytes = row_bytes
        self.bpp = bpp
        self.rows = rows
        self.low7 = int.from_bytes(b"\x7f" * size, "little")
        self.high = int.from_bytes(b"\x80" * size, "little")
        # Keeps a byte's left neighbour (a) only where there is one: not in the first pixel of a row.
        self.left8 = int.from_bytes((b"\x00" * bpp + b"\xff" * (row_bytes - bpp)) * rows, "little")
        self.left16 = int.from_bytes((b"\x00\x00" * bpp + b"\xff\xff" * (row_bytes - bpp)) * rows, "little")
        self.one = _png_lanes(1, size)
        self.bias = _png_lanes(512, size)
        self.double_bias = _png_lanes(1024, size)
        self.low16 = _png_lanes(255, size)
        self.score = _png_score_table()


def _png_filter_state(
    states: Dict[Tuple[int, int], _PngFilterState], row_bytes: int, bpp: int, rows: int
) -> _PngFilterState:
    """The constants for blocks of this shape, made on first use."""
    state = states.get((row_bytes, rows))
    if state is None:
        state = states[(row_bytes, rows)] = _PngFilterState(row_bytes, bpp, rows)
    return state


def _png_residuals(block: bytes, above: bytes, state: _PngFilterState) -> List[bytes]:
    """A block of rows filtered by each of the five filters; `above` is the block one row up (zeros at the top)."""
    size = len(block)
    low7, high = state.low7, state.high
    x = int.from_bytes(block, "little")
    b = int.from_bytes(above, "little")
    a = (x << (8 * state.bpp)) & state.left8
    x_high = x | high

    def minus(y: int) -> bytes:
        # Bytewise x - y modulo 256 with no borrow between bytes: (x | 0x80) - (y & 0x7f) per byte, then
        # the top bit set right (it flips unless x and y had the same top bit).
        return ((x_high - (y & low7)) ^ (~(x ^ y) & high)).to_bytes(size, "little")

    # floor((a + b) / 2) bytewise: the bits a and b share, plus half the bits where they differ.
    average = (a & b) + (((a ^ b) >> 1) & low7)
    return [block, minus(a), minus(b), minus(average), _png_paeth_residuals(block, above, state)]


def _png_paeth_residuals(block: bytes, above: bytes, state: _PngFilterState) -> bytes:
    """The Paeth filter of a block of rows, in 16-bit lanes: every predictor at once, as in the decoder."""
    spread = bytearray(2 * len(block))
    spread[0::2] = block
    x = int.from_bytes(spread, "little")
    spread[0::2] = above
    b = int.from_bytes(spread, "little")
    a = (x << (16 * state.bpp)) & state.left16
    c = (b << (16 * state.bpp)) & state.left16
    predicted = _png_paeth_lanes(a, b, c, state.one, state.bias, state.double_bias)
    residual = (x + state.low16 + state.one - predicted) & state.low16  # x - Pr + 256, modulo 256
    return residual.to_bytes(len(spread), "little")[0::2]


# The row-choice heuristic sums a cost per filtered byte, read as a signed value as in libpng's "minimum sum
# of absolute differences", but taking its bit length (0-8): a log scale that tracks the deflated size as
# well and keeps a row's sum small enough for Adler-32's first sum, which adds bytes at C speed.
_PNG_SCORE_CHUNK = 65519 // 8  # bytes whose costs add up to less than Adler-32's modulus 65521, minus 1
_PNG_FILTER_BYTES = (b"\x00", b"\x01", b"\x02", b"\x03", b"\x04")


def _png_score_table() -> bytes:
    """The cost of each filtered byte value: the bit length of its distance from zero modulo 256."""
    return bytes(min(value, 256 - value).bit_length() for value in range(256))


def _png_score(costs: memoryview, start: int, end: int) -> int:
    """The sum of costs[start:end], by Adler-32 over pieces too short for its sum to wrap."""
    import zlib

    total = 0
    for first in range(start, end, _PNG_SCORE_CHUNK):
        total += (zlib.adler32(costs[first : min(end, first + _PNG_SCORE_CHUNK)]) & 0xFFFF) - 1
    return total


def _png_filter_band(data: bytes, y0: int, state: _PngFilterState) -> bytes:
    """Rows y0.. of a band filtered for deflate: each a filter byte and the row by the best of the five."""
    row_bytes, rows = state.row_bytes, state.rows
    size = rows * row_bytes
    block = data[y0 * row_bytes : y0 * row_bytes + size]
    above = (
        data[(y0 - 1) * row_bytes : (y0 - 1) * row_bytes + size]
        if y0
        else bytes(row_bytes) + block[:-row_bytes]
    )
    if block.count(0) == size and above.count(0) == size:
        return bytes(size + rows)  # all zeros (a keyed-out background): None gives zeros, nothing to choose
    candidates = _png_residuals(block, above, state)
    costs = [memoryview(candidate.translate(state.score)) for candidate in candidates]
    parts: List[bytes] = []
    for start in range(0, size, row_bytes):
        end = start + row_bytes
        scores = [_png_score(cost, start, end) for cost in costs]
        best = scores.index(min(scores))  # the first of equals: None, then Sub, Up, Average, Paeth
        parts.append(_PNG_FILTER_BYTES[best])
        parts.append(candidates[best][start:end])
    return b"".join(parts)


def _png_filter_wide_row(
    data: bytes, y: int, row_bytes: int, bpp: int, states: Dict[Tuple[int, int], _PngFilterState]
) -> bytes:
    """One row longer than a band, filtered piece by piece (scored first, then filtered by the best)."""
    row_start = y * row_bytes
    segment = max(bpp, _PNG_ENCODE_BAND // bpp * bpp)

    def pieces() -> Iterator[List[bytes]]:
        for first in range(0, row_bytes, segment):
            # Each piece starts one pixel early, for its first pixel's a and c; that pixel is dropped.
            lead = bpp if first else 0
            low, high = row_start + first - lead, row_start + min(row_bytes, first + segment)
            above = data[low - row_bytes : high - row_bytes] if y else bytes(high - low)
            state = _png_filter_state(states, high - low, bpp, 1)
            yield [candidate[lead:] for candidate in _png_residuals(data[low:high], above, state)]

    table = _png_score_table()
    totals = [0] * 5
    for candidates in pieces():
        for kind, candidate in enumerate(candidates):
            totals[kind] += _png_score(memoryview(candidate.translate(table)), 0, len(candidate))
    best = totals.index(min(totals))
    return _PNG_FILTER_BYTES[best] + b"".join(candidates[best] for candidates in pieces())


# Operations on pixels

FITS = ("cover", "contain", "stretch")
Colour = Tuple[int, int, int, int]
Shape = Tuple[str, float, float, float, float]
SHAPE_KINDS = ("box", "ellipse")
SHEET_CELL = 256  # the largest thumbnail cell of a contact sheet, in pixels
SHEET_WIDTH = 2048  # the widest a contact sheet is
SHEET_GAP = 4  # pixels between its cells
CHECKER_CELL = 8  # the checkerboard square behind transparent thumbnails

# Resampling works on lanes of 32 bits inside one big integer per row or column. A weight is a signed
# fixed-point number with _FRACTION_BITS fractional bits (Pillow's PRECISION_BITS, so the same weights);
# every lane also carries _OFFSET (in output levels) so that negative Lanczos lobes never borrow from the
# lane above: Lanczos3 weights normalised to one have positive parts summing to at most 1.29 and negative
# ones to at most 0.29 (checked over thousands of sizes, image edges included), so a lane stays within
# [(256 - 74) << 22, (256 + 329) << 22]: inside 32 bits, and the 10 bits above the fraction hold it.
_FRACTION_BITS = 22
_OFFSET = 256
_LANCZOS_SUPPORT = 3.0
_ELLIPSE_SUBROWS = 16  # sub-scanlines per pixel row; each is exact horizontally
_SHEET_REDUCING_GAP = 2.0  # thumbnails as Pillow's thumbnail(): block averages first down to 2x the size


# Small helpers


@functools.cache
def _table(kind: str, value: int = 0) -> bytes:
    """A 256-byte translate table, built on first use and kept."""
    if kind == "nonzero":  # 0 -> 0, anything else -> 255
        table = bytes([0]) + bytes([255]) * 255
    elif kind == "partial":  # 1..254 -> 1, 0 and 255 -> 0
        table = bytes([0]) + bytes([1]) * 254 + bytes([0])
    elif kind == "not255":  # 255 -> 0, anything else -> 1
        table = bytes([1]) * 255 + bytes([0])
    elif kind == "max":
        table = bytes(max(i, value) for i in range(256))
    elif kind == "premultiply":  # Pillow's MULDIV255: round(c * a / 255), exact in integers
        table = bytes((c * value + 128 + ((c * value + 128) >> 8)) >> 8 for c in range(256))
    elif kind == "reciprocal":  # byte `value` of each alpha's reciprocal
        table = bytes((_reciprocal(a) >> (8 * value)) & 0xFF for a in range(256))
    elif kind == "unpremultiply":  # the same arithmetic as the bulk path in _unpremultiply
        reciprocal = _reciprocal(value)
        table = bytes(min(255, (c * reciprocal + 0x8000) >> 16) for c in range(256))
    else:  # pragma: no cover - a typo in this file
        raise AssertionError(kind)
    return table


def _reciprocal(alpha: int) -> int:
    """round(255 * 2**16 / alpha): un-premultiplying multiplies by it and shifts right by 16."""
    return (255 * 65536 + alpha // 2) // alpha if alpha else 0


def _ones(lanes: int, lane_bytes: int) -> int:
    """The integer with 1 at the bottom of each of `lanes` lanes of `lane_bytes` bytes."""
    if lanes * lane_bytes <= 65536:  # the small ones a pass reuses are kept (at most 64 x 64 KB)
        return _small_ones(lanes, lane_bytes)
    return int.from_bytes((b"\x01" + bytes(lane_bytes - 1)) * lanes, "little")


@functools.lru_cache(maxsize=64)
def _small_ones(lanes: int, lane_bytes: int) -> int:
    return int.from_bytes((b"\x01" + bytes(lane_bytes - 1)) * lanes, "little")


def _join_planes(planes: Sequence[bytes], pixels: int) -> bytearray:
    """Interleave four planes of `pixels` bytes into RGBA bytes."""
    out = bytearray(4 * pixels)
    for channel, plane in enumerate(planes):
        out[channel::4] = plane
    return out


def _colour(value: Sequence[int], name: str) -> bytes:
    """Check an RGBA colour of four 0..255 integers and return it as four bytes."""
    if len(value) != 4 or not all(isinstance(v, int) and 0 <= v <= 255 for v in value):
        raise ImageDataError(f"{name} must be four integers 0..255 (red, green, blue, alpha), not {value!r}")
    return bytes(value)


def _size(width: int, height: int, what: str) -> None:
    """Refuse a width or height that is not a positive integer."""
    for value in (width, height):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ImageDataError(f"{what} must be positive whole numbers of pixels, not {width!r}x{height!r}")


def _check(p: Pixels) -> None:
    """Refuse a Pixels whose buffer does not match its size (a bug upstream, caught before it spreads)."""
    if p.width < 1 or p.height < 1 or len(p.rgba) != 4 * p.width * p.height:
        raise ImageDataError(f"pixel buffer of {len(p.rgba)} bytes does not match {p.width}x{p.height} RGBA")


# Alpha


def has_alpha(p: Pixels) -> bool:
    """Whether any pixel is less than fully opaque."""
    return p.rgba[3::4].count(255) != p.width * p.height


def alpha_stats(p: Pixels) -> AlphaStats:
    """Shares of transparent, partial and opaque pixels, over the image and over its outermost ring."""
    _check(p)
    width, height = p.width, p.height
    alpha = p.rgba[3::4]
    total = width * height
    transparent = alpha.count(0)
    opaque = alpha.count(255)
    if height == 1 or width == 1:
        ring = alpha  # a single row or column is all border
    else:
        last = (height - 1) * width
        # Top and bottom rows whole; the side columns without their corners, so each pixel counts once.
        ring = alpha[:width] + alpha[last:] + alpha[width:last:width] + alpha[2 * width - 1 : last : width]
    return AlphaStats(
        transparent=transparent / total,
        partial=(total - transparent - opaque) / total,
        opaque=opaque / total,
        border_transparent=ring.count(0) / len(ring),
    )


def _zero_clear(rgba: bytes, alpha: bytes) -> bytes:
    """Set every pixel whose alpha is 0 to 0,0,0,0 (one AND over the whole buffer)."""
    mask = alpha.translate(_table("nonzero"))
    wide = _join_planes((mask, mask, mask, mask), len(alpha))
    value = int.from_bytes(rgba, "little") & int.from_bytes(wide, "little")
    return value.to_bytes(len(rgba), "little")


def _tables(kind: str) -> List[bytes]:
    """The 256 tables of one kind, by alpha, as a list (no lookup by key per pixel)."""
    return [_table(kind, alpha) for alpha in range(256)]


def _per_pixel(rgba: bytes, alpha: bytes, tables: List[bytes]) -> bytes:
    """Map the colour of each partially transparent pixel through the table for its alpha (a few pixels)."""
    out = bytearray(rgba)
    for run in re.finditer(b"[\x01-\xfe]+", alpha):
        for i in range(run.start(), run.end()):
            out[4 * i : 4 * i + 3] = out[4 * i : 4 * i + 3].translate(tables[alpha[i]])
    return bytes(out)


def _premultiply(rgba: bytes) -> bytes:
    """Straight RGBA to premultiplied RGBa, rounding as Pillow does; alpha unchanged."""
    pixels = len(rgba) // 4
    alpha = rgba[3::4]
    opaque = alpha.count(255)
    if opaque == pixels:
        return rgba
    clear = alpha.count(0)
    partial = pixels - opaque - clear
    if partial * 16 < pixels:
        # Few partial pixels (the soft edge of a cut-out): a mask for the clear ones, a table for each other
        # (about 1 us a partial pixel against 0.1 us a pixel for the lane path below).
        return _per_pixel(_zero_clear(rgba, alpha) if clear else rgba, alpha, _tables("premultiply"))
    # Many: lane-wise c * a in 16-bit lanes (the three colours; alpha stays), a taken bit by bit (a lane's
    # bit selects c << bit), then Pillow's exact MULDIV255: (x + 128 + ((x + 128) >> 8)) >> 8.
    lanes = 3 * pixels
    ones = _ones(lanes, 2)
    spread = bytearray(2 * lanes)
    spread[0::6], spread[2::6], spread[4::6] = rgba[0::4], rgba[1::4], rgba[2::4]
    colour = int.from_bytes(spread, "little")
    spread[0::6] = spread[2::6] = spread[4::6] = alpha
    multiplier = int.from_bytes(spread, "little")
    product = ones * 128
    for bit in range(8):
        product += (colour & (((multiplier >> bit) & ones) * 0xFF)) << bit
    low_byte = ones * 0xFF
    product = ((product + ((product >> 8) & low_byte)) >> 8) & low_byte
    rgb = product.to_bytes(2 * lanes, "little")
    return bytes(_join_planes((rgb[0::6], rgb[2::6], rgb[4::6], alpha), pixels))


def _unpremultiply(rgba: bytes) -> bytes:
    """Premultiplied RGBa back to straight RGBA (rounded, clamped); alpha 0 becomes 0,0,0,0."""
    pixels = len(rgba) // 4
    alpha = rgba[3::4]
    opaque = alpha.count(255)
    if opaque == pixels:
        return rgba
    clear = alpha.count(0)
    partial = pixels - opaque - clear
    if partial * 4 < pixels:  # the lane path below costs about 0.25 us a pixel
        return _per_pixel(_zero_clear(rgba, alpha) if clear else rgba, alpha, _tables("unpremultiply"))
    # Many: c = (p * r + 2**15) >> 16 with r = round(255 * 2**16 / a), lane-wise in 32-bit lanes (p * r stays
    # below 2**32 since p <= 255 and r <= 255 * 2**16), p taken bit by bit; a = 0 has r = 0, so c = 0.
    lanes = 3 * pixels
    ones = _ones(lanes, 4)
    spread = bytearray(4 * lanes)
    spread[0::12], spread[4::12], spread[8::12] = rgba[0::4], rgba[1::4], rgba[2::4]
    colour = int.from_bytes(spread, "little")
    for part in range(3):  # the reciprocal's three bytes, by alpha
        plane = alpha.translate(_table("reciprocal", part))
        spread[part::12] = spread[4 + part :: 12] = spread[8 + part :: 12] = plane
    multiplier = int.from_bytes(spread, "little")
    product = ones << 15
    for bit in range(8):
        product += (multiplier & (((colour >> bit) & ones) * 0xFFFFFFFF)) << bit
    value = ((product >> 16) & (ones * 0xFFFF)).to_bytes(4 * lanes, "little")
    # Clamp: a lane of 256 or more (ringing made p exceed a) has a non-zero second byte.
    low = int.from_bytes(value[0::4], "little")
    high = int.from_bytes(value[1::4].translate(_table("nonzero")), "little")
    rgb = (low | high).to_bytes(lanes, "little")
    return bytes(_join_planes((rgb[0::3], rgb[1::3], rgb[2::3], alpha), pixels))


# Resampling


def _lanczos(x: float) -> float:
    """Lanczos3: sinc(x) * sinc(x / 3) on [-3, 3), as Pillow defines it."""
    if not -_LANCZOS_SUPPORT <= x < _LANCZOS_SUPPORT:
        return 0.0
    if x == 0.0:
        return 1.0
    a = x * math.pi
    b = (x / 3.0) * math.pi
    return (math.sin(a) / a) * (math.sin(b) / b)


_Weights = Tuple[Tuple[int, Tuple[int, ...]], ...]


@functools.lru_cache(maxsize=16)
def _weights(size: int, start: float, end: float, out_size: int) -> _Weights:
    """Per output pixel: the first input pixel and the fixed-point weights, computed as Pillow does."""
    # Pillow's precompute_coeffs: the kernel is widened by the scale when shrinking (antialiasing), each
    # output pixel's weights are normalised to sum to one, then rounded half away from zero. Kept for the
    # next image of the same size (a batch, a contact sheet).
    scale = (end - start) / out_size
    filter_scale = max(scale, 1.0)
    support = _LANCZOS_SUPPORT * filter_scale
    step = 1.0 / filter_scale
    one = float(1 << _FRACTION_BITS)
    result = []
    for index in range(out_size):
        center = start + (index + 0.5) * scale
        low = max(int(center - support + 0.5), 0)
        high = min(int(center + support + 0.5), size)
        raw = [_lanczos((x - center + 0.5) * step) for x in range(low, high)]
        total = 0.0
        for w in raw:
            total += w
        if total != 0.0:
            raw = [w / total for w in raw]
        fixed = [int(w * one - 0.5) if w < 0 else int(w * one + 0.5) for w in raw]
        while fixed and fixed[-1] == 0:
            fixed.pop()
        lead = 0
        while lead < len(fixed) and fixed[lead] == 0:
            lead += 1
        result.append((low + lead, tuple(fixed[lead:])))
    return tuple(result)


def _shift(weights: _Weights, by: int) -> _Weights:
    """The same weights with input indices moved down by `by`."""
    return tuple((first - by, taps) for first, taps in weights)


def _span(weights: _Weights, size: int) -> Tuple[int, int]:
    """The input range [first, end) that the weights read."""
    first = min(start for start, _ in weights)
    end = max(start + len(taps) for start, taps in weights)
    return first, min(max(end, first + 1), size)


def _run_pass(
    read: Callable[[int], int],
    weights: _Weights,
    lanes: int,
    write: Callable[[int, bytes], None],
) -> None:
    """One separable pass: each output line is a weighted sum of input lines, all lanes at once."""
    ones = _ones(lanes, 4)
    bias = ones * ((_OFFSET << _FRACTION_BITS) + (1 << (_FRACTION_BITS - 1)))  # offset plus rounding half
    ten_bits = ones * 0x3FF
    size = 4 * lanes
    cache: Dict[int, int] = {}
    evicted = 0
    for index, (first, taps) in enumerate(weights):
        while evicted < first:  # windows only move forward: drop the lines no later output reads
            cache.pop(evicted, None)
            evicted += 1
        total = bias
        for at, weight in enumerate(taps, first):
            if weight:
                line = cache.get(at)
                if line is None:
                    line = cache[at] = read(at)
                total += line * weight
        # Each lane now holds (256 + value) in the 10 bits above the fraction, value in about -80..335.
        # Clamp to 0..255 lane-wise: bit 8 set means 0..255 (keep the low byte), bit 9 set means above.
        level = (total >> _FRACTION_BITS) & ten_bits
        clamped = (level & (((level >> 8) & ones) * 0xFF)) | (((level >> 9) & ones) * 0xFF)
        write(index, clamped.to_bytes(size, "little"))


def _to_lanes(segment: bytes, lanes: bytearray, channels: int) -> int:
    """RGBA bytes as an integer with one 32-bit lane a channel (alpha dropped when channels is 3)."""
    if channels == 4:
        lanes[0::4] = segment
    else:
        lanes[0::12] = segment[0::4]
        lanes[4::12] = segment[1::4]
        lanes[8::12] = segment[2::4]
    return int.from_bytes(lanes, "little")


def _row_reader(rgba: bytes, width: int, first: int, end: int, channels: int) -> Callable[[int], int]:
    """Read source row y, columns [first, end), as lanes."""
    lanes = bytearray(4 * channels * (end - first))

    def read(y: int) -> int:
        at = 4 * (y * width + first)
        return _to_lanes(rgba[at : at + 4 * (end - first)], lanes, channels)

    return read


def _column_reader(rgba: bytes, width: int, first: int, end: int, channels: int) -> Callable[[int], int]:
    """Read source column x, rows [first, end), as lanes."""
    units = memoryview(rgba).cast("I")  # one unit a pixel: a column is one strided slice
    lanes = bytearray(4 * channels * (end - first))

    def read(x: int) -> int:
        return _to_lanes(units[first * width + x : end * width : width].tobytes(), lanes, channels)

    return read


def _store(buffer: bytearray, line_bytes: int) -> Callable[[int, bytes], None]:
    """Write pass output line i into a line-major buffer of 8-bit channels."""

    def write(index: int, lanes: bytes) -> None:
        buffer[index * line_bytes : (index + 1) * line_bytes] = lanes[0::4]

    return write


def _transposed_reader(buffer: bytearray, lines: int, length: int, channels: int) -> Callable[[int], int]:
    """Read pixel j of every line of a line-major buffer (a column of it) as lanes."""
    lanes = bytearray(4 * channels * lines)
    stride = length * channels

    def read(j: int) -> int:
        for channel in range(channels):
            lanes[4 * channel :: 4 * channels] = buffer[j * channels + channel :: stride]
        return int.from_bytes(lanes, "little")

    return read


def _put_rows(out: bytearray, width: int, channels: int) -> Callable[[int, bytes], None]:
    """Write pass output line y as output row y."""
    row = 4 * width

    def write(y: int, lanes: bytes) -> None:
        if channels == 4:
            out[y * row : (y + 1) * row] = lanes[0::4]
        else:
            for channel in range(3):
                out[y * row + channel : (y + 1) * row : 4] = lanes[4 * channel :: 12]

    return write


def _put_columns(out: bytearray, width: int, channels: int) -> Callable[[int, bytes], None]:
    """Write pass output line x as output column x."""
    row = 4 * width

    def write(x: int, lanes: bytes) -> None:
        for channel in range(channels):
            out[4 * x + channel :: row] = lanes[4 * channel :: 4 * channels]

    return write


def _in_bands(work: Callable[[bytes], bytes], rgba: bytes, width: int) -> bytes:
    """Apply a per-pixel bulk operation a band of rows at a time, so its lane integers stay small."""
    band = 4 * width * max(1, 65536 // width)
    if len(rgba) <= band:
        return work(rgba)
    return b"".join(work(rgba[at : at + band]) for at in range(0, len(rgba), band))


def _reduce(
    rgba: bytes, width: int, box: Tuple[int, int, int, int], fx: int, fy: int, channels: int
) -> Tuple[bytes, int, int]:
    """Rounded averages of fx x fy blocks of box (left, top, right, bottom); edge blocks may be partial."""
    # A band of output rows at a time, as lanes: row k of every block in the band joined into one integer
    # (rows padded with zeros to whole blocks) and the fy of them added; then fx pixel-shifted copies added
    # so each block's first pixel holds its sum; every fx-th pixel picked by a strided slice into fresh
    # lanes; divided, rounded, by a multiply and a shift.
    left, top, right, bottom = box
    span = right - left
    out_w, out_h = -(-span // fx), -(-(bottom - top) // fy)
    last_w = span - (out_w - 1) * fx  # the last block of a row may be narrower
    pad = bytes(4 * (out_w * fx - span))
    pixel_bits = 32 * channels
    band = max(1, 262144 // (out_w * fx * fy))  # output rows a band: lane integers of about 3 MB
    out = []
    j0 = 0
    while j0 < out_h:
        j1 = min(out_h, j0 + band)
        rows = min(fy, bottom - top - j0 * fy)  # block height; only the last output row can be shorter
        if rows < fy:
            j1 = j0 + 1
        elif top + j1 * fy > bottom:
            j1 -= 1  # the short last row gets a band of its own
        count = j1 - j0
        lanes = bytearray(4 * channels * count * out_w * fx)
        sums = 0
        for k in range(rows):
            parts = []
            for j in range(j0, j1):
                at = 4 * ((top + j * fy + k) * width + left)
                parts.append(rgba[at : at + 4 * span])
                parts.append(pad)
            sums += _to_lanes(b"".join(parts), lanes, channels)
        total = sums
        for k in range(1, fx):
            total += sums >> (pixel_bits * k)
        picked = memoryview(total.to_bytes(len(lanes), "little")).cast("I")
        n = fx * rows
        # Rounded division by n as a multiply and a shift: ceil(2**k / n) is exact while 256 * n * n < 2**k;
        # 32-bit lanes with k = 22 hold blocks of fewer than 128 pixels, 64-bit lanes with k = 48 the rest.
        lane_bytes, shift = (4, 22) if n < 128 else (8, 48)
        picks = bytearray(lane_bytes * channels * count * out_w)
        units = memoryview(picks).cast("I")
        step = lane_bytes // 4
        for channel in range(channels):
            units[step * channel :: step * channels] = picked[channel :: fx * channels]
        ones = _ones(channels * count * out_w, lane_bytes)
        value = int.from_bytes(picks, "little") + ones * (n // 2)
        divided = ((value * -(-(1 << shift) // n)) >> shift) & (ones * 0xFF)
        block = bytearray(divided.to_bytes(len(picks), "little")[0::lane_bytes])
        if last_w != fx:  # each row's last block is narrower: its own divisor, a few values one at a time
            n = last_w * rows
            for row in range(count):
                first = channels * (row * out_w * fx + (out_w - 1) * fx)
                for channel in range(channels):
                    block[channels * (row * out_w + out_w - 1) + channel] = (
                        picked[first + channel] + n // 2
                    ) // n
        if channels == 3:  # back to RGBA with alpha 255
            rgba_block = bytearray(b"\x00\x00\x00\xff" * (count * out_w))
            for channel in range(3):
                rgba_block[channel::4] = block[channel::3]
            block = rgba_block
        out.append(bytes(block))
        j0 = j1
    return b"".join(out), out_w, out_h


def _resample(
    p: Pixels, box: Tuple[float, float, float, float], width: int, height: int, reducing_gap: float = 0.0
) -> Pixels:
    """Lanczos3 resample of the source box (x0, y0, x1, y1; fractional) to width x height, like Pillow's."""
    # reducing_gap > 0 first averages blocks of int(scale / reducing_gap) pixels (Pillow's reducing_gap, as
    # its thumbnail() uses with 2.0): much faster for big shrinks, a little softer, no longer Pillow's direct
    # resize to the level.
    src_w, src_h, rgba = p
    x0, y0, x1, y1 = box
    horizontal = width != src_w or x0 != 0 or x1 != src_w
    vertical = height != src_h or y0 != 0 or y1 != src_h
    if not (horizontal or vertical):
        return p
    # An opaque image is resampled on three lanes a pixel (a quarter less work) and keeps alpha 255; one with
    # alpha on four premultiplied lanes, so transparent pixels lend no colour to their neighbours.
    channels = 4 if has_alpha(p) else 3
    if channels == 4:
        rgba = _in_bands(_premultiply, rgba, src_w)
    if reducing_gap > 0:
        fx = min(1024, max(1, int((x1 - x0) / width / reducing_gap)))
        fy = min(1024, max(1, int((y1 - y0) / height / reducing_gap)))
        if fx > 1 or fy > 1:
            # Reduce only the part the kernel reads: the box widened by its support, in whole pixels.
            reach_x = _LANCZOS_SUPPORT * (x1 - x0) / width
            reach_y = _LANCZOS_SUPPORT * (y1 - y0) / height
            left, top = max(0, int(x0 - reach_x)), max(0, int(y0 - reach_y))
            right, bottom = min(src_w, math.ceil(x1 + reach_x)), min(src_h, math.ceil(y1 + reach_y))
            rgba, src_w, src_h = _reduce(rgba, src_w, (left, top, right, bottom), fx, fy, channels)
            x0, x1 = (x0 - left) / fx, (x1 - left) / fx
            y0, y1 = (y0 - top) / fy, (y1 - top) / fy
            horizontal = vertical = True
    out = (
        bytearray(4 * width * height) if channels == 4 else bytearray(b"\x00\x00\x00\xff" * (width * height))
    )
    across = _weights(src_w, x0, x1, width) if horizontal else ()
    down = _weights(src_h, y0, y1, height) if vertical else ()
    if horizontal and vertical:
        col0, col1 = _span(across, src_w)
        row0, row1 = _span(down, src_h)
        cols, rows = col1 - col0, row1 - row0
        taps_across = sum(len(taps) for _, taps in across)
        taps_down = sum(len(taps) for _, taps in down)
        # Pillow resamples across first, then down, rounding to 8 bits in between; doing the same gives the
        # very same pixels. Work is taps times line length, and reading a line costs about two taps (three
        # for a strided source column); only when down-first is several times cheaper (a stretch that
        # shrinks one axis and enlarges the other a lot) is it taken, at the price of small differences
        # where the 8-bit rounding in between falls otherwise.
        down_first = (taps_down + 2 * rows) * cols + (taps_across + 2 * cols) * height
        across_first = (taps_across + 3 * cols) * rows + (taps_down + 2 * rows) * width
        if 4 * down_first < across_first:
            middle = bytearray(height * cols * channels)
            _run_pass(
                _row_reader(rgba, src_w, col0, col1, channels),
                down,
                cols * channels,
                _store(middle, cols * channels),
            )
            _run_pass(
                _transposed_reader(middle, height, cols, channels),
                _shift(across, col0),
                height * channels,
                _put_columns(out, width, channels),
            )
        else:
            middle = bytearray(width * rows * channels)
            _run_pass(
                _column_reader(rgba, src_w, row0, row1, channels),
                across,
                rows * channels,
                _store(middle, rows * channels),
            )
            _run_pass(
                _transposed_reader(middle, width, rows, channels),
                _shift(down, row0),
                width * channels,
                _put_rows(out, width, channels),
            )
    elif vertical:
        _run_pass(
            _row_reader(rgba, src_w, 0, src_w, channels),
            down,
            width * channels,
            _put_rows(out, width, channels),
        )
    else:
        _run_pass(
            _column_reader(rgba, src_w, 0, src_h, channels),
            across,
            height * channels,
            _put_columns(out, width, channels),
        )
    if channels == 3:
        return Pixels(width, height, bytes(out))
    return Pixels(width, height, _in_bands(_unpremultiply, bytes(out), width))


def _cover_box(src_w: int, src_h: int, width: int, height: int) -> Tuple[float, float, float, float]:
    """The largest centred box of the source with the target's aspect ratio (fractional, as Pillow allows)."""
    if src_w * height > src_h * width:  # source wider: keep the full height, trim the sides
        box_w = src_h * width / height
        left = (src_w - box_w) / 2
        return (left, 0.0, left + box_w, float(src_h))
    if src_w * height < src_h * width:  # source taller: keep the full width, trim top and bottom
        box_h = src_w * height / width
        top = (src_h - box_h) / 2
        return (0.0, top, float(src_w), top + box_h)
    return (0.0, 0.0, float(src_w), float(src_h))


def _contain_size(src_w: int, src_h: int, width: int, height: int) -> Tuple[int, int]:
    """The largest size with the source's aspect ratio inside width x height (short side rounded half up)."""
    if src_w * height > src_h * width:
        return width, max(1, (2 * src_h * width + src_w) // (2 * src_w))
    if src_w * height < src_h * width:
        return max(1, (2 * src_w * height + src_h) // (2 * src_h)), height
    return width, height


def resize(p: Pixels, width: int, height: int, fit: str = "cover") -> Pixels:
    """Resize to width x height with Lanczos3 (antialiased); fit is cover (crop), contain (pad) or stretch."""
    # cover: scale until the box is filled and crop the overflow evenly from both sides (the crop is the
    # centred source box with the target's aspect ratio, fractional, resampled directly: no double rounding).
    # contain: scale to fit inside (the short side rounded half up, at least 1) and centre the result on
    # transparent 0,0,0,0 pixels, the left/top margin being the smaller when the leftover is odd.
    # stretch: ignore the aspect ratio.
    _check(p)
    _size(width, height, "the resize target's width and height")
    if fit not in FITS:
        raise ImageDataError(f"fit must be one of {', '.join(FITS)}, not {fit!r}")
    src_w, src_h = p.width, p.height
    if fit == "stretch":
        return _resample(p, (0.0, 0.0, float(src_w), float(src_h)), width, height)
    if fit == "cover":
        return _resample(p, _cover_box(src_w, src_h, width, height), width, height)
    inner_w, inner_h = _contain_size(src_w, src_h, width, height)
    inner = _resample(p, (0.0, 0.0, float(src_w), float(src_h)), inner_w, inner_h)
    if (inner_w, inner_h) == (width, height):
        return inner
    out = bytearray(4 * width * height)
    _blit(out, width, inner, (width - inner_w) // 2, (height - inner_h) // 2)
    return Pixels(width, height, bytes(out))


# Canvases, crop and paste


def new_canvas(width: int, height: int, rgba: Colour = (0, 0, 0, 0)) -> Pixels:
    """An image of one colour (transparent by default)."""
    _size(width, height, "a canvas's width and height")
    return Pixels(width, height, _colour(rgba, "the canvas colour") * (width * height))


def checkerboard(
    width: int,
    height: int,
    cell: int = CHECKER_CELL,
    light: Colour = (255, 255, 255, 255),
    dark: Colour = (204, 204, 204, 255),
) -> Pixels:
    """The usual grey-and-white squares shown behind transparent images; the top-left square is light."""
    _size(width, height, "a checkerboard's width and height")
    if not isinstance(cell, int) or cell < 1:
        raise ImageDataError(f"a checkerboard's cell must be a positive whole number of pixels, not {cell!r}")
    light_px, dark_px = _colour(light, "the light colour"), _colour(dark, "the dark colour")
    repeats = width // (2 * cell) + 1
    row_bytes = 4 * width
    even = ((light_px * cell + dark_px * cell) * repeats)[:row_bytes]
    odd = ((dark_px * cell + light_px * cell) * repeats)[:row_bytes]
    block = even * cell + odd * cell
    data = (block * (height // (2 * cell) + 1))[: row_bytes * height]
    return Pixels(width, height, data)


def crop(p: Pixels, x: int, y: int, width: int, height: int) -> Pixels:
    """The width x height box at x, y; the box must lie within the image."""
    _check(p)
    _size(width, height, "the crop's width and height")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (x, y)):
        raise ImageDataError(f"the crop's position must be whole numbers, not {x!r},{y!r}")
    if x < 0 or y < 0 or x + width > p.width or y + height > p.height:
        raise ImageDataError(
            f"crop box {x},{y} {width}x{height} is not within the {p.width}x{p.height} image"
        )
    if (x, y, width, height) == (0, 0, p.width, p.height):
        return p
    row = 4 * p.width
    start = 4 * x
    size = 4 * width
    data = b"".join(p.rgba[r * row + start : r * row + start + size] for r in range(y, y + height))
    return Pixels(width, height, data)


def _composite(src: bytes, dst: bytes) -> bytes:
    """src over dst (straight RGBA, same length), with the integer arithmetic of Pillow's alpha_composite."""
    pixels = len(src) // 4
    src_a = src[3::4]
    opaque = src_a.count(255)
    if opaque == pixels:
        return src
    clear = src_a.count(0)
    if clear == pixels:
        return dst
    dst_a = dst[3::4]
    if opaque + clear == pixels:
        # Alpha 0 or 255 only: pick whole pixels by a mask, D ^ ((S ^ D) & M).
        mask = src_a.translate(_table("nonzero"))
        wide = int.from_bytes(_join_planes((mask, mask, mask, mask), pixels), "little")
        d = int.from_bytes(dst, "little")
        return (d ^ ((int.from_bytes(src, "little") ^ d) & wide)).to_bytes(len(src), "little")
    # Where dst is opaque Pillow's formula is out = SHIFTFORDIV255(128 X + 0x4000) >> 7 with
    # X = s * sa + d * (255 - sa). Lane-wise: bit b of sa picks s, bit b of 255 - sa (its complement)
    # picks d, so X is eight selects shifted and added. The same is exact wherever sa is 0 or 255.
    lanes = 3 * pixels
    ones = _ones(lanes, 4)
    spread = bytearray(4 * lanes)
    spread[0::12], spread[4::12], spread[8::12] = src[0::4], src[1::4], src[2::4]
    s = int.from_bytes(spread, "little")
    spread[0::12], spread[4::12], spread[8::12] = dst[0::4], dst[1::4], dst[2::4]
    d = int.from_bytes(spread, "little")
    spread[0::12] = spread[4::12] = spread[8::12] = src_a
    a = int.from_bytes(spread, "little")
    picks = s ^ d
    x = 0
    for bit in range(8):
        x += (d ^ (picks & (((a >> bit) & ones) * 0xFF))) << bit
    v = (x << 7) + (ones << 14)
    v = (v + ((v >> 8) & (ones * 0xFFFFFF))) >> 15
    rgb = (v & (ones * 0xFF)).to_bytes(4 * lanes, "little")
    out_a = int.from_bytes(dst_a, "little") | int.from_bytes(src_a.translate(_table("nonzero")), "little")
    out = _join_planes((rgb[0::12], rgb[4::12], rgb[8::12], out_a.to_bytes(pixels, "little")), pixels)
    # Pixels over a dst that is not opaque, with sa strictly between 0 and 255: Pillow's general formula,
    # one pixel at a time (rare: a soft edge over a soft edge).
    both = int.from_bytes(src_a.translate(_table("partial")), "little") & int.from_bytes(
        dst_a.translate(_table("not255")), "little"
    )
    if both:
        for match in re.finditer(b"\x01", both.to_bytes(pixels, "little")):
            i = match.start()
            sa, da = src_a[i], dst_a[i]
            out_a255 = sa * 255 + da * (255 - sa)
            coef1 = sa * 255 * 255 * 128 // out_a255
            coef2 = 255 * 128 - coef1
            for c in range(3):
                tmp = src[4 * i + c] * coef1 + dst[4 * i + c] * coef2 + (0x80 << 7)
                out[4 * i + c] = (((tmp >> 8) + tmp) >> 8) >> 7
            out[4 * i + 3] = (((out_a255 + 0x80) >> 8) + out_a255 + 0x80) >> 8
    return bytes(out)


def _region(canvas_w: int, canvas_h: int, p: Pixels, x: int, y: int) -> Tuple[int, int, int, int]:
    """The part of p placed at x, y that falls on the canvas: (left, top, right, bottom) in canvas pixels."""
    return max(0, x), max(0, y), min(canvas_w, x + p.width), min(canvas_h, y + p.height)


def _blit(buffer: bytearray, canvas_w: int, p: Pixels, x: int, y: int) -> None:
    """Copy p's pixels (no blending) into a canvas buffer at x, y, clipped."""
    left, top, right, bottom = _region(canvas_w, len(buffer) // (4 * canvas_w), p, x, y)
    if left >= right or top >= bottom:
        return
    size = 4 * (right - left)
    for row in range(top, bottom):
        at = 4 * ((row - y) * p.width + left - x)
        buffer[4 * (row * canvas_w + left) : 4 * (row * canvas_w + left) + size] = p.rgba[at : at + size]


def _paste_into(buffer: bytearray, canvas_w: int, p: Pixels, x: int, y: int) -> None:
    """Alpha-composite p over a canvas buffer at x, y, clipped to the canvas."""
    left, top, right, bottom = _region(canvas_w, len(buffer) // (4 * canvas_w), p, x, y)
    if left >= right or top >= bottom:
        return
    size = 4 * (right - left)
    src_rows = [
        (4 * ((row - y) * p.width + left - x), 4 * (row * canvas_w + left)) for row in range(top, bottom)
    ]
    src = b"".join(p.rgba[at : at + size] for at, _ in src_rows)
    dst = b"".join(buffer[at : at + size] for _, at in src_rows)
    merged = _composite(src, dst)
    for index, (_, at) in enumerate(src_rows):
        buffer[at : at + size] = merged[index * size : (index + 1) * size]


def paste(canvas: Pixels, p: Pixels, x: int, y: int) -> Pixels:
    """A new image: p alpha-composited over canvas with its top-left corner at x, y (may be off-canvas)."""
    _check(canvas)
    _check(p)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (x, y)):
        raise ImageDataError(f"the paste position must be whole numbers, not {x!r},{y!r}")
    buffer = bytearray(canvas.rgba)
    _paste_into(buffer, canvas.width, p, x, y)
    return Pixels(canvas.width, canvas.height, bytes(buffer))


# Masks


def _merge_span(coverage: bytearray, start: int, end: int, value: int) -> None:
    """coverage[start:end] = max(coverage, value), element-wise, in one call."""
    if end <= start or value <= 0:
        return
    if value >= 255:
        coverage[start:end] = b"\xff" * (end - start)
    else:
        coverage[start:end] = coverage[start:end].translate(_table("max", value))


def _box_coverage(
    coverage: bytearray, width: int, height: int, x: float, y: float, w: float, h: float
) -> None:
    """Add a box's exact pixel coverage (area of overlap) to the coverage plane."""
    right, bottom = x + w, y + h
    col0, col1 = max(0, math.floor(x)), min(width, math.ceil(right))
    row0, row1 = max(0, math.floor(y)), min(height, math.ceil(bottom))
    if w <= 0 or h <= 0 or col0 >= col1 or row0 >= row1:
        return
    full0, full1 = max(col0, math.ceil(x)), min(col1, math.floor(right))  # columns covered end to end
    edges = sorted({c for c in (col0, col1 - 1) if not full0 <= c < full1})
    for row in range(row0, row1):
        share = min(row + 1.0, bottom) - max(float(row), y)
        base = row * width
        _merge_span(coverage, base + full0, base + full1, int(255 * share + 0.5))
        for col in edges:
            across = min(col + 1.0, right) - max(float(col), x)
            value = int(255 * across * share + 0.5)
            coverage[base + col] = max(coverage[base + col], value)


def _ellipse_coverage(
    coverage: bytearray, width: int, height: int, x: float, y: float, w: float, h: float
) -> None:
    """Add an ellipse's pixel coverage: 16 sub-scanlines a row, each chord exact; spans in bulk."""
    rx, ry = w / 2, h / 2
    if rx <= 0 or ry <= 0:
        return
    cx, cy = x + rx, y + ry
    subrows = _ELLIPSE_SUBROWS
    for row in range(max(0, math.floor(y)), min(height, math.ceil(y + h))):
        chords = []
        for sub in range(subrows):
            dy = (row + (sub + 0.5) / subrows - cy) / ry
            if -1.0 < dy < 1.0:
                half = rx * math.sqrt(1.0 - dy * dy)
                chords.append((cx - half, cx + half))
        if not chords:
            continue
        lefts = [left for left, _ in chords]
        rights = [right for _, right in chords]
        # Pixels inside every chord are covered by each sub-scanline that has one: one span, one value.
        core0 = max(0, math.ceil(max(lefts)))
        core1 = min(width, math.floor(min(rights)))
        outer0 = max(0, math.floor(min(lefts)))
        outer1 = min(width, math.ceil(max(rights)))
        base = row * width
        edge: Iterable[int]
        if core0 < core1:
            _merge_span(coverage, base + core0, base + core1, (255 * len(chords) + subrows // 2) // subrows)
            edge = [*range(outer0, core0), *range(core1, outer1)]
        else:
            edge = range(outer0, outer1)
        for col in edge:  # only where a chord ends inside the pixel: a few per row
            total = 0.0
            for left, right in chords:
                overlap = min(col + 1.0, right) - max(float(col), left)
                if overlap > 0:
                    total += overlap
            value = int(255 * total / subrows + 0.5)
            coverage[base + col] = max(coverage[base + col], value)


def draw_shapes(
    width: int,
    height: int,
    shapes: Sequence[Shape],
    inside: Colour = (0, 0, 0, 0),
    outside: Colour = (0, 0, 0, 255),
) -> Pixels:
    """An RGBA mask: inside colour within the union of the shapes, outside colour elsewhere, edges blended."""
    # Shapes are (kind, x, y, w, h) in pixels, fractional allowed, kind "box" or "ellipse" (the ellipse
    # inscribed in that box). A pixel's colour mixes the two by its covered area (union = the largest).
    _size(width, height, "the mask's width and height")
    inside_px, outside_px = _colour(inside, "the inside colour"), _colour(outside, "the outside colour")
    coverage = bytearray(width * height)
    for shape in shapes:
        if len(shape) != 5 or shape[0] not in SHAPE_KINDS:
            raise ImageDataError(
                f"a shape must be (kind, x, y, w, h) with kind box or ellipse, not {shape!r}"
            )
        kind = shape[0]
        numbers = shape[1:]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers):
            raise ImageDataError(f"a {kind}'s x, y, w and h must be finite numbers, not {numbers!r}")
        x, y, w, h = (float(v) for v in numbers)
        if w < 0 or h < 0:
            raise ImageDataError(f"a {kind}'s width and height cannot be negative: {w!r}x{h!r}")
        cover = _box_coverage if kind == "box" else _ellipse_coverage
        cover(coverage, width, height, x, y, w, h)
    tables = [
        bytes((o * (255 - v) + i * v + 127) // 255 for v in range(256)) for o, i in zip(outside_px, inside_px)
    ]
    plane = bytes(coverage)
    return Pixels(width, height, bytes(_join_planes([plane.translate(t) for t in tables], width * height)))


_SHAPE_NUMBER_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(%?)\s*\Z", re.ASCII)


def parse_shape(kind: str, spec: str, width: int, height: int) -> Shape:
    """A mask shape from X,Y,W,H (its bounding box: the top-left corner, then the size), each number in pixels
    of the image, or a percentage of its width (X, W) or height (Y, H); ImageDataError says what is wrong."""
    parts = spec.split(",")
    if len(parts) != 4:
        raise ImageDataError(f"{spec!r} is not X,Y,W,H (four numbers, pixels or percentages)")
    values = []
    for part, extent in zip(parts, (width, height, width, height)):
        match = _SHAPE_NUMBER_RE.match(part)
        if not match or len(match.group(1)) > 12:
            raise ImageDataError(f"{spec!r}: {part.strip()!r} is not a number of pixels or a percentage")
        value = float(match.group(1))
        values.append(value * extent / 100 if match.group(2) else value)
    x, y, w, h = values
    if w <= 0 or h <= 0:
        raise ImageDataError(f"{spec!r} has no area (its width and height must be above 0)")
    if x >= width or y >= height:
        raise ImageDataError(f"{spec!r} lies wholly outside the {width}x{height} image")
    return kind, x, y, w, h


def mask_png(width: int, height: int, shapes: Sequence[Shape]) -> bytes:
    """The mask of an edit confined to shapes: an RGBA PNG, transparent inside them (the area to change),
    opaque black elsewhere, antialiased edges."""
    return encode_png(draw_shapes(width, height, shapes))


# Contact sheets


def contact_sheet(
    images: Sequence[Pixels],
    max_width: int = 2048,
    cell: int = SHEET_CELL,
    gap: int = 4,
    background: Colour = (255, 255, 255, 255),
) -> Tuple[Pixels, List[Tuple[int, int, int, int]]]:
    """A grid of thumbnails and each image's cell box (x, y, w, h); transparent images over a checkerboard."""
    # Columns: ceil(sqrt(n)), so the grid is about square. Cell side: min(cell, (max_width - gap * (columns
    # + 1)) // columns), so the sheet is at most max_width wide; a gap separates cells and rims the sheet.
    # Each image is scaled (up or down) to fit its cell, keeping its aspect, and centred in it.
    count = len(images)
    if count == 0:
        raise ImageDataError("a contact sheet needs at least one image")
    if not isinstance(gap, int) or gap < 0:
        raise ImageDataError(f"the contact sheet gap must be a whole number of pixels >= 0, not {gap!r}")
    _size(max_width, cell, "the contact sheet's maximum width and cell")
    columns = math.isqrt(count - 1) + 1
    side = min(cell, (max_width - gap * (columns + 1)) // columns)
    if side < 1:
        raise ImageDataError(f"{count} images do not fit a contact sheet {max_width} pixels wide")
    rows = (count + columns - 1) // columns
    sheet_w = columns * side + (columns + 1) * gap
    sheet_h = rows * side + (rows + 1) * gap
    buffer = bytearray(new_canvas(sheet_w, sheet_h, background).rgba)
    boxes = []
    for index, image in enumerate(images):
        _check(image)
        left = gap + (index % columns) * (side + gap)
        top = gap + (index // columns) * (side + gap)
        boxes.append((left, top, side, side))
        thumb_w, thumb_h = _contain_size(image.width, image.height, side, side)
        # Thumbnails as Pillow's thumbnail() makes them: block averages first, then Lanczos (reducing gap 2).
        full = (0.0, 0.0, float(image.width), float(image.height))
        thumb = _resample(image, full, thumb_w, thumb_h, reducing_gap=_SHEET_REDUCING_GAP)
        x, y = left + (side - thumb_w) // 2, top + (side - thumb_h) // 2
        if has_alpha(thumb):
            board = bytearray(checkerboard(thumb_w, thumb_h).rgba)
            _paste_into(board, thumb_w, thumb, 0, 0)
            thumb = Pixels(thumb_w, thumb_h, bytes(board))
        _blit(buffer, sheet_w, thumb, x, y)
    return Pixels(sheet_w, sheet_h, bytes(buffer)), boxes


def thumbnail(p: Pixels, side: int = SHEET_CELL) -> Pixels:
    """The image shrunk to fit side x side (kept as it is when it fits), as a contact sheet's cell shows it."""
    width, height = _contain_size(p.width, p.height, side, side)
    if width >= p.width and height >= p.height:
        return p
    full = (0.0, 0.0, float(p.width), float(p.height))
    return _resample(p, full, width, height, reducing_gap=_SHEET_REDUCING_GAP)


class Picture:
    """A final image between its arrival and its commit: its encoded bytes, its pixels, or both, each made
    when first asked for, so that steps in a row decode and encode it once."""

    def __init__(self, data: Optional[bytes] = None, pixels: Optional[Pixels] = None) -> None:
        self._data = data
        self._pixels = pixels

    def data(self) -> bytes:
        """The encoded image (a PNG made from the pixels when a step changed them)."""
        if self._data is None:
            assert self._pixels is not None
            self._data = encode_png(self._pixels)
        return self._data

    def pixels(self) -> Pixels:
        """The decoded image (ImageDataError when it is not a PNG this program can read)."""
        if self._pixels is None:
            assert self._data is not None
            self._pixels = decode_png(self._data)
        return self._pixels


# The key route: a transparent background made on a flat key colour, and every transparent result checked

RGB = Tuple[int, int, int]  # a colour; Pixels hold RGBA

GREEN_KEY: RGB = (0, 255, 0)
MAGENTA_KEY: RGB = (255, 0, 255)
KEY_NAMES = {GREEN_KEY: "green", MAGENTA_KEY: "magenta"}
# A prompt with one of these words (case-insensitive, whole words) asks for green things: key with magenta.
GREEN_WORDS = (
    "green greens greenery greenish lime limes emerald emeralds jade mint minty olive olives chartreuse",
    "sage teal leaf leafy leaves grass grasses grassy forest forests jungle foliage plant plants tree trees",
    "bush bushes shrub shrubs fern ferns moss mossy ivy vine vines shamrock shamrocks clover clovers cactus",
    "cacti cactuses frog frogs toad toads lizard lizards lettuce broccoli spinach kale peas cucumber",
    "cucumbers pickle pickles celery zucchini avocado avocados kiwi pistachio matcha basil herbs seaweed",
    "algae evergreen pine pines hedge hedges lawn lawns meadow meadows",
)
KEY_PROMPT = (
    "Place the subject on a perfectly flat, uniform, solid {color} background that fills the whole image "
    "edge to edge, with no shadow, gradient, texture, floor plane, reflection or lighting change, and do not "
    "use {color} or any colour close to it anywhere in the subject."
)

# Key tuning. Colour distances are L1 in RGB (|dr| + |dg| + |db|, 0..765) to the measured background.
KEY_MEASURE_RADIUS = 180  # border pixels this close to the nominal key sample the background: wider accepts a
#                           model's off-shade paint, narrower keeps more of a subject touching the border out
KEY_LIKE = 120  # key-like (background, if connected to the border): higher also removes shading and drift in
#                 the background, lower spares subject colours near the key where they touch the background
KEY_CLEAR_MIN = 24  # fully transparent at or below the noise floor measured on the border, clamped to these
KEY_CLEAR_MAX = 72  # bounds: a higher floor hides noisier backgrounds but loses the faintest edge pixels
KEY_BAND = 1  # pixels on each side of the background's edge that start the soft matte band: wider starts with
#               blurrier edges in it, narrower costs less (growth below follows a blurred edge inwards)
KEY_EDGE_RADIUS = 2  # pixels around an edge pixel searched for the subject colour it is a mix of: wider
#                      finds it across blurrier edges, narrower costs less and stays nearer the pixel
KEY_GROW = 4  # further rings the band may grow inwards where its pixels come out partial (blurred edges):
#               more follows softer edges, at the risk of matting a textured subject's outer pixels
KEY_GROW_BELOW = 230  # only pixels under this alpha grow the band: a blurred edge goes on, texture does not
KEY_SNAP = 10  # colour units (along background -> subject) at the clear end of the soft matte taken as noise:
#                higher clears a noisier background, lower keeps the faintest edge pixels
KEY_SNAP_SOLID = 20  # and at the solid end: higher keeps a textured subject's rim solid (its texture reads as
#                      partial cover), lower keeps nearly solid edge pixels partial
KEY_HUE_EXCESS = 64  # verification: an opaque pixel whose key channels exceed the others by this much is
#                      key-coloured (a shadow or shade of the key left behind); lower flags subject colours
KEY_LEFT_MAX = 0.005  # verification: at most this share of the opaque pixels may be key-coloured
BORDER_CLEAR_MIN = 0.9  # verification: share of the outermost ring that must be transparent
CLEAR_SHARE = (0.01, 0.99)  # verification: plausible share of transparent pixels in a cut-out
# Verification: the cell sizes (px) of a painted checkerboard that are looked for, and the difference of its
# two neutral tones (a chessboard, 0 and 255, is not one).
PAINTED_CHECKER_CELLS = (4, 160)
PAINTED_CHECKER_CONTRAST = (8, 128)


def choose_key_color(prompt: str) -> RGB:
    """#00FF00, or #FF00FF when the prompt asks for green things."""
    pattern = r"\b(?:" + "|".join(" ".join(GREEN_WORDS).split()) + r")\b"  # re caches the compiled pattern
    return MAGENTA_KEY if re.search(pattern, prompt, re.IGNORECASE) else GREEN_KEY


def format_color(color: RGB) -> str:
    """#RRGGBB."""
    return "#{:02X}{:02X}{:02X}".format(*color)


def parse_color(text: str) -> RGB:
    """The colour of a #RRGGBB text (the caller checked its form)."""
    value = int(text.lstrip("#"), 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF


def key_prompt_sentence(color: RGB) -> str:
    """The sentence the key route adds to the prompt: the subject on a flat background of the key colour."""
    name = KEY_NAMES.get(color)
    label = f"pure {name} ({format_color(color)})" if name else format_color(color)
    return KEY_PROMPT.format(color=label)


# Bulk helpers: planes, tables, row bit masks


def _distance_plane(rgba: bytes, color: RGB) -> bytes:
    """Per pixel, the L1 distance to color divided by 3 (0..255), summed in byte lanes."""
    total = 0
    for channel, value in enumerate(color):
        # |v - value| // 3 is at most 85, so three of them add up to at most 255: no carry between lanes.
        table = bytes(abs(v - value) // 3 for v in range(256))
        total += int.from_bytes(rgba[channel::4].translate(table), "big")
    return total.to_bytes(len(rgba) // 4, "big")


def _threshold_table(limit: int, below: bytes, above: bytes) -> bytes:
    """A translate table: `below` for values at or under limit, `above` for the rest."""
    return below * (max(-1, min(255, limit)) + 1) + above * (255 - max(-1, min(255, limit)))


def _row_masks(flags: bytes, width: int) -> List[int]:
    """Rows of b'0'/b'1' flags as integers, the leftmost pixel in the highest bit."""
    return [int(flags[start : start + width], 2) for start in range(0, len(flags), width)]


def _row_flags(rows: Sequence[int], width: int) -> bytes:
    """The inverse of _row_masks: b'0'/b'1' per pixel."""
    layout = f"0{width}b"
    return "".join([format(row, layout) for row in rows]).encode("ascii")


def _fill_runs(mask: int, seed: int, width: int) -> int:
    """The runs of set bits in mask that hold a bit of seed (a flood fill along one row)."""
    seed &= mask
    if not seed:
        return 0
    # Upwards (to higher bits) in one addition: a carry from a seed bit runs through the rest of its run of
    # ones, so the carry-in bits, (mask + seed) ^ mask ^ seed, mark every bit above a seed in the same run.
    filled = (((mask + seed) ^ mask ^ seed) & mask) | seed
    # Downwards carries cannot go, so fill by doubling shifts: after k steps, 2**k - 1 bits down a run.
    through, shift = mask, 1
    while shift < width and through:
        filled |= through & (filled >> shift)
        through &= through >> shift
        shift <<= 1
    return filled


def _flood_from_border(mask: List[int], width: int) -> List[int]:
    """The parts of mask 4-connected to the image border, as row bit masks."""
    height = len(mask)
    edges = 1 | (1 << (width - 1))
    seeds = [row if y in (0, height - 1) else row & edges for y, row in enumerate(mask)]
    reach = [_fill_runs(row, seed, width) for row, seed in zip(mask, seeds)]
    changed = True
    while changed:  # each pass carries reach down (or up) any number of rows; mazes need a few passes
        changed = False
        for rows, step in ((range(1, height), -1), (range(height - 2, -1, -1), 1)):
            for y in rows:
                new = mask[y] & reach[y + step] & ~reach[y]
                if new:
                    reach[y] = _fill_runs(mask[y], reach[y] | new, width)
                    changed = True
    return reach


def _dilate(rows: Sequence[int], radius: int, width: int) -> List[int]:
    """Row masks grown by radius pixels in every direction (a square neighbourhood)."""
    full = (1 << width) - 1
    wide = []
    for row in rows:
        grown = row
        for step in range(1, radius + 1):
            grown |= (row << step) | (row >> step)
        wide.append(grown & full)
    height = len(rows)
    out = []
    for y in range(height):
        grown = 0
        for near in wide[max(0, y - radius) : y + radius + 1]:
            grown |= near
        out.append(grown)
    return out


def _and_planes(a: bytes, b: bytes) -> bytes:
    """Byte-wise AND of two planes of equal length."""
    return (int.from_bytes(a, "big") & int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _min_planes(a: bytes, b: bytes) -> bytes:
    """Byte-wise minimum of two planes, in 16-bit lanes (a guard bit per lane tells which is smaller)."""
    size = len(a)
    lanes_a, lanes_b = bytearray(2 * size), bytearray(2 * size)
    lanes_a[1::2], lanes_b[1::2] = a, b
    x, y = int.from_bytes(lanes_a, "big"), int.from_bytes(lanes_b, "big")
    guard = int.from_bytes(b"\x01\x00" * size, "big")
    low = int.from_bytes(b"\x00\xff" * size, "big")
    # (x | 256) - y keeps bit 8 iff x >= y, with no borrow between lanes; spread it to a byte mask.
    take_y = (((x | guard) - y) & guard) >> 8
    take_y *= 0xFF
    return ((y & take_y) | (x & (low ^ take_y))).to_bytes(2 * size, "big")[1::2]


def _excess_flags(high: bytes, low: bytes, threshold: int) -> int:
    """Per pixel, 0x80 in its byte lane where high - low >= threshold (to one level), as one integer."""
    # Halved values leave bit 7 free as a guard: (h // 2 | 128) - (l + t) // 2 keeps bit 7 iff
    # h // 2 >= (l + t) // 2, with no borrow between lanes; (l + t) // 2 is capped at 128, which no h // 2
    # reaches.
    halve = bytes(v >> 1 for v in range(256))
    lift = bytes(min(128, (v + threshold) >> 1) for v in range(256))
    guard = int.from_bytes(b"\x80" * len(high), "big")
    left = int.from_bytes(high.translate(halve), "big") | guard
    return (left - int.from_bytes(low.translate(lift), "big")) & guard


def _l1(a: Sequence[int], b: Sequence[int]) -> int:
    """The L1 distance of two colours."""
    return abs(a[0] - b[0]) + abs(a[1] - b[1]) + abs(a[2] - b[2])


def _key_channels(key: RGB) -> Tuple[List[int], List[int]]:
    """The key's strong channels (>= 128) and weak ones; spill is the strong ones rising above the weak."""
    strong = [c for c in range(3) if key[c] >= 128]
    return strong, [c for c in range(3) if key[c] < 128]


def _measure_background(p: Pixels, key: RGB) -> Tuple[RGB, int]:
    """The background's colour on the border (median of near-key pixels) and its noise (L1, 90th pct)."""
    width, height, rgba = p
    row = 4 * width
    ring = [rgba[:row], rgba[(height - 1) * row :]]
    for y in range(1, height - 1):
        ring.append(rgba[y * row : y * row + 4])
        ring.append(rgba[(y + 1) * row - 4 : (y + 1) * row])
    border = b"".join(ring)
    samples = [border[i : i + 3] for i in range(0, len(border), 4)]
    near = [s for s in samples if _l1(s, key) <= KEY_MEASURE_RADIUS]
    if not near or len(near) < len(samples) // 20:
        return key, 0  # hardly any background on the border: keep the nominal key (the checks will tell)
    middle = len(near) // 2
    background: RGB = (
        sorted(s[0] for s in near)[middle],
        sorted(s[1] for s in near)[middle],
        sorted(s[2] for s in near)[middle],
    )
    spread = sorted(_l1(s, background) for s in near)
    return background, spread[len(spread) * 9 // 10]


# Keying


def remove_key(p: Pixels, key: RGB, holes: bool = False) -> Tuple[Pixels, RGB]:
    """Key out a flat background of about the key colour: (the cut-out, the background colour measured)."""
    width, height, rgba = p
    count = width * height
    if len(rgba) != 4 * count:
        raise ImageDataError(f"the pixels hold {len(rgba):,} bytes, not {4 * count:,} for {width}x{height}")
    if not count:
        return p, key
    # (a) The background as painted, measured on the border; the clear threshold sits above its noise.
    background, noise = _measure_background(p, key)
    clear = max(KEY_CLEAR_MIN, min(KEY_CLEAR_MAX, 2 * noise + 6))
    like = max(KEY_LIKE, clear + 24)
    distance = _distance_plane(rgba, background)  # L1 // 3 per pixel, good enough for thresholds and ranking
    like_flags = distance.translate(_threshold_table(like // 3, b"1", b"0"))
    like_rows = _row_masks(like_flags, width)
    clear_rows = _row_masks(distance.translate(_threshold_table(clear // 3, b"1", b"0")), width)
    full = (1 << width) - 1
    solid_rows = [full ^ row for row in like_rows]  # not key-like: the subject
    # (b) The background: key-like pixels connected to the border, so that key-like regions the subject
    # encloses stay as key-coloured details; with holes, every key-like pixel (background seen through gaps).
    back_rows = like_rows if holes else _flood_from_border(like_rows, width)
    # (c) The soft matte band: background pixels off the clean colour next to the subject, and subject pixels
    # next to the background; the rest of the background is clear, the rest of the subject opaque.
    near_back = _dilate(back_rows, KEY_BAND, width)
    near_solid = _dilate(solid_rows, KEY_BAND, width)
    rows = zip(back_rows, clear_rows, near_solid, solid_rows, near_back)
    band_rows = [(back & ~clean & near_s) | (solid & near_b) for back, clean, near_s, solid, near_b in rows]
    gone_rows = [back & ~band for back, band in zip(back_rows, band_rows)]
    alpha = bytearray(_row_flags(gone_rows, width).translate(_threshold_table(48, b"\xff", b"\x00")))
    planes = [bytearray(rgba[channel::4]) for channel in range(3)]
    # (d) Alpha, un-mixed colour and despill for the band, pixel by pixel.
    _matte_band(p, _row_flags(band_rows, width), like_flags, distance, background, like // 3, alpha, planes)
    source_alpha = rgba[3::4]
    if source_alpha.count(255) != count:  # the image had transparency of its own: keep the lower alpha
        alpha = bytearray(_min_planes(bytes(alpha), source_alpha))
    # (e) Fully transparent pixels are stored as 0,0,0,0: colour cleared with an alpha-is-zero mask.
    visible = bytes(alpha).translate(_threshold_table(0, b"\x00", b"\xff"))
    out = bytearray(4 * count)
    for channel in range(3):
        out[channel::4] = _and_planes(bytes(planes[channel]), visible)
    out[3::4] = alpha
    return Pixels(width, height, bytes(out)), background


def _matte_band(
    p: Pixels,
    band: bytes,
    like_flags: bytes,
    distance: bytes,
    background: RGB,
    like8: int,
    alpha: bytearray,
    planes: List[bytearray],
) -> None:
    """Soft alpha, un-mixed and despilled colour for the band's pixels (the only per-pixel loop)."""
    # The band grows inwards, a ring at a time, from pixels that came out partial: a blurred edge is wider
    # than the band, and its solid side is only where the alpha reaches 255.
    width, height, rgba = p
    br, bg, bb = background
    despill, (s1, s2, w1, w2) = _spill_indexes(background)
    radius = KEY_EDGE_RADIUS
    red, green, blue = planes
    marks = bytearray(band)  # b"1" in the band, b"2" grown into it, b"3" on its rim
    ring = [match.start() for match in re.finditer(b"1", band)]
    rim: List[int] = []  # subject pixels just past a partial one where the band stops: despilled only
    for depth in range(KEY_GROW + 1):
        grown = []
        for at in ring:
            y, x = divmod(at, width)
            # The pixel is a mix of the background and the most foreground pixel near it (the largest
            # distance within the edge radius): project it on the line between the two.
            left = x - radius if x > radius else 0
            span = (x + radius + 1 if x + radius < width else width) - left
            first = (y - radius if y > radius else 0) * width + left
            stop = (y + radius + 1 if y + radius < height else height) * width
            best, source = -1, at
            for start in range(first, stop, width):
                run = distance[start : start + span]
                top = max(run)
                if top > best:
                    best, source = top, start + run.index(top)
            if best <= like8:  # nothing but background around: a stray shade of it
                alpha[at] = 0
                continue
            i, j = 4 * at, 4 * source
            ur, ug, ub = rgba[j] - br, rgba[j + 1] - bg, rgba[j + 2] - bb
            vr, vg, vb = rgba[i] - br, rgba[i + 1] - bg, rgba[i + 2] - bb
            length = (ur * ur + ug * ug + ub * ub) ** 0.5
            along = (vr * ur + vg * ug + vb * ub) / length
            if length > 4 * KEY_SNAP_SOLID:  # noise margins at both ends; too little contrast for them: none
                share = (along - KEY_SNAP) / (length - KEY_SNAP - KEY_SNAP_SOLID)
            else:
                share = along / length
            level = 0 if share <= 0 else 255 if share >= 1 else int(share * 255 + 0.5)
            alpha[at] = level
            if not level:
                continue
            if level < 255:  # observed = a * fg + (1 - a) * bg, so fg = bg + (observed - bg) / a
                scale = 255 / level
                r = min(255, max(0, int(br + vr * scale + 0.5)))
                g = min(255, max(0, int(bg + vg * scale + 0.5)))
                b = min(255, max(0, int(bb + vb * scale + 0.5)))
                # The edge may go on inwards: the subject pixels next to this one join the next ring (a
                # blurred edge), or, where the band stops growing, only lose their spill.
                sides = (at - 1 if x else -1, at + 1 if x + 1 < width else -1)
                grow = depth < KEY_GROW and level < KEY_GROW_BELOW
                for near in (at - width, at + width, *sides):
                    if 0 <= near < len(marks) and marks[near] in b"03" and like_flags[near] == 48:
                        if grow:
                            marks[near] = 50
                            grown.append(near)
                        elif marks[near] == 48:
                            marks[near] = 51
                            rim.append(near)
            else:
                r, g, b = rgba[i], rgba[i + 1], rgba[i + 2]
            rgb = [r, g, b]
            if despill:  # the key's strong channels may not rise above its weak ones at an edge
                high = rgb[s1] if rgb[s1] < rgb[s2] else rgb[s2]
                low = rgb[w1] if rgb[w1] > rgb[w2] else rgb[w2]
                if high > low:
                    rgb[s1] -= high - low
                    if s2 != s1:
                        rgb[s2] -= high - low
            red[at], green[at], blue[at] = rgb
        ring = grown
    for at in rim if despill else ():
        if marks[at] == 51:  # not matted after all
            rgb = list(rgba[4 * at : 4 * at + 3])
            excess = min(rgb[s1], rgb[s2]) - max(rgb[w1], rgb[w2])
            if excess > 0:
                rgb[s1] -= excess
                if s2 != s1:
                    rgb[s2] -= excess
                red[at], green[at], blue[at] = rgb


def _spill_indexes(key: RGB) -> Tuple[bool, Tuple[int, int, int, int]]:
    """Whether the key has spill, and its strong and weak channels as two pairs (one repeated if alone)."""
    strong, weak = _key_channels(key)
    if not strong or not weak:  # a grey key: no hue to take out
        return False, (0, 0, 0, 0)
    return True, (strong[0], strong[-1], weak[0], weak[-1])


# Verification


def _key_colored_share(p: Pixels, key: RGB) -> float:
    """The share of opaque pixels that are key-coloured: near the key, or a shade of it."""
    rgba = p.rgba
    solid = rgba[3::4].translate(_threshold_table(254, b"\x00", b"\x01"))
    opaque = solid.count(1)
    if not opaque:
        return 0.0
    size = len(solid)
    near = _distance_plane(rgba, key).translate(_threshold_table(KEY_LIKE // 3, b"\x01", b"\x00"))
    marked = int.from_bytes(near, "big")
    strong, weak = _key_channels(key)
    if strong and weak:  # a shade of the key (a shadow, a darker floor): strong channels well above weak ones
        shade = -1
        for high in strong:
            for low in weak:
                shade &= _excess_flags(rgba[high::4], rgba[low::4], KEY_HUE_EXCESS)
        marked |= shade >> 7
    return (marked & int.from_bytes(solid, "big")).to_bytes(size, "big").count(1) / opaque


def _checker_cell(p: Pixels) -> Optional[int]:
    """The cell size of a painted two-tone neutral checkerboard among the opaque pixels, or None."""
    width, height, rgba = p
    lines = 16  # sampled rows and as many columns, evenly spaced
    row_cells, column_cells = [], []
    for k in range(lines):
        y = height * (2 * k + 1) // (2 * lines)
        row_cells.append(_line_cell(rgba[4 * width * y : 4 * width * (y + 1)]))
        x = width * (2 * k + 1) // (2 * lines)
        column = bytearray(4 * height)
        for channel in range(4):
            column[channel::4] = rgba[4 * x + channel :: 4 * width]
        column_cells.append(_line_cell(bytes(column)))
    # A checkerboard shows in both directions with the same cell; stripes or one patterned object do not.
    found = [sorted(c for c in cells if c) for cells in (row_cells, column_cells)]
    if min(len(cells) for cells in found) < 3:
        return None
    across, down = (cells[len(cells) // 2] for cells in found)
    return across if abs(across - down) <= max(2, across // 6) else None


def _line_cell(line: bytes) -> Optional[int]:
    """The cell length of alternating equal runs of two neutral opaque tones along a line of RGBA pixels."""
    size = len(line) // 4
    counts = collections.Counter(line[1::4])  # tones by their green channel; all three are checked below
    window = [sum(counts[u] for u in range(v - 4, v + 5)) for v in range(256)]
    light = max(range(256), key=lambda v: (window[v], counts[v]))  # a clean tone: its own value, not T-4
    low, high = PAINTED_CHECKER_CONTRAST
    others = [v for v in range(256) if low <= abs(v - light) <= high]
    if not others:
        return None
    dark = max(others, key=lambda v: (window[v], counts[v]))
    if min(window[light], window[dark]) < size // 8:  # each tone covers a good part of the line
        return None
    # Up to half the contrast from each tone (painted tones are noisy), in all three channels, opaque.
    spread = min(12, (abs(light - dark) - 1) // 2)
    table = bytes(1 if abs(v - light) <= spread else 2 if abs(v - dark) <= spread else 0 for v in range(256))
    tones = -1
    for channel in range(3):
        tones &= int.from_bytes(line[channel::4].translate(table), "big")
    tones &= int.from_bytes(line[3::4].translate(_threshold_table(254, b"\x00", b"\x03")), "big")
    runs: List[List[int]] = []
    for match in re.finditer(rb"\x01+|\x02+", tones.to_bytes(size, "big")):
        start, end, tone = match.start(), match.end(), match.group()[0]
        if runs and runs[-1][2] == tone and start - runs[-1][1] <= 2:
            runs[-1][1] = end  # a stray pixel inside a cell does not split it
        else:
            runs.append([start, end, tone])
    best: Optional[int] = None
    chain: List[int] = []
    previous = [-10, -10, 0]
    for run in [*runs, [size + 10, size + 10, 0]]:
        if run[0] - previous[1] <= 2 and run[2] != previous[2]:
            chain.append(run[1] - run[0])
        else:
            inner = sorted(chain[1:-1])  # the first and last cells may be cut by the subject or the edge
            if len(inner) >= 4:
                cell, smallest, largest = inner[len(inner) // 2], inner[0], inner[-1]
                regular = largest - smallest <= max(3, cell // 5)
                if regular and PAINTED_CHECKER_CELLS[0] <= cell <= PAINTED_CHECKER_CELLS[1]:
                    best = cell
            chain = [run[1] - run[0]]
        previous = run
    return best


def inspect_transparency(p: Pixels, key: Optional[RGB], route: str) -> Tuple[List[str], AlphaStats]:
    """The problems of a transparent result (empty: verified) and its alpha shares."""
    stats = alpha_stats(p)
    problems = []
    if not stats.transparent and not stats.partial:
        problems.append("no alpha: every pixel is opaque")
    else:
        if stats.border_transparent < BORDER_CLEAR_MIN:
            problems.append(
                f"border: {stats.border_transparent:.1%} of the edge pixels are transparent "
                f"(need {BORDER_CLEAR_MIN:.0%})"
            )
        if not CLEAR_SHARE[0] <= stats.transparent <= CLEAR_SHARE[1]:
            problems.append(
                f"transparent share: {stats.transparent:.1%} of the image (need "
                f"{CLEAR_SHARE[0]:.0%} to {CLEAR_SHARE[1]:.0%})"
            )
        if route == "key" and key is not None:
            left = _key_colored_share(p, key)
            if left > KEY_LEFT_MAX:
                problems.append(
                    f"key colour left: {left:.1%} of the opaque pixels are {format_color(key)}-like "
                    f"(at most {KEY_LEFT_MAX:.1%})"
                )
    cell = _checker_cell(p)
    if cell:
        problems.append(
            f"checkerboard: the image shows a painted two-tone checkerboard ({cell}-px cells), "
            "not transparency"
        )
    return problems, stats


def verify_transparency(p: Pixels, key: Optional[RGB], route: str) -> List[str]:
    """The problems of a transparent result, each naming its check; an empty list means verified."""
    return inspect_transparency(p, key, route)[0]


# --- Local files: input images, sizes, output plans, the atomic writer -------------------------------------


class InputImage(NamedTuple):
    """A local image file checked by the validator: its path, size in bytes and header facts."""

    path: str
    size: int
    info: ImageInfo

    @property
    def mime(self) -> str:
        """The Content-Type for this file, from its first bytes."""
        return IMAGE_FORMATS[self.info.format].mime


def inspect_image(path: str, what: str, limit: int = MAX_IMAGE_BYTES) -> InputImage:
    """Check that path is a readable input image (PNG, JPEG, WEBP) within limit bytes; UsageError if not."""
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
            if info is not None and not IMAGE_FORMATS[info.format].input:
                info = None
            if info is not None and info.format == "jpeg" and info.width is None and size > len(head):
                width, height = _jpeg_size_in_file(handle)
                info = info._replace(width=width, height=height)
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    if info is None:
        raise UsageError(
            f"{what} {path}: not a {format_names(lambda f: f.input)} image (by its first bytes)",
            hint=f"convert it to {format_names(lambda f: f.input)}",
        )
    return InputImage(path, size, info)


def check_mask(path: str, first: Optional[InputImage]) -> InputImage:
    """Check a mask file: a real PNG with an alpha channel, under 4 MB, the size of the first image."""
    mask = inspect_image(path, "--mask", MAX_MASK_BYTES)  # the 50 MB image limit would be the wrong figure
    check_mask_facts(f"--mask {path}", mask.info, mask.size, first)
    check_mask_pixels(f"--mask {path}", path)
    return mask


def check_mask_pixels(what: str, path: str) -> None:
    """A mask must mark something to change: decoded (it is under 4 MB), it has a fully transparent pixel."""
    # A mask without one is accepted by the API and changes nothing, or everything: it is paid for either way.
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_MASK_BYTES)
    except OSError as exc:
        raise UsageError(f"{what}: cannot read it ({exc.strerror or exc})") from None
    try:
        alpha = decode_png(data).rgba[3::4]
    except ImageDataError as exc:
        raise UsageError(
            f"{what}: not a readable PNG ({exc})", hint="save the mask again as an RGBA PNG"
        ) from None
    if 0 not in alpha:
        raise UsageError(
            f"{what}: no pixel is fully transparent, so the mask marks nothing to change",
            hint="make the area to change transparent (alpha 0), or give --mask-box or --mask-ellipse instead",
        )


def check_mask_facts(what: str, info: ImageInfo, size: int, first: Optional[InputImage]) -> None:
    """The mask rules, on what a mask's header says (a file's, or a data URL's)."""
    if info.format != "png":
        raise UsageError(f"{what}: is {info.format.upper()}; a mask must be a PNG with an alpha channel")
    if size >= MAX_MASK_BYTES:
        raise UsageError(f"{what}: {size:,} bytes; a mask must be under {MAX_MASK_BYTES:,} bytes")
    if not info.has_alpha:
        raise UsageError(
            f"{what}: the PNG has no alpha channel",
            hint="save it as RGBA; fully transparent pixels mark the area to edit",
        )
    if (
        first is not None
        and first.info.width
        and info.width
        and (info.width, info.height) != (first.info.width, first.info.height)
    ):
        raise UsageError(
            f"{what}: {info.width}x{info.height} does not match the first image "
            f"{first.path} ({first.info.width}x{first.info.height})",
            hint="resize the mask to the first image's width and height",
        )


def file_sha256(path: str, then: bytes = b"") -> str:
    """SHA-256 of a file, read in chunks (and of the bytes `then` after it)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(FILE_CHUNK_BYTES), b""):
            digest.update(block)
    digest.update(then)
    return digest.hexdigest()


# ASCII digits only: int() would read "１０２４" as 1024, but the API gets the text as it is. An edge of more than
# MAX_SIZE_DIGITS digits is refused before int() sees it (5,000 digits are slow, or refused by Python 3.11+).
MAX_SIZE_DIGITS = 6
_SIZE_RE = re.compile(r"([0-9]+)x([0-9]+)\Z")
_EDGE = f"([0-9]{{1,{MAX_SIZE_DIGITS}}})"
_LOOSE_SIZE_RE = re.compile(rf"\s*{_EDGE}\s*[xX*×, ]\s*{_EDGE}\s*\Z", re.ASCII)
_ASPECT_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?):([0-9]+(?:\.[0-9]+)?)(?:@(\w*))?\Z")  # ASCII digits only


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


def nearest_fixed_size(width: float, height: float, sizes: Sequence[str] = FIXED_SIZES) -> str:
    """The size of `sizes` (the standard sizes by default) whose aspect ratio is closest to WxH."""
    ratio = math.log(max(width, 1)) - math.log(max(height, 1))  # no float overflow for huge numbers

    def distance(size: str) -> float:
        w, h = (int(part) for part in size.split("x"))
        return abs(math.log(w / h) - ratio)

    return min(sizes, key=distance)


def size_error(size: str, model: str, rules: Optional[ModelRules]) -> Optional[Tuple[str, str]]:
    """Return (problem, fix) when size is not valid for the model, else None."""
    if size == "auto":
        return None
    match = _SIZE_RE.match(size)
    shown = printable(size, 40)
    if not match:
        loose = _LOOSE_SIZE_RE.match(size)
        if loose:
            suggestion = f"{int(loose.group(1))}x{int(loose.group(2))}"
            return (
                f"size {shown!r} is not of the form WIDTHxHEIGHT (lowercase x, digits only)",
                f"did you mean --size {suggestion}?",
            )
        return (
            f"size {shown!r} is not 'auto', WIDTHxHEIGHT or an aspect ratio W:H[@1k|2k|4k]",
            "for example --size 1024x1024 or --size 16:9",
        )
    if max(len(match.group(1)), len(match.group(2))) > MAX_SIZE_DIGITS:
        return f"size {shown!r} is far too large", "for example --size 1024x1024"
    width, height = int(match.group(1)), int(match.group(2))
    if rules is None:
        if width and height:
            return None
        return f"size {size} has a zero edge", "use positive numbers, e.g. --size 1024x1024"
    if not rules.flexible_sizes:
        if size in rules.sizes:
            return None
        return (
            f"{model} accepts only auto, {', '.join(rules.sizes)}; not {size}",
            f"the nearest is --size {nearest_fixed_size(width, height, rules.sizes)}",
        )
    problem = flexible_size_problem(width, height)
    if problem is None:
        return None
    near_w, near_h = nearest_flexible_size(width, height)
    return (
        f"size {size} is not valid for {model}: {problem}",
        f"the nearest valid size is --size {near_w}x{near_h}",
    )


def aspect_size(ratio: float, tier: str) -> Tuple[int, int]:
    """The valid gpt-image-2 size nearest `ratio` (width / height, 1/3 to 3) at a resolution tier: of the sizes
    within ASPECT_TOLERANCE of the ratio, the one nearest the tier's pixels (for 4k, the largest)."""
    target = ASPECT_TIERS[tier]
    candidates = set()
    for edge in range(FLEX_STEP, FLEX_MAX_EDGE + 1, FLEX_STEP):  # each width with its best height, and back
        candidates.add((edge, round(edge / ratio / FLEX_STEP) * FLEX_STEP))
        candidates.add((round(edge * ratio / FLEX_STEP) * FLEX_STEP, edge))
    valid = [(w, h) for w, h in candidates if flexible_size_problem(w, h) is None]

    def off_ratio(size: Tuple[int, int]) -> float:
        return abs(math.log(size[0] / size[1] / ratio))

    close = [size for size in valid if off_ratio(size) <= math.log1p(ASPECT_TOLERANCE)]
    if not close:
        return min(valid, key=lambda size: (off_ratio(size), -size[0] * size[1], size))
    if target is None:
        return min(close, key=lambda size: (-size[0] * size[1], off_ratio(size), size))
    return min(close, key=lambda size: (abs(math.log(size[0] * size[1] / target)), off_ratio(size), size))


def fixed_size_for_aspect(ratio: float, tier: str, sizes: Sequence[str]) -> str:
    """Of a fixed-size model's sizes, the one nearest `ratio`; among equals, the nearest the tier's pixels."""
    target = ASPECT_TIERS[tier]

    def distance(size: str) -> Tuple[float, float]:
        w, h = (int(part) for part in size.split("x"))
        pixels = abs(math.log(w * h / target)) if target else -w * h
        return round(abs(math.log(w / h / ratio)), 9), pixels

    return min(sizes, key=distance)


def resolve_aspect(size: str, model: str, rules: Optional[ModelRules]) -> Optional[Tuple[str, str]]:
    """For --size W:H or W:H@1k|2k|4k: the WxH to send and a note saying how it was chosen; None for any other
    size. A ratio or tier that cannot be met raises UsageError."""
    match = _ASPECT_RE.match(size)
    if not match:
        return None
    ratio_w, ratio_h = float(match.group(1)), float(match.group(2))
    tier = (match.group(3) if match.group(3) is not None else DEFAULT_ASPECT_TIER).lower()
    if tier not in ASPECT_TIERS:
        raise UsageError(
            f"size {size!r}: the resolution tier must be {', '.join(ASPECT_TIERS)}",
            hint=f"for example --size {match.group(1)}:{match.group(2)}@2k",
        )
    if not (0 < ratio_w < math.inf and 0 < ratio_h < math.inf):
        raise UsageError(
            f"size {size!r}: both sides of an aspect ratio must be positive", hint="e.g. --size 16:9"
        )
    ratio = ratio_w / ratio_h
    if rules is not None and not rules.flexible_sizes:
        fixed = fixed_size_for_aspect(ratio, tier, rules.sizes)
        return fixed, f"--size {size}: {model} has fixed sizes only; {fixed} is the nearest to that ratio"
    limit = float(FLEX_MAX_RATIO)
    if not 1 / limit <= ratio <= limit:
        nearest = f"{FLEX_MAX_RATIO}:1" if ratio > 1 else f"1:{FLEX_MAX_RATIO}"
        raise UsageError(
            f"size {size}: the aspect ratio must be between 1:{FLEX_MAX_RATIO} and {FLEX_MAX_RATIO}:1",
            hint=f"the nearest is --size {nearest}" + (f"@{match.group(3)}" if match.group(3) else ""),
        )
    width, height = aspect_size(ratio, tier)
    basis = " (gpt-image-2's size rules, since the model is unknown)" if rules is None else ""
    return f"{width}x{height}", (
        f"--size {size} is {width}x{height}{basis}: {width * height / 1e6:.2f} megapixels, "
        f"ratio {width / height:.3f} for {ratio:.3f} asked"
    )


def rules_for(model: str) -> Optional[ModelRules]:
    """Look a model up in MODELS, after stripping a provider prefix and a -YYYY-MM-DD snapshot date."""
    name = model.rsplit("/", 1)[-1].strip().lower()
    return MODELS.get(name) or MODELS.get(re.sub(r"-\d{4}-\d{2}-\d{2}\Z", "", name))


class OutputPlan(NamedTuple):
    """Where images go: --output expanded per image index, and .partial-K previews beside each final."""

    pattern: str
    count: int  # type: ignore[assignment]  # how many final images are planned (a field over tuple.count)
    sizes: Tuple[str, ...] = ()  # --resize: each final image is a file at each of these sizes

    def final(self, index: int, size: Optional[str] = None) -> str:
        """The path of final image `index` (1-based), at `size` (by default the first --resize target):
        `{size}` in the pattern becomes WxH; without it, several sizes get -WxH before the extension."""
        if "{index}" in self.pattern:
            path = self.pattern.replace("{index}", str(index))
        elif self.count == 1 and index == 1:
            path = self.pattern
        else:
            root, ext = os.path.splitext(self.pattern)
            path = f"{root}-{index}{ext}"
        size = size or (self.sizes[0] if self.sizes else None)
        if "{size}" in path:
            return path.replace("{size}", size or "")
        if size and len(self.sizes) > 1:
            root, ext = os.path.splitext(path)
            return f"{root}-{size}{ext}"
        return path

    def finals(self) -> List[str]:
        """The paths of every planned final image (each size of each), in order."""
        sizes = self.sizes or (None,)
        return [self.final(index, size) for index in range(1, self.count + 1) for size in sizes]

    def partial(self, index: int, k: int) -> str:
        """The path of preview k (1-based) of final image `index`."""
        root, ext = os.path.splitext(self.final(index))
        return f"{root}.partial-{k}{ext}"


def metadata_path(image_path: str) -> str:
    """The --metadata sidecar of an image: the image path plus .json."""
    return image_path + ".json"


def _name_max(folder: str) -> int:
    """The longest file name (in bytes) the file system holding folder accepts."""
    while folder and not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        return int(os.pathconf(folder or ".", "PC_NAME_MAX"))
    except (AttributeError, ValueError, OSError):
        return 255  # Windows and most file systems


def path_key(path: str) -> str:
    """What makes two paths one file: the folder with its symbolic links resolved, then the name (as the file
    system compares names)."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.normcase(os.path.join(os.path.realpath(folder), name))


def check_writable(path: str, overwrite: bool, what: str = "output") -> None:
    """Refuse a planned file that exists (unless overwrite), whose name is too long, or whose folder cannot be
    created or written."""
    if os.path.isdir(path):
        raise UsageError(f"{what} {path} is a folder")
    if os.path.lexists(path) and not overwrite:
        raise UsageError(f"{what} {path} already exists", hint="pass --overwrite, or choose another --output")
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    limit = _name_max(folder)
    probe = folder
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        size = len(os.fsencode(os.path.basename(probe)))
        if size > limit:  # a folder still to be created, with a name the file system cannot hold
            raise UsageError(
                f"{what} {path}: a folder name in it is {size} bytes, too long for this file system "
                f"(it takes {limit})",
                hint="choose a shorter folder name",
            )
        probe = parent
    # Room is kept for the .N name a file that appears during the run makes the output take, and for the
    # temporary name, so that a name the check lets through can always be written.
    size, most = len(os.fsencode(name)), limit - NAME_ROOM_BYTES
    if size > most:
        raise UsageError(
            f"{what} {path}: the file name is {size} bytes, too long: this file system takes {limit}, and "
            f"{NAME_ROOM_BYTES} are kept for the temporary name",
            hint=f"choose a name of at most {most} bytes",
        )
    if not os.path.isdir(probe):
        raise UsageError(
            f"cannot write {what} {path}: {probe} is not a folder", hint="choose another --output"
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(
            f"cannot write {what} {path}: {probe} is not writable", hint="choose another --output"
        )


def open_temp_beside(path: str) -> Tuple[int, str]:
    """Create the temporary file that will become path: same folder, hidden, short enough for any name."""
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    run = current_run()
    if run.aborting:
        raise Interrupted()
    # A short prefix of the name: a final name near the file system's limit still leaves room for the temp.
    fd, temp = tempfile.mkstemp(prefix="." + os.path.basename(path)[:32] + ".", suffix=".part", dir=folder)
    run.temp_files.add(temp)
    return fd, temp


def _free_names(path: str) -> Iterator[str]:
    root, ext = os.path.splitext(path)
    yield path
    for counter in range(2, 10_000):
        yield f"{root}.{counter}{ext}"


def commit_temp(temp: str, path: str, overwrite: bool) -> str:
    """Move a finished temporary file into place; return the path used.

    With overwrite it replaces path. Otherwise it never replaces anything, not even a file that appeared a
    moment ago: it hard-links the temporary file to the first free name of path, path.2.ext, ... (a link fails
    on an existing name, where a rename would replace it) and removes the temporary name.
    """
    current_run().temp_files.discard(temp)
    if overwrite:
        os.replace(temp, path)
        return path
    for candidate in _free_names(path):
        try:
            os.link(temp, candidate)
        except FileExistsError:
            continue
        except OSError:
            # No hard links on this file system: a rename onto a name that is free right now is the best left.
            if os.path.lexists(candidate):
                continue
            os.replace(temp, candidate)
            return candidate
        os.unlink(temp)
        return candidate
    raise OSError(f"no free file name beside {path}")


def _remove(path: str) -> None:
    current_run().temp_files.discard(path)
    try:
        os.unlink(path)
    except OSError:
        pass


def rescue_output(path: str, data: Union[bytes, bytearray, memoryview], label: str = "") -> Optional[str]:
    """Keep a paid-for image that could not go to path in the temporary folder; its path, or None.

    A copy that cannot be written whole is removed: a truncated image is worse than none. `label` goes
    into the name (`incomplete` for an image that arrived damaged, so that nobody mistakes it for whole).
    """
    import tempfile

    prefix = f"gpt-image-{label}-" if label else "gpt-image-"
    try:
        fd, rescued = tempfile.mkstemp(prefix=prefix, suffix=os.path.splitext(path)[1])
    except OSError:
        return None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except OSError:
        _remove(rescued)
        return None
    return rescued


def write_output(path: str, data: Union[bytes, bytearray, memoryview], overwrite: bool) -> str:
    """Write an output file (an image, a preview, a sidecar) atomically: a temporary file, then commit_temp;
    return the path actually written.

    The temporary file is removed on any failure; a file that existed before the run is replaced only with
    --overwrite, and only by a complete new file.
    """
    fd, temp = open_temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return commit_temp(temp, path, overwrite)
    except BaseException:
        _remove(temp)
        raise


def write_mask_file(data: bytes, path: Optional[str], overwrite: bool) -> InputImage:
    """A mask made here (a PNG) as a file the request sends like a --mask: at path (--save-mask), written
    atomically and kept as it is when it holds these bytes already; else a temporary file the run removes."""
    import tempfile

    info = read_image_info(data[:65536])
    assert info is not None  # encode_png's own output
    if path is None:
        run = current_run()
        fd, temp = tempfile.mkstemp(prefix="gpt-image-mask-", suffix=".png")
        run.temp_files.add(temp)  # main() removes what is left of them when the run ends
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        except OSError as exc:
            _remove(temp)
            raise UsageError(f"cannot write the mask to a temporary file ({exc.strerror or exc})") from None
        return InputImage(temp, len(data), info)
    # The same mask again (a dry run's, looked at, then the real run; a batch run again) is no overwrite.
    try:
        with open(path, "rb") as handle:
            same = os.path.getsize(path) == len(data) and handle.read(len(data) + 1) == data
    except OSError:
        same = False
    if same:
        return InputImage(path, len(data), info)
    if os.path.lexists(path) and not overwrite and not os.path.isdir(path):
        raise UsageError(
            f"--save-mask {path} already exists (with another mask or another file)",
            hint="pass --overwrite, or choose another --save-mask path",
        )
    check_writable(path, overwrite, "--save-mask")
    try:
        written = write_output(path, data, overwrite)
    except OSError as exc:
        raise UsageError(f"cannot write --save-mask {path} ({exc.strerror or exc})") from None
    return InputImage(written, len(data), info)


class RawSink:
    """--save-response: the response bytes streamed to a temporary file as they arrive, committed at the end.

    Any registered secret is replaced by *** even when it straddles two chunks.
    """

    def __init__(self, path: str, overwrite: bool) -> None:
        self.path = path
        self.overwrite = overwrite
        fd, self.temp = open_temp_beside(path)
        self.handle: Optional[IO[bytes]] = os.fdopen(fd, "wb")
        self.secrets = [s.encode("utf-8") for s in current_run().secrets]
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
        """Finish the file and move it into place; on a failed write, remove it and raise that OSError."""
        assert self.handle is not None
        try:
            if self.failure is not None:
                raise self.failure
            self.handle.write(self.pending)
            self.handle.close()
            self.handle = None
            return commit_temp(self.temp, self.path, self.overwrite)
        except OSError:
            self.discard()
            raise

    def discard(self) -> None:
        """Remove the temporary file."""
        if self.handle is not None:
            try:
                self.handle.close()
            except OSError:
                pass
            self.handle = None
        _remove(self.temp)


# --- Wire formats (pure): JSON and multipart bodies, server-sent events, lean JSON, images -----------------


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


class DataUrl:
    """A local image to be sent as a base64 data URL inside a JSON body, streamed from disk."""

    __slots__ = ("image",)

    def __init__(self, image: InputImage) -> None:
        self.image = image


class GivenDataUrl:
    """A data URL the user gave as text: sent as it is, shown shortened."""

    __slots__ = ("info", "text")

    def __init__(self, text: str, info: ImageInfo) -> None:
        self.text = text
        self.info = info


def encode_json(body: Mapping[str, Any]) -> Tuple[StreamBody, Dict[str, Any]]:
    """A JSON body as a StreamBody, and the same body as shown to people (data URLs shortened).

    DataUrl values are spliced in as streamed base64, so large images never sit in memory.
    """
    token = f"@@gpt-image-data-url-{os.urandom(16).hex()}-"
    files: List[InputImage] = []

    def placeholder(value: Any) -> Any:
        if isinstance(value, DataUrl):
            files.append(value.image)
            return f"{token}{len(files) - 1}@@"
        if isinstance(value, GivenDataUrl):
            return value.text
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
        if isinstance(value, GivenDataUrl):
            return (
                f"data:{IMAGE_FORMATS[value.info.format].mime};base64,<{len(value.text):,} characters given>"
            )
        raise TypeError(f"cannot encode {type(value).__name__}")

    return StreamBody(segments), json.loads(json.dumps(body, ensure_ascii=False, default=shorten))


def _quote_header_value(value: str) -> str:
    # As browsers do (WHATWG multipart/form-data): escape quotes and line breaks so a part cannot break out.
    # A file name that is not valid UTF-8 (lone surrogates from os.fsdecode) gets "?" for the bad bytes.
    value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class UploadFile(NamedTuple):
    """A file that is not an image (a batch's input JSONL), for a multipart upload."""

    path: str
    size: int
    mime: str


class FilePart(NamedTuple):
    """One file field of a multipart body."""

    name: str
    image: Union[InputImage, UploadFile]


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
        head = f'Content-Disposition: form-data; name="{_quote_header_value(name)}"\r\n\r\n'
        segments += [dash, head.encode(), value.encode("utf-8") + b"\r\n"]
    for part in files:
        head = (
            f'Content-Disposition: form-data; name="{_quote_header_value(part.name)}"; '
            f'filename="{_quote_header_value(os.path.basename(part.image.path))}"\r\n'
            f"Content-Type: {part.image.mime}\r\n\r\n"
        )
        segments += [dash, head.encode(), FileSegment(part.image.path, part.image.size), b"\r\n"]
    segments.append(f"--{boundary}--\r\n".encode("ascii"))
    return StreamBody(segments), f"multipart/form-data; boundary={boundary}"


def describe_parts(fields: Sequence[Tuple[str, str]], files: Sequence[FilePart]) -> List[Dict[str, Any]]:
    """The multipart parts as shown to people: name and value, or name, file name, type, size and path."""
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
    return parts


def form_value(value: Any) -> str:
    """A form field as the official SDK sends it: booleans as true/false, numbers as digits."""
    return str(value).lower() if isinstance(value, bool) else str(value)


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

    A line over MAX_LINE_BYTES, an event over MAX_EVENT_BYTES of data or MAX_EVENT_LINES lines, and a stream
    of more than MAX_EVENTS events are a ResponseError: what a server sends cannot make memory grow.
    """
    max_line, max_event, max_lines, max_events = MAX_LINE_BYTES, MAX_EVENT_BYTES, MAX_EVENT_LINES, MAX_EVENTS
    buffer = bytearray()
    scanned = 0  # bytes of buffer already known to hold no line end
    skip_lf = False  # the previous chunk ended in CR: a leading LF belongs to it
    at_start = True  # a UTF-8 byte order mark may still come, perhaps split across chunks
    cr_seen = False  # until a CR shows up, there is no need to look for one
    event_type = ""
    data: Optional[bytearray] = None  # the event's data lines, joined with LF as they come
    lines = events = 0  # lines of this event; events of the stream
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
                if scanned > max_line:
                    raise _stream_too_large(f"a line of the event stream is over {max_line:,} bytes")
                break
            if end > max_line:
                raise _stream_too_large(f"a line of the event stream is over {max_line:,} bytes")
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
                if data is not None:  # WHATWG: dispatch when any data line came, even an empty one
                    events += 1
                    if events > max_events:
                        raise _stream_too_large(f"the event stream has more than {max_events:,} events")
                    event = Event(event_type or "message", data, last_id, retry)
                    data = None  # drop the event's data (tens of MB) before the next one piles up
                    yield event
                    del event
                event_type, lines, value = "", 0, bytearray()
                continue
            lines += 1
            if lines > max_lines:
                raise _stream_too_large(f"an event of the stream has more than {max_lines:,} lines")
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
                if data is None:
                    data = value  # one data line: the event's data is that line, not a copy
                else:
                    data += b"\n"
                    data += value
                if len(data) > max_event:
                    raise _stream_too_large(f"an event of the stream is over {max_event:,} bytes")
            elif name == b"event":
                event_type = value.decode("utf-8", "replace")
            elif name == b"id":
                if b"\0" not in value:
                    last_id = value.decode("utf-8", "replace")
            elif name == b"retry" and value.isdigit() and len(value) <= 18:
                retry = int(value)


def _stream_too_large(what: str) -> ResponseError:
    return ResponseError(
        f"{what} (the limit); the server sent far more than the API does, so the stream was abandoned",
        hint="check --base-url; --save-response keeps what arrived",
    )


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
        pieces += [view[keep_from:start], b"\\u0000blob:%d" % len(blobs)]
        blobs.append(view[start:end])
        keep_from = end
    try:
        if not blobs:
            return json.loads(data), blobs
        pieces.append(view[keep_from:])
        return json.loads(b"".join(pieces)), blobs
    except RecursionError:  # nested deeper than the parser goes: no reply of the API is
        raise ValueError("the JSON is nested too deeply") from None


def decode_image(value: Any, blobs: Sequence[memoryview], what: str) -> bytes:
    """Decode a base64 image (a plain string or a lean blob) and check it is of a known format."""
    limit = MAX_IMAGE_B64_BYTES
    if isinstance(value, str):
        size = _base64_length(value, blobs)
        if size > limit:
            raise ResponseError(
                f"{what}: {size:,} bytes of base64, over the limit of {limit:,} bytes for one image",
                hint="check --base-url points at the API; run again",
            )
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
        raise ResponseError(f"{what}: the decoded data is not a {format_names()} image")
    return image


def _base64_length(value: str, blobs: Sequence[memoryview]) -> int:
    if value.startswith(_BLOB_MARK):
        try:
            return len(blobs[int(value[len(_BLOB_MARK) :])])
        except (IndexError, ValueError):
            return 0  # decode_image says what is wrong with it
    return len(value)


# --- Transport: requests, send(), retries, API errors -----------------------------------------------------


class Deadline(NamedTuple):
    """--deadline: the seconds given, and the time.monotonic() by which the whole run must be over."""

    seconds: float
    at: float

    def left(self) -> float:
        """Seconds until the deadline (negative once it has passed)."""
        return self.at - time.monotonic()

    def wait(self, timeout: float) -> float:
        """The longest a wait may take now: timeout, or less if the deadline comes first; raises once it has
        passed."""
        left = self.left()
        if left <= 0:
            raise self.error()
        return min(timeout, left)

    def error(self, sent: bool = True) -> NetworkError:
        """The error of a run stopped by its deadline (`sent`: the request may have reached the server)."""
        what = (
            "passed before the image arrived; stopped, and not retried (the image may already be billed)"
            if sent
            else "ends before the request could be sent (or sent again)"
        )
        return NetworkError(
            f"the run's --deadline of {self.seconds:g} s {what}", hint="raise --deadline, or run again"
        )


class Connection(NamedTuple):
    """Where and how requests go: the provider and its root URL (the base URL, or Azure's resource endpoint),
    the credentials, the API version, the timeout and the retry budget."""

    base_url: str
    api_key: Optional[str]
    organization: Optional[str]
    project: Optional[str]
    timeout: float
    retries: int
    provider: Provider = OPENAI
    api_version: Optional[str] = None
    deadline: Optional[Deadline] = None

    def url(self, endpoint: str, deployment: Optional[str] = None) -> str:
        """The full URL of an API endpoint such as /images/generations, /files or /batches/ID."""
        return self.provider.build_url(self.base_url, endpoint, deployment, self.api_version)[0]

    def target(self, endpoint: str, body: Mapping[str, Any]) -> Tuple[str, Dict[str, Any]]:
        """The URL of a request to endpoint with these fields, and the fields to send: where the provider puts
        the deployment (the body's model) in the path, the body carries no model."""
        model = body.get("model")
        deployment = model if isinstance(model, str) else None
        url, in_path = self.provider.build_url(self.base_url, endpoint, deployment, self.api_version)
        return url, {key: value for key, value in body.items() if not (in_path and key == "model")}

    def headers(self, content_type: str, stream: bool) -> Dict[str, str]:
        """The key in the provider's auth header, content type, accept, user agent, and the optional
        organization/project headers."""
        headers = {
            self.provider.auth_header: self.provider.auth_prefix + (self.api_key or ""),
            "Content-Type": content_type,
            "Accept": "text/event-stream" if stream else "application/json",
            "User-Agent": USER_AGENT,
        }
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        if self.project:
            headers["OpenAI-Project"] = self.project
        return headers


class HttpRequest(NamedTuple):
    """A request ready to send, and what it carries as shown to people (for --dry-run and --metadata)."""

    method: str
    url: str
    headers: Dict[str, str]
    body: StreamBody
    shown_body: Optional[Dict[str, Any]] = None  # a JSON body, data URLs shortened
    parts: Optional[List[Dict[str, Any]]] = None  # a multipart body, part by part

    def sent(self) -> Dict[str, Any]:
        """The fields sent; in a multipart body a repeated field (image[]) becomes a list."""
        if self.shown_body is not None:
            return self.shown_body
        grouped: Dict[str, List[Any]] = {}
        for part in self.parts or []:
            grouped.setdefault(part["name"], []).append(part.get("value", part.get("path")))
        return {name: values[0] if len(values) == 1 else values for name, values in grouped.items()}

    def describe(self) -> Dict[str, Any]:
        """The request as --dry-run prints it, the credentials masked."""
        headers = dict(self.headers)
        for provider in PROVIDERS:
            name, prefix = provider.auth_header, provider.auth_prefix
            if name in headers:
                unset = "" if headers[name] != prefix else f" ({provider.key_names[0]} is not set)"
                headers[name] = f"{prefix}***{unset}"
        body = {"body": self.shown_body} if self.shown_body is not None else {"parts": self.parts}
        return {
            "method": self.method,
            "url": self.url,
            "headers": headers,
            **body,
            "content_length": self.body.length,
        }


def json_request(connection: Connection, endpoint: str, body: Mapping[str, Any], stream: bool) -> HttpRequest:
    """A JSON POST to an endpoint, at the URL (and with the fields) the connection's provider wants."""
    url, fields = connection.target(endpoint, body)
    stream_body, shown = encode_json(fields)
    headers = connection.headers("application/json", stream)
    return HttpRequest("POST", url, headers, stream_body, shown_body=shown)


class _RetryableFailure(Exception):
    """A connection failure before any response: safe to try again (its text is the reason)."""


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
    return str(getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)


class _Answered(Exception):
    """The server's answer began but could not be read as HTTP (a bad status line, a 100 KB header, garbage):
    the request may have been received and billed, so it is not a connection failure, and never retried. Its
    one argument is the exception that made the answer unreadable."""


def _skip_header_block(fp: IO[bytes]) -> None:
    """Read past the header lines of an interim (1xx) answer, within http.client's own limits."""
    import http.client

    for _ in range(MAX_HEADERS + 1):
        line = fp.readline(MAX_HEADER_LINE_BYTES + 1)
        if len(line) > MAX_HEADER_LINE_BYTES:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            return
    raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")


def _handlers(timeout: float, deadline: Optional[Deadline]) -> List[Any]:
    """urllib handlers for send(): no redirects, and connections whose every socket read and write waits at
    most the per-read timeout or what is left of the deadline, that skip 1xx answers, and that tell a
    server that answered nothing from one whose answer was unreadable."""
    import http.client
    import socket
    import urllib.request

    def armed(sock: Any, operation: Callable[..., Any], *args: Any) -> Any:
        # One socket read or write, waiting at most the per-read timeout or what is left of the deadline.
        wait = timeout if deadline is None else deadline.wait(timeout)
        sock.settimeout(wait)
        try:
            return operation(*args)
        except (socket.timeout, TimeoutError):
            if deadline is not None and wait < timeout:
                raise deadline.error() from None
            raise

    class ArmedReader(io.RawIOBase):
        def __init__(self, raw: Any, sock: Any) -> None:
            super().__init__()
            self.raw, self.sock = raw, sock

        def readable(self) -> bool:
            return True

        def fileno(self) -> int:
            return self.raw.fileno()  # type: ignore[no-any-return]

        def readinto(self, buffer: Any) -> Optional[int]:
            return armed(self.sock, self.raw.readinto, buffer)  # type: ignore[no-any-return]

        def close(self) -> None:
            if not self.closed:
                self.raw.close()
            super().close()

    class ArmedSocket:
        # A connected socket as http.client uses it (sendall, makefile, close...), each read and write armed.
        def __init__(self, sock: Any) -> None:
            self.sock = sock

        def __getattr__(self, name: str) -> Any:
            return getattr(self.sock, name)

        def sendall(self, data: Any, *args: Any) -> None:
            armed(self.sock, self.sock.sendall, data, *args)

        def makefile(self, *args: Any, **kwargs: Any) -> IO[bytes]:
            # The socket's own unbuffered reader keeps its reference counting: urllib closes the socket
            # while the response still reads from it.
            return io.BufferedReader(ArmedReader(self.sock.makefile("rb", buffering=0), self.sock))

    class Response(http.client.HTTPResponse):
        def begin(self) -> None:
            # Nothing at all before the connection closed is a failure before any response (retried);
            # from the first byte on, it is an answer, and a broken one is never a reason to send again.
            if not self.fp.peek(1):
                raise http.client.RemoteDisconnected("Remote end closed connection without response")
            try:
                super().begin()
            except (GptImageError, socket.timeout, TimeoutError):
                raise
            except Exception as exc:
                raise _Answered(exc) from None

        def _read_status(self) -> Tuple[str, int, str]:
            # http.client skips only 100 Continue; 103 Early Hints and other interim answers come before the
            # real one too (RFC 9110 15.2: a client must be able to parse them, even unexpected).
            for _ in range(MAX_INTERIM_ANSWERS):
                version, status, reason = super()._read_status()  # type: ignore[misc]
                if not 100 <= status < 200 or status == 101:
                    return version, status, reason
                _skip_header_block(self.fp)
            raise http.client.HTTPException(f"more than {MAX_INTERIM_ANSWERS} interim 1xx answers")

    class Http(http.client.HTTPConnection):
        response_class = Response

        def connect(self) -> None:
            super().connect()
            self.sock = ArmedSocket(self.sock)

    class Https(Http, http.client.HTTPSConnection):
        pass  # Http.connect() arms the socket that HTTPSConnection.connect() wrapped in TLS

    class HttpHandler(urllib.request.HTTPHandler):
        def http_open(self, req: Any) -> Any:
            return self.do_open(Http, req)

    class HttpsHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: Any) -> Any:
            return self.do_open(Https, req, context=getattr(self, "_context", None))

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        # urllib would replay the POST as a GET, with the key, to wherever Location points: refuse instead.
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return [NoRedirects, HttpHandler, HttpsHandler]


def send(
    request: HttpRequest, timeout: float, deadline: Optional[Deadline] = None
) -> http.client.HTTPResponse:
    """Send one request and return the response, whatever its status: the only function on the network.

    Raises _RetryableFailure when the connection fails before any byte of a response, NetworkError when no
    answer comes within the timeout after the request went out or the deadline passes (neither retried: the
    generation may be running and billed), and ResponseError when the answer cannot be read as HTTP.
    """
    import http.client
    import socket
    import ssl
    import urllib.error
    import urllib.request

    # A request without a body (the Batch API's GETs, its cancel) is sent without one: urllib gives any request
    # whose data is not None a form Content-Type. RFC 9110 8.6: "A user agent SHOULD NOT send a Content-Length
    # header field when the request message does not contain content and the method semantics do not
    # anticipate such data" (a GET); http.client still sends "Content-Length: 0" for a POST without a body.
    body = request.body if request.body.length else None
    headers = request.headers if body is None else {**request.headers, "Content-Length": str(body.length)}
    req = urllib.request.Request(request.url, data=body, headers=headers, method=request.method)
    opener = urllib.request.build_opener(*_handlers(timeout, deadline))
    if deadline is not None and deadline.left() <= 0:
        raise deadline.error(sent=False)
    try:
        return opener.open(  # type: ignore[no-any-return]
            req, timeout=timeout if deadline is None else deadline.wait(timeout)
        )
    except urllib.error.HTTPError as exc:
        return exc  # type: ignore[return-value]  # an HTTPError is also the response
    except _Answered as exc:
        cause = exc.args[0]
        if isinstance(cause, OSError):
            raise NetworkError(
                f"the connection broke while the answer's status and headers were arriving "
                f"({_describe_os_error(cause)}); not retried, since the image may already be billed",
                hint="run again",
            ) from None
        detail = printable(f"{type(cause).__name__}: {cause}", 160)
        raise ResponseError(
            f"the server's answer is not HTTP that can be read ({detail}); not retried, since the request "
            "may have been received",
            hint="check --base-url points at the API",
        ) from None
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


Notify = Callable[[str], None]

_TRY_AGAIN_RE = re.compile(rb"try again in ([0-9]+(?:\.[0-9]+)?) ?(ms|s)\b", re.I)
_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|h|m|s)")


def parse_duration(text: str) -> Optional[float]:
    """Seconds in a rate-limit duration such as `1s`, `6m0s`, `20ms` or `1h2m3.5s`; None if it is not one."""
    text = text.strip()
    parts = _DURATION_RE.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(number) * scale[unit] for number, unit in parts)


def server_delay(headers: Any, body: bytes = b"") -> Optional[float]:
    """The wait a 429 asks for: retry-after-ms, retry-after (seconds or a date), or the message's
    "try again in N s"; None when it names none."""
    import email.utils

    raw_ms = headers.get("retry-after-ms") if headers else None
    raw = headers.get("retry-after") if headers else None
    for value, scale in ((raw_ms, 0.001), (raw, 1.0)):
        try:
            if value is not None and math.isfinite(float(value)):
                return float(value) * scale
        except ValueError:
            pass
    if raw is not None:
        try:
            return email.utils.parsedate_to_datetime(raw).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    found = _TRY_AGAIN_RE.search(body[:ERROR_BODY_LIMIT])
    if found:
        return float(found.group(1)) * (0.001 if found.group(2).lower() == b"ms" else 1.0)
    return None


def retry_delay(headers: Any, attempt: int, body: bytes = b"") -> Optional[float]:
    """Seconds to wait before retry number attempt+1: the server's delay, else jittered backoff.

    Returns None when the server asks for a longer wait than RETRY_AFTER_MAX_S.
    """
    import random

    wait = server_delay(headers, body)
    if wait is not None:
        if wait > RETRY_AFTER_MAX_S:
            return None
        if wait >= 0:
            return wait
    return min(BACKOFF_BASE_S * 2.0**attempt, BACKOFF_MAX_S) * (1 - 0.25 * random.random())  # jittered


class RateGate:
    """One rate limit shared by the workers of a batch.

    A 429 pauses every worker for the server's delay and halves how many requests may be in flight; each run
    of successes lets one more in again, up to --jobs. `x-ratelimit-remaining-requests: 0` pauses everyone
    until `x-ratelimit-reset-requests`.
    """

    def __init__(self, most: int) -> None:
        import threading

        self.most = self.limit = most
        self.in_flight = 0
        self.paused_until = 0.0
        self.successes = 0
        self.stopping = False  # the batch stops: a job waiting out a rate limit was never run
        self.changed = threading.Condition()

    def stop(self) -> None:
        """No request is sent any more unless it is already on its way."""
        with self.changed:
            self.stopping = True
            self.changed.notify_all()

    def acquire(self) -> None:
        """Wait for a free slot (and the end of any pause)."""
        with self.changed:
            while self.in_flight >= self.limit or time.monotonic() < self.paused_until:
                self.changed.wait(max(min(self.paused_until - time.monotonic(), 1.0), 0.01))
            self.in_flight += 1

    def release(self, ok: bool) -> None:
        """Give a slot back; a success counts towards letting one more request in."""
        with self.changed:
            self.in_flight -= 1
            if ok:
                self.successes += 1
                if self.limit < self.most and self.successes >= self.limit:
                    self.limit += 1
                    self.successes = 0
            self.changed.notify_all()

    def wait_turn(self, deadline: Optional[Deadline] = None) -> None:
        """Before any send (a retry too): wait out a pause, within the deadline; NotRun once the batch stops."""
        with self.changed:
            while time.monotonic() < self.paused_until and not self.stopping:
                if deadline is not None and deadline.left() < self.paused_until - time.monotonic():
                    raise deadline.error(sent=False)
                self.changed.wait(min(self.paused_until - time.monotonic(), 1.0))
            if self.stopping:
                raise NotRun("the batch was stopping")

    def pause(self, seconds: float, slow_down: bool = True) -> None:
        """Hold every worker for `seconds`; after a 429, also let fewer requests in at once."""
        with self.changed:
            until = time.monotonic() + max(seconds, 0.0)
            if slow_down and until > self.paused_until + 0.05:  # a fresh 429, not one of the same pause
                self.limit = max(1, min(self.limit, self.in_flight) // 2 or 1)
                self.successes = 0
            self.paused_until = max(self.paused_until, until)
            self.changed.notify_all()

    def observe(self, headers: Any, sent_at: float) -> None:
        """Read the rate-limit headers of any response to a request sent at `sent_at` (monotonic).

        The server counts the reset from when it took the request, not from when its answer (perhaps a
        minute of generation later) arrived: the pause ends that long after the send.
        """
        if (headers.get("x-ratelimit-remaining-requests") or "").strip() == "0":
            reset = parse_duration(headers.get("x-ratelimit-reset-requests") or "")
            if reset is not None:
                # A hair more than the reset: the server took the request a moment after it was sent.
                left = sent_at + min(reset, RETRY_AFTER_MAX_S) + RESET_MARGIN_S - time.monotonic()
                if left > 0:
                    self.pause(left, slow_down=False)


RESET_MARGIN_S = 0.05
RATE_LIMIT_WAITS = 100  # 429 rate limits one batch job waits out before it fails (they use no --retries)


def open_response(
    request: HttpRequest, connection: Connection, notify: Notify, gate: Optional[RateGate] = None
) -> http.client.HTTPResponse:
    """Send with retries (429/5xx and failures before a response); return the final response, any status.

    Under a batch's RateGate a 429 rate limit is waited out without using a retry (the account is busy, the
    job is fine); insufficient_quota never clears by waiting, so it is never retried.
    """
    attempt = waits = 0
    while True:
        if gate is not None:
            gate.wait_turn(connection.deadline)
        sent_at = time.monotonic()
        try:
            response = send(request, connection.timeout, connection.deadline)
        except _RetryableFailure as failure:
            if attempt >= connection.retries:
                tries = f" after {attempt + 1} attempts" if attempt else ""
                raise NetworkError(
                    f"cannot reach {request.url}: {failure}{tries}",
                    hint="check the network, proxy and --base-url",
                ) from None
            delay = retry_delay(None, attempt)
            notify(f"retrying in {delay:.1f} s ({attempt + 1}/{connection.retries}): {failure}")
        else:
            if gate is not None:
                gate.observe(response.headers, sent_at)
            # The API's x-should-retry: false vetoes a retry; "true" never extends retries to other statuses,
            # since any other 4xx fails the same way again (design.md, "Network behaviour").
            veto = (response.headers.get("x-should-retry") or "").lower() == "false"
            if veto or response.status not in RETRY_STATUSES:
                return response
            body = _drain(response) if response.status == 429 or attempt < connection.retries else b""
            if response.status == 429 and b"insufficient_quota" in body:
                raise api_error(response.status, body, response.headers)
            if response.status == 429 and gate is not None and waits < RATE_LIMIT_WAITS:
                wait = server_delay(response.headers, body)
                wait = wait if wait is not None and wait >= 0 else retry_delay(None, waits) or 0
                wait = min(wait, RETRY_AFTER_MAX_S)
                gate.pause(wait)
                notify(f"rate limited: every job waits {wait:.1f} s")
                waits += 1
                continue
            if attempt >= connection.retries:
                if response.status == 429:
                    raise api_error(response.status, body, response.headers)
                return response
            delay = retry_delay(response.headers, attempt, body)
            if delay is None:
                raise api_error(
                    response.status,
                    body,
                    response.headers,
                    extra="the API asked to wait over "
                    f"{RETRY_AFTER_MAX_S:g} s before retrying; try again later",
                )
            notify(f"retrying in {delay:.1f} s ({attempt + 1}/{connection.retries}): HTTP {response.status}")
        if connection.deadline is not None and (delay or 0) >= connection.deadline.left():
            raise connection.deadline.error(sent=False)
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


def api_error(
    status: int, body: bytes, headers: Any, extra: str = "", hints: Optional[Mapping[int, str]] = None
) -> ApiError:
    """Turn an HTTP error response into an ApiError with the API's message, code, param and request id;
    `hints` are the provider's own hints by status."""
    try:
        payload = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError):
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if error is None and isinstance(payload, dict) and isinstance(payload.get("message"), str):
        error = payload  # Azure's gateway shape, unwrapped: {"statusCode": 401, "message": ...}
    if error is None and body:
        # Not the API's error shape (a gateway's page, say): show its text, redacted before it is cut.
        error = shown_text(body, SHOWN_TEXT_LIMIT, cut=len(body) >= ERROR_BODY_LIMIT)
    request_id = headers.get("x-request-id") if headers else None
    return error_from_api(error, status, request_id, extra, hints)


_CONTENT_FILTER_CODES = ("contentfilter", "content_filter", "responsibleaipolicyviolation")


def content_filter_hint(error: Any, code: Optional[str]) -> Optional[str]:
    """The hint for Azure's content filter (code contentFilter, or an innererror ResponsibleAIPolicyViolation),
    naming the categories it filtered; None for any other error."""
    inner = error.get("innererror") if isinstance(error, dict) else None
    inner = inner if isinstance(inner, dict) else {}
    codes = {str(found).lower() for found in (code, inner.get("code")) if found}
    if not codes & set(_CONTENT_FILTER_CODES):
        return None
    verdicts = inner.get("content_filter_result") or inner.get("content_filter_results")
    filtered = [
        printable(str(name), 40)
        for name, verdict in (verdicts.items() if isinstance(verdicts, dict) else ())
        if isinstance(verdict, dict) and verdict.get("filtered")
    ]
    found = f" ({', '.join(filtered[:10])})" if filtered else ""
    return f"Azure's content filter refused it{found}: rephrase the prompt or change the input images"


def error_from_api(
    error: Any,
    status: Optional[int],
    request_id: Optional[str],
    extra: str = "",
    hints: Optional[Mapping[int, str]] = None,
) -> ApiError:
    """An ApiError from the API's error object (or text); status is None for an error inside a 200 response."""
    import http.client

    message, code, param, err_type, detail = "", None, None, None, None
    request_id = printable(str(request_id), 200) if request_id else None
    if isinstance(error, dict):
        message = printable(str(error.get("message") or ""), 2 * SHOWN_TEXT_LIMIT)
        code, param, err_type = (
            printable(str(value), 200) if value is not None else None
            for value in (error.get("code"), error.get("param"), error.get("type"))
        )
        detail = error.get("moderation_details")
    elif error:
        message = printable(str(error), 2 * SHOWN_TEXT_LIMIT)
    hint = (hints or {}).get(status or 0) or _HINTS.get(status or 0, "")
    filtered = content_filter_hint(error, code)
    if filtered:
        hint = filtered
    elif status == 403 and "verif" in message.lower():
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
        detail = detail if isinstance(detail, dict) else {}
        stage, categories = detail.get("moderation_stage"), detail.get("categories")
        parts = [f"{stage} stage" if stage else "", ", ".join(map(str, categories)) if categories else ""]
        found = "; ".join(p for p in parts if p)
        found = f" ({found})" if found else ""
        hint = f"the safety system blocked it{found}: rephrase the prompt or change the input images"
    elif status is not None and status >= 500:
        hint = "the API had a server error; try again later"
    text = (
        "API error" if status is None else f"API error {status} {http.client.responses.get(status, 'error')}"
    )
    # Azure's code is often the status again ("401"): said once is enough.
    shown_code = str(code) if code and str(code) != str(status) else ""
    tags = [t for t in (shown_code, f"param {param}" if param else "") if t]
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


def _error_from_payload(
    error: Any, fallback: str = "the API reported an error", request_id: Optional[str] = None
) -> ApiError:
    """An ApiError from an error object that arrived inside a 200 response (a body or an event)."""
    return error_from_api(error if error else {"message": fallback}, None, request_id)


# --- Options: every option once, and the Route type --------------------------------------------------------
# A route is one subcommand: its endpoint, its own options, how it reads its inputs, builds its request and
# reads a reply. The parser, the validator and the runner iterate ROUTES (the Routes section fills it); adding
# a route is one entry in it plus the route's own section there.

Reader = Callable[[Any, Sequence[memoryview], "Collector"], None]


def _no_refusals(inputs: Any) -> Mapping[str, Tuple[str, str]]:
    return {}


def _append_to_prompt(prompt: Optional[str], inputs: Any, text: str) -> Tuple[Optional[str], Any]:
    """A sentence the tool adds to the request (the key route's): after the prompt."""
    return f"{prompt} {text}" if prompt else text, inputs


class Route(NamedTuple):
    """One subcommand: an API endpoint and everything that is particular to it."""

    name: str
    endpoint: str
    summary: str  # one line in the list of subcommands
    description: str
    examples: str
    arguments: Tuple[Union[str, Tuple[str, str]], ...]  # ARGUMENTS names, or (name, help for this route)
    read_inputs: Callable[[Settings, Optional[str], List[str]], Any]  # (settings, prompt, warnings) -> inputs
    build_request: Callable[[Job], HttpRequest]
    read_body: Reader  # a JSON reply
    read_event: Reader  # one event of a streamed reply
    needs_prompt: bool = True
    model_option: str = "model"  # the option naming the image model
    model_env: str = "OPENAI_IMAGE_MODEL"
    model_default: str = DEFAULT_IMAGE_MODEL
    text_model: bool = False  # --model names a top-level text model (responses)
    refusals: Callable[[Any], Mapping[str, Tuple[str, str]]] = _no_refusals  # options this request refuses
    batch_body: Optional[Callable[[Job], Dict[str, Any]]] = None  # the body of a Batch API input line
    add_text: Callable[[Optional[str], Any, str], Tuple[Optional[str], Any]] = (
        _append_to_prompt  # (key route)
    )

    def takes(self, name: str) -> bool:
        """True when the route has option `name` of its own."""
        return any((arg if isinstance(arg, str) else arg[0]) == name for arg in self.arguments)


class Option(NamedTuple):
    """One command-line option: its flags, its argparse keywords, and what it is to the rest of the program."""

    flags: Tuple[str, ...]
    keywords: Dict[str, Any]
    path: bool = False  # it names a file: taken as the operating system gives it (any name it can hold)
    run: bool = False  # it shapes the whole run: on the command line only, never in a line of a jobs file
    structured: bool = False  # takes a JSON object: a line of a jobs file may give the object itself

    @property
    def name(self) -> str:
        """The option's name: its argparse dest (the long flag, `-` as `_`)."""
        return self.flags[-1].lstrip("-").replace("-", "_")


def option(
    *flags: str, path: bool = False, run: bool = False, structured: bool = False, **keywords: Any
) -> Option:
    """An Option; enumerations show their values but are checked (in any case) by the validator."""
    return Option(flags, keywords, path, run, structured)


def _choices(values: Sequence[str]) -> str:
    return "{" + ",".join(values) + "}"


class _InOrder(argparse.Action):
    """A repeatable option that also records its place among the other edit inputs (in `input_order`)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Optional[str] = None) -> None:
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), values])
        namespace.input_order = [*(getattr(namespace, "input_order", None) or []), self.dest]


# The options of the routes, each defined once by its name (the argparse dest).
ARGUMENTS: Dict[str, Option] = {
    "model": option("-m", "--model", help=f"image model (env OPENAI_IMAGE_MODEL; default {DEFAULT_IMAGE_MODEL})"),
    "n": option("-n", "--n", type=int, metavar=f"{N_MIN}-{N_MAX}", help="how many images (default 1)"),
    "image": option(
        "-i", "--image", action=_InOrder, metavar="PATH", path=True,
        help=f"an input image ({format_names(lambda f: f.input)}, <= {MAX_IMAGE_BYTES // 2**20} MB); repeat for up to {MAX_IMAGES}",
    ),
    "image_url": option(
        "--image-url", action=_InOrder, metavar="URL",
        help="an input image by https or data: URL (repeatable, mixable with --image; makes the request JSON)",
    ),
    "image_file_id": option(
        "--image-file-id", action=_InOrder, metavar="ID",
        help="an input image by uploaded file id (repeatable; makes the request JSON)",
    ),
    "mask_url": option("--mask-url", metavar="URL", help="the mask by https or data: URL (makes the request JSON)"),
    "mask": option(
        "--mask", metavar="PATH", path=True, help=f"PNG with alpha, same size as the first image, < {MAX_MASK_BYTES // 2**20} MB"
    ),
    "image_field_style": option(
        "--image-field-style", metavar=_choices(FIELD_STYLES),
        help="multipart field names: auto (image, or image[] for several), simple, brackets, indexed",
    ),
    "input_fidelity": option(
        "--input-fidelity", metavar=_choices(INPUT_FIDELITIES),
        help="how closely to keep input details (not for gpt-image-2)",
    ),
    "tool_model": option(
        "--tool-model",
        help=f"the image model of the tool, always sent (env OPENAI_IMAGE_TOOL_MODEL; default {DEFAULT_TOOL_MODEL})",
    ),
    "input_text": option("--input-text", action="append", metavar="TEXT", help="a text input (repeatable)"),
    "input_image": option(
        "--input-image", action="append", metavar="PATH", path=True, help="a local image sent as a data URL (repeatable)"
    ),
    "input_image_url": option(
        "--input-image-url", action="append", metavar="URL", help="an input image by https or data: URL (repeatable)"
    ),
    "input_image_file_id": option(
        "--input-image-file-id", action="append", metavar="ID", help="an uploaded file id (repeatable)"
    ),
    "image_detail": option(
        "--image-detail", metavar=_choices(DETAILS), help="detail of the input images (default auto)"
    ),
    "mask_file_id": option("--mask-file-id", metavar="ID", help="an uploaded mask file id"),
    "mask_box": option(
        "--mask-box", action="append", metavar="X,Y,W,H",
        help="an area to change, a box: its top-left corner and size, in pixels of the first image or percentages "
        "of its width and height (e.g. 0,0,100%%,40%%); repeatable; the tool makes the mask (references/images.md)",
    ),
    "mask_ellipse": option(
        "--mask-ellipse", action="append", metavar="X,Y,W,H",
        help="an area to change, the ellipse inside the box X,Y,W,H (as --mask-box); repeatable",
    ),
    "save_mask": option(
        "--save-mask", metavar="PATH", path=True,
        help="also write the mask made from --mask-box/--mask-ellipse to PATH (.png), to look at (a dry run too)",
    ),
    "action": option(
        "--action", metavar=_choices(ACTIONS), help="generate, edit, or let the model decide (auto)"
    ),
    "tool_choice": option(
        "--tool-choice", metavar=_choices(TOOL_CHOICES),
        help="default image_generation forces the tool; auto, required or none otherwise",
    ),
    "previous_response_id": option(
        "--previous-response-id", metavar="ID", help="continue from an earlier response"
    ),
}  # fmt: skip


# The options every route shares, by group.
COMMON_ARGUMENTS: Tuple[Tuple[str, Tuple[Option, ...]], ...] = (
    ("prompt and output", (
        option(
            "-o", "--output", metavar="PATH", path=True,
            help="where to save the image (required): a path, or a pattern with {index} (1-based) and, in a batch, "
            "{job}; several images without {index} get -N before the extension; the extension sets the format",
        ),
        option("-p", "--prompt", metavar="TEXT", help=f"what to make or change (up to {MAX_PROMPT_CHARS:,} characters)"),
        option("--prompt-file", metavar="PATH", path=True, help="read the prompt from a UTF-8 file ('-' = stdin)"),
    )),
    ("image options (sent only when set; a non-png extension sets output_format; OPENAI_IMAGE_<NAME> sets "
     "defaults for size, quality, background, format, compression, moderation, user)", (
        option(
            "-s", "--size", metavar="WxH|W:H[@TIER]",
            help=f"auto or WIDTHxHEIGHT; gpt-image-2: multiples of {FLEX_STEP}, edges <= {FLEX_MAX_EDGE}, ratio <= "
            f"{FLEX_MAX_RATIO}:1, {FLEX_MIN_PIXELS:,} to {FLEX_MAX_PIXELS:,} pixels (e.g. 1024x1024, 1536x1024, "
            "3840x2160); or an aspect ratio W:H (e.g. 16:9), the valid size nearest it at a tier "
            f"@{'|'.join(ASPECT_TIERS)} (about 1 or 4 megapixels, or the largest; default @{DEFAULT_ASPECT_TIER})",
        ),
        option(
            "-q", "--quality", metavar=_choices(QUALITIES),
            help=f"{', '.join(BASE_QUALITIES)} "
            f"({', '.join(q for q in QUALITIES if q not in BASE_QUALITIES)} on gpt-image-2.5 and later)",
        ),
        option(
            "--background", metavar=_choices(BACKGROUNDS),
            help="transparent: a transparent PNG on any model (see --transparency); needs png or webp",
        ),
        option("--format", metavar=_choices(list(IMAGE_FORMATS)), help="output format; by default taken from the --output extension"),
        option(
            "--compression", type=int, metavar=f"{COMPRESSION_MIN}-{COMPRESSION_MAX}", help="jpeg/webp compression level"
        ),
        option(
            "--moderation", metavar=_choices(MODERATIONS), help="content filtering strictness (not for multipart edits)"
        ),
        option("--user", metavar="ID", help="an end-user id for abuse monitoring"),
        option(
            "--complexity", metavar=_choices(COMPLEXITIES),
            help="how much detail the model works in (gpt-image-2.6 only; the API's default is high)",
        ),
        option(
            "--extra-body", metavar="JSON", structured=True,
            help="a JSON object of fields this version does not know, added to the request body as given and "
            "unchecked, e.g. '{\"frames\": 4}'; responses: the top-level body, not the image tool's; multipart "
            "edits: text and numbers only (form fields); a field the tool sets itself is refused",
        ),
        option(
            "--transparency", metavar=_choices(TRANSPARENCY_ROUTES),
            help="how --background transparent is delivered: native (the API's own), key (made on a flat key "
            "colour that is removed here, any model, .png only), auto (native where the model has it; default)",
        ),
        option(
            "--key-color", metavar="auto|#RRGGBB",
            help="the key route's background colour (default auto: #00FF00, or #FF00FF when the prompt asks for green)",
        ),
        option("--allow-transparent", action="store_true", help="another name for --transparency native"),
        option(
            "--resize", action="append", metavar="WxH",
            help="deliver each image at exactly this size (repeat, or commas: 1024x1024,512x512; .png only); without "
            "--size the request's size is chosen so that every target is a downscale; {size} in --output names it",
        ),
        option(
            "--fit", metavar=_choices(FITS),
            help="how --resize fills its box: cover (crop the overflow, default), contain (pad with transparency), "
            "stretch",
        ),
        option(
            "--allow-retired", action="store_true",
            help="send a model that was shut down anyway (a gateway may still serve it); its old rules apply",
        ),
        option("--stream", action="store_true", help="stream the result; needed for --partial-images"),
        option(
            "--partial-images", type=int, metavar=f"{PARTIALS_MIN}-{PARTIALS_MAX}",
            help="previews to save while streaming, as <output>.partial-K.<ext>",
        ),
    )),
    ("running", (
        option("--dry-run", action="store_true", run=True, help="print the exact request as JSON and send nothing (no key needed)"),
        option("--json", action="store_true", run=True, help="print one JSON object on stdout instead of paths"),
        option("--save-response", metavar="PATH", path=True, help="save the raw response (JSON or event stream)"),
        option(
            "--metadata", action="store_true",
            help="write <image>.json beside each image: prompt, parameters, ids, usage, input hashes",
        ),
        option("--overwrite", action="store_true", help="replace output files that already exist"),
        option(
            "--quiet", action="store_true", run=True, help="no progress lines on stderr (warnings, errors and the response id stay)"
        ),
        option("--env-file", metavar="PATH", path=True, run=True, help="read configuration from this .env file"),
        option("--base-url", metavar="URL", run=True, help=f"API base URL (env OPENAI_BASE_URL; {DEFAULT_BASE_URL})"),
        option(
            "--timeout", type=float, metavar="SECONDS",
            help=f"give up after this long without data (default {DEFAULT_TIMEOUT_S:g})",
        ),
        option(
            "--deadline", type=float, metavar="SECONDS", run=True,
            help=f"give up when the whole run has taken this long, retries and a trickling reply included "
            f"(exit 5; {DEADLINE_MIN_S:g} to {DEADLINE_MAX_S:,.0f}; default none)",
        ),
        option(
            "--retries", type=int, metavar="N",
            help=f"retries on HTTP {', '.join(map(str, RETRY_STATUSES))} and connection failures "
            f"(default {DEFAULT_RETRIES}; 0 = none)",
        ),
        option(
            "--max-cost", type=float, metavar="USD", run=True,
            help="refuse, before sending, a run (or batch) whose estimated cost is over USD",
        ),
    )),
    ("many images", (
        option(
            "--batch", metavar="FILE", path=True, run=True,
            help="run every job of a JSON Lines file ('-' = stdin): a prompt, or an object of long option names "
            "(and id) a line; the command line's options are the defaults; re-running resumes",
        ),
        option(
            "--jobs", type=int, metavar=f"1-{MAX_JOBS}", run=True,
            help=f"requests in flight at once, sharing one rate limit (default {DEFAULT_JOBS})",
        ),
        option(
            "--batch-api", action="store_true", run=True,
            help="send the --batch jobs through OpenAI's Batch API: half price, within 24 h, up to "
            f"{BATCH_API_MAX_JOBS:,} jobs; the same command again resumes waiting or collects",
        ),
        option("--no-wait", action="store_true", run=True, help="with --batch-api: submit, print the batch id and exit"),
        option("--cancel", action="store_true", run=True, help="with --batch-api: cancel the batch the state file names"),
        option(
            "--contact-sheet", metavar="PATH", path=True, run=True,
            help="also write one PNG of every image the run delivers, as a grid of thumbnails in job order (with "
            "--batch or --n above 1; .png outputs)",
        ),
    )),
)  # fmt: skip

# What the option tables say of their options, for the code that asks by name (derived, never kept by hand).
_EVERY_OPTION = (*(opt for _, group in COMMON_ARGUMENTS for opt in group), *ARGUMENTS.values())
# Options that name files: the operating system takes any name it can hold, even one that is not UTF-8.
_PATH_OPTIONS = frozenset(opt.name for opt in _EVERY_OPTION if opt.path)
# Options that shape the whole run, and the subcommand: given on the command line only, never in a jobs file.
RUN_OPTIONS = frozenset(["command", *(opt.name for opt in _EVERY_OPTION if opt.run)])

# The routes by name: the Routes section below adds each one.
ROUTE_NAMES: Dict[str, Route] = {}


# --- Options to a Job --------------------------------------------------------------------------------------


class Job(NamedTuple):
    """One validated request: everything the route's builders and the runner need, nothing they must check.

    Built by validate(), or rebuilt from its state file by job_from_record() for a Batch API job to collect. A
    NamedTuple, so never changed in place: a variant is a copy made with _replace (a Batch API edits line is
    the job with its inputs in the JSON form, build_edits_batch_body).
    """

    route: Route
    model: str  # the image model (the tool's model for responses)
    rules: Optional[ModelRules]
    text_model: Optional[str]  # responses: the top-level text model
    prompt: Optional[str]
    params: Mapping[str, Any]  # image parameters with API field names, only those the user set
    n: int
    stream: bool
    partial_images: int
    output_format: str
    outputs: OutputPlan
    inputs: Any  # the route's own inputs (EditInputs, ResponseInputs, or None)
    connection: Connection
    dry_run: bool
    as_json: bool
    overwrite: bool
    quiet: bool
    save_response: Optional[str]
    metadata: bool
    warnings: Tuple[str, ...] = ()
    notes: Tuple[str, ...] = ()  # how options were read (an aspect ratio's WxH): dry run and progress
    steps: Tuple[Tuple[str, Mapping[str, Any]], ...] = ()  # the pixel steps of every final image, in order
    extra_body: Optional[Mapping[str, Any]] = None  # --extra-body: fields sent as given, unchecked

    @property
    def command(self) -> str:
        """The subcommand (the route's name)."""
        return self.route.name

    @property
    def images(self) -> Tuple[InputImage, ...]:
        """The local input images, if the route has any."""
        return tuple(getattr(self.inputs, "images", ()))

    @property
    def mask(self) -> Optional[InputImage]:
        """The local mask, if any."""
        return getattr(self.inputs, "mask", None)


class Settings:
    """Resolve each option as given > environment > .env > default, remembering where each value came from.

    `options` maps option names (argparse dests) to plain values: a command line's, or a jobs-file line's.
    """

    def __init__(self, options: Mapping[str, Any], config: Config) -> None:
        self.options = options
        self.config = config
        self.sources: Dict[str, str] = {}
        self.notes: List[str] = []  # how a value was read, e.g. which WxH an aspect ratio became
        self.transparency: Optional[Dict[str, Any]] = None  # a transparent background: its route and key
        self.resize: Optional[Dict[str, Any]] = None  # --resize: the target sizes and the fit
        self.warnings: List[str] = []  # what the checks found worth a warning

    @staticmethod
    def label(name: str) -> str:
        """The option as typed on a command line."""
        return "--" + name.replace("_", "-")

    def given(self, name: str) -> Any:
        """The value given for option `name` (None when unset or empty)."""
        value = self.options.get(name)
        return None if value is None or value == "" else value

    def many(self, name: str) -> List[str]:
        """A repeatable option's values (a single string counts as one)."""
        value = self.given(name)
        if value is None:
            return []
        return [value] if isinstance(value, str) else [str(v) for v in value]

    def pick(self, name: str, env_key: Optional[str] = None, default: Any = None) -> Any:
        """Return the value of option `name` by precedence, recording its source; the configured default is
        under env_key, else under the option's key in OPTION_ENV."""
        value = self.given(name)
        if value is not None:
            self.sources[name] = self.label(name)
            return value
        env_key = env_key or OPTION_ENV.get(name)
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

    def refuse(self, name: str, message: str, hint: str = "") -> None:
        """An option that does not apply to this request: refused when given, dropped when it is a configured
        default (OPENAI_IMAGE_* is a default for every request, not a demand on this one)."""
        if not self.is_configured(name):
            raise UsageError(message, hint=hint)

    def number(self, name: str, default: Any, kind: Callable[[str], Any], low: float, high: float) -> Any:
        """Pick a numeric option and check its range."""
        raw = self.pick(name, None, default)
        if raw is None:
            return None
        label = self.label(name)
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = kind(raw.strip()) if isinstance(raw, str) else kind(raw)
        except (ValueError, TypeError, OverflowError):
            raise self.error(name, f"{label} must be a number, not {printable(str(raw), 40)!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(name, f"{label} must be a finite number")
        if not low <= value <= high:
            raise self.error(
                name, f"{label} must be between {low:g} and {high:g}, not {printable(str(raw), 40)}"
            )
        return value

    def choice(self, name: str, choices: Sequence[str]) -> Optional[str]:
        """Pick an option that must be one of choices, in any case (sent in lower case)."""
        raw = self.pick(name)
        if raw is None:
            return None
        value = str(raw).strip().lower()
        if value not in choices:
            message = f"{self.label(name)} {printable(str(raw), 40)!r} is not one of {', '.join(choices)}"
            raise self.error(name, message, hint="any case will do; see --help for what each means")
        return value

    def flag(self, name: str) -> bool:
        """A true/false option."""
        value = self.options.get(name)
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)


def read_prompt(options: Mapping[str, Any]) -> Optional[str]:
    """The prompt from --prompt or --prompt-file (UTF-8; '-' reads standard input)."""
    prompt, prompt_file = options.get("prompt"), options.get("prompt_file")
    if prompt is not None and prompt_file is not None:
        raise UsageError("give --prompt or --prompt-file, not both")
    if prompt_file is None:
        return prompt
    # A prompt can never use more than MAX_PROMPT_CHARS characters of 4 bytes: read no more than that.
    limit = MAX_PROMPT_CHARS * 4 + 4
    try:
        if prompt_file == "-":
            stdin = getattr(sys.stdin, "buffer", None)
            data = stdin.read(limit + 1) if stdin is not None else sys.stdin.read(limit + 1).encode()
        else:
            with open(prompt_file, "rb") as handle:
                data = handle.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"--prompt-file {prompt_file}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise UsageError(
            f"--prompt-file {prompt_file}: over {limit:,} bytes; "
            f"the limit is {MAX_PROMPT_CHARS:,} characters",
            hint="shorten it",
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"--prompt-file {prompt_file}: not valid UTF-8", hint="save it as UTF-8") from None
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
            f"the prompt is {len(prompt):,} characters; the limit is {MAX_PROMPT_CHARS:,}", hint="shorten it"
        )
    return prompt


def plan_output(output: str, settings: Settings) -> Tuple[str, str]:
    """Return (output pattern, format): the format from the extension, --format, OPENAI_IMAGE_FORMAT or png."""
    raw_format = settings.pick("format")
    given = None
    if raw_format is not None:
        found = image_format(str(raw_format))
        if found is None:
            message = f"--format {printable(str(raw_format), 40)!r} is not one of {', '.join(IMAGE_FORMATS)}"
            raise settings.error("format", message)
        given = found.name
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
        return output + IMAGE_FORMATS[fmt].extensions[0], fmt
    found = format_for_extension(ext)
    if found is None:
        extensions = ", ".join(e for f in IMAGE_FORMATS.values() for e in f.extensions)
        raise UsageError(f"--output {output}: unknown extension {ext}", hint=f"end it in {extensions}")
    by_extension = found.name
    if given and given != by_extension and not settings.is_configured("format"):
        raise UsageError(
            f"--format {given} disagrees with the output extension {ext}",
            hint=f"drop --format, or name the output {root}{IMAGE_FORMATS[given].extensions[0]}",
        )
    # A configured OPENAI_IMAGE_FORMAT is a default only; the extension the user typed wins over it.
    settings.sources["format"] = "--output extension"
    return output, by_extension


def check_base_url(raw: str, settings: Settings, warnings: Optional[List[str]] = None) -> str:
    """Check the base URL is http(s) with a host; strip a trailing slash and any user name and password.

    Credentials in the URL (http://user:pass@host) are registered as secrets, so they are never shown, and
    are not sent: the Authorization header carries the API key, and urllib would take `user:pass@host` for
    the host name.
    """
    url = raw.strip().rstrip("/")
    parts = urllib.parse.urlsplit(url)
    for secret in (parts.username, parts.password):  # None when absent, which register_secret() passes over
        register_secret(urllib.parse.unquote(secret or ""))
        register_secret(secret)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        message = f"base URL {printable(raw, 200)!r} is not an http(s) URL"
        raise settings.error("base_url", message, hint="for example https://api.openai.com/v1")
    if "@" in parts.netloc:
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        if warnings is not None:
            warnings.append(
                "the user name and password in the base URL are not sent (requests carry the API key only)"
            )
    return url


_HEADER_SAFE_RE = re.compile(r"[\x21-\x7e]+\Z")


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1), not for names that merely start so."""
    import ipaddress

    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def recover_text(value: Any) -> Any:
    """Option text as the user typed it: argv bytes that the locale could not decode (under LC_ALL=C, say)
    arrive as lone surrogates, and are decoded again as UTF-8 when they are UTF-8."""
    if isinstance(value, list):
        return [recover_text(item) for item in value]
    if not isinstance(value, str):
        return value
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    try:
        return os.fsencode(value).decode("utf-8")
    except (UnicodeError, ValueError):
        return value


def check_text_options(options: Mapping[str, Any]) -> Dict[str, Any]:
    """Options with their text recovered as UTF-8; refuse text that cannot be sent as UTF-8."""
    checked: Dict[str, Any] = {}
    for name, value in options.items():
        if name in _PATH_OPTIONS:
            checked[name] = value
            continue
        checked[name] = value = recover_text(value)
        if name == "prompt":  # the prompt has its own check, with its own message
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise UsageError(
                        f"{Settings.label(name)} is not valid UTF-8 text", hint="pass it as UTF-8"
                    ) from None
    return checked


def validate(options: Mapping[str, Any], config: Config, resume: bool = False) -> Job:
    """Check everything that can be checked locally and return the Job; raise UsageError/ConfigError if not.

    Runs once, before anything is sent, for every route and for every line of a jobs file alike: nothing is
    sent (and nothing paid for) when the request cannot succeed. `options` maps option names to plain values,
    with `command` naming the route. With `resume` (a batch), outputs that exist already are allowed: the
    batch skips a job whose images are all there.
    """
    route = ROUTE_NAMES[options["command"]]
    options = check_text_options(options)
    settings = Settings(options, config)
    warnings: List[str] = []
    connection = check_connection(settings, config, warnings)
    model, rules, text_model = check_model(settings, route, warnings, connection.provider)
    prompt = check_prompt(read_prompt(options), required=route.needs_prompt)
    output, output_format = plan_output(str(options.get("output") or ""), settings)
    if "{size}" in output and not settings.given("resize"):
        raise UsageError(
            "--output has {size} but no --resize names a size", hint="add --resize WxH, or drop {size}"
        )
    inputs = route.read_inputs(settings, prompt, warnings)
    params, n, stream, partial_images = check_image_params(
        settings, route, inputs, model, rules, output_format, connection.provider
    )
    extra_body = check_extra_body(settings, route, inputs)
    if settings.flag("batch_api") and rules is not None and not rules.batch_api:
        warnings.append(
            f"the Batch API is reported not to take {model} yet (a third-party report); the batch is submitted "
            "anyway, and a line it refuses fails its job with the API's reason"
        )
    if settings.transparency is not None and settings.transparency["route"] == "key":
        prompt, inputs = add_key_sentence(route, prompt, inputs, settings.transparency)
    steps = plan_steps(settings, output_format)
    job = Job(
        route=route,
        model=model,
        rules=rules,
        text_model=text_model,
        prompt=prompt,
        params=params,
        n=n,
        stream=stream,
        partial_images=partial_images,
        output_format=output_format,
        outputs=OutputPlan(output, n, tuple(settings.resize["sizes"]) if settings.resize else ()),
        inputs=inputs,
        connection=connection,
        dry_run=settings.flag("dry_run"),
        as_json=settings.flag("json"),
        overwrite=settings.flag("overwrite"),
        quiet=settings.flag("quiet"),
        save_response=options.get("save_response") or None,
        metadata=settings.flag("metadata"),
        warnings=tuple(warnings + settings.warnings),
        notes=tuple(settings.notes),
        steps=steps,
        extra_body=extra_body or None,
    )
    check_outputs(job, resume)
    return job


class Step(NamedTuple):
    """One pixel step: which jobs take it, and what it does to each final image between its arrival and its
    commit. STEPS lists them in the order they run; a job's steps are planned once, by validate()."""

    name: str
    plan: Callable[[Settings, str], Optional[Dict[str, Any]]]  # (settings, format) -> its settings, or None
    # (the image, its settings) -> the image (or one image per name, a fan-out), and what the step found
    run: Callable[[Picture, Mapping[str, Any]], Tuple[Union[Picture, Dict[str, Picture]], Mapping[str, Any]]]
    formats: Tuple[str, ...] = ("png",)  # the output formats it works on (the standard library decodes PNG)


def run_transparency(image: Picture, options: Mapping[str, Any]) -> Tuple[Picture, Mapping[str, Any]]:
    """The transparency step: the key route removes its key colour; both routes verify the result."""
    route, key = options["route"], options.get("key")
    if sniff_format(image.data()[:16]) != "png":  # a native WEBP: the standard library cannot decode it
        info = read_image_info(image.data()[:65536])
        problems = [] if info is not None and info.has_alpha else ["no alpha: the WEBP has no alpha channel"]
        facts: Dict[str, Any] = {"route": route, "key": None, "transparent": None, "partial": None}
        facts.update(
            verified=not problems, problems=problems, note="WEBP is not decoded: its alpha flag only"
        )
    else:
        pixels = image.pixels()
        measured: Optional[Tuple[int, int, int]] = None
        if route == "key":
            pixels, measured = remove_key(pixels, parse_color(str(key)))
            image = Picture(pixels=pixels)
        problems, stats = inspect_transparency(pixels, measured, route)
        facts = {"route": route, "key": key, "transparent": round(stats.transparent, 4)}
        facts.update(partial=round(stats.partial, 4), verified=not problems, problems=problems)
    if problems:
        raise StepFailed(
            f"the transparent image failed its check ({'; '.join(problems)})",
            hint="run again; or try another --key-color, a simpler background in the prompt, or --transparency "
            "native on a model that has it (references/images.md)",
            output=image.data() if route == "key" else None,
        )
    return image, facts


def run_resize(image: Picture, options: Mapping[str, Any]) -> Tuple[Dict[str, Picture], Mapping[str, Any]]:
    """The resize step: the image at each target size (one file each), by the fit asked for."""
    source = image.pixels()
    sized = {}
    for size in options["sizes"]:
        width, height = (int(v) for v in size.split("x"))
        sized[size] = Picture(pixels=resize(source, width, height, options["fit"]))
    return sized, {"from": f"{source.width}x{source.height}", "fit": options["fit"]}


# The pixel steps, in the order they run (design.md: transparency, then resize, then the contact sheet).
STEPS: Tuple[Step, ...] = (
    Step("transparency", lambda settings, fmt: settings.transparency, run_transparency, ("png", "webp")),
    Step("resize", lambda settings, fmt: settings.resize, run_resize),
)


def step_named(name: str) -> Step:
    """The step of STEPS called name (a state file names the steps of the jobs it submitted)."""
    found = next((step for step in STEPS if step.name == name), None)
    if found is None:
        raise UsageError(f"no pixel step is called {printable(name, 40)!r} in this version")
    return found


def plan_steps(settings: Settings, output_format: str) -> Tuple[Tuple[str, Mapping[str, Any]], ...]:
    """The pixel steps a job takes, in STEPS order, each with its settings; refused where the format is not
    one a step works on (before anything is sent)."""
    planned = []
    for step in STEPS:
        chosen = step.plan(settings, output_format)
        if chosen is None:
            continue
        if output_format not in step.formats:
            exts = " or ".join(IMAGE_FORMATS[f].extensions[0] for f in step.formats if f in IMAGE_FORMATS)
            raise UsageError(
                f"the {step.name} step works on {' or '.join(f.upper() for f in step.formats)} images, not "
                f"{output_format.upper()}: this program decodes and encodes pixels with the standard library "
                f"alone, which cannot do {output_format.upper()}; a {output_format.upper()} output is saved as "
                "the API made it",
                hint=f"name the output {exts}, or drop the option that asks for the {step.name} step",
            )
        planned.append((step.name, chosen))
    return tuple(planned)


def describe_steps(job: Job) -> List[Dict[str, Any]]:
    """A job's pixel steps as dry runs, --json, --metadata and Batch API state files show them."""
    return [{"step": name, **settings} for name, settings in job.steps]


def steps_from_description(described: Any) -> Tuple[Tuple[str, Mapping[str, Any]], ...]:
    """The steps describe_steps() wrote (a state file's), each a step of this version."""
    if not isinstance(described, list) or not all(isinstance(d, dict) and "step" in d for d in described):
        raise ValueError("not a list of steps")
    return tuple(
        (step_named(str(d["step"])).name, {k: v for k, v in d.items() if k != "step"}) for d in described
    )


def check_run(options: Mapping[str, Any]) -> None:
    """The checks on the shape of a whole run (which options go together), in one place, called once by the
    CLI before the configuration is read. What each job asks is validate()'s."""
    batch, batch_api = options.get("batch"), options.get("batch_api")
    if (batch_api or options.get("no_wait") or options.get("cancel")) and batch is None:
        raise UsageError("--batch-api, --no-wait and --cancel go with --batch FILE")
    if (options.get("no_wait") or options.get("cancel")) and not batch_api:
        raise UsageError("--no-wait and --cancel go with --batch-api")
    if options.get("output") is None and batch is None:
        raise UsageError(
            "the following arguments are required: -o/--output",
            hint=f"see '{PROG} {options.get('command')} --help'",
        )
    if batch == "-" and options.get("prompt_file") == "-":
        raise UsageError("--batch - and --prompt-file - both read standard input", hint="give one a file")
    sheet = options.get("contact_sheet")
    if sheet is not None and os.path.splitext(str(sheet))[1].lower() != ".png":
        raise UsageError(f"--contact-sheet {sheet}: a contact sheet is a .png", hint="name it sheet.png, say")
    if not batch_api:
        return
    if batch == "-":
        raise UsageError("--batch-api needs a jobs file, not standard input (its state is kept beside it)")
    for name in ("save_response", "metadata"):
        if options.get(name):
            raise UsageError(
                f"--{name.replace('_', '-')} does not go with --batch-api (a batch has no response of its own per job)"
            )


def check_batch_api_job(job: Job) -> None:
    """What the Batch API cannot take from one job: a stream, a route without batch lines, a local image too
    large for the data URL of a JSON line."""
    if job.stream:
        raise UsageError("the Batch API does not stream", hint="drop --stream and --partial-images")
    if job.route.batch_body is None:
        raise UsageError(f"{job.command} cannot go through the Batch API")
    for image in job.images + ((job.mask,) if job.mask else ()):
        if 4 * -(-image.size // 3) + 32 > MAX_IMAGE_URL_CHARS:
            raise UsageError(
                f"{image.path}: {image.size:,} bytes is too large for a data URL in a batch line",
                hint="upload it and use --image-file-id, or run this job without --batch-api",
            )


def check_model(
    settings: Settings, route: Route, warnings: List[str], provider: Provider
) -> Tuple[str, Optional[ModelRules], Optional[str]]:
    """The image model, its rules, and (responses) the top-level text model.

    Where model names are deployments (Azure), a deployment named after a known model gets its rules; one
    named otherwise gets the rules of the model the provider's served_model_key names, else none.
    """
    text_model = None
    if route.text_model:
        text_model = str(settings.pick("model", "OPENAI_RESPONSES_MODEL", DEFAULT_RESPONSES_MODEL)).strip()
        bare = text_model.rsplit("/", 1)[-1].lower()
        if bare.startswith(("gpt-image", "chatgpt-image", "dall-e")):
            raise settings.error(
                "model",
                f"--model {text_model} is an image model; the Responses API needs a text model here",
                hint=f"use --model {DEFAULT_RESPONSES_MODEL} and put the image model in --tool-model",
            )
        check_text_model(settings, text_model, warnings)
    model = str(settings.pick(route.model_option, route.model_env, route.model_default)).strip()
    if not model:
        raise settings.error(route.model_option, "the image model name is empty")
    served_key = provider.served_model_key
    for name in (model, text_model) if served_key else ():
        # A deployment travels in a URL path or a header: no spaces, line breaks or non-ASCII characters.
        if name is not None and not _HEADER_SAFE_RE.match(name):
            raise settings.error(
                route.model_option if name == model else "model",
                f"{printable(name, 80)!r} is not a deployment name (no spaces or non-ASCII characters)",
                hint=f"on {provider.name}, --model and --tool-model name deployments: give one as it was created",
            )
    rules = rules_for(model)
    served = settings.config.get(served_key) if served_key and rules is None else None
    if served:
        rules = rules_for(served[0])
    if rules is None and served_key:
        said = (
            f"{served_key} names {printable(served[0], 80)}, which the model table does not know (from {served[1]})"
            if served
            else f"set {served_key} to the model it serves to get that model's checks"
        )
        warnings.append(f"deployment {model}: its model is unknown, so only the generic checks apply; {said}")
        return model, rules, text_model
    if rules is None:
        warnings.append(f"unknown model {model}: only the generic checks apply")
        return model, rules, text_model
    state, message = model_lifecycle(model, rules, today())
    if state == "retired":
        if not settings.flag("allow_retired"):
            label = Settings.label(route.model_option)
            raise settings.error(
                route.model_option,
                message,
                hint=f"use {label} {rules.replacement}; if a gateway still serves {model}, add --allow-retired",
            )
        warnings.append(f"{message}; sent anyway (--allow-retired), checked by that model's own rules")
    elif state == "retiring":
        warnings.append(message)
    if rules.notice:
        warnings.append(rules.notice)
    return model, rules, text_model


def text_rules_for(model: str) -> Optional[TextModel]:
    """Look a text model up in TEXT_MODELS, as rules_for() looks an image model up in MODELS."""
    name = model.rsplit("/", 1)[-1].strip().lower()
    return TEXT_MODELS.get(name) or TEXT_MODELS.get(re.sub(r"-\d{4}-\d{2}-\d{2}\Z", "", name))


def check_text_model(settings: Settings, model: str, warnings: List[str]) -> None:
    """The Responses text model's lifecycle, by the image models' rules: refused from its shutdown date (unless
    --allow-retired), a warning within LIFECYCLE_WARN_DAYS of it. A model not in TEXT_MODELS is not judged."""
    rules = text_rules_for(model)
    if rules is None:
        return
    state, message = model_lifecycle(model, rules, today())
    if state == "retired":
        if not settings.flag("allow_retired"):
            raise settings.error(
                "model",
                message,
                hint=f"use --model {rules.replacement}; if a gateway still serves {model}, add --allow-retired",
            )
        warnings.append(f"{message}; sent anyway (--allow-retired)")
    elif state == "retiring":
        warnings.append(message)


def today() -> datetime.date:
    """The local date, which model shutdown dates are compared with (tests replace this function)."""
    return datetime.date.today()


def model_lifecycle(model: str, rules: Union[ModelRules, TextModel], on: datetime.date) -> Tuple[str, str]:
    """Where a model stands on day `on`: ("live", ""), ("retiring", warning) within LIFECYCLE_WARN_DAYS of its
    shutdown date, or ("retired", why it is refused) on and after that date."""
    if not rules.shutdown:
        return "live", ""
    shutdown = datetime.date.fromisoformat(rules.shutdown)
    days = (shutdown - on).days
    if days <= 0:
        return "retired", f"{model} was shut down on {rules.shutdown}; the API no longer serves it"
    if days <= LIFECYCLE_WARN_DAYS:
        when = "tomorrow" if days == 1 else f"in {days} days"
        return "retiring", f"{model} shuts down on {rules.shutdown} ({when}); move to {rules.replacement}"
    return "live", ""


def suggest_model(fits: Callable[[ModelRules], bool], on: datetime.date) -> str:
    """The first model of the table, in its order of preference, that fits and is not shut down on `on`."""
    for name, rules in MODELS.items():
        if fits(rules) and model_lifecycle(name, rules, on)[0] != "retired":
            return name
    return DEFAULT_IMAGE_MODEL


def check_image_params(
    settings: Settings,
    route: Route,
    inputs: Any,
    model: str,
    rules: Optional[ModelRules],
    output_format: str,
    provider: Provider,
) -> Tuple[Dict[str, Any], int, bool, int]:
    """The image parameters to send, with API field names, and n, stream and partial_images."""
    params: Dict[str, Any] = {}
    settings.resize = check_resize(settings)
    size = settings.pick("size")
    if size is None and settings.resize is not None:
        size, note = size_for_targets(settings.resize["sizes"], model, rules)
        settings.notes.append(note)
    if size is not None:
        size = str(size).strip()
        try:
            resolved = resolve_aspect(size, model, rules)
        except UsageError as exc:
            raise settings.error("size", exc.message, hint=exc.hint) from None
        if resolved is not None:
            size, note = resolved
            settings.notes.append(note)
        problem = size_error(size, model, rules)
        if problem:
            raise settings.error("size", problem[0], hint=problem[1])
        params["size"] = size
        check_size_doubts(settings, size, inputs)
        if settings.resize is not None and size != "auto":
            asked = _edges(size)
            larger = [t for t in settings.resize["sizes"] if any(a > b for a, b in zip(_edges(t), asked))]
            if larger:
                settings.warnings.append(
                    f"--resize {', '.join(larger)}: larger than the {size} image asked for, so upscaled"
                )

    quality = settings.choice("quality", QUALITIES)
    if quality is not None:
        allowed = rules.qualities if rules else QUALITIES
        if quality not in allowed:
            raise settings.error(
                "quality",
                f"{model} does not accept --quality {quality}",
                hint=f"use one of {', '.join(allowed)}" if allowed else "drop --quality",
            )
        params["quality"] = quality

    complexity = settings.choice("complexity", COMPLEXITIES)
    if complexity is not None:
        if rules and not rules.complexity:
            takers = [name for name, r in MODELS.items() if r.complexity]
            raise settings.error(
                "complexity",
                f"{model} does not take --complexity (only {', '.join(takers)} do)",
                hint=f"drop --complexity, or use {Settings.label(route.model_option)} "
                f"{suggest_model(lambda r: r.complexity, today())}",
            )
        params["complexity"] = complexity

    background = settings.choice("background", BACKGROUNDS)
    if background is not None:
        if background == "transparent":
            if not IMAGE_FORMATS[output_format].alpha:
                alpha = [f for f in IMAGE_FORMATS.values() if f.alpha]
                raise settings.error(
                    "background",
                    f"a transparent background needs {format_names(lambda f: f.alpha).lower()}, not {output_format}",
                    hint="name the output " + " or ".join(f.extensions[0] for f in alpha),
                )
            settings.transparency = check_transparency(settings, model, rules, output_format)
            if settings.transparency["route"] == "key":
                background = None  # the key route asks for a flat key colour instead (see the prompt)
                params["output_format"] = "png"
        if background is not None:
            params["background"] = background
    if settings.transparency is None:
        for name in ("transparency", "key_color", "allow_transparent"):
            if settings.given(name):
                settings.refuse(
                    name,
                    f"{Settings.label(name)} goes with --background transparent",
                    hint="add it, or drop this",
                )
    if provider.formats is not None and output_format not in provider.formats:
        made = [f for f in IMAGE_FORMATS.values() if f.name in provider.formats]
        raise settings.error(
            "format",
            f"{provider.name} does not make {output_format} images (only {', '.join(f.name for f in made)})",
            hint="name the output " + " or ".join(f.extensions[0] for f in made),
        )
    # The extension (or --format) decides the file's format; png is the API's own default, so it is sent
    # only when asked for by --format, keeping the body to what the user set.
    if settings.given("format") or output_format != "png":
        params["output_format"] = output_format

    compression = settings.number("compression", None, int, COMPRESSION_MIN, COMPRESSION_MAX)
    if compression is not None:
        if IMAGE_FORMATS[output_format].compression:
            params["output_compression"] = compression
        else:
            settings.refuse(
                "compression",
                f"--compression applies to {format_names(lambda f: f.compression, ' and ').lower()} only, "
                f"not {output_format}",
                hint="drop --compression, or name the output "
                + " or ".join(f.extensions[0] for f in IMAGE_FORMATS.values() if f.compression),
            )

    refused = route.refusals(inputs)
    moderation = settings.choice("moderation", MODERATIONS)
    if moderation is not None:
        if "moderation" in refused:
            settings.refuse("moderation", *refused["moderation"])
        else:
            params["moderation"] = moderation

    if route.takes("input_fidelity"):
        fidelity = settings.choice("input_fidelity", INPUT_FIDELITIES)
        if fidelity is not None:
            if rules and not rules.input_fidelity:
                settings.refuse(
                    "input_fidelity",
                    f"{model} does not accept --input-fidelity",
                    hint="drop --input-fidelity; the model keeps inputs at high fidelity itself",
                )
            else:
                params["input_fidelity"] = fidelity

    user = settings.pick("user")
    if user is not None:
        params["user"] = str(user)

    n = 1
    if route.takes("n"):
        n = settings.number("n", 1, int, N_MIN, N_MAX)
        if settings.given("n") is not None:
            params["n"] = n

    stream = settings.flag("stream")
    partial_images = 0
    if settings.given("partial_images") is not None:
        if not stream:
            raise UsageError("--partial-images needs --stream", hint="add --stream")
        partial_images = settings.number("partial_images", 0, int, PARTIALS_MIN, PARTIALS_MAX)
        params["partial_images"] = partial_images
    if stream and n > 1:
        raise UsageError(
            "--stream works with one image per request (--n 1)", hint="drop --stream, or run once per image"
        )
    check_output_format(settings, route, model, rules, output_format, n, stream)
    return params, n, stream, partial_images


def model_makes(rules: Optional[ModelRules], fmt: str) -> bool:
    """True when a model makes output format fmt. A format some model lists as its own (ModelRules.formats)
    is made only by the models that list it; every other format by every model; an unknown model may make any."""
    if rules is None or fmt in rules.formats:
        return True
    return not any(fmt in other.formats for other in MODELS.values())


def check_output_format(
    settings: Settings,
    route: Route,
    model: str,
    rules: Optional[ModelRules],
    fmt: str,
    n: int,
    stream: bool,
) -> None:
    """What the model table and the format table allow of the output format: a format only some models make,
    one made by some routes only, one image a request, or not streamed (all refused before sending)."""
    found = IMAGE_FORMATS[fmt]
    instead = f"name the output {IMAGE_FORMATS['png'].extensions[0]}"  # the API's default, made everywhere
    if not model_makes(rules, fmt):
        makers = [name for name, r in MODELS.items() if fmt in r.formats]
        raise settings.error(
            "format",
            f"{model} does not make {fmt} images (only {', '.join(makers)} do)",
            hint=f"use {Settings.label(route.model_option)} {suggest_model(lambda r: fmt in r.formats, today())}, "
            f"or {instead}",
        )
    if found.routes and route.name not in found.routes:
        raise settings.error(
            "format",
            f"{fmt} images are made by {' and '.join(found.routes)} only, not by {route.name}",
            hint=f"run '{PROG} {found.routes[0]}', or {instead}",
        )
    if found.single and n > 1:
        raise UsageError(
            f"a {fmt} output is one image a request, not --n {n}",
            hint="drop --n and run once per image (a jobs file with --batch runs many)",
        )
    if stream and not found.streams:
        raise UsageError(f"a {fmt} output cannot be streamed", hint="drop --stream and --partial-images")


def check_size_doubts(settings: Settings, size: str, inputs: Any) -> None:
    """What the spec leaves open about a valid size, said before sending (dry runs too): a custom size in a
    JSON edit, whose schema lists only JSON_EDIT_SIZES (which the API enforces is unconfirmed), and a size the
    spec calls experimental."""
    if getattr(inputs, "json_form", False) and size not in JSON_EDIT_SIZES:
        after = (
            "a Batch API line it refuses fails only after the batch is submitted"
            if settings.flag("batch_api")
            else "local files alone go as multipart, which takes any valid size"
        )
        settings.warnings.append(
            f"--size {size} on a JSON edit: the spec's JSON edits schema lists only {', '.join(JSON_EDIT_SIZES)}, "
            f"and whether the API takes other sizes there is unconfirmed; {after}"
        )
    match = _SIZE_RE.match(size)
    if match and int(match.group(1)) * int(match.group(2)) > EXPERIMENTAL_PIXELS:
        settings.notes.append(f"--size {size} is above 2560x1440, which the API calls experimental")


# Body fields this tool sets itself, each with the way to set it instead: --extra-body may not set them (its
# value would bypass the checks, or fight the one the tool sends). A multipart name such as image[] counts as
# its base name.
OWNED_FIELDS: Dict[str, str] = {
    "model": "use --model (responses: --model for the text model, --tool-model for the image model)",
    "prompt": "use --prompt or --prompt-file",
    "input": "use --input-text and --input-image",
    "n": "use --n",
    "size": "use --size",
    "quality": "use --quality",
    "background": "use --background",
    "output_format": "use --format, or the --output extension",
    "output_compression": "use --compression",
    "moderation": "use --moderation",
    "stream": "use --stream",
    "partial_images": "use --partial-images",
    "input_fidelity": "use --input-fidelity",
    "user": "use --user",
    "safety_identifier": "use --user (responses send it as safety_identifier)",
    "complexity": "use --complexity",
    "image": "use --image, --image-url or --image-file-id",
    "images": "use --image, --image-url or --image-file-id",
    "mask": "use --mask, --mask-url or --mask-file-id",
    "tools": "use --tool-model and the image options (they go into the image tool)",
    "tool_choice": "use --tool-choice",
    "previous_response_id": "use --previous-response-id",
    "response_format": "drop it: GPT image models always answer with base64 image data, the only kind saved",
}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def check_extra_body(settings: Settings, route: Route, inputs: Any) -> Dict[str, Any]:
    """--extra-body (or a jobs-file line's extra_body): a JSON object of fields added to the body as given.

    Refused: text that is not a JSON object, a field the tool sets itself (OWNED_FIELDS says what to use
    instead), a number JSON cannot carry, text that is not UTF-8, and on multipart edits a value that is not
    text or a number (a form field holds text). Nothing else is checked: that is what the option is for.
    """
    raw = settings.given("extra_body")
    if raw is None:
        return {}
    example = "e.g. --extra-body '{\"frames\": 4}'"
    if isinstance(raw, str):
        try:
            raw = json.loads(raw, parse_constant=_refuse_constant)
        except RecursionError:
            raise UsageError("--extra-body nests too deeply to read", hint="flatten it") from None
        except ValueError as exc:
            reason = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise UsageError(
                f"--extra-body is not valid JSON ({reason})", hint=f"give a JSON object, {example}"
            ) from None
    if not isinstance(raw, dict):
        kind = {list: "a list", str: "a string", bool: "true or false"}.get(type(raw), "a number or null")
        raise UsageError(f"--extra-body must be a JSON object of fields, not {kind}", hint=example)
    if not raw:
        return {}
    try:
        json.dumps(raw, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except RecursionError:  # a jobs-file line's object, read by the line's own parser
        raise UsageError("--extra-body nests too deeply to send", hint="flatten it") from None
    except ValueError:  # 1e999 reads as infinity; a JSON escape can make a lone surrogate
        raise UsageError(
            "--extra-body holds a number too large for JSON or text that is not UTF-8", hint="fix that value"
        ) from None
    multipart = route.takes("image") and not getattr(inputs, "json_form", True)
    for key, value in raw.items():
        owned = OWNED_FIELDS.get(key.split("[", 1)[0])
        if owned:
            raise UsageError(
                f"--extra-body sets {printable(key, 60)!r}, which this tool sends itself", hint=owned
            )
        if multipart and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
            raise UsageError(
                f"--extra-body {printable(key, 60)!r}: a multipart edit sends fields as text, so it takes text "
                f"and numbers only, not {printable(json.dumps(value), 40)}",
                hint="give it as a string, or make the edit JSON (an --image-url or --image-file-id input)",
            )
    settings.notes.append(f"--extra-body: {', '.join(raw)} sent as given, unchecked")
    return raw


_TARGET_RE = re.compile(r"([0-9]{1,5})x([0-9]{1,5})\Z", re.ASCII)


def _edges(size: str) -> Tuple[int, int]:
    width, height = size.split("x")
    return int(width), int(height)


def check_resize(settings: Settings) -> Optional[Dict[str, Any]]:
    """--resize WxH (repeated, or with commas) and --fit: the exact sizes to deliver, each a file."""
    targets: List[str] = []
    for given in settings.many("resize"):
        for part in given.split(","):
            target = part.strip()
            match = _TARGET_RE.match(target)
            if not match:
                raise settings.error(
                    "resize",
                    f"--resize {printable(target, 40)!r} is not WIDTHxHEIGHT",
                    hint="for example --resize 1200x630, or several: --resize 1024x1024,512x512",
                )
            width, height = int(match.group(1)), int(match.group(2))
            if not (1 <= width <= MAX_TARGET_EDGE and 1 <= height <= MAX_TARGET_EDGE):
                raise settings.error(
                    "resize", f"--resize {target}: each side must be 1 to {MAX_TARGET_EDGE:,} pixels"
                )
            if width * height > MAX_TARGET_PIXELS:
                raise settings.error(
                    "resize",
                    f"--resize {target}: at most {MAX_TARGET_PIXELS:,} pixels (twice a 3840x2160 image)",
                )
            if target not in targets:
                targets.append(target)
    if len(targets) > MAX_TARGETS:
        raise settings.error("resize", f"--resize names {len(targets)} sizes; at most {MAX_TARGETS} a run")
    fit = settings.choice("fit", FITS)
    if not targets:
        if fit is not None:
            settings.refuse("fit", "--fit goes with --resize", hint="add --resize WxH, or drop --fit")
        return None
    return {"sizes": targets, "fit": fit or "cover"}


def size_for_targets(targets: Sequence[str], model: str, rules: Optional[ModelRules]) -> Tuple[str, str]:
    """The request size for --resize without --size: the model's valid size nearest the largest target's
    aspect ratio that is at least as large in both edges (so every target is a downscale), the smallest
    such; else the largest at that ratio (then some target is upscaled, with a warning)."""
    width, height = max((_edges(t) for t in targets), key=lambda e: (e[0] * e[1], e))
    ratio = min(max(width / height, 1 / FLEX_MAX_RATIO), FLEX_MAX_RATIO)  # a banner beyond 3:1 is cropped
    if rules is not None and not rules.flexible_sizes:
        chosen = fixed_size_for_aspect(ratio, DEFAULT_ASPECT_TIER, rules.sizes)
    else:
        candidates = set()
        for edge in range(FLEX_STEP, FLEX_MAX_EDGE + 1, FLEX_STEP):
            for other in (math.floor(edge / ratio / FLEX_STEP), math.ceil(edge / ratio / FLEX_STEP)):
                candidates.add((edge, other * FLEX_STEP))
        valid = [c for c in candidates if c[1] and flexible_size_problem(*c) is None]

        def off(size: Tuple[int, int]) -> float:
            return round(abs(math.log(size[0] / size[1] / ratio)), 2)  # 1% steps: near enough is the ratio

        best = min(off(c) for c in valid)
        close = [c for c in valid if off(c) == best]
        covering = [c for c in close if c[0] >= width and c[1] >= height]
        w, h = min(covering, key=lambda c: c[0] * c[1]) if covering else max(close, key=lambda c: c[0] * c[1])
        chosen = f"{w}x{h}"
    covers = all(a >= b for a, b in zip(_edges(chosen), (width, height)))
    return chosen, (
        f"--resize {', '.join(targets)}: the request asks for {chosen}, nearest the ratio of {width}x{height}"
        + (" and large enough to shrink to every target" if covers else "")
    )


def add_key_sentence(
    route: Route, prompt: Optional[str], inputs: Any, transparency: Dict[str, Any]
) -> Tuple[Optional[str], Any]:
    """The key route's request: the sentence asking for the subject on a flat key colour added to the prompt
    (the key colour chosen from the prompt's words when it is auto)."""
    words = " ".join(getattr(inputs, "texts", ()) or [prompt or ""])  # responses keep the prompt in texts
    if transparency["key"] is None:
        transparency["key"] = format_color(choose_key_color(words))
    sentence = key_prompt_sentence(parse_color(transparency["key"]))
    if len(words) + len(sentence) + 1 > MAX_PROMPT_CHARS:
        raise UsageError(
            f"the prompt and the key route's sentence ({len(sentence)} characters) are over the limit of "
            f"{MAX_PROMPT_CHARS:,} characters",
            hint="shorten the prompt",
        )
    return route.add_text(prompt, inputs, sentence)


def check_transparency(
    settings: Settings, model: str, rules: Optional[ModelRules], output_format: str
) -> Dict[str, Any]:
    """--background transparent: the route that delivers it (native: the API's own background; key: made on a
    flat key colour that is removed here), with its key colour, for the transparency step."""
    route = settings.choice("transparency", TRANSPARENCY_ROUTES) or "auto"
    if settings.flag("allow_transparent"):
        if route == "key":
            raise UsageError(
                "--allow-transparent asks for the native route; it does not go with --transparency key"
            )
        route = "native"
    if route == "auto":  # an unknown model (a gateway's) gets what was asked for, as the API would take it
        route = "native" if rules is None or rules.transparent == "yes" else "key"
    if route == "native":
        if rules is not None and rules.transparent == "no":
            raise settings.error(
                "background",
                f"{model} has no transparent background of its own",
                hint=f"use a model such as {suggest_model(lambda r: r.transparent == 'yes', today())}, or drop "
                "--transparency native (the key route makes one on any model)",
            )
        if settings.given("key_color"):
            raise UsageError("--key-color goes with the key route, not --transparency native")
        if rules is not None and rules.transparent == "preview":
            settings.warnings.append(f"{model}: {NATIVE_TRANSPARENCY_OFF}")
        return {"route": "native", "key": None}
    if output_format != "png":
        raise UsageError(
            f"the key route makes a transparent PNG, not {output_format}: the standard library writes PNG only",
            hint="name the output .png",
        )
    given = settings.given("key_color")
    if given is not None and str(given).strip().lower() != "auto":
        match = re.fullmatch(r"#?([0-9a-fA-F]{6})", str(given).strip())
        if not match:
            raise settings.error(
                "key_color",
                f"--key-color {printable(str(given), 40)!r} is not auto or #RRGGBB",
                hint="e.g. #00FF00",
            )
        return {"route": "key", "key": "#" + match.group(1).upper()}
    return {"route": "key", "key": None}  # auto: chosen from the prompt once it is known


def check_connection(settings: Settings, config: Config, warnings: List[str]) -> Connection:
    """The provider, its root URL, the credentials, the API version, the timeout, the deadline and retries.

    --base-url decides first (an Azure host selects Azure, any other URL speaks OpenAI's API); then a
    provider's endpoint key (AZURE_OPENAI_ENDPOINT), whatever OPENAI_BASE_URL says; then OPENAI_BASE_URL (by its
    host, as for the flag); else api.openai.com. The key is the provider's first key that is set.
    """
    timeout = settings.number("timeout", DEFAULT_TIMEOUT_S, float, 1, 86_400)
    deadline = settings.number("deadline", None, float, DEADLINE_MIN_S, DEADLINE_MAX_S)
    retries = settings.number("retries", DEFAULT_RETRIES, int, 0, MAX_RETRIES)
    chosen = None
    if settings.given("base_url") is None:
        chosen = next((p for p in PROVIDERS if p.endpoint_key and config.value(p.endpoint_key)), None)
    if chosen is not None and chosen.endpoint_key:
        raw = settings.pick("base_url", chosen.endpoint_key)
        ignored = config.get("OPENAI_BASE_URL")
        if ignored:
            warnings.append(
                f"OPENAI_BASE_URL is ignored ({ignored[1]}): {chosen.endpoint_key} selects {chosen.name}"
            )
    else:
        raw = settings.pick("base_url", "OPENAI_BASE_URL", DEFAULT_BASE_URL)
    url = check_base_url(str(raw), settings, warnings)
    host = urllib.parse.urlsplit(url).hostname or ""
    provider = chosen or provider_for_host(host)
    key_name = next((key for key in provider.key_names if config.value(key)), None)
    headers = [key_name] if key_name else []
    if provider.openai_headers:
        headers += ["OPENAI_ORG_ID", "OPENAI_PROJECT_ID"]
    for key in headers:
        found = config.get(key)
        if found and not _HEADER_SAFE_RE.match(found[0]):
            raise ConfigError(
                f"{key} has spaces, line breaks or other characters an HTTP header cannot carry (from {found[1]})",
                hint="remove the stray characters; a key copied from a CRLF file often ends in a carriage return",
            )
    api_key = config.value(key_name) if key_name else None
    api_version = None
    if provider.version_key and provider.versions:
        found = config.get(provider.version_key)
        if found and not provider.versions.match(found[0].strip()):
            raise ConfigError(
                f"{provider.version_key} {printable(found[0], 40)!r} is not an API version (from {found[1]})",
                hint="a dated version such as 2025-04-01-preview uses the classic deployment URLs; "
                "preview or latest, or none at all, the v1 surface",
            )
        api_version = found[0].strip() if found else None
    if url.startswith("http://") and api_key and not is_loopback(host):
        warnings.append(f"the API key will be sent unencrypted over http:// to {host}")
    return Connection(
        base_url=provider.root(url),
        api_key=api_key,
        organization=config.value("OPENAI_ORG_ID") if provider.openai_headers else None,
        project=config.value("OPENAI_PROJECT_ID") if provider.openai_headers else None,
        timeout=float(timeout),
        retries=int(retries),
        provider=provider,
        api_version=api_version,
        deadline=Deadline(float(deadline), current_run().started + float(deadline)) if deadline else None,
    )


def require_key(connection: Connection) -> Connection:
    """A run that sends needs the provider's key: the connection, or a ConfigError naming the key."""
    if connection.api_key:
        return connection
    first, *others = connection.provider.key_names
    also = f" (or {', '.join(others)})" if others else ""
    raise ConfigError(
        f"{first} is not set", hint=f"export {first}{also}, put it in ./.env, or pass --env-file PATH"
    )


def check_outputs(job: Job, resume: bool = False) -> None:
    """Every planned file can be written, no two share a path, and none is an input."""
    seen = set()
    for path in planned_files(job):
        key = path_key(path)
        if key in seen:
            raise UsageError(
                f"two outputs would both be written to {path}",
                hint="use {index} in --output, or choose distinct paths",
            )
        seen.add(key)
        check_writable(path, job.overwrite or resume)
    inputs = {path_key(img.path) for img in (*job.images, job.mask) if img}
    clash = inputs & seen
    if clash:
        raise UsageError(
            f"an output would overwrite the input {sorted(clash)[0]}", hint="choose another --output"
        )


def planned_files(job: Job) -> List[str]:
    """Every file the run plans to write: finals, previews, sidecars and the saved response."""
    files: List[str] = []
    for index in range(1, job.outputs.count + 1):
        files.extend(job.outputs.partial(index, k) for k in range(1, job.partial_images + 1))
    for final in job.outputs.finals():
        files.append(final)
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
    scale = rules.token_scale.get(quality)
    if "complexity" in job.params:
        notes.append(f"complexity {job.params['complexity']} is not priced separately (no figure is known)")
    if any(job.output_format in other.formats for other in MODELS.values()):  # gif, svg: a model's own
        notes.append(
            f"{job.output_format} output priced as an image of that size; its own costs are not known"
        )
    if rules.token_factors and quality in rules.token_factors:
        tokens = output_tokens(width, height, rules.token_factors[quality])
        if scale:
            tokens = math.ceil(tokens * scale)
        usd = tokens * images * TOKEN_PRICES[rules.family][2] / 1_000_000
        result: Dict[str, Any] = {"usd": round(usd, 4), "output_tokens": tokens * images}
    elif rules.family in IMAGE_PRICES and quality in IMAGE_PRICES[rules.family]:
        square, other = IMAGE_PRICES[rules.family][quality]
        per_image = square if width == height else other
        result = {"usd": round(per_image * images, 4)}
    else:
        return None
    scaled = f", at {scale:g} x {rules.token_source}" if scale and "output_tokens" in result else ""
    result["basis"] = f"{images} x {basis_size} {quality} on {rules.family}, output only{scaled}; an estimate"
    if notes:
        result["notes"] = notes
    return result


def cost_from_usage(usage: Mapping[str, Any], rules: Optional[ModelRules]) -> Optional[float]:
    """Estimated USD from an image model's usage (the Images API's, or the responses tool's image_gen)."""
    if rules is None or rules.family not in TOKEN_PRICES or not isinstance(usage, Mapping):
        return None
    if usage.get("input_tokens") is None and usage.get("output_tokens") is None:
        return None  # no token counts at all (a partial report): no figure rather than $0
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
    except (TypeError, ValueError, OverflowError):
        return None
    return round((text_in * text_price + image_in * image_price + out * out_price) / 1_000_000, 4)


# --- Routes ------------------------------------------------------------------------------------------------
# --- Routes: the Images API (generations and edits) ---


def build_images_body(job: Job) -> Dict[str, Any]:
    """The Images API fields: model, prompt, then only what the user set (never response_format)."""
    body: Dict[str, Any] = {"model": job.model, "prompt": job.prompt}
    body.update(job.params)
    if job.stream:
        body["stream"] = True
    body.update(job.extra_body or {})  # after every field the tool sets: check_extra_body() kept them apart
    return body


def read_images_body(obj: Any, blobs: Sequence[memoryview], collector: Collector) -> None:
    """A non-streamed Images API response: data[].b64_json, usage."""
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise ResponseError("the response has no data list of images")
    for position, item in enumerate(obj["data"], start=1):
        if not collector.planned(position):
            break
        if not isinstance(item, dict):
            raise ResponseError(f"image {position} in the response is not an object")
        if item.get("b64_json") is None and item.get("url"):
            raise ResponseError(
                "the API returned an image URL, not image data (a DALL-E style reply)",
                hint="use a GPT image model; this tool saves base64 image data only",
            )
        image = decode_image(item.get("b64_json"), blobs, f"image {position}")
        collector.final(image, position, item.get("revised_prompt"))
    if isinstance(obj.get("usage"), dict):
        collector.usage = obj["usage"]


def read_images_event(obj: Dict[str, Any], blobs: Sequence[memoryview], collector: Collector) -> None:
    """One Images API stream event: image_generation.* or image_edit.* partial_image / completed."""
    kind = str(obj.get("type", ""))
    if kind.endswith(".partial_image"):
        k = collector.preview_number(1, obj.get("partial_image_index"))
        if k is not None:
            collector.partial(1, k, decode_image(obj.get("b64_json"), blobs, f"preview {k}"))
    elif kind.endswith(".completed"):
        index = collector.arrived() + 1  # the next final image
        if collector.planned(index):
            image = decode_image(obj.get("b64_json"), blobs, "the final image")
            collector.final(image, index, obj.get("revised_prompt"))
        if isinstance(obj.get("usage"), dict):
            collector.usage = obj["usage"]


def build_generations_request(job: Job) -> HttpRequest:
    """POST /images/generations as JSON."""
    return json_request(job.connection, GENERATIONS.endpoint, build_images_body(job), job.stream)


GENERATIONS_EXAMPLES = """examples:
  gpt_image.py generations --prompt "A bold product hero image" --output out/hero.png --size 1536x1024 --quality high
  gpt_image.py generations --prompt "A cinematic city skyline at night" --output out/skyline-{index}.webp --n 3 --compression 90
  gpt_image.py generations --prompt "A minimal cover image" --output out/cover.png --stream --partial-images 2
  gpt_image.py generations --prompt "A wide banner for a bakery" --output out/banner.png --size 16:9@2k
  gpt_image.py generations --prompt "A minimal cover image" --output out/cover.png --dry-run
"""

GENERATIONS = Route(
    name="generations",
    endpoint="/images/generations",
    summary="text to image (POST /images/generations)",
    description="Create images from a text prompt.",
    examples=GENERATIONS_EXAMPLES,
    arguments=("model", "n"),
    read_inputs=lambda settings, prompt, warnings: None,
    build_request=build_generations_request,
    read_body=read_images_body,
    read_event=read_images_event,
    batch_body=build_images_body,
)


# Masks from coordinates (edits and responses): --mask-box and --mask-ellipse name the areas to change, and
# the mask is made here, the first image's size, then sent as a --mask file would be.
MASK_SHAPE_OPTIONS = (("mask_box", "box"), ("mask_ellipse", "ellipse"))
MASK_SPEC_HINT = (
    "X,Y,W,H: the top-left corner, then the width and height, each in pixels or a percentage of the first "
    "image's (e.g. 0,0,100%,40%)"
)


def check_mask_options(settings: Settings) -> bool:
    """Whether the mask is to be made from shapes: refused beside another mask, and --save-mask without one."""
    shaped = any(settings.many(name) for name, _ in MASK_SHAPE_OPTIONS)
    if not shaped:
        if settings.given("save_mask") is not None:
            raise UsageError(
                "--save-mask writes the mask made from --mask-box or --mask-ellipse, and no shape is given",
                hint="add --mask-box X,Y,W,H or --mask-ellipse X,Y,W,H, or drop --save-mask",
            )
        return False
    other = next((n for n in ("mask", "mask_url", "mask_file_id") if settings.given(n) is not None), None)
    if other is not None:
        raise UsageError(
            f"--mask-box and --mask-ellipse make the mask, and {settings.label(other)} gives one too",
            hint=f"keep one: drop {settings.label(other)}, or the shapes",
        )
    return True


@functools.lru_cache(maxsize=8)
def _shape_mask(width: int, height: int, shapes: Tuple[Shape, ...]) -> Tuple[bytes, float]:
    """mask_png's PNG and the share of its pixels to change (fully transparent); kept for the next jobs of a
    batch, which often mark the same areas on images of one size."""
    pixels = draw_shapes(width, height, shapes)
    return encode_png(pixels), alpha_stats(pixels).transparent


def make_shape_mask(
    settings: Settings, first: Optional[InputImage], unknown: str, local: str, inputs: Sequence[InputImage]
) -> InputImage:
    """The mask of --mask-box and --mask-ellipse, the size of the first image, written where the request
    reads it (--save-mask, or a temporary file). `unknown` says why the first image's size is not known
    here when `first` is None; `local` names the option of a local input image; `inputs` are the local ones."""
    width, height = (first.info.width, first.info.height) if first is not None else (None, None)
    if not width or not height:
        raise UsageError(
            f"--mask-box and --mask-ellipse need the first image's width and height, and {unknown}",
            hint=f"give the image to edit first, as a local file ({local} PATH)",
        )
    if width * height > MAX_PIXELS:
        raise UsageError(
            f"the first image is {width}x{height} by its header, over {MAX_PIXELS:,} pixels: no mask is made "
            "for it",
            hint="use a smaller image (the API takes up to 3840x2160)",
        )
    given = [(name, kind, spec) for name, kind in MASK_SHAPE_OPTIONS for spec in settings.many(name)]
    shapes = []
    for name, kind, spec in given:
        if len(spec) > 80:
            raise UsageError(
                f"{settings.label(name)} {printable(spec, 40)!r} is not X,Y,W,H", hint=MASK_SPEC_HINT
            )
        try:
            shapes.append(parse_shape(kind, spec, width, height))
        except ImageDataError as exc:
            raise UsageError(f"{settings.label(name)} {printable(str(exc))}", hint=MASK_SPEC_HINT) from None
    data, share = _shape_mask(width, height, tuple(shapes))
    if share == 0:
        raise UsageError(
            f"the mask shapes cover no whole pixel of the {width}x{height} image, so they mark nothing to change",
            hint="make them larger",
        )
    save = settings.given("save_mask")
    if save is not None:
        save = str(save)
        if not save.lower().endswith(".png"):
            raise UsageError(f"--save-mask {save}: the mask is a PNG", hint="name it .png")
        for path, what in [(i.path, "the input") for i in inputs] + [
            (settings.given(n), f"the {settings.label(n)}") for n in ("output", "save_response")
        ]:
            if path is not None and path_key(str(path)) == path_key(save):
                raise UsageError(f"--save-mask {save} is {what} too", hint="choose another --save-mask path")
    mask = write_mask_file(data, save, settings.flag("overwrite"))
    shown = ", ".join(f"{settings.label(name)} {spec}" for name, _, spec in given)
    settings.notes.append(
        f"the mask ({width}x{height}, {share:.1%} to change) is made from {shown}"
        + (f" and saved as {mask.path}" if save is not None else "")
    )
    return mask


_DATA_URL_RE = re.compile(r"data:(image/(?:png|jpeg|jpg|webp));base64,", re.I)

# An edit input that is not a local file: ("image_url", an https URL or a GivenDataUrl) or ("file_id", ID).
ImageRef = Tuple[str, Any]


class EditInputs(NamedTuple):
    """The images to edit, in the order given, and the mask; local files checked on disk."""

    images: Tuple[InputImage, ...]  # the local files among the inputs
    refs: Tuple[Union[InputImage, ImageRef], ...]  # every input, local or not, in order
    mask: Optional[InputImage]
    mask_ref: Optional[ImageRef]
    field_style: str
    json_form: bool  # any input (or the mask) not a local file: the JSON edits body, local files as data URLs


_INPUT_KINDS = ("image", "image_url", "image_file_id")
# Why the first edit input's size is not known here (a data URL's is: its header is read).
_UNSIZED_FIRST = {
    "image_url": "an --image-url, which the API fetches",
    "image_file_id": "an --image-file-id, an uploaded file",
}


def check_image_url(url: str, what: str, local: str = "--image") -> Any:
    """An image URL the API can fetch: https, or a base64 data URL of a real PNG, JPEG or WEBP image (edits
    and responses alike); `local` names the option for a local file instead."""
    shown = printable(url[:80] + ("..." if len(url) > 80 else ""))
    if url[:5].lower() == "data:":
        match = _DATA_URL_RE.match(url)
        if not match:
            raise UsageError(f"{what} {shown}: not a base64 data URL of a PNG, JPEG or WEBP image")
        if len(url) > MAX_IMAGE_URL_CHARS:
            raise UsageError(
                f"{what}: the data URL has {len(url):,} characters; the limit is {MAX_IMAGE_URL_CHARS:,}",
                hint="upload the image and pass its file id, or use a smaller image",
            )
        try:
            data = base64.b64decode(url[match.end() :], validate=True)
        except (binascii.Error, ValueError):
            raise UsageError(f"{what}: the data URL's base64 does not decode") from None
        info = read_image_info(data[:65536])
        if info is None or not IMAGE_FORMATS[info.format].input:  # a GIF or an SVG is no input image
            raise UsageError(f"{what}: the data URL holds no PNG, JPEG or WEBP image (by its first bytes)")
        return GivenDataUrl(url, info), len(data)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() == "http":
        raise UsageError(
            f"{what} {shown}: plain http is refused; the API fetches https URLs",
            hint=f"use the https address, or download the image and pass it as {local} PATH",
        )
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise UsageError(f"{what} {shown}: not an https or data: URL", hint=f"use {local} for a local file")
    return url, None


def _ordered_inputs(settings: Settings) -> List[Tuple[str, str]]:
    """(kind, value) of every edit input, in the order given on the command line (else by kind)."""
    given = {kind: settings.many(kind) for kind in _INPUT_KINDS}
    order = settings.options.get("input_order")
    counts = {kind: len(values) for kind, values in given.items()}
    if not order or {k: list(order).count(k) for k in _INPUT_KINDS} != counts:
        order = [kind for kind in _INPUT_KINDS for _ in given[kind]]
    taken = {kind: iter(values) for kind, values in given.items()}
    return [(kind, next(taken[kind])) for kind in order]


def read_edit_inputs(settings: Settings, prompt: Optional[str], warnings: List[str]) -> EditInputs:
    """Check the inputs (1..16 local files, URLs and file ids) and the mask; choose multipart or JSON."""
    style = settings.choice("image_field_style", FIELD_STYLES) or "auto"
    given = _ordered_inputs(settings)
    if not given:
        raise UsageError(
            "edits need at least one --image",
            hint=f"add --image PATH, --image-url URL or --image-file-id ID (up to {MAX_IMAGES})",
        )
    if len(given) > MAX_IMAGES:
        raise UsageError(f"{len(given)} images given; the limit is {MAX_IMAGES}")
    mask_path, mask_url, mask_id = (settings.given(k) for k in ("mask", "mask_url", "mask_file_id"))
    if sum(1 for m in (mask_path, mask_url, mask_id) if m) > 1:
        raise UsageError("give one of --mask, --mask-url and --mask-file-id")
    shaped = check_mask_options(settings)
    # A Batch API line can only carry JSON: its edits are the JSON form whatever their inputs.
    json_form = (
        any(kind != "image" for kind, _ in given) or bool(mask_url or mask_id) or settings.flag("batch_api")
    )
    if json_form and settings.given("image_field_style"):
        raise UsageError(
            "--image-field-style names multipart fields; with an --image-url, --image-file-id, --mask-url or "
            "--mask-file-id the request is JSON",
            hint="drop --image-field-style",
        )
    refs: List[Union[InputImage, ImageRef]] = []
    for kind, value in given:
        if kind == "image":
            image = inspect_image(value, "--image")
            if json_form and 4 * -(-image.size // 3) + 32 > MAX_IMAGE_URL_CHARS:
                raise UsageError(
                    f"--image {value}: {image.size:,} bytes is too large for a data URL in a JSON edit "
                    f"(at most {MAX_IMAGE_URL_CHARS:,} characters, about {MAX_IMAGE_URL_CHARS * 3 // 4 // 10**6} MB)",
                    hint="upload it and pass --image-file-id, or send only local files (multipart)",
                )
            refs.append(image)
        elif kind == "image_url":
            refs.append(("image_url", check_image_url(value, "--image-url")[0]))
        elif not value.strip():
            raise UsageError("an --image-file-id is empty")
        else:
            refs.append(("file_id", value.strip()))
    first = refs[0] if isinstance(refs[0], InputImage) else None
    if first is None and isinstance(refs[0][1], GivenDataUrl):
        first = InputImage("the first --image-url", 0, refs[0][1].info)
    mask, mask_ref = None, None
    if shaped:  # last but for warnings: the mask is written once every other input is checked
        unknown = (
            "its header does not give them" if first else f"the first image is {_UNSIZED_FIRST[given[0][0]]}"
        )
        mask = make_shape_mask(
            settings, first, unknown, "--image", [r for r in refs if isinstance(r, InputImage)]
        )
    elif mask_path:
        mask = check_mask(mask_path, first)
    elif mask_url:
        value, size = check_image_url(mask_url, "--mask-url")
        if isinstance(value, GivenDataUrl):
            check_mask_facts("--mask-url", value.info, size, first)
        mask_ref = ("image_url", value)
    elif mask_id:
        mask_ref = ("file_id", str(mask_id).strip())
    checked = first is not None and (
        mask is not None or (mask_ref is not None and isinstance(mask_ref[1], GivenDataUrl))
    )
    if (mask_path or mask_url or mask_id) and not checked:
        warnings.append("the mask's size cannot be checked against the first image here (a URL or a file id)")
    return EditInputs(
        tuple(r for r in refs if isinstance(r, InputImage)), tuple(refs), mask, mask_ref, style, json_form
    )


def edit_refusals(inputs: EditInputs) -> Mapping[str, Tuple[str, str]]:
    """The multipart edits schema (spec and SDKs) has no moderation field; the JSON form has."""
    if inputs.json_form:
        return {}
    return {
        "moderation": (
            "multipart edits do not accept --moderation (the multipart edit API has no such field)",
            "drop --moderation, or give an input as --image-url or --image-file-id (the JSON form has it)",
        )
    }


def _image_ref(ref: Union[InputImage, ImageRef]) -> Dict[str, Any]:
    return {"image_url": DataUrl(ref)} if isinstance(ref, InputImage) else {ref[0]: ref[1]}


def build_edits_json_body(job: Job) -> Dict[str, Any]:
    """The JSON edits body (EditImageBodyJsonParam): `images` as image_url (local files as data URLs) or
    file_id references, an optional `mask` the same way, and the usual fields. The Batch API sends it too."""
    inputs: EditInputs = job.inputs
    body = build_images_body(job)
    body["images"] = [_image_ref(ref) for ref in inputs.refs]
    if inputs.mask is not None:
        body["mask"] = _image_ref(inputs.mask)
    elif inputs.mask_ref is not None:
        body["mask"] = _image_ref(inputs.mask_ref)
    return body


def build_edits_batch_body(job: Job) -> Dict[str, Any]:
    """A batch line can only be JSON: local files become data URLs (check_batch_api_job() checked their size)."""
    inputs: EditInputs = job.inputs
    return build_edits_json_body(job._replace(inputs=inputs._replace(json_form=True)))


def build_edits_request(job: Job, boundary: Optional[str] = None) -> HttpRequest:
    """POST /images/edits: multipart/form-data streamed from disk, or the JSON form for URLs and file ids."""
    inputs: EditInputs = job.inputs
    if inputs.json_form:
        return json_request(job.connection, EDITS.endpoint, build_edits_json_body(job), job.stream)
    url, sent = job.connection.target(EDITS.endpoint, build_images_body(job))
    fields = [(name, form_value(value)) for name, value in sent.items()]
    names = image_field_names(inputs.field_style, len(inputs.images))
    files = [FilePart(name, image) for name, image in zip(names, inputs.images)]
    if inputs.mask:
        files.append(FilePart("mask", inputs.mask))
    body, content_type = encode_multipart(fields, files, boundary or new_boundary())
    headers = job.connection.headers(content_type, job.stream)
    return HttpRequest("POST", url, headers, body, parts=describe_parts(fields, files))


EDITS_EXAMPLES = """examples:
  gpt_image.py edits --prompt "Replace the sky with a sunset" --image photo.png --mask mask.png --output out/sunset.png
  gpt_image.py edits --prompt "Blend the two into one illustration" --image a.png --image b.png --output out/blend-{index}.png --n 2

The mask is a PNG with an alpha channel, the size of the first image; its fully transparent pixels mark
where to edit. One image is sent as the field `image`, several as `image[]` (--image-field-style).
"""

EDITS = Route(
    name="edits",
    endpoint="/images/edits",
    summary="edit or combine images (POST /images/edits)",
    description=f"Edit one image, or combine up to {MAX_IMAGES}, guided by a prompt and a mask.",
    examples=EDITS_EXAMPLES,
    arguments=(
        "model",
        "image",
        "image_url",
        "image_file_id",
        "mask",
        "mask_url",
        ("mask_file_id", "an uploaded mask file's id"),
        "mask_box",
        "mask_ellipse",
        "save_mask",
        "image_field_style",
        "n",
        "input_fidelity",
    ),
    read_inputs=read_edit_inputs,
    build_request=build_edits_request,
    read_body=read_images_body,
    read_event=read_images_event,
    refusals=edit_refusals,
    batch_body=build_edits_batch_body,
)


# --- Routes: the Responses API with the image_generation tool ---


class ResponseInputs(NamedTuple):
    """The message's text and images, the mask, and how the tool is called."""

    texts: Tuple[str, ...]
    images: Tuple[InputImage, ...]
    image_urls: Tuple[Union[str, GivenDataUrl], ...]  # https, or a checked data URL (check_image_url)
    file_ids: Tuple[str, ...]
    mask: Optional[InputImage]
    mask_file_id: Optional[str]
    detail: str
    action: Optional[str]
    tool_choice: str
    previous_response_id: Optional[str]


def read_response_inputs(settings: Settings, prompt: Optional[str], warnings: List[str]) -> ResponseInputs:
    """Check the message inputs, the mask and the tool options."""
    texts = settings.many("input_text")
    if any(not text.strip() for text in texts):
        raise UsageError("an --input-text is empty")
    if prompt is not None:
        texts.insert(0, prompt)
    if sum(len(t) for t in texts) > MAX_PROMPT_CHARS:
        raise UsageError(f"the input text is over {MAX_PROMPT_CHARS:,} characters", hint="shorten it")
    images = tuple(inspect_image(path, "--input-image") for path in settings.many("input_image"))
    # The one rule of edits' --image-url: https, or a data URL of a real PNG, JPEG or WEBP (checked here).
    urls = tuple(
        check_image_url(u, "--input-image-url", "--input-image")[0] for u in settings.many("input_image_url")
    )
    file_ids = tuple(fid.strip() for fid in settings.many("input_image_file_id"))
    if any(not fid for fid in file_ids):
        raise UsageError("an --input-image-file-id is empty")
    previous = settings.given("previous_response_id")
    if not (texts or images or urls or file_ids):
        raise UsageError(
            "responses need some input",
            hint="add --input-text TEXT (or --prompt), and any --input-image PATH",
        )
    mask_path, mask_file_id = settings.given("mask"), settings.given("mask_file_id")
    if mask_path and mask_file_id:
        raise UsageError("give --mask or --mask-file-id, not both")
    shaped = check_mask_options(settings)
    # After --previous-response-id, the image to edit may be the earlier response's.
    if (mask_path or mask_file_id) and not (images or urls or file_ids or previous):
        raise UsageError(
            "a mask needs an input image to apply to",
            hint="add --input-image PATH, or --previous-response-id to edit an earlier image",
        )
    mask = check_mask(mask_path, images[0] if images else None) if mask_path else None
    tool_choice = settings.choice("tool_choice", TOOL_CHOICES) or "image_generation"
    if tool_choice == "none":
        warnings.append("--tool-choice none: the model will not call the image tool, so expect no image")
    detail, action = settings.choice("image_detail", DETAILS) or "auto", settings.choice("action", ACTIONS)
    if shaped:  # last: the mask is written once every other input is checked
        # The local --input-image files come first in the message, before any URL or file id.
        unknown = (
            "no --input-image is given (an image by URL, file id or an earlier response has no size here)"
        )
        mask = make_shape_mask(settings, images[0] if images else None, unknown, "--input-image", images)
    return ResponseInputs(
        texts=tuple(texts),
        images=images,
        image_urls=tuple(urls),
        file_ids=tuple(file_ids),
        mask=mask,
        mask_file_id=mask_file_id,
        detail=detail,
        action=action,
        tool_choice=tool_choice,
        previous_response_id=previous,
    )


def build_responses_body(job: Job) -> Dict[str, Any]:
    """The Responses API body: one user message, one image_generation tool, the tool choice."""
    inputs: ResponseInputs = job.inputs
    detail = inputs.detail
    content: List[Dict[str, Any]] = [{"type": "input_text", "text": text} for text in inputs.texts]
    content += [
        {"type": "input_image", "image_url": DataUrl(image), "detail": detail} for image in inputs.images
    ]
    content += [{"type": "input_image", "image_url": url, "detail": detail} for url in inputs.image_urls]
    content += [{"type": "input_image", "file_id": fid, "detail": detail} for fid in inputs.file_ids]
    tool: Dict[str, Any] = {"type": "image_generation", "model": job.model}
    tool.update((key, value) for key, value in job.params.items() if key != "user")
    if inputs.action is not None:
        tool["action"] = inputs.action
    if inputs.mask:
        tool["input_image_mask"] = {"image_url": DataUrl(inputs.mask)}
    elif inputs.mask_file_id:
        tool["input_image_mask"] = {"file_id": inputs.mask_file_id}
    body: Dict[str, Any] = {
        "model": job.text_model,
        "input": [{"role": "user", "content": content}],
        "tools": [tool],
    }
    if inputs.tool_choice == "image_generation":
        body["tool_choice"] = {"type": "image_generation"}
    else:
        body["tool_choice"] = inputs.tool_choice
    if inputs.previous_response_id:
        body["previous_response_id"] = inputs.previous_response_id
    if "user" in job.params:
        body["safety_identifier"] = job.params["user"]
    if job.stream:
        body["stream"] = True
    body.update(job.extra_body or {})  # the top-level body, as --help says: not the image tool's fields
    return body


def build_responses_request(job: Job) -> HttpRequest:
    """POST /responses as JSON; the image tool's model is also its deployment where the provider routes by one
    (a header of its own)."""
    request = json_request(job.connection, RESPONSES.endpoint, build_responses_body(job), job.stream)
    tool_header = job.connection.provider.tool_header
    return request._replace(headers={**request.headers, tool_header: job.model}) if tool_header else request


def read_responses_body(obj: Any, blobs: Sequence[memoryview], collector: Collector) -> None:
    """A non-streamed Responses API response: image_generation_call items, message text, usage, status."""
    if not isinstance(obj, dict):
        raise ResponseError("the response is not a JSON object")
    collector.response_id = obj.get("id") or collector.response_id
    if isinstance(obj.get("usage"), dict):
        collector.usage = obj["usage"]
    # The image tool's own tokens, apart from the text model's `usage` (what gateways bill the tool by).
    tool_usage = obj.get("tool_usage")
    if isinstance(tool_usage, dict) and isinstance(tool_usage.get("image_gen"), dict):
        collector.tool_usage = tool_usage["image_gen"]
    status = obj.get("status")
    for item in obj["output"] if isinstance(obj.get("output"), list) else []:
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
        index = collector.index_for(item_id)
        if collector.planned(index):
            image = decode_image(item.get("result"), blobs, "the generated image")
            collector.final(image, index, item.get("revised_prompt"))
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
        index = collector.index_for(obj.get("item_id"))
        k = collector.preview_number(index, obj.get("partial_image_index"))
        if k is not None:
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


RESPONSES_EXAMPLES = """examples:
  gpt_image.py responses --input-text "Generate a poster for an AI developer summit" --output out/poster-{index}.png --stream --partial-images 2
  gpt_image.py responses --input-text "Turn this product shot into a studio ad" --input-image product.png --output out/studio.png --action edit
  gpt_image.py responses --input-text "Now make it blue" --previous-response-id resp_123 --output out/blue.png

The response id is printed on stderr (response_id with --json): pass it to --previous-response-id to continue.
"""

RESPONSES = Route(
    name="responses",
    endpoint="/responses",
    summary="the Responses API with the image_generation tool (POST /responses)",
    description="Generate or edit through a text model that calls the image tool: "
    "mixed text and image input, follow-ups, streaming previews.",
    examples=RESPONSES_EXAMPLES,
    arguments=(
        (
            "model",
            f"the top-level text model (env OPENAI_RESPONSES_MODEL; default {DEFAULT_RESPONSES_MODEL})",
        ),
        "tool_model",
        "input_text",
        "input_image",
        "input_image_url",
        "input_image_file_id",
        "image_detail",
        ("mask", "PNG mask with alpha for the first input image"),
        "mask_file_id",
        (
            "mask_box",
            "an area to change, a box: its top-left corner and size, in pixels of the first --input-image or "
            "percentages of its width and height (e.g. 0,0,100%%,40%%); repeatable; the tool makes the mask",
        ),
        "mask_ellipse",
        "save_mask",
        "action",
        "tool_choice",
        "previous_response_id",
        "input_fidelity",
    ),
    read_inputs=read_response_inputs,
    build_request=build_responses_request,
    read_body=read_responses_body,
    read_event=read_responses_event,
    needs_prompt=False,
    model_option="tool_model",
    model_env="OPENAI_IMAGE_TOOL_MODEL",
    model_default=DEFAULT_TOOL_MODEL,
    text_model=True,
    batch_body=build_responses_body,
    add_text=lambda prompt, inputs, text: (prompt, inputs._replace(texts=(*inputs.texts, text))),
)

ROUTES = (GENERATIONS, EDITS, RESPONSES)
ROUTE_NAMES.update((route.name, route) for route in ROUTES)


# --- Running: progress, collecting images, one job -------------------------------------------------------


class Stderr:
    """Lines on stderr (results --quiet does not hide, warnings, notices) and below them the status line a
    subclass may keep, redrawn in place on a terminal; one lock keeps threads from mixing them."""

    def __init__(self, quiet: bool) -> None:
        self.stream = sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.shown = 0  # characters of the status line now on the terminal (0: none)
        self.lock = _thread.allocate_lock()  # threading itself is loaded only for a terminal's ticker

    def redrawn(self) -> Optional[str]:
        """The status to draw again at once below a printed line (None: none, or the next tick draws it)."""
        return None

    def _draw(self, status: str) -> None:
        self.stream.write("\r" + status.ljust(self.shown))
        self.shown = len(status)

    def _clear(self) -> None:
        # Spaces, not the ESC [K sequence, which older Windows consoles print literally.
        if self.shown:
            self.stream.write("\r" + " " * self.shown + "\r")
            self.shown = 0

    def print(self, text: str) -> None:
        """A line of its own, above the status line, that --quiet does not hide (a result, a failed job). A
        stderr that cannot be written (closed, a full disk) loses the line, never the run or its images."""
        with self.lock:
            try:
                self._clear()
                self.stream.write(printable(text) + "\n")
                status = self.redrawn()
                if status is not None:
                    self._draw(status)
                self.stream.flush()
            except (OSError, ValueError, AttributeError):
                pass

    def warn(self, message: str) -> None:
        """A warning, shown even with --quiet."""
        self.print(f"warning: {message}")

    def note(self, message: str) -> None:
        """A milestone or notice, hidden by --quiet."""
        if not self.quiet:
            self.print(message)

    def close(self) -> None:
        """Clear the status line, leaving the terminal on a fresh line."""
        with self.lock:
            if self.shown:
                self._clear()
                self.stream.flush()


class Reporter(Stderr):
    """Where the running code hands what a run produced; it never prints results itself. The CLI makes a
    text or a JSON one (below); progress and warnings go to stderr on their own."""

    as_json = False  # results as JSON on stdout (failed jobs then need no line of their own on stderr)

    def __init__(self, quiet: bool = False) -> None:
        super().__init__(quiet)
        self.lost: List[str] = []  # saved files whose stdout line could not be written

    def out(self, text: str, paths: Sequence[str] = ()) -> None:
        """A line on stdout; the files it names are remembered when stdout cannot take it."""
        if not _print_out(text):
            self.lost.extend(paths)

    def dry_run(self, described: Mapping[str, Any], indent: Optional[int] = 2) -> None:
        """A dry run's JSON (one line a job in a batch)."""
        self.out(json_text(described, indent=indent))

    def outcome(self, outcome: Outcome) -> None:
        """A single run's result."""
        raise NotImplementedError

    def job(self, item: BatchJob, outcome: Optional[Outcome], error: Optional[GptImageError]) -> None:
        """One batch job's result (saved, skipped or failed) as it ends."""
        raise NotImplementedError

    def summary(self, summary: Mapping[str, Any], line: str) -> None:
        """A batch's summary: the record, and the line that says it (on stderr, which --quiet hides)."""
        self.note(line)

    def batch(self, record: Mapping[str, Any], line: str) -> None:
        """A Batch API batch left running (--no-wait) or cancelled (--cancel)."""
        raise NotImplementedError

    def failure(self, exc: GptImageError, line: str = "") -> None:
        """The run failed: the one error line on stderr (`line`, else the error's own)."""
        self.print(line or error_line(exc))


class Progress(Stderr):
    """One job's progress: a ticking status line on a terminal, plain milestone lines otherwise."""

    def __init__(self, quiet: bool) -> None:
        super().__init__(quiet)
        self.label = ""
        self.partials = 0
        self._stop: Optional[threading.Event] = None
        self._ticker: Optional[threading.Thread] = None

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            return 80

    def begin(self, label: str) -> None:
        """Start timing a call: a ticking status line on a terminal, one plain line otherwise."""
        self.label = label
        self.started = time.monotonic()
        if self.quiet:
            return
        if not self.tty:
            self.print(label)
            return
        import threading

        self._stop = threading.Event()
        self._ticker = run_thread(self._tick, "gpt-image-progress")

    def _tick(self) -> None:
        assert self._stop is not None
        while not self._stop.wait(0.5):
            elapsed = time.monotonic() - self.started
            tail = f" {elapsed:.0f}s" + (f", {self.partials} preview(s)" if self.partials else "")
            # One line shorter than the terminal: a wrapped status line could not be rewritten in place.
            room = max(self._columns() - 1 - len(tail), 12)
            label = printable(self.label)  # redacted before it is cut to the terminal's width
            label = label if len(label) <= room else label[: room - 3] + "..."
            with self.lock:
                self._draw(label + tail)
                self.stream.flush()

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
        self.close()


class SavedImage(NamedTuple):
    """An image written to disk, with what its pixel steps found (by step name)."""

    path: str
    index: int  # type: ignore[assignment]  # a field over tuple.index
    bytes: int
    format: str
    revised_prompt: Optional[str] = None
    facts: Mapping[str, Any] = {}
    info: Optional[ImageInfo] = None  # what its header says: width, height, alpha

    def as_dict(self) -> Dict[str, Any]:
        """The JSON form used in --json output."""
        info = self.info
        return {
            "path": self.path,
            "index": self.index,
            "bytes": self.bytes,
            "format": self.format,
            "width": info.width if info else None,
            "height": info.height if info else None,
            "alpha": info.has_alpha if info else None,
            **self.facts,
        }


def image_info(data: bytes, fmt: str) -> Optional[ImageInfo]:
    """Width, height and alpha of a saved image, from its header (None for a format the table lacks)."""
    found = IMAGE_FORMATS.get(fmt)
    return found.info(data[:65536]) if found else None


class _Incomplete(ResponseError):
    """A final image that arrived cut short or damaged."""


def check_workable(data: bytes, fmt: str) -> Optional[str]:
    """Its WxH when a server's image is of a shape no API image has (an edge over MAX_WORK_EDGE, or one edge
    over MAX_WORK_RATIO times the other): the pixel work of such an image (a 1-pixel-high line of millions,
    say) could take minutes and gigabytes, so it is kept as it came and not decoded. None when it is fine."""
    info = IMAGE_FORMATS[fmt].info(data[:65536]) if fmt in IMAGE_FORMATS else None
    if info is None or not info.width or not info.height:
        return None
    width, height = info.width, info.height
    if max(width, height) > MAX_WORK_EDGE or max(width, height) > MAX_WORK_RATIO * min(width, height):
        return f"{width}x{height}"
    return None


class Delivered(NamedTuple):
    """A final image ready to store: the --resize target it is (None: the one image), its bytes, and the
    contact sheet's thumbnail of it (when the run makes a sheet and the image could be read)."""

    size: Optional[str]
    data: bytes
    thumb: Optional[Pixels] = None


def deliver(data: bytes, fmt: str, job: Job) -> Tuple[List[Delivered], Dict[str, Any]]:
    """An arrived final image made ready to store: checked whole, then put through the job's pixel steps in
    order (one image at a time across a batch's workers: the steps hold the interpreter anyway, and memory
    then holds one image's pixels). Returns the images to store, by target size (None: the one image), and
    what each step found, by its name."""
    problem = check_complete(data, fmt)
    if problem:
        raise _Incomplete(problem)
    facts: Dict[str, Any] = {}
    run = current_run()
    side = run.sheet_side if run.sheet is not None and fmt == "png" else 0
    if not job.steps and not side:
        return [Delivered(None, data)], facts
    shape = check_workable(data, fmt)
    if shape and job.steps:
        raise StepFailed(f"the image is {shape}: not a size the API makes, so its pixels are not worked on")
    if shape:  # no step to run, only the contact sheet's thumbnail: saved as it is, left off the sheet
        return [Delivered(None, data)], facts
    with run.pixel_lock:
        images: Dict[Optional[str], Picture] = {None: Picture(data)}
        for name, settings in job.steps:
            made: Dict[Optional[str], Picture] = {}
            for label, image in images.items():
                try:
                    result, found = step_named(name).run(image, settings)
                except ImageDataError as exc:
                    raise StepFailed(f"the {name} step could not read the image: {exc}") from None
                made.update(result if isinstance(result, dict) else {label: result})
                if found:
                    facts[name] = dict(found)
            images = made
        delivered = []
        for label, image in images.items():  # encoded here, and the pixels dropped, under the lock
            thumb = None
            if side:
                try:
                    thumb = thumbnail(image.pixels(), side)
                except ImageDataError:  # whole but unreadable here: saved, and left off the sheet
                    thumb = None
            delivered.append(Delivered(label, image.data(), thumb))
        return delivered, facts


class Collector:
    """Receives decoded images as they arrive and writes them to their planned paths at once."""

    def __init__(self, job: Job, progress: Progress) -> None:
        self.job = job
        self.progress = progress
        self.images: List[SavedImage] = []
        self.partials: List[SavedImage] = []
        self.unsaved: List[str] = []  # finals that could not be written where planned, with where they went
        # Finals that arrived cut short or damaged, or that a pixel step could not deliver: what went wrong,
        # where their bytes were kept, and a hint.
        self.incomplete: List[Tuple[str, str]] = []
        self.usage: Optional[Dict[str, Any]] = None  # as the API reported it (responses: the text model's)
        self.tool_usage: Optional[Dict[str, Any]] = None  # responses: tool_usage.image_gen, when reported
        self.response_id: Optional[str] = None
        self.text: List[str] = []
        self.item_index: Dict[str, int] = {}  # responses: image_generation_call id -> final image index
        self.done_items: Set[str] = set()
        self.response_id_shown = False
        self.previews_taken: Set[Tuple[int, int]] = set()  # (final index, k) of the previews already taken
        self.ignored: Set[str] = set()  # the kinds of unplanned images already warned about

    def announce_response_id(self) -> None:
        """Show the response id on stderr once, even with --quiet: it is how a follow-up continues."""
        if self.response_id and not self.response_id_shown and not self.job.as_json:
            self.progress.print(f"response id: {self.response_id}")
            self.response_id_shown = True

    def usage_report(self) -> Optional[Dict[str, Any]]:
        """The usage as reported in --json and sidecars: the API's, plus the image tool's as `image_gen`."""
        return self.usage if self.tool_usage is None else dict(self.usage or {}, image_gen=self.tool_usage)

    def estimated_cost(self) -> Optional[float]:
        """Estimated USD of the images from the image model's usage alone: the Images API's, or the responses
        tool's (a responses text model is not priced)."""
        usage = self.tool_usage if self.job.text_model else self.usage
        return cost_from_usage(usage, self.job.rules) if usage else None

    def arrived(self) -> int:
        """How many final images arrived, saved or not."""
        return len(self.images) + len(self.unsaved) + len(self.incomplete)

    def raise_incomplete(self) -> None:
        """A final image that arrived incomplete, or that a step could not deliver, makes the whole response
        unusable (exit 6)."""
        if not self.incomplete:
            return
        saved = ", ".join(image.path for image in self.images)
        raise ResponseError(
            "; ".join([message for message, _ in self.incomplete] + self.unsaved)
            + (f"; saved as planned: {saved}" if saved else ""),
            hint=self.incomplete[0][1],
        )

    def said(self) -> str:
        """The model's text, if it said anything."""
        return " ".join(self.text).strip()

    def index_for(self, item_id: Optional[str]) -> int:
        """The final-image index of a Responses image call; without an id, that of the next final image."""
        if item_id is None:
            return len(self.images) + 1
        if item_id not in self.item_index:
            self.item_index[item_id] = max(len(self.item_index), len(self.images)) + 1
        return self.item_index[item_id]

    def planned(self, index: int) -> bool:
        """True when final image `index` is one the run asked for; the first extra one gets a warning.

        A server that sends more images than planned cannot make the run write more files than planned.
        """
        if 1 <= index <= self.job.outputs.count:
            return True
        count = self.job.outputs.count
        self._ignore(
            "final", f"the response holds more images than the {count} asked for; the rest are not saved"
        )
        return False

    def preview_number(self, index: int, raw: Any) -> Optional[int]:
        """The number k (1-based) of a preview of final image `index` from its partial_image_index, or None
        (with one warning a run) when it is not a planned preview: not an integer, out of range, or again."""
        if raw is None:  # no index at all: the next preview of that image
            raw = sum(1 for taken in self.previews_taken if taken[0] == index)
        k = raw + 1 if type(raw) is int else 0  # not bool, float (Infinity, 1e400) or text
        if not (1 <= k <= self.job.partial_images and 1 <= index <= self.job.outputs.count):
            self._ignore(
                "preview", "a preview the run did not ask for (out of range or not numbered): not saved"
            )
            return None
        if (index, k) in self.previews_taken:
            self._ignore("again", f"preview {k} arrived more than once: the first one is kept")
            return None
        self.previews_taken.add((index, k))
        return k

    def _ignore(self, kind: str, warning: str) -> None:
        if kind not in self.ignored:
            self.ignored.add(kind)
            self.progress.warn(warning)

    def _check_format(self, data: bytes, what: str) -> str:
        fmt = sniff_format(data[:16]) or self.job.output_format
        if fmt != self.job.output_format:
            self.progress.warn(f"{what} came back as {fmt}, not {self.job.output_format}; saved as is")
        return fmt

    def partial(self, index: int, k: int, data: bytes) -> None:
        """Save preview k (1-based) of final image `index`; a preview that is incomplete or cannot be written
        is skipped with a warning (the final image is what the run is for)."""
        fmt = self._check_format(data, f"preview {k}")
        target = self.job.outputs.partial(index, k)
        problem = check_complete(data, fmt)
        if problem:
            self.progress.warn(f"preview {k} is incomplete ({problem}); not saved as {target}")
            return
        try:
            path = write_output(target, data, self.job.overwrite)
        except OSError as exc:
            self.progress.warn(f"could not write preview {target}: {exc.strerror or exc}; skipped")
            return
        if path != target:
            self.progress.warn(f"{target} appeared during the run, so the preview was saved as {path}")
        self.partials.append(SavedImage(path, k, len(data), fmt, info=image_info(data, fmt)))
        self.progress.partial(path)

    def final(self, data: bytes, index: int, revised_prompt: Any = None) -> None:
        """Deliver final image `index` and store it; one that arrived incomplete, or that a step could not
        deliver, is kept aside instead (never at its planned path)."""
        fmt = self._check_format(data, f"image {index}")
        target = self.job.outputs.final(index)
        self._check_size(data, fmt, index)
        try:
            delivered, facts = deliver(data, fmt, self.job)
        except _Incomplete as exc:
            # Never a success, never at the planned path; the paid-for bytes go aside, named for what they are.
            rescued = rescue_output(target, data, "incomplete")
            where = f"its bytes are kept at {rescued}" if rescued else "its bytes could not be kept"
            message = f"image {index} is incomplete: {exc.message}; nothing was saved at {target}, {where}"
            hint = "the image was cut short or damaged on the way and may still be billed; run again"
            self.incomplete.append((message, hint))
            return
        except StepFailed as exc:
            self.keep_aside(index, target, data, exc)
            return
        run = current_run()
        for image in delivered:
            target = self.job.outputs.final(index, image.size)
            path = self.store(index, target, image.data, fmt, revised_prompt, facts)
            if path is not None and image.thumb is not None and run.sheet is not None:
                run.sheet[path_key(path)] = image.thumb
        caution = IMAGE_FORMATS[fmt].caution if fmt in IMAGE_FORMATS else None
        said = caution(memoryview(data)) if caution else None
        if said:  # saved all the same: the image is whole and paid for; what it holds is the user's to judge
            self.progress.warn(f"image {index} ({target}): {said}")

    def _check_size(self, data: bytes, fmt: str, index: int) -> None:
        """Warn when the API's image is not the size asked for (the steps still make every target exact)."""
        asked = self.job.params.get("size")
        if not asked or asked == "auto" or fmt not in IMAGE_FORMATS:
            return
        info = IMAGE_FORMATS[fmt].info(data[:65536])
        got = f"{info.width}x{info.height}"
        if info.width and got != asked:
            self.progress.warn(f"image {index} came back {got}, not the {asked} asked for")

    def store(
        self, index: int, target: str, data: bytes, fmt: str, revised_prompt: Any, facts: Mapping[str, Any]
    ) -> Optional[str]:
        """Commit a delivered final image to its planned path (the one atomic write); the path written. It is
        paid for: when the path cannot be written (disk full, permissions, a file locked by a viewer on
        Windows), it is kept in the temporary folder instead and perform() reports where."""
        try:
            path = write_output(target, data, self.job.overwrite)
        except OSError as exc:
            rescued = rescue_output(target, data)
            where = f"kept at {rescued}" if rescued else "and could not be kept anywhere"
            self.unsaved.append(f"could not write {target} ({exc.strerror or exc}); the image is {where}")
            return None
        if path != target:
            self.progress.warn(f"{target} appeared during the run, so the image was saved as {path}")
        prompt = revised_prompt if isinstance(revised_prompt, str) and revised_prompt else None
        self.images.append(SavedImage(path, index, len(data), fmt, prompt, facts, image_info(data, fmt)))
        self.progress.note(f"image {index} saved: {path}")
        return path

    def keep_aside(self, index: int, target: str, source: bytes, exc: StepFailed) -> None:
        """A step could not deliver image `index`: the paid-for bytes go beside the planned path as
        <stem>.source<ext> (and the step's own result as <stem>.unverified<ext>); the planned path stays empty."""
        root, ext = os.path.splitext(target)
        kept = []
        for label, data in (("source", source), ("unverified", exc.output)):
            if data is None:
                continue
            try:
                kept.append(write_output(f"{root}.{label}{ext}", data, self.job.overwrite))
            except OSError:
                rescued = rescue_output(target, data, label)
                if rescued:
                    kept.append(rescued)
        where = f"kept: {', '.join(kept)}" if kept else "its bytes could not be kept"
        hint = exc.hint or "the image is paid for: the source is kept; see references/images.md"
        message = f"image {index}: {exc.message}; nothing was saved at {target}; {where}"
        self.incomplete.append((message, hint))


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
            reset = isinstance(exc, ConnectionResetError)
            reason = "reset by the server" if reset else _describe_os_error(exc)
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
        if collector.arrived() < job.n:
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
        for chunk in iter_body(response, sink, job.connection.timeout, collector):
            body += chunk
            if len(body) >= ERROR_BODY_LIMIT:
                break
    except NetworkError:
        pass  # nothing was generated, so nothing is billed: the status and what arrived say enough
    return bytes(body[:ERROR_BODY_LIMIT])


def consume_response(
    response: http.client.HTTPResponse, job: Job, collector: Collector, sink: Optional[RawSink]
) -> None:
    """Read a successful response, JSON or event stream (by Content-Type), handing images to the collector."""
    content_type = (response.headers.get("content-type") or "").lower()
    chunks = iter_body(response, sink, job.connection.timeout, collector)
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
                    f"malformed JSON in a {printable(event.event, 80)!r} event of the stream",
                    hint="run again; --save-response keeps the raw stream for a report",
                ) from None
            if not isinstance(obj, dict):
                raise ResponseError(
                    f"a {printable(event.event, 80)!r} event of the stream is not a JSON object"
                )
            event_type = str(obj.get("type", ""))
            # An `error` event may carry its fields at the top level, without an "error" object (both routes).
            if (obj.get("error") or event_type == "error") and not event_type.startswith("response."):
                raise _error_from_payload(
                    obj["error"] if obj.get("error") else obj, request_id=response.headers.get("x-request-id")
                )
            job.route.read_event(obj, blobs, collector)
            del event, obj, blobs  # free this event's buffer now, not when the next event is complete
        collector.raise_incomplete()
        if not (collector.images or collector.unsaved):
            raise ResponseError(
                "the event stream ended before the final image arrived; the image may still be "
                "billed" + _kept(collector),
                hint="run again",
            )
        return
    # n planned images may take n times the base64 of one, plus room for the rest of the body.
    limit = max(MAX_JSON_BYTES, job.n * MAX_IMAGE_B64_BYTES + _MiB)
    declared = getattr(response, "length", None)
    if isinstance(declared, int) and declared > limit:
        raise _body_too_large(f"declares {declared:,} bytes, over the limit of {limit:,}", job.n)
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise _body_too_large(f"is over {limit:,} bytes, the limit", job.n)
    try:
        obj, blobs = decode_json_lean(body)
    except ValueError:
        snippet = shown_text(body, 120)
        raise ResponseError(
            f"the response is not valid JSON ({len(body):,} bytes, starting {snippet!r})",
            hint="check --base-url points at the API; run again",
        ) from None
    if isinstance(obj, dict) and obj.get("error"):
        raise _error_from_payload(obj["error"], request_id=response.headers.get("x-request-id"))
    job.route.read_body(obj, blobs, collector)
    collector.raise_incomplete()
    if not (collector.images or collector.unsaved):
        said = collector.said()
        raise ResponseError(
            "the response holds no image" + (f"; the model said: {printable(said, 300)}" if said else ""),
            hint="make the request explicit about wanting an image" if said else "run again",
        )


def _body_too_large(what: str, images: int) -> ResponseError:
    return ResponseError(
        f"the JSON response {what} for {images} image(s); not read further",
        hint="check --base-url points at the API; --save-response keeps what arrived",
    )


class Outcome(NamedTuple):
    """The result of a run, for printing."""

    job: Job
    collector: Collector
    request_id: Optional[str] = None
    elapsed: float = 0.0
    saved_response: Optional[str] = None
    metadata: Sequence[str] = ()  # the --metadata sidecars written
    contact_sheet: Optional[Dict[str, Any]] = None  # --contact-sheet: its path and the image in each cell


def plan_contact_sheet(path: Optional[str], jobs: Sequence[Job], images: int) -> None:
    """--contact-sheet PATH: refused before sending unless it can be made (PNG outputs, a .png that is no
    other file of the run); the sheet is the run's own summary, made anew by each run (a resumed batch
    included). The run then keeps a thumbnail of each image it delivers, at the size of the sheet's cells."""
    if not path:
        return
    bad = next((job for job in jobs if job.output_format != "png"), None)
    if bad is not None:
        raise UsageError(
            f"--contact-sheet needs .png outputs, not {bad.output_format} (this program reads PNG only)",
            hint="name the outputs .png, or drop --contact-sheet",
        )
    key = path_key(path)
    for job in jobs:
        others = (
            planned_files(job) + [image.path for image in job.images] + ([job.mask.path] if job.mask else [])
        )
        if any(path_key(other) == key for other in others):
            raise UsageError(
                f"--contact-sheet {path} is also a file of the run (an image, an input or a mask)",
                hint="give the sheet a name of its own",
            )
    check_writable(path, True, "--contact-sheet")
    run = current_run()
    columns = math.isqrt(max(images, 1) - 1) + 1
    run.sheet_side = max(1, min(SHEET_CELL, (SHEET_WIDTH - SHEET_GAP * (columns + 1)) // columns))
    run.sheet = {}


def write_contact_sheet(
    path: str, entries: Sequence[Tuple[Optional[str], str]], overwrite: bool, warn: Notify
) -> Optional[Dict[str, Any]]:
    """The contact sheet of every delivered image, in the order of `entries` (job, planned path): the
    thumbnails made as they were delivered, or (a resumed batch's earlier images) read from disk; one PNG,
    written atomically. Its path and each cell's job and image, or None (a warning says why)."""
    thumbs: List[Pixels] = []
    cells: List[Dict[str, Any]] = []
    made = current_run().sheet or {}
    for job_name, planned in entries:
        thumb = made.get(path_key(planned))
        if thumb is None and os.path.isfile(planned):
            try:
                with open(planned, "rb") as handle:
                    thumb = thumbnail(decode_png(handle.read(MAX_IMAGE_BYTES + 1)), current_run().sheet_side)
            except (OSError, ImageDataError) as exc:
                warn(f"{planned} is left off the contact sheet: {exc}")
                continue
        if thumb is not None:
            thumbs.append(thumb)
            cells.append({"job": job_name, "path": planned})
    if not thumbs:
        warn(f"no image was delivered, so no contact sheet was written to {path}")
        return None
    try:
        with current_run().pixel_lock:
            sheet, boxes = contact_sheet(thumbs, SHEET_WIDTH, current_run().sheet_side, SHEET_GAP)
            data = encode_png(sheet)
    except ImageDataError as exc:
        warn(f"no contact sheet was written to {path}: {exc}")
        return None
    try:
        written = write_output(path, data, True)
    except OSError as exc:
        warn(f"could not write the contact sheet {path}: {exc.strerror or exc}; the images are saved")
        return None
    for cell, (x, y, w, h) in zip(cells, boxes):
        cell.update(x=x, y=y, width=w, height=h)
    return {"path": written, "width": sheet.width, "height": sheet.height, "cells": cells}


def perform_with_sheet(job: Job, request: HttpRequest, sheet: Optional[str], warn: Notify) -> Outcome:
    """perform(), then the --contact-sheet of its images (written from what was saved when it failed too)."""
    if not sheet:
        return perform(job, request)
    entries = [(None, final) for final in job.outputs.finals()]
    try:
        outcome = perform(job, request)
    except GptImageError:
        write_contact_sheet(sheet, entries, job.overwrite, warn)
        raise
    return outcome._replace(contact_sheet=write_contact_sheet(sheet, entries, job.overwrite, warn))


def describe_dry_run(job: Job, request: HttpRequest) -> Dict[str, Any]:
    """The --dry-run object: the exact request (key redacted) and the planned output files."""
    described: Dict[str, Any] = {"ok": True, "dry_run": True, "command": job.command, "model": job.model}
    if job.text_model:
        described["text_model"] = job.text_model
    described.update(request.describe())
    if job.extra_body:
        described["unchecked"] = list(job.extra_body)  # the --extra-body fields in the body or parts above
    finals = job.outputs.finals()
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
    described["steps"] = describe_steps(job)
    described["timeout_s"] = job.connection.timeout
    described["deadline_s"] = job.connection.deadline.seconds if job.connection.deadline else None
    described["retries"] = job.connection.retries
    described["estimated_cost"] = estimate_cost(job)
    described["warnings"] = list(job.warnings)
    described["notes"] = list(job.notes)
    return described


def perform(
    job: Job, request: HttpRequest, progress: Optional[Progress] = None, gate: Optional[RateGate] = None
) -> Outcome:
    """Send the request and save what comes back (a dry run is describe_dry_run's)."""
    progress = progress or Progress(job.quiet)
    for note in job.notes:
        progress.note(note)
    collector = Collector(job, progress)
    what = "streaming" if job.stream else "waiting for"
    progress.begin(f"{job.command}: {what} {job.model} at {request.url}")
    sink: Optional[RawSink] = None
    try:
        response = open_response(request, job.connection, progress.note, gate)
        request_id = response.headers.get("x-request-id")
        with response:
            if job.save_response:
                try:
                    sink = RawSink(job.save_response, job.overwrite)
                except OSError as exc:  # the reply is still worth reading: its images are paid for
                    progress.warn(
                        f"cannot save the raw response to {job.save_response}: {exc.strerror or exc}"
                    )
            if 300 <= response.status < 400:
                location = printable(response.headers.get("location") or "an unnamed address", 300)
                raise ApiError(
                    f"API error {response.status}: redirected to {location}; not followed, so the key and the "
                    "request stay with --base-url",
                    hint="set --base-url (or OPENAI_BASE_URL) to the final address",
                    status=response.status,
                    request_id=request_id,
                )
            if response.status >= 400:
                body = read_error_body(response, sink, job, collector)
                raise api_error(response.status, body, response.headers, hints=job.connection.provider.hints)
            consume_response(response, job, collector, sink)
    except BaseException as exc:
        progress.end()
        if sink is not None:
            # Keep what arrived when the API answered with an error; drop it on a local failure or Ctrl-C.
            if isinstance(exc, (ApiError, ResponseError, NetworkError)):
                _commit_raw(sink, progress)
            else:
                sink.discard()
        if isinstance(exc, GptImageError) and collector.response_id:
            # A reply without an image still has an id to follow up on (--previous-response-id).
            exc.details.setdefault("response_id", collector.response_id)
            collector.announce_response_id()
        raise
    progress.end()
    outcome = Outcome(job, collector, request_id, time.monotonic() - progress.started)  # since begin()
    if sink is not None:
        outcome = outcome._replace(saved_response=_commit_raw(sink, progress))
    try:
        if job.metadata:
            outcome = outcome._replace(metadata=write_metadata(job, request, outcome))
    except OSError as exc:
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
    if collector.said():  # a note: --quiet hides it
        progress.note("model said: " + printable(collector.said(), 500))
    return outcome


def _commit_raw(sink: RawSink, progress: Progress) -> Optional[str]:
    """Move the --save-response copy into place; a copy that cannot be written is a warning (the images are
    what was paid for), and leaves no temporary file."""
    try:
        path = sink.commit()
    except OSError as exc:
        progress.warn(f"could not save the raw response to {sink.path} ({exc.strerror or exc}); not kept")
        return None
    if path != sink.path:
        progress.warn(f"{sink.path} appeared during the run, so the raw response was saved as {path}")
    return path


def write_metadata(job: Job, request: HttpRequest, outcome: Outcome) -> List[str]:
    """Write a <image>.json sidecar per final image, so a result can be traced and reproduced."""
    collector = outcome.collector
    sent = request.sent()
    inputs = [
        {"path": img.path, "sha256": file_sha256(img.path), "bytes": img.size}
        for img in job.images + ((job.mask,) if job.mask else ())
    ]
    written = []
    for image in collector.images:
        record = {
            "tool": f"gpt-image-2 {__version__}",
            "command": job.command,
            "model": job.model,
            "text_model": job.text_model,
            "prompt": job.prompt,
            "input_texts": list(getattr(job.inputs, "texts", ())) or None,
            "revised_prompt": image.revised_prompt,
            "url": request.url,
            "sent": sent,
            "unchecked": list(job.extra_body or ()),  # the fields of `sent` that came from --extra-body
            "inputs": inputs,
            "image": image.as_dict(),
            "steps": describe_steps(job),
            "request_id": outcome.request_id,
            "response_id": collector.response_id,
            "usage": collector.usage_report(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "elapsed_s": round(outcome.elapsed, 3),
        }
        text = redact(json.dumps(record, indent=2, ensure_ascii=False)) + "\n"
        planned = metadata_path(image.path)
        written.append(write_output(planned, text.encode("utf-8"), job.overwrite))
        if written[-1] != planned:
            collector.progress.warn(
                f"{planned} appeared during the run, so the metadata was saved as {written[-1]}"
            )
    return written


# --- Running: many jobs (--batch) --------------------------------------------------------------------------

MAX_BATCH_JOBS = 1_000_000
BAD_LINES_LISTED = 10  # the bad lines of a jobs file listed after the first one; the rest are counted


class JobLine(NamedTuple):
    """One job of a jobs file: where it is, its name ({job}) and its own options (a line overrides the
    command line's)."""

    line: int
    name: str
    options: Dict[str, Any]


class BatchJob(NamedTuple):
    """A validated job of a batch: its line, its planned images, whether they are all there already, its
    estimated cost, and the Job itself (validated once, before anything is sent)."""

    line: JobLine
    finals: Tuple[str, ...]
    skip: bool
    cost: Optional[float]
    job: Optional[Job] = None  # None for a job rebuilt from a Batch API state file


def option_kinds(route: Route) -> Dict[str, Option]:
    """The route's options by name (argparse dest), as a line of a jobs file may give them."""
    found = [opt for _, group in COMMON_ARGUMENTS for opt in group]
    found += [ARGUMENTS[a if isinstance(a, str) else a[0]] for a in route.arguments]
    kinds = {opt.name: opt for opt in found}
    return {name: opt for name, opt in kinds.items() if name not in RUN_OPTIONS}


def _line_value(name: str, value: Any, opt: Option, where: str) -> Any:
    """A jobs-file value in the form the validator takes: flags as booleans, repeatable options as lists."""
    action = opt.keywords.get("action")
    if value is None:
        return None
    if opt.structured and isinstance(value, dict):
        return value  # the object itself; a string is JSON text, as on a command line (validate() reads both)
    if action == "store_true":
        if not isinstance(value, bool):
            raise UsageError(f"{where}: {name} takes true or false, not {printable(json.dumps(value), 40)}")
        return value
    if action in ("append", _InOrder):
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise UsageError(f"{where}: {name} takes a string or a list of strings")
        return values
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UsageError(
            f"{where}: {name} takes a string or a number, not {printable(json.dumps(value), 40)}"
        )
    whole = opt.keywords.get("type") is int
    if isinstance(value, float) and whole and not value.is_integer():
        raise UsageError(f"{where}: {name} takes a whole number, not {value:g}")
    return str(int(value) if isinstance(value, float) and whole else value)


def parse_job_line(text: str, where: str, kinds: Mapping[str, Option]) -> Optional[Dict[str, Any]]:
    """A jobs-file line as options: an object of long option names, a JSON string prompt, or a plain prompt;
    None for a blank line or a # comment."""
    stripped = text.strip()
    if not stripped or stripped.startswith("#"):
        return None
    if stripped[0] not in '{"':
        return {"prompt": stripped}
    try:
        value = json.loads(stripped)
    except RecursionError:
        raise UsageError(f"{where}: the JSON is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if isinstance(value, str):
        return {"prompt": value}
    if not isinstance(value, dict):
        raise UsageError(f"{where}: a line is a JSON object of options, a JSON string, or a prompt")
    options: Dict[str, Any] = {}
    for key, item in value.items():
        name = str(key).lstrip("-").replace("-", "_")
        if name == "id":
            if not isinstance(item, (str, int)) or isinstance(item, bool) or not str(item).strip():
                raise UsageError(f"{where}: id must be a non-empty string or a number")
            options["id"] = printable(str(item).strip(), 200)
        elif name in RUN_OPTIONS:
            raise UsageError(
                f"{where}: --{name.replace('_', '-')} shapes the whole run; give it on the command line"
            )
        elif name not in kinds:
            raise UsageError(
                f"{where}: unknown option {printable(str(key), 60)!r}", hint="use the long option names"
            )
        else:
            options[name] = _line_value(name, item, kinds[name], where)
            if name in ("prompt", "prompt_file") and item is not None:  # one of them wins: this line's
                options["prompt_file" if name == "prompt" else "prompt"] = None
    return options


def _bad_line(exc: GptImageError) -> str:
    return exc.message + (f" ({exc.hint})" if exc.hint else "")


def read_job_lines(path: str, route: Route) -> Tuple[List[JobLine], List[Tuple[int, str]]]:
    """Every job of a jobs file (JSON Lines; '-' is standard input), named by its id or its number, and the
    lines that are not jobs (FILE:LINE and the problem)."""
    kinds = option_kinds(route)
    found: List[Tuple[int, Dict[str, Any]]] = []
    bad: List[Tuple[int, str]] = []
    try:
        if path == "-":
            handle: IO[bytes] = getattr(sys.stdin, "buffer", None) or io.BytesIO(sys.stdin.read().encode())
        else:
            handle = open(path, "rb")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise UsageError(f"--batch {path}: cannot read it ({exc.strerror or exc})") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path}:{number}"
            try:
                options = parse_job_line(raw.decode("utf-8-sig" if number == 1 else "utf-8"), where, kinds)
            except UnicodeDecodeError:
                bad.append((number, f"{where}: not valid UTF-8"))
                continue
            except UsageError as exc:
                bad.append((number, _bad_line(exc)))
                continue
            if options is not None:
                found.append((number, options))
                if len(found) > MAX_BATCH_JOBS:
                    raise UsageError(f"--batch {path}: over {MAX_BATCH_JOBS:,} jobs", hint="split the file")
    if not found and not bad:
        raise UsageError(f"--batch {path}: no jobs in it", hint="one prompt or JSON object a line")
    width = len(str(len(found)))
    jobs, names = [], set()
    for index, (number, options) in enumerate(found, start=1):
        name = str(options.pop("id", "") or f"{index:0{width}d}")
        if name in names:
            bad.append((number, f"{path}:{number}: id {name!r} is used by an earlier line"))
        names.add(name)
        jobs.append(JobLine(number, name, options))
    return jobs, bad


def refuse_bad_lines(bad: Sequence[Tuple[int, str]]) -> None:
    """One error for every bad line of a jobs file: the first line's problem and how many lines are bad;
    the next lines' problems (`FILE:LINE: problem`, a line's first problem only) ride on it as `problems`,
    up to BAD_LINES_LISTED, and how many more as `more_problems`."""
    if not bad:
        return
    by_line: Dict[int, str] = {}
    for number, problem in sorted(bad, key=lambda entry: entry[0]):
        by_line.setdefault(number, problem)
    problems = list(by_line.values())
    first = problems[0]
    if len(problems) > 1:
        first += f"; {len(problems)} lines are bad in all"
    listed = problems[1 : 1 + BAD_LINES_LISTED]
    more = len(problems) - 1 - len(listed)
    raise UsageError(first, hint="fix those lines; nothing was sent", problems=listed, more_problems=more)


def job_options(base: Mapping[str, Any], job: JobLine) -> Dict[str, Any]:
    """The command line's options overridden by the line's, with {job} in the output filled in."""
    options = dict(base)
    options.update(job.options)
    if any(kind in job.options for kind in _INPUT_KINDS):
        options["input_order"] = None  # the command line's order of inputs does not apply to the line's
    for name in ("output", "save_response", "save_mask"):
        value = options.get(name)
        if isinstance(value, str):
            options[name] = value.replace("{job}", job.name)
    return options


def plan_batch(
    base: Mapping[str, Any], config: Config, route: Route, path: str, reporter: Reporter
) -> List[BatchJob]:
    """Read and validate every job before anything is sent; refuse bad lines and two jobs on one path."""
    lines, bad = read_job_lines(path, route)
    planned: List[BatchJob] = []
    owners: Dict[str, str] = {}
    warnings: Dict[str, None] = {}

    def refuse(line: JobLine, problem: str) -> None:
        bad.append((line.line, f"{path}:{line.line}: {problem}"))

    for line in lines:
        options = job_options(base, line)
        if not options.get("output"):
            refuse(line, "no output: give --output (with {job}) or an output in the line")
            continue
        try:
            job = validate(options, config, resume=True)
        except GptImageError as exc:
            refuse(line, _bad_line(exc))
            continue
        warnings.update(dict.fromkeys(job.warnings))
        if planned and planned[-1].job is not None and planned[-1].job.connection == job.connection:
            job = job._replace(connection=planned[-1].job.connection)  # one copy, not one a job
        for file in planned_files(job):
            key = path_key(file)
            if key in owners:
                refuse(line, f"{file} is planned by job {owners[key]} too (use {{job}} in the output)")
                break
            owners[key] = line.name
        finals = tuple(job.outputs.finals())
        present = [os.path.exists(f) for f in finals]
        skip = all(present) and not job.overwrite
        if any(present) and not skip and not job.overwrite:
            there, missing = finals[present.index(True)], finals[present.index(False)]
            refuse(
                line,
                f"{there} exists but {missing} does not (a job cut short?); remove its images, or pass "
                "--overwrite",
            )
            continue
        estimate = estimate_cost(job)
        planned.append(BatchJob(line, finals, skip, estimate["usd"] if estimate else None, job))
    refuse_bad_lines(bad)
    for message in warnings:  # said once, however many jobs it concerns
        reporter.warn(message)
    return planned


class Tally(Stderr):
    """A batch's results as its jobs end, each reported on stdout at once, then the summary; and its one
    status line on stderr: the counts, redrawn on a terminal (milestones otherwise), lines printed above."""

    def __init__(
        self, path: str, jobs: int, todo: int, reporter: Reporter, skipped: int, price_factor: float
    ) -> None:
        super().__init__(reporter.quiet)
        self.path = path
        self.jobs = jobs
        self.total = todo  # the jobs to run, which the status line counts
        self.reporter = reporter
        self.skipped = skipped
        self.price_factor = price_factor  # BATCH_PRICE_FACTOR on the Batch API
        self.saved = self.failed = self.not_run = self.images = self.in_flight = self.milestone = 0
        self.usage: Dict[str, Any] = {}
        self.cost = 0.0
        self.failures: List[str] = []
        self.status_text: Optional[str] = None  # the Batch API's status instead of the counts
        self.printed = ""

    def redrawn(self) -> Optional[str]:
        """On a terminal, the counts at once below every printed line."""
        return self.status() if self.tty and not self.quiet else None

    def status(self) -> str:
        """done/total, failed, in flight and time left."""
        if self.status_text:
            return self.status_text
        done = self.saved + self.failed
        text = f"batch: {done}/{self.total} done, {self.failed} failed, {self.in_flight} in flight"
        if 0 < done < self.total:
            left = (time.monotonic() - self.started) / done * (self.total - done)
            text += f", about {left:.0f} s left"
        return text

    def update(self, force: bool = False) -> None:
        """Show the counts: redrawn on a terminal, every tenth of the batch otherwise (or when forced and new)."""
        if self.quiet:
            return
        done = self.saved + self.failed
        with self.lock:
            if self.tty:
                self._draw(self.status())
            elif force and self.status() != self.printed:
                self.printed = self.status()
                self.stream.write(printable(self.printed) + "\n")
            elif not force and (done * 10 // max(self.total, 1) > self.milestone or done == self.total):
                self.milestone = done * 10 // max(self.total, 1)
                self.stream.write(self.status() + "\n")
            self.stream.flush()

    def add(self, item: BatchJob, outcome: Optional[Outcome], error: Optional[GptImageError]) -> None:
        """One job ended: saved (outcome) or failed (error)."""
        self.reporter.job(item, outcome, error)
        if error is not None:
            self.failed += 1
            where = f"job {item.line.name} ({self.path}:{item.line.line})"
            self.failures.append(f"{where}: {error.message}")
            if not self.reporter.as_json:  # a JSON line says it
                self.print(f"{where} failed: {error.message}")
        elif outcome is not None:
            self.saved += 1
            self.images += len(outcome.collector.images)
            for key, value in (outcome.collector.usage_report() or {}).items():
                if isinstance(value, int) and not isinstance(value, bool):
                    self.usage[key] = self.usage.get(key, 0) + value
            self.cost += (outcome.collector.estimated_cost() or 0.0) * self.price_factor
        self.update()

    def finish(self, code: int, stop_error: Optional[GptImageError], **extra: Any) -> int:
        """Print the summary (a JSON line with --json) and the one error line; return the exit code."""
        if code == EXIT_OK and self.failed:
            code = EXIT_BATCH_FAILED
        elapsed = round(time.monotonic() - self.started, 3)
        summary = {
            "summary": True,
            "ok": code == EXIT_OK,
            "jobs": self.jobs,
            "saved": self.saved,
            "skipped": self.skipped,
            "failed": self.failed,
            "not_run": self.not_run,
            "images": self.images,
            "usage": self.usage or None,
            "estimated_cost_usd": round(self.cost, 4) if self.usage else None,
            "elapsed_s": elapsed,
            "exit_code": code,
            **extra,
        }
        line = f"batch done in {elapsed:.1f} s: {self.saved} saved, {self.skipped} skipped, "
        line += f"{self.failed} failed" + (f", {self.not_run} not run" if self.not_run else "")
        line += f", about ${self.cost:.4f} (estimate)" if self.usage else ""
        self.reporter.summary(summary, line)
        if code == EXIT_INTERRUPTED:
            self.reporter.print("interrupted")
        elif stop_error is not None:
            self.reporter.print(error_line(stop_error))
        elif self.failed:
            failed = BatchFailed(
                f"{self.failed} of {self.jobs} jobs failed; the first: {self.failures[0]}",
                hint="run the same command again to retry only what is left",
            )
            self.reporter.print(error_line(failed))
        return code


class JobProgress(Progress):
    """A batch job's progress: quiet; each line it prints goes above the batch's status line, named by it."""

    def __init__(self, batch: Tally, name: str) -> None:
        super().__init__(quiet=True)
        self.batch, self.name = batch, name

    def print(self, text: str) -> None:
        """The line, named by the job, above the batch's status line."""
        self.batch.print(f"job {self.name}: {text}")


def dooms_every_job(exc: GptImageError) -> bool:
    """A failure no other job can escape: a rejected key, no quota."""
    status, code = exc.details.get("status"), str(exc.details.get("code") or "")
    return status in (401, 403) or code == "insufficient_quota"


def unknown_model(exc: GptImageError) -> bool:
    """A failure every job with the same model (or Azure deployment) would meet."""
    status, code = exc.details.get("status"), str(exc.details.get("code") or "")
    if code in ("model_not_found", "DeploymentNotFound"):
        return True
    return status == 404 and any(word in exc.message.lower() for word in ("model", "deployment"))


def run_batch(options: Mapping[str, Any], config: Config, reporter: Reporter) -> int:
    """--batch FILE: validate every line, then run the jobs N at a time under one rate limit."""
    import queue
    import threading

    path = str(options["batch"])
    settings = Settings(options, config)
    workers = int(settings.number("jobs", DEFAULT_JOBS, int, 1, MAX_JOBS))
    if options.get("prompt_file") is not None:  # read once, not once a job (stdin cannot be read twice)
        options = dict(options, prompt=read_prompt(options), prompt_file=None)
    if settings.flag("batch_api"):
        return run_batch_api(options, config, reporter)
    jobs = plan_batch(options, config, ROUTE_NAMES[options["command"]], path, reporter)
    check_budget(settings, [j.cost for j in jobs if not j.skip], "batch")
    sheet = options.get("contact_sheet")
    plan_contact_sheet(sheet, [j.job for j in jobs if j.job is not None], sum(len(j.finals) for j in jobs))
    if settings.flag("dry_run"):
        return dry_run_batch(jobs, reporter)
    require_key(check_connection(settings, config, []))
    todo = [j for j in jobs if not j.skip]
    tally = Tally(path, len(jobs), len(todo), reporter, len(jobs) - len(todo), 1.0)
    gate = RateGate(workers)  # stopped, it also tells the workers to take no new job
    results: queue.Queue[Any] = queue.Queue()
    pending = iter(todo)
    take = threading.Lock()
    fatal: List[GptImageError] = []
    bad_models: Dict[str, str] = {}

    def work() -> None:
        while not gate.stopping:
            with take:
                item = next(pending, None)
            if item is None:
                break
            gate.acquire()
            if gate.stopping:
                gate.release(False)
                continue
            job = item.job
            assert job is not None
            model = job.model
            with tally.lock:
                tally.in_flight += 1
            outcome: Optional[Outcome] = None
            try:
                if model in bad_models:
                    raise ApiError(
                        f"not sent: model {model} was not found for an earlier job ({bad_models[model]})"
                    )
                outcome = perform(job, job.route.build_request(job), JobProgress(tally, item.line.name), gate)
                results.put((item, outcome, None))
            except NotRun:
                pass  # never sent: the batch was stopping
            except GptImageError as exc:
                # An unknown model dooms every job when it is the command line's; one a line chose, only the
                # jobs that chose it too.
                own_model = any(k in item.line.options for k in ("model", "tool_model"))
                if dooms_every_job(exc) or (unknown_model(exc) and not own_model):
                    fatal.append(exc)
                    gate.stop()
                elif unknown_model(exc):
                    bad_models.setdefault(model, exc.message)  # later jobs with that model are not sent
                results.put((item, None, exc))
            except Exception as exc:  # a bug in one job: recorded, and the others go on
                results.put((item, None, GptImageError(f"internal error ({type(exc).__name__}: {exc})")))
            finally:
                gate.release(outcome is not None)
                with tally.lock:
                    tally.in_flight -= 1
        results.put(None)

    threads = [run_thread(work, f"gpt-image-job-{i}", start=False) for i in range(workers)]
    skipped = [j for j in jobs if j.skip]
    for done_before in skipped:
        reporter.job(done_before, None, None)
    if skipped:
        names = [j.line.name for j in skipped[:10]] + (
            [f"and {len(skipped) - 10} more"] if len(skipped) > 10 else []
        )
        tally.note(f"{len(skipped)} job(s) already done, skipped: {', '.join(names)}")
    for thread in threads:
        thread.start()
    finished = 0
    interrupted = False
    while finished < len(threads):
        try:
            result = results.get(timeout=0.5)
        except queue.Empty:
            continue
        except KeyboardInterrupt:
            if interrupted:
                run = current_run()
                run.aborting = True
                for temp in list(run.temp_files):
                    _remove(temp)
                tally.close()
                raise
            interrupted = True
            gate.stop()
            rearm_stop_signals()
            tally.print("stopping: no new jobs start; those in flight finish (Ctrl-C again to abort)")
            continue
        if result is None:
            finished += 1
        else:
            tally.add(*result)
    tally.close()
    tally.not_run = len(todo) - tally.saved - tally.failed
    extra = batch_sheet(sheet, jobs, settings.flag("overwrite"), reporter)
    if interrupted:
        return tally.finish(EXIT_INTERRUPTED, None, **extra)
    if fatal:
        stop_error = ApiError(
            f"the batch stopped: {fatal[0].message}; {tally.not_run} job(s) not sent", hint=fatal[0].hint
        )
        return tally.finish(EXIT_API, stop_error, **extra)
    return tally.finish(EXIT_OK, None, **extra)


def batch_sheet(
    path: Optional[str], jobs: Sequence[BatchJob], overwrite: bool, reporter: Reporter
) -> Dict[str, Any]:
    """A batch's contact sheet, written at its end (after a partial failure too, from what was saved; a
    resumed batch's earlier images included), for its summary."""
    if not path:
        return {}
    entries = [(item.line.name, final) for item in jobs for final in item.finals]
    made = write_contact_sheet(path, entries, overwrite, reporter.warn)
    if made is not None:
        reporter.note(f"contact sheet: {made['path']} ({len(made['cells'])} images)")
    return {"contact_sheet": made}


def dry_run_batch(jobs: Sequence[BatchJob], reporter: Reporter) -> int:
    """--dry-run with --batch: one JSON line per job (its request and outputs), then the total estimate."""
    for item in jobs:
        job = item.job
        assert job is not None
        shown = describe_dry_run(job, job.route.build_request(job))
        reporter.dry_run({"job": item.line.name, "line": item.line.line, "skipped": item.skip, **shown}, None)
    costs = [item.cost for item in jobs if not item.skip]
    summary = {
        "summary": True,
        "dry_run": True,
        "jobs": len(jobs),
        "skipped": len(jobs) - len(costs),
        "estimated_cost_usd": round(sum(c for c in costs if c is not None), 4),
        "jobs_without_estimate": costs.count(None),
    }
    reporter.dry_run(summary, None)
    return EXIT_OK


def check_budget(settings: Settings, costs: Sequence[Optional[float]], what: str) -> None:
    """--max-cost USD: refuse before sending when the estimate is over it, or cannot be made."""
    limit = settings.number("max_cost", None, float, 0, 1e9)
    if limit is None:
        return
    if any(c is None for c in costs):
        raise UsageError(
            f"--max-cost {limit:g}: the cost of this {what} cannot be estimated (a model without price data)",
            hint="drop --max-cost, or use a known model",
        )
    total = sum(c or 0.0 for c in costs)
    if total > limit:
        raise UsageError(
            f"the {what} is estimated at ${total:.4f}, over --max-cost {limit:g}",
            hint="raise --max-cost, or lower the quality, size or number of images",
        )


# --- Running: the Batch API (--batch FILE --batch-api) -----------------------------------------------------
# The same jobs file, sent through OpenAI's Batch API: half price, within 24 h, up to 50,000 requests. The input
# JSONL is written and uploaded (POST /files), the batch created (POST /batches) and polled (GET /batches/ID),
# and the output and error files (GET /files/ID/content) are read a line at a time as they stream in, with no
# copy on disk. A state file beside the jobs file makes the same command, run again, resume instead of
# submitting twice.

BATCH_API_MAX_BYTES = 200_000_000
BATCH_PRICE_FACTOR = 0.5  # the Batch API's price against the synchronous one
BATCH_WINDOW = "24h"
BATCH_POLL_FIRST_S = 5.0  # the first wait between polls; each wait is 1.5 times the last, up to the most
BATCH_POLL_MOST_S = 60.0
BATCH_OPEN = ("validating", "in_progress", "finalizing", "cancelling")
BATCH_STATE_SUFFIX = ".batch-state.json"
BATCH_STATE_VERSIONS = (1, 2)  # those read; the last is written (2 adds each job's pixel steps)
MAX_API_OBJECT_BYTES = 16 * 1024 * 1024  # a File or Batch object, or a list of them


def batch_line(job: Job, name: str) -> Dict[str, Any]:
    """One line of the input JSONL: the job's request, as the route sends it in a batch."""
    assert job.route.batch_body is not None  # check_batch_api_job() said so
    return {
        "custom_id": name,
        "method": "POST",
        "url": "/v1" + job.route.endpoint,
        "body": job.route.batch_body(job),
    }


class PlannedLine(NamedTuple):
    """A job of a Batch API run, with its input line's size, what it shows, and what the state file keeps of
    it (enough to collect its results without checking its inputs again)."""

    item: BatchJob
    size: int  # bytes in the input JSONL, with its line end
    shown: Dict[str, Any]
    record: Dict[str, Any]


def job_record(job: Job, item: BatchJob) -> Dict[str, Any]:
    """What collecting a job's result needs: its line, planned outputs, format and models."""
    return {
        "line": item.line.line,
        "finals": list(item.finals),
        "pattern": job.outputs.pattern,
        "sizes": list(job.outputs.sizes),
        "size": job.params.get("size"),
        "count": job.outputs.count,
        "format": job.output_format,
        "model": job.model,
        "text_model": job.text_model,
        "steps": describe_steps(job),
    }


def job_from_record(
    name: str, record: Mapping[str, Any], route: Route, connection: Connection, overwrite: bool = False
) -> Tuple[BatchJob, Job]:
    """A submitted job, rebuilt from the state file: its results can be saved even when its inputs are gone
    or its model has been shut down since."""
    try:
        finals = tuple(str(f) for f in record["finals"])
        count = int(record["count"])
        item = BatchJob(JobLine(int(record["line"]), name, {}), finals, False, None)
        job = Job(
            route=route, model=str(record["model"]), rules=rules_for(str(record["model"])),
            text_model=record.get("text_model"), prompt=None, params={"size": record.get("size")}, n=count, stream=False,
            partial_images=0, output_format=str(record["format"]),
            outputs=OutputPlan(str(record["pattern"]), count, tuple(str(v) for v in record.get("sizes", ()))),
            inputs=None, connection=connection, dry_run=False, as_json=False, overwrite=overwrite, quiet=True,
            save_response=None, metadata=False, steps=steps_from_description(record.get("steps", [])),
        )  # fmt: skip
    except UsageError as exc:
        raise UsageError(
            f"the batch state file's record of job {name!r} names a pixel step this version lacks ({exc.message})",
            hint="collect it with the version that submitted it",
        ) from None
    except (KeyError, TypeError, ValueError):
        raise UsageError(
            f"the batch state file's record of job {name!r} is damaged",
            hint="remove the state file to start anew",
        ) from None
    return item, job


def plan_batch_lines(jobs: Sequence[BatchJob], path: str) -> Tuple[List[PlannedLine], str]:
    """Every job's input line (checked for the Batch API's limits) and the fingerprint of the whole file."""
    import hashlib

    digest = hashlib.sha256()
    planned, bad = [], []
    for item in jobs:
        job = item.job
        assert job is not None
        try:
            check_batch_api_job(job)
            body, shown = encode_json(batch_line(job, item.line.name))
        except UsageError as exc:
            bad.append((item.line.line, f"{path}:{item.line.line}: {_bad_line(exc)}"))
            continue
        digest.update(json.dumps([shown, item.finals], sort_keys=True).encode("utf-8") + b"\n")
        planned.append(PlannedLine(item, body.length + 1, shown, job_record(job, item)))
    refuse_bad_lines(bad)
    todo = [p for p in planned if not p.item.skip]
    if len(todo) > BATCH_API_MAX_JOBS:
        raise UsageError(
            f"{len(todo):,} jobs; a batch takes at most {BATCH_API_MAX_JOBS:,}", hint="split the jobs file"
        )
    total = 0
    for number, line in enumerate(todo):
        total += line.size
        if total > BATCH_API_MAX_BYTES:
            raise UsageError(
                f"the batch input file would be over {BATCH_API_MAX_BYTES:,} bytes from job {line.item.line.name} "
                f"({path}:{line.item.line.line}) on; {len(todo) - number} of {len(todo)} jobs do not fit",
                hint="move those jobs to another jobs file (large local images weigh most: upload them and use "
                "file ids)",
            )
    return planned, digest.hexdigest()


def api_call(
    connection: Connection, method: str, endpoint: str, notify: Notify, body: Optional[Dict[str, Any]] = None
) -> Any:
    """One Files or Batches API call; its JSON answer (an API error or an unusable answer raises)."""
    if body is not None:
        request = json_request(connection, endpoint, body, stream=False)._replace(method=method)
    else:
        request = bodiless_request(connection, method, endpoint)
    return read_api_object(open_response(request, connection, notify), endpoint)


def bodiless_request(connection: Connection, method: str, endpoint: str) -> HttpRequest:
    """A request without a body (a GET, the cancel POST): the connection's headers, no Content-Type; send()
    then sends no body (and a GET no Content-Length)."""
    headers = connection.headers("application/json", False)
    del headers["Content-Type"]
    return HttpRequest(method, connection.url(endpoint), headers, StreamBody([]))


def read_api_object(response: http.client.HTTPResponse, what: str) -> Any:
    """The JSON object of a Files or Batches API answer; an HTTP error becomes an ApiError."""
    import http.client

    with response:
        try:
            data = response.read(MAX_API_OBJECT_BYTES + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise NetworkError(f"the answer to {what} broke off ({_describe_os_error(exc)})") from None
        if response.status >= 400:
            raise api_error(response.status, data[:ERROR_BODY_LIMIT], response.headers)
    if len(data) > MAX_API_OBJECT_BYTES:
        raise ResponseError(f"the answer to {what} is over {MAX_API_OBJECT_BYTES:,} bytes")
    try:
        return json.loads(data)
    except ValueError:
        raise ResponseError(f"the answer to {what} is not valid JSON", hint="check --base-url") from None


def upload_batch_input(connection: Connection, path: str, notify: Notify) -> str:
    """POST /files (purpose batch), the input JSONL streamed from disk; the file's id."""
    part = FilePart("file", UploadFile(path, os.path.getsize(path), "application/jsonl"))
    body, content_type = encode_multipart([("purpose", "batch")], [part], new_boundary())
    request = HttpRequest("POST", connection.url("/files"), connection.headers(content_type, False), body)
    uploaded = read_api_object(open_response(request, connection, notify), "the upload")
    return checked_id(uploaded.get("id") if isinstance(uploaded, dict) else None, "file")


def find_batch(
    connection: Connection, fingerprint: str, input_file_id: str, notify: Notify
) -> Optional[Dict[str, Any]]:
    """A batch this tool created for this jobs file (by its metadata), among the account's newest."""
    listed = api_call(connection, "GET", "/batches?limit=100", notify)
    data = listed.get("data") if isinstance(listed, dict) else None
    for batch in data[:100] if isinstance(data, list) else []:
        meta = batch.get("metadata") if isinstance(batch, dict) else None
        mine = isinstance(meta, dict) and meta.get("gpt_image_jobs") == fingerprint[:64]
        if mine and batch.get("input_file_id") == input_file_id:
            return batch_object(batch)
    return None


def create_batch(
    connection: Connection, route: Route, input_file_id: str, fingerprint: str, notify: Notify
) -> Dict[str, Any]:
    """POST /batches, never twice blindly: a create that may have reached the server is looked for first."""
    body = {
        "input_file_id": input_file_id,
        "endpoint": "/v1" + route.endpoint,
        "completion_window": BATCH_WINDOW,
        "metadata": {"gpt_image_jobs": fingerprint[:64]},
    }
    once = connection._replace(retries=0)
    for attempt in range(connection.retries + 1):
        try:
            created = api_call(once, "POST", "/batches", notify, body)
        except (NetworkError, ResponseError, ApiError) as exc:
            status = exc.details.get("status")
            refused = isinstance(exc, ApiError) and status is not None and status < 500 and status != 429
            if refused or attempt >= connection.retries:
                raise
            notify(f"creating the batch failed ({exc.message}); looking for it before trying again")
            found = find_batch(connection, fingerprint, input_file_id, notify)
            if found is not None:
                return found
            time.sleep(retry_delay(None, attempt) or 0)
            continue
        return batch_object(created)
    raise AssertionError("unreachable")  # pragma: no cover


def save_state(path: str, state: Mapping[str, Any]) -> None:
    """Write the state file atomically (replacing the last one)."""
    write_output(path, (json.dumps(state, indent=1) + "\n").encode("utf-8"), overwrite=True)


def load_state(path: str) -> Optional[Dict[str, Any]]:
    """The state file of an earlier run, or None."""
    try:
        if os.path.getsize(path) > MAX_API_OBJECT_BYTES * 4:
            raise ValueError("it is far larger than a state file")
        with open(path, "rb") as handle:
            state = json.loads(handle.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"the batch state file {path} cannot be read ({exc})", hint="remove it to start anew"
        ) from None
    if not isinstance(state, dict) or state.get("version") not in BATCH_STATE_VERSIONS:
        raise UsageError(f"{path} is not a batch state file of this tool", hint="remove it to start anew")
    return state


def describe_batch(batch: Mapping[str, Any], started: float) -> str:
    """status, done/total, failed, elapsed."""
    found = batch.get("request_counts")
    counts: Mapping[str, Any] = found if isinstance(found, dict) else {}
    done, failed, total = (counts.get(k, 0) for k in ("completed", "failed", "total"))
    return (
        f"batch {printable(str(batch.get('id')), 80)}: {printable(str(batch.get('status')), 40)}, "
        f"{done}/{total} done, {failed} failed, {time.monotonic() - started:.0f} s"
    )


BATCH_WAIT_MOST_S = 25 * 3600  # the completion window (24 h) and an hour of finalizing: then stop polling


def wait_for_batch(
    connection: Connection, batch: Dict[str, Any], tally: Tally, submitted_at: float
) -> Dict[str, Any]:
    """Poll until the batch is finished (a wait that starts near 5 s and grows to about a minute), within
    --deadline and the batch's own completion window."""
    delay = BATCH_POLL_FIRST_S
    deadline = connection.deadline
    while True:
        tally.status_text = describe_batch(batch, tally.started)
        tally.update(force=True)
        if batch.get("status") not in BATCH_OPEN:
            return batch
        if time.time() - submitted_at > BATCH_WAIT_MOST_S:
            raise NetworkError(f"batch {batch['id']} is still {batch['status']} a day after it was submitted")
        if deadline is not None and deadline.left() < delay:
            time.sleep(max(deadline.left(), 0))
            raise NetworkError(
                f"the run's --deadline of {deadline.seconds:g} s passed while waiting for the batch"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, BATCH_POLL_MOST_S)
        batch = batch_object(api_call(connection, "GET", f"/batches/{batch['id']}", tally.note))


Result = Tuple[Optional[Dict[str, Any]], List[memoryview], str]


def stream_result_lines(
    connection: Connection, file_id: str, most_line: int, most: int, notify: Notify
) -> Iterator[Result]:
    """GET /files/ID/content, a line at a time as it arrives: (the object, its image blobs, a problem or '').

    No copy of the file is kept: each line's images are saved as it arrives, so a download that breaks off
    keeps the jobs already saved, and the next run fetches the file again for the rest."""
    import http.client

    request = bodiless_request(connection, "GET", f"/files/{file_id}/content")
    response = open_response(request, connection, notify)
    got = 0

    def read_line(limit: int) -> bytes:
        nonlocal got
        try:
            line: bytes = response.readline(limit)
        except (OSError, http.client.HTTPException) as exc:
            raise NetworkError(f"the download of {file_id} broke off ({_describe_os_error(exc)})") from None
        got += len(line)
        if got > most:
            raise ResponseError(
                f"the batch file {file_id} is over {most:,} bytes, more than its jobs can fill"
            )
        return line

    with response:
        if response.status >= 400:
            raise api_error(response.status, response.read(ERROR_BODY_LIMIT), response.headers)
        while True:
            line = read_line(most_line + 1)
            if not line:
                return
            if len(line) > most_line and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):  # pass over the rest of a line over the cap
                    line = read_line(FILE_CHUNK_BYTES)
                yield None, [], f"a line over {most_line:,} bytes"
                continue
            if line.isspace():  # isspace() stops at the first other byte; strip() would copy a 2 MB line
                continue
            try:
                obj, blobs = decode_json_lean(line)
            except ValueError:
                yield None, [], "a line that is not valid JSON (the file may be cut short)"
                continue
            yield (obj, blobs, "") if isinstance(obj, dict) else (None, [], "a line that is not an object")


def collect_batch(
    connection: Connection, batch: Dict[str, Any], jobs: Mapping[str, Tuple[BatchJob, Job]], tally: Tally
) -> Set[str]:
    """Save every finished job's images from the output and error files; the custom ids collected."""
    most_n = max((job.n for _, job in jobs.values()), default=1)
    most_line = MAX_IMAGE_B64_BYTES * most_n + 1024 * 1024  # read at call time: tests shrink the caps
    done: Set[str] = set()
    for key in ("output_file_id", "error_file_id"):
        file_id = batch.get(key)
        if file_id is None:
            continue
        file_id = checked_id(file_id, "file")
        lines = stream_result_lines(connection, file_id, most_line, most_line * max(len(jobs), 1), tally.note)
        try:
            for obj, blobs, problem in lines:
                if obj is None:
                    tally.warn(f"{key.replace('_id', '')} has {problem}; skipped")
                    continue
                name = obj.get("custom_id")
                entry = jobs.get(name) if isinstance(name, str) else None
                if entry is None or not isinstance(name, str) or name in done:
                    tally.warn(
                        f"a result for an unknown or repeated job {printable(str(name), 80)!r}; ignored"
                    )
                    continue
                done.add(name)
                outcome, error = save_result(obj, blobs, entry[1], name, tally)
                tally.add(entry[0], outcome, error)
        except (NetworkError, ResponseError) as exc:
            # What arrived is saved; what did not is reported as not collected, and the next run fetches it.
            tally.warn(f"{exc.message}; the jobs it left out are fetched again by the next run")
    return done


def save_result(
    obj: Dict[str, Any], blobs: List[memoryview], job: Job, name: str, tally: Tally
) -> Tuple[Optional[Outcome], Optional[GptImageError]]:
    """One result line: its images saved to the job's planned outputs, or the job's error."""
    response = obj["response"] if isinstance(obj.get("response"), dict) else {}
    body, status, request_id = (response.get(key) for key in ("body", "status_code", "request_id"))
    request_id = request_id if isinstance(request_id, str) else None
    try:
        if status != 200:
            error = obj.get("error") or (body.get("error") if isinstance(body, dict) else None)
            error = error if isinstance(error, (dict, str)) and error else {"message": "the job did not run"}
            raise error_from_api(error, status if isinstance(status, int) else None, request_id)
        collector = Collector(job, JobProgress(tally, name))
        if isinstance(body, dict) and body.get("error"):
            raise _error_from_payload(body["error"])
        job.route.read_body(body, blobs, collector)
        collector.raise_incomplete()
        if collector.unsaved:
            raise OutputError("; ".join(collector.unsaved))
        if not collector.images:
            raise ResponseError("the result holds no image")
        return Outcome(job, collector, request_id), None
    except GptImageError as exc:
        return None, exc


_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,200}\Z")


def checked_id(value: Any, what: str) -> str:
    """An id a server sent, before it goes into a URL, a state file or stdout."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ResponseError(f"the API sent a {what} id that is not one ({printable(repr(value), 80)})")
    return value


def batch_object(value: Any) -> Dict[str, Any]:
    """A Batch object as far as this program reads it: a string id and a string status."""
    if not isinstance(value, dict) or not isinstance(value.get("status"), str):
        raise ResponseError("the API's answer is not a Batch object (no status)")
    checked_id(value.get("id"), "batch")
    return value


def source_fingerprint(path: str, options: Mapping[str, Any]) -> str:
    """What a batch was submitted from: the jobs file's bytes and the command line's request options."""
    shaping = {k: v for k, v in options.items() if k not in RUN_OPTIONS and v}
    return file_sha256(path, json.dumps(shaping, sort_keys=True, default=str).encode("utf-8"))


class BatchApiRun(NamedTuple):
    """What the steps of one Batch API run share: options, settings, route, jobs and state files, reporter."""

    options: Mapping[str, Any]
    config: Config
    settings: Settings
    route: Route
    path: str  # the jobs file
    state_file: str
    reporter: Reporter


def run_batch_api(options: Mapping[str, Any], config: Config, reporter: Reporter) -> int:
    """--batch FILE --batch-api: submit the jobs as one batch (once), wait, and collect.

    A state file that names an uncollected batch is resumed from what it recorded, without checking the jobs'
    inputs again: a batch already paid for can always be waited for, cancelled and collected.
    """
    path = str(options["batch"])
    route, state_file = ROUTE_NAMES[options["command"]], path + BATCH_STATE_SUFFIX  # beside the jobs file
    run = BatchApiRun(options, config, Settings(options, config), route, path, state_file, reporter)
    state = load_state(state_file)
    try:
        source = source_fingerprint(path, options)
    except OSError as exc:
        raise UsageError(f"--batch {path}: cannot read it ({exc.strerror or exc})") from None
    resuming = state is not None and not state.get("collected") and state.get("input_file_id")
    if state is not None and resuming and state.get("source") != source:
        raise UsageError(
            f"{path} or the command's options changed since batch {state.get('batch_id') or '(not yet created)'} "
            f"was submitted for them (state in {state_file})",
            hint="restore them and run again to collect, --cancel that batch, or remove the state file to "
            "submit anew",
        )
    if run.settings.flag("cancel"):
        return cancel_batch(run, state if resuming else None)
    if not resuming:
        return submit_batch(run, source)
    assert state is not None
    return follow_batch(run, state)


def submit_batch(run: BatchApiRun, source: str) -> int:
    """Validate every job, write and upload the input, create the batch (then follow it)."""
    jobs = plan_batch(run.options, run.config, run.route, run.path, run.reporter)
    planned, fingerprint = plan_batch_lines(jobs, run.path)
    todo = [p for p in planned if not p.item.skip]
    costs = [p.item.cost for p in todo]
    check_budget(run.settings, [None if c is None else c * BATCH_PRICE_FACTOR for c in costs], "batch")
    if run.settings.flag("dry_run"):
        return dry_run_batch_api(run, planned, fingerprint)
    connection = require_key(check_connection(run.settings, run.config, []))
    sheet = run.options.get("contact_sheet")
    plan_contact_sheet(sheet, [j.job for j in jobs if j.job is not None], sum(len(j.finals) for j in jobs))
    if not todo:
        tally = Tally(run.path, len(planned), 0, run.reporter, len(planned), BATCH_PRICE_FACTOR)
        for line in planned:
            run.reporter.job(line.item, None, None)
        return tally.finish(EXIT_OK, None)
    state: Dict[str, Any] = {
        "version": BATCH_STATE_VERSIONS[-1], "source": source, "fingerprint": fingerprint,
        "jobs_file": os.path.abspath(run.path), "route": run.route.name, "input_file_id": None,
        "batch_id": None, "collected": False,
        "submitted_at": time.time(), "skipped": len(planned) - len(todo),
        "jobs": {p.item.line.name: p.record for p in todo},
    }  # fmt: skip
    save_state(run.state_file, state)
    input_path = write_batch_input(todo, run.state_file)
    try:
        run.reporter.note(
            f"uploading the batch input ({os.path.getsize(input_path):,} bytes, {len(todo)} jobs)"
        )
        state["input_file_id"] = upload_batch_input(connection, input_path, run.reporter.note)
    finally:
        _remove(input_path)
    save_state(run.state_file, state)
    return follow_batch(run, state)


def follow_batch(run: BatchApiRun, state: Dict[str, Any]) -> int:
    """Create the batch if that is still to do, then wait for it (or not, with --no-wait) and collect."""
    connection = require_key(check_connection(run.settings, run.config, []))
    records = state.get("jobs")
    if not isinstance(records, dict) or not records:
        raise UsageError(
            f"the batch state file {run.state_file} lists no jobs", hint="remove it to start anew"
        )
    jobs = {
        str(name): job_from_record(str(name), rec, run.route, connection, run.settings.flag("overwrite"))
        for name, rec in records.items()
    }
    skipped = int(state.get("skipped") or 0)
    tally = Tally(run.path, len(jobs) + skipped, len(jobs), run.reporter, skipped, BATCH_PRICE_FACTOR)
    notify = tally.note
    fingerprint = str(state.get("fingerprint"))
    if not state.get("batch_id"):
        found = find_batch(connection, fingerprint, str(state["input_file_id"]), notify)
        batch = found or create_batch(connection, run.route, str(state["input_file_id"]), fingerprint, notify)
        state["batch_id"] = batch["id"]
        save_state(run.state_file, state)
        tally.print(f"batch {batch['id']} submitted: {len(jobs)} jobs; state in {run.state_file}")
    else:
        batch_id = checked_id(state["batch_id"], "batch")
        batch = batch_object(api_call(connection, "GET", f"/batches/{batch_id}", notify))
    if run.settings.flag("no_wait") and batch.get("status") in BATCH_OPEN:
        run.reporter.batch(
            {"ok": True, "batch_id": batch["id"], "status": batch["status"], "state_file": run.state_file},
            f"{describe_batch(batch, tally.started)}; run the same command again to wait and collect",
        )
        return EXIT_OK
    again = "run the same command again to wait for it and collect"
    try:
        batch = wait_for_batch(connection, batch, tally, float(state.get("submitted_at") or time.time()))
    except KeyboardInterrupt:
        tally.close()
        run.reporter.print(f"detached: batch {batch['id']} keeps running; {again}")
        return EXIT_INTERRUPTED
    except (NetworkError, ApiError, ResponseError) as exc:
        tally.close()
        exc.message += f"; batch {batch['id']} keeps running: {again}"
        raise
    status = batch["status"]
    if status == "failed":
        state["collected"] = True
        save_state(run.state_file, state)
        raise batch_failed(batch, [item for item, _ in jobs.values()])
    tally.status_text = None  # from here on, the jobs collected
    sheet = run.options.get("contact_sheet")
    plan_contact_sheet(
        sheet, [job for _, job in jobs.values()], sum(len(item.finals) for item, _ in jobs.values())
    )
    # A job whose images are all there already (an earlier, partial collection) is not saved twice.
    waiting = {}
    for name, (item, job) in jobs.items():
        if not job.overwrite and all(os.path.exists(f) for f in item.finals):
            run.reporter.job(item, None, None)
            tally.skipped += 1
        else:
            waiting[name] = (item, job)
    done = collect_batch(connection, batch, waiting, tally)
    tally.close()
    missing = [item for name, (item, _) in waiting.items() if name not in done]
    reasons = {"expired": "the batch expired before it ran", "cancelled": "it was cancelled"}
    why = reasons.get(status, "its result was not in the output (cut short?); run again to fetch it")
    for item in missing:
        tally.add(item, None, ResponseError(f"not collected: {why}"))
    state["collected"] = status in ("expired", "cancelled") or not missing
    state["status"] = status
    save_state(run.state_file, state)
    extra = batch_sheet(
        sheet, [item for item, _ in jobs.values()], run.settings.flag("overwrite"), run.reporter
    )
    return tally.finish(EXIT_OK, None, batch_id=batch["id"], batch_status=status, **extra)


def batch_failed(batch: Mapping[str, Any], jobs: Sequence[BatchJob]) -> ApiError:
    """The error of a batch that failed validation: its first errors, each with the job on the line it names
    (the input JSONL holds the jobs in this order, one a line)."""
    found = batch.get("errors")
    data = found.get("data") if isinstance(found, dict) else None
    reasons = []
    for error in [e for e in (data if isinstance(data, list) else [])[:3] if isinstance(e, dict)]:
        line = error.get("line")
        item = jobs[line - 1] if isinstance(line, int) and 1 <= line <= len(jobs) else None
        job = f"job {item.line.name}, jobs file line {item.line.line}" if item else "an unknown job"
        reasons.append(f"line {line} ({job}): {error.get('message')}" if line else str(error.get("message")))
    why = printable("; ".join(reasons), 600) or "no reason given"
    return ApiError(f"batch {batch['id']} failed validation: {why}", hint="fix those jobs and run again")


def write_batch_input(todo: Sequence[PlannedLine], beside: str) -> str:
    """The input JSONL, one job a line, written to a temporary file (local images streamed in as base64)."""
    fd, temp = open_temp_beside(beside.replace(BATCH_STATE_SUFFIX, "") + ".batch-input.jsonl")
    try:
        with os.fdopen(fd, "wb") as handle:
            for line in todo:
                assert line.item.job is not None
                body, _ = encode_json(batch_line(line.item.job, line.item.line.name))
                for chunk in body:
                    handle.write(chunk)
                handle.write(b"\n")
        final = temp[: -len(".part")] + ".jsonl"  # the upload's file name must end in .jsonl
        os.replace(temp, final)
        current_run().temp_files.add(final)
        return final
    except BaseException:
        _remove(temp)
        raise


def cancel_batch(run: BatchApiRun, state: Optional[Dict[str, Any]]) -> int:
    """--cancel: cancel the batch the state file names (its finished jobs are collected by a later run)."""
    if state is None or not state.get("batch_id"):
        raise UsageError(f"no submitted batch to cancel (no uncollected batch in {run.state_file})")
    connection = require_key(check_connection(run.settings, run.config, []))
    batch_id = checked_id(state["batch_id"], "batch")
    # The spec's cancel has no request body: a POST without one (Content-Length: 0, no Content-Type).
    batch = batch_object(api_call(connection, "POST", f"/batches/{batch_id}/cancel", run.reporter.print))
    run.reporter.batch(
        {"ok": True, "batch_id": batch["id"], "status": batch["status"]},
        f"batch {batch['id']}: {printable(batch['status'], 40)}; run the same command again to collect what finished",
    )
    return EXIT_OK


def dry_run_batch_api(run: BatchApiRun, planned: Sequence[PlannedLine], fingerprint: str) -> int:
    """--dry-run with --batch-api: the first input lines, the line count, the input size, the batch price."""
    todo = [p for p in planned if not p.item.skip]
    costs = [p.item.cost for p in todo]
    sync = sum(c for c in costs if c is not None)
    shown = {
        "ok": True,
        "dry_run": True,
        "batch_api": True,
        "command": run.route.name,
        "endpoint": "/v1" + run.route.endpoint,
        "lines": len(todo),
        "skipped": len(planned) - len(todo),
        "input_bytes": sum(p.size for p in todo),
        "first_lines": [p.shown for p in todo[:3]],
        "estimated_cost_usd": round(sync * BATCH_PRICE_FACTOR, 4),
        "estimated_cost_sync_usd": round(sync, 4),
        "jobs_without_estimate": sum(1 for c in costs if c is None),
        "state_file": run.state_file,
        "fingerprint": fingerprint,
    }
    run.reporter.dry_run(shown)
    return EXIT_OK


# --- CLI ---------------------------------------------------------------------------------------------------

_SUMMARY, _, _REST = (__doc__ or "").partition("\n\n")
_EXIT_CODES = "Exit codes:" + (__doc__ or "").split("Exit codes:", 1)[-1].rstrip()


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
    """The command-line parser: the shared options in a parent, one subparser per route in ROUTES."""
    common = _Parser(add_help=False, formatter_class=_formatter)
    for title, arguments in COMMON_ARGUMENTS:
        group = common.add_argument_group(title)
        for opt in arguments:
            group.add_argument(*opt.flags, **opt.keywords)
    description = _SUMMARY + "\n\n" + _REST.split("Exit codes:")[0].strip()
    parser = _Parser(prog=PROG, description=description, epilog=_EXIT_CODES, formatter_class=_formatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar=_choices([r.name for r in ROUTES])
    )
    for route in ROUTES:
        sub = subparsers.add_parser(
            route.name,
            parents=[common],
            formatter_class=_formatter,
            help=route.summary,
            description=route.description,
            epilog=route.examples + "\n" + _EXIT_CODES,
        )
        for argument in route.arguments:
            name, help_text = (argument, None) if isinstance(argument, str) else argument
            opt = ARGUMENTS[name]
            keywords = dict(opt.keywords, help=help_text) if help_text else opt.keywords
            sub.add_argument(*opt.flags, **keywords)
    return parser


def _success_json(outcome: Outcome) -> Dict[str, Any]:
    job, collector = outcome.job, outcome.collector
    result: Dict[str, Any] = {"ok": True, "command": job.command}
    if job.text_model:  # responses: the model named with --model, and the tool's image model
        result.update(model=job.text_model, image_model=job.model)
    else:
        result["model"] = job.model
    result.update(
        images=[image.as_dict() for image in collector.images],
        partials=[image.as_dict() for image in collector.partials],
        revised_prompt=next((i.revised_prompt for i in collector.images if i.revised_prompt), None),
        size=job.params.get("size"),
        steps=describe_steps(job),
        usage=collector.usage_report(),
        estimated_cost_usd=collector.estimated_cost(),
        request_id=outcome.request_id,
        response_id=collector.response_id,
        saved_response=outcome.saved_response,
        metadata=outcome.metadata,
        text=collector.said() or None,
        elapsed_s=round(outcome.elapsed, 3),
    )
    if outcome.contact_sheet is not None:
        result["contact_sheet"] = outcome.contact_sheet
    return result


def _failure_json(exc: GptImageError) -> Dict[str, Any]:
    details = exc.details
    error = {"type": details.get("type") or exc.kind, "message": exc.message}
    error.update((key, details.get(key)) for key in ("status", "code", "param", "request_id"))
    error.update(hint=exc.hint or None, exit_code=exc.exit_code)
    if details.get("problems"):  # a jobs file's other bad lines, and how many more there are
        error.update(problems=list(details["problems"]), more_problems=details.get("more_problems") or 0)
    failure: Dict[str, Any] = {"ok": False, "error": error}
    if details.get("response_id"):
        failure["response_id"] = details["response_id"]
    return failure


class TextReporter(Reporter):
    """stdout: the saved image paths, one a line (a batch id for --no-wait and --cancel); the rest on stderr."""

    def outcome(self, outcome: Outcome) -> None:
        """A single run's images, then a summary line on stderr."""
        job, collector = outcome.job, outcome.collector
        for image in collector.images:
            self.out(image.path, [image.path])
        collector.announce_response_id()  # unless the progress showed it already
        if outcome.contact_sheet is not None:
            self.note(f"contact sheet: {outcome.contact_sheet['path']}")
        summary = f"done in {outcome.elapsed:.1f} s: {len(collector.images)} image(s)"
        tallies = [(collector.usage, " (text model)" if job.text_model else "")]
        if job.text_model and collector.tool_usage is not None:
            tallies.append((collector.tool_usage, " (image tool)"))
        for usage, whose in tallies:
            tokens = usage.get("output_tokens") if usage else None
            if isinstance(tokens, int):
                summary += f", {tokens:,} output tokens{whose}"
        cost = collector.estimated_cost()
        if cost is not None:
            summary += f", about ${cost:.4f} (estimate" + (", image tool only)" if job.text_model else ")")
        self.note(summary)

    def job(self, item: BatchJob, outcome: Optional[Outcome], error: Optional[GptImageError]) -> None:
        """One batch job's saved paths as it ends."""
        if outcome is not None:
            for image in outcome.collector.images:
                self.out(image.path, [image.path])

    def batch(self, record: Mapping[str, Any], line: str) -> None:
        """A batch's id on stdout, what became of it on stderr."""
        self.out(str(record["batch_id"]))
        self.print(line)

    def failure(self, exc: GptImageError, line: str = "") -> None:
        """The run failed: the one error line, then the further problems it carries (a jobs file's other bad
        lines), one a line."""
        super().failure(exc, line)
        for problem in exc.details.get("problems") or ():
            self.print(" ".join(str(problem).split()))
        more = exc.details.get("more_problems") or 0
        if more:
            self.print(f"... and {more:,} more bad line{'s' if more > 1 else ''}")


class JsonReporter(Reporter):
    """stdout: one JSON object for a single run; JSON Lines (one a job, then a summary) for a batch."""

    as_json = True

    def outcome(self, outcome: Outcome) -> None:
        """A single run's one JSON object."""
        self.out(json_text(_success_json(outcome)), [i.path for i in outcome.collector.images])

    def job(self, item: BatchJob, outcome: Optional[Outcome], error: Optional[GptImageError]) -> None:
        """One batch job's JSON line as it ends."""
        record: Dict[str, Any] = {"job": item.line.name, "line": item.line.line}
        paths: List[str] = []
        if error is not None:
            record.update(ok=False, error=_failure_json(error)["error"])
        elif outcome is None:
            record.update(ok=True, skipped=True, images=[{"path": p} for p in item.finals])
        else:
            record.update(_success_json(outcome))
            paths = [image["path"] for image in record["images"]]
        self.out(json_text(record), paths)

    def summary(self, summary: Mapping[str, Any], line: str) -> None:
        """The batch's summary JSON line (and the summary line on stderr)."""
        self.out(json_text(summary))
        super().summary(summary, line)

    def batch(self, record: Mapping[str, Any], line: str) -> None:
        """A batch's id and status as one JSON object."""
        self.out(json_text(record))

    def failure(self, exc: GptImageError, line: str = "") -> None:
        """The run failed: its JSON object, and the one error line."""
        self.out(json_text(_failure_json(exc)))
        super().failure(exc, line)


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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse, validate once, dispatch, and map every failure to one stderr line and its exit code."""
    _use_utf8_streams()
    run = RunState()
    token = _RUN.set(run)
    words = sys.argv[1:] if argv is None else list(argv)
    reporter: Reporter = JsonReporter() if "--json" in words else TextReporter()
    previous_handlers = set_handlers(dict.fromkeys(_STOP_SIGNALS, _on_stop_signal))
    try:
        args = build_parser().parse_args(argv)
        reporter = (JsonReporter if args.json else TextReporter)(quiet=args.quiet)
        return run_command(vars(args), reporter)
    except GptImageError as exc:
        reporter.failure(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        stopped = GptImageError("interrupted")
        stopped.kind, stopped.exit_code = "interrupted", EXIT_INTERRUPTED
        reporter.failure(stopped, "interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: say so on one line, without the traceback or any secret
        message = redact(f"{type(exc).__name__}: {exc}")
        line = f"error: internal error ({message}); please report it with the command you ran"
        reporter.failure(GptImageError(message), line)
        if os.environ.get("GPT_IMAGE_DEBUG"):
            import traceback

            reporter.print(traceback.format_exc())
        return EXIT_INTERNAL
    finally:
        if run.stdout_lost is not None and reporter.lost:
            # The images are saved: a stdout that cannot be written (closed, full) must not hide where.
            reporter.warn(
                f"stdout could not be written ({run.stdout_lost}); saved: {', '.join(reporter.lost)}"
            )
        # Temporary files the run leaves at its end, success or failure: a mask made from shapes (kept until
        # now, since every request of a batch may read it), or what an aborted batch's workers left.
        for temp in list(run.temp_files):
            _remove(temp)
        # After a stop signal they stay ignored: the process is ending, and a late one must not kill it now.
        if not run.signalled:
            set_handlers(previous_handlers)
        _RUN.reset(token)


def run_command(options: Dict[str, Any], reporter: Reporter) -> int:
    """One parsed command line: the whole run's checks, then one job or a batch."""
    check_run(options)
    config = load_config(os.environ, options["env_file"])
    if options["batch"] is not None:
        return run_batch(options, config, reporter)
    job = validate(options, config)
    if not job.dry_run:
        require_key(job.connection)
    estimate = estimate_cost(job)
    check_budget(Settings(options, config), [estimate["usd"] if estimate else None], "request")
    for message in job.warnings:
        reporter.warn(message)
    request = job.route.build_request(job)
    sheet = options.get("contact_sheet")
    if sheet and job.n < 2:
        raise UsageError(
            "--contact-sheet goes with --batch or --n above 1", hint="drop it: one image needs no sheet"
        )
    plan_contact_sheet(sheet, [job], len(job.outputs.finals()))
    if job.dry_run:
        reporter.dry_run(describe_dry_run(job, request))
    else:
        reporter.outcome(perform_with_sheet(job, request, sheet, reporter.warn))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

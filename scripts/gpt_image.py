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
import contextvars
import datetime
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
    transparent: str  # "yes", "preview" (refused unless --allow-transparent) or "no"
    input_fidelity: bool
    token_factors: Optional[Mapping[str, int]] = None  # output-token factor per quality (cost estimates)
    notice: str = ""  # a warning printed whenever the model is used
    sizes: Tuple[str, ...] = FIXED_SIZES  # the only sizes (besides auto) of a model without flexible sizes
    shutdown: str = ""  # YYYY-MM-DD: from this day (local clock) the API no longer serves the model
    replacement: str = ""  # the model to suggest instead, once it is shut down or about to be


# Output-token factors reverse-engineered from OpenAI's calculator (api-facts.md section 7).
_GPT2_FACTORS = {"low": 16, "medium": 48, "high": 96}
_GPT25_FACTORS = {"low": 16, "medium": 24, "high": 48, "xhigh": 64, "max": 96}
_GPT2 = ModelRules("gpt-image-2", True, BASE_QUALITIES, "preview", False, _GPT2_FACTORS)
_GPT25 = ModelRules("gpt-image-2.5", True, QUALITIES, "yes", True, _GPT25_FACTORS)
_GPT26 = ModelRules("gpt-image-2.6", True, QUALITIES, "yes", True, _GPT25_FACTORS)
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
    return mask


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

    def final(self, index: int) -> str:
        """The path of final image `index` (1-based)."""
        if "{index}" in self.pattern:
            return self.pattern.replace("{index}", str(index))
        if self.count == 1 and index == 1:
            return self.pattern
        root, ext = os.path.splitext(self.pattern)
        return f"{root}-{index}{ext}"

    def finals(self) -> List[str]:
        """The paths of every planned final image, in order."""
        return [self.final(index) for index in range(1, self.count + 1)]

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
    if not blobs:
        return json.loads(data), blobs
    pieces.append(view[keep_from:])
    return json.loads(b"".join(pieces)), blobs


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

    def takes(self, name: str) -> bool:
        """True when the route has option `name` of its own."""
        return any((arg if isinstance(arg, str) else arg[0]) == name for arg in self.arguments)


class Option(NamedTuple):
    """One command-line option: its flags, its argparse keywords, and what it is to the rest of the program."""

    flags: Tuple[str, ...]
    keywords: Dict[str, Any]
    path: bool = False  # it names a file: taken as the operating system gives it (any name it can hold)
    run: bool = False  # it shapes the whole run: on the command line only, never in a line of a jobs file

    @property
    def name(self) -> str:
        """The option's name: its argparse dest (the long flag, `-` as `_`)."""
        return self.flags[-1].lstrip("-").replace("-", "_")


def option(*flags: str, path: bool = False, run: bool = False, **keywords: Any) -> Option:
    """An Option; enumerations show their values but are checked (in any case) by the validator."""
    return Option(flags, keywords, path, run)


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
            help="transparent needs png or webp (and --allow-transparent on gpt-image-2)",
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
            "--allow-transparent", action="store_true",
            help="send --background transparent even where the model only previews it",
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
    inputs = route.read_inputs(settings, prompt, warnings)
    params, n, stream, partial_images = check_image_params(
        settings, route, inputs, model, rules, output_format, connection.provider
    )
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
        outputs=OutputPlan(output, n),
        inputs=inputs,
        connection=connection,
        dry_run=settings.flag("dry_run"),
        as_json=settings.flag("json"),
        overwrite=settings.flag("overwrite"),
        quiet=settings.flag("quiet"),
        save_response=options.get("save_response") or None,
        metadata=settings.flag("metadata"),
        warnings=tuple(warnings),
        notes=tuple(settings.notes),
        steps=steps,
    )
    check_outputs(job, resume)
    return job


class Step(NamedTuple):
    """One pixel step: which jobs take it, and what it does to each final image between its arrival and its
    commit. STEPS lists them in the order they run; a job's steps are planned once, by validate()."""

    name: str
    plan: Callable[[Settings, str], Optional[Dict[str, Any]]]  # (settings, format) -> its settings, or None
    run: Callable[[bytes, Mapping[str, Any]], Tuple[bytes, Mapping[str, Any]]]  # -> the image, what it found
    formats: Tuple[str, ...] = ("png",)  # the output formats it works on (the standard library decodes PNG)


STEPS: Tuple[Step, ...] = ()


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
                f"the {step.name} step works on {', '.join(step.formats)} images, not {output_format} (this "
                "program reads and writes pixels with the standard library alone)",
                hint=f"name the output {exts}",
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


def today() -> datetime.date:
    """The local date, which model shutdown dates are compared with (tests replace this function)."""
    return datetime.date.today()


def model_lifecycle(model: str, rules: ModelRules, on: datetime.date) -> Tuple[str, str]:
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
    size = settings.pick("size")
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

    background = settings.choice("background", BACKGROUNDS)
    if background is not None:
        if background == "transparent":
            if rules and rules.transparent == "preview" and not settings.flag("allow_transparent"):
                raise settings.error(
                    "background",
                    f"{model} does not reliably support transparent backgrounds (the API calls it a preview)",
                    hint="use --background opaque or auto, a model such as "
                    f"{suggest_model(lambda r: r.transparent == 'yes', today())}, "
                    "or --allow-transparent to send it anyway",
                )
            if rules and rules.transparent == "no":
                raise settings.error("background", f"{model} does not support transparent backgrounds")
            if not IMAGE_FORMATS[output_format].alpha:
                alpha = [f for f in IMAGE_FORMATS.values() if f.alpha]
                raise settings.error(
                    "background",
                    f"a transparent background needs {format_names(lambda f: f.alpha).lower()}, not {output_format}",
                    hint="name the output " + " or ".join(f.extensions[0] for f in alpha),
                )
        params["background"] = background
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
    return params, n, stream, partial_images


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
    for index, final in enumerate(job.outputs.finals(), start=1):
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
    except (TypeError, ValueError):
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
        if info is None:
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
    if mask_path:
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
    detail = settings.choice("image_detail", DETAILS) or "auto"
    action = settings.choice("action", ACTIONS)
    return ResponseInputs(
        tuple(texts), images, urls, file_ids, mask, mask_file_id, detail, action, tool_choice, previous
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
        """A line of its own, above the status line, that --quiet does not hide (a result, a failed job)."""
        with self.lock:
            self._clear()
            self.stream.write(printable(text) + "\n")
            status = self.redrawn()
            if status is not None:
                self._draw(status)
            self.stream.flush()

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

    def as_dict(self) -> Dict[str, Any]:
        """The JSON form used in --json output."""
        return {
            "path": self.path,
            "index": self.index,
            "bytes": self.bytes,
            "format": self.format,
            **self.facts,
        }


class _Incomplete(ResponseError):
    """A final image that arrived cut short or damaged."""


def deliver(data: bytes, fmt: str, job: Job) -> Tuple[bytes, Dict[str, Any]]:
    """An arrived final image made ready to store: checked whole, then put through the job's pixel steps in
    order (one image at a time across a batch's workers: the steps hold the interpreter anyway, and memory
    then holds one image's pixels). Returns the image to store and what each step found, by its name."""
    problem = check_complete(data, fmt)
    if problem:
        raise _Incomplete(problem)
    facts: Dict[str, Any] = {}
    if not job.steps:
        return data, facts
    with current_run().pixel_lock:
        for name, settings in job.steps:
            try:
                data, found = step_named(name).run(data, settings)
            except ImageDataError as exc:
                raise StepFailed(f"the {name} step could not read the image: {exc}") from None
            if found:
                facts[name] = dict(found)
    return data, facts


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
        self.partials.append(SavedImage(path, k, len(data), fmt))
        self.progress.partial(path)

    def final(self, data: bytes, index: int, revised_prompt: Any = None) -> None:
        """Deliver final image `index` and store it; one that arrived incomplete, or that a step could not
        deliver, is kept aside instead (never at its planned path)."""
        fmt = self._check_format(data, f"image {index}")
        target = self.job.outputs.final(index)
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
        self.store(index, target, delivered, fmt, revised_prompt, facts)

    def store(
        self, index: int, target: str, data: bytes, fmt: str, revised_prompt: Any, facts: Mapping[str, Any]
    ) -> None:
        """Commit a delivered final image to its planned path (the one atomic write). It is paid for: when the
        path cannot be written (disk full, permissions, a file locked by a viewer on Windows), it is kept in
        the temporary folder instead and perform() reports where."""
        try:
            path = write_output(target, data, self.job.overwrite)
        except OSError as exc:
            rescued = rescue_output(target, data)
            where = f"kept at {rescued}" if rescued else "and could not be kept anywhere"
            self.unsaved.append(f"could not write {target} ({exc.strerror or exc}); the image is {where}")
            return
        if path != target:
            self.progress.warn(f"{target} appeared during the run, so the image was saved as {path}")
        prompt = revised_prompt if isinstance(revised_prompt, str) and revised_prompt else None
        self.images.append(SavedImage(path, index, len(data), fmt, prompt, facts))
        self.progress.note(f"image {index} saved: {path}")

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


def describe_dry_run(job: Job, request: HttpRequest) -> Dict[str, Any]:
    """The --dry-run object: the exact request (key redacted) and the planned output files."""
    described: Dict[str, Any] = {"ok": True, "dry_run": True, "command": job.command, "model": job.model}
    if job.text_model:
        described["text_model"] = job.text_model
    described.update(request.describe())
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
    for name in ("output", "save_response"):
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
    if interrupted:
        return tally.finish(EXIT_INTERRUPTED, None)
    if fatal:
        stop_error = ApiError(
            f"the batch stopped: {fatal[0].message}; {tally.not_run} job(s) not sent", hint=fatal[0].hint
        )
        return tally.finish(EXIT_API, stop_error)
    return tally.finish(EXIT_OK, None)


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
        "count": job.outputs.count,
        "format": job.output_format,
        "model": job.model,
        "text_model": job.text_model,
        "steps": describe_steps(job),
    }


def job_from_record(
    name: str, record: Mapping[str, Any], route: Route, connection: Connection
) -> Tuple[BatchJob, Job]:
    """A submitted job, rebuilt from the state file: its results can be saved even when its inputs are gone
    or its model has been shut down since."""
    try:
        finals = tuple(str(f) for f in record["finals"])
        count = int(record["count"])
        item = BatchJob(JobLine(int(record["line"]), name, {}), finals, False, None)
        job = Job(
            route=route, model=str(record["model"]), rules=rules_for(str(record["model"])),
            text_model=record.get("text_model"), prompt=None, params={}, n=count, stream=False,
            partial_images=0, output_format=str(record["format"]), outputs=OutputPlan(str(record["pattern"]), count),
            inputs=None, connection=connection, dry_run=False, as_json=False, overwrite=False, quiet=True,
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
        str(name): job_from_record(str(name), rec, run.route, connection) for name, rec in records.items()
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
    # A job whose images are all there already (an earlier, partial collection) is not saved twice.
    waiting = {}
    for name, (item, job) in jobs.items():
        if all(os.path.exists(f) for f in item.finals):
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
    return tally.finish(EXIT_OK, None, batch_id=batch["id"], batch_status=status)


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
    if job.dry_run:
        reporter.dry_run(describe_dry_run(job, request))
    else:
        reporter.outcome(perform(job, request))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

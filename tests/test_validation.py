"""Pre-flight validation of the generations route (design.md "Pre-flight validation").

Every invalid input must exit 2 (3 for configuration), print exactly one line on stderr,
`error: MESSAGE` or `error: MESSAGE (hint: HINT)`, and nothing else, and send nothing: the fake API records
zero requests. Valid edge cases must pass, and a bad size must name the nearest valid size.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import gpt_image
import pytest
from conftest import SCRIPT, Result, split_hint
from fakeapi import FakeAPI

CLI = Callable[..., Result]
PROMPT = "A lighthouse on a cliff at dawn"
OUT = "out/lighthouse.png"


@pytest.fixture(autouse=True)
def _no_skill_root_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """In-process runs must not read a developer's .env beside the repository's SKILL.md."""
    monkeypatch.setattr(gpt_image, "skill_root", lambda: str(tmp_path / "no-skill-root"))


def check_one_error(result: Result) -> str:
    """Exactly one `error: ...` line (hint inline) on stderr, no traceback; return it without the hint."""
    lines = result.err.splitlines()
    assert "Traceback" not in result.err
    assert len(lines) == 1, f"expected exactly one error line, got:\n{result.err}"
    message = split_hint(lines[0])[0]  # a hint, if any, is inline, closes the line and is not empty
    assert message.startswith("error: ") and len(message) > len("error: ")
    return message


# --------------------------------------------------------------------------------------------------
# The table of invalid inputs
# --------------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One invalid command line. `args` replace the defaults they name; `setup` prepares the folder."""

    id: str
    args: List[str]
    code: int = 2
    says: str = ""  # a fragment the error line must contain (case-insensitive)
    prompt: Optional[str] = PROMPT  # None: no --prompt at all
    output: Optional[str] = OUT  # None: no --output at all
    setup: Optional[Callable[[Path, pytest.MonkeyPatch], None]] = None
    stdin: Optional[str] = None
    env: Dict[str, Optional[str]] = field(default_factory=dict)


def _existing_output(folder: Path, _mp: pytest.MonkeyPatch) -> None:
    (folder / "out").mkdir()
    (folder / OUT).write_bytes(b"precious")


def _existing_numbered(folder: Path, _mp: pytest.MonkeyPatch) -> None:
    (folder / "out").mkdir()
    (folder / "out" / "lighthouse-2.png").write_bytes(b"precious")


def _existing_partial(folder: Path, _mp: pytest.MonkeyPatch) -> None:
    (folder / "out").mkdir()
    (folder / "out" / "lighthouse.partial-2.png").write_bytes(b"precious")


def _existing_saved_response(folder: Path, _mp: pytest.MonkeyPatch) -> None:
    (folder / "raw.json").write_bytes(b"precious")


def _parent_is_a_file(folder: Path, _mp: pytest.MonkeyPatch) -> None:
    (folder / "notes.txt").write_text("a regular file\n", encoding="utf-8")


def _output_folder(folder: Path, _mp: pytest.MonkeyPatch) -> None:
    (folder / "out").mkdir()
    (folder / "out" / "lighthouse.png").mkdir()


def _bad_dotenv(folder: Path, _mp: pytest.MonkeyPatch) -> None:
    (folder / ".env").write_text("OPENAI_IMAGE_SIZE=1024x1024\nthis line is not an assignment\n")


def _no_key(_folder: Path, mp: pytest.MonkeyPatch) -> None:
    mp.delenv("OPENAI_API_KEY", raising=False)


def _prompt_files(folder: Path, _mp: pytest.MonkeyPatch) -> None:
    (folder / "prompt.txt").write_text(PROMPT + "\n", encoding="utf-8")
    (folder / "empty.txt").write_bytes(b"\xef\xbb\xbf\r\n")
    (folder / "latin1.txt").write_bytes("caf\u00e9 au lait".encode("latin-1"))
    (folder / "long.txt").write_text("x" * 32_001, encoding="utf-8")


P = ["--prompt", PROMPT]
CASES: List[Case] = [
    # sizes (gpt-image-2)
    Case("size-0x1024", ["--size", "0x1024"], says="0x1024"),
    Case("size-1024x0", ["--size", "1024x0"], says="1024x0"),
    Case("size-1000x1000", ["--size", "1000x1000"], says="multiples of 16"),
    Case("size-4096x1024", ["--size", "4096x1024"], says="3840"),
    Case("size-3840x3840", ["--size", "3840x3840"], says="8,294,400"),
    Case("size-4000x1000", ["--size", "4000x1000"], says="4000x1000"),
    Case("size-2896x2896", ["--size", "2896x2896"], says="8,294,400"),
    Case("size-512x512", ["--size", "512x512"], says="655,360"),
    Case("size-3840x1024-ratio", ["--size", "3840x1024"], says="3 times"),
    Case("size-1024X1024", ["--size", "1024X1024"], says="1024x1024"),
    Case("size-big", ["--size", "big"], says="'big'"),
    Case("size-1024x1024x2", ["--size", "1024x1024x2"], says="1024x1024x2"),
    Case("size-empty-dims", ["--size", "x"], says="'x'"),
    Case("size-negative", ["--size=-1024x1024"], says="-1024x1024"),
    Case("size-float", ["--size", "1024.0x1024"], says="1024.0x1024"),
    Case("size-huge-number", ["--size", "99999999999999999999x1024"], says="99999999999999999999"),
    Case("size-1.5-2048", ["--model", "gpt-image-1.5", "--allow-retired", "--size", "2048x2048"], says="1024x1024"),
    Case("size-mini-1792", ["--model", "gpt-image-1-mini", "--allow-retired", "--size", "1024x1792"], says="1024x1536"),
    # quality
    Case("quality-ultra", ["--quality", "ultra"], says="ultra"),
    Case("quality-xhigh-gpt2", ["--quality", "xhigh"], says="xhigh"),
    Case("quality-max-gpt2", ["--quality", "max"], says="max"),
    Case("quality-max-snapshot", ["--model", "gpt-image-2-2026-04-21", "--quality", "max"], says="max"),
    Case("quality-xhigh-1.5", ["--model", "gpt-image-1.5", "--allow-retired", "--quality", "xhigh"], says="xhigh"),
    Case("quality-standard", ["--quality", "standard"], says="standard"),
    # n
    Case("n-0", ["--n", "0"], says="--n"),
    Case("n-11", ["--n", "11"], says="--n"),
    Case("n-two", ["--n", "two"], says="two"),
    Case("n-1.5", ["--n", "1.5"], says="1.5"),
    # streaming
    Case("partials-4", ["--stream", "--partial-images", "4"], says="--partial-images"),
    Case("partials-minus-1", ["--stream", "--partial-images", "-1"], says="--partial-images"),
    Case("partials-without-stream", ["--partial-images", "2"], says="--stream"),
    Case("partials-0-without-stream", ["--partial-images", "0"], says="--stream"),
    Case("stream-n-2", ["--stream", "--n", "2"], says="--stream"),
    # background
    Case("transparent-gpt2-key-jpeg", ["--background", "transparent"], output="out/l.jpg", says="png"),
    Case(
        "transparent-gpt2-snapshot-key-webp",
        ["--model", "gpt-image-2-2026-04-21", "--background", "transparent", "--transparency", "key"],
        output="out/l.webp",
        says="the key route",
    ),
    Case("transparency-bogus", ["--background", "transparent", "--transparency", "magic"], says="magic"),
    Case("key-color-bogus", ["--background", "transparent", "--key-color", "green"], says="#RRGGBB"),
    Case(
        "native-on-dalle",
        ["--model", "dall-e-3", "--allow-retired", "--background", "transparent", "--transparency", "native"],
        says="no transparent background of its own",
    ),
    Case(
        "key-color-with-native",
        ["--model", "gpt-image-2.6-sunburst", "--background", "transparent", "--key-color", "#FF00FF"],
        says="--key-color",
    ),
    Case(
        "transparent-jpeg-2.6",
        ["--model", "gpt-image-2.6-sunburst", "--background", "transparent"],
        output="out/lighthouse.jpg",
        says="png or webp",
    ),
    Case(
        "transparent-jpeg-allowed-gpt2",
        ["--background", "transparent", "--allow-transparent"],
        output="out/lighthouse.jpg",
        says="png or webp",
    ),
    Case("background-purple", ["--background", "purple"], says="purple"),
    # compression and format
    Case("compression-png", ["--compression", "80"], says="png"),
    Case("compression-png-format", ["--format", "png", "--compression", "80"], says="png"),
    Case("compression-101", ["--compression", "101"], output="out/l.webp", says="101"),
    Case("compression-minus-1", ["--compression", "-1"], output="out/l.jpg", says="-1"),
    Case("compression-text", ["--compression", "high"], output="out/l.jpg", says="high"),
    Case("format-mismatch-png", ["--format", "jpeg"], says=".png"),
    Case("format-mismatch-jpg", ["--format", "webp"], output="out/l.jpg", says=".jpg"),
    Case("format-mismatch-jpg-alias", ["--format", "jpg"], output="out/l.webp", says=".webp"),
    Case("format-bmp", ["--format", "bmp"], says="bmp"),
    Case("extension-bmp", [], output="out/l.bmp", says=".bmp"),
    Case("format-gif-not-2.6", ["--format", "gif"], output="out/l", says="does not make gif"),  # 2.6 alone
    Case("extension-svg-not-2.6", [], output="out/l.svg", says="does not make svg"),
    Case("extension-txt", [], output="out/l.txt", says=".txt"),
    # outputs
    Case("existing-output", [], setup=_existing_output, says="already exists"),
    Case("existing-numbered-output", ["--n", "3"], setup=_existing_numbered, says="lighthouse-2.png"),
    Case(
        "existing-partial",
        ["--stream", "--partial-images", "2"],
        setup=_existing_partial,
        says="lighthouse.partial-2.png",
    ),
    Case(
        "existing-save-response",
        ["--save-response", "raw.json"],
        setup=_existing_saved_response,
        says="raw.json",
    ),
    Case("save-response-is-output", ["--save-response", OUT], says=OUT),
    Case("parent-is-a-file", [], output="notes.txt/out.png", setup=_parent_is_a_file, says="notes.txt"),
    Case(
        "grandparent-is-a-file", [], output="notes.txt/a/b/out.png", setup=_parent_is_a_file, says="notes.txt"
    ),
    Case("output-is-a-folder", [], setup=_output_folder, says="folder"),
    Case("output-trailing-slash", [], output="out/", says="folder"),
    Case("output-empty", [], output="", says="--output"),
    Case("output-missing", [], output=None, says="--output"),
    # prompt
    Case("prompt-empty", [], prompt="", says="empty"),
    Case("prompt-whitespace", [], prompt=" \t\n ", says="empty"),
    Case("prompt-32001", [], prompt="p" * 32_001, says="32,001"),
    Case("prompt-missing", [], prompt=None, says="prompt"),
    Case("prompt-and-file", ["--prompt-file", "prompt.txt"], setup=_prompt_files, says="not both"),
    Case("prompt-file-missing", ["--prompt-file", "nope.txt"], prompt=None, says="nope.txt"),
    Case(
        "prompt-file-empty-bom",
        ["--prompt-file", "empty.txt"],
        prompt=None,
        setup=_prompt_files,
        says="empty",
    ),
    Case(
        "prompt-file-latin1", ["--prompt-file", "latin1.txt"], prompt=None, setup=_prompt_files, says="UTF-8"
    ),
    Case("prompt-file-32001", ["--prompt-file", "long.txt"], prompt=None, setup=_prompt_files, says="32,001"),
    Case("prompt-stdin-empty", ["--prompt-file", "-"], prompt=None, stdin="\n\n", says="empty"),
    # configuration (exit 3)
    Case("bad-dotenv-line", [], code=3, setup=_bad_dotenv, says=".env:2"),
    Case("missing-key", [], code=3, setup=_no_key, says="OPENAI_API_KEY"),
    Case("env-file-missing", ["--env-file", "missing.env"], code=3, says="missing.env"),
    Case(
        "configured-quality-ultra",
        [],
        code=3,
        env={"OPENAI_IMAGE_QUALITY": "ultra"},
        says="OPENAI_IMAGE_QUALITY",
    ),
    Case("configured-size", [], code=3, env={"OPENAI_IMAGE_SIZE": "1000x1000"}, says="OPENAI_IMAGE_SIZE"),
    Case("configured-base-url", [], code=3, env={"OPENAI_BASE_URL": "ftp://x"}, says="OPENAI_BASE_URL"),
    # running options and the command line itself
    Case("unknown-flag", ["--colour", "blue"], says="--colour"),
    Case("unknown-flag-typo", ["--qualty", "high"], says="--qualty"),
    Case("timeout-0", ["--timeout", "0"], says="--timeout"),
    Case("timeout-negative", ["--timeout=-5"], says="--timeout"),
    Case("timeout-nan", ["--timeout", "nan"], says="--timeout"),
    Case("timeout-inf", ["--timeout", "inf"], says="--timeout"),
    Case("retries-minus-1", ["--retries", "-1"], says="--retries"),
    Case("retries-too-many", ["--retries", "1000"], says="--retries"),
    Case("base-url-ftp", ["--base-url", "ftp://x"], says="ftp://x"),
    Case("base-url-no-host", ["--base-url", "http://"], says="http://"),
    Case("base-url-bare-host", ["--base-url", "api.openai.com/v1"], says="api.openai.com"),
    Case("moderation-strict", ["--moderation", "strict"], says="strict"),
    Case("input-fidelity-not-for-generations", ["--input-fidelity", "high"], says="--input-fidelity"),
    Case("model-flag-without-value", ["--model"], says="--model"),
]


def _argv(case: Case) -> List[str]:
    argv = ["generations"]
    if case.prompt is not None:
        argv += ["--prompt", case.prompt]
    if case.output is not None:
        argv += ["--output", case.output]
    return argv + case.args


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_invalid_input_is_refused_before_sending(
    case: Case, cli: CLI, fake: FakeAPI, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if case.setup:
        case.setup(env, monkeypatch)
    for name, value in case.env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    before = {p: p.read_bytes() for p in env.rglob("*") if p.is_file()}

    result = cli(*_argv(case), stdin=case.stdin)

    assert result.code == case.code, result.err
    line = check_one_error(result)
    assert case.says.lower() in line.lower(), line
    assert result.out == ""
    assert fake.requests == []
    after = {p: p.read_bytes() for p in env.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing changed


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_invalid_input_with_json_is_one_failure_object(
    case: Case, cli: CLI, fake: FakeAPI, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if case.setup:
        case.setup(env, monkeypatch)
    for name, value in case.env.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    result = cli(*_argv(case), "--json", stdin=case.stdin)
    assert result.code == case.code
    check_one_error(result)
    obj = result.json
    assert isinstance(obj, dict) and obj["ok"] is False, result.out
    assert obj["error"]["type"] == ("config_error" if case.code == 3 else "usage_error")
    assert fake.requests == []


@pytest.mark.parametrize(
    "case_id", ["size-1000x1000", "n-two", "unknown-flag", "prompt-32001", "bad-dotenv-line", "missing-key"]
)
def test_invalid_input_in_a_real_process(
    case_id: str, run: Callable[..., Result], fake: FakeAPI, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = next(c for c in CASES if c.id == case_id)
    if case.setup:
        case.setup(env, monkeypatch)
    result = run(*_argv(case), stdin=case.stdin)
    assert result.code == case.code, result.err
    assert case.says.lower() in check_one_error(result).lower()
    assert result.out == ""
    assert fake.requests == []


def test_existing_output_passes_with_overwrite(cli: CLI, fake: FakeAPI, env: Path) -> None:
    _existing_output(env, pytest.MonkeyPatch())
    result = cli("generations", "--prompt", PROMPT, "--output", OUT, "--overwrite")
    assert result.code == 0, result.err
    assert len(fake.requests) == 1
    assert (env / OUT).read_bytes() == fake.requests[0].sent_images[0]


def test_nothing_is_created_by_a_refused_run(cli: CLI, fake: FakeAPI, env: Path) -> None:
    result = cli("generations", "--prompt", PROMPT, "--output", "new/deep/folder/x.png", "--quality", "ultra")
    assert result.code == 2
    assert not (env / "new").exists()


def test_missing_key_is_fine_for_dry_run(cli: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    result = cli("generations", "--prompt", PROMPT, "--output", OUT, "--dry-run")
    assert result.code == 0, result.err
    assert fake.requests == []


def test_validation_runs_before_the_key_check(
    cli: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With two problems, the usage error (nothing to configure would fix it) is reported; one line only.
    monkeypatch.delenv("OPENAI_API_KEY")
    result = cli("generations", "--prompt", PROMPT, "--output", OUT, "--size", "1000x1000")
    assert result.code == 2
    assert "1000x1000" in check_one_error(result)


# --------------------------------------------------------------------------------------------------
# Sizes: an independent model of the gpt-image-2 rules, the nearest-size hint, valid edge cases
# --------------------------------------------------------------------------------------------------


def flexible_ok(width: int, height: int) -> bool:
    """design.md: multiples of 16, longest edge <= 3840, long/short <= 3, 655,360..8,294,400 pixels."""
    return (
        width > 0
        and height > 0
        and width % 16 == 0
        and height % 16 == 0
        and max(width, height) <= 3840
        and max(width, height) <= 3 * min(width, height)
        and 655_360 <= width * height <= 8_294_400
    )


_VALID: List[Tuple[int, int]] = []


def valid_sizes() -> List[Tuple[int, int]]:
    if not _VALID:
        _VALID.extend((w, h) for w in range(16, 3841, 16) for h in range(16, 3841, 16) if flexible_ok(w, h))
    return _VALID


def hinted_size(result: Result) -> Tuple[int, int]:
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    match = re.search(r"--size (\d+)x(\d+)", split_hint(lines[0])[1])  # the suggestion is the hint
    assert match, result.err
    return int(match.group(1)), int(match.group(2))


@pytest.mark.parametrize(
    "size",
    [
        "1000x1000",
        "0x1024",
        "4096x1024",
        "3840x3840",
        "4000x1000",
        "2896x2896",
        "512x512",
        "3840x16",
        "1030x777",
    ],
)
def test_bad_size_hint_names_the_nearest_valid_size(cli: CLI, fake: FakeAPI, size: str) -> None:
    result = cli("generations", "--prompt", PROMPT, "--output", OUT, "--size", size)
    assert result.code == 2
    check_one_error(result)
    assert "nearest" in split_hint(result.err.strip())[1]
    width, height = hinted_size(result)
    assert flexible_ok(width, height), (width, height)
    w0, h0 = (int(part) for part in size.split("x"))
    best = min((w - w0) ** 2 + (h - h0) ** 2 for w, h in valid_sizes())
    assert (width - w0) ** 2 + (height - h0) ** 2 == best
    # ... and the suggestion really passes validation.
    ok = cli("generations", "--prompt", PROMPT, "--output", OUT, "--size", f"{width}x{height}", "--dry-run")
    assert ok.code == 0, ok.err
    assert ok.json["body"]["size"] == f"{width}x{height}"
    assert fake.requests == []


def test_uppercase_x_suggests_the_lowercase_form(cli: CLI) -> None:
    result = cli("generations", "--prompt", PROMPT, "--output", OUT, "--size", "1536X1024")
    assert result.code == 2
    assert hinted_size(result) == (1536, 1024)


@pytest.mark.parametrize(
    "model, size",
    [("gpt-image-1.5", "2048x2048"), ("gpt-image-1.5", "1792x1024"), ("gpt-image-1-mini", "1024x1792")],
)
def test_fixed_size_models_suggest_a_standard_size(cli: CLI, model: str, size: str) -> None:
    result = cli(
        "generations", "--prompt", PROMPT, "--output", OUT, "--model", model, "--allow-retired", "--size", size
    )
    assert result.code == 2
    width, height = hinted_size(result)
    assert f"{width}x{height}" in gpt_image.FIXED_SIZES
    w0, h0 = (int(part) for part in size.split("x"))
    assert (width > height) == (w0 > h0) and (width == height) == (w0 == h0)  # same orientation


VALID_FLEX = [
    "auto",
    "1024x1024",
    "1536x1024",
    "1024x1536",
    "3840x2160",
    "2160x3840",
    "1024x3072",  # ratio exactly 3
    "3072x1024",
    "3840x1280",  # longest edge and ratio both at the limit
    "640x1024",  # 655,360 px: the minimum
    "1024x640",
    "2880x2880",  # 8,294,400 px: the maximum
    "2560x1440",
    "816x816",
]


@pytest.mark.parametrize("size", VALID_FLEX)
@pytest.mark.parametrize(
    "model", ["gpt-image-2", "gpt-image-2-2026-04-21", "openai/gpt-image-2", "gpt-image-2.5-flare"]
)
def test_valid_flexible_sizes_pass(cli: CLI, fake: FakeAPI, model: str, size: str) -> None:
    if size != "auto":
        assert flexible_ok(*(int(p) for p in size.split("x")))  # the test's own model agrees
    result = cli(
        "generations", "--prompt", PROMPT, "--output", OUT, "--model", model, "--size", size, "--dry-run"
    )
    assert result.code == 0, result.err
    assert result.json["body"]["size"] == size
    assert result.json["body"]["model"] == model


@pytest.mark.parametrize("size", ["auto", "1024x1024", "1536x1024", "1024x1536"])
@pytest.mark.parametrize("model", ["gpt-image-1.5", "gpt-image-1-mini", "chatgpt-image-latest"])
def test_fixed_sizes_pass(cli: CLI, model: str, size: str) -> None:
    # Every fixed-size model is shut down: a gateway that still serves one gets its rules (--allow-retired).
    result = cli(
        "generations", "--prompt", PROMPT, "--output", OUT, "--model", model, "--size", size, "--dry-run",
        "--allow-retired",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert result.json["body"]["size"] == size


def test_size_function_agrees_with_the_rules_on_a_sample() -> None:
    rules = gpt_image.rules_for("gpt-image-2")
    sample = [(w, h) for w in range(0, 4000, 48) for h in range(0, 4000, 80)]
    sample += [
        (640, 1024),
        (1024, 3072),
        (2880, 2880),
        (2896, 2896),
        (1024, 3088),
        (3840, 2160),
        (3856, 2160),
    ]
    for w, h in sample:
        problem = gpt_image.size_error(f"{w}x{h}", "gpt-image-2", rules)
        assert (problem is None) == flexible_ok(w, h), (w, h, problem)


# --------------------------------------------------------------------------------------------------
# Other valid edge cases
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, body",
    [
        (["--n", "1"], {"n": 1}),
        (["--n", "10"], {"n": 10}),
        (["--stream", "--partial-images", "0"], {"stream": True, "partial_images": 0}),
        (["--stream", "--partial-images", "3"], {"stream": True, "partial_images": 3}),
        (["--stream", "--n", "1"], {"stream": True, "n": 1}),
        (["--compression", "0", "--format", "webp"], {"output_compression": 0, "output_format": "webp"}),
        (["--compression", "100", "--format", "jpeg"], {"output_compression": 100, "output_format": "jpeg"}),
        (["--quality", "AUTO"], {"quality": "auto"}),
        (["--background", "opaque"], {"background": "opaque"}),
        (["--background", "transparent", "--allow-transparent"], {"background": "transparent"}),
        (["--moderation", "low"], {"moderation": "low"}),
        (["--format", "png"], {"output_format": "png"}),
    ],
)
def test_valid_edges_pass(cli: CLI, fake: FakeAPI, args: List[str], body: Dict[str, Any]) -> None:
    fmt = body.get("output_format", "png")
    output = "out/x." + {"png": "png", "jpeg": "jpg", "webp": "webp"}[fmt]
    result = cli("generations", "--prompt", PROMPT, "--output", output, "--dry-run", *args)
    assert result.code == 0, result.err
    sent = result.json["body"]
    # output_format only when --format says so (or the format is not png, the API's default).
    expected = {"model": "gpt-image-2", "prompt": PROMPT, **body}
    assert sent == expected


def test_prompt_of_exactly_32000_characters_passes(cli: CLI, fake: FakeAPI) -> None:
    prompt = "\u00e9" * 32_000  # characters, not bytes
    result = cli("generations", "--prompt", prompt, "--output", OUT)
    assert result.code == 0, result.err
    assert fake.last.json["prompt"] == prompt


@pytest.mark.parametrize(
    "model", ["gpt-image-1.5", "gpt-image-2.5-flare", "gpt-image-1-mini", "gpt-image-2.6-sunburst"]
)
@pytest.mark.parametrize("ext", ["png", "webp"])
def test_transparent_with_png_or_webp_on_models_that_support_it(cli: CLI, model: str, ext: str) -> None:
    size = "1024x1024"
    result = cli(
        "generations", "--prompt", PROMPT, "--output", f"o.{ext}", "--model", model,
        "--background", "transparent", "--size", size, "--dry-run", "--allow-retired",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert result.json["body"]["background"] == "transparent"


@pytest.mark.parametrize("quality", ["xhigh", "max"])
def test_gpt_image_25_accepts_xhigh_and_max(cli: CLI, quality: str) -> None:
    result = cli(
        "generations", "--prompt", PROMPT, "--output", OUT, "--model", "gpt-image-2.5-sunburst-2026-09-08",
        "--quality", quality, "--dry-run",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert result.json["body"]["quality"] == quality


# --------------------------------------------------------------------------------------------------
# Model names: provider prefixes, dated snapshots, unknown models
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["openai/gpt-image-2", "gpt-image-2-2026-04-21", "OpenAI/GPT-Image-2"])
@pytest.mark.parametrize(
    "args",
    [["--size", "1000x1000"], ["--quality", "xhigh"], ["--background", "transparent", "--output", "o.webp"]],
    ids=["size", "quality", "transparent"],
)
def test_prefixed_and_dated_names_get_gpt_image_2_rules(
    cli: CLI, fake: FakeAPI, model: str, args: List[str]
) -> None:
    result = cli("generations", "--prompt", PROMPT, "--output", OUT, "--model", model, *args)
    assert result.code == 2
    check_one_error(result)
    assert fake.requests == []


@pytest.mark.parametrize("model", ["my-gateway/model-x", "flux-pro", "gpt-image-9"])
def test_unknown_model_warns_and_applies_only_generic_checks(cli: CLI, fake: FakeAPI, model: str) -> None:
    result = cli(
        "generations", "--prompt", PROMPT, "--output", OUT, "--model", model,
        "--size", "1000x1000", "--quality", "max", "--background", "transparent",
    )  # fmt: skip
    assert result.code == 0, result.err
    warnings = [line for line in result.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and model in warnings[0] and "unknown model" in warnings[0]
    body = fake.last.json
    assert body["model"] == model  # sent exactly as given
    assert (body["size"], body["quality"], body["background"]) == ("1000x1000", "max", "transparent")


@pytest.mark.parametrize(
    "args, says",
    [
        (["--n", "11"], "--n"),
        (["--size", "0x1024"], "0x1024"),
        (["--size", "big"], "big"),
        (["--quality", "ultra"], "ultra"),
        (["--compression", "50"], "png"),
        (["--stream", "--n", "2"], "--stream"),
        (["--partial-images", "1"], "--stream"),
        (["--background", "transparent", "--format", "jpeg"], "jpeg"),
    ],
)
def test_unknown_model_still_gets_the_generic_checks(
    cli: CLI, fake: FakeAPI, args: List[str], says: str
) -> None:
    output = "o.jpg" if "jpeg" in args else "o.png"
    result = cli(
        "generations", "--prompt", PROMPT, "--output", output, "--model", "my-gateway/model-x", *args
    )
    assert result.code == 2, result.err
    assert says in check_one_error(result)
    assert fake.requests == []


def test_rules_lookup() -> None:
    gpt2 = gpt_image.MODELS["gpt-image-2"]
    assert gpt_image.rules_for("gpt-image-2") is gpt2
    assert gpt_image.rules_for("openai/gpt-image-2") is gpt2
    assert gpt_image.rules_for("gpt-image-2-2026-04-21") is gpt2
    assert gpt_image.rules_for("azure/openai/gpt-image-2-2026-04-21") is gpt2
    assert gpt_image.rules_for("gpt-image-1.5") is gpt_image.MODELS["gpt-image-1.5"]
    assert gpt_image.rules_for("my-gateway/model-x") is None
    assert gpt_image.rules_for("gpt-image-2-preview") is None


def test_subprocess_output_has_no_traceback_for_unknown_subcommand(env: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "generate", "--prompt", "x", "--output", "o.png"],
        capture_output=True,
        cwd=str(env),
        timeout=60,
    )
    assert proc.returncode == 2
    err = proc.stderr.decode("utf-8")
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("error: ")

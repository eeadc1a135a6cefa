"""The generations route end to end, against the loopback fake (tests/fakeapi.py).

The issue's "Done when" commands run exactly as written, in-process and as a subprocess; the files
they write are compared byte for byte with what the fake sent, and decoded with Pillow. Then the
output contract: stdout, --json, --save-response, --dry-run, previews, {index}, --overwrite, the
format from the extension, --prompt-file and non-ASCII prompts; and the request: body and headers.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any, Callable, Dict, List

import gpt_image
import pytest
from conftest import DIMENSIONS, IMAGE_KEYS, REPO, SENTINEL_KEY, SUCCESS_KEYS, Result
from fakeapi import (
    IMAGES_USAGE,
    SSE,
    FakeAPI,
    Reply,
    identify,
    images_body,
    images_stream_events,
    make_image,
)
from PIL import Image

CLI = Callable[..., Result]

# The "Done when" commands, exactly as written there.
HERO = (
    'generations --prompt "A bold product hero image" --output out/hero.png --size 1536x1024 '
    "--quality high --format png"
)
SKYLINE = (
    'generations --prompt "A cinematic city skyline at night" --output out/skyline-{index}.webp --n 3 '
    "--format webp --compression 90"
)
COVER = 'generations --prompt "A minimal cover image" --output out/cover.png --dry-run'

PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


@pytest.fixture(autouse=True)
def _no_skill_root_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """In-process runs must not read a developer's .env beside the repository's SKILL.md."""
    monkeypatch.setattr(gpt_image, "skill_root", lambda: str(tmp_path / "no-skill-root"))


@pytest.fixture(params=["in-process", "subprocess"])
def runner(request: pytest.FixtureRequest) -> CLI:
    """The program, run in-process (cli) or as a child process (run)."""
    return request.getfixturevalue("cli" if request.param == "in-process" else "run")  # type: ignore[no-any-return]


def check_image(path: Path, sent: bytes, fmt: str) -> None:
    """The file holds exactly the bytes the fake sent, and they decode as a real image of that format."""
    assert path.is_file(), path
    data = path.read_bytes()
    assert data == sent
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        assert img.format == PIL_FORMATS[fmt]
        assert img.size == (64, 48)


def no_temp_files(folder: Path) -> None:
    leftovers = [p.name for p in folder.rglob("*") if p.name.endswith(".part") or p.name.startswith(".")]
    assert leftovers == []


# --------------------------------------------------------------------------------------------------
# The "Done when" commands
# --------------------------------------------------------------------------------------------------


def test_done_when_hero(runner: CLI, fake: FakeAPI, env: Path) -> None:
    result = runner(*shlex.split(HERO))
    assert result.code == 0, result.err
    assert result.out == "out/hero.png\n"
    assert len(fake.requests) == 1
    rec = fake.requests[0]
    assert (rec.method, rec.path) == ("POST", "/v1/images/generations")
    assert rec.json == {
        "model": "gpt-image-2",
        "prompt": "A bold product hero image",
        "size": "1536x1024",
        "quality": "high",
        "output_format": "png",
    }
    assert rec.header("Authorization") == f"Bearer {SENTINEL_KEY}"
    assert rec.content_type == "application/json"
    check_image(env / "out" / "hero.png", rec.sent_images[0], "png")
    assert identify((env / "out" / "hero.png").read_bytes()) == ("final", 0)
    assert sorted(p.name for p in (env / "out").iterdir()) == ["hero.png"]
    assert SENTINEL_KEY not in result.out + result.err


def test_done_when_skyline(runner: CLI, fake: FakeAPI, env: Path) -> None:
    result = runner(*shlex.split(SKYLINE))
    assert result.code == 0, result.err
    paths = [f"out/skyline-{i}.webp" for i in (1, 2, 3)]
    assert result.out == "".join(p + "\n" for p in paths)
    assert len(fake.requests) == 1
    rec = fake.requests[0]
    assert rec.json == {
        "model": "gpt-image-2",
        "prompt": "A cinematic city skyline at night",
        "n": 3,
        "output_format": "webp",
        "output_compression": 90,
    }
    assert len(rec.sent_images) == 3
    for i, path in enumerate(paths):
        check_image(env / path, rec.sent_images[i], "webp")
        assert identify((env / path).read_bytes()) == ("final", i)  # in the order the API sent them
    assert sorted(p.name for p in (env / "out").iterdir()) == [Path(p).name for p in paths]


def test_done_when_cover_dry_run_without_a_key(
    runner: CLI, fake: FakeAPI, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    result = runner(*shlex.split(COVER))
    assert result.code == 0, result.err
    assert fake.requests == []
    assert not (env / "out").exists()
    described = json.loads(result.out)
    assert described["method"] == "POST"
    assert described["url"] == fake.base_url + "/images/generations"
    assert described["body"] == {
        "model": "gpt-image-2",
        "prompt": "A minimal cover image",
    }  # out/cover.png without --format: png is the API's default, so output_format is not sent
    assert described["headers"]["Authorization"].startswith("Bearer ***")
    assert described["outputs"]["images"] == ["out/cover.png"]
    assert described["outputs"]["partials"] == []


# --------------------------------------------------------------------------------------------------
# The request: body and headers
# --------------------------------------------------------------------------------------------------

# output_format is sent when --format is given or the format (from the extension) is not png, the API's
# default: a plain .png output sends none.
BODY_CASES = [
    ([], "a.png", {}),
    (["--size", "auto"], "a.png", {"size": "auto"}),
    (["--size", "3840x2160", "--quality", "low"], "a.png", {"size": "3840x2160", "quality": "low"}),
    (["--n", "1"], "a.png", {"n": 1}),
    (["--n", "2"], "a.png", {"n": 2}),
    (["--background", "opaque"], "a.png", {"background": "opaque"}),
    (["--moderation", "low"], "a.png", {"moderation": "low"}),
    (["--user", "user-42"], "a.png", {"user": "user-42"}),
    (["--compression", "0"], "a.jpg", {"output_format": "jpeg", "output_compression": 0}),
    (["--format", "jpeg"], "a.jpg", {"output_format": "jpeg"}),
    (["--format", "png"], "a.png", {"output_format": "png"}),
    ([], "a.webp", {"output_format": "webp"}),
    (["--stream"], "a.png", {"stream": True}),
    (["--stream", "--partial-images", "1"], "a.png", {"stream": True, "partial_images": 1}),
    (
        ["--model", "gpt-image-1.5", "--allow-retired", "--size", "1024x1536"],
        "a.webp",
        {"output_format": "webp", "size": "1024x1536"},
    ),
    (["--timeout", "30", "--retries", "0", "--quiet"], "a.png", {}),
]


@pytest.mark.parametrize("args, output, extra", BODY_CASES)
def test_body_holds_model_and_only_what_was_set(
    cli: CLI, fake: FakeAPI, args: List[str], output: str, extra: Dict[str, Any]
) -> None:
    result = cli("generations", "--prompt", "a kite", "--output", output, *args)
    assert result.code == 0, result.err
    model = args[args.index("--model") + 1] if "--model" in args else "gpt-image-2"
    assert fake.last.json == {"model": model, "prompt": "a kite", **extra}
    assert "response_format" not in fake.last.body.decode("utf-8")


def test_headers_without_org_and_project(cli: CLI, fake: FakeAPI) -> None:
    assert cli("generations", "--prompt", "a kite", "--output", "a.png").code == 0
    rec = fake.last
    assert rec.header("Authorization") == f"Bearer {SENTINEL_KEY}"
    user_agent = rec.header("User-Agent") or ""
    version = re.search(r'^version\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text("utf-8"), re.M)
    assert version and f"gpt-image-2/{version.group(1)} " in user_agent  # the release, as pyproject names it
    assert rec.header("Accept") == "application/json"
    assert rec.header("Content-Length") == str(len(rec.body))
    assert rec.header("OpenAI-Organization") is None
    assert rec.header("OpenAI-Project") is None


def test_headers_with_org_and_project(runner: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_ORG_ID", "org-SENTINELORG")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj_SENTINELPROJ")
    result = runner("generations", "--prompt", "a kite", "--output", "a.png")
    assert result.code == 0, result.err
    assert fake.last.header("OpenAI-Organization") == "org-SENTINELORG"
    assert fake.last.header("OpenAI-Project") == "proj_SENTINELPROJ"
    assert fake.last.header("Authorization") == f"Bearer {SENTINEL_KEY}"


def test_stream_request_accepts_an_event_stream(cli: CLI, fake: FakeAPI) -> None:
    assert cli("generations", "--prompt", "a kite", "--output", "a.png", "--stream").code == 0
    assert fake.last.header("Accept") == "text/event-stream"


# --------------------------------------------------------------------------------------------------
# Output paths
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "output, n, expected",
    [
        ("out/plain.png", 1, ["out/plain.png"]),
        ("out/plain.png", 3, ["out/plain-1.png", "out/plain-2.png", "out/plain-3.png"]),
        ("out/{index}.png", 2, ["out/1.png", "out/2.png"]),
        ("out/img-{index}-final.png", 1, ["out/img-1-final.png"]),
        ("out/set-{index}/img.png", 2, ["out/set-1/img.png", "out/set-2/img.png"]),
        ("deep/er/folders/x.png", 10, [f"deep/er/folders/x-{i}.png" for i in range(1, 11)]),
    ],
)
def test_output_paths(cli: CLI, fake: FakeAPI, env: Path, output: str, n: int, expected: List[str]) -> None:
    args = ["generations", "--prompt", "a kite", "--output", output]
    if n > 1:
        args += ["--n", str(n)]
    result = cli(*args)
    assert result.code == 0, result.err
    assert result.lines == expected and result.out.endswith("\n")
    sent = fake.last.sent_images
    assert len(sent) == n
    for i, path in enumerate(expected):
        check_image(env / path, sent[i], "png")
    no_temp_files(env)


@pytest.mark.parametrize(
    "ext, fmt", [(".jpg", "jpeg"), (".jpeg", "jpeg"), (".JPG", "jpeg"), (".webp", "webp"), (".png", "png")]
)
def test_format_comes_from_the_extension(cli: CLI, fake: FakeAPI, env: Path, ext: str, fmt: str) -> None:
    result = cli("generations", "--prompt", "a kite", "--output", "pic" + ext)
    assert result.code == 0, result.err
    if fmt == "png":  # the API's default: not sent unless --format asks for it
        assert "output_format" not in fake.last.json
    else:
        assert fake.last.json["output_format"] == fmt
    check_image(env / ("pic" + ext), fake.last.sent_images[0], fmt)


def test_format_flag_adds_the_extension_when_there_is_none(cli: CLI, fake: FakeAPI, env: Path) -> None:
    result = cli("generations", "--prompt", "a kite", "--output", "out/pic", "--format", "webp")
    assert result.code == 0, result.err
    assert result.out == "out/pic.webp\n"
    check_image(env / "out" / "pic.webp", fake.last.sent_images[0], "webp")


def test_overwrite_replaces_an_existing_file(cli: CLI, fake: FakeAPI, env: Path) -> None:
    (env / "out").mkdir()
    target = env / "out" / "hero.png"
    target.write_bytes(b"an old picture")
    refused = cli("generations", "--prompt", "a kite", "--output", "out/hero.png")
    assert refused.code == 2 and fake.requests == []
    assert target.read_bytes() == b"an old picture"
    result = cli("generations", "--prompt", "a kite", "--output", "out/hero.png", "--overwrite")
    assert result.code == 0, result.err
    check_image(target, fake.last.sent_images[0], "png")
    no_temp_files(env)


def test_overwrite_with_several_images(cli: CLI, fake: FakeAPI, env: Path) -> None:
    for i in (1, 2):
        (env / f"s-{i}.png").write_bytes(b"old")
    result = cli("generations", "--prompt", "a kite", "--output", "s.png", "--n", "2", "--overwrite")
    assert result.code == 0, result.err
    for i in (1, 2):
        check_image(env / f"s-{i}.png", fake.last.sent_images[i - 1], "png")


def test_non_ascii_output_path(cli: CLI, fake: FakeAPI, env: Path) -> None:
    result = cli("generations", "--prompt", "a kite", "--output", "sortie/caf\u00e9 \u6771\u4eac.png")
    assert result.code == 0, result.err
    assert result.out == "sortie/caf\u00e9 \u6771\u4eac.png\n"
    check_image(env / "sortie" / "caf\u00e9 \u6771\u4eac.png", fake.last.sent_images[0], "png")


# --------------------------------------------------------------------------------------------------
# Streaming and previews
# --------------------------------------------------------------------------------------------------


def test_stream_with_partials_writes_previews_and_the_final(runner: CLI, fake: FakeAPI, env: Path) -> None:
    result = runner(
        "generations", "--prompt", "a kite", "--output", "out.png", "--stream", "--partial-images", "2"
    )
    assert result.code == 0, result.err
    assert result.out == "out.png\n"  # previews are not final images
    rec = fake.last
    assert rec.json == {
        "model": "gpt-image-2",
        "prompt": "a kite",
        "stream": True,
        "partial_images": 2,
    }
    assert len(rec.sent_partials) == 2
    for k in (1, 2):
        preview = env / f"out.partial-{k}.png"
        check_image(preview, rec.sent_partials[k - 1], "png")
        assert identify(preview.read_bytes()) == ("partial", k - 1)
    check_image(env / "out.png", rec.sent_images[0], "png")
    assert sorted(p.name for p in env.iterdir() if p.suffix == ".png") == [
        "out.partial-1.png",
        "out.partial-2.png",
        "out.png",
    ]
    # Progress on stderr shows the previews saved before the final image.
    err = result.err
    first, second, final = err.find("out.partial-1.png"), err.find("out.partial-2.png"), err.rfind("out.png")
    assert -1 < first < second < final, err


def test_previews_are_written_as_they_arrive(cli: CLI, fake: FakeAPI, env: Path) -> None:
    """A stream cut after the previews: they are on disk although the final image never came."""
    events = images_stream_events("generation", partials=2)
    stream = SSE(events)
    cut = len(b"".join(stream.pieces()[:2]))  # everything up to the final event
    fake.queue(SSE(events, truncate_at=cut + 40))
    result = cli(
        "generations", "--prompt", "a kite", "--output", "out/p.png", "--stream", "--partial-images", "2"
    )
    assert result.code == 6, result.err
    assert result.out == ""
    for k in (1, 2):
        assert identify((env / "out" / f"p.partial-{k}.png").read_bytes()) == ("partial", k - 1)
    assert not (env / "out" / "p.png").exists()
    no_temp_files(env)


def test_stream_json_lists_partials(cli: CLI, fake: FakeAPI, env: Path) -> None:
    result = cli(
        "generations", "--prompt", "a kite", "--output", "o/{index}.webp", "--stream", "--partial-images", "3",
        "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    obj = result.json
    rec = fake.last
    assert obj["images"] == [
        {"path": "o/1.webp", "index": 1, "bytes": len(rec.sent_images[0]), "format": "webp", **DIMENSIONS}
    ]
    assert [p["path"] for p in obj["partials"]] == [f"o/1.partial-{k}.webp" for k in (1, 2, 3)]
    for k, part in enumerate(obj["partials"]):
        assert part["bytes"] == len(rec.sent_partials[k]) and part["format"] == "webp"
        check_image(env / part["path"], rec.sent_partials[k], "webp")


def test_stream_with_split_chunks_and_crlf(cli: CLI, fake: FakeAPI, env: Path) -> None:
    final = make_image("png", color=(1, 2, 3))
    preview = make_image("png", color=(9, 9, 9))
    events = images_stream_events("generation", partials=1, images=[final], partial_images=[preview])
    fake.queue(SSE(events, line_end="\r\n", split=7, comments=True, done=True))
    result = cli(
        "generations", "--prompt", "a kite", "--output", "s.png", "--stream", "--partial-images", "1"
    )
    assert result.code == 0, result.err
    assert (env / "s.png").read_bytes() == final
    assert (env / "s.partial-1.png").read_bytes() == preview


# --------------------------------------------------------------------------------------------------
# --json, --save-response, --dry-run
# --------------------------------------------------------------------------------------------------


def test_json_success_envelope(runner: CLI, fake: FakeAPI, env: Path) -> None:
    result = runner("generations", "--prompt", "a kite", "--output", "out/k.jpg", "--n", "2", "--json")
    assert result.code == 0, result.err
    obj = json.loads(result.out)  # exactly one JSON object, nothing else on stdout
    assert set(obj) >= SUCCESS_KEYS, SUCCESS_KEYS - set(obj)
    rec = fake.last
    assert obj["ok"] is True
    assert (obj["command"], obj["model"]) == ("generations", "gpt-image-2")
    assert obj["images"] == [
        {"path": f"out/k-{i}.jpg", "index": i, "bytes": len(rec.sent_images[i - 1]), "format": "jpeg", **DIMENSIONS}
        for i in (1, 2)
    ]
    for image in obj["images"]:
        assert set(image) == IMAGE_KEYS
        check_image(env / image["path"], rec.sent_images[image["index"] - 1], "jpeg")
    assert obj["partials"] == []
    assert obj["revised_prompt"] is None
    assert obj["usage"] == IMAGES_USAGE
    assert obj["request_id"] == rec.request_id and obj["request_id"].startswith("req_")
    assert obj["response_id"] is None
    assert isinstance(obj["elapsed_s"], (int, float)) and 0 <= obj["elapsed_s"] < 60


def test_json_reports_the_revised_prompt(cli: CLI, fake: FakeAPI) -> None:
    body = images_body(1, "png")
    body["data"][0]["revised_prompt"] = "A kite, revised"
    fake.queue(Reply(json=body))
    result = cli("generations", "--prompt", "a kite", "--output", "k.png", "--json")
    assert result.code == 0, result.err
    assert result.json["revised_prompt"] == "A kite, revised"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_save_response_is_the_raw_body(runner: CLI, fake: FakeAPI, env: Path, stream: bool) -> None:
    args = ["generations", "--prompt", "a kite", "--output", "k.png", "--save-response", "raw/body.txt"]
    if stream:
        args += ["--stream", "--partial-images", "2"]
    result = runner(*args)
    assert result.code == 0, result.err
    sent = fake.last.behaviour
    raw = sent.render() if stream else sent.payload()
    assert isinstance(sent, SSE if stream else Reply)
    assert (env / "raw" / "body.txt").read_bytes() == raw
    assert result.out == "k.png\n"  # the saved response is not an image path


def test_save_response_of_an_awkward_stream_byte_for_byte(cli: CLI, fake: FakeAPI, env: Path) -> None:
    events = images_stream_events("generation", partials=1)
    scripted = SSE(events, line_end="\r\n", comments=True, done=True, split=5)
    fake.queue(scripted)
    args = ["--stream", "--partial-images", "1", "--save-response", "raw.sse"]
    result = cli("generations", "--prompt", "a kite", "--output", "k.png", *args)
    assert result.code == 0, result.err
    assert (env / "raw.sse").read_bytes() == scripted.render()


def test_save_response_with_json(cli: CLI, fake: FakeAPI, env: Path) -> None:
    result = cli(
        "generations", "--prompt", "a kite", "--output", "k.png", "--save-response", "r.json", "--json"
    )
    assert result.code == 0, result.err
    assert (env / "r.json").read_bytes() == fake.last.behaviour.payload()
    assert json.loads((env / "r.json").read_bytes())["usage"] == IMAGES_USAGE


def test_dry_run_json(runner: CLI, fake: FakeAPI, env: Path) -> None:
    result = runner(
        "generations", "--prompt", "a kite", "--output", "out/k-{index}.webp", "--n", "2", "--quality", "low",
        "--save-response", "raw.json", "--dry-run",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert fake.requests == []
    assert list(env.iterdir()) == []  # nothing written, no folder created
    described = json.loads(result.out)
    assert described["headers"]["Authorization"] == "Bearer ***"
    assert described["body"] == {
        "model": "gpt-image-2",
        "prompt": "a kite",
        "quality": "low",
        "n": 2,
        "output_format": "webp",
    }
    assert described["outputs"]["images"] == ["out/k-1.webp", "out/k-2.webp"]
    assert described["outputs"]["save_response"] == "raw.json"
    assert described["url"] == fake.base_url + "/images/generations"
    body_bytes = json.dumps(described["body"], ensure_ascii=False).encode("utf-8")
    assert described["content_length"] == len(body_bytes)
    assert SENTINEL_KEY not in result.out + result.err
    assert "sk-test" not in result.out


def test_dry_run_stream_plans_the_previews(cli: CLI) -> None:
    result = cli(
        "generations",
        "--prompt",
        "a kite",
        "--output",
        "p.png",
        "--stream",
        "--partial-images",
        "2",
        "--dry-run",
    )
    assert result.code == 0, result.err
    assert result.json["outputs"]["partials"] == ["p.partial-1.png", "p.partial-2.png"]
    assert result.json["headers"]["Accept"] == "text/event-stream"


def test_dry_run_body_is_what_is_sent(cli: CLI, fake: FakeAPI) -> None:
    args = [
        "generations",
        "--prompt",
        "a kite",
        "--output",
        "d.webp",
        "--size",
        "2048x1152",
        "--compression",
        "5",
    ]
    described = cli(*args, "--dry-run").json
    assert cli(*args).code == 0
    assert fake.last.json == described["body"]
    assert fake.last.header("User-Agent") == described["headers"]["User-Agent"]
    assert fake.last.body_size == described["content_length"]


# --------------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------------

UNICODE_PROMPT = (
    "Caf\u00e9 na\u00efve \u2014 \u6771\u4eac\u306e\u591c \U0001f3a8 \u00ab quotes \u00bb \"dq\" 'sq' \\ back"
)


def test_non_ascii_prompt_round_trips(runner: CLI, fake: FakeAPI) -> None:
    result = runner("generations", "--prompt", UNICODE_PROMPT, "--output", "u.png")
    assert result.code == 0, result.err
    assert fake.last.json["prompt"] == UNICODE_PROMPT


def test_prompt_file(cli: CLI, fake: FakeAPI, env: Path) -> None:
    (env / "prompt.txt").write_text(UNICODE_PROMPT + "\nsecond line\n", encoding="utf-8")
    result = cli("generations", "--prompt-file", "prompt.txt", "--output", "u.png")
    assert result.code == 0, result.err
    assert fake.last.json["prompt"] == UNICODE_PROMPT + "\nsecond line"


def test_prompt_file_with_bom_and_crlf(cli: CLI, fake: FakeAPI, env: Path) -> None:
    (env / "bom.txt").write_bytes(b"\xef\xbb\xbf" + "Line one \u00e9\r\nLine two\r\n".encode("utf-8"))
    result = cli("generations", "--prompt-file", "bom.txt", "--output", "u.png")
    assert result.code == 0, result.err
    assert fake.last.json["prompt"] == "Line one \u00e9\r\nLine two"


def test_prompt_file_from_stdin(runner: CLI, fake: FakeAPI) -> None:
    result = runner("generations", "--prompt-file", "-", "--output", "u.png", stdin=UNICODE_PROMPT + "\n")
    assert result.code == 0, result.err
    assert fake.last.json["prompt"] == UNICODE_PROMPT


def test_prompt_file_from_stdin_with_bom(cli: CLI, fake: FakeAPI) -> None:
    result = cli("generations", "--prompt-file", "-", "--output", "u.png", stdin=b"\xef\xbb\xbfA kite\n")
    assert result.code == 0, result.err
    assert fake.last.json["prompt"] == "A kite"


# --------------------------------------------------------------------------------------------------
# The image data itself
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_bigger_images_are_saved_exactly(cli: CLI, fake: FakeAPI, env: Path, fmt: str) -> None:
    fake.image_bytes = 300_000  # noise images: any corruption would show
    ext = {"png": "png", "jpeg": "jpg", "webp": "webp"}[fmt]
    result = cli("generations", "--prompt", "noise", "--output", f"n.{ext}", "--n", "2")
    assert result.code == 0, result.err
    for i in (1, 2):
        data = (env / f"n-{i}.{ext}").read_bytes()
        assert data == fake.last.sent_images[i - 1]
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            assert img.format == PIL_FORMATS[fmt]


def test_only_the_images_are_left_behind(cli: CLI, fake: FakeAPI, env: Path) -> None:
    """The folder holds the images and nothing else after a run (no temporary or sidecar files)."""
    result = cli("generations", "--prompt", "a kite", "--output", "o/x.png", "--n", "3")
    assert result.code == 0, result.err
    assert sorted(os.listdir(env / "o")) == ["x-1.png", "x-2.png", "x-3.png"]

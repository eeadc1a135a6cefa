"""gpt-image-2.6 end to end through the fake (design.md "gpt-image-2.6", issue 23): --complexity, .gif and .svg
outputs and their checks, --extra-body, the 2.6 cost figures, the Batch API warning, the Responses text
model's lifecycle, and the sizes the spec is unsure of (the native-transparency warning is tested with the
transparency route, tests of #21).

The fake knows 2.6 (tests/fakeapi.py, "gpt-image-2.6"): complexity for 2.6 only, GIF and SVG answers, broken
ones by prompt marker, and a 400 for body fields it does not know unless told to accept them.
"""

from __future__ import annotations

import base64
import datetime
import json
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import gpt_image as gi
import pytest
from conftest import DIMENSIONS, Result, assert_one_error, split_hint
from fakeapi import FakeAPI, Reply, data_url, faulty_output, make_gif, make_image, make_svg
from PIL import Image

CLI = Callable[..., Result]
FLARE = "gpt-image-2.6-flare"
SUNBURST = "gpt-image-2.6-sunburst"


@pytest.fixture(autouse=True)
def setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Fast Batch API polls, no .env at the skill root, and the folder where kept-aside bytes go."""
    monkeypatch.setattr(gi, "BATCH_POLL_FIRST_S", 0.01)
    monkeypatch.setattr(gi, "BATCH_POLL_MOST_S", 0.02)
    monkeypatch.setattr(gi, "skill_root", lambda: str(tmp_path / "no-skill-root"))
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def on(monkeypatch: pytest.MonkeyPatch, day: datetime.date) -> None:
    """Make the program believe today is `day` (as tests/test_lifecycle.py does)."""
    monkeypatch.setattr(gi, "today", lambda: day)


def dry(cli: CLI, *args: str) -> Dict[str, Any]:
    result = cli(*args, "--dry-run")
    assert result.code == 0, result.err
    shown: Dict[str, Any] = json.loads(result.out)
    return shown


def warnings_of(result: Result) -> List[str]:
    return [line[len("warning: ") :] for line in result.err.splitlines() if line.startswith("warning: ")]


def jobs_file(path: Path, lines: List[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), "utf-8")
    return path


def input_lines(fake: FakeAPI, index: int = 0) -> List[Dict[str, Any]]:
    batch = fake.batches[index]
    return [json.loads(line) for line in fake.file_content(batch["input_file_id"]).splitlines()]


# --------------------------------------------------------------------------------------------------------
# --complexity
# --------------------------------------------------------------------------------------------------------


def test_complexity_is_sent_on_every_route_for_26(
    cli: CLI, fake: FakeAPI, env: Path, images_dir: Path
) -> None:
    subject = str(images_dir / "subject.png")
    assert cli("generations", "-p", "a fox", "-o", "g.png", "-m", FLARE, "--complexity", "LOW").code == 0
    assert fake.last.json["complexity"] == "low"  # any case, sent in lower case
    assert (
        cli(
            "edits",
            "-p",
            "a fox",
            "--image",
            subject,
            "-o",
            "e.png",
            "-m",
            SUNBURST,
            "--complexity",
            "medium",
        ).code
        == 0
    )
    assert fake.last.fields["complexity"] == "medium"  # multipart
    url = data_url(make_image("png", (64, 48)))
    assert (
        cli(
            "edits", "-p", "a fox", "--image-url", url, "-o", "j.png", "-m", FLARE, "--complexity", "high"
        ).code
        == 0
    )
    assert fake.last.json["complexity"] == "high"  # the JSON form
    result = cli(
        "responses", "--input-text", "a fox", "-o", "r.png", "--tool-model", FLARE, "--complexity", "low"
    )
    assert result.code == 0, result.err
    assert fake.last.json["tools"][0]["complexity"] == "low" and "complexity" not in fake.last.json
    # Shown in a dry run; not priced apart.
    shown = dry(cli, "generations", "-p", "x", "-o", "d.png", "-m", FLARE, "--complexity", "medium")
    assert shown["body"]["complexity"] == "medium"
    assert (
        "complexity medium is not priced separately (no figure is known)" in shown["estimated_cost"]["notes"]
    )


@pytest.mark.parametrize(
    "args, option",
    [
        (("generations", "-p", "x", "-o", "o.png"), "--model"),
        (("generations", "-p", "x", "-o", "o.png", "-m", "gpt-image-2.5-flare"), "--model"),
        (("responses", "--input-text", "x", "-o", "o.png"), "--tool-model"),
    ],
)
def test_complexity_is_refused_for_other_models(
    cli: CLI, fake: FakeAPI, args: Tuple[str, ...], option: str
) -> None:
    result = cli(*args, "--complexity", "low")
    assert_one_error(
        result, 2, "does not take --complexity", f"only {SUNBURST}, {FLARE} do", hint=[f"{option} {SUNBURST}"]
    )
    assert fake.requests == []


def test_complexity_values_and_unknown_models(cli: CLI, fake: FakeAPI) -> None:
    assert_one_error(
        cli("generations", "-p", "x", "-o", "o.png", "-m", FLARE, "--complexity", "max"),
        2,
        "low, medium, high",
    )
    # A gateway's model the table does not know: the generic checks only, so it is sent (the fake refuses it).
    result = cli("generations", "-p", "x", "-o", "o.png", "-m", "acme-image-9", "--complexity", "low")
    assert_one_error(result, 4, "unsupported_parameter", "complexity")
    assert fake.last.json["complexity"] == "low"


def test_complexity_in_a_jobs_file(cli: CLI, fake: FakeAPI, env: Path) -> None:
    jobs_file(
        env / "jobs.jsonl", [{"prompt": "a", "complexity": "low"}, "b", {"prompt": "c", "complexity": "huge"}]
    )
    result = cli("generations", "--batch", "jobs.jsonl", "-o", "out/{job}.png", "-m", FLARE)
    assert_one_error(result, 2, "jobs.jsonl:3", "--complexity 'huge' is not one of low, medium, high")
    jobs_file(env / "jobs.jsonl", [{"prompt": "a", "complexity": "low"}, "b"])
    result = cli(
        "generations", "--batch", "jobs.jsonl", "-o", "out/{job}.png", "-m", FLARE, "--complexity", "high"
    )
    assert result.code == 0, result.err
    sent = {r.prompt: r.json.get("complexity") for r in fake.requests}
    assert sent == {"a": "low", "b": "high"}  # the line overrides the command line


# --------------------------------------------------------------------------------------------------------
# .gif and .svg outputs
# --------------------------------------------------------------------------------------------------------


def test_an_svg_is_saved_and_recognised_complete(cli: CLI, fake: FakeAPI, env: Path) -> None:
    result = cli("generations", "-p", "an icon", "-o", "out/icon.svg", "-m", FLARE, "--json", "--metadata")
    assert result.code == 0, result.err
    assert fake.last.json == {"model": FLARE, "prompt": "an icon", "output_format": "svg"}
    saved = (env / "out" / "icon.svg").read_bytes()
    assert saved == fake.last.sent_images[0] and saved.startswith(make_svg()[:100])
    report = result.json
    assert report["images"] == [{"path": "out/icon.svg", "index": 1, "bytes": len(saved), "format": "svg", **DIMENSIONS}]
    assert gi.read_image_info(saved) == gi.ImageInfo("svg", 64, 48, False)
    assert warnings_of(result) == []
    # --format svg with an --output without an extension names it .svg.
    shown = dry(cli, "generations", "-p", "x", "-o", "out/bare", "--format", "svg", "-m", SUNBURST)
    assert shown["outputs"]["images"] == ["out/bare.svg"] and shown["body"]["output_format"] == "svg"


def test_gif_animations_are_saved_on_every_route(
    cli: CLI, fake: FakeAPI, env: Path, images_dir: Path
) -> None:
    result = cli("generations", "-p", "a loop", "-o", "out/loop-{index}.gif", "-m", FLARE, "--n", "2")
    assert result.code == 0, result.err
    for index in (1, 2):
        data = (env / "out" / f"loop-{index}.gif").read_bytes()
        with Image.open(env / "out" / f"loop-{index}.gif") as img:
            assert img.n_frames >= 2
        info = gi.read_image_info(data)
        assert info is not None and (info.format, info.width, info.height) == ("gif", 64, 48)
    # Streamed with previews (still GIFs), an edit and the Responses tool.
    result = cli(
        "generations", "-p", "a loop", "-o", "out/s.gif", "-m", FLARE, "--stream", "--partial-images", "1"
    )
    assert result.code == 0, result.err
    assert (env / "out" / "s.partial-1.gif").read_bytes()[:6] in (b"GIF87a", b"GIF89a")
    subject = str(images_dir / "subject.png")
    assert cli("edits", "-p", "a loop", "--image", subject, "-o", "out/e.gif", "-m", SUNBURST).code == 0
    assert fake.last.fields["output_format"] == "gif"
    assert cli("responses", "--input-text", "a loop", "-o", "out/r.gif", "--tool-model", FLARE).code == 0
    assert fake.last.json["tools"][0]["output_format"] == "gif"
    with Image.open(env / "out" / "r.gif") as img:
        assert img.n_frames >= 2


@pytest.mark.parametrize("model", ["gpt-image-2", "gpt-image-2.5-sunburst", "openai/gpt-image-2-2026-04-21"])
@pytest.mark.parametrize("fmt", ["gif", "svg"])
def test_gif_and_svg_are_refused_for_other_models(cli: CLI, fake: FakeAPI, model: str, fmt: str) -> None:
    result = cli("generations", "-p", "x", "-o", f"o.{fmt}", "-m", model)
    assert_one_error(
        result, 2, f"{model} does not make {fmt} images", f"only {SUNBURST}, {FLARE} do",
        hint=[f"--model {SUNBURST}", "name the output .png"],
    )  # fmt: skip
    result = cli("responses", "--input-text", "x", "-o", "o", "--format", fmt, "--tool-model", model)
    assert_one_error(result, 2, f"does not make {fmt} images", hint=[f"--tool-model {SUNBURST}"])
    assert fake.requests == []


def test_an_svg_is_one_generated_image_not_streamed(
    cli: CLI, fake: FakeAPI, env: Path, images_dir: Path
) -> None:
    subject = str(images_dir / "subject.png")
    cases = [
        (
            ("edits", "-p", "x", "--image", subject, "-o", "o.svg", "-m", FLARE),
            "made by generations only, not by edits",
        ),
        (("responses", "--input-text", "x", "-o", "o.svg", "--tool-model", FLARE), "not by responses"),
        (
            ("generations", "-p", "x", "-o", "o.svg", "-m", FLARE, "--n", "2"),
            "a svg output is one image a request",
        ),
        (
            ("generations", "-p", "x", "-o", "o.svg", "-m", FLARE, "--stream"),
            "a svg output cannot be streamed",
        ),
    ]
    for args, words in cases:
        assert_one_error(cli(*args), 2, words)
    assert fake.requests == []
    # --n 1 is fine.
    assert cli("generations", "-p", "x", "-o", "o.svg", "-m", FLARE, "--n", "1").code == 0


def test_azure_refuses_gif_and_svg(cli: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", fake.azure_url)
    fake.azure_deployments[FLARE] = FLARE
    for fmt in ("gif", "svg"):
        result = cli("generations", "-p", "x", "-o", f"o.{fmt}", "-m", FLARE)
        assert_one_error(result, 2, f"Azure OpenAI does not make {fmt} images (only png, jpeg)")
    assert fake.requests == []


def kept_aside(folder: Path) -> List[Path]:
    return sorted(folder.glob("gpt-image-*"))


def test_a_truncated_gif_is_refused_and_its_bytes_kept(
    cli: CLI, fake: FakeAPI, env: Path, setting: Path
) -> None:
    result = cli("generations", "-p", "a loop [[gif-truncated]]", "-o", "out/loop.gif", "-m", FLARE)
    assert_one_error(
        result,
        6,
        "image 1 is incomplete",
        "the GIF ends at byte",
        "(it was cut short)",
        "nothing was saved at out/loop.gif",
    )
    assert not (env / "out" / "loop.gif").exists()
    (kept,) = kept_aside(setting)
    assert "incomplete" in kept.name and kept.suffix == ".gif"
    assert kept.read_bytes() == faulty_output("gif-truncated") and str(kept) in result.err


def test_a_billion_laughs_svg_is_refused_fast_in_bounded_memory(
    cli: CLI, fake: FakeAPI, env: Path, setting: Path
) -> None:
    tracemalloc.start()
    try:
        started = time.perf_counter()
        result = cli("generations", "-p", "an icon [[svg-bomb]]", "-o", "out/icon.svg", "-m", FLARE)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_one_error(
        result, 6, "the SVG has a DTD", "no entity is expanded", "nothing was saved at out/icon.svg"
    )
    assert elapsed < 5 and peak < 20 * 1024 * 1024  # expanded, its text alone would be 3 GB
    assert not (env / "out" / "icon.svg").exists()
    (kept,) = kept_aside(setting)
    assert kept.read_bytes() == faulty_output("svg-bomb")


def test_a_truncated_svg_is_refused(cli: CLI, fake: FakeAPI, env: Path, setting: Path) -> None:
    result = cli("generations", "-p", "an icon [[svg-truncated]]", "-o", "out/icon.svg", "-m", FLARE)
    assert_one_error(result, 6, "image 1 is incomplete", "the SVG is not well-formed XML")
    assert not (env / "out" / "icon.svg").exists() and len(kept_aside(setting)) == 1


def test_an_svg_that_can_run_code_is_saved_with_a_warning(cli: CLI, fake: FakeAPI, env: Path) -> None:
    result = cli("generations", "-p", "an icon [[svg-script]]", "-o", "out/icon.svg", "-m", FLARE, "--json")
    assert result.code == 0, result.err
    assert (env / "out" / "icon.svg").read_bytes() == faulty_output("svg-script")
    (warning,) = warnings_of(result)
    assert warning.startswith("image 1 (out/icon.svg): the SVG holds <script> and on* event attributes")
    assert "it can run code where it is embedded" in warning
    assert result.json["ok"] is True


def test_a_gif_or_svg_in_a_batch_and_the_batch_api(cli: CLI, fake: FakeAPI, env: Path) -> None:
    jobs_file(env / "jobs.jsonl", ["a loop", {"prompt": "an icon", "output": "out/icon.svg"}])
    result = cli("generations", "--batch", "jobs.jsonl", "-o", "out/{job}.gif", "-m", FLARE)
    assert result.code == 0, result.err
    assert (env / "out" / "1.gif").read_bytes()[:6] == b"GIF89a" and (env / "out" / "icon.svg").exists()
    jobs_file(
        env / "api.jsonl", ["a loop [[gif-truncated]]", {"prompt": "an icon", "output": "api/icon.svg"}]
    )
    result = cli("generations", "--batch", "api.jsonl", "--batch-api", "-o", "api/{job}.gif", "-m", FLARE)
    assert_one_error(result, 7, "1 of 2 jobs failed", "the GIF ends at byte")
    assert [line["body"]["output_format"] for line in input_lines(fake)] == ["gif", "svg"]
    assert gi.check_complete((env / "api" / "icon.svg").read_bytes(), "svg") is None
    assert not (env / "api" / "1.gif").exists()


def test_gif_and_svg_are_not_input_images(cli: CLI, fake: FakeAPI, env: Path) -> None:
    (env / "in.gif").write_bytes(make_gif())
    (env / "in.svg").write_bytes(make_svg())
    for name in ("in.gif", "in.svg"):
        assert_one_error(
            cli("edits", "-p", "x", "--image", name, "-o", "o.png"), 2, "not a PNG, JPEG or WEBP image"
        )
    for data in (make_gif(), make_svg()):
        url = "data:image/png;base64," + base64.b64encode(data).decode()
        assert_one_error(
            cli("edits", "-p", "x", "--image-url", url, "-o", "o.png"), 2, "holds no PNG, JPEG or WEBP"
        )
    assert fake.requests == []


@pytest.mark.parametrize("fmt", ["gif", "svg"])
def test_a_pixel_step_is_refused_on_gif_and_svg(
    cli: CLI, fake: FakeAPI, env: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """A made-up step (as tests/test_seams.py adds one) that every job takes: a GIF or SVG output is refused
    before sending, saying why."""

    def plan(settings: gi.Settings, output_format: str) -> Optional[Dict[str, Any]]:
        return {"width": 512}

    def run(data: bytes, options: Any) -> Tuple[bytes, Dict[str, Any]]:
        raise AssertionError("never run")

    monkeypatch.setattr(gi, "STEPS", (gi.Step("resize", plan, run),))
    result = cli("generations", "-p", "x", "-o", f"o.{fmt}", "-m", FLARE)
    message = assert_one_error(
        result, 2, hint=["name the output .png", "drop the option that asks for the resize step"]
    )
    assert message == (
        f"error: the resize step works on PNG images, not {fmt.upper()}: this program decodes and encodes pixels "
        f"with the standard library alone, which cannot do {fmt.upper()}; a {fmt.upper()} output is saved as the "
        "API made it"
    )
    assert fake.requests == []


# --------------------------------------------------------------------------------------------------------
# --extra-body
# --------------------------------------------------------------------------------------------------------


def test_extra_body_frames_on_a_gif_generation(cli: CLI, fake: FakeAPI, env: Path) -> None:
    args = ("generations", "-p", "a loop", "-o", "out/loop.gif", "-m", FLARE, "--extra-body", '{"frames": 4}')
    shown = dry(cli, *args)
    assert shown["body"] == {"model": FLARE, "prompt": "a loop", "output_format": "gif", "frames": 4}
    assert shown["unchecked"] == ["frames"]
    assert "--extra-body: frames sent as given, unchecked" in shown["notes"]
    # The API (here the fake) does not know the field yet: its refusal is reported as it gave it.
    assert_one_error(cli(*args), 4, "unknown_parameter", "Unknown parameter: 'frames'")
    fake.accept_extra = ("frames",)
    result = cli(*args, "--metadata")
    assert result.code == 0, result.err
    assert fake.last.json["frames"] == 4 and list(fake.last.json)[-1] == "frames"
    assert "--extra-body: frames sent as given, unchecked" in result.err
    sidecar = json.loads((env / "out" / "loop.gif.json").read_text("utf-8"))
    assert sidecar["sent"]["frames"] == 4 and sidecar["unchecked"] == ["frames"]


def test_values_are_sent_as_given(cli: CLI, fake: FakeAPI) -> None:
    fake.strict_fields = False
    given = {
        "frames": 16,
        "frame_duration": 0.08,
        "loop": True,
        "style": {"palette": ["#fff", None]},
        "tag": "x",
    }
    assert (
        cli("generations", "-p", "x", "-o", "o.gif", "-m", FLARE, "--extra-body", json.dumps(given)).code == 0
    )
    assert {k: fake.last.json[k] for k in given} == given


@pytest.mark.parametrize(
    "field, instead",
    [
        ("n", "use --n"),
        ("model", "use --model"),
        ("prompt", "use --prompt or --prompt-file"),
        ("size", "use --size"),
        ("output_format", "use --format, or the --output extension"),
        ("complexity", "use --complexity"),
        ("stream", "use --stream"),
        ("image[]", "use --image, --image-url or --image-file-id"),
        ("images", "use --image, --image-url or --image-file-id"),
        ("mask", "use --mask, --mask-url or --mask-file-id"),
        ("tools", "use --tool-model"),
        ("response_format", "drop it"),
    ],
)
def test_a_field_the_tool_sets_is_refused(cli: CLI, fake: FakeAPI, field: str, instead: str) -> None:
    result = cli("generations", "-p", "x", "-o", "o.png", "--extra-body", json.dumps({field: 2}))
    assert_one_error(result, 2, f"--extra-body sets '{field}', which this tool sends itself", hint=[instead])
    assert fake.requests == []


@pytest.mark.parametrize(
    "text, words",
    [
        (
            "{frames: 4}",
            "--extra-body is not valid JSON (Expecting property name enclosed in double quotes at column 2)",
        ),
        ("", None),  # empty: unset
        ("[1, 2]", "must be a JSON object of fields, not a list"),
        ('"frames"', "not a string"),
        ("4", "not a number or null"),
        ('{"frames": NaN}', "NaN is not a JSON number"),
        ('{"frames": 1e999}', "a number too large for JSON"),
        ('{"frames": "\\ud800"}', "not UTF-8"),
        ('{"frames": ' + "[" * 100_000, "nests too deeply to read"),
    ],
)
def test_extra_body_that_is_not_a_json_object(
    cli: CLI, fake: FakeAPI, text: str, words: Optional[str]
) -> None:
    result = cli("generations", "-p", "x", "-o", "o.png", "--extra-body", text, "--dry-run")
    if words is None:
        assert result.code == 0 and "unchecked" not in json.loads(result.out)
        return
    assert_one_error(result, 2, words)


def test_multipart_edits_take_text_and_numbers(cli: CLI, fake: FakeAPI, env: Path, images_dir: Path) -> None:
    fake.accept_extra = ("frames", "frame_duration", "label")
    subject = str(images_dir / "subject.png")
    base = ("edits", "-p", "x", "--image", subject, "-o", "o.gif", "-m", FLARE)
    body = '{"frames": 4, "frame_duration": 0.08, "label": "loop"}'
    assert cli(*base, "--extra-body", body).code == 0
    assert {k: fake.last.fields[k] for k in ("frames", "frame_duration", "label")} == {
        "frames": "4", "frame_duration": "0.08", "label": "loop",
    }  # fmt: skip
    shown = dry(cli, *base, "--overwrite", "--extra-body", body)
    assert {"name": "frames", "value": "4"} in shown["parts"] and shown["unchecked"] == [
        "frames",
        "frame_duration",
        "label",
    ]
    for value in ("true", "null", "[4]", '{"n": 4}'):
        result = cli(*base, "--overwrite", "--extra-body", f'{{"frames": {value}}}')
        assert_one_error(
            result,
            2,
            "a multipart edit sends fields as text, so it takes text and numbers only",
            hint=["--image-url"],
        )
    # The JSON form takes any JSON value.
    fake.strict_fields = False
    url = data_url(make_image("png", (64, 48)))
    assert (
        cli(
            "edits",
            "-p",
            "x",
            "--image-url",
            url,
            "-o",
            "j.gif",
            "-m",
            FLARE,
            "--extra-body",
            '{"frames": [1, 2]}',
        ).code
        == 0
    )
    assert fake.last.json["frames"] == [1, 2]


def test_responses_get_it_in_the_top_level_body(cli: CLI, fake: FakeAPI) -> None:
    fake.accept_extra = ("frames",)
    result = cli("responses", "--input-text", "x", "-o", "o.png", "--extra-body", '{"frames": 4}')
    assert result.code == 0, result.err
    assert fake.last.json["frames"] == 4 and "frames" not in fake.last.json["tools"][0]
    for field in ("input", "tool_choice", "previous_response_id", "safety_identifier"):
        result = cli("responses", "--input-text", "x", "-o", "o.png", "--extra-body", json.dumps({field: 1}))
        assert_one_error(result, 2, f"sets '{field}'")


def test_extra_body_in_jobs_file_lines(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.accept_extra = ("frames", "frame_duration")
    jobs_file(
        env / "jobs.jsonl",
        [
            {"prompt": "a", "extra_body": {"frames": 8}},  # the object itself
            {"prompt": "b", "extra-body": '{"frame_duration": 50}'},  # JSON text, as on a command line
            "c",  # the command line's
            {"prompt": "d", "extra_body": None},  # none at all
        ],
    )
    result = cli(
        "generations",
        "--batch",
        "jobs.jsonl",
        "-o",
        "out/{job}.gif",
        "-m",
        FLARE,
        "--extra-body",
        '{"frames": 2}',
    )
    assert result.code == 0, result.err
    sent = {
        r.prompt: {k: r.json[k] for k in ("frames", "frame_duration") if k in r.json} for r in fake.requests
    }
    assert sent == {"a": {"frames": 8}, "b": {"frame_duration": 50}, "c": {"frames": 2}, "d": {}}
    # A bad one names its line; a line's value of another kind is refused too.
    jobs_file(
        env / "bad.jsonl",
        ["ok", {"prompt": "x", "extra_body": {"size": "1024x1024"}}, {"prompt": "y", "extra_body": [1]}],
    )
    result = cli("generations", "--batch", "bad.jsonl", "-o", "bad/{job}.gif", "-m", FLARE)
    assert_one_error(result, 2, "bad.jsonl:2", "--extra-body sets 'size'", then=["bad.jsonl:3: "])


def test_extra_body_goes_into_a_batch_api_line(cli: CLI, fake: FakeAPI, env: Path, images_dir: Path) -> None:
    fake.accept_extra = ("frames",)
    jobs_file(env / "jobs.jsonl", [{"prompt": "a", "image": str(images_dir / "subject.png")}])
    result = cli("edits", "--batch", "jobs.jsonl", "--batch-api", "-o", "out/{job}.gif", "-m", FLARE,
                 "--extra-body", '{"frames": {"count": 4}}')  # fmt: skip
    assert result.code == 0, result.err
    (line,) = input_lines(fake)
    assert line["body"]["frames"] == {"count": 4}  # a Batch API edit is JSON: any value goes
    assert line["body"]["images"][0]["image_url"].startswith("data:image/png;base64,")


# --------------------------------------------------------------------------------------------------------
# Cost, the Batch API, the text model's lifecycle, sizes, transparency
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "quality, scale", [("low", 3.5), ("medium", 3.5), ("high", None), ("xhigh", None), ("max", None)]
)
def test_26_estimates_use_the_reported_token_figures(cli: CLI, quality: str, scale: Optional[float]) -> None:
    shown = dry(
        cli, "generations", "-p", "x", "-o", "o.png", "-m", FLARE, "--quality", quality, "--size", "1536x1024"
    )
    estimate = shown["estimated_cost"]
    base = gi.output_tokens(1536, 1024, gi.MODELS["gpt-image-2.5-flare"].token_factors[quality])  # type: ignore[index]
    tokens = -(-base * 7 // 2) if scale else base
    assert estimate["output_tokens"] == tokens and estimate["usd"] == round(tokens * 30 / 1e6, 4)
    if scale:
        assert estimate["basis"] == (
            f"1 x 1536x1024 {quality} on gpt-image-2.6, output only, at 3.5 x gpt-image-2.5's output tokens "
            "(a third-party figure); an estimate"
        )
    else:
        assert estimate["basis"] == f"1 x 1536x1024 {quality} on gpt-image-2.6, output only; an estimate"
    # 2.5 is as before.
    same = dry(
        cli,
        "generations",
        "-p",
        "x",
        "-o",
        "o.png",
        "-m",
        "gpt-image-2.5-flare",
        "--quality",
        quality,
        "--size",
        "1536x1024",
    )
    assert same["estimated_cost"]["output_tokens"] == base
    svg = dry(cli, "generations", "-p", "x", "-o", "o.svg", "-m", FLARE, "--quality", quality)
    assert (
        "svg output priced as an image of that size; its own costs are not known"
        in svg["estimated_cost"]["notes"]
    )


def test_the_batch_api_with_26_warns_and_still_submits(cli: CLI, fake: FakeAPI, env: Path) -> None:
    jobs_file(env / "jobs.jsonl", ["one", "two", "three"])
    result = cli("generations", "--batch", "jobs.jsonl", "--batch-api", "-o", "out/{job}.png", "-m", SUNBURST)
    assert result.code == 0, result.err
    said = [w for w in warnings_of(result) if "Batch API" in w]
    assert said == [
        f"the Batch API is reported not to take {SUNBURST} yet (a third-party report); the batch is submitted "
        "anyway, and a line it refuses fails its job with the API's reason"
    ]  # once, not once a job
    assert len(list((env / "out").iterdir())) == 3
    # A validation failure from the API still names each failed line's job.
    failed = {"id": "batch_bad", "object": "batch", "status": "failed", "errors": {"object": "list", "data": [
        {"code": "model_not_found", "message": "The Batch API does not support this model.", "param": "body.model",
         "line": 2}]}}  # fmt: skip
    fake.queue(Reply(json=failed), route="GET /v1/batches/*")
    jobs_file(env / "more.jsonl", ["four", "five"])
    result = cli("generations", "--batch", "more.jsonl", "--batch-api", "-o", "more/{job}.png", "-m", FLARE)
    assert_one_error(
        result, 4, "failed validation", "line 2", "jobs file line 2", "does not support this model"
    )
    assert any("reported not to take" in w for w in warnings_of(result))
    # 2.5 is not warned about; the dry run warns too.
    jobs_file(env / "q.jsonl", ["q"])
    quiet = cli(
        "generations",
        "--batch",
        "q.jsonl",
        "--batch-api",
        "-o",
        "q/{job}.png",
        "-m",
        "gpt-image-2.5-flare",
        "--dry-run",
    )
    assert quiet.code == 0 and "Batch API is reported" not in quiet.err
    loud = cli(
        "generations", "--batch", "q.jsonl", "--batch-api", "-o", "q/{job}.png", "-m", FLARE, "--dry-run"
    )
    assert loud.code == 0 and "Batch API is reported not to take" in loud.err


TEXT = ("responses", "--input-text", "a poster", "-o", "out/p.png")


def test_a_text_model_near_its_shutdown_is_warned_and_sent(
    cli: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    on(monkeypatch, datetime.date(2026, 12, 7))
    result = cli(*TEXT, "--model", "gpt-5")
    assert result.code == 0, result.err
    assert "gpt-5 shuts down on 2026-12-11 (in 4 days); move to gpt-6.1-sol" in warnings_of(result)
    assert fake.last.json["model"] == "gpt-5"
    shown = dry(cli, *TEXT, "--model", "openai/gpt-5-nano-2025-08-07", "--overwrite")
    assert shown["warnings"] == [
        "openai/gpt-5-nano-2025-08-07 shuts down on 2026-12-11 (in 4 days); move to gpt-6-luna"
    ]
    for live in ("gpt-5.4", "gpt-5.4-mini", "gpt-4o"):  # gpt-4o: 38 days left
        assert dry(cli, *TEXT, "--model", live, "--overwrite")["warnings"] == []


@pytest.mark.parametrize(
    "model, day, replacement",
    [
        ("gpt-5", datetime.date(2026, 12, 11), "gpt-6.1-sol"),
        ("gpt-5-mini", datetime.date(2026, 12, 12), "gpt-6.1-terra"),
        ("o3-2025-04-16", datetime.date(2027, 3, 1), "gpt-6.1-sol"),
        ("gpt-5-pro", datetime.date(2026, 12, 11), "gpt-6.1-sol"),
        ("gpt-4o", datetime.date(2027, 1, 14), "gpt-5.4"),
        ("gpt-4.1-nano", datetime.date(2027, 1, 14), "gpt-5.4"),
    ],
)
def test_a_text_model_after_its_shutdown_is_refused(
    cli: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch, model: str, day: datetime.date, replacement: str
) -> None:
    on(monkeypatch, day)
    result = cli(*TEXT, "--model", model)
    message = assert_one_error(
        result, 2, f"{model} was shut down on", hint=[f"--model {replacement}", "--allow-retired"]
    )
    assert "the API no longer serves it" in message
    assert fake.requests == []
    result = cli(*TEXT, "--model", model, "--allow-retired")
    assert result.code == 0, result.err
    assert any("sent anyway (--allow-retired)" in w for w in warnings_of(result))
    assert fake.last.json["model"] == model


def test_a_configured_text_model_past_its_shutdown_is_a_configuration_error(
    cli: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    on(monkeypatch, datetime.date(2026, 12, 20))
    monkeypatch.setenv("OPENAI_RESPONSES_MODEL", "gpt-5-nano")
    assert_one_error(cli(*TEXT), 3, "gpt-5-nano was shut down on 2026-12-11", "OPENAI_RESPONSES_MODEL")


def test_sizes_the_spec_is_unsure_of(cli: CLI, fake: FakeAPI, env: Path, images_dir: Path) -> None:
    subject = str(images_dir / "subject.png")
    url = data_url(make_image("png", (64, 48)))
    spec = "the spec's JSON edits schema lists only auto, 1024x1024, 1536x1024, 1024x1536"
    shown = dry(cli, "edits", "-p", "x", "--image-url", url, "-o", "a.png", "--size", "1280x720")
    (warning,) = shown["warnings"]
    assert warning.startswith(f"--size 1280x720 on a JSON edit: {spec}") and "multipart" in warning
    result = cli("edits", "-p", "x", "--image-url", url, "-o", "a.png", "--size", "1280x720")
    assert result.code == 0 and fake.last.json["size"] == "1280x720" and spec in result.err
    for quiet in (["--image-url", url, "--size", "1536x1024"], ["--image", subject, "--size", "1280x720"]):
        assert dry(cli, "edits", "-p", "x", *quiet, "-o", "b.png")["warnings"] == []
    # A Batch API edits line (always JSON), where a refusal would come only after submission.
    jobs_file(env / "jobs.jsonl", [{"prompt": "x", "image": subject}])
    result = cli(
        "edits",
        "--batch",
        "jobs.jsonl",
        "--batch-api",
        "-o",
        "out/{job}.png",
        "--size",
        "1280x720",
        "--dry-run",
    )
    assert result.code == 0 and spec in result.err and "fails only after the batch is submitted" in result.err
    # Above 2560x1440 (in pixels): a note that the API calls it experimental; at or below it, none.
    experimental = "--size {} is above 2560x1440, which the API calls experimental"
    for size, noted in (
        ("3840x2160", True),
        ("2048x2048", True),
        ("2560x1440", False),
        ("16:9@4k", True),
        ("1536x1024", False),
    ):
        notes = dry(cli, "generations", "-p", "x", "-o", "g.png", "--size", size)["notes"]
        assert any("experimental" in n for n in notes) is noted, (size, notes)
    assert (
        experimental.format("3840x2160")
        in dry(cli, "generations", "-p", "x", "-o", "g.png", "--size", "3840x2160")["notes"]
    )


def test_every_refusal_says_what_to_do(cli: CLI, fake: FakeAPI) -> None:
    """The new refusals carry a hint (the house style: what was wrong, what is allowed, how to fix it)."""
    for args in (
        ("generations", "-p", "x", "-o", "o.svg"),
        ("generations", "-p", "x", "-o", "o.png", "--complexity", "low"),
        ("generations", "-p", "x", "-o", "o.png", "--extra-body", '{"n": 1}'),
        ("generations", "-p", "x", "-o", "o.png", "--extra-body", "{"),
    ):
        result = cli(*args)
        line = next(line for line in result.err.splitlines() if line.startswith("error:"))
        assert split_hint(line)[1], line

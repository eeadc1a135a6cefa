"""Transparent images on every model (design.md "Transparency"): the key route (a flat key colour removed here)
and the native route, each result verified, end to end through the fake, which renders subjects whose true
alpha it knows (tests/keyscenes.py) and answers as models do (painted off the key, with noise; faults)."""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, List

import keyscenes
import pytest
from conftest import Result, assert_one_error
from fakeapi import FakeAPI
from PIL import Image, ImageFilter

CLI = Callable[..., Result]
LOGO = ("--prompt", "A flat fox logo", "--background", "transparent")


pytestmark = pytest.mark.usefixtures("fast_polls")  # Batch API polls in milliseconds (conftest)


def rgba(path: Path) -> Image.Image:
    image = Image.open(path)
    assert image.mode == "RGBA", image.mode
    return image


def sent_text(fake: FakeAPI) -> str:
    """What the fake rendered its scene from (its seed): the prompt, or a Responses input, as JSON text."""
    params = fake.last.json
    assert isinstance(params, dict)
    return json.dumps(params.get("prompt") or params.get("input") or "")


def alpha_errors(saved: Image.Image, truth: bytes) -> Dict[str, float]:
    """Mean absolute alpha error over the image and within 2 pixels of an edge of the true alpha."""
    width, height = saved.size
    got = saved.getchannel("A").tobytes()
    edges = Image.frombytes("L", (width, height), truth)
    near = Image.frombytes(
        "L",
        (width, height),
        bytes(
            a != b
            for a, b in zip(
                edges.filter(ImageFilter.MaxFilter(5)).tobytes(), edges.filter(ImageFilter.MinFilter(5)).tobytes()
            )
        ),
    ).tobytes()
    total = sum(abs(a - b) for a, b in zip(got, truth))
    edge = [abs(a - b) for a, b, e in zip(got, truth, near) if e]
    return {"mean": total / len(truth), "edge": sum(edge) / max(len(edge), 1)}


# --------------------------------------------------------------------------------------------------------
# The key route
# --------------------------------------------------------------------------------------------------------


def test_the_key_route_on_gpt_image_2(cli: CLI, fake: FakeAPI, env: Path) -> None:
    result = cli("generations", *LOGO, "--size", "1024x1024", "--output", "out/logo.png", "--json")
    assert result.code == 0, result.err
    body = fake.last.json
    assert "background" not in body and body["output_format"] == "png"
    assert body["prompt"].startswith("A flat fox logo Place the subject on a perfectly flat")
    assert "#00FF00" in body["prompt"] and "shadow, gradient, texture, floor plane, reflection" in body["prompt"]
    report = json.loads(result.out)
    found = report["images"][0]["transparency"]
    assert (found["route"], found["key"], found["verified"], found["problems"]) == ("key", "#00FF00", True, [])
    assert 0.01 < found["transparent"] < 0.99 and found["partial"] > 0
    assert report["steps"] == [{"step": "transparency", "route": "key", "key": "#00FF00"}]
    # Against the true alpha of the scene the fake rendered: the quality the issue asks for, end to end.
    scene = keyscenes.render_key_scene(1024, 1024, (0, 255, 0), "subject", zlib.crc32(sent_text(fake).encode()))
    saved = rgba(env / "out" / "logo.png")
    errors = alpha_errors(saved, scene.alpha)
    assert errors["mean"] <= 1.0 and errors["edge"] <= 6.0, errors
    # The key-coloured region the subject encloses stays opaque.
    interior = [a for a, inside in zip(saved.getchannel("A").tobytes(), scene.interior) if inside]
    assert interior and min(interior) == 255
    # Visible key spill: green above the other channels by more than 24 where alpha > 0, outside the window
    # of key colour the subject encloses (and 2 pixels round it), which is meant to stay green.
    r, g, b, a = (saved.getchannel(c).tobytes() for c in "RGBA")
    window = Image.frombytes("L", saved.size, scene.interior).filter(ImageFilter.MaxFilter(5)).tobytes()
    visible = [(rr, gg, bb) for rr, gg, bb, aa, w in zip(r, g, b, a, window) if aa and not w]
    spill = sum(1 for rr, gg, bb in visible if gg - max(rr, bb) > 24)
    assert spill <= 0.0005 * len(visible), spill
    # Fully transparent pixels are stored as 0,0,0,0.
    raw = saved.tobytes()
    assert all(raw[i : i + 4] == bytes(4) for i in range(0, len(raw), 4) if raw[i + 3] == 0)


def test_a_green_subject_gets_the_magenta_key(cli: CLI, fake: FakeAPI, env: Path) -> None:
    args = ("--prompt", "A green frog sticker", "--background", "transparent", "--output", "frog.png")
    result = cli("generations", *args, "--json")
    assert result.code == 0, result.err
    assert "#FF00FF" in fake.last.json["prompt"]
    assert json.loads(result.out)["images"][0]["transparency"]["key"] == "#FF00FF"
    chosen = cli("generations", *args, "--key-color", "#00ff00", "--overwrite", "--dry-run")
    assert "#00FF00" in json.loads(chosen.out)["body"]["prompt"]


def test_the_key_route_on_edits_and_responses(cli: CLI, fake: FakeAPI, env: Path, images_dir: Path) -> None:
    edit = cli("edits", *LOGO, "--image", str(images_dir / "subject.png"), "--output", "e.png", "--json")
    assert edit.code == 0, edit.err
    assert "#00FF00" in fake.last.fields["prompt"] and "background" not in fake.last.fields
    assert json.loads(edit.out)["images"][0]["transparency"]["verified"] is True
    tool = cli("responses", "--input-text", "A flat fox logo", "--background", "transparent", "--output", "r.png",
               "--json")  # fmt: skip
    assert tool.code == 0, tool.err
    texts = [part["text"] for part in fake.last.json["input"][0]["content"] if part["type"] == "input_text"]
    assert texts[0] == "A flat fox logo" and "#00FF00" in texts[1]
    assert "background" not in fake.last.json["tools"][0]
    assert json.loads(tool.out)["images"][0]["transparency"]["verified"] is True
    assert rgba(env / "r.png").getchannel("A").getextrema() == (0, 255)


def test_dry_runs_show_the_prompt_as_sent_and_the_steps(cli: CLI, fake: FakeAPI) -> None:
    shown = json.loads(cli("generations", *LOGO, "--output", "logo.png", "--dry-run").out)
    assert "perfectly flat" in shown["body"]["prompt"] and "background" not in shown["body"]
    assert shown["steps"] == [{"step": "transparency", "route": "key", "key": "#00FF00"}]
    assert fake.requests == []


@pytest.mark.parametrize("output", ["logo.jpg", "logo.webp"])
def test_the_key_route_refuses_outputs_it_cannot_write(cli: CLI, fake: FakeAPI, output: str) -> None:
    result = cli("generations", *LOGO, "--output", output)
    assert_one_error(result, 2, "png" if output.endswith("jpg") else "the key route", hint=[".png"])
    assert fake.requests == []


@pytest.mark.parametrize(
    "scene, check",
    [("checker", "no alpha"), ("opaque", "no alpha"), ("gradient", "border"), ("shadow", "key colour left"),
     ("border", "border")],
)  # fmt: skip
def test_each_fault_fails_its_check_and_keeps_the_bytes(
    cli: CLI, fake: FakeAPI, env: Path, scene: str, check: str
) -> None:
    result = cli("generations", "--prompt", f"A flat fox logo [[scene:{scene}]]", "--background", "transparent",
                 "--output", "out/logo.png")  # fmt: skip
    assert_one_error(result, 6, "failed its check", check, "logo.source.png", "logo.unverified.png")
    assert not (env / "out" / "logo.png").exists()
    assert (env / "out" / "logo.source.png").read_bytes() == fake.last.sent_images[0]
    assert Image.open(env / "out" / "logo.unverified.png").format == "PNG"


# --------------------------------------------------------------------------------------------------------
# The native route
# --------------------------------------------------------------------------------------------------------


def test_native_on_a_model_that_has_it(cli: CLI, fake: FakeAPI, env: Path) -> None:
    result = cli("generations", *LOGO, "--model", "gpt-image-2.6-sunburst", "--output", "n.png", "--json")
    assert result.code == 0, result.err
    assert fake.last.json["background"] == "transparent" and "perfectly flat" not in fake.last.json["prompt"]
    found = json.loads(result.out)["images"][0]["transparency"]
    assert (found["route"], found["key"], found["verified"]) == ("native", None, True)
    assert (env / "n.png").read_bytes() == fake.last.sent_images[0]  # verified, not changed


def test_native_webp_is_checked_by_its_alpha_flag(cli: CLI, fake: FakeAPI, env: Path) -> None:
    result = cli("generations", *LOGO, "--model", "gpt-image-2.6-sunburst", "--output", "n.webp", "--json")
    assert result.code == 0, result.err
    found = json.loads(result.out)["images"][0]["transparency"]
    assert found["verified"] is True and "alpha flag" in found["note"]


@pytest.mark.parametrize("scene, check", [("checker", "checkerboard"), ("opaque", "no alpha")])
def test_native_faults_are_caught(cli: CLI, fake: FakeAPI, env: Path, scene: str, check: str) -> None:
    result = cli("generations", "--prompt", f"A fox [[scene:{scene}]]", "--background", "transparent",
                 "--model", "gpt-image-2.6-sunburst", "--output", "n.png")  # fmt: skip
    assert_one_error(result, 6, "failed its check", check, "n.source.png")
    assert not (env / "n.png").exists() and (env / "n.source.png").exists()


def test_native_on_gpt_image_2_is_sent_with_a_warning(cli: CLI, fake: FakeAPI) -> None:
    result = cli("generations", *LOGO, "--transparency", "native", "--output", "n.png")
    assert fake.last.json["background"] == "transparent"
    assert "switched it off" in result.err and "key route" in result.err
    assert_one_error(result, 4, "Transparent background is not supported")
    alias = cli("generations", *LOGO, "--allow-transparent", "--output", "n.png", "--dry-run")
    assert json.loads(alias.out)["body"]["background"] == "transparent"


# --------------------------------------------------------------------------------------------------------
# Many images
# --------------------------------------------------------------------------------------------------------


def test_a_batch_of_six_with_one_failing_its_check(cli: CLI, fake: FakeAPI, env: Path) -> None:
    lines: List[Any] = [{"id": f"icon{i}", "prompt": f"A flat icon number {i}"} for i in range(5)]
    lines.append({"id": "bad", "prompt": "A flat icon [[scene:gradient]]"})
    (env / "jobs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), "utf-8")
    result = cli("generations", "--batch", "jobs.jsonl", "--background", "transparent", "--output",
                 "out/{job}.png", "--json")  # fmt: skip
    assert result.code == 7, result.err
    records = [json.loads(line) for line in result.out.splitlines()]
    summary = records.pop()
    assert (summary["saved"], summary["failed"]) == (5, 1)
    good = [r for r in records if r["ok"]]
    assert all(r["images"][0]["transparency"]["verified"] for r in good) and len(good) == 5
    (bad,) = [r for r in records if not r["ok"]]
    assert bad["job"] == "bad" and "border" in bad["error"]["message"]
    assert not (env / "out" / "bad.png").exists() and (env / "out" / "bad.source.png").exists()
    assert "job bad" in result.err


def test_the_batch_api_with_the_key_route(cli: CLI, fake: FakeAPI, env: Path) -> None:
    (env / "jobs.jsonl").write_text("A flat fox logo\nA flat owl logo\n", "utf-8")
    result = cli("generations", "--batch", "jobs.jsonl", "--batch-api", "--background", "transparent",
                 "--output", "out/{job}.png", "--json")  # fmt: skip
    assert result.code == 0, result.err
    (batch,) = fake.batches
    lines = [json.loads(x) for x in fake.file_content(batch["input_file_id"]).splitlines()]
    assert all("#00FF00" in x["body"]["prompt"] and "background" not in x["body"] for x in lines)
    for name in ("1", "2"):
        alpha = rgba(env / "out" / f"{name}.png").getchannel("A")
        assert alpha.getextrema() == (0, 255)
    records = [json.loads(line) for line in result.out.splitlines()][:-1]
    assert all(r["images"][0]["transparency"]["verified"] for r in records)


def test_metadata_records_the_transparency(cli: CLI, fake: FakeAPI, env: Path) -> None:
    result = cli("generations", *LOGO, "--output", "logo.png", "--metadata")
    assert result.code == 0, result.err
    sidecar = json.loads((env / "logo.png.json").read_text("utf-8"))
    assert sidecar["image"]["transparency"]["verified"] is True
    assert sidecar["steps"][0]["step"] == "transparency"
    assert Image.open(io.BytesIO((env / "logo.png").read_bytes())).mode == "RGBA"

"""The seams every later feature builds on: a format is one table row, a pixel step is one table row and runs
in all three modes (one run, --batch, the Batch API), and stdout that cannot be written loses nothing.

Each test adds what it needs to the tables at run time, as tests/test_routes.py does for a route.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import gpt_image as gi
import pytest
from conftest import SCRIPT, Result, assert_one_error
from fakeapi import FakeAPI, Reply, images_body, noise_image
from PIL import Image

CLI = Callable[..., Result]


pytestmark = pytest.mark.usefixtures("fast_polls")  # Batch API polls in milliseconds (conftest)


# --------------------------------------------------------------------------------------------------------
# A format is one table row
# --------------------------------------------------------------------------------------------------------


def ppm(width: int, height: int, seed: int = 1) -> bytes:
    """A binary PPM (P6) image: the made-up fourth format of these tests."""
    pixels = bytes((x * 7 + y * 13 + seed) % 256 for y in range(height) for x in range(width * 3))
    return b"P6\n%d %d\n255\n" % (width, height) + pixels


def _ppm_header(head: bytes) -> Tuple[int, int, int]:
    fields = head.split(maxsplit=4)
    return int(fields[1]), int(fields[2]), len(b" ".join(fields[:4])) + 1


def _ppm_complete(view: memoryview) -> Optional[str]:
    width, height, start = _ppm_header(bytes(view[:64]))
    missing = start + width * height * 3 - len(view)
    return f"the PPM lacks {missing:,} bytes" if missing > 0 else None


def _ppm_info(head: bytes) -> gi.ImageInfo:
    width, height, _ = _ppm_header(head[:64])
    return gi.ImageInfo("ppm", width, height, False)


PPM = gi.ImageFormat(
    "ppm", (".ppm", ".pnm"), "image/x-portable-pixmap", lambda head: head.startswith(b"P6\n"), _ppm_complete,
    _ppm_info, alpha=False, compression=False, input=False, aliases=("pixmap",),
)  # fmt: skip


@pytest.fixture
def with_ppm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(gi.IMAGE_FORMATS, "ppm", PPM)


def test_a_fourth_format_is_one_table_entry(cli: CLI, fake: FakeAPI, env: Path, with_ppm: None) -> None:
    """A made-up format added at run time is recognised, checked whole, named and saved end to end."""
    image = ppm(8, 4)
    fake.queue(Reply(json=images_body(images=[image])))
    result = cli("generations", "--prompt", "a grid", "--output", "out/grid.ppm", "--json")
    assert result.code == 0, result.err
    assert fake.last.json == {"model": "gpt-image-2", "prompt": "a grid", "output_format": "ppm"}
    assert (env / "out" / "grid.ppm").read_bytes() == image
    assert json.loads(result.out)["images"][0]["format"] == "ppm"
    # An alias of --format, and the first extension for an --output without one.
    shown = json.loads(cli("generations", "--prompt", "x", "--output", "out/bare", "--format", "PixMap",
                           "--dry-run").out)  # fmt: skip
    assert shown["outputs"]["images"] == ["out/bare.ppm"] and shown["body"]["output_format"] == "ppm"
    # Its completeness check runs: a cut-short image is exit 6, nothing at the planned path.
    fake.queue(Reply(json=images_body(images=[image[:-5]])))
    cut = cli("generations", "--prompt", "a grid", "--output", "out/cut.ppm")
    assert_one_error(cut, 6, "the PPM lacks 5 bytes")
    assert not (env / "out" / "cut.ppm").exists()
    # Its facts: no alpha, so no transparent background; not an input format, so not an input image.
    assert_one_error(
        cli("generations", "--prompt", "x", "--output", "o.ppm", "--background", "transparent", "-m",
            "gpt-image-2.6-sunburst"),
        2, "png or webp",
    )
    (env / "in.ppm").write_bytes(image)
    assert_one_error(cli("edits", "--prompt", "x", "--image", "in.ppm", "--output", "o.png"), 2, "PNG, JPEG or WEBP")
    assert "PPM" in gi.format_names() and gi.sniff_format(image) == "ppm"


def test_without_the_row_the_format_is_unknown(cli: CLI, fake: FakeAPI) -> None:
    assert_one_error(cli("generations", "--prompt", "x", "--output", "o.ppm"), 2, "unknown extension .ppm")
    assert fake.requests == []


# --------------------------------------------------------------------------------------------------------
# A pixel step is one table row, and runs in all three modes
# --------------------------------------------------------------------------------------------------------


def flipped(data: bytes) -> bytes:
    """The PNG upside down (Pillow: test-only)."""
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(out, format="PNG")
    return out.getvalue()


def pixels(data: bytes) -> bytes:
    return Image.open(io.BytesIO(data)).convert("RGBA").tobytes()


Calls = List[Mapping[str, Any]]


def flip_step(calls: Calls, fail: bool = False) -> gi.Step:
    def plan(settings: gi.Settings, fmt: str) -> Optional[Dict[str, Any]]:
        return {"axis": "vertical"}

    def run(image: gi.Picture, options: Mapping[str, Any]) -> Tuple[gi.Picture, Mapping[str, Any]]:
        calls.append(options)
        result = flipped(image.data())
        if fail:
            raise gi.StepFailed("the made-up check failed", hint="try another seed", output=result)
        return gi.Picture(result), {"flipped": True}

    return gi.Step("flip", plan, run)


@pytest.fixture
def noisy(fake: FakeAPI) -> bytes:
    """The fake answers with noise images: an upside-down copy differs from the original."""
    fake.image_bytes = 400_000  # 512x260: a shape the API makes (a thinner one is not worked on)
    return noise_image("png", 400_000)


def test_a_made_up_step_runs_on_a_single_run(
    cli: CLI, fake: FakeAPI, env: Path, noisy: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: Calls = []
    monkeypatch.setattr(gi, "STEPS", (flip_step(calls),))
    shown = json.loads(cli("generations", "--prompt", "x", "--output", "out/a.png", "--dry-run").out)
    assert shown["steps"] == [{"step": "flip", "axis": "vertical"}] and calls == []
    result = cli("generations", "--prompt", "x", "--output", "out/a.png", "--n", "2", "--json", "--metadata")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["steps"] == [{"step": "flip", "axis": "vertical"}]
    assert [image["flip"] for image in report["images"]] == [{"flipped": True}] * 2
    for name in ("a-1.png", "a-2.png"):
        assert pixels((env / "out" / name).read_bytes()) == pixels(flipped(noisy))
        sidecar = json.loads((env / "out" / f"{name}.json").read_text("utf-8"))
        assert sidecar["steps"] == report["steps"] and sidecar["image"]["flip"] == {"flipped": True}
    assert calls == [{"axis": "vertical"}] * 2
    # A step needs a format it can read: refused before sending.
    before = len(fake.requests)
    assert_one_error(cli("generations", "--prompt", "x", "--output", "b.jpg"), 2, "flip step", "not jpeg")
    assert len(fake.requests) == before


def test_a_made_up_step_runs_in_a_batch(
    cli: CLI, fake: FakeAPI, env: Path, noisy: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: Calls = []
    monkeypatch.setattr(gi, "STEPS", (flip_step(calls),))
    (env / "jobs.txt").write_text("one\ntwo\nthree\n", "utf-8")
    result = cli("generations", "--batch", "jobs.txt", "--output", "out/{job}.png", "--json")
    assert result.code == 0, result.err
    for name in ("1", "2", "3"):
        assert pixels((env / "out" / f"{name}.png").read_bytes()) == pixels(flipped(noisy))
    assert len(calls) == 3
    records = [json.loads(line) for line in result.out.splitlines()]
    assert all(r["steps"] == [{"step": "flip", "axis": "vertical"}] for r in records[:-1])


def test_a_made_up_step_runs_on_batch_api_results(
    cli: CLI, fake: FakeAPI, env: Path, noisy: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: Calls = []
    monkeypatch.setattr(gi, "STEPS", (flip_step(calls),))
    (env / "jobs.jsonl").write_text("one\ntwo\n", "utf-8")
    args = ("generations", "--batch", "jobs.jsonl", "--batch-api", "--output", "out/{job}.png")
    first = cli(*args, "--no-wait")
    assert first.code == 0, first.err
    state = json.loads((env / "jobs.jsonl.batch-state.json").read_text("utf-8"))
    assert state["version"] == 2
    assert [job["steps"] for job in state["jobs"].values()] == [[{"step": "flip", "axis": "vertical"}]] * 2
    collected = cli(*args)
    assert collected.code == 0, collected.err
    for name in ("1", "2"):
        assert pixels((env / "out" / f"{name}.png").read_bytes()) == pixels(flipped(noisy))
    assert len(calls) == 2


def test_a_version_1_state_file_is_still_collected(cli: CLI, fake: FakeAPI, env: Path, noisy: bytes) -> None:
    (env / "jobs.jsonl").write_text("one\n", "utf-8")
    args = ("generations", "--batch", "jobs.jsonl", "--batch-api", "--output", "out/{job}.png")
    assert cli(*args, "--no-wait").code == 0
    path = env / "jobs.jsonl.batch-state.json"
    state = json.loads(path.read_text("utf-8"))
    state["version"] = 1
    for job in state["jobs"].values():
        del job["steps"]
    path.write_text(json.dumps(state), "utf-8")
    collected = cli(*args)
    assert collected.code == 0, collected.err
    assert (env / "out" / "1.png").read_bytes() == noisy


def test_a_failing_step_keeps_the_paid_for_image_beside_the_planned_path(
    cli: CLI, fake: FakeAPI, env: Path, noisy: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: Calls = []
    monkeypatch.setattr(gi, "STEPS", (flip_step(calls, fail=True),))
    result = cli("generations", "--prompt", "x", "--output", "out/a.png")
    message = assert_one_error(result, 6, "the made-up check failed", "a.source.png", "a.unverified.png")
    assert "try another seed" in result.err and message.startswith("error: image 1")
    assert not (env / "out" / "a.png").exists()
    assert (env / "out" / "a.source.png").read_bytes() == noisy
    assert pixels((env / "out" / "a.unverified.png").read_bytes()) == pixels(flipped(noisy))
    # In a batch: that job fails (exit 7), the others are not affected by it.
    (env / "jobs.txt").write_text("one\ntwo\n", "utf-8")
    batch = cli("generations", "--batch", "jobs.txt", "--output", "out/{job}.png", "--json")
    assert batch.code == 7, batch.err
    records = [json.loads(line) for line in batch.out.splitlines()]
    assert [r["ok"] for r in records[:-1]] == [False, False] and records[-1]["failed"] == 2
    for name in ("1", "2"):
        assert not (env / "out" / f"{name}.png").exists()
        assert (env / "out" / f"{name}.source.png").read_bytes() == noisy


def test_a_step_that_cannot_read_the_image_is_exit_6(
    cli: CLI, fake: FakeAPI, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def run(image: gi.Picture, options: Mapping[str, Any]) -> Tuple[gi.Picture, Mapping[str, Any]]:
        raise gi.ImageDataError("the PNG has 3 palette entries, and index 9 is used")

    monkeypatch.setattr(gi, "STEPS", (gi.Step("read", lambda settings, fmt: {}, run),))
    result = cli("generations", "--prompt", "x", "--output", "out/a.png")
    assert_one_error(result, 6, "the read step could not read the image", "index 9")
    assert not (env / "out" / "a.png").exists() and (env / "out" / "a.source.png").exists()


# --------------------------------------------------------------------------------------------------------
# stdout that cannot be written
# --------------------------------------------------------------------------------------------------------


def run_shell(redirect: str, env: Path, fake: FakeAPI, *args: str) -> subprocess.CompletedProcess[str]:
    command = " ".join([f"'{sys.executable}'", f"'{SCRIPT}'", *[f"'{a}'" for a in args], redirect])
    child = dict(os.environ, OPENAI_BASE_URL=fake.base_url)
    return subprocess.run(
        ["/bin/sh", "-c", command], cwd=str(env), env=child, capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell redirections")
@pytest.mark.parametrize("redirect", [">&-", ">/dev/full"], ids=["closed", "full"])
@pytest.mark.parametrize("mode", ["single", "batch", "json"])
def test_stdout_that_cannot_be_written_loses_no_image(redirect: str, mode: str, env: Path, fake: FakeAPI) -> None:
    if redirect == ">/dev/full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    (env / "jobs.txt").write_text("one\ntwo\n", "utf-8")
    args = {
        "single": ("generations", "--prompt", "x", "--output", "out/a.png", "--n", "2"),
        "batch": ("generations", "--batch", "jobs.txt", "--output", "out/{job}.png"),
        "json": ("generations", "--prompt", "x", "--output", "out/a.png", "--n", "2", "--json"),
    }[mode]
    proc = run_shell(redirect, env, fake, *args)
    saved = sorted(p.name for p in (env / "out").iterdir())
    assert proc.returncode == 0, proc.stderr
    assert len(saved) == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "stdout could not be written" in line]
    assert len(lines) == 1, proc.stderr
    assert all(f"out/{name}" in lines[0] for name in saved)

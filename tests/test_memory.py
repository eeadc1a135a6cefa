"""The memory bound of the edits upload: the multipart body is streamed from disk, so the CLI's peak RSS
does not grow with the size of the inputs.

The CLI runs as a child process of a small helper interpreter, whose getrusage(RUSAGE_CHILDREN) gives the
CLI's peak RSS (Linux reports ru_maxrss in KiB; other systems are skipped). The fake discards bodies (keep_bodies=False) so the test process stays small too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import SCRIPT, run_measured, write_padded_png
from fakeapi import FakeAPI

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the child's peak RSS from wait4 (KiB on Linux)"
)

MiB = 1024 * 1024
IMAGES = 16
IMAGE_BYTES = 25 * MiB  # 16 x 25 MiB = 400 MiB uploaded
CEILING = 64 * MiB


def padded_png(path: Path, size: int, width: int = 1024, height: int = 1024) -> None:
    """A PNG signature, IHDR and an IDAT header, then filler up to `size` bytes.

    The first MiB is real (non-zero) data, the rest a hole: reading it still produces `size` bytes, so a
    client that buffered the file would hold all of them, but the test does not write 400 MB to disk.
    """
    write_padded_png(path, size, width, height, real_bytes=MiB)


@pytest.mark.slow
def test_uploading_400_mb_stays_under_a_small_ceiling(env: Path, fake: FakeAPI) -> None:
    fake.keep_bodies = False
    refs = env / "refs"
    refs.mkdir()
    paths = []
    for i in range(IMAGES):
        path = refs / f"big-{i:02d}.png"
        padded_png(path, IMAGE_BYTES)
        paths.append(path)
    total = sum(p.stat().st_size for p in paths)
    assert total == IMAGES * IMAGE_BYTES

    argv = [sys.executable, str(SCRIPT), "edits", "--prompt", "Blend them all", "--output", "out/big.png"]
    for path in paths:
        argv += ["--image", str(path.relative_to(env))]
    child_env = dict(os.environ, OPENAI_BASE_URL=fake.base_url)
    code, out, err, peak, seconds = run_measured(argv, child_env, env)

    assert code == 0, err
    assert out.strip() == "out/big.png"
    assert Path(env / "out" / "big.png").read_bytes() == fake.last.sent_images[0]
    rec = fake.last
    assert rec.complete
    assert rec.body == b""  # the fake really discarded it
    length = int(rec.header("content-length") or -1)
    assert rec.body_size == length > total
    assert rec.body_head.startswith(b"--") and rec.body_tail.endswith(b"--\r\n")
    print(f"\npeak RSS of the CLI uploading {total / MiB:.0f} MiB: {peak / MiB:.1f} MiB in {seconds:.1f} s")
    assert peak < CEILING, f"peak RSS {peak / MiB:.1f} MiB for a {total / MiB:.0f} MiB upload"


def test_the_measurement_would_see_a_client_that_buffers(env: Path) -> None:
    """The probe is sensitive: a child that holds 100 MiB reports at least that much."""
    code, _, err, peak, _ = run_measured(
        [
            sys.executable,
            "-c",
            "data = bytearray(100 * 1024 * 1024); data[::4096] = b'x' * len(data[::4096])",
        ],
        dict(os.environ),
        env,
    )
    assert code == 0, err
    assert peak > 100 * MiB


def test_the_measurement_is_the_childs_not_the_test_runners(env: Path) -> None:
    """A child that does nothing reports about an interpreter's size, whatever pytest itself holds."""
    ballast = bytearray(80 * MiB)  # make this process big: it must not show up in the child's figure
    ballast[::4096] = b"x" * len(ballast[::4096])
    code, _, err, peak, _ = run_measured([sys.executable, "-c", "pass"], dict(os.environ), env)
    assert code == 0, err
    assert peak < 24 * MiB
    del ballast

#!/usr/bin/env python3
"""Benchmark: the edits upload of 16 large images, gpt_image.py against curl -F, on the loopback fake.

    python tests/bench/bench_upload.py [--runs 3] [--images 16] [--mb 40] [--keep]

Starts tests/fakeapi.py standalone with --discard-bodies (it counts request bodies without keeping them),
writes N input files of M MiB (a real PNG signature and IHDR, then random filler: the client neither
decodes nor checks pixels), then runs `gpt_image.py edits` with all of them --runs times and reports the
median wall time and the peak RSS of the CLI process. When curl exists, the same multipart upload is made
with `curl -F` for comparison. Peak RSS is read with getrusage(RUSAGE_CHILDREN) in a small helper
interpreter that starts each client (Linux counts a parent's memory in a freshly forked child's
ru_maxrss, so measuring from a bigger process would overstate it). Linux only. Prints a markdown table.

Not a test: pytest does not collect tests/bench (see norecursedirs in pyproject.toml).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(REPO, "scripts", "gpt_image.py")
FAKE = os.path.join(REPO, "tests", "fakeapi.py")
MiB = 1024 * 1024
PROMPT = "Blend the references into one clean marketing illustration"

HELPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:], stdout=subprocess.DEVNULL)\n"
    "with open(sys.argv[1], 'w') as f:\n"
    "    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code if code >= 0 else 128 - code)\n"
)


def write_input(path: str, size: int, filler: bytes) -> None:
    """A PNG signature, IHDR and IDAT header, then `filler` repeated up to `size` bytes (real data on disk)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 4096, 4096, 8, 2, 0, 0, 0))
    head = b"\x89PNG\r\n\x1a\n" + ihdr + struct.pack(">I", size - 8 - len(ihdr) - 12) + b"IDAT"
    with open(path, "wb") as handle:
        handle.write(head)
        left = size - len(head)
        while left > 0:
            piece = filler[:left]
            handle.write(piece)
            left -= len(piece)


def measure(argv: List[str], env: Dict[str, str], cwd: str) -> Tuple[int, float, int, str]:
    """Run argv under the helper: (exit code, wall seconds, peak RSS bytes, stderr tail)."""
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = os.path.join(tmp, "maxrss")
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", HELPER, rss_file, *argv],
            env=env,
            cwd=cwd,
            stderr=subprocess.PIPE,
            timeout=600,
        )
        wall = time.perf_counter() - start
        with open(rss_file, encoding="ascii") as handle:
            peak = int(handle.read()) * 1024
    return proc.returncode, wall, peak, proc.stderr.decode("utf-8", "replace")[-500:]


def start_fake() -> Tuple[subprocess.Popen, str]:  # type: ignore[type-arg]
    proc = subprocess.Popen(
        [sys.executable, FAKE, "--port", "0", "--discard-bodies"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().decode("ascii").strip()
    if not url.startswith("http://"):
        proc.kill()
        raise SystemExit(f"the fake did not start (said {url!r})")
    return proc, url


def row(name: str, results: List[Tuple[float, int]], uploaded: int) -> str:
    walls = [w for w, _ in results]
    median = statistics.median(walls)
    peak = max(p for _, p in results)
    speed = uploaded / MiB / median if uploaded else 0.0
    rate = f"{speed:,.0f}" if uploaded else "-"
    return (
        f"| {name} | {len(results)} | {median:.2f} | {min(walls):.2f} | {max(walls):.2f} | "
        f"{peak / MiB:.1f} | {rate} |"
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per client (default 3)")
    parser.add_argument("--images", type=int, default=16, help="input files (default 16, the API's limit)")
    parser.add_argument("--mb", type=int, default=40, help="MiB per input file (default 40)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--no-curl", action="store_true", help="skip the curl comparison")
    args = parser.parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("Linux only (peak RSS from getrusage in KiB)", file=sys.stderr)
        return 2

    work = tempfile.mkdtemp(prefix="bench-upload-")
    fake, url = start_fake()
    try:
        filler = os.urandom(MiB)
        paths = []
        for i in range(args.images):
            path = os.path.join(work, f"input-{i:02d}.png")
            write_input(path, args.mb * MiB, filler)
            paths.append(path)
        total = sum(os.path.getsize(p) for p in paths)
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("OPENAI_")}
        env.update(OPENAI_API_KEY="sk-bench-not-a-real-key", OPENAI_BASE_URL=url, NO_PROXY="127.0.0.1")
        for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            env.pop(name, None)

        image_args = [a for p in paths for a in ("--image", p)]
        cli = [sys.executable, SCRIPT, "edits", "--prompt", PROMPT, *image_args, "--quiet", "--overwrite"]
        cases: List[Tuple[str, List[str], int]] = [
            (
                "gpt_image.py edits --dry-run",
                [*cli, "--output", os.path.join(work, "dry.png"), "--dry-run"],
                0,
            ),
            ("gpt_image.py edits", [*cli, "--output", os.path.join(work, "out.png")], total),
        ]
        curl = shutil.which("curl")
        if curl and not args.no_curl:
            form = ["-F", "model=gpt-image-2", "-F", f"prompt={PROMPT}", "-F", "output_format=png"]
            for p in paths:
                form += ["-F", f"image[]=@{p};type=image/png"]
            cases.append(
                (
                    "curl -F",
                    [
                        curl, "-sS", "--fail", "-o", os.devnull, "-H", "Expect:",
                        "-H", "Authorization: Bearer sk-bench-not-a-real-key", *form, url + "/images/edits",
                    ],
                    total,
                )
            )  # fmt: skip
        else:
            print("curl not found: no comparison row", file=sys.stderr)

        # One untimed warm-up per client so the page cache and the interpreter's files are hot for all.
        for name, command, _ in cases:
            code, _, _, err = measure(command, env, work)
            if code != 0:
                raise SystemExit(f"{name} failed (exit {code}): {err}")
        results: Dict[str, List[Tuple[float, int]]] = {name: [] for name, _, _ in cases}
        for _ in range(args.runs):
            for name, command, _ in cases:  # interleaved, so a noisy moment hurts every client alike
                code, wall, peak, err = measure(command, env, work)
                if code != 0:
                    raise SystemExit(f"{name} failed (exit {code}): {err}")
                results[name].append((wall, peak))

        print(
            f"\n{args.images} inputs x {args.mb} MiB = {total / MiB:,.0f} MiB per upload; {args.runs} runs each; "
            f"Python {sys.version.split()[0]}; {os.cpu_count()} CPUs; fake at {url}\n"
        )
        print("| client | runs | median s | min s | max s | peak RSS MiB | MiB/s (median) |")
        print("|---|---|---|---|---|---|---|")
        for name, _, uploaded in cases:
            print(row(name, results[name], uploaded))
    finally:
        fake.kill()
        fake.wait()
        if args.keep:
            print(f"\nkept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

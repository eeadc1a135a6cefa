"""Peak memory of the CLI against a hostile server sending far more than any cap (issue #11, family 2).

    python tests/bench/bench_hostile.py [--cases NAME ...] [--as-limit-gb 2] [--timeout 300] [--python PATH]

The issue's four memory cases, at the issue's sizes, each from tests/hostile.py (raw sockets on loopback,
the bytes generated lazily, so the server holds about one MiB at a time):

  line-2gib      an event stream whose one `data:` line is 2 GiB (no line end; then the server closes)
  lines-10m      10,000,000 `data: x` lines with no blank line (80 MB)
  image-1gib     a JSON body holding one structurally valid PNG of 1 GiB (1.43 GB of base64)
  json-1.5gib    a JSON body of 1.5 GiB: one small image and a 1.5 GiB padding string

Each case runs the CLI once as a child (``run_measured`` from tests/conftest.py: the child's own peak RSS
from the kernel), after a small guard that sets RLIMIT_AS (default 2 GB) and then execs the CLI: a CLI
that buffers what it is sent fails with MemoryError at the limit instead of taking the machine down, and
a watchdog kills any case still running after --timeout seconds. The figures are printed as a markdown
table.

Target, per case: exit 6 (a cap refused it) with peak RSS under 100 MB. Exit status 1 when any case
misses.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

BENCH = Path(__file__).resolve().parent
TESTS = BENCH.parent
for _path in (str(BENCH), str(TESTS), str(TESTS.parent / "scripts")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import hostile as H  # noqa: E402
from common import MB, SCRIPT, cli_env, report  # noqa: E402
from conftest import run_measured  # noqa: E402

GiB = 1024**3
CEILING = 100 * MB

# Sets an address-space limit, then execs the CLI (the limit survives exec; run_measured sees the CLI's peak).
_GUARD = (
    "import os, resource, sys\n"
    "limit = int(sys.argv[1])\n"
    "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)

ARGS = ["generations", "--prompt", "a red fox in the snow", "--output", "out.png", "--retries", "0"]


def _line_2gib() -> Tuple[List[H.Action], List[str], int]:
    size = 2 * GiB
    return [H.Send(H.sse_head()), H.Stream(H.then(b"data: ", H.repeat(b"A", size)))], ["--stream"], size


def _lines_10m() -> Tuple[List[H.Action], List[str], int]:
    size = 8 * 10_000_000
    return [H.Send(H.sse_head()), H.Stream(H.repeat(b"data: x\n", size))], ["--stream"], size


def _image_1gib() -> Tuple[List[H.Action], List[str], int]:
    length, make = H.big_png_b64(GiB // 3 * 4)  # base64 of a 1 GiB PNG
    prefix, suffix = b'{"created": 1, "data": [{"b64_json": "', b'"}]}'
    size = len(prefix) + length + len(suffix)
    return [H.Send(H.head(length=size)), H.Stream(H.then(prefix, make, suffix))], [], size


def _json_1_5gib() -> Tuple[List[H.Action], List[str], int]:
    prefix = json.dumps(H.images_body([H.tiny_png()])).encode()[:-1] + b', "padding": "'
    suffix = b'"}'
    pad = int(1.5 * GiB) - len(prefix) - len(suffix)
    size = len(prefix) + pad + len(suffix)
    return [H.Send(H.head(length=size)), H.Stream(H.then(prefix, H.repeat(b"x", pad), suffix))], [], size


CASES: Dict[str, Callable[[], Tuple[List[H.Action], List[str], int]]] = {
    "line-2gib": _line_2gib,
    "lines-10m": _lines_10m,
    "image-1gib": _image_1gib,
    "json-1.5gib": _json_1_5gib,
}


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    p.add_argument("--as-limit-gb", type=float, default=2.0, help="RLIMIT_AS of the CLI child (default 2 GB)")
    p.add_argument("--timeout", type=float, default=300, help="watchdog per case, seconds (default 300)")
    p.add_argument("--python", default=sys.executable, help="interpreter for the CLI (default: this one)")
    args = p.parse_args()
    if not sys.platform.startswith("linux"):
        raise SystemExit("this benchmark needs Linux (RLIMIT_AS, ru_maxrss in KiB)")
    limit = int(args.as_limit_gb * 1e9)

    rows = ["| case | sent | exit | peak RSS | wall | stderr (last line) |", "|---|---|---|---|---|---|"]
    targets = []
    for name in args.cases:
        actions, extra, size = CASES[name]()
        with H.HostileServer() as server, tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
            server.script(actions)
            env = cli_env(server.base_url)
            argv = [args.python, "-c", _GUARD, str(limit), args.python, str(SCRIPT), *ARGS, *extra]
            started = time.monotonic()
            try:
                code, _out, err, peak, seconds = run_measured(argv, env, Path(tmp), timeout=args.timeout)
            except subprocess.TimeoutExpired:
                code, err, peak, seconds = (
                    -9,
                    f"killed by the watchdog after {args.timeout:g} s",
                    0,
                    args.timeout,
                )
            leftovers = sorted(os.listdir(tmp))
        wall = time.monotonic() - started
        print(f"  {name}: exit {code}, peak {peak / MB:.1f} MB, {seconds:.1f} s", file=sys.stderr, flush=True)
        rows.append(
            f"| {name} | {size / MB:,.0f} MB | {code} | {peak / MB:.1f} MB | {wall:.1f} s | "
            f"{last_line(err).replace('|', '/')} |"
        )
        ok = code == 6 and 0 < peak < CEILING and not leftovers
        detail = f"exit {code}, {peak / MB:.1f} MB" + (f", left {leftovers}" if leftovers else "")
        targets.append((f"{name}: exit 6, peak RSS under {CEILING / MB:.0f} MB, nothing left", ok, detail))
    body = (
        f"CLI children under RLIMIT_AS {limit / 1e9:g} GB (MemoryError instead of a machine out of memory), "
        f"watchdog {args.timeout:g} s.\n\n" + "\n".join(rows)
    )
    return report("Hostile server: peak memory past the caps", body, targets)


if __name__ == "__main__":
    sys.exit(main())

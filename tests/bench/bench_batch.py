"""A jobs file of 100 prompts at 8 in flight, with and without a rate limit: the CLI's --batch vs the SDK.

    python tests/bench/bench_batch.py [--runs N] [--python PATH] [--sdk-max-retries N] [--profile]

Starts tests/fakeapi.py standalone, three times, each in its own process:
  open      --latency 0.2                                   (every image request takes 0.2 s)
  limited   --latency 0.2 --rate-limit 20 --rate-window 1   (a 429 with retry-after, retry-after-ms and
            "Please try again in ...s." past 20 requests a window; restarted, on the same port, before
            every run so each run's rate windows start fresh)
  fast      --latency 0.01                                  (for the memory comparison)
and runs, interleaved, as child processes:
  cli       gpt_image.py generations --batch jobs.txt --output OUT/{job}.png --jobs 8 --quiet
  sdk       the script a user would write: AsyncOpenAI (its default max_retries=2 unless --sdk-max-retries),
            an asyncio.Semaphore(8) around each images.generate, base64-decode data[0].b64_json and write
            the file under the name the CLI uses; a job that raises is counted as not saved
on "open" and "limited" with 100 jobs, and the CLI alone on "fast" with 100 and with 1,000 jobs.

Floors: without a limit, jobs x latency / in flight = 100 x 0.2 s / 8 = 2.5 s (strictly ceil(100 / 8) = 13
rounds of 0.2 s = 2.6 s, before start-up); with the limit, jobs / N x window = 100 / 20 x 1 s = 5 s (strictly
4 full windows and one request, 4.2 s, since a window starts at its first request).

Targets (exit status 1 on a miss, naming it, after a trace of one CLI run; --profile always traces):
  - open: every job saved, median wall within 1.15x of 2.5 s, and under the SDK script's median
  - limited: every job saved in every run, median wall within 1.15x of 5 s (the SDK script's saved count
    and time are reported: it gives up on a job after its retries, a finding rather than a failure)
  - fast: the CLI's peak RSS with 1,000 jobs within 10% of its peak with 100 jobs

The trace runs the CLI once against the same fake built in-process by a small wrapper that logs, for every
image request, when it arrived, whether it was admitted or refused with 429 (and the delay the 429 named),
and when the CLI was launched and exited (one monotonic clock for both processes): it shows the start-up,
the concurrency reached, and for each rate window when the CLI came back after the window reset.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    FAKEAPI,
    SCRIPT,
    TESTS,
    Command,
    FakeServer,
    Series,
    Target,
    clear_dir,
    cli_env,
    fmt_mb,
    fmt_s,
    parser,
    profile_cli,
    report,
    run_interleaved,
    scratch_dir,
    sdk_version,
)

JOBS = 100
BIG_JOBS = 1000
IN_FLIGHT = 8
LATENCY = 0.2
FAST_LATENCY = 0.01
RATE_N = 20
RATE_WINDOW = 1.0
TIME_SLACK = 1.15
RSS_SLACK = 1.10

SDK_SCRIPT = """
import asyncio, base64, sys
from pathlib import Path
from openai import AsyncOpenAI

jobs_file, out_dir, in_flight, max_retries = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
prompts = [line.strip() for line in open(jobs_file, encoding="utf-8") if line.strip()]
width = len(str(len(prompts)))


async def main():
    # The key and the base URL come from OPENAI_API_KEY and OPENAI_BASE_URL.
    client = AsyncOpenAI() if max_retries == "default" else AsyncOpenAI(max_retries=int(max_retries))
    slots = asyncio.Semaphore(in_flight)

    async def one(number, prompt):
        async with slots:
            result = await client.images.generate(model="gpt-image-2", prompt=prompt)
        (out_dir / f"{number:0{width}d}.png").write_bytes(base64.b64decode(result.data[0].b64_json))

    results = await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts, 1)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    print(f"saved {len(results) - len(errors)} failed {len(errors)}")
    if errors:
        print(f"first error: {type(errors[0]).__name__}: {errors[0]}"[:300])
    await client.close()
    return 1 if errors else 0


sys.exit(asyncio.run(main()))
"""

# The same fake, in-process, logging every image request (for the trace of one CLI run). The standalone
# fake keeps no history, so the wrapper wraps the fake's gate: one line per request, admitted or refused.
TRACE_FAKE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import fakeapi

latency, rate_n, window = float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
fake = fakeapi.FakeAPI(keep_bodies=False, history=False)
fake.latency = latency
if rate_n:
    fake.rate_limit = fakeapi.RateLimit(requests=rate_n, window=window)
log = []
gate = getattr(fake, "_gate", None)
if gate is not None:
    def traced(rec):
        reply = gate(rec)
        if rec.method == "POST" and rec.route in fakeapi.MODEL_ROUTES:
            headers = dict(getattr(reply, "headers", None) or {}) if reply is not None else {}
            start = fake._window[0] if getattr(fake, "_window", None) else None
            log.append([time.monotonic(), 200 if reply is None else reply.status,
                        headers.get("retry-after-ms"), start])
        return reply
    fake._gate = traced
fake.start()
print(fake.base_url, flush=True)
sys.stdin.readline()
fake.stop()
print(json.dumps({"traced": gate is not None, "log": log}), flush=True)
"""


class Fake(FakeServer):
    """The standalone fake with a latency and an optional rate limit; restart() keeps its port."""

    def __init__(self, python: str, latency: float, rate_n: int = 0, window: float = RATE_WINDOW) -> None:
        super().__init__(None, python)
        self.argv = [python, str(FAKEAPI), "--port", "0", "--discard-bodies", "--latency", str(latency)]
        if rate_n:
            self.argv += ["--rate-limit", str(rate_n), "--rate-window", str(window)]

    def __enter__(self) -> Fake:
        super().__enter__()
        port = self.base_url.split(":")[2].split("/")[0]
        self.argv[self.argv.index("--port") + 1] = port  # a restart comes back on the same port
        return self

    def restart(self) -> None:
        before = self.base_url
        self.__exit__()
        for attempt in range(50):  # bounded: the port is normally free at once (SO_REUSEADDR)
            try:
                self.__enter__()
                break
            except SystemExit:
                if attempt == 49:
                    raise
                time.sleep(0.1)
        if self.base_url != before:
            raise SystemExit(f"the fake came back at {self.base_url}, not {before}")


@dataclass
class Outcome:
    """What one run of a command saved (the harness's Sample has only time and memory)."""

    code: int
    saved: int
    note: str = ""


@dataclass
class Tally:
    outcomes: List[Outcome] = field(default_factory=list)

    def last(self, runs: int) -> List[Outcome]:
        return self.outcomes[-runs:]  # the warm-up's outcome comes first


def write_jobs(path: Path, count: int) -> None:
    path.write_text(
        "".join(f"a small red fox in the snow, picture {i}\n" for i in range(1, count + 1)), "utf-8"
    )


def counting_check(folder: Path, tally: Tally, sdk: bool) -> Callable[[int, str, str], None]:
    """A check(): record how many images the run left in folder (each non-empty) and what it said."""

    def check(code: int, stdout: str, stderr: str) -> None:
        files = [p for p in folder.glob("*.png") if p.stat().st_size > 0]
        note = ""
        if sdk:
            said = re.search(r"saved (\d+) failed (\d+)", stdout)
            if said is None or code not in (0, 1):
                raise SystemExit(f"the SDK script failed with exit {code}:\n{stdout[-1000:]}{stderr[-2000:]}")
            if int(said.group(1)) != len(files):
                raise SystemExit(f"the SDK script said {said.group(0)} but left {len(files)} files")
            first = re.search(r"first error: (.*)", stdout)
            note = first.group(1) if first else ""
        else:
            listed = [line for line in stdout.splitlines() if line.strip()]
            if len(listed) != len(files):
                raise SystemExit(f"the CLI listed {len(listed)} paths but left {len(files)} files")
            if code != 0:
                note = f"exit {code}: " + (stderr.strip().splitlines() or [""])[-1][:300]
        tally.outcomes.append(Outcome(code, len(files), note))

    return check


def saved_text(outcomes: Sequence[Outcome], jobs: int) -> str:
    counts = [o.saved for o in outcomes]
    if min(counts) == max(counts):
        return f"{counts[0]}/{jobs}"
    return f"{min(counts)}-{max(counts)}/{jobs} (median {statistics.median(counts):g})"


def results_table(
    rows: Sequence[tuple[str, Series, Sequence[Outcome], int, Optional[float]]],
) -> str:
    head = [
        "workload",
        "command",
        "saved",
        "median wall",
        "best wall",
        "median / floor",
        "peak RSS (median)",
        "runs",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for workload, series, outcomes, jobs, floor in rows:
        ratio = f"{series.wall_s / floor:.2f}x" if floor else "-"
        lines.append(
            "| "
            + " | ".join(
                [
                    workload,
                    series.name,
                    saved_text(outcomes, jobs),
                    fmt_s(series.wall_s),
                    fmt_s(series.min_wall_s),
                    ratio,
                    fmt_mb(series.peak_rss),
                    str(len(series.samples)),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


# --- the trace of one CLI run -------------------------------------------------------------------------------


def trace_cli(
    python: str, cli_args: Sequence[str], out: Path, latency: float, rate_n: int, window: float
) -> str:
    """Run the CLI once against the logging fake; return a summary of where its wall time went."""
    fake = subprocess.Popen(
        [python, "-c", TRACE_FAKE, str(TESTS), str(latency), str(rate_n), str(window)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fake.stdin is not None and fake.stdout is not None
    try:
        base_url = fake.stdout.readline().strip()
        if not base_url.startswith("http://"):
            return f"(the tracing fake did not start: {base_url!r})"
        clear_dir(out)()
        launched = time.monotonic()  # CLOCK_MONOTONIC: the same clock as the fake process's
        proc = subprocess.run(
            [python, str(SCRIPT), *cli_args],
            env=cli_env(base_url),
            capture_output=True,
            text=True,
            timeout=300,
        )
        exited = time.monotonic()
        fake.stdin.write("\n")
        fake.stdin.flush()
        data = json.loads(fake.stdout.readline() or "{}")
    finally:
        fake.stdin.close()
        try:
            fake.wait(timeout=10)
        except subprocess.TimeoutExpired:
            fake.kill()
            fake.wait()
        fake.stdout.close()
    if not data.get("traced"):
        return "(the fake has no _gate to wrap any more: no trace)"
    log = data["log"]
    if not log:
        return f"(no request reached the fake; the CLI exited {proc.returncode}: {proc.stderr[-500:]})"
    lines = [
        f"CLI exit {proc.returncode}, {exited - launched:.3f} s from launch to exit (outside the launcher)"
    ]
    arrivals = [t for t, status, _, _ in log]
    admitted = [t for t, status, _, _ in log if status == 200]
    refused = [entry for entry in log if entry[1] == 429]
    last_done = max(admitted) + latency if admitted else max(arrivals)
    lines.append(
        f"- start-up: first request {arrivals[0] - launched:.3f} s after launch; "
        f"exit {exited - last_done:.3f} s after the last answer (at arrival + {latency:g} s)"
    )
    span = last_done - arrivals[0]
    # concurrency at each admitted arrival: admitted requests whose simulated generation covers that instant
    peak = max(sum(1 for s in admitted if s <= t < s + latency) for t in admitted) if admitted else 0
    lines.append(
        f"- {len(admitted)} admitted, {len(refused)} refused with 429; requests span {span:.3f} s; "
        f"peak in flight {peak}; mean in flight {len(admitted) * latency / span:.2f}"
    )
    if not rate_n:
        waves = math.ceil(len(admitted) / IN_FLIGHT)
        lines.append(
            f"- the ideal span at {IN_FLIGHT} in flight is {waves} x {latency:g} s = {waves * latency:.3f} s: "
            f"{span - waves * latency:.3f} s more went between an answer and the next request "
            f"({(span - waves * latency) / max(waves - 1, 1) * 1000:.1f} ms per round)"
        )
        return "\n".join(lines)
    windows: Dict[float, List[list]] = {}
    for entry in log:
        windows.setdefault(entry[3], []).append(entry)
    starts = sorted(windows)
    lines.append("")
    lines.append(
        "| window | opened at | admitted | 429s | the 429s said retry at | window reset at | "
        "next request at | late by |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    late_total = 0.0
    for number, start in enumerate(starts, 1):
        entries = windows[start]
        ok = sum(1 for e in entries if e[1] == 200)
        no = [e for e in entries if e[1] == 429]
        said = max((e[0] + int(e[2]) / 1000 for e in no if e[2]), default=None)
        reset = start + window
        nxt = starts[number] if number < len(starts) else None
        late = (nxt - reset) if nxt is not None else None
        late_total += late or 0.0
        lines.append(
            f"| {number} | {start - launched:.3f} | {ok} | {len(no)} | "
            + (f"{said - launched:.3f}" if said is not None else "-")
            + f" | {reset - launched:.3f} | "
            + (f"{nxt - launched:.3f}" if nxt is not None else "-")
            + " | "
            + (f"{late * 1000:.0f} ms" if late is not None else "-")
            + " |"
        )
    floor_strict = (math.ceil(len(admitted) / rate_n) - 1) * window + latency
    lines.append("")
    lines.append(
        f"(times in s after launch) the next window opened {late_total:.3f} s in all after the resets; "
        f"from the first request to the last answer {span:.3f} s against a strict {floor_strict:.3f} s"
    )
    return "\n".join(lines)


def main() -> int:
    options = parser(__doc__.split("\n")[0], runs=5)
    options.add_argument(
        "--sdk-max-retries",
        default="default",
        help="max_retries for AsyncOpenAI (default: the SDK's default, 2)",
    )
    options.add_argument("--profile", action="store_true", help="also trace one CLI run of each workload")
    args = options.parse_args()
    python, runs = args.python, args.runs
    version = sdk_version(python)
    sdk_retries = "2 (the default)" if args.sdk_max_retries == "default" else str(args.sdk_max_retries)
    floor_open = JOBS * LATENCY / IN_FLIGHT
    floor_limited = JOBS / RATE_N * RATE_WINDOW
    floor_fast = BIG_JOBS * FAST_LATENCY / IN_FLIGHT

    with contextlib.ExitStack() as stack:
        root = stack.enter_context(scratch_dir("bench-batch-"))
        open_fake = stack.enter_context(Fake(python, LATENCY))
        limited_fake = stack.enter_context(Fake(python, LATENCY, RATE_N, RATE_WINDOW))
        fast_fake = stack.enter_context(Fake(python, FAST_LATENCY))
        jobs_file, big_file = root / "jobs.txt", root / "jobs-1000.txt"
        write_jobs(jobs_file, JOBS)
        write_jobs(big_file, BIG_JOBS)

        def cli_argv(batch: Path, out: Path) -> List[str]:
            return [
                python, str(SCRIPT), "generations", "--batch", str(batch), "--output", str(out / "{job}.png"),
                "--jobs", str(IN_FLIGHT), "--quiet",
            ]  # fmt: skip

        def sdk_argv(out: Path) -> List[str]:
            return [python, "-c", SDK_SCRIPT, str(jobs_file), str(out), str(IN_FLIGHT), args.sdk_max_retries]

        def fresh(folder: Path, fake: Optional[Fake] = None) -> Callable[[], None]:
            empty = clear_dir(folder)

            def prepare() -> None:
                empty()
                if fake is not None:
                    fake.restart()

            return prepare

        tallies: Dict[str, Tally] = {}
        commands: List[Command] = []
        plan = [
            # key, name, argv maker, fake, restart before each run, sdk
            ("cli-open", "cli (gpt_image.py)", "open", open_fake, False, False, jobs_file),
            ("sdk-open", f"sdk (openai {version})", "open", open_fake, False, True, jobs_file),
            ("cli-limited", "cli (gpt_image.py)", "limited", limited_fake, True, False, jobs_file),
            ("sdk-limited", f"sdk (openai {version})", "limited", limited_fake, True, True, jobs_file),
            ("cli-100", "cli, 100 jobs", "fast", fast_fake, False, False, jobs_file),
            ("cli-1000", "cli, 1,000 jobs", "fast", fast_fake, False, False, big_file),
        ]
        for key, _name, _, fake, restart, sdk, batch in plan:
            out = root / key
            tallies[key] = Tally()
            commands.append(
                Command(
                    key,
                    sdk_argv(out) if sdk else cli_argv(batch, out),
                    env=cli_env(fake.base_url),
                    cwd=root,
                    prepare=fresh(out, fake if restart else None),
                    check=counting_check(out, tallies[key], sdk),
                )
            )
        print(
            f"fakes: open {open_fake.base_url}, limited {limited_fake.base_url}, fast {fast_fake.base_url}; "
            f"{len(commands)} commands x ({runs} runs + 1 warm-up)",
            file=sys.stderr,
        )
        results = run_interleaved(commands, runs)
        done = {key: tallies[key].last(runs) for key in tallies}
        for (_key, name, *_), series in zip(plan, (results[c.name] for c in commands)):
            series.name = name
        workloads = {
            "cli-open": (f"open, {JOBS} jobs", JOBS, floor_open),
            "sdk-open": (f"open, {JOBS} jobs", JOBS, floor_open),
            "cli-limited": (f"limited {RATE_N}/{RATE_WINDOW:g} s, {JOBS} jobs", JOBS, floor_limited),
            "sdk-limited": (f"limited {RATE_N}/{RATE_WINDOW:g} s, {JOBS} jobs", JOBS, floor_limited),
            "cli-100": (f"fast ({FAST_LATENCY:g} s), {JOBS} jobs", JOBS, JOBS * FAST_LATENCY / IN_FLIGHT),
            "cli-1000": (f"fast ({FAST_LATENCY:g} s), {BIG_JOBS:,} jobs", BIG_JOBS, floor_fast),
        }
        rows = [(workloads[k][0], results[k], done[k], workloads[k][1], workloads[k][2]) for k in workloads]
        cli_open, sdk_open = results["cli-open"], results["sdk-open"]
        cli_lim, sdk_lim = results["cli-limited"], results["sdk-limited"]
        small, big = results["cli-100"], results["cli-1000"]

        def all_saved(key: str, jobs: int) -> bool:
            return all(o.saved == jobs and o.code == 0 for o in done[key])

        def problems(key: str) -> str:
            notes = sorted({o.note for o in done[key] if o.note})
            return "; ".join(notes)[:400]

        targets: List[Target] = [
            (
                "open: every job saved by the CLI in every run",
                all_saved("cli-open", JOBS),
                problems("cli-open"),
            ),
            (
                f"open: CLI median wall within {TIME_SLACK:g}x of the {floor_open:g} s floor",
                cli_open.wall_s <= TIME_SLACK * floor_open,
                f"{cli_open.wall_s:.3f} s, {cli_open.wall_s / floor_open:.2f}x",
            ),
            (
                "open: CLI ahead of the SDK script",
                cli_open.wall_s < sdk_open.wall_s,
                f"{cli_open.wall_s:.3f} s vs {sdk_open.wall_s:.3f} s, {cli_open.wall_s / sdk_open.wall_s:.2f}x",
            ),
            (
                "limited: every job saved by the CLI in every run",
                all_saved("cli-limited", JOBS),
                problems("cli-limited"),
            ),
            (
                f"limited: CLI median wall within {TIME_SLACK:g}x of the {floor_limited:g} s floor",
                cli_lim.wall_s <= TIME_SLACK * floor_limited,
                f"{cli_lim.wall_s:.3f} s, {cli_lim.wall_s / floor_limited:.2f}x",
            ),
            (
                "fast: every job saved by the CLI in every run, 100 and 1,000 jobs",
                all_saved("cli-100", JOBS) and all_saved("cli-1000", BIG_JOBS),
                problems("cli-100") or problems("cli-1000"),
            ),
            (
                f"memory: CLI peak RSS with {BIG_JOBS:,} jobs within {RSS_SLACK - 1:.0%} of {JOBS} jobs",
                big.peak_rss <= RSS_SLACK * small.peak_rss,
                f"{fmt_mb(big.peak_rss)} vs {fmt_mb(small.peak_rss)}, {big.peak_rss / small.peak_rss:.2f}x",
            ),
        ]
        sdk_saved = [o.saved for o in done["sdk-limited"]]
        sdk_note = problems("sdk-limited")
        body = results_table(rows) + (
            f"\n\nWorkloads: {JOBS} prompts (one a line) at --jobs {IN_FLIGHT} and an asyncio.Semaphore"
            f"({IN_FLIGHT}); every image request takes {LATENCY:g} s on the fake (open, limited) or "
            f"{FAST_LATENCY:g} s (fast); the limit answers 429 past {RATE_N} requests per {RATE_WINDOW:g} s "
            f"window (a window opens at its first request). Floors: open {JOBS} x {LATENCY:g} s / {IN_FLIGHT} = "
            f"{floor_open:g} s (strictly {math.ceil(JOBS / IN_FLIGHT) * LATENCY:.1f} s); limited {JOBS} / "
            f"{RATE_N} x {RATE_WINDOW:g} s = {floor_limited:g} s (strictly "
            f"{(math.ceil(JOBS / RATE_N) - 1) * RATE_WINDOW + LATENCY:.1f} s); fast, {BIG_JOBS:,} jobs: "
            f"{floor_fast:g} s. SDK max_retries: {sdk_retries}."
            f"\n\nSDK script under the limit: saved {', '.join(map(str, sdk_saved))} of {JOBS} in its "
            f"{runs} runs (median {statistics.median(sdk_saved):g}) in a median {fmt_s(sdk_lim.wall_s)}"
            + (f"; {sdk_note}" if sdk_note else "")
            + "."
        )
        code = report("Batch: 100 jobs at 8 in flight, with and without a rate limit", body, targets)
        missed = {d.split(":")[0] for d, ok, _ in targets if not ok}
        trace_dir = root / "trace"
        if args.profile or "open" in missed:
            print(f"\nTrace of one CLI run, open ({JOBS} jobs, {LATENCY:g} s, no limit):\n")
            print(trace_cli(python, cli_argv(jobs_file, trace_dir)[2:], trace_dir, LATENCY, 0, RATE_WINDOW))
        if args.profile or "limited" in missed:
            print(f"\nTrace of one CLI run, limited ({RATE_N} per {RATE_WINDOW:g} s window):\n")
            print(
                trace_cli(python, cli_argv(jobs_file, trace_dir)[2:], trace_dir, LATENCY, RATE_N, RATE_WINDOW)
            )
        if args.profile or "memory" in missed:
            env = cli_env(fast_fake.base_url)
            for batch, count in ((jobs_file, JOBS), (big_file, BIG_JOBS)):
                clear_dir(trace_dir)()
                print(f"\nOne CLI run of {count:,} jobs (fast) under cProfile and tracemalloc:\n")
                print(profile_cli(python, cli_argv(batch, trace_dir)[2:], env, root))
    return code


if __name__ == "__main__":
    sys.exit(main())

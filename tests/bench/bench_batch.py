"""A jobs file run at 8 in flight, with and without a rate limit: the CLI's --batch vs an SDK script.

    python tests/bench/bench_batch.py [--runs N] [--python PATH] [--sdk-max-retries N] [--fake-backlog N]
                                      [--profile]

Starts tests/fakeapi.py standalone (its own main(), through a two-line wrapper that raises the listen
backlog, see FAKE_MAIN), once per set-up, each in its own process:
  open      --latency 0.2                                  every image request takes 0.2 s
  limited   --latency 0.2 --rate-limit 20 --rate-window 1  past 20 requests a window, a 429 with retry-after,
                                                           retry-after-ms and "Please try again in ...";
  tight     --latency 0.2 --rate-limit 4 --rate-window 1   a limit below the 8 in flight
  fast      --latency 0.01                                 for the memory comparison
(a rate-limited fake is restarted, on the same port, before every run, so each run's windows start fresh)
and runs, interleaved, as child processes:
  cli       gpt_image.py generations --batch jobs.txt --output OUT/{job}.png --jobs 8 --quiet
  sdk       the script a user would write: AsyncOpenAI (the SDK's default max_retries=2 unless
            --sdk-max-retries), an asyncio.Semaphore(8) around each images.generate, base64-decode
            data[0].b64_json and write the file under the name the CLI uses; a job that raises is not saved
with 100 jobs on open and limited, 24 on tight, and the CLI alone with 100 and 1,000 jobs on fast.

Floors: jobs x latency / in flight, or jobs / N x window under a limit: open 100 x 0.2 s / 8 = 2.5 s
(strictly 13 rounds of 0.2 s = 2.6 s, before start-up); limited 100 / 20 x 1 s = 5 s (strictly 4.2 s: four
whole windows and one request, a window opening at its first request); tight 24 / 4 x 1 s = 6 s.

Targets (exit status 1 on a miss, naming it, after a trace and a profile of one CLI run):
  - open: every job saved, median wall within 1.15x of 2.5 s, and under the SDK script's median
  - limited: every job saved in every run, median wall within 1.15x of 5 s; tight: every job saved
    (the SDK script's saved count and time are reported: it gives up on a job after its retries, a finding
    rather than a failure)
  - fast: every job saved; the CLI's peak RSS with 1,000 jobs within 10% of its peak with 100 jobs

The trace (--profile, or on a miss) runs the CLI once against the same fake built in-process by a wrapper
that logs every image request: when it arrived, whether it was admitted or refused with 429 (and the delay
the 429 named) and when it was answered, on the same monotonic clock as the CLI's launch and exit. It gives
the start-up, the concurrency reached, the time from an answer to the worker's next request, and, for each
rate window, when the CLI came back after the window reset. The profile is cProfile in every thread and
tracemalloc (the peak, and what the planned jobs hold).
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
TIGHT_JOBS = 24  # a limit below the jobs in flight: some requests are refused several times in a row
TIGHT_N = 4
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
        kinds = sorted({type(e).__name__ for e in errors})
        print(f"first error: {', '.join(kinds)}; {str(errors[0])[:120]}")
    await client.close()
    return 1 if errors else 0


sys.exit(asyncio.run(main()))
"""

# tests/fakeapi.py's own main(), with a listen backlog of --fake-backlog instead of socketserver's 5: with
# 8 clients connecting at once, a backlog of 5 overflows now and then, and the dropped SYN is retransmitted
# after 1 s, a stall that has nothing to do with the client (the CLI opens a connection per request; the
# SDK keeps 8 open, so it would hardly ever pay it).
FAKE_MAIN = r"""
import sys
sys.path.insert(0, sys.argv[1])
import fakeapi
if int(sys.argv[2]):
    fakeapi._Server.request_queue_size = int(sys.argv[2])
sys.exit(fakeapi.main(sys.argv[3:]))
"""

# The same fake, in-process, logging every image request (for the trace of one CLI run). The standalone
# fake keeps no history, so the wrapper wraps the fake's gate: one line per request, admitted or refused.
TRACE_FAKE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import fakeapi

latency, rate_n, window, backlog = float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
if backlog:
    fakeapi._Server.request_queue_size = backlog
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
answered = []
succeeded = getattr(fake, "_succeeded", None)
if succeeded is not None:
    def counted(rec, count=1):
        if count > 0 and rec.method == "POST" and rec.route in fakeapi.MODEL_ROUTES:
            answered.append(time.monotonic())
        return succeeded(rec, count)
    fake._succeeded = counted
fake.start()
print(fake.base_url, flush=True)
sys.stdin.readline()
fake.stop()
print(json.dumps({"traced": gate is not None, "log": log, "answered": answered}), flush=True)
"""


class Fake(FakeServer):
    """The standalone fake with a latency and an optional rate limit; restart() keeps its port."""

    def __init__(
        self, python: str, backlog: int, latency: float, rate_n: int = 0, window: float = RATE_WINDOW
    ) -> None:
        super().__init__(None, python)
        self.argv = [python, "-c", FAKE_MAIN, str(TESTS), str(backlog)]
        self.argv += ["--port", "0", "--discard-bodies", "--latency", str(latency)]
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


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full (Linux; -1 elsewhere)."""
    try:
        head, values = Path("/proc/net/netstat").read_text().splitlines()[:2]
        return int(dict(zip(head.split(), values.split()))["ListenOverflows"])
    except (OSError, ValueError, KeyError):
        return -1


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
            note = f"gave up with {first.group(1).split(';')[0]}" if first else ""
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


# cProfile in every thread (the batch's work runs in worker threads, which a plain cProfile of the main
# thread does not see), the process's CPU time, and tracemalloc: the peak, and what the jobs hold once planned.
_PROFILE_BATCH = r"""
import contextlib, cProfile, io, pstats, sys, threading, time, tracemalloc
sys.path.insert(0, sys.argv[1])
import gpt_image
profiles = []
run = threading.Thread.run
def profiled(self):
    profile = cProfile.Profile()
    profiles.append(profile)
    profile.enable()
    try:
        run(self)
    finally:
        profile.disable()
threading.Thread.run = profiled
planned = []
plan = getattr(gpt_image, "plan_batch", None)
if plan is not None:
    def plan_batch(*args, **kwargs):
        jobs = plan(*args, **kwargs)
        planned.append((len(jobs), tracemalloc.take_snapshot()))
        return jobs
    gpt_image.plan_batch = plan_batch
tracemalloc.start(1)
main = cProfile.Profile()
profiles.append(main)
cpu, started = time.process_time(), time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    main.enable()
    code = gpt_image.main(sys.argv[2:])
    main.disable()
wall, cpu = time.perf_counter() - started, time.process_time() - cpu
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(f"exit {code}; {wall:.2f} s wall and {cpu:.2f} s CPU under the profilers; "
      f"Python allocations peaked at {peak / 1e6:.1f} MB")
if planned:
    count, snapshot = planned[0]
    stats = snapshot.statistics("lineno")
    total = sum(s.size for s in stats)
    print(f"after planning {count} jobs, {total / 1e6:.2f} MB allocated; the largest sites:")
    for stat in stats[:5]:
        print(f"  {stat.size / 1e3:8.1f} kB in {stat.count:6d} blocks  {stat.traceback[0]}")
stats = pstats.Stats(profiles[0])
for profile in profiles[1:]:
    stats.add(profile)
out = io.StringIO()
stats.stream = out
stats.sort_stats("tottime").print_stats(14)
print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))
"""


def profile_batch(python: str, cli_args: Sequence[str], env: Dict[str, str], cwd: Path) -> str:
    """One CLI run in a child under cProfile (every thread) and tracemalloc; return its summary."""
    proc = subprocess.run(
        [python, "-c", _PROFILE_BATCH, str(SCRIPT.parent), *cli_args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )
    return proc.stdout + (proc.stderr[-1500:] if proc.returncode else "")


# --- the trace of one CLI run -------------------------------------------------------------------------------


def trace_cli(
    python: str, cli_args: Sequence[str], out: Path, latency: float, rate_n: int, window: float, backlog: int
) -> str:
    """Run the CLI once against the logging fake; return a summary of where its wall time went."""
    fake = subprocess.Popen(
        [python, "-c", TRACE_FAKE, str(TESTS), str(latency), str(rate_n), str(window), str(backlog)],
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
    answered = sorted(data.get("answered") or [s + latency for s in admitted])
    last_done = max(answered) if answered else max(arrivals)
    lines.append(
        f"- start-up: first request {arrivals[0] - launched:.3f} s after launch; "
        f"exit {exited - last_done:.3f} s after the last answer"
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
        # With IN_FLIGHT workers, the k-th request after the first IN_FLIGHT is sent by the worker that had
        # the (k - IN_FLIGHT)-th answer: the difference is what the client spends between two requests.
        gaps = sorted(b - a for a, b in zip(answered, sorted(arrivals)[IN_FLIGHT:]))
        lines.append(
            f"- the ideal span at {IN_FLIGHT} in flight is {waves} x {latency:g} s = {waves * latency:.3f} s: "
            f"{span - waves * latency:.3f} s more ({(span - waves * latency) / max(waves - 1, 1) * 1000:.1f} ms "
            "per round)"
        )
        if gaps:
            lines.append(
                f"- from an answer to the same worker's next request: median {statistics.median(gaps) * 1000:.1f} ms, "
                f"90th percentile {gaps[int(0.9 * (len(gaps) - 1))] * 1000:.1f} ms, most {gaps[-1] * 1000:.1f} ms "
                f"over {len(gaps)} requests (reading, decoding and writing one image, then the next request)"
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


@dataclass
class Workload:
    """One fake set-up and jobs file, run by the CLI (and the SDK script, when sdk)."""

    key: str
    title: str
    jobs: int
    latency: float
    rate_n: int = 0
    sdk: bool = True
    fake: Optional[Fake] = None
    jobs_file: Optional[Path] = None

    @property
    def floor(self) -> float:
        """jobs x latency / in flight, or jobs / N x window under a limit (whichever is longer)."""
        free = self.jobs * self.latency / IN_FLIGHT
        return max(free, self.jobs / self.rate_n * RATE_WINDOW) if self.rate_n else free

    @property
    def strict_floor(self) -> float:
        """Whole rounds of `latency` at IN_FLIGHT; under a limit, every window but the last, plus one request."""
        free = math.ceil(self.jobs / IN_FLIGHT) * self.latency
        if not self.rate_n:
            return free
        return max(free, (math.ceil(self.jobs / self.rate_n) - 1) * RATE_WINDOW + self.latency)


def main() -> int:
    options = parser(__doc__.split("\n")[0], runs=5)
    options.add_argument(
        "--sdk-max-retries",
        default="default",
        help="max_retries for AsyncOpenAI (default: the SDK's default, 2)",
    )
    options.add_argument(
        "--fake-backlog",
        type=int,
        default=128,
        help="the fake's listen backlog (default 128; 0 keeps socketserver's 5, which drops connections)",
    )
    options.add_argument("--profile", action="store_true", help="also trace and profile one CLI run of each")
    args = options.parse_args()
    python, runs, backlog = args.python, args.runs, args.fake_backlog
    version = sdk_version(python)
    sdk_retries = "2 (the default)" if args.sdk_max_retries == "default" else str(args.sdk_max_retries)
    sdk_name = f"sdk (openai {version})"
    workloads = [
        Workload("open", f"open, {JOBS} jobs", JOBS, LATENCY),
        Workload("limited", f"limited {RATE_N}/{RATE_WINDOW:g} s, {JOBS} jobs", JOBS, LATENCY, RATE_N),
        Workload(
            "tight", f"tight {TIGHT_N}/{RATE_WINDOW:g} s, {TIGHT_JOBS} jobs", TIGHT_JOBS, LATENCY, TIGHT_N
        ),
        Workload("fast-100", f"fast ({FAST_LATENCY:g} s), {JOBS} jobs", JOBS, FAST_LATENCY, sdk=False),
        Workload(
            "fast-1000", f"fast ({FAST_LATENCY:g} s), {BIG_JOBS:,} jobs", BIG_JOBS, FAST_LATENCY, sdk=False
        ),
    ]
    by_key = {w.key: w for w in workloads}

    with contextlib.ExitStack() as stack:
        root = stack.enter_context(scratch_dir("bench-batch-"))
        fakes: Dict[tuple, Fake] = {}
        for w in workloads:
            shape = (w.latency, w.rate_n)
            if shape not in fakes:
                fakes[shape] = stack.enter_context(Fake(python, backlog, w.latency, w.rate_n, RATE_WINDOW))
            w.fake = fakes[shape]
            w.jobs_file = root / f"jobs-{w.jobs}.txt"
            if not w.jobs_file.exists():
                write_jobs(w.jobs_file, w.jobs)

        def cli_argv(batch: Path, out: Path) -> List[str]:
            return [
                python, str(SCRIPT), "generations", "--batch", str(batch), "--output", str(out / "{job}.png"),
                "--jobs", str(IN_FLIGHT), "--quiet",
            ]  # fmt: skip

        def sdk_argv(batch: Path, out: Path) -> List[str]:
            return [python, "-c", SDK_SCRIPT, str(batch), str(out), str(IN_FLIGHT), args.sdk_max_retries]

        def fresh(folder: Path, fake: Optional[Fake]) -> Callable[[], None]:
            empty = clear_dir(folder)

            def prepare() -> None:
                empty()
                if fake is not None:
                    fake.restart()  # the rate windows start fresh

            return prepare

        tallies: Dict[str, Tally] = {}
        commands: List[Command] = []
        rows_plan = []  # (command key, workload, display name)
        for w in workloads:
            assert w.fake is not None and w.jobs_file is not None
            for sdk in (False, True) if w.sdk else (False,):
                key = f"{'sdk' if sdk else 'cli'}-{w.key}"
                out = root / key
                tallies[key] = Tally()
                commands.append(
                    Command(
                        key,
                        sdk_argv(w.jobs_file, out) if sdk else cli_argv(w.jobs_file, out),
                        env=cli_env(w.fake.base_url),
                        cwd=root,
                        prepare=fresh(out, w.fake if w.rate_n else None),
                        check=counting_check(out, tallies[key], sdk),
                    )
                )
                rows_plan.append((key, w, sdk_name if sdk else "cli (gpt_image.py)"))
        print(
            f"{len(fakes)} fakes; {len(commands)} commands x ({runs} runs + 1 warm-up)",
            file=sys.stderr,
        )
        overflows = listen_overflows()
        results = run_interleaved(commands, runs)
        overflows = listen_overflows() - overflows if overflows >= 0 else -1
        done = {key: tallies[key].last(runs) for key in tallies}
        rows = []
        for key, w, name in rows_plan:
            results[key].name = name
            rows.append((w.title, results[key], done[key], w.jobs, w.floor))

        def all_saved(key: str) -> bool:
            jobs = by_key[key.split("-", 1)[1]].jobs
            return all(o.saved == jobs and o.code == 0 for o in done[key])

        def problems(*keys: str) -> str:
            notes = sorted({o.note for key in keys for o in done[key] if o.note})
            return "; ".join(notes)[:400]

        def within(key: str) -> Target:
            w, series = by_key[key], results[f"cli-{key}"]
            return (
                f"{key}: CLI median wall within {TIME_SLACK:g}x of the {w.floor:g} s floor",
                series.wall_s <= TIME_SLACK * w.floor,
                f"{series.wall_s:.3f} s, {series.wall_s / w.floor:.2f}x",
            )

        cli_open, sdk_open = results["cli-open"], results["sdk-open"]
        small, big = results["cli-fast-100"], results["cli-fast-1000"]
        targets: List[Target] = [
            ("open: every job saved by the CLI in every run", all_saved("cli-open"), problems("cli-open")),
            within("open"),
            (
                "open: CLI ahead of the SDK script",
                cli_open.wall_s < sdk_open.wall_s,
                f"{cli_open.wall_s:.3f} s vs {sdk_open.wall_s:.3f} s, {cli_open.wall_s / sdk_open.wall_s:.2f}x",
            ),
            (
                "limited: every job saved by the CLI in every run",
                all_saved("cli-limited"),
                problems("cli-limited"),
            ),
            within("limited"),
            ("tight: every job saved by the CLI in every run", all_saved("cli-tight"), problems("cli-tight")),
            (
                "fast: every job saved by the CLI in every run, 100 and 1,000 jobs",
                all_saved("cli-fast-100") and all_saved("cli-fast-1000"),
                problems("cli-fast-100", "cli-fast-1000"),
            ),
            (
                f"memory: CLI peak RSS with {BIG_JOBS:,} jobs within {RSS_SLACK - 1:.0%} of {JOBS} jobs",
                big.peak_rss <= RSS_SLACK * small.peak_rss,
                f"{fmt_mb(big.peak_rss)} vs {fmt_mb(small.peak_rss)}, {big.peak_rss / small.peak_rss:.2f}x",
            ),
        ]
        floors = "; ".join(
            f"{w.key} {w.floor:g} s (strictly {w.strict_floor:.1f} s)"
            for w in workloads
            if w.key != "fast-100"
        )
        notes = [
            f"Workloads: prompts one a line at --jobs {IN_FLIGHT} and an asyncio.Semaphore({IN_FLIGHT}); every "
            f"image request takes {LATENCY:g} s on the fake ({FAST_LATENCY:g} s for fast); a limit answers 429 "
            f"past N requests per {RATE_WINDOW:g} s window, a window opening at its first request. Floors: "
            f"jobs x latency / {IN_FLIGHT}, or jobs / N x window under a limit: {floors}. "
            f"SDK max_retries: {sdk_retries}.",
        ]
        for key in ("limited", "tight"):
            saved = [o.saved for o in done[f"sdk-{key}"]]
            note = problems(f"sdk-{key}")
            notes.append(
                f"SDK script, {key}: saved {', '.join(map(str, saved))} of {by_key[key].jobs} in its {runs} runs "
                f"in a median {fmt_s(results[f'sdk-{key}'].wall_s)}" + (f"; {note}" if note else "") + "."
            )
        notes.append(
            f"The fakes' listen backlog: {backlog or 'socketserver default (5)'}; connections dropped by a full "
            "listen queue during the measured runs, machine-wide: "
            + (str(overflows) if overflows >= 0 else "unknown (no /proc/net/netstat)")
            + " (each costs its client a 1 s SYN retransmission)."
        )
        body = results_table(rows) + "\n\n" + "\n\n".join(notes)
        code = report(
            f"Batch: {JOBS} jobs at {IN_FLIGHT} in flight, with and without a rate limit", body, targets
        )
        missed = {d.split(":")[0] for d, ok, _ in targets if not ok}
        trace_dir = root / "trace"
        for key in ("open", "limited", "tight"):
            w = by_key[key]
            if args.profile or key in missed:
                assert w.jobs_file is not None
                limit = f"{w.rate_n} per {RATE_WINDOW:g} s window" if w.rate_n else "no limit"
                print(f"\nTrace of one CLI run, {key} ({w.jobs} jobs, {w.latency:g} s, {limit}):\n")
                cli_args = cli_argv(w.jobs_file, trace_dir)[2:]
                print(trace_cli(python, cli_args, trace_dir, w.latency, w.rate_n, RATE_WINDOW, backlog))
        if args.profile or missed & {"open", "memory"}:
            for key in ("open", "fast-100", "fast-1000"):
                w = by_key[key]
                assert w.fake is not None and w.jobs_file is not None
                clear_dir(trace_dir)()
                print(f"\nOne CLI run, {w.title}, under cProfile (every thread) and tracemalloc:\n")
                cli_args = cli_argv(w.jobs_file, trace_dir)[2:]
                print(profile_batch(python, cli_args, cli_env(w.fake.base_url), root))
    return code


if __name__ == "__main__":
    sys.exit(main())

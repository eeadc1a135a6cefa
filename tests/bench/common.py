"""Shared helpers for the hand-run benchmarks in tests/bench (not collected by pytest).

Every measured command runs as a child process, forked by a minimal launcher. Its wall time is taken from
fork to exit and its peak resident set size comes from the kernel's accounting of that one child
(``os.wait4``), so the figures cover the interpreter, imports and all the work, and nothing of the harness
or of the fake server. Commands of one benchmark run interleaved (A B C, A B C, ...) after one unmeasured
warm-up each, so a busy machine slows every side alike. POSIX only (os.fork, os.wait4).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

BENCH = Path(__file__).resolve().parent
TESTS = BENCH.parent
REPO = TESTS.parent
SCRIPT = REPO / "scripts" / "gpt_image.py"
FAKEAPI = TESTS / "fakeapi.py"

#: The key the benchmarks give the CLI and the SDK; the fake accepts anything.
BENCH_KEY = "sk-bench-0000000000000000"
MB = 1_000_000


@dataclass
class Sample:
    """One run of one command."""

    wall_s: float
    peak_rss: int  # bytes
    code: int


@dataclass
class Series:
    """All runs of one command."""

    name: str
    samples: List[Sample] = field(default_factory=list)

    @property
    def wall_s(self) -> float:
        return statistics.median(s.wall_s for s in self.samples)

    @property
    def peak_rss(self) -> int:
        return int(statistics.median(s.peak_rss for s in self.samples))

    @property
    def min_wall_s(self) -> float:
        return min(s.wall_s for s in self.samples)


def _rss_bytes(ru_maxrss: int) -> int:
    # Linux reports kilobytes, macOS bytes.
    return ru_maxrss if sys.platform == "darwin" else ru_maxrss * 1024


# A child's ru_maxrss also counts the memory of the process that forked it (Linux records the old address
# space's high-water mark at exec), so a child forked by this harness would show at least the harness's own
# RSS. The measured command is therefore forked by this minimal launcher (python -S: about 5 MB, below any
# Python child), which also times it from fork to exit, excluding its own start-up.
_LAUNCHER = """
import os, sys, time
out, err, cwd, argv = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.chdir(cwd)
        for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, out, os.O_WRONLY), (2, err, os.O_WRONLY)):
            os.dup2(os.open(path, flags), fd)
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - started, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def measure(
    argv: Sequence[str],
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[Path] = None,
    check: Optional[Callable[[int, str, str], None]] = None,
) -> Sample:
    """Run argv once; return its wall time and peak RSS. ``check(code, stdout, stderr)`` may raise."""
    if not hasattr(os, "wait4") or not hasattr(os, "fork"):
        raise SystemExit("these benchmarks need os.fork and os.wait4 (Linux or macOS)")
    with tempfile.NamedTemporaryFile() as out, tempfile.NamedTemporaryFile() as err:
        launcher = [sys.executable, "-S", "-E", "-c", _LAUNCHER, out.name, err.name, str(cwd or os.getcwd())]
        proc = subprocess.run(
            [*launcher, *argv], env=dict(env or os.environ), capture_output=True, text=True, check=False
        )
        try:
            wall_text, rss_text, code_text = proc.stdout.split()
        except ValueError:
            raise SystemExit(f"the launcher failed: {proc.stdout}{proc.stderr}") from None
        stdout = Path(out.name).read_text("utf-8", "replace")
        stderr = Path(err.name).read_text("utf-8", "replace")
    code = int(code_text)
    if check is not None:
        check(code, stdout, stderr)
    elif code != 0:
        raise SystemExit(f"command failed with exit {code}: {' '.join(argv)}\n{stderr[-2000:]}")
    return Sample(float(wall_text), _rss_bytes(int(rss_text)), code)


@dataclass
class Command:
    """A named command to benchmark; ``prepare()`` runs before each run, unmeasured."""

    name: str
    argv: Sequence[str]
    env: Optional[Mapping[str, str]] = None
    cwd: Optional[Path] = None
    prepare: Optional[Callable[[], None]] = None
    check: Optional[Callable[[int, str, str], None]] = None


def run_interleaved(commands: Sequence[Command], runs: int, warmup: int = 1) -> Dict[str, Series]:
    """Run each command ``warmup`` times unmeasured, then ``runs`` rounds of all commands in turn."""
    results = {c.name: Series(c.name) for c in commands}
    for round_no in range(warmup + runs):
        for command in commands:
            if command.prepare is not None:
                command.prepare()
            sample = measure(command.argv, command.env, command.cwd, command.check)
            if round_no >= warmup:
                results[command.name].samples.append(sample)
        if round_no >= warmup:
            print(f"  round {round_no - warmup + 1}/{runs} done", file=sys.stderr, flush=True)
    return results


def cli_env(base_url: Optional[str] = None) -> Dict[str, str]:
    """The environment for CLI and SDK children: a bench key, no proxies, no stray OPENAI_* settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("OPENAI_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env["OPENAI_API_KEY"] = BENCH_KEY
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env["no_proxy"] = "127.0.0.1,localhost"
    if base_url:
        env["OPENAI_BASE_URL"] = base_url
    return env


class FakeServer:
    """tests/fakeapi.py started standalone (its own process, so it costs the measured children nothing)."""

    def __init__(self, image_bytes: Optional[int] = None, python: str = sys.executable) -> None:
        argv = [python, str(FAKEAPI), "--port", "0"]
        if image_bytes:
            argv += ["--image-bytes", str(image_bytes)]
        self.argv = argv
        self.proc: Optional[subprocess.Popen[str]] = None
        self.base_url = ""

    def __enter__(self) -> FakeServer:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://"):
            self.__exit__()
            raise SystemExit(f"the fake API did not start: {line!r}")
        self.base_url = line
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()  # only the process this object started
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder for outputs, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def clear_dir(path: Path) -> Callable[[], None]:
    """A prepare() hook that empties a folder (so no run pays for another's files)."""

    def clear() -> None:
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)

    return clear


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def fmt_mb(nbytes: int) -> str:
    return f"{nbytes / MB:.1f} MB"


def table(results: Mapping[str, Series], baseline: Optional[str] = None) -> str:
    """A markdown table: median and best wall time, median peak RSS, and ratios to a baseline row."""
    head = ["command", "median wall", "best wall", "peak RSS (median)", "runs"]
    if baseline:
        head += [f"time / {baseline}", f"RSS / {baseline}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = results.get(baseline) if baseline else None
    for series in results.values():
        row = [
            series.name,
            fmt_s(series.wall_s),
            fmt_s(series.min_wall_s),
            fmt_mb(series.peak_rss),
            str(len(series.samples)),
        ]
        if base is not None:
            row += [f"{series.wall_s / base.wall_s:.2f}x", f"{series.peak_rss / base.peak_rss:.2f}x"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def machine() -> str:
    """One line about the machine and the interpreter."""
    return (
        f"{platform.system()} {platform.machine()}, nproc {os.cpu_count()}, "
        f"Python {platform.python_version()} ({sys.executable})"
    )


def sdk_version(python: str) -> str:
    """The openai SDK version importable by ``python``, or exit with a clear message."""
    proc = subprocess.run(
        [python, "-c", "import openai; print(openai.__version__)"], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(
            f"{python} cannot import openai (pip install -e '.[dev]'): {proc.stderr.strip()[-300:]}"
        )
    return proc.stdout.strip()


def parser(description: str, runs: int = 5) -> argparse.ArgumentParser:
    """The options every benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--runs", type=int, default=runs, help=f"measured runs per command (default {runs})")
    p.add_argument(
        "--python", default=sys.executable, help="interpreter for the CLI and the SDK (default: this one)"
    )
    return p


Target = Tuple[str, bool, str]


def report(title: str, body: str, targets: Sequence[Target]) -> int:
    """Print the markdown report and the verdict on each target; return the exit code (1 if any missed)."""
    print(f"### {title}\n")
    print(f"Machine: {machine()}\n")
    print(body)
    print()
    missed = 0
    for description, ok, detail in targets:
        print(f"- {'met' if ok else 'MISSED'}: {description}" + (f" ({detail})" if detail else ""))
        missed += not ok
    if missed:
        print(f"\n{missed} target(s) missed", file=sys.stderr)
    return 1 if missed else 0


_PROFILE_CODE = r"""
import contextlib, cProfile, io, pstats, sys, time, tracemalloc
sys.path.insert(0, sys.argv[1])
import gpt_image
tracemalloc.start()
profiler = cProfile.Profile()
started = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    profiler.enable()
    code = gpt_image.main(sys.argv[2:])
    profiler.disable()
elapsed = time.perf_counter() - started
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(f"exit {code}; {elapsed:.2f} s under the profilers; Python allocations peaked at {peak / 1e6:.1f} MB")
out = io.StringIO()
pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))
"""


def profile_cli(python: str, cli_args: Sequence[str], env: Mapping[str, str], cwd: Path) -> str:
    """Run the CLI once in a child under cProfile and tracemalloc; return the printed summary."""
    proc = subprocess.run(
        [python, "-c", _PROFILE_CODE, str(SCRIPT.parent), *cli_args],
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=cwd,
    )
    return proc.stdout + (proc.stderr[-1500:] if proc.returncode else "")


def tree_files(folder: Path) -> Dict[str, int]:
    """Relative path -> size of every file under folder."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def expect_files(folder: Path, names: Sequence[str], min_bytes: int) -> Callable[[int, str, str], None]:
    """A check(): exit 0, and exactly these files in folder, each at least min_bytes."""

    def check(code: int, stdout: str, stderr: str) -> None:
        if code != 0:
            raise SystemExit(f"a run failed with exit {code}:\n{stderr[-2000:]}")
        found = tree_files(folder)
        if sorted(found) != sorted(names) or any(size < min_bytes for size in found.values()):
            raise SystemExit(f"unexpected outputs in {folder}: {found} (wanted {list(names)})")

    return check


def same_files(a: Path, b: Path, names_a: Sequence[str], names_b: Sequence[str]) -> bool:
    """True when files names_a under a are byte-identical, in order, to names_b under b."""
    return all((a / x).read_bytes() == (b / y).read_bytes() for x, y in zip(names_a, names_b))


def speed_and_memory_targets(cli: Series, sdk: Series, share: float = 0.5) -> List[Target]:
    """The download benchmarks' targets: at most ``share`` of the SDK's time and of its peak memory."""
    return [
        (
            f"CLI time at most {share:.0%} of the SDK's",
            cli.wall_s <= share * sdk.wall_s,
            f"{cli.wall_s / sdk.wall_s:.0%}",
        ),
        (
            f"CLI peak RSS at most {share:.0%} of the SDK's",
            cli.peak_rss <= share * sdk.peak_rss,
            f"{cli.peak_rss / sdk.peak_rss:.0%}",
        ),
    ]

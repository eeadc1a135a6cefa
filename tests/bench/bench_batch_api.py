"""Collecting a Batch API batch of 500 large images (about 1 GB of output JSONL): the CLI vs the stdlib alone.

    python tests/bench/bench_batch_api.py [--runs N] [--jobs 500] [--image-mb 1.5] [--python PATH] [--profile]

Starts tests/fakeapi.py standalone with --image-bytes so each image is about 1.5 MB (a 2.0 MB line of base64
in the output JSONL: 1.0 GB for 500 jobs), writes a jobs file of 500 prompts, and, unmeasured, submits it
with ``gpt_image.py generations --batch jobs.txt --batch-api --output out/{job}.png --no-wait --quiet``,
polls ``GET /v1/batches/{id}`` until the batch is completed (each poll advances the fake one status step),
and downloads the output file once with urllib. Then, interleaved, as child processes:
  cli              the same command without --no-wait: it finds the batch completed, reads the output
                   file a line at a time as it streams in (no copy on disk), base64-decodes every image
                   and writes the 500 files atomically (a temporary file, fsync, link into place)
  stdlib baseline  a stdlib script over the downloaded JSONL: a line at a time, json.loads,
                   base64.b64decode(response.body.data[0].b64_json), a plain write of each image
and for information: the CLI again, through a wrapper that times its phases in-process (the download,
the fsyncs, the rest); the stdlib script writing like the CLI (temporary file, fsync, link); the stdlib
script decoding only (no writes); the download alone with urllib to a file and to /dev/null (the fake's
serving and the network read without the disk), and with curl to a file when present. Every run is preceded
by an os.sync() (unmeasured), so no run pays for writing back another's files.
Before each CLI run its out/ folder is removed and the state file's "collected" set back to false, so every
run collects all 500 jobs again from the same completed batch.

Targets: the CLI's peak RSS under 100 MB in every run; its median time at most 1.5x the stdlib baseline's
(read, decode and write, plainly); its 500 files byte-identical to the baseline's. Exit status 1 on a miss,
after a cProfile/tracemalloc summary of one CLI run (also shown with --profile).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import (
    BENCH_KEY,
    MB,
    SCRIPT,
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
    same_files,
    scratch_dir,
    table,
    tree_files,
)

RSS_LIMIT = 100 * MB
TIME_RATIO = 1.5
MAX_POLLS = 100  # the fake needs about 4 (validating, in_progress, finalizing, completed)
TIMEOUT_S = 300

# The stdlib alone over the downloaded output file. mode: "write" (plain open/write), "atomic" (as the CLI
# writes: a temporary file beside the target, fsync, hard link into place, unlink) or "decode" (no writes).
STDLIB_SCRIPT = r"""
import base64, json, os, sys, tempfile
src, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
count = 0
with open(src, "rb") as handle:
    for line in handle:
        obj = json.loads(line)
        image = base64.b64decode(obj["response"]["body"]["data"][0]["b64_json"])
        count += 1
        if mode == "decode":
            continue
        path = os.path.join(out, obj["custom_id"] + ".png")
        if mode == "write":
            with open(path, "wb") as target:
                target.write(image)
        else:
            fd, temp = tempfile.mkstemp(prefix="." + obj["custom_id"] + ".", suffix=".part", dir=out)
            with os.fdopen(fd, "wb") as target:
                target.write(image)
                target.flush()
                os.fsync(target.fileno())
            os.link(temp, path)
            os.unlink(temp)
print(count)
"""

# The download alone: GET /files/{id}/content streamed to a file in 1 MiB reads, as the CLI reads it.
DOWNLOAD_SCRIPT = r"""
import sys, urllib.request
url, key, path = sys.argv[1], sys.argv[2], sys.argv[3]
request = urllib.request.Request(url, headers={"Authorization": "Bearer " + key})
got = 0
with urllib.request.urlopen(request, timeout=60) as response, open(path, "wb") as handle:
    while True:
        chunk = response.read(1024 * 1024)
        if not chunk:
            break
        got += len(chunk)
        handle.write(chunk)
print(got)
"""

# The CLI through a wrapper that times its phases: everything before collect_batch (imports, the plan, the
# GET of the batch), the download of the output file(s), the fsyncs of the images, and the rest of
# collect_batch (reading the lines, parsing, decoding, writing). One line "BENCH-SPLIT {...}" on stderr.
SPLIT_WRAPPER = r"""
import json, os, sys, time
started = time.perf_counter()
sys.path.insert(0, sys.argv[1])
import gpt_image
spent = {"download": 0.0, "fsync": 0.0, "collect": 0.0, "fsyncs": 0}
marks = {}
inside = []  # non-empty while collect_batch runs: only its fsyncs (the images') are counted
real_download = getattr(gpt_image, "download", None)  # gone since collection reads the download in one pass
real_fsync, real_collect = os.fsync, gpt_image.collect_batch


def download(*args, **kwargs):
    began = time.perf_counter()
    try:
        return real_download(*args, **kwargs)
    finally:
        spent["download"] += time.perf_counter() - began


def fsync(fd):
    began = time.perf_counter()
    try:
        return real_fsync(fd)
    finally:
        if inside:
            spent["fsync"] += time.perf_counter() - began
            spent["fsyncs"] += 1


def collect_batch(*args, **kwargs):
    marks["collect"] = began = time.perf_counter()
    inside.append(True)
    try:
        return real_collect(*args, **kwargs)
    finally:
        inside.pop()
        spent["collect"] += time.perf_counter() - began


os.fsync, gpt_image.collect_batch = fsync, collect_batch
if real_download is not None:
    gpt_image.download = download
imported = time.perf_counter()
code = gpt_image.main(sys.argv[2:])
ended = time.perf_counter()
split = {
    "import": imported - started,
    "before_collect": marks.get("collect", ended) - imported,
    "download": spent["download"],
    "fsync": spent["fsync"],
    "fsyncs": spent["fsyncs"],
    "parse_decode_write": spent["collect"] - spent["download"] - spent["fsync"],
    "after_collect": ended - marks.get("collect", ended) - spent["collect"],
    "in_process": ended - started,
}
print("BENCH-SPLIT " + json.dumps(split), file=sys.stderr, flush=True)
sys.exit(code)
"""

SPLIT_PARTS = [
    ("import", "interpreter already up: import gpt_image (cached bytecode) and patch"),
    ("before_collect", "parse the options and the jobs file, plan the input lines, GET the batch"),
    ("download", "a separate download pass, if any (collection now reads the download as it arrives)"),
    ("parse_decode_write", "download the lines (no copy on disk), lean JSON parse, base64-decode, write, link"),
    ("fsync", "the fsync of each image (inside collect_batch)"),
    ("after_collect", "save the state file (with its fsync), the summary"),
]


CPU_MARK = "BENCH-CPU "
_LAUNCHER_EXIT = "print(time.perf_counter() - started, usage.ru_maxrss, os.waitstatus_to_exitcode(status))"


def install_cpu_launcher() -> bool:
    """Make common's launcher also append the child's CPU time (user, system) to the child's stderr file.

    On a shared machine CPU seconds move less than wall time. The launcher is common's own, with one line
    added after wait4; False (no CPU figures) if that launcher no longer ends as expected.
    """
    launcher = common._LAUNCHER
    if _LAUNCHER_EXIT not in launcher:
        return False
    extra = (
        "with open(err, 'a') as log:\n"
        f"    log.write('\\n{CPU_MARK}%r %r\\n' % (usage.ru_utime, usage.ru_stime))\n"
    )
    common._LAUNCHER = launcher.replace(_LAUNCHER_EXIT, extra + _LAUNCHER_EXIT)
    return True


def with_cpu(
    check: Optional[Callable[[int, str, str], None]], into: List[float]
) -> Callable[[int, str, str], None]:
    """A check() that records the run's CPU seconds (user + system) from the launcher's line, then checks."""

    def recorded(code: int, stdout: str, stderr: str) -> None:
        found = [line for line in stderr.splitlines() if line.startswith(CPU_MARK)]
        if found:
            user, system = found[-1][len(CPU_MARK) :].split()
            into.append(float(user) + float(system))
        if check is not None:
            check(code, stdout, stderr)
        elif code != 0:
            raise SystemExit(f"a run failed with exit {code}:\n{stderr[-2000:]}")

    return recorded


def write_jobs(path: Path, count: int) -> None:
    path.write_text(
        "".join(f"a detailed isometric city at night, picture {i}\n" for i in range(1, count + 1))
    )


def get_json(url: str) -> Dict[str, object]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {BENCH_KEY}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        value = json.loads(response.read(16 * MB))
    if not isinstance(value, dict):
        raise SystemExit(f"{url} answered {value!r:.200}")
    return value


def wait_completed(base_url: str, batch_id: str) -> Dict[str, object]:
    """Poll the batch (each poll is one status step on the fake) until it is completed; bounded."""
    for _ in range(MAX_POLLS):
        batch = get_json(f"{base_url}/batches/{batch_id}")
        status = batch.get("status")
        if status == "completed":
            return batch
        if status in ("failed", "expired", "cancelled"):
            raise SystemExit(f"batch {batch_id} ended {status}: {json.dumps(batch)[:600]}")
        time.sleep(0.01)
    raise SystemExit(f"batch {batch_id} not completed after {MAX_POLLS} polls")


def fetch_file(url: str, path: Path) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {BENCH_KEY}"})
    got = 0
    with urllib.request.urlopen(request, timeout=60) as response, open(path, "wb") as handle:
        for _ in range(1_000_000):  # 1 MiB reads: bounded far above any file this makes
            chunk = response.read(1024 * 1024)
            if not chunk:
                break
            got += len(chunk)
            handle.write(chunk)
    return got


def synced(prepare: Optional[Callable[[], None]] = None) -> Callable[[], None]:
    """A prepare() hook that runs prepare, then os.sync(): no run pays for writing back another's files."""

    def hook() -> None:
        if prepare is not None:
            prepare()
        os.sync()

    return hook


def reset_cli(out: Path, state_file: Path) -> Callable[[], None]:
    """A prepare() hook: no outputs (else every job is skipped as done), and the batch not yet collected."""

    def prepare() -> None:
        shutil.rmtree(out, ignore_errors=True)
        state = json.loads(state_file.read_text("utf-8"))
        if state.get("collected"):
            state["collected"] = False
            state_file.write_text(json.dumps(state, indent=1), "utf-8")

    return synced(prepare)


def images_check(
    folder: Path, names: List[str], min_bytes: int, remove: bool = False
) -> Callable[[int, str, str], None]:
    """A check(): exit 0 and exactly these files in folder, each at least min_bytes (then removed if asked)."""

    def check(code: int, stdout: str, stderr: str) -> None:
        if code != 0:
            raise SystemExit(f"a run failed with exit {code}:\n{stderr[-2000:]}")
        found = tree_files(folder)
        if sorted(found) != sorted(names) or any(size < min_bytes for size in found.values()):
            shown = dict(list(found.items())[:5])
            raise SystemExit(f"unexpected outputs in {folder}: {len(found)} files, e.g. {shown}")
        if remove:
            shutil.rmtree(folder, ignore_errors=True)

    return check


def count_check(expected: int) -> Callable[[int, str, str], None]:
    def check(code: int, stdout: str, stderr: str) -> None:
        if code != 0 or stdout.split()[:1] != [str(expected)]:
            raise SystemExit(f"a run failed (exit {code}, printed {stdout[:200]!r}):\n{stderr[-2000:]}")

    return check


def download_check(path: Path, size: int) -> Callable[[int, str, str], None]:
    def check(code: int, stdout: str, stderr: str) -> None:
        got = path.stat().st_size if path.exists() else -1
        path.unlink(missing_ok=True)
        if code != 0 or got != size:
            raise SystemExit(f"a download failed (exit {code}, {got} of {size} bytes):\n{stderr[-2000:]}")

    return check


def main() -> int:
    options = parser(__doc__.split("\n")[0], runs=3)
    options.add_argument("--jobs", type=int, default=500, help="jobs in the batch (default 500)")
    options.add_argument("--image-mb", type=float, default=1.5, help="size of each image in MB (default 1.5)")
    options.add_argument("--profile", action="store_true", help="also profile one CLI run")
    args = options.parse_args()
    python, jobs = args.python, args.jobs
    image_bytes = int(args.image_mb * MB)
    names = [f"{i:0{len(str(jobs))}d}.png" for i in range(1, jobs + 1)]  # {job}: the line number, zero-padded
    cli_args = ["generations", "--batch", "jobs.txt", "--batch-api", "--output", "out/{job}.png", "--quiet"]
    with FakeServer(image_bytes, python) as fake, scratch_dir("bench-batch-api-") as root:
        env = cli_env(fake.base_url)
        write_jobs(root / "jobs.txt", jobs)
        state_file = root / "jobs.txt.batch-state.json"
        out, base_out, atomic_out = root / "out", root / "stdlib-out", root / "stdlib-atomic-out"

        began = time.perf_counter()
        submit = subprocess.run(
            [python, str(SCRIPT), *cli_args, "--no-wait"],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        if submit.returncode != 0 or not submit.stdout.strip():
            raise SystemExit(f"the submit failed (exit {submit.returncode}):\n{submit.stderr[-2000:]}")
        batch_id = submit.stdout.split()[0]
        batch = wait_completed(fake.base_url, batch_id)
        file_id = str(batch["output_file_id"])
        content_url = f"{fake.base_url}/files/{file_id}/content"
        jsonl = root / "output.jsonl"
        size = fetch_file(content_url, jsonl)
        print(
            f"fake API at {fake.base_url}; batch {batch_id} of {jobs} jobs completed, output {file_id}: "
            f"{size / MB:,.1f} MB of JSONL, images of {image_bytes / MB:.2f} MB "
            f"(set up in {time.perf_counter() - began:.1f} s)",
            file=sys.stderr,
        )

        splits: List[Dict[str, float]] = []
        cli_check = images_check(out, names, int(image_bytes * 0.99))

        def split_check(code: int, stdout: str, stderr: str) -> None:
            cli_check(code, stdout, stderr)
            found = [line for line in stderr.splitlines() if line.startswith("BENCH-SPLIT ")]
            if not found:
                raise SystemExit(f"the timing wrapper printed no split:\n{stderr[-2000:]}")
            splits.append(json.loads(found[-1][len("BENCH-SPLIT ") :]))

        commands = [
            Command(
                "cli (gpt_image.py)",
                [python, str(SCRIPT), *cli_args],
                env=env,
                cwd=root,
                prepare=reset_cli(out, state_file),
                check=cli_check,
            ),
            Command(
                "stdlib baseline: read, decode, write",
                [python, "-c", STDLIB_SCRIPT, str(jsonl), str(base_out), "write"],
                env=env,
                cwd=root,
                prepare=synced(clear_dir(base_out)),
                check=images_check(base_out, names, int(image_bytes * 0.99)),
            ),
            Command(
                "(info) cli, phases timed in-process",
                [python, "-c", SPLIT_WRAPPER, str(SCRIPT.parent), *cli_args],
                env=env,
                cwd=root,
                prepare=reset_cli(out, state_file),
                check=split_check,
            ),
            Command(
                "(info) stdlib, writing as the CLI does (temp, fsync, link)",
                [python, "-c", STDLIB_SCRIPT, str(jsonl), str(atomic_out), "atomic"],
                env=env,
                cwd=root,
                prepare=synced(clear_dir(atomic_out)),
                check=images_check(atomic_out, names, int(image_bytes * 0.99), remove=True),
            ),
            Command(
                "(info) stdlib, read and decode only (no writes)",
                [python, "-c", STDLIB_SCRIPT, str(jsonl), str(root), "decode"],
                env=env,
                cwd=root,
                prepare=synced(),
                check=count_check(jobs),
            ),
            Command(
                "(info) download alone, urllib to a file",
                [python, "-c", DOWNLOAD_SCRIPT, content_url, BENCH_KEY, str(root / "dl-urllib.jsonl")],
                env=env,
                cwd=root,
                prepare=synced(),
                check=download_check(root / "dl-urllib.jsonl", size),
            ),
            Command(
                "(info) download alone, urllib to /dev/null",
                [python, "-c", DOWNLOAD_SCRIPT, content_url, BENCH_KEY, os.devnull],
                env=env,
                cwd=root,
                prepare=synced(),
                check=count_check(size),
            ),
        ]
        curl = shutil.which("curl")
        if curl:
            commands.append(
                Command(
                    "(info) download alone, curl to a file",
                    [
                        curl,
                        "-sS",
                        "--fail",
                        "-H",
                        f"Authorization: Bearer {BENCH_KEY}",
                        "-o",
                        str(root / "dl-curl.jsonl"),
                        content_url,
                    ],
                    env=env,
                    cwd=root,
                    prepare=synced(),
                    check=download_check(root / "dl-curl.jsonl", size),
                )
            )
        cpu_ok = install_cpu_launcher()
        cpu: Dict[str, List[float]] = {}
        for command in commands:
            command.check = with_cpu(command.check, cpu.setdefault(command.name, []))
        results = run_interleaved(commands, args.runs)
        cli, base = results[commands[0].name], results[commands[1].name]
        worst_rss = max(s.peak_rss for s in cli.samples)
        identical = same_files(out, base_out, names, names)
        targets: List[Target] = [
            (
                f"CLI peak RSS under {RSS_LIMIT / MB:.0f} MB in every run",
                worst_rss < RSS_LIMIT,
                f"worst {fmt_mb(worst_rss)}",
            ),
            (
                f"CLI time at most {TIME_RATIO}x the stdlib baseline's (read, decode, write)",
                cli.wall_s <= TIME_RATIO * base.wall_s,
                f"{cli.wall_s / base.wall_s:.2f}x",
            ),
            (f"the CLI's {jobs} files byte-identical to the baseline's", identical, ""),
        ]
        body = table(results, baseline=base.name)
        body += (
            f"\n\nWorkload: {jobs} jobs, one {image_bytes / MB:.2f} MB PNG each, {size / MB:,.0f} MB of output "
            "JSONL served by tests/fakeapi.py (the CLI downloads it in every run; the stdlib scripts read a "
            "copy downloaded beforehand, from the page cache)."
        )
        body += "\n\n" + split_table(splits[-args.runs :], cli.wall_s)
        body += "\n\n" + comparisons(results, [c.name for c in commands], splits[-args.runs :])
        if cpu_ok:
            body += "\n\n" + cpu_table(results, {k: v[-args.runs :] for k, v in cpu.items()}, base.name)
        code = report("Batch API collection", body, targets)
        shutil.rmtree(base_out, ignore_errors=True)
        if code or args.profile:
            print("\nOne run of the stdlib baseline under cProfile:\n")
            print(profile_stdlib(python, root, jsonl, base_out))
            shutil.rmtree(base_out, ignore_errors=True)
            jsonl.unlink(missing_ok=True)
            reset_cli(out, state_file)()
            print("\nOne CLI run under cProfile and tracemalloc:\n")
            print(profile_cli(python, cli_args, env, root))
    return code


def profile_stdlib(python: str, root: Path, jsonl: Path, folder: Path) -> str:
    """The stdlib baseline (plain writes) once under cProfile: its 12 costliest functions by own time."""
    clear_dir(folder)()
    script = root / "stdlib_collect.py"
    script.write_text(STDLIB_SCRIPT, "utf-8")
    proc = subprocess.run(
        [python, "-m", "cProfile", "-s", "tottime", str(script), str(jsonl), str(folder), "write"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    head = [i for i, line in enumerate(lines) if "ncalls" in line]
    shown = lines[: head[0] + 13] if head else lines[:20]
    return "\n".join(shown) + (proc.stderr[-1500:] if proc.returncode else "")


def cpu_table(results: Mapping[str, Series], cpu: Mapping[str, List[float]], baseline: str) -> str:
    """Median CPU seconds (user + system) of each command, against the baseline's, and wall minus CPU."""
    lines = [
        "CPU time of the same runs (user + system, from wait4; wall minus CPU is time spent waiting: for the "
        "disk, the fake, or a busy machine):",
        "",
        "| command | median CPU | CPU / baseline | median wall - CPU |",
        "|---|---|---|---|",
    ]
    base = statistics.median(cpu[baseline]) if cpu.get(baseline) else 0.0
    for name, series in results.items():
        if not cpu.get(name):
            continue
        median = statistics.median(cpu[name])
        ratio = f"{median / base:.2f}x" if base else "-"
        lines.append(f"| {name} | {fmt_s(median)} | {ratio} | {fmt_s(max(series.wall_s - median, 0.0))} |")
    return "\n".join(lines)


def comparisons(results: Mapping[str, Series], order: List[str], splits: List[Dict[str, float]]) -> str:
    """The CLI's median time against each stdlib row, and without its download (from the wrapper's split)."""
    cli = results[order[0]]
    lines = ["The CLI's median time against:"]
    for name in order[1:]:
        if "stdlib" in name:
            lines.append(f"- {name}: {cli.wall_s / results[name].wall_s:.2f}x")
    base = results[order[1]]
    paired = [c.wall_s / b.wall_s for c, b in zip(cli.samples, base.samples)]
    lines.append(
        f"- {base.name}, round by round (each CLI run over the baseline run just after it): median "
        f"{statistics.median(paired):.2f}x, from {min(paired):.2f}x to {max(paired):.2f}x "
        f"(CLI {', '.join(f'{c.wall_s:.1f}' for c in cli.samples)} s; "
        f"baseline {', '.join(f'{b.wall_s:.1f}' for b in base.samples)} s)"
    )
    if splits:
        download = statistics.median(s["download"] for s in splits)
        lines.append(
            f"- {base.name}, leaving out the CLI's download ({fmt_s(download)} in the wrapper): "
            f"{(cli.wall_s - download) / base.wall_s:.2f}x"
        )
    return "\n".join(lines)


def split_table(splits: List[Dict[str, float]], cli_wall: float) -> str:
    """The median of each phase over the wrapper's runs, as a markdown table."""
    if not splits:
        return ""
    lines = [
        f"Where the CLI's time goes (the wrapper row, median of {len(splits)} runs: "
        f"{fmt_s(statistics.median(s['in_process'] for s in splits))} from its import to its exit, against "
        f"{fmt_s(cli_wall)} for the cli row from fork to exit):",
        "",
        "| phase | what | median |",
        "|---|---|---|",
    ]
    for key, what in SPLIT_PARTS:
        median = statistics.median(s[key] for s in splits)
        extra = f" ({int(statistics.median(s['fsyncs'] for s in splits))} calls)" if key == "fsync" else ""
        lines.append(f"| {key.replace('_', ' ')} | {what} | {fmt_s(median)}{extra} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

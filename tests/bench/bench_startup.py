"""Start-up: `gpt_image.py ... --dry-run` against the interpreter, the stdlib it needs, and the SDK.

    python tests/bench/bench_startup.py [--runs N] [--python PATH]

Measures, as child processes run in turn, the median wall time and peak RSS of:
  cli --dry-run       python scripts/gpt_image.py generations --prompt ... --output ... --dry-run
  import openai       python -c "import openai"          (the official SDK's import alone, no work)
  python -c pass      the bare interpreter
  stdlib baseline     python -c "import argparse, json, urllib.request"
  (info) via import   the same dry run through `import gpt_image; gpt_image.main()`, as the pip-installed
                      `gpt-image` command runs it: bytecode cached, so no compile of the 3000-line source

Targets: the CLI's whole dry run under a tenth of the SDK's import alone, and within 1.5x of the stdlib
baseline. On a miss it prints where the CLI's time goes: its costliest imports (python -X importtime) and
the time to compile the script, which `python scripts/gpt_image.py` pays on every run (a script run as
__main__ never uses cached bytecode). Exit status 1 when a target is missed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    SCRIPT,
    Command,
    cli_env,
    parser,
    report,
    run_interleaved,
    scratch_dir,
    sdk_version,
    table,
)

SDK_SHARE = 0.10
BASELINE_FACTOR = 1.5


def cli_argv(python: str, out: Path) -> List[str]:
    return [
        python,
        str(SCRIPT),
        "generations",
        "--prompt",
        "A lighthouse at dawn, watercolor",
        "--size",
        "1536x1024",
        "--quality",
        "high",
        "--output",
        str(out / "lighthouse.png"),
        "--dry-run",
    ]


def installed_argv(python: str, out: Path) -> List[str]:
    """The same run through an import of the module, as the pip-installed `gpt-image` command does."""
    code = (
        f"import sys; sys.path.insert(0, {str(SCRIPT.parent)!r}); "
        "import gpt_image; sys.exit(gpt_image.main())"
    )
    return [python, "-c", code, *cli_argv(python, out)[2:]]


def import_profile(argv: List[str], env: Dict[str, str], top: int = 12) -> str:
    """The costliest top-level imports of one run, from python -X importtime (cumulative microseconds)."""
    proc = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True, text=True, env=env)
    rows: List[Tuple[int, str]] = []
    for line in proc.stderr.splitlines():
        fields = line[len("import time:") :].split("|") if line.startswith("import time:") else []
        if len(fields) != 3 or not fields[1].strip().isdigit():
            continue
        name = fields[2]
        if not name[1:2].isspace():  # nested imports are indented two more spaces per level
            rows.append((int(fields[1]), name.strip()))
    rows.sort(reverse=True)
    total = sum(c for c, _ in rows)
    lines = [f"CLI top-level imports (python -X importtime, one run; total {total / 1000:.1f} ms):"]
    lines += [f"  {c / 1000:6.1f} ms  {name}" for c, name in rows[:top]]
    return "\n".join(lines)


def compile_time(runs: int = 5) -> str:
    """Best-of-n time to compile the script here (a fresh process takes somewhat longer)."""
    source = SCRIPT.read_text(encoding="utf-8")
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        compile(source, str(SCRIPT), "exec")
        best = min(best, time.perf_counter() - started)
    lines = source.count("\n")
    return (
        f"Compiling {SCRIPT.name} ({lines} lines), paid by every `python {SCRIPT.name}` run: "
        f"{best * 1000:.1f} ms"
    )


def main() -> int:
    args = parser(__doc__.split("\n")[0]).parse_args()
    python = args.python
    version = sdk_version(python)
    env = cli_env()
    env.pop("OPENAI_API_KEY")  # a dry run needs no key
    with scratch_dir("bench-startup-") as out:
        # The installed entry point imports the module, so its bytecode is cached (here in a scratch folder).
        cached = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = str(out / "pycache")
        commands = [
            Command("cli --dry-run", cli_argv(python, out), env=env, cwd=out),
            Command(f"import openai ({version})", [python, "-c", "import openai"], env=env, cwd=out),
            Command("python -c pass", [python, "-c", "pass"], env=env, cwd=out),
            Command(
                "stdlib baseline", [python, "-c", "import argparse, json, urllib.request"], env=env, cwd=out
            ),
        ]
        commands.append(
            Command("(info) same, via import: cached bytecode", installed_argv(python, out), cached, out)
        )
        results = run_interleaved(commands, args.runs)
        cli, sdk, _, base = (results[c.name] for c in commands[:4])
        targets = [
            (
                f"cli --dry-run under {SDK_SHARE:.0%} of the SDK's import",
                cli.wall_s < SDK_SHARE * sdk.wall_s,
                f"{cli.wall_s / sdk.wall_s:.1%} of it",
            ),
            (
                f"cli --dry-run within {BASELINE_FACTOR}x the argparse/json/urllib baseline",
                cli.wall_s <= BASELINE_FACTOR * base.wall_s,
                f"{cli.wall_s / base.wall_s:.2f}x",
            ),
        ]
        code = report("Start-up", table(results, baseline="stdlib baseline"), targets)
        if code:
            print()
            print(compile_time())
            print(import_profile(cli_argv(python, out), env))
    return code


if __name__ == "__main__":
    sys.exit(main())

"""A ~50 MB streamed generation (2 previews + the final image) from the fake: the CLI vs the official SDK.

    python tests/bench/bench_stream.py [--runs N] [--image-mb 16.7] [--python PATH] [--profile]
                                       [--baseline-script OLD_gpt_image.py]

Starts tests/fakeapi.py standalone with --image-bytes so each of the three images in the stream (two
partial_image events and the completed event) is about 16.7 MB: 50 MB of image data, 67 MB of base64 on the
wire. Then, in turn, as child processes:
  cli   gpt_image.py generations --stream --partial-images 2 --output .../stream.png
  sdk   a script doing the same work with the SDK: images.generate(stream=True, partial_images=2), iterate
        the events, base64-decode each image and write it to the same file names
Both write all three files (the CLI atomically, with fsync; the SDK script with a plain write). The outputs
are checked after every run and compared byte for byte after the last.

Targets: the CLI in at most half the SDK's time and half its peak memory. Exit status 1 on a miss, after a
cProfile/tracemalloc summary of one CLI run (also shown with --profile).

--baseline-script runs another copy of the script (an earlier version, say `git show
main:scripts/gpt_image.py > /tmp/gpt_image_main.py`) interleaved with the others, and adds the target that
this one takes at most 5% more time than it: a before/after figure from one run on one machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    MB,
    SCRIPT,
    Command,
    FakeServer,
    clear_dir,
    cli_env,
    expect_files,
    parser,
    profile_cli,
    report,
    run_interleaved,
    same_files,
    scratch_dir,
    sdk_version,
    speed_and_memory_targets,
    table,
)

PROMPT = "A detailed isometric city at night, neon signs, rain"

SDK_SCRIPT = """
import base64, sys
from openai import OpenAI

base_url, stem = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, max_retries=0)  # the key comes from OPENAI_API_KEY
stream = client.images.generate(
    model="gpt-image-2", prompt=sys.argv[3], output_format="png", stream=True, partial_images=2
)
for event in stream:
    if event.type == "image_generation.partial_image":
        path = f"{stem}.partial-{event.partial_image_index + 1}.png"
    elif event.type == "image_generation.completed":
        path = f"{stem}.png"
    else:
        continue
    with open(path, "wb") as handle:
        handle.write(base64.b64decode(event.b64_json))
"""

NAMES = ["stream.partial-1.png", "stream.partial-2.png", "stream.png"]


def main() -> int:
    options = parser(__doc__.split("\n")[0])
    options.add_argument(
        "--image-mb", type=float, default=16.7, help="size of each image in MB (default 16.7)"
    )
    options.add_argument("--profile", action="store_true", help="also profile one CLI run")
    options.add_argument(
        "--baseline-script",
        metavar="PATH",
        help="also run this copy of gpt_image.py; this one must be within 5%%",
    )
    args = options.parse_args()
    python = args.python
    version = sdk_version(python)
    image_bytes = int(args.image_mb * MB)
    cli_args = ["generations", "--prompt", PROMPT, "--stream", "--partial-images", "2", "--quiet"]
    with FakeServer(image_bytes, python) as fake, scratch_dir("bench-stream-") as out:
        env = cli_env(fake.base_url)
        cli_dir, sdk_dir = out / "cli", out / "sdk"
        commands = [
            Command(
                "cli (gpt_image.py)",
                [python, str(SCRIPT), *cli_args, "--output", str(cli_dir / "stream.png")],
                env=env,
                cwd=out,
                prepare=clear_dir(cli_dir),
                check=expect_files(cli_dir, NAMES, int(image_bytes * 0.99)),
            ),
            Command(
                f"sdk (openai {version})",
                [python, "-c", SDK_SCRIPT, fake.base_url, str(sdk_dir / "stream"), PROMPT],
                env=env,
                cwd=out,
                prepare=clear_dir(sdk_dir),
                check=expect_files(sdk_dir, NAMES, int(image_bytes * 0.99)),
            ),
        ]
        if args.baseline_script:
            base_dir = out / "baseline"
            commands.append(
                Command(
                    "baseline (--baseline-script)",
                    [python, args.baseline_script, *cli_args, "--output", str(base_dir / "stream.png")],
                    env=env,
                    cwd=out,
                    prepare=clear_dir(base_dir),
                    check=expect_files(base_dir, NAMES, int(image_bytes * 0.99)),
                )
            )
        print(f"fake API at {fake.base_url}, 3 images of {image_bytes / MB:.1f} MB", file=sys.stderr)
        results = run_interleaved(commands, args.runs)
        cli, sdk = results[commands[0].name], results[commands[1].name]
        targets = speed_and_memory_targets(cli, sdk)
        if args.baseline_script:
            base = results[commands[2].name]
            targets.append(
                (
                    "CLI time within 5% of the baseline script's",
                    cli.wall_s <= 1.05 * base.wall_s,
                    f"{cli.wall_s / base.wall_s:.1%}",
                )
            )
        targets.append(
            ("the CLI and the SDK saved identical files", same_files(cli_dir, sdk_dir, NAMES, NAMES), "")
        )
        body = table(results, baseline=sdk.name) + (
            f"\n\nWorkload: 2 partial images + 1 final, {3 * image_bytes / MB:.0f} MB of image data "
            f"({4 * 3 * image_bytes / 3 / MB:.0f} MB of base64) streamed from tests/fakeapi.py."
        )
        code = report("Streamed generation", body, targets)
        if code or args.profile:
            clear_dir(cli_dir)()
            print("\nOne CLI run under cProfile and tracemalloc:\n")
            print(profile_cli(python, [*cli_args, "--output", str(cli_dir / "stream.png")], env, out))
    return code


if __name__ == "__main__":
    sys.exit(main())

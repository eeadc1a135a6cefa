"""A non-streamed response with 10 images (~40 MB of JSON) from the fake: the CLI vs the official SDK.

    python tests/bench/bench_json.py [--runs N] [--image-mb 3.0] [--python PATH] [--profile]

Starts tests/fakeapi.py standalone with --image-bytes so each of the 10 images is about 3 MB: 30 MB of image
data, 40 MB of base64 in one JSON body (an ImagesResponse with data[0..9].b64_json). Then, in turn, as
child processes:
  cli   gpt_image.py generations --n 10 --output .../img-{index}.png
  sdk   a script doing the same work with the SDK: images.generate(n=10), base64-decode each data[i].b64_json
        and write it to the same file names
The outputs are checked after every run and compared byte for byte after the last.

Targets: the CLI in at most half the SDK's time and half its peak memory. Exit status 1 on a miss, after a
cProfile/tracemalloc summary of one CLI run (also shown with --profile).
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

PROMPT = "Ten variations of a minimalist mountain logo"
COUNT = 10

SDK_SCRIPT = """
import base64, sys
from openai import OpenAI

base_url, folder = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, max_retries=0)  # the key comes from OPENAI_API_KEY
reply = client.images.generate(
    model="gpt-image-2", prompt=sys.argv[3], output_format="png", n=int(sys.argv[4])
)
for index, image in enumerate(reply.data, start=1):
    with open(f"{folder}/img-{index}.png", "wb") as handle:
        handle.write(base64.b64decode(image.b64_json))
"""

NAMES = [f"img-{i}.png" for i in range(1, COUNT + 1)]


def main() -> int:
    options = parser(__doc__.split("\n")[0])
    options.add_argument("--image-mb", type=float, default=3.0, help="size of each image in MB (default 3.0)")
    options.add_argument("--profile", action="store_true", help="also profile one CLI run")
    args = options.parse_args()
    python = args.python
    version = sdk_version(python)
    image_bytes = int(args.image_mb * MB)
    cli_args = ["generations", "--prompt", PROMPT, "--n", str(COUNT), "--quiet"]
    with FakeServer(image_bytes, python) as fake, scratch_dir("bench-json-") as out:
        env = cli_env(fake.base_url)
        cli_dir, sdk_dir = out / "cli", out / "sdk"
        commands = [
            Command(
                "cli (gpt_image.py)",
                [python, str(SCRIPT), *cli_args, "--output", str(cli_dir / "img-{index}.png")],
                env=env,
                cwd=out,
                prepare=clear_dir(cli_dir),
                check=expect_files(cli_dir, NAMES, int(image_bytes * 0.99)),
            ),
            Command(
                f"sdk (openai {version})",
                [python, "-c", SDK_SCRIPT, fake.base_url, str(sdk_dir), PROMPT, str(COUNT)],
                env=env,
                cwd=out,
                prepare=clear_dir(sdk_dir),
                check=expect_files(sdk_dir, NAMES, int(image_bytes * 0.99)),
            ),
        ]
        print(f"fake API at {fake.base_url}, {COUNT} images of {image_bytes / MB:.1f} MB", file=sys.stderr)
        results = run_interleaved(commands, args.runs)
        cli, sdk = (results[c.name] for c in commands)
        targets = speed_and_memory_targets(cli, sdk)
        targets.append(
            ("the CLI and the SDK saved identical files", same_files(cli_dir, sdk_dir, NAMES, NAMES), "")
        )
        body = table(results, baseline=sdk.name) + (
            f"\n\nWorkload: one JSON body with {COUNT} images, "
            f"{COUNT * image_bytes / MB:.0f} MB of image data "
            f"({COUNT * 4 * image_bytes / 3 / MB:.0f} MB of base64) from tests/fakeapi.py."
        )
        code = report("Non-streamed response with 10 images", body, targets)
        if code or args.profile:
            clear_dir(cli_dir)()
            print("\nOne CLI run under cProfile and tracemalloc:\n")
            print(profile_cli(python, [*cli_args, "--output", str(cli_dir / "img-{index}.png")], env, out))
    return code


if __name__ == "__main__":
    sys.exit(main())

"""The program's pixel work (PNG codec, resize, key route, contact sheet) against Pillow doing the same work.

    python tests/bench/bench_pixels.py [--runs N] [--quick] [--peer-runs N] [--profile] [--python PATH]

Imports scripts/gpt_image.py and times its pure Images section in this process, with Pillow doing the same
steps in the same run (interleaved round by round, so a busy machine slows both alike). Every figure is the
least wall time of N runs, with the CPU time of that run; peak memory, where a target is about it, is the
high-water mark (VmHWM in /proc/self/status) of a fresh child process that imports only the program (no
Pillow; --python names its interpreter), reads the PNG and does the work. The inputs are made here, with
Pillow, before anything is timed:

  photo   1536x1024 RGB photo-like PNG (gradients, shapes, blur, noise) saved by Pillow with its defaults
          (level 6, adaptive filters: a mix of Sub, Up and Paeth rows): decode, resize to 1200x630 cover,
          encode (issue #20); Pillow: Image.open + load, resize(LANCZOS, box=the same centred box), save
  4k      the same chain for a 3840x2160 photo, and its peak RSS in a fresh process
  paeth   1024x1024 RGBA PNG whose every row uses the Paeth filter (the residuals computed with ImageMath,
          independently of the program): decode
  key     the key route after the image arrives (issue #21): decode_png, remove_key, inspect_transparency,
          encode_png, for 1536x1024 and 3840x2160 images from tests/keyscenes.py (render_key_scene, key
          #00FF00); compared with a peer's Pillow script (load with Pillow, a Python loop over every pixel
          for the key distance and alpha, the verification counts, save with Pillow)
  three   one decode of the 1536x1024 photo, then resize to 1200x630, 512x512 and 64x64 (cover) and encode
          each (issue #22)
  sheet   24 PNGs of 1024x1024 (6 distinct files, 2 with alpha, each decoded 4 times): decode each, one
          contact sheet of thumbnails, encode it (issue #22); Pillow: open + load each, resize to the same
          cells (LANCZOS, reducing_gap=2.0, as thumbnail() does), paste or alpha_composite, save

Targets: photo chain <= 2.0 s and within 3x of Pillow's chain; 4k chain <= 6 s with peak RSS <= 250 MB; paeth
decode <= 1.0 s; key route <= 2.0 s (1536x1024) and <= 10 s (3840x2160); three targets <= 2.5 s; sheet
<= 12 s. The program's outputs are checked against Pillow once, unmeasured (decoded pixels identical,
resized pixels within a stated difference, encoded files read back identically, the key route verified).
Exit status 1 if a target is missed. About 1.5 minutes with the default runs on a 2-core machine; --quick
(one run, no output checks, no 3840x2160 peer script) about 35 s. --profile adds a cProfile of one run of
each workload.
"""

from __future__ import annotations

import cProfile
import gc
import io
import json
import math
import pstats
import random
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SCRIPT, TESTS, Target, fmt_mb, fmt_s, parser, report

sys.path.insert(0, str(SCRIPT.parent))
sys.path.insert(0, str(TESTS))

import gpt_image
import PIL
from keyscenes import render_key_scene
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageMath

KEY = (0, 255, 0)
KEY_TEXT = "#00FF00"
THREE = ((1200, 630), (512, 512), (64, 64))
SHEET_COUNT = 24
SHEET_DISTINCT = 6


# --- Timing ---


class Stage(NamedTuple):
    """One stage of one run: wall and CPU seconds."""

    wall: float
    cpu: float


class Runs:
    """The runs of one side of a workload, stage by stage; the best run is the one with the least total."""

    def __init__(self, stages: Sequence[str]) -> None:
        self.stages = list(stages)
        self.runs: List[Dict[str, Stage]] = []

    def add(self, run: Dict[str, Stage]) -> None:
        self.runs.append(run)

    def best(self, stage: str) -> Stage:
        """The least wall time of a stage over the runs, with that run's CPU time."""
        return min((run[stage] for run in self.runs), key=lambda s: s.wall)

    def total(self) -> Stage:
        """The least wall time of the whole chain (a run's stages summed), with that run's CPU time."""
        sums = [
            Stage(sum(s.wall for s in run.values()), sum(s.cpu for s in run.values())) for run in self.runs
        ]
        return min(sums, key=lambda s: s.wall)


class Clock:
    """Times the stages of one run: ``with clock("decode"): ...``."""

    def __init__(self) -> None:
        self.stages: Dict[str, Stage] = {}
        self._name = ""
        self._wall = self._cpu = 0.0

    def __call__(self, name: str) -> Clock:
        self._name = name
        return self

    def __enter__(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def __exit__(self, *exc: object) -> None:
        wall, cpu = time.perf_counter() - self._wall, time.process_time() - self._cpu
        old = self.stages.get(self._name, Stage(0.0, 0.0))
        self.stages[self._name] = Stage(old.wall + wall, old.cpu + cpu)


Work = Callable[[Clock], object]


def run_rounds(sides: Sequence[Tuple[Runs, Work]], runs: int) -> None:
    """``runs`` rounds of every side in turn (A B, A B, ...), each run after a full collection."""
    for _ in range(runs):
        for into, work in sides:
            gc.collect()
            clock = Clock()
            work(clock)
            into.add(clock.stages)


# --- Inputs, made with Pillow ---


def photo_like(width: int, height: int, seed: int = 1, alpha: bool = False) -> Image.Image:
    """Gradients, 40 hard shapes, a blur and mild noise: Pillow's adaptive filters pick Sub, Up and Paeth."""
    rnd = random.Random(seed)
    red = Image.linear_gradient("L").resize((width, height))
    green = Image.radial_gradient("L").resize((width, height))
    blue = Image.linear_gradient("L").rotate(90).resize((width, height))
    image = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x0, y0 = rnd.randrange(width), rnd.randrange(height)
        box = (x0, y0, x0 + rnd.randrange(width // 4), y0 + rnd.randrange(height // 4))
        colour = (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256))
        (draw.ellipse if rnd.random() < 0.5 else draw.rectangle)(box, fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(3))
    noise = Image.effect_noise((width, height), 12)
    noisy = Image.merge("RGB", (noise, noise.rotate(180), noise.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    image = Image.blend(image, noisy, 0.15)
    if alpha:  # a soft-edged cut-out: transparent corners, an opaque middle
        mask = Image.new("L", (width, height), 0)
        ImageDraw.Draw(mask).ellipse((width * 0.12, height * 0.08, width * 0.88, height * 0.92), fill=255)
        image = image.convert("RGBA")
        image.putalpha(mask.filter(ImageFilter.GaussianBlur(4)))
    return image


def pillow_png(image: Image.Image) -> bytes:
    """The PNG Pillow writes with its defaults (zlib level 6, an adaptive filter per row)."""
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def all_paeth_png(image: Image.Image) -> bytes:
    """An RGBA PNG whose every row uses the Paeth filter (residuals by ImageMath over the row bytes)."""
    width, height = image.size
    row = 4 * width
    x = Image.frombytes("L", (row, height), image.tobytes())  # each byte a sample; left is 4 bytes back

    def shifted(dx: int, dy: int) -> Image.Image:
        out = Image.new("L", (row, height), 0)  # zeros left of the first pixel and above the first row
        out.paste(x.crop((0, 0, row - dx, height - dy)), (dx, dy))
        return out

    a, b, c = shifted(4, 0), shifted(0, 1), shifted(4, 1)

    def residual(n: Dict[str, Any]) -> Any:
        pa, pb, pc = abs(n["b"] - n["c"]), abs(n["a"] - n["c"]), abs(n["a"] + n["b"] - n["c"] - n["c"])
        use_a = (pa <= pb) & (pa <= pc)  # "ties are broken in the order a, b, c" (PNG 9.4)
        use_b = (use_a == 0) & (pb <= pc)
        use_c = (use_a == 0) & (use_b == 0)
        predictor = n["a"] * use_a + n["b"] * use_b + n["c"] * use_c
        return (n["x"] - predictor + 256) & 255

    res = ImageMath.lambda_eval(residual, x=x, a=a, b=b, c=c).convert("L").tobytes()
    raw = b"".join(b"\x04" + res[y * row : (y + 1) * row] for y in range(height))
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes((8, 6, 0, 0, 0))
    body = png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(raw, 6)) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def filter_histogram(data: bytes) -> str:
    """How many rows of a non-interlaced 8-bit PNG use each filter type."""
    stream, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == b"IDAT":
            stream.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    width, colour = int.from_bytes(data[16:20], "big"), data[25]
    raw = zlib.decompress(b"".join(stream))
    counts = [0] * 5
    for kind in raw[0 :: width * {0: 1, 2: 3, 4: 2, 6: 4}[colour] + 1]:
        counts[kind] += 1
    return ", ".join(f"{name} {n}" for name, n in zip(("None", "Sub", "Up", "Average", "Paeth"), counts))


def cover_box(width: int, height: int, to_w: int, to_h: int) -> Tuple[float, float, float, float]:
    """The centred source box with the target's aspect ratio (what fit=cover resamples)."""
    scale = max(to_w / width, to_h / height)
    crop_w, crop_h = to_w / scale, to_h / scale
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    return (left, top, left + crop_w, top + crop_h)


def pillow_rgba(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return bytes(image.convert("RGBA").tobytes())


def difference(ours: gpt_image.Pixels, theirs: Image.Image) -> Tuple[float, int]:
    """Mean and largest absolute channel difference between our pixels and a Pillow image (as RGBA)."""
    mine = Image.frombytes("RGBA", (ours.width, ours.height), ours.rgba)
    histogram = ImageChops.difference(mine, theirs.convert("RGBA")).histogram()
    folded = [sum(histogram[i::256]) for i in range(256)]  # the four bands' histograms, added
    return sum(i * n for i, n in enumerate(folded)) / sum(folded), max(i for i, n in enumerate(folded) if n)


# --- The workloads: each side is a function of a Clock that does one run ---


def program_chain(data: bytes, targets: Sequence[Tuple[int, int]]) -> Work:
    def work(clock: Clock) -> None:
        with clock("decode"):
            pixels = gpt_image.decode_png(data)
        for width, height in targets:
            with clock("resize"):
                small = gpt_image.resize(pixels, width, height, "cover")
            with clock("encode"):
                gpt_image.encode_png(small)

    return work


def pillow_chain(data: bytes, targets: Sequence[Tuple[int, int]]) -> Work:
    def work(clock: Clock) -> None:
        with clock("decode"):
            image = Image.open(io.BytesIO(data))
            image.load()
        for width, height in targets:
            with clock("resize"):
                box = cover_box(image.width, image.height, width, height)
                small = image.resize((width, height), Image.Resampling.LANCZOS, box=box)
            with clock("encode"):
                small.save(io.BytesIO(), "PNG")

    return work


def program_key_route(data: bytes) -> Work:
    """What run_transparency does on the key route, stage by stage."""

    def work(clock: Clock) -> None:
        with clock("decode"):
            pixels = gpt_image.decode_png(data)
        with clock("remove_key"):
            cut, measured = gpt_image.remove_key(pixels, gpt_image.parse_color(KEY_TEXT))
        with clock("verify"):
            gpt_image.inspect_transparency(cut, measured, "key")
        with clock("encode"):
            gpt_image.encode_png(cut)

    return work


def peer_key_route(data: bytes) -> Work:
    """A peer's Pillow script: Pillow loads and saves, a Python loop over the pixels keys out and counts."""

    def work(clock: Clock) -> None:
        with clock("decode"):
            image = Image.open(io.BytesIO(data)).convert("RGBA")
            width, height = image.size
        with clock("remove_key"):
            flat = getattr(image, "get_flattened_data", image.getdata)  # getdata before Pillow 12.1
            pixels = list(flat())
            border = pixels[:width] + pixels[-width:] + pixels[::width] + pixels[width - 1 :: width]
            kr, kg, kb = (sum(p[i] for p in border) / len(border) for i in range(3))  # the key, measured
            low, high = 12.0, 220.0  # Euclidean distance: clear below low, opaque above high, a ramp between
            out = []
            for r, g, b, _ in pixels:
                distance = ((r - kr) ** 2 + (g - kg) ** 2 + (b - kb) ** 2) ** 0.5
                if distance <= low:
                    out.append((0, 0, 0, 0))
                    continue
                a = 255 if distance >= high else int(255 * (distance - low) / (high - low))
                out.append((r, min(g, max(r, b)), b, a))  # green despill
            result = Image.new("RGBA", (width, height))
            result.putdata(out)
        with clock("verify"):
            clear = sum(1 for p in out if p[3] == 0)
            ring = out[:width] + out[-width:] + out[::width] + out[width - 1 :: width]
            problems = []
            if sum(1 for p in ring if p[3] == 0) < 0.9 * len(ring):
                problems.append("border")
            if not 0.01 <= clear / len(out) <= 0.99:
                problems.append("share")
        with clock("encode"):
            result.save(io.BytesIO(), "PNG")

    return work


def program_sheet(files: Sequence[bytes]) -> Work:
    def work(clock: Clock) -> None:
        images = []
        with clock("decode"):
            for data in files:
                images.append(gpt_image.decode_png(data))
        with clock("sheet"):
            sheet, _ = gpt_image.contact_sheet(images)
        with clock("encode"):
            gpt_image.encode_png(sheet)

    return work


def pillow_sheet(files: Sequence[bytes], size: Tuple[int, int], boxes: Sequence[Tuple[int, ...]]) -> Work:
    """The same sheet with Pillow: the program's cells, thumbnails resized as thumbnail() does.

    A transparent thumbnail is composited over the white sheet (the program puts it on a checkerboard first).
    """

    def work(clock: Clock) -> None:
        images = []
        with clock("decode"):
            for data in files:
                image = Image.open(io.BytesIO(data))
                image.load()
                images.append(image)
        with clock("sheet"):
            sheet = Image.new("RGBA", size, (255, 255, 255, 255))
            for image, (left, top, side, _) in zip(images, boxes):
                scale = min(side / image.width, side / image.height)
                w, h = max(1, round(image.width * scale)), max(1, round(image.height * scale))
                thumb = image.resize((w, h), Image.Resampling.LANCZOS, reducing_gap=2.0)
                at = (left + (side - w) // 2, top + (side - h) // 2)
                if thumb.mode == "RGBA":
                    sheet.alpha_composite(thumb, at)
                else:
                    sheet.paste(thumb, at)
        with clock("encode"):
            sheet.save(io.BytesIO(), "PNG")

    return work


# --- Peak memory in a fresh process (the program only, no Pillow) ---

_CHILD = r"""
import json, sys, time
def high_water():
    # VmHWM is this process's own high-water mark (ru_maxrss could count the parent's size at fork).
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0
sys.path.insert(0, sys.argv[1])
kind, path = sys.argv[2], sys.argv[3]
if kind.startswith("pillow"):
    from PIL import Image
else:
    import gpt_image as g
started_at = high_water()
data = open(path, "rb").read()
start = time.perf_counter()
if kind == "program-chain":
    g.encode_png(g.resize(g.decode_png(data), 1200, 630, "cover"))
elif kind == "program-key":
    cut, measured = g.remove_key(g.decode_png(data), g.parse_color("#00FF00"))
    g.inspect_transparency(cut, measured, "key")
    g.encode_png(cut)
elif kind == "pillow-chain":
    import io
    image = Image.open(io.BytesIO(data))
    w, h = image.size
    scale = max(1200 / w, 630 / h)
    box = ((w - 1200 / scale) / 2, (h - 630 / scale) / 2, (w + 1200 / scale) / 2, (h + 630 / scale) / 2)
    image.resize((1200, 630), Image.Resampling.LANCZOS, box=box).save(io.BytesIO(), "PNG")
print(json.dumps({"seconds": time.perf_counter() - start, "start": started_at, "peak": high_water()}))
"""


def peak_rss(python: str, kind: str, data: bytes) -> Dict[str, float]:
    """Run one workload in a fresh process; its wall time, its RSS after imports, and its peak RSS."""
    with tempfile.NamedTemporaryFile(suffix=".png") as handle:
        handle.write(data)
        handle.flush()
        proc = subprocess.run(
            [python, "-c", _CHILD, str(SCRIPT.parent), kind, handle.name], capture_output=True, text=True
        )
    if proc.returncode:
        raise SystemExit(f"the {kind} child failed:\n{proc.stderr[-2000:]}")
    result: Dict[str, float] = json.loads(proc.stdout)
    return result


# --- Reporting ---


class Row(NamedTuple):
    workload: str
    stage: str
    ours: Stage
    theirs: Optional[Stage]


def rows_for(workload: str, ours: Runs, theirs: Optional[Runs]) -> List[Row]:
    rows = [Row(workload, s, ours.best(s), theirs.best(s) if theirs else None) for s in ours.stages]
    rows.append(Row(workload, "**total**", ours.total(), theirs.total() if theirs else None))
    return rows


def markdown(rows: Sequence[Row], theirs_name: str) -> str:
    head = ["workload", "stage", "program", "program CPU", theirs_name, f"{theirs_name} CPU", "ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.workload, row.stage, fmt_s(row.ours.wall), fmt_s(row.ours.cpu)]
        if row.theirs is None:
            cells += ["-", "-", "-"]
        else:
            ratio = row.ours.wall / row.theirs.wall if row.theirs.wall else math.inf
            cells += [fmt_s(row.theirs.wall), fmt_s(row.theirs.cpu), f"{ratio:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def profile(label: str, work: Work) -> str:
    """One run of a workload under cProfile: the top functions by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    work(Clock())
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(10)
    body = [line for line in out.getvalue().splitlines() if line.strip()]
    return f"#### {label}\n\n```\n" + "\n".join(body[:24]) + "\n```"


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


# --- Main ---


def check_outputs(
    photo: Image.Image,
    photo_png: bytes,
    others: Sequence[bytes],
    scenes: Sequence[Any],
    targets: List[Target],
    notes: List[str],
) -> None:
    """Decoding, resizing, encoding and the key route against Pillow and the true matte, once, unmeasured."""
    note("checking the program's output against Pillow ...")
    for name, data in zip(("photo", "4k", "paeth", "sheet file"), (photo_png, *others)):
        same = gpt_image.decode_png(data).rgba == pillow_rgba(data)
        targets.append((f"{name}: decode_png gives Pillow's pixels exactly", same, ""))
    pixels = gpt_image.decode_png(photo_png)
    for width, height in THREE:
        ours = gpt_image.resize(pixels, width, height, "cover")
        box = cover_box(1536, 1024, width, height)
        mean, largest = difference(ours, photo.resize((width, height), Image.Resampling.LANCZOS, box=box))
        encoded = gpt_image.encode_png(ours)
        back = pillow_rgba(encoded) == ours.rgba
        notes.append(
            f"photo -> {width}x{height}: resize differs from Pillow's by {mean:.3f} on average, {largest} at most "
            f"(0..255); encode_png {len(encoded):,} bytes against Pillow's "
            f"{len(pillow_png(photo.resize((width, height), Image.Resampling.LANCZOS, box=box))):,}, "
            f"read back by Pillow {'identically' if back else 'DIFFERENTLY'}"
        )
        targets.append((f"photo -> {width}x{height}: encode_png read back by Pillow identically", back, ""))
    for name, scene in zip(("1536x1024", "3840x2160"), scenes):
        try:
            _, facts = gpt_image.run_transparency(scene.png, {"route": "key", "key": KEY_TEXT})
            verified, detail = True, f"transparent {facts['transparent']:.1%}, partial {facts['partial']:.1%}"
        except gpt_image.StepFailed as exc:
            verified, detail = False, str(exc)
        cut, _ = gpt_image.remove_key(gpt_image.decode_png(scene.png), KEY)
        size = (cut.width, cut.height)
        histogram = ImageChops.difference(
            Image.frombytes("L", size, cut.rgba[3::4]), Image.frombytes("L", size, scene.alpha)
        ).histogram()
        error = sum(i * n for i, n in enumerate(histogram)) / len(scene.alpha)
        notes.append(f"key {name}: alpha off the true matte by {error:.2f} on average (0..255); {detail}")
        targets.append((f"key {name}: run_transparency verifies the cut-out", verified, detail))
    del pixels


def main() -> int:
    options = parser(__doc__.split("\n")[0], runs=3)
    options.add_argument(
        "--quick",
        action="store_true",
        help="one run each, no checks against Pillow, no 3840x2160 peer script",
    )
    options.add_argument(
        "--peer-runs", type=int, default=1, help="runs of the peer's per-pixel Pillow script (default 1)"
    )
    options.add_argument("--profile", action="store_true", help="also print a cProfile of one run of each")
    args = options.parse_args()
    runs = 1 if args.quick else args.runs
    peer_runs = max(1, args.peer_runs)
    started, load_before = time.perf_counter(), load_average()
    targets: List[Target] = []
    notes: List[str] = []
    rows: List[Row] = []

    note("making the inputs with Pillow ...")
    photo = photo_like(1536, 1024)
    photo_png = pillow_png(photo)
    big = photo_like(3840, 2160, seed=3)
    big_png = pillow_png(big)
    del big
    cut_out = photo_like(1024, 1024, seed=5, alpha=True)
    paeth_png = all_paeth_png(cut_out)
    key_small = render_key_scene(1536, 1024, KEY, "subject", 1)
    key_big = render_key_scene(3840, 2160, KEY, "subject", 1)
    distinct = [
        pillow_png(photo_like(1024, 1024, seed=10 + i, alpha=i % 3 == 0)) for i in range(SHEET_DISTINCT)
    ]
    sheet_files = [distinct[i % SHEET_DISTINCT] for i in range(SHEET_COUNT)]

    if not args.quick:  # the program's outputs against Pillow's, unmeasured
        check_outputs(
            photo, photo_png, [big_png, paeth_png, distinct[0]], (key_small, key_big), targets, notes
        )

    note(f"timing, min of {runs} run(s) ...")
    photo_ours, photo_theirs = Runs(["decode", "resize", "encode"]), Runs(["decode", "resize", "encode"])
    run_rounds(
        [
            (photo_ours, program_chain(photo_png, THREE[:1])),
            (photo_theirs, pillow_chain(photo_png, THREE[:1])),
        ],
        runs,
    )
    rows += rows_for("photo 1536x1024 -> 1200x630", photo_ours, photo_theirs)
    note("  photo chain done")
    big_ours, big_theirs = Runs(["decode", "resize", "encode"]), Runs(["decode", "resize", "encode"])
    run_rounds(
        [(big_ours, program_chain(big_png, THREE[:1])), (big_theirs, pillow_chain(big_png, THREE[:1]))], runs
    )
    rows += rows_for("4k 3840x2160 -> 1200x630", big_ours, big_theirs)
    note("  4k chain done")
    paeth_ours, paeth_theirs = Runs(["decode"]), Runs(["decode"])
    decode_only = [(paeth_ours, program_chain(paeth_png, ())), (paeth_theirs, pillow_chain(paeth_png, ()))]
    run_rounds(decode_only, max(runs, 3))
    rows += rows_for("paeth 1024x1024 RGBA", paeth_ours, paeth_theirs)[:1]
    note("  paeth decode done")
    three_ours, three_theirs = Runs(["decode", "resize", "encode"]), Runs(["decode", "resize", "encode"])
    run_rounds(
        [(three_ours, program_chain(photo_png, THREE)), (three_theirs, pillow_chain(photo_png, THREE))], runs
    )
    rows += rows_for("three 1536x1024 -> 1200x630, 512x512, 64x64", three_ours, three_theirs)
    note("  three targets done")
    # The cells depend on the number of images only: the layout from 24 small stand-ins.
    layout, boxes = gpt_image.contact_sheet([gpt_image.new_canvas(8, 8, (0, 0, 0, 255))] * SHEET_COUNT)
    sheet_ours, sheet_theirs = Runs(["decode", "sheet", "encode"]), Runs(["decode", "sheet", "encode"])
    sheet_size = (layout.width, layout.height)
    del layout
    run_rounds(
        [
            (sheet_ours, program_sheet(sheet_files)),
            (sheet_theirs, pillow_sheet(sheet_files, sheet_size, boxes)),
        ],
        runs,
    )
    rows += rows_for(f"sheet 24 x 1024x1024 -> {sheet_size[0]}x{sheet_size[1]}", sheet_ours, sheet_theirs)
    note("  contact sheet done")
    key_rows: List[Row] = []
    key_totals: Dict[str, Tuple[Stage, Optional[Stage]]] = {}
    for name, scene in (("1536x1024", key_small), ("3840x2160", key_big)):
        stages = ["decode", "remove_key", "verify", "encode"]
        ours_runs, peer = Runs(stages), Runs(stages)
        run_rounds([(ours_runs, program_key_route(scene.png))], runs)
        with_peer = not (args.quick and name == "3840x2160")
        if with_peer:
            run_rounds([(peer, peer_key_route(scene.png))], peer_runs)
        key_rows += rows_for(f"key {name}", ours_runs, peer if with_peer else None)
        key_totals[name] = (ours_runs.total(), peer.total() if with_peer else None)
        note(f"  key route {name} done")

    note("peak memory in fresh processes ...")
    memory = {kind: peak_rss(args.python, kind, big_png) for kind in ("program-chain", "pillow-chain")}
    memory["program-key"] = peak_rss(args.python, "program-key", key_big.png)

    # Targets.
    chain, pillow = photo_ours.total().wall, photo_theirs.total().wall
    targets.append(
        ("photo chain (decode, resize 1200x630 cover, encode) <= 2.0 s", chain <= 2.0, f"{chain:.2f} s")
    )
    targets.append(
        (
            "photo chain within 3x of Pillow's",
            chain <= 3 * pillow,
            f"{chain / pillow:.2f}x: {chain:.2f} s / {pillow:.2f} s",
        )
    )
    chain = big_ours.total().wall
    targets.append(
        ("4k chain <= 6 s", chain <= 6.0, f"{chain:.2f} s, {chain / big_theirs.total().wall:.2f}x Pillow")
    )
    peak = memory["program-chain"]["peak"]
    targets.append(("4k chain peak RSS <= 250 MB", peak <= 250e6, fmt_mb(int(peak))))
    decode = paeth_ours.best("decode").wall
    targets.append(
        (
            "paeth 1024x1024 RGBA decode <= 1.0 s",
            decode <= 1.0,
            f"{decode:.2f} s, {decode / paeth_theirs.best('decode').wall:.1f}x Pillow",
        )
    )
    for name, limit in (("1536x1024", 2.0), ("3840x2160", 10.0)):
        ours_total, peer_total = key_totals[name]
        detail = f"{ours_total.wall:.2f} s"
        if peer_total is not None:
            detail += f"; the peer's script {peer_total.wall:.1f} s, {ours_total.wall / peer_total.wall:.2f}x its time"
        targets.append(
            (
                f"key route {name} (decode, remove_key, verify, encode) <= {limit:g} s",
                ours_total.wall <= limit,
                detail,
            )
        )
    total = three_ours.total().wall
    targets.append(
        (
            "three targets (one decode, three resizes and encodes) <= 2.5 s",
            total <= 2.5,
            f"{total:.2f} s, {total / three_theirs.total().wall:.2f}x Pillow",
        )
    )
    total = sheet_ours.total().wall
    targets.append(
        (
            "contact sheet of 24 x 1024x1024 (decode each, sheet, encode) <= 12 s",
            total <= 12.0,
            f"{total:.2f} s, {total / sheet_theirs.total().wall:.2f}x Pillow",
        )
    )

    body = [
        markdown(rows, "Pillow"),
        "",
        markdown(key_rows, "peer script"),
        "",
        "Peak RSS in a fresh process (VmHWM; the child reads the PNG file and does the work once):",
        "",
        "| workload | peak RSS | RSS after imports | time in the child |",
        "|---|---|---|---|",
    ]
    labels = {
        "program-chain": "4k chain, program (3840x2160 -> 1200x630)",
        "pillow-chain": "4k chain, Pillow",
        "program-key": "key route 3840x2160, program",
    }
    for kind, label in labels.items():
        m = memory[kind]
        body.append(
            f"| {label} | {fmt_mb(int(m['peak']))} | {fmt_mb(int(m['start']))} | {fmt_s(m['seconds'])} |"
        )
    body += [
        "",
        f"Min of {runs} run(s) (the peer script: {peer_runs}); each stage's best run, and the best run's total. "
        f"Pillow {PIL.__version__}; load average {load_before} before, {load_average()} after; "
        f"{time.perf_counter() - started:.0f} s in all.",
        "",
        f"- photo 1536x1024, {len(photo_png):,} bytes; rows: {filter_histogram(photo_png)}",
        f"- 4k 3840x2160, {len(big_png):,} bytes; rows: {filter_histogram(big_png)}",
        f"- paeth 1024x1024 RGBA, {len(paeth_png):,} bytes; rows: {filter_histogram(paeth_png)}",
        f"- key scenes (keyscenes.render_key_scene, zlib level 1): {len(key_small.png):,} bytes, "
        f"{filter_histogram(key_small.png)}; {len(key_big.png):,} bytes, {filter_histogram(key_big.png)}",
        f"- sheet files ({SHEET_DISTINCT}, each decoded {SHEET_COUNT // SHEET_DISTINCT} times): "
        + "; ".join(f"{len(d):,} bytes, {filter_histogram(d)}" for d in distinct),
    ]
    body += [f"- {line}" for line in notes]
    code = report("Pixel work: the program's Images section and Pillow", "\n".join(body), targets)
    if args.profile:
        print("\n### One run of each under cProfile (own time)\n")
        print(profile("photo chain", program_chain(photo_png, THREE[:1])))
        print(profile("4k chain", program_chain(big_png, THREE[:1])))
        print(profile("paeth decode", program_chain(paeth_png, ())))
        print(profile("key route 3840x2160", program_key_route(key_big.png)))
        print(profile("three targets", program_chain(photo_png, THREE)))
        print(profile("contact sheet", program_sheet(sheet_files)))
    return code


if __name__ == "__main__":
    sys.exit(main())

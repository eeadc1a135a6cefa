"""The documentation is true to the code.

SKILL.md passes the Agent Skills reference validator (skills-ref) in a folder named like the skill; every path,
flag and environment variable the docs mention exists; every example command in SKILL.md and README.md runs as
written (as a dry run without a key, and for real against the loopback fake API); the exit-code tables, the
.env example and the documented JSON keys match what the program really does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SCRIPT = REPO / "scripts" / "gpt_image.py"
for _path in (str(REPO / "scripts"), str(TESTS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import gpt_image  # noqa: E402
from fakeapi import FakeAPI, make_image, make_mask  # noqa: E402


def _skills_ref() -> Any:
    # The reference validator needs Python 3.10+; on 3.9 only its two tests skip, the rest still run.
    return pytest.importorskip("skills_ref", reason="skills-ref (dev extra) needs Python 3.10 or newer")


def parse_frontmatter(text: str) -> Tuple[Dict[str, str], str]:
    """SKILL.md's YAML frontmatter as flat `key: value` pairs (all this skill uses), and the body after it."""
    lines = text.split("\n")
    assert lines[0] == "---", "SKILL.md must start with a --- frontmatter line"
    end = lines.index("---", 1)
    meta: Dict[str, str] = {}
    for line in lines[1:end]:
        key, colon, value = line.partition(":")
        assert colon and key.strip() and not line.startswith(" "), f"not a flat key: value line: {line!r}"
        meta[key.strip()] = value.strip()
    return meta, "\n".join(lines[end + 1 :])


SKILL_NAME = "gpt-image-2"
SKILL_MD = REPO / "SKILL.md"
README = REPO / "README.md"
CONFIG_MD = REPO / "references" / "config.md"
API_MD = REPO / "references" / "api-surface.md"
BATCH_MD = REPO / "references" / "batch.md"
IMAGES_MD = REPO / "references" / "images.md"
DOCS = (SKILL_MD, README, CONFIG_MD, API_MD, BATCH_MD, IMAGES_MD)
#: The docs that carry runnable example commands and the exit-code table.
EXAMPLE_DOCS = (SKILL_MD, README)
#: Docs whose example commands run too (they carry no exit-code table).
RUNNABLE_DOCS = (*EXAMPLE_DOCS, IMAGES_MD)
#: The README's test command, which .ci/run also runs.
TEST_COMMAND = "python -m pytest -n auto"
#: Flags of other tools (ruff, mypy, the benchmark scripts) that the development notes mention.
EXTERNAL_FLAGS = {"--check", "--strict", "--runs", "--baseline-script"}
#: Standard variables read by Python itself (urllib proxies, ssl), documented in config.md.
PYTHON_ENV_VARS = {"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "SSL_CERT_FILE"}
SENTINEL = "sk-test-DOCS-SENTINEL-0123456789"
#: Prefixes of the variables the script reads, removed from the environment of the runs here.
CONFIG_PREFIXES = ("OPENAI_", "AZURE_OPENAI_", "GPT_IMAGE_")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# --- Markdown helpers --------------------------------------------------------------------------------------


def fenced_blocks(text: str) -> Iterator[Tuple[str, int, List[str]]]:
    """Yield (language, line number of the first content line, lines) of each fenced code block."""
    lang: Optional[str] = None
    start = 0
    lines: List[str] = []
    fence = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if lang is None:
            match = re.match(r"(`{3,}|~{3,})\s*([\w+-]*)", stripped)
            if match:
                fence, lang, start, lines = match.group(1), match.group(2), number + 1, []
        elif stripped.startswith(fence) and not stripped[len(fence) :].strip():
            yield lang, start, lines
            lang = None
        else:
            lines.append(line)


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    out, inside, fence = [], False, ""
    for line in text.splitlines():
        stripped = line.strip()
        match = re.match(r"(`{3,}|~{3,})", stripped)
        if not inside and match:
            inside, fence = True, match.group(1)
            continue
        if inside and stripped.startswith(fence) and not stripped[len(fence) :].strip():
            inside = False
            continue
        if not inside:
            out.append(line)
    return "\n".join(out)


def inline_code(text: str) -> List[str]:
    """The inline `code` spans outside fenced blocks."""
    return re.findall(r"`([^`\n]+)`", prose(text))


def markdown_tables(text: str) -> List[List[List[str]]]:
    """Every pipe table as a list of rows (header first, separator dropped), cells stripped."""
    tables: List[List[List[str]]] = []
    current: List[List[str]] = []
    for line in [*text.splitlines(), ""]:
        stripped = line.strip()
        if stripped.startswith("|") and stripped.endswith("|"):
            cells = [cell.strip() for cell in stripped[1:-1].split("|")]
            if not all(re.fullmatch(r":?-{3,}:?", cell) for cell in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def docstring_exit_codes() -> Dict[int, str]:
    """The exit-code table of the script's module docstring (the manual, also shown by --help)."""
    section = (gpt_image.__doc__ or "").split("Exit codes:", 1)[1]
    codes = {int(m.group(1)): m.group(2).strip() for m in re.finditer(r"^\s+(\d+)\s+(.+)$", section, re.M)}
    assert codes, "no exit codes found in the script's docstring"
    return codes


# --- Example commands --------------------------------------------------------------------------------------


def _join_continuations(lines: List[str], marker: str) -> List[Tuple[int, str]]:
    """Join lines ending in marker (\\ for POSIX shells, ` for PowerShell); return (offset, command)."""
    commands: List[Tuple[int, str]] = []
    pending, first = "", 0
    for offset, line in enumerate(lines):
        if not pending:
            first = offset
        stripped = line.rstrip()
        if stripped.endswith(marker):
            pending += stripped[: -len(marker)] + " "
            continue
        commands.append((first, pending + stripped))
        pending = ""
    if pending:
        commands.append((first, pending))
    return commands


def split_powershell(command: str) -> List[str]:
    """Split a PowerShell command line: quotes group, backslashes are path separators, not escapes."""
    lexer = shlex.shlex(command, posix=True)
    lexer.whitespace_split = True
    lexer.escape = ""
    lexer.commenters = ""
    return list(lexer)


def script_args(tokens: List[str]) -> Optional[List[str]]:
    """The arguments after the script in a command that runs it, or None for any other command."""
    if tokens[:1] == ["gpt-image"]:
        return tokens[1:]
    python = tokens[:1] in (["python"], ["python3"], ["py"])
    if python and len(tokens) >= 2 and tokens[1].replace("\\", "/") == "scripts/gpt_image.py":
        return tokens[2:]
    return None


class Example:
    """One example command from the docs."""

    def __init__(self, doc: Path, line: int, shell: str, command: str, args: List[str]) -> None:
        self.doc = doc
        self.line = line
        self.shell = shell
        self.command = command
        self.args = args

    @property
    def id(self) -> str:
        return f"{self.doc.name}:{self.line}"

    @property
    def posix_args(self) -> List[str]:
        """The arguments as they reach the program on this (POSIX) test machine."""
        if self.shell == "powershell":
            return [arg.replace("\\", "/") for arg in self.args]
        return list(self.args)


def collect_examples(doc: Path) -> List[Example]:
    """Every command in doc's fenced blocks (and inline code) that runs the script."""
    text = _read(doc)
    examples: List[Example] = []
    for lang, start, lines in fenced_blocks(text):
        powershell = lang.lower() in ("powershell", "pwsh", "ps1")
        for offset, command in _join_continuations(lines, "`" if powershell else "\\"):
            command = command.strip()
            if not command or command.startswith("#"):
                continue
            tokens = split_powershell(command) if powershell else shlex.split(command)
            args = script_args(tokens)
            if args is not None:
                shell = "powershell" if powershell else "posix"
                examples.append(Example(doc, start + offset, shell, command, args))
    for span in inline_code(text):
        tokens = shlex.split(span) if "\\" not in span else split_powershell(span)
        args = script_args(tokens) if tokens else None
        if args:
            line = text[: text.index(span)].count("\n") + 1
            examples.append(Example(doc, line, "posix", span, args))
    return examples


EXAMPLES = [example for doc in RUNNABLE_DOCS for example in collect_examples(doc)]


def _value_after(args: List[str], *flags: str) -> List[str]:
    found = []
    for i, arg in enumerate(args[:-1]):
        if arg in flags:
            found.append(args[i + 1])
    return found


def prepare_inputs(args: List[str], workdir: Path) -> None:
    """Create the input files an example names: images, a mask matching them, a prompt file, an env file."""
    size = (64, 48)
    for name in _value_after(args, "--image", "-i", "--input-image"):
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = {".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}.get(path.suffix.lower(), "png")
        path.write_bytes(make_image(fmt, size))
    for name in _value_after(args, "--mask"):
        (workdir / name).write_bytes(make_mask(size))
    for name in _value_after(args, "--prompt-file"):
        if name != "-":
            (workdir / name).write_text("A quiet harbour at dawn, painted in soft watercolour\n", "utf-8")
    for name in _value_after(args, "--env-file"):
        (workdir / name).write_text("# no settings\n", "utf-8")
    for name in _value_after(args, "--batch"):
        if name != "-":  # three jobs, in each form a line can take
            lines = ['A red kite over the sea', '"A blue kite, quoted"', '{"id": "green", "prompt": "A green kite"}']
            if "edits" in args:
                (workdir / "photo.png").write_bytes(make_image("png", size))
                lines = ['{"prompt": "Make it dusk", "image": "photo.png"}', '{"prompt": "Make it dawn", "image": "photo.png"}']
            (workdir / name).write_text("\n".join(lines) + "\n", "utf-8")


@pytest.fixture(scope="module")
def skill_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The skill as it is installed: SKILL.md, LICENSE, scripts/ and references/ in a folder gpt-image-2/."""
    root = tmp_path_factory.mktemp("skills") / SKILL_NAME
    root.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("scripts", "references"):
        shutil.copytree(REPO / name, root / name, ignore=ignore)
    for name in ("SKILL.md", "LICENSE"):
        shutil.copy2(REPO / name, root / name)
    return root


def clean_env(**extra: str) -> Dict[str, str]:
    """The process environment without OPENAI_*, AZURE_OPENAI_*, GPT_IMAGE_* or proxy variables, plus extra."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.upper().startswith(CONFIG_PREFIXES) and not key.lower().endswith("_proxy")
    }
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


Run = Callable[..., Tuple[int, str, str]]


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], skill_copy: Path) -> Run:
    """Run gpt_image.main(args) in-process: ``run_cli(args, cwd, **env) -> (code, stdout, stderr)``.

    The environment is clean apart from env; the working directory is cwd. The skill folder is the copy in
    skill_copy, which holds no .env, so a developer's own .env beside the repo's SKILL.md cannot leak in.
    """

    def run(args: List[str], cwd: Path, **env: str) -> Tuple[int, str, str]:
        for name in list(os.environ):
            if name.upper().startswith(CONFIG_PREFIXES) or name.lower().endswith("_proxy"):
                monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(gpt_image, "skill_root", lambda: str(skill_copy))
        capsys.readouterr()
        try:
            code = gpt_image.main(list(args))
        except SystemExit as exc:  # --help
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def subparsers() -> Dict[str, argparse.ArgumentParser]:
    parser = gpt_image.build_parser()
    for action in parser._actions:
        if action.choices and isinstance(action.choices, dict):
            return dict(action.choices)
    raise AssertionError("build_parser() has no subcommands")


def all_flags() -> Set[str]:
    parser = gpt_image.build_parser()
    flags = {opt for opt in parser._option_string_actions if opt.startswith("--")}
    for sub in subparsers().values():
        flags |= {opt for opt in sub._option_string_actions if opt.startswith("--")}
    return flags


# --- SKILL.md and the Agent Skills spec --------------------------------------------------------------------


def test_skill_validates_with_skills_ref(skill_copy: Path) -> None:
    skills_ref = _skills_ref()
    assert skills_ref.validate(skill_copy) == []
    meta, _ = parse_frontmatter(_read(SKILL_MD))
    assert skills_ref.parser.parse_frontmatter(_read(SKILL_MD))[0] == meta  # the local reader agrees
    props = skills_ref.read_properties(skill_copy)
    assert props.name == SKILL_NAME
    assert "<available_skills>" in skills_ref.to_prompt([skill_copy])


def test_skills_ref_checks_the_folder_name(skill_copy: Path, tmp_path: Path) -> None:
    # The spec wants the folder named like the skill; prove the validator above really checks that.
    skills_ref = _skills_ref()
    wrong = tmp_path / "main"
    shutil.copytree(skill_copy, wrong)
    errors = skills_ref.validate(wrong)
    assert any("must match skill name" in error for error in errors), errors


def test_frontmatter() -> None:
    meta, body = parse_frontmatter(_read(SKILL_MD))
    assert meta["name"] == SKILL_NAME
    description = meta["description"]
    assert 0 < len(description) <= 1024
    for trigger in (
        "generate",
        "edit",
        "logo",
        "poster",
        "mask",
        "gpt-image-2",
        "GPT Image 2",
        "transparent",
    ):
        assert trigger in description, trigger
    compatibility = meta["compatibility"]
    pyproject = _read(REPO / "pyproject.toml")
    minimum = re.search(r'requires-python\s*=\s*">=\s*(\d+\.\d+)"', pyproject)
    assert minimum, "pyproject.toml has no requires-python"
    assert f"Python {minimum.group(1)}" in compatibility
    assert "OPENAI_API_KEY" in compatibility and "network" in compatibility
    assert meta.get("license") == "MIT" and "MIT License" in _read(REPO / "LICENSE")
    assert len(body.splitlines()) < 500
    # The spec asks for under 5,000 tokens; about four characters per token for English prose and code.
    assert len(body) / 4 < 5000


def test_skill_body_has_the_required_sections() -> None:
    _, body = parse_frontmatter(_read(SKILL_MD))
    for heading in ("## Which route", "## Defaults", "## Gotchas"):
        assert heading in body
    assert "Decision rule" in body
    for ref in ("references/config.md", "references/api-surface.md"):
        assert re.search(rf"Read `{re.escape(ref)}` when", body), ref
    for route in subparsers():
        assert f"gpt_image.py {route}" in body, route
    assert "```powershell" in body


# --- Paths, flags, environment variables --------------------------------------------------------------------

_PATH_RE = re.compile(r"(?<![\w/.-])((?:scripts|references|tests|\.ci)/[\w./-]*)")


def mentioned_paths(text: str) -> Set[str]:
    paths = {match.rstrip(".,;:") for match in _PATH_RE.findall(text)}
    for span in inline_code(text):
        if re.fullmatch(r"(?:LICENSE|[\w-]+\.(?:md|toml))", span):  # SKILL.md, LICENSE, pyproject.toml
            paths.add(span)
    return paths


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_mentioned_paths_exist(doc: Path) -> None:
    paths = mentioned_paths(_read(doc))
    assert "scripts/gpt_image.py" in paths or doc.parent.name == "references"
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert not missing, f"{doc.name} mentions paths that do not exist: {missing}"


def test_path_scan_finds_what_it_should() -> None:
    found = mentioned_paths("run `scripts/gpt_image.py`, read references/config.md. See `LICENSE`, `x.md`")
    assert found == {"scripts/gpt_image.py", "references/config.md", "LICENSE", "x.md"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_mentioned_flags_exist(doc: Path) -> None:
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", _read(doc))) - EXTERNAL_FLAGS
    assert len(flags) >= 5, f"{doc.name}: suspiciously few flags found"
    unknown = sorted(flags - all_flags())
    assert not unknown, f"{doc.name} mentions flags the parser does not have: {unknown}"


def test_every_flag_is_documented() -> None:
    mentioned = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", "".join(_read(doc) for doc in DOCS)))
    undocumented = sorted(all_flags() - mentioned - {"--help"})
    assert not undocumented, f"flags no document mentions: {undocumented}"


_ENV_RE = re.compile(r"\b((?:AZURE_OPENAI|OPENAI|GPT_IMAGE)_[A-Z0-9_]*[A-Z0-9])\b")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_mentioned_env_vars_exist(doc: Path) -> None:
    source = SCRIPT.read_text(encoding="utf-8")
    names = set(_ENV_RE.findall(_read(doc)))
    for name in names:
        if name.startswith(("OPENAI_", "AZURE_OPENAI_")):
            assert name in gpt_image.CONFIG_KEYS, (
                f"{doc.name} mentions {name}, which the script does not read"
            )
        else:
            assert f'"{name}"' in source, f"{doc.name} mentions {name}, which the script does not read"


def config_table() -> Dict[str, List[str]]:
    """The keys table of references/config.md: {KEY: [flag cell, default cell, description cell]}."""
    for table in markdown_tables(_read(CONFIG_MD)):
        if table[0][:3] == ["Key", "Flag", "Default"]:
            return {row[0].strip("`"): row[1:] for row in table[1:]}
    raise AssertionError("references/config.md has no Key | Flag | Default table")


def test_every_config_key_is_documented() -> None:
    table = config_table()
    assert sorted(table) == sorted(gpt_image.CONFIG_KEYS)
    env_names = set(_ENV_RE.findall(_read(CONFIG_MD) + _read(README)))
    assert set(gpt_image.CONFIG_KEYS) <= env_names
    other = {"GPT_IMAGE_DEBUG", *PYTHON_ENV_VARS}
    for name in other:
        assert f"`{name}`" in _read(CONFIG_MD), name


def test_config_table_flags_and_defaults_match_the_code() -> None:
    table = config_table()
    for option, key in gpt_image.OPTION_ENV.items():
        assert f"`--{option.replace('_', '-')}`" in table[key][0], key
    assert gpt_image.DEFAULT_BASE_URL in table["OPENAI_BASE_URL"][1]
    assert gpt_image.DEFAULT_IMAGE_MODEL in table["OPENAI_IMAGE_MODEL"][1]
    assert gpt_image.DEFAULT_RESPONSES_MODEL in table["OPENAI_RESPONSES_MODEL"][1]
    assert gpt_image.DEFAULT_TOOL_MODEL in table["OPENAI_IMAGE_TOOL_MODEL"][1]
    assert f"`{gpt_image.DEFAULT_TIMEOUT_S:g}`" == table["OPENAI_IMAGE_TIMEOUT"][1]
    assert f"`{gpt_image.DEFAULT_RETRIES}`" == table["OPENAI_IMAGE_RETRIES"][1]
    assert f"0 to {gpt_image.MAX_RETRIES}" in table["OPENAI_IMAGE_RETRIES"][2]


def test_config_dotenv_example_parses_as_documented() -> None:
    blocks = [lines for _, _, lines in fenced_blocks(_read(CONFIG_MD)) if any("export " in x for x in lines)]
    assert len(blocks) == 1
    parsed = {k: v for k, (v, _) in gpt_image.parse_dotenv("\n".join(blocks[0]), "example").items()}
    assert parsed["OPENAI_IMAGE_QUALITY"] == "medium"
    assert parsed["OPENAI_IMAGE_SIZE"] == "1536x1024"
    assert parsed["OPENAI_IMAGE_USER"] == "literal # not a comment, no \\escapes"
    assert parsed["OPENAI_BASE_URL"] == "https://gateway.example/v1"
    assert set(parsed) <= set(gpt_image.CONFIG_KEYS)


@pytest.mark.parametrize("doc", (CONFIG_MD, README), ids=lambda p: p.name)
def test_the_azure_dotenv_example_selects_azure(doc: Path, run_cli: Run, tmp_path: Path) -> None:
    blocks = [lines for lang, _, lines in fenced_blocks(_read(doc)) if lang == "dotenv"]
    assert len(blocks) == 1, f"{doc.name} needs one dotenv block: the Azure example"
    (tmp_path / ".env").write_text("\n".join(blocks[0]) + "\n", "utf-8")
    parsed = gpt_image.parse_dotenv("\n".join(blocks[0]), "example")
    assert set(parsed) <= set(gpt_image.CONFIG_KEYS)
    code, out, err = run_cli(["generations", "--prompt", "x", "--output", "out/x.png", "--dry-run"], tmp_path)
    assert code == 0, err
    shown = json.loads(out)
    endpoint = parsed["AZURE_OPENAI_ENDPOINT"][0]
    version = parsed["AZURE_OPENAI_API_VERSION"][0]
    assert (
        shown["url"] == f"{endpoint}/openai/deployments/gpt-image-2/images/generations?api-version={version}"
    )
    assert shown["headers"]["api-key"] == "***" and "body" in shown and "model" not in shown["body"]
    assert parsed["AZURE_OPENAI_API_KEY"][0] not in out + err


# --- Limits and the model table ------------------------------------------------------------------------------


def number_forms(number: float) -> Set[str]:
    """How a number may be written in the docs: 8294400 as 8,294,400 or 8294400; 120.0 as 120."""
    whole = int(number)
    if whole != number:
        return {f"{number:g}"}
    return {f"{whole:,}", str(whole)}


def test_api_surface_lists_every_model_and_limit() -> None:
    text = _read(API_MD)
    for model in gpt_image.MODELS:
        assert f"`{model}`" in text, model
    for quality in gpt_image.QUALITIES:
        assert quality in text
    for number in (
        gpt_image.FLEX_MAX_EDGE,
        gpt_image.FLEX_MIN_PIXELS,
        gpt_image.FLEX_MAX_PIXELS,
        gpt_image.MAX_PROMPT_CHARS,
        gpt_image.RETRY_AFTER_MAX_S,
    ):
        assert any(form in text for form in number_forms(number)), number
    assert f"1-{gpt_image.MAX_IMAGES} images" in text
    assert f"`--n` {gpt_image.N_MIN}-{gpt_image.N_MAX}" in text
    assert f"`--partial-images` {gpt_image.PARTIALS_MIN}-{gpt_image.PARTIALS_MAX}" in text
    assert (
        f"{gpt_image.MAX_IMAGE_BYTES // 2**20} MB" in text
        and f"{gpt_image.MAX_MASK_BYTES // 2**20} MB" in text
    )
    assert ", ".join(map(str, gpt_image.RETRY_STATUSES[:-1])) + f" and {gpt_image.RETRY_STATUSES[-1]}" in text
    for size in gpt_image.FIXED_SIZES:
        assert size in text


def test_skill_gotchas_match_the_limits() -> None:
    text = " ".join(_read(SKILL_MD).split())
    for number in (gpt_image.FLEX_MAX_EDGE, gpt_image.FLEX_MIN_PIXELS, gpt_image.FLEX_MAX_PIXELS):
        assert any(form in text for form in number_forms(number)), number
    assert f"every {gpt_image.FLEX_STEP}" in text or f"multiples of {gpt_image.FLEX_STEP}" in text
    assert f"`--timeout` {gpt_image.DEFAULT_TIMEOUT_S:g} s" in text
    assert f"`--retries` {gpt_image.DEFAULT_RETRIES}" in text
    # The quoted prices come from the script's own estimate.
    rules = gpt_image.MODELS["gpt-image-2"]
    assert rules.token_factors is not None
    price = gpt_image.TOKEN_PRICES[rules.family][2] / 1_000_000
    for quality, quoted in (("low", "$0.006"), ("medium", "$0.05"), ("high", "$0.21")):
        usd = gpt_image.output_tokens(1024, 1024, rules.token_factors[quality]) * price
        assert abs(usd - float(quoted[1:])) <= 0.005, (quality, usd)
        assert f"{quality} {quoted}" in text


# --- Exit codes and the test command -------------------------------------------------------------------------


@pytest.mark.parametrize("doc", EXAMPLE_DOCS, ids=lambda p: p.name)
def test_exit_code_table_matches_the_script(doc: Path) -> None:
    tables = [t for t in markdown_tables(_read(doc)) if t[0] == ["Exit", "Meaning"]]
    assert len(tables) == 1, f"{doc.name} needs exactly one | Exit | Meaning | table"
    documented = {int(row[0]): row[1] for row in tables[0][1:]}
    assert documented == docstring_exit_codes()
    constants = {value for name, value in vars(gpt_image).items() if name.startswith("EXIT_")}
    assert set(documented) == constants


def test_api_surface_exit_codes_match_the_script() -> None:
    tables = [t for t in markdown_tables(_read(API_MD)) if t[0][:2] == ["Exit", "When"]]
    assert len(tables) == 1
    assert {int(row[0]) for row in tables[0][1:]} == set(docstring_exit_codes())


def test_readme_test_command() -> None:
    text = _read(README)
    blocks = [lines for _, _, lines in fenced_blocks(text)]
    assert [TEST_COMMAND] in [[line.strip() for line in block if line.strip()] for block in blocks]
    assert 'python -m pip install -e ".[dev]"' in text
    pyproject = _read(REPO / "pyproject.toml")
    assert "pytest-xdist" in pyproject  # -n auto needs it
    ci = REPO / ".ci" / "run"
    assert ci.is_file(), ".ci/run is missing"
    runs = [
        line
        for line in _read(ci).splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "echo")) and "-m pytest" in line
    ]
    assert runs, ".ci/run does not run pytest"
    assert all(line.rstrip().endswith(TEST_COMMAND.split("python", 1)[1]) for line in runs), runs


def test_readme_has_the_bench_markers() -> None:
    text = _read(README)
    start, end = text.find("<!-- bench:start -->"), text.find("<!-- bench:end -->")
    assert 0 < start < end
    assert text.count("<!-- bench:start -->") == 1 and text.count("<!-- bench:end -->") == 1


# --- The examples run as written -----------------------------------------------------------------------------


def test_examples_were_found() -> None:
    by_doc = {doc: [e for e in EXAMPLES if e.doc == doc] for doc in EXAMPLE_DOCS}
    for doc, examples in by_doc.items():
        assert len(examples) >= 8, f"{doc.name}: only {len(examples)} example commands found"
        routes = {e.args[0] for e in examples if e.args}
        assert routes >= set(subparsers()), f"{doc.name} lacks an example for {set(subparsers()) - routes}"
        assert any(e.shell == "powershell" for e in examples), f"{doc.name} has no PowerShell example"
    assert any(e.args[0] == "generations" and "--dry-run" in e.args for e in by_doc[README])


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.id)
def test_example_parses(example: Example) -> None:
    if "--help" in example.args or "-h" in example.args:
        with pytest.raises(SystemExit) as exc:
            gpt_image.build_parser().parse_args(example.posix_args)
        assert exc.value.code == 0
        return
    args = gpt_image.build_parser().parse_args(example.posix_args)
    assert args.command in subparsers()


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.id)
def test_example_dry_run_without_a_key(example: Example, run_cli: Run, tmp_path: Path) -> None:
    args = example.posix_args
    if "--help" in args:
        code, out, _ = run_cli(args, tmp_path)
        assert code == 0 and "Exit codes:" in out
        return
    prepare_inputs(args, tmp_path)
    if "--dry-run" not in args:
        args = [*args, "--dry-run"]
    code, out, err = run_cli(args, tmp_path)
    assert code == 0, f"{example.command}\n{err}"
    assert "error:" not in err
    # A batch prints one JSON line per job and a summary line; a single run one object.
    objects = [json.loads(line) for line in out.splitlines()] if "--batch" in args else [json.loads(out)]
    if "--batch" in args:
        summary = objects.pop()
        assert summary["summary"] is True and summary["jobs"] == len(objects) > 1
    for described in objects:
        assert described["dry_run"] is True and described["command"] == args[0]
        assert described["outputs"]["images"], "no planned output"
    assert not (tmp_path / "out").exists(), "a dry run wrote files"


_ROUTE_PATHS = {
    "generations": "/v1/images/generations",
    "edits": "/v1/images/edits",
    "responses": "/v1/responses",
}


@pytest.mark.parametrize(
    "example",
    [e for e in EXAMPLES if "--help" not in e.args and "--dry-run" not in e.args],
    ids=lambda e: e.id,
)
def test_example_runs_against_the_fake(example: Example, run_cli: Run, fake: FakeAPI, tmp_path: Path) -> None:
    args = example.posix_args
    prepare_inputs(args, tmp_path)
    code, out, err = run_cli(args, tmp_path, OPENAI_API_KEY=SENTINEL, OPENAI_BASE_URL=fake.base_url)
    assert code == 0, f"{example.command}\n{err}"
    jobs = len((tmp_path / args[args.index("--batch") + 1]).read_text("utf-8").splitlines()) if "--batch" in args else 1
    assert [r.path for r in fake.requests] == [_ROUTE_PATHS[args[0]]] * jobs
    assert SENTINEL not in out + err
    if "--json" in args:
        objects = [json.loads(line) for line in out.splitlines()]
        saved = [image["path"] for obj in objects if isinstance(obj.get("images"), list) for image in obj["images"]]
    else:
        saved = out.split()
    assert saved
    for path in saved:
        assert (tmp_path / path).is_file(), path


def test_readme_quick_start_runs_as_written(skill_copy: Path) -> None:
    # Literally the README's first command, in a fresh copy of the skill, as a separate process with no key.
    command = next(e for e in EXAMPLES if e.doc == README and "--dry-run" in e.args and e.shell == "posix")
    tokens = shlex.split(command.command)
    assert tokens[:2] == ["python3", "scripts/gpt_image.py"]
    result = subprocess.run(
        [sys.executable, *tokens[1:]], cwd=str(skill_copy), env=clean_env(), capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["dry_run"] is True
    assert not (skill_copy / "out").exists()


# --- The documented JSON shapes ------------------------------------------------------------------------------


def _documented_failure_keys(text: str) -> List[str]:
    match = re.search(r'\{"ok": false, "error": \{([^}]*)\}\}', " ".join(text.split()))
    assert match, "no failure envelope documented"
    return re.findall(r'"(\w+)"', match.group(1))


@pytest.mark.parametrize("doc", (SKILL_MD, API_MD), ids=lambda p: p.name)
def test_documented_json_failure_keys(doc: Path, run_cli: Run, tmp_path: Path) -> None:
    args = ["generations", "--prompt", "x", "--output", "o.png", "--size", "1000x1000", "--json"]
    code, out, _ = run_cli(args, tmp_path, OPENAI_API_KEY=SENTINEL)
    assert code == 2
    actual = json.loads(out)
    assert actual["ok"] is False
    assert _documented_failure_keys(_read(doc)) == list(actual["error"])


def test_documented_json_success_and_dry_run_keys(run_cli: Run, fake: FakeAPI, tmp_path: Path) -> None:
    text = _read(API_MD)
    base = ["generations", "--prompt", "A minimal cover image", "--output", "out/cover.png", "--json"]
    env = {"OPENAI_API_KEY": SENTINEL, "OPENAI_BASE_URL": fake.base_url}
    code, out, _ = run_cli(base, tmp_path, **env)
    assert code == 0
    success = json.loads(out)
    for key in success:
        assert f"`{key}`" in text, f"--json key {key} is not documented"
    for key in success["images"][0]:
        assert f"`{key}`" in text, key
    code, out, _ = run_cli([*base[:-1], "--output", "out/other.png", "--dry-run"], tmp_path, **env)
    assert code == 0
    described = json.loads(out)
    for key in list(described) + list(described["outputs"]):
        assert f"`{key}`" in text, f"--dry-run key {key} is not documented"
    skill = _read(SKILL_MD)
    for key in ("images", "usage", "estimated_cost_usd", "request_id", "response_id"):
        assert f'"{key}"' in skill and key in success

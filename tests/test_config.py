"""Configuration: the .env parser, the .env lookup, and precedence (design.md "Configuration").

Precedence is CLI flag > process environment > .env > built-in default, and an empty value counts as
unset. The parser is tested directly (it is a pure function); lookup and precedence are tested through
the real program, in-process and as a subprocess, reading what --dry-run says it would send.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import gpt_image
import pytest
from conftest import SCRIPT, SENTINEL_KEY, Result, assert_one_error, split_hint

#: A value that looks like a real key; it must never be echoed by a config error.
SECRET = "sk-proj-DOTENV-SECRET-9f8e7d6c5b4a"


@pytest.fixture(autouse=True)
def _no_skill_root_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """In-process runs must not read a developer's .env beside the repository's SKILL.md."""
    monkeypatch.setattr(gpt_image, "skill_root", lambda: str(tmp_path / "no-skill-root"))


def parse(text: str) -> Dict[str, str]:
    """parse_dotenv() without the line numbers."""
    return {key: value for key, (value, _line) in gpt_image.parse_dotenv(text, "test.env").items()}


def write_env(folder: Path, text: str, name: str = ".env") -> Path:
    path = folder / name
    path.write_bytes(text.encode("utf-8"))
    return path


def dry_run(cli: Callable[..., Result], *args: str, output: str = "out.png") -> Dict[str, Any]:
    """Run generations --dry-run and return its JSON (asserting exit 0)."""
    result = cli("generations", "--prompt", "a red square", "--output", output, "--dry-run", *args)
    assert result.code == 0, result.err
    described = result.json
    assert isinstance(described, dict), result.out
    return described


def stderr_lines(result: Result) -> List[str]:
    return [line for line in result.err.splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------------
# The .env parser
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("KEY=value", {"KEY": "value"}),
        ("KEY = value", {"KEY": "value"}),
        ("  KEY=value  ", {"KEY": "value"}),
        ("export KEY=value", {"KEY": "value"}),
        ("export\tKEY=value", {"KEY": "value"}),
        ("KEY=a b  c", {"KEY": "a b  c"}),
        ("KEY='single $HOME \\n \"x\" # not a comment'", {"KEY": 'single $HOME \\n "x" # not a comment'}),
        ('KEY="line1\\nline2"', {"KEY": "line1\nline2"}),
        ('KEY="say \\"hi\\""', {"KEY": 'say "hi"'}),
        ('KEY="back\\\\slash"', {"KEY": "back\\slash"}),
        ('KEY="back\\\\n"', {"KEY": "back\\n"}),
        ('KEY="  padded  "', {"KEY": "  padded  "}),
        ('KEY="hash # inside"', {"KEY": "hash # inside"}),
        ('KEY="quoted" # comment', {"KEY": "quoted"}),
        ("KEY='quoted' # comment", {"KEY": "quoted"}),
        ("KEY=value # comment", {"KEY": "value"}),
        ("KEY=value\t# comment", {"KEY": "value"}),
        ("KEY=value#not-a-comment", {"KEY": "value#not-a-comment"}),
        ("KEY=#abc", {"KEY": "#abc"}),
        ("KEY=#abc # comment", {"KEY": "#abc"}),
        ("KEY= # only a comment", {"KEY": ""}),
        ("KEY=", {"KEY": ""}),
        ('KEY=""', {"KEY": ""}),
        ("KEY=''", {"KEY": ""}),
        ("KEY=a=b=c", {"KEY": "a=b=c"}),
        ("KEY=caf\u00e9 \u6771\u4eac", {"KEY": "caf\u00e9 \u6771\u4eac"}),
        ("_under_score9=x", {"_under_score9": "x"}),
        ("# a comment\n\n   \n  # indented comment\nKEY=v\n", {"KEY": "v"}),
        ("", {}),
    ],
)
def test_parser_syntax(text: str, expected: Dict[str, str]) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize("line_end", ["\n", "\r\n", "\r"])
def test_parser_line_ends(line_end: str) -> None:
    text = line_end.join(["# comment", "A=1", "", "export B='two'", 'C="3"', "D=4 # four"]) + line_end
    parsed = gpt_image.parse_dotenv(text, "x.env")
    assert parsed == {"A": ("1", 2), "B": ("two", 4), "C": ("3", 5), "D": ("4", 6)}


def test_parser_mixed_line_ends_and_bom() -> None:
    text = "\ufeffA=1\r\nB=2\rC=3\nD=4"
    assert gpt_image.parse_dotenv(text) == {"A": ("1", 1), "B": ("2", 2), "C": ("3", 3), "D": ("4", 4)}


def test_parser_duplicate_key_last_wins() -> None:
    parsed = gpt_image.parse_dotenv("KEY=first\nOTHER=x\nKEY=second\n")
    assert parsed["KEY"] == ("second", 3)
    assert parsed["OTHER"] == ("x", 2)


@pytest.mark.parametrize(
    "line, what",
    [
        (SECRET, "expected KEY=VALUE"),
        (f"OPENAI_API_KEY {SECRET}", "expected KEY=VALUE"),
        (f"OPENAI_API_KEY: {SECRET}", "expected KEY=VALUE"),
        (f"OPENAI API KEY={SECRET}", "expected KEY=VALUE"),
        (f"1KEY={SECRET}", "expected KEY=VALUE"),
        (f"=={SECRET}", "expected KEY=VALUE"),
        (f'OPENAI_API_KEY="{SECRET}', "malformed value for OPENAI_API_KEY"),
        (f"OPENAI_API_KEY='{SECRET}", "malformed value for OPENAI_API_KEY"),
        (f'OPENAI_API_KEY="{SECRET}" trailing', "malformed value for OPENAI_API_KEY"),
        (f"OPENAI_API_KEY='{SECRET}'x", "malformed value for OPENAI_API_KEY"),
    ],
)
def test_parser_malformed_line_names_line_not_value(line: str, what: str) -> None:
    text = f"# header\nOPENAI_IMAGE_SIZE=1024x1024\n\n{line}\nLATER=1\n"
    with pytest.raises(gpt_image.ConfigError) as caught:
        gpt_image.parse_dotenv(text, "/somewhere/.env")
    error = caught.value
    assert error.exit_code == 3
    assert error.message.startswith("/somewhere/.env:4: ")
    assert what in error.message
    assert SECRET not in str(error) and SECRET not in error.message and SECRET not in error.hint
    assert "9f8e7d" not in error.message  # not even a piece of it


# --------------------------------------------------------------------------------------------------
# .env files through the program
# --------------------------------------------------------------------------------------------------


def test_dotenv_bom_crlf_export_quotes_comments_through_the_cli(
    cli: Callable[..., Result], env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL")
    text = (
        "\ufeff# settings for the image tool\r\n"
        "\r\n"
        "export OPENAI_IMAGE_SIZE=1536x1024 # landscape\r\n"
        "OPENAI_IMAGE_QUALITY='low'\r\n"
        'OPENAI_IMAGE_USER="team \\"a\\" #1"\r\n'
        "OPENAI_BASE_URL=http://127.0.0.1:9/v1 # the local gateway\r\n"
    )
    write_env(env, text)
    described = dry_run(cli)
    assert described["body"] == {
        "model": "gpt-image-2",
        "prompt": "a red square",
        "size": "1536x1024",
        "quality": "low",
        "user": 'team "a" #1',
    }  # no output_format: o.png is png, the API's default, and --format was not given
    assert described["url"] == "http://127.0.0.1:9/v1/images/generations"


def test_dotenv_cr_only_line_ends(cli: Callable[..., Result], env: Path) -> None:
    write_env(env, "OPENAI_IMAGE_SIZE=1024x1536\rOPENAI_IMAGE_QUALITY=medium\r")
    body = dry_run(cli)["body"]
    assert (body["size"], body["quality"]) == ("1024x1536", "medium")


def test_dotenv_key_is_used_and_sent(
    cli: Callable[..., Result], fake: Any, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    write_env(env, f"export OPENAI_API_KEY='{SECRET}'\n")
    result = cli("generations", "--prompt", "p", "--output", "o.png")
    assert result.code == 0, result.err
    assert fake.last.header("Authorization") == f"Bearer {SECRET}"
    assert SECRET not in result.out + result.err


def test_environment_key_beats_dotenv_key(cli: Callable[..., Result], fake: Any, env: Path) -> None:
    write_env(env, f"OPENAI_API_KEY={SECRET}\n")
    assert cli("generations", "--prompt", "p", "--output", "o.png").code == 0
    assert fake.last.header("Authorization") == f"Bearer {SENTINEL_KEY}"


def test_empty_environment_key_falls_back_to_dotenv(
    cli: Callable[..., Result], fake: Any, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "")
    write_env(env, f"OPENAI_API_KEY={SECRET}\n")
    assert cli("generations", "--prompt", "p", "--output", "o.png").code == 0
    assert fake.last.header("Authorization") == f"Bearer {SECRET}"


def test_empty_key_everywhere_is_missing(
    cli: Callable[..., Result], fake: Any, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "")
    write_env(env, "OPENAI_API_KEY=\nOPENAI_API_KEY=''\n")
    result = cli("generations", "--prompt", "p", "--output", "o.png")
    assert result.code == 3
    assert "OPENAI_API_KEY" in stderr_lines(result)[0]
    assert fake.requests == []


@pytest.mark.parametrize(
    "content",
    [
        f"OPENAI_IMAGE_SIZE=1024x1024\nOPENAI_API_KEY {SECRET}\n",
        f'OPENAI_IMAGE_SIZE=1024x1024\nOPENAI_API_KEY="{SECRET}\n',
        f"OPENAI_IMAGE_SIZE=1024x1024\r\nOPENAI_API_KEY='{SECRET}' more\r\n",
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_malformed_dotenv_is_a_config_error(
    cli: Callable[..., Result], fake: Any, env: Path, content: str, as_json: bool
) -> None:
    path = write_env(env, content)
    extra = ["--json"] if as_json else []
    result = cli("generations", "--prompt", "p", "--output", "o.png", *extra)
    assert result.code == 3
    lines = stderr_lines(result)
    assert len(lines) == 1, result.err  # one line: `error: ...`, its hint (if any) inline
    assert lines[0].startswith("error: ") and f"{path}:2" in split_hint(lines[0])[0]
    assert SECRET not in result.out + result.err
    if as_json:
        assert result.json["ok"] is False and result.json["error"]["type"] == "config_error"
    assert fake.requests == []


def test_malformed_dotenv_fails_even_for_dry_run(cli: Callable[..., Result], env: Path) -> None:
    write_env(env, "GOOD=1\nBAD LINE\n")
    result = cli("generations", "--prompt", "p", "--output", "o.png", "--dry-run")
    assert result.code == 3 and ".env:2" in result.err


def test_dotenv_not_utf8_is_a_config_error(cli: Callable[..., Result], fake: Any, env: Path) -> None:
    (env / ".env").write_bytes(b"A=1\nB=2\nOPENAI_API_KEY=sk-\xff\xfesecret\n")
    result = cli("generations", "--prompt", "p", "--output", "o.png")
    assert result.code == 3
    assert ".env:3" in result.err and "UTF-8" in result.err
    assert "secret" not in result.err
    assert fake.requests == []


def test_empty_dotenv_value_counts_as_unset(cli: Callable[..., Result], env: Path) -> None:
    write_env(env, "OPENAI_IMAGE_QUALITY=\nOPENAI_IMAGE_SIZE=''\nOPENAI_IMAGE_MODEL=\"\"\n")
    described = dry_run(cli)
    assert described["body"] == {"model": "gpt-image-2", "prompt": "a red square"}


def test_empty_environment_value_counts_as_unset(
    cli: Callable[..., Result], env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_IMAGE_QUALITY", "")
    monkeypatch.setenv("OPENAI_IMAGE_SIZE", "")
    write_env(env, "OPENAI_IMAGE_QUALITY=low\n")
    body = dry_run(cli)["body"]
    assert body["quality"] == "low"  # the empty environment variable did not hide the .env value
    assert "size" not in body


def test_duplicate_keys_in_dotenv_last_wins(cli: Callable[..., Result], env: Path) -> None:
    path = write_env(env, "OPENAI_IMAGE_QUALITY=low\nOPENAI_IMAGE_QUALITY=high\n")
    assert dry_run(cli)["body"]["quality"] == "high"
    path.write_text("OPENAI_IMAGE_QUALITY=low\nOPENAI_IMAGE_QUALITY=ultra\n", encoding="utf-8")
    result = cli("generations", "--prompt", "p", "--output", "o.png", "--dry-run")
    assert result.code == 3 and f"{path}:2" in result.err


# --------------------------------------------------------------------------------------------------
# Which .env is read
# --------------------------------------------------------------------------------------------------


def test_env_file_flag_is_used_instead_of_dotenv_here(cli: Callable[..., Result], env: Path) -> None:
    write_env(env, "OPENAI_IMAGE_QUALITY=low\nOPENAI_IMAGE_SIZE=1024x1536\n")
    other = write_env(env, "OPENAI_IMAGE_QUALITY=high\n", name="custom.env")
    body = dry_run(cli, "--env-file", str(other))["body"]
    assert body["quality"] == "high"
    assert "size" not in body  # ./.env was not read at all (files are not merged)


def test_env_file_flag_relative_path(cli: Callable[..., Result], env: Path) -> None:
    (env / "conf").mkdir()
    write_env(env / "conf", "OPENAI_IMAGE_QUALITY=medium\n", name="img.env")
    assert dry_run(cli, "--env-file", "conf/img.env")["body"]["quality"] == "medium"


@pytest.mark.parametrize("target", ["missing.env", "folder"])
def test_env_file_must_exist(cli: Callable[..., Result], fake: Any, env: Path, target: str) -> None:
    (env / "folder").mkdir()
    write_env(env, "OPENAI_IMAGE_QUALITY=low\n")  # must not be used as a fallback
    for extra in ([], ["--dry-run"]):
        result = cli("generations", "--prompt", "p", "--output", "o.png", "--env-file", target, *extra)
        assert result.code == 3, result.err
        lines = stderr_lines(result)
        assert len(lines) == 1 and lines[0].startswith("error: --env-file ") and target in lines[0]
    assert fake.requests == []


def test_dotenv_in_parent_folder_is_ignored(
    cli: Callable[..., Result], env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_env(env, "OPENAI_IMAGE_QUALITY=low\nOPENAI_IMAGE_SIZE=1024x1536\n")
    child = env / "project" / "sub"
    child.mkdir(parents=True)
    monkeypatch.chdir(child)
    body = dry_run(cli)["body"]
    assert "quality" not in body and "size" not in body
    # The same file is read when it is in the working directory.
    shutil.copy(env / ".env", child / ".env")
    body = dry_run(cli, output="second.png")["body"]
    assert (body["quality"], body["size"]) == ("low", "1024x1536")


def test_find_dotenv_order(tmp_path: Path) -> None:
    root = tmp_path / "skill"
    work = tmp_path / "work"
    root.mkdir()
    work.mkdir()
    (root / ".env").write_text("A=root\n", encoding="utf-8")
    find = gpt_image.find_dotenv
    # Without SKILL.md the folder is not a skill root, so its .env is not read.
    assert find(None, str(work), str(root)) is None
    (root / "SKILL.md").write_text("---\nname: x\n---\n", encoding="utf-8")
    assert find(None, str(work), str(root)) == str(root / ".env")
    (work / ".env").write_text("A=here\n", encoding="utf-8")
    assert find(None, str(work), str(root)) == str(work / ".env")
    explicit = tmp_path / "x.env"
    explicit.write_text("A=x\n", encoding="utf-8")
    assert find(str(explicit), str(work), str(root)) == str(explicit)
    with pytest.raises(gpt_image.ConfigError):
        find(str(tmp_path / "nope.env"), str(work), str(root))
    # A .env folder is not a .env file.
    (work / ".env").unlink()
    (work / ".env").mkdir()
    assert find(None, str(work), str(root)) == str(root / ".env")


@pytest.fixture
def skill_copy(tmp_path: Path) -> Path:
    """A copy of the skill laid out as installed: <root>/SKILL.md, <root>/scripts/gpt_image.py."""
    root = tmp_path / "installed-skill"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, root / "scripts" / "gpt_image.py")
    (root / "SKILL.md").write_text("---\nname: gpt-image-2\ndescription: test copy\n---\n", encoding="utf-8")
    return root


def run_copy(script: Path, cwd: Path, *args: str, env_overrides: Optional[Dict[str, str]] = None) -> Result:
    child_env = {k: v for k, v in os.environ.items() if not k.upper().startswith("OPENAI_")}
    child_env.update(env_overrides or {})
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=str(cwd),
        env=child_env,
        capture_output=True,
        timeout=60,
    )
    return Result(proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8"))


def test_skill_root_dotenv_lookup_as_subprocess(env: Path, skill_copy: Path) -> None:
    script = skill_copy / "scripts" / "gpt_image.py"
    write_env(
        skill_copy,
        "OPENAI_IMAGE_QUALITY=low\nOPENAI_IMAGE_SIZE=1024x1536\nOPENAI_BASE_URL=http://127.0.0.1:7/root\n",
    )
    parent = env / "parent"
    work = parent / "work"
    work.mkdir(parents=True)
    write_env(parent, "OPENAI_IMAGE_QUALITY=high\nOPENAI_IMAGE_MODEL=gpt-image-1.5\n")  # never read
    args = ("generations", "--prompt", "p", "--output", "o.png", "--dry-run")

    # No ./.env: the skill root's .env (beside SKILL.md) is read; the parent's is not.
    result = run_copy(script, work, *args)
    assert result.code == 0, result.err
    described = json.loads(result.out)
    assert described["url"] == "http://127.0.0.1:7/root/images/generations"
    assert described["body"]["model"] == "gpt-image-2"
    assert (described["body"]["quality"], described["body"]["size"]) == ("low", "1024x1536")

    # ./.env wins, and the skill root's .env is then not read at all.
    write_env(work, "OPENAI_IMAGE_QUALITY=medium\n")
    described = json.loads(run_copy(script, work, *args).out)
    assert described["body"]["quality"] == "medium"
    assert "size" not in described["body"]
    assert described["url"] == "https://api.openai.com/v1/images/generations"

    # --env-file wins over both.
    write_env(env, "OPENAI_IMAGE_QUALITY=high\n", name="chosen.env")
    described = json.loads(run_copy(script, work, *args, "--env-file", str(env / "chosen.env")).out)
    assert described["body"]["quality"] == "high"

    # Without SKILL.md the folder above scripts/ is not a skill root.
    (work / ".env").unlink()
    (skill_copy / "SKILL.md").unlink()
    described = json.loads(run_copy(script, work, *args).out)
    assert "quality" not in described["body"]


# --------------------------------------------------------------------------------------------------
# Precedence: flag > environment > .env > default, as --dry-run shows it
# --------------------------------------------------------------------------------------------------

Getter = Callable[[Dict[str, Any]], Any]


def _body(key: str) -> Getter:
    return lambda d: d["body"].get(key)


# option, flag, env key, (flag value, env value, .env value), default as seen, getter
PRECEDENCE: List[Tuple[str, str, str, Tuple[str, str, str], Any, Getter]] = [
    ("size", "--size", "OPENAI_IMAGE_SIZE", ("1536x1024", "1024x1536", "2048x1152"), None, _body("size")),
    ("quality", "--quality", "OPENAI_IMAGE_QUALITY", ("high", "medium", "low"), None, _body("quality")),
    (
        "model",
        "--model",
        "OPENAI_IMAGE_MODEL",
        ("gpt-image-2.6-sunburst", "gpt-image-2-2026-04-21", "gpt-image-2.5-flare"),
        "gpt-image-2",
        _body("model"),
    ),
    (
        "base_url",
        "--base-url",
        "OPENAI_BASE_URL",
        ("http://127.0.0.1:1/flag", "http://127.0.0.1:2/env", "http://localhost:3/dotenv/"),
        "https://api.openai.com/v1",
        lambda d: d["url"][: -len("/images/generations")],
    ),
    ("timeout", "--timeout", "OPENAI_IMAGE_TIMEOUT", ("12.5", "30", "45"), 600.0, lambda d: d["timeout_s"]),
    ("retries", "--retries", "OPENAI_IMAGE_RETRIES", ("0", "5", "7"), 2, lambda d: d["retries"]),
    (
        "moderation",
        "--moderation",
        "OPENAI_IMAGE_MODERATION",
        ("low", "auto", "low"),
        None,
        _body("moderation"),
    ),
    ("user", "--user", "OPENAI_IMAGE_USER", ("flag-user", "env-user", "dotenv-user"), None, _body("user")),
    (
        "background",
        "--background",
        "OPENAI_IMAGE_BACKGROUND",
        ("opaque", "auto", "opaque"),
        None,
        _body("background"),
    ),
]


def _normalise(option: str, value: str) -> Any:
    if option == "timeout":
        return float(value)
    if option == "retries":
        return int(value)
    if option == "base_url":
        return value.rstrip("/")
    return value


@pytest.mark.parametrize("layers", ["flag+env+dotenv", "env+dotenv", "dotenv", "none", "flag+dotenv", "flag"])
@pytest.mark.parametrize("case", PRECEDENCE, ids=[row[0] for row in PRECEDENCE])
def test_precedence(
    cli: Callable[..., Result],
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: Tuple[str, str, str, Tuple[str, str, str], Any, Getter],
    layers: str,
) -> None:
    option, flag, env_key, (flag_value, env_value, dotenv_value), default, getter = case
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)  # dry runs send nothing anyway
    used = layers.split("+")
    args: List[str] = []
    if "flag" in used:
        args += [flag, flag_value]
    if "env" in used:
        monkeypatch.setenv(env_key, env_value)
    if "dotenv" in used:
        write_env(env, f"# defaults\n{env_key}={dotenv_value}\n")
    expected = default
    for layer, value in (("flag", flag_value), ("env", env_value), ("dotenv", dotenv_value)):
        if layer in used:
            expected = _normalise(option, value)
            break
    assert getter(dry_run(cli, *args)) == expected


def test_configured_format_is_a_default_the_extension_overrides(
    cli: Callable[..., Result], env: Path
) -> None:
    write_env(env, "OPENAI_IMAGE_FORMAT=webp\n")
    assert dry_run(cli, output="a.jpg")["body"]["output_format"] == "jpeg"
    described = dry_run(cli, output="noext")
    assert described["body"]["output_format"] == "webp"
    assert described["outputs"]["images"] == ["noext.webp"]
    # A configured png is the API's default: like a .png extension, it is not sent (only --format is).
    write_env(env, "OPENAI_IMAGE_FORMAT=png\n")
    described = dry_run(cli, output="noext")
    assert "output_format" not in described["body"]
    assert described["outputs"]["images"] == ["noext.png"]
    assert dry_run(cli, "--format", "png", output="noext")["body"]["output_format"] == "png"


def test_configured_compression_applies_to_jpeg_and_webp_only(
    cli: Callable[..., Result], env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_IMAGE_COMPRESSION", "70")
    assert dry_run(cli, output="a.webp")["body"]["output_compression"] == 70
    assert dry_run(cli, output="a.jpg")["body"]["output_compression"] == 70
    assert "output_compression" not in dry_run(cli, output="a.png")["body"]
    assert dry_run(cli, "--compression", "10", output="b.webp")["body"]["output_compression"] == 10


def test_org_and_project_from_dotenv_and_environment(
    cli: Callable[..., Result], env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = dry_run(cli)["headers"]
    assert "OpenAI-Organization" not in headers and "OpenAI-Project" not in headers
    write_env(env, "OPENAI_ORG_ID=org-dotenv\nOPENAI_PROJECT_ID=proj_dotenv\n")
    headers = dry_run(cli)["headers"]
    assert headers["OpenAI-Organization"] == "org-dotenv" and headers["OpenAI-Project"] == "proj_dotenv"
    monkeypatch.setenv("OPENAI_ORG_ID", "org-env")
    headers = dry_run(cli)["headers"]
    assert headers["OpenAI-Organization"] == "org-env" and headers["OpenAI-Project"] == "proj_dotenv"


# --------------------------------------------------------------------------------------------------
# Bad values: exit 3 naming the source when configured, exit 2 when given as a flag
# --------------------------------------------------------------------------------------------------

BAD_VALUES = [
    ("--quality", "OPENAI_IMAGE_QUALITY", "ultra"),
    ("--size", "OPENAI_IMAGE_SIZE", "1000x1000"),
    ("--size", "OPENAI_IMAGE_SIZE", "huge"),
    ("--timeout", "OPENAI_IMAGE_TIMEOUT", "0"),
    ("--timeout", "OPENAI_IMAGE_TIMEOUT", "soon"),
    ("--retries", "OPENAI_IMAGE_RETRIES", "-1"),
    ("--retries", "OPENAI_IMAGE_RETRIES", "many"),
    ("--base-url", "OPENAI_BASE_URL", "ftp://example.invalid"),
    ("--base-url", "OPENAI_BASE_URL", "not a url"),
    ("--compression", "OPENAI_IMAGE_COMPRESSION", "101"),
    ("--compression", "OPENAI_IMAGE_COMPRESSION", "lots"),
    ("--moderation", "OPENAI_IMAGE_MODERATION", "strict"),
    ("--background", "OPENAI_IMAGE_BACKGROUND", "purple"),
    ("--format", "OPENAI_IMAGE_FORMAT", "bmp"),
    ("--quality", "OPENAI_IMAGE_QUALITY", "xhigh"),  # a known quality, but not for gpt-image-2
]


def _one_error(result: Result) -> str:
    """The one stderr line of a failure (and nothing else on stderr); returns it without the hint."""
    assert len(stderr_lines(result)) == 1, result.err
    return assert_one_error(result, result.code)


@pytest.mark.parametrize("flag, key, value", BAD_VALUES, ids=[f"{k}={v}" for _, k, v in BAD_VALUES])
def test_bad_value_in_dotenv_exits_3_naming_file_and_line(
    cli: Callable[..., Result],
    fake: Any,
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    flag: str,
    key: str,
    value: str,
) -> None:
    monkeypatch.delenv(key, raising=False)
    path = write_env(env, f"# line 1\nOPENAI_IMAGE_USER=u\n{key}={value}\n")
    result = cli("generations", "--prompt", "p", "--output", "o.png")
    assert result.code == 3, result.err
    line = _one_error(result)
    assert key in line and f"{path}:3" in line
    assert fake.requests == []


@pytest.mark.parametrize("flag, key, value", BAD_VALUES, ids=[f"{k}={v}" for _, k, v in BAD_VALUES])
def test_bad_value_in_environment_exits_3_naming_variable(
    cli: Callable[..., Result], fake: Any, monkeypatch: pytest.MonkeyPatch, flag: str, key: str, value: str
) -> None:
    monkeypatch.setenv(key, value)
    result = cli("generations", "--prompt", "p", "--output", "o.png")
    assert result.code == 3, result.err
    assert f"environment variable {key}" in _one_error(result)
    assert fake.requests == []


@pytest.mark.parametrize("flag, key, value", BAD_VALUES, ids=[f"{f}={v}" for f, _, v in BAD_VALUES])
def test_bad_flag_value_exits_2(
    cli: Callable[..., Result], fake: Any, flag: str, key: str, value: str
) -> None:
    result = cli("generations", "--prompt", "p", "--output", "o.png", flag, value)
    assert result.code == 2, result.err
    _one_error(result)
    assert fake.requests == []


@pytest.mark.parametrize("flag, key, value", BAD_VALUES, ids=[f"{f}={v}" for f, _, v in BAD_VALUES])
def test_good_flag_hides_bad_configured_value(
    cli: Callable[..., Result], env: Path, monkeypatch: pytest.MonkeyPatch, flag: str, key: str, value: str
) -> None:
    good = {
        "--quality": "high",
        "--size": "1024x1024",
        "--timeout": "30",
        "--retries": "1",
        "--base-url": "http://127.0.0.1:4/v1",
        "--compression": "50",
        "--moderation": "low",
        "--background": "opaque",
        "--format": "png",
    }[flag]
    ext = ".webp" if flag == "--compression" else ".png"
    write_env(env, f"{key}={value}\n")
    dry_run(cli, flag, good, output="first" + ext)
    (env / ".env").unlink()
    monkeypatch.setenv(key, value)
    dry_run(cli, flag, good, output="second" + ext)

"""Model lifecycle (design.md "Pre-flight validation"): shut-down models are refused with the model to use
instead, models about to shut down get a warning, and --allow-retired lets a gateway's old name through.

"Today" is injected by replacing gpt_image.today in-process, so every case runs on the date it names.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional, Tuple

import gpt_image
import pytest
from conftest import Result, assert_one_error, split_hint
from fakeapi import FakeAPI

CLI = Callable[..., Result]
D = datetime.date
PROMPT = "A lighthouse on a cliff at dawn"
REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", REPO / "SKILL.md", *sorted((REPO / "references").glob("*.md"))]


@pytest.fixture(autouse=True)
def _no_skill_root_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(gpt_image, "skill_root", lambda: str(tmp_path / "no-skill-root"))


def on(monkeypatch: pytest.MonkeyPatch, day: datetime.date) -> None:
    """Make the program believe today is `day`."""
    monkeypatch.setattr(gpt_image, "today", lambda: day)


class Case(NamedTuple):
    model: str
    day: datetime.date
    state: str  # live (no warning), retiring (warning), retired (refused)
    replacement: str = ""  # named by the warning or the refusal


# Dates from design.md: gpt-image-1 shut down 2026-10-23; gpt-image-1.5 (and its snapshot), gpt-image-1-mini
# and chatgpt-image-latest 2026-12-01; dall-e-2 and dall-e-3 2026-05-12. The 30-day window is inclusive.
CASES = [
    Case("gpt-image-1.5", D(2026, 10, 1), "live"),
    Case("gpt-image-1.5", D(2026, 10, 31), "live"),  # 31 days before
    Case("gpt-image-1.5", D(2026, 11, 1), "retiring", "gpt-image-2.6-sunburst"),  # 30 days before
    Case("gpt-image-1.5", D(2026, 11, 30), "retiring", "gpt-image-2.6-sunburst"),
    Case("gpt-image-1.5", D(2026, 12, 1), "retired", "gpt-image-2.6-sunburst"),  # on the day
    Case("gpt-image-1.5", D(2027, 6, 1), "retired", "gpt-image-2.6-sunburst"),
    Case("gpt-image-1.5-2025-12-16", D(2026, 11, 20), "retiring", "gpt-image-2.6-sunburst"),
    Case("gpt-image-1.5-2025-12-16", D(2026, 12, 1), "retired", "gpt-image-2.6-sunburst"),
    Case("openai/gpt-image-1.5", D(2026, 12, 2), "retired", "gpt-image-2.6-sunburst"),
    Case("chatgpt-image-latest", D(2026, 11, 15), "retiring", "gpt-image-2.6-sunburst"),
    Case("chatgpt-image-latest", D(2026, 12, 1), "retired", "gpt-image-2.6-sunburst"),
    Case("gpt-image-1-mini", D(2026, 9, 1), "live"),
    Case("gpt-image-1-mini", D(2026, 12, 1), "retired", "gpt-image-2.6-sunburst"),
    Case("gpt-image-1", D(2026, 9, 22), "live"),  # 31 days before
    Case("gpt-image-1", D(2026, 9, 23), "retiring", "gpt-image-2"),
    Case("gpt-image-1", D(2026, 10, 22), "retiring", "gpt-image-2"),
    Case("gpt-image-1", D(2026, 10, 23), "retired", "gpt-image-2"),
    Case("gpt-image-1-2025-04-15", D(2026, 12, 1), "retired", "gpt-image-2"),
    Case("dall-e-3", D(2026, 5, 11), "retiring", "gpt-image-2"),
    Case("dall-e-3", D(2026, 5, 12), "retired", "gpt-image-2"),
    Case("dall-e-2", D(2026, 12, 1), "retired", "gpt-image-2"),
    Case("gpt-image-2", D(2026, 12, 1), "live"),
    Case("gpt-image-2-2026-04-21", D(2030, 1, 1), "live"),
    Case("gpt-image-2.5-flare", D(2026, 12, 1), "live"),
    Case("gpt-image-2.6-flare", D(2026, 12, 1), "live"),
    Case("gpt-image-2.6-sunburst", D(2026, 12, 1), "live"),
    Case("gpt-image-2.6-sunburst-2026-11-04", D(2026, 12, 1), "live"),
    Case("openai/gpt-image-2.6-flare-2026-11-04", D(2026, 12, 1), "live"),
]


def _id(case: Case) -> str:
    return f"{case.model}@{case.day}"


def dry_run(cli: CLI, *args: str, route: str = "generations") -> Result:
    if route == "responses":
        return cli("responses", "--input-text", PROMPT, "--output", "out/a.png", "--dry-run", *args)
    return cli(route, "--prompt", PROMPT, "--output", "out/a.png", "--dry-run", *args)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_lifecycle_on_the_command_line(cli: CLI, monkeypatch: pytest.MonkeyPatch, case: Case) -> None:
    on(monkeypatch, case.day)
    result = dry_run(cli, "--model", case.model)
    if case.state == "retired":
        message = assert_one_error(result, 2, case.model, "shut down", "no longer serves")
        hint = split_hint(result.err.strip().splitlines()[-1])[1]
        assert f"--model {case.replacement}" in hint and "--allow-retired" in hint
        assert "was shut down on 20" in message
        return
    assert result.code == 0, result.err
    warnings = result.json["warnings"]
    if case.state == "retiring":
        (warning,) = [w for w in warnings if "shuts down" in w]
        assert case.model in warning and case.replacement in warning
        assert f"warning: {warning}" in result.err
    else:
        assert not any("shut" in w for w in warnings), warnings
    assert result.json["body"]["model"] == case.model  # sent exactly as written


@pytest.mark.parametrize("case", [c for c in CASES if c.state == "retired"], ids=_id)
def test_allow_retired_sends_it_with_a_warning(
    cli: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch, case: Case
) -> None:
    on(monkeypatch, case.day)
    result = cli(
        "generations", "--prompt", PROMPT, "--output", "out/a.png", "--model", case.model, "--allow-retired"
    )
    assert result.code == 0, result.err
    assert fake.last.json["model"] == case.model
    assert "allow_retired" not in fake.last.json and "allow-retired" not in fake.last.body.decode()
    (warning,) = [line for line in result.err.splitlines() if "shut down" in line]
    assert warning.startswith("warning: ") and "--allow-retired" in warning


def test_the_days_counted_in_the_warning(cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    for day, when in ((D(2026, 11, 30), "(tomorrow)"), (D(2026, 11, 21), "(in 10 days)")):
        on(monkeypatch, day)
        result = dry_run(cli, "--model", "gpt-image-1.5", "--overwrite")
        assert result.code == 0, result.err
        assert any(when in w and "2026-12-01" in w for w in result.json["warnings"]), result.json["warnings"]


def test_the_old_models_own_rules_apply_with_the_override(cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    on(monkeypatch, D(2026, 12, 1))
    refused = dry_run(cli, "--model", "gpt-image-1.5", "--allow-retired", "--size", "2048x2048")
    assert_one_error(refused, 2, "gpt-image-1.5 accepts only", "1024x1024")
    quality = dry_run(cli, "--model", "dall-e-3", "--allow-retired", "--quality", "high")
    assert_one_error(quality, 2, "dall-e-3", "--quality", hint=["drop --quality"])
    dalle_size = dry_run(cli, "--model", "dall-e-3", "--allow-retired", "--size", "1536x1024")
    assert_one_error(dalle_size, 2, "1024x1792", hint=["1792x1024"])
    ok = dry_run(cli, "--model", "dall-e-2", "--allow-retired", "--size", "512x512")
    assert ok.code == 0, ok.err
    assert ok.json["body"]["size"] == "512x512"


def test_override_is_a_no_op_for_a_live_model(cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    on(monkeypatch, D(2026, 12, 1))
    result = dry_run(cli, "--model", "gpt-image-2", "--allow-retired")
    assert result.code == 0, result.err
    assert result.json["warnings"] == []


def test_a_refused_model_sends_nothing(cli: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    on(monkeypatch, D(2026, 12, 1))
    result = cli(
        "generations", "--prompt", PROMPT, "--output", "out/a.png", "--model", "chatgpt-image-latest"
    )
    assert_one_error(result, 2, "chatgpt-image-latest", "2026-12-01")
    assert fake.requests == []
    assert not Path("out").exists()


def test_tool_model_of_responses(cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    on(monkeypatch, D(2026, 12, 1))
    result = dry_run(cli, "--tool-model", "gpt-image-1.5", route="responses")
    assert_one_error(result, 2, "gpt-image-1.5", "shut down", hint=["--tool-model gpt-image-2.6-sunburst"])
    result = dry_run(cli, "--tool-model", "gpt-image-1.5", "--allow-retired", route="responses")
    assert result.code == 0, result.err
    assert result.json["body"]["tools"][0]["model"] == "gpt-image-1.5"


@pytest.mark.parametrize("where", ["environment", "dotenv"])
def test_a_configured_retired_model_is_a_config_error(
    cli: CLI, env: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    on(monkeypatch, D(2026, 12, 1))
    if where == "environment":
        monkeypatch.setenv("OPENAI_IMAGE_MODEL", "gpt-image-1")
    else:
        (env / ".env").write_text("OPENAI_IMAGE_MODEL=gpt-image-1\n", encoding="utf-8")
    result = dry_run(cli)
    assert_one_error(result, 3, "gpt-image-1", "shut down", "OPENAI_IMAGE_MODEL", hint=["gpt-image-2"])
    assert dry_run(cli, "--allow-retired").code == 0


def test_lifecycle_function_is_pure() -> None:
    rules = gpt_image.MODELS["gpt-image-1.5"]
    assert gpt_image.model_lifecycle("x", rules, D(2026, 11, 1))[0] == "retiring"
    assert gpt_image.model_lifecycle("x", rules, D(2026, 12, 1))[0] == "retired"
    assert gpt_image.model_lifecycle("x", gpt_image.MODELS["gpt-image-2"], D(2999, 1, 1)) == ("live", "")


def test_today_is_the_local_date() -> None:
    assert gpt_image.today() == datetime.date.today()


# --- No hint, example or doc recommends a shut-down model ----------------------------------------------------


@pytest.mark.parametrize("day", [D(2026, 12, 1), D(2027, 1, 1)])
def test_every_replacement_is_accepted(cli: CLI, monkeypatch: pytest.MonkeyPatch, day: datetime.date) -> None:
    on(monkeypatch, day)
    for name, rules in gpt_image.MODELS.items():
        if not rules.shutdown:
            continue
        result = dry_run(cli, "--model", rules.replacement, "--overwrite")
        assert result.code == 0, f"{name} -> {rules.replacement}: {result.err}"
        assert result.json["warnings"] == [], f"{name} -> {rules.replacement}"


def test_the_transparency_hint_names_a_model_that_works(cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    on(monkeypatch, D(2026, 12, 1))
    refused = dry_run(cli, "--model", "dall-e-3", "--allow-retired", "--background", "transparent",
                      "--transparency", "native")  # fmt: skip
    hint = split_hint(refused.err.strip().splitlines()[-1])[1]
    found = re.search(r"a model such as (\S+),", hint)
    assert found, hint
    suggested = found.group(1)
    result = dry_run(cli, "--model", suggested, "--background", "transparent")
    assert result.code == 0, result.err
    assert result.json["warnings"] == []


def test_suggestions_skip_models_that_are_shut_down() -> None:
    # On a day when 1.5 was live, it could be suggested for what only it offered; after, never.
    def fits(rules: gpt_image.ModelRules) -> bool:
        return not rules.flexible_sizes

    assert gpt_image.suggest_model(fits, D(2026, 1, 1)) == "gpt-image-1.5"
    assert gpt_image.suggest_model(fits, D(2026, 12, 1)) == gpt_image.DEFAULT_IMAGE_MODEL


_MODEL_ARG_RE = re.compile(r"(?:--model|--tool-model|OPENAI_IMAGE_MODEL=|OPENAI_IMAGE_TOOL_MODEL=)\s*(\S+)")


def recommended_models(text: str) -> List[Tuple[int, str, str]]:
    """(line number, model, line) for each model a doc line passes to the program."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in _MODEL_ARG_RE.finditer(line):
            found.append((number, match.group(1).strip("`'\",.;)"), line))
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_no_doc_passes_a_shut_down_model(doc: Path) -> None:
    day = gpt_image.today()
    offending: List[str] = []
    for number, model, line in recommended_models(doc.read_text(encoding="utf-8")):
        rules: Optional[gpt_image.ModelRules] = gpt_image.rules_for(model)
        retired = rules is not None and gpt_image.model_lifecycle(model, rules, day)[0] == "retired"
        if retired and "--allow-retired" not in line:
            offending.append(f"{doc.name}:{number}: {model}")
    assert not offending, offending


def test_the_doc_scan_finds_what_it_should() -> None:
    found = recommended_models("run `--model gpt-image-1.5 --x`, or OPENAI_IMAGE_TOOL_MODEL=dall-e-3.")
    assert [m for _, m, _ in found] == ["gpt-image-1.5", "dall-e-3"]

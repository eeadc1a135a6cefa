"""The Responses image tool's own usage (design.md "What it prints"; api-facts.md section 9): gateways report it
in `response.tool_usage.image_gen`, apart from the text model's `usage`. When present, --json `usage` carries it
as `image_gen`, sidecars too, and the cost estimate prices it with the tool model's rates; when absent or
partial, nothing is made up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, NamedTuple, Optional

import pytest
from conftest import Result
from fakeapi import RESPONSES_USAGE, SSE, FakeAPI, Reply, responses_body, responses_stream_events

CLI = Callable[..., Result]

# api-facts.md section 7: USD per 1M tokens (text input, image input, image output).
PRICES = {
    "gpt-image-2": (5.00, 8.00, 30.00),
    "gpt-image-2.6": (5.00, 8.00, 30.00),
    "gpt-image-1.5": (5.00, 8.00, 32.00),
}

FULL = {
    "input_tokens": 240,
    "input_tokens_details": {"text_tokens": 40, "image_tokens": 200},
    "output_tokens": 4160,
    "output_tokens_details": {"image_tokens": 4160, "text_tokens": 0},
    "total_tokens": 4400,
}


def usd(family: str, text_in: int, image_in: int, out: int) -> float:
    text_price, image_price, out_price = PRICES[family]
    return (text_in * text_price + image_in * image_price + out * out_price) / 1_000_000


class Case(NamedTuple):
    id: str
    tool_usage: Optional[Dict[str, Any]]  # the response's whole tool_usage object; None: not there
    image_gen: Optional[Dict[str, Any]]  # what --json usage.image_gen must be (None: no such key)
    cost: Optional[float]  # estimated_cost_usd for gpt-image-2


CASES = [
    Case("present", {"image_gen": FULL}, FULL, usd("gpt-image-2", 40, 200, 4160)),
    Case("absent", None, None, None),
    Case("empty-tool-usage", {}, None, None),
    Case("other-tools-only", {"web_search": {"num_requests": 1}}, None, None),
    Case("image-gen-not-an-object", {"image_gen": 12}, None, None),
    Case("partial-output-only", {"image_gen": {"output_tokens": 1756}}, {"output_tokens": 1756}, usd("gpt-image-2", 0, 0, 1756)),
    Case(
        "partial-input-without-details",
        {"image_gen": {"input_tokens": 100, "output_tokens": 196}},
        {"input_tokens": 100, "output_tokens": 196},
        usd("gpt-image-2", 100, 0, 196),  # input without a breakdown is priced as text
    ),
    Case(
        "partial-image-input-only",
        {"image_gen": {"input_tokens": 300, "input_tokens_details": {"image_tokens": 300}, "output_tokens": 10}},
        {"input_tokens": 300, "input_tokens_details": {"image_tokens": 300}, "output_tokens": 10},
        usd("gpt-image-2", 0, 300, 10),
    ),
    Case("partial-total-only", {"image_gen": {"total_tokens": 900}}, {"total_tokens": 900}, None),
    Case("partial-empty-image-gen", {"image_gen": {}}, {}, None),
]  # fmt: skip


def _run(cli: CLI, fake: FakeAPI, case: Case, stream: bool, *extra: str) -> Dict[str, Any]:
    if stream:
        fake.queue(SSE(responses_stream_events(partials=0, tool_usage=case.tool_usage)))
    else:
        fake.queue(Reply(json=responses_body(tool_usage=case.tool_usage)))
    args = ["responses", "--input-text", "a poster", "--output", "out/p.png", "--json", *extra]
    result = cli(*args, *(["--stream"] if stream else []))
    assert result.code == 0, result.err
    obj: Dict[str, Any] = json.loads(result.out)
    return obj


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_tool_usage_in_json_and_cost(cli: CLI, fake: FakeAPI, case: Case, stream: bool) -> None:
    obj = _run(cli, fake, case, stream)
    usage = obj["usage"]
    text_model = {key: value for key, value in usage.items() if key != "image_gen"}
    assert text_model == RESPONSES_USAGE  # the text model's tokens, untouched and apart
    assert usage.get("image_gen") == case.image_gen
    assert ("image_gen" in usage) == (case.image_gen is not None)
    if case.cost is None:
        assert obj["estimated_cost_usd"] is None
    else:
        assert obj["estimated_cost_usd"] == pytest.approx(case.cost, abs=5e-5)


def test_the_tool_models_prices_apply(cli: CLI, fake: FakeAPI) -> None:
    case = CASES[0]
    for model, family in (("gpt-image-2.6-sunburst", "gpt-image-2.6"), ("gpt-image-1.5", "gpt-image-1.5")):
        fake.queue(Reply(json=responses_body(tool_usage=case.tool_usage)))
        args = [
            "responses",
            "--input-text",
            "x",
            "--output",
            f"out/{model}.png",
            "--json",
            "--tool-model",
            model,
        ]
        result = cli(*args, "--allow-retired")
        assert result.code == 0, result.err
        expected = usd(family, 40, 200, 4160)
        assert json.loads(result.out)["estimated_cost_usd"] == pytest.approx(expected, abs=5e-5), model


def test_the_summary_line_keeps_the_two_apart(cli: CLI, fake: FakeAPI) -> None:
    fake.queue(Reply(json=responses_body(tool_usage={"image_gen": FULL})))
    result = cli("responses", "--input-text", "x", "--output", "out/a.png")
    assert result.code == 0, result.err
    (summary,) = [line for line in result.err.splitlines() if line.startswith("done in")]
    assert f"{RESPONSES_USAGE['output_tokens']:,} output tokens (text model)" in summary
    assert "4,160 output tokens (image tool)" in summary
    assert f"about ${usd('gpt-image-2', 40, 200, 4160):.4f} (estimate, image tool only)" in summary

    result = cli(
        "responses", "--input-text", "x", "--output", "out/b.png"
    )  # the fake's default: no tool_usage
    (summary,) = [line for line in result.err.splitlines() if line.startswith("done in")]
    assert "(image tool)" not in summary and "$" not in summary


def test_tool_usage_without_a_usage_block(cli: CLI, fake: FakeAPI) -> None:
    body = responses_body(tool_usage={"image_gen": FULL})
    del body["usage"]
    fake.queue(Reply(json=body))
    result = cli("responses", "--input-text", "x", "--output", "out/a.png", "--json")
    assert result.code == 0, result.err
    obj = json.loads(result.out)
    assert obj["usage"] == {"image_gen": FULL}
    assert obj["estimated_cost_usd"] == pytest.approx(usd("gpt-image-2", 40, 200, 4160), abs=5e-5)


def test_the_sidecar_records_it(cli: CLI, fake: FakeAPI, env: Path) -> None:
    fake.queue(Reply(json=responses_body(tool_usage={"image_gen": FULL})))
    result = cli("responses", "--input-text", "x", "--output", "out/a.png", "--metadata")
    assert result.code == 0, result.err
    record = json.loads((env / "out" / "a.png.json").read_text(encoding="utf-8"))
    assert record["usage"] == {**RESPONSES_USAGE, "image_gen": FULL}


def test_the_images_routes_are_unchanged(cli: CLI, fake: FakeAPI) -> None:
    # The Images API has no tool: its usage is the image model's own, priced as before.
    result = cli("generations", "--prompt", "x", "--output", "out/g.png", "--json")
    obj = json.loads(result.out)
    assert "image_gen" not in obj["usage"] and obj["estimated_cost_usd"] is not None

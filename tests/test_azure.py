"""Azure OpenAI (#15): selection, both surfaces (v1 and classic) on every route, the deployment rules, the
refusals, Azure's errors, and the key, against the fake's Azure paths (tests/fakeapi.py, "Azure").

Every expected URL here is written out by hand from Microsoft's documented paths (api-facts.md section 9),
never computed by the code under test.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import gpt_image as gi
import pytest
from conftest import SENTINEL_KEY, Result, assert_one_error
from fakeapi import SSE, FakeAPI, Recorded, Reply, azure_error_reply, identify

CLI = Callable[..., Result]

VERSION = "2025-04-01-preview"
# The routes' paths on each surface, as Microsoft documents them: (path, query).
PATHS = {
    ("v1", "generations"): ("/openai/v1/images/generations", ""),
    ("v1", "edits"): ("/openai/v1/images/edits", ""),
    ("v1", "responses"): ("/openai/v1/responses", ""),
    ("classic", "generations"): (
        "/openai/deployments/gpt-image-2/images/generations",
        f"api-version={VERSION}",
    ),
    ("classic", "edits"): ("/openai/deployments/gpt-image-2/images/edits", f"api-version={VERSION}"),
    ("classic", "responses"): ("/openai/responses", f"api-version={VERSION}"),
}
SURFACES = {"v1": "azure-v1", "classic": "azure-classic"}


@pytest.fixture
def azure(cli: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> CLI:
    """The CLI configured for the fake's Azure endpoint: AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_API_KEY (the
    sentinel, which the fake requires exactly), no OPENAI_BASE_URL or OPENAI_API_KEY."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", fake.azure_url)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", SENTINEL_KEY)
    fake.azure_api_key = SENTINEL_KEY
    return cli


@pytest.fixture(params=["v1", "classic"])
def surface(request: pytest.FixtureRequest, azure: CLI, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test using this runs on the v1 surface and on the classic one (a dated API version)."""
    if request.param == "classic":
        monkeypatch.setenv("AZURE_OPENAI_API_VERSION", VERSION)
    return str(request.param)


def assert_azure_request(rec: Recorded, surface: str, route: str) -> None:
    """The exact path and query of the surface and route, the key in api-key, nothing OpenAI-only."""
    assert (rec.path, rec.query) == PATHS[surface, route]
    assert rec.surface == SURFACES[surface]
    assert rec.header("api-key") == SENTINEL_KEY
    for absent in ("authorization", "api-version", "openai-organization", "openai-project"):
        assert rec.header(absent) is None, absent


def assert_clean(result: Result, *paths: Path) -> None:
    """Success, and the key nowhere in what was printed or written."""
    assert result.code == 0, result.err
    assert SENTINEL_KEY not in result.out + result.err
    for path in paths:
        assert SENTINEL_KEY.encode() not in path.read_bytes()


def azure_connection(workdir: Path, **environ: str) -> gi.Connection:
    """The connection check_connection makes of this environment (no flags, no .env)."""
    config = gi.load_config(environ, None, cwd=str(workdir), root=str(workdir))
    return gi.check_connection(gi.Settings({}, config), config, [])


def dry_run(result: Result) -> Dict[str, Any]:
    assert result.code == 0, result.err
    assert SENTINEL_KEY not in result.out + result.err
    return json.loads(result.out)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------------------
# Every route on both surfaces, plain and streamed
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_generations(surface: str, stream: bool, azure: CLI, fake: FakeAPI, tmp_path: Path) -> None:
    extra = ["--stream", "--partial-images", "2"] if stream else ["--n", "2"]
    result = azure("generations", "--prompt", "a lighthouse", "--output", "out/light.png", "--json", *extra)
    assert_clean(result)
    (rec,) = fake.requests
    assert_azure_request(rec, surface, "generations")
    expected: Dict[str, Any] = {"prompt": "a lighthouse"}
    expected.update({"stream": True, "partial_images": 2} if stream else {"n": 2})
    if surface == "v1":
        expected["model"] = "gpt-image-2"  # the deployment; on classic URLs it is in the path instead
    assert rec.json == expected
    assert rec.header("accept") == ("text/event-stream" if stream else "application/json")
    report = result.json
    assert report["ok"] and report["model"] == "gpt-image-2"
    finals = [Path(image["path"]) for image in report["images"]]
    assert [identify(p.read_bytes()) for p in finals] == [("final", i) for i in range(len(finals))]
    assert len(finals) == (1 if stream else 2)
    if stream:
        assert [identify(Path(p["path"]).read_bytes()) for p in report["partials"]] == [
            ("partial", 0),
            ("partial", 1),
        ]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_multipart_edits(
    surface: str, stream: bool, azure: CLI, fake: FakeAPI, images_dir: Path, tmp_path: Path
) -> None:
    args = ["edits", "--prompt", "make it dusk", "--output", "out/dusk.png", "--quality", "low"]
    args += ["--image", str(images_dir / "subject.png"), "--image", str(images_dir / "background.png")]
    args += ["--mask", str(images_dir / "mask.png")]
    result = azure(*args, *(["--stream"] if stream else []))
    assert_clean(result)
    (rec,) = fake.requests
    assert_azure_request(rec, surface, "edits")
    assert rec.is_multipart and not rec.multipart_defects
    expected = {"prompt": "make it dusk", "quality": "low", **({"stream": "true"} if stream else {})}
    if surface == "v1":
        expected["model"] = "gpt-image-2"
    assert rec.fields == expected
    assert [p.filename for p in rec.files("image[]")] == ["subject.png", "background.png"]
    assert [p.filename for p in rec.files("mask")] == ["mask.png"]
    assert identify((tmp_path / "out" / "dusk.png").read_bytes()) == ("final", 0)


def test_json_edits(surface: str, azure: CLI, fake: FakeAPI, images_dir: Path, tmp_path: Path) -> None:
    result = azure(
        "edits",
        "--prompt",
        "put it on a beach",
        "--image",
        str(images_dir / "product.png"),
        "--image-url",
        "https://images.example.com/beach.png",
        "--output",
        "out/beach.jpg",
    )
    assert_clean(result)
    (rec,) = fake.requests
    assert_azure_request(rec, surface, "edits")
    assert rec.content_type == "application/json"
    body = dict(rec.json)
    assert [ref.kind for ref in rec.json_images()] == ["data_url", "url"]
    assert rec.json_images()[0].data == (images_dir / "product.png").read_bytes()
    del body["images"]
    assert body == {
        "prompt": "put it on a beach",
        "output_format": "jpeg",
        **({"model": "gpt-image-2"} if surface == "v1" else {}),
    }
    assert identify((tmp_path / "out" / "beach.jpg").read_bytes()) == ("final", 0)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_responses(surface: str, stream: bool, azure: CLI, fake: FakeAPI, tmp_path: Path) -> None:
    extra = ["--stream", "--partial-images", "1"] if stream else []
    result = azure(
        "responses", "--input-text", "a summit poster", "--output", "out/poster.png", "--json", *extra
    )
    assert_clean(result)
    (rec,) = fake.requests
    assert_azure_request(rec, surface, "responses")
    # The tool's deployment rides in Azure's header; the text model's deployment stays in the body on both.
    assert rec.header("x-ms-oai-image-generation-deployment") == "gpt-image-2"
    assert rec.json["model"] == "gpt-5.4" and rec.deployment == "gpt-5.4"
    assert rec.json["tools"] == [
        {"type": "image_generation", "model": "gpt-image-2", **({"partial_images": 1} if stream else {})}
    ]
    assert rec.json.get("stream") is (True if stream else None)
    report = result.json
    assert (report["model"], report["image_model"]) == ("gpt-5.4", "gpt-image-2")
    assert identify((tmp_path / "out" / "poster.png").read_bytes()) == ("final", 0)
    assert len(report["partials"]) == (1 if stream else 0)


def test_a_batch_runs_on_azure(surface: str, azure: CLI, fake: FakeAPI, tmp_path: Path) -> None:
    (tmp_path / "jobs.jsonl").write_text('a red kite\n{"id": "blue", "prompt": "a blue kite"}\n', "utf-8")
    result = azure("generations", "--batch", "jobs.jsonl", "--output", "kites/{job}.png", "--jobs", "2")
    assert_clean(result)
    assert sorted(result.lines) == ["kites/1.png", "kites/blue.png"]
    for rec in fake.requests:
        assert_azure_request(rec, surface, "generations")


def test_the_json_report_keeps_its_shape(azure: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    on_azure = azure("generations", "--prompt", "x", "--output", "a.png", "--json").json
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL_KEY)
    on_openai = azure("generations", "--prompt", "x", "--output", "b.png", "--json").json
    assert fake.requests[1].path == "/v1/images/generations"
    assert list(on_azure) == list(on_openai) and on_azure["ok"] is True


# --------------------------------------------------------------------------------------------------------
# --dry-run: the Azure URL and api-key: ***
# --------------------------------------------------------------------------------------------------------


def test_dry_run_shows_the_azure_request(surface: str, azure: CLI, fake: FakeAPI, images_dir: Path) -> None:
    shown = dry_run(azure("generations", "--prompt", "x", "--output", "x.png", "--dry-run"))
    path, query = PATHS[surface, "generations"]
    assert shown["url"] == fake.azure_url + path + (f"?{query}" if query else "")
    assert shown["headers"]["api-key"] == "***" and "Authorization" not in shown["headers"]
    assert shown["body"] == ({"model": "gpt-image-2", "prompt": "x"} if surface == "v1" else {"prompt": "x"})
    assert shown["timeout_s"] >= 300  # no short fixed timeout on Azure either
    edit = ["edits", "--prompt", "x", "--image", str(images_dir / "subject.png"), "--output", "e.png"]
    parts = dry_run(azure(*edit, "--dry-run"))["parts"]
    assert [p["name"] for p in parts] == (["model"] if surface == "v1" else []) + ["prompt", "image"]
    shown = dry_run(azure("responses", "--input-text", "x", "--output", "r.png", "--dry-run"))
    assert shown["headers"]["x-ms-oai-image-generation-deployment"] == "gpt-image-2"
    assert fake.requests == []


def test_dry_run_without_a_key_names_the_azure_key(azure: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    shown = dry_run(azure("generations", "--prompt", "x", "--output", "x.png", "--dry-run"))
    assert shown["headers"]["api-key"] == "*** (AZURE_OPENAI_API_KEY is not set)"


@pytest.mark.parametrize(
    "base_url, sent_to",
    [
        ("https://res.openai.azure.com", "https://res.openai.azure.com/openai/v1/images/generations"),
        (
            "https://res.openai.azure.com/openai/v1/",
            "https://res.openai.azure.com/openai/v1/images/generations",
        ),
        (
            "https://RES.services.ai.azure.com/openai",
            "https://RES.services.ai.azure.com/openai/v1/images/generations",
        ),
        (
            "https://res.cognitiveservices.azure.com/",
            "https://res.cognitiveservices.azure.com/openai/v1/images/generations",
        ),
        # A pasted deployment URL: the resource is what counts; the deployment comes from --model.
        (
            "https://res.openai.azure.com/openai/deployments/old/images/generations?api-version=2024-02-01",
            "https://res.openai.azure.com/openai/v1/images/generations",
        ),
    ],
)
@pytest.mark.parametrize("source", ["flag", "env"])
def test_an_azure_host_in_the_base_url_selects_azure(
    base_url: str, sent_to: str, source: str, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["generations", "--prompt", "x", "--output", "x.png", "--dry-run"]
    if source == "flag":
        args += ["--base-url", base_url]
    else:
        monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    shown = dry_run(cli(*args))
    assert shown["url"] == sent_to
    # No Azure key is set, so the OpenAI key is the one sent, as api-key.
    assert shown["headers"]["api-key"] == "***" and "Authorization" not in shown["headers"]


@pytest.mark.parametrize(
    "base_url",
    ["https://openai.azure.com.example.net/v1", "https://notazure.com/v1", "https://gateway.example/v1"],
)
def test_other_hosts_stay_openai(base_url: str, cli: CLI) -> None:
    shown = dry_run(
        cli("generations", "--prompt", "x", "--output", "x.png", "--dry-run", "--base-url", base_url)
    )
    assert shown["url"] == base_url + "/images/generations"
    assert shown["headers"]["Authorization"] == "Bearer ***" and "api-key" not in shown["headers"]


def test_the_base_url_flag_beats_the_azure_endpoint(
    azure: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL_KEY)
    result = azure("generations", "--prompt", "x", "--output", "x.png", "--base-url", fake.base_url)
    assert_clean(result)
    rec = fake.last
    assert (rec.path, rec.surface) == ("/v1/images/generations", "openai")
    assert rec.header("authorization") == f"Bearer {SENTINEL_KEY}" and rec.header("api-key") is None


def test_the_azure_endpoint_beats_openai_base_url_with_a_warning(
    azure: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    result = azure("generations", "--prompt", "x", "--output", "x.png")
    assert_clean(result)
    assert fake.last.path == "/openai/v1/images/generations"
    assert "OPENAI_BASE_URL is ignored" in result.err and "AZURE_OPENAI_ENDPOINT" in result.err


def test_everything_from_a_dotenv_file(
    azure: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake.true_size = True  # the image is the size asked for: no warning of any kind is expected
    for name in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(name)
    (tmp_path / ".env").write_text(
        f"AZURE_OPENAI_ENDPOINT={fake.azure_url}/\n"
        f"AZURE_OPENAI_API_KEY='{SENTINEL_KEY}'\n"
        f"export AZURE_OPENAI_API_VERSION={VERSION}   # the classic URLs\n"
        "AZURE_OPENAI_DEPLOYMENT_MODEL=gpt-image-2\n",
        "utf-8",
    )
    fake.azure_deployments["images-prod"] = "gpt-image-2"
    result = azure(
        "generations", "--prompt", "x", "--output", "x.png", "--model", "images-prod", "--size", "1536x1024"
    )
    assert_clean(result)
    assert "warning" not in result.err
    rec = fake.last
    assert (rec.path, rec.query, rec.deployment) == (
        "/openai/deployments/images-prod/images/generations",
        f"api-version={VERSION}",
        "images-prod",
    )
    assert rec.json == {"prompt": "x", "size": "1536x1024"}


# --------------------------------------------------------------------------------------------------------
# API versions
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["preview", "latest"])
def test_an_undated_version_stays_on_v1_in_the_query(
    version: str, azure: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_VERSION", version)
    assert_clean(azure("generations", "--prompt", "x", "--output", "x.png"))
    rec = fake.last
    assert (rec.path, rec.query, rec.api_version) == (
        "/openai/v1/images/generations",
        f"api-version={version}",
        version,
    )
    assert rec.json["model"] == "gpt-image-2" and rec.header("api-version") is None


@pytest.mark.parametrize("version", ["2025-04-01-previewx", "v2", "2025/04/01", "01-04-2025"])
def test_a_bad_api_version_is_a_config_error(
    version: str, azure: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_VERSION", version)
    result = azure("generations", "--prompt", "x", "--output", "x.png")
    assert_one_error(result, 3, "AZURE_OPENAI_API_VERSION", "environment variable", hint=["dated version"])
    assert fake.requests == []


def test_batch_api_urls_on_both_surfaces(env: Path) -> None:
    """The Batch API (#13) will send /files and /batches through the same connection: both surfaces work for
    any endpoint, with the query merged."""
    v1 = azure_connection(env, AZURE_OPENAI_ENDPOINT="https://res.openai.azure.com")
    classic = azure_connection(
        env, AZURE_OPENAI_ENDPOINT="https://res.openai.azure.com", AZURE_OPENAI_API_VERSION=VERSION
    )
    root = "https://res.openai.azure.com/openai"
    cases = {
        "/files": (f"{root}/v1/files", f"{root}/files?api-version={VERSION}"),
        "/files?purpose=batch": (
            f"{root}/v1/files?purpose=batch",
            f"{root}/files?purpose=batch&api-version={VERSION}",
        ),
        "/files/file-1/content": (
            f"{root}/v1/files/file-1/content",
            f"{root}/files/file-1/content?api-version={VERSION}",
        ),
        "/batches": (f"{root}/v1/batches", f"{root}/batches?api-version={VERSION}"),
        "/batches/batch_1/cancel": (
            f"{root}/v1/batches/batch_1/cancel",
            f"{root}/batches/batch_1/cancel?api-version={VERSION}",
        ),
    }
    for endpoint, (on_v1, on_classic) in cases.items():
        assert (v1.url(endpoint), classic.url(endpoint)) == (on_v1, on_classic), endpoint
    assert classic.url("/images/edits", "img prod") == (
        f"{root}/deployments/img%20prod/images/edits?api-version={VERSION}"
    )
    openai = azure_connection(env, OPENAI_BASE_URL="https://api.openai.com/v1")
    assert openai.url("/files?purpose=batch") == "https://api.openai.com/v1/files?purpose=batch"


# --------------------------------------------------------------------------------------------------------
# The SDK's AzureOpenAI client as a second opinion on the classic surface
# --------------------------------------------------------------------------------------------------------


@pytest.fixture
def azure_sdk(fake: FakeAPI) -> Iterator[Any]:
    openai = pytest.importorskip("openai", reason="the official SDK is a dev dependency")
    client = openai.AzureOpenAI(
        api_key=SENTINEL_KEY, azure_endpoint=fake.azure_url, api_version=VERSION, max_retries=0
    )
    with client:
        yield client


def test_the_classic_urls_match_the_sdk(
    azure: CLI,
    azure_sdk: Any,
    fake: FakeAPI,
    monkeypatch: pytest.MonkeyPatch,
    images_dir: Path,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_VERSION", VERSION)
    png = (images_dir / "subject.png").read_bytes()
    calls: List[Any] = [
        (lambda: azure_sdk.images.generate(model="gpt-image-2", prompt="x"), ["generations"]),
        (
            lambda: azure_sdk.images.edit(model="gpt-image-2", prompt="x", image=("s.png", png, "image/png")),
            ["edits", "--image", str(images_dir / "subject.png")],
        ),
        (
            lambda: azure_sdk.responses.create(
                model="gpt-5.4",
                input="x",
                tools=[{"type": "image_generation", "model": "gpt-image-2"}],
                extra_headers={"x-ms-oai-image-generation-deployment": "gpt-image-2"},
            ),
            ["responses"],
        ),
    ]
    for index, (sdk_call, args) in enumerate(calls):
        sdk_call()
        theirs = fake.last
        prompt = ["--input-text", "x"] if args[0] == "responses" else ["--prompt", "x"]
        assert_clean(azure(*args, *prompt, "--output", f"o{index}.png"))
        ours = fake.last
        assert (ours.path, ours.query_params) == (theirs.path, theirs.query_params)
        for header in ("api-key", "x-ms-oai-image-generation-deployment", "authorization"):
            assert ours.header(header) == theirs.header(header), header
    # The Batch API's upload, where #13 will send it.
    azure_sdk.files.create(file=("jobs.jsonl", b'{"custom_id": "a"}\n'), purpose="batch")
    classic = azure_connection(
        tmp_path, AZURE_OPENAI_ENDPOINT=fake.azure_url, AZURE_OPENAI_API_VERSION=VERSION
    )
    assert classic.url("/files") == f"{fake.azure_url}{fake.last.path}?{fake.last.query}"


# --------------------------------------------------------------------------------------------------------
# Deployments and the model's rules
# --------------------------------------------------------------------------------------------------------


# gpt-image-2 refuses a transparent background (a preview) where gpt-image-2.5-flare takes it, and the
# gpt-image-2 sizes are multiples of 16: rules that tell which model's checks ran.
TRANSPARENT = ["--prompt", "x", "--output", "x.png", "--background", "transparent"]


def test_a_deployment_named_after_a_model_gets_its_rules(azure: CLI, fake: FakeAPI) -> None:
    refused = azure("generations", *TRANSPARENT, "--model", "gpt-image-2", "--output", "x.webp")
    assert_one_error(refused, 2, "the key route", "webp")  # gpt-image-2's rules: the key route, PNG only
    assert fake.requests == []
    fake.azure_deployments["gpt-image-2.5-flare"] = "gpt-image-2.5-flare"
    result = azure("generations", *TRANSPARENT, "--model", "gpt-image-2.5-flare")
    assert_clean(result)
    assert "warning" not in result.err
    rec = fake.last
    assert (rec.path, rec.json["model"], rec.json["background"]) == (
        "/openai/v1/images/generations",
        "gpt-image-2.5-flare",
        "transparent",
    )


def test_deployment_model_names_the_model_another_deployment_serves(
    azure: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.azure_deployments["images-prod"] = "gpt-image-2.5-flare"
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_MODEL", "gpt-image-2.5-flare")
    refused = azure(
        "generations", "--prompt", "x", "--output", "x.png", "--model", "images-prod", "--size", "1000x1000"
    )
    assert_one_error(refused, 2, "1000x1000", "images-prod", "multiples of 16", hint=["992x992"])
    assert fake.requests == []
    result = azure("generations", *TRANSPARENT, "--model", "images-prod")
    assert_clean(result)
    assert "warning" not in result.err
    assert fake.last.json == {"model": "images-prod", "prompt": "x", "background": "transparent"}
    # A deployment named after a known model keeps that model's rules, whatever the key says.
    named = azure("generations", *TRANSPARENT, "--model", "gpt-image-2", "--output", "x.webp")
    assert_one_error(named, 2, "the key route", "webp")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_MODEL", "gpt-image-2")
    assert_one_error(
        azure("generations", *TRANSPARENT, "--model", "images-prod", "--output", "x.webp"), 2, "the key route"
    )
    assert len(fake.requests) == 1


def test_an_unknown_deployment_gets_the_gateway_rule(
    azure: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.azure_deployments["images-prod"] = "gpt-image-2"
    result = azure(
        "generations", "--prompt", "x", "--output", "x.png", "--model", "images-prod", "--size", "1000x1000"
    )
    assert_clean(result)
    assert "deployment images-prod" in result.err and "AZURE_OPENAI_DEPLOYMENT_MODEL" in result.err
    assert fake.last.json["size"] == "1000x1000"  # generic checks only: sent as asked
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_MODEL", "gpt-image-9")
    result = azure("generations", "--prompt", "x", "--output", "y.png", "--model", "images-prod")
    assert_clean(result)
    assert "gpt-image-9" in result.err and "does not know" in result.err


def test_the_served_model_s_lifecycle_applies(
    azure: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployment serving a shut-down model is refused like the model, and --allow-retired sends it."""
    monkeypatch.setattr(gi, "today", lambda: datetime.date(2027, 1, 1))
    fake.azure_deployments["images-old"] = "gpt-image-1"
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT_MODEL", "gpt-image-1")
    args = ["generations", "--prompt", "x", "--output", "x.png", "--model", "images-old"]
    assert_one_error(azure(*args), 2, "images-old", "shut down", hint=["--allow-retired"])
    assert fake.requests == []
    result = azure(*args, "--allow-retired")
    assert_clean(result)
    assert "sent anyway" in result.err and fake.last.json["model"] == "images-old"


def test_a_deployment_name_that_cannot_travel_is_refused(azure: CLI, fake: FakeAPI) -> None:
    result = azure("responses", "--input-text", "x", "--output", "x.png", "--tool-model", "my\r\nimages")
    assert_one_error(result, 2, "deployment name")
    assert fake.requests == []


# --------------------------------------------------------------------------------------------------------
# Refusals before sending: webp
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["generations", "--output", "x.webp"],
        ["generations", "--output", "x", "--format", "webp"],
        ["responses", "--output", "poster.webp"],
        ["generations", "--output", "x.webp", "--compression", "80"],
    ],
    ids=["extension", "format", "responses", "compression"],
)
def test_webp_is_refused_before_sending(surface: str, args: List[str], azure: CLI, fake: FakeAPI) -> None:
    result = azure(*args, "--prompt", "x")
    assert_one_error(result, 2, "Azure OpenAI", "webp", hint=[".png", ".jpg"])
    assert fake.requests == []


def test_a_configured_webp_format_is_a_config_error(
    azure: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_IMAGE_FORMAT", "webp")
    result = azure("generations", "--prompt", "x", "--output", "noext")
    assert_one_error(result, 3, "webp", "OPENAI_IMAGE_FORMAT")
    assert fake.requests == []
    assert_clean(azure("generations", "--prompt", "x", "--output", "x.jpg"))  # an extension wins over the key
    assert fake.last.json["output_format"] == "jpeg"


def test_webp_still_works_on_openai(cli: CLI, fake: FakeAPI) -> None:
    assert_clean(cli("generations", "--prompt", "x", "--output", "x.webp"))
    assert fake.last.json["output_format"] == "webp"


# --------------------------------------------------------------------------------------------------------
# Azure's errors
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["generations", "responses"])
def test_the_content_filter_is_exit_4_with_its_hint(
    surface: str, route: str, azure: CLI, fake: FakeAPI
) -> None:
    fake.markers = True
    text = (
        ["--prompt", "a battle [[filter]]"]
        if route == "generations"
        else ["--input-text", "a battle [[filter]]"]
    )
    result = azure(route, *text, "--output", "x.png", "--json")
    assert_one_error(result, 4, "400", "contentFilter", "safety system", hint=["content filter", "violence"])
    error = result.json["error"]
    assert (error["status"], error["code"], error["param"]) == (400, "contentFilter", "prompt")
    assert len(fake.requests) == 1  # a 400 is never retried


def test_a_content_filter_event_in_a_stream(azure: CLI, fake: FakeAPI) -> None:
    fake.queue(
        SSE(
            [
                {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}},
                {
                    "type": "error",
                    "code": "content_filter",
                    "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
                    "param": None,
                },
            ]
        )
    )
    result = azure("responses", "--input-text", "x", "--output", "x.png", "--stream")
    assert_one_error(result, 4, "content_filter", "filtered", hint=["content filter"])


@pytest.mark.parametrize("route", ["generations", "edits", "responses"])
def test_an_unknown_deployment_says_check_the_name_and_version(
    surface: str, route: str, azure: CLI, fake: FakeAPI, images_dir: Path
) -> None:
    args = {
        "generations": ["--prompt", "x", "--model", "gpt-image-3"],
        "edits": ["--prompt", "x", "--model", "gpt-image-3", "--image", str(images_dir / "subject.png")],
        "responses": ["--input-text", "x", "--tool-model", "gpt-image-3"],
    }[route]
    result = azure(route, *args, "--output", "x.png")
    message = assert_one_error(
        result, 4, "404", "DeploymentNotFound", hint=["deployment name", "API version"]
    )
    assert "does not exist" in message
    rec = fake.last
    if surface == "classic" and route != "responses":
        assert rec.path == f"/openai/deployments/gpt-image-3/images/{route}"


def test_a_rejected_key_points_at_the_azure_key(azure: CLI, fake: FakeAPI) -> None:
    fake.azure_api_key = "another-key"
    result = azure("generations", "--prompt", "x", "--output", "x.png")
    message = assert_one_error(result, 4, "401", "invalid subscription key", hint=["AZURE_OPENAI_API_KEY"])
    assert "(401)" not in message  # Azure's code is the status again: said once


def test_an_unwrapped_gateway_error_is_read(azure: CLI, fake: FakeAPI) -> None:
    fake.queue(
        Reply(status=401, json={"statusCode": 401, "message": "Unauthorized. Access token is missing."})
    )
    result = azure("generations", "--prompt", "x", "--output", "x.png", "--json")
    assert_one_error(result, 4, "Unauthorized. Access token is missing.", hint=["AZURE_OPENAI_API_KEY"])
    assert result.json["error"]["status"] == 401


def test_openai_hints_are_unchanged(cli: CLI, fake: FakeAPI) -> None:
    fake.queue(Reply(status=404, json={"error": {"message": "no such model", "code": "model_not_found"}}))
    result = cli("generations", "--prompt", "x", "--output", "x.png")
    assert_one_error(result, 4, "model_not_found", hint=["model name", "--base-url"])


# --------------------------------------------------------------------------------------------------------
# The key: which one, where it goes, and that it is never shown
# --------------------------------------------------------------------------------------------------------


def test_the_azure_key_wins_over_the_openai_key(
    azure: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-other-0123456789")
    assert_clean(azure("generations", "--prompt", "x", "--output", "x.png"))
    assert fake.last.header("api-key") == SENTINEL_KEY


def test_an_azure_key_in_dotenv_still_beats_an_openai_key_in_the_environment(
    azure: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-other-0123456789")
    (tmp_path / ".env").write_text(f"AZURE_OPENAI_API_KEY={SENTINEL_KEY}\n", "utf-8")
    assert_clean(azure("generations", "--prompt", "x", "--output", "x.png"))
    assert fake.last.header("api-key") == SENTINEL_KEY


def test_the_openai_key_is_the_fallback(azure: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL_KEY)
    assert_clean(azure("generations", "--prompt", "x", "--output", "x.png"))
    assert fake.last.header("api-key") == SENTINEL_KEY and fake.last.header("authorization") is None


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_no_key_names_the_azure_key(
    batch: bool, azure: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    if batch:
        (tmp_path / "jobs.txt").write_text("a\nb\n", "utf-8")
        args = ["generations", "--output", "out/{job}.png", "--batch", "jobs.txt"]
    else:
        args = ["generations", "--output", "out/x.png", "--prompt", "x"]
    result = azure(*args)
    assert_one_error(
        result, 3, "AZURE_OPENAI_API_KEY is not set", hint=["AZURE_OPENAI_API_KEY", "OPENAI_API_KEY"]
    )
    assert fake.requests == []


def test_a_key_with_a_carriage_return_is_refused(
    azure: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", SENTINEL_KEY + "\r")
    result = azure("generations", "--prompt", "x", "--output", "x.png")
    assert_one_error(result, 3, "AZURE_OPENAI_API_KEY", "HTTP header")
    assert fake.requests == []


def test_the_key_is_never_shown(azure: CLI, fake: FakeAPI, tmp_path: Path) -> None:
    """An error that echoes the key, saved raw, printed as JSON, in a sidecar: *** everywhere."""
    echoed = f"Access denied for key {SENTINEL_KEY} (also {json.dumps(SENTINEL_KEY)})"
    fake.queue(azure_error_reply(401, "401", echoed))
    failed = azure(
        "generations", "--prompt", "x", "--output", "x.png", "--json", "--save-response", "raw.json"
    )
    assert_one_error(failed, 4, "Access denied for key ***")
    assert json.loads(failed.out)["error"]["message"].count("***") == 2
    raw = (tmp_path / "raw.json").read_bytes()
    assert SENTINEL_KEY.encode() not in raw and raw.count(b"***") == 2
    ok = azure(
        "generations", "--prompt", "x", "--output", "ok.png", "--metadata", "--save-response", "ok.raw"
    )
    assert_clean(ok, tmp_path / "ok.raw", tmp_path / "ok.png.json")
    assert fake.last.header("api-key") == SENTINEL_KEY  # it was sent, only never shown


def test_the_key_is_not_sent_unencrypted_unannounced(cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "http://res.openai.azure.com")
    result = cli("generations", "--prompt", "x", "--output", "x.png", "--dry-run")
    assert "unencrypted" in result.err and json.loads(result.out)["url"].startswith(
        "http://res.openai.azure.com/openai/v1/"
    )


# --------------------------------------------------------------------------------------------------------
# A provider is one table entry
# --------------------------------------------------------------------------------------------------------


def test_a_third_provider_is_one_table_entry(
    cli: CLI, fake: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A made-up gateway that signs with x-api-key and puts the model in the path: one Provider in PROVIDERS,
    and every route, the dry run and the key handling follow."""

    def build_url(root: str, endpoint: str, deployment: Optional[str], version: Optional[str]) -> Any:
        return (f"{root}{endpoint}?model={deployment}", True) if deployment else (root + endpoint, False)

    gateway = gi.Provider(
        name="Gateway",
        key_names=("GATEWAY_KEY",),
        auth_header="x-api-key",
        auth_prefix="",
        build_url=build_url,
        root=lambda url: url,
        endpoint_key="GATEWAY_URL",
        formats=("png",),
        openai_headers=False,
    )
    monkeypatch.setattr(gi, "PROVIDERS", (gateway, *gi.PROVIDERS))
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.setenv("GATEWAY_URL", fake.base_url)
    monkeypatch.setenv("GATEWAY_KEY", SENTINEL_KEY)
    shown = dry_run(cli("generations", "--prompt", "x", "--output", "x.png", "--dry-run"))
    assert shown["url"] == f"{fake.base_url}/images/generations?model=gpt-image-2"
    assert shown["headers"]["x-api-key"] == "***" and shown["body"] == {"prompt": "x"}
    assert_one_error(cli("generations", "--prompt", "x", "--output", "x.jpg"), 2, "Gateway", "jpeg")
    fake.strict = False
    assert_clean(cli("generations", "--prompt", "x", "--output", "x.png"))
    rec = fake.last
    assert (rec.path, rec.query, rec.json) == ("/v1/images/generations", "model=gpt-image-2", {"prompt": "x"})
    assert rec.header("x-api-key") == SENTINEL_KEY and rec.header("authorization") is None

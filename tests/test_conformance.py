"""Wire conformance against references nobody on this project wrote.

1. The official OpenAPI spec (``../shared/openapi/openapi.json`` beside the repository): every request body
   the CLI sends validates against CreateImageRequest, CreateImageEditRequest (the multipart form turned
   into an object) or CreateResponse with the image_generation tool, with no unknown fields and no nulls.
2. The official ``openai`` SDK (a pinned dev dependency) making the same call to the same loopback fake:
   same method and path, same JSON fields and values, same multipart names, filenames, content types and
   file bytes, same headers except the deliberate differences listed below, each with its reason.
3. The SDK as a reader: the same recorded JSON bodies and event streams are fed to both, and both must
   extract the same image bytes.

The spec checks skip (with the reason) when ../shared is absent, as in a user's clone; the SDK checks skip
when the ``openai`` package is not installed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Sequence, Set, Tuple

import pytest
from conftest import REPO, SENTINEL_KEY
from fakeapi import (
    SSE,
    FakeAPI,
    Recorded,
    Reply,
    images_body,
    images_stream_events,
    make_image,
    noise_image,
    partial_color,
    responses_body,
    responses_stream_events,
)

SPEC_PATH = REPO.parent / "shared" / "openapi" / "openapi.json"
SPEC_URI = "urn:openai-openapi"

PROMPT = 'A "quoted" café ☕ poster, line one\nline two & more'
ORG_ID = "org-conformance"
PROJECT_ID = "proj_conformance"

# --------------------------------------------------------------------------------------------------------
# Deliberate differences between the CLI and the official SDK, each with its reason
# --------------------------------------------------------------------------------------------------------

#: Request headers (lower-case) whose values may differ. Every other header must be sent by both, equal.
DELIBERATE_HEADERS: Dict[str, str] = {
    "user-agent": "the CLI names itself and its version (design.md); the SDK says OpenAI/Python <version>",
    "accept": "the CLI asks for text/event-stream when it streams; the SDK always sends application/json "
    "(the API decides by the body's stream flag)",
    "accept-encoding": "the SDK (httpx) offers gzip/deflate; urllib asks for identity and the CLI decodes "
    "the base64 as it arrives, with no decompressor in between",
    "connection": "the SDK keeps a pooled connection alive; the CLI makes one request per run and closes it",
    "content-length": "JSON whitespace and the multipart boundary differ; each side's length is checked "
    "against its own body instead",
}
#: Header name prefixes only the SDK sends.
DELIBERATE_HEADER_PREFIXES: Dict[str, str] = {
    "x-stainless-": "SDK telemetry (language, OS, arch, runtime, retry count, read timeout); the CLI "
    "sends none",
}
#: Differences in the body, each with its reason (documentation; the comparisons below encode them).
DELIBERATE_BODY: Dict[str, str] = {
    "content-type boundary": "a random multipart boundary per request; the media types must match",
    "json layout": "key order and whitespace are free in JSON; the parsed bodies must be identical, "
    "types included (1 is not true)",
    "form field order": "multipart text fields are named, so their order carries no meaning; file parts "
    "must come in the same order (the mask applies to the first image)",
    "file part content type": "the CLI takes it from the file's first bytes, the SDK from its name; they "
    "agree for correctly named files (every case here) and differ for misnamed ones, where the API would "
    "reject the SDK's guess (test_content_type_comes_from_the_bytes)",
}


# --------------------------------------------------------------------------------------------------------
# The cases: one CLI command and the SDK call a user would write for the same request
# --------------------------------------------------------------------------------------------------------


def data_url(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def drain(result: Any) -> Any:
    """Consume an SDK stream so the whole exchange completes."""
    if hasattr(result, "__iter__") and not hasattr(result, "model_dump"):
        for _ in result:
            pass
    return result


SdkCall = Callable[[Any, Path, contextlib.ExitStack], Any]


@dataclass(frozen=True)
class Case:
    id: str
    schema: str  # component name in the spec
    cli: Tuple[str, ...]
    sdk: SdkCall


def _open(stack: contextlib.ExitStack, path: Path) -> Any:
    return stack.enter_context(open(path, "rb"))


CASES = [
    Case(
        "generations",
        "CreateImageRequest",
        (
            "generations", "--prompt", PROMPT, "--size", "1536x1024", "--quality", "high", "--n", "2",
            "--compression", "80", "--background", "opaque", "--moderation", "low", "--user", "user-42",
            "--output", "out/gen-{index}.webp",
        ),
        lambda c, refs, st: c.images.generate(
            model="gpt-image-2", prompt=PROMPT, size="1536x1024", quality="high", n=2, output_compression=80,
            background="opaque", moderation="low", user="user-42", output_format="webp",
        ),
    ),
    Case(
        "generations-stream",
        "CreateImageRequest",
        (
            "generations", "--prompt", PROMPT, "--size", "1024x1536", "--quality", "medium", "--stream",
            "--partial-images", "2", "--output", "out/stream.png",
        ),
        lambda c, refs, st: drain(
            c.images.generate(
                model="gpt-image-2", prompt=PROMPT, size="1024x1536", quality="medium", stream=True,
                partial_images=2,  # no output_format: a .png output without --format sends none
            )
        ),
    ),
    Case(
        "edits-one-image",
        "CreateImageEditRequest",
        (
            "edits", "--prompt", PROMPT, "--image", "refs/subject.png", "--size", "1024x1024",
            "--quality", "low", "--n", "2", "--user", "user-42", "--output", "out/edit-{index}.png",
        ),
        lambda c, refs, st: c.images.edit(
            image=_open(st, refs / "subject.png"), prompt=PROMPT, model="gpt-image-2", size="1024x1024",
            quality="low", n=2, user="user-42",  # .png and no --format: output_format not sent
        ),
    ),
    Case(
        "edits-images-and-mask",
        "CreateImageEditRequest",
        (
            "edits", "--prompt", PROMPT, "--image", "refs/subject.png", "--image", "refs/photo.jpg",
            "--image", "refs/photo.webp", "--mask", "refs/mask.png", "--background", "opaque",
            "--compression", "70", "--output", "out/many.jpg",
        ),
        lambda c, refs, st: c.images.edit(
            image=[
                _open(st, refs / "subject.png"), _open(st, refs / "photo.jpg"), _open(st, refs / "photo.webp")
            ],
            mask=_open(st, refs / "mask.png"), prompt=PROMPT, model="gpt-image-2", background="opaque",
            output_compression=70, output_format="jpeg",
        ),
    ),
    Case(
        "edits-stream",
        "CreateImageEditRequest",
        (
            "edits", "--prompt", PROMPT, "--image", "refs/subject.png", "--image", "refs/background.png",
            "--stream", "--partial-images", "1", "--output", "out/es.webp",
        ),
        lambda c, refs, st: drain(
            c.images.edit(
                image=[_open(st, refs / "subject.png"), _open(st, refs / "background.png")], prompt=PROMPT,
                model="gpt-image-2", output_format="webp", stream=True, partial_images=1,
            )
        ),
    ),
    Case(
        "responses",
        "CreateResponse",
        (
            "responses", "--input-text", PROMPT, "--input-image", "refs/subject.png", "--mask",
            "refs/mask.png", "--action", "edit", "--size", "1024x1024", "--quality", "high", "--user",
            "user-42", "--output", "out/resp.png",
        ),
        lambda c, refs, st: c.responses.create(
            model="gpt-5.4",
            input=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": PROMPT},
                        {
                            "type": "input_image",
                            "image_url": data_url(refs / "subject.png", "image/png"),
                            "detail": "auto",
                        },
                    ],
                }
            ],
            tools=[
                {
                    "type": "image_generation",
                    "model": "gpt-image-2",
                    "size": "1024x1024",
                    "quality": "high",  # no output_format: .png and no --format
                    "action": "edit",
                    "input_image_mask": {"image_url": data_url(refs / "mask.png", "image/png")},
                }
            ],
            tool_choice={"type": "image_generation"},
            safety_identifier="user-42",
        ),
    ),
    Case(
        "responses-stream",
        "CreateResponse",
        (
            "responses", "--input-text", "Make it a poster", "--input-text", PROMPT, "--input-image",
            "refs/photo.jpg", "--input-image-file-id", "file-abc123", "--mask", "refs/mask.png",
            "--image-detail", "high", "--moderation", "low", "--compression", "60", "--stream",
            "--partial-images", "3", "--tool-choice", "required", "--previous-response-id", "resp_prev1",
            "--model", "gpt-5.4-mini", "--output", "out/rs.webp",
        ),
        lambda c, refs, st: drain(
            c.responses.create(
                model="gpt-5.4-mini",
                input=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "Make it a poster"},
                            {"type": "input_text", "text": PROMPT},
                            {
                                "type": "input_image",
                                "image_url": data_url(refs / "photo.jpg", "image/jpeg"),
                                "detail": "high",
                            },
                            {"type": "input_image", "file_id": "file-abc123", "detail": "high"},
                        ],
                    }
                ],
                tools=[
                    {
                        "type": "image_generation",
                        "model": "gpt-image-2",
                        "moderation": "low",
                        "output_format": "webp",
                        "output_compression": 60,
                        "partial_images": 3,
                        "input_image_mask": {"image_url": data_url(refs / "mask.png", "image/png")},
                    }
                ],
                tool_choice="required",
                previous_response_id="resp_prev1",
                stream=True,
            )
        ),
    ),
    Case(
        "edits-json",
        "EditImageBodyJsonParam",
        (
            "edits", "--prompt", PROMPT, "--image-url", "https://cdn.example.com/product.png", "--image",
            "refs/subject.png", "--mask", "refs/mask.png", "--moderation", "low", "--quality", "high",
            "--n", "2", "--output", "out/json-{index}.png",
        ),
        # The SDK has no JSON edits method (its images.edit is multipart only): a raw post is how a user sends it.
        lambda c, refs, st: c.post(
            "/images/edits", cast_to=__import__("openai").types.ImagesResponse,
            body={
                "model": "gpt-image-2", "prompt": PROMPT, "moderation": "low", "quality": "high", "n": 2,
                "images": [
                    {"image_url": "https://cdn.example.com/product.png"},
                    {"image_url": data_url(refs / "subject.png", "image/png")},
                ],
                "mask": {"image_url": data_url(refs / "mask.png", "image/png")},
            },
        ),
    ),
]  # fmt: skip
CASE_IDS = [case.id for case in CASES]


# --------------------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------------------


@dataclass
class Spec:
    """The official OpenAPI document and a validator factory for its component schemas."""

    doc: Dict[str, Any]
    validator_class: Any
    registry: Any

    def schema(self, name: str) -> Dict[str, Any]:
        return self.doc["components"]["schemas"][name]  # type: ignore[no-any-return]

    def errors(self, name: str, instance: Any, closed: bool = True) -> List[str]:
        """Validation errors of instance against components/schemas/<name>; closed: no unknown fields."""
        schema: Dict[str, Any] = {"$ref": f"{SPEC_URI}#/components/schemas/{name}"}
        if closed:
            # The spec leaves objects open; the API rejects unknown parameters, so this check closes them.
            schema["unevaluatedProperties"] = False
        validator = self.validator_class(schema, registry=self.registry)
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}"
            for e in validator.iter_errors(instance)
        ]

    def resolve(self, node: Dict[str, Any]) -> Dict[str, Any]:
        while "$ref" in node and set(node) <= {"$ref", "description"}:
            node = self.schema(node["$ref"].rsplit("/", 1)[-1])
        return node

    def types(self, node: Dict[str, Any]) -> Set[str]:
        """Every JSON type a (sub)schema admits, through $ref, anyOf and oneOf."""
        node = self.resolve(node)
        kinds = node.get("type")
        found = set(kinds if isinstance(kinds, list) else [kinds] if kinds else [])
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in node.get(key, []):
                found |= self.types(sub)
        if "$ref" in node:
            found |= self.types({"$ref": node["$ref"]})
        return found


@pytest.fixture(scope="module")
def spec() -> Spec:
    if not SPEC_PATH.is_file():
        pytest.skip(
            f"the official OpenAPI spec is not at {SPEC_PATH} (it sits beside the team's checkout in "
            "../shared, not in a user's clone); the spec checks run in CI"
        )
    jsonschema_keywords = pytest.importorskip("jsonschema._keywords", reason="needs openapi-schema-validator")
    validators = pytest.importorskip("jsonschema.validators", reason="needs openapi-schema-validator")
    osv = pytest.importorskip("openapi_schema_validator", reason="needs openapi-schema-validator (dev extra)")
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    doc = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    version = str(doc.get("openapi", ""))
    if version.startswith("3.1"):
        base = osv.OAS31Validator
    elif version.startswith("3.0"):
        base = osv.OAS30Validator
    else:
        pytest.fail(f"unexpected OpenAPI version {version!r} in {SPEC_PATH}")

    def one_of(validator: Any, subschemas: Any, instance: Any, schema: Dict[str, Any]) -> Iterator[Any]:
        # The spec's oneOf lists with a discriminator overlap (a user message matches both EasyInputMessage
        # and InputMessage); in OpenAPI the discriminator picks the branch, which JSON Schema cannot do, so
        # those are checked as anyOf. Plain oneOf keeps its exactly-one meaning.
        if "discriminator" in schema:
            yield from jsonschema_keywords.anyOf(validator, subschemas, instance, schema)
        else:
            yield from jsonschema_keywords.oneOf(validator, subschemas, instance, schema)

    validator_class = validators.extend(base, {"oneOf": one_of})
    registry = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(doc))
    return Spec(doc, validator_class, registry)


@pytest.fixture(scope="module")
def openai_module() -> Any:
    return pytest.importorskip(
        "openai", reason="the official openai SDK is a dev dependency (pip install -e .[dev])"
    )


@pytest.fixture
def sdk(openai_module: Any, fake: FakeAPI, env: Path) -> Iterator[Any]:
    """The official client pointed at the fake, no retries, with the same org/project as the CLI."""
    client = openai_module.OpenAI(
        api_key=SENTINEL_KEY, base_url=fake.base_url, max_retries=0, organization=ORG_ID, project=PROJECT_ID
    )
    with client:
        yield client


@pytest.fixture
def org_env(monkeypatch: pytest.MonkeyPatch, env: Path) -> None:
    monkeypatch.setenv("OPENAI_ORG_ID", ORG_ID)
    monkeypatch.setenv("OPENAI_PROJECT_ID", PROJECT_ID)


def run_cli(cli: Callable[..., Any], fake: FakeAPI, args: Sequence[str]) -> Recorded:
    """Run the CLI; return the one request it sent."""
    before = len(fake.requests)
    result = cli(*args)
    assert result.code == 0, result.err
    sent = fake.requests[before:]
    assert len(sent) == 1, f"expected one request, got {len(sent)}"
    return sent[0]


def run_sdk(sdk: Any, fake: FakeAPI, images_dir: Path, case: Case) -> Recorded:
    before = len(fake.requests)
    with contextlib.ExitStack() as stack:
        case.sdk(sdk, images_dir, stack)
    sent = fake.requests[before:]
    assert len(sent) == 1, f"expected one request, got {len(sent)}"
    return sent[0]


def nulls(value: Any, path: str = "") -> List[str]:
    """Paths of every null in a JSON value."""
    if value is None:
        return [path or "<root>"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in nulls(v, f"{path}/{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in nulls(v, f"{path}/{i}")]
    return []


def form_as_object(rec: Recorded, spec: Spec, schema: str) -> Dict[str, Any]:
    """The multipart form as the object the spec describes: files are binary strings, image[] an array,
    text fields typed by the schema (the digits of an integer field become an int, true/false a bool)."""
    assert not rec.multipart_defects, rec.multipart_defects
    props = spec.schema(schema)["properties"]
    obj: Dict[str, Any] = {}
    for part in rec.parts:
        name = part.name or ""
        if part.filename is not None:
            value: Any = part.data.decode("latin-1")
            if name.endswith("[]"):
                key = name[:-2]
                assert not isinstance(obj.get(key), str), f"both {key} and {name} sent"
                obj.setdefault(key, []).append(value)
                continue
        else:
            text = part.text
            assert text not in ("", "None", "null"), f"form field {name} is {text!r}"
            kinds = spec.types(props[name]) if name in props else set()
            if "integer" in kinds and re.fullmatch(r"-?\d+", text):
                value = int(text)
            elif "boolean" in kinds and text in ("true", "false"):
                value = text == "true"
            else:
                value = text
        assert name not in obj, f"form field {name} sent twice"
        obj[name] = value
    return obj


def body_object(rec: Recorded, spec: Spec, schema: str) -> Dict[str, Any]:
    if rec.is_multipart:
        return form_as_object(rec, spec, schema)
    assert rec.content_type == "application/json"
    assert isinstance(rec.json, dict), rec.json_error
    return rec.json


def check_against_spec(spec: Spec, schema: str, body: Dict[str, Any]) -> List[str]:
    """Schema errors, plus closed-object checks of the Responses parts the spec leaves open."""
    problems = spec.errors(schema, body)
    problems += [f"null at {p}" for p in nulls(body)]
    if schema == "CreateResponse":
        for i, tool in enumerate(body.get("tools", [])):
            problems += [f"tools/{i}/{e}" for e in spec.errors("ImageGenTool", tool)]
        for m, message in enumerate(body.get("input", []) if isinstance(body.get("input"), list) else []):
            problems += [f"input/{m}/{e}" for e in spec.errors("EasyInputMessage", message)]
            for c, part in enumerate(message.get("content", [])):
                name = {"input_text": "InputTextContent", "input_image": "InputImageContent"}[part["type"]]
                problems += [f"input/{m}/content/{c}/{e}" for e in spec.errors(name, part)]
    return problems


def canonical(value: Any) -> str:
    """JSON with sorted keys: equal strings mean equal values and equal types."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def lower_headers(rec: Recorded) -> Dict[str, str]:
    headers: Dict[str, str] = {}
    for name, value in rec.headers.items():
        assert name.lower() not in headers, f"header {name} sent twice"
        headers[name.lower()] = str(value)
    return headers


def header_differences(cli_rec: Recorded, sdk_rec: Recorded) -> List[str]:
    cli_h, sdk_h = lower_headers(cli_rec), lower_headers(sdk_rec)
    problems = []
    for name in sorted(set(cli_h) | set(sdk_h)):
        if name in DELIBERATE_HEADERS or name.startswith(tuple(DELIBERATE_HEADER_PREFIXES)):
            continue
        mine, theirs = cli_h.get(name), sdk_h.get(name)
        if name == "content-type" and mine and theirs:
            mine, theirs = mine.split(";")[0].strip().lower(), theirs.split(";")[0].strip().lower()
        if mine != theirs:
            problems.append(f"{name}: CLI {mine!r}, SDK {theirs!r}")
    return problems


def form_summary(rec: Recorded) -> Tuple[List[Tuple[str, str]], List[Tuple[Any, ...]]]:
    """(sorted text fields, file parts in order with name, filename, content type, header names, bytes)."""
    assert not rec.multipart_defects, rec.multipart_defects
    fields = sorted((p.name or "", p.text) for p in rec.parts if p.filename is None)
    files = [
        (p.name, p.filename, p.content_type, sorted(k.lower() for k, _ in p.headers), p.data)
        for p in rec.parts
        if p.filename is not None
    ]
    text_headers = {tuple(sorted(k.lower() for k, _ in p.headers)) for p in rec.parts if p.filename is None}
    assert text_headers <= {("content-disposition",)}, f"text parts carry extra headers: {text_headers}"
    return fields, files


# --------------------------------------------------------------------------------------------------------
# (a) the official OpenAPI schema
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_cli_request_validates_against_the_spec(
    case: Case, spec: Spec, cli: Callable[..., Any], fake: FakeAPI, images_dir: Path
) -> None:
    rec = run_cli(cli, fake, case.cli)
    body = body_object(rec, spec, case.schema)
    assert check_against_spec(spec, case.schema, body) == []
    if case.schema == "CreateResponse":
        tools = [t for t in body["tools"] if t["type"] == "image_generation"]
        assert len(tools) == 1 and tools[0]["model"] == "gpt-image-2"
    else:
        assert body["model"] == "gpt-image-2" and "response_format" not in body


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_sdk_request_validates_too(
    case: Case, spec: Spec, sdk: Any, fake: FakeAPI, images_dir: Path, env: Path
) -> None:
    """Control: the reference client's own body passes the same checks, so the checks read the spec right."""
    rec = run_sdk(sdk, fake, images_dir, case)
    assert check_against_spec(spec, case.schema, body_object(rec, spec, case.schema)) == []


@pytest.mark.parametrize(
    ("schema", "body", "expected"),
    [
        ("CreateImageRequest", {"model": "gpt-image-2", "prompt": "x", "n": None}, "n: None is not"),
        ("CreateImageRequest", {"model": "gpt-image-2", "prompt": "x", "n": "2"}, "n: '2' is not"),
        ("CreateImageRequest", {"model": "gpt-image-2", "prompt": "x", "seed": 1}, "'seed' was unexpected"),
        ("CreateImageRequest", {"model": "gpt-image-2"}, "'prompt' is a required property"),
        ("CreateImageEditRequest", {"prompt": "x", "image": "b", "moderation": "low"}, "'moderation' was"),
        ("CreateImageEditRequest", {"prompt": "x", "image": ["b"] * 17}, "image: "),
        (
            "CreateResponse",
            {
                "model": "m",
                "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}],
            },
            "input: ",
        ),
        (
            "CreateResponse",
            {"model": "m", "input": "x", "tools": [{"type": "image_generation", "partial_images": 4}]},
            "tools/0: ",
        ),
        ("CreateResponse", {"model": "m", "input": "x", "stream": None}, "null at /stream"),
        ("ImageGenTool", {"type": "image_generation", "user": "u"}, "'user' was unexpected"),
    ],
    ids=[
        "null",
        "int-as-string",
        "unknown-field",
        "missing-prompt",
        "edits-moderation",
        "17-images",
        "input-image-without-detail",
        "partial-images-4",
        "null-the-schema-allows",
        "tool-unknown-field",
    ],
)
def test_the_spec_check_catches_bad_bodies(
    spec: Spec, schema: str, body: Dict[str, Any], expected: str
) -> None:
    """The checks used above are not vacuous: they refuse what the API would refuse."""
    problems = check_against_spec(spec, schema, body)
    assert any(expected in p for p in problems), problems


# --------------------------------------------------------------------------------------------------------
# (b) field by field against the official SDK
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_cli_sends_what_the_sdk_sends(
    case: Case, sdk: Any, cli: Callable[..., Any], fake: FakeAPI, images_dir: Path, org_env: None
) -> None:
    mine = run_cli(cli, fake, case.cli)
    theirs = run_sdk(sdk, fake, images_dir, case)

    assert (mine.method, mine.path, mine.query) == (theirs.method, theirs.path, theirs.query)
    assert mine.content_type == theirs.content_type
    assert header_differences(mine, theirs) == []
    for rec in (mine, theirs):
        assert rec.header("authorization") == f"Bearer {SENTINEL_KEY}"
        assert int(rec.header("content-length") or -1) == len(rec.body)
        assert not rec.chunked
    assert not [k for k, _ in mine.headers.items() if k.lower().startswith("x-stainless-")]
    assert mine.header("openai-organization") == ORG_ID and mine.header("openai-project") == PROJECT_ID

    if mine.is_multipart:
        my_fields, my_files = form_summary(mine)
        their_fields, their_files = form_summary(theirs)
        assert my_fields == their_fields
        assert [f[:4] for f in my_files] == [f[:4] for f in their_files]
        assert [f[4] for f in my_files] == [f[4] for f in their_files]  # the file bytes, in order
        assert my_files, "no file part sent"
    else:
        assert mine.json is not None and theirs.json is not None
        assert canonical(mine.json) == canonical(theirs.json)


def test_content_type_comes_from_the_bytes(
    sdk: Any, cli: Callable[..., Any], fake: FakeAPI, images_dir: Path, org_env: None
) -> None:
    """The deliberate difference in file parts: a PNG named scan.bin goes out as image/png from the CLI; the
    SDK guesses from the name, and the API (like the strict fake) refuses that guess."""
    openai = pytest.importorskip("openai")
    misnamed = images_dir / "scan.bin"
    misnamed.write_bytes((images_dir / "subject.png").read_bytes())
    rec = run_cli(cli, fake, ["edits", "--prompt", "x", "--image", str(misnamed), "--output", "out/x.png"])
    assert [(p.name, p.content_type) for p in rec.files()] == [("image", "image/png")]
    with pytest.raises(openai.BadRequestError, match="unsupported mimetype"), open(misnamed, "rb") as handle:
        sdk.images.edit(image=handle, prompt="x", model="gpt-image-2")
    assert fake.last.files()[0].content_type != "image/png"


# --------------------------------------------------------------------------------------------------------
# (c) the SDK as a reader: same recorded replies, same extracted images
# --------------------------------------------------------------------------------------------------------

FINALS = [noise_image("png", 300_000), noise_image("png", 90_001)]  # big enough to span read chunks
PARTIALS = [
    noise_image("png", 40_000),
    make_image("png", color=partial_color(1)),
    noise_image("png", 50_003),
]


def b64decode(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def sdk_images_json(c: Any, refs: Path, st: contextlib.ExitStack) -> Tuple[List[bytes], List[bytes]]:
    reply = c.images.generate(model="gpt-image-2", prompt="x", n=2)
    return [b64decode(d.b64_json) for d in reply.data], []


def sdk_stream(events: Any) -> Tuple[List[bytes], List[bytes]]:
    finals: List[bytes] = []
    partials: List[bytes] = []
    for event in events:
        if event.type in ("image_generation.partial_image", "image_edit.partial_image"):
            partials.append(b64decode(event.b64_json))
        elif event.type in ("image_generation.completed", "image_edit.completed"):
            finals.append(b64decode(event.b64_json))
        elif event.type == "response.image_generation_call.partial_image":
            partials.append(b64decode(event.partial_image_b64))
        elif event.type == "response.output_item.done" and event.item.type == "image_generation_call":
            finals.append(b64decode(event.item.result))
    return finals, partials


def sdk_images_sse(c: Any, refs: Path, st: contextlib.ExitStack) -> Tuple[List[bytes], List[bytes]]:
    return sdk_stream(c.images.generate(model="gpt-image-2", prompt="x", stream=True, partial_images=3))


def sdk_edits_sse(c: Any, refs: Path, st: contextlib.ExitStack) -> Tuple[List[bytes], List[bytes]]:
    image = _open(st, refs / "subject.png")
    return sdk_stream(
        c.images.edit(image=image, prompt="x", model="gpt-image-2", stream=True, partial_images=3)
    )


def responses_input() -> List[Dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "input_text", "text": "x"}]}]


def sdk_responses_json(c: Any, refs: Path, st: contextlib.ExitStack) -> Tuple[List[bytes], List[bytes]]:
    reply = c.responses.create(
        model="gpt-5.4", input=responses_input(), tools=[{"type": "image_generation", "model": "gpt-image-2"}]
    )
    return [b64decode(o.result) for o in reply.output if o.type == "image_generation_call"], []


def sdk_responses_sse(c: Any, refs: Path, st: contextlib.ExitStack) -> Tuple[List[bytes], List[bytes]]:
    tools = [{"type": "image_generation", "model": "gpt-image-2", "partial_images": 3}]
    return sdk_stream(c.responses.create(model="gpt-5.4", input=responses_input(), tools=tools, stream=True))


@dataclass(frozen=True)
class ReaderCase:
    id: str
    reply: Callable[[str], Any]  # framing -> a fake behaviour
    cli: Tuple[str, ...]
    sdk: Callable[[Any, Path, contextlib.ExitStack], Tuple[List[bytes], List[bytes]]]
    finals: List[bytes]
    partials: List[bytes]


#: Framings of the same events: the API's plain LF, and CRLF with keep-alive comments, [DONE] and the
#: stream cut into odd-sized writes.
FRAMINGS: Dict[str, Dict[str, Any]] = {
    "lf": {},
    "crlf-comments-split": {"line_end": "\r\n", "comments": True, "done": True, "split": 4093},
}


def _sse(events: List[Dict[str, Any]]) -> Callable[[str], SSE]:
    return lambda framing: SSE(list(events), **FRAMINGS[framing])


def _json(obj: Dict[str, Any]) -> Callable[[str], Reply]:
    raw = json.dumps(obj).encode("utf-8")
    return lambda framing: Reply(body=raw, content_type="application/json", chunk_size=65_521)


READER_CASES = [
    ReaderCase(
        "images-json-n2",
        _json(images_body(2, images=FINALS)),
        ("generations", "--prompt", "x", "--n", "2", "--output", "out/j-{index}.png"),
        sdk_images_json,
        FINALS,
        [],
    ),
    ReaderCase(
        "images-sse-partials",
        _sse(images_stream_events("generation", images=FINALS[:1], partial_images=PARTIALS)),
        ("generations", "--prompt", "x", "--stream", "--partial-images", "3", "--output", "out/s.png"),
        sdk_images_sse,
        FINALS[:1],
        PARTIALS,
    ),
    ReaderCase(
        "edits-sse-partials",
        _sse(images_stream_events("edit", images=FINALS[1:], partial_images=PARTIALS)),
        (
            "edits", "--prompt", "x", "--image", "refs/subject.png", "--stream", "--partial-images", "3",
            "--output", "out/e.png",
        ),
        sdk_edits_sse,
        FINALS[1:],
        PARTIALS,
    ),
    ReaderCase(
        "responses-json",
        _json(responses_body(images=FINALS[:1])),
        ("responses", "--input-text", "x", "--output", "out/r.png"),
        sdk_responses_json,
        FINALS[:1],
        [],
    ),
    ReaderCase(
        "responses-sse-partials",
        _sse(responses_stream_events(3, images=FINALS[:1], partial_images=PARTIALS)),
        ("responses", "--input-text", "x", "--stream", "--partial-images", "3", "--output", "out/rs.png"),
        sdk_responses_sse,
        FINALS[:1],
        PARTIALS,
    ),
]  # fmt: skip


READER_PARAMS = [
    pytest.param(case, framing, id=f"{case.id}-{framing}")
    for case in READER_CASES
    for framing in (FRAMINGS if "sse" in case.id else ["lf"])
]


@pytest.mark.parametrize(("case", "framing"), READER_PARAMS)
def test_sdk_and_cli_read_the_same_images(
    case: ReaderCase, framing: str, sdk: Any, cli: Callable[..., Any], fake: FakeAPI, images_dir: Path
) -> None:
    fake.queue(case.reply(framing), case.reply(framing))
    with contextlib.ExitStack() as stack:
        sdk_finals, sdk_partials = case.sdk(sdk, images_dir, stack)
    result = cli(*case.cli, "--json")
    assert result.code == 0, result.err
    assert fake.queued == 0
    cli_finals = [
        Path(i["path"]).read_bytes() for i in sorted(result.json["images"], key=lambda i: i["index"])
    ]
    cli_partials = [Path(p["path"]).read_bytes() for p in result.json["partials"]]

    assert sdk_finals == case.finals and sdk_partials == case.partials  # the reference read them all
    assert cli_finals == sdk_finals
    assert cli_partials == sdk_partials


def test_sdk_and_cli_agree_on_an_error_event(
    sdk: Any, cli: Callable[..., Any], fake: FakeAPI, images_dir: Path, openai_module: Any
) -> None:
    """A stream that turns into an error after a preview: both readers stop with the API's message."""
    events = images_stream_events("generation", images=FINALS[:1], partial_images=PARTIALS[:1])[:1]
    error = {
        "type": "error",
        "error": {"message": "The image could not be finished.", "code": "server_error"},
    }
    fake.queue(SSE([*events, error]), SSE([*events, error]))
    with pytest.raises(openai_module.APIError, match="could not be finished"):
        for _ in sdk.images.generate(model="gpt-image-2", prompt="x", stream=True, partial_images=1):
            pass
    result = cli("generations", "--prompt", "x", "--stream", "--partial-images", "1", "--output", "out/x.png")
    assert result.code == 4
    assert "could not be finished" in result.err
    assert Path("out/x.partial-1.png").read_bytes() == PARTIALS[0]
    assert not Path("out/x.png").exists()

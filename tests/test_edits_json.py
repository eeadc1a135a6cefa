"""edits from URLs and uploaded files: the JSON edits form (EditImageBodyJsonParam), end to end on the fake."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Callable, List

import pytest
from conftest import Result, assert_one_error
from fakeapi import FakeAPI, identify, make_image, make_mask

CLI = Callable[..., Result]
URL = "https://cdn.example.com/product.png"


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def test_one_url(cli: CLI, fake: FakeAPI, env: Path) -> None:
    result = cli("edits", "--prompt", "Put it on a beach", "--image-url", URL, "--output", "out/beach.png")
    assert result.code == 0, result.err
    rec = fake.last
    assert rec.content_type == "application/json"
    assert rec.json == {"model": "gpt-image-2", "prompt": "Put it on a beach", "images": [{"image_url": URL}]}
    assert (env / "out" / "beach.png").read_bytes() == rec.sent_images[0]


def test_a_file_id(cli: CLI, fake: FakeAPI, env: Path) -> None:
    file_id = fake.add_file(make_image("png", (64, 48)), "product.png")
    result = cli("edits", "--prompt", "Studio light", "--image-file-id", file_id, "--output", "o.png", "--json")
    assert result.code == 0, result.err
    assert fake.last.json["images"] == [{"file_id": file_id}]
    assert [ref.kind for ref in fake.last.json_images()] == ["file_id"]
    assert json.loads(result.out)["images"][0]["path"] == "o.png"


def test_local_url_and_file_id_with_a_mask_url_keep_their_order(
    cli: CLI, fake: FakeAPI, env: Path, images_dir: Path
) -> None:
    file_id = fake.add_file(make_image("jpeg", (64, 48)), "b.jpg")
    result = cli(
        "edits", "--prompt", "Blend them", "--image", str(images_dir / "subject.png"), "--image-url", URL,
        "--image-file-id", file_id, "--image", str(images_dir / "photo.webp"),
        "--mask-url", "https://cdn.example.com/mask.png", "--moderation", "low", "--n", "2",
        "--output", "out/blend-{index}.png",
    )  # fmt: skip
    assert result.code == 0, result.err
    body = fake.last.json
    refs = fake.last.json_images()
    assert [r.kind for r in refs] == ["data_url", "url", "file_id", "data_url"]
    assert refs[0].data == (images_dir / "subject.png").read_bytes()
    assert refs[3].data == (images_dir / "photo.webp").read_bytes() and refs[3].media_type == "image/webp"
    assert body["mask"] == {"image_url": "https://cdn.example.com/mask.png"}
    assert (body["moderation"], body["n"]) == ("low", 2)
    assert "the mask's size cannot be checked" in result.err  # the first image is local, the mask is not
    assert [identify((env / "out" / f"blend-{i}.png").read_bytes()) for i in (1, 2)] == [("final", 0), ("final", 1)]


def test_a_data_url_given_directly(cli: CLI, fake: FakeAPI, env: Path) -> None:
    given = data_url(make_image("png", (64, 48)))
    mask = data_url(make_mask((64, 48)))
    dry = cli("edits", "--prompt", "x", "--image-url", given, "--mask-url", mask, "--output", "o.png", "--dry-run")
    assert dry.code == 0, dry.err
    shown = json.loads(dry.out)["body"]
    assert shown["images"][0]["image_url"] == f"data:image/png;base64,<{len(given):,} characters given>"
    assert "cannot be checked" not in dry.err  # both are data URLs: the mask was checked against the image
    result = cli("edits", "--prompt", "x", "--image-url", given, "--mask-url", mask, "--output", "o.png")
    assert result.code == 0, result.err
    assert fake.last.json["images"] == [{"image_url": given}] and fake.last.json["mask"] == {"image_url": mask}


def test_local_files_alone_stay_multipart(cli: CLI, fake: FakeAPI, images_dir: Path) -> None:
    result = cli("edits", "--prompt", "x", "--image", str(images_dir / "subject.png"), "--output", "o.png")
    assert result.code == 0, result.err
    assert fake.last.is_multipart


def test_moderation_is_refused_on_multipart_only(cli: CLI, fake: FakeAPI, images_dir: Path) -> None:
    refused = cli("edits", "--prompt", "x", "--image", str(images_dir / "subject.png"), "--moderation", "low",
                  "--output", "o.png")  # fmt: skip
    assert_one_error(refused, 2, "multipart edits do not accept --moderation", hint=["--image-url"])
    assert fake.requests == []


def test_a_jobs_file_line_with_urls(cli: CLI, fake: FakeAPI, env: Path) -> None:
    (env / "jobs.jsonl").write_text(
        json.dumps({"prompt": "a", "image_url": URL}) + "\n" + json.dumps({"prompt": "b", "image-url": [URL, URL]})
        + "\n", "utf-8",
    )  # fmt: skip
    result = cli("edits", "--batch", "jobs.jsonl", "--output", "out/{job}.png")
    assert result.code == 0, result.err
    assert sorted(len(r.json["images"]) for r in fake.requests) == [1, 2]


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--image-url", "http://cdn.example.com/a.png"], "plain http is refused"),
        (["--image-url", "ftp://cdn.example.com/a.png"], "not an https or data: URL"),
        (["--image-url", "https:///nohost.png"], "not an https or data: URL"),
        (["--image-url", "data:text/plain;base64,aGVsbG8="], "not a base64 data URL of a PNG"),
        (["--image-url", "data:image/png;base64,@@@not base64@@@"], "does not decode"),
        (["--image-url", "data:image/png;base64," + base64.b64encode(b"just text").decode()], "no PNG, JPEG or WEBP"),
        (["--image-file-id", " "], "empty"),
        (["--image-url", URL, "--image-field-style", "brackets"], "the request is JSON"),
        (["--image-url", URL, "--mask-url", URL, "--mask-file-id", "file-1"], "one of --mask"),
        (["--image-url", URL] * 17, "17 images given; the limit is 16"),
        (["--image-url", URL, "--mask-url", "data:image/png;base64," + base64.b64encode(make_image("png", (64, 48))).decode()],
         "no alpha channel"),
        (["--image-url", data_url(make_image("png", (64, 48))), "--mask-url", data_url(make_mask((32, 32)))],
         "does not match the first image"),
    ],
)
def test_refusals_send_nothing(cli: CLI, fake: FakeAPI, extra: List[str], words: str) -> None:
    result = cli("edits", "--prompt", "x", *extra, "--output", "o.png")
    assert_one_error(result, 2, words)
    assert fake.requests == []


def test_a_local_file_too_large_for_a_data_url(cli: CLI, fake: FakeAPI, env: Path, images_dir: Path) -> None:
    big = env / "big.png"
    big.write_bytes(make_image("png", (64, 48)) + b"\0" * 16_000_000)  # a real PNG header, then padding
    result = cli("edits", "--prompt", "x", "--image", str(big), "--image-url", URL, "--output", "o.png")
    assert_one_error(result, 2, "too large for a data URL", hint=["--image-file-id"])
    assert fake.requests == []
    alone = cli("edits", "--prompt", "x", "--image", str(big), "--output", "o.png", "--dry-run")
    assert alone.code == 0, alone.err  # as multipart, the same file is fine

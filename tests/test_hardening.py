"""Hardening found by a review of the whole script: each case failed (or leaked) before its fix."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest
from conftest import SENTINEL_KEY, Result, error_lines
from fakeapi import SSE, FakeAPI, Recorded, Reply, images_body, images_stream_events, make_image


def test_a_key_with_a_carriage_return_is_refused_without_printing_it(
    cli: Callable[..., Result], fake: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A key read from a CRLF file ends in \r; http.client would put the whole header, key included, in its error.
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL_KEY + "\r")
    for extra in ([], ["--json"]):
        result = cli("generations", "--prompt", "hi", "--output", "k.png", *extra)
        assert result.code == 3
        assert "OPENAI_API_KEY" in result.err and "carriage return" in result.err
        for shown in (SENTINEL_KEY, SENTINEL_KEY[8:], "SENTINEL"):
            assert shown not in result.out + result.err
    assert fake.requests == []


def test_a_dotenv_key_with_a_line_break_is_refused(
    cli: Callable[..., Result], fake: FakeAPI, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    (env / ".env").write_text(f'OPENAI_API_KEY="{SENTINEL_KEY}\\nmore"\n', encoding="utf-8")
    result = cli("generations", "--prompt", "hi", "--output", "k.png")
    assert result.code == 3
    assert ".env:1" in result.err
    assert "SENTINEL" not in result.out + result.err
    assert fake.requests == []


@pytest.fixture
def elsewhere() -> Iterator[List[str]]:
    """A second loopback server that records whatever reaches it (a redirect must not)."""
    seen: List[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(f"GET {self.path} {self.headers.get('Authorization')}")
            self.send_response(200)
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    seen.append(f"http://127.0.0.1:{server.server_address[1]}/elsewhere")
    yield seen
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed(
    cli: Callable[..., Result], fake: FakeAPI, elsewhere: List[str], status: int
) -> None:
    location = elsewhere.pop(0)
    fake.queue(Reply(status, body=b"", headers={"Location": location}))
    result = cli("generations", "--prompt", "hi", "--output", "r.png", "--json")
    assert result.code == 4
    assert len(fake.requests) == 1  # not retried, not replayed
    assert elsewhere == []  # nothing, and so no key, went to the other host
    error = json.loads(result.out)["error"]
    assert error["status"] == status
    assert location in error["message"] and "not followed" in error["message"]
    assert not Path("r.png").exists()


def test_a_final_image_that_cannot_be_written_is_kept_in_the_temp_folder(
    cli: Callable[..., Result], fake: FakeAPI, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    rescue = env / "rescue"
    rescue.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(rescue))
    picture = make_image("png", color=(1, 2, 3))

    def block_the_target(recorded: Recorded) -> Reply:
        # After pre-flight passed: a file now stands where the output folder is to be made.
        (env / "out").write_bytes(b"in the way")
        return Reply(200, json=images_body(images=[picture]))

    fake.queue(block_the_target)
    result = cli("generations", "--prompt", "hi", "--output", "out/hero.png", "--json")
    assert result.code == 1
    error = json.loads(result.out)["error"]
    assert error["type"] == "output_error"
    assert "could not write out/hero.png" in error["message"] and "kept at" in error["message"]
    kept = list(rescue.glob("gpt-image-*.png"))
    assert [p.read_bytes() for p in kept] == [picture]
    assert str(kept[0]) in error["message"]
    assert len(error_lines(result)) == 1
    assert (env / "out").read_bytes() == b"in the way"
    assert sorted(p.name for p in env.iterdir()) == ["out", "rescue"]  # no temporaries left anywhere


def test_a_file_that_appears_during_the_run_is_not_overwritten(
    cli: Callable[..., Result], fake: FakeAPI, env: Path
) -> None:
    picture = make_image("png", color=(4, 5, 6))

    def race(recorded: Recorded) -> Reply:
        (env / "hero.png").write_bytes(b"someone else's")
        return Reply(200, json=images_body(images=[picture]))

    fake.queue(race)
    result = cli("generations", "--prompt", "hi", "--output", "hero.png")
    assert result.code == 0, result.err
    assert (env / "hero.png").read_bytes() == b"someone else's"
    assert result.out.splitlines() == ["hero.2.png"]
    assert (env / "hero.2.png").read_bytes() == picture
    assert "warning: hero.png appeared during the run, so the image was saved as hero.2.png" in result.err


@pytest.mark.parametrize(
    "args",
    [
        ["responses", "--input-text", "a\udcff"],
        ["responses", "--input-text", "ok", "--previous-response-id", "resp_\udcff"],
        ["generations", "--prompt", "ok", "--user", "u\udcff"],
        ["edits", "--prompt", "ok", "--image", "refs/subject.png", "--user", "u\udcff"],
        ["generations", "--prompt", "ok", "--model", "gpt-image-\udcff"],
    ],
)
def test_option_text_that_is_not_utf8_is_refused(
    cli: Callable[..., Result], fake: FakeAPI, images_dir: Path, args: List[str]
) -> None:
    # Undecodable bytes on a POSIX command line reach Python as lone surrogates.
    for extra in ([], ["--dry-run"]):
        result = cli(*args, "--output", "o.png", *extra)
        assert result.code == 2, result.err
        assert "not valid UTF-8" in result.err
    assert fake.requests == []


def test_empty_data_keep_alives_in_a_stream_are_skipped(cli: Callable[..., Result], fake: FakeAPI) -> None:
    events: List[Any] = images_stream_events("generation", partials=1)
    fake.queue(SSE([b"data:\n\n", events[0], b"data: \n\n", *events[1:]]))
    result = cli("generations", "--prompt", "hi", "--output", "s.png", "--stream", "--partial-images", "1")
    assert result.code == 0, result.err
    assert Path("s.png").is_file() and Path("s.partial-1.png").is_file()


def test_metadata_gives_each_image_its_own_revised_prompt(cli: Callable[..., Result], fake: FakeAPI) -> None:
    body = images_body(n=3)
    body["data"][1]["revised_prompt"] = "the second, revised"
    fake.queue(Reply(200, json=body))
    result = cli(
        "generations", "--prompt", "hi", "--output", "m-{index}.png", "--n", "3", "--metadata", "--json"
    )
    assert result.code == 0, result.err
    prompts = [json.loads(Path(f"m-{i}.png.json").read_text("utf-8"))["revised_prompt"] for i in (1, 2, 3)]
    assert prompts == [None, "the second, revised", None]
    assert json.loads(result.out)["revised_prompt"] == "the second, revised"


@pytest.mark.parametrize("output", [".png", "out/.webp"])
def test_an_output_with_no_name_before_the_extension_is_refused(
    cli: Callable[..., Result], fake: FakeAPI, output: str
) -> None:
    result = cli("generations", "--prompt", "hi", "--output", output)
    assert result.code == 2
    assert "no file name" in result.err
    assert fake.requests == []


@pytest.fixture
def hangs_up_mid_upload() -> Iterator[str]:
    """A raw loopback server that reads 1 KiB of each request, then resets the connection (how servers refuse
    a body too large to take)."""
    import socket
    import struct

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.recv(1024)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/v1"
    stop.set()
    thread.join(2)
    server.close()


def test_a_server_that_hangs_up_mid_upload_is_named_as_such(
    cli: Callable[..., Result], env: Path, hangs_up_mid_upload: str
) -> None:
    big = env / "big.png"
    big.write_bytes(make_image("png") + b"\0" * (24 * 1024 * 1024))  # bigger than loopback socket buffers
    result = cli(
        "edits",
        "--prompt",
        "x",
        "--image",
        "big.png",
        "--output",
        "o.png",
        "--retries",
        "0",
        "--base-url",
        hangs_up_mid_upload,
    )
    assert result.code == 5
    assert "closed the connection while the request was being sent" in result.err
    assert not (env / "o.png").exists()

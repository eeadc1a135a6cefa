"""A scriptable hostile HTTP server on loopback, for tests that attack the client.

Unlike ``fakeapi.py`` (a well-behaved imitation of the API), this server speaks raw TCP: a test says, for
each connection in turn, exactly which bytes go out and when (status line, headers, body pieces, pauses,
trickles, resets, callbacks in between), so it can send what no HTTP library would produce: a 100 KB
header line, 150 headers, a broken status line, a 2 GiB ``data:`` line, escape sequences, 1xx answers.

- Loopback only (127.0.0.1, port 0), threaded, one script per connection (``script()`` queues them; an
  unscripted connection is closed at once and counted in ``unscripted``).
- Before its actions run, a connection's request is read (headers, then a Content-Length body, which is
  counted and discarded; ``read_request=False`` skips this). ``requests`` records each one, and
  ``complete_requests`` counts those whose body arrived in full: how many paid requests the server got.
- Everything is bounded: every pause waits on the stop event, a request head is read up to 1 MiB, a
  connection that the client leaves ends its script quietly, and ``stop()`` closes every socket.
- Large bodies are generated lazily (``Stream`` takes an iterable factory), so a test can send gigabytes
  without holding them.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from conftest import png_chunk, png_head, solid_png

MiB = 1024 * 1024
_HEAD_LIMIT = 1 * MiB
_RECV = 256 * 1024


# --------------------------------------------------------------------------------------------------------
# Actions: what the server does on one connection, in order
# --------------------------------------------------------------------------------------------------------


@dataclass
class Send:
    """Send these bytes (all at once)."""

    data: bytes


@dataclass
class Trickle:
    """Send ``data`` ``piece`` bytes at a time, ``interval`` seconds apart (``limit`` s at most)."""

    data: bytes
    piece: int = 1
    interval: float = 0.1
    limit: float = 30.0


@dataclass
class Stream:
    """Send every chunk an iterable yields; ``make`` is called when the action runs (lazy, bounded by it)."""

    make: Callable[[], Iterable[bytes]]


@dataclass
class Sleep:
    """Pause (woken early when the server stops)."""

    seconds: float


@dataclass
class Call:
    """Run a callback in the server thread (e.g. make a file appear while the client waits)."""

    fn: Callable[[], None]


@dataclass
class Hold:
    """Send nothing until the client goes away, the server stops, or ``seconds`` pass."""

    seconds: float = 30.0


@dataclass
class Close:
    """Close the connection with a FIN (what happens anyway after the last action)."""


@dataclass
class Reset:
    """Abort the connection with a TCP RST (SO_LINGER 0)."""


Action = Union[Send, Trickle, Stream, Sleep, Call, Hold, Close, Reset]


@dataclass
class Script:
    """The actions for one connection."""

    actions: List[Action]
    read_request: bool = True


@dataclass
class Request:
    """One request as received."""

    method: str = ""
    path: str = ""
    headers: Dict[str, str] = field(default_factory=dict)
    head_bytes: int = 0
    body_size: int = 0
    expected: Optional[int] = None
    complete: bool = False
    received_at: float = 0.0

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name.lower())


class _ClientGone(Exception):
    pass


# --------------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------------


class HostileServer:
    """``with HostileServer() as server: server.script(Send(...)); ... server.base_url``"""

    def __init__(self) -> None:
        self._listener: Optional[socket.socket] = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._scripts: List[Script] = []
        self._threads: List[threading.Thread] = []
        self._open: List[socket.socket] = []
        self._accepter: Optional[threading.Thread] = None
        self.port = 0
        self.connections = 0
        self.unscripted = 0
        self.requests: List[Request] = []
        self.errors: List[str] = []
        self.sent_bytes = 0

    # -- life cycle -------------------------------------------------------------------------------------

    def start(self) -> HostileServer:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._accepter = threading.Thread(target=self._accept_loop, name="hostile-accept", daemon=True)
        self._accepter.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._accepter is not None:
            self._accepter.join(2)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            sockets, threads = list(self._open), list(self._threads)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in threads:
            thread.join(2)

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting --------------------------------------------------------------------------------------

    def script(self, *actions: Union[Action, Sequence[Action]], read_request: bool = True) -> HostileServer:
        """Queue the actions for the next connection (lists of actions are flattened)."""
        flat: List[Action] = []
        for action in actions:
            if isinstance(action, (list, tuple)):
                flat.extend(action)
            else:
                flat.append(action)  # type: ignore[arg-type]
        with self._lock:
            self._scripts.append(Script(flat, read_request))
        return self

    @property
    def open_connections(self) -> int:
        """Connections still being served."""
        with self._lock:
            return len(self._open)

    @property
    def complete_requests(self) -> int:
        """Requests whose whole body arrived: each one may have been paid for."""
        return sum(1 for r in self.requests if r.complete)

    def wait_for_requests(self, count: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the hostile server got {len(self.requests)} request(s), not {count}")
            time.sleep(0.005)

    # -- internals --------------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            with self._lock:
                self.connections += 1
                script = self._scripts.pop(0) if self._scripts else None
                if script is None:
                    self.unscripted += 1
                self._open.append(conn)
                thread = threading.Thread(target=self._serve, args=(conn, script), daemon=True)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, script: Optional[Script]) -> None:
        try:
            conn.settimeout(10)
            if script is None:
                self._read_request(conn)
                return
            if script.read_request:
                self._read_request(conn)
            for action in script.actions:
                if self._stop.is_set():
                    return
                self._do(conn, action)
                if isinstance(action, (Close, Reset)):
                    return
        except _ClientGone:
            pass
        except Exception as exc:  # a server bug: reported by the fixture
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            try:
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            # Give the client a moment to read what is in flight before the socket goes.
            try:
                conn.settimeout(0.5)
                while conn.recv(_RECV):
                    pass
            except OSError:
                pass
            conn.close()
            with self._lock:
                if conn in self._open:
                    self._open.remove(conn)

    def _read_request(self, conn: socket.socket) -> None:
        data = bytearray()
        while b"\r\n\r\n" not in data:
            if len(data) > _HEAD_LIMIT:
                raise _ClientGone()
            try:
                chunk = conn.recv(_RECV)
            except OSError:
                raise _ClientGone() from None
            if not chunk:
                raise _ClientGone()
            data += chunk
        head, _, rest = bytes(data).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        request = Request(head_bytes=len(head) + 4, received_at=time.monotonic())
        parts = lines[0].split(" ")
        request.method = parts[0]
        request.path = parts[1] if len(parts) > 1 else ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            request.headers[name.strip().lower()] = value.strip()
        length = request.headers.get("content-length")
        request.expected = int(length) if length and length.isdigit() else 0
        with self._lock:
            self.requests.append(request)
        got = len(rest)
        while got < request.expected:
            try:
                chunk = conn.recv(min(_RECV, request.expected - got))
            except OSError:
                raise _ClientGone() from None
            if not chunk:
                raise _ClientGone()
            got += len(chunk)
        request.body_size = got
        request.complete = got >= request.expected

    def _send(self, conn: socket.socket, data: bytes) -> None:
        try:
            conn.sendall(data)
        except OSError:
            raise _ClientGone() from None
        self.sent_bytes += len(data)

    def _do(self, conn: socket.socket, action: Action) -> None:
        if isinstance(action, Send):
            self._send(conn, action.data)
        elif isinstance(action, Trickle):
            ends = time.monotonic() + action.limit
            for at in range(0, len(action.data), max(action.piece, 1)):
                if time.monotonic() > ends or self._stop.is_set():
                    return
                self._send(conn, action.data[at : at + action.piece])
                if self._stop.wait(action.interval):
                    return
        elif isinstance(action, Stream):
            for chunk in action.make():
                if self._stop.is_set():
                    return
                if chunk:
                    self._send(conn, chunk)
        elif isinstance(action, Sleep):
            self._stop.wait(action.seconds)
        elif isinstance(action, Call):
            action.fn()
        elif isinstance(action, Hold):
            ends = time.monotonic() + action.seconds
            conn.settimeout(0.05)
            while time.monotonic() < ends and not self._stop.is_set():
                try:
                    if conn.recv(_RECV) == b"":
                        return  # the client closed its side
                except socket.timeout:
                    continue
                except OSError:
                    return
        elif isinstance(action, Reset):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            raise _ClientGone()
        elif isinstance(action, Close):
            return


# --------------------------------------------------------------------------------------------------------
# Building answers
# --------------------------------------------------------------------------------------------------------

Headers = Union[None, Dict[str, str], Sequence[Tuple[str, str]]]


def head(
    status: int = 200,
    reason: Optional[str] = None,
    headers: Headers = None,
    length: Optional[int] = None,
    content_type: Optional[str] = "application/json",
    close: bool = True,
) -> bytes:
    """A status line and header block (CRLF), ending in the blank line."""
    reasons = {100: "Continue", 102: "Processing", 103: "Early Hints", 200: "OK", 400: "Bad Request"}
    reasons.update({401: "Unauthorized", 500: "Internal Server Error", 503: "Service Unavailable"})
    lines = [f"HTTP/1.1 {status} {reason if reason is not None else reasons.get(status, 'Status')}"]
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {name.lower() for name, _ in pairs}
    if content_type and "content-type" not in names:
        lines.append(f"Content-Type: {content_type}")
    if length is not None and "content-length" not in names:
        lines.append(f"Content-Length: {length}")
    if close and "connection" not in names:
        lines.append("Connection: close")
    lines.extend(f"{name}: {value}" for name, value in pairs)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def informational(status: int = 103, headers: Headers = None) -> bytes:
    """A 1xx interim answer (no body), e.g. 103 Early Hints."""
    return head(status, headers=headers, content_type=None, close=False)


def reply(
    body: Union[bytes, str, Dict[str, Any], List[Any]],
    status: int = 200,
    headers: Headers = None,
    content_type: str = "application/json",
    length: bool = True,
) -> List[Action]:
    """A complete answer: head and body (JSON-encoded when a dict or list)."""
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode("utf-8")
    elif isinstance(body, str):
        data = body.encode("utf-8")
    else:
        data = body
    return [
        Send(
            head(status, headers=headers, length=len(data) if length else None, content_type=content_type)
            + data
        )
    ]


def sse_head(headers: Headers = None, status: int = 200) -> bytes:
    """The head of a close-delimited event stream."""
    return head(status, headers=headers, content_type="text/event-stream")


def sse(event: Union[Dict[str, Any], bytes, str]) -> bytes:
    """One event: ``data: <json>`` and the blank line (bytes and str go as written)."""
    if isinstance(event, bytes):
        return event
    if isinstance(event, str):
        return event.encode("utf-8")
    return b"data: " + json.dumps(event, separators=(",", ":")).encode("utf-8") + b"\n\n"


def sse_reply(events: Iterable[Union[Dict[str, Any], bytes, str]], headers: Headers = None) -> List[Action]:
    """A whole event stream, sent at once."""
    return [Send(sse_head(headers) + b"".join(sse(e) for e in events))]


def chunked(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """Transfer-Encoding: chunked framing of pieces, with the final zero chunk."""
    for piece in pieces:
        if piece:
            yield f"{len(piece):x}\r\n".encode("ascii") + piece + b"\r\n"
    yield b"0\r\n\r\n"


def repeat(piece: bytes, total: int, chunk: int = MiB) -> Callable[[], Iterator[bytes]]:
    """A factory of ``total`` bytes made of ``piece`` repeated, in chunks of about ``chunk`` bytes."""
    if not piece:
        raise ValueError("piece must not be empty")

    def make() -> Iterator[bytes]:
        block = piece * max(chunk // len(piece), 1)
        left = total
        while left > 0:
            out = block[:left]
            left -= len(out)
            yield out

    return make


def then(*factories: Union[bytes, Callable[[], Iterable[bytes]]]) -> Callable[[], Iterator[bytes]]:
    """A factory joining bytes and other factories, in order."""

    def make() -> Iterator[bytes]:
        for item in factories:
            if isinstance(item, (bytes, bytearray)):
                yield bytes(item)
            else:
                yield from item()

    return make


# --------------------------------------------------------------------------------------------------------
# Images, small and huge
# --------------------------------------------------------------------------------------------------------


def tiny_png(shade: int = 0) -> bytes:
    """A valid 4x4 RGB PNG (about 70 bytes); ``shade`` makes distinct ones."""
    return solid_png((4, 4), (shade % 256, 40, 200))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def big_png_b64(total_b64: int, piece: int = 3 * MiB) -> Tuple[int, Callable[[], Iterator[bytes]]]:
    """A PNG whose base64 is about ``total_b64`` bytes, generated lazily, chunk CRCs and all.

    Returns (exact base64 length, factory of its base64 chunks). The PNG is structurally valid (signature,
    IHDR, one IDAT of zeros with the right CRC, IEND), so only a size cap stops a client from taking it.
    """
    raw_total = total_b64 // 4 * 3
    sig_ihdr = png_head(8192, 8192)
    iend = png_chunk(b"IEND", b"")
    idat_len = max(raw_total - len(sig_ihdr) - len(iend) - 12, 1)
    raw_total = len(sig_ihdr) + 12 + idat_len + len(iend)
    b64_len = (raw_total + 2) // 3 * 4
    piece = piece // 3 * 3 or 3

    def make() -> Iterator[bytes]:
        carry = b""
        crc = zlib.crc32(b"IDAT")

        def raw() -> Iterator[bytes]:
            nonlocal crc
            yield sig_ihdr + struct.pack(">I", idat_len) + b"IDAT"
            zeros = bytes(piece)
            left = idat_len
            while left > 0:
                out = zeros[: min(left, piece)]
                crc = zlib.crc32(out, crc)
                left -= len(out)
                yield out
            yield struct.pack(">I", crc & 0xFFFFFFFF) + iend

        for part in raw():
            data = carry + part
            cut = len(data) // 3 * 3
            carry = data[cut:]
            if cut:
                yield base64.b64encode(data[:cut])
        if carry:
            yield base64.b64encode(carry)

    return b64_len, make


# --------------------------------------------------------------------------------------------------------
# Bodies the routes expect
# --------------------------------------------------------------------------------------------------------


def images_body(images: Sequence[bytes], **extra: Any) -> Dict[str, Any]:
    """An Images API JSON body with these pictures."""
    body: Dict[str, Any] = {"created": 1, "data": [{"b64_json": b64(img)} for img in images]}
    body.update({"usage": {"total_tokens": 10, "input_tokens": 5, "output_tokens": 5}})
    body.update(extra)
    return body


def partial_event(image: bytes, index: Any, kind: str = "image_generation") -> Dict[str, Any]:
    return {"type": f"{kind}.partial_image", "b64_json": b64(image), "partial_image_index": index}


def completed_event(image: bytes, kind: str = "image_generation", **extra: Any) -> Dict[str, Any]:
    event = {"type": f"{kind}.completed", "b64_json": b64(image), "output_format": "png"}
    event.update(extra)
    return event


def responses_body(images: Sequence[bytes], text: Optional[str] = None, **extra: Any) -> Dict[str, Any]:
    """A Responses API JSON body with one image_generation_call item per picture."""
    output: List[Dict[str, Any]] = [
        {"type": "image_generation_call", "id": f"ig_{i}", "status": "completed", "result": b64(img)}
        for i, img in enumerate(images)
    ]
    if text is not None:
        output.append(
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text}],
            }
        )
    body: Dict[str, Any] = {"id": "resp_1", "object": "response", "status": "completed", "output": output}
    body.update(extra)
    return body

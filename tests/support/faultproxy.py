"""A fault-injecting HTTP/1.1 forwarding proxy for S3 endpoints, for tests.

It sits between the backend and a real server (moto, LocalStack) on 127.0.0.1 and, for a seeded random
share of the requests, misbehaves the way networks and busy services do:

- ``503``: answer ``503 SlowDown`` without forwarding;
- ``500``: answer ``500 InternalError`` without forwarding;
- ``drop``: read the request, then close the connection without any answer;
- ``delay``: wait ``delay_seconds``, then forward normally;
- ``403`` (only when asked for): answer ``403 AccessDenied``, as a service does for wrong credentials;
- ``lost_response``: forward the request (the server executes it!), read the answer, then close the
  connection without passing it on.  This is the case that makes retried writes dangerous.
- ``cut_body`` (only when asked for): pass on the status, headers and about half of the body, then close
  the connection: a download that breaks mid-stream.
- ``flip_byte`` (only when asked for): pass on the whole answer with one byte of its body changed (the
  middle one): damage in transit that no TCP checksum caught, which only an end-to-end check can see.
- ``409`` (only when asked for): answer ``409 ConditionalRequestConflict`` without forwarding, as AWS does
  when conditional writes to one key race (PutObject may be retried; a multipart upload must start again).
- ``landed_412`` (only when asked for): forward the request (it lands), then answer ``412
  PreconditionFailed`` instead of the server's answer: the write happened although the client is told that
  the key was there already.
- ``refuse_delete`` (only when asked for): refuse a delete without forwarding it, as a bucket policy denying
  ``s3:DeleteObject`` (or Object Lock retention of the version named) does: a DELETE is answered ``403
  AccessDenied``, a multi-object delete (``POST ?delete``) ``200`` with an ``AccessDenied`` error per key;
  ``refuse_delete_500`` likewise with ``InternalError`` (a passing failure, per key).

Two modes emulate services without working conditional writes, for every PUT/POST carrying ``If-Match`` or
``If-None-Match``: ``no_conditional_writes`` answers ``501 NotImplemented``; ``strip_conditional`` removes
the headers and forwards the request, like a service that accepts them and ignores them (moto and
LocalStack do not verify signatures, so the now unsigned-for header list does not matter to them).

Bodies are streamed in both directions; request bodies with ``Content-Length`` and ``Transfer-Encoding:
chunked`` (incl. aws-chunked payloads inside) are forwarded unchanged; client connections stay alive across
requests, each forwarded request uses its own upstream connection (cheap on localhost, and immune to
upstream keep-alive timeouts).
"""

from __future__ import annotations

import contextlib
import http.client
import random
import re
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FAULT_KINDS = ("503", "500", "drop", "delay", "lost_response")
# only on request: "403 AccessDenied" (wrong credentials), broken downloads, racing conditional writes, and
# a 412 answered to a write that did land
EXTRA_KINDS = ("403", "cut_body", "flip_byte", "409", "landed_412", "refuse_delete", "refuse_delete_500")
CONDITIONAL_HEADERS = ("if-none-match", "if-match")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
    "expect",
}
BLOCK = 64 * 1024

_ERROR_BODIES = {
    "503": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
    "500": (500, "Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
    "501": (501, "Not Implemented", "NotImplemented", "A header you provided implies functionality not implemented."),
    "403": (403, "Forbidden", "AccessDenied", "Access Denied"),
    "409": (
        409,
        "Conflict",
        "ConditionalRequestConflict",
        "A conflicting operation occurred. If using PutObject you can retry the request. If using multipart "
        "upload you should initiate another CreateMultipartUpload request and re-upload each part.",
    ),
    "412": (
        412,
        "Precondition Failed",
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
    ),
}


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        fault_rate: float = 0.15,
        seed: int = 0,
        *,
        kinds: Iterable[str] | None = None,
        methods: Iterable[str] | None = None,
        path_contains: str | None = None,
        max_faults: int | None = None,
        delay_seconds: float = 0.2,
        no_conditional_writes: bool = False,
        strip_conditional: bool = False,
    ):
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.fault_rate = fault_rate
        self.kinds = tuple(kinds) if kinds is not None else FAULT_KINDS
        unknown = set(self.kinds) - set(FAULT_KINDS + EXTRA_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        self.methods = {m.upper() for m in methods} if methods is not None else None
        self.path_contains = path_contains
        self.max_faults = max_faults
        self.delay_seconds = delay_seconds
        self.no_conditional_writes = no_conditional_writes  # emulate a service without If-(None-)Match on writes
        self.strip_conditional = strip_conditional  # emulate a service that accepts and ignores them
        self.rejected_conditional = 0
        self.stripped_conditional = 0
        self.faults: dict[str, int] = dict.fromkeys(FAULT_KINDS + EXTRA_KINDS, 0)
        self.requests = 0  # every request the proxy saw
        self.forwarded = 0  # requests that reached the server
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def total_faults(self) -> int:
        with self._lock:
            return sum(self.faults.values())

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def choose(self, method: str, path: str) -> str | None:
        """Decide the fault for one request (or None), counting it."""
        with self._lock:
            self.requests += 1
            if self.methods is not None and method not in self.methods:
                return None
            if self.path_contains is not None and self.path_contains not in path:
                return None
            if self.max_faults is not None and sum(self.faults.values()) >= self.max_faults:
                return None
            if self._rng.random() >= self.fault_rate:
                return None
            kind = self._rng.choice(self.kinds)
            self.faults[kind] += 1
            return kind

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


def _make_handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(_ProxyHandler):
        pass

    Handler.proxy = proxy
    return Handler


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: FaultProxy

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass  # quiet: pytest output stays readable

    def setup(self):
        super().setup()
        self.proxy._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.proxy._track(self.connection, False)

    def do_GET(self):
        self._handle()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    # --- request body ---------------------------------------------------------------------------------------

    def _request_body(self) -> Iterator[bytes]:
        """The raw request body as it came (chunk framing included, so it can be forwarded unchanged)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("client closed inside a chunked body")
                yield line
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers, up to the empty line
                        trailer = self.rfile.readline(65537)
                        yield trailer
                        if trailer in (b"\r\n", b"\n", b""):
                            return
                remaining = size + 2  # chunk data and its CRLF
                while remaining:
                    block = self.rfile.read(min(BLOCK, remaining))
                    if not block:
                        raise ConnectionError("client closed inside a chunk")
                    remaining -= len(block)
                    yield block
        else:
            remaining = int(self.headers.get("Content-Length", "0") or 0)
            while remaining:
                block = self.rfile.read(min(BLOCK, remaining))
                if not block:
                    raise ConnectionError("client closed inside the body")
                remaining -= len(block)
                yield block

    def _drain(self) -> None:
        for _ in self._request_body():
            pass

    # --- one request ----------------------------------------------------------------------------------------

    def _handle(self) -> None:
        conditional = self.command in ("PUT", "POST") and any(h in self.headers for h in ("If-None-Match", "If-Match"))
        strip = False
        if self.proxy.no_conditional_writes and conditional:
            with self.proxy._lock:
                self.proxy.rejected_conditional += 1
            kind: str | None = "501"
        else:
            if self.proxy.strip_conditional and conditional:
                with self.proxy._lock:
                    self.proxy.stripped_conditional += 1
                strip = True
            kind = self.proxy.choose(self.command, self.path)
        try:
            if kind in _ERROR_BODIES:
                self._drain()
                self._send_error_response(kind)
                return
            if kind == "drop":
                self._drain()
                self._close_silently()
                return
            if kind == "delay":
                time.sleep(self.proxy.delay_seconds)
            if kind in ("refuse_delete", "refuse_delete_500"):
                self._refuse_delete("InternalError" if kind == "refuse_delete_500" else "AccessDenied")
                return
            if kind == "landed_412":
                self._forward(lose_response=True, strip_conditional=strip, answer="412")
                return
            self._forward(
                lose_response=kind == "lost_response",
                cut_body=kind == "cut_body",
                flip_byte=kind == "flip_byte",
                strip_conditional=strip,
            )
        except (ConnectionError, OSError, http.client.HTTPException):
            self.close_connection = True

    def _send_error_response(self, kind: str) -> None:
        status, reason, code, message = _ERROR_BODIES[kind]
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>faultproxy</RequestId></Error>"
        ).encode()
        self.send_response(status, reason)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _refuse_delete(self, code: str) -> None:
        """``refuse_delete``: nothing is deleted; a DELETE gets 403 (500), a multi-object delete a per-key error."""
        body = b"".join(self._request_body())
        if self.command != "POST":
            self._send_error_response("403" if code == "AccessDenied" else "500")
            return
        errors = "".join(
            f"<Error><Key>{key}</Key><Code>{code}</Code><Message>refused by the fault proxy</Message></Error>"
            for key in re.findall(r"<Key>(.*?)</Key>", body.decode("utf-8", "replace"))
        )
        answer = f'<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult>{errors}</DeleteResult>'.encode()
        self.send_response(200, "OK")
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        self.wfile.flush()

    def _close_silently(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _forward(
        self,
        *,
        lose_response: bool,
        cut_body: bool = False,
        flip_byte: bool = False,
        strip_conditional: bool = False,
        answer: str | None = None,
    ) -> None:
        """Forward the request; with ``lose_response`` drop the server's answer and close the connection,
        or, with ``answer`` as well, send that error response instead of the server's answer."""
        upstream = http.client.HTTPConnection(self.proxy.upstream_host, self.proxy.upstream_port, timeout=120)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                low = name.lower()
                if low in HOP_BY_HOP or (strip_conditional and low in CONDITIONAL_HEADERS):
                    continue
                upstream.putheader(name, value)
            upstream.endheaders()
            for block in self._request_body():
                upstream.send(block)
            response = upstream.getresponse()
            with self.proxy._lock:
                self.proxy.forwarded += 1
            if lose_response:
                response.read()  # the server has done its work; the client never learns about it
                if answer is not None:
                    self._send_error_response(answer)
                    return
                self._close_silently()
                return
            self._relay(response, cut_body=cut_body, flip_byte=flip_byte)
        finally:
            upstream.close()

    def _relay(self, response: http.client.HTTPResponse, *, cut_body: bool = False, flip_byte: bool = False) -> None:
        out = [f"HTTP/1.1 {response.status} {response.reason}\r\n".encode("latin-1")]
        has_body = self.command != "HEAD" and response.status not in (204, 304)
        # a close-delimited upstream body is re-framed too: the client connection stays alive
        rechunk = has_body and (response.chunked or response.getheader("Content-Length") is None)
        for name, value in response.getheaders():
            low = name.lower()
            if low in HOP_BY_HOP or low == "transfer-encoding":
                continue
            out.append(f"{name}: {value}\r\n".encode("latin-1"))
        if rechunk:
            out.append(b"Transfer-Encoding: chunked\r\n")
        # the upstream closes after this answer, and so will we: say so, or the client may send its next
        # request on a connection that is about to close (a spurious, uncounted-for retry in the tests)
        closing = response.getheader("Connection", "").lower() == "close"
        if closing:
            out.append(b"Connection: close\r\n")
        out.append(b"\r\n")
        self.wfile.write(b"".join(out))
        if has_body and cut_body:
            length = int(response.getheader("Content-Length") or 2 * BLOCK)
            self.wfile.write(response.read(max(1, length // 2)))
            self.wfile.flush()
            self._close_silently()
            return
        if has_body and flip_byte:
            body = bytearray(response.read())
            if body:
                body[len(body) // 2] ^= 0x01
            if rechunk:
                body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
            self.wfile.write(body)
        elif has_body:
            while True:
                block = response.read(BLOCK)
                if not block:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block) if rechunk else block)
            if rechunk:
                self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        if closing:
            self.close_connection = True

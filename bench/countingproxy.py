#!/usr/bin/env python3
"""A small forwarding HTTP proxy that counts S3 requests by type, for tool-independent request numbers.

Why: restic does not report how many S3 requests it makes, and a tool's own counters can only be trusted
as far as the tool's own code.  Putting the same proxy in front of the S3 server for *every* tool counts
all of them identically, at the wire.

It is a reverse proxy: a client is pointed at ``http://127.0.0.1:PROXY_PORT`` as if it were the S3
endpoint, and each request is relayed unchanged (same path, query, headers including ``Host`` and the
SigV4 signature) to the upstream server over a keep-alive connection.  Bodies are streamed in both
directions, so memory stays small even for multi-GiB uploads.

Classification (path-style addressing, which is what clients use for an IP endpoint):

========  ===============================================================================
PUT       PUT object or multipart part, without ``x-amz-copy-source``
COPY      PUT with ``x-amz-copy-source`` (CopyObject, UploadPartCopy)
GET       GET of an object (including ranged GETs) or a bucket sub-resource (``?location``)
HEAD      HEAD of an object or bucket
LIST      GET on a bucket with no key (ListObjects/V2, ListMultipartUploads, ...)
DELETE    DELETE of an object, bucket or multipart upload
POST      POST (multi-object delete ``?delete``, multipart initiate/complete)
========  ===============================================================================

``bytes_up``/``bytes_down`` count request/response body bytes; ``errors`` counts responses with status
>= 400 (a 404 on HEAD is a normal "does not exist" probe, so errors are informational).  Finer detail
(``POST?delete``, ``POST?uploads``, ``PUT?partNumber``, ``PUT?retention`` (PutObjectRetention),
``POST?restore`` (RestoreObject), status codes) is kept under ``detail``.

``latency`` (seconds, ``--latency-ms``) holds every request that long before relaying it: a loopback server
answers in well under a millisecond, a bucket in a distant region takes tens of milliseconds per round
trip, and a tool that keeps few requests in flight pays that per request.  The delay is per request, in
the request's own thread, so requests in flight overlap their delays as they would on a real link.

Run standalone (``--listen 127.0.0.1:0 --upstream http://127.0.0.1:PORT``), or embed with
:class:`CountingProxy`.  A standalone proxy serves its counters at ``GET /__proxy__/stats`` and resets
them on ``POST /__proxy__/reset``; those requests are not forwarded and not counted.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import socketserver
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAIN_KINDS = ("PUT", "GET", "HEAD", "LIST", "DELETE", "POST", "COPY")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "upgrade",
    "expect",
}
BUF = 1024 * 1024
CONTROL_PREFIX = "/__proxy__/"
SETTLE_SECONDS = 10.0  # the longest a snapshot waits for requests in flight (a held request, a busy proxy)


def classify(method: str, path: str, headers: dict[str, str] | http.client.HTTPMessage) -> tuple[str, str]:
    """Return ``(main kind, detail)`` for one S3 request (path-style addressing).

    The detail names the S3 sub-operation where the method alone is ambiguous, so the JSON can show, say,
    how many POSTs were multi-object deletes.
    """
    parts = urlsplit(path)
    query = parse_qs(parts.query, keep_blank_values=True)
    segs = [s for s in parts.path.split("/") if s]
    has_key = len(segs) >= 2
    method = method.upper()
    sub = "&".join(sorted(k for k in query if k in {"delete", "uploads", "uploadId", "partNumber", "tagging",
                                                     "acl", "versioning", "location", "list-type", "lifecycle",
                                                     "retention", "restore", "object-lock"}))
    detail = f"{method}?{sub}" if sub else method
    if method == "PUT":
        copy = headers.get("x-amz-copy-source") if hasattr(headers, "get") else None
        return ("COPY" if copy else "PUT"), detail
    if method == "GET":
        if not has_key:
            bucket_subresources = {"location", "versioning", "acl", "policy", "lifecycle", "tagging", "cors",
                                   "object-lock", "encryption", "website", "logging", "notification"}
            if any(k in bucket_subresources for k in query):
                return "GET", detail
            return "LIST", "LIST?" + ("v2" if query.get("list-type") == ["2"] else "uploads" if "uploads" in query
                                      else "v1")
        return "GET", ("GET?range" if hasattr(headers, "get") and headers.get("range") else detail)
    if method in ("HEAD", "DELETE", "POST"):
        return method, detail
    return method, detail


class Counters:
    """Thread-safe request counters; ``snapshot()`` gives a plain dict for JSON and deltas.

    A request is counted once its answer is relayed (its status and sizes are known then), which can be just
    after the client has the answer: ``snapshot()`` first waits for the requests in flight, so counters read
    after a tool's last answer include it.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._main: Counter[str] = Counter()
        self._detail: Counter[str] = Counter()
        self._in_flight = 0

    def begin(self) -> None:
        with self._lock:
            self._in_flight += 1

    def end(self) -> None:
        with self._lock:
            self._in_flight -= 1
            if not self._in_flight:
                self._lock.notify_all()

    def add(self, kind: str, detail: str, status: int, up: int, down: int) -> None:
        with self._lock:
            self._main[kind] += 1
            self._detail[detail] += 1
            self._detail[f"status:{status}"] += 1
            if status >= 400:
                self._main["errors"] += 1
            self._main["bytes_up"] += up
            self._main["bytes_down"] += down

    def snapshot(self) -> dict:
        with self._lock:
            self._lock.wait_for(lambda: not self._in_flight, timeout=SETTLE_SECONDS)
            out: dict = {k: self._main.get(k, 0) for k in (*MAIN_KINDS, "errors", "bytes_up", "bytes_down")}
            out["total"] = sum(self._main.get(k, 0) for k in MAIN_KINDS)
            out["detail"] = dict(sorted(self._detail.items()))
            return out

    def reset(self) -> None:
        with self._lock:
            self._main.clear()
            self._detail.clear()


def delta(after: dict, before: dict) -> dict:
    """Counter difference between two snapshots (numbers only, recursing into ``detail``)."""
    out: dict = {}
    for k, v in after.items():
        if isinstance(v, dict):
            out[k] = {dk: dv - before.get(k, {}).get(dk, 0) for dk, dv in v.items()
                      if dv - before.get(k, {}).get(dk, 0)}
        else:
            out[k] = v - before.get(k, 0)
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, the second small write waits for the
    # client's delayed ACK (~40 ms per request on Linux), which would dwarf the request itself.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature from the base class
        """Silence per-request logging: the benchmark's output is the table, not an access log."""

    def _upstream(self) -> http.client.HTTPConnection:
        # A fresh upstream connection per request: on loopback a connect costs microseconds, and it rules out
        # the stale keep-alive races (upstream closed an idle socket just as a body was sent) that would
        # otherwise need replaying request bodies.
        return http.client.HTTPConnection(self.server.upstream_host, self.server.upstream_port, timeout=600)

    def _control(self) -> None:
        if self.command == "POST" and self.path.startswith(CONTROL_PREFIX + "reset"):
            self.server.counters.reset()
            body = b"{}"
        else:
            body = json.dumps(self.server.counters.snapshot()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _relay(self) -> None:
        if self.path.startswith(CONTROL_PREFIX):
            self._control()
            return
        self.server.counters.begin()
        try:
            self._relay_counted()
        finally:
            self.server.counters.end()

    def _relay_counted(self) -> None:
        kind, detail = classify(self.command, self.path, self.headers)
        if self.server.latency:
            time.sleep(self.server.latency)
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        length = int(self.headers.get("Content-Length") or 0)
        up = 0
        conn = self._upstream()
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in self.headers.items():
            if k.lower() not in HOP_BY_HOP:
                conn.putheader(k, v)
        conn.endheaders()
        if chunked:
            up = self._relay_chunked(conn)
        else:
            left = length
            while left > 0:
                piece = self.rfile.read(min(BUF, left))
                if not piece:
                    break
                conn.send(piece)
                left -= len(piece)
                up += len(piece)
        resp = conn.getresponse()
        self.send_response_only(resp.status, resp.reason)
        resp_chunked = resp.chunked
        body_after: bytes | None = None
        if resp_chunked:
            # Re-framed with a Content-Length: S3 error and list bodies are small, so buffering is fine.
            body_after = resp.read()
        for k, v in resp.getheaders():
            lk = k.lower()
            if lk in HOP_BY_HOP or lk == "transfer-encoding" or (resp_chunked and lk == "content-length"):
                continue
            self.send_header(k, v)
        if body_after is not None:
            self.send_header("Content-Length", str(len(body_after)))
        self.end_headers()
        down = 0
        if body_after is not None:
            self.wfile.write(body_after)
            down = len(body_after)
        elif self.command != "HEAD":
            while piece := resp.read(BUF):
                self.wfile.write(piece)
                down += len(piece)
        else:
            resp.read()
        conn.close()
        self.server.counters.add(kind, detail, resp.status, up, down)

    def _relay_chunked(self, conn: http.client.HTTPConnection) -> int:
        """Forward an HTTP/1.1 chunked request body verbatim; returns the payload bytes."""
        total = 0
        while True:
            line = self.rfile.readline()
            conn.send(line)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    trailer = self.rfile.readline()
                    conn.send(trailer)
                    if trailer in (b"\r\n", b"\n", b""):
                        return total
            left = size + 2  # data + CRLF
            while left > 0:
                piece = self.rfile.read(min(BUF, left))
                if not piece:
                    return total
                conn.send(piece)
                left -= len(piece)
            total += size

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay  # noqa: N815 - names required by BaseHTTPRequestHandler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], upstream: str, counters: Counters, latency: float = 0.0) -> None:
        super().__init__(addr, _Handler)
        self.latency = latency
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.counters = counters

    def handle_error(self, request: socketserver.BaseRequest, client_address: tuple[str, int]) -> None:
        """A client hanging up mid-transfer is not worth a traceback on the benchmark's console."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class CountingProxy:
    """An embeddable proxy: ``with CountingProxy(upstream) as p: ... p.url ... p.snapshot()``."""

    def __init__(self, upstream: str, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0) -> None:
        self.counters = Counters()
        self._server = _Server((host, port), upstream, self.counters, latency)
        self._thread = threading.Thread(target=self._server.serve_forever, name="countingproxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> CountingProxy:
        self._thread.start()
        return self

    def snapshot(self) -> dict:
        return self.counters.snapshot()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Standalone use: print the listening URL, serve until interrupted, print final counters."""
    ap = argparse.ArgumentParser(description="Counting S3 forwarding proxy")
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0 picks a free one)")
    ap.add_argument("--upstream", required=True, help="http://HOST:PORT of the S3 server")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="delay every request this long (a distant region)")
    args = ap.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    proxy = CountingProxy(args.upstream, host or "127.0.0.1", int(port), latency=args.latency_ms / 1000)
    print(proxy.url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        proxy._server.serve_forever()
    print(json.dumps(proxy.snapshot(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

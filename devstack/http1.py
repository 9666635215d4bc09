"""One keep-alive HTTP/1.1 client connection over asyncio streams: a request, then its whole response.

Shared by the load generator and the emulator's REST API call node, which run beside the servers
they drive on the same 2 cores, so the client's CPU per call counts. Measured against httpx 0.28.1
(with sniffio) on one local keep-alive server, POST of 96 B, Python 3.11
(``flock /tmp/pytest.lock .venv/bin/python -m bench.http_client --calls 3000 --rounds 3``):
one caller, 0.077 ms of CPU per call here against 0.77 ms for httpx (p99 0.48 ms against 1.6 ms);
16 concurrent callers, 0.030 ms against 1.28 ms (p99 0.69 ms against 112 ms).
No pipelining: a connection carries one request at a time; pooling is the caller's business.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

# Statuses whose responses never carry a body (RFC 9110 s.6.4.1), besides any answer to HEAD.
_NO_BODY_STATUSES = frozenset({204, 304})


class HttpProtocolError(ValueError):
    """The peer answered something that is not an HTTP/1.x response we can read."""


@dataclass(slots=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes


class Http1Connection:
    """A lazily opened keep-alive connection to one origin; reopened when the server closed it."""

    def __init__(self, host: str, port: int, *, tls: ssl.SSLContext | None = None) -> None:
        self.host, self.port = host, port
        self._tls = tls
        self._host_header = f"Host: {host}:{port}\r\n".encode()
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._answered = 0  # responses read on the current connection

    @property
    def is_idle_open(self) -> bool:
        """Open and not closed by the server while idle (EOF already seen by the loop)."""
        if self._streams is None:
            return False
        reader, writer = self._streams
        return not (reader.at_eof() or writer.is_closing())

    async def connect(self) -> None:
        if self._streams is None:
            self._streams = await asyncio.open_connection(
                self.host, self.port, ssl=self._tls, server_hostname=self.host if self._tls else None
            )
            self._answered = 0

    async def request(self, method: str, target: str, head: bytes, body: bytes | None = None) -> Response:
        """Send one request and read its response.

        ``head`` holds the caller's header lines, each ending in CRLF; Host and Content-Length are
        added here. A connection the server closed while idle gets one fresh try, as any keep-alive
        client does: the request never reached the application if no byte of an answer came back.
        """
        reused = self._streams is not None and self._answered > 0
        try:
            return await self._exchange(method, target, head, body)
        except (OSError, asyncio.IncompleteReadError) as exc:
            if not reused or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                raise
        return await self._exchange(method, target, head, body)

    async def _exchange(self, method: str, target: str, head: bytes, body: bytes | None) -> Response:
        await self.connect()
        assert self._streams is not None
        reader, writer = self._streams
        try:
            length = b"" if body is None else b"Content-Length: " + str(len(body)).encode() + b"\r\n"
            writer.write(
                method.encode() + b" " + target.encode() + b" HTTP/1.1\r\n" + self._host_header + head
                + length + b"\r\n" + (body or b"")
            )  # fmt: skip
            response, keep_alive = await _read_response(reader, method == "HEAD")
        except BaseException:
            self.close()
            raise
        self._answered += 1
        if not keep_alive:
            self.close()
        return response

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


async def _read_response(reader: asyncio.StreamReader, is_head: bool) -> tuple[Response, bool]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:  # longer than the reader's limit (64 KiB): refused, not buffered
        raise HttpProtocolError("response head too large") from None
    status_line, *lines = raw[:-4].decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise HttpProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    status = int(code)
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
    if is_head or status in _NO_BODY_STATUSES or 100 <= status < 200:
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif (length := headers.get("content-length")) is not None:
        if not length.isdigit():
            raise HttpProtocolError(f"bad Content-Length {length[:40]!r}")
        body = await reader.readexactly(int(length))
    else:  # no framing: the body runs to the end of the connection
        body, keep_alive = await reader.read(), False
    return Response(status, reason, headers, body), keep_alive


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = (await reader.readuntil(b"\r\n"))[:-2].split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise HttpProtocolError(f"bad chunk size {size_line[:40]!r}") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, ignored
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)

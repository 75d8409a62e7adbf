"""A minimal HTTP proxy for tests: CONNECT tunnels and plain forwarding to loopback."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class ConnectProxy:
    """Records every CONNECT target and pipes bytes both ways."""

    targets: list[str] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._writers.append(writer)
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, rest = head.split(b"\r\n", 1)
        method, target, version = request_line.decode().split(" ", 2)
        if method != "CONNECT":
            await self._forward(reader, writer, method, target, version, rest)
            return
        host, _, port = target.rpartition(":")
        if host not in ("127.0.0.1", "localhost"):
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        self.targets.append(target)
        upstream_reader, upstream_writer = await asyncio.open_connection(
            host, int(port)
        )
        self._writers.append(upstream_writer)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    async def _forward(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        target: str,
        version: str,
        rest: bytes,
    ) -> None:
        """Forward an absolute-form request; later requests reuse the same target."""
        parts = urlsplit(target)
        if parts.hostname not in ("127.0.0.1", "localhost") or parts.port is None:
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        self.targets.append(target)
        upstream_reader, upstream_writer = await asyncio.open_connection(
            parts.hostname, parts.port
        )
        self._writers.append(upstream_writer)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        upstream_writer.write(f"{method} {path} {version}\r\n".encode() + rest)
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(ConnectionError):
                writer.close()

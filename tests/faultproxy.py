"""A TCP proxy between a node and PostgreSQL that scripts network faults (tests only, never the product).

It forwards bytes both ways and can, on command:

* **lose acknowledgements**: watch the server's messages for the reply to `COMMIT` (a
  CommandComplete whose tag is `COMMIT`) and, for a chosen fraction of them, close both sides
  instead of passing that reply on — the server has committed, the client never hears it;
* **delay** every chunk by a fixed time;
* **partition** (black-hole): stop passing bytes in either direction, on open connections and new
  ones alike, so that the node's statements hang as they do behind a dead link; **heal** passes
  them on again (what was held is delivered, as TCP retransmission would);
* **cut** every open connection at once (a flapping link: cut, heal, cut ...).

It speaks just enough of the PostgreSQL wire protocol for this: it answers the client's
SSLRequest / GSSENCRequest itself with "no" (so the stream stays readable), and splits the
server's stream into its framed messages (type byte, 32-bit length). It runs its own event loop
in a thread, so synchronous tests that drive real node processes can use it.
"""

from __future__ import annotations

import asyncio
import random
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


@dataclass
class Counters:
    """What the proxy saw and did."""

    connections: int = 0
    commits: int = 0
    acks_lost: int = 0
    cuts: int = 0


@dataclass(eq=False)
class _Link:
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter]
    server: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        for writer in (self.client[1], self.server[1] if self.server else None):
            if writer is not None:
                writer.close()
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    """`FaultProxy(host, port).start()` listens on `self.port` and forwards to (host, port)."""

    def __init__(self, upstream_host: str, upstream_port: int, *, seed: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.counters = Counters()
        self.random = random.Random(seed)
        self._loss = 0.0
        self._delay = 0.0
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._open: asyncio.Event | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)

    # ------------------------------------------------------------ control (any thread)

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen)
        return self

    def stop(self) -> None:
        self._call(self._shutdown)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def lose_commit_acks(self, fraction: float) -> None:
        """Drop the connection instead of passing on this fraction of replies to COMMIT (0 to stop)."""
        self._loss = fraction

    def delay(self, seconds: float) -> None:
        """Hold every chunk this long before passing it on (0 to stop)."""
        self._delay = seconds

    def partition(self) -> None:
        """Black-hole: pass nothing either way until `heal`."""
        self._call(self._close_gate)

    def heal(self) -> None:
        """Pass bytes again (what was held goes first)."""
        self._call(self._open_gate)

    def cut(self) -> None:
        """Close every open connection now (both sides)."""
        self._call(self._cut)

    def _call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            result = fn()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    # ------------------------------------------------------------ the loop's side

    async def _listen(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        self._cut()
        if self._server is not None:
            self._server.close()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _close_gate(self) -> None:
        assert self._open is not None
        self._open.clear()

    def _open_gate(self) -> None:
        assert self._open is not None
        self._open.set()

    def _cut(self) -> None:
        self.counters.cuts += 1
        for link in list(self._links):
            link.close()
        self._links.clear()

    async def _pass(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        assert self._open is not None
        if self._delay:
            await asyncio.sleep(self._delay)
        await self._open.wait()
        writer.write(data)
        await writer.drain()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link((reader, writer))
        self._links.add(link)
        self.counters.connections += 1
        try:
            assert self._open is not None
            await self._open.wait()
            first = await self._negotiate(reader, writer)
            server = await asyncio.open_connection(*self.upstream)
            link.server = server
            await self._pass(server[1], first)
            link.tasks = [asyncio.create_task(self._client_to_server(reader, server[1]))]
            await self._server_to_client(link, server[0], writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            link.close()
            self._links.discard(link)

    async def _negotiate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        """Refuse encryption requests ourselves; return the client's startup message."""
        while True:
            header = await reader.readexactly(8)
            length, code = struct.unpack("!ii", header)
            if length == 8 and code in (SSL_REQUEST, GSSENC_REQUEST):
                writer.write(b"N")
                await writer.drain()
                continue
            return header + await reader.readexactly(length - 8)

    async def _client_to_server(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._pass(writer, data)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _server_to_client(self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = b""
        while data := await reader.read(65536):
            buffer += data
            ready, buffer = _whole_messages(buffer)
            passed = b""
            for kind, body, raw in ready:
                if kind == b"C" and body.rstrip(b"\0") == b"COMMIT":
                    self.counters.commits += 1
                    if self._loss and self.random.random() < self._loss:
                        # The server committed; the client is told the connection dropped.
                        self.counters.acks_lost += 1
                        if passed:
                            await self._pass(writer, passed)
                        link.close()
                        return
                passed += raw
            if passed:
                await self._pass(writer, passed)


def _whole_messages(buffer: bytes) -> tuple[list[tuple[bytes, bytes, bytes]], bytes]:
    """Split framed server messages: [(type, body, raw bytes)], and the incomplete rest."""
    messages = []
    at = 0
    while len(buffer) - at >= 5:
        (length,) = struct.unpack("!i", buffer[at + 1 : at + 5])
        end = at + 1 + length
        if end > len(buffer):
            break
        messages.append((buffer[at : at + 1], buffer[at + 5 : end], buffer[at:end]))
        at = end
    return messages, buffer[at:]

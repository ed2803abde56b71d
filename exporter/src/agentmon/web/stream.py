"""A connection's bytes, plain or TLS over memory BIOs on the event loop, and the turns that
order TLS handshakes (the costly step) newest first."""

from __future__ import annotations

import asyncio
import socket
import ssl


class Stream:
    """A connection's bytes, plain or through TLS on memory BIOs, driven by the event loop.

    Reads are small (4 KiB) whatever the peer sends, so a connection costs what it buffers and
    nothing more; the TLS state (tens of KiB) is made only once the client has sent its first
    bytes, so a silent socket costs a few KiB. Closing is the owner's job (by cancelling)."""

    CHUNK = 4096

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._loop = asyncio.get_running_loop()
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.tls: ssl.SSLObject | None = None

    async def handshake(self, ssl_context: ssl.SSLContext, turns: Turns) -> bool:
        """TLS handshake; False when the client left first."""
        first = await self._loop.sock_recv(self.sock, self.CHUNK)
        if not first:
            return False
        self._in.write(first)
        await turns.wait()  # the costly step (key exchange, signature): newest client first
        tls = self.tls = ssl_context.wrap_bio(self._in, self._out, server_side=True)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                if not await self._fill():
                    return False
            except ssl.SSLError:
                await self._flush()  # the alert tells the client why
                raise
        await self._flush()
        return True

    async def read(self) -> bytes:
        """Some bytes, or b"" at the end of the stream."""
        if self.tls is None:
            return await self._loop.sock_recv(self.sock, self.CHUNK)
        while True:
            try:
                return self.tls.read(self.CHUNK)
            except ssl.SSLWantReadError:
                await self._flush()
                if not await self._fill():
                    return b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    async def write(self, data: bytes) -> None:
        if self.tls is None:
            await self._loop.sock_sendall(self.sock, data)
        else:
            self.tls.write(data)
            await self._flush()

    async def _fill(self) -> bool:
        data = await self._loop.sock_recv(self.sock, self.CHUNK)
        if not data:
            self._in.write_eof()
            return False
        self._in.write(data)
        return True

    async def _flush(self) -> None:
        data = self._out.read()
        if data:
            await self._loop.sock_sendall(self.sock, data)


class Turns:
    """Hands out turns for a CPU-bound step, newest waiter first and a few per loop iteration.

    A burst of hundreds of handshakes (attackers reconnecting together) would otherwise run
    in one long loop iteration, in arrival order, ahead of a scraper that came a moment later.
    Newest first, the scraper goes next; waiters left behind are the burst, whose deadlines
    close them. Throughput is the same; only the order and the iteration length change."""

    def __init__(self, per_iteration: int) -> None:
        self._per_iteration = per_iteration
        self._waiting: list[asyncio.Future[None]] = []
        self._scheduled = False

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        self._waiting.append(turn)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._grant)
        await turn

    def _grant(self) -> None:
        granted = 0
        while self._waiting and granted < self._per_iteration:
            turn = self._waiting.pop()
            if not turn.done():  # a cancelled waiter (its deadline passed) is skipped
                turn.set_result(None)
                granted += 1
        if self._waiting:
            asyncio.get_running_loop().call_soon(self._grant)
        else:
            self._scheduled = False

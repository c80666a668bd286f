"""A PROXY-protocol front for a broker that cannot read PROXY headers (mosquitto).

EMQX with `proxy_protocol = true` reads the header Nginx sends and treats the announced
client address as the peer; mosquitto has no such option. This shim plays that EMQX listener
in the integration tests: it refuses any connection that does not start with a PROXY v1/v2
header, and it opens its connection to mosquitto *from* the announced source address, so
mosquitto's own log shows the client's real address. Runs as its own process (stdlib +
`proxy-protocol` only), so killing it is a real backend crash and it never competes with the
test's clients for the GIL.

Usage: python proxy_shim.py --listen-port P --target-port T --events FILE
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import socket
import sys
from pathlib import Path
from typing import Any, TextIO

from proxyprotocol import ProxyProtocolSyntaxError
from proxyprotocol.detect import ProxyProtocolDetect
from proxyprotocol.reader import ProxyProtocolReader
from proxyprotocol.result import ProxyResult, is_ipv4, is_local

LOOPBACK = "127.0.0.1"
CHUNK = 65536


class Shim:
    """Accepts PROXY-prefixed connections and relays them to the broker from the real source."""

    def __init__(self, host: str, target_port: int, events: TextIO, header_timeout: float) -> None:
        self.host = host
        self.target_port = target_port
        self.events = events
        self.header_timeout = header_timeout
        self.reader = ProxyProtocolReader(ProxyProtocolDetect())

    def record(self, **event: Any) -> None:
        """One JSON line per event, flushed at once: tests read the file while we run."""
        self.events.write(json.dumps(event) + "\n")
        self.events.flush()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = list(writer.get_extra_info("peername"))
        try:
            result = await asyncio.wait_for(self.reader.read(reader), self.header_timeout)
        except (
            ProxyProtocolSyntaxError,
            ValueError,
            asyncio.IncompleteReadError,
            TimeoutError,
            ConnectionError,
        ) as exc:
            # EMQX closes a proxy_protocol listener's connection that has no valid header.
            self.record(event="rejected", peer=peer, reason=f"{type(exc).__name__}: {exc}")
            writer.close()
            return
        try:
            source = self.source_address(result)
            upstream = await self.open_upstream(source)
        except (OSError, ValueError) as exc:
            self.record(event="upstream_failed", peer=peer, reason=f"{type(exc).__name__}: {exc}")
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(sock=upstream)
        self.record(
            event="proxied",
            peer=peer,
            source=[str(result.source[0]), result.source[1]] if is_ipv4(result) else None,
            dest=[str(result.dest[0]), result.dest[1]] if is_ipv4(result) else None,
            upstream_local=list(upstream.getsockname()),
        )
        await asyncio.gather(self.pump(reader, up_writer, writer), self.pump(up_reader, writer, up_writer))

    def source_address(self, result: ProxyResult) -> str:
        """The address to connect from: the announced client address, or ours for LOCAL."""
        if is_local(result):
            return self.host
        if not is_ipv4(result):
            raise ValueError(f"unsupported PROXY address family: {result!r}")
        address = result.source[0]
        if not isinstance(address, ipaddress.IPv4Address) or not address.is_loopback:
            # Only 127.0.0.0/8 can be bound locally; anything else means a broken test setup.
            raise ValueError(f"announced source {address} is not a loopback address")
        return str(address)

    async def open_upstream(self, source: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.bind((source, 0))
            await asyncio.get_running_loop().sock_connect(sock, (self.host, self.target_port))
        except BaseException:
            sock.close()
            raise
        return sock

    @staticmethod
    async def pump(
        source: asyncio.StreamReader, sink: asyncio.StreamWriter, source_writer: asyncio.StreamWriter
    ) -> None:
        """Copy until either side ends, then close both: a dead half means a dead MQTT session."""
        try:
            while data := await source.read(CHUNK):
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            sink.close()
            source_writer.close()


async def serve(args: argparse.Namespace) -> None:
    with Path(args.events).open("a", encoding="utf-8") as events:
        shim = Shim(args.host, args.target_port, events, args.header_timeout)
        server = await asyncio.start_server(shim.handle, args.host, args.listen_port)
        shim.record(event="listening", port=args.listen_port, target_port=args.target_port)
        async with server:
            await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--events", required=True, help="JSON-lines file of accepted/rejected connections")
    parser.add_argument("--header-timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

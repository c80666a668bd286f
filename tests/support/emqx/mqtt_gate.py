"""EMQX's access checks in front of an MQTT engine that has none of them (mosquitto). NOT EMQX.

The stand-in's MQTT engine is mosquitto, which knows nothing of EMQX's authenticator, its ACL
file or its reason codes. This relay sits between the client and mosquitto (after the PROXY
shim), reads the MQTT packets both ways, and answers as EMQX 5.8.6 does
(tests/support/emqx/emqx58_access.py has the rules and their sources):

- CONNECT: authenticated by the policy; refused -> CONNACK with EMQX's code (MQTT 5 0x86/0x87,
  3.1.1 4/5) and the connection closed, the engine never sees the client;
- PUBLISH denied (deny_action = ignore): QoS 0 dropped, QoS 1 answered PUBACK 0x87 (3.1.1: a
  plain PUBACK), QoS 2 PUBREC 0x87 (3.1.1: plain, then PUBCOMP for its PUBREL)
  (emqx_channel.erl process_publish/2);
- SUBSCRIBE: each denied filter gets 0x87 (3.1.1: 0x80) in the SUBACK, the allowed ones go to
  the engine (emqx_channel.erl do_check_sub_authzs2/2, emqx_reason_codes.erl compat(suback, _)).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from tests.support.emqx.emqx58_access import NOT_AUTHORIZED, Client, connack_code

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 5, 6, 7, 8, 9
V3_SUBACK_FAILURE = 0x80
TOPIC_ALIAS = 0x23


class MqttError(ValueError):
    pass


@dataclass(frozen=True)
class Packet:
    kind: int
    flags: int
    body: bytes

    def encode(self) -> bytes:
        return bytes([self.kind << 4 | self.flags]) + varint(len(self.body)) + self.body


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


async def read_packet(reader: asyncio.StreamReader) -> Packet | None:
    first = await reader.read(1)
    if not first:
        return None
    length, shift = 0, 0
    for _ in range(4):
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    else:
        raise MqttError("malformed remaining length")
    return Packet(first[0] >> 4, first[0] & 0x0F, await reader.readexactly(length))


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, count: int) -> bytes:
        if self.at + count > len(self.data):
            raise MqttError("packet too short")
        chunk = self.data[self.at : self.at + count]
        self.at += count
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def text(self) -> str:
        return self.binary().decode("utf-8")

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    def properties(self) -> bytes:
        return self.take(self.varint())

    def rest(self) -> bytes:
        return self.data[self.at :]


@dataclass(frozen=True)
class Connect:
    level: int
    clientid: str
    username: str | None
    password: str | None


def parse_connect(body: bytes) -> Connect:
    cursor = _Cursor(body)
    cursor.text()  # "MQTT" (or "MQIsdp")
    level, flags = cursor.u8(), cursor.u8()
    cursor.u16()  # keepalive
    if level >= 5:
        cursor.properties()
    clientid = cursor.text()
    if flags & 0x04:  # will
        if level >= 5:
            cursor.properties()
        cursor.text()
        cursor.binary()
    username = cursor.text() if flags & 0x80 else None
    password = cursor.binary().decode("utf-8", "replace") if flags & 0x40 else None
    return Connect(level, clientid, username, password)


def _alias(properties: bytes) -> int | None:
    """The Topic Alias property of a PUBLISH, if any (MQTT 5 section 3.3.2.3.4)."""
    cursor = _Cursor(properties)
    while cursor.at < len(properties):
        identifier = cursor.varint()
        if identifier == TOPIC_ALIAS:
            return cursor.u16()
        size = {0x01: 1, 0x02: 4, 0x03: None, 0x08: None, 0x09: None, 0x0B: -1, 0x26: None}.get(identifier, 1)
        if size == -1:
            cursor.varint()
        elif size is None:
            cursor.binary()
            if identifier == 0x26:
                cursor.binary()
        else:
            cursor.take(size)
    return None


class Policy(Protocol):
    """What the gate asks: the node's authenticator and ACL (see the stand-in's Node)."""

    def authenticate(self, connect: Connect) -> tuple[int, bool]: ...  # (CONNACK reason or 0, superuser)

    def authorize(self, client: Client, action: str, topic: str) -> bool: ...


@dataclass
class _Session:
    client: Client
    level: int
    aliases: dict[int, str] = field(default_factory=dict)
    denied_qos2: set[int] = field(default_factory=set)
    subacks: dict[int, list[int | None]] = field(default_factory=dict)  # packet id -> denied codes


async def relay(
    policy: Policy,
    peer_address: str,
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    broker_reader: asyncio.StreamReader,
    broker_writer: asyncio.StreamWriter,
    record: Callable[..., None] = lambda **_: None,
    live: set[object] | None = None,
) -> None:
    """Relay one connection with EMQX's checks, until either side ends; `live` holds the
    connections past an accepted CONNECT while they last (EMQX's connections.count)."""
    token = object()  # this connection in `live` (sessions are dataclasses: not hashable)
    try:
        first = await read_packet(client_reader)
        if first is None or first.kind != CONNECT:
            return
        connect = parse_connect(first.body)
        reason, superuser = policy.authenticate(connect)
        if reason:
            record(event="connect_refused", clientid=connect.clientid, username=connect.username, reason=reason)
            body = bytes([0, connack_code(reason, connect.level)]) + (b"\x00" if connect.level >= 5 else b"")
            client_writer.write(Packet(CONNACK, 0, body).encode())
            await client_writer.drain()
            return
        session = _Session(Client(connect.clientid, connect.username, peer_address, superuser), connect.level)
        broker_writer.write(first.encode())
        if live is not None:
            live.add(token)
        await asyncio.gather(
            _from_client(policy, session, client_reader, client_writer, broker_writer, record),
            _from_broker(session, broker_reader, client_writer),
        )
    except (MqttError, asyncio.IncompleteReadError, ConnectionError, UnicodeDecodeError):
        pass
    finally:
        if live is not None:
            live.discard(token)
        for writer in (client_writer, broker_writer):
            with contextlib.suppress(Exception):
                writer.close()


async def _from_client(
    policy: Policy,
    session: _Session,
    reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    broker_writer: asyncio.StreamWriter,
    record: Callable[..., None],
) -> None:
    v5 = session.level >= 5
    try:
        while (packet := await read_packet(reader)) is not None:
            if packet.kind == PUBLISH:
                cursor = _Cursor(packet.body)
                topic = cursor.text()
                qos = packet.flags >> 1 & 0x03
                packet_id = cursor.u16() if qos else 0
                if v5:
                    alias = _alias(cursor.properties())
                    if alias is not None and topic:
                        session.aliases[alias] = topic
                    elif alias is not None:
                        topic = session.aliases.get(alias, "")
                if not policy.authorize(session.client, "publish", topic):
                    record(event="publish_denied", clientid=session.client.clientid, topic=topic, qos=qos)
                    reply = _denied_publish_reply(qos, packet_id, v5)
                    if qos == 2 and not v5:
                        session.denied_qos2.add(packet_id)
                    if reply is not None:
                        client_writer.write(reply.encode())
                    continue
            elif packet.kind == PUBREL:
                packet_id = int.from_bytes(packet.body[:2], "big")
                if packet_id in session.denied_qos2:
                    session.denied_qos2.discard(packet_id)
                    client_writer.write(Packet(PUBCOMP, 0, packet.body[:2]).encode())
                    continue
            elif packet.kind == SUBSCRIBE:
                packet = _checked_subscribe(policy, session, packet, client_writer, record)
                if packet is None:
                    continue
            broker_writer.write(packet.encode())
            await broker_writer.drain()
    finally:
        broker_writer.close()


def _denied_publish_reply(qos: int, packet_id: int, v5: bool) -> Packet | None:
    pid = packet_id.to_bytes(2, "big")
    reason = bytes([NOT_AUTHORIZED]) if v5 else b""
    if qos == 1:
        return Packet(PUBACK, 0, pid + reason)
    if qos == 2:
        return Packet(PUBREC, 0, pid + reason)
    return None


def _checked_subscribe(
    policy: Policy, session: _Session, packet: Packet, client_writer: asyncio.StreamWriter, record: Callable[..., None]
) -> Packet | None:
    """The SUBSCRIBE with the allowed filters only; None when it answered the client itself."""
    v5 = session.level >= 5
    cursor = _Cursor(packet.body)
    packet_id = cursor.u16()
    properties = cursor.properties() if v5 else b""
    allowed: list[bytes] = []
    codes: list[int | None] = []  # None: the engine's code goes here
    denied_code = NOT_AUTHORIZED if v5 else V3_SUBACK_FAILURE
    while cursor.at < len(packet.body):
        start = cursor.at
        topic = cursor.text()
        cursor.u8()
        if policy.authorize(session.client, "subscribe", topic):
            allowed.append(packet.body[start : cursor.at])
            codes.append(None)
        else:
            record(event="subscribe_denied", clientid=session.client.clientid, topic=topic)
            codes.append(denied_code)
    pid = packet_id.to_bytes(2, "big")
    if not allowed:
        head = pid + (b"\x00" if v5 else b"")
        client_writer.write(Packet(SUBACK, 0, head + bytes(code or 0 for code in codes)).encode())
        return None
    if len(allowed) < len(codes):
        session.subacks[packet_id] = codes
    props = varint(len(properties)) + properties if v5 else b""
    return Packet(SUBSCRIBE, packet.flags, pid + props + b"".join(allowed))


async def _from_broker(session: _Session, reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
    try:
        while (packet := await read_packet(reader)) is not None:
            if packet.kind == SUBACK:
                cursor = _Cursor(packet.body)
                packet_id = cursor.u16()
                codes = session.subacks.pop(packet_id, None)
                if codes is not None:
                    head_end = cursor.at
                    properties = cursor.properties() if session.level >= 5 else b""
                    granted = iter(cursor.rest())
                    merged = bytes(next(granted) if code is None else code for code in codes)
                    head = packet.body[:head_end] + (
                        varint(len(properties)) + properties if session.level >= 5 else b""
                    )
                    packet = Packet(SUBACK, 0, head + merged)
            client_writer.write(packet.encode())
            await client_writer.drain()
    finally:
        client_writer.close()


@contextlib.contextmanager
def running_gate(policy: Policy, broker_port: int, host: str = "127.0.0.1") -> Iterator[int]:
    """The gate on a free loopback port, relaying to a broker's plain listener, in a thread of
    its own (an event loop, as the stand-in runs it); yields the port."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    open_writers: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, broker_port)
        open_writers.update((writer, up_writer))
        try:
            await relay(policy, host, reader, writer, up_reader, up_writer)
        finally:
            open_writers.difference_update((writer, up_writer))

    server = asyncio.run_coroutine_threadsafe(asyncio.start_server(handle, host, 0), loop).result(10)

    def stop() -> None:
        """Close every connection: each relay then ends by itself, and the loop after them."""
        server.close()
        for writer in list(open_writers):
            writer.close()
        loop.call_later(0.5, loop.stop)

    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        loop.call_soon_threadsafe(stop)
        thread.join(10)
        loop.close()

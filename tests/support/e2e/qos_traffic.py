"""QoS 1 traffic through the load balancer with persistent sessions, counted end to end.

Subscribers connect with `clean_start=false` and a session expiry, and paho reconnects them by
itself (with `clean_start=false` again) whenever their connection drops, through the load
balancer, to whichever node it picks: EMQX then takes the session over from the node that held
it, with what was queued for it, as long as that node still runs (emqx_cm.erl takeover). A
publisher sends numbered QoS 1 messages; a message counts as published once EMQX acknowledged
it (PUBACK). A lost message is one that was published and that some subscriber never got.
"""

from __future__ import annotations

import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.support.e2e.stacks import PROBE_PASSWORD, PROBE_USERNAME

SESSION_EXPIRY_SECONDS = 300


def _client(client_id: str, context: ssl.SSLContext) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(PROBE_USERNAME, PROBE_PASSWORD)
    client.tls_set_context(context)
    client.reconnect_delay_set(min_delay=1, max_delay=2)
    return client


def _connect(client: mqtt.Client, address: str, port: int) -> None:
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
    # paho keeps these for its own reconnects: every one resumes the session.
    client.connect(address, port, keepalive=30, clean_start=False, properties=properties)
    client.loop_start()


@dataclass
class Subscriber:
    """A persistent-session subscriber: the sequence numbers it received, its reconnects and
    whether EMQX had its session each time (CONNACK session present)."""

    client_id: str
    client: mqtt.Client
    received: set[int] = field(default_factory=set)
    connects: int = 0
    resumed: int = 0  # reconnects with the session present
    subscribed: threading.Event = field(default_factory=threading.Event)


@dataclass
class Publisher:
    """The message ids paho gave each sequence number, and those EMQX acknowledged (recorded
    apart and matched afterwards: no lock is shared with paho's callback thread). Fewer than
    65,536 messages a run, so an id is never reused."""

    client: mqtt.Client
    client_id: str
    sequence_of: dict[int, int] = field(default_factory=dict)  # paho message id -> sequence number
    acknowledged_ids: set[int] = field(default_factory=set)

    @property
    def acknowledged(self) -> set[int]:
        return {self.sequence_of[mid] for mid in list(self.acknowledged_ids) if mid in self.sequence_of}

    @property
    def unacknowledged(self) -> int:
        return len(self.sequence_of) - len(self.acknowledged_ids)


@dataclass
class Traffic:
    subscribers: list[Subscriber]
    publisher: Publisher
    sent: int = 0

    def lost(self) -> dict[str, list[int]]:
        """Subscriber -> the acknowledged messages it never got (empty lists left out)."""
        acknowledged = self.publisher.acknowledged
        return {s.client_id: sorted(acknowledged - s.received) for s in self.subscribers if acknowledged - s.received}

    def all_received(self) -> bool:
        return not self.lost()


def _subscriber(address: str, port: int, context: ssl.SSLContext, topic: str) -> Subscriber:
    client_id = f"e2e-persistent-{uuid.uuid4().hex[:8]}"
    client = _client(client_id, context)
    state = Subscriber(client_id, client)

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any) -> None:
        if reason.is_failure:
            return
        state.connects += 1
        if state.connects == 1:
            client.subscribe(topic, qos=1)
        elif flags.session_present:
            state.resumed += 1
        else:  # no session to resume: subscribe again, or nothing more arrives
            client.subscribe(topic, qos=1)

    def on_subscribe(client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        state.subscribed.set()

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        state.received.add(int(message.payload))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    _connect(client, address, port)
    if not state.subscribed.wait(15):
        raise TimeoutError(f"{client_id}: no SUBACK through {address}:{port}")
    return state


def _publisher(address: str, port: int, context: ssl.SSLContext) -> Publisher:
    client_id = f"e2e-publisher-{uuid.uuid4().hex[:8]}"
    client = _client(client_id, context)
    state = Publisher(client, client_id)
    connected = threading.Event()

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any) -> None:
        if not reason.is_failure:
            connected.set()

    def on_publish(client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any) -> None:
        if not reason.is_failure:
            state.acknowledged_ids.add(mid)

    client.on_connect = on_connect
    client.on_publish = on_publish
    _connect(client, address, port)
    if not connected.wait(15):
        raise TimeoutError(f"publisher: no CONNACK through {address}:{port}")
    return state


@contextmanager
def qos1_traffic(
    address: str, port: int, context: ssl.SSLContext, subscribers: int, interval: float = 0.05
) -> Iterator[Traffic]:
    """Subscribers and a publisher sending one numbered message every `interval` seconds until
    the block ends; then it waits (bounded) for what is still on its way, and disconnects all."""
    topic = f"e2e/qos1/{uuid.uuid4().hex[:8]}"
    with ExitStack() as stack:
        subs = [_subscriber(address, port, context, topic) for _ in range(subscribers)]
        for sub in subs:
            stack.callback(sub.client.loop_stop)
            stack.callback(sub.client.disconnect)
        publisher = _publisher(address, port, context)
        stack.callback(publisher.client.loop_stop)
        stack.callback(publisher.client.disconnect)
        traffic = Traffic(subs, publisher)
        stop = threading.Event()

        def publish() -> None:
            while not stop.is_set():
                info = publisher.client.publish(topic, str(traffic.sent).encode(), qos=1)
                publisher.sequence_of[info.mid] = traffic.sent
                traffic.sent += 1
                stop.wait(interval)

        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        try:
            yield traffic
        finally:
            stop.set()
            thread.join(timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (publisher.unacknowledged or not traffic.all_received()):
            time.sleep(0.5)

"""The load-balancer path for real: rendered nginx.conf -> Nginx TLS -> PROXY -> brokers.

Nginx runs only configs from `render_nginx_conf`; the brokers are mosquitto processes behind
`proxy_shim.py`, which stands in for EMQX's `proxy_protocol = true` listener (see lb_stack).
Per-worker assertions: the template has no upstream `zone`, so every Nginx worker keeps its own
round-robin / least_conn / failure state, and exact balancing only holds within one worker.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from components.render.nginx import MODERN_CIPHERS, NginxSettings
from tests.support.lb_stack import (
    CONNACK_ACCEPTED,
    LOOPBACK,
    MOSQUITTO_PROTOCOL_CODES,
    MQTT_V5,
    MQTT_V311,
    Backend,
    MqttSession,
    Nginx,
    Pki,
    backend_of,
    connect_mqtt,
    lb_settings,
    make_pki,
    missing_prerequisites,
    mqtt_connect_packet,
    mqtt_sessions,
    raw_mqtt_connect,
    recv_up_to,
    running_backends,
    source_address,
    wait_backend_of,
)
from tests.support.loadgen import run_loadgen
from tests.support.ports import free_port, wait_until

MISSING = missing_prerequisites()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(MISSING), reason=f"load-balancer integration tests need: {', '.join(MISSING)}"),
]

BROKERS = 3
BALANCING_METHODS = ("round_robin", "least_conn", "random", "hash_client_address")

StartLb = Callable[..., Nginx]
Connect = Callable[..., MqttSession]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Backend]]:
    with running_backends(tmp_path_factory.mktemp("brokers"), BROKERS) as started:
        yield started


@pytest.fixture
def live_backends(backends: list[Backend]) -> list[Backend]:
    """All backends up at test start, even if an earlier failover test died mid-way."""
    for backend in backends:
        if not backend.running:
            backend.kill()
            backend.restart()
    return backends


@pytest.fixture
def start_lb(tmp_path: Path, pki: Pki, live_backends: list[Backend]) -> Iterator[StartLb]:
    """Start a fresh Nginx (fresh per-worker balancing state) in front of all backends."""
    with ExitStack() as stack:

        def start(**overrides: Any) -> Nginx:
            settings = lb_settings(free_port(), [b.upstream for b in live_backends], **overrides)
            nginx = Nginx(tmp_path / f"nginx-{settings.listen_port}", settings, pki)
            stack.callback(nginx.stop)
            nginx.start()
            return nginx

        yield start


@pytest.fixture
def client_id() -> Callable[[int], str]:
    """Unique client ids per test: broker logs outlive a single test."""
    prefix = uuid.uuid4().hex[:8]
    return lambda index: f"c{prefix}-{index}"


@pytest.fixture
def connect(pki: Pki) -> Iterator[Connect]:
    """Connect paho through an Nginx TLS listener, verifying the chain; closed after the test."""
    with mqtt_sessions() as sessions:

        def open_session(nginx: Nginx, client_id: str, **options: Any) -> MqttSession:
            host, port = nginx.address
            session = connect_mqtt(host, port, client_id=client_id, tls_context=pki.client_context(), **options)
            sessions.append(session)
            return session

        yield open_session


def backend_index(backends: list[Backend], client_id: str) -> int:
    backend, _ = wait_backend_of(backends, client_id)
    return backends.index(backend)


@contextmanager
def tls_connection(nginx: Nginx, context: ssl.SSLContext, server_name: str = LOOPBACK) -> Iterator[ssl.SSLSocket]:
    with (
        socket.create_connection(nginx.address, timeout=10) as plain,
        context.wrap_socket(plain, server_hostname=server_name) as tls,
    ):
        yield tls


# --------------------------------------------------------------------------- MQTT through the LB


@pytest.mark.parametrize("qos", [0, 1])
@pytest.mark.parametrize("protocol", [MQTT_V311, MQTT_V5], ids=["mqtt311", "mqtt5"])
def test_publish_subscribe_round_trip_through_tls_listener(
    start_lb: StartLb, connect: Connect, live_backends: list[Backend], client_id: Callable[[int], str],
    protocol: MQTTProtocolVersion, qos: int,
) -> None:  # fmt: skip
    nginx = start_lb()
    cid = client_id(0)
    session = connect(nginx, cid, protocol=protocol)
    backend, record = wait_backend_of(live_backends, cid)
    assert record.protocol == MOSQUITTO_PROTOCOL_CODES[protocol]
    assert session.tls_version in {"TLSv1.2", "TLSv1.3"}

    topic = f"lb/{cid}"
    assert session.subscribe(topic, qos) == [qos]
    info = session.publish(topic, b"through nginx", qos)
    assert info.is_published()
    message = session.receive()

    assert (message.topic, message.payload, message.qos) == (topic, b"through nginx", qos)
    acked = f"Sending PUBACK to {cid} " in backend.mosquitto.log_text()
    assert acked is (qos == 1)


def test_broker_sees_each_clients_real_source_address(
    start_lb: StartLb, connect: Connect, live_backends: list[Backend], client_id: Callable[[int], str]
) -> None:
    nginx = start_lb()
    for index in range(6):
        address = source_address(index)
        session = connect(nginx, client_id(index), bind_address=address)
        client = session.local_address
        backend, record = wait_backend_of(live_backends, client_id(index))

        assert client[0] == address
        # mosquitto's own log line names the client's address, not Nginx's 127.0.0.1 ...
        assert record.host == address
        # ... because the PROXY header carried the client's exact socket, and the shim connected
        # to the broker from that address (the port is the shim's, mapped here).
        [proxied] = [s for s in backend.shim.sessions() if s.source == client]
        assert proxied.upstream_local == (record.host, record.port)


# --------------------------------------------------------------------------- balancing


@dataclass(frozen=True)
class Held:
    """An open MQTT session through Nginx: which worker accepted it, which upstream it got."""

    session: MqttSession
    worker: int
    upstream: int


def open_held(nginx: Nginx, connect: Connect, backends: list[Backend], client_id: str) -> Held:
    session = connect(nginx, client_id)
    return Held(session, nginx.worker_serving(session.local_address), backend_index(backends, client_id))


def hang_up(nginx: Nginx, held: list[Held], upstream: int) -> list[Held]:
    """Disconnect every session on `upstream` and wait until Nginx has ended them.

    Nginx logs a stream session after releasing its upstream peer, so once the access-log line
    is there the peer's active-connection count has dropped.
    """
    gone = [h for h in held if h.upstream == upstream]
    for entry in gone:
        client = entry.session.local_address
        entry.session.disconnect()
        wait_until(partial(nginx.session_logged, client), what=f"nginx to end {client}")
    return gone


def test_round_robin_rotates_through_every_upstream_regardless_of_load(
    start_lb: StartLb, connect: Connect, live_backends: list[Backend], client_id: Callable[[int], str]
) -> None:
    nginx = start_lb(balancing="round_robin")
    held = [open_held(nginx, connect, live_backends, client_id(i)) for i in range(3 * BROKERS)]
    # Idle upstream 1: least_conn would now prefer it; round robin must keep rotating.
    hang_up(nginx, held, upstream=1)
    held += [open_held(nginx, connect, live_backends, client_id(i)) for i in range(3 * BROKERS, 5 * BROKERS)]

    # The upstream's shared `zone` gives all workers one rotation, whichever worker accepted.
    sequence = [entry.upstream for entry in held]
    following = [(a + 1) % BROKERS for a in sequence[:-1]]
    assert sequence[1:] == following, f"connections did not rotate: {sequence}"
    assert {entry.upstream for entry in held} == set(range(BROKERS))


def test_least_conn_picks_an_upstream_with_fewest_active_connections(
    start_lb: StartLb, connect: Connect, live_backends: list[Backend], client_id: Callable[[int], str]
) -> None:
    nginx = start_lb(balancing="least_conn")
    # One count for all workers: the upstream's shared `zone` holds the active connections.
    load: Counter[int] = Counter()
    held: list[Held] = []

    def open_and_check(index: int) -> None:
        entry = open_held(nginx, connect, live_backends, client_id(index))
        fewest = min(load[u] for u in range(BROKERS))
        assert load[entry.upstream] == fewest, f"worker {entry.worker} chose {entry.upstream} with {dict(load)}"
        load[entry.upstream] += 1
        held.append(entry)

    for index in range(2 * BROKERS):
        open_and_check(index)
    # Idle upstream 1, so it becomes the least busy.
    for _ in hang_up(nginx, held, upstream=1):
        load[1] -= 1
    for index in range(2 * BROKERS, 4 * BROKERS):
        open_and_check(index)

    assert {entry.upstream for entry in held} == set(range(BROKERS))


def test_hash_client_address_keeps_each_source_on_one_upstream(
    start_lb: StartLb, connect: Connect, live_backends: list[Backend], client_id: Callable[[int], str]
) -> None:
    nginx = start_lb(balancing="hash_client_address")
    chosen: dict[str, set[int]] = defaultdict(set)
    for index in range(24):
        address = source_address(index % 12)
        session = connect(nginx, client_id(index), bind_address=address)
        chosen[address].add(backend_index(live_backends, client_id(index)))
        session.disconnect()

    assert all(len(upstreams) == 1 for upstreams in chosen.values()), chosen
    assert len(set.union(*chosen.values())) > 1, "12 addresses all hashed to one upstream"


def test_dead_backend_is_skipped_and_used_again_after_it_returns(
    start_lb: StartLb, connect: Connect, live_backends: list[Backend], client_id: Callable[[int], str]
) -> None:
    nginx = start_lb(balancing="round_robin", max_fails=1, fail_timeout="1s")
    dead = live_backends[0]

    def landed(index: int) -> int:
        session = connect(nginx, client_id(index))
        upstream = backend_index(live_backends, session.client_id)
        session.disconnect()
        return upstream

    dead.kill()
    try:
        during = [landed(index) for index in range(3 * BROKERS)]
        # Every connect succeeded (connect() raises otherwise), none reached the dead node, and
        # Nginx did try it: proxy_next_upstream moved those clients on instead of failing them.
        assert set(during) == {1, 2}
        errors = nginx.error_log_text()
        assert "connect() failed (111: Connection refused)" in errors
        assert f'upstream: "{dead.upstream}"' in errors
        assert "upstream server temporarily disabled" in errors
    finally:
        dead.restart()

    # Wait out fail_timeout; Nginx compares whole seconds (`now - checked <= fail_timeout`), so
    # "1s" lasts up to 2s after the last failure. Then each worker offers the node connections
    # again; smooth round robin lets a skipped node catch up over a few picks, and which worker
    # accepts is up to the kernel, so allow a bounded number of tries rather than a fixed one.
    time.sleep(2.2)
    after = []
    for index in range(100, 100 + 20 * BROKERS):
        after.append(landed(index))
        if after[-1] == 0:
            break
    assert after[-1] == 0, (
        f"restored backend got none of {len(after)} connections: {after}\n{nginx.error_log_text()}"
        f"\n{dead.shim.events()}"
    )


def test_past_every_nodes_cap_a_new_client_is_refused_and_no_node_is_marked_down(
    start_lb: StartLb, connect: Connect, live_backends: list[Backend], client_id: Callable[[int], str]
) -> None:
    """max_conns (each node's free ports in the plan, here 2): the client too many is closed by
    Nginx, every held client stays connected, no node is marked failed (max_fails=1 would
    disable one for fail_timeout), and a place given back is taken by the next client at once."""
    cap = 2
    nginx = start_lb(balancing="least_conn", max_fails=1, fail_timeout="30s", max_conns=cap)
    held = [connect(nginx, client_id(index)) for index in range(cap * BROKERS)]
    per_node = Counter(backend_index(live_backends, session.client_id) for session in held)
    assert per_node == dict.fromkeys(range(BROKERS), cap)
    with pytest.raises((TimeoutError, ConnectionError, OSError)):
        connect(nginx, client_id(100), timeout=3.0)
    assert not [session.client_id for session in held if session.disconnected.is_set()]
    errors = nginx.error_log_text()
    assert "upstream server temporarily disabled" not in errors, errors
    assert "Cannot assign requested address" not in errors
    leaving = held.pop(0)
    client = leaving.local_address
    leaving.disconnect()
    wait_until(partial(nginx.session_logged, client), what=f"nginx to end {client}")
    newcomer = connect(nginx, client_id(101))
    assert backend_index(live_backends, newcomer.client_id) == backend_index(live_backends, leaving.client_id)


def loadgen_args(nginx: Nginx, pki: Pki, clients: int, hold: str = "7s") -> list[str]:
    """The native load generator against this Nginx: clients from five 127.x addresses, each
    holding its connection with a 3 s keepalive (two pings) for `hold`."""
    host, port = nginx.address
    return [
        *("-addr", f"{host}:{port}", "-ca", str(pki.ca_cert), "-server-name", "localhost"),
        *("-clients", str(clients), "-sources", "127.0.0.10-127.0.0.14", "-hold", hold, "-keepalive", "3s"),
    ]


def test_the_load_generator_holds_every_client_through_nginx(start_lb: StartLb, pki: Pki) -> None:
    nginx = start_lb(balancing="least_conn")
    report = run_loadgen(loadgen_args(nginx, pki, 60))
    assert (report["established"], report["stillHeld"], report["failed"]) == (60, 60, {}), report
    assert report["sources"] == [f"127.0.0.{last}" for last in range(10, 15)]


def test_the_measured_ceiling_is_the_nodes_caps_and_the_edge_refuses_the_rest_cleanly(
    start_lb: StartLb, pki: Pki, live_backends: list[Backend]
) -> None:
    """Each node capped at 5 (the plan's free ports at small scale): of 40 clients exactly 15 are
    held, through their keepalive pings, and every other one is refused; no node is marked down."""
    cap = 5
    nginx = start_lb(balancing="least_conn", max_fails=1, fail_timeout="30s", max_conns=cap)
    report = run_loadgen(loadgen_args(nginx, pki, 40))
    assert report["established"] == report["stillHeld"] == cap * BROKERS, report
    assert sum(report["failed"].values()) == 40 - cap * BROKERS, json.dumps(report)
    assert "upstream server temporarily disabled" not in nginx.error_log_text()


# --------------------------------------------------------------------------- TLS


def resumed_after_restart(nginx: Nginx, pki: Pki, client_id: str, version: ssl.TLSVersion) -> bool:
    """A client connects and gets its session (TLS 1.3: the ticket comes after the handshake, so
    once the CONNACK is read); Nginx restarts; does the client's next handshake resume it?"""
    context = pki.client_context(minimum=version, maximum=version)
    host, port = nginx.address

    def connect(session: ssl.SSLSession | None) -> ssl.SSLSocket:
        sock = context.wrap_socket(
            socket.create_connection((host, port), timeout=10), server_hostname=host, session=session
        )
        sock.sendall(mqtt_connect_packet(client_id))
        assert recv_up_to(sock, 4) == CONNACK_ACCEPTED
        return sock

    with connect(None) as first:
        session = first.session
    nginx.stop()
    nginx.start()
    with connect(session) as second:
        return second.session_reused is True


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["tls1.3", "tls1.2"])
def test_with_session_tickets_a_client_resumes_after_nginx_restarts(
    start_lb: StartLb, pki: Pki, client_id: Callable[[int], str], version: ssl.TLSVersion
) -> None:
    """The ticket keys are files (uploads from Pulumi state): a restart keeps them, so the storm
    of returning clients resumes; the session cache alone lives in shared memory and is lost."""
    with_tickets = start_lb(ticket_keys=2)
    assert resumed_after_restart(with_tickets, pki, client_id(0), version)
    cache_only = start_lb(ticket_keys=0)
    assert not resumed_after_restart(cache_only, pki, client_id(1), version)


@pytest.mark.parametrize(
    ("ticket_keys", "restart", "resumed"),
    [(2, True, 30), (0, False, 30), (0, True, 0)],
    ids=["tickets-restart", "cache", "cache-restart"],
)
def test_a_reconnect_storm_resumes_its_sessions_unless_a_restart_lost_the_cache(
    start_lb: StartLb, pki: Pki, ticket_keys: int, restart: bool, resumed: int
) -> None:
    """30 clients connect, all drop, (Nginx restarts,) all come back with the session they had:
    the load generator's storm mode, counting abbreviated handshakes as the benchmark does."""
    nginx = start_lb(ticket_keys=ticket_keys)

    def restart_nginx() -> None:
        if restart:
            nginx.stop()
            nginx.start()

    args = [*loadgen_args(nginx, pki, 30, hold="0s"), "-rounds", "2", "-resume"]
    report = run_loadgen(args, between_rounds=restart_nginx)
    first, storm = report["rounds"]
    assert (first["established"], first["resumed"]) == (30, 0), report
    assert (storm["established"], storm["resumed"], storm["failed"]) == (30, resumed, {}), report


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["tls1.0", "tls1.1"])
def test_legacy_tls_versions_are_refused_by_the_server(start_lb: StartLb, pki: Pki, version: ssl.TLSVersion) -> None:
    nginx = start_lb()
    # SECLEVEL=0 so OpenSSL 3 really offers TLS 1.0/1.1: any refusal must come from Nginx.
    context = pki.client_context(minimum=version, maximum=version, ciphers="DEFAULT:@SECLEVEL=0")

    with pytest.raises(ssl.SSLError) as refused, tls_connection(nginx, context):
        pass

    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", refused.value


@pytest.mark.parametrize(
    ("version", "name"),
    [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")],
    ids=["tls1.2", "tls1.3"],
)
def test_modern_tls_versions_are_accepted(
    start_lb: StartLb, pki: Pki, client_id: Callable[[int], str], version: ssl.TLSVersion, name: str
) -> None:
    nginx = start_lb()
    context = pki.client_context(minimum=version, maximum=version)

    with tls_connection(nginx, context) as tls:
        assert tls.version() == name
        cipher = tls.cipher()
        assert cipher is not None
        if version == ssl.TLSVersion.TLSv1_2:
            assert cipher[0] in MODERN_CIPHERS.split(":")
        tls.sendall(mqtt_connect_packet(client_id(0)))
        assert recv_up_to(tls, 4) == CONNACK_ACCEPTED


@pytest.mark.parametrize("server_name", ["localhost", LOOPBACK])
def test_certificate_chain_verifies_against_the_test_ca(start_lb: StartLb, pki: Pki, server_name: str) -> None:
    nginx = start_lb()
    # The client trusts only the root: verification needs Nginx to send the intermediate too.
    with tls_connection(nginx, pki.client_context(), server_name) as tls:
        peer = tls.getpeercert()
    assert peer is not None
    assert ("DNS", "localhost") in peer["subjectAltName"]


def test_certificate_chain_fails_against_another_ca(start_lb: StartLb, pki: Pki) -> None:
    nginx = start_lb()
    with (
        pytest.raises(ssl.SSLCertVerificationError) as rejected,
        tls_connection(nginx, pki.client_context(trust=pki.other_ca_cert)),
    ):
        pass
    assert rejected.value.verify_message == "unable to get local issuer certificate"


# --------------------------------------------------------------------------- broker listeners


def test_broker_listener_refuses_connections_without_proxy_header(
    live_backends: list[Backend], client_id: Callable[[int], str]
) -> None:
    backend = live_backends[0]
    rejections = len(backend.shim.rejections())

    reply = raw_mqtt_connect(LOOPBACK, backend.listener_port, client_id(0))

    assert reply == b"", "expected the connection closed without a CONNACK"
    assert backend.mosquitto.connection_of(client_id(0)) is None
    wait_until(lambda: len(backend.shim.rejections()) > rejections, what="the shim to record the rejection")

    # Control: the same CONNECT behind a PROXY v1 header is accepted, as from the announced client.
    header = f"PROXY TCP4 127.0.0.9 {LOOPBACK} 50000 {backend.listener_port}\r\n".encode()
    assert raw_mqtt_connect(LOOPBACK, backend.listener_port, client_id(1), preamble=header) == CONNACK_ACCEPTED
    _, record = wait_backend_of(live_backends, client_id(1))
    assert record.host == "127.0.0.9"


# --------------------------------------------------------------------------- every balancing method


@pytest.mark.parametrize("balancing", BALANCING_METHODS)
def test_every_balancing_method_passes_nginx_t_and_proxies(
    tmp_path: Path, pki: Pki, start_lb: StartLb, live_backends: list[Backend], client_id: Callable[[int], str],
    balancing: str,
) -> None:  # fmt: skip
    # Production-sized defaults (worker_connections, timeouts) through `nginx -t` ...
    production = NginxSettings(
        listen_address=LOOPBACK,
        listen_port=free_port(),
        upstreams=tuple(b.upstream for b in live_backends),
        balancing=balancing,
    )
    checked = Nginx(tmp_path / "check", production, pki).check()
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr
    assert "test is successful" in checked.stderr

    # ... and the test-sized variant really proxies an MQTT session with that method.
    nginx = start_lb(balancing=balancing)
    assert f"{production.balancing_directive};" in nginx.conf_path.read_text() or balancing == "round_robin"
    host, port = nginx.address
    assert raw_mqtt_connect(host, port, client_id(0), tls_context=pki.client_context()) == CONNACK_ACCEPTED
    wait_backend_of(live_backends, client_id(0))


@pytest.mark.parametrize(
    ("group", "accepted"),
    [("X25519", True), ("prime256v1", True), ("secp384r1", True), ("X448", False), ("secp521r1", False)],
)
def test_key_exchange_groups_are_mozilla_intermediate(start_lb: StartLb, group: str, accepted: bool) -> None:
    """A client offering only `group` completes the handshake iff the group is in the profile."""
    nginx = start_lb()
    handshake = subprocess.run(
        ["openssl", "s_client", "-connect", f"{LOOPBACK}:{nginx.settings.listen_port}", "-groups", group, "-brief"],
        input=b"",
        capture_output=True,
        timeout=20,
        check=False,
    )
    output = (handshake.stdout + handshake.stderr).decode(errors="replace")
    assert (handshake.returncode == 0 and "Protocol version" in output) is accepted, output


# ------------------------------------------------------------------------- client certificates


def mqtt_over_tls(nginx: Nginx, pki: Pki, client_id: str, cert: Path | None, key: Path | None) -> bytes | str:
    """A raw MQTT CONNECT through Nginx presenting `cert` (or none): the CONNACK bytes, or how
    the TLS session ended (with TLS 1.3 a refused client certificate shows on the first read)."""
    context = pki.client_context()
    if cert is not None:
        context.load_cert_chain(cert, key)
    try:
        with tls_connection(nginx, context) as tls:
            tls.settimeout(5)
            tls.sendall(mqtt_connect_packet(client_id))
            return recv_up_to(tls, 4) or "closed"
    except (ssl.SSLError, OSError) as error:
        return type(error).__name__


def test_a_client_ca_admits_only_clients_with_its_certificate_before_any_broker(
    start_lb: StartLb, pki: Pki, backends: list[Backend], client_id: Callable[[int], str]
) -> None:
    """tlsClientCa: a certificate the client CA signed reaches a broker; no certificate, or one
    from another CA, ends in the TLS handshake and no broker ever sees the client."""
    nginx = start_lb(client_verify_depth=2)
    admitted, bare, stranger = client_id(1), client_id(2), client_id(3)
    assert mqtt_over_tls(nginx, pki, admitted, pki.client_cert, pki.client_key) == CONNACK_ACCEPTED
    assert mqtt_over_tls(nginx, pki, bare, None, None) != CONNACK_ACCEPTED
    assert mqtt_over_tls(nginx, pki, stranger, pki.stranger_cert, pki.stranger_key) != CONNACK_ACCEPTED
    wait_backend_of(backends, admitted)
    assert backend_of(backends, bare) is None and backend_of(backends, stranger) is None


def test_without_a_client_ca_no_certificate_is_asked(
    start_lb: StartLb, pki: Pki, client_id: Callable[[int], str]
) -> None:
    nginx = start_lb()
    assert mqtt_over_tls(nginx, pki, client_id(1), None, None) == CONNACK_ACCEPTED

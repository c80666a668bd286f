"""Cluster TLS: Erlang distribution over TLS, run on real VMs with the options the program ships.

With several hosts every EMQX node runs `cluster.proto_dist = inet_tls` with
`-ssl_dist_optfile <ssl_dist.conf>` (components/render/broker_env.py, `cluster_tls_environment`
and `ssl_dist_options`) and a certificate from components/cluster_tls.py: one cluster CA, and per
node a certificate for `emqx<i>@<address>` carrying the address as a DNS name and as an IP
address. These tests start Debian's Erlang (erlang-base + erlang-ssl, OTP 25 here; EMQX 5.8.6
ships OTP 26) with

- `-proto_dist inet_tls -ssl_dist_optfile F`, F being `ssl_dist_options` rendered for a
  directory laid out like the container's (`ClusterTlsFiles`: ca.pem, node.pem, node.key,
  ssl_dist.conf) and filled with certificates made by `cryptography` exactly as pulumi-tls
  makes them from what cluster_tls.py declares (see "The certificates" below);
- ERL_AFLAGS `-kernel inet_dist_use_interface {127,0,0,N}`, as broker_environment ships it;
- a fixed port (`inet_dist_listen_min = inet_dist_listen_max = P`), as ekka_dist's 4370 + N.

Hosts are loopback addresses (127.0.0.2 for emqx1, 127.0.0.3 for emqx2, 127.0.0.4 for a third
node): Linux routes all of 127/8 to `lo`. Plain OTP needs a name service to find a port, so a
private epmd (tests/support/erlang_vm.py) listens on those addresses; the VMs never start one.
Every VM has the same cookie: a refusal here is TLS's, never the cookie's. Each VM runs a small
agent (erlang_vm.AGENT_EVAL) that evaluates what the test sends it, e.g. `net_adm:ping/1`.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from components.cluster_tls import CA_VALIDITY_HOURS, NODE_EARLY_RENEWAL_HOURS, NODE_VALIDITY_HOURS
from components.config_hosts import SINGLE_HOST_KEYS
from components.render.broker_env import (
    CLUSTER_TLS_FILES,
    ClusterTlsFiles,
    cluster_tls_environment,
    erlang_address,
    ssl_dist_options,
)
from tests.support.erlang_vm import (
    AGENT_EVAL,
    AGENT_READY,
    ERL,
    ErlangProcess,
    ErlangProcesses,
    erl_environment,
    free_dist_port,
    missing_applications,
    missing_executables,
    private_epmd,
    tcp_listeners,
)
from tests.support.program import run_program
from tests.support.stackfiles import stack_config, with_changes
from tests.support.views import brokers, envs

pytestmark = pytest.mark.integration

COOKIE = "Cookie_0123456789abcdefXYZ"
PROTO_DIST = cluster_tls_environment()["EMQX_CLUSTER__PROTO_DIST"]  # "inet_tls"


@dataclass(frozen=True)
class Node:
    name: str  # emqx1@127.0.0.2

    @property
    def address(self) -> str:
        return self.name.split("@")[1]

    @property
    def short_name(self) -> str:
        return self.name.split("@")[0]


EMQX1 = Node("emqx1@127.0.0.2")
EMQX2 = Node("emqx2@127.0.0.3")
EMQX3 = Node("emqx3@127.0.0.4")
HOSTS = (EMQX1, EMQX2, EMQX3)


def aflags(node: Node) -> str:
    """ERL_AFLAGS as broker_environment ships it for a node on `node.address`."""
    return f"-kernel inet_dist_use_interface {erlang_address(node.address)}"


# ------------------------------------------------------------------------------ the certificates
#
# What components/cluster_tls.py asks pulumi-tls for, in pulumi-tls's own terms (the inputs the
# engine receives): `test_the_mirror_is_what_cluster_tls_declares` compares these with a run of
# the program, so a change there fails here until the mirror follows.

KEY = {"algorithm": "ECDSA", "ecdsaCurve": "P256"}


def declared_ca() -> dict[str, Any]:
    """cluster_tls.py's `tls.SelfSignedCert` (the cluster CA)."""
    return {
        "subject": {"commonName": "emqx-cluster CA", "organization": "emqx-cluster"},
        "isCaCertificate": True,
        "validityPeriodHours": CA_VALIDITY_HOURS,
        "allowedUses": ["cert_signing", "crl_signing", "digital_signature"],
    }


def declared_request(node: Node) -> dict[str, Any]:
    """cluster_tls.py's `tls.CertRequest` for `node`."""
    return {
        "subject": {"commonName": node.name, "organization": "emqx-cluster"},
        "dnsNames": [node.address],
        "ipAddresses": [node.address],
    }


def declared_node_certificate() -> dict[str, Any]:
    """cluster_tls.py's `tls.LocallySignedCert` (every node's)."""
    return {
        "validityPeriodHours": NODE_VALIDITY_HOURS,
        "earlyRenewalHours": NODE_EARLY_RENEWAL_HOURS,
        "allowedUses": ["digital_signature", "key_encipherment", "server_auth", "client_auth"],
    }


# How pulumi-tls (terraform-provider-tls, internal/provider/common_cert.go `createCertificate`,
# with Go's crypto/x509) turns them into X.509: allowed_uses -> keyUsage (critical) and
# extendedKeyUsage; is_ca_certificate -> basicConstraints CA:TRUE (critical) and a subject key
# id; a locally signed certificate has basicConstraints CA:FALSE (critical), the request's SANs
# (DNS names before IP addresses), an authority key id, a random 128-bit serial and ECDSA-SHA256;
# the subject is O then CN (Go's pkix.Name order); ECDSA keys are SEC1 PEM ("EC PRIVATE KEY").
KEY_USAGES = {
    "digital_signature": "digital_signature",
    "content_commitment": "content_commitment",
    "key_encipherment": "key_encipherment",
    "data_encipherment": "data_encipherment",
    "key_agreement": "key_agreement",
    "cert_signing": "key_cert_sign",
    "crl_signing": "crl_sign",
    "encipher_only": "encipher_only",
    "decipher_only": "decipher_only",
}
EXTENDED_KEY_USAGES = {"server_auth": ExtendedKeyUsageOID.SERVER_AUTH, "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH}
CURVES = {"P256": ec.SECP256R1}


def private_key() -> ec.EllipticCurvePrivateKey:
    assert KEY["algorithm"] == "ECDSA"
    return ec.generate_private_key(CURVES[KEY["ecdsaCurve"]]())


def subject(declared: dict[str, str]) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, declared["organization"]),
            x509.NameAttribute(NameOID.COMMON_NAME, declared["commonName"]),
        ]
    )


def with_allowed_uses(builder: x509.CertificateBuilder, allowed_uses: Sequence[str]) -> x509.CertificateBuilder:
    unknown = set(allowed_uses) - KEY_USAGES.keys() - EXTENDED_KEY_USAGES.keys()
    assert not unknown, f"teach the mirror these allowed_uses: {unknown}"
    flags = dict.fromkeys(KEY_USAGES.values(), False)
    flags.update({KEY_USAGES[use]: True for use in allowed_uses if use in KEY_USAGES})
    if any(flags.values()):
        builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
    extended = [EXTENDED_KEY_USAGES[use] for use in allowed_uses if use in EXTENDED_KEY_USAGES]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    return builder


def valid_for(builder: x509.CertificateBuilder, hours: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        builder.not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(hours=hours))
        .serial_number(x509.random_serial_number() >> 31)  # 128 bits
    )


def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class Issued:
    certificate: bytes  # PEM
    key: bytes  # PEM


@dataclass(frozen=True)
class Authority:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls, declared: dict[str, Any]) -> Authority:
        key = private_key()
        name = subject(declared["subject"])
        builder = x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        builder = valid_for(builder, declared["validityPeriodHours"])
        assert declared["isCaCertificate"] is True
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        builder = with_allowed_uses(builder, declared["allowedUses"])
        return cls(key, builder.sign(key, hashes.SHA256()))

    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(self, request: dict[str, Any], declared: dict[str, Any]) -> Issued:
        key = private_key()
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in request["dnsNames"]]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in request["ipAddresses"]]
        issuer_key_id = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject(request["subject"]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
        )
        builder = valid_for(builder, declared["validityPeriodHours"])
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        builder = with_allowed_uses(builder, declared["allowedUses"])
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_key_id), critical=False
        )
        certificate = builder.sign(self.key, hashes.SHA256())
        return Issued(certificate.public_bytes(serialization.Encoding.PEM), pem_key(key))


def node_certificate(ca: Authority, node: Node, *, dns_san: bool = True) -> Issued:
    """`node`'s certificate as cluster_tls.py declares it (`dns_san=False`: without dnsNames)."""
    request = declared_request(node)
    if not dns_san:
        request["dnsNames"] = []
    return ca.issue(request, declared_node_certificate())


def tls_files(directory: Path, trusted: Sequence[Authority], issued: Issued) -> Path:
    """The node's cluster-tls directory as the container gets it; returns its ssl_dist.conf."""
    directory.mkdir()
    files = ClusterTlsFiles(directory=str(directory))
    Path(files.path(files.ca)).write_bytes(b"".join(ca.pem() for ca in trusted))
    Path(files.path(files.certificate)).write_bytes(issued.certificate)
    Path(files.path(files.key)).write_bytes(issued.key)
    optfile = Path(files.path(files.dist_options))
    optfile.write_text(ssl_dist_options(files))
    return optfile


@pytest.fixture(scope="module")
def cluster_ca() -> Authority:
    return Authority.create(declared_ca())


@pytest.fixture(scope="module")
def other_ca() -> Authority:
    """Another CA with the very same attributes (an attacker can copy them all but the key)."""
    return Authority.create(declared_ca())


def test_the_mirror_is_what_cluster_tls_declares() -> None:
    """The program under mocks, the nodes on hosts of their own (TEST-NET addresses: several hosts
    may not be loopback addresses): the pulumi-tls inputs are the mirror's, and each node's
    environment has what the VMs below are started with."""
    lan = tuple(Node(f"{node.short_name}@192.0.2.{position}") for position, node in enumerate(HOSTS, start=2))
    single_host = (*SINGLE_HOST_KEYS, "nodes")
    base = {key: value for key, value in stack_config("dev").items() if key.split(":", 1)[1] not in single_host}
    hosts = [{"name": f"h{i}", "address": node.address, "nodes": 1, "sshUser": "deploy"} for i, node in enumerate(lan)]
    fake_key = "-----BEGIN OPENSSH PRIVATE KEY-----\nZmFrZQ==\n-----END OPENSSH PRIVATE KEY-----\n"
    config = with_changes(base, hosts=hosts, publicHostname="mqtt.example.net", lbListenAddress="0.0.0.0")
    run = run_program(config, secrets={"sshPrivateKey": fake_key}, stack="dev")

    def inputs(name: str) -> dict[str, Any]:
        return {key: value for key, value in run.named(name).inputs.items() if not key.endswith("Pem")}

    assert inputs("emqx-cluster-ca-key") == KEY
    assert inputs("emqx-cluster-ca") == declared_ca()
    for node in lan:
        assert inputs(f"{node.short_name}-tls-key") == KEY
        assert inputs(f"{node.short_name}-tls-request") == declared_request(node)
        assert inputs(f"{node.short_name}-tls-cert") == declared_node_certificate()
    shipped = {container.node_name: envs(container) for container in brokers(run)}
    assert set(shipped) == {node.name for node in lan}
    for node in lan:
        env = shipped[node.name]
        assert env["ERL_AFLAGS"] == aflags(node)
        assert env["EMQX_CLUSTER__PROTO_DIST"] == PROTO_DIST == "inet_tls"
        assert env["EMQX_SSL_DIST_OPTFILE"] == CLUSTER_TLS_FILES.path(CLUSTER_TLS_FILES.dist_options)


def test_the_mirror_makes_what_cluster_tls_describes(cluster_ca: Authority) -> None:
    """Spelled out once: the attributes cluster_tls.py describes, read off the X.509 the mirror makes."""
    ca = cluster_ca.certificate
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    ca_usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert (ca_usage.key_cert_sign, ca_usage.crl_sign, ca_usage.digital_signature) == (True, True, True)
    node = x509.load_pem_x509_certificate(node_certificate(cluster_ca, EMQX1).certificate)
    assert node.subject.rfc4514_string() == "CN=emqx1@127.0.0.2,O=emqx-cluster"
    public_key = node.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    sans = node.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["127.0.0.2"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.2"]
    usage = node.extensions.get_extension_for_class(x509.KeyUsage).value
    assert (usage.digital_signature, usage.key_encipherment, usage.key_cert_sign) == (True, True, False)
    extended = node.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(extended) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    node.verify_directly_issued_by(ca)


# ------------------------------------------------------------------------------ the VMs


@dataclass
class Vm:
    node: Node
    port: int
    erlang: ErlangProcess

    def ping(self, other: Node) -> str:
        return self.erlang.evaluate(f"net_adm:ping('{other.name}')")

    def protocol_to(self, other: Node) -> str:
        """The protocol of this VM's distribution connection to `other` (net_address.protocol)."""
        return self.erlang.evaluate(
            f"{{ok, Info}} = net_kernel:node_info('{other.name}'), element(4, proplists:get_value(address, Info))"
        )

    def logged(self, pattern: str) -> str:
        """The first line of this VM's log matching `pattern` (ssl logs alerts as notices)."""
        return self.erlang.wait_for_line(pattern, timeout=10).group(0)


class Vms:
    """Starts VMs for one test: `tls` with an ssl_dist.conf, or plain inet_tcp distribution."""

    def __init__(self, directory: Path, epmd_port: int) -> None:
        self.directory = directory
        self.epmd_port = epmd_port
        self.processes = ErlangProcesses(directory)

    def start(self, node: Node, optfile: Path | None, *flags: str) -> Vm:
        assert ERL is not None
        port = free_dist_port()
        distribution = ["-proto_dist", PROTO_DIST, "-ssl_dist_optfile", str(optfile)] if optfile else []
        argv = [
            ERL, "-noshell", "-start_epmd", "false",
            "-name", node.name, "-setcookie", COOKIE,
            *distribution,
            "-kernel", "inet_dist_listen_min", str(port), "inet_dist_listen_max", str(port),
            *flags,
            "-eval", AGENT_EVAL,
        ]  # fmt: skip
        env = erl_environment(self.epmd_port, self.directory, ERL_AFLAGS=aflags(node))
        label = f"{node.short_name}-{len(self.processes.started)}"
        return Vm(node, port, self.processes.start(argv, env, label, stdin=True))

    def tls(self, node: Node, trusted: Sequence[Authority], issued: Issued, *flags: str) -> Vm:
        optfile = tls_files(self.directory / f"{node.short_name}-{len(self.processes.started)}", trusted, issued)
        return self.start(node, optfile, *flags)

    def plain(self, node: Node) -> Vm:
        return self.start(node, None)


def ready(*vms: Vm) -> None:
    """Waits for every VM's agent (started together, they boot in parallel)."""
    for vm in vms:
        vm.erlang.wait_for_line(AGENT_READY)


@pytest.fixture(scope="module")
def erlang_with_ssl() -> None:
    missing = missing_executables("erl", "epmd")
    if missing:
        pytest.skip(f"needs Debian's erlang-base and erlang-ssl ({', '.join(missing)} not found)")
    why = missing_applications("ssl")
    if why is not None:
        pytest.skip(f"needs Debian's erlang-ssl: OTP's ssl application does not start here: {why}")


@pytest.fixture
def vms(erlang_with_ssl: None, tmp_path: Path) -> Iterator[Vms]:
    with private_epmd(tmp_path, [node.address for node in HOSTS]) as epmd_port:
        started = Vms(tmp_path, epmd_port)
        with started.processes:
            yield started


# ------------------------------------------------------------------------------ the proof


def test_nodes_with_certificates_of_the_cluster_ca_connect_over_tls(vms: Vms, cluster_ca: Authority) -> None:
    emqx1 = vms.tls(EMQX1, [cluster_ca], node_certificate(cluster_ca, EMQX1))
    emqx2 = vms.tls(EMQX2, [cluster_ca], node_certificate(cluster_ca, EMQX2))
    ready(emqx1, emqx2)
    assert emqx2.ping(EMQX1) == "pong", emqx2.erlang.output()
    assert emqx1.erlang.evaluate("nodes()") == f"['{EMQX2.name}']"
    # inet_tls_dist's connections carry protocol `tls` (inet_tcp_dist's: `tcp`), on both sides.
    assert emqx2.protocol_to(EMQX1) == "tls"
    assert emqx1.protocol_to(EMQX2) == "tls"


@pytest.mark.parametrize("impostor_dials", [True, False], ids=["impostor-dials", "impostor-is-dialled"])
def test_a_certificate_of_another_ca_is_refused(
    vms: Vms, cluster_ca: Authority, other_ca: Authority, impostor_dials: bool
) -> None:
    """Same name, address, attributes and cookie, another CA: refused whoever dials.

    The impostor trusts the cluster CA too (its certificate is no secret), so it accepts emqx1's
    certificate: the refusal is emqx1's verify_peer, as server (fail_if_no_peer_cert) or client.
    """
    emqx1 = vms.tls(EMQX1, [cluster_ca], node_certificate(cluster_ca, EMQX1))
    impostor = vms.tls(EMQX2, [other_ca, cluster_ca], node_certificate(other_ca, EMQX2))
    ready(emqx1, impostor)
    if impostor_dials:
        assert impostor.ping(EMQX1) == "pang"
        emqx1.logged(r"generated SERVER ALERT: Fatal - Unknown CA")
    else:
        assert emqx1.ping(EMQX2) == "pang"
        emqx1.logged(r"generated CLIENT ALERT: Fatal - Unknown CA")
    assert emqx1.erlang.evaluate("nodes()") == "[]"


def test_plain_tcp_and_tls_nodes_cannot_connect(vms: Vms, cluster_ca: Authority) -> None:
    """Why turning cluster TLS on or off changes every node at once.

    Dialled by a TLS node, a plain node reads the ClientHello as the 2-byte length of a
    handshake message and waits for the rest, while the TLS node waits for a ServerHello: only
    net_setuptime (default 7 s) ends it, hence 2 s on emqx1.
    """
    emqx1 = vms.tls(EMQX1, [cluster_ca], node_certificate(cluster_ca, EMQX1), "-kernel", "net_setuptime", "2")
    plain = vms.plain(EMQX2)
    emqx3 = vms.tls(EMQX3, [cluster_ca], node_certificate(cluster_ca, EMQX3))
    ready(emqx1, plain, emqx3)
    assert plain.ping(EMQX1) == "pang"
    emqx1.logged(r"unsupported_record_type")  # the plain handshake is no TLS record
    assert emqx1.ping(EMQX2) == "pang"
    # The TLS node is fine with a TLS peer all along.
    assert emqx3.ping(EMQX1) == "pong", emqx3.erlang.output()
    assert emqx1.erlang.evaluate("nodes()") == f"['{EMQX3.name}']"


def test_a_certificate_without_the_dns_san_fails_when_dialled(vms: Vms, cluster_ca: Authority) -> None:
    """Why cluster_tls.py puts the address in dns_names too, not only in ip_addresses.

    inet_tls_dist dials `emqx2@127.0.0.3` with server_name_indication "127.0.0.3", and ssl then
    checks the certificate against it as a DNS name only (public_key's dns_id never matches an
    iPAddress SAN): {bad_cert,hostname_check_failed}. The accepting side checks no name, so the
    same node still reaches its peers: only the name check tells the two certificates apart.
    """
    emqx1 = vms.tls(EMQX1, [cluster_ca], node_certificate(cluster_ca, EMQX1))
    ip_only = vms.tls(EMQX2, [cluster_ca], node_certificate(cluster_ca, EMQX2, dns_san=False))
    ready(emqx1, ip_only)
    assert emqx1.ping(EMQX2) == "pang"
    emqx1.logged(r"\{bad_cert,hostname_check_failed\}")
    assert ip_only.ping(EMQX1) == "pong", ip_only.erlang.output()
    assert ip_only.protocol_to(EMQX1) == "tls"


def test_the_tls_listener_is_bound_to_the_node_address_on_its_fixed_port(
    vms: Vms, cluster_ca: Authority, tmp_path: Path
) -> None:
    emqx1 = vms.tls(EMQX1, [cluster_ca], node_certificate(cluster_ca, EMQX1))
    ready(emqx1)
    assert tcp_listeners(emqx1.port) == {EMQX1.address}
    # The port its peers look up is that one.
    assert emqx1.erlang.evaluate(f'erl_epmd:port_please("{EMQX1.short_name}", {erlang_address(EMQX1.address)})') == (
        f"{{port,{emqx1.port},6}}"
    )

    # It speaks TLS there: a client with a cluster certificate verifies emqx1's (chain and IP
    # SAN) over TLS 1.3, which ssl_dist.conf's `versions` allows (inet_tls_dist's default is 1.2).
    peer = node_certificate(cluster_ca, EMQX2)
    client_files = tmp_path / "client"
    client_files.mkdir()
    (client_files / "ca.pem").write_bytes(cluster_ca.pem())
    (client_files / "node.pem").write_bytes(peer.certificate)
    (client_files / "node.key").write_bytes(peer.key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(client_files / "ca.pem")
    context.load_cert_chain(client_files / "node.pem", client_files / "node.key")
    with (
        socket.create_connection((EMQX1.address, emqx1.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=EMQX1.address) as tls,
    ):
        assert tls.version() == "TLSv1.3"
        certificate = tls.getpeercert()
        assert certificate is not None
        assert (("commonName", EMQX1.name),) in certificate["subject"]

    # A client without a certificate is turned away (fail_if_no_peer_cert).
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.load_verify_locations(client_files / "ca.pem")
    with (
        pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"),
        socket.create_connection((EMQX1.address, emqx1.port), timeout=10) as raw,
        anonymous.wrap_socket(raw, server_hostname=EMQX1.address) as tls,
    ):
        tls.recv(1)  # TLS 1.3: the server's verdict arrives after the client's handshake

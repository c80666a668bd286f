"""Cluster TLS: a cluster CA and one certificate per node, for Erlang distribution over TLS and
gen_rpc over SSL (mutual: every node presents its certificate and verifies its peer's).

Creates (with cluster TLS on) `emqx-cluster-ca-key` and `emqx-cluster-ca` (ECDSA P-256, a
self-signed CA kept in state, the key a secret), and per node `<node>-tls-key`,
`<node>-tls-request` and `<node>-tls-cert`: a certificate for the node's name and its host's
address, signed by the cluster CA, for both server and client use. The files reach the node as
its host command's stdin (never a command line) and a read-only mount.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

from components.plan import ClusterPlan
from components.render.broker_env import CLUSTER_TLS_FILES, ssl_dist_options
from components.render.host_scripts import file_bundle

CA_VALIDITY_HOURS = 24 * 365 * 10
NODE_VALIDITY_HOURS = 24 * 365
# pulumi-tls replaces a certificate only once it counts as expired: a `pulumi up` in its last 30
# days renews it (and rolls the nodes, wave by wave) before a peer refuses it.
NODE_EARLY_RENEWAL_HOURS = 24 * 30


@dataclass(frozen=True)
class NodeTls:
    bundle: pulumi.Output[str]  # secret: the files as file_bundle frames, for node_files_script
    fingerprint: pulumi.Output[str]  # SHA-256 of the node's certificate (public)


def cluster_tls(plan: ClusterPlan, parent: pulumi.Resource) -> Mapping[str, NodeTls]:
    """Node short name -> its TLS files, all signed by one cluster CA."""
    child = pulumi.ResourceOptions(parent=parent)
    ca_key = tls.PrivateKey(plan.names.resource("cluster-ca-key"), algorithm="ECDSA", ecdsa_curve="P256", opts=child)
    ca = tls.SelfSignedCert(
        plan.names.resource("cluster-ca"),
        private_key_pem=ca_key.private_key_pem,
        subject=tls.SelfSignedCertSubjectArgs(common_name="emqx-cluster CA", organization="emqx-cluster"),
        is_ca_certificate=True,
        validity_period_hours=CA_VALIDITY_HOURS,
        allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
        opts=child,
    )
    certificates: dict[str, NodeTls] = {}
    for node in plan.nodes:
        key = tls.PrivateKey(
            plan.names.node_certificate(node.short_name, "key"), algorithm="ECDSA", ecdsa_curve="P256", opts=child
        )
        request = tls.CertRequest(
            plan.names.node_certificate(node.short_name, "request"),
            private_key_pem=key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(common_name=node.node_name, organization="emqx-cluster"),
            # A peer dialling `emqx<i>@<address>` checks the address as a DNS name (OTP's
            # inet_tls_dist sends it as server_name_indication; public_key matches a dns_id
            # against dNSName SANs only), other TLS tools as an IP address: both.
            dns_names=[node.address],
            ip_addresses=[node.address],
            opts=child,
        )
        cert = tls.LocallySignedCert(
            plan.names.node_certificate(node.short_name, "cert"),
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca.cert_pem,
            validity_period_hours=NODE_VALIDITY_HOURS,
            early_renewal_hours=NODE_EARLY_RENEWAL_HOURS,
            # Each node is the server of the connections it accepts and the client of those it dials.
            allowed_uses=["digital_signature", "key_encipherment", "server_auth", "client_auth"],
            opts=child,
        )
        files = pulumi.Output.all(ca.cert_pem, cert.cert_pem, key.private_key_pem)
        certificates[node.short_name] = NodeTls(
            bundle=pulumi.Output.secret(files.apply(_node_files)),
            fingerprint=cert.cert_pem.apply(lambda pem: hashlib.sha256(pem.encode()).hexdigest()),
        )
    return certificates


def _node_files(pems: list[str]) -> str:
    ca, certificate, key = pems
    layout = CLUSTER_TLS_FILES
    return file_bundle(
        {
            layout.ca: ca,
            layout.certificate: certificate,
            layout.key: key,
            layout.dist_options: ssl_dist_options(layout),
        }
    )

"""The load balancer's TLS material: the configured chain and key, or a self-signed pair.

Creates (self-signed mode only) `emqx-tls-key` (ECDSA P-256) and `emqx-tls-cert`, for the
names and addresses clients use; both kept in state, the key as a secret.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

from components import names
from components.config import StackConfig

SELF_SIGNED_VALIDITY_HOURS = 24 * 365
# pulumi-tls replaces a self-signed certificate only once it counts as expired; with this, a
# `pulumi up` in its last 30 days renews it before clients see an expired one.
SELF_SIGNED_EARLY_RENEWAL_HOURS = 24 * 30


@dataclass(frozen=True)
class TlsMaterial:
    # Public when self-signed (clients must trust it); a configured chain stays the secret it
    # was set as (`pulumi stack output --show-secrets tlsCertificate`).
    certificate_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]  # secret


def tls_material(config: StackConfig, parent: pulumi.Resource) -> TlsMaterial:
    if config.tls.certificate is not None and config.tls.private_key is not None:
        return TlsMaterial(
            pulumi.Output.secret(config.tls.certificate.get_secret_value()),
            pulumi.Output.secret(config.tls.private_key.get_secret_value()),
        )
    child = pulumi.ResourceOptions(parent=parent)
    key = tls.PrivateKey(names.resource("tls-key"), algorithm="ECDSA", ecdsa_curve="P256", opts=child)
    dns_names, ip_addresses = config.self_signed_subjects()
    cert = tls.SelfSignedCert(
        names.resource("tls-cert"),
        private_key_pem=key.private_key_pem,
        subject=tls.SelfSignedCertSubjectArgs(common_name=config.client_hostname, organization="emqx-cluster"),
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        validity_period_hours=SELF_SIGNED_VALIDITY_HOURS,
        early_renewal_hours=SELF_SIGNED_EARLY_RENEWAL_HOURS,
        allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
        opts=child,
    )
    return TlsMaterial(cert.cert_pem, pulumi.Output.secret(key.private_key_pem))

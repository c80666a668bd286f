"""The load balancer's TLS material: the configured chain and key, or a self-signed pair, and
the session ticket keys every host's Nginx shares.

Creates (self-signed mode only) `emqx-tls-key` (ECDSA P-256) and `emqx-tls-cert`, for the
names and addresses clients use; both kept in state, the key as a secret. With session tickets
(on by default), `emqx-tls-ticket-key-<generation>` and the previous generation's: 80 random
bytes each, Nginx's AES-256 ticket key format (ngx_ssl_session_ticket_keys: "80-byte keys use
AES256-CBC and HMAC-SHA256"), secret outputs.

Why tickets: a reconnect storm follows every load balancer restart (a config change replaces
the container), and a session cache lives in Nginx's shared memory, which the restart empties;
ticket keys are files from Pulumi state, the same on every host and after every restart, so the
returning clients resume (bench/connection_capacity.py). What it costs: whoever holds a ticket key
(Pulumi state, the container's file) can decrypt the TLS 1.2 sessions resumed from tickets it
sealed (their master secret is in the ticket); TLS 1.3 resumption with a fresh key exchange
(psk_dhe_ke, what OpenSSL servers choose when the client offers it) keeps forward secrecy.
Rotating (tlsTicketKeyGeneration) bounds that window; tlsSessionTickets false turns it off.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pulumi
import pulumi_random as random
import pulumi_tls as tls

from components.args_config import LateInputs
from components.config import StackConfig
from components.names import ResourceNames

SELF_SIGNED_VALIDITY_HOURS = 24 * 365
# pulumi-tls replaces a self-signed certificate only once it counts as expired; with this, a
# `pulumi up` in its last 30 days renews it before clients see an expired one.
SELF_SIGNED_EARLY_RENEWAL_HOURS = 24 * 30
TICKET_KEY_BYTES = 80


@dataclass(frozen=True)
class TlsMaterial:
    # Public when self-signed (clients must trust it); a configured chain stays the secret it
    # was set as (`pulumi stack output --show-secrets tlsCertificate`).
    certificate_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]  # secret
    # Base64 session ticket keys, secret: the one that issues tickets first (Nginx's first
    # `ssl_session_ticket_key` encrypts, the others only decrypt). Empty: tickets off.
    ticket_keys: tuple[pulumi.Output[str], ...]
    client_ca_pem: pulumi.Input[str] | None = None  # clients must present a certificate it signed
    client_crl_pem: pulumi.Input[str] | None = None


def tls_material(
    config: StackConfig, resource_names: ResourceNames, parent: pulumi.Resource, late: LateInputs
) -> TlsMaterial:
    """The LB's TLS material; values given as Outputs (`late`) are used as such."""
    child = pulumi.ResourceOptions(parent=parent)
    client_ca = late.resolve_secret(config.tls.client_ca)
    client_crl = None if config.tls.client_crl is None else late.resolve(config.tls.client_crl)
    ticket_keys: tuple[pulumi.Output[str], ...] = tuple(
        pulumi.Output.secret(
            random.RandomBytes(
                resource_names.resource(f"tls-ticket-key-{generation}"),
                length=TICKET_KEY_BYTES,
                keepers=ticket_key_keepers(client_crl),
                opts=child,
            ).base64
        )
        for generation in config.tls.ticket_key_generations
    )
    if config.tls.certificate is not None and config.tls.private_key is not None:
        return TlsMaterial(
            pulumi.Output.secret(late.resolve(config.tls.certificate.get_secret_value())),
            pulumi.Output.secret(late.resolve(config.tls.private_key.get_secret_value())),
            ticket_keys,
            client_ca,
            client_crl,
        )
    key = tls.PrivateKey(resource_names.resource("tls-key"), algorithm="ECDSA", ecdsa_curve="P256", opts=child)
    dns_names, ip_addresses = config.self_signed_subjects()
    cert = tls.SelfSignedCert(
        resource_names.resource("tls-cert"),
        private_key_pem=key.private_key_pem,
        subject=tls.SelfSignedCertSubjectArgs(common_name=config.client_hostname, organization="emqx-cluster"),
        dns_names=dns_names,
        # Each once, also where an address given as an Output turns out to be one listed in
        # tlsDnsNames (self_signed_subjects can only tell the stand-ins apart).
        ip_addresses=pulumi.Output.from_input(late.resolve(ip_addresses)).apply(
            lambda known: list(dict.fromkeys(known))
        ),
        validity_period_hours=SELF_SIGNED_VALIDITY_HOURS,
        early_renewal_hours=SELF_SIGNED_EARLY_RENEWAL_HOURS,
        allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
        opts=child,
    )
    return TlsMaterial(cert.cert_pem, pulumi.Output.secret(key.private_key_pem), ticket_keys, client_ca, client_crl)


def ticket_key_keepers(crl: pulumi.Input[str] | None) -> dict[str, pulumi.Input[str]] | None:
    """With a client CRL, every ticket key is new whenever the CRL changes: a resumed session
    skips the client certificate check, and Nginx tells the sessions it may resume by the server
    certificate and the client CA's names only (nginx 1.27 ngx_event_openssl.c
    ngx_ssl_session_id_context), so a revoked client would resume with a ticket an old key
    sealed. New keys (and the new Nginx container they replace) make it shake hands in full."""
    if crl is None:
        return None
    return {
        "clientCrlSha256": pulumi.Output.from_input(crl).apply(lambda text: hashlib.sha256(text.encode()).hexdigest())
    }

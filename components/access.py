"""The access material every node gets and the client registry applies: users, API key, ACL.

Creates (pulumi-random, kept in state as secrets): `emqx-api-secret` (the program's REST key),
`emqx-mqtt-salt-key` (the HMAC key that derives each declared password's salt, see
render/access.py) and, with mqttGeneratedClient, `emqx-mqtt-generated-password`. Everything
derived from them is a secret output.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pulumi
from pydantic import SecretStr

from components.args_config import LateInputs
from components.config import StackConfig
from components.names import ResourceNames
from components.render.access import (
    ACCESS_FILES,
    MqttUser,
    acl_file,
    api_keys_file,
    declared_user,
    generated_user,
    users_file,
)
from components.render.host_scripts import file_bundle
from components.secrets import generated_secret
from components.tls import TlsMaterial

# Letters and digits only: the API secret sits in `key:secret:role` (no `:`) and in curl's
# config; the generated password in any client's command line.
API_SECRET_LENGTH = 40
SALT_KEY_LENGTH = 32
GENERATED_PASSWORD_LENGTH = 32


@dataclass(frozen=True)
class AccessMaterial:
    users: pulumi.Output[list[MqttUser]]  # secret: every declared client, hashed
    api_secret: pulumi.Output[str]  # secret
    acl: str  # the rendered ACL file (topic rules are not secret)
    files: pulumi.Output[str]  # secret: the access files as file_bundle frames
    generated_client: pulumi.Output[dict[str, str]] | None  # secret {username or clientid, password}
    # With adminNetworks: a digest of the HTTPS dashboard's certificate (EMQX reads it at boot).
    admin_certificate_digest: pulumi.Output[str] | None


def access_material(
    config: StackConfig, tls: TlsMaterial, resource_names: ResourceNames, parent: pulumi.Resource, late: LateInputs
) -> AccessMaterial:
    """The access files' content; with adminNetworks they carry the stack's TLS certificate and
    key for the HTTPS dashboard too. Clients' passwords (or hashes) given as Outputs (`late`) are
    hashed once known."""
    access = config.access
    api_secret = generated_secret(resource_names.resource("api-secret"), API_SECRET_LENGTH, parent)
    salt_key = generated_secret(resource_names.resource("mqtt-salt-key"), SALT_KEY_LENGTH, parent)
    generated_password = (
        generated_secret(resource_names.resource("mqtt-generated-password"), GENERATED_PASSWORD_LENGTH, parent)
        if access.generated_client is not None
        else None
    )

    # Each client's password and hash as given: the placeholder of an Output resolved to its value.
    given = [
        [late.resolve_secret(client.password), late.resolve_secret(client.password_hash)] for client in access.clients
    ]

    def hashed(values: list[Any]) -> list[MqttUser]:
        key, secrets, password = values[0], values[1], values[2] if len(values) > 2 else None
        clients = [
            client.model_copy(update={"password": _secret(known[0]), "password_hash": _secret(known[1])})
            for client, known in zip(access.clients, secrets, strict=True)
        ]
        users = [declared_user(client, access.password_hash, key) for client in clients]
        if access.generated_client is not None and password is not None:
            users.append(generated_user(access.generated_client, password, access.password_hash, key))
        return users

    inputs: list[pulumi.Input[Any]] = [salt_key, pulumi.Output.from_input(given)]
    if generated_password is not None:
        inputs.append(generated_password)
    # Whatever is computed from a secret output is a secret output (pulumi Output.apply keeps
    # is_secret), so users, files and the generated client stay secrets.
    users: pulumi.Output[list[MqttUser]] = pulumi.Output.all(*inputs).apply(hashed)
    acl = acl_file(access.acl)

    admin_https = bool(access.admin_networks)

    def bundle(values: list[Any]) -> str:
        files = {
            ACCESS_FILES.users: users_file(values[0]),
            ACCESS_FILES.api_keys: api_keys_file(values[1]),
            ACCESS_FILES.acl: acl,
        }
        if admin_https:
            files |= {ACCESS_FILES.admin_certificate: values[2], ACCESS_FILES.admin_key: values[3]}
        return file_bundle(files)

    tls_files = [tls.certificate_pem, tls.private_key_pem] if admin_https else []
    files: pulumi.Output[str] = pulumi.Output.all(users, api_secret, *tls_files).apply(bundle)
    generated_client = (
        generated_password.apply(
            lambda password: {access.client_id_type: str(access.generated_client), "password": password}
        )
        if generated_password is not None
        else None
    )
    digest = (
        tls.certificate_pem.apply(lambda pem: hashlib.sha256(pem.encode()).hexdigest()[:16]) if admin_https else None
    )
    return AccessMaterial(
        users=users,
        api_secret=api_secret,
        acl=acl,
        files=files,
        generated_client=generated_client,
        admin_certificate_digest=digest,
    )


def _secret(value: str | None) -> SecretStr | None:
    return None if value is None else SecretStr(value)

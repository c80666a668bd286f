"""Shared fixtures for the unit tests: one throw-away CA and server certificate per session."""

from __future__ import annotations

import pytest
import trustme

from tests.support.stackfiles import TlsMaterial


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1", "mqtt.prod.internal")
    certificate_path = directory / "server.crt"
    private_key_path = directory / "server.key"
    server.private_key_pem.write_to_path(str(private_key_path))
    with certificate_path.open("wb") as chain:
        for blob in server.cert_chain_pems:
            chain.write(blob.bytes())
    return TlsMaterial(
        certificate_pem=certificate_path.read_text(),
        private_key_pem=private_key_path.read_text(),
        certificate_path=certificate_path,
        private_key_path=private_key_path,
    )

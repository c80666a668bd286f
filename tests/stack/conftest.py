"""Fixtures for the whole-program tests: the dev and prod stacks, their secrets, cached mock runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.support.program import Deployments, ProgramRun
from tests.support.stackfiles import ProdSecrets, StackCase, stack_config

STACKS = ("dev", "prod")


@pytest.fixture(scope="session")
def prod_secrets() -> ProdSecrets:
    """A trustme certificate for the prod hostname and an OpenSSH deploy key, as `--secret` config."""
    authority = trustme.CA()
    issued = authority.issue_cert("mqtt.prod.internal")
    ssh_key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    return ProdSecrets(
        certificate_pem="".join(blob.bytes().decode() for blob in issued.cert_chain_pems),
        private_key_pem=issued.private_key_pem.bytes().decode(),
        ssh_private_key=ssh_key.decode(),
    )


@pytest.fixture(scope="session")
def stacks(prod_secrets: ProdSecrets) -> dict[str, StackCase]:
    return {
        "dev": StackCase("dev", stack_config("dev")),
        "prod": StackCase("prod", stack_config("prod"), prod_secrets.as_config()),
    }


@pytest.fixture(scope="session")
def deployments() -> Iterator[Deployments]:
    yield Deployments()


@pytest.fixture(params=STACKS)
def case(request: pytest.FixtureRequest, stacks: dict[str, StackCase]) -> StackCase:
    """Each stack as configured in its Pulumi.<stack>.yaml."""
    return stacks[request.param]


@pytest.fixture(params=["update", "preview"])
def preview(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "preview")


@pytest.fixture
def any_run(case: StackCase, preview: bool, deployments: Deployments) -> ProgramRun:
    """The stack's run in both modes: for what must hold even while outputs are unknown."""
    return deployments.run(case, preview=preview)


@pytest.fixture
def deployed(case: StackCase, deployments: Deployments) -> ProgramRun:
    """The stack's run in update mode: every input known."""
    return deployments.run(case)

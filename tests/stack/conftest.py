"""Fixtures for the whole-program tests: the dev and prod stacks, their secrets, cached mock runs."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from components.config import NAMESPACE, StackConfig, parse_stack_config
from components.plan import ClusterPlan, plan_cluster
from tests.stack.harness import ProgramRun, run_program, stack_config

STACKS = ("dev", "prod")


@dataclass(frozen=True)
class ProdSecrets:
    certificate_pem: str
    private_key_pem: str
    ssh_private_key: str

    def as_config(self) -> dict[str, str]:
        return {
            "tlsCertificate": self.certificate_pem,
            "tlsPrivateKey": self.private_key_pem,
            "sshPrivateKey": self.ssh_private_key,
        }


@dataclass(frozen=True)
class StackCase:
    """One stack's config as Pulumi would hand it to the program (plain values and secrets)."""

    stack: str
    config: Mapping[str, Any]  # `emqx-cluster:*` keys from Pulumi.<stack>.yaml (+ overrides)
    secrets: Mapping[str, str] = field(default_factory=dict)  # keys without namespace, set as secrets

    def with_config(self, **overrides: Any) -> StackCase:
        """The same stack with some keys (camelCase, no namespace) changed, as `pulumi config set` would."""
        return replace(self, config={**self.config, **{f"{NAMESPACE}:{k}": v for k, v in overrides.items()}})

    def setting(self, key: str) -> Any:
        return self.config[f"{NAMESPACE}:{key}"]

    @property
    def nodes(self) -> int:
        return int(self.setting("nodes"))

    def parsed(self) -> StackConfig:
        """The validated config, through the program's own parser (for expected values)."""
        raw = {key.split(":", 1)[1]: _as_text(value) for key, value in self.config.items()}
        return parse_stack_config({**raw, **self.secrets})

    def plan(self) -> ClusterPlan:
        return plan_cluster(self.parsed())

    def key(self, preview: bool) -> str:
        return json.dumps([self.stack, dict(self.config), dict(self.secrets), preview], sort_keys=True)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class Deployments:
    """Runs the program under mocks, once per distinct (config, secrets, mode)."""

    def __init__(self) -> None:
        self._runs: dict[str, ProgramRun] = {}

    def run(self, case: StackCase, *, preview: bool = False) -> ProgramRun:
        key = case.key(preview)
        if key not in self._runs:
            self._runs[key] = run_program(case.config, secrets=case.secrets, preview=preview, stack=case.stack)
        return self._runs[key]


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

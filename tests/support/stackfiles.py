"""Stack files and stack config as the Pulumi program sees them.

`stack_config` reads the `config:` block of Pulumi.<stack>.yaml (namespaced keys, YAML values:
what the stack tests hand `run_program`); `stack_raw` / `parse_config` turn such values into what
`pulumi.Config.get` returns (namespace stripped, values as strings) and `validate` /
`parse_config` run the program's own parser over them.  `throwaway_config` is a stack whose
host paths live under a temporary dir; `StackCase` one stack as the stack tier varies it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from components.config import StackConfig
from components.config_parse import parse_stack_config
from components.config_types import NAMESPACE
from components.plan import ClusterPlan, plan_cluster

PROJECT_DIR = Path(__file__).resolve().parents[2]
PROJECT = NAMESPACE  # the Pulumi project and its config namespace: "emqx-cluster"


def stack_config(stack: str) -> dict[str, Any]:
    """The `config:` block of Pulumi.<stack>.yaml, keys with namespace."""
    document = yaml.safe_load((PROJECT_DIR / f"Pulumi.{stack}.yaml").read_text())
    return dict(document["config"])


def pulumi_string(value: Any) -> str:
    """What `pulumi.Config.get` returns: strings as they are, everything else JSON-encoded."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def namespaced(key: str) -> str:
    return key if ":" in key else f"{NAMESPACE}:{key}"


def stack_raw(stack: str) -> dict[str, str | None]:
    """The raw `emqx-cluster:*` values of Pulumi.<stack>.yaml, keyed without the namespace."""
    prefix = f"{NAMESPACE}:"
    return {
        key.removeprefix(prefix): pulumi_string(value)
        for key, value in stack_config(stack).items()
        if key.startswith(prefix)
    }


def validate(raw: Mapping[str, str | None]) -> tuple[StackConfig, ClusterPlan]:
    """Everything `pulumi preview` checks before a resource is declared: the config, then the plan."""
    config = parse_stack_config(raw)
    return config, plan_cluster(config)


def parse_config(config: Mapping[str, Any], secrets: Mapping[str, str] | None = None) -> StackConfig:
    """The StackConfig the program builds from the values `run_program` is given."""
    raw: dict[str, str | None] = {
        namespaced(key).split(":", 1)[1]: pulumi_string(value) for key, value in {**config, **(secrets or {})}.items()
    }
    return parse_stack_config(raw)


def throwaway_settings(root: Path) -> dict[str, Any]:
    """Every host path under `root` (data dir, sysctl drop-in) and limits these machines allow.

    The limits stay within the hard nofile limit of these machines (20000), which any Docker
    daemon running here (the e2e tier's) inherits: preflight would rightly refuse the
    production defaults (LB: nofile 2 x 4096 + 1024 = 9216).  Keys are camelCase, no namespace.
    """
    return {
        "dataDir": str(root / "data"),
        "sysctlDropIn": str(root / "sysctl.d" / "60-emqx-cluster.conf"),
        "brokerNofileLimit": 16384,
        "lbWorkerConnections": 4096,
    }


def throwaway_config(root: Path, *, base: str = "dev", **overrides: Any) -> dict[str, Any]:
    """`base`'s stack config with `throwaway_settings(root)`.

    `overrides` are camelCase keys without namespace, e.g. `nodes=5, joinTimeoutSeconds=5`.
    """
    return with_changes(stack_config(base), **{**throwaway_settings(root), **overrides})


def with_changes(config: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
    """`config` with some keys (camelCase, no namespace) changed, as `pulumi config set` would."""
    return {**config, **{namespaced(key): value for key, value in changes.items()}}


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
        return replace(self, config=with_changes(self.config, **overrides))

    def setting(self, key: str) -> Any:
        return self.config[namespaced(key)]

    @property
    def nodes(self) -> int:
        return int(self.setting("nodes"))

    def parsed(self) -> StackConfig:
        """The validated config, through the program's own parser (for expected values)."""
        return parse_config(self.config, self.secrets)

    def plan(self) -> ClusterPlan:
        return plan_cluster(self.parsed())

    def key(self, preview: bool) -> str:
        return json.dumps([self.stack, dict(self.config), dict(self.secrets), preview], sort_keys=True)


@dataclass(frozen=True)
class TlsMaterial:
    """A server certificate chain and key from a throw-away CA, as PEM text and as files."""

    certificate_pem: str
    private_key_pem: str
    certificate_path: Path
    private_key_path: Path

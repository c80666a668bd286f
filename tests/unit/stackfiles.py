"""Stack files as the Pulumi program sees them: `emqx-cluster:` keys stripped, values as strings."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.config import NAMESPACE, StackConfig, parse_stack_config
from components.plan import ClusterPlan, plan_cluster

PROJECT_DIR = Path(__file__).resolve().parents[2]


def pulumi_string(value: Any) -> str:
    """What `pulumi.Config.get` returns: strings as they are, everything else JSON-encoded."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def stack_raw(stack: str) -> dict[str, str | None]:
    """The raw `emqx-cluster:*` values of Pulumi.<stack>.yaml, keyed without the namespace."""
    document = yaml.safe_load((PROJECT_DIR / f"Pulumi.{stack}.yaml").read_text())
    prefix = f"{NAMESPACE}:"
    return {
        key.removeprefix(prefix): pulumi_string(value)
        for key, value in document["config"].items()
        if key.startswith(prefix)
    }


def validate(raw: Mapping[str, str | None]) -> tuple[StackConfig, ClusterPlan]:
    """Everything `pulumi preview` checks before a resource is declared: the config, then the plan."""
    config = parse_stack_config(raw)
    return config, plan_cluster(config)


@dataclass(frozen=True)
class TlsMaterial:
    """A server certificate chain and key from a throw-away CA, as PEM text and as files."""

    certificate_pem: str
    private_key_pem: str
    certificate_path: Path
    private_key_path: Path

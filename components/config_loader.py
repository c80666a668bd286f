"""Reads the `emqx-cluster:*` stack config from Pulumi and validates it (the only Pulumi-aware config step)."""

from __future__ import annotations

import pulumi.runtime.config as pulumi_config

from components.config import StackConfig, config_keys
from components.config_parse import SECRET_KEYS, ConfigError, holds_secrets, parse_stack_config
from components.config_types import NAMESPACE


def _namespace_keys() -> set[str]:
    """Every key set in this namespace, known or not, so typos are reported, not ignored."""
    present = {*pulumi_config.CONFIG.get(), *pulumi_config.get_config_env()}
    return {key.split(":", 1)[1] for key in present if key.startswith(f"{NAMESPACE}:")}


def load_stack_config() -> StackConfig:
    """Validate the stack's config before any resource is declared; raise ConfigError otherwise."""
    keys = set(config_keys()) | _namespace_keys()
    raw = {key: pulumi_config.get_config(f"{NAMESPACE}:{key}") for key in sorted(keys)}
    plain = [
        key
        for key, text in raw.items()
        if text is not None
        and (key in SECRET_KEYS or holds_secrets(key, text))
        and not pulumi_config.is_config_secret(f"{NAMESPACE}:{key}")
    ]
    if plain:
        raise ConfigError.of(
            f"{NAMESPACE}:{key} is stored in plain text: allowed: a secret value, set with "
            f"`pulumi config set --secret {key}`"
            + (
                " (a host's key: `pulumi config set --secret --path 'hosts[i].sshPrivateKey'`)"
                if key == "hosts"
                else ""
            )
            for key in plain
        )
    return parse_stack_config(raw)

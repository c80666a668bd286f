"""The cluster's two secrets: configured ones, or generated once and kept in state by pulumi-random.

Creates (when not configured) `emqx-erlang-cookie` and `emqx-dashboard-password`; both reach
the brokers only inside their (secret) environments (broker_cluster.broker_environments).
"""

from __future__ import annotations

import pulumi
import pulumi_random as random

COOKIE_LENGTH = 48
DASHBOARD_PASSWORD_LENGTH = 24


def letter_led(generated: str) -> str:
    """A generated cookie that starts with a letter, as EMQX needs it (see config_types.ERLANG_COOKIE).

    pulumi-random may put a digit first; a fixed letter in front keeps every generated cookie
    valid without a retry loop (the random part keeps its full length).
    """
    return generated if generated[:1].isalpha() else f"k{generated}"


def generated_secret(name: str, length: int, parent: pulumi.Resource) -> pulumi.Output[str]:
    """Letters and digits from pulumi-random, kept in state, a secret output (what is computed
    from it stays one: apply keeps is_secret)."""
    generated = random.RandomPassword(name, length=length, special=False, opts=pulumi.ResourceOptions(parent=parent))
    return pulumi.Output.secret(generated.result)


def erlang_cookie(given: pulumi.Input[str] | None, name: str, parent: pulumi.Resource) -> pulumi.Output[str]:
    if given is not None:
        return pulumi.Output.secret(given)
    return generated_secret(name, COOKIE_LENGTH, parent).apply(letter_led)


def dashboard_password(given: pulumi.Input[str] | None, name: str, parent: pulumi.Resource) -> pulumi.Output[str]:
    if given is not None:
        return pulumi.Output.secret(given)
    # EMQX's password rule wants two kinds of characters (config_types.DashboardPassword): with
    # these minimums every generated password passes it, whatever the draw.
    generated = random.RandomPassword(
        name,
        length=DASHBOARD_PASSWORD_LENGTH,
        special=True,
        override_special="_-",
        min_lower=1,
        min_upper=1,
        min_numeric=1,
        min_special=1,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return pulumi.Output.secret(generated.result)

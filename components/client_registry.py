"""ClientRegistry: the declared MQTT clients and topic rules, applied to the running cluster.

Creates, on the seed's host once the whole cluster is verified (the last wave's gate):
- `emqx-mqtt-client-<id>` per declared client (none with allowAnonymous): create and update
  write its hash into the built-in database (REST import, overwriting), delete removes it. So a
  new password, an added and a removed client are each one `pulumi up` that restarts no node:
  Pulumi's own diff says which client changed;
- `emqx-mqtt-acl`: the topic rules, replaced on every node through the REST API.
The nodes' access files (written before they start, see BrokerCluster) carry the same users and
rules for whatever boots later; EMQX imports the users file without overwriting, hence the calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components import names
from components.access import AccessMaterial
from components.host_site import HostSite
from components.plan import ClusterPlan
from components.render.access import MqttUser
from components.render.access_scripts import acl_apply_script, user_delete_script, user_upsert_script
from components.render.cluster_scripts import note_script


@dataclass(frozen=True)
class ClientRegistryArgs:
    plan: ClusterPlan
    seed_site: HostSite
    access: AccessMaterial
    user_ids: Sequence[str]  # the declared ids, in config order (public: resource names)
    timeout_seconds: int
    after: Sequence[pulumi.Resource]  # the cluster verified


class ClientRegistry(pulumi.ComponentResource):
    """Every declared client and the topic rules, as REST calls on the seed node."""

    def __init__(self, name: str, args: ClientRegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(names.component_type("ClientRegistry"), name, None, opts)
        self._args = args
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.after))
        for user_id in args.user_ids:
            self._client(user_id, child)
        container, port, timeout = self._seed()
        rules = args.access.api_secret.apply(
            lambda key: acl_apply_script(container, port, key, args.access.acl, timeout)
        )
        args.seed_site.shell.command(
            args.plan.names.resource("mqtt-acl"),
            create=rules,
            update=rules,
            delete=note_script("topic rules: the nodes keep theirs until they go"),
            opts=child,
        )
        self.register_outputs({"clients": list(args.user_ids)})

    def _seed(self) -> tuple[str, int, int]:
        """Where the calls go: the seed's container, its local API port, and how long to wait."""
        seed = self._args.plan.seed
        return seed.container_name, seed.ports.dashboard, self._args.timeout_seconds

    def _client(self, user_id: str, opts: pulumi.ResourceOptions) -> None:
        """Scripts that hold the API secret or a hash are secret outputs themselves (apply keeps
        is_secret)."""
        args = self._args
        container, port, timeout = self._seed()

        def upsert(values: list[Any]) -> str:
            return user_upsert_script(container, port, values[1], _user(values[0], user_id), timeout)

        def remove(key: str) -> str:
            return user_delete_script(container, port, key, user_id, timeout)

        script: pulumi.Output[str] = pulumi.Output.all(args.access.users, args.access.api_secret).apply(upsert)
        args.seed_site.shell.command(
            args.plan.names.mqtt_client(user_id),
            create=script,
            update=script,
            delete=args.access.api_secret.apply(remove),
            opts=opts,
        )


def _user(users: Sequence[MqttUser], user_id: str) -> MqttUser:
    return next(user for user in users if user.user_id == user_id)

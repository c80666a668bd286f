"""EmqxCluster: the top component, the operator's step list from config to a verified cluster.

The steps, in the order `__init__` declares them (the engine runs each as soon as what it
depends on is done, so hosts proceed side by side):

1. per host: its Docker engine and shell;
2. per host, before any node starts there: host tuning (unless manageSysctls is false), the
   cluster firewall (several hosts, unless manageFirewall is false), preflight, the broker image;
3. the secrets, the access material (MQTT users, API key, ACL) and, with cluster TLS, the
   cluster CA and node certificates;
4. the broker cluster over every host: nodes wave by wave, memberships, gates;
5. the client registry: declared clients and topic rules applied to the running cluster;
6. per host: its load balancer, with the stack's TLS certificate;
7. metrics on: per host, Prometheus with the plan's alert rules.

`EmqxCluster(name, args, opts)`: every resource is named after `name` (names.ResourceNames),
so clusters with different names share no URN; `args` (cluster_args.EmqxClusterArgs) are
validated into the config model first (args_config.config_of). No postponed annotations here:
pulumi's component analyzer reads `args`' annotation from `__init__` as an object.
"""

import weakref
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import pulumi
import pulumi_docker as docker
from pulumi.runtime.settings import get_root_resource

from components import names
from components.access import AccessMaterial, access_material
from components.args_config import LateInputs, config_of
from components.broker_cluster import BrokerCluster, BrokerClusterArgs, StartedNode, broker_environments
from components.broker_image import BrokerImage, BrokerImageArgs
from components.capacity import HostCapacity, MemoryBudget, capacity_problems, cluster_capacity, memory_budget
from components.client_registry import ClientRegistry, ClientRegistryArgs
from components.cluster_args import EmqxClusterArgs
from components.cluster_tls import cluster_tls
from components.config import StackConfig
from components.config_parse import ConfigError
from components.firewall import ClusterFirewall, ClusterFirewallArgs
from components.host_claims import ClaimLedger, cluster_claims
from components.host_site import HostSite
from components.host_tuning import HostTuning, HostTuningArgs
from components.hostexec import HostShell
from components.load_balancer import LoadBalancer, LoadBalancerArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.plan import ClusterPlan, HostPlan, plan_cluster
from components.preflight import Preflight, PreflightArgs
from components.render.prometheus import PrometheusSettings, prometheus_settings
from components.secrets import dashboard_password, erlang_cookie
from components.tls import TlsMaterial, tls_material


class EmqxCluster(pulumi.ComponentResource):
    """N EMQX nodes on one or several Docker hosts, each host behind its own Nginx, tuned,
    clustered and verified."""

    # The outputs, as the component provider's schema declares them (pulumi's analyzer reads
    # these annotations and the string under each: provider/experimental/analyzer.py
    # analyze_component); the stack-config program exports the same names.
    endpoint: pulumi.Output[str]
    """Where clients connect: `<publicHostname or the first host>:<lbPort>`."""
    endpoints: pulumi.Output[dict[str, str]]
    """Each host's load balancer, `address:lbPort`, by host name."""
    dns_round_robin: pulumi.Output[dict[str, Any]]
    """The name clients use (publicHostname, or null) and one A record per host."""
    nodes: pulumi.Output[list[dict[str, Any]]]
    """One row per EMQX node: name, host, Docker host, container, wave, ports, data and log dirs, dashboard."""
    dashboard_urls: pulumi.Output[list[str]]
    """Each node's dashboard on its host's loopback."""
    dashboards: pulumi.Output[list[dict[str, Any]]]
    """Each node's dashboard: its loopback URL, the SSH tunnel that reaches it, and HTTPS from adminNetworks."""
    tls_certificate: pulumi.Output[str]
    """The load balancers' TLS certificate (PEM): clients trust it, or the CA that signed it."""
    dashboard_password: pulumi.Output[str]
    """The dashboard's admin password (a secret)."""
    mqtt_client: pulumi.Output[dict[str, Any]] | None
    """The generated MQTT client's username and password (a secret); null when clients are declared or anonymous."""
    mqtt_authentication: pulumi.Output[str]
    """How clients authenticate and what they may publish and subscribe to."""
    capacity: pulumi.Output[dict[str, Any]]
    """Each host's connection ceiling, the bound that decides it and what lifts it."""
    metrics: pulumi.Output[dict[str, Any]] | None
    """Each host's Prometheus and Nginx metrics endpoints, with metrics on; else null."""

    def __init__(self, name: str, args: EmqxClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # Validate and plan first: a ConfigError from the args, the port plan, the capacity or
        # another cluster of the program on the same Docker host surfaces before any resource
        # is declared.
        self.names = names.ResourceNames(name)
        # RunError: the engine prints the message alone, with "a clean exit rather than the usual
        # verbose unhandled error logic" (pulumi/errors.py), not a Python traceback.
        try:
            config, late = config_of(args)
        except ConfigError as error:
            raise pulumi.RunError(str(error)) from None
        try:
            plan = plan_cluster(config, self.names)
            over = capacity_problems(config, plan)
            if over:
                raise ConfigError.of(over)
            clashes = _program_ledger().claim(name, cluster_claims(config, plan, late.holds))
            if clashes:
                raise ConfigError.of(clashes)
        except ConfigError as error:
            # A value given as an Output is named as such, not by the stand-in the plan used.
            raise pulumi.RunError(late.named(str(error))) from None
        if late.by_placeholder:  # values given as Outputs: each child takes them for their placeholders
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(transformations=[late.transformation]))
        super().__init__(names.component_type("EmqxCluster"), name, None, opts)

        # 1. Each host's engine and shell.
        sites = [self._connect(host, late, first=position == 0) for position, host in enumerate(plan.hosts)]

        # 2. Each host made ready for its nodes.
        images: dict[str, BrokerImage] = {}
        memory_ceilings: dict[str, pulumi.Output[tuple[int, int]]] = {}
        for site in sites:
            if config.tuning.manage:
                site.ready.append(
                    HostTuning(site.resource_name("host"), HostTuningArgs.of(config, plan, site), opts=site.opts)
                )
            if config.opens_firewall:
                site.ready.append(
                    ClusterFirewall(
                        site.resource_name("firewall"), ClusterFirewallArgs.of(config, plan, site), opts=site.opts
                    )
                )
            preflight = Preflight(site.resource_name("preflight"), PreflightArgs.of(config, site), opts=site.opts)
            site.ready.append(preflight)
            memory_ceilings[site.host.label] = preflight.memory_ceiling
            images[site.host.label] = BrokerImage(
                site.resource_name("broker-image"), BrokerImageArgs.of(config, site), opts=site.opts
            )

        # 3. Secrets and cluster TLS.
        cookie = erlang_cookie(late.resolve_secret(config.erlang_cookie), self.names.resource("erlang-cookie"), self)
        password = dashboard_password(
            late.resolve_secret(config.dashboard_password), self.names.resource("dashboard-password"), self
        )
        node_tls = cluster_tls(plan, parent=self) if config.encrypts_cluster_traffic else {}
        tls = tls_material(config, self.names, parent=self, late=late)
        access = access_material(config, tls, self.names, parent=self, late=late)

        # 4. The brokers, wave by wave, formed into one verified cluster.
        brokers = BrokerCluster(
            self.names.resource("brokers"),
            BrokerClusterArgs(
                plan=plan,
                sites={site.host.label: site for site in sites},
                images=images,
                environments=broker_environments(plan, config, cookie, password),
                tls=node_tls,
                access_files=access.files,
                admin_https=bool(config.access.admin_networks),
                admin_certificate_digest=access.admin_certificate_digest,
                log_opts=config.container_log_opts,
                purge_data=config.purge_data,
                join_timeout_seconds=config.join_timeout_seconds,
                nofile_limit=config.broker_nofile_limit,
                stop_grace_seconds=config.broker_stop_grace_seconds,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

        # 5. Who may connect and what they may do, applied to the running cluster.
        seed_site = next(site for site in sites if site.host.label == plan.seed.host_label)
        ClientRegistry(
            self.names.resource("clients"),
            ClientRegistryArgs(
                plan=plan,
                seed_site=seed_site,
                access=access,
                user_ids=config.access.user_ids if config.access.authenticates else [],
                timeout_seconds=config.join_timeout_seconds,
                after=brokers.verified,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

        # 6. Each host's load balancer.
        for site in sites:
            LoadBalancer(
                site.resource_name("load-balancer"), LoadBalancerArgs.of(config, plan, site, tls), opts=site.opts
            )

        # Each host's capacity: the plan's bounds, and the memory bound its preflight computed from
        # its MemTotal (the `capacity` output, and the alerts' ceiling).
        planned = cluster_capacity(config, plan)
        capacities = {
            label: memory_ceilings[label].apply(
                partial(_with_memory, capacity, memory_budget(config, plan.host(label)))
            )
            for label, capacity in planned.items()
        }
        # 7. Metrics on: each host's Prometheus, its alerts measured against the host's ceiling.
        if config.monitoring.enabled:
            for site in sites:
                Monitoring(
                    site.resource_name("monitoring"),
                    MonitoringArgs.of(config, plan, site, capacities[site.host.label], access.api_secret),
                    opts=site.opts,
                )

        # 8. What the cluster tells its users.
        self._publish(config, plan, late, brokers.nodes, tls, password, access, planned, capacities)

    def _publish(
        self,
        config: StackConfig,
        plan: ClusterPlan,
        late: LateInputs,
        started: Sequence[StartedNode],
        tls: TlsMaterial,
        password: pulumi.Output[str],
        access: AccessMaterial,
        planned: Mapping[str, HostCapacity],
        capacities: Mapping[str, pulumi.Output[HostCapacity]],
    ) -> None:
        """The outputs, each a typed attribute (values given as Outputs in place of their stand-ins)."""
        self.endpoint = _output(late, f"{config.client_hostname}:{plan.lb_port}")
        self.endpoints = _output(late, {host.label: f"{host.address}:{plan.lb_port}" for host in plan.hosts})
        # One A record per host under the name clients use (None until publicHostname is set).
        self.dns_round_robin = _output(
            late, {"name": config.lb.public_hostname, "aRecords": [host.address for host in plan.hosts]}
        )
        self.nodes = _output(late, [_node_row(node, plan.host(node.plan.host_label).docker_host) for node in started])
        self.dashboard_urls = _output(late, [node.dashboard_url for node in plan.nodes])
        # Each node's dashboard, on its host's loopback, and how to reach it from here.
        self.dashboards = _output(
            late,
            [
                {
                    "node": node.node_name,
                    "host": node.host_label,
                    "url": node.dashboard_url,
                    "tunnel": plan.host(node.host_label).tunnel(node.ports.dashboard),
                    # From adminNetworks only (the host firewall), with the stack's certificate.
                    "https": node.admin_url if config.access.admin_networks else None,
                }
                for node in plan.nodes
            ],
        )
        self.tls_certificate = tls.certificate_pem
        self.dashboard_password = password
        self.capacity = _output(late, {label: _capacity_output(planned[label], capacities[label]) for label in planned})
        # Metrics on: where each host's Prometheus and Nginx metrics answer (on the host itself).
        self.metrics = (
            _output(late, {host.label: _metrics_output(prometheus_settings(config, host), host) for host in plan.hosts})
            if config.monitoring.enabled
            else None
        )
        self.mqtt_client = access.generated_client
        self.mqtt_authentication = pulumi.Output.from_input(
            "anonymous: allowAnonymous is true, every client is accepted"
            if not config.access.authenticates
            else f"MQTT {config.access.client_id_type} and password (EMQX built-in database, "
            f"{config.access.password_hash}); topics as mqttAcl allows, everything else denied"
        )
        self.register_outputs(
            {
                "endpoint": self.endpoint,
                "endpoints": self.endpoints,
                "dnsRoundRobin": self.dns_round_robin,
                "nodes": self.nodes,
                "dashboardUrls": self.dashboard_urls,
                "dashboards": self.dashboards,
                "mqttAuthentication": self.mqtt_authentication,
                "capacity": self.capacity,
                "metrics": self.metrics,
                "tlsCertificate": self.tls_certificate,
                "dashboardPassword": self.dashboard_password,
                "mqttClient": self.mqtt_client,
            }
        )

    def _connect(self, host: HostPlan, late: LateInputs, first: bool) -> HostSite:
        """The host's Docker provider and shell; its resources are named after the host."""
        opts = pulumi.ResourceOptions(parent=self)
        if first and host.name is not None:
            # `transformations`, not `transforms`: transforms run in the engine, and the mock
            # monitor the stack tier runs the program under does not run them (pulumi
            # runtime/mocks.py: "The mock monitor does not run them"), so the aliases every
            # single-host stack moving into `hosts` relies on could not be checked there.
            opts = pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(transformations=[_as_single_host(self.names, host.name)])
            )
        provider = docker.Provider(self.names.host_resource(host.name, "docker"), host=host.docker_host, opts=opts)
        return HostSite(
            host=host, shell=HostShell.to(host, late, warn_on=self), provider=provider, names=self.names, opts=opts
        )


def _output(late: LateInputs, value: Any) -> pulumi.Output[Any]:
    """An output of the component: its text with the values given as Outputs in place."""
    return pulumi.Output.from_input(late.resolve(value))


def _program_ledger() -> ClaimLedger:
    """The Docker-host claims of every cluster declared so far in this program run: one ledger per
    root stack resource, of which each run of a program has its own (the SDK keeps it in its
    per-run settings: pulumi runtime/settings.py, get_root_resource), so runs never share one.
    Constructed by the component provider (provider.py) there is no root stack in this process:
    the engine starts one provider process per deployment, whose clusters share one ledger."""
    root = get_root_resource()
    if root is None:
        return _PROVIDER_LEDGER
    return _LEDGERS.setdefault(root, ClaimLedger())


# Root stack -> its ledger; weak, so a finished run's ledger goes with its stack.
_LEDGERS: weakref.WeakKeyDictionary[pulumi.Resource, ClaimLedger] = weakref.WeakKeyDictionary()
_PROVIDER_LEDGER = ClaimLedger()


def _as_single_host(resource_names: names.ResourceNames, host_name: str) -> pulumi.ResourceTransformation:
    """Aliases every resource of the first host to the name it had in a single-host stack, so
    moving such a stack to a `hosts` list (or growing it to several hosts) keeps its resources."""

    def add_alias(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
        previous = resource_names.single_host_name(args.name, host_name)
        if previous == args.name:
            return None
        return pulumi.ResourceTransformationResult(
            args.props,
            pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(name=previous)])),
        )

    return add_alias


def _node_row(started: StartedNode, docker_host: str) -> dict[str, object]:
    """A row of the `nodes` output; `dockerHost` is the engine its container runs on, which
    scripts/backup, restore and status reach it through (`docker -H`)."""
    node = started.plan
    return {
        "name": node.node_name,
        "host": node.host_label,
        "dockerHost": docker_host,
        "container": node.container_name,
        "wave": node.wave,
        "ports": node.ports.as_dict(),
        "dataDir": node.data_dir,
        "logDir": node.log_dir,
        "dashboard": node.dashboard_url,
    }


def _with_memory(capacity: HostCapacity, budget: MemoryBudget, reading: tuple[int, int]) -> HostCapacity:
    """The host's capacity with the memory bound its preflight printed: (connections, MemTotal)."""
    return capacity.with_memory(budget, *reading)


def _capacity_output(planned: HostCapacity, whole: pulumi.Output[HostCapacity]) -> dict[str, object]:
    """A host's `capacity` output: the plan's bounds, known at preview, and the memory bound its
    preflight computes on `up` (with the ceiling and the bound deciding, which depend on it)."""
    return {
        "ceiling": whole.apply(lambda known: known.ceiling),
        "decidedBy": whole.apply(lambda known: known.deciding.name),
        "liftedBy": whole.apply(lambda known: known.deciding.lifted_by),
        "bounds": {**planned.bound_connections, "memory": whole.apply(lambda known: known.bound_connections["memory"])},
    }


def _metrics_output(settings: PrometheusSettings, host: HostPlan) -> dict[str, object]:
    return {
        "prometheus": f"http://{settings.self_endpoint}",
        "tunnel": host.tunnel(settings.port),
        "lbMetrics": f"http://{settings.lb_endpoint}/metrics",
    }

"""EMQX 5 environment for one node: the whole per-node config, no `sed` on config files.

EMQX maps `EMQX_` + config path with `.` -> `__` onto its HOCON config and parses each value
as HOCON (hocon_tconf:parse_env/3: the text is read as `fake_key=<value>` and falls back to the
raw string only when that fails to parse). Values are quoted wherever HOCON could read them as
something else (an object, a number, a comment): addresses, durations, the password. The public part is plain plan data; the two
secrets are added by :func:`with_secrets`, which the Pulumi layer calls inside a secret output.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from components.config import StackConfig
from components.config_access import AccessConfig
from components.plan import ClusterPlan, NodePlan
from components.render.access import ACCESS_FILES, BCRYPT_ROUNDS, PBKDF2_ITERATIONS, AccessFiles
from components.render.host_scripts import NodeFiles
from components.render.templating import double_quoted, render

COOKIE_VARIABLE = "EMQX_NODE__COOKIE"
DASHBOARD_PASSWORD_VARIABLE = "EMQX_DASHBOARD__DEFAULT_PASSWORD"

# Listeners the official config enables on fixed ports (8883, 8083, 8084): on one host network
# the second node could not bind them, and the load balancer only fronts the TCP listener.
_UNUSED_DEFAULT_LISTENERS = ("SSL", "WS", "WSS")


def erlang_address(address: str) -> str:
    """An IPv4 address as the Erlang term `inet` takes: '127.0.0.1' -> '{127,0,0,1}'."""
    return "{" + ",".join(str(octet) for octet in ipaddress.IPv4Address(address).packed) + "}"


def broker_environment(node: NodePlan, plan: ClusterPlan, config: StackConfig) -> dict[str, str]:
    """Every non-secret EMQX setting of `node`, as container environment variables."""
    env = {
        # Long name, fixed for the life of the data dir (data/mnesia/<node name>).
        "EMQX_NODE__NAME": node.node_name,
        "EMQX_CLUSTER__DISCOVERY_STRATEGY": "manual",
        # The official image's entrypoint defaults this to `manual` (deploy/docker/
        # docker-entrypoint.sh), which puts every node's RPC on 5369: on one host network the
        # second node could not start. `stateless` = 5370 + N.
        "EMQX_RPC__PORT_DISCOVERY": "stateless",
        # gen_rpc listens on rpc.listen_address, default "0.0.0.0" (emqx_conf_schema.erl, the
        # "listen_address" field and the `socket_ip` translation via inet:parse_address).
        "EMQX_RPC__LISTEN_ADDRESS": double_quoted(node.address),
        # EMQX 5.8 has no key for the distribution listener's address (node.dist_bind_address
        # arrives in 6.2). erlexec prepends ERL_AFLAGS to the command line of every VM it starts
        # (OTP `erl` docs, "Environment variables"), bin/emqx boots through erlexec, and the
        # kernel parameter inet_dist_use_interface binds inet_tcp_dist's listener (which ekka's
        # static-port distribution uses) to that address. Prepended, not appended (ERL_ZFLAGS):
        # bin/emqx reads the data dir of a running node off its `ps` line as everything after
        # `-emqx_data_dir`, which it puts last (v5.8.6 bin/emqx, `tmp_datadir`).
        # tests/integration/test_erlang_dist_bind.py proves both on a real VM.
        "ERL_AFLAGS": f"-kernel inet_dist_use_interface {erlang_address(node.address)}",
        # Client listener: node address only (never 0.0.0.0), so nobody bypasses Nginx and
        # forges a PROXY header; proxy_protocol matches what Nginx sends (plan.proxy_protocol).
        "EMQX_LISTENERS__TCP__DEFAULT__BIND": double_quoted(node.mqtt_endpoint),
        "EMQX_LISTENERS__TCP__DEFAULT__PROXY_PROTOCOL": str(plan.proxy_protocol).lower(),
        "EMQX_LISTENERS__TCP__DEFAULT__PROXY_PROTOCOL_TIMEOUT": double_quoted("5s"),
        # Dashboard, REST API and Prometheus stats: the host's loopback only (plan.ADMIN_ADDRESS).
        "EMQX_DASHBOARD__LISTENERS__HTTP__BIND": double_quoted(node.dashboard_endpoint),
        # Bounded file logs in the per-node log dir, 10 x 50MB (EMQX 5.8 docs, "Logs
        # Configuration": log.file.rotation_count / rotation_size); the console log goes to
        # Docker's json-file driver, bounded by the container's log options.
        "EMQX_LOG__FILE__ENABLE": "true",
        "EMQX_LOG__FILE__ROTATION_COUNT": "10",
        "EMQX_LOG__FILE__ROTATION_SIZE": "50MB",
        "EMQX_LOG__CONSOLE__ENABLE": "true",
        # How long a stopping node waits for its clients to take their sessions to other nodes
        # (docker/emqx/emqx-cluster-drain.erl): half the stop grace, the other half left to
        # EMQX's own shutdown before Docker's SIGKILL.
        "BROKER_DRAIN_SECONDS": str(max(1, config.broker_stop_grace_seconds // 2)),
    }
    for listener in _UNUSED_DEFAULT_LISTENERS:
        env[f"EMQX_LISTENERS__{listener}__DEFAULT__ENABLE"] = "false"
    if config.encrypts_cluster_traffic:
        env.update(cluster_tls_environment())
    env.update(access_environment(config.access))
    if config.access.admin_networks:
        env.update(admin_https_environment(node))
    return env


def admin_https_environment(node: NodePlan, files: AccessFiles = ACCESS_FILES) -> dict[str, str]:
    """The dashboard listener (REST API and Prometheus stats with it) also on the node's address,
    with HTTPS (emqx_dashboard_schema.erl fields("https"): bind, ssl_options; a bind other than 0
    starts it, emqx_dashboard:listeners/1, `enable` being ignored since 5.1), and Prometheus stats behind the same credentials as the API
    (emqx_prometheus_api.erl security/0: basicAuth or bearerAuth once enable_basic_auth is true;
    false by default, when the stats answer anyone). The loopback HTTP listener stays."""
    return {
        "EMQX_DASHBOARD__LISTENERS__HTTPS__BIND": double_quoted(f"{node.address}:{node.ports.dashboard}"),
        "EMQX_DASHBOARD__LISTENERS__HTTPS__SSL_OPTIONS__CERTFILE": double_quoted(files.path(files.admin_certificate)),
        "EMQX_DASHBOARD__LISTENERS__HTTPS__SSL_OPTIONS__KEYFILE": double_quoted(files.path(files.admin_key)),
        "EMQX_PROMETHEUS__ENABLE_BASIC_AUTH": "true",
    }


@dataclass(frozen=True)
class ClusterTlsFiles(NodeFiles):
    """Where a node finds its cluster TLS files inside the container."""

    directory: str = "/opt/emqx/etc/cluster-tls"
    ca: str = "ca.pem"
    certificate: str = "node.pem"
    key: str = "node.key"
    dist_options: str = "ssl_dist.conf"

    def names(self) -> tuple[str, ...]:
        return (self.ca, self.certificate, self.key, self.dist_options)


CLUSTER_TLS_FILES = ClusterTlsFiles()


def cluster_tls_environment(files: ClusterTlsFiles = CLUSTER_TLS_FILES) -> dict[str, str]:
    """Erlang distribution over TLS and gen_rpc over SSL, both verifying the peer with the cluster CA.

    EMQX 5.8.6: `cluster.proto_dist` (emqx_conf_schema.erl, enum inet_tcp|inet6_tcp|inet_tls|
    inet6_tls) makes bin/emqx add `-ssl_dist_optfile $EMQX_SSL_DIST_OPTFILE` (a shell variable,
    not HOCON; no spaces) to the node and to every `emqx ctl`, whose ekka_dist keeps the port
    4370 + N. `rpc.protocol` (alias `driver`) = ssl starts gen_rpc's SSL server alone, on
    5370 + N with stateless discovery, bound to rpc.listen_address; gen_rpc 3.4.1 verifies the
    peer and requires its certificate (ssl.hrl SSL_DEFAULT_*_OPTS) against rpc.cacertfile.
    A tcp node and an ssl node cannot talk: turning this on or off changes every node.
    """
    return {
        "EMQX_CLUSTER__PROTO_DIST": "inet_tls",
        "EMQX_SSL_DIST_OPTFILE": files.path(files.dist_options),
        "EMQX_RPC__PROTOCOL": "ssl",
        "EMQX_RPC__CERTFILE": double_quoted(files.path(files.certificate)),
        "EMQX_RPC__KEYFILE": double_quoted(files.path(files.key)),
        "EMQX_RPC__CACERTFILE": double_quoted(files.path(files.ca)),
    }


def ssl_dist_options(files: ClusterTlsFiles = CLUSTER_TLS_FILES) -> str:
    """The Erlang term file OTP's ssl_dist_sup reads (`[{server, Opts}, {client, Opts}].`)."""
    return render(
        "ssl_dist.conf.j2",
        certfile=files.path(files.certificate),
        keyfile=files.path(files.key),
        cacertfile=files.path(files.ca),
    )


def access_environment(access: AccessConfig, files: AccessFiles = ACCESS_FILES) -> dict[str, str]:
    """EMQX settings for authentication, authorization and the API key (no secret in them).

    `authentication` is an array; hocon_tconf reads `__1__` as its first element and creates it
    when the array is empty (hocon 0.43.4 hocon_maps:do_put/4, do_update_array_element; EMQX
    changes/v5.0.12-en.md documents EMQX_AUTHENTICATION__1__ENABLE). Environment variables
    override every config file (apps/emqx_conf/etc/base.hocon: "etc/base.hocon < cluster.hocon
    < emqx.conf < environment variables").
    """
    env = {
        "EMQX_API_KEY__BOOTSTRAP_FILE": double_quoted(files.path(files.api_keys)),
        "EMQX_AUTHORIZATION__NO_MATCH": "deny",
        "EMQX_AUTHORIZATION__SOURCES__1__TYPE": "file",
        "EMQX_AUTHORIZATION__SOURCES__1__ENABLE": "true",
        "EMQX_AUTHORIZATION__SOURCES__1__PATH": double_quoted(files.path(files.acl)),
    }
    if access.authenticates:
        prefix = "EMQX_AUTHENTICATION__1__"
        env.update(
            {
                f"{prefix}MECHANISM": "password_based",
                f"{prefix}BACKEND": "built_in_database",
                f"{prefix}ENABLE": "true",
                f"{prefix}USER_ID_TYPE": access.client_id_type,
                f"{prefix}BOOTSTRAP_FILE": double_quoted(files.path(files.users)),
                f"{prefix}BOOTSTRAP_TYPE": "hash",
                **{f"{prefix}PASSWORD_HASH_ALGORITHM__{key}": value for key, value in _hash_settings(access).items()},
            }
        )
    return env


def _hash_settings(access: AccessConfig) -> dict[str, str]:
    """`password_hash_algorithm` (emqx_authn_password_hashing.erl: simple with salt_position,
    pbkdf2 with mac_fun and the required iterations, bcrypt_rw with salt_rounds)."""
    if access.password_hash == "pbkdf2":
        return {"NAME": "pbkdf2", "MAC_FUN": "sha256", "ITERATIONS": str(PBKDF2_ITERATIONS)}
    if access.password_hash == "bcrypt":
        return {"NAME": "bcrypt", "SALT_ROUNDS": str(BCRYPT_ROUNDS)}
    return {"NAME": "sha256", "SALT_POSITION": "prefix"}


def with_secrets(public: Mapping[str, str], cookie: str, dashboard_password: str) -> dict[str, str]:
    """The node's whole environment: `public` plus the cookie and the dashboard password.

    The cookie is a bare HOCON token: bin/emqx compares EMQX_NODE__COOKIE as written with the
    booted node's HOCON-parsed cookie, so quotes would make every `emqx ctl` fail (the config
    model only admits cookies HOCON leaves unchanged). The password is quoted: it may hold `#`,
    `"` or `${`, which HOCON would read as a comment, a string or a substitution.
    """
    return {**public, COOKIE_VARIABLE: cookie, DASHBOARD_PASSWORD_VARIABLE: double_quoted(dashboard_password)}

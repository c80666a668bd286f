"""EmqxClusterArgs: everything the stack config can say, as the typed args of EmqxCluster.

One field per `emqx-cluster:*` key (the key is the field's camelCase name, as pulumi's component
analyzer names it in the schema), each with the docstring under it that becomes its schema
description. Written as TypedDicts, the form the analyzer reads (pulumi/provider/experimental/
analyzer.py at 3.272.0: `analyze_type` takes a TypedDict's annotations and its
`__optional_keys__`, `get_docstring` the string literal under each field; it supports str, int,
float, bool, list, dict with str keys, nested classes, `pulumi.Input`/`Output` and `| None`, but
no other unions and no Literal, hence plain `str` for the enumerated values). No
`from __future__ import annotations` here: the analyzer reads annotations as objects.

Values that decide how many resources exist, their names or the ports they hold (node counts,
hosts and placement, ports, waves, user ids) are plain; those another resource may produce
(addresses, Docker engines, SSH logins and keys, TLS material, passwords, networks) are
`pulumi.Input`s. components/args_config.py validates either into the StackConfig model.
"""

from typing import Required, TypedDict

import pulumi


class ClusterHost(TypedDict, total=False):
    """One Docker host of a several-host cluster, running its share of the nodes and its own Nginx."""

    name: Required[str]
    """Short name (a-z0-9-) that names the host's resources (`<cluster>-<name>-...`)."""
    address: Required[pulumi.Input[str]]
    """Unicast IPv4 address the host's nodes bind and advertise (`emqxI@<address>`)."""
    nodes: int
    """How many nodes run there (required unless `placement` places them); counts are numbered host after host."""
    docker_host: pulumi.Input[str]
    """The host's Docker engine (`unix://...` or `ssh://user@host[:port]`); default: the host's SSH login."""
    ssh_host: pulumi.Input[str]
    """SSH host for host commands (sysctls, firewall, dirs, cluster commands); default: `address`."""
    ssh_port: int
    """SSH port; default 22."""
    ssh_user: pulumi.Input[str]
    """SSH user; default root."""
    ssh_host_key: pulumi.Input[str]
    """Expected SSH host key (recommended)."""
    ssh_private_key: pulumi.Input[str]
    """The host's own PEM private key (secret); default: the cluster's `sshPrivateKey`, else the SSH agent."""
    use_sudo: bool
    """Run host commands through `sudo -n sh -s` (a non-root SSH user); default false."""
    lb_source_addresses: list[str]
    """The host's own addresses Nginx connects to its nodes from, each a budget of upstream ports (up to 64)."""


class MqttClient(TypedDict, total=False):
    """One declared MQTT client: its id, and its password or a hash computed for `mqttPasswordHash`."""

    username: str
    """The client's id with `mqttClientIdType: username`."""
    clientid: str
    """The client's id with `mqttClientIdType: clientid`."""
    password: pulumi.Input[str]
    """Its password (secret), hashed by the program: 16+ characters with sha256, 8+ with pbkdf2 or bcrypt (at most 72 bytes); exactly one of `password` and `passwordHash`."""
    password_hash: pulumi.Input[str]
    """A hash computed for `mqttPasswordHash` instead of a password (secret)."""
    salt: str
    """The salt of `passwordHash` (up to 128 characters; none with bcrypt)."""
    superuser: bool
    """Skips the topic rules; default false."""


class AclRule(TypedDict, total=False):
    """One topic rule; the first rule that matches wins, everything else is denied."""

    permission: Required[str]
    """`allow` or `deny`."""
    username: str
    """The declared client the rule is for; neither `username` nor `clientid`: every client."""
    clientid: str
    """The same by client id (not together with `username`)."""
    action: str
    """`publish`, `subscribe` or `all` (the default)."""
    topics: Required[list[str]]
    """Topic filters, at least one: `#` only as the whole last level, `+` only as whole levels, `${username}` or `${clientid}` placeholders, `eq <topic>` for an exact topic."""


class EmqxClusterArgs(TypedDict, total=False):
    """The arguments of an EmqxCluster: the `emqx-cluster:*` stack-config keys, each as a field of the same name."""

    # --- cluster shape
    nodes: int
    """Number of EMQX nodes, 1-999 (default 3); with `hosts`: unset, or the number the hosts place."""
    waves: int
    """Rollout waves, 1 to nodes (default 2, 1 for a single node): nodes replaced together, each wave verified before the next."""
    emqx_repository: str
    """Official image the broker image is built on: `emqx/emqx` (default) or `emqx/emqx-enterprise`."""
    emqx_version: str
    """EMQX 5.x tag (default 5.8.6); changing it is a rolling upgrade."""
    image_platform: str
    """Platform to build the broker image for, e.g. `linux/arm64`; unset: the Docker host's own."""
    keep_image: bool
    """Keep the built broker image and the pulled Nginx (and Prometheus) images on destroy; default false."""
    broker_nofile_limit: int
    """Open-files limit of each broker container (1025-2097152, default 1048576); within the Docker daemon's hard limit."""
    broker_memory_per_connection_kib: int
    """Memory one idle client costs an EMQX node, in KiB (1-1048576, default 48, measured on EMQX 5.8.6), for the hosts' memory bound."""
    broker_stop_grace_seconds: int
    """Seconds a stopping broker gets before SIGKILL (1-3600, default 60), half of it at most to drain; a change replaces the brokers wave by wave."""
    lb_stop_grace_seconds: int
    """The same for Nginx (1-3600, default 10); a change replaces Nginx."""
    join_timeout_seconds: int
    """Bound for joins, cluster checks and container health waits (5-3600, default 180)."""
    container_log_max_size: str
    """Docker json-file log rotation: size of one file (default `50m`)."""
    container_log_max_files: int
    """Docker json-file log rotation: files kept (1-100, default 5)."""

    # --- where things run: several hosts
    hosts: list[ClusterHost]
    """The Docker hosts, each running its share of the nodes and its own Nginx; unset: the single-host fields describe the one host."""
    placement: dict[str, str]
    """Node -> host name (e.g. `{emqx1: a, emqx2: b}`) instead of `nodes` per host; numbers may have gaps."""
    cluster_tls: bool
    """Erlang distribution over TLS and gen_rpc over SSL with a cluster CA; default: on with several hosts."""
    manage_firewall: bool
    """With several hosts (or `adminNetworks`), open each host's cluster ports to the cluster's hosts only (and admin ports to the admin networks); default true."""

    # --- where things run: one host
    docker_host: pulumi.Input[str]
    """Docker engine: `unix://...` (default `unix:///var/run/docker.sock`) or `ssh://user@host[:port]`."""
    ssh_host: pulumi.Input[str]
    """Run host commands (sysctls, dirs, cluster joins) over SSH on this host; unset: locally. Required when `dockerHost` is `ssh://`."""
    ssh_port: int
    """SSH port; default 22."""
    ssh_user: pulumi.Input[str]
    """SSH user; default root."""
    ssh_private_key: pulumi.Input[str]
    """PEM private key (secret), every host's unless a host has its own; unset: the SSH agent."""
    ssh_host_key: pulumi.Input[str]
    """Expected SSH host key (recommended)."""
    host_use_sudo: bool
    """Run host commands as root through `sudo -n` (a non-root SSH user); default false."""
    advertise_address: pulumi.Input[str]
    """Unicast IPv4 address of the Docker host every node binds and advertises (default 127.0.0.1); node names are `emqxI@<address>`."""
    lb_source_addresses: list[str]
    """Up to 64 addresses of the host Nginx connects to the nodes from, each its own budget of upstream ports."""
    data_dir: str
    """Host directory of the per-node dirs `<dataDir>/emqxI/{data,log}` (default `/var/lib/emqx-cluster`)."""
    purge_data: bool
    """Delete the per-node dirs (and Prometheus's) on destroy and scale-down; default false."""

    # --- port plan
    mqtt_port_base: int
    """Node I's MQTT listener (behind Nginx, PROXY protocol) is base + I - 1 (default 61001)."""
    dashboard_port_base: int
    """Node I's dashboard and API is base + I - 1 (default 62001)."""
    ip_local_port_range: str
    """`net.ipv4.ip_local_port_range`, two numbers (default `1024 60999`)."""

    # --- load balancer
    lb_port: int
    """Nginx's TLS listener (default 8884)."""
    lb_listen_address: str
    """Address Nginx listens on (default 0.0.0.0)."""
    public_hostname: str
    """Host name clients use (the `endpoint` output); default: the first host's address."""
    nginx_version: str
    """Official `nginx` image tag (default 1.27)."""
    lb_balancing: str
    """`round_robin`, `least_conn` (default), `random` or `hash_client_address`."""
    lb_max_fails: int
    """Passive health: failures after which a node is skipped (1-100, default 2)."""
    lb_fail_timeout: str
    """Passive health: how long a failed node is skipped (default `10s`)."""
    lb_connect_timeout: str
    """`proxy_connect_timeout` (default `5s`)."""
    lb_proxy_timeout_seconds: int
    """Idle timeout (default 300); must exceed 1.5 x `mqttKeepaliveSeconds`."""
    lb_worker_processes: int
    """Nginx worker processes (1-1024); unset: one per CPU."""
    lb_worker_connections: int
    """`worker_connections` (1024-1048064, default 65536); the container's nofile is 2 x + 1024."""
    expected_connections: int
    """Client connections one host's load balancer must hold: refused at preview above the host's ceiling."""
    mqtt_keepalive_seconds: int
    """The longest keepalive the clients use (1-65535, default 60)."""

    # --- TLS
    tls_mode: str
    """`provided` (default: `tlsCertificate` and `tlsPrivateKey`) or `self-signed` (valid one year, renewed in its last 30 days)."""
    tls_certificate: pulumi.Input[str]
    """PEM certificate chain of the load balancers (secret); required with `tlsMode: provided`."""
    tls_private_key: pulumi.Input[str]
    """PEM private key of the load balancers (secret); required with `tlsMode: provided`."""
    tls_dns_names: list[str]
    """DNS names in the self-signed certificate (default `[localhost]`)."""
    tls_session_tickets: bool
    """TLS session tickets, their keys shared by every host and kept across restarts; default true."""
    tls_ticket_key_generation: int
    """Raise by one (1-1000000, default 1) to rotate the ticket key; the previous key still resumes its tickets."""
    tls_client_ca: pulumi.Input[str]
    """PEM CA certificate(s): every client must present a certificate it signed (kept secret in state)."""
    tls_client_verify_depth: int
    """Longest client certificate chain accepted (1-10, default 2); only with `tlsClientCa`."""
    tls_client_crl: pulumi.Input[str]
    """PEM certificate revocation list checked against client certificates; only with `tlsClientCa`."""

    # --- host tuning
    manage_sysctls: bool
    """Apply host tuning (default true); when false, no planned port may sit inside `ipLocalPortRange`."""
    sysctls: dict[str, str | None]
    """Overrides of EMQX's tuning values (`key: value`; `key: "null"` leaves that key alone: a null value does not reach the component from Pulumi YAML)."""
    sysctl_drop_in: str
    """Drop-in path, a file named `NN-name.conf` (default `/etc/sysctl.d/60-emqx-cluster.conf`)."""

    # --- secrets
    erlang_cookie: pulumi.Input[str]
    """Erlang cookie (secret): 16-255 of `A-Z a-z 0-9 _ -`, starting with a letter; unset: generated."""
    dashboard_password: pulumi.Input[str]
    """Dashboard `admin` password (secret), 8-64 ASCII characters of at least two kinds; unset: generated."""

    # --- access
    mqtt_clients: list[MqttClient]
    """The MQTT clients that may connect (their passwords are secrets)."""
    mqtt_client_id_type: str
    """What identifies a client: `username` (default) or `clientid`."""
    mqtt_password_hash: str
    """`sha256` (default, salted; passwords of 16+ characters), `pbkdf2` or `bcrypt` (8+)."""
    mqtt_generated_client: str
    """A client id the program creates with a generated password (the `mqttClient` output, secret)."""
    mqtt_acl: list[AclRule]
    """Topic rules, first match wins, everything else denied."""
    admin_networks: list[pulumi.Input[str]]
    """IPv4 networks (CIDR) of the operators: the dashboards also listen with HTTPS on the nodes' address, open to these only."""
    allow_anonymous: bool
    """Labs only: no authenticator, every client is accepted; refused together with declared clients."""

    # --- metrics
    metrics: bool
    """Prometheus on every host with the alert rules; default false."""
    prometheus_version: str
    """Official `prom/prometheus` image tag (default v2.53.4)."""
    metrics_listen_address: str
    """Prometheus's listen address (default 127.0.0.1); beyond loopback only with `adminNetworks`."""
    metrics_port: int
    """Prometheus's port (default 9090)."""
    lb_metrics_port: int
    """Nginx's metrics listener on 127.0.0.1 (default 9113)."""
    metrics_scrape_interval: str
    """Scrape and rule evaluation interval, 1s or more (default `15s`)."""
    metrics_retention: str
    """Prometheus's `--storage.tsdb.retention.time` (default `15d`)."""
    metrics_retention_size: str
    """Prometheus's `--storage.tsdb.retention.size` (default `2GB`)."""
    alert_connections_share: float
    """Share (0-1] of a host's ceiling, and of a node's cap, that warns (default 0.8)."""
    alert_auth_failures_per_minute: float
    """Failed authentications per minute on a node that warn (default 30)."""
    alert_memory_share: float
    """Share (0-1] of a node's host memory in use that warns (default 0.9)."""
    metrics_alertmanagers: list[pulumi.Input[str]]
    """Alertmanagers (`host:port`) Prometheus sends firing alerts to."""

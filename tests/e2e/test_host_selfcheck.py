"""Self-check of the e2e host and its stand-in images, with the docker CLI (no Pulumi yet).

- the host: SSH as the non-root user, `sudo -n`, the namespace's engine from that session;
- nginx stand-in: the program's rendered nginx.conf and a trustme certificate, copied in as the
  provider's uploads are, terminate TLS on the host address; a client on the machine side gets
  an MQTT CONNACK through Nginx -> PROXY protocol -> the EMQX stand-in;
- EMQX stand-in: two nodes from the program's broker image (docker/emqx, built FROM the
  stand-in, so the baked health check script runs unchanged, with the program's timings)
  with the program's rendered environment
  join, see a stopped node, rejoin after `docker start` and after a crash restarted by Docker;
  a taken port fails a node's start; a wrong cookie fails `emqx ctl`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from components.broker_cluster import HEALTHCHECK
from components.config import StackConfig
from components.plan import BROKER_DATA_DIR, BROKER_LOG_DIR, ClusterPlan, NodePlan
from components.render.broker_env import broker_environment, with_secrets
from components.render.nginx import CONTAINER_RUNTIME, nginx_settings, render_nginx_conf
from tests.support.e2e.host import E2eHost
from tests.support.e2e.images import StandInImages, ensure_images
from tests.support.lb_stack import CONNACK_ACCEPTED, mqtt_connect_packet, recv_up_to
from tests.support.ports import wait_until
from tests.support.stackfiles import PROJECT_DIR, stack_raw, validate

pytestmark = pytest.mark.e2e

COOKIE = "E2e_Cookie_0123456789abcdef"
DASHBOARD_PASSWORD = "E2e-Dashboard-Pa55word!"
NOFILE = 16384  # the machine's hard nofile limit is 20000: the program's defaults cannot start here
BROKER_IMAGE = "emqx-cluster/emqx:5.8.6"


@dataclass
class Cluster:
    host: E2eHost
    config: StackConfig
    plan: ClusterPlan
    containers: list[str]

    def node(self, index: int) -> NodePlan:
        return self.plan.nodes[index - 1]

    def env_file(self, node: NodePlan, directory: Path, **overrides: str) -> Path:
        env = with_secrets(broker_environment(node, self.plan, self.config), COOKIE, DASHBOARD_PASSWORD)
        env.update(overrides)
        path = directory / f"{node.short_name}-{len(self.containers)}.env"
        path.write_text("".join(f"{key}={value}\n" for key, value in sorted(env.items())))
        return path

    def run_node(
        self, node: NodePlan, directory: Path, name: str | None = None, restart: str = "always", **env: str
    ) -> str:
        """`docker run` one node as the program declares it (host network, dirs, nofile, restart)."""
        name = name or node.container_name
        data, log = directory / name / "data", directory / name / "log"
        for path in (data, log):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, 1000, 1000)  # the program's node dirs script does the same
        self.containers.append(name)
        self.host.docker(
            "run", "--detach", "--name", name, "--network", "host", "--restart", restart,
            "--ulimit", f"nofile={NOFILE}:{NOFILE}",
            # The program's check, as the docker provider declares it on each node.
            "--health-cmd", " ".join(HEALTHCHECK.test[1:]),
            "--health-interval", HEALTHCHECK.interval, "--health-timeout", HEALTHCHECK.timeout,
            "--health-retries", str(HEALTHCHECK.retries), "--health-start-period", HEALTHCHECK.start_period,
            "--env-file", str(self.env_file(node, directory, **env)),
            "--volume", f"{data}:{BROKER_DATA_DIR}", "--volume", f"{log}:{BROKER_LOG_DIR}",
            BROKER_IMAGE,
        )  # fmt: skip
        return name

    def ctl(self, container: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        extra = [f"--env={k}={v}" for k, v in (env or {}).items()]
        return self.host.docker("exec", *extra, container, "/opt/emqx/bin/emqx", "ctl", *args, check=False)

    def status(self, container: str) -> dict[str, list[str]] | None:
        proc = self.ctl(container, "cluster", "status", "--json")
        if proc.returncode != 0:
            return None
        data: dict[str, list[str]] = json.loads(proc.stdout)
        return data

    def inspect(self, container: str, template: str) -> str:
        return self.host.docker("inspect", "--format", template, container).stdout.strip()

    def wait_healthy(self, container: str) -> None:
        wait_until(
            lambda: self.inspect(container, "{{.State.Health.Status}}") == "healthy",
            f"{container} healthy",
            timeout=60,
            interval=0.3,
        )


@pytest.fixture(scope="module")
def cluster(
    e2e_host_session: E2eHost, standin_images: StandInImages, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Two stand-in nodes of the dev stack's plan on the host address, from the program's broker image."""
    host = e2e_host_session
    ensure_images(host)  # an earlier stack's destroy removed the nginx image, as on a real host
    # The program's broker image, FROM the stand-in (the provider would build the same context).
    subprocess.run(
        [*host.docker_argv("build", "--quiet", "--tag", BROKER_IMAGE, "--build-arg", f"EMQX_BASE_IMAGE={standin_images.emqx_image('5.8.6')}", str(PROJECT_DIR / "docker" / "emqx"))],
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        check=True,
        capture_output=True,
    )  # fmt: skip
    raw = stack_raw("dev")
    raw.update(
        nodes="2",
        advertiseAddress=host.address,
        erlangCookie=COOKIE,
        dashboardPassword=DASHBOARD_PASSWORD,
        lbListenAddress="0.0.0.0",  # the dev stack says 127.0.0.1: the machine connects over the veth
        lbWorkerConnections="4096",  # nginx nofile = 2 x + 1024, within the machine's 20000
    )
    config, plan = validate(raw)
    state = Cluster(host, config, plan, [])
    directory = tmp_path_factory.mktemp("nodes")
    directory.chmod(0o755)
    try:
        for node in plan.nodes:
            state.run_node(node, directory)
        for node in plan.nodes:
            state.wait_healthy(node.container_name)
        yield state
    finally:
        if state.containers:
            host.docker("rm", "--force", *state.containers, check=False)


def test_host_over_ssh_has_sudo_and_its_own_engine(e2e_host_session: E2eHost) -> None:
    host = e2e_host_session
    assert host.ssh is not None
    proc = host.ssh.run(
        "id -un; sudo -n id -u; docker info --format '{{.DockerRootDir}}'; "
        "sudo -n sh -c 'docker info --format {{.DockerRootDir}}'; sudo -n sysctl -n net.ipv4.ip_local_port_range"
    )
    assert proc.returncode == 0, proc.stderr
    user, uid, root_dir, sudo_root_dir, port_range = proc.stdout.splitlines()
    assert (user, uid) == (host.ssh.user, "0")
    assert root_dir == sudo_root_dir == str(host.data_root)
    assert port_range.split() == host.netns.sysctl("net.ipv4.ip_local_port_range").split()


def test_nginx_standin_terminates_tls_and_proxies_to_the_broker(cluster: Cluster, tmp_path: Path) -> None:
    host = cluster.host
    ca = trustme.CA()
    cert = ca.issue_cert(host.address, "localhost")
    conf = render_nginx_conf(nginx_settings(cluster.config, cluster.plan), CONTAINER_RUNTIME)
    files = {
        "/etc/nginx/nginx.conf": conf.encode(),
        CONTAINER_RUNTIME.certificate_path: b"".join(blob.bytes() for blob in cert.cert_chain_pems),
        CONTAINER_RUNTIME.private_key_path: cert.private_key_pem.bytes(),
    }
    nofile = cluster.config.lb.nofile_limit
    name = "emqx-lb-selfcheck"
    cluster.containers.append(name)
    # As the provider does: create, upload the files, start.
    host.docker("create", "--name", name, "--network", "host", "--restart", "always", "--ulimit", f"nofile={nofile}:{nofile}", "nginx:1.27")  # fmt: skip
    for target, content in files.items():
        local = tmp_path / Path(target).name
        local.write_bytes(content)
        host.docker("cp", str(local), f"{name}:{target}")
    host.docker("start", name)
    lb_port = cluster.plan.lb_port

    errors: list[str] = []

    def handshake() -> bytes | None:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        try:
            with (
                socket.create_connection((host.address, lb_port), timeout=5) as raw,
                context.wrap_socket(raw, server_hostname=host.address) as tls,
            ):
                assert tls.version() == "TLSv1.3"
                tls.sendall(mqtt_connect_packet("e2e-selfcheck"))
                answer = recv_up_to(tls, 4)
                if not answer:
                    errors.append("closed without a CONNACK")
                return answer or None
        except OSError as exc:
            errors.append(repr(exc))
            return None

    try:
        answer = wait_until(handshake, f"a CONNACK through nginx on {host.address}:{lb_port}", timeout=30, interval=0.3)
    except AssertionError as exc:
        logs = host.docker("logs", "--tail", "30", name, check=False)
        raise AssertionError(f"{exc}; client errors: {errors[-3:]}; nginx log:\n{logs.stdout}{logs.stderr}") from None
    assert answer == CONNACK_ACCEPTED, answer


def test_cluster_join_stop_crash_rejoin(cluster: Cluster) -> None:
    n1, n2 = cluster.node(1), cluster.node(2)
    c1, c2 = n1.container_name, n2.container_name
    status = cluster.ctl(c1, "status")
    assert status.stdout == f"Node '{n1.node_name}' 5.8.6 is started\n"

    joined = cluster.ctl(c2, "cluster", "join", n1.node_name)
    assert "Join the cluster successfully." in joined.stdout, joined
    both = sorted([n1.node_name, n2.node_name])
    assert cluster.status(c1) == {"running_nodes": both, "stopped_nodes": []}
    again = cluster.ctl(c2, "cluster", "join", n1.node_name)
    assert "already_in_cluster" in again.stdout, again

    # A stopped node is listed as stopped; started again it is running (membership in its data dir).
    cluster.host.docker("stop", c2)
    assert cluster.status(c1) == {"running_nodes": [n1.node_name], "stopped_nodes": [n2.node_name]}
    cluster.host.docker("start", c2)
    wait_until(
        lambda: cluster.status(c1) == {"running_nodes": both, "stopped_nodes": []},
        "node 2 running again",
        timeout=60,
        interval=0.3,
    )

    # A crash (SIGKILL of the node process): Docker restarts it (restart=always) and it rejoins.
    restarts = int(cluster.inspect(c2, "{{.RestartCount}}"))
    os.kill(int(cluster.inspect(c2, "{{.State.Pid}}")), signal.SIGKILL)
    wait_until(
        lambda: int(cluster.inspect(c2, "{{.RestartCount}}")) > restarts,
        "docker restarting node 2",
        timeout=60,
        interval=0.3,
    )
    wait_until(
        lambda: cluster.status(c2) == {"running_nodes": both, "stopped_nodes": []},
        "node 2 back in the cluster",
        timeout=60,
        interval=0.3,
    )
    cluster.wait_healthy(c2)


def test_taken_port_fails_the_start_and_a_wrong_cookie_fails_ctl(cluster: Cluster, tmp_path: Path) -> None:
    n1, n2 = cluster.node(1), cluster.node(2)
    # Node 2's identity again while node 2 runs: its distribution port is taken.
    twin = cluster.run_node(n2, tmp_path, name="emqx2-twin", restart="no")
    wait_until(
        lambda: cluster.inspect(twin, "{{.State.Status}}") == "exited", "the twin to exit", timeout=60, interval=0.3
    )
    assert cluster.inspect(twin, "{{.State.ExitCode}}") != "0"
    assert f"port {n2.ports.distribution} is in use" in cluster.host.docker("logs", twin).stdout

    # A third node whose MQTT listener is node 1's: everything else is free, the listener is not.
    plan3 = validate({**stack_raw("dev"), "nodes": "3", "advertiseAddress": cluster.host.address})[1]
    clash = cluster.run_node(
        plan3.nodes[2], tmp_path, name="emqx3-clash", restart="no",
        EMQX_LISTENERS__TCP__DEFAULT__BIND=f'"{n1.mqtt_endpoint}"',
    )  # fmt: skip
    wait_until(
        lambda: cluster.inspect(clash, "{{.State.Status}}") == "exited",
        "the clashing node to exit",
        timeout=60,
        interval=0.3,
    )
    logs = cluster.host.docker("logs", clash)
    assert f"listener tcp:default on {n1.mqtt_endpoint}: eaddrinuse" in logs.stdout + logs.stderr

    wrong = cluster.ctl(n1.container_name, "status", env={"EMQX_NODE__COOKIE": "not-the-cookie"})
    assert wrong.returncode == 1
    assert "EMQX_NODE__COOKIE is different from the cookie used by" in wrong.stderr

"""The scripted `docker`/`emqx` enforces what EMQX 5.8 enforces (support/emqx58.py).

Each test drives the fake through its CLI (`docker exec ... emqx ctl ...`, as the host scripts
do) or its container lifecycle, with environments from the program's own renderer
(components.render.broker_env) or the mocked program's declared containers, and fails if the
EMQX rule it names is removed from emqx58.py / fake_docker.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from components.config_parse import parse_stack_config
from components.plan import plan_cluster
from components.render.broker_env import broker_environment, with_secrets
from components.render.templating import double_quoted
from tests.support.emqx import emqx58
from tests.support.emqx.fake_docker import BROKER_DATA_DIR, FakeDocker
from tests.support.program import ProgramRun, run_program
from tests.support.stackfiles import throwaway_config

pytestmark = pytest.mark.integration

CTL = "/opt/emqx/bin/emqx"
N1, N2, N3 = "emqx1@127.0.0.1", "emqx2@127.0.0.1", "emqx3@127.0.0.1"
COOKIE = "Abcdefghijklmnop0123456789_-xyz"  # a bare HOCON token, as the program renders it
PASSWORD = "s3cret-Dashboard#pw"


def program_env(index: int, *, cookie: str = COOKIE, password: str = PASSWORD, nodes: int = 3) -> dict[str, str]:
    """Node `index`'s environment exactly as the program composes it (public part + secrets)."""
    config = parse_stack_config({"nodes": str(nodes), "waves": "1", "tlsMode": "self-signed"})
    plan = plan_cluster(config)
    return with_secrets(broker_environment(plan.nodes[index - 1], plan, config), cookie, password)


def ctl(fake: FakeDocker, container: str, *args: str) -> subprocess.CompletedProcess[str]:
    return fake.run("exec", container, CTL, "ctl", *args)


# ------------------------------------------------------------------- cookie (defect 1)


def test_hocon_quoted_cookie_makes_every_ctl_command_die(fake_docker: FakeDocker) -> None:
    """bin/emqx "Resolve Erlang cookie": RAW EMQX_NODE__COOKIE vs the booted (HOCON-parsed) one."""
    env = program_env(1)
    env["EMQX_NODE__COOKIE"] = double_quoted(COOKIE)  # what the program used to render
    fake_docker.add_container("emqx1", env=env)
    assert fake_docker.boot_error("emqx1") is None  # EMQX boots: HOCON unquotes the cookie
    expected = f"ERROR: EMQX_NODE__COOKIE is different from the cookie used by {N1}\n"
    for args in (["status"], ["cluster", "status", "--json"], ["cluster", "join", N2], ["cluster", "leave"]):
        result = ctl(fake_docker, "emqx1", *args)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", expected), args
    ping = fake_docker.run("exec", "emqx1", CTL, "ping")
    assert (ping.returncode, ping.stderr) == (1, expected)
    assert fake_docker.health("emqx1") == "unhealthy"
    # The same node with the cookie written as EMQX boots it answers.
    fixed = fake_docker.run("exec", "-e", f"EMQX_NODE__COOKIE={COOKIE}", "emqx1", CTL, "ctl", "status")
    assert (fixed.returncode, fixed.stdout) == (0, f"Node '{N1}' 5.8.6 is started\n")


@pytest.mark.parametrize(
    ("cookie", "booted"),
    [
        ("0123456789012345", "123456789012345"),  # HOCON integer: the leading zero goes
        ("+123456789012345", "123456789012345"),  # signed integer
        ('"quoted-cookie-value"', "quoted-cookie-value"),
        ("spaced cookie value x", "spacedcookievaluex"),  # hocon concatenates without the blanks
        ("cookie#with-a-comment", "cookie"),
    ],
)
def test_a_cookie_hocon_changes_fails_every_ctl_command(fake_docker: FakeDocker, cookie: str, booted: str) -> None:
    fake_docker.add_container("emqx1", env=program_env(1, cookie=cookie))
    assert emqx58.resolve_node(fake_docker.container("emqx1")["env"]).cookie == booted
    result = ctl(fake_docker, "emqx1", "status")
    assert (result.returncode, result.stderr) == (
        1,
        f"ERROR: EMQX_NODE__COOKIE is different from the cookie used by {N1}\n",
    )


def test_a_leading_digit_cookie_hocon_cannot_parse_is_kept_raw(fake_docker: FakeDocker) -> None:
    """hocon_tconf:parse_env/3 falls back to the raw text: `1abc...` is not a HOCON value."""
    fake_docker.add_container("emqx1", env=program_env(1, cookie="1abcdefghijklmnop"))
    assert ctl(fake_docker, "emqx1", "status").returncode == 0


def test_a_float_cookie_stops_the_boot(fake_docker: FakeDocker) -> None:
    """emqx_schema:password_converter/2 throws must_quote for a float."""
    fake_docker.add_container("emqx1", env=program_env(1, cookie="1234567.5"))
    assert fake_docker.boot_error("emqx1") == "node.cookie: must_quote"
    assert fake_docker.health("emqx1") == "starting"
    result = ctl(fake_docker, "emqx1", "status")
    assert result.returncode == 1
    assert result.stderr.endswith("is restarting, wait until the container is running\n")


def test_a_quoted_node_name_is_not_found_by_bin_emqx(fake_docker: FakeDocker) -> None:
    """bin/emqx find_emqx_process greps `-name ${EMQX_NODE__NAME}` as written."""
    env = program_env(1)
    env["EMQX_NODE__NAME"] = double_quoted(N1)
    fake_docker.add_container("emqx1", env=env)
    assert fake_docker.container("emqx1")["node"] == N1
    result = ctl(fake_docker, "emqx1", "status")
    assert (result.returncode, result.stderr) == (1, f'ERROR: Node "{N1}" is not running?\n')


# -------------------------------------------------------- the program's own environment


@pytest.fixture(scope="module")
def declared(tmp_path_factory: pytest.TempPathFactory) -> ProgramRun:
    return run_program(throwaway_config(tmp_path_factory.mktemp("emqx58"), nodes=3, waves=1, joinTimeoutSeconds=5))


def test_the_programs_environment_boots_healthy_and_clusters(fake_docker: FakeDocker, declared: ProgramRun) -> None:
    cookie = (declared.named("emqx1").container_env or {})["EMQX_NODE__COOKIE"]
    for container in ("emqx1", "emqx2", "emqx3"):
        res = declared.named(container)
        env = res.container_env
        assert env is not None and env["EMQX_NODE__COOKIE"] == cookie
        fake_docker.add_container(container, env=env, data_dir=res.host_path_of(BROKER_DATA_DIR))
        assert fake_docker.boot_error(container) is None
        assert fake_docker.health(container) == "healthy"
    commands = declared.commands
    for name in ("emqx2-membership", "emqx3-membership", "wave1-verify"):
        result = commands[name].run_local("create", fake_docker.env())
        assert result.returncode == 0, (name, result.stderr)
    assert fake_docker.clusters() == [[N1, N2, N3]]
    # Every node listens on its own ports, bound to the node address (README "The port plan").
    sockets = {
        (s.owner, s.address, s.port)
        for c in ("emqx1", "emqx2", "emqx3")
        for s in emqx58.resolve_node(emqx58.image_environment(fake_docker.container(c)["env"])).sockets
    }
    plan = declared.plan()
    for index, node in enumerate(plan.nodes, start=1):
        assert ("distribution", "127.0.0.1", 4370 + index) in sockets
        assert ("rpc", "127.0.0.1", 5370 + index) in sockets
        assert ("listener tcp:default", "127.0.0.1", node.ports.mqtt) in sockets
        assert ("dashboard http", "127.0.0.1", node.ports.dashboard) in sockets
    assert len(sockets) == 4 * 3


# --------------------------------------------------------------------------- dashboard


def test_default_admin_is_stored_on_first_boot_only_and_never_validated(
    fake_docker: FakeDocker, tmp_path: Path
) -> None:
    """emqx_dashboard_admin:add_default_user/2 -> do_add_user/4: no legal_password/1 check;
    an existing admin record (mnesia in the data dir) keeps its password."""
    data = tmp_path / "emqx1-data"
    fake_docker.add_container("emqx1", env=program_env(1, password="public"), data_dir=data)
    assert fake_docker.health("emqx1") == "healthy"  # EMQX's own 6-character default boots
    assert fake_docker.dashboard_admin("emqx1") == ("admin", "public")
    assert (data / "mnesia" / N1).is_dir()

    fake_docker.recreate_container("emqx1", env=program_env(1, password="an0ther-Password"))
    assert fake_docker.dashboard_admin("emqx1") == ("admin", "public")  # data present: env ignored

    weak = ctl(fake_docker, "emqx1", "admins", "passwd", "admin", "short")
    assert (weak.returncode, weak.stdout) == (0, "Error: The range of password length is 8~64\n")
    letters = ctl(fake_docker, "emqx1", "admins", "passwd", "admin", "onlyletters")
    assert letters.stdout == f"Error: {emqx58.INVALID_PASSWORD_MSG}\n"
    changed = ctl(fake_docker, "emqx1", "admins", "passwd", "admin", "n3w-Password")
    assert (changed.returncode, changed.stdout) == (0, "ok\n")
    assert fake_docker.dashboard_admin("emqx1") == ("admin", "n3w-Password")

    fresh = tmp_path / "emqx2-data"
    fake_docker.add_container("emqx2", env=program_env(2, password="an0ther-Password"), data_dir=fresh)
    assert fake_docker.dashboard_admin("emqx2") == ("admin", "an0ther-Password")


def test_a_password_hocon_turns_into_a_boolean_stops_the_boot(fake_docker: FakeDocker) -> None:
    env = program_env(1)
    env["EMQX_DASHBOARD__DEFAULT_PASSWORD"] = "true"  # unquoted: HOCON boolean, must_quote
    fake_docker.add_container("emqx1", env=env)
    assert fake_docker.boot_error("emqx1") == "dashboard.default_password: must_quote"
    assert fake_docker.run("ps", "--format", "{{.Names}} {{.State}}").stdout == "emqx1 restarting\n"


# ------------------------------------------------------------------------------- ports


def test_two_nodes_with_the_images_rpc_default_collide_on_5369(fake_docker: FakeDocker) -> None:
    """docker-entrypoint.sh defaults EMQX_RPC__PORT_DISCOVERY to manual: rpc.server_port 5369."""
    for index in (1, 2):
        env = program_env(index)
        del env["EMQX_RPC__PORT_DISCOVERY"]
        del env["EMQX_RPC__LISTEN_ADDRESS"]
        fake_docker.add_container(f"emqx{index}", env=env)
    assert fake_docker.boot_error("emqx1") is None
    assert fake_docker.boot_error("emqx2") == (
        "Failed to start rpc on 0.0.0.0:5369: eaddrinuse (held by rpc on 0.0.0.0:5369)"
    )
    result = ctl(fake_docker, "emqx2", "status")
    assert result.returncode == 1 and "is restarting" in result.stderr
    # Once emqx1 is gone, emqx2 starts on the next restart.
    fake_docker.set_running("emqx1", False)
    fake_docker.set_running("emqx2", True)
    assert fake_docker.health("emqx2") == "healthy"


@pytest.mark.parametrize(
    ("address1", "address2", "collide"),
    [('"127.0.0.1"', '"127.0.0.2"', False), ('"0.0.0.0"', '"127.0.0.2"', True), ('"127.0.0.1"', "127.0.0.1", True)],
)
def test_rpc_listen_address_decides_a_manual_port_collision(
    fake_docker: FakeDocker, address1: str, address2: str, collide: bool
) -> None:
    for index, address in ((1, address1), (2, address2)):
        env = program_env(index)
        env.update(EMQX_RPC__PORT_DISCOVERY="manual", EMQX_RPC__LISTEN_ADDRESS=address)
        fake_docker.add_container(f"emqx{index}", env=env)
    assert (fake_docker.boot_error("emqx2") is not None) == collide


@pytest.mark.parametrize(("flag", "collide"), [(True, False), (False, True)])
def test_distribution_interface_from_erl_aflags(fake_docker: FakeDocker, flag: bool, collide: bool) -> None:
    """Same node number on two addresses: 4371 twice, apart only with inet_dist_use_interface."""
    for container, address in (("a", "127.0.0.1"), ("b", "127.0.0.2")):
        env = program_env(1)
        env["EMQX_NODE__NAME"] = f"emqx1@{address}"
        env["EMQX_RPC__LISTEN_ADDRESS"] = double_quoted(address)
        env["EMQX_LISTENERS__TCP__DEFAULT__BIND"] = double_quoted(f"{address}:61001")
        env["EMQX_DASHBOARD__LISTENERS__HTTP__BIND"] = double_quoted(f"{address}:62001")
        if flag:
            env["ERL_AFLAGS"] = "-kernel inet_dist_use_interface {" + address.replace(".", ",") + "}"
        else:
            env.pop("ERL_AFLAGS", None)
        fake_docker.add_container(container, env=env)
    error = fake_docker.boot_error("b")
    assert (error is not None) == collide
    if collide:
        assert error == 'distribution: {error,"port 4371 is in use"} (held by distribution on 0.0.0.0:4371)'


def test_default_listeners_collide_unless_disabled_or_rebound(fake_docker: FakeDocker) -> None:
    for index in (1, 2):
        env = program_env(index)
        del env["EMQX_LISTENERS__SSL__DEFAULT__ENABLE"]  # ssl default: 0.0.0.0:8883 on both
        fake_docker.add_container(f"emqx{index}", env=env)
    assert fake_docker.boot_error("emqx2") == (
        "Failed to start listener ssl:default on 0.0.0.0:8883: eaddrinuse (held by listener ssl:default on 0.0.0.0:8883)"
    )


def test_an_unquoted_ip_port_bind_is_kept_raw_and_a_host_name_fails(fake_docker: FakeDocker) -> None:
    """`127.0.0.1:61001` is no HOCON value, so hocon_tconf:parse_env/3 keeps the raw text, which
    emqx_schema:to_ip_port/1 accepts; `localhost:61001` fails inet:parse_address/1."""
    env = program_env(1)
    env["EMQX_LISTENERS__TCP__DEFAULT__BIND"] = "127.0.0.1:61001"
    fake_docker.add_container("emqx1", env=env)
    assert fake_docker.boot_error("emqx1") is None
    env2 = program_env(2)
    env2["EMQX_LISTENERS__TCP__DEFAULT__BIND"] = "localhost:61002"
    fake_docker.add_container("emqx2", env=env2)
    assert fake_docker.boot_error("emqx2") == "listeners.tcp.default.bind: bad_ip_port ('localhost:61002')"
    env3 = program_env(3)
    env3["EMQX_LISTENERS__TCP__DEFAULT__BIND"] = "127.0.0.1:61001"  # emqx1's port
    fake_docker.add_container("emqx3", env=env3)
    assert "Failed to start listener tcp:default on 127.0.0.1:61001: eaddrinuse" in (
        fake_docker.boot_error("emqx3") or ""
    )


# ---------------------------------------------------------------------- texts and codes


def test_cluster_status_json_is_jiffy_pretty(fake_docker: FakeDocker) -> None:
    fake_docker.add_emqx_containers(3)
    fake_docker.form_cluster(N1, N2, N3)
    fake_docker.set_running("emqx3", False)
    result = ctl(fake_docker, "emqx1", "cluster", "status", "--json")
    assert result.returncode == 0
    assert result.stdout == (
        '{\n  "stopped_nodes" : [\n    "emqx3@127.0.0.1"\n  ],\n'
        '  "running_nodes" : [\n    "emqx1@127.0.0.1",\n    "emqx2@127.0.0.1"\n  ]\n}\n'
    )
    alone = ctl(fake_docker, "emqx2", "cluster", "leave")
    assert alone.returncode == 0
    assert ctl(fake_docker, "emqx2", "cluster", "status", "--json").stdout == (
        '{\n  "stopped_nodes" : [\n    \n  ],\n  "running_nodes" : [\n    "emqx2@127.0.0.1"\n  ]\n}\n'
    )
    assert json.loads(result.stdout) == {"running_nodes": [N1, N2], "stopped_nodes": [N3]}


def test_ctl_status_exits_1_when_the_node_is_down(fake_docker: FakeDocker) -> None:
    fake_docker.add_emqx_containers(2)
    fake_docker.set_knobs("emqx1", emqx_running=False)
    down = ctl(fake_docker, "emqx1", "status")
    assert (down.returncode, down.stdout, down.stderr) == (1, "", f"Node '{N1}' not responding to pings.\n")
    fake_docker.set_running("emqx2", False)
    stopped = ctl(fake_docker, "emqx2", "status")
    assert stopped.returncode == 1 and stopped.stderr.endswith("is not running\n")


def test_unknown_ctl_command_prints_help_and_exits_1(fake_docker: FakeDocker) -> None:
    fake_docker.add_emqx_containers(1)
    unknown = ctl(fake_docker, "emqx1", "clusterr", "status")
    assert unknown.returncode == 1
    assert unknown.stdout.startswith("Usage: emqx ctl\n" + "-" * 110 + "\n")
    assert "cluster status [--json]" in unknown.stdout
    bare = ctl(fake_docker, "emqx1")
    assert (bare.returncode, bare.stdout) == (0, unknown.stdout)
    usage = ctl(fake_docker, "emqx1", "cluster", "bogus")
    assert (usage.returncode, usage.stdout) == (0, emqx58.CLUSTER_USAGE)

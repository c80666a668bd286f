"""The ERL_AFLAGS the program ships binds Erlang distribution to one address.

EMQX 5.8 has no config key for the distribution listener's address (`node.dist_bind_address`
only arrives in 6.2), so each node gets the OTP Kernel parameter `inet_dist_use_interface`
through the container environment:

- `bin/emqx` boots the VM as `erlexec ... -args_file vm.args` and `emqx ctl` runs the
  `nodetool` escript, which goes through erlexec as well (emqx v5.8.6 bin/emqx, `relx_nodetool`
  and the `foreground` branch); neither touches ERL_AFLAGS;
- erlexec adds ERL_AFLAGS to the beginning of the command line of every VM it starts (OTP docs,
  erts `erl` command, "Environment Variables": "ERL_AFLAGS - The content of this variable is
  added to the beginning of the command line for erl"). The beginning, not the end (ERL_ZFLAGS):
  bin/emqx reads the node's data dir off its `ps` line as everything after `-emqx_data_dir`, which
  it puts last (v5.8.6 bin/emqx, "order matters!" before `exec`, and the `tmp_datadir` parse);
  a flag appended after it would become part of that path for every `emqx ctl`;
- `-Application Par Val` sets an application parameter (same page), and Kernel's
  `inet_dist_use_interface = ip_address()`: "If the host of an Erlang node has many network
  interfaces, this parameter specifies which one to listen on" (OTP docs, kernel app).

Docker passes environment values verbatim (no shell), exactly like `subprocess` here.

Everything runs on a real Debian Erlang (erlang-base), whose VMs have no ekka.  EMQX's static
ports (`-start_epmd false -epmd_module ekka_epmd`: emqxN listens on 4370 + N, no epmd) are
emulated with `inet_dist_listen_min = inet_dist_listen_max = P` plus a private `epmd` on its own
free port (ERL_EPMD_PORT, shared by every VM of a test): plain OTP needs a name service to find
a node's port, and a private epmd neither clashes with nor leaks into a host epmd on 4369.  The
VMs run with `-start_epmd false` so none of them ever spawns a daemon of its own.  The node
address is 127.0.0.2, not 127.0.0.1: Linux routes all of 127/8 to `lo`, so "bound to the node
address only" can be told apart from both 0.0.0.0 and 127.0.0.1.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.config import StackConfig
from components.plan import ClusterPlan, NodePlan
from components.render.broker_env import broker_environment
from tests.support.erlang_vm import (
    ERL,
    ESCRIPT,
    START_TIMEOUT,
    ErlangProcess,
    ErlangProcesses,
    ErlangProcessFactory,
    erl_environment,
    free_dist_port,
    missing_executables,
    private_epmd,
    tcp_listeners,
)
from tests.support.stackfiles import stack_raw, validate

MISSING = missing_executables("erl", "epmd", "escript")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(MISSING), reason=f"needs Debian's erlang-base ({', '.join(MISSING)} not found)"),
]

NODE_ADDRESS = "127.0.0.2"
SHIPPED_FORM = "-kernel inet_dist_use_interface {127,0,0,2}"
COOKIE = "Cookie_0123456789abcdefXYZ"
READY = "dist-ready"


# ------------------------------------------------------------------------------ what is shipped


@pytest.fixture(scope="module")
def cluster() -> tuple[StackConfig, ClusterPlan]:
    """The dev stack with every node on 127.0.0.2 (as tests/unit/test_broker_env.py builds it)."""
    raw = stack_raw("dev")
    raw.update(advertiseAddress=NODE_ADDRESS, erlangCookie=COOKIE, dashboardPassword="Dashboard-Pa55word!")
    return validate(raw)


@pytest.fixture(scope="module")
def node(cluster: tuple[StackConfig, ClusterPlan]) -> NodePlan:
    return cluster[1].seed


@pytest.fixture(scope="module")
def shipped_aflags(cluster: tuple[StackConfig, ClusterPlan], node: NodePlan) -> str:
    """ERL_AFLAGS exactly as the program puts it into the container environment of node 1."""
    config, plan = cluster
    env = broker_environment(node, plan, config)
    assert "ERL_AFLAGS" in env, "broker_environment does not set ERL_AFLAGS: distribution listens on 0.0.0.0"
    return env["ERL_AFLAGS"]


def test_shipped_form_is_the_one_proven_here(shipped_aflags: str, node: NodePlan) -> None:
    assert node.address == NODE_ADDRESS
    assert shipped_aflags == SHIPPED_FORM


# ------------------------------------------------------------------------------ helpers


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[ErlangProcessFactory]:
    """Starts Erlang processes for one test and stops every one of them afterwards."""
    with ErlangProcesses(tmp_path) as processes:
        yield processes.start


@pytest.fixture
def epmd_port(tmp_path: Path) -> Iterator[int]:
    """A private epmd on a free port of the node address (and the loopback, which epmd adds)."""
    with private_epmd(tmp_path, [NODE_ADDRESS]) as port:
        yield port


def broker_vm(
    spawn: ErlangProcessFactory,
    epmd_port: int,
    home: Path,
    node_name: str,
    dist_port: int,
    aflags: str | None,
    flag_var: str = "ERL_AFLAGS",
) -> ErlangProcess:
    """An `emqx foreground` stand-in: long name, cookie, static distribution port, no shell.

    It prints READY and Kernel's inet_dist_use_interface once distribution is up (`-name`
    starts net_kernel before `-eval` runs) and then keeps running.
    """
    assert ERL is not None
    argv = [
        ERL,
        "-noshell",
        "-start_epmd", "false",
        "-name", node_name,
        "-setcookie", COOKIE,
        "-kernel", "inet_dist_listen_min", str(dist_port), "inet_dist_listen_max", str(dist_port),
        "-eval", f'io:format("{READY} ~p~n", [application:get_env(kernel, inet_dist_use_interface)])',
        # What bin/emqx puts last, for `emqx ctl` to read back off the `ps` line.
        "--", "-emqx_data_dir", EMQX_DATA_DIR,
    ]  # fmt: skip
    flags = {} if aflags is None else {flag_var: aflags}
    return spawn(argv, erl_environment(epmd_port, home, **flags), node_name.split("@")[0])


# `emqx ctl` -> relx_nodetool -> `escript bin/nodetool -name <node> ...`, which starts its own
# distribution as remsh_maint_<node><pid digits>@<host> and pings the node first (emqx v5.8.6
# bin/nodetool `do/1`, `this_node_name/2`).  This escript does the same, then reports the
# port of its own listener and keeps running so the test can look at that listener too.
NODETOOL_STANDIN = r"""
main([Target]) ->
    [Name, Host] = string:split(Target, "@"),
    Short = "remsh_maint_" ++ Name ++ string:slice(string:reverse(os:getpid()), 0, 3),
    {ok, _} = net_kernel:start([list_to_atom(Short ++ "@" ++ Host), longnames]),
    io:format("interface ~p~n", [application:get_env(kernel, inet_dist_use_interface)]),
    {port, Port, _} = erl_epmd:port_please(Short, Host),
    io:format("ctl-listener ~b~n", [Port]),
    io:format("ping ~p~n", [net_adm:ping(list_to_atom(Target))]),
    receive after infinity -> ok end.
"""


# ------------------------------------------------------------------------------ the proof

EMQX_DATA_DIR = "/opt/emqx/data"


def data_dir_as_emqx_ctl_reads_it(pid: int) -> str:
    """bin/emqx (v5.8.6, `tmp_datadir`): everything after `-emqx_data_dir` on the `ps` line,
    minus a trailing ` --`."""
    ps_line = " ".join(Path(f"/proc/{pid}/cmdline").read_text().split("\0")).strip()
    after = ps_line[ps_line.index("-emqx_data_dir") :]
    return re.sub(r"[ \t]--$", "", re.sub(r".+emqx_data_dir[ \t]", "", after))


@pytest.mark.parametrize(("flag_var", "readable"), [("ERL_AFLAGS", True), ("ERL_ZFLAGS", False)])
def test_emqx_ctl_still_reads_the_data_dir_off_the_node_command_line(
    spawn: ErlangProcessFactory,
    epmd_port: int,
    tmp_path: Path,
    shipped_aflags: str,
    node: NodePlan,
    flag_var: str,
    readable: bool,
) -> None:
    """Prepended (ERL_AFLAGS), the flag leaves `-emqx_data_dir <dir>` last on the command line;
    appended (ERL_ZFLAGS), it would turn into part of the data dir every `emqx ctl` uses."""
    broker = broker_vm(spawn, epmd_port, tmp_path, node.node_name, free_dist_port(), shipped_aflags, flag_var)
    broker.wait_for_line(rf"^{READY} ")
    beam = [pid for pid in _descendants(broker.process.pid) if "beam" in Path(f"/proc/{pid}/comm").read_text()]
    (pid,) = beam or [broker.process.pid]
    assert (data_dir_as_emqx_ctl_reads_it(pid) == EMQX_DATA_DIR) is readable


def _descendants(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [int(child) for child in children.read_text().split()] if children.exists() else []
    return [pid, *(grandchild for child in found for grandchild in _descendants(child))]


def test_shipped_flags_bind_distribution_to_the_node_address_only(
    spawn: ErlangProcessFactory, epmd_port: int, tmp_path: Path, shipped_aflags: str, node: NodePlan
) -> None:
    dist_port = free_dist_port()
    broker = broker_vm(spawn, epmd_port, tmp_path, node.node_name, dist_port, shipped_aflags)
    ready = broker.wait_for_line(rf"^{READY} (.*)$")
    assert ready.group(1) == "{ok,{127,0,0,2}}"
    assert tcp_listeners(dist_port) == {NODE_ADDRESS}, broker.output()


def test_ctl_path_still_reaches_the_node(
    spawn: ErlangProcessFactory, epmd_port: int, tmp_path: Path, shipped_aflags: str, node: NodePlan
) -> None:
    """`docker exec <node> emqx ctl ...` inherits the container env, ERL_AFLAGS included."""
    assert ESCRIPT is not None
    dist_port = free_dist_port()
    broker = broker_vm(spawn, epmd_port, tmp_path, node.node_name, dist_port, shipped_aflags)
    broker.wait_for_line(rf"^{READY} ")

    script = tmp_path / "nodetool"
    script.write_text("#!/usr/bin/env escript\n" + NODETOOL_STANDIN)
    # relx_nodetool passes EPMD_ARGS and the cookie in ERL_FLAGS; ERL_AFLAGS is the container's.
    env = erl_environment(
        epmd_port, tmp_path, ERL_FLAGS=f"-start_epmd false -setcookie {COOKIE}", ERL_AFLAGS=shipped_aflags
    )
    ctl = spawn([ESCRIPT, str(script), node.node_name], env, "nodetool")
    assert ctl.wait_for_line(r"^interface (.*)$").group(1) == "{ok,{127,0,0,2}}"
    ctl_port = int(ctl.wait_for_line(r"^ctl-listener (\d+)$").group(1))
    assert ctl.wait_for_line(r"^ping (\w+)$").group(1) == "pong", ctl.output()
    # The ctl VM's own listener obeys the same flag (it is a distribution listener too).
    assert tcp_listeners(ctl_port) == {NODE_ADDRESS}
    assert tcp_listeners(dist_port) == {NODE_ADDRESS}


@pytest.mark.parametrize(
    ("aflags", "error"),
    [
        # A bare dotted quad is not an Erlang term.
        ("-kernel inet_dist_use_interface 127.0.0.2", r'bad_environment_value,"127\.0\.0\.2"'),
        # erlexec strips shell-style quotes, which leaves the same bare dotted quad.
        ('-kernel inet_dist_use_interface "127.0.0.2"', r'bad_environment_value,"127\.0\.0\.2"'),
        # An Erlang string parses, but is no ip_address(): the listener cannot be opened.
        ("-kernel inet_dist_use_interface '\"127.0.0.2\"'", r"register/listen error: badarg"),
        # erlexec splits on blanks: the tuple arrives as "{127," and three stray arguments.
        ("-kernel inet_dist_use_interface {127, 0, 0, 2}", r'bad_environment_value,"\{127,"'),
    ],
    ids=["bare-address", "shell-quoted-address", "erlang-string", "tuple-with-blanks"],
)
def test_wrong_forms_stop_the_vm(
    spawn: ErlangProcessFactory, epmd_port: int, tmp_path: Path, node: NodePlan, aflags: str, error: str
) -> None:
    dist_port = free_dist_port()
    broker = broker_vm(spawn, epmd_port, tmp_path, node.node_name, dist_port, aflags)
    try:
        returncode = broker.process.wait(timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"VM still running with ERL_AFLAGS={aflags!r}:\n{broker.output()}")
    output = broker.output()
    assert returncode != 0, output
    assert re.search(error, output), output
    assert READY not in output
    assert tcp_listeners(dist_port) == set()


def test_control_without_the_flags_listens_on_every_address(
    spawn: ErlangProcessFactory, epmd_port: int, tmp_path: Path, node: NodePlan
) -> None:
    """Without the flag the same VM listens on 0.0.0.0: the proof above is not vacuous."""
    dist_port = free_dist_port()
    broker = broker_vm(spawn, epmd_port, tmp_path, node.node_name, dist_port, None)
    assert broker.wait_for_line(rf"^{READY} (.*)$").group(1) == "undefined"
    assert tcp_listeners(dist_port) == {"0.0.0.0"}, broker.output()

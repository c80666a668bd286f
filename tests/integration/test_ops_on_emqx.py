"""scripts/status, backup and restore read `emqx ctl` texts (ops/emqx.py): here the parsers read what
REAL EMQX 5.8.6 nodes print (tests/support/emqx_nodes.py), through ops/stack.py's own
`docker -H <engine> exec <container> /opt/emqx/bin/emqx ctl ...` with the nodes' `docker` on PATH.

The unit tests (tests/unit/test_ops.py) hold literal texts captured from these nodes.
"""

from __future__ import annotations

import io
import re
import shutil
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from ops import emqx
from ops.stack import Node, ctl, node_status
from ops.status import report
from tests.support.emqx_nodes import GENERATED_PASSWORD, ReleaseCluster, ReleaseNode, release_cluster, release_stack
from tests.support.lb_stack import connect_mqtt
from tests.support.ports import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReleaseCluster]:
    """Two nodes in one cluster, the nodes' `docker` first on PATH for ops/stack.py."""
    stack = release_stack(tmp_path_factory.mktemp("ops"), nodes=2)
    with release_cluster(stack) as nodes, pytest.MonkeyPatch.context() as patch:
        joined = nodes.node(2).ctl("cluster", "join", nodes.node(1).name)
        assert "Join the cluster successfully." in joined.stdout, joined
        patch.setenv("PATH", nodes.env()["PATH"])
        yield nodes


def ops_node(node: ReleaseNode) -> Node:
    """The node as the stack's `nodes` output row describes it."""
    return Node(node.name, "local", node.container, "unix:///var/run/docker.sock")


def test_status_and_broker_texts_are_read(cluster: ReleaseCluster) -> None:
    node = ops_node(cluster.node(1))
    status = node_status(node)
    assert status is not None and (status.node, status.version, status.started) == (node.name, "5.8.6", True)
    code, text = ctl(node, "broker")
    assert code == 0
    assert re.fullmatch(r"sysdescr  : EMQX\nversion   : 5\.8\.6\ndatetime  : \S+\nuptime    : .*\n", text), text
    assert emqx.parse_broker(text).version == "5.8.6"


def test_the_status_report_counts_the_live_connections(cluster: ReleaseCluster) -> None:
    seed = cluster.node(1)
    client_id = f"ops-{uuid.uuid4().hex[:6]}"
    generated = cluster.config.access.generated_client
    session = connect_mqtt(
        *seed.mqtt_address, client_id=client_id, username=generated, password=GENERATED_PASSWORD, proxy_protocol=True
    )
    try:
        # The counts are refreshed every second, not at each connect: emqx_cm.erl registers
        # stats_fun with emqx_stats:update_interval, whose tick is 1 s (emqx_stats.erl:140).
        def stats() -> tuple[int] | None:
            code, text = ctl(ops_node(seed), "broker", "stats")
            return (code,) if emqx.parse_broker_stats(text)["live_connections.count"] == 1 else None

        (code,) = wait_until(stats, "the connection in `broker stats`", timeout=10, interval=0.5)
        # broker(["stats"]) returns the list of its prints (emqx_mgmt_cli.erl:81-85) and
        # nodetool's rpc_infinity halts 1 on anything but `ok` (bin/nodetool:142-152).
        assert code == 1
        result = report(ops_node(seed), {seed.name})
        assert (result.running, result.connections) == (True, 1)
        assert result.broker is not None and result.broker.version == "5.8.6" and result.broker.uptime_seconds >= 1
    finally:
        session.close()


def in_node(node: ReleaseNode, path: PurePosixPath) -> Path:
    """A container path (/opt/emqx/...) in the node's copy."""
    return node.root / path.relative_to(emqx.EMQX_HOME)


def test_an_export_is_found_read_and_imported_again(cluster: ReleaseCluster) -> None:
    seed = cluster.node(1)
    node = ops_node(seed)
    code, text = ctl(node, "data", "export")
    assert code == 0, text
    archive = emqx.exported_path(text)
    assert archive.parent == emqx.BACKUP_DIR
    local = in_node(seed, archive)
    assert emqx.read_archive(str(local)) == emqx.ArchiveMeta(archive.name, "5.8.6", "ce")
    code, text = ctl(node, "data", "import", archive.name)
    assert code == 0 and emqx.import_failure(text) is None, text


def test_a_newer_backup_is_refused_by_emqx_as_ops_predicts(cluster: ReleaseCluster, tmp_path: Path) -> None:
    """A 5.9 archive (the node's own export, its META.hocon saying 5.9.0): ops refuses it before
    the copy, and EMQX, given it anyway, refuses it with its own text."""
    seed = cluster.node(1)
    node = ops_node(seed)
    _, text = ctl(node, "data", "export")
    exported = in_node(seed, emqx.exported_path(text))
    name = "emqx-export-2031-01-02-03-04-05.678"
    newer = tmp_path / f"{name}.tar.gz"
    with tarfile.open(exported, "r:gz") as source, tarfile.open(newer, "w:gz") as target:
        for member in source.getmembers():
            data = source.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            member.name = name + member.name[member.name.index("/") :]
            if member.name.endswith("/META.hocon") and data is not None:
                data = data.replace(b'"5.8.6"', b'"5.9.0"')
            if data is not None:
                member.size = len(data)
            target.addfile(member, io.BytesIO(data) if data is not None else None)
    meta = emqx.read_archive(str(newer))
    assert meta.version == "5.9.0"
    assert emqx.import_refused(meta.version, "5.8.6") is not None
    placed = in_node(seed, emqx.BACKUP_DIR / newer.name)
    shutil.copyfile(newer, placed)
    shutil.chown(placed, seed.user.pw_uid, seed.user.pw_gid)
    _, text = ctl(node, "data", "import", newer.name)
    failure = emqx.import_failure(text)
    assert failure == text.strip()
    assert failure.splitlines()[-1] == (
        '[error] Data import failed, reason: "[warning] Backup version \\"5.9.0\\" is newer than EMQX version '
        '\\"5.8.6\\", import is not allowed.\\n".'
    )


def test_cluster_status_lists_a_stopped_member_as_stopped(cluster: ReleaseCluster) -> None:
    n1, n2 = cluster.node(1), cluster.node(2)
    code, text = ctl(ops_node(n1), "cluster", "status", "--json")
    assert code == 0 and emqx.parse_cluster_status_json(text) == ([n1.name, n2.name], [])
    cluster.stop(n2)  # for good: the module's last test
    _, text = ctl(ops_node(n1), "cluster", "status", "--json")
    assert emqx.parse_cluster_status_json(text) == ([n1.name], [n2.name])
    down = report(ops_node(n2), {n1.name})
    assert (down.running, down.broker, down.connections) == (False, None, None)

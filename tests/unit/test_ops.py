"""The pure parts of scripts/backup, restore and status (ops/emqx.py): EMQX 5.8.6's ctl texts
read back, the archive rules checked before anything is copied, naming, and the status table.

The texts are literal copies of what real EMQX 5.8.6 nodes printed (tests/support/emqx_nodes.py;
tests/integration/test_ops_on_emqx.py runs the same parsers on live output)."""

from __future__ import annotations

import io
import stat
import tarfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from ops import emqx
from ops.backup import private_dir
from ops.stack import Node, OpsError
from ops.status import HOST_HEADERS, NODE_HEADERS, NodeReport, host_rows, node_rows

# Captured from a node (`emqx ctl ...`), stopped or booting where it says so.
STATUS = "Node 'emqx1@127.0.0.1' 5.8.6 is started\n"
NOT_RESPONDING = "Node 'emqx1@127.0.0.1' not responding to pings.\n"  # booting: the VM runs, EMQX not yet
NOT_RUNNING = "ERROR: Node emqx3@127.0.0.1 is not running?\n"  # no VM (bin/emqx finds none with `ps`)
BROKER = (
    "sysdescr  : EMQX\nversion   : 5.8.6\ndatetime  : 2026-12-07T18:04:41.058415711+00:00\nuptime    : 49 seconds\n"
)
BROKER_USAGE = (
    "broker         # Show broker version, uptime and description\n"
    "broker stats   # Show broker statistics of clients, topics, subscribers\n"
    "broker metrics # Show broker metrics\n"
)
BROKER_STATS = (  # 5 of 7 clients connected (2 sessions kept), counts set by hand
    "channels.count                : 7\n"
    "channels.max                  : 9\n"
    "cluster_sessions.count        : 7\n"
    "cluster_sessions.max          : 9\n"
    "connections.count             : 7\n"
    "connections.max               : 9\n"
    "delayed.count                 : 0\n"
    "delayed.max                   : 0\n"
    "durable_subscriptions.count   : 0\n"
    "durable_subscriptions.max     : 0\n"
    "live_connections.count        : 5\n"
    "live_connections.max          : 9\n"
    "retained.count                : 3\n"
    "retained.max                  : 3\n"
    "sessions.count                : 7\n"
    "sessions.max                  : 9\n"
    "suboptions.count              : 2\n"
    "suboptions.max                : 2\n"
    "subscribers.count             : 2\n"
    "subscribers.max               : 2\n"
    "subscriptions.count           : 2\n"
    "subscriptions.max             : 2\n"
    "subscriptions.shared.count    : 0\n"
    "subscriptions.shared.max      : 0\n"
    "topics.count                  : 2\n"
    "topics.max                    : 2\n"
)
CLUSTER_STATUS_JSON = (
    '{\n  "stopped_nodes" : [\n    "emqx3@127.0.0.1"\n  ],\n'
    '  "running_nodes" : [\n    "emqx1@127.0.0.1",\n    "emqx2@127.0.0.1"\n  ]\n}\n'
)
CLUSTER_STATUS = (
    "Cluster status: #{running_nodes => ['emqx1@127.0.0.1','emqx2@127.0.0.1'],\n"
    "                  stopped_nodes => ['emqx3@127.0.0.1']}\n"
)
EXPORT_NAME = "emqx-export-2026-12-07-18-04-50.693.tar.gz"
EXPORTED = (
    f'Exporting data to "data/backup/{EXPORT_NAME}"...\n'
    "Exporting cluster configuration...\n"
    'Exporting additional files from EMQX data_dir: "data"...\n'
    "Exporting built-in database...\n"
    "Exporting emqx_admin database table...\n"
    "Exporting emqx_app database table...\n"
    "Exporting emqx_authn_mnesia database table...\n"
    f"Data has been successfully exported to data/backup/{EXPORT_NAME}.\n"
)
IMPORTED = (
    f'Importing data from "data/backup/{EXPORT_NAME}"...\n'
    "Importing cluster configuration...\n"
    "Importing built-in database...\n"
    "Importing emqx_authn_mnesia database table...\n"
    "Importing emqx_app database table...\n"
    "Importing emqx_admin database table...\n"
    "Data has been imported successfully.\n"
)
REFUSED = (
    'Importing data from "data/backup/emqx-export-2031-01-02-03-04-05.678.tar.gz"...\n'
    '[error] Data import failed, reason: "[warning] Backup version \\"5.9.0\\" is newer than EMQX version '
    '\\"5.8.6\\", import is not allowed.\\n".\n'
)
META = b'edition = ce\nversion = "5.8.6"\n'  # an export's META.hocon


def test_status_line_gives_node_version_and_state() -> None:
    status = emqx.parse_status(STATUS)
    assert (status.node, status.version, status.started) == ("emqx1@127.0.0.1", "5.8.6", True)
    # emqx_mgmt_cli.erl:66-68: init:get_status() is `starting` while the node boots
    assert not emqx.parse_status("Node 'emqx1@127.0.0.1' 5.8.6 is starting\n").started
    for failed in (NOT_RESPONDING, NOT_RUNNING):
        with pytest.raises(emqx.EmqxTextError):
            emqx.parse_status(failed)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("", 0),  # under a second: every part is zero and dropped
        ("49 seconds", 49),
        ("1 hours, 0 minutes, 5 seconds", 3605),  # inner zero parts stay
        ("1 days, 1 hours, 1 minutes, 1 seconds", 90061),
    ],
)
def test_uptime_reads_emqx_durations_with_inner_zero_parts(text: str, seconds: int) -> None:
    """emqx_utils_calendar.erl:128-135 human_readable_duration_string/1: leading zero parts dropped."""
    assert emqx.parse_duration(text) == seconds


def test_broker_text_gives_version_and_uptime_despite_colons_in_the_datetime() -> None:
    info = emqx.parse_broker(BROKER)
    assert (info.version, info.uptime_seconds) == ("5.8.6", 49)
    with pytest.raises(emqx.EmqxTextError):
        emqx.parse_broker(BROKER_USAGE)


def test_broker_stats_give_the_connection_count() -> None:
    stats = emqx.parse_broker_stats(BROKER_STATS)
    assert (stats["connections.count"], stats["live_connections.count"], stats["retained.count"]) == (7, 5, 3)
    assert list(stats) == sorted(stats) and len(stats) == 26  # lists:sort of the stats
    for failed in (NOT_RESPONDING, NOT_RUNNING):
        with pytest.raises(emqx.EmqxTextError):
            emqx.parse_broker_stats(failed)


def test_cluster_status_json_gives_running_and_stopped() -> None:
    assert emqx.parse_cluster_status_json(CLUSTER_STATUS_JSON) == (
        ["emqx1@127.0.0.1", "emqx2@127.0.0.1"],
        ["emqx3@127.0.0.1"],
    )
    with pytest.raises(emqx.EmqxTextError):
        emqx.parse_cluster_status_json(CLUSTER_STATUS)


def test_export_output_names_the_archive_under_the_nodes_working_dir() -> None:
    assert str(emqx.exported_path(EXPORTED)) == f"/opt/emqx/data/backup/{EXPORT_NAME}"
    failed = "[error] Data export failed, reason: eacces.\n"  # emqx_mgmt_cli.erl:899
    with pytest.raises(emqx.EmqxTextError, match="eacces"):
        emqx.exported_path(failed)


def test_import_outcome_is_read_off_emqxs_text() -> None:
    assert emqx.import_failure(IMPORTED) is None
    assert emqx.import_failure(REFUSED) == REFUSED.strip()
    partly = "Data has been imported, but some errors occurred, see the log above.\n"  # emqx_mgmt_cli.erl:907-909
    assert emqx.import_failure(partly) == partly.strip()


@pytest.mark.parametrize(
    ("backup", "cluster", "refused"),
    [
        ("5.8.6", "5.8.6", False),
        ("5.8.7", "5.8.6", False),  # a newer patch: EMQX compares major.minor only
        ("5.7.2", "5.8.6", False),
        ("5.9.0", "5.8.6", True),
        ("6.0.0", "5.8.6", True),
        ("4.9.0", "5.8.6", True),  # EMQX's rule: the minor on its own (and 4.x is invalid anyway)
        ("5.10.0-rc.1", "5.8.6", True),
    ],
)
def test_version_rule_is_emqxs(backup: str, cluster: str, refused: bool) -> None:
    message = emqx.import_refused(backup, cluster)
    assert (message is not None) is refused
    if message is not None:
        assert backup in message and cluster in message


def archive(directory: Path, name: str, entries: dict[str, bytes]) -> Path:
    path = directory / name
    with tarfile.open(path, "w:gz") as tar:
        for entry, data in entries.items():
            info = tarfile.TarInfo(entry)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_an_export_archive_is_read_with_its_version(tmp_path: Path) -> None:
    base = "emqx-export-2026-03-04-05-06-07.089"
    path = archive(tmp_path, f"{base}.tar.gz", {f"{base}/META.hocon": META, f"{base}/cluster.hocon": b""})
    assert emqx.read_archive(str(path)) == emqx.ArchiveMeta(f"{base}.tar.gz", "5.8.6", "ce")


def test_archives_emqx_would_refuse_are_refused_before_any_copy(tmp_path: Path) -> None:
    base = "emqx-export-2026-03-04-05-06-07.089"
    meta = META
    renamed = archive(tmp_path, "prod-backup.tar.gz", {f"{base}/META.hocon": meta})
    with pytest.raises(ValueError, match="must be under prod-backup/"):
        emqx.read_archive(str(renamed))
    no_meta = archive(tmp_path, f"{base}.tar.gz", {f"{base}/cluster.hocon": b""})
    with pytest.raises(ValueError, match=r"missing META\.hocon"):
        emqx.read_archive(str(no_meta))
    wrong_suffix = archive(tmp_path, f"{base}.tgz", {f"{base}/META.hocon": meta})
    with pytest.raises(ValueError, match=r"must have \.tar\.gz extension"):
        emqx.read_archive(str(wrong_suffix))
    (tmp_path / "garbage.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(ValueError, match="not a readable"):
        emqx.read_archive(str(tmp_path / "garbage.tar.gz"))


def test_backup_folder_is_named_by_stack_and_utc_time() -> None:
    local = datetime(2026, 12, 5, 9, 30, 15, tzinfo=timezone(timedelta(hours=2)))
    assert emqx.backup_folder_name("prod", local) == "prod-20261205T073015Z"
    assert emqx.backup_folder_name("dev", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "dev-20260102T030405Z"


def test_status_table_has_a_row_per_node_and_per_host() -> None:
    up = Node("emqx1@10.0.0.11", "a", "emqx1", "ssh://deploy@10.0.0.11:22")
    down = Node("emqx2@10.0.0.12", "b", "emqx2", "ssh://deploy@10.0.0.12:22")
    reports = [NodeReport(up, True, emqx.BrokerInfo("5.8.6", 3605), 12), NodeReport(down, False, None, None)]
    table = emqx.render_table(NODE_HEADERS, node_rows(reports)).splitlines()
    assert table[0].split() == ["HOST", "NODE", "RUNNING", "CONNECTIONS", "UPTIME", "VERSION"]
    assert table[1].split() == ["a", "emqx1@10.0.0.11", "yes", "12", "1h00m", "5.8.6"]
    assert table[2].split() == ["b", "emqx2@10.0.0.12", "no", "-", "-", "-"]
    assert table[0].index("RUNNING") == table[1].index("yes") == table[2].index("no")  # aligned columns
    capacity = {"a": {"ceiling": 65000, "decidedBy": "upstream ports"}}
    assert host_rows(["a", "b"], capacity, None) == [["a", "65000", "upstream ports", "-"], ["b", "-", "-", "-"]]
    assert host_rows(["a", "b"], capacity, {"a": 17, "b": None})[0][3] == "17"
    assert host_rows(["a", "b"], capacity, {"a": 17, "b": None})[1][3] == "?"
    assert HOST_HEADERS[3] == "LB ACTIVE"


def test_lb_connections_are_read_only_when_the_metrics_output_gives_the_page() -> None:
    assert emqx.lb_metrics_urls({"capacity": {}}) == {}
    assert emqx.lb_metrics_urls({"metrics": None}) == {}
    outputs = {"metrics": {"a": {"lbMetrics": "http://127.0.0.1:9113/metrics"}, "b": {}}}
    assert emqx.lb_metrics_urls(outputs) == {"a": "http://127.0.0.1:9113/metrics"}
    page = "# TYPE nginx_connections_active gauge\nnginx_connections_active 42\n"
    assert emqx.nginx_active_connections(page) == 42
    assert emqx.nginx_active_connections("nothing") is None


@pytest.mark.parametrize("duration", [0, 59, 61, 3600, 90061])
def test_compact_uptime(duration: int) -> None:
    shown = emqx.format_duration(duration)
    assert shown == {0: "0s", 59: "59s", 61: "1m01s", 3600: "1h00m", 90061: "1d1h"}[duration]


def test_backups_go_into_new_private_folders_and_leave_the_users_directory_as_it_is(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    assert private_dir(shared) == shared and stat.S_IMODE(shared.stat().st_mode) == 0o755
    folder = private_dir(shared / "dev-20261205T071500Z", new=True)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    fresh = private_dir(tmp_path / "backups")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    with pytest.raises(OpsError, match="exists already"):
        private_dir(folder, new=True)

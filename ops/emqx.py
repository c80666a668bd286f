"""EMQX 5.8's `emqx ctl` texts and backup archive rules, as pure functions.

Every format is EMQX's at tag v5.8.6 (github.com/emqx/emqx, commit b895cdcd8c), cited as
file:line; `emqx ctl` prints through emqx_ctl:print/2 (apps/emqx_ctl/src/emqx_ctl.erl:207-208,
`io:format("~ts", ...)`) and exits 0 after most commands whatever they printed, so outcomes are
read off the text. tests/integration/test_ops_on_emqx.py runs these parsers on what real EMQX
5.8.6 nodes print; tests/unit/test_ops.py keeps literal copies of it.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

# The broker's working directory: deploy/docker/Dockerfile:62 `WORKDIR /opt/emqx`; emqx:data_dir()
# is "data" there (rebar.config.erl:406), relative to it.
EMQX_HOME = PurePosixPath("/opt/emqx")
# apps/emqx_management/src/emqx_mgmt_data_backup.erl:61 ROOT_BACKUP_DIR "backup" under data_dir
# (:1048-1051): where `data export` writes and where `data import <basename>` looks (:1030-1046).
BACKUP_DIR = EMQX_HOME / "data" / "backup"
TAR_SUFFIX = ".tar.gz"  # emqx_mgmt_data_backup.erl:63
META_FILENAME = "META.hocon"  # emqx_mgmt_data_backup.erl:64
# emqx_mgmt_data_backup.erl:439-446: "emqx-export-~0p-~2..0b-~2..0b-~2..0b-~2..0b-~2..0b.~3..0b".
EXPORT_NAME = re.compile(r"emqx-export-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}\.\d{3}\.tar\.gz")


class EmqxTextError(ValueError):
    """A `emqx ctl` answer that is not in the format EMQX prints."""


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class NodeStatus:
    node: str
    version: str
    state: str  # init:get_status(): started, starting, stopping

    @property
    def started(self) -> bool:
        return self.state == "started"


_STATUS = re.compile(r"^Node '?(?P<node>[^' ]+)'? (?P<version>\S+) is (?P<state>\w+)$", re.M)


def parse_status(text: str) -> NodeStatus:
    """`emqx ctl status`: emqx_mgmt_cli.erl:66-68 `"Node ~p ~ts is ~p~n"` with node(),
    emqx_app:get_release() (the release version, emqx_release.erl:98-115) and init:get_status()."""
    match = _STATUS.search(text)
    if match is None:
        raise EmqxTextError(f"not `emqx ctl status` output: {text.strip()!r}")
    return NodeStatus(match["node"], match["version"], match["state"])


# --------------------------------------------------------------------------- broker


@dataclass(frozen=True)
class BrokerInfo:
    version: str
    uptime_seconds: int


_DURATION_UNITS = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}


def parse_duration(text: str) -> int:
    """emqx_utils_calendar:human_readable_duration_string/1 (apps/emqx_utils/src/
    emqx_utils_calendar.erl:128-135): "D days, H hours, M minutes, S seconds" with the leading
    zero parts dropped (so "" under a second, and "1 hours, 0 minutes, 5 seconds")."""
    seconds = 0
    rest = text.strip()
    for part in filter(None, (piece.strip() for piece in rest.split(","))):
        number, _, unit = part.partition(" ")
        if not number.isdigit() or unit not in _DURATION_UNITS:
            raise EmqxTextError(f"not an EMQX duration: {text!r}")
        seconds += int(number) * _DURATION_UNITS[unit]
    return seconds


def _key_values(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value[1:] if value.startswith(" ") else value
    return values


def parse_broker(text: str) -> BrokerInfo:
    """`emqx ctl broker`: emqx_mgmt_cli.erl:75-80, lines `"~-10s: ~ts~n"` for sysdescr, version,
    datetime (emqx_sys.erl:104-124), then uptime as a human-readable duration of the VM's wall
    clock (emqx_sys.erl:116-119)."""
    values = _key_values(text)
    if "version" not in values or "uptime" not in values:
        raise EmqxTextError(f"not `emqx ctl broker` output: {text.strip()!r}")
    return BrokerInfo(version=values["version"].strip(), uptime_seconds=parse_duration(values["uptime"]))


def parse_broker_stats(text: str) -> dict[str, int]:
    """`emqx ctl broker stats`: emqx_mgmt_cli.erl:81-85, `"~-30s: ~w~n"` per sorted
    emqx_stats:getstats() entry (emqx_stats.erl:160-165; 'live_connections.count' is the channel
    registry's live table, emqx_cm.erl:134: the clients connected to this node now, where
    'connections.count' also keeps disconnected sessions until they expire)."""
    stats: dict[str, int] = {}
    for key, value in _key_values(text).items():
        if value.strip().lstrip("-").isdigit():
            stats[key] = int(value)
    if "live_connections.count" not in stats:
        raise EmqxTextError(f"not `emqx ctl broker stats` output: {text.strip()!r}")
    return stats


def parse_cluster_status_json(text: str) -> tuple[list[str], list[str]]:
    """`emqx ctl cluster status --json`: emqx_mgmt_cli.erl:145-147, JSON of cluster_info()
    (:1183-1189: running_nodes = mria:running_nodes(), stopped_nodes = cluster_nodes(stopped))."""
    try:
        info = json.loads(text)
        return [str(n) for n in info["running_nodes"]], [str(n) for n in info["stopped_nodes"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise EmqxTextError(f"not `emqx ctl cluster status --json` output: {text.strip()!r}") from exc


# --------------------------------------------------------------------------- data export / import

_EXPORTED = re.compile(r"^Data has been successfully exported to (?P<path>.+)\.$", re.M)


def exported_path(text: str) -> PurePosixPath:
    """The archive `emqx ctl data export` wrote, in the container: emqx_mgmt_cli.erl:883
    `"Data has been successfully exported to ~s.~n"` with the tar's name, relative to the
    node's working directory (data/backup/..., emqx_mgmt_data_backup.erl:447-449); anything
    else (`[error] Data export failed, reason: ~p.`, :899) is EmqxTextError with EMQX's text."""
    match = _EXPORTED.search(text)
    if match is None:
        raise EmqxTextError(text.strip() or "`emqx ctl data export` printed nothing")
    path = PurePosixPath(match["path"])
    if not EXPORT_NAME.fullmatch(path.name):
        raise EmqxTextError(f"unexpected export file name {path.name!r} in {text.strip()!r}")
    return path if path.is_absolute() else EMQX_HOME / path


IMPORTED = "Data has been imported successfully."  # emqx_mgmt_cli.erl:906


def import_failure(text: str) -> str | None:
    """None when `emqx ctl data import` succeeded (emqx_mgmt_cli.erl:901-906), else what EMQX
    said: "[error] Data import failed, reason: ~p." (:912-913) or "Data has been imported, but
    some errors occurred, see the log above." (:907-909) with the lines it printed before."""
    if any(line.strip() == IMPORTED for line in text.splitlines()):
        return None
    return text.strip() or "`emqx ctl data import` printed nothing"


# --------------------------------------------------------------------------- archives


@dataclass(frozen=True)
class ArchiveMeta:
    name: str  # the file's name, emqx-export-....tar.gz
    version: str
    edition: str


def _hocon_string(text: str, key: str) -> str | None:
    """A top-level `key = value` of META.hocon as hocon_pp writes it (hocon 0.43.4 hocon_pp.erl
    gen_map_field/3: `key = value`, strings that need it quoted with ~0p, e.g. version = "5.8.6",
    edition = ce)."""
    match = re.search(rf'^\s*"?{key}"?\s*[=:]\s*(?:"(?P<quoted>[^"]*)"|(?P<plain>[^\s,#]+))', text, re.M)
    if match is None:
        return None
    return match["quoted"] if match["quoted"] is not None else match["plain"]


def read_archive(path: str) -> ArchiveMeta:
    """What EMQX checks of an archive before it imports anything, done locally: the name ends in
    .tar.gz (emqx_mgmt_data_backup.erl:1021-1027 bad_backup_name), every entry sits under a
    folder named as the file without .tar.gz (:819-834 bad_archive_dir: so never rename the
    file), and <folder>/META.hocon has a version and an edition (:555-569)."""
    name = PurePosixPath(path).name
    if not name.endswith(TAR_SUFFIX) or name == TAR_SUFFIX:
        raise ValueError(f"{path}: invalid backup name: file name must have {TAR_SUFFIX} extension (EMQX refuses it)")
    folder = name.removesuffix(TAR_SUFFIX)
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = tar.getmembers()
            strays = [m.name for m in members if PurePosixPath(m.name).parts[:1] != (folder,)]
            if strays:
                raise ValueError(
                    f"{path}: every entry must be under {folder}/ (EMQX: invalid backup archive content: "
                    f"all files in the archive must be under <backup name> directory); not: {strays[:3]}"
                    " - was the file renamed?"
                )
            meta_file = tar.extractfile(f"{folder}/{META_FILENAME}")
            if meta_file is None:
                raise KeyError(META_FILENAME)
            meta = meta_file.read().decode("utf-8")
    except KeyError as exc:
        raise ValueError(f"{path}: invalid backup archive file: missing {META_FILENAME}") from exc
    except (OSError, tarfile.TarError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable .tar.gz archive: {exc}") from exc
    version, edition = _hocon_string(meta, "version"), _hocon_string(meta, "edition")
    if version is None or edition is None:
        raise ValueError(f"{path}: {META_FILENAME} has no version or edition")
    return ArchiveMeta(name=name, version=version, edition=edition)


def major_minor(version: str) -> tuple[int, int]:
    """emqx_mgmt_data_backup.erl:608-617 parse_version_no_patch/1: the leading integers of the
    first two dot-separated parts ("5.8.6" -> (5, 8), "5.9.0-rc.1" -> (5, 9))."""
    parts = version.split(".")
    numbers = [re.match(r"\d+", part) for part in parts[:2]]
    if len(parts) < 2 or None in numbers:
        raise ValueError(f"not an EMQX version: {version!r}")
    return int(numbers[0][0]), int(numbers[1][0])  # type: ignore[index]


def import_refused(backup_version: str, cluster_version: str) -> str | None:
    """EMQX's version rule (emqx_mgmt_data_backup.erl:591-606: refused when the backup's major
    or its minor is greater than the node's, only major.minor compared) and its message
    (:352-358); None when the import is allowed (same or older minor, any patch)."""
    backup, cluster = major_minor(backup_version), major_minor(cluster_version)
    if backup[0] > cluster[0] or backup[1] > cluster[1]:
        return (
            f"Backup version {backup_version} is newer than the cluster's EMQX version {cluster_version} "
            f"(major.minor {backup[0]}.{backup[1]} > {cluster[0]}.{cluster[1]}): EMQX does not import it. "
            "Restore into a cluster of the backup's version or later."
        )
    return None


def backup_folder_name(stack: str, now: datetime) -> str:
    """The local folder one backup lands in: `<stack>-<UTC time>` (the archive inside keeps
    EMQX's name, which its import requires)."""
    return f"{stack}-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}"


# --------------------------------------------------------------------------- the status table


def format_duration(seconds: int) -> str:
    """Compact uptime: 3d4h, 2h05m, 7m30s, 12s."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, as `docker ps` prints."""
    table = [list(headers), *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(cell) for cell in column) for column in zip(*table, strict=True)]
    return "".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n" for row in table)


def nginx_active_connections(text: str) -> int | None:
    """`nginx_connections_active N` from the load balancer's metrics page (Prometheus text)."""
    match = re.search(r"^nginx_connections_active\s+(\d+)", text, re.M)
    return int(match[1]) if match else None


def lb_metrics_urls(outputs: Mapping[str, object]) -> dict[str, str]:
    """Host label -> the URL of its Nginx's metrics page on that host's loopback, when the
    stack's `metrics` output gives one (`metrics: {<host>: {lbMetrics: ...}}`, metrics on);
    {} without metrics (the output is null)."""
    metrics = outputs.get("metrics")
    if not isinstance(metrics, Mapping):
        return {}
    urls: dict[str, str] = {}
    for host, entry in metrics.items():
        if isinstance(entry, Mapping) and isinstance(entry.get("lbMetrics"), str):
            urls[str(host)] = str(entry["lbMetrics"])
    return urls

"""Cluster membership scripts run on the Docker host: join, leave and verify, via `docker exec`.

They parse the texts EMQX 5.8 prints (emqx/apps/emqx_management/src/emqx_mgmt_cli.erl):
`Join the cluster successfully.`, `Failed to join the cluster: {already_in_cluster,...}`,
`Failed to join the cluster: {node_down,...}`, `Leave the cluster successfully.`,
`Failed to leave the cluster: node_not_in_cluster`, and `cluster status --json`, which prints
`{"running_nodes":[...],"stopped_nodes":[...]}` (the JSON is parsed, not the human text).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

EMQX_CTL = "/opt/emqx/bin/emqx ctl"
MAX_BACKOFF_SECONDS = 16


def _ctl(container: str, *args: str) -> str:
    return f"docker exec {shlex.quote(container)} {EMQX_CTL} {' '.join(shlex.quote(a) for a in args)}"


def _retry_prelude(timeout_seconds: int) -> list[str]:
    return [
        "set -u",
        f"deadline=$(( $(date +%s) + {int(timeout_seconds)} ))",
        "delay=1",
        # Sleep with exponential backoff, or return 1 once the deadline has passed.
        "backoff() {",
        '  [ "$(date +%s)" -lt "$deadline" ] || return 1',
        '  sleep "$delay"',
        f'  delay=$(( delay * 2 )); [ "$delay" -le {MAX_BACKOFF_SECONDS} ] || delay={MAX_BACKOFF_SECONDS}',
        "}",
    ]


def join_script(container: str, node_name: str, seed_name: str, timeout_seconds: int) -> str:
    """Join `node_name` (in `container`) to `seed_name`, retrying transient errors until the deadline.

    "already in cluster" counts as success, so the script can run again after a restart or a
    container replacement without side effects.
    """
    who = shlex.quote(node_name)
    seed = shlex.quote(seed_name)
    return (
        "\n".join(
            [
                *_retry_prelude(timeout_seconds),
                "attempt=0",
                "while :; do",
                "  attempt=$(( attempt + 1 ))",
                f"  out=$({_ctl(container, 'cluster', 'join', seed_name)} 2>&1)",
                '  case "$out" in',
                f'    *"Join the cluster successfully"*) echo {who}" joined "{seed}" (attempt $attempt)"; exit 0 ;;',
                f'    *already_in_cluster*) echo {who}" is already in the cluster of "{seed}; exit 0 ;;',
                "  esac",
                "  if ! backoff; then",
                f'    printf \'%s\\n\' {who}" could not join "{seed}" after $attempt attempts; last error: $out" >&2',
                "    exit 1",
                "  fi",
                "done",
            ]
        )
        + "\n"
    )


def leave_script(container: str, node_name: str, seed_container: str) -> str:
    """Make a node leave the cluster before it is removed; force it out from the seed if it is down."""
    who = shlex.quote(node_name)
    return (
        "\n".join(
            [
                "set -u",
                f"out=$({_ctl(container, 'cluster', 'leave')} 2>&1)",
                'case "$out" in',
                f'  *"Leave the cluster successfully"*) echo {who}" left the cluster"; exit 0 ;;',
                f'  *node_not_in_cluster*) echo {who}" was not in a cluster"; exit 0 ;;',
                "esac",
                # The node cannot speak for itself (stopped or gone): remove it from the seed's view.
                f"forced=$({_ctl(seed_container, 'cluster', 'force-leave', node_name)} 2>&1)",
                'case "$forced" in',
                f'  *successfully*) echo {who}" was removed from the cluster by force-leave ($out)"; exit 0 ;;',
                "esac",
                'case "$out$forced" in',
                f'  *"No such container"*"No such container"*) echo {who}": no node and no seed container left, nothing to leave"; exit 0 ;;',
                "esac",
                f"printf '%s\\n' {who}\" could not leave the cluster: $out; force-leave: $forced\" >&2",
                "exit 1",
            ]
        )
        + "\n"
    )


def verify_script(seed_container: str, expected_nodes: Sequence[str], timeout_seconds: int, label: str) -> str:
    """Wait until `cluster status --json` on the seed lists every expected node as running."""
    expected = " ".join(shlex.quote(name) for name in expected_nodes)
    return (
        "\n".join(
            [
                *_retry_prelude(timeout_seconds),
                "while :; do",
                f"  status=$({_ctl(seed_container, 'cluster', 'status', '--json')} 2>&1)",
                "  flat=$(printf '%s' \"$status\" | tr -d ' \\t\\r\\n')",
                "  running=$(printf '%s' \"$flat\" | sed -n 's/.*\"running_nodes\":\\[\\([^]]*\\)\\].*/\\1/p')",
                "  stopped=$(printf '%s' \"$flat\" | sed -n 's/.*\"stopped_nodes\":\\[\\([^]]*\\)\\].*/\\1/p')",
                "  missing=''",
                f"  for node in {expected}; do",
                '    case ",$running," in *"\\"$node\\""*) ;; *) missing="$missing $node" ;; esac',
                "  done",
                '  if [ -z "$missing" ]; then',
                f"    echo {shlex.quote(f'{label}: all {len(expected_nodes)} expected nodes are running in the cluster')}",
                "    exit 0",
                "  fi",
                "  if ! backoff; then",
                f"    printf '%s\\n' {shlex.quote(label + ': cluster verification failed; not running:')}\"$missing\" "
                '"(running_nodes=[$running] stopped_nodes=[$stopped]; raw: $status)" >&2',
                "    exit 1",
                "  fi",
                "done",
            ]
        )
        + "\n"
    )

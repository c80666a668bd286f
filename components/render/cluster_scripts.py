"""Cluster membership scripts run on the Docker host: join, leave and verify, via `docker exec`.

The scripts are Jinja2 templates in ./templates (join.sh.j2, leave.sh.j2, verify.sh.j2, with
backoff.sh.j2 shared by join and verify); these functions compute the values and render them.

They parse the texts EMQX 5.8 prints (emqx/apps/emqx_management/src/emqx_mgmt_cli.erl):
`Join the cluster successfully.`, `Failed to join the cluster: {already_in_cluster,...}`,
`Failed to join the cluster: {node_down,...}`, `Leave the cluster successfully.`,
`Failed to leave the cluster: node_not_in_cluster`, and `cluster status --json`, which prints
`{"running_nodes":[...],"stopped_nodes":[...]}` (the JSON is parsed, not the human text).
"""

from __future__ import annotations

from collections.abc import Sequence

from components.render.templating import render

MAX_BACKOFF_SECONDS = 16
# A `cluster leave` takes seconds; one that cannot finish (its peers' firewalls already refuse
# the departing host's new connections, seen with EMQX 5.8.6: the node stops mria and waits)
# must not hold `pulumi up` forever: past this the node is forced out instead.
LEAVE_TIMEOUT_SECONDS = 60


def join_script(container: str, node_name: str, seed_name: str, timeout_seconds: int) -> str:
    """Join `node_name` (in `container`) to `seed_name`, retrying transient errors until the deadline.

    "already in cluster" counts as success, so the script can run again after a restart or a
    container replacement without side effects.
    """
    return render(
        "join.sh.j2",
        container=container,
        node_name=node_name,
        seed_name=seed_name,
        timeout_seconds=int(timeout_seconds),
        max_backoff_seconds=MAX_BACKOFF_SECONDS,
    )


def note_script(text: str) -> str:
    """A script that only says `text`: the create of a command whose work is its delete."""
    return render("note.sh.j2", text=text)


def evict_script(seed_container: str, node_name: str) -> str:
    """From the seed: force `node_name` out of the cluster if it is listed and not running."""
    return render("evict.sh.j2", seed_container=seed_container, node_name=node_name)


def leave_script(container: str, node_name: str, seed_container: str | None) -> str:
    """Make a node leave the cluster before it is removed; if it is down, force it out from the
    seed's container, or (None: the seed runs on another host) leave it to the node's eviction."""
    return render(
        "leave.sh.j2",
        container=container,
        node_name=node_name,
        seed_container=seed_container,
        leave_timeout_seconds=LEAVE_TIMEOUT_SECONDS,
    )


def verify_script(seed_container: str, expected_nodes: Sequence[str], timeout_seconds: int, label: str) -> str:
    """Wait until `cluster status --json` on the seed lists every expected node as running."""
    return render(
        "verify.sh.j2",
        seed_container=seed_container,
        expected_nodes=expected_nodes,
        timeout_seconds=int(timeout_seconds),
        max_backoff_seconds=MAX_BACKOFF_SECONDS,
        label=label,
    )

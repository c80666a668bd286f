"""scripts/restore <stack> <archive>: import a backup into the stack's running cluster.

Checked here before anything is copied (EMQX's own rules, emqx_mgmt_data_backup.erl): the
name, the archive's folder, META.hocon, and the version rule against the cluster's version (a
backup of a newer major.minor is refused, naming both; the message is this script's). The
edition (an Enterprise backup into the open-source edition) is left to EMQX's import. Then the archive is copied into a
running node's /opt/emqx/data/backup/ (owned by the node's user, 0600) and `emqx ctl data
import <name>` runs there: EMQX applies it cluster-wide (config updates and replicated tables)
and merges, overwriting records with the same key. EMQX's message is shown when it fails.

The archive's API keys table overwrites this stack's key (the program's REST calls would then
answer BAD_API_KEY_OR_SECRET): EMQX has no import hook for it (emqx_mgmt_auth.erl exports no
on_backup_table_imported, emqx_mgmt_data_backup.erl on_table_imported/3), so the node's bootstrap
file, the stack's key, is applied again once the import is done (try_init_bootstrap_file/0,
force_create_app: the replicated row is overwritten, as at boot).
"""

from __future__ import annotations

import sys

from ops.emqx import BACKUP_DIR, ArchiveMeta, import_failure, import_refused, read_archive
from ops.stack import EMQX_BIN, Node, OpsError, ctl, docker, nodes_of, run_script, running_node, stack_outputs

USAGE = "usage: scripts/restore <stack> <archive.tar.gz>"


def upload(node: Node, path: str, meta: ArchiveMeta) -> None:
    """The archive into the node's backup dir, written by the broker's own user (the image's
    USER, emqx) with umask 077: a file EMQX can read and nobody else. (`docker cp` would leave it
    root's, and `docker cp -a` looks the container's user up on the Docker host, where there is
    no `emqx` user.)"""
    with open(path, "rb") as source:
        data = source.read()
    target = f"{BACKUP_DIR}/{meta.name}"
    # EMQX creates the dir on its first export (emqx_mgmt_data_backup.erl:1048-1051): a fresh node has none.
    script = 'umask 077 && mkdir -p "$1" && cat > "$1/$2"'
    done = docker(
        node,
        "exec",
        "-i",
        node.container,
        "sh",
        "-c",
        script,
        "sh",
        str(BACKUP_DIR),
        meta.name,
        input_bytes=data,
        timeout=600,
    )
    if done.returncode != 0:
        raise OpsError(f"copying {meta.name} to {node.container}:{target} failed: {done.stderr.decode().strip()}")


def keep_stack_api_key(node: Node) -> None:
    """This stack's API key again, from the node's bootstrap file (`emqx eval`, bin/emqx:1348)."""
    done = docker(
        node, "exec", node.container, EMQX_BIN, "eval", "emqx_mgmt_auth:try_init_bootstrap_file().", timeout=60
    )
    answer = (done.stdout + done.stderr).decode("utf-8", "replace").strip()
    if done.returncode != 0 or answer != "ok":
        raise OpsError(
            f"imported, but re-applying the stack's API key on {node.name} failed ({answer}): "
            "the program's REST calls will be refused until the node restarts"
        )


def restore(stack: str, path: str) -> None:
    meta = read_archive(path)
    nodes = nodes_of(stack_outputs(stack))
    node, status = running_node(nodes)
    refused = import_refused(meta.version, status.version)
    if refused is not None:
        raise OpsError(refused)
    print(f"importing {meta.name} (EMQX {meta.version}) on {node.name} (EMQX {status.version})")
    try:
        upload(node, path, meta)
        code, text = ctl(node, "data", "import", meta.name, timeout=600)
    finally:
        docker(node, "exec", node.container, "rm", "-f", f"{BACKUP_DIR}/{meta.name}")
    failure = import_failure(text) if code == 0 else text.strip()
    if failure is not None:
        raise OpsError(f"EMQX did not import {meta.name} on {node.name}:\n{failure}")
    keep_stack_api_key(node)
    print(f"restored {path} into stack {stack}")


def main(argv: list[str]) -> int:
    return run_script(
        argv,
        range(2, 3),
        USAGE,
        lambda args: restore(*args),
        "restore refused or failed",
        (OpsError, ValueError, OSError),
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

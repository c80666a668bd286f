"""scripts/backup <stack> [dir]: `emqx ctl data export` on a running node, the archive copied here.

The archive lands in `<dir>/<stack>-<UTC time>/` (dir default `backups/` under the project,
each 0700) under EMQX's own name (0600): its import requires the archive's top folder to equal
the file's name, so the file is never renamed. The node's copy is removed once this one is
written and read back.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from ops.emqx import EmqxTextError, backup_folder_name, exported_path, read_archive
from ops.stack import Node, OpsError, ctl, docker, nodes_of, project_dir, run_script, running_node, stack_outputs

USAGE = "usage: scripts/backup <stack> [dir]   (dir: default backups/ in the project)"


def private_dir(path: Path, *, new: bool = False) -> Path:
    """`path` as a directory, created 0700 (only its owner may read it) when missing; one that
    exists is the user's and kept as it is. `new`: it must not exist yet."""
    if path.is_dir() and not new:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError as exc:
        raise OpsError(f"{path} exists already (a backup of this stack this very second?): try again") from exc
    path.chmod(0o700)  # mkdir's mode is filtered by the umask
    return path


def fetch_file(node: Node, container_path: str, target: Path) -> None:
    """The container's file through `docker cp <container>:<path> -` (a tar stream), written as
    `target` with mode 0600 from its first byte."""
    done = docker(node, "cp", f"{node.container}:{container_path}", "-", timeout=600)
    if done.returncode != 0:
        raise OpsError(f"docker cp {node.container}:{container_path} failed: {done.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(done.stdout), mode="r:") as tar:
        member = next((m for m in tar.getmembers() if m.isfile()), None)
        source = tar.extractfile(member) if member is not None else None
        if source is None:
            raise OpsError(f"docker cp {node.container}:{container_path} returned no file")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(source.read())


def backup(stack: str, directory: Path, now: datetime) -> Path:
    nodes = nodes_of(stack_outputs(stack))
    node, status = running_node(nodes)
    print(f"exporting on {node.name} (EMQX {status.version}, container {node.container} on {node.docker_host})")
    code, text = ctl(node, "data", "export", timeout=600)
    try:
        if code != 0:
            raise EmqxTextError(text.strip())
        archive = exported_path(text)
    except EmqxTextError as exc:
        raise OpsError(f"emqx ctl data export failed on {node.name}: {exc}") from exc
    target = private_dir(private_dir(directory) / backup_folder_name(stack, now), new=True) / archive.name
    try:
        fetch_file(node, str(archive), target)
        meta = read_archive(str(target))
    except BaseException:
        target.unlink(missing_ok=True)
        target.parent.rmdir()
        raise
    finally:
        docker(node, "exec", node.container, "rm", "-f", str(archive))
    size = target.stat().st_size
    print(f"EMQX {meta.version} ({meta.edition}) backup of stack {stack}: {size} bytes")
    print(f"wrote {target}")
    return target


def main(argv: list[str]) -> int:
    def run(args: Sequence[str]) -> Path:
        directory = Path(args[1]) if len(args) == 2 else project_dir() / "backups"
        return backup(args[0], directory, datetime.now(UTC))

    return run_script(argv, range(1, 3), USAGE, run, "backup failed", (OpsError, ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

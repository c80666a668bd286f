"""POSIX shell run on the Docker host: sysctl drop-in, preflight, node dirs, image clean-up.

Every script is complete text (no environment variables: remote.Command sends those with SSH
Setenv, which sshd refuses without AcceptEnv), runs under /bin/sh, and is safe to run twice.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# The official EMQX image runs as user `emqx`, UID/GID 1000 (emqx/deploy/docker/Dockerfile).
EMQX_UID = 1000


def as_root(script: str, use_sudo: bool) -> str:
    """Run `script` under /bin/sh, through `sudo -n` when the SSH user is not root.

    `-n` makes a missing sudo rule fail at once instead of hanging on a password prompt.
    """
    runner = "sudo -n sh -c" if use_sudo else "sh -c"
    return f"{runner} {shlex.quote(script)}"


def _proc_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def sysctl_apply_script(settings: Mapping[str, str], drop_in: str) -> str:
    """Persist `settings` in a sysctl.d drop-in and apply them now.

    Before the first change of a key, its current value is saved in `<drop_in>.before` (kept
    across re-runs), which is what the restore script puts back.
    """
    saved = f"{drop_in}.before"
    lines = [
        "set -eu",
        f"drop_in={shlex.quote(drop_in)}",
        f"saved={shlex.quote(saved)}",
        # Refuse, before saving or writing anything, keys this kernel does not have (e.g. a
        # conntrack key without its module) and keys it will not let us write (global keys such
        # as net.core.rmem_default are read-only in a network namespace other than the initial
        # one, e.g. a container host; found by the e2e tier): nothing is half applied.
        "missing=''",
        "readonly=''",
        *(
            f'if [ ! -e {path} ]; then missing="$missing {key}"; '
            f'elif [ ! -w {path} ]; then readonly="$readonly {key}"; fi'
            for key, path in ((key, shlex.quote(_proc_path(key))) for key in settings)
        ),
        'if [ -n "$missing$readonly" ]; then',
        '  [ -z "$missing" ] || echo "sysctl keys not available on this host:$missing (load the module, or set'
        ' them to null in emqx-cluster:sysctls)" >&2',
        '  [ -z "$readonly" ] || echo "sysctl keys read-only on this host:$readonly (not settable from this'
        ' network namespace: set them to null in emqx-cluster:sysctls)" >&2',
        "  exit 1",
        "fi",
        'mkdir -p "$(dirname "$drop_in")"',
        '[ -f "$saved" ] || : > "$saved"',
        "remember() {",
        '  grep -q "^$1=" "$saved" || printf \'%s=%s\\n\' "$1" "$(cat "$2")" >> "$saved"',
        "}",
    ]
    lines += [f"remember {shlex.quote(key)} {shlex.quote(_proc_path(key))}" for key in settings]
    lines.append(
        "cat > \"$drop_in.tmp\" <<'EMQX_SYSCTL'\n# Managed by emqx-cluster (Pulumi); removed by `pulumi destroy`."
    )
    lines[-1] += "".join(f"\n{key} = {value}" for key, value in settings.items()) + "\nEMQX_SYSCTL"
    lines.append('mv "$drop_in.tmp" "$drop_in"')
    for key, value in settings.items():
        lines.append(f"printf '%s\\n' {shlex.quote(value)} > {shlex.quote(_proc_path(key))}")
    lines.append(f'echo "applied {len(settings)} sysctl settings from $drop_in"')
    return "\n".join(lines) + "\n"


def sysctl_restore_script(drop_in: str) -> str:
    """Put back every value saved before the first apply, then remove the drop-in."""
    saved = f"{drop_in}.before"
    return (
        "\n".join(
            [
                "set -eu",
                f"drop_in={shlex.quote(drop_in)}",
                f"saved={shlex.quote(saved)}",
                'if [ -f "$saved" ]; then',
                "  while IFS= read -r line; do",
                "    key=${line%%=*}",
                "    value=${line#*=}",
                '    path="/proc/sys/$(printf %s "$key" | tr . /)"',
                # Absent or read-only here (e.g. saved by an apply that then refused it): we can
                # never have changed it, so there is nothing to put back.
                '    if [ ! -e "$path" ]; then echo "skipped $key: not on this host any more" >&2; '
                'elif [ ! -w "$path" ]; then echo "skipped $key: read-only on this host" >&2; '
                'else printf \'%s\\n\' "$value" > "$path"; fi',
                '  done < "$saved"',
                "fi",
                'rm -f "$drop_in" "$drop_in.tmp" "$saved"',
                'echo "restored the sysctl values saved before emqx-cluster and removed $drop_in"',
            ]
        )
        + "\n"
    )


@dataclass(frozen=True)
class PortClaim:
    """A port the deployment will listen on, and the container that will own it."""

    port: int
    owner: str  # container name; while it runs, the port is legitimately in use
    role: str


@dataclass(frozen=True)
class NofileClaim:
    """An open-files limit a container will ask Docker for, and the config key that sets it."""

    limit: int
    owner: str  # what asks for it, e.g. "the brokers"
    key: str  # the stack-config key to lower


def preflight_script(claims: Sequence[PortClaim], data_dir: str, nofile: Sequence[NofileClaim] = ()) -> str:
    """Fail early, with every problem listed, when Docker, a port, a limit or the data dir is not usable.

    A port held while its own container runs is fine: that is a re-run, not a conflict. A
    container's nofile limit above the Docker daemon's own hard limit cannot be set (runc:
    "error setting rlimit type 7: operation not permitted", seen with rootless Docker and in
    sandboxes), so it is compared with every dockerd's hard limit from /proc/<pid>/limits.
    """
    lines = [
        "set -u",
        "problems=''",
        'problem() { problems="$problems\n  - $1"; }',
        # LISTEN (state 0A) sockets on any address, from the kernel's own tables: no ss/netstat needed.
        "listening() {",
        "  hex=$(printf '%04X' \"$1\")",
        '  awk -v p=":$hex" \'$4 == "0A" && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }\' '
        "/proc/net/tcp /proc/net/tcp6 2>/dev/null",
        "}",
        'running() { [ -n "$(docker ps --quiet --filter "name=^$1\\$" --filter status=running 2>/dev/null)" ]; }',
        "if ! command -v docker >/dev/null 2>&1; then",
        "  problem 'docker: the docker CLI is not installed on this host'",
        "elif ! docker info >/dev/null 2>&1; then",
        "  problem 'docker: the Docker engine does not answer (docker info failed)'",
        "fi",
    ]
    if nofile:
        lines += [
            # The lowest hard "Max open files" of the running dockerd processes (empty if none is
            # visible, e.g. Docker in a VM): field 5 of "Max open files  <soft>  <hard>  files".
            "daemon_nofile=''",
            "for comm in /proc/[0-9]*/comm; do",
            '  [ "$(cat "$comm" 2>/dev/null)" = dockerd ] || continue',
            "  hard=$(awk '/^Max open files/ { print $5 }' \"${comm%/comm}/limits\" 2>/dev/null)",
            '  case "$hard" in',
            "    ''|unlimited) ;;",
            '    *) if [ -z "$daemon_nofile" ] || [ "$hard" -lt "$daemon_nofile" ]; then daemon_nofile=$hard; fi ;;',
            "  esac",
            "done",
        ]
        for asked in nofile:
            lines.append(
                f'if [ -n "$daemon_nofile" ] && [ "$daemon_nofile" -lt {asked.limit} ]; then '
                f'problem "nofile limit {asked.limit} of {asked.owner} exceeds the hard limit of the Docker '
                f'daemon ($daemon_nofile): lower {asked.key}"; fi'
            )
    for claim in claims:
        owner = shlex.quote(claim.owner)
        lines.append(
            f"if listening {claim.port} && ! running {owner}; then "
            f"problem {shlex.quote(f'port {claim.port} ({claim.role} of {claim.owner}) is already in use on this host')}; fi"
        )
    quoted_dir = shlex.quote(data_dir)
    lines += [
        f"if ! mkdir -p {quoted_dir} 2>/dev/null; then",
        f"  problem {shlex.quote(f'data dir {data_dir} cannot be created')}",
        "else",
        f"  probe={quoted_dir}/.emqx-cluster-preflight.$$",
        # In a subshell: a failed redirection on the special builtin `:` exits a POSIX shell (dash).
        f'  if ( : > "$probe" ) 2>/dev/null; then rm -f "$probe"; else problem {shlex.quote(f"data dir {data_dir} is not writable")}; fi',
        "fi",
        'if [ -n "$problems" ]; then',
        '  printf \'emqx-cluster preflight failed on %s:%s\\n\' "$(hostname)" "$problems" >&2',
        "  exit 1",
        "fi",
        f"echo 'preflight passed: docker answers, {len(claims)} ports free, {data_dir} writable'",
    ]
    return "\n".join(lines) + "\n"


def node_dirs_script(host_dir: str, subdirs: Sequence[str] = ("data", "log")) -> str:
    """Create a node's host dirs, owned by the image's `emqx` user so the node can write them."""
    paths = " ".join(shlex.quote(f"{host_dir}/{sub}") for sub in subdirs)
    return (
        "set -eu\n"
        f"mkdir -p {paths}\n"
        f"chown {EMQX_UID}:{EMQX_UID} {shlex.quote(host_dir)} {paths}\n"
        f"echo {shlex.quote(f'node dirs ready under {host_dir}')}\n"
    )


def node_dirs_delete_script(host_dir: str, node_name: str, purge: bool, container: str) -> str:
    """On delete, keep the data dir (the node's identity and sessions) unless purging was asked for.

    Even then, never while the node's container exists: a delete that is part of a replacement
    (say, a new SSH connection) must not wipe a running node.
    """
    if purge:
        kept = f"kept {host_dir}: container {container} still exists (purgeData applies once it is gone)"
        return (
            "set -eu\n"
            f'if [ -n "$(docker ps --all --quiet --filter {shlex.quote(f"name=^{container}$")})" ]; then\n'
            f"  echo {shlex.quote(kept)}\n"
            "  exit 0\n"
            "fi\n"
            f"rm -rf {shlex.quote(host_dir)}\n"
            f"echo {shlex.quote(f'purged {host_dir} (purgeData: true)')}\n"
        )
    message = (
        f"kept {host_dir} ({node_name}'s data and logs; a node recreated with this name reuses it). "
        "Set emqx-cluster:purgeData true before destroy to remove it."
    )
    return f"echo {shlex.quote(message)}\n"

"""Running shell on the Docker host: over SSH with remote.Command, or locally with local.Command.

Every host-side resource goes through :class:`HostShell`, so the same script text runs in
both modes: the scripts travel on standard input (`host_program`), the command line only names
the operation (`shell_command`, through sudo for a non-root SSH user).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_command as command

from components.args_config import LateInputs
from components.config_hosts import Host
from components.render.host_scripts import HostOperation, host_program, shell_command

HostCommand = command.local.Command | command.remote.Command


@dataclass(frozen=True)
class HostShell:
    """How to reach the Docker host's shell."""

    connection: command.remote.ConnectionArgs | None
    use_sudo: bool
    docker_host: str

    @classmethod
    def to(cls, host: Host, late: LateInputs, warn_on: pulumi.Resource | None = None) -> HostShell:
        """Access to `host`: over SSH with its key (or the agent), or local commands; a key or
        host key given as an Output (`late`) is used as such (a login's address and user reach the
        command through the component's transformation)."""
        connection = None
        if host.ssh is not None:
            if host.ssh.host_key is None:
                target = "the host (given as an Output)" if late.holds(host.ssh.host) else host.ssh.host
                pulumi.log.warn(
                    f"{host.config_key('sshHostKey')} is unset: host commands will not verify the SSH host key "
                    f"of {target}; set it (e.g. from `ssh-keyscan`) to rule out a man in the middle",
                    warn_on,
                )
            key = host.ssh_private_key
            connection = command.remote.ConnectionArgs(
                host=host.ssh.host,
                port=host.ssh.port,
                user=host.ssh.user,
                # Secret end to end; without it the SSH agent (SSH_AUTH_SOCK) is used.
                private_key=pulumi.Output.secret(late.resolve(key.get_secret_value())) if key else None,
                host_key=None if host.ssh.host_key is None else late.resolve(host.ssh.host_key),
            )
        return cls(connection=connection, use_sudo=host.use_sudo, docker_host=host.docker_host)

    def command(
        self,
        name: str,
        *,
        create: pulumi.Input[str],
        delete: pulumi.Input[str] | None = None,
        update: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> HostCommand:
        """Declare a command on the host; every script runs as root (directly or via sudo).

        The scripts are its standard input and its command lines say `sh -s <operation>`, so a
        failure is reported as `running "sh -s create"` and the script's own message, never as
        the script's text; a script built from secrets makes the whole input secret.

        A changed `connection` (new SSH key, user, port) is an in-place update, not a
        replacement: pulumi-command's remote Command implements Update and only `triggers` is
        replace-on-change (pulumi-command v1.2.1 provider/pkg/provider/remote/command.go and
        commandController.go; pulumi-command issue 447 shows "(update)"). The update re-runs
        `update` (or `create`) with the new connection and stores it for the later `delete`.
        The same holds for a changed script: an update that runs `update` (or `create`) again.
        """
        scripts: dict[HostOperation, pulumi.Input[str]] = {"create": create}
        if update is not None:
            scripts["update"] = update
        if delete is not None:
            scripts["delete"] = delete
        program = pulumi.Output.all(**scripts).apply(host_program)
        lines = {operation: shell_command(operation, self.use_sudo) for operation in scripts}
        if self.connection is None:
            return command.local.Command(
                name,
                create=lines["create"],
                update=lines.get("update"),
                delete=lines.get("delete"),
                stdin=program,
                # The Docker CLI in the scripts talks to the same engine as the docker provider.
                environment={"DOCKER_HOST": self.docker_host},
                add_previous_output_in_env=False,
                opts=opts,
            )
        return command.remote.Command(
            name,
            connection=self.connection,
            create=lines["create"],
            update=lines.get("update"),
            delete=lines.get("delete"),
            stdin=program,
            # Default true: every update/delete would send PULUMI_COMMAND_STDOUT/STDERR by SSH
            # Setenv, which sshd refuses without AcceptEnv (a warning on every run;
            # provider/pkg/provider/remote/commandOutputs.go). The scripts never read them.
            add_previous_output_in_env=False,
            opts=opts,
        )

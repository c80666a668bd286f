"""The real Pulumi CLI, run the way users run it, on a snapshot of this project.

Each :class:`PulumiProject` is a throwaway project directory holding the program's files (the
working tree, or any commit via `git archive`), the repo's `.venv`, its own `PULUMI_HOME`, a
`file://` state backend and a passphrase secrets provider: no network, no cloud account.
Commands may run inside an e2e host's network namespace (`nsenter --net`), so the program's
local host commands see that host's loopback, ports and `net.*` sysctls.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
TOOLCHAIN_SCRIPT = REPO / "scripts" / "e2e-toolchain"
NAMESPACE = "emqx-cluster"
# What a Pulumi project of this program consists of (tests, scripts and docs are not needed).
# The program and the component package (PulumiPlugin.yaml, provider.py): what a user's checkout
# runs. A commit from before the package has only the first ones (`files_at`).
PROJECT_FILES = (
    "Pulumi.yaml",
    "__main__.py",
    "requirements.txt",
    "components",
    "docker",
    "PulumiPlugin.yaml",
    "provider.py",
)
PASSPHRASE = "e2e-only-passphrase"


class PulumiError(RuntimeError):
    """A pulumi command failed; the message carries its output."""


def files_at(commit: str) -> list[str]:
    """The PROJECT_FILES that `commit` has."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-tree", "--name-only", commit, *PROJECT_FILES],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [name for name in PROJECT_FILES if name in listed]


def own_venv(venv: Path) -> None:
    """A virtualenv of its own at `venv`: a copy of the repo's, already installed. The language
    host's install runs `python -m venv` on it first, which refuses a symlink there ("Unable to
    create directory"), and a generated SDK is installed into it, not into the repo's."""
    if venv.is_symlink():
        venv.unlink()
    shutil.copytree(REPO / ".venv", venv, symlinks=True)


def package_checkout(directory: Path, bin_dir: Path) -> Path:
    """This folder as a consumer's checkout of the component package holds it: the program and
    package files, and a virtualenv of its own with the requirements installed."""
    project = PulumiProject.create(directory, bin_dir)
    own_venv(project.directory / ".venv")
    return project.directory


def toolchain_bin() -> Path | None:
    """The built toolchain's bin dir, or None when the cache is cold (nothing is built here)."""
    override = os.environ.get("EMQX_E2E_TOOLCHAIN_BIN")
    if override:
        return Path(override)
    probe = subprocess.run(
        [str(TOOLCHAIN_SCRIPT), "--print-dir"], capture_output=True, text=True, check=False, timeout=60
    )
    if probe.returncode != 0:
        return None
    return Path(probe.stdout.strip().splitlines()[-1])


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class PulumiProject:
    """One project dir with one stack; `netns` (a path under /var/run/netns) confines commands;
    `namespace` is the config namespace of its keys (a program of another name reads its own)."""

    directory: Path
    bin_dir: Path
    stack: str = "e2e"
    netns: Path | None = None
    namespace: str = NAMESPACE
    extra_env: dict[str, str] = field(default_factory=dict)
    log: list[Result] = field(default_factory=list)

    # ------------------------------------------------------------------------- set-up
    @classmethod
    def create(cls, directory: Path, bin_dir: Path, *, commit: str | None = None, **options: Any) -> PulumiProject:
        """A project dir with the program as in the working tree, or as in `commit`."""
        directory.mkdir(parents=True, exist_ok=True)
        if commit is None:
            for name in PROJECT_FILES:
                source = REPO / name
                if source.is_dir():
                    shutil.copytree(source, directory / name, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(source, directory / name)
        else:
            archive = subprocess.run(
                ["git", "-C", str(REPO), "archive", "--format=tar", commit, *files_at(commit)],
                capture_output=True,
                check=True,
            ).stdout
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                tar.extractall(directory, filter="data")
        # The language host uses Pulumi.yaml's `virtualenv: .venv`: the repo's, already installed.
        (directory / ".venv").symlink_to(REPO / ".venv")
        for sub in ("state", "home"):
            (directory / sub).mkdir(exist_ok=True)
        return cls(directory=directory, bin_dir=bin_dir, **options)

    def switch_to(self, commit: str | None) -> None:
        """Replace the program's files with the working tree's or `commit`'s; state and stack stay."""
        for name in PROJECT_FILES:
            target = self.directory / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        fresh = PulumiProject.create(self.directory / ".switch", self.bin_dir, commit=commit)
        for name in PROJECT_FILES:
            if (fresh.directory / name).exists():  # an older commit has fewer (files_at)
                (fresh.directory / name).rename(self.directory / name)
        shutil.rmtree(fresh.directory)

    @property
    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "PULUMI_HOME": str(self.directory / "home"),
            "PULUMI_BACKEND_URL": f"file://{self.directory / 'state'}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_SKIP_CONFIRMATIONS": "true",
            "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
            "NO_COLOR": "1",
            **self.extra_env,
        }
        env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
        return env

    # ------------------------------------------------------------------------- running
    def run(self, *args: str, check: bool = True, timeout: float = 900, stdin: str | None = None) -> Result:
        argv = [str(self.bin_dir / "pulumi"), *args, "--non-interactive", "--color", "never"]
        if self.netns is not None:
            argv = ["nsenter", f"--net={self.netns}", *argv]
        started = time.monotonic()
        done = subprocess.run(
            argv,
            cwd=self.directory,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        result = Result(argv, done.returncode, done.stdout, done.stderr, time.monotonic() - started)
        self.log.append(result)
        if check and done.returncode != 0:
            raise PulumiError(f"`pulumi {' '.join(args)}` exited {done.returncode}:\n{result.output[-12000:]}")
        return result

    def init_stack(self, config: Mapping[str, Any], secrets: Mapping[str, Any] | None = None) -> None:
        """Create the stack with `config` (keys without namespace) and `secrets` (set --secret)."""
        self.run("login", f"file://{self.directory / 'state'}")
        self.run("stack", "init", self.stack, "--secrets-provider", "passphrase")
        self.set_config(config)
        for key, value in (secrets or {}).items():
            self.set_secret(key, value)

    def set_secret(self, key: str, value: Any) -> None:
        """`value` as a secret: a string as it is, a list or map leaf by leaf (`--path`, each leaf
        secret), replacing whatever the key held."""
        if isinstance(value, str):
            self.run("config", "set", "--stack", self.stack, "--secret", f"{self.namespace}:{key}", stdin=value)
            return
        self.run("config", "rm", "--stack", self.stack, f"{self.namespace}:{key}", check=False)
        for path, leaf in _leaves(key, value):
            self.run(
                "config", "set", "--stack", self.stack, "--secret", "--path", f"{self.namespace}:{path}", stdin=leaf
            )

    def set_config(self, config: Mapping[str, Any]) -> None:
        """Write plain keys into Pulumi.<stack>.yaml (keeps the encryption salt and secrets)."""
        path = self.directory / f"Pulumi.{self.stack}.yaml"
        document = yaml.safe_load(path.read_text()) if path.exists() else {}
        document = document or {}
        values = document.setdefault("config", {})
        for key, value in config.items():
            name = f"{self.namespace}:{key}"
            if value is None:
                values.pop(name, None)
            else:
                values[name] = value
        path.write_text(yaml.safe_dump(document, sort_keys=True))

    def preview(self, *extra: str) -> dict[str, Any]:
        """`pulumi preview --json`: steps and change summary."""
        result = self.run("preview", "--stack", self.stack, "--json", *extra)
        return dict(json.loads(result.stdout))

    def up(self, *extra: str, timeout: float = 1800) -> Result:
        return self.run("up", "--stack", self.stack, "--yes", "--skip-preview", *extra, timeout=timeout)

    def destroy(self, *extra: str) -> Result:
        return self.run("destroy", "--stack", self.stack, "--yes", "--skip-preview", *extra, timeout=1800)

    def outputs(self) -> dict[str, Any]:
        result = self.run("stack", "output", "--stack", self.stack, "--json", "--show-secrets")
        return dict(json.loads(result.stdout))

    def export(self) -> dict[str, Any]:
        return dict(json.loads(self.run("stack", "export", "--stack", self.stack).stdout))

    def resources(self) -> list[dict[str, Any]]:
        return list(self.export()["deployment"].get("resources", []))

    def resource(self, name: str, type_: str | None = None) -> dict[str, Any]:
        matches = [
            r
            for r in self.resources()
            if r["urn"].rsplit("::", 1)[-1] == name and (type_ is None or r["type"] == type_)
        ]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]


def _leaves(path: str, value: Any) -> list[tuple[str, str]]:
    """`mqttClients[0].password`-style paths to every scalar in `value` (as Pulumi's `--path`)."""
    if isinstance(value, list):
        return [leaf for index, item in enumerate(value) for leaf in _leaves(f"{path}[{index}]", item)]
    if isinstance(value, dict):
        return [leaf for name, item in value.items() for leaf in _leaves(f"{path}.{name}", item)]
    return [(path, str(value).lower() if isinstance(value, bool) else str(value))]


def step_ops(preview: Mapping[str, Any]) -> dict[str, list[str]]:
    """Resource name -> every op `pulumi preview --json` plans for it (same, update, replace, ...)."""
    ops: dict[str, list[str]] = {}
    for step in preview.get("steps", []):
        name = str(step["urn"]).rsplit("::", 1)[-1]
        ops.setdefault(name, []).append(str(step["op"]))
    return ops


def created(preview: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Resource name -> the state `pulumi preview --json` plans for each resource it creates."""
    return {
        str(step["urn"]).rsplit("::", 1)[-1]: step["newState"]
        for step in preview.get("steps", [])
        if step["op"] == "create"
    }


def changed(preview: Mapping[str, Any], ignore: Sequence[str] = ()) -> dict[str, list[str]]:
    """Names whose steps are anything but `same` (and not in `ignore`)."""
    return {
        name: ops for name, ops in step_ops(preview).items() if name not in ignore and any(op != "same" for op in ops)
    }


# The host commands took their scripts on stdin and the model resolved the hosts once between
# these two commits: the upgrade tests deploy a stack with the first and move it to the second
# (later commits may change the stack on purpose, e.g. the admin listener's bind, which rolls
# the nodes).
BEFORE_STDIN_SCRIPTS = "e82a14148bccbd8bd65f45a1846129f0f45b8f17"
AFTER_STDIN_SCRIPTS = "c97b9a280fb6c25fa1aff2afddfe2e128f1628fb"


def in_place_only(preview: Mapping[str, Any]) -> dict[str, list[str]]:
    """What `preview` would do beyond updating host commands in place: {} when nothing is
    created, deleted or replaced and nothing but a `command:` resource is updated."""
    types = {
        str(step["urn"]).rsplit("::", 1)[-1]: str(step["urn"]).split("::")[-2] for step in preview.get("steps", [])
    }
    return {
        name: ops
        for name, ops in changed(preview).items()
        if set(ops) - {"update"} or not types[name].rsplit("$", 1)[-1].startswith("command:")
    }

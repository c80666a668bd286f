"""Runs the whole Pulumi program under `pulumi.runtime.set_mocks` and records what it declares.

One record type for every tier: the stack tests read a `ProgramRun`'s `Recorded` resources, and
the integration tests execute them for real (a command's exact `create` / `update` / `delete`
command line fed its `stdin` through `Recorded.run_local`, a container through the fake docker,
tests/support/engine.py)
in the order tests/support/graph.py computes.

Each run happens in a fresh `contextvars.Context`, because the SDK keeps its settings and root
stack in ContextVars; a run therefore never sees the previous one's resources.

The mock monitor receives RegisterResource calls in an order that depends on timing: the SDK sends
each one from a thread-pool thread once the resource's inputs and dependencies have resolved. So a
run keeps its resources in the order the program *declared* them (`Recorded.declared`), numbered
as each resource's constructor runs; that order is the same on every run.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextvars
import hashlib
import itertools
import json
import os
import re
import runpy
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from unittest.mock import patch

import pulumi
import pulumi.resource
from google.protobuf import json_format
from pulumi.runtime import mocks, rpc, settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.resource import register_resource
from pulumi.runtime.sync_await import _sync_await

from components import names
from components.config import StackConfig
from components.plan import ClusterPlan, plan_cluster
from tests.support.stackfiles import PROJECT, PROJECT_DIR, StackCase, parse_config

Operation = Literal["create", "update", "delete"]

LOCAL_COMMAND = "command:local:Command"
REMOTE_COMMAND = "command:remote:Command"
CONTAINER = "docker:index/container:Container"
NODE_LABEL = names.NODE_LABEL  # the label BrokerCluster puts on every broker container
LOCAL_INTERPRETER = ("/bin/sh", "-c")  # pulumi-command's local.Command default interpreter on Linux
STDIN_DELIMITER = "EMQX_CLUSTER_TEST_STDIN"
SECRET_SIG = rpc._special_sig_key
SECRET_VALUE = rpc._special_secret_sig

# Computed outputs a real provider would return after create/update (absent in preview). Each is
# derived from a digest of the resource's type, name and inputs, like the resource's mock ID: a
# changed input (e.g. a build arg) gives a new image digest and a new ID, as a rebuild or a
# replacement would, while unchanged inputs give the same values on every run.
_COMPUTED: dict[str, Callable[[str], dict[str, str]]] = {
    "docker:index/image:Image": lambda digest: {"repoDigest": f"sha256:{digest}"},
    "docker:index/remoteImage:RemoteImage": lambda digest: {"imageId": f"sha256:{digest}"},
    "random:index/randomPassword:RandomPassword": lambda digest: {"result": f"mock-password-{digest[:32]}"},
    # 80 bytes, base64 (pulumi-random's RandomBytes.base64): the digest's 32 hex digits, repeated.
    "random:index/randomBytes:RandomBytes": lambda digest: {
        "base64": base64.b64encode(bytes.fromhex(digest[:32]) * 5).decode()
    },
    "tls:index/privateKey:PrivateKey": lambda digest: {
        "privateKeyPem": f"-----BEGIN PRIVATE KEY-----\nmock{digest}\n-----END PRIVATE KEY-----\n"
    },
    "tls:index/selfSignedCert:SelfSignedCert": lambda digest: {
        "certPem": f"-----BEGIN CERTIFICATE-----\nmock{digest}\n-----END CERTIFICATE-----\n"
    },
    "tls:index/certRequest:CertRequest": lambda digest: {
        "certRequestPem": f"-----BEGIN CERTIFICATE REQUEST-----\nmock{digest}\n-----END CERTIFICATE REQUEST-----\n"
    },
    "tls:index/locallySignedCert:LocallySignedCert": lambda digest: {
        "certPem": f"-----BEGIN CERTIFICATE-----\nmock{digest}\n-----END CERTIFICATE-----\n"
    },
}

SecretPath = tuple[str | int, ...]


_BRANCH = re.compile(
    r"^((?:create|update|delete)(?:\|(?:create|update|delete))*)\)\n(.*?)^;;\n", re.DOTALL | re.MULTILINE
)


def scripts_of(program: str) -> dict[str, str]:
    """Each operation's script in a host command's program (host-program.sh.j2), as rendered
    (operations sharing a branch, `create|update)`, share its script)."""
    return {operation: match[2] for match in _BRANCH.finditer(program) for operation in match[1].split("|")}


def input_digest(type_: str, name: str, inputs: Mapping[str, Any]) -> str:
    """A stable hex digest of a resource's inputs (secrets unwrapped, key order ignored)."""
    plain, _ = _unwrap(dict(inputs))
    text = json.dumps([type_, name, plain], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Recorded:
    """One RegisterResource call: what the engine would receive."""

    type: str
    name: str
    urn: str
    # The program's declaration order: how many resources the program had constructed before this
    # one (the stack is 0). Unlike the order of the RegisterResource calls, it does not depend on timing.
    declared: int
    id: str | None  # None in preview; in update mode derived from the inputs (see _COMPUTED)
    parent: str
    custom: bool
    provider: str  # URN of the explicit provider ("" for the default provider and for components)
    inputs: dict[str, Any]
    secret_inputs: set[str]
    secret_paths: set[SecretPath]  # where exactly the SDK sent secret markers, e.g. ("uploads", 2, "content")
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    delete_before_replace: bool
    replace_on_changes: list[str]
    ignore_changes: list[str]
    additional_secret_outputs: list[str]
    aliases: list[dict[str, Any]]  # alias specs as sent (the engine resolves them against state)

    # -- a broker container ------------------------------------------------------------------

    @property
    def node_name(self) -> str | None:
        """The EMQX node name of a broker container (from its label), else None."""
        if self.type != CONTAINER:
            return None
        for label in self.inputs.get("labels") or []:
            if label.get("label") == NODE_LABEL:
                return str(label.get("value"))
        return None

    @property
    def container_env(self) -> dict[str, str] | None:
        """A container's environment (`envs`, "K=V" strings, as the provider passes them), else None."""
        if self.type != CONTAINER or self.inputs.get("envs") is None:
            return None
        return dict(str(item).split("=", 1) for item in self.inputs["envs"])

    def host_path_of(self, container_path: str) -> str | None:
        """The host dir a container mounts on `container_path` (its `volumes`), else None."""
        for volume in self.inputs.get("volumes") or []:
            if volume.get("containerPath") == container_path:
                return str(volume.get("hostPath"))
        return None

    # -- a pulumi-command resource -----------------------------------------------------------

    @property
    def create(self) -> str | None:
        return self.inputs.get("create")

    @property
    def update(self) -> str | None:
        return self.inputs.get("update")

    @property
    def delete(self) -> str | None:
        return self.inputs.get("delete")

    @property
    def connection(self) -> Mapping[str, Any] | None:
        return self.inputs.get("connection")

    @property
    def environment(self) -> Mapping[str, str] | None:
        return self.inputs.get("environment")

    @property
    def stdin(self) -> str | None:
        """A host command's standard input: every operation's script (host-program.sh.j2)."""
        return self.inputs.get("stdin")

    def command_line(self, operation: Operation) -> str:
        text: str | None = self.inputs.get(operation)
        if text is None:
            raise AssertionError(f"{self.name} declares no {operation} command")
        return text

    def operation_script(self, operation: Operation) -> str | None:
        """The script `operation` runs (its branch of the program on stdin); None while unknown."""
        if not isinstance(self.stdin, str):
            return None
        return scripts_of(self.stdin).get(operation)

    def script(self, operation: Operation) -> str:
        """One shell text doing what the provider does for `operation`: its command line, fed the
        command's standard input (a quoted here-document), for a test's shell or SSH session."""
        line = self.command_line(operation)
        if self.stdin is None:
            return line
        return f"{line} <<'{STDIN_DELIMITER}'\n{self.stdin.rstrip(chr(10))}\n{STDIN_DELIMITER}\n"

    def run_local(
        self,
        operation: Operation,
        env: Mapping[str, str] | None = None,
        *,
        timeout: float = 60,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `operation` like local.Command: `/bin/sh -c <line>` fed `stdin`, `env` + the declared environment.

        Never raises on the exit code (a failed command is a result, as for the engine).
        """
        full_env = {**(os.environ if env is None else env), **(self.environment or {})}
        return subprocess.run(
            [*LOCAL_INTERPRETER, self.command_line(operation)],
            env=full_env,
            cwd=cwd,
            input=self.stdin or "",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@dataclass
class ProgramRun:
    """One mocked `pulumi preview` / `up`: what was registered, in declaration order, and the config it ran with."""

    resources: list[Recorded] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    config: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str, *, custom: bool | None = None) -> Recorded:
        """The one resource called `name`; `custom` picks between a component and a resource sharing it."""
        matches = [r for r in self.resources if r.name == name and custom in (None, r.custom)]
        assert len(matches) == 1, f"expected one resource named {name!r}, found {len(matches)}"
        return matches[0]

    def by_urn(self) -> dict[str, Recorded]:
        return {r.urn: r for r in self.resources}

    @property
    def commands(self) -> dict[str, Recorded]:
        """Every pulumi-command resource by name."""
        return {r.name: r for r in self.resources if r.type in (LOCAL_COMMAND, REMOTE_COMMAND)}

    def stack_config(self) -> StackConfig:
        """The StackConfig the program built from this run's config."""
        return parse_config(self.config, self.secrets)

    def plan(self) -> ClusterPlan:
        return plan_cluster(self.stack_config())


def _unwrap(value: Any) -> tuple[Any, bool]:
    """Strip secret markers, saying whether any were present."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_VALUE:
            inner, _ = _unwrap(value.get("value"))
            return inner, True
        result: dict[str, Any] = {}
        secret = False
        for key, item in value.items():
            result[key], item_secret = _unwrap(item)
            secret = secret or item_secret
        return result, secret
    if isinstance(value, list):
        pairs = [_unwrap(item) for item in value]
        return [item for item, _ in pairs], any(secret for _, secret in pairs)
    return value, False


def _wire(message: Any) -> Any:
    """A protobuf Struct/Value as plain Python, exactly as sent: secret markers stay where they are."""
    if hasattr(message, "fields"):  # google.protobuf.Struct
        return {key: _wire(item) for key, item in message.fields.items()}
    kind = message.WhichOneof("kind")
    if kind == "struct_value":
        return _wire(message.struct_value)
    if kind == "list_value":
        return [_wire(item) for item in message.list_value.values]
    return None if kind in (None, "null_value") else getattr(message, kind)


def _secret_paths(value: Any, path: SecretPath = ()) -> set[SecretPath]:
    """Paths of every secret marker in the wire form (before deserialization hoists them up a level)."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_VALUE:
            return {path} | _secret_paths(value.get("value"), path)
        return {found for key, item in value.items() for found in _secret_paths(item, (*path, key))}
    if isinstance(value, list):
        return {found for index, item in enumerate(value) for found in _secret_paths(item, (*path, index))}
    return set()


# What a preflight prints last on a host whose memory holds this many connections (MOCK_MEMORY).
MOCK_MEMORY = (200_000, 16 * 1024 * 1024)


def _stdout(name: str) -> str:
    """A host command's output: the preflight's ends with its memory bound (preflight.sh.j2)."""
    if name.endswith("preflight-check"):
        return f"preflight passed\nmemory ceiling: {MOCK_MEMORY[0]} connections (MemTotal {MOCK_MEMORY[1]} kB)\n"
    return f"{name} ok"


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self, preview: bool) -> None:
        self.preview = preview

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        if self.preview:
            return None, dict(args.inputs)  # computed outputs stay unknown, as in a real preview
        digest = input_digest(args.typ, args.name, args.inputs)
        # An image's ID is a digest of its content, not of the resource's name: a renamed image
        # resource (moved by an alias) keeps it, as it does with the real provider.
        content = (
            input_digest(args.typ, "", args.inputs) if args.typ == "docker:index/remoteImage:RemoteImage" else digest
        )
        computed = _COMPUTED[args.typ](content) if args.typ in _COMPUTED else {}
        return f"{args.name}-{digest[:12]}", {**args.inputs, **computed, "stdout": _stdout(args.name)}

    def call(self, args: mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


# The declaration number of the resource whose registration is running (see `_numbered`).
_DECLARED: contextvars.ContextVar[int] = contextvars.ContextVar("declared")


@contextmanager
def _numbered() -> Iterator[None]:
    """Number every resource as the program constructs it, for the monitor to read (`_DECLARED`).

    A resource's constructor calls `register_resource` at once, in program order. That call
    schedules the registration as an asyncio task, which runs in a copy of the caller's context,
    and the task makes the RegisterResource call on a thread-pool thread in that same context
    (pulumi/runtime/resource.py: `asyncio.ensure_future`, `run_in_executor(None,
    wrap_with_context(...))`; the mock monitor relies on this too, for the stack's name). So the
    number set around the call reaches the monitor with its request, however late it arrives.
    """
    counter = itertools.count()

    def numbered(*args: Any, **kwargs: Any) -> None:
        token = _DECLARED.set(next(counter))
        try:
            register_resource(*args, **kwargs)
        finally:
            _DECLARED.reset(token)

    # Resource.__init__ calls the name pulumi.resource imported.
    with patch.object(pulumi.resource, "register_resource", numbered):
        yield


class _RecordingMonitor(mocks.MockMonitor):
    def __init__(self, mock: _Mocks, run: ProgramRun) -> None:
        super().__init__(mock)
        self.run = run
        self._lock = threading.Lock()  # registrations arrive on several threads at once

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        declared = _DECLARED.get(None)
        if declared is None:
            raise AssertionError(f"{request.type} {request.name}: registered without a declaration number")
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            raw = rpc.deserialize_properties(request.object, keep_unknowns=True)
            inputs: dict[str, Any] = {}
            secret_inputs: set[str] = set()
            for key, value in raw.items():
                inputs[key], secret = _unwrap(value)
                if secret:
                    secret_inputs.add(key)
            recorded = Recorded(
                type=request.type,
                name=request.name,
                urn=response.urn,
                declared=declared,
                id=response.id or None,
                parent=request.parent,
                custom=request.custom,
                provider=request.provider.rpartition("::")[0],
                inputs=inputs,
                secret_inputs=secret_inputs,
                secret_paths=_secret_paths(_wire(request.object)),
                dependencies=list(request.dependencies),
                property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
                delete_before_replace=request.deleteBeforeReplace,
                additional_secret_outputs=list(request.additionalSecretOutputs),
                replace_on_changes=list(request.replaceOnChanges),
                ignore_changes=list(request.ignoreChanges),
                aliases=[json_format.MessageToDict(alias) for alias in request.aliases],
            )
            with self._lock:
                bisect.insort(self.run.resources, recorded, key=lambda r: r.declared)
        return response


def run_program(
    config: Mapping[str, Any],
    *,
    secrets: Mapping[str, str] | None = None,
    preview: bool = False,
    stack: str = "test",
    into: ProgramRun | None = None,
    program: Callable[[], None] | None = None,
) -> ProgramRun:
    """Run __main__.py (or `program`, another Pulumi program) under mocks with `config` (+ `secrets`,
    marked secret) and record it.

    Pass `into` to keep what was registered even when the program raises.
    """
    run = into if into is not None else ProgramRun()
    run.config, run.secrets = dict(config), dict(secrets or {})
    values = {**config, **(secrets or {})}
    as_strings = {
        (key if ":" in key else f"{PROJECT}:{key}"): value if isinstance(value, str) else json.dumps(value)
        for key, value in values.items()
    }
    secret_keys = [f"{PROJECT}:{key}" if ":" not in key else key for key in (secrets or {})]

    def execute() -> None:
        mock = _Mocks(preview)
        set_all_config(as_strings, secret_keys)

        async def main() -> None:
            if program is not None:
                program()
                return
            # The program takes SIGINT for its engine-cancel exit; the test process keeps its own.
            sigint = signal.getsignal(signal.SIGINT)
            try:
                runpy.run_path(str(PROJECT_DIR / "__main__.py"), run_name="__main__")
            finally:
                signal.signal(signal.SIGINT, sigint)

        with _numbered():
            # set_mocks declares the root stack (number 0).
            mocks.set_mocks(mock, project=PROJECT, stack=stack, preview=preview, monitor=_RecordingMonitor(mock, run))
            try:
                _sync_await(pulumi.runtime.stack.run_pulumi_func(main))
            except BaseException:
                _drain()
                raise
        root = settings.get_root_resource()
        assert root is not None
        for name, value in root.outputs.items():  # type: ignore[attr-defined]
            output = pulumi.Output.from_input(value)
            run.outputs[name] = _sync_await(output.future(with_unknowns=True))
            if _sync_await(output.is_secret()):
                run.secret_outputs.add(name)

    contextvars.Context().run(execute)
    return run


def _drain() -> None:
    """Finish (or cancel) what a failed run left, and forget it, so that an Output callback that
    raised after the run's first error (an apply whose check fails) cannot fail the next run. The
    SDK stops waiting at the first error, and the tasks it tracks live in `SETTINGS.outputs`, a
    context property whose default set every context without its own shares (pulumi 3.272.0
    runtime/settings.py), so the next run's wait_for_rpcs would await them again."""
    loop = asyncio.get_event_loop()
    for _ in range(100):  # finishing a task can start others (a resource's registration once its inputs fail)
        with settings.SETTINGS.lock:
            pending = list(settings.SETTINGS.outputs)
            settings.SETTINGS.outputs.clear()
        pending.extend(task for task in asyncio.all_tasks(loop) if not task.done() and task not in pending)
        if not pending:
            return
        _, unfinished = loop.run_until_complete(asyncio.wait(pending, timeout=5))
        for task in unfinished:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


class Deployments:
    """Runs the program under mocks, once per distinct (config, secrets, mode)."""

    def __init__(self) -> None:
        self._runs: dict[str, ProgramRun] = {}

    def run(self, case: StackCase, *, preview: bool = False) -> ProgramRun:
        key = case.key(preview)
        if key not in self._runs:
            self._runs[key] = run_program(case.config, secrets=case.secrets, preview=preview, stack=case.stack)
        return self._runs[key]

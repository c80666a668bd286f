"""The client registry's REST scripts, run as the host runs them (`sh -s <operation>`, the program
on stdin) with real curl against a recording HTTP server; `docker exec -i <node> curl` is a stub
that runs curl here, as the node's curl would (same request, same standard input)."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from components.render.access import API_KEY_NAME, MqttUser
from components.render.access_scripts import acl_apply_script, user_delete_script, user_upsert_script
from components.render.host_scripts import host_program

SECRET = "Api0Secret1With2Only3Letters4And5Digits6"
USER = MqttUser("sensor-1", "ab" * 32, "salt", False)


@dataclass
class Api:
    """A REST API that answers each request with the next scripted (code, body) and records it."""

    port: int
    answers: list[tuple[int, str]] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def api() -> Iterator[Api]:
    state = Api(0)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0) or 0)).decode()
            state.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "authorization": self.headers.get("authorization", ""),
                    "content_type": self.headers.get("content-type", ""),
                    "body": body,
                }
            )
            code, text = state.answers.pop(0) if state.answers else (500, "no answer scripted")
            payload = text.encode()
            self.send_response(code)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_POST = do_PUT = do_DELETE = _answer  # noqa: N815 (http.server's names)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()


def run(
    script: str, tmp_path: Path, running: bool = True, other_nodes: bool = False
) -> subprocess.CompletedProcess[str]:
    """The script as a host command runs it, with `docker` stubbed: exec runs curl right here;
    inspect says whether the node runs, ps whether other nodes of the stack run on the host."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    docker = bin_dir / "docker"
    docker.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        f"  inspect) echo {str(running).lower()} ;;\n"
        f"  ps) {'echo 3f2a' if other_nodes else ':'} ;;\n"
        '  exec) shift 3; exec "$@" ;;\n'
        "  *) exit 2 ;;\n"
        "esac\n"
    )
    docker.chmod(0o755)
    return subprocess.run(
        ["sh", "-s", "create"],
        input=host_program({"create": script}),
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def basic_auth() -> str:
    return "Basic " + base64.b64encode(f"{API_KEY_NAME}:{SECRET}".encode()).decode()


def test_a_client_is_imported_with_its_hash_and_the_api_key(api: Api, tmp_path: Path) -> None:
    api.answers = [(200, '{"total":1,"success":0,"override":1,"skipped":0,"failed":0}')]
    done = run(user_upsert_script("emqx1", api.port, SECRET, USER, 10), tmp_path)
    assert done.returncode == 0, done.stderr
    [request] = api.requests
    assert request["method"] == "POST"
    assert request["path"] == "/api/v5/authentication/password_based%3Abuilt_in_database/import_users?type=hash"
    assert request["authorization"] == basic_auth()
    assert request["content_type"] == "application/json"
    assert json.loads(request["body"]) == [USER.as_json()]
    assert "MQTT client sensor-1: done (HTTP 200)" in done.stdout


def test_an_import_emqx_counts_as_failed_fails_the_command(api: Api, tmp_path: Path) -> None:
    api.answers = [(200, '{"total":1,"success":0,"override":0,"skipped":0,"failed":1}')]
    done = run(user_upsert_script("emqx1", api.port, SECRET, USER, 10), tmp_path)
    assert done.returncode == 1
    assert "MQTT client sensor-1: the API answered 200 but not as expected" in done.stderr


def test_a_wrong_api_key_fails_at_once_with_what_to_check(api: Api, tmp_path: Path) -> None:
    api.answers = [(401, '{"code":"BAD_API_KEY_OR_SECRET"}')]
    done = run(user_upsert_script("emqx1", api.port, SECRET, USER, 30), tmp_path)
    assert done.returncode == 1 and len(api.requests) == 1
    assert "refused the program's API key (HTTP 401)" in done.stderr and "data dir" in done.stderr


def test_a_node_not_ready_yet_is_retried_until_it_answers(api: Api, tmp_path: Path) -> None:
    api.answers = [(503, "starting"), (503, "starting"), (204, "")]
    done = run(user_delete_script("emqx1", api.port, SECRET, "sensor-1", 30), tmp_path)
    assert done.returncode == 0, done.stderr
    assert [r["method"] for r in api.requests] == ["DELETE"] * 3


@pytest.mark.parametrize("code", [204, 404])
def test_removing_a_client_that_is_gone_already_is_done(api: Api, tmp_path: Path, code: int) -> None:
    api.answers = [(code, "")]
    done = run(user_delete_script("emqx1", api.port, SECRET, "sensor-1", 10), tmp_path)
    assert done.returncode == 0, done.stderr
    assert api.requests[0]["path"] == "/api/v5/authentication/password_based%3Abuilt_in_database/users/sensor-1"


def test_removing_a_client_when_no_node_runs_on_the_host_does_nothing(api: Api, tmp_path: Path) -> None:
    """A destroy after the cluster went (or a broken stack): nothing left to remove the client from."""
    done = run(user_delete_script("emqx1", api.port, SECRET, "sensor-1", 10), tmp_path, running=False)
    assert done.returncode == 0, done.stderr
    assert api.requests == [] and "no node of the cluster runs" in done.stdout


def test_removing_a_client_while_its_node_is_down_but_others_run_fails_at_once(api: Api, tmp_path: Path) -> None:
    """The client would stay valid on the running nodes: say so, no waiting out the deadline."""
    script = user_delete_script("emqx1", api.port, SECRET, "sensor-1", 60)
    done = run(script, tmp_path, running=False, other_nodes=True)
    assert done.returncode == 1 and api.requests == []
    assert "container emqx1 does not run" in done.stderr and "docker start emqx1" in done.stderr


def test_topic_rules_reach_the_api_as_written(api: Api, tmp_path: Path) -> None:
    acl = '%% c\n{allow, {username, "a\\"b"}, all, ["x/${clientid}/#", {eq, "y/#"}]}.\n{deny, all}.\n'
    api.answers = [(204, "")]
    done = run(acl_apply_script("emqx1", api.port, SECRET, acl, 10), tmp_path)
    assert done.returncode == 0, done.stderr
    [request] = api.requests
    assert (request["method"], request["path"]) == ("PUT", "/api/v5/authorization/sources/file")
    assert json.loads(request["body"]) == {"type": "file", "enable": True, "rules": acl}
    assert SECRET not in done.stdout + done.stderr

"""Host scripts that apply access changes to a running cluster through EMQX's REST API.

A changed password, an added or removed client, a changed topic rule: each is one REST call on
the seed node (rest-call.sh.j2, with the program's API key), and the cluster applies it to every
node; no node restarts. EMQX 5.8.6 facts (cited where the calls are built):
- `POST /api/v5/authentication/password_based:built_in_database/import_users?type=hash` with a
  JSON array overwrites existing users (apps/emqx_auth/src/emqx_authn/emqx_authn_user_import_api.erl,
  import_users/2 with `override => true` in emqx_authn_mnesia.erl) and answers 200
  `{"total":..,"success":..,"override":..,"skipped":..,"failed":..}`;
- `DELETE .../users/<id>` answers 204, or 404 when there is no such user (emqx_authn_api.erl
  delete_user/3; also when there is no such authenticator: with allowAnonymous there are no
  users to remove);
- `PUT /api/v5/authorization/sources/file` with `rules` validates them (400 when invalid, the
  old rules kept), writes them under each node's data dir and re-reads them on every node
  (emqx_authz_api_sources.erl source/2 -> emqx_authz:update/2, emqx_conf:update with
  `override_to => cluster`, a cluster-wide multicall; post_config_update drains the authz
  cache). At the next boot the environment's path wins again (environment variables override
  cluster.hocon), which holds the same rules: the access files are written first.
"""

from __future__ import annotations

import json

from components.names import NODE_LABEL
from components.render.access import API_KEY_NAME, AUTHENTICATOR_ID, MqttUser
from components.render.cluster_scripts import MAX_BACKOFF_SECONDS
from components.render.templating import double_quoted, render

_USERS_PATH = f"/api/v5/authentication/{AUTHENTICATOR_ID.replace(':', '%3A')}"


def curl_config(url: str, method: str, api_secret: str, body: str | None = None) -> str:
    """A whole request as curl reads it from `--config -`: the answer's last line is its HTTP code."""
    lines = [
        f"url = {double_quoted(url)}",
        f"request = {double_quoted(method)}",
        f"user = {double_quoted(f'{API_KEY_NAME}:{api_secret}')}",
        'max-time = "30"',
        'write-out = "\\n%{http_code}"',  # curl turns `\n` inside quotes into a newline
    ]
    if body is not None:
        lines += ['header = "Content-Type: application/json"', f"data-binary = {double_quoted(body)}"]
    return "".join(f"{line}\n" for line in lines)


def _rest_call(
    container: str,
    what: str,
    config: str,
    ok_codes: tuple[int, ...],
    timeout_seconds: int,
    body_check: str | None = None,
    gone_ok: bool = False,
) -> str:
    return render(
        "rest-call.sh.j2",
        container=container,
        what=what,
        curl_config=config,
        ok_codes=[str(code) for code in ok_codes],
        body_check=body_check,
        gone_ok=gone_ok,
        node_label=NODE_LABEL,
        timeout_seconds=int(timeout_seconds),
        max_backoff_seconds=MAX_BACKOFF_SECONDS,
    )


def _url(port: int, path: str) -> str:
    return f"http://127.0.0.1:{port}{path}"


def user_upsert_script(container: str, port: int, api_secret: str, user: MqttUser, timeout_seconds: int) -> str:
    """Create the user, or overwrite its hash and superuser flag: `"failed":0` or it fails."""
    config = curl_config(
        _url(port, f"{_USERS_PATH}/import_users?type=hash"), "POST", api_secret, json.dumps([user.as_json()])
    )
    return _rest_call(
        container, f"MQTT client {user.user_id}", config, (200,), timeout_seconds, body_check='"failed":0'
    )


def user_delete_script(container: str, port: int, api_secret: str, user_id: str, timeout_seconds: int) -> str:
    """Remove the user (already gone counts as done)."""
    config = curl_config(_url(port, f"{_USERS_PATH}/users/{user_id}"), "DELETE", api_secret)
    return _rest_call(container, f"MQTT client {user_id} removal", config, (204, 404), timeout_seconds, gone_ok=True)


def acl_apply_script(container: str, port: int, api_secret: str, acl: str, timeout_seconds: int) -> str:
    """Replace the file source's rules on every node of the running cluster."""
    body = json.dumps({"type": "file", "enable": True, "rules": acl})
    config = curl_config(_url(port, "/api/v5/authorization/sources/file"), "PUT", api_secret, body)
    return _rest_call(container, "MQTT topic rules", config, (200, 204), timeout_seconds)

"""Issue "deployable stack": what `pulumi up` declares for the dev and prod stacks, run under mocks."""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import pulumi
import pytest
import trustme

from components.broker_cluster import HEALTHCHECK
from components.broker_image import BUILD_CONTEXT, build_digest
from components.capacity import memory_budget
from components.config_parse import ConfigError
from components.config_types import NAMESPACE
from components.host_tuning import host_sysctls
from components.plan import BROKER_DATA_DIR, BROKER_LOG_DIR
from components.preflight import nofile_claims
from components.render.access import ACCESS_FILES
from components.render.broker_env import COOKIE_VARIABLE, DASHBOARD_PASSWORD_VARIABLE, erlang_address
from components.render.host_scripts import (
    MemoryCheck,
    host_program,
    preflight_script,
    sysctl_apply_script,
    sysctl_restore_script,
)
from components.render.nginx import CONTAINER_RUNTIME, nginx_settings, render_nginx_conf
from components.render.templating import double_quoted
from tests.support.graph import RolloutGraph
from tests.support.program import CONTAINER, Deployments, ProgramRun, Recorded, run_program
from tests.support.stackfiles import PROJECT_DIR, ProdSecrets, StackCase, with_changes
from tests.support.views import (
    LB_CONTAINER,
    broker_names,
    brokers,
    command_type,
    envs,
    is_secret_at,
    lb_container,
    uploads,
    walk_strings,
)

EXPECTED_NODES = {"dev": 3, "prod": 5}
COMPONENTS = (
    "EmqxCluster",
    "HostTuning",
    "Preflight",
    "BrokerImage",
    "BrokerCluster",
    "ClusterFormation",
    "ClientRegistry",
    "LoadBalancer",
)
NGINX_CONF = "/etc/nginx/nginx.conf"


def wave_count(case: StackCase) -> int:
    return len(case.plan().waves)


def host_command_names(case: StackCase) -> set[str]:
    nodes = case.nodes
    return {
        "emqx-host-sysctls",
        "emqx-preflight-check",
        *(f"emqx{i}-dirs" for i in range(1, nodes + 1)),
        *(f"emqx{i}-access-files" for i in range(1, nodes + 1)),
        *(f"emqx{i}-membership" for i in range(2, nodes + 1)),
        *(f"wave{k}-verify" for k in range(1, wave_count(case) + 1)),
        "emqx-mqtt-acl",
        *(f"emqx-mqtt-client-{user_id}" for user_id in case.parsed().access.user_ids),
    }


# --------------------------------------------------------------------------- what is declared


def test_resource_types_and_counts(any_run: ProgramRun, case: StackCase) -> None:
    nodes = EXPECTED_NODES[case.stack]
    assert case.nodes == nodes
    assert wave_count(case) == 2
    expected = Counter(
        {
            "pulumi:providers:docker": 1,
            CONTAINER: nodes + 1,  # the brokers and the load balancer
            "docker:index/remoteImage:RemoteImage": 2,  # the built broker image and nginx
            # host tuning, preflight, N dirs, N access files, N-1 memberships, one verify per
            # wave, the topic rules, one per declared client (dev: its generated one)
            command_type(case.stack): 2 + nodes + nodes + (nodes - 1) + 2 + 1 + len(case.parsed().access.user_ids),
            # cookie, dashboard password, API secret, salt key (+ dev's generated client password)
            "random:index/randomPassword:RandomPassword": 4 + (case.stack == "dev"),
            "random:index/randomBytes:RandomBytes": 1,  # the session ticket key
            **{f"emqx-cluster:index:{component}": 1 for component in COMPONENTS},
        }
    )
    if case.stack == "dev":  # self-signed TLS; prod brings its own certificate
        expected.update({"tls:index/privateKey:PrivateKey": 1, "tls:index/selfSignedCert:SelfSignedCert": 1})
    assert Counter(r.type for r in any_run.resources) == expected

    commands = {r.name for r in any_run.of_type(command_type(case.stack))}
    assert commands == host_command_names(case)
    assert {r.name for r in any_run.of_type(CONTAINER)} == {*broker_names(nodes), LB_CONTAINER}
    assert {r.name for r in any_run.of_type("random:index/randomPassword:RandomPassword")} == {
        "emqx-erlang-cookie",
        "emqx-dashboard-password",
        "emqx-api-secret",
        "emqx-mqtt-salt-key",
        *(["emqx-mqtt-generated-password"] if case.stack == "dev" else []),
    }
    assert any_run.named("emqx-lb-image").inputs["name"] == f"nginx:{case.parsed().lb.nginx_version}"


def test_every_docker_resource_uses_the_configured_host(any_run: ProgramRun, case: StackCase) -> None:
    (provider,) = any_run.of_type("pulumi:providers:docker")
    assert provider.inputs["host"] == case.setting("dockerHost")
    docker_resources = [r for r in any_run.resources if r.type.startswith("docker:")]
    assert len(docker_resources) == case.nodes + 3
    assert {r.name: r.provider for r in docker_resources} == {r.name: provider.urn for r in docker_resources}


def broker_image(run: ProgramRun) -> Recorded:
    return run.named("emqx-broker-image-build")


def test_broker_image_is_built_locally_from_the_official_base(any_run: ProgramRun, case: StackCase) -> None:
    image = broker_image(any_run)
    assert image.type == "docker:index/remoteImage:RemoteImage"
    base = f"{case.setting('emqxRepository')}:{case.setting('emqxVersion')}"
    assert image.inputs["build"]["context"] == BUILD_CONTEXT == "docker/emqx"
    assert image.inputs["build"]["buildArgs"] == {"EMQX_BASE_IMAGE": base}
    # The tag names the version and a digest of every build input: any new build is a new name.
    digest = build_digest(PROJECT_DIR / BUILD_CONTEXT, base, "")
    assert image.inputs["name"] == f"emqx-cluster/emqx:{case.setting('emqxVersion')}-{digest}"
    assert image.inputs["keepLocally"] is case.parsed().keep_image
    # Pulumi runs the program in the project dir: the context and Dockerfile must be there, and
    # the Dockerfile must build FROM the build arg, or the configured version would be ignored.
    dockerfile = PROJECT_DIR / image.inputs["build"]["dockerfile"]
    assert dockerfile.is_file()
    text = dockerfile.read_text()
    assert re.search(r"^ARG EMQX_BASE_IMAGE\b", text, re.M)
    assert re.search(r"^FROM \$\{EMQX_BASE_IMAGE\}\s*$", text, re.M)


def test_every_build_input_names_a_new_image(tmp_path: Path) -> None:
    """A new build under the old tag would take the name over, and the old image's delete would
    then try to remove the image the nodes run: every input must change the tag."""
    context = tmp_path / "emqx"
    shutil.copytree(PROJECT_DIR / BUILD_CONTEXT, context)
    base = ("emqx/emqx:5.8.6", "")
    before = build_digest(context, *base)
    assert before == build_digest(PROJECT_DIR / BUILD_CONTEXT, *base)
    assert build_digest(context, "mirror/emqx:5.8.6", "") != before
    assert build_digest(context, "emqx/emqx:5.8.6", "linux/arm64") != before
    check = context / "emqx-cluster-healthcheck"
    check.chmod(0o775)  # another umask: same build
    assert build_digest(context, *base) == before
    check.chmod(0o664)  # not executable any more: another build
    assert build_digest(context, *base) != before
    check.chmod(0o755)
    check.write_text(check.read_text() + "\n")
    assert build_digest(context, *base) != before


def test_broker_image_platform_is_the_hosts_unless_configured(deployments: Deployments, case: StackCase) -> None:
    """The legacy builder runs on the Docker host: unset builds for the host's own platform."""
    assert broker_image(deployments.run(case)).inputs["build"].get("platform") is None
    arm = broker_image(deployments.run(case.with_config(imagePlatform="linux/arm64")))
    assert arm.inputs["build"]["platform"] == "linux/arm64"
    assert arm.inputs["name"] != broker_image(deployments.run(case)).inputs["name"]


def test_host_commands_send_no_previous_output_over_ssh(any_run: ProgramRun) -> None:
    """Default true would Setenv PULUMI_COMMAND_STDOUT on every run, refused by sshd without AcceptEnv."""
    commands = [r for r in any_run.resources if r.type.startswith("command:")]
    assert commands
    for command in commands:
        assert command.inputs["addPreviousOutputInEnv"] is False, command.name


def test_self_signed_certificate_is_renewed_before_it_expires(any_run: ProgramRun, case: StackCase) -> None:
    certificates = any_run.of_type("tls:index/selfSignedCert:SelfSignedCert")
    if case.stack == "prod":
        assert not certificates
        return
    (certificate,) = certificates
    assert 0 < certificate.inputs["earlyRenewalHours"] < certificate.inputs["validityPeriodHours"]


def test_generated_dashboard_password_meets_emqx_rule(any_run: ProgramRun, case: StackCase) -> None:
    generated = {r.name: r for r in any_run.of_type("random:index/randomPassword:RandomPassword")}
    password = generated["emqx-dashboard-password"].inputs
    kinds = [password.get(key, 0) for key in ("minLower", "minUpper", "minNumeric", "minSpecial")]
    assert sum(1 for minimum in kinds if minimum >= 1) >= 2
    assert 8 <= password["length"] <= 64


def test_bad_config_is_a_clean_run_error() -> None:
    """pulumi.RunError: the CLI prints the message, not a Python traceback."""
    broken = {f"{NAMESPACE}:nodes": "0", f"{NAMESPACE}:tlsMode": "self-signed"}
    with pytest.raises(pulumi.RunError) as raised:
        run_program(broken, stack="dev")
    assert not isinstance(raised.value, ConfigError)
    assert f"{NAMESPACE}:nodes = '0'" in str(raised.value)


def test_healthcheck_script_is_baked_into_the_image() -> None:
    command, path = HEALTHCHECK.test
    assert command == "CMD"
    source = PROJECT_DIR / BUILD_CONTEXT / "emqx-cluster-healthcheck"
    dockerfile = (PROJECT_DIR / BUILD_CONTEXT / "Dockerfile").read_text()
    assert re.search(rf"^COPY {source.name} {re.escape(path)}\s*$", dockerfile, re.M)
    assert os.access(source, os.X_OK), "COPY keeps the mode: a non-executable check never passes"


def test_host_commands_run_where_the_stack_says(any_run: ProgramRun, case: StackCase) -> None:
    commands = [r for r in any_run.resources if r.type.startswith("command:")]
    assert {r.type for r in commands} == {command_type(case.stack)}
    if case.stack == "dev":
        for command in commands:
            assert command.inputs["environment"] == {"DOCKER_HOST": case.setting("dockerHost")}, command.name
        return
    for command in commands:
        connection = command.inputs["connection"]
        assert connection["host"] == case.setting("sshHost"), command.name
        assert connection["user"] == case.setting("sshUser"), command.name
        assert connection["port"] == 22, command.name
        assert connection["privateKey"] == case.secrets["sshPrivateKey"], command.name
        assert is_secret_at(command, ("connection", "privateKey")), command.name
    # hostUseSudo: every operation runs through `sudo -n`, its script on standard input (in
    # preview, the programs holding a not yet known image or container ID are unknown).
    for command in commands:
        for operation in ("create", "update", "delete"):
            line = command.inputs.get(operation)
            assert line in (None, f"sudo -n sh -s {operation}"), command.name
    programs = {c.name for c in commands if isinstance(c.stdin, str)}
    # Unknown in preview: programs pinned to container IDs, and those built from generated secrets.
    pinned = {c.name for c in commands if c.name.endswith(("-membership", "-verify", "-access-files"))}
    keyed = {c.name for c in commands if c.name.startswith("emqx-mqtt-")}
    assert programs >= {c.name for c in commands} - pinned - keyed


def test_host_tuning_sets_emqx_sysctls_and_reserves_planned_ports(deployed: ProgramRun, case: StackCase) -> None:
    config, plan = case.parsed(), case.plan()
    settings = host_sysctls(config, plan, plan.hosts[0])
    tuning = deployed.named("emqx-host-sysctls")
    assert tuning.stdin == host_program(
        {
            "create": sysctl_apply_script(settings, config.tuning.drop_in),
            "delete": sysctl_restore_script(config.tuning.drop_in),
        }
    )
    script = tuning.stdin
    assert "net.core.somaxconn = 32768" in script
    # Planned ports inside the ephemeral range are reserved, so no outgoing connection takes them.
    assert f"net.ipv4.ip_local_reserved_ports = {plan.hosts[0].reserved_ports_sysctl}" in script
    assert str(plan.lb_port) in plan.hosts[0].reserved_ports_sysctl
    assert tuning.inputs["delete"], "destroy must restore the previous kernel settings"
    # A replacement (`pulumi up --replace`) must restore before it re-applies, or the old delete
    # would remove the shared drop-in after the new apply.
    assert tuning.delete_before_replace


def test_preflight_checks_every_planned_port(deployed: ProgramRun, case: StackCase) -> None:
    config, plan = case.parsed(), case.plan()
    check = deployed.named("emqx-preflight-check")
    memory = MemoryCheck(memory_budget(config, plan.hosts[0]), config.lb.expected_connections)
    expected = preflight_script(plan.hosts[0].listeners, config.data_dir, nofile_claims(config), memory)
    # Re-checked whenever the plan changes.
    assert check.stdin == host_program({"create": expected, "update": expected})
    assert len(plan.hosts[0].listeners) == 4 * case.nodes + 1
    for port in plan.hosts[0].ports():
        assert f"if listening {port} " in expected


# --------------------------------------------------------------------------- broker containers


def test_broker_containers_run_on_the_host_network(any_run: ProgramRun, case: StackCase) -> None:
    config = case.parsed()
    nodes = brokers(any_run)
    assert [c.name for c in nodes] == broker_names(case.nodes)
    for container, node in zip(nodes, case.plan().nodes, strict=True):
        inputs = container.inputs
        assert inputs["name"] == node.container_name
        assert inputs["networkMode"] == "host"
        assert inputs["restart"] == "always"
        assert not inputs.get("ports"), "with host networking `ports` would be dropped by the provider"
        limit = config.broker_nofile_limit
        assert inputs["ulimits"] == [{"name": "nofile", "soft": limit, "hard": limit}]
        assert sorted((v["hostPath"], v["containerPath"]) for v in inputs["volumes"]) == [
            (f"{config.data_dir}/{node.short_name}/access", ACCESS_FILES.directory),
            (f"{config.data_dir}/{node.short_name}/data", BROKER_DATA_DIR),
            (f"{config.data_dir}/{node.short_name}/log", BROKER_LOG_DIR),
        ]
        assert inputs["healthcheck"]["tests"] == list(HEALTHCHECK.test)
        assert inputs["healthcheck"]["interval"] == HEALTHCHECK.interval
        # The provider neither replaces nor updates a container for a new health check: the
        # check is also a (ForceNew) label, so changing it replaces the container.
        labels = {label["label"]: label["value"] for label in inputs["labels"]}
        assert labels["io.emqx-cluster.healthcheck"] == HEALTHCHECK.label()
        assert all(str(value) in HEALTHCHECK.label() for value in (*HEALTHCHECK.test, HEALTHCHECK.retries))
        # Replace and destroy stop EMQX with SIGTERM and this much time, not SIGKILL at once.
        assert inputs["destroyGraceSeconds"] == config.broker_stop_grace_seconds > 0
        assert inputs["stopTimeout"] == config.broker_stop_grace_seconds
        assert inputs["wait"] is True
        assert inputs["waitTimeout"] == config.join_timeout_seconds
        assert inputs["logDriver"] == "json-file"
        assert inputs["logOpts"] == {
            "max-size": config.container_log_max_size,
            "max-file": str(config.container_log_max_files),
        }
        assert container.delete_before_replace is True
        assert "envs" in container.secret_inputs
        assert "envs" in container.additional_secret_outputs


def test_broker_environment_configures_each_node(deployed: ProgramRun, case: StackCase) -> None:
    plan = case.plan()
    cookies: set[str] = set()
    for container, node in zip(brokers(deployed), plan.nodes, strict=True):
        env = envs(container)
        assert env["EMQX_NODE__NAME"] == f"emqx{node.index}@{case.setting('advertiseAddress')}"
        assert env["EMQX_RPC__PORT_DISCOVERY"] == "stateless"
        assert env["EMQX_LISTENERS__TCP__DEFAULT__BIND"] == f'"{node.address}:{node.ports.mqtt}"'
        assert env["EMQX_LISTENERS__TCP__DEFAULT__PROXY_PROTOCOL"] == "true"
        assert env["EMQX_CLUSTER__DISCOVERY_STRATEGY"] == "manual"
        assert env["EMQX_DASHBOARD__LISTENERS__HTTP__BIND"] == f'"127.0.0.1:{node.ports.dashboard}"'
        assert env[COOKIE_VARIABLE]
        # bin/emqx compares the variable RAW with the booted cookie: a bare token, never quoted.
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{15,254}", env[COOKIE_VARIABLE])
        assert env["EMQX_RPC__LISTEN_ADDRESS"] == f'"{node.address}"'
        assert env["ERL_AFLAGS"] == f"-kernel inet_dist_use_interface {erlang_address(node.address)}"
        # HOCON-quoted, so EMQX reads `#`, `"` or `${` in a password literally.
        assert env[DASHBOARD_PASSWORD_VARIABLE] == double_quoted(deployed.outputs["dashboardPassword"])
        cookies.add(env[COOKIE_VARIABLE])
    assert len(cookies) == 1, "every node must share one Erlang cookie, or they cannot cluster"


def test_configured_cookie_and_password_replace_generated_ones(
    stacks: dict[str, StackCase], deployments: Deployments
) -> None:
    given = {"erlangCookie": "c" * 32, "dashboardPassword": 'Dash "board" #1 ${x}'}
    dev = stacks["dev"]
    run = deployments.run(StackCase(dev.stack, dev.config, {**dev.secrets, **given}))
    generated = {r.name for r in run.of_type("random:index/randomPassword:RandomPassword")}
    assert generated == {"emqx-api-secret", "emqx-mqtt-salt-key", "emqx-mqtt-generated-password"}
    for container in brokers(run):
        assert envs(container)[COOKIE_VARIABLE] == given["erlangCookie"]
        assert envs(container)[DASHBOARD_PASSWORD_VARIABLE] == double_quoted(given["dashboardPassword"])
    assert run.outputs["dashboardPassword"] == given["dashboardPassword"]
    assert "dashboardPassword" in run.secret_outputs


# --------------------------------------------------------------------------- load balancer


def test_load_balancer_container(any_run: ProgramRun, case: StackCase) -> None:
    lb = lb_container(any_run)
    settings = nginx_settings(case.parsed(), case.plan())
    assert lb.inputs["networkMode"] == "host"
    assert lb.inputs["restart"] == "always"
    assert lb.delete_before_replace is True
    assert lb.inputs["ulimits"] == [
        {"name": "nofile", "soft": settings.worker_rlimit_nofile, "hard": settings.worker_rlimit_nofile}
    ]
    assert lb.property_dependencies["image"] == [any_run.named("emqx-lb-image").urn]
    files = uploads(lb)
    ticket_key = CONTAINER_RUNTIME.ticket_key_path(1)
    assert set(files) == {
        NGINX_CONF,
        CONTAINER_RUNTIME.certificate_path,
        CONTAINER_RUNTIME.private_key_path,
        ticket_key,
    }
    conf = files[NGINX_CONF][1]["content"]
    assert conf == render_nginx_conf(settings)
    assert not re.search(r"^\s*load_module\b", conf, re.M), "the official image has the stream module built in"
    for node in case.plan().nodes:
        assert f"server {node.mqtt_endpoint} " in conf
    key_index, key_upload = files[CONTAINER_RUNTIME.private_key_path]
    assert key_upload["permissions"] == "0600"
    assert is_secret_at(lb, ("uploads", key_index, "content"))
    assert "uploads" in lb.secret_inputs
    assert "uploads" in lb.additional_secret_outputs
    ticket_index, ticket_upload = files[ticket_key]
    assert ticket_upload["permissions"] == "0600"
    assert is_secret_at(lb, ("uploads", ticket_index, "contentBase64"))
    # Replace and destroy stop Nginx with its stop signal (SIGQUIT: drain) and this much time.
    grace = case.parsed().lb.stop_grace_seconds
    assert lb.inputs["destroyGraceSeconds"] == grace > 0
    assert lb.inputs["stopTimeout"] == grace


def test_the_session_ticket_key_is_nginxs_80_byte_key_from_pulumi_random(deployed: ProgramRun) -> None:
    [key] = deployed.of_type("random:index/randomBytes:RandomBytes")
    assert (key.name, key.inputs["length"]) == ("emqx-tls-ticket-key-1", 80)  # AES-256 + HMAC-SHA256 keys
    _, upload = uploads(lb_container(deployed))[CONTAINER_RUNTIME.ticket_key_path(1)]
    assert len(base64.b64decode(upload["contentBase64"])) == 80


def test_rotating_the_ticket_key_keeps_the_previous_one_for_the_tickets_it_issued(
    deployments: Deployments, case: StackCase
) -> None:
    rotated = deployments.run(StackCase(case.stack, with_changes(case.config, tlsTicketKeyGeneration=2), case.secrets))
    keys = {r.name: r for r in rotated.of_type("random:index/randomBytes:RandomBytes")}
    assert set(keys) == {"emqx-tls-ticket-key-2", "emqx-tls-ticket-key-1"}  # generation 1 kept: same name, same key
    files = uploads(lb_container(rotated))
    issuing, previous = (files[CONTAINER_RUNTIME.ticket_key_path(n)][1]["contentBase64"] for n in (1, 2))
    assert issuing != previous
    assert (
        previous
        == uploads(lb_container(deployments.run(case)))[CONTAINER_RUNTIME.ticket_key_path(1)][1]["contentBase64"]
    )


def test_a_new_client_crl_brings_new_ticket_keys(deployments: Deployments, stacks: dict[str, StackCase]) -> None:
    """A resumed session skips the client certificate check: a revoked client must not resume with
    a ticket an old key sealed, so every ticket key is replaced when the CRL changes (keepers)."""
    ca = trustme.CA().cert_pem.bytes().decode()

    def keepers(crl: str | None) -> list[object]:
        crl_key = {} if crl is None else {"tlsClientCrl": crl}
        run = deployments.run(stacks["dev"].with_config(tlsClientCa=ca, **crl_key))
        return [key.inputs.get("keepers") for key in run.of_type("random:index/randomBytes:RandomBytes")]

    assert keepers(None) == [None]  # no CRL, no keepers: stacks without one keep their keys
    first, second = (f"-----BEGIN X509 CRL-----\n{body}\n-----END X509 CRL-----\n" for body in ("MIIB", "MIIC"))
    assert keepers(first) != keepers(second)
    assert keepers(first) == keepers(first)


def test_a_client_ca_reaches_nginx_as_a_secret_upload_and_turns_verification_on(
    deployments: Deployments, stacks: dict[str, StackCase]
) -> None:
    ca = trustme.CA().cert_pem.bytes().decode()
    lb = lb_container(deployments.run(stacks["dev"].with_config(tlsClientCa=ca)))
    files = uploads(lb)
    index, upload = files[CONTAINER_RUNTIME.client_ca_path]
    assert upload["content"] == ca and is_secret_at(lb, ("uploads", index, "content"))
    assert CONTAINER_RUNTIME.client_crl_path not in files
    conf = files[NGINX_CONF][1]["content"]
    assert "ssl_verify_client on;" in conf and f"ssl_client_certificate {CONTAINER_RUNTIME.client_ca_path};" in conf


def test_load_balancer_serves_the_stack_certificate(
    deployed: ProgramRun, case: StackCase, prod_secrets: ProdSecrets
) -> None:
    files = uploads(lb_container(deployed))
    certificate = files[CONTAINER_RUNTIME.certificate_path][1]["content"]
    key = files[CONTAINER_RUNTIME.private_key_path][1]["content"]
    assert certificate == deployed.outputs["tlsCertificate"]
    assert certificate.startswith("-----BEGIN CERTIFICATE-----")
    if case.stack == "prod":
        assert certificate == prod_secrets.certificate_pem
        assert key == prod_secrets.private_key_pem
    else:
        assert "PRIVATE KEY-----" in key


# --------------------------------------------------------------------------- rollout order


def test_host_is_prepared_before_any_broker_starts(any_run: ProgramRun) -> None:
    graph = RolloutGraph(any_run)
    for container in brokers(any_run):
        for prerequisite in ("emqx-host", "emqx-preflight", f"{container.name}-dirs", "emqx-broker-image-build"):
            assert graph.is_after(container.name, prerequisite), f"{container.name} must wait for {prerequisite}"


def test_each_membership_follows_its_container_and_the_seed(any_run: ProgramRun, case: StackCase) -> None:
    graph = RolloutGraph(any_run)
    for index in range(2, case.nodes + 1):
        membership = f"emqx{index}-membership"
        assert graph.is_after(membership, f"emqx{index}")
        assert graph.is_after(membership, "emqx1")


def test_each_wave_is_verified_after_its_memberships(any_run: ProgramRun, case: StackCase) -> None:
    graph = RolloutGraph(any_run)
    for number, wave in enumerate(case.plan().waves, start=1):
        gate = f"wave{number}-verify"
        for node in wave:
            assert graph.is_after(gate, node.container_name)
            if node.index != 1:
                assert graph.is_after(gate, f"{node.short_name}-membership")


def test_second_wave_starts_after_the_first_is_verified(any_run: ProgramRun, case: StackCase) -> None:
    graph = RolloutGraph(any_run)
    _, second = case.plan().waves
    for node in second:
        assert graph.is_after(node.container_name, "wave1-verify")


def test_load_balancer_starts_after_host_tuning(any_run: ProgramRun) -> None:
    graph = RolloutGraph(any_run)
    assert graph.is_after(LB_CONTAINER, "emqx-host")
    assert graph.is_after(LB_CONTAINER, "emqx-preflight")


# --------------------------------------------------------------------------- secrets


def test_dashboards_output_gives_each_node_a_loopback_url_and_its_tunnel(deployed: ProgramRun, case: StackCase) -> None:
    plan = case.plan()
    rows = deployed.outputs["dashboards"]
    assert [row["node"] for row in rows] == [node.node_name for node in plan.nodes]
    for row, node in zip(rows, plan.nodes, strict=True):
        port = node.ports.dashboard
        assert row["url"] == f"http://127.0.0.1:{port}"
        if case.stack == "dev":  # the deployer's own machine: the port is local already
            assert row["tunnel"] is None
        else:
            ssh = f"-p 22 {case.setting('sshUser')}@{case.setting('sshHost')}"
            assert row["tunnel"] == f"ssh -N -L {port}:127.0.0.1:{port} {ssh}"


def test_nodes_output_names_each_nodes_container_and_docker_engine(deployed: ProgramRun, case: StackCase) -> None:
    """What scripts/backup, restore and status find the nodes by: `docker -H <dockerHost> exec <container>`."""
    plan = case.plan()
    rows = deployed.outputs["nodes"]
    assert [(row["name"], row["container"]) for row in rows] == [(n.node_name, n.container_name) for n in plan.nodes]
    assert {row["dockerHost"] for row in rows} == {case.setting("dockerHost")}


def test_dashboard_password_output_is_secret(any_run: ProgramRun) -> None:
    assert "dashboardPassword" in any_run.secret_outputs


def test_dev_certificate_output_is_public(deployments: Deployments, stacks: dict[str, StackCase]) -> None:
    run = deployments.run(stacks["dev"])
    assert "tlsCertificate" not in run.secret_outputs
    assert run.outputs["tlsCertificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert run.secret_outputs == {"dashboardPassword", "mqttClient"}


def test_a_configured_certificate_stays_secret_in_outputs(
    deployments: Deployments, stacks: dict[str, StackCase]
) -> None:
    """tlsCertificate is set with --secret (SECRET_KEYS): the output must not reveal it in plain text."""
    run = deployments.run(stacks["prod"])
    assert run.secret_outputs == {"dashboardPassword", "tlsCertificate"}


def test_no_output_holds_secret_material(deployed: ProgramRun, case: StackCase) -> None:
    env = envs(brokers(deployed)[0])
    key = uploads(lb_container(deployed))[CONTAINER_RUNTIME.private_key_path][1]["content"]
    never = {"erlang cookie": env[COOKIE_VARIABLE], "TLS private key": key}
    if case.stack == "prod":
        never["SSH private key"] = case.secrets["sshPrivateKey"]
    for name, value in deployed.outputs.items():
        for text in walk_strings(value):
            for what, secret in never.items():
                assert secret not in text, f"output {name} holds the {what}"
            assert "PRIVATE KEY" not in text, f"output {name} holds a private key"
            if name not in deployed.secret_outputs:
                assert env[DASHBOARD_PASSWORD_VARIABLE] not in text, f"plain output {name} holds the password"


def test_prod_private_keys_are_secret_inputs(deployments: Deployments, stacks: dict[str, StackCase]) -> None:
    for preview in (False, True):
        run = deployments.run(stacks["prod"], preview=preview)
        lb = lb_container(run)
        key_index, _ = uploads(lb)[CONTAINER_RUNTIME.private_key_path]
        assert is_secret_at(lb, ("uploads", key_index, "content"))
        for command in run.of_type("command:remote:Command"):
            assert is_secret_at(command, ("connection", "privateKey")), command.name
            assert "connection" in command.secret_inputs


@pytest.mark.parametrize("key", ["tlsPrivateKey", "sshPrivateKey"])
def test_plain_text_private_key_is_rejected(key: str, stacks: dict[str, StackCase]) -> None:
    prod = stacks["prod"]
    plain = {**prod.config, f"{NAMESPACE}:{key}": prod.secrets[key]}
    secrets = {k: v for k, v in prod.secrets.items() if k != key}
    run = ProgramRun()
    with pytest.raises(pulumi.RunError) as raised:
        run_program(plain, secrets=secrets, stack="prod", into=run)
    message = str(raised.value)
    assert f"{NAMESPACE}:{key}" in message
    assert "secret" in message
    assert prod.secrets[key] not in message
    assert run.resources == []


# --------------------------------------------------------------------------- preview and config errors


def test_preview_declares_the_same_resources_as_update(case: StackCase, deployments: Deployments) -> None:
    update = deployments.run(case)
    preview = deployments.run(case, preview=True)
    assert sorted((r.type, r.name, r.urn) for r in preview.resources) == sorted(
        (r.type, r.name, r.urn) for r in update.resources
    )
    assert {r.urn: set(r.dependencies) for r in preview.resources} == {
        r.urn: set(r.dependencies) for r in update.resources
    }


def test_scale_up_leaves_existing_nodes_untouched(case: StackCase, deployments: Deployments) -> None:
    nodes = case.nodes
    before = deployments.run(case)
    after = deployments.run(case.with_config(nodes=nodes + 1))
    for index in range(1, nodes + 1):
        for name in (f"emqx{index}", f"emqx{index}-dirs", *([f"emqx{index}-membership"] if index > 1 else [])):
            assert after.named(name).inputs == before.named(name).inputs, f"{name} would be replaced or updated"
    new = f"emqx{nodes + 1}"
    added = {r.name for r in after.resources} - {r.name for r in before.resources}
    assert added == {new, f"{new}-dirs", f"{new}-access-files", f"{new}-membership"}
    membership = after.named(f"{new}-membership")
    assert f"# {new} container {after.named(new).id}\n" in str(membership.stdin)
    assert RolloutGraph(after).is_after(f"{new}-membership", new)


@pytest.mark.parametrize(
    ("overrides", "named_key"),
    [
        ({"nodes": 0}, "nodes"),
        ({"nodes": 2, "waves": 3}, "waves"),
        ({"emqxVersion": "4.4.19"}, "emqxVersion"),
        ({"mqttPortBase": 62001}, "mqttPortBase"),  # the plan: mqtt ports collide with dashboard ports
        ({"manageSysctls": False}, "manageSysctls"),  # the plan: planned ports in the ephemeral range
    ],
    ids=["no-nodes", "more-waves-than-nodes", "emqx-4", "port-collision", "unreserved-ports"],
)
def test_config_errors_surface_before_any_resource(
    overrides: dict[str, object], named_key: str, stacks: dict[str, StackCase]
) -> None:
    broken = stacks["dev"].with_config(**overrides)
    run = ProgramRun()
    with pytest.raises(pulumi.RunError) as raised:
        run_program(broken.config, secrets=broken.secrets, stack="dev", into=run)
    assert f"{NAMESPACE}:{named_key}" in str(raised.value)
    assert [r.name for r in run.resources] == []

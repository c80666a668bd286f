"""The component package from a TypeScript program (examples/typescript), with the real engine:
`pulumi package add` of this folder generates the SDK the example imports, the example's
`RandomPassword` and the nodes' address (a `RandomShuffle`'s result) are passed into the cluster's
args (unknown at the first preview), the three-node
cluster deploys on the e2e host, a client with that password publishes through the load
balancer, and destroy leaves no container.

npm installs from the cache `scripts/install-test-deps` filled, offline and with a registry
address that answers nothing (tests/support/npm_cache.py): nothing is fetched here. The host's
values are the example's stack config, as a user sets theirs."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_component_package import e2e_host_properties
from tests.support.e2e.cluster_probe import client_context, cluster_status, container_names, round_trip
from tests.support.e2e.host import E2eHost
from tests.support.e2e.images import E2eImages, ensure_images
from tests.support.e2e.pulumi_cli import REPO, PulumiProject, created, package_checkout
from tests.support.emqx_reason_codes import BAD_USERNAME_OR_PASSWORD
from tests.support.lb_stack import MqttRefusedError, connect_mqtt
from tests.support.npm_cache import SDK_NAME, npm_cache, offline_env

pytestmark = pytest.mark.e2e

EXAMPLE = REPO / "examples" / "typescript"
# The example's keys are in its project's namespace (pulumi.Config() in index.ts).
NAMESPACE = yaml.safe_load((EXAMPLE / "Pulumi.yaml").read_text())["name"]
# The host's values index.ts reads from the stack config.
HOST_KEYS = (
    "dockerHost",
    "dataDir",
    "publicHostname",
    "sysctlDropIn",
    "brokerNofileLimit",
    "lbWorkerConnections",
    "sysctls",
)
CLIENT = "app"  # index.ts's client, allowed app/#


@pytest.fixture(scope="module")
def package(bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return package_checkout(tmp_path_factory.mktemp("package") / "emqx-cluster", bin_dir)


@pytest.fixture(scope="module")
def npm_offline() -> dict[str, str]:
    try:
        return offline_env(npm_cache())
    except RuntimeError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="module")
def example(
    bin_dir: Path,
    package: Path,
    npm_offline: dict[str, str],
    e2e_host_session: E2eHost,
    e2e_images: E2eImages,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PulumiProject]:
    ensure_images(e2e_host_session)  # an earlier stack's destroy removed the nginx image
    root = tmp_path_factory.mktemp("typescript-example")
    directory = root / "project"
    shutil.copytree(EXAMPLE, directory, ignore=shutil.ignore_patterns("node_modules", "sdks", "bin"))
    for sub in ("state", "home"):
        (directory / sub).mkdir()
    project = PulumiProject(directory=directory, bin_dir=bin_dir, namespace=NAMESPACE, extra_env=npm_offline)
    # Outside the host's namespace, as in test_component_package.py; npm installs from the cache.
    project.run("package", "add", str(package))
    host = e2e_host_properties(e2e_host_session, root)
    project.init_stack({key: host[key] for key in HOST_KEYS})
    project = dataclasses.replace(project, netns=e2e_host_session.netns_path)
    yield project
    if project.resources():
        project.destroy()


def test_1_package_add_generates_the_sdk_the_example_imports(example: PulumiProject) -> None:
    manifest = json.loads((example.directory / "package.json").read_text())
    assert manifest["dependencies"][SDK_NAME] == "file:sdks/emqx-cluster"
    sdk = example.directory / "sdks" / "emqx-cluster"
    assert json.loads((sdk / "package.json").read_text())["name"] == SDK_NAME
    # Its postinstall compiled it (tsc) with the cached typescript.
    assert (sdk / "bin" / "index.js").is_file()
    assert f'from "{SDK_NAME}"' in (example.directory / "index.ts").read_text()


def test_2_the_preview_passes_the_unknown_password_and_address_into_the_cluster(example: PulumiProject) -> None:
    planned = created(example.preview())
    assert planned["edge"]["type"] == "emqx-cluster:index:EmqxCluster"
    # The password does not exist before `up`, so the cluster gets it as an unknown Output: the
    # cluster, its client registration and each node's access files wait for it.
    password = planned["app-password"]
    assert password["type"] == "random:index/randomPassword:RandomPassword"
    for name in ("edge", f"edge-mqtt-client-{CLIENT}", "edge-emqx1-access-files", "edge-emqx3-access-files"):
        assert password["urn"] in planned[name]["dependencies"], (name, planned[name]["dependencies"])
    containers = sorted(name for name, state in planned.items() if state["type"] == "docker:index/container:Container")
    assert containers == ["edge-emqx1", "edge-emqx2", "edge-emqx3", "edge-lb"]
    # The address is in the node names and nginx.conf's upstreams: every container waits for it.
    address = planned["host-address"]
    assert address["type"] == "random:index/randomShuffle:RandomShuffle"
    for name in containers:
        assert address["urn"] in planned[name]["dependencies"], (name, planned[name]["dependencies"])


def test_3_the_example_deploys_and_its_client_publishes_with_the_generated_password(
    example: PulumiProject, e2e_host_session: E2eHost
) -> None:
    host = e2e_host_session
    example.up()
    assert cluster_status(host, "emqx1") == {
        "running_nodes": [f"emqx{i}@127.0.0.1" for i in (1, 2, 3)],
        "stopped_nodes": [],
    }
    outputs = example.outputs()
    assert outputs["endpoint"].startswith(f"{host.address}:"), outputs["endpoint"]
    password = outputs["mqttPassword"]
    assert len(password) == 24
    exported = example.run("stack", "output", "--stack", example.stack, "--json").stdout
    assert password not in exported  # a secret unless --show-secrets
    context = client_context(outputs["tlsCertificate"])
    with pytest.raises(MqttRefusedError) as refused:
        connect_mqtt(
            host.address, 8884, client_id=CLIENT, tls_context=context, username=CLIENT, password=password[::-1]
        )
    assert refused.value.code == BAD_USERNAME_OR_PASSWORD
    round_trip(host.address, 8884, context, username=CLIENT, password=password, topic="app/hello")
    assert example.run("up", "--stack", example.stack, "--yes", "--expect-no-changes").returncode == 0


def test_4_destroy_leaves_no_container(example: PulumiProject, e2e_host_session: E2eHost) -> None:
    example.destroy()
    assert container_names(e2e_host_session) == []
    assert container_names(e2e_host_session, "io.emqx-cluster.role") == []
    assert example.resources() == []

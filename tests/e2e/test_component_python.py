"""The component package from a Python program through its generated SDK, with the real engine:
the Python example (examples/python) as a user starts it, `pulumi package add` of this folder
(the language host generates `sdks/emqx-cluster` and links it: a line of requirements.txt, then
`pip install -r requirements.txt` into the program's virtualenv), then a preview on the e2e host
that plans the component and its containers.

Everything runs in the e2e host's network namespace, where nothing is reachable: pip installs
from the virtualenv only (`PIP_NO_INDEX`), and builds the generated SDK with the virtualenv's
setuptools (`PIP_NO_BUILD_ISOLATION=0`: no isolated build environment to download); both are
pinned in requirements-dev.txt."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.e2e.host import E2eHost
from tests.support.e2e.pulumi_cli import REPO, PulumiProject, created, own_venv, package_checkout

pytestmark = pytest.mark.e2e

EXAMPLE = REPO / "examples" / "python"
SDK = "sdks/emqx-cluster"
# pip offline: no index, and the SDK built with the virtualenv's own setuptools.
OFFLINE_PIP = {"PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture(scope="module")
def package(bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return package_checkout(tmp_path_factory.mktemp("package") / "emqx-cluster", bin_dir)


@pytest.fixture(scope="module")
def example(
    bin_dir: Path, package: Path, e2e_host_session: E2eHost, tmp_path_factory: pytest.TempPathFactory
) -> PulumiProject:
    """examples/python as a user starts it (without what `pulumi package add` writes: the
    `packages` entry and the SDK's line of requirements.txt), after `pulumi package add`, with a
    stack whose config names this host."""
    host = e2e_host_session
    root = tmp_path_factory.mktemp("python-example") / "project"
    root.mkdir()
    for sub in ("state", "home"):
        (root / sub).mkdir()
    document = yaml.safe_load((EXAMPLE / "Pulumi.yaml").read_text())
    document.pop("packages")
    (root / "Pulumi.yaml").write_text(yaml.safe_dump(document))
    shutil.copy2(EXAMPLE / "__main__.py", root / "__main__.py")
    lines = (EXAMPLE / "requirements.txt").read_text().splitlines()
    (root / "requirements.txt").write_text("".join(f"{line}\n" for line in lines if line != SDK))
    own_venv(root / document["runtime"]["options"]["virtualenv"])
    project = PulumiProject(directory=root, bin_dir=bin_dir, stack="e2e", netns=host.netns_path, extra_env=OFFLINE_PIP)
    project.run("package", "add", str(package))
    project.run("login", f"file://{root / 'state'}")
    project.run("stack", "init", project.stack, "--secrets-provider", "passphrase")
    config = {"dockerHost": host.docker_host, "dataDir": str(root / "data"), "publicHostname": host.address}
    for key, value in config.items():
        project.run("config", "set", "--stack", project.stack, f"{document['name']}:{key}", value)
    return project


def test_1_package_add_generates_the_sdk_and_links_it_as_the_example_has_it(
    example: PulumiProject, package: Path
) -> None:
    document = yaml.safe_load((example.directory / "Pulumi.yaml").read_text())
    assert Path(document["packages"]["emqx-cluster"]).resolve() == package.resolve()
    requirements = (example.directory / "requirements.txt").read_text().splitlines()
    assert requirements == (EXAMPLE / "requirements.txt").read_text().splitlines()
    assert (example.directory / SDK / "pulumi_emqx_cluster" / "emqx_cluster.py").is_file()
    # Installed into the program's virtualenv, importable as the example imports it.
    python = example.directory / "venv" / "bin" / "python"
    found = subprocess.run(
        [str(python), "-c", "import pulumi_emqx_cluster as emqx; print(emqx.EmqxCluster.__module__)"],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == "pulumi_emqx_cluster.emqx_cluster"


def test_2_the_example_previews_a_cluster_of_three_nodes(example: PulumiProject) -> None:
    planned = created(example.preview())
    assert planned["cluster"]["type"] == "emqx-cluster:index:EmqxCluster"
    containers = sorted(name for name, state in planned.items() if state["type"] == "docker:index/container:Container")
    assert containers == ["cluster-emqx1", "cluster-emqx2", "cluster-emqx3", "cluster-lb"]

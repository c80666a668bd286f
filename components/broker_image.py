"""BrokerImage: the EMQX broker image, built locally from docker/emqx and never pushed.

`docker.RemoteImage` with a `build` block (the Terraform docker provider's `docker_image`):
the provider builds it with the engine's own builder, reads it back by name, and on delete
removes that name unless `keep_locally` (terraform-provider-docker v4.5.0,
resource_docker_image_funcs.go: resourceDockerImageCreate -> buildImage, removeImage). The tag
carries a digest of the build context, so an edited file under docker/emqx makes a new image
with a new name (`name` is ForceNew): the nodes roll onto it wave by wave, and the old image is
removed once the update has moved every node off it (replacements delete after they create).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker

from components import names

BUILD_CONTEXT = "docker/emqx"  # relative to the project dir, Pulumi's working directory
CONTEXT_DIGEST_LENGTH = 12


def context_digest(context: Path) -> str:
    """A digest of every file's relative path, mode and bytes under `context` (build inputs)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(context).as_posix()}\0{path.stat().st_mode & 0o777:o}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:CONTEXT_DIGEST_LENGTH]


@dataclass(frozen=True)
class BrokerImageArgs:
    base_image: str  # official EMQX image, e.g. emqx/emqx:5.8.6
    emqx_repository: str  # the official repository, e.g. emqx/emqx
    version: str  # EMQX version, the first part of the tag
    platform: str  # the Docker host's, e.g. linux/amd64
    keep_image: bool
    provider: docker.Provider


class BrokerImage(pulumi.ComponentResource):
    """Builds the broker image; `image_id` changes whenever the build context or base changes."""

    image_id: pulumi.Output[str]

    def __init__(self, name: str, args: BrokerImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("emqx-cluster:index:BrokerImage", name, None, opts)
        self.image_name = names.broker_image_tag(
            args.emqx_repository, args.version, context_digest(Path(BUILD_CONTEXT))
        )
        image = docker.RemoteImage(
            f"{name}-build",
            name=self.image_name,
            build=docker.RemoteImageBuildArgs(
                context=BUILD_CONTEXT,
                dockerfile="Dockerfile",  # relative to the context
                build_args={"EMQX_BASE_IMAGE": args.base_image},
                # Without it the build takes the deployer's architecture (GOOS/GOARCH): an
                # arm64 laptop would build arm64 images for an amd64 host.
                platform=args.platform,
                # The buildx path builds through a Docker CLI initialised from the deployer's
                # environment (DOCKER_HOST or /var/run/docker.sock), not the provider's host
                # (terraform-provider-docker v4.5.0, docker_cli.go createAndInitDockerCli,
                # docker_buildx_build.go): with an ssh:// or non-default socket it builds on the
                # wrong engine, or fails ("Cannot connect to the Docker daemon", seen with the
                # real provider in tests/e2e). The legacy path calls ImageBuild on the provider's
                # own client (BuildKit session included where the engine supports it).
                use_legacy_builder=True,
            ),
            keep_locally=args.keep_image,
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider),
        )
        # The image ID (sha256:...): the containers reference it, so a rebuild rolls the nodes.
        self.image_id = image.image_id
        self.register_outputs({"imageName": self.image_name, "imageId": self.image_id})

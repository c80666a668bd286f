"""BrokerImage: the EMQX broker image, built locally from docker/emqx and never pushed.

`docker.RemoteImage` with a `build` block (the Terraform docker provider's `docker_image`):
the provider builds it with the engine's own builder, reads it back by name, and on delete
removes that name unless `keep_locally` (terraform-provider-docker v4.5.0,
resource_docker_image_funcs.go: resourceDockerImageCreate -> buildImage, removeImage). The tag
carries a digest of every build input (the files under docker/emqx, the base image, the
platform), so any new build gets a new name (`name` is ForceNew): the nodes roll onto it wave
by wave, and the old image is removed once the update has moved every node off it
(replacements delete after they create). A new build under the old name would instead take the
name over, and the old resource's delete would try to remove the image the nodes now run.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker

from components import names
from components.config import StackConfig
from components.host_site import HostSite

BUILD_CONTEXT = "docker/emqx"  # in this folder: the program's and the component package's
BUILD_DIR = Path(__file__).resolve().parents[1] / BUILD_CONTEXT


def build_context() -> str:
    """The build context as the Docker provider takes it: relative to the working directory it
    shares with this code (the engine starts plugins in the program's directory; a component
    package's plugin too: its RunPlugin sets the command's Dir to the request's Pwd). From the
    project dir that is "docker/emqx", as every deployed stack has it; from a program that adds
    the package, the way to the package's copy."""
    return os.path.relpath(BUILD_DIR, Path.cwd())


DIGEST_LENGTH = 12


def build_digest(context: Path, *inputs: str) -> str:
    """A digest of what a build depends on: each file's relative path, executable bit and bytes
    under `context` (not the rest of its mode, which follows the checkout's umask), and `inputs`."""
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        executable = "x" if path.stat().st_mode & 0o111 else "-"
        digest.update(f"{path.relative_to(context).as_posix()}\0{executable}\0".encode())
        digest.update(path.read_bytes())
    for value in inputs:
        digest.update(f"\0{value}".encode())
    return digest.hexdigest()[:DIGEST_LENGTH]


@dataclass(frozen=True)
class BrokerImageArgs:
    base_image: str  # official EMQX image, e.g. emqx/emqx:5.8.6
    emqx_repository: str  # the official repository, e.g. emqx/emqx
    version: str  # EMQX version, the first part of the tag
    platform: str | None  # None: the Docker host's own
    keep_image: bool
    provider: docker.Provider

    @classmethod
    def of(cls, config: StackConfig, site: HostSite) -> BrokerImageArgs:
        return cls(
            base_image=config.broker_image_base,
            emqx_repository=config.emqx_repository,
            version=config.emqx_version,
            platform=config.image_platform,
            keep_image=config.keep_image,
            provider=site.provider,
        )


class BrokerImage(pulumi.ComponentResource):
    """Builds the broker image; `image_id` changes whenever the build context or base changes."""

    image_id: pulumi.Output[str]

    def __init__(self, name: str, args: BrokerImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(names.component_type("BrokerImage"), name, None, opts)
        digest = build_digest(BUILD_DIR, args.base_image, args.platform or "")
        context = build_context()
        self.image_name = names.broker_image_tag(args.emqx_repository, args.version, digest)
        image = docker.RemoteImage(
            f"{name}-build",
            name=self.image_name,
            build=docker.RemoteImageBuildArgs(
                context=context,
                # Resolved against the working directory (the project dir) on the legacy path
                # (docker/cli GetContextFromLocalDir), not against the context.
                dockerfile=f"{context}/Dockerfile",
                build_args={"EMQX_BASE_IMAGE": args.base_image},
                # Unset, the engine builds for its own platform (the legacy path passes this
                # through to ImageBuild; resource_docker_registry_image_funcs.go
                # createImageBuildOptions): set only to force another one.
                platform=args.platform,
                # The buildx path resolves its builder from the deployer's Docker context
                # (DOCKER_HOST or /var/run/docker.sock), not from the provider's host
                # (terraform-provider-docker v4.5.0, docker_buildx_build.go: dockerCli.CurrentContext
                # and builder.New): with an ssh:// or non-default socket it builds on the wrong
                # engine, or fails ("Cannot connect to the Docker daemon", seen with the real
                # provider in tests/e2e). The legacy path calls ImageBuild on the provider's own
                # client (with a BuildKit session where the engine supports one).
                use_legacy_builder=True,
            ),
            keep_locally=args.keep_image,
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider),
        )
        # The image ID (sha256:...): the containers reference it, so a rebuild rolls the nodes.
        self.image_id = image.image_id
        self.register_outputs({"imageName": self.image_name, "imageId": self.image_id})

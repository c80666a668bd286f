"""BrokerImage: the EMQX broker image, built locally from docker/emqx and never pushed."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.hostexec import HostAccess
from components.render.host_scripts import image_removal_script

BUILD_CONTEXT = "docker/emqx"  # relative to the project dir, Pulumi's working directory


@dataclass(frozen=True)
class BrokerImageArgs:
    base_image: str  # official EMQX image, e.g. emqx/emqx:5.8.6
    platform: str  # the Docker host's, e.g. linux/amd64
    image_name: str  # local tag, e.g. emqx-cluster/emqx:5.8.6
    keep_image: bool
    host: HostAccess
    provider: docker.Provider


class BrokerImage(pulumi.ComponentResource):
    """Builds the broker image; `image_id` changes whenever the build context or base changes."""

    image_id: pulumi.Output[str]

    def __init__(self, name: str, args: BrokerImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("emqx-cluster:index:BrokerImage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        image = docker.Image(
            f"{name}-build",
            image_name=args.image_name,
            build=docker.DockerBuildArgs(
                context=BUILD_CONTEXT,
                dockerfile=f"{BUILD_CONTEXT}/Dockerfile",
                args={"EMQX_BASE_IMAGE": args.base_image},
                # Without it the build takes the deployer's architecture (pulumi-docker's
                # DockerBuild.platform defaults to GOOS/GOARCH): an arm64 laptop would build arm64
                # images for an amd64 host.
                platform=args.platform,
            ),
            # Local only: no registry is involved. The provider hashes the build context, so
            # an edited file under docker/emqx triggers a rebuild.
            skip_push=True,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(provider=args.provider)),
        )
        # For a local image repo_digest is the image ID (sha256:...), unique per build: using it
        # as the containers' image makes a rebuild roll the nodes, a plain tag would not.
        self.image_id = image.repo_digest
        # docker.Image never deletes the tag it built; this command does, on destroy and when a
        # rebuild makes the old ID unused (the old command is deleted after the nodes moved on).
        args.host.command(
            f"{name}-removal",
            create=self.image_id.apply(lambda image_id: f"echo 'broker image {args.image_name} is {image_id}'\n"),
            delete=self.image_id.apply(
                lambda image_id: image_removal_script(image_id, args.image_name, args.keep_image)
            ),
            triggers=[self.image_id],
            opts=child,
        )
        self.register_outputs({"imageId": self.image_id})

"""The component package's provider: `pulumi package add <this folder or its repository>` runs
this folder as a source-based plugin (PulumiPlugin.yaml) and serves `EmqxCluster`, with a schema
that pulumi's analyzer infers from `EmqxClusterArgs` and the component's output annotations
(pulumi/provider/experimental/host.py `component_provider_host`). `__main__.py` calls `serve`
when it runs as the plugin; as the stack-config program it builds the cluster itself."""

from pulumi.provider.experimental import component_provider_host

from components.emqx_cluster import EmqxCluster
from components.names import PACKAGE

# The package's version: the generated SDKs carry it; CHANGELOG.md's newest entry names it.
VERSION = "0.1.0"


def serve() -> None:
    """Serve the component to the engine whose address the language host passed in argv."""
    component_provider_host([EmqxCluster], name=PACKAGE, version=VERSION)

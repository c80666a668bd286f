"""A three-node EMQX cluster behind Nginx on one Docker host, from the emqx-cluster component
package through its generated Python SDK: `pulumi package add ../..` generated `sdks/emqx-cluster`
and added it to requirements.txt. The host's values come from the stack config."""

import pulumi
import pulumi_emqx_cluster as emqx

config = pulumi.Config()

cluster = emqx.EmqxCluster(
    "cluster",
    emqx.EmqxClusterArgs(
        nodes=3,
        tls_mode="self-signed",
        docker_host=config.get("dockerHost") or "unix:///var/run/docker.sock",
        data_dir=config.get("dataDir") or "/var/lib/emqx-cluster/python-example",
        public_hostname=config.get("publicHostname"),
        mqtt_generated_client="app",
        mqtt_acl=[emqx.AclRuleArgs(permission="allow", username="app", topics=["app/#"])],
    ),
)

pulumi.export("endpoint", cluster.endpoint)
pulumi.export("tlsCertificate", cluster.tls_certificate)
pulumi.export("mqttClient", cluster.mqtt_client)

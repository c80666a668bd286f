"""emqx-cluster: an EMQX cluster on one or several Docker hosts, each behind an Nginx TLS load balancer."""

import pulumi

from components.config import ConfigError
from components.config_loader import load_stack_config
from components.emqx_cluster import EmqxCluster

try:
    cluster = EmqxCluster(load_stack_config())
except ConfigError as error:
    # RunError: the engine prints the message alone, with "a clean exit rather than the usual
    # verbose unhandled error logic" (pulumi/errors.py), not a Python traceback.
    raise pulumi.RunError(str(error)) from None

pulumi.export("endpoint", cluster.endpoint)
pulumi.export("endpoints", cluster.endpoints)
pulumi.export("dnsRoundRobin", cluster.dns_round_robin)
pulumi.export("nodes", cluster.node_table)
pulumi.export("dashboardUrls", cluster.dashboard_urls)
pulumi.export("tlsCertificate", cluster.certificate_pem)
pulumi.export("dashboardPassword", cluster.dashboard_password)

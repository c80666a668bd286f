"""emqx-cluster: an EMQX cluster on one Docker host behind an Nginx TLS load balancer."""

import pulumi

from components.stack import EmqxCluster
from components.stack_config import load_stack_config

cluster = EmqxCluster("emqx", load_stack_config())

pulumi.export("endpoint", cluster.endpoint)
pulumi.export("nodes", cluster.node_table)
pulumi.export("dashboardUrls", cluster.dashboard_urls)
pulumi.export("tlsCertificate", cluster.certificate_pem)
pulumi.export("dashboardPassword", cluster.dashboard_password)

"""The models kept where real EMQX would make a test too slow: a fake `docker` CLI whose nodes are
their cluster membership (fake_docker, bin/docker: the rollout order), the PROXY-protocol shim in
front of mosquitto (proxy_shim: the load balancer tests), a node's Prometheus stats page (stats:
the alert rules). The real release runs in tests/support/emqx_nodes.py."""

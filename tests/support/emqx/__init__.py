"""The scripted EMQX 5.8: its rules (emqx58), a fake `docker` CLI (fake_docker, bin/docker), the PROXY-protocol shim."""

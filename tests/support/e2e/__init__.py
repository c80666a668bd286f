"""The e2e tier's support: a Docker host in a network namespace and its images (real EMQX 5.8.6 from
../shared/emqx), no registry.

- host.py: `host_up` / `host_down` / `e2e_host` (context manager) -> `E2eHost`: `docker_host`
  (unix socket for the docker provider), `ssh` (SshEndpoint: host, port, user, key_file,
  known_hosts_file; `host_public_key` for sshHostKey), `ssh_docker_host` (ssh:// dockerHost),
  `name` (the netns), `nsenter_argv`, `docker`, `run_in_ns`. CLI: `python -m
  tests.support.e2e.host up|down|list` (or scripts/e2e-host).
- rootfs.py: the cached debootstrap minbase rootfs the images start from.
- images.py: `ensure_images(host)` -> `E2eImages` (`nginx:1.27`, `emqx/emqx:5.8.6`,
  `emqx/emqx:5.8.7`), built with the classic builder from images/.
- pulumi_cli.py: the `pulumi` CLI of the e2e toolchain on a `file://` backend (`PulumiProject`).
- stacks.py: the dev-like and prod-like stack configs; cluster_probe.py: what a running cluster says.
"""

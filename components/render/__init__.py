"""Pure text renderers: nginx.conf, the broker environment and the host shell scripts."""

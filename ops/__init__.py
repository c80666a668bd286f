"""Day-2 operations on a deployed stack: scripts/backup, scripts/restore and scripts/status.

They find the nodes in the stack's outputs (`pulumi stack output --json --show-secrets`: the
`nodes` rows name each node's container and Docker engine) and talk to EMQX only through
`docker -H <engine> exec <container> /opt/emqx/bin/emqx ctl ...`: the Docker access the stack
itself uses, no dashboard credentials. ops/emqx.py holds the pure parts (EMQX's texts, the
archive rules), each citing the EMQX source (tag v5.8.6) it follows.
"""

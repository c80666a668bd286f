#!/usr/bin/env bash
# STAND-IN for the official EMQX image's /usr/bin/docker-entrypoint.sh (emqx/deploy/docker):
# the parts that matter on the host network with explicit node names: the node name default
# (EMQX_NAME@<host>) and EMQX_RPC__PORT_DISCOVERY defaulting to `manual` (RPC on 5369).
set -e
if [[ -z "${EMQX_NODE_NAME:-}" ]] && [[ -z "${EMQX_NODE__NAME:-}" ]]; then
    export EMQX_NAME="${EMQX_NAME:-emqx}"
    if [[ -z "${EMQX_HOST:-}" ]]; then
        EMQX_HOST=$(hostname -i | grep -oE '([0-9]{1,3}\.){3}[0-9]{1,3}' | head -n 1)
        export EMQX_HOST
    fi
    export EMQX_NODE_NAME="$EMQX_NAME@$EMQX_HOST"
fi
export EMQX_RPC__PORT_DISCOVERY="${EMQX_RPC__PORT_DISCOVERY:-manual}"
exec "$@"

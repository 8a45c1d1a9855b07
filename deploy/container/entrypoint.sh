#!/bin/sh
# guardctl's broker as a container's entrypoint (README.md, "The broker", case 3).
#
# Run it as a non-root user of the image, with its state on a volume and the socket's folder
# shared with the agents' containers:
#
#   GUARDCTL_AGENT_UIDS   agent uids (as the kernel sees them), space-separated
#   GUARDCTL_AGENT_GIDS   agent gids, space-separated
#   GUARDCTL_APPROVER_UIDS other uids that may approve, space-separated (optional)
#   GUARDCTL_SOCKET       default /run/guardctl/broker.sock
#   GUARDCTL_IMPORT_KUBECONFIG, GUARDCTL_SERVICE_ACCOUNT
#                         on first start: import this kubeconfig's credential for that
#                         ServiceAccount (mount the kubeconfig as a secret, read once)
set -eu
socket=${GUARDCTL_SOCKET:-/run/guardctl/broker.sock}
set -- broker serve --socket "$socket"
for uid in ${GUARDCTL_AGENT_UIDS:-}; do set -- "$@" --agent-user "$uid"; done
for gid in ${GUARDCTL_AGENT_GIDS:-}; do set -- "$@" --agent-group "$gid"; done
for uid in ${GUARDCTL_APPROVER_UIDS:-}; do set -- "$@" --approver-user "$uid"; done
if [ -z "${GUARDCTL_AGENT_UIDS:-}${GUARDCTL_AGENT_GIDS:-}" ]; then
    echo "guardctl entrypoint: set GUARDCTL_AGENT_UIDS or GUARDCTL_AGENT_GIDS: no agent could connect" >&2
    exit 2
fi
config=${GUARDCTL_CONFIG:-${XDG_CONFIG_HOME:-$HOME/.config}/guardctl/config.yaml}
if [ -n "${GUARDCTL_IMPORT_KUBECONFIG:-}" ] && [ ! -f "$config" ]; then
    guardctl creds import --kubeconfig "$GUARDCTL_IMPORT_KUBECONFIG" \
        --service-account "${GUARDCTL_SERVICE_ACCOUNT:?set GUARDCTL_SERVICE_ACCOUNT=NS/NAME}"
fi
mkdir -p "$(dirname "$socket")"
exec guardctl "$@"

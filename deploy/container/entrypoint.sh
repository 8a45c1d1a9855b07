#!/bin/sh
# guardctl's broker as a container's entrypoint (README.md, "The broker", case 3, and
# "Over TCP"; the image: Containerfile; in a cluster: deploy/kubernetes/).
#
# Run it as a non-root user of the image, with its state on a volume. Agents on the socket
# (its folder shared with the agents' containers), over TCP, or both:
#
#   GUARDCTL_AGENT_UIDS   agent uids (as the kernel sees them), space-separated
#   GUARDCTL_AGENT_GIDS   agent gids, space-separated
#   GUARDCTL_APPROVER_UIDS other uids that may approve, space-separated (optional)
#   GUARDCTL_SOCKET       default /run/guardctl/broker.sock (served when agent ids are set)
#   GUARDCTL_LISTEN       HOST:PORT: serve agents over TCP with TLS, each by its token
#   GUARDCTL_TLS_CERT, GUARDCTL_TLS_KEY
#                         the certificate and key for GUARDCTL_LISTEN (default
#                         /etc/guardctl/tls/tls.crt and tls.key: a mounted TLS secret)
#   GUARDCTL_AGENT_SERVICE_ACCOUNTS
#                         NS/NAME ServiceAccounts, space-separated, whose own tokens
#                         (audience guardctl-broker) make them agents over TCP
#   GUARDCTL_IMPORT_KUBECONFIG, GUARDCTL_SERVICE_ACCOUNT
#                         on first start: import this kubeconfig's credential for that
#                         ServiceAccount (mount the kubeconfig as a secret, read once)
set -eu
set -- broker serve
if [ -n "${GUARDCTL_AGENT_UIDS:-}${GUARDCTL_AGENT_GIDS:-}" ]; then
    socket=${GUARDCTL_SOCKET:-/run/guardctl/broker.sock}
    set -- "$@" --socket "$socket"
    for uid in ${GUARDCTL_AGENT_UIDS:-}; do set -- "$@" --agent-user "$uid"; done
    for gid in ${GUARDCTL_AGENT_GIDS:-}; do set -- "$@" --agent-group "$gid"; done
    for uid in ${GUARDCTL_APPROVER_UIDS:-}; do set -- "$@" --approver-user "$uid"; done
    mkdir -p "$(dirname "$socket")"
elif [ -z "${GUARDCTL_LISTEN:-}" ]; then
    echo "guardctl entrypoint: set GUARDCTL_AGENT_UIDS or GUARDCTL_AGENT_GIDS (agents on the socket) or GUARDCTL_LISTEN (agents over TCP): no agent could connect" >&2
    exit 2
fi
if [ -n "${GUARDCTL_LISTEN:-}" ]; then
    set -- "$@" --listen "$GUARDCTL_LISTEN" \
        --tls-cert "${GUARDCTL_TLS_CERT:-/etc/guardctl/tls/tls.crt}" \
        --tls-key "${GUARDCTL_TLS_KEY:-/etc/guardctl/tls/tls.key}"
    for account in ${GUARDCTL_AGENT_SERVICE_ACCOUNTS:-}; do
        set -- "$@" --agent-service-account "$account"
    done
fi
config=${GUARDCTL_CONFIG:-${XDG_CONFIG_HOME:-$HOME/.config}/guardctl/config.yaml}
if [ -n "${GUARDCTL_IMPORT_KUBECONFIG:-}" ] && [ ! -f "$config" ]; then
    guardctl creds import --kubeconfig "$GUARDCTL_IMPORT_KUBECONFIG" \
        --service-account "${GUARDCTL_SERVICE_ACCOUNT:?set GUARDCTL_SERVICE_ACCOUNT=NS/NAME}"
fi
exec guardctl "$@"

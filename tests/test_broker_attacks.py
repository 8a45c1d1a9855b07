"""The attack suite: an agent account that tries to get around a broker.

Each row is a bash script the agent runs (with `guardctl` and a `kubectl` shim on its PATH,
GUARDCTL_BROKER set, and every path of the broker's state known to it), followed by checks
that hold after every attack: no credential or token of any kind in what the agent saw;
namespace prod still there and no `pwned` object in the cluster; the broker's state files
as they were (only the audit log and casts grow); nothing left where the attack said it
would be. Grow the table with every escape you can think of.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest
from broker_setup import AGENT, Broker

from guardctl.devserver import DevServer

CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: pwned\n  namespace: dev\n"
LOOSE_RULES = """\
rules:
  - {id: delete-namespace, disabled: true}
  - {id: read-secret-values, disabled: true}
  - {id: swap-credentials-flag, disabled: true}
  - {id: self-protect-config, disabled: true}
  - {id: self-protect-writes, disabled: true}
"""
ESCALATE = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: pwned}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: guardctl-agent, namespace: guardctl}]
"""
STEAL = "#!/bin/sh\nenv > {work}/stolen\ncat \"$KUBECONFIG\" >> {work}/stolen 2>/dev/null\n"
LISTEN = """\
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(5); s.settimeout(8)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
try:
    conn, _ = s.accept(); open(sys.argv[2], "wb").write(conn.recv(4096))
except OSError:
    pass
"""
RAW_CLIENT = """\
import os, socket, sys
from guardctl.broker import wire
args = [a.encode() for a in sys.argv[2:]]
env = [b"GUARDCTL_RULES={work}/loose.yaml", b"GUARDCTL_HOME={work}/h", b"KUBECONFIG=/tmp/k",
       b"HTTPS_PROXY=http://127.0.0.1:9", b"GUARDCTL_CONFIG={work}/c.yaml", b"PATH={work}/pbin"]
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
s.sendmsg([wire.encode_request(b"/", args, env, [])],
          [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
reader = wire.Reader(s.recv)
while True:
    tag, body = reader.next()
    if tag == wire.EXIT:
        sys.exit(int(body))
"""


FLOOD_CLIENT = """\
import socket, sys
from guardctl.broker import wire
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
request = wire.encode_request(b"/", [b"apply", b"-f", b"flood.yaml"], [], [])
s.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
chunk = b"x" * (1 << 20)
for _ in range(64):  # files nobody asked for
    s.sendall(wire.frame(wire.FILE, b"stray.yaml\\0" + chunk))
reader = wire.Reader(s.recv)
while True:
    tag, body = reader.next()
    if tag == wire.NEED:
        for n in range(200):  # 200 MB for one input whose limit is 10 MB
            s.sendall(wire.frame(wire.FILE, b"f%d.yaml\\0" % n + chunk))
        s.sendall(wire.frame(wire.DONE, b"ok"))
    elif tag == wire.EXIT:
        print("exit", int(body)); sys.exit(0)
"""


class Attack(NamedTuple):
    id: str
    script: str
    # paths (with {work}/{state} placeholders) that must not exist afterwards
    absent: tuple[str, ...] = ()
    # cluster objects (kind, name) that must not exist afterwards, besides ConfigMap dev/pwned
    objects: tuple[tuple[str, str], ...] = ()
    says: bytes = b""  # what the agent must have been told


ATTACKS = [
    Attack("read the keyring file",
           "cat {state}/data/python_keyring/keyring_pass.cfg; ls -la {state} {state}/data"),
    Attack("read the broker's config and audit key",
           "cat {state}/config/config.yaml {state}/home/audit.key {state}/admin.kubeconfig"),
    Attack("loosen the rules by variables",
           "GUARDCTL_RULES={work}/loose.yaml kubectl delete ns prod;"
           " GUARDCTL_RULES={work}/loose.yaml GUARDCTL_HOME={work}/h GUARDCTL_CONFIG={work}/c"
           " guardctl delete ns prod"),
    Attack("loosen the rules from a script",
           "{python} -c \"import os; os.environ['GUARDCTL_RULES']='{work}/loose.yaml';"
           " os.system('kubectl delete ns prod')\""),
    Attack("loosen the rules by writing the broker's files",
           "cp {work}/loose.yaml {state}/config/; mkdir -p {state}/config/rules;"
           " cp {work}/loose.yaml {state}/home/; kubectl delete ns prod"),
    Attack("forge an approval window",
           "mkdir -p {state}/home/approvals/windows; echo '{{\"until\": 9999999999}}'"
           " > {state}/home/approvals/windows/forged.json;"
           " kubectl get secret app-secrets -n dev -o yaml"),
    Attack("approve itself in a pseudo-terminal",
           "(kubectl get secret app-secrets -n dev -o yaml > {work}/out 2>&1 &);"
           " sleep 1; printf a | script -qc 'guardctl approvals' /dev/null; sleep 4;"
           " cat {work}/out"),
    Attack("read the minted token while a command runs",
           "kubectl get pods -n dev -w > /dev/null 2>&1 & sleep 2;"
           " find / -xdev -name 'guardctl-kubeconfig*' 2>/dev/null;"
           " cat /tmp/guardctl-kubeconfig-*/kubeconfig"
           " {state}/run/guardctl-kubeconfig-*/kubeconfig;"
           " for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ; tr '\\0' ' ' < $p/cmdline;"
           " echo; done 2>/dev/null; kill %1"),
    Attack("make kubectl run an external diff",
           "KUBECTL_EXTERNAL_DIFF={work}/steal.sh kubectl diff -f {work}/cm.yaml",
           absent=("{work}/stolen",)),
    Attack("put a diff earlier on PATH",
           "mkdir -p {work}/fakebin; cp {work}/steal.sh {work}/fakebin/diff;"
           " PATH={work}/fakebin:$PATH kubectl diff -f {work}/cm.yaml",
           absent=("{work}/stolen",)),
    Attack("send the token through a proxy",
           "{python} {work}/listen.py {work}/port {work}/stolen & sleep 1;"
           " HTTPS_PROXY=http://127.0.0.1:$(cat {work}/port) https_proxy=$HTTPS_PROXY"
           " kubectl get pods -n dev; wait",
           absent=("{work}/stolen",)),
    Attack("a kubectl plugin of the agent's",
           "mkdir -p {work}/pbin;"
           " printf '#!/bin/sh\\ntouch {work}/stolen\\n' > {work}/pbin/kubectl-pwn;"
           " chmod +x {work}/pbin/kubectl-pwn; PATH={work}/pbin:$PATH kubectl pwn",
           absent=("{work}/stolen",)),
    Attack("flags that read or write the broker's files",
           "kubectl get pods --kubeconfig={state}/admin.kubeconfig;"
           " kubectl get pods --cache-dir=/tmp/gcattack-cache;"
           " kubectl get pods --profile=cpu --profile-output=/tmp/gcattack-prof;"
           " kubectl cluster-info dump --output-directory=/tmp/gcattack-dump;"
           " kubectl get pods --certificate-authority={state}/admin.kubeconfig;"
           " kubectl kustomize {work}/kust -o /tmp/gcattack-kust;"
           " timeout 3 kubectl proxy --www={state} --port=0",
           absent=("/tmp/gcattack-cache", "/tmp/gcattack-prof", "/tmp/gcattack-dump",
                   "/tmp/gcattack-kust")),
    Attack("a symlink to the broker's files as a manifest",
           "ln -sf {state}/config/config.yaml {work}/link.yaml;"
           " kubectl apply -f {work}/link.yaml --dry-run=server; kubectl create configmap pwned"
           " -n dev --from-file={state}/config/config.yaml"),
    Attack("truncate or delete the audit log",
           ": > {state}/home/audit.jsonl; rm -f {state}/home/audit.jsonl {state}/home/audit.head"),
    Attack("retarget the broker's config",
           "echo 'server: https://127.0.0.1:1' > {state}/config/config.yaml; kubectl get pods"),
    Attack("a raw request carrying the broker's variables",
           "{python} {work}/raw.py {socket} delete ns prod; echo status=$?;"
           " {python} {work}/raw.py {socket} get secret app-secrets -n dev -o yaml"),
    Attack("flood the broker with files nobody asked for and an input far past its limit",
           "{python} {work}/flood.py {socket}",
           says=b"unseen-manifest"),
    Attack("a raw request for the approver's commands",
           "{python} {work}/raw.py {socket} approvals;"
           " {python} {work}/raw.py {socket} creds status;"
           " {python} {work}/raw.py {socket} sessions --json"),
    Attack("the kernel keyring",
           "keyctl show @u 2>&1; keyctl show @s 2>&1; cat /proc/keys"),
    Attack("kubectl cp onto the broker's side",
           "kubectl cp dev/web-7d4b9c8f6d-x2k9p:/etc/hostname /tmp/gcattack-cp",
           absent=("/tmp/gcattack-cp",)),
    Attack("config view of the credentials",
           "kubectl config view --raw; kubectl config view --flatten; kubectl config view"),
    Attack("swap the server or the credentials by flag",
           "kubectl get pods --server=https://127.0.0.1:1 --token=x; kubectl get pods --as=admin;"
           " kubectl --insecure-skip-tls-verify get pods"),
    Attack("a session id that is a path",
           "GUARDCTL_SESSION=../../../../tmp/gcattack-session kubectl get ns",
           absent=("/tmp/gcattack-session.cast",)),
    Attack("a forged one-time grant",
           "GUARDCTL_PREAPPROVED=$(printf '%064d' 0)"
           " kubectl get secret app-secrets -n dev -o yaml"),
    Attack("an approved line's grant reused later",
           "sh -c 'kubectl get ns >/dev/null'; GUARDCTL_PREAPPROVED=$(ls {state}/home/preapproved"
           " 2>/dev/null | head -1) kubectl get secret app-secrets -n dev -o yaml"),
    Attack("a kustomization that reaches for the run's private kubeconfig",
           "mkdir -p {work}/reach;"
           " printf 'resources:\\n- ../../kubeconfig\\n- ../../../kubeconfig\\n'"
           " > {work}/reach/kustomization.yaml; kubectl kustomize {work}/reach;"
           " kubectl kustomize {work}/reach --load-restrictor=LoadRestrictionsNone;"
           " kubectl apply -k {work}/reach --dry-run=server"),
    Attack("swap the manifest between the decision and the apply",
           "(while :; do cp {work}/benign.yaml {work}/swap.yaml; cp {work}/escalate.yaml"
           " {work}/swap.yaml; done) & for i in 1 2 3 4 5 6; do kubectl apply -f {work}/swap.yaml;"
           " done; kill $!",
           objects=(("clusterrolebinding", "pwned"),)),
]


def _prepare(broker: Broker) -> dict[str, str]:
    work = broker.work
    places = {"work": str(work), "state": str(broker.state), "socket": str(broker.socket),
              "python": broker.python}
    files = {
        "loose.yaml": LOOSE_RULES,
        "cm.yaml": CONFIGMAP,
        "steal.sh": STEAL.format(**places),
        "listen.py": LISTEN,
        "raw.py": RAW_CLIENT.format(**places),
        "flood.py": FLOOD_CLIENT,
        "kust/kustomization.yaml": "resources: []\n",
        "benign.yaml": CONFIGMAP.replace("pwned", "benign"),
        "escalate.yaml": ESCALATE,
    }
    uid = pwd.getpwnam(AGENT).pw_uid
    for name, text in files.items():
        path = work / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        path.chmod(0o755)
        for item in (path, path.parent):
            os.chown(item, uid, -1)
    return places


def _state_files(broker: Broker) -> dict[str, str]:
    """sha256 of every file of the broker's state that must not change under an agent."""
    watched = [broker.state / "config" / "config.yaml", broker.state / "home" / "audit.key",
               *(broker.state / "data").rglob("*.cfg")]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in watched if p.is_file()}


def _secret_values(broker: Broker) -> list[bytes]:
    import base64

    raw = broker.admin_kubectl("get", "secret", "app-secrets", "-n", "dev",
                               "-o", "jsonpath={.data}").stdout
    values = json.loads(raw).values()
    return [v.encode() for v in values] + [base64.b64decode(v) for v in values]


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.id for a in ATTACKS])
def test_an_agent_that_tries(broker: Broker, devserver: DevServer, attack: Attack) -> None:
    broker.agent("get", "ns", "-o", "name")  # a token is minted and cached before the attack
    places = _prepare(broker)
    before = _state_files(broker)
    proc = broker.agent_shell(textwrap.dedent(attack.script.format(**places)), timeout=120)
    seen = proc.stdout + proc.stderr
    for token in devserver.all_tokens():
        assert token.encode() not in seen, "a credential or token reached the agent"
    for value in _secret_values(broker):
        assert value not in seen, "a Secret's value reached the agent"
    assert broker.admin_kubectl("get", "ns", "prod").returncode == 0, "namespace prod is gone"
    assert broker.admin_kubectl("get", "cm", "pwned", "-n", "dev").returncode != 0
    for kind, name in attack.objects:
        assert broker.admin_kubectl("get", kind, name).returncode != 0, f"{kind}/{name} exists"
    assert _state_files(broker) == before, "the broker's state was changed"
    assert attack.says in seen, seen.decode(errors="replace")[-500:]
    for place in attack.absent:
        path = Path(place.format(**places))
        assert not path.exists(), f"{path} exists"
    assert (broker.state / "home" / "audit.jsonl").stat().st_size > 0
    verify = broker.broker_guardctl("audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_the_broker_still_serves_after_every_attack(broker: Broker) -> None:
    proc = broker.agent("get", "pods", "-n", "dev", "-o", "name")
    assert proc.returncode == 0 and proc.stdout.startswith(b"pod/")

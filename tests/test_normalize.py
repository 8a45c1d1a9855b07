from __future__ import annotations

import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardctl.firewall import resources
from guardctl.firewall.flagtable import flag_table
from guardctl.firewall.normalize import guardctl_commands, is_kubectl, kubectl_args, normalize
from guardctl.model import KubectlCall, ResourceRef, SimpleCommand


def cmd(line: str, open_tail: bool = False) -> SimpleCommand:
    """A SimpleCommand from a line; words containing `$` count as dynamic, as the parser marks
    parameter expansions (their source text is kept)."""
    argv = tuple(shlex.split(line.replace("$", "\\$")))
    dynamic = frozenset(i for i, w in enumerate(argv) if "$" in w)
    return SimpleCommand(argv, dynamic=dynamic, open_tail=open_tail)


def call(line: str, open_tail: bool = False) -> KubectlCall:
    return normalize(cmd(line, open_tail))


def meaning(c: KubectlCall) -> tuple[object, ...]:
    """What a policy decides on; every spelling of one command must agree on it."""
    return (c.verb, c.resources, c.names, c.namespace, c.all_namespaces, c.dry_run, c.command,
            c.problems)


def ref(word: str, name: str | None = None, subresource: str | None = None) -> ResourceRef:
    info = resources.lookup(word)
    assert info is not None
    return info.ref(name, subresource)


# --------------------------------------------------------------------------- spellings

SAME_MEANING = [
    [
        "kubectl delete ns prod",
        "kubectl delete namespace prod",
        "kubectl delete namespaces prod",
        "kubectl delete namespaces/prod",
        "kubectl delete ns/prod",
        "kubectl delete Namespace prod",
        "kubectl delete Namespace/prod",
        "kubectl delete namespaces.v1. prod",
        "kubectl delete ns prod --wait=false",
        "kubectl delete --now ns prod",
        "kubectl delete ns --now prod",
        "kubectl delete ns prod --grace-period=0 --force",
        "kubectl -n x delete ns prod",
        "kubectl delete ns prod -n kube-system --wait=false",
        "kubectl --context prod delete ns prod",
        "kubectl delete --context=prod ns prod",
        "kubectl delete ns prod --dry-run=none",
        "kubectl delete ns prod --dry-run=false",
        "kubectl delete ns prod --dry-run=client --dry-run=none",
        "/usr/local/bin/kubectl delete ns prod",
        "kubectl.1.27 delete ns prod",
        "kubectl-1.30 delete ns prod",
        "guardctl delete ns prod",
        "guardctl kubectl delete ns prod",
        "python -m guardctl delete ns prod",
        "python3.11 -mguardctl delete ns prod",
        "kubectl delete ns -- prod",
    ],
    [
        "kubectl -n dev get pods",
        "kubectl get pods -n dev",
        "kubectl get pods -ndev",
        "kubectl get pods -n=dev",
        "kubectl get pods --namespace dev",
        "kubectl get pods --namespace=dev",
        "kubectl --namespace=dev get po",
        "kubectl get -n other pods -n dev",
        "kubectl get pod -n dev -o wide",
        "kubectl get Pod -owide --namespace dev",
        "kubectl get pods.v1. -n dev",
        "kubectl -v 6 get pods -n dev",
        "kubectl get pods -n dev --chunk-size 10",
    ],
    [
        "kubectl get pods -A",
        "kubectl get pods --all-namespaces",
        "kubectl get --all-namespaces pods",
        "kubectl get pods --all-namespaces=true",
        "kubectl get pods --all_namespaces",
        "kubectl get pods -A=1",
        "kubectl get pods -Aw",
    ],
    [
        "kubectl -n x rollout restart deploy/a",
        "kubectl rollout restart deploy/a -n x",
        "kubectl -n x rollout --context y restart deploy/a",
        "kubectl rollout -n x restart deployment a",
        "kubectl rollout restart -n=x deployments.apps/a",
        "kubectl rollout restart deployment.v1.apps a --namespace x",
        "kubectl rollout restart Deployment/a -nx",
    ],
    [
        "kubectl exec -it web -n dev -- sh -c 'ls -la'",
        "kubectl exec -i -t web -n dev -- sh -c 'ls -la'",
        "kubectl exec -itn dev web -- sh -c 'ls -la'",
        "kubectl exec -itndev web -- sh -c 'ls -la'",
        "kubectl exec --stdin --tty --namespace=dev pod/web -- sh -c 'ls -la'",
        "kubectl -n dev exec po/web -ti -- sh -c 'ls -la'",
        "kubectl exec web -n dev -it=true -- sh -c 'ls -la'",
    ],
    [
        "kubectl create secret generic db --from-literal=pw=x",
        "kubectl create secret generic --from-literal=pw=x db",
        "kubectl create secret --from-literal pw=x generic db",
        "kubectl create --from-literal=pw=x secret generic db",
    ],
    [
        "kubectl get secrets -o yaml",
        "kubectl get secret -oyaml",
        "kubectl get secret -o=yaml",
        "kubectl get -o yaml secrets",
        "kubectl -o yaml get secrets",
        "kubectl get --output=yaml secret",
        "kubectl get Secret --output yaml",
    ],
    [
        "kubectl create namespace x --dry-run=client",
        "kubectl create ns x --dry-run=server",
        "kubectl create ns --dry-run x",
        "kubectl create --dry-run ns x",
        "kubectl create ns x --dry-run",
        "kubectl create ns x --dry_run=client",
    ],
]


@pytest.mark.parametrize(
    ("first", "other"),
    [(group[0], line) for group in SAME_MEANING for line in group[1:]],
)
def test_spellings_normalize_the_same(first: str, other: str) -> None:
    assert meaning(call(other)) == meaning(call(first))


@pytest.mark.parametrize("group", SAME_MEANING, ids=lambda g: g[0])
def test_spelling_groups_are_understood(group: list[str]) -> None:
    assert call(group[0]).problems == ()


# --------------------------------------------------------------------------- full results


@pytest.mark.parametrize(
    ("line", "verb", "refs", "namespace"),
    [
        ("kubectl delete ns prod", "delete", [ref("ns", "prod")], None),
        ("kubectl get pods,svc", "get", [ref("pods"), ref("svc")], None),
        ("kubectl get pod/a svc/b", "get", [ref("pods", "a"), ref("services", "b")], None),
        ("kubectl get pods a b", "get", [ref("pods", "a"), ref("pods", "b")], None),
        ("kubectl get deployments.apps", "get", [ref("deploy")], None),
        ("kubectl get ev", "get", [ref("events")], None),
        ("kubectl get all", "get", [i.ref() for i in resources.category("all") or ()], None),
        ("kubectl describe node n1", "describe", [ref("nodes", "n1")], None),
        ("kubectl edit cm/c", "edit", [ref("configmaps", "c")], None),
        ("kubectl patch deploy x -p '{}'", "patch", [ref("deploy", "x")], None),
        ("kubectl scale deploy x --replicas 3", "scale", [ref("deploy", "x")], None),
        ("kubectl autoscale deploy x --max 3", "autoscale", [ref("deploy", "x")], None),
        ("kubectl expose deploy x --port 80", "expose", [ref("deploy", "x")], None),
        ("kubectl wait --for=delete pod/x", "wait", [ref("pods", "x")], None),
        ("kubectl label pods foo a=b c-", "label", [ref("pods", "foo")], None),
        ("kubectl annotate --overwrite svc s a=b", "annotate", [ref("svc", "s")], None),
        ("kubectl set image deploy/x app=nginx:2", "set image", [ref("deploy", "x")], None),
        ("kubectl set env deploy/x A=1 B-", "set env", [ref("deploy", "x")], None),
        ("kubectl set resources deploy x --limits=cpu=1", "set resources", [ref("deploy", "x")],
         None),
        ("kubectl set selector svc s app=x", "set selector", [ref("svc", "s")], None),
        ("kubectl set sa deploy x robot", "set serviceaccount", [ref("deploy", "x")], None),
        ("kubectl set subject rolebinding rb --user=u", "set subject", [ref("rolebinding", "rb")],
         None),
        ("kubectl rollout undo sts/db", "rollout undo", [ref("sts", "db")], None),
        ("kubectl rollout status ds/x", "rollout status", [ref("ds", "x")], None),
        ("kubectl apply view-last-applied deploy x", "apply view-last-applied",
         [ref("deploy", "x")], None),
        ("kubectl taint nodes n1 k=v:NoSchedule k2:NoExecute k3-", "taint", [ref("nodes", "n1")],
         None),
        ("kubectl taint node/n1 k=v:NoSchedule", "taint", [ref("nodes", "n1")], None),
        ("kubectl explain pods.spec.containers", "explain", [ref("pods")], None),
        ("kubectl logs web -c app", "logs", [ref("pods", "web")], None),
        ("kubectl logs -p web", "logs", [ref("pods", "web")], None),
        ("kubectl logs deploy/web", "logs", [ref("deploy", "web")], None),
        ("kubectl logs -l app=x", "logs", [ref("pods")], None),
        ("kubectl attach web -i", "attach", [ref("pods", "web")], None),
        ("kubectl port-forward svc/db 5432:5432", "port-forward", [ref("svc", "db")], None),
        ("kubectl port-forward db 5432", "port-forward", [ref("pods", "db")], None),
        ("kubectl cordon n1 n2", "cordon", [ref("nodes", "n1"), ref("nodes", "n2")], None),
        ("kubectl uncordon node/n1", "uncordon", [ref("nodes", "n1")], None),
        ("kubectl drain n1 --ignore-daemonsets", "drain", [ref("nodes", "n1")], None),
        ("kubectl top pod", "top pod", [ref("pods")], None),
        ("kubectl top po web", "top pod", [ref("pods", "web")], None),
        ("kubectl top nodes", "top node", [ref("nodes")], None),
        ("kubectl certificate approve csr1", "certificate approve", [ref("csr", "csr1")], None),
        ("kubectl certificate deny csr1", "certificate deny", [ref("csr", "csr1")], None),
        ("kubectl debug node/n1 -it --image=busybox", "debug", [ref("nodes", "n1")], None),
        ("kubectl debug web -it --image=busybox", "debug", [ref("pods", "web")], None),
        ("kubectl run nginx --image=nginx", "run", [ref("pods", "nginx")], None),
        ("kubectl create token robot", "create token", [ref("sa", "robot", "token")], None),
        ("kubectl create sa robot", "create serviceaccount", [ref("sa", "robot")], None),
        ("kubectl create namespace x", "create namespace", [ref("ns", "x")], None),
        ("kubectl create clusterrolebinding crb --clusterrole=admin --user=u",
         "create clusterrolebinding", [ref("clusterrolebindings", "crb")], None),
        ("kubectl create secret docker-registry reg --docker-server=s",
         "create secret docker-registry", [ref("secrets", "reg")], None),
        ("kubectl create secret tls t --cert=c --key=k", "create secret tls",
         [ref("secrets", "t")], None),
        ("kubectl create svc nodeport web --tcp=80", "create service nodeport",
         [ref("services", "web")], None),
        ("kubectl create quota q --hard=pods=1", "create quota", [ref("resourcequotas", "q")],
         None),
        ("kubectl create deploy web --image=nginx", "create deployment", [ref("deploy", "web")],
         None),
        ("kubectl create cj c --image=x --schedule='* * * * *'", "create cronjob",
         [ref("cronjobs", "c")], None),
        ("kubectl cp ns1/web:/etc/passwd /tmp/p", "cp", [ref("pods", "web")], "ns1"),
        ("kubectl cp /tmp/p web:/tmp/p -n dev", "cp", [ref("pods", "web")], "dev"),
        ("kubectl get --raw /api/v1/namespaces/x/secrets/y", "get", [ref("secrets", "y")], "x"),
        ("kubectl get --raw /apis/apps/v1/namespaces/a/deployments/d/scale", "get",
         [ref("deploy", "d", "scale")], "a"),
        ("kubectl get --raw=/api/v1/namespaces/x/pods/p/log?follow=true", "get",
         [ref("pods", "p", "log")], "x"),
        ("kubectl get --raw /api/v1/namespaces/x/pods/../secrets/s", "get",
         [ref("secrets", "s")], "x"),
        ("kubectl get --raw //api/v1//namespaces/kube-system/secrets", "get", [ref("secrets")],
         "kube-system"),
        ("kubectl get --raw /api/v1/watch/namespaces/x/pods", "get", [ref("pods")], "x"),
        ("kubectl get --raw /api/v1/namespaces/x", "get", [ref("ns", "x")], None),
        ("kubectl get --raw /api/v1/namespaces/x/status", "get", [ref("ns", "x", "status")],
         None),
        ("kubectl get --raw /api/v1/nodes/n1/proxy/logs/", "get", [ref("nodes", "n1", "proxy")],
         None),
        ("kubectl delete --raw /api/v1/namespaces/x/pods/p", "delete", [ref("pods", "p")], "x"),
        ("kubectl create --raw /api/v1/namespaces/x/pods -f p.json", "create", [ref("pods")],
         "x"),
        ("kubectl get --raw /healthz", "get", [], None),
        ("kubectl get --raw /apis/apps/v1", "get", [], None),
        ("kubectl get --raw /openapi/v3", "get", [], None),
        ("kubectl get pod x --subresource status", "get", [ref("pods", "x", "status")], None),
        ("kubectl auth can-i delete pods", "auth can-i", [], None),
        ("kubectl auth whoami", "auth whoami", [], None),
        ("kubectl config view --raw", "config view", [], None),
        ("kubectl config use prod", "config use-context", [], None),
        ("kubectl apply -f x.yaml", "apply", [], None),
        ("kubectl cluster-info dump", "cluster-info dump", [], None),
        ("kubectl version --client", "version", [], None),
        ("kubectl api-resources", "api-resources", [], None),
        ("kubectl", "", [], None),
        ("kubectl --help", "", [], None),
        ("kubectl create", "create", [], None),
        ("kubectl create secret", "create secret", [], None),
    ],
)
def test_normalize(line: str, verb: str, refs: list[ResourceRef], namespace: str | None) -> None:
    c = call(line)
    assert c.problems == ()
    assert c.verb == verb
    assert list(c.resources) == refs
    assert c.namespace == namespace
    assert c.argv == tuple(shlex.split(line))


def test_names_after_several_types_stay_unattached() -> None:
    c = call("kubectl get pods,svc web")
    assert c.resources == (ref("pods"), ref("svc"))
    assert c.names == ("web",)


@pytest.mark.parametrize(
    ("line", "flags"),
    [
        ("kubectl get pods -o yaml", {"output": ("yaml",)}),
        ("kubectl get pods -l app=x,tier!=db", {"selector": ("app=x,tier!=db",)}),
        ("kubectl get pods --field-selector=status.phase=Running",
         {"field-selector": ("status.phase=Running",)}),
        ("kubectl delete pods --all", {"all": ("true",)}),
        ("kubectl delete pods --all=false", {"all": ("false",)}),
        ("kubectl delete pods --all=F", {"all": ("false",)}),
        ("kubectl apply -f a.yaml -f b.yaml", {"filename": ("a.yaml", "b.yaml")}),
        ("kubectl apply -k dir/", {"kustomize": ("dir/",)}),
        ("kubectl apply -Rf dir/", {"recursive": ("true",), "filename": ("dir/",)}),
        ("kubectl get -R -f dir/", {"recursive": ("true",), "filename": ("dir/",)}),
        ("kubectl patch deploy x -p '{\"a\":1}' --type=merge",
         {"patch": ('{"a":1}',), "type": ("merge",)}),
        ("kubectl patch deploy x --patch-file p.yaml", {"patch-file": ("p.yaml",)}),
        ("kubectl logs -p web", {"previous": ("true",)}),
        ("kubectl logs -fp web", {"follow": ("true",), "previous": ("true",)}),
        ("kubectl proxy -p 8001", {"port": ("8001",)}),
        ("kubectl proxy -p8001", {"port": ("8001",)}),
        ("kubectl run x --image=i --overrides='{}'", {"image": ("i",), "overrides": ("{}",)}),
        ("kubectl get pods -s https://x", {"server": ("https://x",)}),
        ("kubectl delete pod x --cascade", {"cascade": ("background",)}),
        ("kubectl delete pod x --cascade=orphan", {"cascade": ("orphan",)}),
        ("kubectl apply -f x --validate", {"filename": ("x",), "validate": ("strict",)}),
        ("kubectl exec -it web -- sh", {"stdin": ("true",), "tty": ("true",)}),
        ("kubectl exec -i=false web -- sh", {"stdin": ("false",)}),
        ("kubectl get pods -n=", {"namespace": ("=",)}),  # pflag reads `-n=` as value "="
        ("kubectl get pods --request-timeout 5s -v=9",
         {"request-timeout": ("5s",), "v": ("9",)}),
        ("kubectl get pods --raw=", {"raw": ("",)}),
    ],
)
def test_flags(line: str, flags: dict[str, tuple[str, ...]]) -> None:
    c = call(line)
    assert dict(c.flags) == flags
    assert c.problems == ()


@pytest.mark.parametrize(
    ("line", "args", "command"),
    [
        ("kubectl exec web -- ls -la", ("web",), ("ls", "-la")),
        ("kubectl exec web -c app -- sh -c 'a -- b'", ("web",), ("sh", "-c", "a -- b")),
        ("kubectl exec -- web", (), ("web",)),
        ("kubectl run x --image=i -- sleep 1", ("x",), ("sleep", "1")),
        ("kubectl debug web -it --image=b -- sh", ("web",), ("sh",)),
        ("kubectl attach web --", ("web",), ()),
        ("kubectl get -- pods -A", ("pods", "-A"), ()),
        ("kubectl delete pod -- -x", ("pod", "-x"), ()),
        ("kubectl port-forward web 80 8080:80", ("web", "80", "8080:80"), ()),
    ],
)
def test_dash_dash(line: str, args: tuple[str, ...], command: tuple[str, ...]) -> None:
    c = call(line)
    assert (c.args, c.command) == (args, command)


def test_dash_dash_ends_flags() -> None:
    c = call("kubectl get -- pods -A")
    assert not c.all_namespaces
    assert c.resources == (ref("pods", "-A"),)


@pytest.mark.parametrize(
    ("line", "dry"),
    [
        ("kubectl apply -f x --dry-run=client", True),
        ("kubectl apply -f x --dry-run=server", True),
        ("kubectl apply -f x --dry-run", True),
        ("kubectl apply --dry-run -f x", True),
        ("kubectl apply -f x --dry-run=none", False),
        ("kubectl apply -f x --dry-run=false", False),
        ("kubectl apply -f x --dry-run=none --dry-run=client", True),
        ("kubectl apply -f x --dry-run=client --dry-run=none", False),
        ("kubectl apply -f x", False),
        ("kubectl apply -f x --dry-run=$MODE", False),
    ],
)
def test_dry_run(line: str, dry: bool) -> None:
    assert call(line).dry_run is dry


@pytest.mark.parametrize(
    ("raw", "all_namespaces"),
    [
        ("/api/v1/secrets", True),  # a namespaced resource listed across namespaces
        ("/apis/apps/v1/deployments", True),
        ("/apis/example.com/v1/widgets", True),  # unknown: assume the widest reading
        ("/api/v1/namespaces/x/secrets", False),
        ("/api/v1/nodes", False),
        ("/api/v1/namespaces", False),
        ("/api/v1/namespaces/x", False),
        ("/healthz", False),
    ],
)
def test_raw_lists_across_namespaces(raw: str, all_namespaces: bool) -> None:
    assert call(f"kubectl get --raw {raw}").all_namespaces is all_namespaces


def test_namespace_of_cluster_scoped_calls_is_none() -> None:
    c = call("kubectl -n x get nodes,ns")
    assert c.namespace is None and c.flags["namespace"] == ("x",)
    assert call("kubectl -n x get nodes,pods").namespace == "x"
    assert call("kubectl -n x get widgets").namespace == "x"  # unknown: keep it
    assert call("kubectl -n x apply -f a.yaml").namespace == "x"


def test_namespace_last_wins_and_empty_is_default() -> None:
    assert call("kubectl -n a get pods -n b --namespace c").namespace == "c"
    assert call("kubectl get pods -n a --namespace=").namespace is None
    assert call("kubectl get pods -n a").flags["namespace"] == ("a",)
    assert call("kubectl get pods -A --all-namespaces=false").all_namespaces is False


# --------------------------------------------------------------------------- problems


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("kubectl foo bar", "unknown kubectl command 'foo'"),
        ("kubectl neat get pods", "unknown kubectl command 'neat'"),
        ("kubectl rollout foo deploy/x", "unknown kubectl command 'rollout foo'"),
        ("kubectl create pod x", "unknown kubectl command 'create pod'"),
        ("kubectl create secret opaque x", "unknown kubectl command 'create secret opaque'"),
        ("kubectl -- get pods", "unknown kubectl command 'get'"),
        ("kubectl get foo", "unknown resource type 'foo'"),
        ("kubectl get widgets.example.com", "unknown resource type 'widgets.example.com'"),
        ("kubectl get pods,foo", "unknown resource type 'foo'"),
        ("kubectl delete foo/x", "unknown resource type 'foo'"),
        ("kubectl logs foo/x", "unknown resource type 'foo'"),
        ("kubectl get --raw /apis/example.com/v1/widgets", "unknown resource type 'widgets'"),
        ("kubectl get --raw /logs/kube-apiserver.log", "raw path '/logs/kube-apiserver.log' names "
         "no API resource"),
        ("kubectl get --raw /api/v1/namespaces/x/%73ecrets",
         "raw path '/api/v1/namespaces/x/%73ecrets' is escaped; guardctl cannot read it"),
        ("kubectl get pods --foo", "unknown flag --foo for 'get'"),
        ("kubectl get pods --foo=bar", "unknown flag --foo for 'get'"),
        ("kubectl get pods -x", "unknown flag -x for 'get'"),
        ("kubectl get pods -Ax", "unknown flag -x for 'get'"),
        ("kubectl get pods --dry-run", "unknown flag --dry-run for 'get'"),
        ("kubectl logs web --patch x", "unknown flag --patch for 'logs'"),
        ("kubectl -A get pods", "unknown flag -A for 'pods'"),
        ("kubectl get pods -n", "flag needs an argument: -n"),
        ("kubectl get pods --namespace", "flag needs an argument: --namespace"),
        ("kubectl delete pods --all=maybe", "invalid value 'maybe' for --all"),
    ],
)
def test_problems(line: str, problem: str) -> None:
    assert problem in call(line).problems


def test_unknown_verb_is_the_word() -> None:
    c = call("kubectl neat get pods -n x")
    assert (c.verb, c.args, c.namespace) == ("neat", ("get", "pods"), "x")


def test_unknown_flag_guesses_arity() -> None:
    # --foo=bar is self-contained; a bare --foo is assumed to take no value
    assert call("kubectl get --foo=bar pods").resources == (ref("pods"),)
    assert call("kubectl get --foo pods").resources == (ref("pods"),)
    assert call("kubectl get --foo pods").flags["foo"] == ("true",)


def test_unknown_type_keeps_the_word() -> None:
    c = call("kubectl delete widgets w1")
    assert c.resources == (ResourceRef("widgets", "", "", name="w1"),)


# --------------------------------------------------------------------------- dynamic words


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("kubectl $VERB pods", "kubectl command comes from '$VERB', only known at run time"),
        ("kubectl rollout $SUB deploy/x", "kubectl command comes from '$SUB', only known at run "
         "time"),
        ("kubectl create $KIND x", "kubectl command comes from '$KIND', only known at run time"),
        ("kubectl get $T", "resource type comes from '$T', only known at run time"),
        ("kubectl delete $T x", "resource type comes from '$T', only known at run time"),
        ("kubectl delete $T/x", "resource type comes from '$T/x', only known at run time"),
        ("kubectl delete pod/a $REF", "resource type comes from '$REF', only known at run time"),
        ("kubectl get pods,$T", "resource type comes from 'pods,$T', only known at run time"),
        ("kubectl explain $T", "resource type comes from '$T', only known at run time"),
        ("kubectl get pods --$F", "flag comes from '--$F', only known at run time"),
        ("kubectl get pods -$F", "flag comes from '-$F', only known at run time"),
        ("kubectl -n $NS get pods", "value of --namespace comes from '$NS', only known at run "
         "time"),
        ("kubectl get pods --namespace=$NS", "value of --namespace comes from '--namespace=$NS', "
         "only known at run time"),
        ("kubectl get pods -n$NS", "value of --namespace comes from '-n$NS', only known at run "
         "time"),
        ("kubectl get pods -o $FMT", "value of --output comes from '$FMT', only known at run "
         "time"),
        ("kubectl apply -f $FILE", "value of --filename comes from '$FILE', only known at run "
         "time"),
        ("kubectl get --raw $P", "value of --raw comes from '$P', only known at run time"),
        ("kubectl run x --image=i --overrides $O", "value of --overrides comes from '$O', only "
         "known at run time"),
        ("kubectl patch deploy x -p $PATCH", "value of --patch comes from '$PATCH', only known at "
         "run time"),
        ("kubectl delete pods --all=$ALL", "value of --all comes from '--all=$ALL', only known "
         "at run time"),
        ("kubectl apply -f x --dry-run=$D", "value of --dry-run comes from '--dry-run=$D', only "
         "known at run time"),
        ("kubectl --context $CTX get pods", "value of --context comes from '$CTX', only known at "
         "run time"),
        ("kubectl config use-context $CTX", "argument comes from '$CTX', only known at run time"),
        ("kubectl cp $SRC /tmp/x", "cp source or destination comes from '$SRC', only known at "
         "run time"),
    ],
)
def test_dynamic_words(line: str, problem: str) -> None:
    assert problem in call(line).problems


@pytest.mark.parametrize(
    "line",
    [
        "kubectl delete pod $P",
        "kubectl delete pod/$P",
        "kubectl logs $POD -c app",
        "kubectl exec $POD -- sh -c $CMD",
        "kubectl logs web -c $C",
        "kubectl create namespace $NAME",
        "kubectl label pods web app=$V",
        "kubectl cordon $NODE",
        "kubectl cp $POD:/etc/x /tmp/x",
        "kubectl scale deploy x --replicas $N",
    ],
)
def test_dynamic_names_are_fine(line: str) -> None:
    assert call(line).problems == ()


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (("kubectl", "get", "pods", '"--namespace=$NS"'),
         "value of --namespace comes from '--namespace=$NS', only known at run time"),
        (("kubectl", "get", "pods", '"-n$NS"'),
         "value of --namespace comes from '-n$NS', only known at run time"),
        (("kubectl", "-n", '"${NS}"', "get", "pods"),
         "value of --namespace comes from '${NS}', only known at run time"),
        (("kubectl", "get", '"$T"'), "resource type comes from '$T', only known at run time"),
        (("kubectl", '"$VERB"', "pods"), "kubectl command comes from '$VERB', only known at run "
         "time"),
    ],
)
def test_dynamic_words_as_the_parser_keeps_them(argv: tuple[str, ...], problem: str) -> None:
    """The parser keeps a dynamic word's source text, quotes included."""
    dynamic = frozenset(i for i, w in enumerate(argv) if "$" in w)
    assert problem in normalize(SimpleCommand(argv, dynamic=dynamic)).problems


def test_dynamic_name_is_recorded() -> None:
    assert call("kubectl delete pod $P").resources == (ref("pods", "$P"),)


def test_dynamic_verb_is_the_word() -> None:
    assert call("kubectl $VERB pods").verb == "$VERB"


# --------------------------------------------------------------------------- xargs


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("kubectl", True),
        ("kubectl -n x", True),
        ("kubectl delete", True),
        ("kubectl rollout", True),
        ("kubectl create", True),
        ("kubectl delete -n x", True),
        ("kubectl delete pod/a", True),  # appended words may be other TYPE/NAMEs
        ("kubectl delete pod --", True),
        ("kubectl exec", True),
        ("kubectl config use-context", True),
        ("kubectl delete pod", False),
        ("kubectl delete pods -n x --wait=false", False),
        ("kubectl label pods a=b", False),
        ("kubectl logs web", False),
        ("kubectl cordon", False),
        ("kubectl create namespace", False),
        ("kubectl rollout restart deploy", False),
    ],
)
def test_xargs_open_tail(line: str, problem: bool) -> None:
    c = call(line, open_tail=True)
    assert ("xargs appends arguments at run time" in c.problems) is problem
    if not problem:
        assert c.problems == ()


# --------------------------------------------------------------------------- which program


@pytest.mark.parametrize(
    ("argv", "args"),
    [
        (("kubectl", "get", "pods"), ("get", "pods")),
        (("/usr/bin/kubectl", "get"), ("get",)),
        (("./kubectl",), ()),
        (("kubectl.1.27", "get"), ("get",)),
        (("kubectl-1.30", "get"), ("get",)),
        (("/opt/bin/kubectl-v1.29.3", "get"), ("get",)),
        (("guardctl", "get", "pods"), ("get", "pods")),
        (("guardctl", "-n", "x", "get"), ("-n", "x", "get")),
        (("guardctl", "kubectl", "check", "x"), ("check", "x")),
        (("guardctl", "kubectl"), ()),
        (("/home/u/.local/bin/guardctl", "delete", "ns", "x"), ("delete", "ns", "x")),
        (("python", "-m", "guardctl", "get"), ("get",)),
        (("python3", "-mguardctl", "get"), ("get",)),
        (("/usr/bin/python3.11", "-u", "-m", "guardctl", "kubectl", "get"), ("get",)),
        (("python", "-W", "ignore", "-m", "guardctl", "get"), ("get",)),
        (("guardctl",), None),
        (("guardctl", "check", "kubectl get pods"), None),
        (("guardctl", "sh", "-c", "x"), None),
        (("guardctl", "--help"), None),
        (("python", "-m", "guardctl", "rules", "lint"), None),
        (("python", "-m", "pip", "install", "x"), None),
        (("python", "-c", "print(1)", "-m", "guardctl"), None),
        (("python", "script.py", "-m", "guardctl"), None),
        (("kubectl-neat", "get"), None),
        (("kubectx",), None),
        (("kubectl2", "get"), ("get",)),
        (("k", "get"), None),
        ((), None),
    ],
)
def test_kubectl_args(argv: tuple[str, ...], args: tuple[str, ...] | None) -> None:
    c = SimpleCommand(argv)
    assert kubectl_args(c) == args
    assert is_kubectl(c) is (args is not None)


def test_every_guardctl_command_is_not_kubectl() -> None:
    for name in guardctl_commands() - {"kubectl"}:
        assert not is_kubectl(SimpleCommand(("guardctl", name, "get", "pods")))
        assert not is_kubectl(SimpleCommand(("python", "-m", "guardctl", name)))


def test_dynamic_program_is_not_kubectl() -> None:
    assert not is_kubectl(SimpleCommand(("$KUBECTL", "get"), dynamic=frozenset({0})))


def test_not_kubectl_is_a_problem() -> None:
    c = normalize(SimpleCommand(("ls", "-la")))
    assert c.verb == "" and c.problems


def test_guardctl_kubectl_maps_dynamic_indices() -> None:
    c = normalize(SimpleCommand(("guardctl", "kubectl", "get", "$T"), dynamic=frozenset({3})))
    assert "resource type comes from '$T', only known at run time" in c.problems


# --------------------------------------------------------------------------- robustness


@pytest.mark.parametrize(
    "argv",
    [("kubectl", ""), ("kubectl", "-"), ("kubectl", "--"), ("kubectl", "get", "/"),
     ("kubectl", "get", ","), ("kubectl", "get", "pods/"), ("kubectl", "get", "--raw", "/"),
     ("kubectl", "cp", ":x", "y"), ("kubectl", "-=", "get"), ("kubectl", "get", "-n=")],
)
def test_odd_words_never_raise(argv: tuple[str, ...]) -> None:
    assert isinstance(normalize(SimpleCommand(argv)), KubectlCall)


_VOCABULARY = ["get", "delete", "rollout", "restart", "create", "secret", "generic", "pods", "ns",
               "deploy/x", "-n", "-it", "-itn", "--", "-", "", "--raw", "/api/v1/x", "-o=yaml",
               "--dry-run", "=", "-p", "all", "a,b", "$X", "x:y", "--foo", "-n=", "/"]


@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(st.one_of(st.sampled_from(_VOCABULARY), st.text(max_size=8)), max_size=8),
    dynamic=st.frozensets(st.integers(min_value=0, max_value=8)),
    open_tail=st.booleans(),
)
def test_never_raises(words: list[str], dynamic: frozenset[int], open_tail: bool) -> None:
    argv = ("kubectl", *words)
    c = normalize(SimpleCommand(argv, dynamic=dynamic - {0}, open_tail=open_tail))
    assert c.argv == argv
    assert not any(p.startswith("guardctl could not read") for p in c.problems)


def test_internal_error_becomes_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    line = "kubectl get pods -n internal-error"  # a line no other test read (calls are kept)
    monkeypatch.setattr("guardctl.firewall.normalize.flag_table", broken)
    c = call(line)
    assert c.verb == "" and len(c.problems) == 1 and "boom" in c.problems[0]
    monkeypatch.undo()
    # a failure is not kept: the next reading is made afresh
    assert call(line).verb == "get" and call(line).problems == ()


def test_a_command_read_again_is_the_same_call_and_a_changed_one_is_not() -> None:
    first = call("kubectl get pods -n kept")
    assert call("kubectl get pods -n kept") is first
    assert call("kubectl get pods -n other").flag("namespace") == "other"
    argv = ("kubectl", "get", "pods", "-n", "$NS")
    plain = normalize(SimpleCommand(argv))
    dynamic = normalize(SimpleCommand(argv, dynamic=frozenset({4})))
    assert plain.problems == () and dynamic.problems != ()
    # a set where a frozenset belongs cannot be kept, and is still read
    assert normalize(SimpleCommand(argv, dynamic={4})) == dynamic  # type: ignore[arg-type]


def test_data_tables_agree() -> None:
    """Every verb the shape tables name exists in kubectl, and every default type resolves."""
    from guardctl.firewall.normalize import _config

    config = _config()
    paths = flag_table().paths
    for table in (config.shapes, config.default_types):
        assert set(table) <= paths
    for path, spec in config.default_types.items():
        assert resources.lookup(spec.split("/")[0]) is not None, path
    assert config.command_verbs | config.raw_verbs <= paths
    # `guardctl completion SHELL` prints guardctl's own scripts: kubectl's are of no use
    # through guardctl, and `guardctl kubectl completion` still reaches kubectl's
    assert not (guardctl_commands() - {"kubectl", "completion"}) & {p.split()[0] for p in paths}

#!/usr/bin/env bash
# kind end-to-end suite: epair installed on a 3-node kind cluster (Docker)
# exactly as a user installs it — the image loaded into the nodes,
# `kubectl apply -f conf/kubernetes/epair.yaml` — then pod <-> pod across
# nodes, pod -> Service and cluster DNS.
#
# Needs Docker, kind and kubectl (and network access to pull the test
# images busybox and jessie-dnsutils). Not run in CI on the project's
# machines, which have no Docker: there, the kubelet suite validates the
# same manifests against its apiserver and runs them on a real kubelet.
#
# Usage: e2e/kind/run.sh
# Env: EPAIR_KIND_BUILD=docker|archive (default: docker when `docker build`
#      works; archive = make build cni-plugins + hack/image.sh + `kind load
#      image-archive`), EPAIR_KIND_NAME (cluster name, default
#      epair-e2e-PID), EPAIR_E2E_KEEP=1 (keep the cluster, for debugging),
#      BUSYBOX_IMAGE, DNSUTILS_IMAGE.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SUITE=e2e-kind
# shellcheck source=e2e/lib.sh
. "$ROOT/e2e/lib.sh" # log, check, die, cleanup_begin/_end

CLUSTER=${EPAIR_KIND_NAME:-epair-e2e-$$}
IMAGE=localhost/epair:latest # the manifests' image, loaded into every node
BUSYBOX_IMAGE=${BUSYBOX_IMAGE:-busybox:1.36}
DNSUTILS_IMAGE=${DNSUTILS_IMAGE:-registry.k8s.io/e2e-test-images/jessie-dnsutils:1.3}
POD_CIDR=10.244.0.0/16 # kind-config.yaml's podSubnet
APP=epair-echo
CREATED=''

for t in docker kind kubectl; do
	command -v "$t" >/dev/null || die "$t not found (this suite needs Docker, kind and kubectl; see e2e/kind/README.md)"
done
docker info >/dev/null 2>&1 || die "docker does not answer (is the daemon running?)"

# kubectl on the suite's cluster only, whatever the current context is.
kc() { timeout --foreground 120 kubectl --context "kind-$CLUSTER" "$@"; }

show_logs() {
	[ -n "$LOGS_SHOWN" ] && return
	LOGS_SHOWN=1
	[ -n "$CREATED" ] || return
	echo "----- nodes, pods -----"
	kc get nodes -o wide 2>&1
	kc get pods -A -o wide 2>&1
	echo "----- epair agents (last 40 lines each) -----"
	kc -n kube-system logs -l app.kubernetes.io/name=epair --prefix --tail 40 2>&1
	echo "----- events -----"
	kc get events -A --sort-by=.lastTimestamp 2>&1 | tail -n 30
	echo "----- end of logs -----"
}

cleanup() {
	local rc=$?
	set +e
	trap - ERR
	cleanup_begin $rc
	if [ -n "$CREATED" ]; then
		if [ "${EPAIR_E2E_KEEP:-}" = 1 ]; then
			echo "e2e-kind: kept cluster $CLUSTER (kind delete cluster --name $CLUSTER)" >&2
		else
			log "deleting kind cluster $CLUSTER"
			kind delete cluster --name "$CLUSTER" >/dev/null 2>&1
		fi
	fi
	[ -n "$T" ] && rm -rf "$T"
	cleanup_end $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'echo "e2e-kind: line $LINENO: command failed: $BASH_COMMAND" >&2' ERR

T=$(mktemp -d /tmp/epair-kind.XXXXXX)

# ---------------------------------------------------------------- image

mode=${EPAIR_KIND_BUILD:-}
if [ -z "$mode" ]; then
	mode=archive
	docker buildx version >/dev/null 2>&1 && mode=docker
fi
case $mode in
docker)
	log "docker build -t $IMAGE (Dockerfile)"
	docker build -t "$IMAGE" --build-arg "VERSION=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo dev)" "$ROOT"
	docker save -o "$T/epair.tar" "$IMAGE"
	;;
archive)
	log "make build cni-plugins; hack/image.sh (no Docker build)"
	make -C "$ROOT" build cni-plugins >/dev/null
	"$ROOT/hack/image.sh" "$T/epair.tar" "$IMAGE"
	;;
*) die "EPAIR_KIND_BUILD=$mode: want docker or archive" ;;
esac

# ---------------------------------------------------------------- cluster

log "kind create cluster $CLUSTER (no default CNI)"
CREATED=1
# --wait 0: without a network the nodes cannot be Ready yet.
kind create cluster --name "$CLUSTER" --config "$ROOT/e2e/kind/kind-config.yaml" --wait 0s
nodes_not_ready() { # 3 nodes, none Ready: no network yet
	local st
	st=$(kc get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')
	echo "$st"
	[ "$(grep -c . <<<"$st")" = 3 ] && ! grep -q ' True$' <<<"$st"
}
check nodes-notready-without-network retry 60 nodes_not_ready
log "kind load image-archive ($IMAGE)"
check load-image kind load image-archive "$T/epair.tar" --name "$CLUSTER"

log "kubectl apply -f conf/kubernetes/epair.yaml"
check manifests-server-dry-run kc apply --dry-run=server -f "$ROOT/conf/kubernetes/epair.yaml"
check apply-epair kc apply -f "$ROOT/conf/kubernetes/epair.yaml"
check agents-rolled-out kc -n kube-system rollout status daemonset/epair --timeout=180s
check nodes-ready kc wait --for=condition=Ready nodes --all --timeout=180s
# CoreDNS runs on the pod network: it comes up once the nodes have one.
check coredns-available kc -n kube-system rollout status deployment/coredns --timeout=180s

# ---------------------------------------------------------------- workload

mapfile -t WORKERS < <(kc get nodes -l '!node-role.kubernetes.io/control-plane' -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
[ "${#WORKERS[@]}" -ge 2 ] || die "want 2 workers, have: ${WORKERS[*]}"
log "workers: ${WORKERS[*]}"

# Two echo pods pinned to different workers (busybox httpd answers its pod
# name), a ClusterIP Service over both, and a DNS client.
{
	for i in 0 1; do
		cat <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $APP-$i, labels: {app: $APP}}
spec:
  nodeName: ${WORKERS[i]}
  terminationGracePeriodSeconds: 1
  containers:
  - name: echo
    image: $BUSYBOX_IMAGE
    command: [sh, -c, 'mkdir -p /www && echo "epair-e2e-hello from \$HOSTNAME" >/www/index.html && exec httpd -f -p 8080 -h /www']
    ports: [{containerPort: 8080}]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 2}
---
EOF
	done
	cat <<EOF
apiVersion: v1
kind: Service
metadata: {name: $APP}
spec:
  selector: {app: $APP}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: dnsutils}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: dnsutils
    image: $DNSUTILS_IMAGE
    command: [sleep, "3600"]
EOF
} >"$T/app.yaml"

log "two pods on ${WORKERS[0]} and ${WORKERS[1]}, a Service, a DNS client"
check apply-app kc apply -f "$T/app.yaml"
check app-pods-ready kc wait --for=condition=Ready pod/$APP-0 pod/$APP-1 pod/dnsutils --timeout=180s

pod_ip() { kc get pod "$1" -o jsonpath='{.status.podIP}'; }
IP0=$(pod_ip "$APP-0") IP1=$(pod_ip "$APP-1")
SVC_IP=$(kc get service "$APP" -o jsonpath='{.spec.clusterIP}')
log "pod $APP-0 $IP0 on ${WORKERS[0]}, pod $APP-1 $IP1 on ${WORKERS[1]}, service $SVC_IP"
in_pod_cidr() {
	local ip
	for ip in "$IP0" "$IP1"; do
		case $ip in 10.244.*) ;; *) echo "pod IP '$ip' not in $POD_CIDR"; return 1 ;; esac
	done
	[ "$IP0" != "$IP1" ] || { echo "same IP $IP0"; return 1; }
}
check pod-ips-in-pod-cidr in_pod_cidr
eth0_is_epair() { # the pod's eth0 answers ethtool's driver question as a TAP does
	kc exec "$1" -- cat /sys/class/net/eth0/tun_flags >/dev/null ||
		{ echo "eth0 in $1 is not a TAP (an epair a end)"; kc exec "$1" -- ip link; return 1; }
}
check pod-0-eth0-is-an-epair-end eth0_is_epair "$APP-0"

# hello FROM URL-HOST [EXPECTED-POD]: one HTTP request answers the pod's name.
hello() {
	local out
	out=$(kc exec "$1" -- wget -qO- -T 3 "http://$2/") || { echo "$out"; return 1; }
	echo "$out"
	grep -q "^epair-e2e-hello from ${3:-$APP-}" <<<"$out"
}
check pod-0-to-pod-1-ping-across-nodes kc exec "$APP-0" -- ping -c 2 -W 2 "$IP1"
check pod-0-to-pod-1-http-across-nodes hello "$APP-0" "$IP1:8080" "$APP-1"
check pod-1-to-pod-0-http-across-nodes hello "$APP-1" "$IP0:8080" "$APP-0"
service_hellos() {
	local i
	retry 30 hello "$1" "$SVC_IP" >/dev/null || { hello "$1" "$SVC_IP"; return 1; }
	for i in 1 2 3 4 5 6; do hello "$1" "$SVC_IP" >/dev/null || { echo "request $i failed"; return 1; }; done
}
check pod-0-to-service service_hellos "$APP-0"
check pod-1-to-service service_hellos "$APP-1"
check dns-kubernetes-default retry 30 kc exec dnsutils -- nslookup kubernetes.default
check dns-service-name retry 30 kc exec dnsutils -- nslookup "$APP.default.svc.cluster.local"
check dns-client-to-service-by-name retry 30 kc exec "$APP-0" -- wget -qO- -T 3 "http://$APP.default.svc.cluster.local/"

log "deleting the workload, then epair"
check delete-app kc delete -f "$T/app.yaml" --wait=true --timeout=120s
check uninstall-epair kc delete -f "$ROOT/conf/kubernetes/epair.yaml" --wait=true --timeout=120s

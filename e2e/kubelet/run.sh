#!/usr/bin/env bash
# kubelet end-to-end suite: a real single-node Kubernetes (etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, containerd,
# kubelet, kube-proxy in iptables mode) whose pods get their network from
# epair: kubelet -> containerd's CRI -> libcni -> bin/epair -> the daemon.
#
# The whole node runs inside a private network namespace (nsenter --net, so
# /sys/fs/cgroup and the mounts stay the machine's): the node address, the b
# ends, host routes, kube-proxy's iptables rules and ip_forward live there,
# never in the machine's own namespace. Every state directory (etcd data,
# certificates, containerd root/state, kubelet --root-dir, pod logs, CNI
# dataDir) is under one temp dir; pods run under the cgroup root
# /epair-kubelet-PID. Images are built locally (no registry).
#
# Usage (root): e2e/kubelet/run.sh            (or: make e2e-kubelet)
# Env: EPAIR_BIN, EPAIR_CNI_PLUGINS, EPAIR_E2E_TOOLS (crictl cache dir),
#      K8S_VERSION and EPAIR_K8S_CACHE (passed to hack/k8s-build.sh),
#      EPAIR_E2E_KEEP=1 (keep the temp dir, for debugging).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SUITE=e2e-kubelet
# shellcheck source=e2e/lib.sh
. "$ROOT/e2e/lib.sh" # EPAIR, CNI_PLUGINS, TOOLS, the images; log, check, cri, cleanup pieces
CRI_TIMEOUT=60
APT_PKGS=(containerd runc etcd-server openssl iproute2 iptables conntrack busybox-static util-linux jq)

NET=epair-kube # CNI network name (libcni cache entries: /var/lib/cni/results/$NET-*)
POD_SUBNET=10.213.16.0/24 POD_GW=10.213.16.1
NODE_IP=10.213.20.1 EXT_IP=10.213.20.2 # node address; its veth peer in a second netns
SERVICE_RANGE=10.96.0.0/16 KUBERNETES_SVC_IP=10.96.0.1
NODE_NAME=epair-e2e-node
APP=epair-echo # Deployment, Service and pod label
REPLICAS=3
NS=epair-kube-$$ EXT_NS=epair-kube-ext-$$
NSPATH=/var/run/netns/$NS
CGROOT=/epair-kubelet-$$
# Paths kubelet uses whatever --root-dir says: removed on exit if this run made them.
FIXED_PATHS=(/var/lib/kubelet/device-plugins/kubelet.sock /var/lib/kubelet/device-plugins /var/lib/kubelet /var/log/containers)
# Global sysctls kubelet sets at start (protectKernelDefaults=false): saved
# here, restored by the cleanup.
KERNEL_SYSCTLS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)

SYSCTLS_SAVED=''
declare -A PIDS=() # component -> pid
ORDER=()           # components in start order

[ "$(id -u)" -eq 0 ] || die "run as root (kubelet, containerd, namespaces, TAPs)"
[ -x "$EPAIR" ] || die "$EPAIR missing: run make build"
[ -x "$CNI_PLUGINS/host-local" ] && [ -x "$CNI_PLUGINS/loopback" ] || die "$CNI_PLUGINS incomplete: run make cni-plugins"

# ---------------------------------------------------------------- helpers

show_logs() {
	[ -n "$LOGS_SHOWN" ] && return
	LOGS_SHOWN=1
	[ -n "$T" ] || return
	for f in kubelet containerd daemon kube-apiserver kube-proxy kube-controller-manager; do
		[ -f "$T/log/$f.log" ] || continue
		echo "----- $f.log (last 60 lines) -----"
		# without the components' harmless complaint about the (unused)
		# front-proxy CA
		grep -v 'extension-apiserver-authentication' "$T/log/$f.log" | tail -n 60
	done
	if [ -n "${PIDS[kube-apiserver]:-}" ]; then
		echo "----- kubectl get pods,events -----"
		kc get pods -o wide 2>&1 | tail -n 20
		kc get events --sort-by=.lastTimestamp 2>&1 | tail -n 30
	fi
	echo "----- end of logs -----"
}

# retry SECONDS CMD...: runs CMD every 0.5 s until it succeeds (its output
# is kept only from the last attempt).
retry() {
	local end=$(( $(date +%s) + $1 )) out
	shift
	while :; do
		out=$("$@" 2>&1) && { printf '%s\n' "$out"; return 0; }
		[ "$(date +%s)" -lt "$end" ] || { printf '%s\n' "$out"; return 1; }
		sleep 0.5
	done
}

innode() { nsenter --net="$NSPATH" "$@"; }
kc() { timeout --foreground 60 nsenter --net="$NSPATH" "$K8S/kubectl" --kubeconfig "$T/pki/admin.kubeconfig" "$@"; }
# The pods' network namespaces (by the CRI), for the leftover check and the cleanup.
record_netns() {
	local p
	for p in $(cri pods -q); do
		cri inspectp -o json "$p" | jq -r '.info.runtimeSpec.linux.namespaces[]? | select(.type == "network") | .path'
	done >>"$T/netns-paths"
}

# start NAME CMD...: runs CMD in the node's netns, in its own session (a
# Ctrl-C stops the suite, not the node, so the cleanup can still take pods
# down in order), logging to $T/log/NAME.log.
start() {
	local name=$1
	shift
	setsid nsenter --net="$NSPATH" "$@" >"$T/log/$name.log" 2>&1 &
	PIDS[$name]=$!
	ORDER+=("$name")
}
stop() { # NAME [SECONDS]: TERM, then KILL after SECONDS (default 10)
	[ -n "${PIDS[$1]:-}" ] || return 0
	stop_pid "${PIDS[$1]}" "${2:-10}"
	unset "PIDS[$1]"
}
running() { # NAME: still alive (else prints its log tail)
	kill -0 "${PIDS[$1]}" 2>/dev/null && return 0
	echo "$1 exited:"
	tail -n 30 "$T/log/$1.log"
	return 1
}

cleanup() {
	local rc=$?
	set +e
	trap - ERR
	cleanup_begin $rc
	[ -n "$T" ] || exit $rc
	log "cleanup"
	# Pods first, through the API while the whole node still runs, so that
	# kubelet tears them down (CNI DEL) as it normally would.
	if [ -n "${PIDS[kubelet]:-}" ] && [ -n "${PIDS[kube-apiserver]:-}" ] && kill -0 "${PIDS[kubelet]}" 2>/dev/null; then
		if [ -n "$(kc get pods -A -o name 2>/dev/null)" ]; then
			kc delete deployment,service,pod --all --wait=false >/dev/null 2>&1
			for _ in $(seq 60); do [ -z "$(kc get pods -A -o name 2>/dev/null)" ] && break; sleep 0.5; done
		fi
	fi
	stop kubelet
	stop kube-proxy
	# Whatever kubelet left: through the CRI, which runs CNI DEL.
	if [ -n "${PIDS[containerd]:-}" ] && kill -0 "${PIDS[containerd]}" 2>/dev/null; then
		remove_cri_pods
		grep -oE '[0-9a-f]{64}' "$T/log/containerd.log" 2>/dev/null | sort -u >>"$T/pod-ids"
	fi
	stop containerd
	kill_leftover_shims
	kill_cgroup_procs "$CGROOT"
	if [ -n "${PIDS[daemon]:-}" ] && kill -0 "${PIDS[daemon]}" 2>/dev/null; then
		delete_pairs
	fi
	# The rest, newest first: daemon, scheduler, controller-manager, apiserver, etcd.
	local i
	for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do stop "${ORDER[i]}"; done
	remove_netns "${POD_SUBNET%.*}\."
	rm -f /var/lib/cni/results/"$NET"-* 2>/dev/null
	sort -u "$T/pod-ids" 2>/dev/null | while read -r id; do rm -f "/var/lib/cni/results/cni-loopback-$id-lo"; done
	sort -u "$T/pod-ids" 2>/dev/null | remove_shim_sockets
	[ -n "$RUN_CONTAINERD_EXISTED" ] || rmdir /run/containerd/s /run/containerd 2>/dev/null
	unmount_all_under_t
	[ -e "$NSPATH" ] && ip netns del "$NS"
	[ -e "/var/run/netns/$EXT_NS" ] && ip netns del "$EXT_NS"
	remove_cgroups "$CGROOT"
	# kubelet's symlinks to container logs of containers it had no time to
	# remove (the cleanup stops it right after the pods are gone).
	find /var/log/containers -maxdepth 1 -type l -lname "$T/*" -delete 2>/dev/null
	if [ -f "$T/fixed-paths-made" ]; then
		while read -r d; do
			if [ -S "$d" ]; then rm -f "$d"; elif [ -d "$d" ]; then find "$d" -depth -type d -empty -delete; fi
		done <"$T/fixed-paths-made"
	fi
	if [ -n "$SYSCTLS_SAVED" ]; then
		while read -r k v; do
			[ "$(cat "/proc/sys/$k")" = "$v" ] || echo "$v" >"/proc/sys/$k"
		done <"$T/sysctls"
	fi
	if [ "${EPAIR_E2E_KEEP:-}" = 1 ]; then
		echo "e2e-kubelet: kept $T" >&2
	elif grep -qF " $T/" /proc/self/mountinfo; then
		echo "e2e-kubelet: mounts left under $T, not removing it" >&2
		[ $rc -ne 0 ] || rc=1
	else
		rm -rf "$T"
	fi
	cleanup_end $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'echo "e2e-kubelet: line $LINENO: command failed: $BASH_COMMAND" >&2' ERR

# ---------------------------------------------------------------- tools

install_tools "${APT_PKGS[@]}"
log "Kubernetes binaries (hack/k8s-build.sh; cached per Kubernetes and Go version)"
K8S=$("$ROOT/hack/k8s-build.sh")
log "tools: kubelet $("$K8S/kubelet" --version | awk '{print $2}'), $(containerd --version | awk '{print $1, $3}'), runc $(runc --version | awk 'NR==1{print $3}'), etcd $(etcd --version | awk 'NR==1{print $3}')"

T=$(mktemp -d /tmp/epair-kube.XXXXXX)
chmod 0700 "$T"
mkdir -p "$T/cni-bin" "$T/cni-conf" "$T/ipam" "$T/log" "$T/img" "$T/pki" "$T/kubelet" "$T/pod-logs" "$T/volume-plugins"
record_baselines
# Paths kubelet uses whatever --root-dir says (the device plugin socket,
# the container log symlinks): removed again if this run made them.
for d in "${FIXED_PATHS[@]}"; do [ -e "$d" ] || echo "$d"; done >"$T/fixed-paths-made"
for k in "${KERNEL_SYSCTLS[@]}"; do echo "$k $(cat "/proc/sys/$k")"; done >"$T/sysctls"
SYSCTLS_SAVED=1

# ---------------------------------------------------------------- images

# shellcheck disable=SC2119 # no extra entries
build_images

# ---------------------------------------------------------------- certificates

log "certificates (openssl)"
(
	cd "$T/pki"
	exec 2>openssl.log
	openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=epair-e2e-ca
	# sign NAME SUBJECT EXTENSIONS
	sign() {
		openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2"
		printf '%s\n' "$3" >"$1.ext"
		openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out "$1.crt" -extfile "$1.ext"
	}
	sign apiserver /CN=kube-apiserver "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$NODE_IP,IP:$KUBERNETES_SVC_IP,IP:127.0.0.1,DNS:localhost,DNS:$NODE_NAME,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
	# One system:masters client for kubectl, the apiserver->kubelet calls and
	# every component (a test cluster: no per-component identities).
	sign admin "/O=system:masters/CN=epair-e2e-admin" "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
	openssl genrsa -out sa.key 2048
	openssl rsa -in sa.key -pubout -out sa.pub
) || { cat "$T/pki/openssl.log" >&2; die "openssl failed"; }
cat >"$T/pki/admin.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: "https://$NODE_IP:6443", certificate-authority: "$T/pki/ca.crt"}
users:
- name: admin
  user: {client-certificate: "$T/pki/admin.crt", client-key: "$T/pki/admin.key"}
contexts:
- name: e2e
  context: {cluster: e2e, user: admin, namespace: default}
current-context: e2e
EOF

# ---------------------------------------------------------------- node network

log "network namespace $NS (node $NODE_IP), epair daemon"
ip netns add "$NS"
ip netns add "$EXT_NS"
ip -n "$NS" link set lo up
# The node address on a veth whose peer sits in a second, empty namespace:
# a real interface and a default route (kube-proxy, the apiserver's
# advertise address and kubelet's node IP need one), and traffic to
# anything else simply ends there.
ip -n "$NS" link add eth0 type veth peer name eth0 netns "$EXT_NS"
ip -n "$NS" addr add "$NODE_IP/24" dev eth0
ip -n "$NS" link set eth0 up
ip -n "$EXT_NS" addr add "$EXT_IP/24" dev eth0
ip -n "$EXT_NS" link set eth0 up
ip -n "$NS" route add default via "$EXT_IP"

start daemon "$EPAIR" daemon --socket "$T/epair.sock" --state-dir "$T/epair-state" --log-level debug
for _ in $(seq 100); do ep pair list >/dev/null 2>&1 && break; sleep 0.05; done
check daemon-ready ep pair list

# ---------------------------------------------------------------- control plane

log "etcd, kube-apiserver"
start etcd etcd --name e2e --data-dir "$T/etcd" \
	--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
	--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
	--initial-cluster e2e=http://127.0.0.1:2380
start kube-apiserver "$K8S/kube-apiserver" \
	--etcd-servers=http://127.0.0.1:2379 \
	--advertise-address="$NODE_IP" --secure-port=6443 --cert-dir="$T/pki" \
	--tls-cert-file="$T/pki/apiserver.crt" --tls-private-key-file="$T/pki/apiserver.key" \
	--client-ca-file="$T/pki/ca.crt" \
	--service-account-key-file="$T/pki/sa.pub" --service-account-signing-key-file="$T/pki/sa.key" \
	--service-account-issuer=https://kubernetes.default.svc.cluster.local \
	--service-cluster-ip-range="$SERVICE_RANGE" \
	--authorization-mode=Node,RBAC \
	--kubelet-client-certificate="$T/pki/admin.crt" --kubelet-client-key="$T/pki/admin.key" \
	--kubelet-preferred-address-types=InternalIP,Hostname
apiserver_ready() { running etcd && running kube-apiserver && kc get --raw /readyz; }
check apiserver-ready retry 60 apiserver_ready

log "kube-controller-manager, kube-scheduler"
start kube-controller-manager "$K8S/kube-controller-manager" \
	--kubeconfig="$T/pki/admin.kubeconfig" --authentication-kubeconfig="$T/pki/admin.kubeconfig" \
	--authorization-kubeconfig="$T/pki/admin.kubeconfig" \
	--service-account-private-key-file="$T/pki/sa.key" --root-ca-file="$T/pki/ca.crt" \
	--service-cluster-ip-range="$SERVICE_RANGE" \
	--flex-volume-plugin-dir="$T/volume-plugins" \
	--leader-elect=false --bind-address=127.0.0.1
start kube-scheduler "$K8S/kube-scheduler" \
	--kubeconfig="$T/pki/admin.kubeconfig" --authentication-kubeconfig="$T/pki/admin.kubeconfig" \
	--authorization-kubeconfig="$T/pki/admin.kubeconfig" \
	--leader-elect=false --bind-address=127.0.0.1

# ---------------------------------------------------------------- containerd

cp "$EPAIR" "$T/cni-bin/epair"
cp "$CNI_PLUGINS"/* "$T/cni-bin/"
epair_conflist "$NET" "$POD_SUBNET" >"$T/cni-conf/10-$NET.conflist"

write_containerd_config

log "containerd"
start containerd containerd --config "$T/containerd.toml"
check containerd-ready retry 20 cri info
check import-pause ctr_ images import "$T/img/pause.tar"
check import-busybox ctr_ images import "$T/img/busybox.tar"

# ---------------------------------------------------------------- kubelet, kube-proxy

# The cgroup root of every pod, in each hierarchy (kubelet wants it to exist).
for c in /sys/fs/cgroup/*/; do
	mountpoint -q "$c" || continue
	mkdir -p "$c${CGROOT#/}"
	if [ -f "${c}cpuset.cpus" ]; then
		cat "${c}cpuset.cpus" >"$c${CGROOT#/}/cpuset.cpus"
		cat "${c}cpuset.mems" >"$c${CGROOT#/}/cpuset.mems"
	fi
done

cat >"$T/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$T/containerd.sock
imageServiceEndpoint: unix://$T/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: $CGROOT
failCgroupV1: false
oomScoreAdj: 0
failSwapOn: false
podLogsDir: $T/pod-logs
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $T/pki/ca.crt}
authorization: {mode: AlwaysAllow}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
# A test node on a shared machine: never evict, never delete our images.
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
registerNode: true
rotateCertificates: false
serializeImagePulls: false
EOF
cat >"$T/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_SUBNET
clientConnection: {kubeconfig: $T/pki/admin.kubeconfig}
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the conntrack sysctls alone (nf_conntrack_max is the machine's).
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF

log "kubelet, kube-proxy"
start kubelet "$K8S/kubelet" --config="$T/kubelet.yaml" --kubeconfig="$T/pki/admin.kubeconfig" \
	--root-dir="$T/kubelet" --cert-dir="$T/kubelet/pki" --volume-plugin-dir="$T/volume-plugins" \
	--hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
	--pod-infra-container-image="$PAUSE_IMAGE" --v=2
start kube-proxy "$K8S/kube-proxy" --config="$T/kube-proxy.yaml" --v=2

KUBELET_T0=$(date +%s%N)
node_ready() {
	running kubelet && running containerd && running kube-proxy || return 1
	kc get node "$NODE_NAME" -o json | jq -e '.status.conditions[] | select(.type == "Ready" and .status == "True")' >/dev/null ||
		{ kc get node "$NODE_NAME" -o json | jq '.status.conditions'; return 1; }
}
check node-ready retry 120 node_ready
log "node Ready $(( ($(date +%s%N) - KUBELET_T0) / 1000000 )) ms after kubelet started"
check default-serviceaccount retry 60 kc get serviceaccount default

# ---------------------------------------------------------------- workload

cat >"$T/app.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: $APP}
spec:
  replicas: $REPLICAS
  selector: {matchLabels: {app: $APP}}
  template:
    metadata: {labels: {app: $APP}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: echo
        image: $TEST_IMAGE
        imagePullPolicy: Never
        # busybox nc: -ll keeps listening, -e runs cat per connection.
        command: [sh, -c, 'echo "epair-e2e-hello from \$HOSTNAME" >/tmp/msg; exec nc -ll -p 8080 -e cat /tmp/msg']
        ports: [{containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: $APP}
spec:
  selector: {app: $APP}
  ports: [{port: 80, targetPort: 8080}]
EOF

log "Deployment of $REPLICAS pods and a ClusterIP Service"
check apply-deployment-and-service kc apply -f "$T/app.yaml"
check deployment-available kc rollout status "deployment/$APP" --timeout=90s

kc get pods -l "app=$APP" -o json >"$T/pods.json"
mapfile -t PODS < <(jq -r '.items[].metadata.name' "$T/pods.json")
mapfile -t IPS < <(jq -r '.items[].status.podIP' "$T/pods.json")
SVC_IP=$(kc get service "$APP" -o jsonpath='{.spec.clusterIP}')
for i in "${!PODS[@]}"; do log "pod ${PODS[i]} ${IPS[i]}"; done
log "service $APP $SVC_IP:80"
# The pods' netns paths, for the leftover check and the cleanup.
record_netns

pods_running() {
	local n
	n=$(jq '[.items[] | select(.status.phase == "Running")] | length' "$T/pods.json")
	[ "$n" = "$REPLICAS" ] || { echo "$n of $REPLICAS pods Running"; jq -r '.items[] | "\(.metadata.name) \(.status.phase)"' "$T/pods.json"; return 1; }
	for ip in "${IPS[@]}"; do
		case $ip in ${POD_SUBNET%.*}.*) ;; *) echo "pod IP '$ip' not in $POD_SUBNET"; return 1 ;; esac
	done
	[ "$(printf '%s\n' "${IPS[@]}" | sort -u | wc -l)" = "$REPLICAS" ] || { echo "pod IPs not distinct: ${IPS[*]}"; return 1; }
}
check pods-running-ips-in-subnet pods_running

eth0_ip() { # POD IP
	local got
	got=$(kc exec "$1" -- ip -4 -o addr show eth0 | awk '{print $4}')
	[ "$got" = "$2/24" ] || { echo "eth0 in $1 has '$got', the API says '$2'"; kc exec "$1" -- ip addr; return 1; }
}
for i in "${!PODS[@]}"; do check "pod-${i}-eth0-has-pod-ip" eth0_ip "${PODS[i]}" "${IPS[i]}"; done

host_side() { # a pair per pod, a /32 route per pod via an epair b end, the gateway
	local n
	n=$(ep pair list | jq length)
	[ "$n" = "$REPLICAS" ] || { echo "pair list has $n pairs"; ep pair list; return 1; }
	for ip in "${IPS[@]}"; do
		ip -n "$NS" -4 route show "$ip/32" | has 'dev epair[0-9]+b' ||
			{ echo "no host route to $ip via an epair b end:"; ip -n "$NS" -4 route; return 1; }
	done
	ip -n "$NS" -4 addr show | has "inet $POD_GW/32" || { echo "no gateway $POD_GW/32 on a b end"; ip -n "$NS" addr; return 1; }
}
check node-side-pairs-and-routes host_side

# hello FROM TARGET-IP PORT [EXPECTED-POD]: one TCP connection answers the
# pod's string. FROM is a pod name, or "node" for the node's netns.
hello() {
	local out
	if [ "$1" = node ]; then
		out=$(innode busybox nc -w 3 "$2" "$3" </dev/null)
	else
		out=$(kc exec "$1" -- nc -w 3 "$2" "$3")
	fi
	echo "$out"
	has "^epair-e2e-hello from ${4:-$APP-}" <<<"$out"
}
A=${PODS[0]} B=${PODS[1]} C=${PODS[2]}
IPA=${IPS[0]} IPB=${IPS[1]} IPC=${IPS[2]}
check pod-a-to-pod-b-ping kc exec "$A" -- ping -c 2 -i 0.2 -W 2 "$IPB"
check pod-a-to-pod-b-tcp hello "$A" "$IPB" 8080 "$B"
check pod-b-to-pod-c-tcp hello "$B" "$IPC" 8080 "$C"
check pod-c-to-pod-a-tcp hello "$C" "$IPA" 8080 "$A"

# kube-proxy may program the Service a moment after the endpoints are ready.
service_hellos() { # FROM: 6 connections to the ClusterIP, all answered
	local i out backends=()
	retry 20 hello "$1" "$SVC_IP" 80 >/dev/null || { hello "$1" "$SVC_IP" 80; return 1; }
	for i in 1 2 3 4 5 6; do
		out=$(hello "$1" "$SVC_IP" 80) || { echo "connection $i: '$out'"; return 1; }
		backends+=("${out##* }")
	done
	echo "backends: ${backends[*]}"
}
check pod-a-to-service-clusterip service_hellos "$A"
log "$(service_hellos "$A" | tail -n 1)"
check pod-b-to-service-clusterip service_hellos "$B"
check node-to-service-clusterip service_hellos node
for i in "${!PODS[@]}"; do
	check "node-to-pod-${i}-ping" innode ping -c 2 -i 0.2 -W 2 "${IPS[i]}"
	check "node-to-pod-${i}-tcp" hello node "${IPS[i]}" 8080 "${PODS[i]}"
done

# One pod deleted: kubelet tears down its network alone (CNI DEL) while the
# others run; the ReplicaSet's replacement gets a new pair and address.
log "deleting pod $A; its replacement"
check delete-one-pod kc delete pod "$A" --wait=true --timeout=60s
check deployment-available-again kc rollout status "deployment/$APP" --timeout=90s
pod_replaced() {
	local n
	kc get pods -l "app=$APP" -o json | jq -r '.items[] | select(.metadata.deletionTimestamp == null) | "\(.metadata.name) \(.status.podIP)"' >"$T/pods-after"
	n=$(awk -v a="$A" '$1 != a' "$T/pods-after" | wc -l)
	[ "$n" = "$REPLICAS" ] || { echo "$n pods besides $A:"; cat "$T/pods-after"; return 1; }
	D=$(grep -vE "^($A|$B|$C) " "$T/pods-after" | awk '{print $1}')
	IPD=$(grep -vE "^($A|$B|$C) " "$T/pods-after" | awk '{print $2}')
	[ -n "$D" ] || { echo "no new pod:"; cat "$T/pods-after"; return 1; }
}
check pod-replaced pod_replaced
pod_replaced >/dev/null
record_netns
IPS+=("$IPD")
log "pod $D $IPD replaces $A $IPA"
one_pod_gone() { # the old pod's pair and route are gone, the others' are there
	local n x
	n=$(ep pair list | jq length)
	[ "$n" = "$REPLICAS" ] || { echo "pair list has $n pairs, want $REPLICAS"; ep pair list; return 1; }
	if [ "$IPD" != "$IPA" ]; then
		x=$(ip -n "$NS" -4 route show "$IPA/32") && [ -n "$x" ] && { echo "route to the deleted pod's $IPA left: $x"; return 1; }
	fi
	for ip in "$IPB" "$IPC" "$IPD"; do
		ip -n "$NS" -4 route show "$ip/32" | has 'dev epair[0-9]+b' || { echo "no host route to $ip"; ip -n "$NS" -4 route; return 1; }
	done
}
check node-side-after-replacement retry 15 one_pod_gone
check new-pod-eth0-has-pod-ip eth0_ip "$D" "$IPD"
check pod-b-to-new-pod-tcp hello "$B" "$IPD" 8080 "$D"
check new-pod-to-pod-c-tcp hello "$D" "$IPC" 8080 "$C"
check new-pod-to-service-clusterip service_hellos "$D"

# ---------------------------------------------------------------- teardown

log "deleting the Deployment and the Service"
DEL_T0=$(date +%s%N)
check delete-deployment-and-service kc delete -f "$T/app.yaml" --wait=true --timeout=60s
pods_gone() { local l; l=$(kc get pods -l "app=$APP" -o name); [ -z "$l" ] || { echo "pods left: $l"; return 1; }; }
check pods-gone retry 90 pods_gone
log "pods gone $(( ($(date +%s%N) - DEL_T0) / 1000000 )) ms after the delete"

nothing_left() {
	local bad=0 x ip
	x=$(ep pair list | tr -d ' \t\n')
	[ "$x" = "[]" ] || { echo "pairs left: $x"; bad=1; }
	x=$(ip -n "$NS" -o link | awk -F': ' '{print $2}' | grep -E '^epair[0-9]+[ab]') && { echo "epair links left in $NS: $x"; bad=1; }
	x=$(ip -o link | awk -F': ' '{print $2}' | sed 's/@.*//' | grep epair | sort | comm -13 "$T/links-before" -) &&
		[ -n "$x" ] && { echo "new epair links in the machine's namespace: $x"; bad=1; }
	for ip in "${IPS[@]}"; do
		x=$(ip -n "$NS" -4 route show "$ip/32") && [ -n "$x" ] && { echo "route to $ip left: $x"; bad=1; }
	done
	x=$(find "$T/ipam/$NET" -mindepth 1 ! -name lock ! -name 'last_reserved_ip.*' -printf '%f ')
	[ -z "$x" ] || { echo "host-local reservations left in $T/ipam/$NET: $x"; bad=1; }
	while read -r p; do [ -e "$p" ] && { echo "pod netns $p left"; bad=1; }; done <"$T/netns-paths"
	x=$(find /var/lib/cni/results -maxdepth 1 -name "$NET-*" 2>/dev/null)
	[ -z "$x" ] || { echo "libcni cache left: $x"; bad=1; }
	return $bad
}
check nothing-left-after-delete retry 30 nothing_left
log "network torn down $(( ($(date +%s%N) - DEL_T0) / 1000000 )) ms after the delete"

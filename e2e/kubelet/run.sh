#!/usr/bin/env bash
# kubelet end-to-end suite: a real single-node Kubernetes (etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, containerd,
# kubelet, kube-proxy in iptables mode) on which epair is installed the way
# a user installs it: the image imported into containerd and
# `kubectl apply -f conf/kubernetes/epair.yaml`. The DaemonSet's pod (the
# agent) installs bin/epair and the reference plugins into the CNI bin dir,
# writes the conflist from the Node's podCIDR, and runs the daemon; then
# pods get their network through kubelet -> containerd's CRI -> libcni ->
# epair -> the agent's daemon. The suite writes no conflist, installs no
# CNI binary and starts no daemon itself.
#
# The whole node runs inside a private network namespace (nsenter --net, so
# /sys/fs/cgroup and the mounts stay the machine's): the node address, the b
# ends, host routes, kube-proxy's iptables rules and ip_forward live there,
# never in the machine's own namespace. Every state directory (etcd data,
# certificates, containerd root/state, kubelet --root-dir, pod logs, CNI
# dataDir, the agent's socket and state, the CNI bin and conf dirs) is
# under one temp dir; the manifests' hostPaths are rewritten to point there.
# Pods run under the cgroup root /epair-kubelet-PID. Images are built
# locally (no registry).
#
# Usage (root): e2e/kubelet/run.sh            (or: make e2e-kubelet)
# Env: EPAIR_BIN (the lean build), EPAIR_KUBE_BIN (the -tags kubernetes
#      build, bin/kube/epair), EPAIR_CNI_PLUGINS, EPAIR_E2E_TOOLS (crictl cache dir),
#      K8S_VERSION and EPAIR_K8S_CACHE (passed to hack/k8s-build.sh),
#      EPAIR_E2E_KEEP=1 (keep the temp dir, for debugging).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SUITE=e2e-kubelet
# shellcheck source=e2e/lib.sh
. "$ROOT/e2e/lib.sh" # EPAIR, CNI_PLUGINS, TOOLS, the images; log, check, cri, cleanup pieces
CRI_TIMEOUT=60
APT_PKGS=(containerd runc etcd-server openssl iproute2 iptables conntrack busybox-static iperf3 util-linux jq)

# The network name of the agent's conflist (libcni cache entries:
# /var/lib/cni/results/$NET-<sandbox id>-eth0; other runs may have entries
# of the same name, so only ours are looked at).
NET=epair
# host-local's reservations: the agent writes --cni-ipam-data-dir (under
# $T, set below) into the conflist as host-local's dataDir, so they stay
# in this run's temp dir, never in the machine's /var/lib/cni/networks.
IPAM_DIR=''
# The cluster's pod range; the controller-manager gives the node a /24 of
# it (spec.podCIDRs), from which the agent renders the conflist.
CLUSTER_CIDR=10.213.16.0/22
POD_SUBNET=10.213.16.0/24 POD_GW=10.213.16.1 # the node's podCIDR (first /24) and its gateway
NODE_IP=10.213.20.1 EXT_IP=10.213.20.2 # node address; its veth peer in a second netns
SERVICE_RANGE=10.96.0.0/16 KUBERNETES_SVC_IP=10.96.0.1
NODE_NAME=epair-e2e-node
EPAIR_KUBE=${EPAIR_KUBE_BIN:-$ROOT/bin/kube/epair}
EPAIR_IMAGE=localhost/epair:e2e
MANIFESTS=$ROOT/conf/kubernetes/epair.yaml
AGENT_LABEL=app.kubernetes.io/name=epair
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
[ -x "$EPAIR_KUBE" ] || die "$EPAIR_KUBE missing: run make build"
for b in host-local loopback portmap; do [ -x "$CNI_PLUGINS/$b" ] || die "$CNI_PLUGINS incomplete: run make cni-plugins"; done

# ---------------------------------------------------------------- helpers

show_logs() {
	[ -n "$LOGS_SHOWN" ] && return
	LOGS_SHOWN=1
	[ -n "$T" ] || return
	local f
	for f in kubelet containerd daemon kube-apiserver kube-proxy kube-controller-manager; do
		[ -f "$T/log/$f.log" ] || continue
		echo "----- $f.log (last 60 lines) -----"
		# without the components' harmless complaint about the (unused)
		# front-proxy CA
		grep -v 'extension-apiserver-authentication' "$T/log/$f.log" | tail -n 60
	done
	# The agent's container logs (every container of every agent pod, as
	# kubelet wrote them, also when the apiserver is gone).
	find "$T/pod-logs" -path '*/kube-system_epair-*' -name '*.log' 2>/dev/null | sort | while read -r f; do
		echo "----- agent ${f#"$T/pod-logs/"} (last 60 lines) -----"
		tail -n 60 "$f"
	done
	if [ -n "${PIDS[kube-apiserver]:-}" ]; then
		echo "----- kubectl get pods,events -----"
		kc get pods -A -o wide 2>&1 | tail -n 20
		kc get events -A --sort-by=.lastTimestamp 2>&1 | tail -n 30
	fi
	echo "----- end of logs -----"
}

innode() { nsenter --net="$NSPATH" "$@"; }
# The agent's host directories (the manifests' hostPaths, rewritten), and
# the daemon's socket as the host sees it: the CLI talks to the agent's
# daemon there, as the CNI plugin does.
agent_run() { echo "$T/host/run/epair"; }
agent_state() { echo "$T/host/var/lib/epair"; }
ep() { "$EPAIR" "$@" --socket "$(agent_run)/epair.sock"; }
kc() { timeout --foreground 60 nsenter --net="$NSPATH" "$K8S/kubectl" --kubeconfig "$T/pki/admin.kubeconfig" "$@"; }
# The pods' network namespaces (by the CRI), for the leftover check and the cleanup.
record_netns() {
	local p
	local js
	for p in $(cri pods -q); do
		# kubelet's GC may remove a stopped sandbox between the list and the
		# inspect (NotFound): it has no netns left to record.
		js=$(cri inspectp -o json "$p" 2>/dev/null) || continue
		jq -r '.info.runtimeSpec.linux.namespaces[]? | select(.type == "network") | .path' <<<"$js"
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
	# The app's pods first, through the API while the whole node and the
	# agent still run, so that kubelet tears them down (CNI DEL, which
	# needs the agent's daemon) as it normally would; then epair itself.
	if [ -n "${PIDS[kubelet]:-}" ] && [ -n "${PIDS[kube-apiserver]:-}" ] && kill -0 "${PIDS[kubelet]}" 2>/dev/null; then
		if [ -n "$(kc get pods -o name 2>/dev/null)" ]; then
			# (not the kubernetes Service: the agent reaches the apiserver by it)
			kc delete service "$APP" --ignore-not-found --wait=false >/dev/null 2>&1
			kc delete deployment,pod --all --wait=false >/dev/null 2>&1
			for _ in $(seq 60); do [ -z "$(kc get pods -o name 2>/dev/null)" ] && break; sleep 0.5; done
		fi
		if [ -f "$T/epair.json" ] && [ -n "$(kc -n kube-system get pods -l "$AGENT_LABEL" -o name 2>/dev/null)" ]; then
			kc delete -f "$T/epair.json" --wait=false >/dev/null 2>&1
			for _ in $(seq 40); do [ -z "$(kc -n kube-system get pods -l "$AGENT_LABEL" -o name 2>/dev/null)" ] && break; sleep 0.5; done
		fi
	fi
	stop kubelet
	stop kube-proxy
	# Whatever kubelet left: through the CRI, which runs CNI DEL. The app's
	# sandboxes before the agent's (hostNetwork: no CNI DEL), whose daemon
	# their DEL needs; a daemon on the agent's state answers in its place if
	# the agent is gone.
	if [ -n "${PIDS[containerd]:-}" ] && kill -0 "${PIDS[containerd]}" 2>/dev/null; then
		fallback_daemon
		remove_cri_pods --namespace default
		remove_cri_pods
		grep -oE '[0-9a-f]{64}' "$T/log/containerd.log" 2>/dev/null | sort -u >>"$T/pod-ids"
	fi
	stop containerd
	kill_leftover_shims
	kill_cgroup_procs "$CGROOT"
	# Pairs whose pods went without a CNI DEL (or whose DEL failed): the
	# TAPs are persistent, so they outlive the agent; a daemon on its state
	# re-attaches to them and deletes them.
	fallback_daemon
	if ep pair list >/dev/null 2>&1; then
		delete_pairs
	fi
	# The rest, newest first: the fallback daemon, scheduler,
	# controller-manager, apiserver, etcd.
	local i
	for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do stop "${ORDER[i]}"; done
	remove_netns "${POD_SUBNET%.*}\."
	# libcni's cache entries of our sandboxes only (the network name is
	# epair's default, other runs may use it); the reservations are in $T.
	sort -u "$T/pod-ids" 2>/dev/null | while read -r id; do
		rm -f "/var/lib/cni/results/$NET-$id-eth0" "/var/lib/cni/results/cni-loopback-$id-lo"
	done
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
# our_reservations: host-local's reservation files in $IPAM_DIR that hold
# one of our sandbox ids (every id in this containerd's log).
our_reservations() {
	local f
	[ -d "$IPAM_DIR" ] && [ -f "$T/log/containerd.log" ] || return 0
	grep -oE '[0-9a-f]{64}' "$T/log/containerd.log" | sort -u >"$T/our-ids"
	find "$IPAM_DIR" -mindepth 1 -maxdepth 1 -type f ! -name lock ! -name 'last_reserved_ip.*' | while read -r f; do
		grep -qxFf "$T/our-ids" <(head -n 1 "$f" | tr -d '\r') && echo "$f"
	done
	return 0
}
# portmap_rules_gone: no per-pod rule of portmap's in the node's nat table
# (a CNI-DN-* chain, a jump to one, a rule commented with a sandbox id); the
# node's netns is the suite's, so any is ours. IPv4 only: so are the pods.
portmap_rules_gone() {
	local rules x
	rules=$(innode iptables-save -t nat) || { echo "iptables-save failed"; return 1; }
	x=$(grep -E 'CNI-DN-|dnat name: ' <<<"$rules") || return 0
	echo "portmap's rules left in the node's nat table:"
	echo "$x"
	return 1
}
# fallback_daemon: a plain `epair daemon` on the agent's socket and state,
# in the node's netns, when the agent's daemon does not answer (it is gone,
# or never came up) and its state holds pairs; for the cleanup.
fallback_daemon() {
	local st
	st=$(agent_state)/state.json
	[ -f "$st" ] || return 0
	jq -e '(.pairs // {}) | length == 0' "$st" >/dev/null 2>&1 && return 0
	ep pair list >/dev/null 2>&1 && return 0
	[ -n "${PIDS[daemon]:-}" ] && kill -0 "${PIDS[daemon]}" 2>/dev/null && return 0
	echo "cleanup: the agent's daemon does not answer: starting one on its state" >&2
	start daemon "$EPAIR" daemon --socket "$(agent_run)/epair.sock" --state-dir "$(agent_state)"
	for _ in $(seq 50); do ep pair list >/dev/null 2>&1 && break; sleep 0.1; done
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
# $T/cni-bin and $T/cni-conf are containerd's CNI dirs: empty, as on a
# node before a network is installed. $T/host/{run,var/lib}/epair are
# made by kubelet (the DaemonSet's hostPaths are DirectoryOrCreate).
IPAM_DIR=$T/ipam/$NET
mkdir -p "$T/cni-bin" "$T/cni-conf" "$T/log" "$T/img" "$T/pki" "$T/kubelet" "$T/pod-logs" "$T/volume-plugins"
record_baselines
# Paths kubelet uses whatever --root-dir says (the device plugin socket,
# the container log symlinks): removed again if this run made them.
for d in "${FIXED_PATHS[@]}"; do [ -e "$d" ] || echo "$d"; done >"$T/fixed-paths-made"
for k in "${KERNEL_SYSCTLS[@]}"; do echo "$k $(cat "/proc/sys/$k")"; done >"$T/sysctls"
SYSCTLS_SAVED=1

# ---------------------------------------------------------------- images

# The test image also has udphello, the UDP server and client of the
# hostPort checks (busybox nc has no UDP); the node runs it from $T/img;
# and iperf3 with its libraries, for the shaping checks.
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$T/img/udphello" ./e2e/kubelet/udphello)
entries=("file:$T/img/udphello:/bin/udphello" file:/usr/bin/iperf3:/usr/bin/iperf3)
while read -r lib; do
	entries+=("file:$(readlink -f "$lib"):$lib")
done < <(ldd /usr/bin/iperf3 | grep -o '/[^ ]*')
build_images "${entries[@]}"
log "building the epair image $EPAIR_IMAGE (hack/image.sh)"
EPAIR_BIN=$EPAIR EPAIR_KUBE_BIN=$EPAIR_KUBE EPAIR_CNI_PLUGINS=$CNI_PLUGINS \
	"$ROOT/hack/image.sh" "$T/img/epair.tar" "$EPAIR_IMAGE" >/dev/null

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

log "network namespace $NS (node $NODE_IP)"
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
	--allow-privileged=true \
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
	--allocate-node-cidrs=true --cluster-cidr="$CLUSTER_CIDR" --node-cidr-mask-size=24 \
	--flex-volume-plugin-dir="$T/volume-plugins" \
	--leader-elect=false --bind-address=127.0.0.1
start kube-scheduler "$K8S/kube-scheduler" \
	--kubeconfig="$T/pki/admin.kubeconfig" --authentication-kubeconfig="$T/pki/admin.kubeconfig" \
	--authorization-kubeconfig="$T/pki/admin.kubeconfig" \
	--leader-elect=false --bind-address=127.0.0.1

# ---------------------------------------------------------------- containerd

write_containerd_config

log "containerd"
start containerd containerd --config "$T/containerd.toml"
check containerd-ready retry 20 cri info
check import-pause ctr_ images import "$T/img/pause.tar"
check import-busybox ctr_ images import "$T/img/busybox.tar"
check import-epair ctr_ images import "$T/img/epair.tar"

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
clusterCIDR: $CLUSTER_CIDR
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
CONFLIST=$T/cni-conf/10-epair.conflist
# Before epair: the node registers, gets its podCIDR, and is NotReady
# because the runtime has no network (no conflist yet).
node_not_ready_without_network() {
	local node ready
	running kubelet && running containerd && running kube-proxy || return 1
	node=$(kc get node "$NODE_NAME" -o json) || return 1
	ready=$(jq -c '.status.conditions[]? | select(.type == "Ready") | {status, reason, message}' <<<"$node")
	echo "Ready: $ready"
	jq -e '.status == "False" and (.message | test("network not ready|NetworkPluginNotReady|cni"; "i"))' <<<"${ready:-null}" >/dev/null || return 1
	[ -z "$(ls -A "$T/cni-conf")" ] || { echo "CNI conf dir not empty:"; ls -la "$T/cni-conf"; return 1; }
}
check node-registered-notready-no-network retry 60 node_not_ready_without_network
log "node registered, NotReady (no network) $(( ($(date +%s%N) - KUBELET_T0) / 1000000 )) ms after kubelet started"
node_podcidr() {
	local got
	got=$(kc get node "$NODE_NAME" -o json | jq -c .spec.podCIDRs)
	[ "$got" = "[\"$POD_SUBNET\"]" ] || { echo "spec.podCIDRs '$got', want [$POD_SUBNET] (of $CLUSTER_CIDR)"; return 1; }
}
check node-podcidr-allocated retry 30 node_podcidr
check default-serviceaccount retry 60 kc get serviceaccount default

# ---------------------------------------------------------------- install epair

# The manifests as shipped, validated by this apiserver (schema, defaults,
# admission: privileged, the priority class) without creating anything.
log "installing epair: kubectl apply --dry-run=server -f conf/kubernetes/epair.yaml"
check manifests-server-dry-run kc apply --dry-run=server -f "$MANIFESTS"
nothing_created() {
	if kc -n kube-system get daemonset/epair serviceaccount/epair -o name 2>/dev/null; then echo "the dry run created them"; return 1; fi
}
check dry-run-created-nothing nothing_created

# rewrite_manifests IN OUT: IN as JSON (a List), with what differs on this
# test node, where the whole node lives under $T: the hostPaths of the CNI
# dirs, the daemon's run and state dirs point under $T (the pods' netns
# and /dev/net/tun stay the machine's); --cni-socket tells the agent where
# the host sees its socket; the suite's pod and Service ranges; the image
# the suite imported. Everything else is applied as shipped. Logs the diff.
rewrite_manifests() {
	kc create --dry-run=client -o json -f "$1" | jq -s '{apiVersion: "v1", kind: "List", items: .}' >"$T/epair-orig.json"
	jq --arg bin "$T/cni-bin" --arg conf "$T/cni-conf" --arg run "$(agent_run)" --arg state "$(agent_state)" \
		--arg image "$EPAIR_IMAGE" --arg ipam "$T/ipam" --arg cluster "$CLUSTER_CIDR" --arg service "$SERVICE_RANGE" '
		{"/opt/cni/bin": $bin, "/etc/cni/net.d": $conf, "/run/epair": $run, "/var/lib/epair": $state} as $paths
		| .items |= map(if .kind != "DaemonSet" then . else
			.spec.template.spec.volumes |= map(if .hostPath then .hostPath.path = ($paths[.hostPath.path] // .hostPath.path) else . end)
			| .spec.template.spec.containers[0] |= (
				.image = $image
				| .args = [.args[] | if startswith("--cluster-cidr=") then "--cluster-cidr=" + $cluster
					elif startswith("--service-cidr=") then "--service-cidr=" + $service else . end]
					+ ["--cni-socket=" + $run + "/epair.sock", "--cni-ipam-data-dir=" + $ipam])
		end)' "$T/epair-orig.json" >"$2"
	# The changed lines, in the log.
	diff <(jq -S . "$T/epair-orig.json") <(jq -S . "$2") | grep '^[<>]' | sed 's/^/    rewrite: /' || true
}
rewrite_manifests "$MANIFESTS" "$T/epair.json"
log "kubectl apply -f (the rewritten manifests)"
APPLY_T0=$(date +%s%N)
check apply-epair kc apply -f "$T/epair.json"

# The node turns Ready only once the agent wrote the conflist: whenever the
# node is seen Ready, the conflist exists (it is looked at after the node:
# looked at before, it may be written while kubectl asks, and the node turn
# Ready in between); containerd reloads its CNI config and kubelet reports
# the runtime's network ready only after that.
wait_ready_after_conflist() {
	local end=$(( $(date +%s) + 120 )) had st
	while :; do
		st=$(kc get node "$NODE_NAME" -o json | jq -r '.status.conditions[] | select(.type == "Ready") | .status') || st=unknown
		had=0
		[ -s "$CONFLIST" ] && had=1
		if [ "$st" = True ]; then
			[ "$had" = 1 ] || { echo "node Ready while $CONFLIST did not exist"; ls -la "$T/cni-conf"; return 1; }
			echo "node Ready, $CONFLIST present"
			return 0
		fi
		[ "$(date +%s)" -lt "$end" ] || { echo "node not Ready"; kc get node "$NODE_NAME" -o json | jq .status.conditions; ls -la "$T/cni-conf"; return 1; }
		sleep 0.2
	done
}
check node-ready-after-conflist wait_ready_after_conflist
log "node Ready $(( ($(date +%s%N) - APPLY_T0) / 1000000 )) ms after the apply"

# The conflist is the agent's: rendered from the Node's podCIDRs, the
# daemon's socket as the host sees it, the MTU of the node's uplink (the
# link holding its InternalIP), then portmap with the portMappings
# capability (the pods' hostPorts); the only file in the conf dir.
conflist_from_node() {
	local cidrs mtu ready_at
	cidrs=$(kc get node "$NODE_NAME" -o json | jq -c '.spec.podCIDRs')
	mtu=$(ip -n "$NS" -j link show eth0 | jq '.[0].mtu')
	cat "$CONFLIST"
	jq -e --argjson cidrs "$cidrs" --arg sock "$(agent_run)/epair.sock" --argjson mtu "$mtu" '
		.name == "epair" and (.plugins | length) == 2 and .plugins[0].type == "epair"
		and .plugins[0].socket == $sock and .plugins[0].mtu == $mtu and .plugins[0].ipam.type == "host-local"
		and [.plugins[0].ipam.ranges[][].subnet] == $cidrs
		and .plugins[1] == {type: "portmap", capabilities: {portMappings: true}}' "$CONFLIST" >/dev/null ||
		{ echo "not rendered from spec.podCIDRs $cidrs, socket $(agent_run)/epair.sock, uplink MTU $mtu, then portmap"; return 1; }
	[ "$(ls -A "$T/cni-conf")" = 10-epair.conflist ] || { echo "conf dir:"; ls -la "$T/cni-conf"; return 1; }
	# And it was written before the node turned Ready (whole seconds: the
	# condition's time has no finer grain).
	ready_at=$(kc get node "$NODE_NAME" -o json | jq -r '.status.conditions[] | select(.type == "Ready") | .lastTransitionTime')
	[ "$(stat -c %Y "$CONFLIST")" -le "$(date -d "$ready_at" +%s)" ] ||
		{ echo "conflist written at $(date -d "@$(stat -c %Y "$CONFLIST")" -u +%FT%TZ), after Ready at $ready_at"; return 1; }
}
check conflist-rendered-from-podcidr conflist_from_node

# The agent's pod Ready: its readiness probe (/readyz on 127.0.0.1:9807 in
# the node's netns) answers 200 once the datapath serves and the conflist
# is written.
check agent-daemonset-rolled-out kc -n kube-system rollout status daemonset/epair --timeout=90s
agent_pod() { kc -n kube-system get pods -l "$AGENT_LABEL" -o json | jq -r '.items[] | select(.metadata.deletionTimestamp == null) | .metadata.name'; }
agent_ready() { # NOT-THIS-POD: one agent pod, Ready, not NOT-THIS-POD ('' for any)
	local p
	p=$(agent_pod)
	if [ -z "$p" ] || [ "$(wc -l <<<"$p")" != 1 ]; then echo "agent pods: '$p'"; return 1; fi
	[ "$p" != "$1" ] || { echo "still $p"; return 1; }
	kc -n kube-system get pod "$p" -o json | jq -e '.status.conditions[] | select(.type == "Ready" and .status == "True")' >/dev/null ||
		{ kc -n kube-system get pod "$p" -o json | jq -c '.status.conditions'; return 1; }
	echo "$p"
}
check agent-pod-ready retry 30 agent_ready ''
AGENT=$(agent_ready '')
log "agent pod $AGENT Ready $(( ($(date +%s%N) - APPLY_T0) / 1000000 )) ms after the apply"

# What the agent installed from its image into the (empty) CNI bin dir:
# epair is the lean build (the one kubelet's runtime execs per pod), the
# reference plugins are hack/cni-plugins.sh's.
cni_binaries_installed() {
	local b
	ls -la "$T/cni-bin"
	cmp "$EPAIR" "$T/cni-bin/epair" || { echo "$T/cni-bin/epair is not $EPAIR"; return 1; }
	for b in host-local loopback portmap; do
		cmp "$CNI_PLUGINS/$b" "$T/cni-bin/$b" || { echo "$T/cni-bin/$b is not $CNI_PLUGINS/$b"; return 1; }
	done
	[ -x "$T/cni-bin/epair" ] || return 1
}
check cni-binaries-installed cni_binaries_installed

# A hostNetwork pod shares the network namespace of the runtime that
# started it: the node's, not the machine's. The agent's daemon answers on
# the host path of its socket.
agent_in_node_netns() {
	local id pid
	id=$(cri ps -q --state running --name '^epair$' --label io.kubernetes.pod.namespace=kube-system)
	[ "$(wc -w <<<"$id")" = 1 ] || { echo "agent containers: '$id'"; return 1; }
	pid=$(cri inspect -o json "$id" | jq -r '.info.pid')
	[ "$(stat -L -c %i "/proc/$pid/ns/net")" = "$(stat -L -c %i "$NSPATH")" ] ||
		{ echo "agent (pid $pid) is in $(readlink "/proc/$pid/ns/net"), not $NS"; return 1; }
	[ "$(stat -L -c %i "/proc/$pid/ns/net")" != "$(stat -L -c %i /proc/self/ns/net)" ] || { echo "agent in the machine's netns"; return 1; }
	innode bash -c 'exec 3<>/dev/tcp/127.0.0.1/9807 && printf "GET /readyz HTTP/1.0\r\n\r\n" >&3 && cat <&3' | has '^HTTP/1\.[01] 200'
	ep pair list
}
check agent-in-node-netns-and-daemon-answers agent_in_node_netns

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
	# One reservation per pod where the agent's conflist keeps them (and
	# where the leftover checks look).
	n=$(our_reservations | wc -l)
	[ "$n" = "$REPLICAS" ] || { echo "$n host-local reservations of our pods in $IPAM_DIR"; ls -la "$IPAM_DIR"; return 1; }
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

# The agent's Prometheus metrics, on the node's address (hostNetwork,
# --metrics-addr=:9808 as shipped): the pods' counters, labelled by pod.
agent_metrics_name_pod() { # POD: a series of its a end, by pod name and namespace
	innode timeout 5 bash -c "exec 3<>/dev/tcp/$NODE_IP/9808 && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3" |
		has "^epair_transmit_packets_total\{.*end=\"a\".*pod_name=\"$1\",pod_namespace=\"default\"\} [1-9]"
}
check agent-metrics-name-the-pod retry 10 agent_metrics_name_pod "$A"

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

# ---------------------------------------------------------------- agent restart

# The agent's pod deleted while the app runs (what a rolling update or a
# crash does): the DaemonSet's new pod re-attaches its daemon to the
# persistent TAPs from the state in /var/lib/epair. The pods keep their
# eth0 (same ifindex and MAC: the same interface, not a new one) and their
# traffic flows again.
eth0_ids() { kc exec "$1" -- cat /sys/class/net/eth0/ifindex /sys/class/net/eth0/address | tr '\n' ' '; }
declare -A ETH0=()
for p in "$B" "$C" "$D"; do
	ETH0[$p]=$(eth0_ids "$p")
	log "pod $p eth0: ifindex/MAC ${ETH0[$p]}"
done
# Both ends of every pair as the daemon reports them (unit, names,
# ifindex, MAC): the new daemon must report the same TAPs, forwarding.
pair_ends() { ep pair list | jq -c 'map({unit, a: (.a | {name, ifindex, mac}), b: (.b | {name, ifindex, mac})}) | sort_by(.unit)'; }
PAIRS_BEFORE=$(pair_ends)
log "deleting the agent's pod $AGENT while the app runs"
RESTART_T0=$(date +%s%N)
check delete-agent-pod kc -n kube-system delete pod "$AGENT" --wait=true --timeout=60s
check new-agent-pod-ready retry 90 agent_ready "$AGENT"
log "agent pod $(agent_ready '') Ready $(( ($(date +%s%N) - RESTART_T0) / 1000000 )) ms after the delete"
check new-agent-in-node-netns-and-daemon-answers agent_in_node_netns
same_eth0() {
	local p now
	for p in "$B" "$C" "$D"; do
		now=$(eth0_ids "$p")
		[ "$now" = "${ETH0[$p]}" ] || { echo "pod $p eth0 was '${ETH0[$p]}', now '$now'"; return 1; }
	done
	echo "eth0 unchanged in $B $C $D"
}
check pods-keep-eth0-across-agent-restart same_eth0
pairs_kept() {
	local n now
	n=$(ep pair list | jq '[.[] | select(.forwarding)] | length')
	[ "$n" = "$REPLICAS" ] || { echo "pair list has $n forwarding pairs, want $REPLICAS"; ep pair list; return 1; }
	now=$(pair_ends)
	[ "$now" = "$PAIRS_BEFORE" ] || { echo "pairs before the restart: $PAIRS_BEFORE"; echo "after: $now"; return 1; }
}
check pairs-reattached-after-agent-restart retry 10 pairs_kept
# The app pods' readiness probes (TCP from the node) failed while nothing
# forwarded; wait until kubelet sees them again.
check app-pods-ready-again kc wait --for=condition=Ready pod -l "app=$APP" --timeout=60s
check after-restart-pod-b-to-new-pod-ping retry 10 kc exec "$B" -- ping -c 2 -i 0.2 -W 2 "$IPD"
check after-restart-pod-b-to-pod-c-tcp hello "$B" "$IPC" 8080 "$C"
check after-restart-new-pod-to-pod-b-tcp hello "$D" "$IPB" 8080 "$B"
check after-restart-pod-c-to-service-clusterip service_hellos "$C"
log "traffic back $(( ($(date +%s%N) - RESTART_T0) / 1000000 )) ms after the agent's pod was deleted"

# ---------------------------------------------------------------- hostPort

# hostPorts, through the conflist's portmap: the runtime hands a pod's port
# mappings only to a plugin that declares the portMappings capability, and
# portmap DNATs (the hostIP, or any node address):hostPort to the pod. Pod
# hp-any has hostPort $HP_PORT for TCP and UDP on every node address; then
# Kubernetes' conformance case ("[sig-network] HostPort should not have
# conflict between pods with same hostPort but different hostIP and
# protocol"): three pods on hostPort $HP_SAME, hostIP 127.0.0.1 TCP, the
# node IP TCP, the node IP UDP, each reached at its own (hostIP, protocol).
# Every pod answers its name on TCP 8080 (busybox nc) and UDP 8081
# (udphello); it is Ready once both answer inside the pod.
HP_PORT=54321 HP_SAME=54323 HP_LABEL=epair-hostport
HP_PODS=(hp-any hp-lo-tcp hp-node-tcp hp-node-udp)
hp_pod() { # NAME PORTS (a YAML flow sequence): one pod of the hostPort checks
	cat <<EOF
---
apiVersion: v1
kind: Pod
metadata: {name: $1, labels: {app: $HP_LABEL}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: echo
    image: $TEST_IMAGE
    imagePullPolicy: Never
    command: [sh, -c, 'm="epair-e2e-hello from \$HOSTNAME"; echo "\$m" >/tmp/msg; udphello -listen :8081 "\$m" & exec nc -ll -p 8080 -e cat /tmp/msg']
    ports: $2
    readinessProbe:
      exec: {command: [sh, -c, 'udphello -timeout 1s 127.0.0.1:8081 && nc 127.0.0.1 8080 </dev/null']}
      periodSeconds: 1
EOF
}
{
	hp_pod hp-any "[{containerPort: 8080, hostPort: $HP_PORT, protocol: TCP}, {containerPort: 8081, hostPort: $HP_PORT, protocol: UDP}]"
	hp_pod hp-lo-tcp "[{containerPort: 8080, hostPort: $HP_SAME, hostIP: 127.0.0.1, protocol: TCP}]"
	hp_pod hp-node-tcp "[{containerPort: 8080, hostPort: $HP_SAME, hostIP: $NODE_IP, protocol: TCP}]"
	hp_pod hp-node-udp "[{containerPort: 8081, hostPort: $HP_SAME, hostIP: $NODE_IP, protocol: UDP}]"
} >"$T/hostport.yaml"

log "hostPort pods: ${HP_PODS[*]}"
check apply-hostport-pods kc apply -f "$T/hostport.yaml"
check hostport-pods-ready kc wait --for=condition=Ready pod -l "app=$HP_LABEL" --timeout=90s
# All on the one node: the scheduler sees no conflict between the three
# pods on $HP_SAME (their hostIPs or protocols differ).
hp_pods_on_node() {
	local got
	got=$(kc get pods -l "app=$HP_LABEL" -o json | jq -r '.items[] | "\(.metadata.name) \(.status.phase) \(.spec.nodeName)"')
	echo "$got"
	[ "$(awk -v n="$NODE_NAME" '$2 == "Running" && $3 == n' <<<"$got" | wc -l)" = "${#HP_PODS[@]}" ]
}
check hostport-pods-running-on-the-node hp_pods_on_node
declare -A HP_IP=()
for p in "${HP_PODS[@]}"; do
	HP_IP[$p]=$(kc get pod "$p" -o jsonpath='{.status.podIP}')
	IPS+=("${HP_IP[$p]}")
	log "pod $p ${HP_IP[$p]}"
done
record_netns

# What portmap programmed in the node's nat table (iptables, as
# kube-proxy's): per pod a CNI-DN-* chain, DNAT to the pod's address.
hostport_dnat() {
	local rules p
	rules=$(innode iptables-save -t nat) || return 1
	for p in "${HP_PODS[@]}"; do
		has "^-A CNI-DN-.* -j DNAT --to-destination ${HP_IP[$p]//./\\.}:808[01]\$" <<<"$rules" ||
			{ echo "no DNAT to $p (${HP_IP[$p]})"; grep CNI- <<<"$rules"; return 1; }
	done
}
check hostport-dnat-programmed hostport_dnat

# udp_hello FROM TARGET-IP PORT POD: one datagram answered with POD's
# string. FROM is a pod name, or "node" for the node's netns.
udp_hello() {
	local out
	if [ "$1" = node ]; then
		out=$(innode "$T/img/udphello" "$2:$3")
	else
		out=$(kc exec "$1" -- udphello "$2:$3")
	fi
	echo "$out"
	[ "$out" = "epair-e2e-hello from $4" ]
}
check hostport-tcp-node-to-node-ip hello node "$NODE_IP" "$HP_PORT" hp-any
check hostport-tcp-pod-to-node-ip hello "$B" "$NODE_IP" "$HP_PORT" hp-any
check hostport-tcp-hairpin hello hp-any "$NODE_IP" "$HP_PORT" hp-any
check hostport-udp-node-to-node-ip udp_hello node "$NODE_IP" "$HP_PORT" hp-any
check hostport-udp-pod-to-node-ip udp_hello "$B" "$NODE_IP" "$HP_PORT" hp-any
check hostport-same-port-127.0.0.1-tcp hello node 127.0.0.1 "$HP_SAME" hp-lo-tcp
check hostport-same-port-node-ip-tcp hello node "$NODE_IP" "$HP_SAME" hp-node-tcp
check hostport-same-port-node-ip-udp udp_hello node "$NODE_IP" "$HP_SAME" hp-node-udp
# A connection from 127.0.0.1 is routed to the pod only with route_localnet
# on the link it leaves by: portmap (snat, its default) sets it on the
# pod's b end, then masquerades the source. (kube-proxy sets it for all
# links of the node too, for localhost NodePorts: this checks portmap's.)
route_localnet_set() {
	local dev
	dev=$(ip -n "$NS" -4 route show "${HP_IP[hp-lo-tcp]}/32" | awk '$2 == "dev" {print $3}')
	[ -n "$dev" ] || { echo "no route to hp-lo-tcp"; return 1; }
	[ "$(innode cat "/proc/sys/net/ipv4/conf/$dev/route_localnet")" = 1 ] || { echo "route_localnet off on $dev"; return 1; }
}
check hostport-127.0.0.1-route-localnet route_localnet_set

# Deleted, their CNI DEL runs portmap's too: per-pod rules go (the shared
# chains CNI-HOSTPORT-DNAT, -SETMARK and -MASQ stay, empty of pods, as
# portmap leaves them on every node).
check delete-hostport-pods kc delete pod -l "app=$HP_LABEL" --wait=true --timeout=60s
check hostport-rules-gone-after-delete retry 15 portmap_rules_gone

# ---------------------------------------------------------------- shaping

# A Deployment whose pod template carries kubernetes.io/egress-bandwidth and
# ingress-bandwidth: kubelet leaves them in the sandbox config, containerd's
# CRI turns them into the CNI bandwidth capability, which the agent's
# conflist declares; the daemon shapes the pair.
SHAPED=epair-shaped SHAPE_RATE=10000000 # "10M"
cat >"$T/shaped.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: $SHAPED}
spec:
  replicas: 1
  selector: {matchLabels: {app: $SHAPED}}
  template:
    metadata:
      labels: {app: $SHAPED}
      annotations: {kubernetes.io/egress-bandwidth: 10M, kubernetes.io/ingress-bandwidth: 10M}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: box
        image: $TEST_IMAGE
        imagePullPolicy: Never
        # sleep as pid 1 ignores SIGTERM: exit on it, not after the grace period.
        command: [sh, -c, 'trap "exit 0" TERM; sleep 3600 & wait']
EOF
log "Deployment $SHAPED: 1 pod annotated kubernetes.io/{egress,ingress}-bandwidth: 10M"
check apply-shaped-deployment kc apply -f "$T/shaped.yaml"
check shaped-deployment-available kc rollout status "deployment/$SHAPED" --timeout=90s
S=$(kc get pods -l "app=$SHAPED" -o jsonpath='{.items[0].metadata.name}')
IPS_=$(kc get pod "$S" -o jsonpath='{.status.podIP}')
SSB=$(cri pods -q --state ready --label "io.kubernetes.pod.name=$S")
record_netns
log "shaped pod $S $IPS_ (sandbox ${SSB:0:12})"

# Its pair (owner: the sandbox id) shapes both ways at 10000000 bit/s; the
# app's pairs are not shaped.
shaped_pair() {
	local bw
	bw=$(ep pair list | jq -c --arg id "$SSB" '.[] | select(.owner.container_id == $id) | .bandwidth')
	echo "shaped pod's pair bandwidth: $bw"
	jq -e --argjson r "$SHAPE_RATE" '.ingress_rate == $r and .egress_rate == $r and .ingress_burst > 0 and .egress_burst > 0' <<<"$bw" >/dev/null || return 1
	jq -r .egress_burst <<<"$bw" >"$T/shape-burst"
	ep pair list | jq -e --arg id "$SSB" '[.[] | select(.owner.container_id != $id) | select(.bandwidth != null)] | length == 0' >/dev/null ||
		{ echo "other pairs shaped:"; ep pair list | jq -c '.[] | {owner: .owner.container_id, bandwidth}'; return 1; }
}
check shaped-pod-pair-10M shaped_pair
SHAPE_BURST=$(cat "$T/shape-burst")
log "shaped pod's pair: rate $SHAPE_RATE bit/s each way, burst $SHAPE_BURST bits (what containerd passes)"

# Timed: iperf3 to pod b, 2 s from the (unshaped) pod D, then 10 s from the
# shaped pod, near the rate once the burst is spent (shaped_iperf_verdict,
# e2e/lib.sh); D must be over 3 times the rate.
iperf_to_b() { # FROM SECONDS: iperf3 -J from pod FROM to pod b
	kc exec "$B" -- iperf3 -s -1 -D -B "$IPB"
	sleep 0.3
	kc exec "$1" -- iperf3 -c "$IPB" -t "$2" -J
}
shaped_rate() {
	local out unshaped
	iperf_to_b "$D" 2 >"$T/iperf-unshaped.json" || { echo "iperf3 from $D failed"; cat "$T/iperf-unshaped.json"; return 1; }
	unshaped=$(jq '.end.sum_sent.bits_per_second' "$T/iperf-unshaped.json")
	echo "unshaped pod $D: $(jq -n "$unshaped / 1e6 | floor") Mbit/s"
	iperf_to_b "$S" 10 >"$T/iperf-shaped.json" || { echo "iperf3 from $S failed"; cat "$T/iperf-shaped.json"; return 1; }
	out=$(shaped_iperf_verdict "$T/iperf-shaped.json" "$SHAPE_RATE" "$SHAPE_BURST") || { echo "$out"; return 1; }
	echo "$out"
	jq -ne --argjson u "$unshaped" --argjson r "$SHAPE_RATE" '$u > 3 * $r' >/dev/null || { echo "unshaped pod not over 3 times the rate"; return 1; }
}
check iperf3-shaped-pod-to-pod-b-near-10M shaped_rate
log "iperf3 unshaped pod $D -> b: $(jq '.end.sum_sent.bits_per_second / 1e6 | floor' "$T/iperf-unshaped.json") Mbit/s"
log "iperf3 shaped pod -> b: $(shaped_iperf_verdict "$T/iperf-shaped.json" "$SHAPE_RATE" "$SHAPE_BURST")"

log "deleting the Deployment $SHAPED"
check delete-shaped-deployment kc delete -f "$T/shaped.yaml" --wait=true --timeout=60s
shaped_gone() {
	local l
	l=$(kc get pods -l "app=$SHAPED" -o name)
	[ -z "$l" ] || { echo "pods left: $l"; return 1; }
	l=$(ep pair list | jq -c --arg id "$SSB" '.[] | select(.owner.container_id == $id)')
	[ -z "$l" ] || { echo "its pair left: $l"; return 1; }
	l=$(ip -n "$NS" -4 route show "$IPS_/32")
	[ -z "$l" ] || { echo "route to $IPS_ left: $l"; return 1; }
	# Stopped (CNI DEL done), not removed: kubelet's GC removes it later.
	l=$(cri pods -q --state ready --label "io.kubernetes.pod.name=$S")
	[ -z "$l" ] || { echo "sandbox still ready: $l"; return 1; }
}
check shaped-pod-pair-route-gone-sandbox-stopped retry 30 shaped_gone
IPS+=("$IPS_") # for the final leftover checks

# ---------------------------------------------------------------- teardown

log "deleting the Deployment and the Service"
DEL_T0=$(date +%s%N)
check delete-deployment-and-service kc delete -f "$T/app.yaml" --wait=true --timeout=60s
pods_gone() { local l; l=$(kc get pods -l "app=$APP" -o name); [ -z "$l" ] || { echo "pods left: $l"; return 1; }; }
check pods-gone retry 90 pods_gone
log "pods gone $(( ($(date +%s%N) - DEL_T0) / 1000000 )) ms after the delete"

nothing_left() { # [no-daemon]: also when the agent is gone
	local bad=0 x ip id
	if [ "${1:-}" != no-daemon ]; then
		x=$(ep pair list | tr -d ' \t\n')
		[ "$x" = "[]" ] || { echo "pairs left: $x"; bad=1; }
	fi
	x=$(ip -n "$NS" -o link | awk -F': ' '{print $2}' | grep -E '^epair[0-9]+[ab]') && { echo "epair links left in $NS: $x"; bad=1; }
	x=$(ip -o link | awk -F': ' '{print $2}' | sed 's/@.*//' | grep epair | sort | comm -13 "$T/links-before" -) &&
		[ -n "$x" ] && { echo "new epair links in the machine's namespace: $x"; bad=1; }
	for ip in "${IPS[@]}"; do
		x=$(ip -n "$NS" -4 route show "$ip/32") && [ -n "$x" ] && { echo "route to $ip left: $x"; bad=1; }
	done
	x=$(our_reservations)
	[ -z "$x" ] || { echo "host-local reservations of our pods left in $IPAM_DIR: $x"; bad=1; }
	portmap_rules_gone || bad=1
	while read -r p; do [ -e "$p" ] && { echo "pod netns $p left"; bad=1; }; done <"$T/netns-paths"
	# Our sandboxes: the ids in this containerd's log.
	while read -r id; do
		[ -e "/var/lib/cni/results/$NET-$id-eth0" ] && { echo "libcni cache left: /var/lib/cni/results/$NET-$id-eth0"; bad=1; }
	done < <(grep -oE '[0-9a-f]{64}' "$T/log/containerd.log" | sort -u)
	return $bad
}
check nothing-left-after-delete retry 30 nothing_left
log "network torn down $(( ($(date +%s%N) - DEL_T0) / 1000000 )) ms after the delete"

# ---------------------------------------------------------------- uninstall

# epair removed the way it was installed. After the app: the pairs are the
# pods' network, and only the agent's daemon (CNI DEL) removes them.
log "uninstalling epair: kubectl delete -f (the applied manifests)"
UNINSTALL_T0=$(date +%s%N)
check uninstall-epair kc delete -f "$T/epair.json" --wait=true --timeout=60s
agent_gone() {
	local x
	x=$(kc -n kube-system get pods -l "$AGENT_LABEL" -o name)
	[ -z "$x" ] || { echo "agent pods left: $x"; return 1; }
	x=$(cri ps -q --state running --name '^epair$')
	[ -z "$x" ] || { echo "agent containers running: $x"; return 1; }
	if ep pair list >/dev/null 2>&1; then echo "the daemon still answers"; return 1; fi
}
check agent-gone retry 60 agent_gone
log "agent gone $(( ($(date +%s%N) - UNINSTALL_T0) / 1000000 )) ms after the delete"
check nothing-left-after-uninstall nothing_left no-daemon
log "left on the node after the uninstall: CNI bin dir: $(find "$T/cni-bin" -mindepth 1 -printf '%f '); conf dir: $(find "$T/cni-conf" -mindepth 1 -printf '%f ')"

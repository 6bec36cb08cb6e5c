#!/usr/bin/env bash
# containerd end-to-end suite: epair as the CNI plugin of a real container
# runtime, driven through the CRI with crictl, as kubelet would.
#
# A private containerd (own root, state, socket and config under a temp dir)
# and an `epair daemon` run inside a private network namespace (nsenter
# --net, so /sys/fs/cgroup and the mounts stay the machine's): the b ends,
# gateway addresses, host routes and ip_forward land there, never in the
# machine's own namespace. Images are built locally (no registry).
#
# Usage (root): e2e/containerd/run.sh         (or: make e2e-containerd)
# Env: EPAIR_BIN, EPAIR_CNI_PLUGINS, EPAIR_E2E_TOOLS (crictl cache dir),
#      EPAIR_E2E_CHURN (pods created+deleted per plugin, default 20),
#      EPAIR_E2E_KEEP=1 (keep the temp dir, for debugging).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
EPAIR=${EPAIR_BIN:-$ROOT/bin/epair}
CNI_PLUGINS=${EPAIR_CNI_PLUGINS:-$ROOT/bin/cni}
CRICTL_VERSION=v1.34.0 # builds with Go 1.26; talks CRI v1 to containerd 1.6
TOOLS=${EPAIR_E2E_TOOLS:-$ROOT/bin/tools}
CHURN=${EPAIR_E2E_CHURN:-20}
APT_PKGS=(containerd runc iperf3 busybox-static iproute2 util-linux jq)

NET=epair-e2e # CNI network names: $NET (epair) and $NET-bridge
EPAIR_SUBNET=10.213.7.0/24 EPAIR_GW=10.213.7.1
BRIDGE_SUBNET=10.213.8.0/24
PAUSE_IMAGE=localhost/epair-e2e/pause:v1
TEST_IMAGE=localhost/epair-e2e/busybox:v1
NS=epair-ctrd-$$
NSPATH=/var/run/netns/$NS
CGPARENT=/epair-e2e-$$

START=$(date +%s%N)
T='' CTRD_PID='' RUN_CONTAINERD_EXISTED=1 DAEMON_PID='' LOGS_SHOWN='' FAILED_CHECK=''

log() { printf '[%6.1fs] %s\n' "$(( ($(date +%s%N) - START) / 1000000 ))e-3" "$*"; }
die() { echo "e2e-containerd: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (containerd, namespaces, TAPs)"
[ -x "$EPAIR" ] || die "$EPAIR missing: run make build"
[ -x "$CNI_PLUGINS/host-local" ] && [ -x "$CNI_PLUGINS/bridge" ] || die "$CNI_PLUGINS incomplete: run make cni-plugins"

# ---------------------------------------------------------------- helpers

show_logs() {
	[ -n "$LOGS_SHOWN" ] && return
	LOGS_SHOWN=1
	[ -n "$T" ] || return
	for f in containerd.log daemon.log; do
		[ -f "$T/$f" ] || continue
		echo "----- $f (last 150 lines) -----"
		tail -n 150 "$T/$f"
	done
	echo "----- end of logs -----"
}

# check NAME CMD...: runs CMD, prints "ok NAME", or its output, the logs and
# "FAILED check NAME" and exits non-zero.
check() {
	local name=$1 out rc=0
	shift
	out=$("$@" 2>&1) || rc=$?
	if [ $rc -eq 0 ]; then
		log "ok   $name"
		return 0
	fi
	FAILED_CHECK=$name
	log "FAIL $name (exit $rc)"
	printf '%s\n' "$out" | sed 's/^/    | /'
	show_logs
	exit 1
}

cri() { timeout --foreground 120 nsenter --net="$NSPATH" "$TOOLS/crictl-$CRICTL_VERSION/crictl" --config "$T/crictl.yaml" "$@"; }
ctr_() { timeout --foreground 120 ctr --address "$T/containerd.sock" -n k8s.io "$@"; }
ep() { "$EPAIR" "$@" --socket "$T/epair.sock"; }
# A RunPodSandbox started (by containerd's log) that has not returned yet.
runp_in_flight() {
	local all fin
	all=$(grep -c 'msg="RunPodSandbox for &' "$T/containerd.log" 2>/dev/null) || return 1
	fin=$(grep 'msg="RunPodSandbox for &' "$T/containerd.log" | grep -cE 'returns sandbox id|failed, error')
	[ $((all - fin)) -gt "$fin" ]
}
# has ERE: stdin matches; reads all of it first (grep -q would quit early
# and, with pipefail, a writer killed by SIGPIPE would fail the pipeline).
has() { local in; in=$(cat); grep -qE -- "$1" <<<"$in"; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

cleanup() {
	local rc=$?
	set +e
	trap - ERR
	if [ $rc -ne 0 ]; then
		if [ $rc -eq 130 ]; then
			echo "e2e-containerd: interrupted" >&2
		elif [ -z "$FAILED_CHECK" ]; then
			echo "e2e-containerd: failed (exit $rc) outside a check" >&2
		fi
		[ $rc -eq 130 ] || show_logs
	fi
	[ -n "$T" ] || exit $rc
	log "cleanup"
	if [ -n "$CTRD_PID" ] && kill -0 "$CTRD_PID" 2>/dev/null; then
		# A RunPodSandbox cut short (Ctrl-C) goes on in containerd, which undoes
		# it itself (CNI DEL, netns, shim): let it finish first.
		for _ in $(seq 200); do runp_in_flight || break; sleep 0.1; done
		for _ in 1 2 3; do
			local pods
			pods=$(cri pods -q 2>/dev/null)
			[ -n "$pods" ] || break
			for p in $pods; do
				cri inspectp -o json "$p" 2>/dev/null | jq -r '.info.runtimeSpec.linux.namespaces[]? | select(.type == "network") | .path' >>"$T/netns-paths"
				cri stopp "$p" >/dev/null 2>&1
				cri rmp -f "$p" >/dev/null 2>&1
			done
		done
		kill -TERM "$CTRD_PID" 2>/dev/null
		for _ in $(seq 100); do kill -0 "$CTRD_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$CTRD_PID" 2>/dev/null
		wait "$CTRD_PID" 2>/dev/null
	fi
	# Shims of this containerd (identified by its socket) and anything left in
	# the pods' cgroups: only processes this run started.
	local pid
	for d in /proc/[0-9]*; do
		[ -r "$d/cmdline" ] || continue
		if tr '\0' ' ' <"$d/cmdline" 2>/dev/null | has "^/usr/bin/containerd-shim-runc-v2 .*-address $T/containerd.sock"; then
			pid=${d#/proc/}
			echo "cleanup: killing leftover shim $pid" >&2
			kill -KILL "$pid" 2>/dev/null
			tr '\0' '\n' <"$d/cmdline" | sed -n '/^-id$/{n;p}' >>"$T/pod-ids"
		fi
	done
	for f in $(find /sys/fs/cgroup/pids"$CGPARENT" -name cgroup.procs 2>/dev/null); do
		for pid in $(cat "$f"); do kill -KILL "$pid" 2>/dev/null; done
	done
	if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		ep pair list 2>/dev/null | jq -r '.[].a.netns // empty' >>"$T/netns-paths"
		for u in $(ep pair list 2>/dev/null | jq -r '.[].unit' 2>/dev/null); do ep pair del "$u" >/dev/null 2>&1; done
		kill -TERM "$DAEMON_PID" 2>/dev/null
		for _ in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$DAEMON_PID" 2>/dev/null
		wait "$DAEMON_PID" 2>/dev/null
	fi
	# Pod network namespaces containerd made (and did not remove after a failure).
	if [ -f "$T/netns-paths" ]; then
		while read -r p; do
			[ -e "$p" ] || continue
			umount "$p" 2>/dev/null || umount -l "$p"
			rm -f "$p"
		done <"$T/netns-paths"
	fi
	# Any other netns made during the run that holds an address of ours.
	for p in $(ls -d /var/run/netns/cni-* 2>/dev/null | sort | comm -13 "$T/netns-before" -); do
		grep -qxF "$p" "$T/netns-paths" && continue
		if nsenter --net="$p" ip -4 -o addr 2>/dev/null | has "inet (${EPAIR_SUBNET%.*}|${BRIDGE_SUBNET%.*})\."; then
			echo "cleanup: removing leftover pod netns $p" >&2
			umount "$p" 2>/dev/null || umount -l "$p"
			rm -f "$p"
		fi
	done
	# libcni's result cache lives in /var/lib/cni/results: only our networks.
	rm -f /var/lib/cni/results/"$NET"-* /var/lib/cni/results/"$NET"-bridge-* 2>/dev/null
	# Shim sockets (/run/containerd/s/sha256(address/namespace/id)) that a
	# killed shim, or a RunPodSandbox cut short, leaves: any id we know of.
	{ cat "$T/pod-ids"; grep -oE '[0-9a-f]{64}' "$T/containerd.log"; } 2>/dev/null | sort -u | while read -r id; do
		rm -f "/run/containerd/s/$(printf '%s' "$T/containerd.sock/k8s.io/$id" | sha256sum | cut -c1-64)"
	done
	# Mounts containerd leaves under its root/state (overlay rootfs, shm).
	grep -F " $T/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
	[ -e "$NSPATH" ] && ip netns del "$NS"
	# The shims' socket directory, if this run made it and it is empty now.
	[ -n "$RUN_CONTAINERD_EXISTED" ] || rmdir /run/containerd/s /run/containerd 2>/dev/null
	for c in /sys/fs/cgroup/*"$CGPARENT"; do
		[ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
	done
	if [ "${EPAIR_E2E_KEEP:-}" = 1 ]; then
		echo "e2e-containerd: kept $T" >&2
	else
		rm -rf "$T"
	fi
	if [ $rc -eq 0 ]; then
		log "PASS (everything cleaned up)"
	else
		echo "e2e-containerd: FAILED${FAILED_CHECK:+ check $FAILED_CHECK}" >&2
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'echo "e2e-containerd: line $LINENO: command failed: $BASH_COMMAND" >&2' ERR

# ---------------------------------------------------------------- tools

missing=()
for p in "${APT_PKGS[@]}"; do
	dpkg-query -W -f '${Status}' "$p" 2>/dev/null | has 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -x "$TOOLS/crictl-$CRICTL_VERSION/crictl" ]; then
	log "building crictl $CRICTL_VERSION into $TOOLS/crictl-$CRICTL_VERSION"
	(cd / && CGO_ENABLED=0 GOFLAGS=-trimpath GOBIN="$TOOLS/crictl-$CRICTL_VERSION" \
		go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION")
fi
log "tools: $(containerd --version | awk '{print $1, $3}'), runc $(runc --version | awk 'NR==1{print $3}'), crictl $CRICTL_VERSION"

T=$(mktemp -d /tmp/epair-ctrd.XXXXXX)
chmod 0700 "$T"
mkdir -p "$T/cni-bin" "$T/cni-conf" "$T/ipam" "$T/logs" "$T/img"
touch "$T/netns-paths" "$T/pod-ids"

# Baselines of what lives outside our folders, to compare at the end.
[ -d /run/containerd ] && RUN_CONTAINERD_EXISTED=1 || RUN_CONTAINERD_EXISTED=
ls -d /var/run/netns/cni-* 2>/dev/null | sort >"$T/netns-before" || true
ip -o link | awk -F': ' '{print $2}' | sed 's/@.*//' | grep epair | sort >"$T/links-before" || true

# ---------------------------------------------------------------- images

log "building images"
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$T/img/pause" ./e2e/containerd/pause &&
	go build -o "$T/img/ociimage" ./hack/ociimage)
"$T/img/ociimage" -name "$PAUSE_IMAGE" -o "$T/img/pause.tar" -entrypoint /pause \
	"file:$T/img/pause:/pause" dir:/dev:755 dir:/proc:755 dir:/sys:755 dir:/etc:755 >/dev/null

# busybox-static with every applet linked, plus iperf3 and its libraries.
entries=(file:/bin/busybox:/bin/busybox dir:/tmp:1777 dir:/dev:755 dir:/proc:755 dir:/sys:755 dir:/etc:755 dir:/root:700
	file:/usr/bin/iperf3:/usr/bin/iperf3)
for a in $(/bin/busybox --list); do
	[ "$a" = busybox ] || entries+=("link:/bin/$a:/bin/busybox")
done
while read -r lib; do
	entries+=("file:$(readlink -f "$lib"):$lib")
done < <(ldd /usr/bin/iperf3 | grep -o '/[^ ]*')
"$T/img/ociimage" -name "$TEST_IMAGE" -o "$T/img/busybox.tar" -cmd "sleep 3600" "${entries[@]}" >/dev/null

# ---------------------------------------------------------------- node

log "network namespace $NS, epair daemon"
ip netns add "$NS"
ip -n "$NS" link set lo up
# setsid (here and for containerd): a Ctrl-C stops the suite, not them, so
# the cleanup can still remove the pods through the CRI and the daemon.
setsid nsenter --net="$NSPATH" "$EPAIR" daemon --socket "$T/epair.sock" --state-dir "$T/epair-state" --log-level debug \
	>"$T/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 100); do ep pair list >/dev/null 2>&1 && break; sleep 0.05; done
check daemon-answers ep pair list

for p in "$CNI_PLUGINS"/*; do ln -s "$(readlink -f "$p")" "$T/cni-bin/${p##*/}"; done
ln -s "$(readlink -f "$EPAIR")" "$T/cni-bin/epair"

# The routed conflist of the repository, on this suite's socket, subnet and
# IPAM directory. Its cniVersion is 1.0.0 (cniVersions offers 1.1.0 to newer
# runtimes): containerd 1.6's libcni rejects a 1.1.0 result.
epair_conflist() {
	jq --arg net "$NET" --arg sock "$T/epair.sock" --arg subnet "$EPAIR_SUBNET" --arg dd "$T/ipam" '
		.cniVersion = "1.0.0"
		| .name = $net
		| .plugins[0].socket = $sock
		| .plugins[0].ipam.ranges = [[{subnet: $subnet}]]
		| .plugins[0].ipam.dataDir = $dd' "$ROOT/conf/10-epair-routed.conflist"
}
# The reference bridge plugin (same host-local), for the timing comparison.
bridge_conflist() {
	jq -n --arg net "$NET-bridge" --arg subnet "$BRIDGE_SUBNET" --arg dd "$T/ipam" --arg v "$1" '{
		cniVersion: $v, name: $net,
		plugins: [{type: "bridge", bridge: "e2ebr0", isGateway: true, mtu: 1500,
			ipam: {type: "host-local", ranges: [[{subnet: $subnet}]], routes: [{dst: "0.0.0.0/0"}], dataDir: $dd}}]}'
}
epair_conflist >"$T/cni-conf/10-$NET.conflist"
CNI_VERSION=$(jq -r .cniVersion "$T/cni-conf/10-$NET.conflist")

cat >"$T/containerd.toml" <<EOF
version = 2
root = "$T/root"
state = "$T/state"
[grpc]
  address = "$T/containerd.sock"
[ttrpc]
  address = "$T/containerd.sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "$T/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  disable_apparmor = true
  restrict_oom_score_adj = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$T/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$T/cni-bin"
    conf_dir = "$T/cni-conf"
    max_conf_num = 1
EOF
cat >"$T/crictl.yaml" <<EOF
runtime-endpoint: unix://$T/containerd.sock
image-endpoint: unix://$T/containerd.sock
timeout: 60
EOF

log "containerd"
setsid nsenter --net="$NSPATH" containerd --config "$T/containerd.toml" >"$T/containerd.log" 2>&1 &
CTRD_PID=$!
for _ in $(seq 200); do cri info >/dev/null 2>&1 && break; sleep 0.05; done
check containerd-ready cri info

log "importing images"
check import-pause ctr_ images import "$T/img/pause.tar"
check import-busybox ctr_ images import "$T/img/busybox.tar"
images_visible() { local l; l=$(cri images); echo "$l"; grep -q epair-e2e/pause <<<"$l" && grep -q epair-e2e/busybox <<<"$l"; }
check images-visible-to-cri images_visible

# The CNI config containerd has loaded, by network name.
cni_loaded() { cri info -o json | jq -e --arg n "$1" '[.cniconfig.Networks[].Config.Name] | index($n) != null' >/dev/null; }
check cni-config-loaded cni_loaded "$NET"

# ---------------------------------------------------------------- pods

pod_json() { # NAME
	cat <<EOF
{"metadata": {"name": "$1", "namespace": "epair-e2e", "uid": "$1-$$", "attempt": 0},
 "hostname": "$1", "log_directory": "$T/logs/$1",
 "linux": {"cgroup_parent": "$CGPARENT"}}
EOF
}
ctr_json() {
	cat <<EOF
{"metadata": {"name": "box"}, "image": {"image": "$TEST_IMAGE"},
 "command": ["sleep", "3600"], "log_path": "box.log", "linux": {}}
EOF
}
ctr_json >"$T/box.json"

# runp NAME: creates a pod sandbox; its id goes to $T/id-NAME, and to the
# lists cleanup uses, with its netns.
runp() {
	local id
	pod_json "$1" >"$T/pod-$1.json"
	id=$(cri runp "$T/pod-$1.json") || return 1
	echo "$id" >>"$T/pod-ids"
	echo "$id" >"$T/id-$1"
	cri inspectp -o json "$id" | jq -r '.info.runtimeSpec.linux.namespaces[] | select(.type == "network") | .path' >>"$T/netns-paths"
	echo "pod $1: $id"
}
create() { # POD-NAME: a busybox container running sleep 3600 in the pod
	local id
	id=$(cri create "$(cat "$T/id-$1")" "$T/box.json" "$T/pod-$1.json") || return 1
	echo "$id" >"$T/ctr-$1"
	cri start "$id"
}
pod_ip() { cri inspectp -o json "$1" | jq -r .status.network.ip; }

log "two pods with a busybox container each"
check runp-pod-a runp epair-a
check runp-pod-b runp epair-b
check create-start-container-a create epair-a
check create-start-container-b create epair-b
PA=$(cat "$T/id-epair-a") PB=$(cat "$T/id-epair-b")
CA=$(cat "$T/ctr-epair-a") CB=$(cat "$T/ctr-epair-b")
IPA=$(pod_ip "$PA")
IPB=$(pod_ip "$PB")
log "pod a $IPA (${PA:0:12}), pod b $IPB (${PB:0:12})"

in_subnet() { case $1 in ${EPAIR_SUBNET%.*}.*) return 0 ;; esac; echo "pod IP '$1' not in $EPAIR_SUBNET"; return 1; }
check pod-a-ip-in-subnet in_subnet "$IPA"
check pod-b-ip-in-subnet in_subnet "$IPB"

eth0_ip_matches() { # CONTAINER IP
	local got
	got=$(cri exec "$1" ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)
	[ "$got" = "$2" ] || { echo "eth0 has '$got', inspectp says '$2'"; cri exec "$1" ip addr; return 1; }
}
check pod-a-eth0-ip-equals-inspectp eth0_ip_matches "$CA" "$IPA"
check pod-b-eth0-ip-equals-inspectp eth0_ip_matches "$CB" "$IPB"

host_side() { # two pairs, b ends in the node namespace, a /32 route per pod
	local n
	n=$(ep pair list | jq length)
	[ "$n" = 2 ] || { echo "pair list has $n pairs"; ep pair list; return 1; }
	for ip in "$IPA" "$IPB"; do
		ip -n "$NS" -4 route show "$ip/32" | has 'dev epair[0-9]*b' ||
			{ echo "no host route to $ip via an epair b end:"; ip -n "$NS" -4 route; return 1; }
	done
	ip -n "$NS" -4 addr show | has "inet $EPAIR_GW/32" || { echo "no gateway $EPAIR_GW/32 on a b end"; ip -n "$NS" addr; return 1; }
}
check host-side-pairs-and-routes host_side

check ping-pod-a-to-pod-b cri exec "$CA" ping -c 3 -i 0.2 -W 2 "$IPB"
check ping-pod-b-to-pod-a cri exec "$CB" ping -c 3 -i 0.2 -W 2 "$IPA"
check ping-pod-a-to-gateway cri exec "$CA" ping -c 3 -i 0.2 -W 2 "$EPAIR_GW"
check ping-pod-b-to-gateway cri exec "$CB" ping -c 3 -i 0.2 -W 2 "$EPAIR_GW"

# TCP: 10 MiB from pod a to pod b with busybox nc, checksums on both sides.
# busybox nc quits when its stdin ends, so the listener's stdin is a FIFO
# held open read-write (it never ends); the listener exits when a closes.
tcp_transfer() {
	local lpid sa sb sizeb
	cri exec "$CA" dd if=/dev/urandom of=/tmp/blob bs=1024 count=10240 2>/dev/null
	cri exec "$CB" sh -c 'rm -f /tmp/recv /tmp/fifo; mkfifo /tmp/fifo; nc -l -p 5001 <>/tmp/fifo >/tmp/recv' &
	lpid=$!
	for _ in $(seq 50); do cri exec "$CB" netstat -ltn | has ':5001 ' && break; sleep 0.1; done
	cri exec "$CA" sh -c "nc $IPB 5001 </tmp/blob" || { echo "sender nc failed"; return 1; }
	for _ in $(seq 300); do kill -0 $lpid 2>/dev/null || break; sleep 0.1; done
	if kill -0 $lpid 2>/dev/null; then echo "listener did not finish in 30 s"; kill $lpid; return 1; fi
	wait $lpid || { echo "listener failed"; return 1; }
	sa=$(cri exec "$CA" sha256sum /tmp/blob | cut -c1-64)
	sb=$(cri exec "$CB" sha256sum /tmp/recv | cut -c1-64)
	sizeb=$(cri exec "$CB" wc -c /tmp/recv | awk '{print $1}')
	echo "sent sha256 $sa, received $sizeb bytes sha256 $sb"
	[ "$sa" = "$sb" ] && [ "$sizeb" = 10485760 ]
}
check tcp-10MiB-pod-a-to-pod-b-sha256 tcp_transfer

iperf() {
	cri exec "$CB" iperf3 -s -1 -D -B "$IPB"
	sleep 0.3
	cri exec "$CA" iperf3 -c "$IPB" -t 3 -f m | tee "$T/iperf.out"
}
check iperf3-pod-a-to-pod-b iperf
log "iperf3 a->b: $(grep -E 'sender|receiver' "$T/iperf.out" | awk '{print $7, $8, $NF}' | paste -sd' ')"

# Leftovers after pods are gone, for the pod IPs and netns given.
nothing_left() { # NETWORK IP...
	local net=$1 bad=0 x
	shift
	x=$(ep pair list | tr -d ' \t\n')
	[ "$x" = "[]" ] || { echo "pairs left: $x"; bad=1; }
	x=$(ip -n "$NS" -o link | grep epair) && { echo "epair links left in $NS: $x"; bad=1; }
	x=$(ip -o link | awk -F': ' '{print $2}' | sed 's/@.*//' | grep epair | sort | comm -13 "$T/links-before" -) &&
		[ -n "$x" ] && { echo "new epair links in the machine's namespace: $x"; bad=1; }
	for ip in "$@"; do
		x=$(ip -n "$NS" -4 route show "$ip/32") && [ -n "$x" ] && { echo "route to $ip left: $x"; bad=1; }
		[ -e "$T/ipam/$net/$ip" ] && { echo "host-local reservation $T/ipam/$net/$ip left"; bad=1; }
	done
	x=$(ls "$T/ipam/$net" 2>/dev/null | grep -E '^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$') && { echo "host-local reservations left: $x"; bad=1; }
	while read -r p; do [ -e "$p" ] && { echo "pod netns $p left"; bad=1; }; done <"$T/netns-paths"
	x=$(ls -d /var/run/netns/cni-* 2>/dev/null | sort | comm -13 "$T/netns-before" -) && [ -n "$x" ] && { echo "new cni-* netns: $x"; bad=1; }
	x=$(ls /var/lib/cni/results 2>/dev/null | grep "^$net-") && { echo "libcni cache left: $x"; bad=1; }
	x=$(cri pods -q) && [ -n "$x" ] && { echo "pods left: $x"; bad=1; }
	return $bad
}

log "stopping and removing both pods"
check stop-pods cri stopp "$PA" "$PB"
check remove-pods cri rmp "$PA" "$PB"
check nothing-left-after-two-pods nothing_left "$NET" "$IPA" "$IPB"

# churn LABEL NETWORK: CHURN sandboxes created and deleted one after
# another; the runp times (ms) go to $T/runp-LABEL.
churn() {
	local label=$1 net=$2 i id t0 t1 ips=()
	: >"$T/runp-$label"
	for i in $(seq "$CHURN"); do
		pod_json "$label-$i" >"$T/pod-$label-$i.json"
		t0=$(ms)
		id=$(cri runp "$T/pod-$label-$i.json") || { echo "runp $label-$i failed"; return 1; }
		t1=$(ms)
		echo "$id" >>"$T/pod-ids"
		echo $((t1 - t0)) >>"$T/runp-$label"
		cri inspectp -o json "$id" | jq -r '.info.runtimeSpec.linux.namespaces[] | select(.type == "network") | .path' >>"$T/netns-paths"
		ips+=("$(pod_ip "$id")")
		cri stopp "$id" >/dev/null || { echo "stopp $label-$i failed"; return 1; }
		cri rmp "$id" >/dev/null || { echo "rmp $label-$i failed"; return 1; }
	done
	echo "${ips[*]}" >"$T/ips-$label"
	echo "runp ms: $(paste -sd' ' "$T/runp-$label")"
}

log "churn: $CHURN pod sandboxes created and deleted with epair"
check churn-epair churn epair "$NET"
# shellcheck disable=SC2046
check nothing-left-after-epair-churn nothing_left "$NET" $(cat "$T/ips-epair")
EPAIR_MEDIAN=$(median <"$T/runp-epair")
log "epair runp ms: $(paste -sd' ' "$T/runp-epair")"
log "epair: crictl runp median ${EPAIR_MEDIAN} ms over $CHURN pods"

log "switching the CNI config to the reference bridge plugin"
rm -f "$T/cni-conf/10-$NET.conflist"
bridge_conflist "$CNI_VERSION" >"$T/cni-conf/10-$NET-bridge.conflist"
for _ in $(seq 100); do cni_loaded "$NET-bridge" && break; sleep 0.1; done
check cni-config-reloaded-bridge cni_loaded "$NET-bridge"

log "churn: $CHURN pod sandboxes created and deleted with bridge"
check churn-bridge churn bridge "$NET-bridge"
# shellcheck disable=SC2046
check nothing-left-after-bridge-churn nothing_left "$NET-bridge" $(cat "$T/ips-bridge")
BRIDGE_MEDIAN=$(median <"$T/runp-bridge")
log "bridge runp ms: $(paste -sd' ' "$T/runp-bridge")"

log "crictl runp median over $CHURN pods: epair ${EPAIR_MEDIAN} ms, bridge ${BRIDGE_MEDIAN} ms"

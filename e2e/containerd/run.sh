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
SUITE=e2e-containerd
# shellcheck source=e2e/lib.sh
. "$ROOT/e2e/lib.sh" # EPAIR, CNI_PLUGINS, TOOLS, the images; log, check, cri, cleanup pieces
CRI_TIMEOUT=120
CHURN=${EPAIR_E2E_CHURN:-20}
APT_PKGS=(containerd runc iperf3 busybox-static iproute2 util-linux jq)

NET=epair-e2e # CNI network names: $NET (epair) and $NET-bridge
EPAIR_SUBNET=10.213.7.0/24 EPAIR_GW=10.213.7.1
BRIDGE_SUBNET=10.213.8.0/24
NS=epair-ctrd-$$
NSPATH=/var/run/netns/$NS
CGPARENT=/epair-e2e-$$

CTRD_PID='' DAEMON_PID=''

[ "$(id -u)" -eq 0 ] || die "run as root (containerd, namespaces, TAPs)"
[ -x "$EPAIR" ] || die "$EPAIR missing: run make build"
if [ ! -x "$CNI_PLUGINS/host-local" ] || [ ! -x "$CNI_PLUGINS/bridge" ]; then die "$CNI_PLUGINS incomplete: run make cni-plugins"; fi

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

# A RunPodSandbox started (by containerd's log) that has not returned yet.
runp_in_flight() {
	local all fin
	all=$(grep -c 'msg="RunPodSandbox for &' "$T/containerd.log" 2>/dev/null) || return 1
	fin=$(grep 'msg="RunPodSandbox for &' "$T/containerd.log" | grep -cE 'returns sandbox id|failed, error')
	[ $((all - fin)) -gt "$fin" ]
}
ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

cleanup() {
	local rc=$?
	set +e
	trap - ERR
	cleanup_begin $rc
	[ -n "$T" ] || exit $rc
	log "cleanup"
	if [ -n "$CTRD_PID" ] && kill -0 "$CTRD_PID" 2>/dev/null; then
		# A RunPodSandbox cut short (Ctrl-C) goes on in containerd, which undoes
		# it itself (CNI DEL, netns, shim): let it finish first.
		for _ in $(seq 200); do runp_in_flight || break; sleep 0.1; done
		# No filter: every pod of this private containerd is the suite's.
		# shellcheck disable=SC2119
		remove_cri_pods
		stop_pid "$CTRD_PID"
	fi
	kill_leftover_shims
	kill_cgroup_procs "$CGPARENT"
	if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		delete_pairs
		stop_pid "$DAEMON_PID"
	fi
	remove_netns "(${EPAIR_SUBNET%.*}|${BRIDGE_SUBNET%.*})\."
	# libcni's result cache lives in /var/lib/cni/results: only our networks.
	rm -f /var/lib/cni/results/"$NET"-* /var/lib/cni/results/"$NET"-bridge-* 2>/dev/null
	{ cat "$T/pod-ids"; grep -oE '[0-9a-f]{64}' "$T/containerd.log"; } 2>/dev/null | sort -u | remove_shim_sockets
	unmount_all_under_t
	[ -e "$NSPATH" ] && ip netns del "$NS"
	# The shims' socket directory, if this run made it and it is empty now.
	[ -n "$RUN_CONTAINERD_EXISTED" ] || rmdir /run/containerd/s /run/containerd 2>/dev/null
	remove_cgroups "$CGPARENT"
	if [ "${EPAIR_E2E_KEEP:-}" = 1 ]; then
		echo "e2e-containerd: kept $T" >&2
	else
		rm -rf "$T"
	fi
	cleanup_end $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'echo "e2e-containerd: line $LINENO: command failed: $BASH_COMMAND" >&2' ERR

# ---------------------------------------------------------------- tools

install_tools "${APT_PKGS[@]}"
log "tools: $(containerd --version | awk '{print $1, $3}'), runc $(runc --version | awk 'NR==1{print $3}'), crictl $CRICTL_VERSION"

T=$(mktemp -d /tmp/epair-ctrd.XXXXXX)
chmod 0700 "$T"
mkdir -p "$T/cni-bin" "$T/cni-conf" "$T/ipam" "$T/logs" "$T/img"
record_baselines

# ---------------------------------------------------------------- images

# The test image also has iperf3 and its libraries.
entries=(file:/usr/bin/iperf3:/usr/bin/iperf3)
while read -r lib; do
	entries+=("file:$(readlink -f "$lib"):$lib")
done < <(ldd /usr/bin/iperf3 | grep -o '/[^ ]*')
build_images "${entries[@]}"

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

# The reference bridge plugin (same host-local), for the timing comparison.
bridge_conflist() {
	jq -n --arg net "$NET-bridge" --arg subnet "$BRIDGE_SUBNET" --arg dd "$T/ipam" --arg v "$1" '{
		cniVersion: $v, name: $net,
		plugins: [{type: "bridge", bridge: "e2ebr0", isGateway: true, mtu: 1500,
			ipam: {type: "host-local", ranges: [[{subnet: $subnet}]], routes: [{dst: "0.0.0.0/0"}], dataDir: $dd}}]}'
}
epair_conflist "$NET" "$EPAIR_SUBNET" >"$T/cni-conf/10-$NET.conflist"
CNI_VERSION=$(jq -r .cniVersion "$T/cni-conf/10-$NET.conflist")

write_containerd_config

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

pod_json() { # NAME [ANNOTATIONS-JSON]
	local ann=${2:-'{}'}
	cat <<EOF
{"metadata": {"name": "$1", "namespace": "epair-e2e", "uid": "$1-$$", "attempt": 0},
 "hostname": "$1", "log_directory": "$T/logs/$1", "annotations": $ann,
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
runp() { # NAME [ANNOTATIONS-JSON]
	local id
	pod_json "$1" "${2:-}" >"$T/pod-$1.json"
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

# ---------------------------------------------------------------- shaping

# A third pod annotated with kubernetes.io/ingress-bandwidth and
# egress-bandwidth: containerd's CRI passes them to the plugins that
# declare the bandwidth capability (the conflist does) as runtimeConfig
# bandwidth, rates in bits/s, and a burst of its own (math.MaxUint32 bits,
# about 512 MiB, in containerd 1.6: the annotations have no burst).
SHAPE_RATE=10000000 # "10M"
log "pod s with kubernetes.io/{ingress,egress}-bandwidth: 10M"
check runp-pod-shaped runp epair-s '{"kubernetes.io/ingress-bandwidth": "10M", "kubernetes.io/egress-bandwidth": "10M"}'
check create-start-container-shaped create epair-s
PS=$(cat "$T/id-epair-s") CS=$(cat "$T/ctr-epair-s")
IPS_=$(pod_ip "$PS")
log "pod s $IPS_ (${PS:0:12})"

# The daemon's pair of pod s (its owner is the sandbox id) shapes both
# directions at the annotations' rate; its burst goes to $T/shape-burst.
pair_shaped() {
	local bw
	bw=$(ep pair list | jq -c --arg id "$PS" '.[] | select(.owner.container_id == $id) | .bandwidth')
	echo "pod s pair bandwidth: $bw"
	jq -e --argjson r "$SHAPE_RATE" '.ingress_rate == $r and .egress_rate == $r and .ingress_burst > 0 and .egress_burst > 0' <<<"$bw" >/dev/null || return 1
	jq -r .egress_burst <<<"$bw" >"$T/shape-burst"
}
check pod-s-pair-shaped-10M pair_shaped
SHAPE_BURST=$(cat "$T/shape-burst")
log "pod s pair: rate $SHAPE_RATE bit/s each way, burst $SHAPE_BURST bits (what containerd passes)"
unshaped_pairs() { # pods a and b: no bandwidth on their pairs
	ep pair list | jq -e --arg a "$PA" --arg b "$PB" '[.[] | select(.owner.container_id == $a or .owner.container_id == $b) | select(.bandwidth == null)] | length == 2' >/dev/null ||
		{ ep pair list | jq -c '.[] | {owner: .owner.container_id, bandwidth}'; return 1; }
}
check pods-a-b-pairs-unshaped unshaped_pairs

# Timed: iperf3 s -> b for 10 s, one-second intervals, near the rate once
# the burst is spent (shaped_iperf_verdict, e2e/lib.sh); pod a's unshaped
# iperf3 above must be over 3 times the rate.
shaped_rate() {
	local out unshaped
	cri exec "$CB" iperf3 -s -1 -D -B "$IPB"
	sleep 0.3
	cri exec "$CS" iperf3 -c "$IPB" -t 10 -J >"$T/iperf-shaped.json" || { echo "iperf3 failed"; cat "$T/iperf-shaped.json"; return 1; }
	out=$(shaped_iperf_verdict "$T/iperf-shaped.json" "$SHAPE_RATE" "$SHAPE_BURST") || { echo "$out"; return 1; }
	echo "$out" | tee "$T/shaped.out"
	unshaped=$(awk '/sender/ {print $7}' "$T/iperf.out")
	echo "pod a unshaped: $unshaped Mbit/s"
	awk -v u="$unshaped" -v r="$SHAPE_RATE" 'BEGIN {exit !(u * 1e6 > 3 * r)}'
}
check iperf3-pod-s-to-pod-b-near-10M shaped_rate
log "iperf3 s->b: $(cat "$T/shaped.out")"

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
	x=$(find "$T/ipam/$net" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | grep -E '^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$') && { echo "host-local reservations left: $x"; bad=1; }
	while read -r p; do [ -e "$p" ] && { echo "pod netns $p left"; bad=1; }; done <"$T/netns-paths"
	x=$(find /var/run/netns -maxdepth 1 -name 'cni-*' 2>/dev/null | sort | comm -13 "$T/netns-before" -) && [ -n "$x" ] && { echo "new cni-* netns: $x"; bad=1; }
	x=$(find /var/lib/cni/results -mindepth 1 -maxdepth 1 -name "$net-*" -printf '%f\n' 2>/dev/null) && [ -n "$x" ] && { echo "libcni cache left: $x"; bad=1; }
	x=$(cri pods -q) && [ -n "$x" ] && { echo "pods left: $x"; bad=1; }
	return $bad
}

log "stopping and removing the three pods"
check stop-pods cri stopp "$PA" "$PB" "$PS"
check remove-pods cri rmp "$PA" "$PB" "$PS"
check nothing-left-after-three-pods nothing_left "$NET" "$IPA" "$IPB" "$IPS_"

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

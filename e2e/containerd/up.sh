#!/usr/bin/env bash
# Bring-up of the containerd end-to-end suite (containerd_test.go runs it;
# e2e/containerd/down.sh undoes it): the tools, the images, a private
# network namespace with an `epair daemon` and a private containerd in it.
#
# A private containerd (own root, state, socket and config under T) and an
# `epair daemon` run inside a private network namespace (nsenter --net, so
# /sys/fs/cgroup and the mounts stay the machine's): the b ends, gateway
# addresses, host routes and ip_forward land there, never in the machine's
# own namespace. Images are built locally (no registry).
#
# Usage (root): e2e/containerd/up.sh T   (T: an empty 0700 directory)
# It writes T/env (KEY='value' lines, appended as each piece exists, so that
# down.sh T removes whatever a failed bring-up made) and starts the daemon
# and containerd without waiting for them: the test checks that they answer.
# Env: EPAIR_BIN, EPAIR_CNI_PLUGINS, EPAIR_E2E_TOOLS (crictl cache dir).
# shellcheck disable=SC2034 # variables written to T/env by env_out (${!k})
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SUITE=e2e-containerd
# shellcheck source=e2e/lib.sh
. "$ROOT/e2e/lib.sh" # EPAIR, CNI_PLUGINS, TOOLS, the images; log, setup pieces
APT_PKGS=(containerd runc iperf3 busybox-static iproute2 util-linux jq)

NET=epair-e2e # CNI network names: $NET (epair) and $NET-bridge
EPAIR_SUBNET=10.213.7.0/24 EPAIR_GW=10.213.7.1
BRIDGE_SUBNET=10.213.8.0/24
NS=epair-ctrd-$$
NSPATH=/var/run/netns/$NS
CGPARENT=/epair-e2e-$$

[ "$(id -u)" -eq 0 ] || die "run as root (containerd, namespaces, TAPs)"
{ [ $# -eq 1 ] && [ -d "$1" ]; } || die "usage: $0 T (an empty directory for the run)"
T=$(cd "$1" && pwd)
[ -x "$EPAIR" ] || die "$EPAIR missing: run make build"
if [ ! -x "$CNI_PLUGINS/host-local" ] || [ ! -x "$CNI_PLUGINS/bridge" ]; then die "$CNI_PLUGINS incomplete: run make cni-plugins"; fi

# env_out KEY...: appends the variables to $T/env, for the test and down.sh.
env_out() { local k; for k in "$@"; do printf "%s='%s'\n" "$k" "${!k}" >>"$T/env"; done; }

: >"$T/env"
install_tools "${APT_PKGS[@]}"
log "tools: $(containerd --version | awk '{print $1, $3}'), runc $(runc --version | awk 'NR==1{print $3}'), crictl $CRICTL_VERSION"
CRICTL=$TOOLS/crictl-$CRICTL_VERSION/crictl
RUN_ID=$$
mkdir -p "$T/cni-bin" "$T/cni-conf" "$T/ipam" "$T/logs" "$T/img"
record_baselines
env_out EPAIR CRICTL RUN_ID NET EPAIR_SUBNET EPAIR_GW BRIDGE_SUBNET NS NSPATH CGPARENT RUN_CONTAINERD_EXISTED TEST_IMAGE

# The test image also has iperf3 and its libraries.
entries=(file:/usr/bin/iperf3:/usr/bin/iperf3)
while read -r lib; do
	entries+=("file:$(readlink -f "$lib"):$lib")
done < <(ldd /usr/bin/iperf3 | grep -o '/[^ ]*')
build_images "${entries[@]}"

log "network namespace $NS, epair daemon"
ip netns add "$NS"
ip -n "$NS" link set lo up
# setsid (here and for containerd): a Ctrl-C stops the test, not them, so
# the teardown can still remove the pods through the CRI and the daemon.
setsid nsenter --net="$NSPATH" "$EPAIR" daemon --socket "$T/epair.sock" --state-dir "$T/epair-state" --log-level debug \
	>"$T/daemon.log" 2>&1 </dev/null &
DAEMON_PID=$!
env_out DAEMON_PID

for p in "$CNI_PLUGINS"/*; do ln -s "$(readlink -f "$p")" "$T/cni-bin/${p##*/}"; done
ln -s "$(readlink -f "$EPAIR")" "$T/cni-bin/epair"

epair_conflist "$NET" "$EPAIR_SUBNET" >"$T/cni-conf/10-$NET.conflist"
# The reference bridge plugin (same host-local), for the timing comparison:
# the test swaps it in for the epair conflist.
jq -n --arg net "$NET-bridge" --arg subnet "$BRIDGE_SUBNET" --arg dd "$T/ipam" \
	--arg v "$(jq -r .cniVersion "$T/cni-conf/10-$NET.conflist")" '{
	cniVersion: $v, name: $net,
	plugins: [{type: "bridge", bridge: "e2ebr0", isGateway: true, mtu: 1500,
		ipam: {type: "host-local", ranges: [[{subnet: $subnet}]], routes: [{dst: "0.0.0.0/0"}], dataDir: $dd}}]}' \
	>"$T/bridge.conflist"

write_containerd_config

log "containerd"
setsid nsenter --net="$NSPATH" containerd --config "$T/containerd.toml" >"$T/containerd.log" 2>&1 </dev/null &
CTRD_PID=$!
env_out CTRD_PID
log "up: $T/env"

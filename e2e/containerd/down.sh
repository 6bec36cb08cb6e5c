#!/usr/bin/env bash
# Teardown of the containerd end-to-end suite: removes everything
# e2e/containerd/up.sh T and the test made, whatever state they stopped in,
# and then T itself (EPAIR_E2E_KEEP=1 keeps it, for debugging).
#
# Usage (root): e2e/containerd/down.sh T
# It reads T/env (what up.sh had made), T/pod-ids and T/netns-paths (what
# the test made) and removes only those: the pods through the CRI (after
# letting a RunPodSandbox cut short finish), containerd, its shims and
# anything left in the pods' cgroups, the daemon's pairs and the daemon, pod
# netns and shim sockets of this run, our libcni cache entries, the mounts
# under T, the namespace and the cgroups.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SUITE=e2e-containerd
# shellcheck source=e2e/lib.sh
. "$ROOT/e2e/lib.sh" # cri, ep and the cleanup pieces
CRI_TIMEOUT=120

{ [ $# -eq 1 ] && [ -f "$1/env" ]; } || die "usage: $0 T (the directory up.sh was given)"
T=$(cd "$1" && pwd)
CTRD_PID='' DAEMON_PID='' NSPATH='' NS='' CGPARENT='' NET=epair-e2e
# shellcheck source=/dev/null
. "$T/env"
[ -n "${CRICTL:-}" ] && TOOLS=${CRICTL%/crictl-*/crictl}

# A RunPodSandbox started (by containerd's log) that has not returned yet.
runp_in_flight() {
	local all fin
	all=$(grep -c 'msg="RunPodSandbox for &' "$T/containerd.log" 2>/dev/null) || return 1
	fin=$(grep 'msg="RunPodSandbox for &' "$T/containerd.log" | grep -cE 'returns sandbox id|failed, error')
	[ $((all - fin)) -gt "$fin" ]
}

# The pod netns this run recorded, and any other new cni-* netns that this
# containerd's log names. Not lib.sh's remove_netns, which also takes any new
# cni-* netns holding an address of our subnets: another run of this suite
# on the machine uses the same subnets, and its pods are not ours.
remove_own_netns() {
	local p
	{
		cat "$T/netns-paths"
		for p in $(find /var/run/netns -maxdepth 1 -name 'cni-*' 2>/dev/null | sort | comm -13 "$T/netns-before" -); do
			grep -qF "${p##*/}" "$T/containerd.log" 2>/dev/null && echo "$p"
		done
	} | sort -u | while read -r p; do
		[ -e "$p" ] || continue
		echo "teardown: removing pod netns $p" >&2
		umount "$p" 2>/dev/null || umount -l "$p"
		rm -f "$p"
	done
}

log "teardown"
touch "$T/netns-paths" "$T/pod-ids"
if [ -n "$CTRD_PID" ] && kill -0 "$CTRD_PID" 2>/dev/null; then
	for _ in $(seq 200); do runp_in_flight || break; sleep 0.1; done
	# No filter: every pod of this private containerd is the suite's.
	# shellcheck disable=SC2119
	remove_cri_pods
	log "teardown: pods removed"
	stop_pid "$CTRD_PID"
	log "teardown: containerd stopped"
fi
kill_leftover_shims
[ -n "$CGPARENT" ] && kill_cgroup_procs "$CGPARENT"
log "teardown: shims and pod processes killed"
if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
	delete_pairs
	stop_pid "$DAEMON_PID"
	log "teardown: daemon stopped"
fi
remove_own_netns
# libcni's result cache lives in /var/lib/cni/results: only our networks.
rm -f /var/lib/cni/results/"$NET"-* /var/lib/cni/results/"$NET"-bridge-* 2>/dev/null
{ cat "$T/pod-ids"; grep -oE '[0-9a-f]{64}' "$T/containerd.log"; } 2>/dev/null | sort -u | remove_shim_sockets
unmount_all_under_t
[ -n "$NSPATH" ] && [ -e "$NSPATH" ] && ip netns del "$NS"
# The shims' socket directory, if this run made it and it is empty now.
[ -n "$RUN_CONTAINERD_EXISTED" ] || rmdir /run/containerd/s /run/containerd 2>/dev/null
[ -n "$CGPARENT" ] && remove_cgroups "$CGPARENT"
if [ "${EPAIR_E2E_KEEP:-}" = 1 ]; then
	echo "e2e-containerd: kept $T" >&2
else
	rm -rf "$T"
fi
log "teardown done"

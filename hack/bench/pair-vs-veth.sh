#!/usr/bin/env bash
# Measures one epair pair against a kernel veth pair in the same run: TCP
# throughput of one stream (iperf3, median of REPS runs of SECS seconds) and
# ping RTT (COUNT pings at 10 ms). Prints a markdown table with the ratios.
# Usage: hack/bench/pair-vs-veth.sh [bin/epair]   (as root)
set -euo pipefail
bin=$(realpath "${1:-bin/epair}")
SECS=${SECS:-10} REPS=${REPS:-3} COUNT=${COUNT:-200}
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "bench: needs iperf3 (make deps)" >&2; exit 1; }

work=$(mktemp -d /tmp/epair-bench.XXXXXX)
sock=$work/epair.sock
tag=$$
ns=(bv-a-$tag bv-b-$tag be-a-$tag be-b-$tag)
daemon_pid=
cleanup() {
	set +e
	[ -n "$daemon_pid" ] && { "$bin" pair del 0 --socket "$sock" >/dev/null 2>&1; kill "$daemon_pid"; wait "$daemon_pid"; } 2>/dev/null
	for n in "${ns[@]}"; do ip netns del "$n" 2>/dev/null; done
	pkill -f "iperf3 -s -B 10.124" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
for n in "${ns[@]}"; do ip netns add "$n"; ip -n "$n" link set lo up; done

# (a) kernel veth pair
ip link add va-$tag type veth peer name vb-$tag
ip link set va-$tag netns "${ns[0]}"
ip link set vb-$tag netns "${ns[1]}"
ip -n "${ns[0]}" addr add 10.124.1.1/24 dev va-$tag; ip -n "${ns[0]}" link set va-$tag up
ip -n "${ns[1]}" addr add 10.124.1.2/24 dev vb-$tag; ip -n "${ns[1]}" link set vb-$tag up

# (b) epair pair through the daemon
"$bin" daemon --socket "$sock" --state-dir "$work/state" 2>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
"$bin" pair add --socket "$sock" --a-netns "/var/run/netns/${ns[2]}" --b-netns "/var/run/netns/${ns[3]}" --a-name eth0 >/dev/null
ip -n "${ns[2]}" addr add 10.124.2.1/24 dev eth0
ip -n "${ns[3]}" addr add 10.124.2.2/24 dev epair0b

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

tcp() { # client-ns server-ns server-ip -> Gbit/s
	ip netns exec "$2" iperf3 -s -B "$3" -D -I "$work/iperf-$2.pid" >/dev/null
	sleep 0.3
	for _ in $(seq "$REPS"); do
		ip netns exec "$1" iperf3 -c "$3" -t "$SECS" -J | awk -F'[:,]' '/"sum_received"/ {f=1} f && /"bits_per_second"/ {printf "%.3f\n", $2/1e9; exit}'
	done | median
	kill "$(cat "$work/iperf-$2.pid")"
}
rtt() { # client-ns ip -> avg ms
	ip netns exec "$1" ping -q -c "$COUNT" -i 0.01 "$2" | awk -F'/' '/rtt/ {print $5}'
}

veth_tcp=$(tcp "${ns[0]}" "${ns[1]}" 10.124.1.2)
epair_tcp=$(tcp "${ns[2]}" "${ns[3]}" 10.124.2.2)
veth_rtt=$(rtt "${ns[0]}" 10.124.1.2)
epair_rtt=$(rtt "${ns[2]}" 10.124.2.2)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
cat <<TABLE
| metric (MTU 1500) | veth | epair | epair/veth |
|---|---|---|---|
| TCP 1 stream, Gbit/s (median of $REPS x ${SECS}s) | $veth_tcp | $epair_tcp | $(ratio "$epair_tcp" "$veth_tcp")x |
| ping RTT avg, ms ($COUNT at 10 ms) | $veth_rtt | $epair_rtt | $(ratio "$epair_rtt" "$veth_rtt")x |
TABLE

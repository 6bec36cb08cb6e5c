#!/usr/bin/env bash
# Where the time goes on an epair pair under load (`make profile`): two
# namespaces joined by one epair pair through a private daemon, one load
# (iperf3 TCP, a UDP 64-byte flood or TCP request/response), and two
# profiles of the same window:
#   - perf record -a -g (the whole machine: the kernel work of the copies and
#     of the protocol stacks shows up here, split by process), when perf
#     works (linux-perf from apt; it may not, in some VMs);
#   - the daemon's Go CPU profile (GET /debug/pprof/profile on its
#     root-only socket), read with go tool pprof.
# Prints the top of both and keeps the raw files in OUT.
#
# Usage (root): hack/bench/profile.sh [bin/epair]
# Env: MODE=tcp|tcp4|udp|rr (default tcp), SECS=10 (load; profiles cover the
#   middle SECS-4 s), OUT=bin/profile, EPAIR_DAEMON_ARGS="--busy-poll 20us"
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
bin=$(realpath "${1:-bin/epair}")
MODE=${MODE:-tcp} SECS=${SECS:-10} OUT=${OUT:-$repo/bin/profile}
read -r -a daemon_args <<<"${EPAIR_DAEMON_ARGS:-}"
die() { echo "profile: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (namespaces, TAPs, perf)"
[ -x "$bin" ] || die "no $bin (make build)"
[ "$SECS" -ge 6 ] || die "SECS must be at least 6"
for c in iperf3 ip curl go; do command -v "$c" >/dev/null || die "needs $c (make deps)"; done
case $MODE in tcp | tcp4 | udp | rr) ;; *) die "MODE must be tcp, tcp4, udp or rr" ;; esac

work=$(mktemp -d /tmp/epair-profile.XXXXXX)
na=pa-$$ nb=pb-$$
pids=()
cleanup() {
	local rc=$? p
	set +e
	trap - EXIT INT TERM
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	# The namespaces take the TAP ends with them; the state dir goes with work.
	ip netns del "$na" 2>/dev/null
	ip netns del "$nb" 2>/dev/null
	rm -rf "$work"
	[ "$rc" -ne 0 ] && echo "profile: failed (exit $rc); cleaned up" >&2
	exit "$rc"
}
trap cleanup EXIT INT TERM
mkdir -p "$OUT"
go build -o "$work/netbench" ./hack/bench/netbench

for n in "$na" "$nb"; do
	ip netns add "$n"
	ip -n "$n" link set lo up
done
sock=$work/epair.sock
"$bin" daemon --socket "$sock" --state-dir "$work/state" "${daemon_args[@]}" 2>"$work/daemon.log" &
pids+=($!)
for _ in $(seq 100); do "$bin" pair list --socket "$sock" >/dev/null 2>&1 && break; sleep 0.05; done
"$bin" pair add --socket "$sock" --a-netns "/var/run/netns/$na" --b-netns "/var/run/netns/$nb" \
	--a-name eth0 --mtu 1500 >"$work/pair.json"
eb=$(sed -n '/"b": {/,/}/s/^ *"name": "\(.*\)",/\1/p' "$work/pair.json")
[ -n "$eb" ] || die "pair add printed no b end"
ip -n "$na" addr add 10.124.3.1/24 dev eth0
ip -n "$nb" addr add 10.124.3.2/24 dev "$eb"
ip -n "$na" link set eth0 up
ip -n "$nb" link set "$eb" up
ip netns exec "$na" ping -c 2 -i 0.2 -W 2 10.124.3.2 >/dev/null || die "no ping across the pair"

# The load, in the background for SECS seconds.
case $MODE in
tcp | tcp4)
	ip netns exec "$nb" iperf3 -s -B 10.124.3.2 -1 >/dev/null &
	pids+=($!)
	sleep 0.3
	streams=1
	[ "$MODE" = tcp4 ] && streams=4
	ip netns exec "$na" iperf3 -c 10.124.3.2 -t "$SECS" -P "$streams" >"$work/load.txt" &
	;;
udp)
	ip netns exec "$nb" "$work/netbench" udp-sink -listen 10.124.3.2:9000 -duration "$((SECS + 2))s" >"$work/sink.txt" &
	pids+=($!)
	sleep 0.3
	ip netns exec "$na" "$work/netbench" udp-blast -to 10.124.3.2:9000 -size 64 -duration "${SECS}s" >"$work/load.txt" &
	;;
rr)
	ip netns exec "$nb" "$work/netbench" rr-server -listen 10.124.3.2:9001 &
	pids+=($!)
	sleep 0.3
	ip netns exec "$na" "$work/netbench" rr-client -to 10.124.3.2:9001 -duration "${SECS}s" >"$work/load.txt" &
	;;
esac
load=$!
sleep 2
win=$((SECS - 4))
curl -sf --unix-socket "$sock" -o "$OUT/daemon.pprof" "http://epair/debug/pprof/profile?seconds=$win" &
prof=$!
have_perf=
if command -v perf >/dev/null && perf record -a -g -o "$OUT/perf.data" -- sleep "$win" >/dev/null 2>"$work/perf.err"; then
	have_perf=1
else
	echo "profile: perf did not record ($(head -c 200 "$work/perf.err" 2>/dev/null)); Go profile only" >&2
fi
wait "$prof" || die "no Go profile from the daemon"
wait "$load" || die "the $MODE load failed"

echo "## load ($MODE, ${SECS}s)"
tail -n 4 "$work/load.txt"
[ -f "$work/sink.txt" ] && sleep 2.5 && cat "$work/sink.txt"
# awk reads to the end (head would cut perf off: SIGPIPE under pipefail).
top() { awk -v n="$1" '/%/ && c++ < n'; }
if [ -n "$have_perf" ]; then
	rep() { perf report -i "$OUT/perf.data" --no-children --stdio -g none "$@" 2>/dev/null; }
	echo
	echo "## perf: share of all samples by process and object (kernel or Go)"
	rep --sort comm,dso | top 8
	echo
	echo "## perf: the daemon's top symbols ([k] kernel, [.] Go)"
	rep --sort comm,sym | awk '$2 == "epair"' | top 20
fi
echo
echo "## go tool pprof -top (daemon, ${win}s)"
go tool pprof -top -nodecount 25 "$bin" "$OUT/daemon.pprof" 2>/dev/null | top 32
echo
echo "raw: $OUT/daemon.pprof${have_perf:+ $OUT/perf.data}"

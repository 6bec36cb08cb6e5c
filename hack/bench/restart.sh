#!/usr/bin/env bash
# How long a daemon restart cuts traffic (the restart rows of `make bench`;
# run.sh calls it, and it runs alone to compare binaries). As on a
# Kubernetes node: every pair's a end is eth0 in a namespace of its own (a
# pod), every b end is in the daemon's namespace (the host, here a namespace
# of its own, which the daemon runs in). For each count in RESTART_PAIRS the
# pairs are made, then RESTART_REPS times: kill -9 the daemon, start a
# ping every 10 ms from the host side to each of up to RESTART_SAMPLE pairs
# (evenly spread over the units, the first and the last among them, each
# with static neighbours), start a new daemon, and take from the moment
# before it was executed
#   - gap: until the first answer on the first pair (unit 0);
#   - all: until every sampled pair has answered;
#   - api: until the socket answers a pair list.
# Given several binaries (say a build of the parent commit and this one),
# each restart round restarts every one of them in turn on the same pairs,
# so that other load on the machine hurts them alike (the state is the
# same for all). It prints one line per restart and one median line per
# count and binary (K: its place on the command line, from 1):
#   RESTART bin=K pairs=N median api_ms=.. gap_ms=.. all_ms=..
# Everything it creates is removed on exit, failed or not.
#
# Usage (as root): hack/bench/restart.sh [bin/epair [other/epair ...]]
# Knobs (env): RESTART_PAIRS="1 100 1000" RESTART_REPS=5 RESTART_SAMPLE=10
#   RESTART_PAR=4 (pair adds at once) RESTART_TIMEOUT=30 (s, per restart)
#   EPAIR_DAEMON_ARGS="..."
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
[ $# -gt 0 ] || set -- "$repo/bin/epair"
RESTART_PAIRS=${RESTART_PAIRS:-1 100 1000} RESTART_REPS=${RESTART_REPS:-5}
RESTART_SAMPLE=${RESTART_SAMPLE:-10} RESTART_PAR=${RESTART_PAR:-4} RESTART_TIMEOUT=${RESTART_TIMEOUT:-30}
read -r -a daemon_args <<<"${EPAIR_DAEMON_ARGS:-}"
die() { echo "restart bench: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (it creates namespaces and TAPs)"
for b in "$@"; do [ -x "$b" ] || die "no $b (make build)"; done
for c in ip ping nsenter stdbuf; do command -v "$c" >/dev/null || die "needs $c (make deps)"; done

work=$(mktemp -d /tmp/epair-restart.XXXXXX)
tag=$$
host=br-h-$tag # the b ends, and the daemon
made=()        # namespaces made
daemon_pid=
pingers=()
log() { echo "[restart] $*" >&2; }

cleanup() {
	local rc=$? p n
	set +e
	trap - EXIT INT TERM
	for p in "${pingers[@]}" $daemon_pid; do kill -9 "$p" 2>/dev/null; done
	for p in "${pingers[@]}" $daemon_pid; do wait "$p" 2>/dev/null; done
	# The persistent TAPs go with their namespaces: nothing else to delete.
	for n in "${made[@]}"; do ip netns del "$n" 2>/dev/null; done
	rm -rf "$work"
	[ "$rc" -ne 0 ] && echo "restart bench: failed (exit $rc); cleaned up" >&2
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bins=() # copies: a rebuild during the run changes nothing
for b in "$@"; do
	bins+=("$work/epair.$((${#bins[@]} + 1))")
	cp "$b" "${bins[-1]}"
	echo "RESTART bin=${#bins[@]} path=$(realpath "$b")"
done
bin=${bins[0]} sock=$work/epair.sock # the CLI, and the daemon that makes the pairs
addns() {
	ip netns add "$1"
	made+=("$1")
	ip -n "$1" link set lo up
	ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}
pod() { echo "br-p$1-$tag"; }
addns "$host"

now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.0f", 1000 * (b - a)}'; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "nan"}'; }

# start_daemon bin: run a daemon in the host namespace; it returns at once.
start_daemon() {
	nsenter --net="/var/run/netns/$host" -- "$1" daemon --socket "$sock" --state-dir "$work/state" \
		"${daemon_args[@]}" 2>>"$work/daemon.log" &
	daemon_pid=$!
}
wait_api() { # deadline (epoch s) -> the time it answered
	until "$bin" pair list --socket "$sock" >/dev/null 2>&1; do
		awk -v d="$1" -v n="$(now)" 'BEGIN {exit !(n > d)}' && die "daemon did not answer (log: $(tail -5 "$work/daemon.log"))"
		sleep 0.005
	done
	now
}

have=0 # pairs made so far: units 0..have-1
add_pairs() { # n: make pairs until there are n
	local n=$1 t0 i
	t0=$(now)
	for ((i = have; i < n; i++)); do addns "$(pod "$i")"; done
	seq "$have" $((n - 1)) | xargs -r -P "$RESTART_PAR" -I{} "$bin" pair add --socket "$sock" \
		--a-netns "/var/run/netns/br-p{}-$tag" --a-name eth0 --unit {} >/dev/null ||
		die "adding pairs $have..$((n - 1)) failed"
	log "pairs $have..$((n - 1)) made in $(ms "$t0" "$(now)") ms"
	have=$n
}

# sample n: up to RESTART_SAMPLE units spread evenly over 0..n-1, first and
# last included.
sample() {
	awk -v n="$1" -v s="$RESTART_SAMPLE" 'BEGIN {
		if (s > n) s = n
		for (j = 0; j < s; j++) { u = (s > 1) ? int(j * (n - 1) / (s - 1) + 0.5) : 0; if (!(u in seen)) { seen[u]; print u } }
	}'
}

# address u: 10.X.Y.1 on the b end, .2 on the a end, static neighbours both
# ways, so that no ARP runs in the measured window. Done once per unit.
declare -A addressed
addr_of() { echo "10.$((100 + $1 / 256)).$(($1 % 256))"; }
address() {
	local u=$1 p b net amac bmac
	[ -n "${addressed[$u]:-}" ] && return
	p=$(pod "$u") b=epair${u}b net=$(addr_of "$u")
	ip -n "$p" addr add "$net.2/24" dev eth0
	ip -n "$host" addr add "$net.1/24" dev "$b"
	amac=$(ip -n "$p" -br link show eth0 | awk '{print $3}')
	bmac=$(ip -n "$host" -br link show "$b" | awk '{print $3}')
	ip -n "$p" neigh replace "$net.1" lladdr "$bmac" dev eth0 nud permanent
	ip -n "$host" neigh replace "$net.2" lladdr "$amac" dev "$b" nud permanent
	ip netns exec "$host" ping -n -q -c 1 -W 2 "$net.2" >/dev/null || die "pair $u: no ping before the restarts"
	addressed[$u]=1
}

# first_reply file t: the time of the first reply in a `ping -D` output
# that came after t, or nothing.
first_reply() {
	awk -v t="$2" -F'[][]' '/bytes from/ && $2 + 0 > t + 0 {print $2; exit}' "$1"
}

# restart_once bin units...: kill -9, ping the units, start bin, time it;
# the figures (ms) go to res_api, res_gap and res_all (no subshell: the
# daemon's pid must reach the caller).
restart_once() {
	local b=$1 u t0 tapi deadline f r
	shift
	res_all=0 res_gap=
	kill -9 "$daemon_pid"
	wait "$daemon_pid" 2>/dev/null || true
	pingers=()
	for u in "$@"; do
		ip netns exec "$host" stdbuf -oL ping -n -D -i 0.01 -W 1 -w "$RESTART_TIMEOUT" "$(addr_of "$u").2" >"$work/ping.$u" 2>&1 &
		pingers+=($!)
	done
	for u in "$@"; do # each ping has started (it prints its header first)
		until grep -qs "^PING" "$work/ping.$u"; do sleep 0.005; done
	done
	t0=$(now)
	start_daemon "$b"
	deadline=$(awk -v t="$t0" -v s="$RESTART_TIMEOUT" 'BEGIN {printf "%.3f", t + s}')
	tapi=$(wait_api "$deadline")
	for u in "$@"; do
		f=$work/ping.$u
		until r=$(first_reply "$f" "$t0") && [ -n "$r" ]; do
			awk -v d="$deadline" -v n="$(now)" 'BEGIN {exit !(n > d)}' && die "pair $u: no answer within ${RESTART_TIMEOUT}s of the restart: $(tail -3 "$f"; tail -5 "$work/daemon.log")"
			sleep 0.01
		done
		r=$(ms "$t0" "$r")
		[ "$u" = 0 ] && res_gap=$r
		[ "$r" -gt "$res_all" ] && res_all=$r
	done
	for u in "${pingers[@]}"; do kill "$u" 2>/dev/null; done
	for u in "${pingers[@]}"; do wait "$u" 2>/dev/null || true; done
	pingers=()
	res_api=$(ms "$t0" "$tapi")
}

start_daemon "$bin"
wait_api "$(awk -v t="$(now)" 'BEGIN {printf "%.3f", t + 10}')" >/dev/null
for n in $RESTART_PAIRS; do
	[ "$n" -ge "$have" ] || die "RESTART_PAIRS must grow: $RESTART_PAIRS"
	add_pairs "$n"
	mapfile -t units < <(sample "$n")
	for u in "${units[@]}"; do address "$u"; done
	for ((r = 1; r <= RESTART_REPS; r++)); do
		for k in "${!bins[@]}"; do
			restart_once "${bins[$k]}" "${units[@]}"
			echo "RESTART bin=$((k + 1)) pairs=$n rep=$r api_ms=$res_api gap_ms=$res_gap all_ms=$res_all sampled=${#units[@]}"
			echo "$res_api $res_gap $res_all" >>"$work/r.$n.$k"
		done
	done
	for k in "${!bins[@]}"; do
		f=$work/r.$n.$k
		echo "RESTART bin=$((k + 1)) pairs=$n median api_ms=$(cut -d' ' -f1 "$f" | median)" \
			"gap_ms=$(cut -d' ' -f2 "$f" | median) all_ms=$(cut -d' ' -f3 "$f" | median)" \
			"sampled=${#units[@]} reps=$RESTART_REPS"
	done
done

#!/usr/bin/env bash
# The epair demo: a daemon on a private socket, two network namespaces joined
# by an epair pair, traffic across it, the counters, and a full clean-up.
set -euo pipefail
bin=$(realpath "${1:-bin/epair}")
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (it creates namespaces and TAP devices)" >&2; exit 1; }

work=$(mktemp -d /tmp/epair-demo.XXXXXX)
sock=$work/epair.sock
nsa=epair-demo-a-$$
nsb=epair-demo-b-$$
daemon_pid=

cleanup() {
	set +e
	if [ -n "$daemon_pid" ]; then
		"$bin" pair del epair-demo --socket "$sock" >/dev/null 2>&1
		for u in $("$bin" pair list --socket "$sock" 2>/dev/null | sed -n 's/^ *"unit": \([0-9]*\).*/\1/p'); do
			"$bin" pair del "$u" --socket "$sock" >/dev/null 2>&1
		done
		kill "$daemon_pid" 2>/dev/null
		wait "$daemon_pid" 2>/dev/null
	fi
	ip netns del "$nsa" 2>/dev/null
	ip netns del "$nsb" 2>/dev/null
	rm -rf "$work"
	echo "== cleaned up: no namespace, TAP or daemon left"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "starting the epair daemon on $sock"
"$bin" daemon --socket "$sock" --state-dir "$work/state" 2>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { cat "$work/daemon.log"; exit 1; }

step "two network namespaces: $nsa and $nsb"
ip netns add "$nsa"
ip netns add "$nsb"

step "epair pair add: a end -> $nsa as eth0, b end -> $nsb"
"$bin" pair add --socket "$sock" --a-netns "/var/run/netns/$nsa" --b-netns "/var/run/netns/$nsb" --a-name eth0 | tee "$work/pair.json"
b=$(sed -n '/"b": {/,/}/s/^ *"name": "\(.*\)",/\1/p' "$work/pair.json")

ip -n "$nsa" addr add 10.123.0.1/24 dev eth0
ip -n "$nsb" addr add 10.123.0.2/24 dev "$b"
ip -n "$nsa" link set lo up
ip -n "$nsb" link set lo up
ip -n "$nsa" -br link show eth0
ip -n "$nsb" -br link show "$b"

step "ping a -> b and b -> a"
ip netns exec "$nsa" ping -c 3 -i 0.2 10.123.0.2
ip netns exec "$nsb" ping -c 3 -i 0.2 10.123.0.1

step "TCP across the pair (iperf3, 3 s)"
ip netns exec "$nsb" iperf3 -s -1 -D -B 10.123.0.2 >/dev/null
sleep 0.3
ip netns exec "$nsa" iperf3 -c 10.123.0.2 -t 3 | tail -n 4

step "counters (epair stats $b)"
"$bin" stats "$b" --socket "$sock"

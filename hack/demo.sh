#!/usr/bin/env bash
# The epair demo, as a runtime uses epair: a "node" network namespace runs
# the daemon; two "pods" (namespaces) are attached through the CNI plugin by
# cnitool, which calls plugins through libcni exactly as containerd does,
# with host-local addresses; one pod is shaped. Traffic crosses, the per-pod
# counters and metrics are shown, a few frames are captured, then DEL, and
# nothing is left. Nothing touches the machine's own network namespace.
#
# Usage: hack/demo.sh [bin/epair [bin/cni [cnitool]]]   (as root)
set -euo pipefail
bin=$(realpath "${1:-bin/epair}")
cnibin=$(realpath "${2:-bin/cni}")
cnitool=$(realpath "${3:-bin/tools/cnitool}")
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (it creates namespaces and TAP devices)" >&2; exit 1; }
for f in "$bin" "$cnibin/host-local" "$cnitool"; do
	[ -x "$f" ] || { echo "demo: $f missing (make demo builds it)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/epair-demo.XXXXXX)
sock=$work/epair.sock
node=epair-demo-node-$$
poda=epair-demo-web-$$
podb=epair-demo-db-$$
metrics=127.0.0.1:9623
daemon_pid=

# The CNI plugin directory: epair itself and the reference plugins.
mkdir -p "$work/cni-bin" "$work/net.d"
ln -s "$bin" "$work/cni-bin/epair"
ln -s "$cnibin/host-local" "$work/cni-bin/host-local"

cat >"$work/net.d/10-demo.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "epair-demo",
  "plugins": [{
    "type": "epair",
    "mode": "routed",
    "socket": "$sock",
    "capabilities": { "bandwidth": true },
    "ipam": {
      "type": "host-local",
      "dataDir": "$work/ipam",
      "ranges": [[{ "subnet": "10.123.0.0/24" }]],
      "routes": [{ "dst": "0.0.0.0/0" }]
    }
  }]
}
EOF

innode() { ip netns exec "$node" "$@"; }
cni() { # cni add|check|del NETNS [CNI_ARGS [CAP_ARGS]]
	innode env NETCONFPATH="$work/net.d" CNI_PATH="$work/cni-bin" \
		CNI_ARGS="${3:-}" CAP_ARGS="${4:-}" \
		"$cnitool" "$1" epair-demo "/var/run/netns/$2"
}

cleanup() {
	set +e
	if [ -n "$daemon_pid" ]; then
		cni del "$podb" >/dev/null 2>&1
		cni del "$poda" >/dev/null 2>&1
		kill "$daemon_pid" 2>/dev/null
		wait "$daemon_pid" 2>/dev/null
	fi
	for ns in "$poda" "$podb" "$node"; do ip netns del "$ns" 2>/dev/null; done
	rm -rf "$work"
	echo "== cleaned up: no namespace, TAP, address or daemon left"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "a node namespace ($node) running the epair daemon on $sock"
ip netns add "$node"
innode ip link set lo up
# ip netns exec execs the daemon: $! is its pid, so cleanup can stop it.
ip netns exec "$node" "$bin" daemon --socket "$sock" --state-dir "$work/state" \
	--metrics-addr "$metrics" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { cat "$work/daemon.log"; exit 1; }

step "two pods: web (unshaped) and db (shaped to 20 Mbit/s each way), attached by cnitool ADD"
ip netns add "$poda"
ip netns add "$podb"
cni add "$poda" "IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=web0" >"$work/web.json"
cni add "$podb" "IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=db-0;K8S_POD_INFRA_CONTAINER_ID=db0" \
	'{"bandwidth":{"ingressRate":20000000,"ingressBurst":2000000,"egressRate":20000000,"egressBurst":2000000}}' >"$work/db.json"
ipa=$(sed -n 's/.*"address": "\([0-9.]*\)\/.*/\1/p' "$work/web.json" | head -1)
ipb=$(sed -n 's/.*"address": "\([0-9.]*\)\/.*/\1/p' "$work/db.json" | head -1)
echo "web-0: $ipa   db-0: $ipb"
ip -n "$poda" -br addr show eth0
ip -n "$poda" route
innode ip -br link show type tun

step "ping web-0 -> db-0 and the node"
ip netns exec "$poda" ping -c 3 -i 0.2 "$ipb"
ip netns exec "$poda" ping -c 1 10.123.0.1 | grep "bytes from"

step "TCP web-0 -> db-0 through the shaped pod (iperf3, 3 s: about 20 Mbit/s)"
ip netns exec "$podb" iperf3 -s -1 -D -B "$ipb" >/dev/null
sleep 0.3
ip netns exec "$poda" iperf3 -c "$ipb" -t 3 | tail -n 4

step "the pairs and their pods (epair pair list)"
innode "$bin" pair list --socket "$sock"

step "counters of pod web-0 (epair stats web-0)"
innode "$bin" stats web-0 --socket "$sock"

step "capture pod web-0 while it pings db-0 (epair capture web-0 -c 6 -w - | tcpdump -nr -)"
innode "$bin" capture web-0 -c 6 -w - --socket "$sock" 2>"$work/capture.err" | tcpdump -nr - 2>/dev/null &
capture_pid=$!
sleep 0.5 # the capture attaches ("epair: capturing" on its stderr)
ip netns exec "$poda" ping -c 3 -i 0.2 "$ipb" >/dev/null
wait "$capture_pid"
cat "$work/capture.err"

step "the pods' Prometheus metrics (curl http://$metrics/metrics in the node namespace)"
innode curl -s "http://$metrics/metrics" |
	grep -E '^epair_(transmit|receive)_(packets|bytes)_total\{.*end="a"|^epair_shaper_rate|^epair_cni_commands_total|^epair_pairs ' |
	sed -E 's/container_id="[^"]*",//'

step "cnitool CHECK, then DEL of both pods"
cni check "$poda"
cni del "$poda"
cni del "$podb"
innode "$bin" pair list --socket "$sock"
echo "host-local reservations left: $(find "$work/ipam" -type f -name '10.*' | wc -l)"

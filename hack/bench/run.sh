#!/usr/bin/env bash
# The epair benchmark (`make bench`): in one run, two network namespaces
# joined (a) by a kernel veth pair and (b) by an epair pair through the
# daemon, both at MTU 1500, measured turn about so that a busy machine hurts
# both alike; TCP 1 stream, UDP (first UDP_SENDERS value) and ping also
# through two more epair pairs, one with anti-spoofing on (`pair add --ips`)
# and one shaped far above the link (SHAPE_RATE bit/s, SHAPE_BURST bits,
# both ways), to show what the two cost on the unshaped path; and every
# network figure also through the reference forwarder (hack/bench/forwarder:
# two TAPs, one goroutine per direction, blocking read then write), the
# simplest userspace cable, which epair should beat on every row:
#   - TCP throughput, 1 and 4 streams (iperf3, median of REPS runs of SECS s)
#   - UDP 64-byte packets per second delivered and the loss, from a sendmmsg
#     sender (hack/bench/netbench udp-blast) to a recvmmsg sink
#   - latency: ping RTT (COUNT pings at 10 ms, avg and p99) and TCP 1-byte
#     request/response rate with its p50/p99 (netbench rr-client/rr-server)
#   - CNI ADD/DEL latency of epair against the reference ptp plugin through
#     libcni, CNI_N pods one at a time and CNI_PAR at once
#     (e2e/cni TestADDDELLatency)
#   - scale: a fresh daemon with PAIRS idle pairs: RSS per pair, idle CPU
#     over IDLE_SECS, time to add and to delete them all
#   - restart: how long kill -9 and a new daemon cut traffic with each of
#     RESTART_PAIRS pairs (hack/bench/restart.sh: a ping every 10 ms on a
#     sample of pairs; median of RESTART_REPS restarts)
#   - the syscall budget: system calls per frame (TCP 1 stream) and per
#     request/response transaction (strace -c), context switches per
#     transaction, epair's daemon against the forwarder (SYS_SECS each)
#   - the Go benchmarks of the queue core (go test -bench ./pkg/epair)
# It prints one markdown table with the ratios epair/veth (epair/ptp for CNI)
# and writes it, with the machine and the knobs, to BENCH_OUT (default
# BENCHMARKS.md); the run before moves under "Previous run" there, with what
# changed between the two. Everything it creates is removed on exit, failed
# or not.
#
# Usage (as root): hack/bench/run.sh [bin/epair]
# Knobs (env): SECS=10 REPS=3 COUNT=200 PAIRS=1000 IDLE_SECS=30 SETTLE_SECS=5
#   CNI_N=100 CNI_PAR=8 UDP_SIZE=64 UDP_SENDERS="1 2" (a list: one run each)
#   SCALE_PAR=4 GOBENCH_TIME=1s SYS_SECS=3 RESTART_PAIRS="1 PAIRS/10 PAIRS" RESTART_REPS=5
#   RESTART_SAMPLE=10 SHAPE_RATE=100000000000 SHAPE_BURST=1000000000
#   BENCH_OUT=BENCHMARKS.md EPAIR_DAEMON_ARGS="--dispatch deferred ..."
#   EPAIR_CNI_PLUGINS=bin/cni
set -euo pipefail
t_start=$(date +%s)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
src_bin=$(realpath "${1:-bin/epair}")
SECS=${SECS:-10} REPS=${REPS:-3} COUNT=${COUNT:-200}
PAIRS=${PAIRS:-1000} IDLE_SECS=${IDLE_SECS:-30} SETTLE_SECS=${SETTLE_SECS:-5}
CNI_N=${CNI_N:-100} CNI_PAR=${CNI_PAR:-8}
UDP_SIZE=${UDP_SIZE:-64} UDP_SENDERS=${UDP_SENDERS:-1 2} SCALE_PAR=${SCALE_PAR:-4}
GOBENCH_TIME=${GOBENCH_TIME:-1s} SYS_SECS=${SYS_SECS:-3}
RESTART_PAIRS=${RESTART_PAIRS:-1 $((PAIRS / 10 > 1 ? PAIRS / 10 : 2)) $PAIRS}
RESTART_REPS=${RESTART_REPS:-5} RESTART_SAMPLE=${RESTART_SAMPLE:-10}
SHAPE_RATE=${SHAPE_RATE:-100000000000} SHAPE_BURST=${SHAPE_BURST:-1000000000}
BENCH_OUT=${BENCH_OUT:-$repo/BENCHMARKS.md}
EPAIR_DAEMON_ARGS=${EPAIR_DAEMON_ARGS:-}
EPAIR_CNI_PLUGINS=${EPAIR_CNI_PLUGINS:-$repo/bin/cni}
read -r -a daemon_args <<<"$EPAIR_DAEMON_ARGS"

die() { echo "bench: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (it creates namespaces, veths and TAPs)"
for c in iperf3 ping ip go strace; do command -v "$c" >/dev/null || die "needs $c (make deps)"; done
[ -x "$src_bin" ] || die "no $src_bin (make build)"
[ -x "$EPAIR_CNI_PLUGINS/ptp" ] || die "no reference plugins in $EPAIR_CNI_PLUGINS (make cni-plugins)"

work=$(mktemp -d /tmp/epair-bench.XXXXXX)
tag=$$
ns_va=bv-a-$tag ns_vb=bv-b-$tag   # veth
ns_ea=be-a-$tag ns_eb=be-b-$tag   # epair
ns_fa=bf-a-$tag ns_fb=bf-b-$tag   # epair with anti-spoofing on
ns_ha=bh-a-$tag ns_hb=bh-b-$tag   # epair shaped far above the link
ns_ra=br-a-$tag ns_rb=br-b-$tag   # the reference forwarder
ns_sa=bs-a-$tag ns_sb=bs-b-$tag   # scale: all a ends, all b ends
all_ns=("$ns_va" "$ns_vb" "$ns_ea" "$ns_eb" "$ns_fa" "$ns_fb" "$ns_ha" "$ns_hb" "$ns_ra" "$ns_rb" "$ns_sa" "$ns_sb")
made_ns=()
pids=()      # background processes to stop
socks=()     # daemons whose pairs to delete
log() { printf '[bench %4ss] %s\n' "$(($(date +%s) - t_start))" "$*" >&2; }

cleanup() {
	local rc=$? p s
	set +e
	trap - EXIT INT TERM
	for p in "$work"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
	for s in "${socks[@]}"; do
		# Delete what the daemon still has (the a ends are named, the units
		# are what pair list shows).
		"$work/epair" pair list --socket "$s" 2>/dev/null | sed -n 's/^ *"unit": \([0-9]*\).*/\1/p' |
			xargs -r -P "$SCALE_PAR" -I{} "$work/epair" pair del {} --socket "$s" >/dev/null 2>&1
	done
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	# A namespace going away takes its veth and TAP ends with it.
	for n in "${made_ns[@]}"; do ip netns del "$n" 2>/dev/null; done
	rm -rf "$work"
	[ "$rc" -ne 0 ] && echo "bench: failed (exit $rc); cleaned up" >&2
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The binary is copied so that a rebuild during the run changes nothing.
cp "$src_bin" "$work/epair"
bin=$work/epair
go build -o "$work/netbench" ./hack/bench/netbench
nb=$work/netbench
go build -o "$work/forwarder" ./hack/bench/forwarder

for n in "${all_ns[@]}"; do
	ip netns add "$n"
	made_ns+=("$n")
	ip -n "$n" link set lo up
	# No IPv6: no router solicitations or DAD on idle links.
	ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done

start_daemon() { # socket state-dir log -> pid in $daemon_pid
	"$bin" daemon --socket "$1" --state-dir "$2" "${daemon_args[@]}" 2>"$3" &
	daemon_pid=$!
	pids+=("$daemon_pid")
	socks+=("$1")
	for _ in $(seq 100); do "$bin" pair list --socket "$1" >/dev/null 2>&1 && return; sleep 0.05; done
	cat "$3" >&2
	die "daemon did not answer on $1"
}

# ---- (a) kernel veth pair, (b) epair pair, same addresses plan
log "setting up: veth pair and epair pair (daemon args: ${EPAIR_DAEMON_ARGS:-none})"
ip link add va-$tag mtu 1500 netns "$ns_va" type veth peer name vb-$tag mtu 1500 netns "$ns_vb"
ip -n "$ns_va" addr add 10.124.1.1/24 dev va-$tag
ip -n "$ns_vb" addr add 10.124.1.2/24 dev vb-$tag
ip -n "$ns_va" link set va-$tag up
ip -n "$ns_vb" link set vb-$tag up

start_daemon "$work/epair.sock" "$work/state" "$work/daemon.log"
bench_pid=$daemon_pid
declare -A bend # kind -> the b end of its epair pair
mac() { ip -n "$1" -br link show "$2" | awk '{print $3}'; }
epair_pair() { # kind a-ns b-ns subnet (10.124.N) [pair add flags]: addressed, up, static neighbours
	local kind=$1 na=$2 nb=$3 net=$4 eb
	shift 4
	"$bin" pair add --socket "$work/epair.sock" --a-netns "/var/run/netns/$na" --b-netns "/var/run/netns/$nb" \
		--a-name eth0 --mtu 1500 "$@" >"$work/pair-$kind.json"
	eb=$(sed -n '/"b": {/,/}/s/^ *"name": "\(.*\)",/\1/p' "$work/pair-$kind.json")
	[ -n "$eb" ] || die "pair add printed no b end: $(cat "$work/pair-$kind.json")"
	bend[$kind]=$eb
	ip -n "$na" addr add "$net.1/24" dev eth0
	ip -n "$nb" addr add "$net.2/24" dev "$eb"
	ip -n "$na" link set eth0 up
	ip -n "$nb" link set "$eb" up
	ip -n "$na" neigh replace "$net.2" lladdr "$(mac "$nb" "$eb")" dev eth0 nud permanent
	ip -n "$nb" neigh replace "$net.1" lladdr "$(mac "$na" eth0)" dev "$eb" nud permanent
}
epair_pair epair "$ns_ea" "$ns_eb" 10.124.2
epair_pair spoof "$ns_fa" "$ns_fb" 10.124.3 --ips 10.124.3.1/24
epair_pair shaped "$ns_ha" "$ns_hb" 10.124.4 --ingress-rate "$SHAPE_RATE" --ingress-burst "$SHAPE_BURST" \
	--egress-rate "$SHAPE_RATE" --egress-burst "$SHAPE_BURST"
grep -q '"anti_spoofing": true' "$work/pair-spoof.json" || die "pair add --ips: no anti-spoofing: $(cat "$work/pair-spoof.json")"
grep -q '"egress_rate"' "$work/pair-shaped.json" || die "pair add --egress-rate: no shaping: $(cat "$work/pair-shaped.json")"

# (c) the reference forwarder: its TAPs are made in this namespace and
# moved, the a end named eth0 as the epair pairs' are; its descriptors
# follow the devices.
"$work/forwarder" fw-a-$tag fw-b-$tag >"$work/forwarder.out" 2>"$work/forwarder.log" &
fwd_pid=$!
pids+=("$fwd_pid")
bend[fwd]=fw-b-$tag
for _ in $(seq 100); do grep -q ready "$work/forwarder.out" && break; sleep 0.05; done
grep -q ready "$work/forwarder.out" || die "forwarder did not start: $(cat "$work/forwarder.log")"
ip link set fw-a-$tag netns "$ns_ra" name eth0
ip link set fw-b-$tag netns "$ns_rb"
ip -n "$ns_ra" addr add 10.124.5.1/24 dev eth0
ip -n "$ns_rb" addr add 10.124.5.2/24 dev fw-b-$tag
ip -n "$ns_ra" link set eth0 up
ip -n "$ns_rb" link set fw-b-$tag up
ip -n "$ns_ra" neigh replace 10.124.5.2 lladdr "$(mac "$ns_rb" fw-b-$tag)" dev eth0 nud permanent
ip -n "$ns_rb" neigh replace 10.124.5.1 lladdr "$(mac "$ns_ra" eth0)" dev fw-b-$tag nud permanent

# Static neighbours on both (the epair pairs' are set above): a UDP flood
# never confirms a neighbour, and an ARP probe lost in the flood would stop
# the sender for reasons that are not the datapath's.
ip -n "$ns_va" neigh replace 10.124.1.2 lladdr "$(mac "$ns_vb" vb-$tag)" dev va-$tag nud permanent
ip -n "$ns_vb" neigh replace 10.124.1.1 lladdr "$(mac "$ns_va" va-$tag)" dev vb-$tag nud permanent

# kind -> client ns, server ns, server ip
cli() { case $1 in veth) echo "$ns_va" ;; epair | capture) echo "$ns_ea" ;; spoof) echo "$ns_fa" ;; shaped) echo "$ns_ha" ;; fwd) echo "$ns_ra" ;; esac; }
srv() { case $1 in veth) echo "$ns_vb" ;; epair | capture) echo "$ns_eb" ;; spoof) echo "$ns_fb" ;; shaped) echo "$ns_hb" ;; fwd) echo "$ns_rb" ;; esac; }
sip() { case $1 in veth) echo 10.124.1.2 ;; epair | capture) echo 10.124.2.2 ;; spoof) echo 10.124.3.2 ;; shaped) echo 10.124.4.2 ;; fwd) echo 10.124.5.2 ;; esac; }
kinds="veth epair fwd spoof shaped" # all of them: TCP 1 stream, ping, UDP with the first UDP_SENDERS
core="veth epair fwd"                # every figure
for k in $kinds; do
	ip netns exec "$(cli "$k")" ping -c 2 -i 0.2 -W 2 "$(sip "$k")" >/dev/null || die "$k: no ping across the pair"
done

raw=$work/raw.txt # every measurement, for the details section
: >"$raw"
rec() { echo "$*" >>"$raw"; }
jget() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p"; } # key < one-line JSON
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "nan"}'; }
med() { median <"$work/m.$1"; } # median of a collected figure
put() { echo "$2" >>"$work/m.$1"; } # collect a figure

# ---- Go benchmarks of the queue core
log "Go benchmarks (./pkg/epair, -benchtime $GOBENCH_TIME)"
go test -run XXX -bench . -benchmem -benchtime "$GOBENCH_TIME" ./pkg/epair | tee "$work/gobench.txt" >&2

# ---- latency: ping
log "ping: $COUNT at 10 ms each way"
for k in $kinds; do
	ip netns exec "$(cli "$k")" ping -n -c "$COUNT" -i 0.01 -W 1 "$(sip "$k")" >"$work/ping.$k" || true
	read -r n avg p50 p99 < <(sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' "$work/ping.$k" | "$nb" quantiles)
	rec "ping $k: replies=$n/$COUNT avg=$avg p50=$p50 p99=$p99 ms"
	put "ping_avg.$k" "$avg"; put "ping_p99.$k" "$p99"; put "ping_n.$k" "$n"
done

# ---- latency: TCP request/response
log "TCP request/response: $REPS x ${SECS}s each"
for k in $core; do
	ip netns exec "$(srv "$k")" "$nb" rr-server -listen "$(sip "$k"):9001" &
	echo $! >"$work/rr-$k.pid"
done
for r in $(seq "$REPS"); do
	for k in $core; do
		out=$(ip netns exec "$(cli "$k")" "$nb" rr-client -to "$(sip "$k"):9001" -duration "${SECS}s")
		rec "rr $k #$r: $out"
		put "rr_rate.$k" "$(jget per_sec <<<"$out")"
		put "rr_p50.$k" "$(jget p50_us <<<"$out")"
		put "rr_p99.$k" "$(jget p99_us <<<"$out")"
	done
done
for k in $core; do kill "$(cat "$work/rr-$k.pid")"; rm -f "$work/rr-$k.pid"; done

# ---- TCP throughput
log "TCP throughput: 1 and 4 streams, $REPS x ${SECS}s each"
for k in $kinds; do
	ip netns exec "$(srv "$k")" iperf3 -s -B "$(sip "$k")" -D -I "$work/iperf-$k.pid" >/dev/null
done
sleep 0.3
# capture: the epair pair again, while `epair capture` of its a end writes
# pcap to /dev/null (what a capture costs the traffic it watches).
capture_start() {
	"$bin" capture "${bend[epair]}" --socket "$work/epair.sock" -w - >/dev/null 2>"$work/capture.err" &
	capture_pid=$!
	sleep 0.3
}
capture_stop() {
	kill -INT "$capture_pid"
	wait "$capture_pid" || die "epair capture failed: $(cat "$work/capture.err")"
	rec "capture #$r: $(tail -1 "$work/capture.err")"
}
for r in $(seq "$REPS"); do
	for p in 1 4; do
		ks="$kinds capture"
		[ "$p" = 1 ] || ks=$core
		for k in $ks; do
			[ "$k" = capture ] && capture_start
			ip netns exec "$(cli "$k")" iperf3 -c "$(sip "$k")" -t "$SECS" -P "$p" -J >"$work/iperf.json" ||
				die "iperf3 $k -P $p: $(cat "$work/iperf.json")"
			[ "$k" = capture ] && capture_stop
			read -r gbps retr < <("$nb" iperf <"$work/iperf.json")
			rec "tcp $k P$p #$r: $gbps Gbit/s, $retr retransmits"
			put "tcp$p.$k" "$gbps"; put "retr$p.$k" "$retr"
		done
	done
done
for k in $kinds; do kill "$(cat "$work/iperf-$k.pid")"; rm -f "$work/iperf-$k.pid"; done

# ---- UDP packet rate
log "UDP ${UDP_SIZE}-byte flood: $REPS x ${SECS}s each, with $UDP_SENDERS sending thread(s)"
tx_dropped() { ip netns exec "$(cli "$1")" cat /sys/class/net/eth0/statistics/tx_dropped; }
oqdrops() { [ "$1" = fwd ] && { echo 0; return; } # no counters of its own
	"$bin" stats "${bend[$1]}" --socket "$work/epair.sock" | sed -n '/"a": {/,/}/s/^ *"oqdrops": \([0-9]*\).*/\1/p'; }
udp_first=${UDP_SENDERS%% *}
for r in $(seq "$REPS"); do
	for nsend in $UDP_SENDERS; do
		ks=$kinds
		[ "$nsend" = "$udp_first" ] || ks=$core
		for k in $ks; do
			[ "$k" != veth ] && { tap0=$(tx_dropped "$k"); oq0=$(oqdrops "$k"); }
			ip netns exec "$(srv "$k")" "$nb" udp-sink -listen "$(sip "$k"):9000" -duration "$((SECS + 2))s" >"$work/sink.json" &
			sink=$!
			echo $sink >"$work/sink.pid"
			sleep 0.3
			sent=$(ip netns exec "$(cli "$k")" "$nb" udp-blast -to "$(sip "$k"):9000" -size "$UDP_SIZE" -duration "${SECS}s" -senders "$nsend")
			wait $sink || die "udp-sink $k failed"
			rm -f "$work/sink.pid"
			got=$(cat "$work/sink.json")
			s=$(jget sent <<<"$sent") g=$(jget received <<<"$got")
			loss=$(awk -v s="$s" -v g="$g" 'BEGIN {printf "%.2f", s ? 100 * (1 - g / s) : 0}')
			extra=
			[ "$k" != veth ] && extra=" a-end TAP tx_dropped +$(($(tx_dropped "$k") - tap0)), epair oqdrops +$(($(oqdrops "$k") - oq0))"
			rec "udp $k ${nsend}x #$r: sender $sent sink $got loss=$loss%$extra"
			put "udp_rx_k$nsend.$k" "$(jget pps <<<"$got" | awk '{print $1 / 1000}')"
			put "udp_tx_k$nsend.$k" "$(jget pps <<<"$sent" | awk '{print $1 / 1000}')"
			put "udp_loss$nsend.$k" "$loss"
		done
	done
done

# ---- syscall budget
# System calls (strace -c -f on every thread of the daemon, and of the
# forwarder) per frame the cable carries under TCP 1 stream, and per TCP
# request/response transaction; context switches (voluntary and not, all
# threads, from /proc, without strace) per transaction are the wake-ups.
# strace slows what it traces, so only the ratios of counts mean much.
log "syscall budget: strace -c on the daemon and the forwarder, ${SYS_SECS}s of TCP 1 stream and of request/response each"
declare -A cable=([epair]=$bench_pid [fwd]=$fwd_pid)
taptx() { # kind: frames the kernel has handed the cable, from both its TAPs
	local a b
	a=$(ip netns exec "$(cli "$1")" cat /sys/class/net/eth0/statistics/tx_packets)
	b=$(ip netns exec "$(srv "$1")" cat "/sys/class/net/${bend[$1]}/statistics/tx_packets")
	echo $((a + b))
}
ctxsw() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ {n += $2} END {print n}'; }
traced() { # kind out cmd...: runs cmd while strace counts the kind's system calls into out
	local k=$1 out=$2 st
	shift 2
	strace -c -S calls -f -q -p "${cable[$k]}" -o "$out" &
	st=$!
	sleep 0.5 # attached to every thread
	"$@"
	kill -INT "$st"
	wait "$st" || true
}
calls() { awk '$NF == "total" {print $4}' "$1"; } # strace -c: % seconds usecs/call calls [errors] total
per() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b ? a / b : 0}'; }
for k in epair fwd; do
	ip netns exec "$(srv "$k")" iperf3 -s -B "$(sip "$k")" -D -I "$work/iperf-$k.pid" >/dev/null
	ip netns exec "$(srv "$k")" "$nb" rr-server -listen "$(sip "$k"):9001" &
	echo $! >"$work/rr-$k.pid"
done
sleep 0.3
for k in epair fwd; do
	f0=$(taptx $k)
	traced $k "$work/strace-tcp.$k" ip netns exec "$(cli "$k")" iperf3 -c "$(sip "$k")" -t "$SYS_SECS" -J >"$work/iperf.json"
	frames=$(($(taptx $k) - f0)) n=$(calls "$work/strace-tcp.$k")
	rec "syscalls $k tcp1: $n calls for $frames frames; top: $(sed -n '3,7p' "$work/strace-tcp.$k" | awk '{printf "%s %s, ", $NF, $4}')"
	put "sys_frame.$k" "$(per "$n" "$frames")"
	out=$(traced $k "$work/strace-rr.$k" ip netns exec "$(cli "$k")" "$nb" rr-client -to "$(sip "$k"):9001" -duration "${SYS_SECS}s")
	tx=$(jget transactions <<<"$out") n=$(calls "$work/strace-rr.$k")
	rec "syscalls $k rr: $n calls for $tx transactions; top: $(sed -n '3,7p' "$work/strace-rr.$k" | awk '{printf "%s %s, ", $NF, $4}')"
	put "sys_rr.$k" "$(per "$n" "$tx")"
	c0=$(ctxsw "${cable[$k]}")
	out=$(ip netns exec "$(cli "$k")" "$nb" rr-client -to "$(sip "$k"):9001" -duration "${SYS_SECS}s")
	tx=$(jget transactions <<<"$out") c=$(($(ctxsw "${cable[$k]}") - c0))
	rec "wakeups $k rr: $c context switches for $tx transactions"
	put "csw_rr.$k" "$(per "$c" "$tx")"
done
for k in epair fwd; do
	kill "$(cat "$work/iperf-$k.pid")" "$(cat "$work/rr-$k.pid")"
	rm -f "$work/iperf-$k.pid" "$work/rr-$k.pid"
done

# ---- CNI ADD/DEL latency through libcni
log "CNI ADD/DEL latency: $CNI_N pods one at a time and $CNI_PAR at once, epair and ptp"
EPAIR_LATENCY=1 EPAIR_LATENCY_N=$CNI_N EPAIR_LATENCY_PAR=$CNI_PAR EPAIR_DAEMON_ARGS=$EPAIR_DAEMON_ARGS \
	EPAIR_BIN=$bin EPAIR_CNI_PLUGINS=$EPAIR_CNI_PLUGINS \
	go test -count=1 -v -timeout 10m -run '^TestADDDELLatency$' ./e2e/cni >"$work/cni.log" 2>&1 ||
	{ cat "$work/cni.log" >&2; die "CNI latency test failed"; }
grep '^LATENCY ' "$work/cni.log" >"$work/cni.txt" || { cat "$work/cni.log" >&2; die "no LATENCY lines"; }
while read -r line; do rec "cni: ${line#LATENCY }"; done <"$work/cni.txt"
cni() { # plugin mode field
	awk -v p="plugin=$1" -v m="mode=$2" -v f="$3" '$2 == p && $3 == m { for (i = 4; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) print kv[2] } }' "$work/cni.txt"
}

# ---- scale: PAIRS idle pairs on a fresh daemon
log "scale: $PAIRS idle pairs"
start_daemon "$work/scale.sock" "$work/scale-state" "$work/scale.log"
spid=$daemon_pid
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$spid/status"; } # KiB
cputicks() { awk '{print $14 + $15}' "/proc/$spid/stat"; }
npairs() { "$bin" pair list --socket "$work/scale.sock" | grep -c '"unit":' || true; }
sleep "$SETTLE_SECS"
rss0=$(rss)
t0=$(date +%s.%N)
seq 0 $((PAIRS - 1)) | xargs -P "$SCALE_PAR" -I{} "$bin" pair add --socket "$work/scale.sock" \
	--a-netns "/var/run/netns/$ns_sa" --b-netns "/var/run/netns/$ns_sb" --a-name p{} >/dev/null ||
	die "adding $PAIRS pairs failed"
t1=$(date +%s.%N)
have=$(npairs)
[ "$have" -eq "$PAIRS" ] || die "daemon has $have pairs, want $PAIRS"
sleep "$SETTLE_SECS"
rss1=$(rss)
threads=$(awk '/^Threads:/ {print $2}' "/proc/$spid/status")
fds=$(find "/proc/$spid/fd" -mindepth 1 -maxdepth 1 | wc -l)
hz=$(getconf CLK_TCK)
c0=$(cputicks) w0=$(date +%s.%N)
sleep "$IDLE_SECS"
c1=$(cputicks) w1=$(date +%s.%N)
idle_cpu=$(awk -v c="$((c1 - c0))" -v hz="$hz" -v a="$w0" -v b="$w1" 'BEGIN {printf "%.2f", 100 * c / hz / (b - a)}')
t2=$(date +%s.%N)
seq 0 $((PAIRS - 1)) | xargs -P "$SCALE_PAR" -I{} "$bin" pair del p{} --socket "$work/scale.sock" >/dev/null ||
	die "deleting $PAIRS pairs failed"
t3=$(date +%s.%N)
left=$(npairs)
links=$(ip -n "$ns_sa" -o link | grep -vc ': lo:' || true)
if [ "$left" -ne 0 ] || [ "$links" -ne 0 ]; then die "after deleting: $left pairs in the daemon, $links links in $ns_sa"; fi
sleep "$SETTLE_SECS"
rss2=$(rss)
add_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
del_s=$(awk -v a="$t2" -v b="$t3" 'BEGIN {printf "%.2f", b - a}')
rec "scale: rss0=${rss0}KiB rss$PAIRS=${rss1}KiB rss_after_del=${rss2}KiB threads=$threads fds=$fds idle_cpu=$idle_cpu% over ${IDLE_SECS}s add=${add_s}s del=${del_s}s ($SCALE_PAR at once)"
bench_rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$bench_pid/status")

# ---- restart: kill -9 and a new daemon, with more and more pairs
log "restart: kill -9 and start again with $RESTART_PAIRS pairs, $RESTART_REPS times each"
RESTART_PAIRS=$RESTART_PAIRS RESTART_REPS=$RESTART_REPS RESTART_SAMPLE=$RESTART_SAMPLE RESTART_PAR=$SCALE_PAR \
	EPAIR_DAEMON_ARGS=$EPAIR_DAEMON_ARGS hack/bench/restart.sh "$bin" >"$work/restart.txt" 2>"$work/restart.log" ||
	{ cat "$work/restart.txt" "$work/restart.log" >&2; die "restart bench failed"; }
grep ' rep=' "$work/restart.txt" | while read -r line; do rec "restart: ${line#RESTART }"; done
restart() { # pairs field -> the median
	awk -v n="pairs=$1" -v f="$2" '$2 == "bin=1" && $3 == n && $4 == "median" { for (i = 5; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f) print kv[2] } }' "$work/restart.txt"
}

# ---- the table
rows=$work/rows.tsv # key, label, reference, epair, ratio (1: epair/reference)
: >"$rows"
row() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$rows"; }
f() { awk -v v="$2" "BEGIN {printf \"$1\", v}"; } # format one number
both() { # key label format figure [ratio [kind]]: veth against epair (or the epair pair of kind)
	row "$1" "$2" "$(f "$3" "$(med "$4.veth")")" "$(f "$3" "$(med "$4.${6:-epair}")")" "${5:-1}"
}
# on: the same figure through the pairs with anti-spoofing and shaping on
on() { # key label format figure [ratio]
	both "$1_spoof" "$2, anti-spoofing on" "$3" "$4" "${5:-1}" spoof
	both "$1_shaped" "$2, shaped at $(awk -v r="$SHAPE_RATE" 'BEGIN {printf "%g", r / 1e9}') Gbit/s" "$3" "$4" "${5:-1}" shaped
}
# vsfwd: the same figure, the reference forwarder against epair
vsfwd() { # key label format figure [ratio]
	row "$1_fwd" "$2: reference forwarder, epair" "$(f "$3" "$(med "$4.fwd")")" "$(f "$3" "$(med "$4.epair")")" "${5:-1}"
}
rm_="median of $REPS x ${SECS}s"
both tcp1 "TCP 1 stream, Gbit/s ($rm_)" %.2f tcp1
on tcp1 "TCP 1 stream, Gbit/s" %.2f tcp1
both tcp1_capture "TCP 1 stream, Gbit/s, while epair capture writes the pair's frames to /dev/null" %.2f tcp1 1 capture
vsfwd tcp1 "TCP 1 stream, Gbit/s" %.2f tcp1
both tcp4 "TCP 4 streams (-P 4), Gbit/s ($rm_)" %.2f tcp4
vsfwd tcp4 "TCP 4 streams, Gbit/s" %.2f tcp4
both retr1 "TCP retransmits, 1 stream (median)" %d retr1 0
both retr4 "TCP retransmits, 4 streams (median)" %d retr4 0
for nsend in $UDP_SENDERS; do
	th="$nsend sending thread"; [ "$nsend" -gt 1 ] && th+=s
	both "udp_rx$nsend" "UDP ${UDP_SIZE} B delivered, kpps ($th; $rm_)" %.0f "udp_rx_k$nsend"
	vsfwd "udp_rx$nsend" "UDP ${UDP_SIZE} B delivered, kpps ($th)" %.0f "udp_rx_k$nsend"
	both "udp_tx$nsend" "UDP ${UDP_SIZE} B sent, kpps ($th, sendmmsg x64)" %.0f "udp_tx_k$nsend" 0
	both "udp_loss$nsend" "UDP loss, % ($th; 1 − received/sent)" %.2f "udp_loss$nsend" 0
	[ "$nsend" = "$udp_first" ] && on "udp_rx$nsend" "UDP ${UDP_SIZE} B delivered, kpps ($th)" %.0f "udp_rx_k$nsend"
done
both ping_avg "ping RTT avg, ms ($COUNT at 10 ms)" %.3f ping_avg
both ping_p99 "ping RTT p99, ms" %.3f ping_p99
vsfwd ping_avg "ping RTT avg, ms" %.3f ping_avg
on ping_avg "ping RTT avg, ms" %.3f ping_avg
both rr_rate "TCP 1-byte request/response, transactions/s ($rm_)" %.0f rr_rate
both rr_p50 "TCP request/response p50, µs" %.1f rr_p50
both rr_p99 "TCP request/response p99, µs" %.1f rr_p99
vsfwd rr_rate "TCP 1-byte request/response, transactions/s" %.0f rr_rate
vsfwd rr_p50 "TCP request/response p50, µs" %.1f rr_p50
vsfwd sys_frame "system calls per frame carried, TCP 1 stream (strace -c, all threads)" %.2f sys_frame
vsfwd sys_rr "system calls per TCP request/response transaction (strace -c)" %.2f sys_rr
vsfwd csw_rr "context switches (wake-ups) per request/response transaction" %.2f csw_rr
for mode in seq par; do
	if [ $mode = seq ]; then what="$CNI_N pods one at a time"; else what="$CNI_N pods, $CNI_PAR at once"; fi
	[ -n "$(cni epair $mode add_p50_ms)" ] || continue
	for op in add del; do
		for qq in p50 p99; do
			row "cni_${mode}_${op}_$qq" "CNI ${op^^} $qq, ms ($what; reference: ptp)" \
				"$(cni ptp $mode "${op}_${qq}_ms")" "$(cni epair $mode "${op}_${qq}_ms")" 1
		done
	done
done
kib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
row rss0 "daemon RSS with 0 pairs, MiB" — "$(kib "$rss0")" 0
row rssN "daemon RSS with $PAIRS idle pairs, MiB" — "$(kib "$rss1")" 0
row rss_pair "daemon RSS per pair, KiB ((RSS $PAIRS − RSS 0) / $PAIRS)" — "$(awk -v a="$rss0" -v b="$rss1" -v n="$PAIRS" 'BEGIN {printf "%.1f", (b - a) / n}')" 0
row rss_del "daemon RSS after deleting them all, MiB" — "$(kib "$rss2")" 0
res=$(awk -v hz="$hz" -v s="$IDLE_SECS" 'BEGIN {printf "%.2g", 100 / hz / s}') # one clock tick
row idle_cpu "daemon CPU idle with $PAIRS pairs, % of one core (over ${IDLE_SECS}s; one tick = $res)" — "$idle_cpu" 0
row add_all "add $PAIRS pairs, s (CLI, $SCALE_PAR at once)" — "$add_s" 0
row del_all "delete $PAIRS pairs, s (CLI, $SCALE_PAR at once)" — "$del_s" 0
for n in $RESTART_PAIRS; do
	sampled=$(grep -m1 " pairs=$n median" "$work/restart.txt" | sed -n 's/.*sampled=\([0-9]*\).*/\1/p')
	row "restart_gap$n" "restart after kill -9 with $n pairs: traffic on unit 0, ms after the new process starts (median of $RESTART_REPS)" — "$(restart "$n" gap_ms)" 0
	row "restart_all$n" "restart with $n pairs: traffic on all $sampled probed (the last unit too), ms after it starts" — "$(restart "$n" all_ms)" 0
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b + 0 == 0 || a == "-" || b == "-") print "—"; else printf "%.2fx", a / b}'; }
table() { # rows file -> markdown
	echo "| metric (MTU 1500) | reference: veth (ptp for CNI; the forwarder where the row says) | epair | epair/ref |"
	echo "|---|---|---|---|"
	while IFS=$'\t' read -r key label ref ep r; do
		if [ "$r" = 1 ]; then x=$(ratio "$ep" "$ref"); else x="—"; fi
		echo "| $label | $ref | $ep | $x |"
	done <"$1"
}
table "$rows" >"$work/table.md"

# ---- BENCHMARKS.md: this run, what changed, the run before
t_end=$(date +%s)
runtime_s=$((t_end - t_start))
model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
{
	echo "<!-- run:begin -->"
	echo "## Latest run"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- machine: $(nproc) CPUs, ${model:-unknown CPU}, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
	echo "- $(go version | sed 's/^go version //'), epair $(git describe --always --dirty 2>/dev/null || echo '?')"
	echo "- load average when the run started: $load0; when it ended: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine shows here)"
	echo "- knobs: SECS=$SECS REPS=$REPS COUNT=$COUNT PAIRS=$PAIRS IDLE_SECS=$IDLE_SECS CNI_N=$CNI_N CNI_PAR=$CNI_PAR UDP_SIZE=$UDP_SIZE UDP_SENDERS='$UDP_SENDERS' RESTART_PAIRS='$RESTART_PAIRS' RESTART_REPS=$RESTART_REPS RESTART_SAMPLE=$RESTART_SAMPLE EPAIR_DAEMON_ARGS='$EPAIR_DAEMON_ARGS'"
	echo "- the run took $((runtime_s / 60)) min $((runtime_s % 60)) s"
	echo
	cat "$work/table.md"
	echo
	echo "<details><summary>every measurement</summary>"
	echo
	echo '```'
	cat "$raw"
	echo "bench daemon RSS after the traffic: ${bench_rss} KiB"
	echo '```'
	echo
	echo "</details>"
	echo
	echo "<details><summary>Go benchmarks (go test -bench . -benchmem -benchtime $GOBENCH_TIME ./pkg/epair)</summary>"
	echo
	echo '```'
	grep -E '^(Benchmark|cpu:|goos|goarch)' "$work/gobench.txt"
	echo '```'
	echo
	echo "</details>"
	echo
	echo "<!-- rows"
	cat "$rows"
	echo "-->"
	echo "<!-- run:end -->"
} >"$work/run.md"

prev=$work/prev.md
: >"$prev"
[ -f "$BENCH_OUT" ] && awk '/^<!-- run:begin -->$/ {f = 1} f {print} /^<!-- run:end -->$/ {exit}' "$BENCH_OUT" >"$prev"
awk '/^<!-- rows$/ {f = 1; next} /^-->$/ {f = 0} f' "$prev" >"$work/prev-rows.tsv"
{
	cat <<'HEAD'
# epair benchmarks

Written by `make bench` ([hack/bench/run.sh](hack/bench/run.sh)); each run
replaces "Latest run", and the run before moves under "Previous run". Two
network namespaces are joined by a kernel veth pair and, in the same run, by
an epair pair through the daemon (MTU 1500, static neighbours); veth and
epair are measured turn about, so a busy machine hurts both alike. Rows
that say "reference forwarder, epair" compare epair with the simplest
userspace cable ([hack/bench/forwarder](hack/bench/forwarder/main.go): two
TAPs with the virtio-net header, one goroutine per direction, blocking read
then write), measured in the same rounds. TCP is
iperf3 (`-P 4` for 4 streams); UDP is `hack/bench/netbench udp-blast`
(sendmmsg, 64 datagrams a call) into `udp-sink` (recvmmsg, 64 MiB receive
buffer), loss = 1 − received/sent, with 1 and 2 sending threads. On veth
the sending thread also runs the receiver's stack (veth hands a packet over
in the sender's softirq), so one thread there is bound by its own core; on
epair the sent rate, far above the delivered one, with the difference in the
a end TAP's tx_dropped (see "every measurement"), shows that the sender is
not what limits epair. Request/response is one TCP connection
(TCP_NODELAY) sending 1 byte and waiting for 1 byte back. CNI is
`TestADDDELLatency` in `e2e/cni` (libcni, host-local IPAM, each pod its own
namespace; all pods added, then all deleted). Scale is a fresh daemon with
idle pairs, all a ends in one namespace and all b ends in another: RSS from
`/proc/PID/status`, CPU from utime+stime in `/proc/PID/stat`. Restart is
[hack/bench/restart.sh](hack/bench/restart.sh): as on a node, each a end in
a namespace of its own and the b ends in the daemon's; kill -9, then a new
daemon, with a ping every 10 ms on a sample of pairs (unit 0, the last
unit, evenly between), timed from just before the new process is executed.

HEAD
	cat "$work/run.md"
	echo
	echo "## What changed since the last run"
	echo
	if [ -s "$work/prev-rows.tsv" ]; then
		echo "| metric | veth/ptp before → now | epair before → now | epair change | epair/ref before → now |"
		echo "|---|---|---|---|---|"
		while IFS=$'\t' read -r key label ref ep r; do
			IFS=$'\t' read -r _ _ pref pep _ < <(awk -F'\t' -v k="$key" '$1 == k' "$work/prev-rows.tsv") || continue
			ch=$(awk -v a="$pep" -v b="$ep" 'BEGIN {if (a + 0 == 0 || a == "-" || b == "-") print "—"; else printf "%+.1f%%", 100 * (b - a) / a}')
			if [ "$r" = 1 ]; then rr="$(ratio "$pep" "$pref") → $(ratio "$ep" "$ref")"; else rr="—"; fi
			echo "| $label | $pref → $ref | $pep → $ep | $ch | $rr |"
		done <"$rows"
		echo
		echo "### Previous run"
		echo
		sed -e '/^<!-- run:begin -->$/d' -e '/^<!-- run:end -->$/d' -e '/^## Latest run$/d' \
			-e 's/^<!-- rows$/<!-- previous rows/' "$prev"
	else
		echo "Nothing to compare: no earlier run in $(basename "$BENCH_OUT")."
	fi
} >"$work/out.md"
mkdir -p "$(dirname "$BENCH_OUT")"
cp "$work/out.md" "$BENCH_OUT"

echo
cat "$work/table.md"
echo
log "done in $((runtime_s / 60)) min $((runtime_s % 60)) s; written to $BENCH_OUT"

# shellcheck shell=bash
# Shared by the bash end-to-end scripts (e2e/containerd/up.sh and down.sh,
# e2e/kubelet/run.sh), which both run a private containerd with epair as its
# CNI plugin inside a private network namespace: what they do the same way.
# Sourced, not run.
#
# The suite sets, before sourcing: ROOT (the repository), SUITE (its name for
# messages, e2e-containerd or e2e-kubelet); before using the helpers: NSPATH
# (the node's network namespace), CRI_TIMEOUT (seconds per crictl call), and
# defines show_logs (its own logs, once, on a failure).
# This file sets the defaults both share (EPAIR, CNI_PLUGINS, TOOLS,
# CRICTL_VERSION, the two image names) and the state (START, T, LOGS_SHOWN,
# FAILED_CHECK, RUN_CONTAINERD_EXISTED) that the helpers and the suite's
# cleanup read.

EPAIR=${EPAIR_BIN:-$ROOT/bin/epair}
# shellcheck disable=SC2034 # used by the suites
CNI_PLUGINS=${EPAIR_CNI_PLUGINS:-$ROOT/bin/cni}
CRICTL_VERSION=v1.34.0 # builds with Go 1.26; talks CRI v1 to containerd 1.6
TOOLS=${EPAIR_E2E_TOOLS:-$ROOT/bin/tools}
PAUSE_IMAGE=localhost/epair-e2e/pause:v1
TEST_IMAGE=localhost/epair-e2e/busybox:v1

START=$(date +%s%N)
# T: the temp dir holding everything of the run ('' until made).
# shellcheck disable=SC2034 # LOGS_SHOWN: the suites' show_logs
T='' LOGS_SHOWN='' FAILED_CHECK='' RUN_CONTAINERD_EXISTED=1

log() { printf '[%6.1fs] %s\n' "$(( ($(date +%s%N) - START) / 1000000 ))e-3" "$*"; }
die() { echo "$SUITE: $*" >&2; exit 1; }

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

# crictl, ctr and the epair CLI, on this run's sockets.
cri() { timeout --foreground "$CRI_TIMEOUT" nsenter --net="$NSPATH" "$TOOLS/crictl-$CRICTL_VERSION/crictl" --config "$T/crictl.yaml" "$@"; }
ctr_() { timeout --foreground 120 ctr --address "$T/containerd.sock" -n k8s.io "$@"; }
ep() { "$EPAIR" "$@" --socket "$T/epair.sock"; }
# has ERE: stdin matches; reads all of it first (grep -q would quit early
# and, with pipefail, a writer killed by SIGPIPE would fail the pipeline).
has() { local in; in=$(cat); grep -qE -- "$1" <<<"$in"; }

# retry SECONDS CMD...: runs CMD every 0.5 s until it succeeds (its output
# is kept only from the last attempt).
retry() {
	local end=$(( $(date +%s) + $1 )) out
	shift
	while :; do
		out=$("$@" 2>&1) && { printf '%s\n' "$out"; return 0; }
		[ "$(date +%s)" -lt "$end" ] || { printf '%s\n' "$out"; return 1; }
		sleep 0.5
	done
}

# stop_pid PID [SECONDS]: TERM, then KILL after SECONDS (default 10); reaps it.
stop_pid() {
	local pid=$1 i
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null
		for ((i = 0; i < ${2:-10} * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
}

# shaped_iperf_verdict IPERF3-JSON RATE BURST: the rate of an iperf3 -J
# client's run from a pod shaped at RATE bits/s with a bucket of BURST bits,
# which starts full: the first BURST bits go unshaped (containerd passes
# math.MaxUint32 bits, about 512 MiB, for the annotations). The rate is the
# mean of the one-second intervals that start at least 1 s after the first
# one under 3 times RATE (sender-side intervals are uneven while the socket
# buffer fills, the mean is not); it must be within 25 % of RATE, over at
# least 3 intervals. Prints the intervals and the mean.
shaped_iperf_verdict() {
	local out
	out=$(jq -r --argjson burst "$3" --argjson r "$2" '
		[.intervals[].sum] as $iv
		| ([$iv[] | select(.bits_per_second < 3 * $r) | .start] | min // 1e9) as $t0
		| [$iv[] | select(.start >= $t0 + 1) | .bits_per_second] as $s
		| "intervals Mbit/s: \([$iv[] | .bits_per_second / 1e6 | floor] | join(" ")) (retransmits \([$iv[] | .retransmits // 0] | join(" "))); \($iv[0].bytes / 1048576 | floor) MiB in the first second (burst \($burst / 8 / 1048576 | floor) MiB); shaped from \($t0) s; shaped mean over \($s | length) intervals: \(if ($s | length) > 0 then ($s | add / length / 1e4 | floor / 100) else "n/a" end) Mbit/s"
		+ (if ($s | length) >= 3 and (($s | add / length) - $r | fabs) <= 0.25 * $r then "" else " FAIL" end)' "$1")
	echo "$out"
	case $out in *FAIL) return 1 ;; esac
}

# ---------------------------------------------------------------- cleanup
# Pieces of the suites' EXIT trap, which runs them with set +e. Each removes
# only what this run made.

# cleanup_begin RC: why the suite stops (unless it passed, or failed in a
# check, which said so), and the logs unless it was a Ctrl-C.
cleanup_begin() {
	local rc=$1
	[ "$rc" -ne 0 ] || return 0
	if [ "$rc" -eq 130 ]; then
		echo "$SUITE: interrupted" >&2
	elif [ -z "$FAILED_CHECK" ]; then
		echo "$SUITE: failed (exit $rc) outside a check" >&2
	fi
	[ "$rc" -eq 130 ] || show_logs
}

# cleanup_end RC: the verdict, then exits with RC.
cleanup_end() {
	if [ "$1" -eq 0 ]; then
		log "PASS (everything cleaned up)"
	else
		echo "$SUITE: FAILED${FAILED_CHECK:+ check $FAILED_CHECK}" >&2
	fi
	exit "$1"
}

# remove_cri_pods [CRICTL-PODS-FILTER...]: every pod sandbox containerd
# still has (or those the `crictl pods` filter selects), stopped and removed
# through the CRI (which runs CNI DEL); their netns paths go to
# $T/netns-paths.
remove_cri_pods() {
	local pods p
	for _ in 1 2 3; do
		pods=$(cri pods -q "$@" 2>/dev/null)
		[ -n "$pods" ] || break
		for p in $pods; do
			cri inspectp -o json "$p" 2>/dev/null | jq -r '.info.runtimeSpec.linux.namespaces[]? | select(.type == "network") | .path' >>"$T/netns-paths"
			cri stopp "$p" >/dev/null 2>&1
			cri rmp -f "$p" >/dev/null 2>&1
		done
	done
}

# Shims of this containerd (identified by its socket), killed; their pod ids
# go to $T/pod-ids.
kill_leftover_shims() {
	local d pid
	for d in /proc/[0-9]*; do
		[ -r "$d/cmdline" ] || continue
		if tr '\0' ' ' <"$d/cmdline" 2>/dev/null | has "^/usr/bin/containerd-shim-runc-v2 .*-address $T/containerd.sock"; then
			pid=${d#/proc/}
			echo "cleanup: killing leftover shim $pid" >&2
			kill -KILL "$pid" 2>/dev/null
			tr '\0' '\n' <"$d/cmdline" | sed -n '/^-id$/{n;p}' >>"$T/pod-ids"
		fi
	done
}

# kill_cgroup_procs CGROUP: anything left in the pods' cgroups (under the
# suite's own cgroup parent, in the pids hierarchy).
kill_cgroup_procs() {
	local pid
	find /sys/fs/cgroup/pids"$1" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r pid; do
		kill -KILL "$pid" 2>/dev/null
	done
}

# The daemon's pairs, deleted through it; their a-end netns go to
# $T/netns-paths. Call while the daemon runs.
delete_pairs() {
	local u
	ep pair list 2>/dev/null | jq -r '.[].a.netns // empty' >>"$T/netns-paths"
	for u in $(ep pair list 2>/dev/null | jq -r '.[].unit' 2>/dev/null); do ep pair del "$u" >/dev/null 2>&1; done
}

# remove_netns ADDR-ERE: the pod network namespaces containerd made and did
# not remove ($T/netns-paths), then any other cni-* netns made during the
# run that holds an IPv4 address matching ADDR-ERE (one of our subnets).
remove_netns() {
	local p
	if [ -f "$T/netns-paths" ]; then
		sort -u "$T/netns-paths" | while read -r p; do
			[ -e "$p" ] || continue
			umount "$p" 2>/dev/null || umount -l "$p"
			rm -f "$p"
		done
	fi
	for p in $(find /var/run/netns -maxdepth 1 -name 'cni-*' 2>/dev/null | sort | comm -13 "$T/netns-before" -); do
		grep -qxF "$p" "$T/netns-paths" && continue
		if nsenter --net="$p" ip -4 -o addr 2>/dev/null | has "inet $1"; then
			echo "cleanup: removing leftover pod netns $p" >&2
			umount "$p" 2>/dev/null || umount -l "$p"
			rm -f "$p"
		fi
	done
}

# Shim sockets (/run/containerd/s/sha256(address/namespace/id)) that a killed
# shim, or a RunPodSandbox cut short, leaves: for the pod ids on stdin.
remove_shim_sockets() {
	local id
	while read -r id; do
		rm -f "/run/containerd/s/$(printf '%s' "$T/containerd.sock/k8s.io/$id" | sha256sum | cut -c1-64)"
	done
}

# Mounts under the temp dir (containerd's overlay rootfs and shm, kubelet's
# pod volumes), deepest first.
unmount_all_under_t() {
	local m
	grep -F " $T/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m"
	done
}

# remove_cgroups CGROUP: the suite's cgroup parent, in every hierarchy.
remove_cgroups() {
	local c
	for c in /sys/fs/cgroup/*"$1"; do
		[ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
	done
}

# ---------------------------------------------------------------- setup

# install_tools APT-PACKAGE...: the missing apt packages, and crictl
# (built with go install into $TOOLS, once).
install_tools() {
	local p missing=()
	for p in "$@"; do
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
}

# Baselines of what lives outside the temp dir (just made), to compare with
# at the end; and the lists the cleanup appends to.
record_baselines() {
	touch "$T/netns-paths" "$T/pod-ids"
	# shellcheck disable=SC2034 # read by the suites' cleanup
	[ -d /run/containerd ] && RUN_CONTAINERD_EXISTED=1 || RUN_CONTAINERD_EXISTED=
	find /var/run/netns -maxdepth 1 -name 'cni-*' 2>/dev/null | sort >"$T/netns-before" || true
	ip -o link | awk -F': ' '{print $2}' | sed 's/@.*//' | grep epair | sort >"$T/links-before" || true
}

# build_images [ENTRY...]: $T/img/pause.tar ($PAUSE_IMAGE) and
# $T/img/busybox.tar ($TEST_IMAGE: busybox-static with every applet linked,
# plus the hack/ociimage ENTRYs given), built locally (no registry).
build_images() {
	local a entries
	log "building images"
	(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$T/img/pause" ./e2e/containerd/pause &&
		go build -o "$T/img/ociimage" ./hack/ociimage)
	"$T/img/ociimage" -name "$PAUSE_IMAGE" -o "$T/img/pause.tar" -entrypoint /pause \
		"file:$T/img/pause:/pause" dir:/dev:755 dir:/proc:755 dir:/sys:755 dir:/etc:755 >/dev/null
	entries=(file:/bin/busybox:/bin/busybox dir:/tmp:1777 dir:/dev:755 dir:/proc:755 dir:/sys:755 dir:/etc:755 dir:/root:700 "$@")
	for a in $(/bin/busybox --list); do
		[ "$a" = busybox ] || entries+=("link:/bin/$a:/bin/busybox")
	done
	"$T/img/ociimage" -name "$TEST_IMAGE" -o "$T/img/busybox.tar" -cmd "sleep 3600" "${entries[@]}" >/dev/null
}

# epair_conflist NETWORK SUBNET: the routed conflist of the repository, on
# this run's socket, with NETWORK's name, SUBNET and IPAM directory. Its
# cniVersion is 1.0.0 (cniVersions offers 1.1.0 to newer runtimes):
# containerd 1.6's libcni rejects a 1.1.0 result.
epair_conflist() {
	jq --arg net "$1" --arg sock "$T/epair.sock" --arg subnet "$2" --arg dd "$T/ipam" '
		.cniVersion = "1.0.0"
		| .name = $net
		| .plugins[0].socket = $sock
		| .plugins[0].ipam.ranges = [[{subnet: $subnet}]]
		| .plugins[0].ipam.dataDir = $dd' "$ROOT/conf/10-epair-routed.conflist"
}

# $T/containerd.toml (root, state, sockets and CNI dirs all under $T; the
# CRI's sandbox image is $PAUSE_IMAGE) and $T/crictl.yaml for it.
write_containerd_config() {
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
}

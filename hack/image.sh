#!/usr/bin/env bash
# Builds the epair node-agent image as an OCI image-layout archive, without
# Docker or a registry (hack/ociimage), from binaries already built:
#
#   hack/image.sh [OUT.tar] [NAME]     (or: make image)
#
# OUT.tar defaults to bin/epair-image.tar, NAME to localhost/epair:latest.
# Inputs (make build cni-plugins): bin/epair (the lean build: CNI plugin +
# CLI), bin/kube/epair (-tags kubernetes: the agent), bin/cni/{host-local,
# loopback,portmap} (the reference plugins at hack/cni-plugins.sh's pin).
# Env EPAIR_BIN, EPAIR_KUBE_BIN, EPAIR_CNI_PLUGINS override them.
#
# The layout is the Dockerfile's (keep both in step):
#   /usr/local/bin/epair                 full build, the entrypoint
#   /opt/epair/cni/epair                 lean build, installed on the host
#   /opt/epair/cni/{host-local,loopback,portmap}
#   entrypoint ["/usr/local/bin/epair", "daemon", "--kubernetes"]
#
# Load it with `ctr -n k8s.io images import OUT.tar` on a node, or
# `kind load image-archive OUT.tar`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$ROOT/bin/epair-image.tar}
name=${2:-localhost/epair:latest}
lean=${EPAIR_BIN:-$ROOT/bin/epair}
full=${EPAIR_KUBE_BIN:-$ROOT/bin/kube/epair}
cni=${EPAIR_CNI_PLUGINS:-$ROOT/bin/cni}

for f in "$lean" "$full" "$cni/host-local" "$cni/loopback" "$cni/portmap"; do
	[ -x "$f" ] || { echo "image: $f missing: run make build cni-plugins" >&2; exit 1; }
done
# What each binary was built with (go version -m): both static (the image
# has no libc), the agent with client-go, the lean build without it — it is
# installed on the host, where kubelet execs it per pod, and client-go's
# package init would cost every exec ~8 ms.
lean_info=$(go version -m "$lean") || { echo "image: $lean is not a Go binary" >&2; exit 1; }
full_info=$(go version -m "$full") || { echo "image: $full is not a Go binary" >&2; exit 1; }
for f in lean full; do
	v=${f}_info
	grep -qE '^\s+build\s+CGO_ENABLED=0$' <<<"${!v}" ||
		{ echo "image: the $f build was not built with CGO_ENABLED=0" >&2; exit 1; }
done
grep -qE '^\s+dep\s+k8s.io/client-go\s' <<<"$full_info" ||
	{ echo "image: $full has no Kubernetes support (built without -tags kubernetes? make build)" >&2; exit 1; }
if grep -qE '^\s+dep\s+k8s.io/client-go\s' <<<"$lean_info"; then
	echo "image: $lean links client-go: it is not the lean build" >&2
	exit 1
fi

version=$("$full" version 2>/dev/null | awk '{print $NF; exit}') || true
version=${version:-$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo dev)}

mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$ROOT" && go build -o "$tmp/ociimage" ./hack/ociimage)
"$tmp/ociimage" -name "$name" -o "$out" \
	-entrypoint "/usr/local/bin/epair daemon --kubernetes" \
	-env PATH=/usr/local/bin \
	-label "org.opencontainers.image.title=epair" \
	-label "org.opencontainers.image.description=epair CNI node agent (daemon, datapath, CNI installer)" \
	-label "org.opencontainers.image.version=$version" \
	-label "org.opencontainers.image.source=https://github.com/epair-cni/epair" \
	"file:$full:/usr/local/bin/epair" \
	"file:$lean:/opt/epair/cni/epair" \
	"file:$cni/host-local:/opt/epair/cni/host-local" \
	"file:$cni/loopback:/opt/epair/cni/loopback" \
	"file:$cni/portmap:/opt/epair/cni/portmap" \
	dir:/tmp:1777

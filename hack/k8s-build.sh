#!/usr/bin/env bash
# Builds the Kubernetes binaries the kubelet e2e runs (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl) from
# the Go module proxy, through a wrapper module: k8s.io/kubernetes replaces
# its k8s.io/* staging modules with ./staging paths, so it cannot be
# `go install`ed; the wrapper points each of them at its published version.
# Binaries are cached per Kubernetes and Go version; prints the bin dir.
set -euo pipefail
K8S_VERSION=${K8S_VERSION:-v1.34.4}
gover=$(go env GOVERSION)
cache=${EPAIR_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/epair/k8s}/$K8S_VERSION-$gover
bins=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

have=1
for b in "${bins[@]}"; do [ -x "$cache/bin/$b" ] || have=0; done
if [ "$have" = 1 ]; then echo "$cache/bin"; exit 0; fi

staging=v0.${K8S_VERSION#v1.}
mod=$cache/wrapper
mkdir -p "$mod" "$cache/bin"
gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",*$/\1/p')
{
	echo "module epair.local/k8s-build"
	echo
	echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
	echo
	echo "require k8s.io/kubernetes $K8S_VERSION"
	echo
	sed -n 's#^\s*\(k8s.io/[a-z0-9.-]*\) => ./staging/.*#replace \1 => \1 '"$staging"'#p' "$gomod"
} >"$mod/go.mod"
cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools
GO
cd "$mod"
for b in "${bins[@]}"; do
	go get "k8s.io/kubernetes/cmd/$b@$K8S_VERSION" >&2
done
ld="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
minor=$(echo "$K8S_VERSION" | cut -d. -f2)
ld="$ld -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
for b in "${bins[@]}"; do
	echo "k8s-build: $b" >&2
	CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$cache/bin/$b" "k8s.io/kubernetes/cmd/$b" >&2
done
echo "$cache/bin"

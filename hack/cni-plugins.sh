#!/usr/bin/env bash
# Installs the CNI reference plugins the e2e suites chain with epair into DIR
# (default bin/cni), each a binary named as its type, at one pinned version.
# A plugin already in DIR is skipped, so a second run costs nothing; remove
# DIR (or `make clean`) after changing the pin.
set -euo pipefail
CNI_PLUGINS_VERSION=v1.9.1
dir=${1:-bin/cni}
plugins=(ipam/host-local ipam/static ipam/dhcp meta/portmap meta/bandwidth meta/tuning meta/firewall main/ptp main/bridge main/loopback)

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
missing=()
for p in "${plugins[@]}"; do
	[ -x "$dir/${p##*/}" ] || missing+=("github.com/containernetworking/plugins/plugins/$p@$CNI_PLUGINS_VERSION")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "cni-plugins: ${plugins[*]##*/} present in $dir ($CNI_PLUGINS_VERSION)"
	exit 0
fi
# Outside the module, so go.mod is neither read nor changed.
cd /
for m in "${missing[@]}"; do
	CGO_ENABLED=0 GOBIN=$dir GOFLAGS=-trimpath go install "$m"
done
echo "cni-plugins: installed ${#missing[@]} plugin(s) into $dir ($CNI_PLUGINS_VERSION)"

#!/usr/bin/env bash
# Installs what epair's tests and demo use that a fresh Debian machine lacks.
# Runs every time (CI machines are new); apt-get is quick when all is there.
set -euo pipefail
# tcpdump reads captures (epair capture), dnsmasq serves DHCP to the dhcp IPAM
# test, prometheus (and its promtool) scrapes and checks the metrics, shellcheck
# lints the scripts, strace counts system calls for the bench's syscall budget.
pkgs=(iproute2 iputils-ping iperf3 ethtool util-linux gcc iptables nftables strace
	tcpdump dnsmasq-base prometheus shellcheck)
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: not root, not installing ${pkgs[*]}; privileged tests will skip" >&2
	exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
echo "install-deps: ${pkgs[*]} present"

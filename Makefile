# epair: a Kubernetes CNI plugin after FreeBSD's if_epair(4).
GO        ?= go
BIN       := bin/epair
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/epair-cni/epair/pkg/version.Version=$(VERSION)
# Privileged suites create namespaces and TAPs: one package at a time keeps
# their daemons and namespaces from crowding two cores.
TESTFLAGS ?= -count=1 -p 1 -timeout 20m

.PHONY: all build test unit deps demo bench bench-smoke profile e2e lint fuzz clean cni-plugins

all: build

# bin/epair is the lean build (the CNI plugin, execed per pod: no client-go);
# bin/kube/epair adds `epair daemon --kubernetes` (the image's entrypoint),
# stripped (-s -w: 75 -> 42 MB; Go profiles keep their names).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./plugins/epair
	CGO_ENABLED=0 $(GO) build -trimpath -tags kubernetes -ldflags '-s -w $(LDFLAGS)' -o bin/kube/epair ./plugins/epair

# Installs what the tests need on a fresh Debian machine (apt-get update first).
deps:
	hack/install-deps.sh

# The CNI reference plugins (host-local, portmap, ptp, ...) at a pinned
# version, which the CNI suite chains with epair.
cni-plugins:
	hack/cni-plugins.sh bin/cni

# The node-agent image (conf/kubernetes/epair.yaml) as an OCI archive,
# bin/epair-image.tar, built without Docker by hack/image.sh from bin/epair,
# bin/kube/epair and bin/cni (the Dockerfile builds the same image with
# Docker). Load it with `ctr -n k8s.io images import` or
# `kind load image-archive`.
IMAGE ?= localhost/epair:latest
.PHONY: image
image: build cni-plugins
	hack/image.sh bin/epair-image.tar $(IMAGE)

# The packages whose tests run under the race detector: all but the e2e
# suites, whose work is done by the daemons and plugins they exec (the race
# detector would only slow their namespaces and timeouts down). -race needs
# cgo (gcc, from make deps).
RACEPKGS := ./pkg/... ./internal/... ./plugins/... ./hack/...

# Unit tests (with -race), then the privileged suites (they skip, saying
# why, when not root).
test: build cni-plugins
	$(GO) vet ./...
	EPAIR_BIN=$(CURDIR)/$(BIN) EPAIR_CNI_PLUGINS=$(CURDIR)/bin/cni $(GO) test -race $(TESTFLAGS) $(RACEPKGS)
	EPAIR_BIN=$(CURDIR)/$(BIN) EPAIR_CNI_PLUGINS=$(CURDIR)/bin/cni $(GO) test $(TESTFLAGS) ./e2e/...

# Unit tests only, as any user, with the race detector.
unit:
	$(GO) test -race -count=1 ./pkg/... ./internal/...

# Each fuzz target for FUZZTIME (go test fuzzes one target at a time):
# frames, the daemon API's request decoding (once it exists on this branch:
# it runs only if go test lists it), the CNI config loader, the state file.
FUZZTIME ?= 20s
FUZZFLAGS ?= -run XXX -fuzztime $(FUZZTIME)
fuzz:
	$(GO) test ./pkg/epair $(FUZZFLAGS) -fuzz '^FuzzFrame$$'
	@list=$$($(GO) test -list '^FuzzDecodeCreate$$' ./pkg/daemon) || exit 1; \
	if echo "$$list" | grep -qx FuzzDecodeCreate; then \
		echo $(GO) test ./pkg/daemon $(FUZZFLAGS) -fuzz '^FuzzDecodeCreate$$'; \
		$(GO) test ./pkg/daemon $(FUZZFLAGS) -fuzz '^FuzzDecodeCreate$$'; \
	else \
		echo "fuzz: no FuzzDecodeCreate in ./pkg/daemon yet, skipped"; \
	fi
	$(GO) test ./pkg/cni $(FUZZFLAGS) -fuzz '^FuzzLoadConf$$'
	$(GO) test ./pkg/state $(FUZZFLAGS) -fuzz '^FuzzStateLoad$$'

# cnitool at the libcni version epair builds with: it calls plugins as
# containerd does, and is what operators use to try a CNI plugin by hand.
CNI_VERSION = $(shell $(GO) list -m -f '{{.Version}}' github.com/containernetworking/cni)
bin/tools/cnitool: go.mod
	GOBIN=$(CURDIR)/bin/tools $(GO) install github.com/containernetworking/cni/cnitool@$(CNI_VERSION)

demo: deps build cni-plugins bin/tools/cnitool
	hack/demo.sh $(BIN) bin/cni bin/tools/cnitool

# The benchmark (hack/bench/run.sh, as root): epair against a kernel veth
# pair in the same run (TCP 1 and 4 streams, UDP packet rate and loss, ping
# and request/response latency), CNI ADD/DEL latency against ptp, RSS and
# idle CPU of 1000 pairs, and the Go benchmarks of the queue core; prints a
# table and writes BENCHMARKS.md. About 10 minutes on 2 cores (with the restart rows). Knobs: SECS,
# REPS, PAIRS, IDLE_SECS, CNI_N, CNI_PAR, EPAIR_DAEMON_ARGS (see the script).
# Not root: the Go benchmarks only.
bench: deps build cni-plugins
	@if [ "$$(id -u)" -eq 0 ]; then \
		EPAIR_CNI_PLUGINS=$(CURDIR)/bin/cni hack/bench/run.sh $(BIN); \
	else \
		echo "bench: not root, only the Go benchmarks"; \
		$(GO) test -run XXX -bench . -benchmem ./pkg/epair; \
	fi

# Where the time goes under one load (hack/bench/profile.sh, root): perf
# over the whole machine and the daemon's Go CPU profile. MODE=tcp|tcp4|udp|rr.
profile: build
	hack/bench/profile.sh $(BIN)

# The whole benchmark with tiny knobs (well under a minute), so that CI keeps
# it working; it writes bin/BENCHMARKS-smoke.md, not BENCHMARKS.md.
bench-smoke: build cni-plugins
	SECS=1 REPS=1 COUNT=20 PAIRS=20 IDLE_SECS=2 SETTLE_SECS=1 CNI_N=5 CNI_PAR=4 UDP_SENDERS=1 GOBENCH_TIME=100x SYS_SECS=1 \
		BENCH_OUT=$(CURDIR)/bin/BENCHMARKS-smoke.md EPAIR_CNI_PLUGINS=$(CURDIR)/bin/cni hack/bench/run.sh $(BIN)

e2e: build cni-plugins
	EPAIR_BIN=$(CURDIR)/$(BIN) EPAIR_CNI_PLUGINS=$(CURDIR)/bin/cni $(GO) test $(TESTFLAGS) -v ./e2e/...

# containerd end-to-end: a private containerd (CRI) runs pods on epair,
# driven by crictl; installs containerd, runc, ... from apt and builds crictl
# (e2e/containerd/up.sh), then the checks are Go subtests. The test skips
# without EPAIR_E2E_CONTAINERD=1, so that `make test` does not start it.
.PHONY: e2e-containerd
e2e-containerd: build cni-plugins
	EPAIR_E2E_CONTAINERD=1 EPAIR_BIN=$(CURDIR)/$(BIN) EPAIR_CNI_PLUGINS=$(CURDIR)/bin/cni \
		$(GO) test -v -count=1 -timeout 15m ./e2e/containerd/

# kubelet end-to-end: a single-node Kubernetes (etcd, apiserver, controller-
# manager, scheduler, containerd, kubelet, kube-proxy) in a private netns runs
# a Deployment and a Service on epair; builds the Kubernetes binaries once
# (hack/k8s-build.sh, cached per Kubernetes and Go version).
.PHONY: e2e-kubelet
e2e-kubelet: build cni-plugins
	EPAIR_BIN=$(CURDIR)/$(BIN) EPAIR_KUBE_BIN=$(CURDIR)/bin/kube/epair EPAIR_CNI_PLUGINS=$(CURDIR)/bin/cni e2e/kubelet/run.sh

# Every shell script: the *.sh files, and any other tracked file that starts
# with a sh/bash shebang (.ci/run). -x follows `source`; e2e/lib.sh is
# checked on its own too (its "shell=bash" directive).
SHELL_SCRIPTS = $(shell git ls-files '*.sh'; git ls-files | grep -v '\.sh$$' | while read -r f; do [ -f "$$f" ] && head -n1 "$$f" | grep -qE '^\#!.*[/ ](ba)?sh' && echo "$$f"; done)

lint:
	shellcheck -x $(SHELL_SCRIPTS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags kubernetes ./...

clean:
	rm -rf bin

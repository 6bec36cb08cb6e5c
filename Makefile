# epair: a Kubernetes CNI plugin after FreeBSD's if_epair(4).
GO        ?= go
BIN       := bin/epair
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/epair-cni/epair/pkg/daemon.Version=$(VERSION)
# Privileged suites create namespaces and TAPs: one package at a time keeps
# their daemons and namespaces from crowding two cores.
TESTFLAGS ?= -count=1 -p 1 -timeout 20m

.PHONY: all build test unit deps demo bench e2e lint fuzz clean cni-plugins

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./plugins/epair

# Installs what the tests need on a fresh Debian machine (apt-get update first).
deps:
	hack/install-deps.sh

# The CNI reference plugins (host-local, portmap, ptp, ...) at a pinned
# version, which the CNI suite chains with epair.
cni-plugins:
	hack/cni-plugins.sh bin/cni

# Unit tests, then the privileged suites (they skip, saying why, when not root).
test: build cni-plugins
	$(GO) vet ./...
	EPAIR_BIN=$(CURDIR)/$(BIN) EPAIR_CNI_PLUGINS=$(CURDIR)/bin/cni $(GO) test $(TESTFLAGS) ./...

# Unit tests only, as any user.
unit:
	$(GO) test -count=1 ./pkg/...

fuzz:
	$(GO) test ./pkg/epair -run XXX -fuzz FuzzFrame -fuzztime 30s

demo: deps build
	hack/demo.sh $(BIN)

# Go benchmarks of the queue core, then (as root) epair against a kernel
# veth pair measured in the same run.
bench: build
	$(GO) test -run XXX -bench . -benchmem ./pkg/epair
	@if [ "$$(id -u)" -eq 0 ]; then hack/bench/pair-vs-veth.sh $(BIN); else echo "bench: not root, skipping the veth comparison"; fi

e2e: build cni-plugins
	EPAIR_BIN=$(CURDIR)/$(BIN) EPAIR_CNI_PLUGINS=$(CURDIR)/bin/cni $(GO) test $(TESTFLAGS) -v ./e2e/...

# containerd end-to-end: a private containerd (CRI) runs pods on epair,
# driven by crictl; installs containerd, runc, ... from apt and builds crictl.
.PHONY: e2e-containerd
e2e-containerd: build cni-plugins
	EPAIR_BIN=$(CURDIR)/$(BIN) EPAIR_CNI_PLUGINS=$(CURDIR)/bin/cni e2e/containerd/run.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin

# syntax=docker/dockerfile:1
# The epair node-agent image, the same layout hack/image.sh builds without
# Docker (keep both in step; conf/kubernetes/epair.yaml runs it):
#
#   /usr/local/bin/epair                         the full build (-tags kubernetes), the entrypoint
#   /opt/epair/cni/epair                         the lean build: CNI plugin + CLI, installed on the host
#   /opt/epair/cni/{host-local,loopback,portmap} CNI reference plugins, installed when missing
#   /tmp                                         1777
#
#   docker build -t localhost/epair:latest --build-arg VERSION=$(git describe --always --dirty) .
#
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 ...
# (the build stage runs on the builder's platform and cross-compiles).

# go.mod's go line (the official images set GOTOOLCHAIN=local).
ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
# The reference plugins' pin: hack/cni-plugins.sh's CNI_PLUGINS_VERSION.
ARG CNI_PLUGINS_VERSION=v1.9.1
ENV CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOFLAGS=-trimpath
WORKDIR /src
# Modules first: a change in the sources reuses this layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# The final image's tree is assembled under /rootfs. The lean build must
# not link client-go (kubelet execs it per pod; client-go's init costs ~8 ms
# an exec); only the agent's build has -tags kubernetes.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	set -eux; \
	ld="-X github.com/epair-cni/epair/pkg/version.Version=${VERSION}"; \
	mkdir -p /rootfs/opt/epair/cni /rootfs/usr/local/bin; \
	go build -ldflags "$ld" -o /rootfs/opt/epair/cni/epair ./plugins/epair; \
	go build -tags kubernetes -ldflags "-s -w $ld" -o /rootfs/usr/local/bin/epair ./plugins/epair
# Outside the module, so its go.mod is not involved. A cross-compiling
# `go install` puts binaries in $GOPATH/bin/${GOOS}_${GOARCH}.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	set -eux; \
	cd /; \
	for p in ipam/host-local main/loopback meta/portmap; do \
		go install "github.com/containernetworking/plugins/plugins/$p@${CNI_PLUGINS_VERSION}"; \
	done; \
	d="$(go env GOPATH)/bin"; \
	if [ -d "$d/${GOOS}_${GOARCH}" ]; then d="$d/${GOOS}_${GOARCH}"; fi; \
	cp "$d/host-local" "$d/loopback" "$d/portmap" /rootfs/opt/epair/cni/; \
	mkdir -m 1777 /rootfs/tmp

FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="epair" \
	org.opencontainers.image.description="epair CNI node agent (daemon, datapath, CNI installer)" \
	org.opencontainers.image.version="${VERSION}" \
	org.opencontainers.image.source="https://github.com/epair-cni/epair"
ENV PATH=/usr/local/bin
# The directories themselves come with their modes (/tmp 1777).
COPY --from=build /rootfs/ /
ENTRYPOINT ["/usr/local/bin/epair", "daemon", "--kubernetes"]

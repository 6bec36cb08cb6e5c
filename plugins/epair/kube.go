//go:build kubernetes

package main

import (
	"github.com/epair-cni/epair/pkg/cli"
	"github.com/epair-cni/epair/pkg/kube"
)

// This file is only in the full build (-tags kubernetes): it links client-go,
// which the lean CNI binary must not carry.
func init() {
	cli.Kubernetes = kube.Run
}

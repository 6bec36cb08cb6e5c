// Command epair is the epair CNI plugin when CNI_COMMAND is set, and
// otherwise a CLI: `epair daemon` runs the node agent, `epair pair ...` and
// `epair stats` talk to it.
package main

import (
	"os"

	"github.com/epair-cni/epair/pkg/cli"
	"github.com/epair-cni/epair/pkg/cni"
	"github.com/epair-cni/epair/pkg/version"
)

func main() {
	if os.Getenv("CNI_COMMAND") != "" {
		cni.Main("epair CNI plugin " + version.Version)
		return
	}
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}

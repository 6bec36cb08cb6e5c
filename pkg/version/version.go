// Package version holds epair's version, one string for the daemon, the CLI
// and the CNI plugin. It imports nothing, so the plugin can name its version
// without linking the daemon.
package version

// Version is set at build time with
// -ldflags '-X github.com/epair-cni/epair/pkg/version.Version=...'.
var Version = "dev"

package kube

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
)

// PluginBinary is the binary that is always installed when it differs:
// it is epair itself, and must match the daemon it talks to.
const PluginBinary = "epair"

// InstallBinaries copies the CNI binaries of srcDir into dstDir: epair
// whenever its bytes differ, every other file only when dstDir lacks it
// (the node may have its own host-local or loopback, which are not ours to
// replace). Each copy is a temporary file and a rename, so the runtime never
// execs half a binary.
func InstallBinaries(srcDir, dstDir string) error {
	ents, err := os.ReadDir(srcDir)
	if err != nil {
		return fmt.Errorf("read install source: %w", err)
	}
	if err := os.MkdirAll(dstDir, 0o755); err != nil {
		return fmt.Errorf("create CNI bin dir: %w", err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		name := e.Name()
		dst := filepath.Join(dstDir, name)
		if name != PluginBinary {
			if _, err := os.Stat(dst); err == nil {
				continue
			}
		}
		data, err := os.ReadFile(filepath.Join(srcDir, name))
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, data) {
			continue
		}
		if _, err := WriteFileAtomic(dst, data, 0o755); err != nil {
			return fmt.Errorf("install %s: %w", name, err)
		}
		slog.Info("installed CNI binary", "path", dst)
	}
	return nil
}

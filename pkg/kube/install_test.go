package kube

import (
	"os"
	"path/filepath"
	"testing"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInstallBinaries(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "opt", "cni", "bin")
	writeFiles(t, src, map[string]string{"epair": "epair v2", "host-local": "ours", "loopback": "ours"})
	if err := os.Mkdir(filepath.Join(src, "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dst, map[string]string{"epair": "epair v1", "host-local": "the node's"})

	if err := InstallBinaries(src, dst); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"epair":      "epair v2",   // always replaced when different
		"host-local": "the node's", // present: left alone
		"loopback":   "ours",       // missing: installed
	} {
		b, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q %v, want %q", name, b, err, want)
		}
		if fi, _ := os.Stat(filepath.Join(dst, name)); name != "host-local" && fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %v, want 0755", name, fi.Mode())
		}
	}
	if _, err := os.Stat(filepath.Join(dst, "subdir")); err == nil {
		t.Error("a directory was installed")
	}
	// Unchanged: the second run keeps the very same file.
	before, _ := os.Stat(filepath.Join(dst, "epair"))
	if err := InstallBinaries(src, dst); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(filepath.Join(dst, "epair"))
	if !os.SameFile(before, after) {
		t.Error("an identical epair was replaced")
	}
}

func TestInstallBinariesMissingSource(t *testing.T) {
	if err := InstallBinaries(filepath.Join(t.TempDir(), "nope"), t.TempDir()); err == nil {
		t.Fatal("no error for a missing source dir")
	}
}

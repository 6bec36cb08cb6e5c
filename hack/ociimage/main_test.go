package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestArchive builds an archive, unpacks it and reads the layout back with
// the library: the name annotation containerd imports by, the config and
// the layer's entries with their modes, and the same bytes on a second run.
func TestArchive(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "tool")
	if err := os.WriteFile(src, []byte("#!/bin/sh\n"), 0o750); err != nil {
		t.Fatal(err)
	}
	o := options{
		name: "localhost/t/x:v1", out: filepath.Join(dir, "x.tar"),
		entrypoint: "/bin/tool run", env: []string{"A=1"},
		labels: map[string]string{"k": "v"},
		specs:  []string{"file:" + src + ":/bin/tool", "link:/usr/bin/tool:/bin/tool", "dir:/tmp:1777"},
	}
	if err := run(o); err != nil {
		t.Fatal(err)
	}
	first := readFile(t, o.out)
	if err := run(o); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, readFile(t, o.out)) {
		t.Error("two runs with the same inputs gave different archives")
	}

	lp := unpack(t, first)
	ii, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	idx, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].MediaType != types.OCIManifestSchema1 {
		t.Fatalf("index: %+v", idx.Manifests)
	}
	if got := idx.Manifests[0].Annotations["io.containerd.image.name"]; got != o.name {
		t.Errorf("io.containerd.image.name = %q, want %q", got, o.name)
	}
	img, err := lp.Image(idx.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if !slices.Equal(c.Entrypoint, []string{"/bin/tool", "run"}) || !slices.Equal(c.Env, o.env) || c.Labels["k"] != "v" || c.Cmd != nil {
		t.Errorf("config: %+v", c)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %v, %v", layers, err)
	}
	if mt, _ := layers[0].MediaType(); mt != types.OCIUncompressedLayer {
		t.Errorf("layer media type %s", mt)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	want := []string{"bin/ 755", "bin/tool 750", "tmp/ 1777", "usr/ 755", "usr/bin/ 755", "usr/bin/tool 777 -> /bin/tool"}
	if got := listTar(t, rc); !slices.Equal(got, want) {
		t.Errorf("layer entries\n got %q\nwant %q", got, want)
	}
}

// TestBadInput: a bad entry is an error and leaves an existing archive as
// it was.
func TestBadInput(t *testing.T) {
	out := filepath.Join(t.TempDir(), "x.tar")
	if err := os.WriteFile(out, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{"file:/nonexistent:/x", "dir:/tmp:9z", "pipe:/a:/b", "file:/x"} {
		if err := run(options{name: "x:1", out: out, specs: []string{spec}}); err == nil {
			t.Errorf("%q: no error", spec)
		}
	}
	if got := string(readFile(t, out)); got != "old" {
		t.Errorf("archive changed to %q", got)
	}
	if m, _ := filepath.Glob(out + ".tmp-*"); len(m) > 0 {
		t.Errorf("left %v", m)
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// unpack extracts an archive of regular files and directories.
func unpack(t *testing.T, archive []byte) layout.Path {
	t.Helper()
	dir := t.TempDir()
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return layout.Path(dir)
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, h.Name)
		if h.Typeflag == tar.TypeDir {
			err = os.MkdirAll(p, 0o755)
		} else {
			var b []byte
			if b, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(p, b, 0o644)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// listTar lists a tar as "name octal-mode[ -> target]".
func listTar(t *testing.T, r io.Reader) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		s := h.Name + " " + strconv.FormatInt(h.Mode, 8)
		if h.Linkname != "" {
			s += " -> " + h.Linkname
		}
		out = append(out, s)
	}
}

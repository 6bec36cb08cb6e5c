// Command ociimage writes a single-layer OCI image-layout tar archive that
// `ctr images import` accepts, without Docker or a registry:
//
//	ociimage -name localhost/x:v1 -o x.tar [-entrypoint /pause] [-cmd "sleep 1"] [-env K=V]... [-label K=V]... ENTRY...
//
// ENTRY is one of
//
//	file:SRC:DST     the file SRC (symlinks followed) at DST, with SRC's mode
//	link:DST:TARGET  a symlink DST -> TARGET
//	dir:DST:MODE     a directory (MODE in octal, e.g. 1777)
//
// Parent directories are created as needed (0755). The layer is an
// uncompressed tar; go-containerregistry makes the image (config, manifest)
// and lays it out (oci-layout, index.json annotated with
// io.containerd.image.name, blobs/sha256/), and the layout is archived as
// one tar. Timestamps are fixed, so the same inputs give the same digests
// and the same archive.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

var epoch = time.Unix(0, 0).UTC()

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

// entry is one file, symlink or directory of the layer.
type entry struct {
	typ    byte
	name   string // without leading slash
	mode   int64
	target string
	data   []byte
}

// options is the image the command line asks for.
type options struct {
	name, out       string
	entrypoint, cmd string
	env             []string
	labels          map[string]string
	specs           []string
}

func main() {
	var o options
	flag.StringVar(&o.name, "name", "", "image name, e.g. localhost/epair-e2e/pause:v1 (required)")
	flag.StringVar(&o.out, "o", "", "output tar archive (required)")
	flag.StringVar(&o.entrypoint, "entrypoint", "", "entrypoint, split on spaces")
	flag.StringVar(&o.cmd, "cmd", "", "cmd, split on spaces")
	var env multi
	flag.Var(&env, "env", "K=V in the image config (repeatable; default PATH=/bin:/usr/bin:/sbin:/usr/sbin)")
	var labels multi
	flag.Var(&labels, "label", "K=V label in the image config (repeatable)")
	flag.Parse()
	if o.name == "" || o.out == "" {
		flag.Usage()
		os.Exit(2)
	}
	o.labels = map[string]string{}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			fmt.Fprintf(os.Stderr, "ociimage: bad label %q (want K=V)\n", l)
			os.Exit(2)
		}
		o.labels[k] = v
	}
	o.env, o.specs = env, flag.Args()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	entries, err := parseEntries(o.specs)
	if err != nil {
		return err
	}
	layerTar, err := writeLayer(entries)
	if err != nil {
		return err
	}
	// The layer goes in as it is: uncompressed, its digest its diff ID.
	layer := static.NewLayer(layerTar, types.OCIUncompressedLayer)
	img, err := makeImage(o, layer)
	if err != nil {
		return err
	}
	if err := writeArchive(o.out, o.name, img); err != nil {
		return err
	}
	d, err := layer.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("ociimage: %s -> %s (%d entries, layer %s, %d bytes)\n", o.name, o.out, len(entries), d.String()[:19], len(layerTar))
	return nil
}

// parseEntries turns the ENTRY arguments into the layer's entries, with the
// missing parent directories, keyed by name.
func parseEntries(specs []string) (map[string]*entry, error) {
	entries := map[string]*entry{}
	for _, s := range specs {
		e, err := parseEntry(s)
		if err != nil {
			return nil, err
		}
		for d := path.Dir(e.name); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := entries[d]; !ok {
				entries[d] = &entry{typ: tar.TypeDir, name: d, mode: 0o755}
			}
		}
		entries[e.name] = e
	}
	return entries, nil
}

func parseEntry(s string) (*entry, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("bad entry %q (want file:SRC:DST, link:DST:TARGET or dir:DST:MODE)", s)
	}
	switch parts[0] {
	case "file":
		data, err := os.ReadFile(parts[1])
		if err != nil {
			return nil, fmt.Errorf("entry %q: %w", s, err)
		}
		fi, err := os.Stat(parts[1])
		if err != nil {
			return nil, fmt.Errorf("entry %q: %w", s, err)
		}
		return &entry{typ: tar.TypeReg, name: clean(parts[2]), mode: int64(fi.Mode().Perm()), data: data}, nil
	case "link":
		return &entry{typ: tar.TypeSymlink, name: clean(parts[1]), mode: 0o777, target: parts[2]}, nil
	case "dir":
		m, err := strconv.ParseInt(parts[2], 8, 32)
		if err != nil {
			return nil, fmt.Errorf("bad mode in %q: %w", s, err)
		}
		return &entry{typ: tar.TypeDir, name: clean(parts[1]), mode: m}, nil
	}
	return nil, fmt.Errorf("bad entry kind in %q", s)
}

// writeLayer writes the entries as an uncompressed tar, sorted by name so
// parents come before children and the same entries give the same bytes.
func writeLayer(entries map[string]*entry) ([]byte, error) {
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for _, n := range names {
		e := entries[n]
		h := &tar.Header{Typeflag: e.typ, Name: e.name, Mode: e.mode, ModTime: epoch, Format: tar.FormatPAX}
		switch e.typ {
		case tar.TypeDir:
			h.Name += "/"
			// Sticky and other special bits travel in the mode's high bits.
			h.Mode = e.mode & 0o7777
		case tar.TypeSymlink:
			h.Linkname = e.target
		case tar.TypeReg:
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", n, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", n, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return layer.Bytes(), nil
}

// makeImage is the one-layer OCI image (OCI manifest and config media
// types, as containerd and the kubelet suite expect) of the options.
func makeImage(o options, layer v1.Layer) (v1.Image, error) {
	env := o.env
	if len(env) == 0 {
		env = []string{"PATH=/bin:/usr/bin:/sbin:/usr/sbin"}
	}
	cfg := &v1.ConfigFile{
		Created:      v1.Time{Time: epoch},
		Architecture: runtime.GOARCH,
		OS:           "linux",
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Env:        env,
			Entrypoint: fields(o.entrypoint),
			Cmd:        fields(o.cmd),
			WorkingDir: "/",
		},
	}
	if len(o.labels) > 0 {
		cfg.Config.Labels = o.labels
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	base, err := mutate.ConfigFile(base, cfg)
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "hack/ociimage"},
	})
	if err != nil {
		return nil, fmt.Errorf("image layer: %w", err)
	}
	return img, nil
}

// writeArchive lays img out as an OCI image layout named name and archives
// it as out. The archive is written beside out and renamed into place, so a
// failure leaves no half-written archive (nor changes an old one).
func writeArchive(out, name string, img v1.Image) error {
	dir, err := os.MkdirTemp("", "ociimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := writeLayout(dir, name, img); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a successful rename, a no-op
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		f.Close()
		return fmt.Errorf("archive %s: %w", out, err)
	}
	if err := errors.Join(tw.Close(), f.Chmod(0o644), f.Close()); err != nil {
		return fmt.Errorf("archive %s: %w", out, err)
	}
	return os.Rename(f.Name(), out)
}

// writeLayout writes the image layout of img into dir, the index entry
// annotated with the name containerd imports it as, and fixes every
// timestamp and mode (the library writes blobs 0600 through a temporary
// file and the rest 0755) so the archive of the same image has the same
// bytes.
func writeLayout(dir, name string, img v1.Image) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("image layout: %w", err)
	}
	err = p.AppendImage(img,
		layout.WithPlatform(v1.Platform{Architecture: runtime.GOARCH, OS: "linux"}),
		layout.WithAnnotations(map[string]string{
			"io.containerd.image.name":          name,
			"org.opencontainers.image.ref.name": tag(name),
		}))
	if err != nil {
		return fmt.Errorf("image layout: %w", err)
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return errors.Join(os.Chmod(p, mode), os.Chtimes(p, epoch, epoch))
	})
}

// tag is the tag of an image name (the whole name if it has none), the
// layout's org.opencontainers.image.ref.name.
func tag(name string) string {
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		return name[i+1:]
	}
	return name
}

func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

func fields(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Fields(s)
}

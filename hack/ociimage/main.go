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
// uncompressed tar; the archive holds oci-layout, index.json (annotated with
// io.containerd.image.name) and blobs/sha256/ with layer, config and manifest.
// Timestamps are fixed, so the same inputs give the same digests.
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

var epoch = time.Unix(0, 0).UTC()

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

type entry struct {
	typ    byte
	name   string // without leading slash
	mode   int64
	target string
	data   []byte
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

func main() {
	name := flag.String("name", "", "image name, e.g. localhost/epair-e2e/pause:v1 (required)")
	out := flag.String("o", "", "output tar archive (required)")
	entrypoint := flag.String("entrypoint", "", "entrypoint, split on spaces")
	cmd := flag.String("cmd", "", "cmd, split on spaces")
	var env multi
	flag.Var(&env, "env", "K=V in the image config (repeatable; default PATH=/bin:/usr/bin:/sbin:/usr/sbin)")
	var labels multi
	flag.Var(&labels, "label", "K=V label in the image config (repeatable)")
	flag.Parse()
	if *name == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	lm := map[string]string{}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			fmt.Fprintf(os.Stderr, "ociimage: bad label %q (want K=V)\n", l)
			os.Exit(2)
		}
		lm[k] = v
	}
	if err := run(*name, *out, *entrypoint, *cmd, env, lm, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

func run(name, out, entrypoint, cmd string, env []string, labels map[string]string, specs []string) error {
	entries := map[string]*entry{}
	addDirs := func(p string) {
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := entries[d]; !ok {
				entries[d] = &entry{typ: tar.TypeDir, name: d, mode: 0o755}
			}
		}
	}
	for _, s := range specs {
		parts := strings.SplitN(s, ":", 3)
		if len(parts) != 3 {
			return fmt.Errorf("bad entry %q (want file:SRC:DST, link:DST:TARGET or dir:DST:MODE)", s)
		}
		switch parts[0] {
		case "file":
			data, err := os.ReadFile(parts[1])
			if err != nil {
				return err
			}
			fi, err := os.Stat(parts[1])
			if err != nil {
				return err
			}
			n := clean(parts[2])
			addDirs(n)
			entries[n] = &entry{typ: tar.TypeReg, name: n, mode: int64(fi.Mode().Perm()), data: data}
		case "link":
			n := clean(parts[1])
			addDirs(n)
			entries[n] = &entry{typ: tar.TypeSymlink, name: n, mode: 0o777, target: parts[2]}
		case "dir":
			m, err := strconv.ParseInt(parts[2], 8, 32)
			if err != nil {
				return fmt.Errorf("bad mode in %q: %v", s, err)
			}
			n := clean(parts[1])
			addDirs(n)
			entries[n] = &entry{typ: tar.TypeDir, name: n, mode: m}
		default:
			return fmt.Errorf("bad entry kind in %q", s)
		}
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names) // parents before children

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
			return err
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	layerDigest := digest(layer.Bytes())

	if len(env) == 0 {
		env = []string{"PATH=/bin:/usr/bin:/sbin:/usr/sbin"}
	}
	cfg := map[string]any{
		"Env":        env,
		"Entrypoint": fields(entrypoint),
		"Cmd":        fields(cmd),
		"WorkingDir": "/",
	}
	if len(labels) > 0 {
		cfg["Labels"] = labels // encoding/json sorts map keys: same digests
	}
	imgConfig := map[string]any{
		"created":      epoch.Format(time.RFC3339),
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       cfg,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
		"history":      []map[string]any{{"created": epoch.Format(time.RFC3339), "created_by": "hack/ociimage"}},
	}
	configJSON, err := json.Marshal(imgConfig)
	if err != nil {
		return err
	}
	manifest := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: digest(configJSON), Size: int64(len(configJSON))},
		"layers":        []descriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: layerDigest, Size: int64(layer.Len())}},
	}
	manifestJSON, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	tag := name
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		tag = name[i+1:]
	}
	index := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []descriptor{{
			MediaType: "application/vnd.oci.image.manifest.v1+json",
			Digest:    digest(manifestJSON),
			Size:      int64(len(manifestJSON)),
			Platform:  &platform{Architecture: runtime.GOARCH, OS: "linux"},
			Annotations: map[string]string{
				"io.containerd.image.name":          name,
				"org.opencontainers.image.ref.name": tag,
			},
		}},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}

	f, err := os.Create(out)
	if err != nil {
		return err
	}
	ow := tar.NewWriter(f)
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", indexJSON},
		{"blobs/", nil},
		{"blobs/sha256/", nil},
		{blob(layerDigest), layer.Bytes()},
		{blob(digest(configJSON)), configJSON},
		{blob(digest(manifestJSON)), manifestJSON},
	}
	for _, x := range files {
		h := &tar.Header{Name: x.name, Mode: 0o644, Size: int64(len(x.data)), ModTime: epoch, Typeflag: tar.TypeReg}
		if strings.HasSuffix(x.name, "/") {
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		if err := ow.WriteHeader(h); err != nil {
			f.Close()
			return err
		}
		if _, err := ow.Write(x.data); err != nil {
			f.Close()
			return err
		}
	}
	if err := ow.Close(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Printf("ociimage: %s -> %s (%d entries, layer %s, %d bytes)\n", name, out, len(names), layerDigest[:19], layer.Len())
	return nil
}

func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

func fields(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Fields(s)
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func blob(d string) string { return "blobs/sha256/" + strings.TrimPrefix(d, "sha256:") }

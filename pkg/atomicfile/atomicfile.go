// Package atomicfile replaces files so that a reader, or a restart after a
// crash, sees the old content or the new one, never half of either.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Write replaces path with data: a temporary file in the same directory,
// chmod perm, fsync, rename over path (the commit point), fsync of the
// directory so the rename itself survives a crash.
func Write(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPrefix(path)+"*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// tempPrefix is how the names of path's temporary files begin; os.CreateTemp
// ends them with a decimal random number.
func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// IsTemp reports whether name (a base name) is one Write gives a temporary
// file of path.
func IsTemp(path, name string) bool {
	rest, ok := strings.CutPrefix(name, tempPrefix(path))
	if !ok || rest == "" {
		return false
	}
	return strings.Trim(rest, "0123456789") == ""
}

// RemoveTemps removes the temporary files of path that a process killed
// inside Write left in path's directory: regular files named as IsTemp says,
// nothing else. Call it only while no one writes path (the daemon does,
// holding its state lock), or it would pull a file from under a Write. It
// returns the names it removed.
func RemoveTemps(path string) ([]string, error) {
	dir := filepath.Dir(path)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		if !e.Type().IsRegular() || !IsTemp(path, e.Name()) {
			continue
		}
		err := os.Remove(filepath.Join(dir, e.Name()))
		switch {
		case err == nil:
			removed = append(removed, e.Name())
		case !errors.Is(err, fs.ErrNotExist):
			errs = append(errs, fmt.Errorf("remove leftover %s: %w", e.Name(), err))
		}
	}
	return removed, errors.Join(errs...)
}

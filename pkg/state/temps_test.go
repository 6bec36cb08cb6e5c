package state

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// TestOpenRemovesLeftoverTemps: the temporary files of a Save that a
// kill -9 interrupted are gone once the next daemon holds the dir; files
// that only look alike, and the state itself, stay.
func TestOpenRemovesLeftoverTemps(t *testing.T) {
	dir := t.TempDir()
	leftovers := []string{".state.json.tmp-1234567890", ".state.json.tmp-42"}
	keep := []string{
		"state.json",              // the state itself
		"lock",                    // the lock
		".state.json.tmp-",        // no number: not a name Write makes
		".state.json.tmp-12ab",    // not a decimal number
		"state.json.tmp-77",       // no leading dot
		".other.json.tmp-77",      // another file's temporary
		".state.json.tmp-5.saved", // a suffix after the number
	}
	for _, n := range append(append([]string{}, leftovers...), keep...) {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A directory with a temporary's name is not a file Write left.
	if err := os.Mkdir(filepath.Join(dir, ".state.json.tmp-99"), 0o700); err != nil {
		t.Fatal(err)
	}
	keep = append(keep, ".state.json.tmp-99")
	captureLog(t)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	sort.Strings(got)
	sort.Strings(keep)
	if len(got) != len(keep) {
		t.Fatalf("state dir holds %q, want %q", got, keep)
	}
	for i := range got {
		if got[i] != keep[i] {
			t.Fatalf("state dir holds %q, want %q", got, keep)
		}
	}
}

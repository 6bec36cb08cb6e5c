package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

// TestTempNamesAreWhatWriteMakes: the names RemoveTemps removes are those
// Write really gives its temporary files (os.CreateTemp's pattern).
func TestTempNamesAreWhatWriteMakes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	for range 20 {
		f, err := os.CreateTemp(filepath.Dir(path), ".state.json.tmp-*")
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if !IsTemp(path, filepath.Base(f.Name())) {
			t.Fatalf("%s is a temporary name of Write, IsTemp says no", f.Name())
		}
	}
	if err := Write(path, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(filepath.Dir(path), ".other.tmp-1")
	os.WriteFile(other, nil, 0o600)
	removed, err := RemoveTemps(path)
	if err != nil || len(removed) != 20 {
		t.Fatalf("RemoveTemps removed %d (%v), want the 20 temporaries", len(removed), err)
	}
	for _, p := range []string{path, other} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("RemoveTemps removed %s: %v", p, err)
		}
	}
}

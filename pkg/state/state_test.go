package state

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Load()
	if err != nil || len(st.Pairs) != 0 {
		t.Fatalf("empty dir: %v %v", st, err)
	}
	st.NextMACIndex = 7
	st.Pairs[3] = &Pair{Unit: 3, Phase: Ready, MTU: 1500, A: End{Name: "eth0", Index: 12, Netns: "/var/run/netns/x"}}
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got.NextMACIndex != 7 || got.Pairs[3].A.Name != "eth0" || got.Pairs[3].A.Index != 12 {
		t.Fatalf("round trip: %+v", got.Pairs[3])
	}
	fi, err := os.Stat(filepath.Join(dir, fileName))
	if err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("state file mode %v (%v), want no group/other access", fi.Mode(), err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.tmp*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestCorruptStateIsAnError(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, fileName), []byte("{not json"), 0o600)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Load(); err == nil {
		t.Fatal("corrupt state loaded without error")
	}
}

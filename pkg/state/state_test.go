package state

import (
	"os"
	"path/filepath"
	"strings"
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
	st.Pairs[3] = &Pair{Unit: 3, Phase: Ready, MTU: 1500, Queues: 1,
		A: End{Name: "eth0", Index: 12, Netns: "/var/run/netns/x"}, B: End{Name: "epair3b", Index: 40}}
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

// loadFile writes data as the state file of a fresh store and loads it.
func loadFile(t *testing.T, data string) (*State, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, fileName), []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return s.Load()
}

const goodPair = `"unit": 3, "phase": "ready", "mtu": 1500, "queues": 1, "mac_index": 0,
	"a": {"name": "eth0", "ifindex": 12, "netns": "/var/run/netns/x"}, "b": {"name": "epair3b", "ifindex": 40}`

// TestCorruptPairsFailLoudly: a state the daemon could not restore safely
// (a null pair, which restore would dereference; an unknown phase, which
// restore would treat as interrupted and delete the devices of; ...) is an
// error that names the file and the fault, not a state.
func TestCorruptPairsFailLoudly(t *testing.T) {
	for _, c := range []struct{ data, want string }{
		{`null`, "null, not a state object"},
		{`{"next_mac_index": 1, "pairs": {"1": null}}`, "pair 1: is null"},
		{`{"next_mac_index": 1, "pairs": {"4": {` + goodPair + `}}}`, "kept under unit 4 but says unit 3"},
		{`{"next_mac_index": 1, "pairs": {"-1": {"unit": -1}}}`, "pair -1: unit is negative"},
		{`{"next_mac_index": 1, "pairs": {"3": {` + goodPair + `, "phase": "gone"}}}`, `phase "gone" is not`},
		{`{"next_mac_index": 1, "pairs": {"3": {` + goodPair + `, "phase": ""}}}`, `phase "" is not`},
		{`{"next_mac_index": 1, "pairs": {"3": {` + goodPair + `, "mtu": 0}}}`, "mtu 0 is out of range"},
		{`{"next_mac_index": 1, "pairs": {"3": {` + goodPair + `, "queues": 0}}}`, "queues 0"},
		{`{"next_mac_index": 0, "pairs": {"3": {` + goodPair + `}}}`, "mac_index 0 is not below next_mac_index 0"},
		{`{"next_mac_index": 1, "pairs": {"3": {` + goodPair + `, "a": {"name": ""}}}}`, "a end: "},
		{`{"next_mac_index": 1, "pairs": {"3": {` + goodPair + `, "b": {"name": "x/y"}}}}`, "b end: "},
		{`{"next_mac_index": 1, "pairs": {"3": {` + goodPair + `, "b": {"name": "b", "ifindex": -2}}}}`, "ifindex -2 is negative"},
		{`{"next_mac_index": 1, "pairs": {"3": {` + goodPair + `, "a": {"name": "eth0", "netns": "run/x"}}}}`, `netns "run/x" is not an absolute, clean path`},
		{`{"next_mac_index": 2, "pairs": {"3": {` + goodPair + `}, "4": {` + goodPair + `, "unit": 4, "mac_index": 1}}}`, `pairs 3 and 4 both have the b end "epair3b"`},
	} {
		st, err := loadFile(t, c.data)
		if err == nil {
			t.Errorf("%s: loaded %+v, want an error", c.data, st)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, c.want) || !strings.Contains(msg, fileName) {
			t.Errorf("%s: error %q, want one naming %s and saying %q", c.data, msg, fileName, c.want)
		}
	}
}

func TestLoadAcceptsEveryPhase(t *testing.T) {
	for _, ph := range []Phase{Creating, Ready, Deleting} {
		st, err := loadFile(t, `{"next_mac_index": 1, "pairs": {"3": {`+goodPair+`, "phase": "`+string(ph)+`"}}}`)
		if err != nil || st.Pairs[3] == nil || st.Pairs[3].Phase != ph {
			t.Errorf("phase %s: %+v %v", ph, st, err)
		}
	}
	if st, err := loadFile(t, `{}`); err != nil || st.Pairs == nil {
		t.Errorf("{}: %+v %v, want an empty state", st, err)
	}
}

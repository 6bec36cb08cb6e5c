package state

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzStateLoad feeds arbitrary bytes to the state file loader (parse, the
// whole of Load after the read). Property: it never panics; what it accepts
// is a state the daemon can restore: a non-nil map of non-nil pairs, each
// kept under its own unit, in a known phase, with its MAC index below
// NextMACIndex; and what it accepts survives a Save: encoded as Save
// encodes it, it loads again to the same state.
func FuzzStateLoad(f *testing.F) {
	for _, s := range []string{
		`{"next_mac_index": 1, "pairs": {"3": {` + goodPair + `}}}`,
		`{"next_mac_index": 9, "pairs": {"3": {` + goodPair + `, "phase": "creating", "mac_index": 7},
			"5": {"unit": 5, "phase": "deleting", "mtu": 9000, "queues": 4, "mac_index": 8,
				"a": {"name": "net1", "ifindex": 2, "mac": "02:00:00:00:00:01", "netns": "/proc/1/ns/net"},
				"b": {"name": "epair5b", "ifindex": 3, "mac": "02:00:00:00:00:02", "netns": "/run/epair/pins/net-4026532"},
				"owner": {"container_id": "abc", "ifname": "eth0", "network": "epair-routed", "ips": ["10.22.0.5/16", "fd00::5/64"]}}}}`,
		`{}`,
		`{"next_mac_index": 4}`,
		`{"pairs": null}`,
		`{"pairs": {}}`,
		`null`,
		`{"next_mac_index": 1, "pairs": {"1": null}}`,
		`{"next_mac_index": 1, "pairs": {"4": {` + goodPair + `}}}`,
		`{"next_mac_index": 1, "pairs": {"3": {` + goodPair + `, "phase": "gone"}}}`,
		`{"next_mac_index": 1, "pairs": {"-1": {"unit": -1}}}`,
		`{"next_mac_index": 1, "pairs": {"x": {}}}`,
		`{"next_mac_index": -1}`,
		`{"pairs": []}`,
		`{not json`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parse(data)
		if err != nil {
			if st != nil {
				t.Fatalf("parse returned a state with the error %v", err)
			}
			return
		}
		if st.Pairs == nil {
			t.Fatal("accepted state has a nil pair map")
		}
		for unit, p := range st.Pairs {
			switch {
			case p == nil:
				t.Fatalf("accepted state has a null pair %d", unit)
			case p.Unit != unit:
				t.Fatalf("pair kept under %d says unit %d", unit, p.Unit)
			case p.Phase != Creating && p.Phase != Ready && p.Phase != Deleting:
				t.Fatalf("pair %d has phase %q", unit, p.Phase)
			case p.MACIndex >= st.NextMACIndex:
				t.Fatalf("pair %d: mac_index %d, next %d", unit, p.MACIndex, st.NextMACIndex)
			}
		}
		b, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			t.Fatalf("encode accepted state: %v", err)
		}
		again, err := parse(b)
		if err != nil {
			t.Fatalf("what Save would write does not load: %v\n%s", err, b)
		}
		b2, _ := json.MarshalIndent(again, "", "  ")
		if !bytes.Equal(b, b2) {
			t.Fatalf("state changed across save and load:\n%s\n%s", b, b2)
		}
	})
}

// Package state keeps the epair daemon's state on disk: one JSON file,
// replaced atomically, so that a crash at any point leaves either the old or
// the new state, never a torn one.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/atomicfile"
	"github.com/epair-cni/epair/pkg/epair"
	"golang.org/x/sys/unix"
)

// Phase is where a pair is in its life. A pair is written as Creating before
// any device exists and as Deleting before any is removed, so that a daemon
// restarted after a crash knows what to roll back or finish.
type Phase string

// The phases of a pair.
const (
	Creating Phase = "creating"
	Ready    Phase = "ready"
	Deleting Phase = "deleting"
)

// Pair is what is kept of a pair.
type Pair struct {
	Unit     int        `json:"unit"`
	Phase    Phase      `json:"phase"`
	A        End        `json:"a"`
	B        End        `json:"b"`
	MTU      int        `json:"mtu"`
	Queues   int        `json:"queues"`
	MACIndex uint32     `json:"mac_index"`
	Owner    *api.Owner `json:"owner,omitempty"`
	// AntiSpoofing is the request's setting (nil: on), kept so that a
	// restarted daemon filters the pair as before.
	AntiSpoofing *bool `json:"anti_spoofing,omitempty"`
	// Bandwidth is the request's shaping, kept so that a restarted daemon
	// shapes the pair as before.
	Bandwidth *api.Bandwidth `json:"bandwidth,omitempty"`
}

// End is what is kept of one end.
type End struct {
	Name  string `json:"name"`
	Index int    `json:"ifindex"`
	MAC   string `json:"mac"`
	Netns string `json:"netns,omitempty"`
}

// State is the whole file.
type State struct {
	// NextMACIndex feeds the MAC rule; it only grows, so a MAC is never
	// handed out twice by this node.
	NextMACIndex uint32        `json:"next_mac_index"`
	Pairs        map[int]*Pair `json:"pairs"`
	// Starts counts the daemons that started on this state, the running
	// one included (the restarts of the metrics); a file written before
	// it was kept reads as 0.
	Starts uint64 `json:"starts,omitempty"`
}

const fileName = "state.json"

// Store reads and writes the state in a directory it holds locked.
type Store struct {
	dir  string
	lock *os.File
}

// Open is OpenWait with DefaultLockWait.
func Open(dir string) (*Store, error) { return OpenWait(dir, DefaultLockWait) }

// OpenWait creates dir (mode 0700) if needed and takes an exclusive lock on
// it, so two daemons never share one state. While another process holds the
// lock it waits up to wait (see waitLock). Holding the lock, it writes its
// pid into the lock file, for the next one to name while it waits, and
// removes the temporary files a crash left behind (removeTemps).
func OpenWait(dir string, wait time.Duration) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open state lock: %w", err)
	}
	if err := waitLock(f, dir, wait); err != nil {
		f.Close()
		return nil, err
	}
	writeHolder(f)
	removeTemps(dir)
	return &Store{dir: dir, lock: f}, nil
}

// tryLock takes the lock of f without waiting; unix.EWOULDBLOCK means
// another open file holds it.
func tryLock(f *os.File) error {
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
}

// Close releases the lock.
func (s *Store) Close() error { return s.lock.Close() }

// Load reads the state; a missing file is an empty state. A file that does
// not parse, or holds a pair the daemon could not restore safely (see
// parse), is an error naming the file and the fault: a corrupt state stops
// the daemon at start rather than crash it, or delete devices, later.
func (s *Store) Load() (*State, error) {
	path := filepath.Join(s.dir, fileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &State{Pairs: map[int]*Pair{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	st, err := parse(b)
	if err != nil {
		return nil, fmt.Errorf("parse state %s: %w", path, err)
	}
	return st, nil
}

// parse decodes a state file and checks what the daemon relies on when it
// restores it: every pair is present (not null) under its own unit, which
// is not negative; its phase is a known one (restore deletes the devices
// of any pair not ready); MTU and queues are what a create accepts; the end
// names are interface names and the netns paths absolute and clean (or
// empty); no two pairs share a b name (the daemon finds a pair by it); and
// every MAC index is below NextMACIndex (else a MAC would be handed out
// twice). MACs and the owner are not checked: the daemon only reports them.
func parse(b []byte) (*State, error) {
	var st *State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	if st == nil {
		return nil, errors.New("the file is null, not a state object")
	}
	if st.Pairs == nil {
		st.Pairs = map[int]*Pair{}
	}
	bNames := map[string]int{}
	for unit, p := range st.Pairs {
		if err := checkPair(unit, p, st.NextMACIndex); err != nil {
			return nil, fmt.Errorf("pair %d: %w", unit, err)
		}
		if u, ok := bNames[p.B.Name]; ok {
			return nil, fmt.Errorf("pairs %d and %d both have the b end %q", min(u, unit), max(u, unit), p.B.Name)
		}
		bNames[p.B.Name] = unit
	}
	return st, nil
}

// checkPair checks one pair of the file, kept under unit.
func checkPair(unit int, p *Pair, nextMAC uint32) error {
	switch {
	case p == nil:
		return errors.New("is null")
	case unit < 0:
		return errors.New("unit is negative")
	case p.Unit != unit:
		return fmt.Errorf("is kept under unit %d but says unit %d", unit, p.Unit)
	}
	switch p.Phase {
	case Creating, Ready, Deleting:
	default:
		return fmt.Errorf("phase %q is not %q, %q or %q", p.Phase, Creating, Ready, Deleting)
	}
	if p.MTU < api.MinMTU || p.MTU > api.MaxMTU {
		return fmt.Errorf("mtu %d is out of range %d..%d", p.MTU, api.MinMTU, api.MaxMTU)
	}
	if p.Queues < 1 {
		return fmt.Errorf("queues %d: a pair has at least 1", p.Queues)
	}
	if p.MACIndex >= nextMAC {
		return fmt.Errorf("mac_index %d is not below next_mac_index %d", p.MACIndex, nextMAC)
	}
	for _, e := range []struct {
		side string
		end  *End
	}{{"a", &p.A}, {"b", &p.B}} {
		if err := epair.ValidIfName(e.end.Name); err != nil {
			return fmt.Errorf("%s end: %w", e.side, err)
		}
		if e.end.Index < 0 {
			return fmt.Errorf("%s end %s: ifindex %d is negative", e.side, e.end.Name, e.end.Index)
		}
		if n := e.end.Netns; n != "" && (!filepath.IsAbs(n) || filepath.Clean(n) != n) {
			return fmt.Errorf("%s end %s: netns %q is not an absolute, clean path", e.side, e.end.Name, n)
		}
	}
	return nil
}

// Save writes st to a temporary file, syncs it, renames it over the state
// file and syncs the directory: the rename is the commit point.
func (s *Store) Save(st *State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(s.dir, fileName), b, 0o600); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

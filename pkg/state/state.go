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

// Load reads the state; a missing file is an empty state.
func (s *Store) Load() (*State, error) {
	st := &State{Pairs: map[int]*Pair{}}
	b, err := os.ReadFile(filepath.Join(s.dir, fileName))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("parse state %s: %w", filepath.Join(s.dir, fileName), err)
	}
	if st.Pairs == nil {
		st.Pairs = map[int]*Pair{}
	}
	return st, nil
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

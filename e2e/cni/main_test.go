package cni_test

import (
	"fmt"
	"os"
	"sort"
	"sync"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/epair-cni/epair/internal/impostor"
)

var (
	nsMu    sync.Mutex
	nsMade  = map[string]string{} // netns path -> the test that made it
	nsOrder []string
)

// track records a namespace this suite made, to be sure it is gone at the end.
func track(t *testing.T, n ns.NetNS) ns.NetNS {
	nsMu.Lock()
	defer nsMu.Unlock()
	nsMade[n.Path()] = t.Name()
	nsOrder = append(nsOrder, n.Path())
	return n
}

// TestMain fails the run when a network namespace the suite made is still
// there (`ip netns list` must not grow): other suites running on the same
// machine at the same time do not count.
func TestMain(m *testing.M) {
	impostor.ServeIfAsked() // TestImpostorSocket re-runs this binary as the impostor
	code := m.Run()
	var left []string
	for _, p := range nsOrder {
		if _, err := os.Stat(p); err == nil {
			left = append(left, fmt.Sprintf("%s (made by %s)", p, nsMade[p]))
		}
	}
	sort.Strings(left)
	for _, l := range left {
		fmt.Fprintf(os.Stderr, "FAIL: network namespace %s left behind\n", l)
		code = 1
	}
	os.Exit(code)
}

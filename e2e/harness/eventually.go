package harness

import (
	"fmt"
	"testing"
	"time"
)

// PollInterval is how often Eventually and Poll retry: short, because what
// the suites wait for (a route, a socket, a pod turning Ready) usually
// arrives within milliseconds, and long enough not to compete for the two
// cores with what is being waited for.
const PollInterval = 50 * time.Millisecond

// Poll calls cond every PollInterval until it returns nil or timeout has
// passed. It returns nil on success, or cond's last error with what it
// waited for and how long, so that a failure says why, not only that it
// timed out.
func Poll(timeout time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s: %w", timeout, what, err)
		}
		time.Sleep(PollInterval)
	}
}

// Eventually is Poll that fails the test: the one polling wait of the
// suites, in place of fixed sleeps.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	if err := Poll(timeout, what, cond); err != nil {
		t.Fatal(err)
	}
}

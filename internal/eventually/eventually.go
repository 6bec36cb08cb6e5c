// Package eventually is the one way tests here wait for something that
// happens on another goroutine: poll a condition instead of sleeping a fixed
// time, which is either too short on a loaded machine or wastes time on an
// idle one.
package eventually

import (
	"testing"
	"time"
)

// Timeout is how long True waits: long enough for a machine whose two cores
// are shared with other builds, short enough that a hang fails the test.
const Timeout = 10 * time.Second

// True polls cond every millisecond until it holds, and fails the test,
// naming what it waited for, if it does not within Timeout.
func True(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(Timeout); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", Timeout, what)
		}
	}
}

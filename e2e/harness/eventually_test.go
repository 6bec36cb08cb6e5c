package harness

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPollReturnsOnceCondHolds(t *testing.T) {
	calls := 0
	err := Poll(5*time.Second, "the third call", func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Poll: %v", err)
	}
	if calls != 3 {
		t.Fatalf("cond called %d times, want 3 (stop at the first success)", calls)
	}
}

func TestPollTimesOutWithTheLastError(t *testing.T) {
	last := errors.New("route to 10.0.0.2 missing")
	start := time.Now()
	err := Poll(200*time.Millisecond, "the route", func() error { return last })
	if !errors.Is(err, last) {
		t.Fatalf("Poll = %v, want it to wrap cond's last error", err)
	}
	if !strings.Contains(err.Error(), "waiting for the route") {
		t.Fatalf("Poll = %q, want it to name what it waited for", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Fatalf("Poll gave up after %v, want about 200ms", d)
	}
}

func TestPollCallsCondAtLeastOnceWithZeroTimeout(t *testing.T) {
	calls := 0
	if err := Poll(0, "anything", func() error { calls++; return nil }); err != nil || calls != 1 {
		t.Fatalf("Poll(0) = %v after %d calls, want nil after 1", err, calls)
	}
}

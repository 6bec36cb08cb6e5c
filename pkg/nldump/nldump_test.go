package nldump

import (
	"errors"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// lister returns the errors in turn, then []int{1, 2}; it counts its calls.
func lister(calls *int, errs ...error) func() ([]int, error) {
	return func() ([]int, error) {
		*calls++
		if *calls <= len(errs) {
			return []int{1}, errs[*calls-1] // a partial result, as netlink's
		}
		return []int{1, 2}, nil
	}
}

func TestRetryInterruptedThenWhole(t *testing.T) {
	var calls int
	got, err := Retry(lister(&calls, netlink.ErrDumpInterrupted, unix.EINTR))
	if err != nil || len(got) != 2 || calls != 3 {
		t.Fatalf("got %v, %v after %d calls; want [1 2], nil after 3", got, err, calls)
	}
}

func TestRetryAlwaysInterruptedFails(t *testing.T) {
	var calls int
	errs := make([]error, 100)
	for i := range errs {
		errs[i] = netlink.ErrDumpInterrupted
	}
	got, err := Retry(lister(&calls, errs...))
	if !errors.Is(err, netlink.ErrDumpInterrupted) || got != nil || calls != Attempts {
		t.Fatalf("got %v, %v after %d calls; want nil, ErrDumpInterrupted after %d", got, err, calls, Attempts)
	}
}

func TestRetryOtherErrorAtOnce(t *testing.T) {
	var calls int
	got, err := Retry(lister(&calls, unix.ENOBUFS))
	if !errors.Is(err, unix.ENOBUFS) || got != nil || calls != 1 {
		t.Fatalf("got %v, %v after %d calls; want nil, ENOBUFS after 1", got, err, calls)
	}
}

// Package nldump retries netlink dumps the kernel interrupted.
//
// A dump (route, address or link listing) spans several messages. When the
// table changes meanwhile, the kernel flags the dump NLM_F_DUMP_INTR and
// vishvananda/netlink returns what it got together with ErrDumpInterrupted
// (which matches EINTR). Retry asks again. Unlike netlinksafe, whose
// package functions hand the partial result over after the last attempt,
// Retry then returns an error and no result: a caller deciding from a
// listing (is this route someone else's?) must not decide from a partial
// one.
package nldump

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Attempts bounds the calls of one Retry: a table changing all the time
// fails the listing rather than blocking its caller.
const Attempts = 5

// Retry calls list until it is not interrupted, at most Attempts times. An
// error that is not an interruption is returned at once. With an error, the
// result is always T's zero value, never a partial listing.
func Retry[T any](list func() (T, error)) (T, error) {
	var zero T
	var err error
	for range Attempts {
		var got T
		if got, err = list(); err == nil {
			return got, nil
		}
		if !errors.Is(err, unix.EINTR) {
			return zero, err
		}
	}
	return zero, fmt.Errorf("%w (interrupted %d times)", err, Attempts)
}

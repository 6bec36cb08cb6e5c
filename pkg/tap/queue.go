package tap

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"

	"github.com/epair-cni/epair/pkg/epair"
	"golang.org/x/sys/unix"
)

// tunPath is the clone device every TUN/TAP queue is opened from.
const tunPath = "/dev/net/tun"

// ErrTruncated is wrapped by the error ReadFrame returns when a frame may
// not have fitted the buffer. The frame is lost but the queue is fine.
var ErrTruncated = errors.New("frame truncated")

// Queue is one file descriptor attached to a TAP device. Frames that the
// kernel sends out of the device are read from it; frames written to it are
// received by the kernel as if they came in over the wire.
//
// The descriptor is non-blocking and registered with the Go runtime's network
// poller, so a reader waiting for a frame parks its goroutine rather than an
// OS thread, and Close wakes it up.
type Queue struct {
	file *os.File
	rc   syscall.RawConn
	// fd is kept apart from file because (*os.File).Fd switches the
	// descriptor back to blocking mode, which would tie a thread to every
	// idle reader and stop Close from waking them.
	fd     int
	closed atomic.Bool
}

// openQueue opens the clone device and binds it as queue number index to
// the device called name with TUNSETIFF, creating the device unless it
// exists already.
func openQueue(name string, index int, flags uint16) (*Queue, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, fmt.Errorf("tap %q: %w", name, err)
	}
	ifr.SetUint16(flags)
	fd, err := unix.Open(tunPath, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("tap %s: queue %d: open %s: %w", name, index, tunPath, err)
	}
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %s: queue %d: TUNSETIFF: %w", name, index, err)
	}
	return newQueue(fd)
}

// newQueue wraps fd, which must be in non-blocking mode: os.NewFile only
// hands such descriptors to the poller.
func newQueue(fd int) (*Queue, error) {
	file := os.NewFile(uintptr(fd), tunPath)
	rc, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("tap: raw conn: %w", err)
	}
	return &Queue{file: file, rc: rc, fd: fd}, nil
}

// ReadFrame waits for the next frame and reads it, virtio-net header
// (epair.VnetHdrLen bytes) first, into a buffer from get. It returns that buffer
// and the number of bytes read.
//
// Each time the queue turns out to be empty the buffer goes back to put
// before waiting, so an idle queue holds no buffer. On error buf is nil and
// any buffer taken has been given back. After Close the error wraps
// os.ErrClosed.
//
// The kernel cuts a frame that does not fit to the buffer's length without
// saying so. ReadFrame therefore reports a frame that fills a buffer shorter
// than epair.FrameSize exactly as an error wrapping ErrTruncated; buffers of
// epair.FrameSize bytes, or one byte more than the largest frame expected
// (epair.VnetHdrLen + 14 + MTU without TSO/USO), avoid that.
func (q *Queue) ReadFrame(get func() []byte, put func([]byte)) (buf []byte, n int, err error) {
	var rerr error
	err = q.rc.Read(func(fd uintptr) bool {
		buf = get()
		n, rerr = readRetry(int(fd), buf)
		if rerr == unix.EAGAIN {
			put(buf)
			buf = nil
			return false
		}
		return true
	})
	if err == nil {
		err = rerr
	}
	if err == nil && n == len(buf) && n < epair.FrameSize {
		err = fmt.Errorf("%w: frame fills the %d-byte buffer", ErrTruncated, n)
	}
	if err != nil {
		if buf != nil {
			put(buf)
		}
		return nil, 0, fmt.Errorf("tap: read: %w", q.pollErr(err))
	}
	return buf, n, nil
}

// Wait parks until the queue is readable; it reads nothing. The runtime
// forgets earlier readiness each time a raw read starts, so Wait asks the
// kernel first (poll with a zero timeout) and only parks when nothing is
// queued; a frame that arrives after that check still wakes it. After Close
// the error wraps os.ErrClosed.
func (q *Queue) Wait() error {
	err := q.rc.Read(func(fd uintptr) bool {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, 0)
		return err != nil || n > 0
	})
	if err != nil {
		return fmt.Errorf("tap: wait: %w", q.pollErr(err))
	}
	return nil
}

// TryRead reads one frame into buf if one is there, without waiting: it
// returns 0 and no error when the queue is empty. It does not take the
// runtime's lock on the descriptor, which a goroutine parked in Wait holds;
// the caller must make sure Close cannot run during the call.
func (q *Queue) TryRead(buf []byte) (int, error) {
	n, err := readRetry(q.fd, buf)
	switch {
	case err == unix.EAGAIN:
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("tap: read: %w", q.pollErr(err))
	case n == len(buf) && n < epair.FrameSize:
		return 0, fmt.Errorf("%w: frame fills the %d-byte buffer", ErrTruncated, n)
	}
	return n, nil
}

// WriteFrame writes one frame, virtio-net header (epair.VnetHdrLen bytes) first,
// and returns the number of bytes written, which is all of b or nothing.
// If the kernel has no room it waits for the queue to become writable.
// After Close the error wraps os.ErrClosed.
func (q *Queue) WriteFrame(b []byte) (int, error) {
	var n int
	var werr error
	err := q.rc.Write(func(fd uintptr) bool {
		n, werr = writeRetry(int(fd), b)
		return werr != unix.EAGAIN
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		return 0, fmt.Errorf("tap: write: %w", q.pollErr(err))
	}
	return n, nil
}

// Fd returns the queue's file descriptor, still in non-blocking mode. It
// belongs to the Queue: do not close it, and do not use it after Close.
func (q *Queue) Fd() int {
	return q.fd
}

// Close closes the queue's descriptor. Any ReadFrame or WriteFrame waiting
// on it returns an error wrapping os.ErrClosed, and Close returns only once
// they have let go of the descriptor and it is really closed.
func (q *Queue) Close() error {
	q.closed.Store(true)
	if err := q.file.Close(); err != nil {
		return fmt.Errorf("tap: close queue: %w", err)
	}
	return nil
}

// pollErr reports any failure on a closed queue as os.ErrClosed. The raw
// conn signals a closed file with an internal error value that os.ErrClosed
// does not match, and the datapath needs to tell shutdown from failure.
func (q *Queue) pollErr(err error) error {
	if q.closed.Load() {
		return os.ErrClosed
	}
	return err
}

// ioctlValue issues an ioctl that takes its argument by value.
func (q *Queue) ioctlValue(name string, req uint, v uintptr) error {
	return q.control(name, func(fd int) error {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), v)
		if errno != 0 {
			return errno
		}
		return nil
	})
}

// ioctlPtrInt issues an ioctl that takes a pointer to an int.
func (q *Queue) ioctlPtrInt(name string, req uint, v int) error {
	return q.control(name, func(fd int) error {
		return unix.IoctlSetPointerInt(fd, req, v)
	})
}

// control runs fn on the descriptor while holding a reference to it, so a
// concurrent Close cannot close it, and a reused number cannot be hit.
func (q *Queue) control(name string, fn func(fd int) error) error {
	var ferr error
	if err := q.rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return fmt.Errorf("%s: %w", name, q.pollErr(err))
	}
	if ferr != nil {
		return fmt.Errorf("%s: %w", name, ferr)
	}
	return nil
}

// readRetry reads once, retrying if a signal interrupts the call.
func readRetry(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		if err != unix.EINTR {
			if err != nil {
				n = 0
			}
			return n, err
		}
	}
}

// writeRetry writes once, retrying if a signal interrupts the call.
func writeRetry(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Write(fd, b)
		if err != unix.EINTR {
			if err != nil {
				n = 0
			}
			return n, err
		}
	}
}

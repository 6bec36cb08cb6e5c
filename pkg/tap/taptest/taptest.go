// Package taptest is an in-memory stand-in for a TAP device, after
// wireguard-go's tun/tuntest.ChannelTUN: a test plays the kernel, writing
// the frames the interface "sends" with Send and reading what the datapath
// wrote into it with Recv. Nothing needs root.
package taptest

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/epair-cni/epair/pkg/tap"
)

// backlog is how many frames each direction of a Queue holds, as the
// kernel's tx queue does; a full queue makes Send (and WriteFrame) wait.
const backlog = 1024

// Queue is one in-memory TAP queue. It implements tap.FrameQueue.
type Queue struct {
	out    chan []byte // frames the "kernel" sends: read by the datapath
	in     chan []byte // frames the datapath wrote: read by the test
	closed chan struct{}
	once   sync.Once
	mu     sync.Mutex
	head   []byte // taken off out by Wait, not yet read
}

// NewQueue returns an open, empty queue.
func NewQueue() *Queue {
	return &Queue{out: make(chan []byte, backlog), in: make(chan []byte, backlog), closed: make(chan struct{})}
}

// Send queues a frame (virtio-net header first) for the datapath to read,
// as if the kernel sent it out of the interface. It copies frame.
func (q *Queue) Send(frame []byte) {
	select {
	case q.out <- append([]byte(nil), frame...):
	case <-q.closed:
	}
}

// Recv returns the next frame the datapath wrote into the queue, or false
// if none came within timeout.
func (q *Queue) Recv(timeout time.Duration) ([]byte, bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case b := <-q.in:
		return b, true
	case <-t.C:
		return nil, false
	}
}

// Wait parks until a frame is there to read; after Close it fails with
// os.ErrClosed, as the real queue does.
func (q *Queue) Wait() error {
	for {
		if q.isClosed() {
			return fmt.Errorf("taptest: wait: %w", os.ErrClosed)
		}
		if len(q.out) > 0 || q.hasUnread() {
			return nil
		}
		select {
		case <-q.closed:
		case b := <-q.out:
			q.unread(b)
			return nil
		}
	}
}

// TryRead reads one frame into buf if one is there, else returns 0.
func (q *Queue) TryRead(buf []byte) (int, error) {
	if q.isClosed() {
		return 0, fmt.Errorf("taptest: read: %w", os.ErrClosed)
	}
	if b := q.takeUnread(); b != nil {
		return copy(buf, b), nil
	}
	select {
	case b := <-q.out:
		return copy(buf, b), nil
	default:
		return 0, nil
	}
}

// WriteFrame takes a copy of b for Recv.
func (q *Queue) WriteFrame(b []byte) (int, error) {
	if q.isClosed() { // select below picks at random when both are ready
		return 0, fmt.Errorf("taptest: write: %w", os.ErrClosed)
	}
	select {
	case <-q.closed:
		return 0, fmt.Errorf("taptest: write: %w", os.ErrClosed)
	case q.in <- append([]byte(nil), b...):
		return len(b), nil
	}
}

func (q *Queue) isClosed() bool {
	select {
	case <-q.closed:
		return true
	default:
		return false
	}
}

// Close makes Wait, TryRead and WriteFrame fail with os.ErrClosed.
func (q *Queue) Close() { q.once.Do(func() { close(q.closed) }) }

// unread keeps a frame Wait took off the channel for the next TryRead: a
// channel has no peek.
func (q *Queue) unread(b []byte) {
	q.mu.Lock()
	q.head = b
	q.mu.Unlock()
}

func (q *Queue) hasUnread() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.head != nil
}

func (q *Queue) takeUnread() []byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	b := q.head
	q.head = nil
	return b
}

// Device is an in-memory TAP device of one or more queues. It implements
// tap.Endpoint.
type Device struct {
	// Name is the interface name it stands for.
	Name string
	// Queues are its queues, in queue-number order.
	Queues []*Queue

	mu      sync.Mutex
	carrier bool
	closed  bool
}

// NewDevice returns an open device with n queues and its carrier on.
func NewDevice(name string, n int) *Device {
	d := &Device{Name: name, carrier: true}
	for range n {
		d.Queues = append(d.Queues, NewQueue())
	}
	return d
}

// FrameQueues returns the queues as the datapath takes them.
func (d *Device) FrameQueues() []tap.FrameQueue {
	qs := make([]tap.FrameQueue, len(d.Queues))
	for i, q := range d.Queues {
		qs[i] = q
	}
	return qs
}

// SetCarrier records the carrier.
func (d *Device) SetCarrier(on bool) error {
	d.mu.Lock()
	d.carrier = on
	d.mu.Unlock()
	return nil
}

// Carrier reports the carrier as last set.
func (d *Device) Carrier() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.carrier
}

// Close closes every queue.
func (d *Device) Close() error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	for _, q := range d.Queues {
		q.Close()
	}
	return nil
}

// Closed reports whether Close was called.
func (d *Device) Closed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// String returns the name.
func (d *Device) String() string { return d.Name }

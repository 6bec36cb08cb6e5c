package tap

// FrameQueue is what the datapath needs of one TAP queue: wait until a frame
// is there, read one without waiting, write one. *Queue is the real one;
// pkg/tap/taptest has an in-memory fake, so the datapath and the daemon can
// be tested without root.
type FrameQueue interface {
	// Wait parks until a frame can be read (see Queue.Wait).
	Wait() error
	// TryRead reads one frame if one is there, 0 if none (see Queue.TryRead).
	TryRead(buf []byte) (int, error)
	// WriteFrame hands one frame to the kernel (see Queue.WriteFrame).
	WriteFrame(b []byte) (int, error)
}

// Endpoint is one end of a pair as the datapath drives it: its queues, its
// carrier, and closing it. *Device is the real one.
type Endpoint interface {
	// FrameQueues returns the device's queues, in queue-number order.
	FrameQueues() []FrameQueue
	// SetCarrier turns the device's carrier on or off.
	SetCarrier(on bool) error
	// Close closes the queues; a persistent device stays.
	Close() error
	// String names the device, for logs.
	String() string
}

// FrameQueues returns the device's queues as the datapath takes them.
func (d *Device) FrameQueues() []FrameQueue {
	qs := make([]FrameQueue, len(d.Queues))
	for i, q := range d.Queues {
		qs[i] = q
	}
	return qs
}

// String returns the interface name.
func (d *Device) String() string { return d.Name }

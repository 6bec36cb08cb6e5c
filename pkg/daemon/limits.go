package daemon

import (
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// The API server's limits. Every client is local (the plugin, the CLI, the
// agent in the same process): it sends its request at once and reads the
// answer at once, so the read and idle bounds only ever end a stalled or
// forgotten connection, and the write bound is sized for the slow handlers.
const (
	// MaxBodyBytes bounds a request body: a create request is well under a
	// kilobyte.
	MaxBodyBytes = 1 << 20
	// ReadHeaderTimeout and ReadTimeout bound reading a request's headers,
	// and all of it with the body, from the first byte. 10 s is thousands
	// of times what a local client needs, and leaves room for one
	// descheduled under load.
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 10 * time.Second
	// WriteTimeout bounds a request from the end of its headers to the end
	// of the answer, handler included. A create takes a couple of seconds
	// under load (more when many queue up); 90 s is more than the client
	// waits (60 s), so the daemon never cuts an answer the client still
	// waits for. The profile and trace endpoints run for the ?seconds= they
	// are asked (default 30 s and 1 s): net/http/pprof adds that to the
	// write deadline itself, and ReadTimeout does not cut them (net/http
	// clears the read deadline once the request is read).
	WriteTimeout = 90 * time.Second
	// IdleTimeout closes a kept-alive connection that sends no next
	// request. The plugin sends its few requests back to back; the client
	// drops its idle connections after 5 s, before this.
	IdleTimeout = 10 * time.Second
	// MaxConns bounds the connections served at once; beyond it Accept
	// waits for one to close (the timeouts above see to it that one does),
	// and newcomers wait in the socket's backlog. 128 is above the 110 pods
	// a node runs by default, each pod's plugin holding one connection.
	MaxConns = 128
)

// limits are the bounds newServer applies; tests shorten them.
type limits struct {
	readHeader, read, write, idle time.Duration
	maxConns                      int
}

var defaultLimits = limits{
	readHeader: ReadHeaderTimeout, read: ReadTimeout, write: WriteTimeout,
	idle: IdleTimeout, maxConns: MaxConns,
}

// newServer returns the API server of h with the limits lim.
func newServer(h http.Handler, lim limits) *http.Server {
	return &http.Server{
		Handler:           h,
		ConnContext:       connContext,
		ReadHeaderTimeout: lim.readHeader,
		ReadTimeout:       lim.read,
		WriteTimeout:      lim.write,
		IdleTimeout:       lim.idle,
	}
}

// limitListener accepts at most n connections at once (like
// golang.org/x/net/netutil.LimitListener, without the dependency): Accept
// waits until one closes. Clients beyond the bound wait in the listen
// backlog rather than being refused, so a burst of CNI ADDs is served a
// little late instead of failing.
type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

// Accept waits for a free slot, then for a connection.
func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

// Close stops accepting, also an Accept waiting for a slot.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn gives its slot back when it is closed, once.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// SyscallConn exposes the socket for the peer check (SO_PEERCRED).
func (c *limitConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, syscall.EINVAL
	}
	return sc.SyscallConn()
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/client"
	"golang.org/x/sys/unix"
)

// runCapture is `epair capture PAIR [flags]`: the frames crossing one end
// of a pair, as a pcap (or pcapng) file on stdout or into a file.
func runCapture(args []string, stdout, stderr io.Writer) error {
	fs, sock := newFlags("capture")
	var o api.CaptureOptions
	fs.StringVar(&o.End, "end", "a", "end to capture: a (the pod's) or b (the host's)")
	fs.IntVar(&o.Count, "c", 0, "stop after this many frames (0: no limit)")
	out := fs.String("w", "-", "write the capture to this file (- : stdout)")
	fs.BoolVar(&o.Drops, "drops", false, `also the frames the datapath dropped, each with a "dropped: REASON" comment (needs --pcapng)`)
	ng := fs.Bool("pcapng", false, "write pcapng instead of pcap")
	fs.IntVar(&o.Snaplen, "s", 0, "keep this many bytes of each frame (0: all)")
	fs.IntVar(&o.BufferKiB, "B", 0, "the capture's buffer in KiB (0: 4096); frames that do not fit are lost and counted")
	id, err := parsePairArgs(fs, args)
	if err != nil {
		return err
	}
	if *ng {
		o.Format = api.FormatPcapng
	}
	if err := o.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := client.New(*sock)
	s, err := c.Capture(ctx, id, &o)
	if err != nil {
		return err
	}
	defer s.Body.Close()
	// As tcpdump's "listening on": from here on every frame is captured.
	fmt.Fprintf(stderr, "epair: capturing %s, end %s\n", id, o.End)
	// Only now that the daemon took the capture: a refused one leaves no file.
	w, closeOut, err := openOutput(*out, stdout)
	if err != nil {
		return err
	}
	stopOnSignal(ctx, c, s, cancel, stderr)
	niceThreads()
	// Large reads: under load the stream is hundreds of MB/s, and every
	// syscall saved is CPU the datapath keeps.
	_, err = io.CopyBuffer(w, s.Body, make([]byte, 1<<20))
	if cerr := closeOut(); err == nil {
		err = cerr
	}
	return captureEnded(s, err, stderr)
}

// niceThreads puts the CLI's threads at nice 10 (on Linux a nice is a
// thread's, and threads made later inherit it): copying a busy capture out
// should not take CPU from the pods' traffic it watches.
func niceThreads() {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return
	}
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			unix.Setpriority(unix.PRIO_PROCESS, tid, 10)
		}
	}
}

// openOutput opens where the capture goes: stdout for "-", else a new file.
func openOutput(path string, stdout io.Writer) (io.Writer, func() error, error) {
	if path == "-" {
		return stdout, func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, fmt.Errorf("capture file: %w", err)
	}
	return f, f.Close, nil
}

// stopOnSignal asks the daemon to end the stream on SIGINT or SIGTERM, so
// the file ends after a whole packet; a second signal, or a daemon that
// does not end it within 2 s, cuts it.
func stopOnSignal(ctx context.Context, c *client.Client, s *client.CaptureStream, cancel func(), stderr io.Writer) {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		defer signal.Stop(sig)
		select {
		case <-sig:
		case <-ctx.Done():
			return
		}
		sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
		defer scancel()
		if err := c.StopCapture(sctx, s.ID); err != nil {
			fmt.Fprintf(stderr, "epair: stopping the capture: %v\n", err)
			cancel()
			return
		}
		select {
		case <-sig:
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			return
		}
		cancel()
	}()
}

// captureEnded reports on stderr how the capture ended.
func captureEnded(s *client.CaptureStream, err error, stderr io.Writer) error {
	sum, ok := s.Summary()
	if !ok {
		if err == nil || errors.Is(err, context.Canceled) {
			err = errors.New("the capture stream was cut before its end; the file may end in a partial packet")
		}
		return fmt.Errorf("capture: %w", err)
	}
	if err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	fmt.Fprintf(stderr, "epair: %d frames captured, %d lost to a full capture buffer\n", sum.Captured, sum.Lost)
	if sum.End == api.CaptureEndDeleted {
		fmt.Fprintln(stderr, "epair: capture ended: the pair was deleted")
	}
	return nil
}

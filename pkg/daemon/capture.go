package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/epair"
	"github.com/epair-cni/epair/pkg/version"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"
)

// Capture starts a capture of one end of a pair.
func (m *Manager) Capture(id string, o *api.CaptureOptions) (*epair.Capture, string, error) {
	m.awaitRestore(id)
	m.mu.Lock()
	defer m.mu.Unlock()
	p, err := m.find(id)
	if err != nil {
		return nil, "", err
	}
	l := m.links[p.Unit]
	if l == nil {
		return nil, "", fmt.Errorf("%w: pair %d is not forwarding", errBusy, p.Unit)
	}
	e, name := l.Pair.A, p.A.Name
	if o.End == "b" {
		e, name = l.Pair.B, p.B.Name
	}
	c, err := e.Capture(o.Config())
	switch {
	case errors.Is(err, epair.ErrCaptureConfig):
		return nil, "", fmt.Errorf("%w: %w", errInvalid, err)
	case err != nil:
		return nil, "", fmt.Errorf("%w: pair %d: %w", errBusy, p.Unit, err)
	}
	return c, name, nil
}

// captures are the running capture streams by id, for DELETE
// /v1/captures/{id}: a CLI stopped by SIGINT asks for its stream to end
// after the last whole packet, so the file it wrote stays valid.
type captures struct {
	mu   sync.Mutex
	next int
	m    map[string]*stream
}

type stream struct {
	c       *epair.Capture
	stopped atomic.Bool
}

func (cs *captures) add(s *stream) string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.m == nil {
		cs.m = map[string]*stream{}
	}
	cs.next++
	id := strconv.Itoa(cs.next)
	cs.m[id] = s
	return id
}

func (cs *captures) remove(id string) {
	cs.mu.Lock()
	delete(cs.m, id)
	cs.mu.Unlock()
}

// stop ends a stream as asked by its reader.
func (cs *captures) stop(id string) error {
	cs.mu.Lock()
	s := cs.m[id]
	cs.mu.Unlock()
	if s == nil {
		return fmt.Errorf("%w: no capture %q", errNotFound, id)
	}
	s.stopped.Store(true)
	s.c.Close()
	return nil
}

func (d *Daemon) stopCapture(w http.ResponseWriter, r *http.Request) {
	answer(w, struct{}{}, d.caps.stop(r.PathValue("id")))
}

// capture streams a pair's frames as a pcap or pcapng file, a batch per
// write, until the count is reached, the pair is deleted, the reader stops
// it, or goes away. The trailers say how many frames it wrote, how many
// its buffer lost, and why it ended.
func (d *Daemon) capture(w http.ResponseWriter, r *http.Request) {
	o, err := api.ParseCaptureOptions(r.URL.Query())
	if err != nil {
		reply(w, http.StatusBadRequest, api.Error{Error: err.Error()})
		return
	}
	c, name, err := d.m.Capture(r.PathValue("id"), o)
	if err != nil {
		answer(w, nil, err)
		return
	}
	defer c.Close()
	s := &stream{c: c}
	id := d.caps.add(s)
	defer d.caps.remove(id)

	// A capture runs as long as it runs: no write deadline for it.
	rc := http.NewResponseController(w)
	if err := rc.SetWriteDeadline(time.Time{}); err != nil {
		slog.Warn("capture: cannot lift the write deadline", "err", err)
	}
	w.Header().Set(api.HeaderCaptureID, id)
	w.Header().Set("Trailer", api.TrailerCaptured+", "+api.TrailerLost+", "+api.TrailerEnd)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	slog.Info("capture started", "id", id, "end", name, "format", o.Format, "drops", o.Drops)

	var n int
	var end string
	done := make(chan struct{})
	go func() {
		defer close(done)
		yieldToDatapath()
		n, end, err = streamPackets(r, w, rc, s, o, name)
	}()
	<-done
	if err == nil && end == "" && s.stopped.Load() {
		end = api.CaptureEndStopped
	} else if err == nil && end == "" {
		end = api.CaptureEndDeleted
	}
	c.Close()
	d.mx.CaptureLost(c.Lost())
	w.Header().Set(api.TrailerCaptured, strconv.Itoa(n))
	w.Header().Set(api.TrailerLost, strconv.FormatUint(c.Lost(), 10))
	w.Header().Set(api.TrailerEnd, end)
	slog.Info("capture ended", "id", id, "end", name, "captured", n, "lost", c.Lost(), "why", end, "err", err)
}

// yieldToDatapath gives the calling goroutine a thread of its own at nice
// 10: writing a capture out is CPU the datapath, which runs at 0, should
// win whenever both want it (the capture loses frames, and counts them,
// rather than slow the pods' traffic). The thread is never unlocked, so it
// ends with the goroutine and its nice with it.
func yieldToDatapath() {
	runtime.LockOSThread()
	if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 10); err != nil {
		slog.Debug("capture: cannot lower the writer's priority", "err", err)
	}
}

// streamPackets writes the file until the count is reached (end says so),
// the capture is closed (end ""), or an error (the reader went away).
func streamPackets(r *http.Request, w io.Writer, rc *http.ResponseController, s *stream, o *api.CaptureOptions, name string) (int, string, error) {
	bw := bufio.NewWriterSize(w, 256<<10) // a batch in few writes
	pw, err := newPacketWriter(bw, o, name, s.c.Snaplen())
	if err != nil {
		return 0, "", err
	}
	flush := func() error {
		if err := pw.flush(); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := flush(); err != nil {
		return 0, "", err
	}
	n := 0
	var ps []epair.Packet
	for {
		var rerr error
		ps, rerr = s.c.Read(r.Context(), ps[:0])
		for i := range ps {
			if o.Count == 0 || n < o.Count {
				if err == nil {
					err = pw.write(&ps[i])
				}
				n++
			}
			ps[i].Release()
		}
		if err == nil {
			err = flush()
		}
		switch {
		case err != nil:
			return n, "", err
		case o.Count > 0 && n >= o.Count:
			return n, api.CaptureEndCount, nil
		case errors.Is(rerr, epair.ErrCaptureClosed):
			return n, "", pw.finish(s.c)
		case rerr != nil:
			return n, "", rerr
		}
	}
}

// packetWriter writes packets in one of the two formats, through pcapgo.
type packetWriter struct {
	pcap *pcapgo.Writer
	ng   *pcapgo.NgWriter
}

func newPacketWriter(w io.Writer, o *api.CaptureOptions, name string, snaplen int) (*packetWriter, error) {
	if o.Format != api.FormatPcapng {
		pw := pcapgo.NewWriterNanos(w)
		if err := pw.WriteFileHeader(uint32(snaplen), layers.LinkTypeEthernet); err != nil {
			return nil, fmt.Errorf("write pcap header: %w", err)
		}
		return &packetWriter{pcap: pw}, nil
	}
	intf := pcapgo.NgInterface{
		Name: name, Description: "epair end " + name, LinkType: layers.LinkTypeEthernet,
		SnapLength: uint32(snaplen), TimestampResolution: 9,
	}
	ng, err := pcapgo.NewNgWriterInterface(w, intf, pcapgo.NgWriterOptions{
		SectionInfo: pcapgo.NgSectionInfo{Application: "epair capture " + version.Version},
	})
	if err != nil {
		return nil, fmt.Errorf("write pcapng header: %w", err)
	}
	return &packetWriter{ng: ng}, nil
}

func (pw *packetWriter) write(p *epair.Packet) error {
	ci := gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: p.Length}
	if pw.pcap != nil {
		return pw.pcap.WritePacket(ci, p.Data)
	}
	dir := pcapgo.NgEpbFlagDirectionOutbound
	if p.Dir == epair.In {
		dir = pcapgo.NgEpbFlagDirectionInbound
	}
	opts := pcapgo.NgPacketOptions{Flags: &pcapgo.NgEpbFlags{Direction: dir}}
	if p.Dropped {
		opts.Comments = []string{"dropped: " + p.Reason.String()}
	}
	return pw.ng.WritePacketWithOptions(ci, p.Data, opts)
}

// flush hands what pcapgo's pcapng writer buffers on (the pcap one
// buffers nothing).
func (pw *packetWriter) flush() error {
	if pw.ng == nil {
		return nil
	}
	return pw.ng.Flush()
}

// finish ends a pcapng file with the interface's statistics: the frames
// the capture lost are its ifdrop.
func (pw *packetWriter) finish(c *epair.Capture) error {
	if pw.ng == nil {
		return nil
	}
	now := time.Now()
	if err := pw.ng.WriteInterfaceStats(0, pcapgo.NgInterfaceStatistics{
		LastUpdate: now, EndTime: now, PacketsReceived: c.Captured(), PacketsDropped: c.Lost(),
	}); err != nil {
		return err
	}
	return pw.flush()
}

package datapath_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/epair-cni/epair/e2e/harness"
	"github.com/gopacket/gopacket/pcapgo"
)

// captureCmd is a running `epair capture`.
type captureCmd struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	ready  chan struct{}
	done   chan error
}

// startCapture runs `epair capture PAIR args...` writing into out (a file
// or a pipe's end), and waits until the daemon has attached the capture.
func startCapture(t *testing.T, s *setup, out io.Writer, args ...string) *captureCmd {
	t.Helper()
	full := append([]string{"capture", s.pair.B.Name}, args...)
	c := &captureCmd{cmd: exec.Command(harness.Binary(t), append(full, "--socket", s.d.Socket)...),
		ready: make(chan struct{}), done: make(chan error, 1)}
	c.cmd.Stdout = out
	pr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go c.readStderr(pr)
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.done
	})
	select {
	case <-c.ready:
	case err := <-c.done:
		c.done <- err
		t.Fatalf("epair capture ended before capturing: %v\n%s", err, c.log())
	case <-time.After(10 * time.Second):
		t.Fatalf("epair capture did not start\n%s", c.log())
	}
	return c
}

func (c *captureCmd) readStderr(r io.Reader) {
	sc := bufio.NewScanner(r)
	once := sync.Once{}
	for sc.Scan() {
		c.mu.Lock()
		c.stderr.WriteString(sc.Text() + "\n")
		c.mu.Unlock()
		if strings.HasPrefix(sc.Text(), "epair: capturing ") {
			once.Do(func() { close(c.ready) })
		}
	}
	c.done <- c.cmd.Wait()
}

func (c *captureCmd) log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.String()
}

var summaryRE = regexp.MustCompile(`epair: (\d+) frames captured, (\d+) lost`)

// stop sends SIGINT (unless the capture ends by itself) and returns the
// frames captured and lost as the CLI reports them; it must exit 0.
func (c *captureCmd) stop(t *testing.T, signal bool) (captured, lost uint64) {
	t.Helper()
	if signal {
		c.cmd.Process.Signal(syscall.SIGINT)
	}
	var err error
	select {
	case err = <-c.done:
		c.done <- err
	case <-time.After(10 * time.Second):
		t.Fatalf("epair capture did not end\n%s", c.log())
	}
	if err != nil {
		t.Fatalf("epair capture: %v\n%s", err, c.log())
	}
	m := summaryRE.FindStringSubmatch(c.log())
	if m == nil {
		t.Fatalf("no summary on stderr:\n%s", c.log())
	}
	captured, _ = strconv.ParseUint(m[1], 10, 64)
	lost, _ = strconv.ParseUint(m[2], 10, 64)
	return captured, lost
}

// crossed is the frames that crossed the pair both ways between two stats.
func crossed(before, after [2]uint64) uint64 {
	return after[0] - before[0] + after[1] - before[1]
}

func (s *setup) frames(t *testing.T) [2]uint64 {
	st := s.stats(t)
	return [2]uint64{st.A.OPackets, st.B.OPackets}
}

func tcpdump(t *testing.T, file string) string {
	t.Helper()
	out, err := exec.Command("tcpdump", "-nr", file).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -nr %s: %v\n%s", file, err, out)
	}
	return string(out)
}

func packetLines(out string) int {
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if l != "" && !strings.HasPrefix(l, "reading from") {
			n++
		}
	}
	return n
}

func TestCapture(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("tcpdump not installed (hack/install-deps.sh)")
	}
	s := newSetupWith(t, "--ips", ipA+"/24")
	ping(t, s.na, ipB) // ARP resolved: the capture sees ICMP only
	dir := t.TempDir()

	t.Run("tcpdump reads two captures at once, counts match", func(t *testing.T) {
		td := exec.Command("tcpdump", "-nr", "-")
		pw, err := td.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var tdOut bytes.Buffer
		td.Stdout, td.Stderr = &tdOut, &tdOut
		if err := td.Start(); err != nil {
			t.Fatal(err)
		}
		c1 := startCapture(t, s, pw, "-w", "-")
		ng := filepath.Join(dir, "b.pcapng")
		c2 := startCapture(t, s, nil, "--end", "b", "--pcapng", "-w", ng)
		before := s.frames(t)
		ping(t, s.na, ipB)
		after := s.frames(t)
		n1, lost1 := c1.stop(t, true)
		n2, lost2 := c2.stop(t, true)
		pw.Close()
		if err := td.Wait(); err != nil {
			t.Fatalf("tcpdump -nr -: %v\n%s", err, tdOut.String())
		}
		out := tdOut.String()
		t.Logf("tcpdump -nr - of the first capture:\n%s", out)
		want := crossed(before, after)
		if n1 != want || n2 != want || lost1+lost2 != 0 {
			t.Fatalf("captured %d and %d (lost %d, %d), want both %d: the pair's counters delta", n1, n2, lost1, lost2, want)
		}
		if got := packetLines(out); uint64(got) != want {
			t.Fatalf("tcpdump shows %d packets, want %d", got, want)
		}
		for _, w := range []string{"IP " + ipA + " > " + ipB + ": ICMP echo request", "IP " + ipB + " > " + ipA + ": ICMP echo reply"} {
			if strings.Count(out, w) != 3 {
				t.Fatalf("tcpdump shows %q %d times, want 3", w, strings.Count(out, w))
			}
		}
		if got := packetLines(tcpdump(t, ng)); uint64(got) != want {
			t.Fatalf("tcpdump shows %d packets of the pcapng capture of the b end, want %d", got, want)
		}
	})

	t.Run("drops carry their reason", func(t *testing.T) {
		file := filepath.Join(dir, "drops.pcapng")
		c := startCapture(t, s, nil, "--pcapng", "--drops", "-w", file)
		const spoofed = "10.250.0.99"
		harness.MustRun(t, s.na, "ip", "addr", "add", spoofed+"/24", "dev", "eth0")
		harness.Run(t, s.na, "ping", "-c", "1", "-W", "1", "-I", spoofed, ipB) // dropped: no answer
		sendGSO(t, s, 4000, 8000)                                              // segments over the MTU
		c.stop(t, true)
		reasons := dropComments(t, file)
		t.Logf("comments: %v", reasons)
		if !strings.Contains(reasons[spoofed], "dropped: spoof_ip") {
			t.Fatalf("the frame from %s has comments %q, want dropped: spoof_ip", spoofed, reasons[spoofed])
		}
		if !strings.Contains(reasons[ipA], "dropped: drop_mtu") {
			t.Fatalf("the frames from %s have comments %q, want one dropped: drop_mtu", ipA, reasons[ipA])
		}
		tcpdump(t, file)
	})

	t.Run("a deleted pair ends the capture cleanly", func(t *testing.T) {
		file := filepath.Join(dir, "deleted.pcap")
		c := startCapture(t, s, nil, "-w", file)
		ping(t, s.na, ipB)
		if out, err := s.d.Epair("pair", "del", s.pair.B.Name); err != nil {
			t.Fatalf("pair del: %v\n%s", err, out)
		}
		if n, _ := c.stop(t, false); n < 6 {
			t.Fatalf("captured %d frames before the delete, want at least 6 (3 pings)", n)
		}
		if !strings.Contains(c.log(), "the pair was deleted") {
			t.Fatalf("no word of the delete on stderr:\n%s", c.log())
		}
		if got := packetLines(tcpdump(t, file)); got < 6 {
			t.Fatalf("tcpdump reads %d packets of the capture, want at least 6", got)
		}
	})
}

// dropComments reads a pcapng capture back and returns, by IPv4 source
// address, the comments of its packets.
func dropComments(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("read %s: %v", file, err)
	}
	out := map[string]string{}
	for {
		data, _, opts, err := r.ReadPacketDataWithOptions()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("read %s: %v", file, err)
		}
		if len(data) < 34 || data[12] != 0x08 || data[13] != 0 {
			continue
		}
		src := fmt.Sprintf("%d.%d.%d.%d", data[26], data[27], data[28], data[29])
		out[src] += strings.Join(opts.Comments, ";") + ";"
	}
}

// iperf3 runs a 5 s TCP stream from a to b and returns its rate, bit/s.
func iperf3(t *testing.T, s *setup) float64 {
	t.Helper()
	harness.MustRun(t, s.nb, "iperf3", "-s", "-1", "-D", "-B", ipB)
	time.Sleep(200 * time.Millisecond)
	return harness.IperfReceived(t, harness.MustRun(t, s.na, "iperf3", "-c", ipB, "-t", "5", "-J"))
}

// TestCaptureUnderLoad: iperf3 through the pair without and with a
// capture into /dev/null, two rounds each, interleaved.
func TestCaptureUnderLoad(t *testing.T) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("iperf3 not installed (hack/install-deps.sh)")
	}
	s := newSetup(t)
	ping(t, s.na, ipB)
	var off, on float64
	for round := 0; round < 2; round++ {
		r := iperf3(t, s)
		off += r / 2
		devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		c := startCapture(t, s, devnull, "-w", "-")
		before := s.frames(t)
		rc := iperf3(t, s)
		after := s.frames(t)
		n, lost := c.stop(t, true)
		devnull.Close()
		on += rc / 2
		t.Logf("round %d: %.2f Gbit/s without a capture, %.2f with: %d frames captured, %d lost, %d crossed",
			round, r/1e9, rc/1e9, n, lost, crossed(before, after))
		// A few frames (the connections' last FIN and ACK) may cross
		// after the counters were read, before the capture stopped.
		if x := crossed(before, after); n+lost < x || n+lost > x+8 {
			t.Fatalf("captured %d + lost %d, want every frame that crossed (%d) in one or the other", n, lost, x)
		}
	}
	t.Logf("mean: %.2f Gbit/s without a capture, %.2f with (%.2fx)", off/1e9, on/1e9, on/off)
	// The capture's writers need CPU of their own: on two cores that
	// iperf3 and the datapath already fill, and that other tests share,
	// they take some of it (measured 0.62x to 0.95x; a blocked datapath
	// would be far below). With EPAIR_MEASURE=1, on a quiet machine, the
	// bound is the noise of iperf3 itself.
	bound := 0.5
	if os.Getenv("EPAIR_MEASURE") != "" {
		bound = 0.9
	}
	if on < bound*off {
		t.Fatalf("with a capture %.2f Gbit/s, under %.1fx of %.2f without", on/1e9, bound, off/1e9)
	}
}

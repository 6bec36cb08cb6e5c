package containerd

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"strings"
	"time"

	"github.com/epair-cni/epair/e2e/harness"
)

// listening waits until something in the pod listens on the TCP port.
func (s *suite) listening(pod string, port int) error {
	want := fmt.Sprintf(":%d ", port)
	return harness.Poll(5*time.Second, fmt.Sprintf("a listener on port %d in %s", port, pod), func() error {
		out, err := s.exec(pod, "netstat", "-ltn")
		if err != nil {
			return err
		}
		if !strings.Contains(out, want) {
			return fmt.Errorf("netstat -ltn:\n%s", out)
		}
		return nil
	})
}

// tcpTransfer sends 10 MiB of random data from pod a to pod b with busybox
// nc and compares sizes and checksums. busybox nc quits when its stdin
// ends, so the listener's stdin is a FIFO held open read-write (it never
// ends); the listener exits when a closes.
func (s *suite) tcpTransfer(from, to string) (string, error) {
	if _, err := s.exec(from, "dd", "if=/dev/urandom", "of=/tmp/blob", "bs=1024", "count=10240"); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	listener := exec.CommandContext(ctx, "nsenter", s.criArgs("exec", s.ctrs[to], "sh", "-c",
		"rm -f /tmp/recv /tmp/fifo; mkfifo /tmp/fifo; nc -l -p 5001 <>/tmp/fifo >/tmp/recv")...)
	if err := listener.Start(); err != nil {
		return "", fmt.Errorf("listener: %w", err)
	}
	if err := s.listening(to, 5001); err != nil {
		listener.Process.Kill()
		listener.Wait()
		return "", err
	}
	if _, err := s.exec(from, "sh", "-c", "nc "+s.ips[to]+" 5001 </tmp/blob"); err != nil {
		listener.Process.Kill()
		listener.Wait()
		return "", fmt.Errorf("sender nc: %w", err)
	}
	if err := listener.Wait(); err != nil {
		return "", fmt.Errorf("listener did not finish well within 30 s: %w", err)
	}
	sa, err := s.exec(from, "sha256sum", "/tmp/blob")
	if err != nil {
		return "", err
	}
	sb, err := s.exec(to, "sha256sum", "/tmp/recv")
	if err != nil {
		return "", err
	}
	size, err := s.exec(to, "wc", "-c", "/tmp/recv")
	if err != nil {
		return "", err
	}
	sa, sb, size = firstField(sa), firstField(sb), firstField(size)
	msg := fmt.Sprintf("sent sha256 %s, received %s bytes sha256 %s", sa, size, sb)
	if sa != sb || size != "10485760" {
		return msg, fmt.Errorf("transfer differs: %s", msg)
	}
	return msg, nil
}

func firstField(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return ""
}

// iperf runs a one-shot iperf3 server in pod to and a client -J for secs
// seconds in pod from; it returns the client's JSON.
func (s *suite) iperf(from, to string, secs int) (string, error) {
	if _, err := s.exec(to, "iperf3", "-s", "-1", "-D", "-B", s.ips[to]); err != nil {
		return "", err
	}
	if err := s.listening(to, 5201); err != nil {
		return "", err
	}
	return s.exec(from, "iperf3", "-c", s.ips[to], "-t", fmt.Sprint(secs), "-J")
}

// shapedVerdict judges an iperf3 -J client's run from a pod shaped at rate
// bits/s with a bucket of burst bits, which starts full: the first burst
// bits go unshaped (containerd passes math.MaxUint32 bits, about 512 MiB,
// for the annotations). The rate is the mean of the one-second intervals
// that start at least 1 s after the first one under 3 times rate
// (sender-side intervals are uneven while the socket buffer fills, the
// mean is not); it must be within 25 % of rate, over at least 3 intervals.
// It returns the intervals and the mean, as shaped_iperf_verdict in
// e2e/lib.sh does for the kubelet suite.
func shapedVerdict(out string, rate, burst float64) (string, error) {
	var v struct {
		Intervals []struct {
			Sum struct {
				Start         float64 `json:"start"`
				Bytes         float64 `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
				Retransmits   int     `json:"retransmits"`
			} `json:"sum"`
		} `json:"intervals"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || len(v.Intervals) == 0 {
		return "", fmt.Errorf("iperf3 -J output: %v\n%s", err, out)
	}
	t0 := 1e9
	var mbits, retr []string
	for _, iv := range v.Intervals {
		if iv.Sum.BitsPerSecond < 3*rate {
			t0 = math.Min(t0, iv.Sum.Start)
		}
		mbits = append(mbits, fmt.Sprint(int(iv.Sum.BitsPerSecond/1e6)))
		retr = append(retr, fmt.Sprint(iv.Sum.Retransmits))
	}
	var sum float64
	var n int
	for _, iv := range v.Intervals {
		if iv.Sum.Start >= t0+1 {
			sum += iv.Sum.BitsPerSecond
			n++
		}
	}
	mean := "n/a"
	if n > 0 {
		mean = fmt.Sprintf("%.2f", sum/float64(n)/1e6)
	}
	msg := fmt.Sprintf("intervals Mbit/s: %s (retransmits %s); %d MiB in the first second (burst %d MiB); shaped from %g s; shaped mean over %d intervals: %s Mbit/s",
		strings.Join(mbits, " "), strings.Join(retr, " "), int(v.Intervals[0].Sum.Bytes/1048576), int(burst/8/1048576), t0, n, mean)
	if n < 3 || math.Abs(sum/float64(n)-rate) > 0.25*rate {
		return msg, fmt.Errorf("not shaped near %g bit/s: %s", rate, msg)
	}
	return msg, nil
}

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestMain runs the command itself when the test binary is started as
// netbench (see netbench below), so the tests drive the real command line.
func TestMain(m *testing.M) {
	if os.Getenv("NETBENCH_TEST_MAIN") == "1" {
		os.Args = append([]string{"netbench"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// netbench starts this test binary as netbench with args.
func netbench(args ...string) *exec.Cmd {
	c := exec.Command(os.Args[0], args...)
	c.Env = append(os.Environ(), "NETBENCH_TEST_MAIN=1")
	c.Stderr = os.Stderr
	return c
}

// TestUDPBlastIntoSink sends over loopback, IPv4 and IPv6, with the batch
// calls and checks both ends' JSON: datagrams sent, and the sink received
// them (at most what was sent: a full receive buffer drops).
func TestUDPBlastIntoSink(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:19470", "[::1]:19471"} {
		t.Run(addr, func(t *testing.T) {
			sink := netbench("udp-sink", "-listen", addr, "-duration", "5s", "-idle", "300ms")
			sinkOut, err := sink.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := sink.Start(); err != nil {
				t.Fatal(err)
			}
			var recv map[string]float64
			dec := json.NewDecoder(sinkOut)
			// Sent to a sink not bound yet, a batch fails (ECONNREFUSED)
			// and counts as send_errors: give the sink a moment.
			time.Sleep(200 * time.Millisecond)
			sent := runJSON(t, netbench("udp-blast", "-to", addr, "-duration", "1s", "-senders", "2", "-batch", "8"))
			if err := dec.Decode(&recv); err != nil {
				t.Fatalf("sink output: %v", err)
			}
			if err := sink.Wait(); err != nil {
				t.Fatalf("sink: %v", err)
			}
			if sent["sent"] == 0 {
				t.Errorf("blast: %v", sent)
			}
			if recv["received"] == 0 || recv["received"] > sent["sent"] {
				t.Errorf("sink: %v, blast sent %v", recv, sent["sent"])
			}
		})
	}
}

// runJSON runs c and decodes the line of JSON it printed.
func runJSON(t *testing.T, c *exec.Cmd) map[string]float64 {
	t.Helper()
	out, err := c.Output()
	if err != nil {
		t.Fatalf("%v: %v", c.Args, err)
	}
	m := map[string]float64{}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	return m
}

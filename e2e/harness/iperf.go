package harness

import (
	"encoding/json"
	"testing"
)

// IperfResult is what the tests read of `iperf3 -c ... -J`.
type IperfResult struct {
	Received    float64 // bit/s, as the receiver measured
	Retransmits int     // TCP retransmits on the sender
}

// ParseIperf reads the output of `iperf3 -c ... -J`; it fails the test on
// anything else.
func ParseIperf(t *testing.T, out string) IperfResult {
	t.Helper()
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.End.SumReceived.BitsPerSecond == 0 {
		t.Fatalf("iperf3 output: %v\n%s", err, out)
	}
	return IperfResult{Received: res.End.SumReceived.BitsPerSecond, Retransmits: res.End.SumSent.Retransmits}
}

// IperfReceived returns the rate the receiver measured, in bit/s, from
// the output of `iperf3 -c ... -J`.
func IperfReceived(t *testing.T, out string) float64 {
	t.Helper()
	return ParseIperf(t, out).Received
}

package harness

import (
	"encoding/json"
	"testing"
)

// IperfReceived returns the rate the receiver measured, in bit/s, from
// the output of `iperf3 -c ... -J`; it fails the test on anything else.
func IperfReceived(t *testing.T, out string) float64 {
	t.Helper()
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.End.SumReceived.BitsPerSecond == 0 {
		t.Fatalf("iperf3 output: %v\n%s", err, out)
	}
	return res.End.SumReceived.BitsPerSecond
}

package cni

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/epair-cni/epair/pkg/api"
)

func code(err error) uint {
	var te *types.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

func TestLoadConfDefaults(t *testing.T) {
	c, err := loadConf([]byte(`{"cniVersion":"1.1.0","name":"n","type":"epair","ipam":{"type":"host-local"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != ModeRouted || c.MTU != 1500 || c.Socket != "/run/epair/epair.sock" || c.Bridge != "" {
		t.Fatalf("defaults: %+v", c)
	}
	c, err = loadConf([]byte(`{"cniVersion":"1.1.0","name":"n","type":"epair","mode":"bridge","ipam":{"type":"static"}}`))
	if err != nil || c.Bridge != DefaultBridge {
		t.Fatalf("bridge default: %+v %v", c, err)
	}
}

func TestLoadConfRejects(t *testing.T) {
	cases := []struct {
		conf string
		code uint
		msg  string
	}{
		{`{bad`, types.ErrDecodingFailure, "cannot parse"},
		{`{"name":"n","mtu":"big","ipam":{"type":"host-local"}}`, types.ErrDecodingFailure, "cannot parse"},
		{`{"name":"n"}`, types.ErrInvalidNetworkConfig, "ipam.type is missing"},
		{`{"name":"n","ipam":{"type":"../../bin/sh"}}`, types.ErrInvalidNetworkConfig, "not a plugin name"},
		{`{"name":"n","mode":"weird","ipam":{"type":"host-local"}}`, types.ErrInvalidNetworkConfig, "mode"},
		{`{"name":"n","mtu":10,"ipam":{"type":"host-local"}}`, types.ErrInvalidNetworkConfig, "out of range"},
		{`{"name":"n","mtu":70000,"ipam":{"type":"host-local"}}`, types.ErrInvalidNetworkConfig, "out of range"},
		{`{"name":"n","socket":"run/x.sock","ipam":{"type":"host-local"}}`, types.ErrInvalidNetworkConfig, "absolute"},
		{`{"name":"n","socket":"/run/../x.sock","ipam":{"type":"host-local"}}`, types.ErrInvalidNetworkConfig, "clean"},
		{`{"name":"n","mode":"bridge","bridge":"a/b","ipam":{"type":"host-local"}}`, types.ErrInvalidNetworkConfig, "bridge"},
	}
	for _, tc := range cases {
		_, err := loadConf([]byte(tc.conf))
		if code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: got %v (code %d), want code %d mentioning %q", tc.conf, err, code(err), tc.code, tc.msg)
		}
	}
}

func TestCheckEnv(t *testing.T) {
	for _, a := range []*skel.CmdArgs{
		{IfName: "", Netns: "/proc/self/ns/net"},
		{IfName: "eth0/1", Netns: "/proc/self/ns/net"},
		{IfName: "averyveryverylongname", Netns: "/proc/self/ns/net"},
		{IfName: "eth0", Netns: ""},
		{IfName: "eth0", Netns: "/etc/hostname"},
		{IfName: "eth0", Netns: "/nonexistent/netns"},
	} {
		if err := checkEnv(a, true); code(err) != types.ErrInvalidEnvironmentVariables {
			t.Errorf("%+v: got %v, want code 4", a, err)
		}
	}
	if err := checkEnv(&skel.CmdArgs{IfName: "eth0", Netns: "/proc/self/ns/net"}, true); err != nil {
		t.Errorf("a valid environment was refused: %v", err)
	}
}

func TestMACFromRuntimeConfigOrArgs(t *testing.T) {
	c, _ := loadConf([]byte(`{"name":"n","ipam":{"type":"host-local"},"runtimeConfig":{"mac":"02:00:00:00:00:01"}}`))
	if m, err := macFor(c, &skel.CmdArgs{Args: "MAC=02:00:00:00:00:02"}); err != nil || m != "02:00:00:00:00:01" {
		t.Fatalf("runtimeConfig mac must win: %q %v", m, err)
	}
	c, _ = loadConf([]byte(`{"name":"n","ipam":{"type":"host-local"}}`))
	if m, err := macFor(c, &skel.CmdArgs{Args: "IgnoreUnknown=1;K8S_POD_NAME=x;MAC=02:00:00:00:00:02"}); err != nil || m != "02:00:00:00:00:02" {
		t.Fatalf("CNI_ARGS MAC: %q %v", m, err)
	}
	if _, err := macFor(c, &skel.CmdArgs{Args: "FOO=1"}); code(err) != types.ErrInvalidEnvironmentVariables {
		t.Fatalf("unknown CNI_ARGS key without IgnoreUnknown: %v", err)
	}
}

// TestModeKeysAnyCase: encoding/json matches keys to fields without regard
// to case, so the bridge-key checks must too.
func TestModeKeysAnyCase(t *testing.T) {
	for _, conf := range []string{
		`{"name":"n","BRIDGE":"x","ipam":{"type":"host-local"}}`,
		`{"name":"n","IsGateway":true,"ipam":{"type":"host-local"}}`,
		`{"name":"n","mode":"bridge","VlanTrunk":[{"id":5}],"ipam":{"type":"host-local"}}`,
		`{"name":"n","mode":"bridge","enabledad":false,"ENABLEDAD":true,"ipam":{"type":"host-local"}}`,
	} {
		if c, err := loadConf([]byte(conf)); code(err) != types.ErrInvalidNetworkConfig {
			t.Errorf("%s: got %+v %v, want code 7", conf, c, err)
		}
	}
}

// TestPrevResultNullEntries: a null interface, address or route in
// prevResult is a decode error (code 6), not a nil the CNI library's
// conversion (from 0.4.0) or CHECK dereferences.
func TestPrevResultNullEntries(t *testing.T) {
	for _, v := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		for _, k := range []string{"interfaces", "ips", "IPs", "routes"} {
			conf := `{"cniVersion":"` + v + `","name":"n","ipam":{"type":"host-local"},"prevResult":{"cniVersion":"` + v + `","` + k + `":[null]}}`
			c, err := loadConf([]byte(conf))
			if err != nil {
				t.Fatalf("%s: %v", conf, err)
			}
			if res, err := prevResult(c); code(err) != types.ErrDecodingFailure {
				t.Errorf("%s: got %+v %v, want code 6", conf, res, err)
			}
		}
	}
}

func TestAntiSpoofingKeyDefaultsOn(t *testing.T) {
	for conf, want := range map[string]bool{
		`{"cniVersion":"1.1.0","name":"n","type":"epair","ipam":{"type":"host-local"}}`:                      true,
		`{"cniVersion":"1.1.0","name":"n","type":"epair","antiSpoofing":true,"ipam":{"type":"host-local"}}`:  true,
		`{"cniVersion":"1.1.0","name":"n","type":"epair","antiSpoofing":false,"ipam":{"type":"host-local"}}`: false,
	} {
		c, err := loadConf([]byte(conf))
		if err != nil {
			t.Fatal(err)
		}
		if c.antiSpoofing() != want {
			t.Errorf("%s: antiSpoofing %v, want %v", conf, c.antiSpoofing(), want)
		}
	}
}

func TestBandwidthStaticKeysAndRuntimeConfig(t *testing.T) {
	const base = `"name":"n","type":"epair","ipam":{"type":"host-local"}`
	rt := `"runtimeConfig":{"bandwidth":{"ingressRate":1000,"ingressBurst":100,"egressRate":2000,"egressBurst":200}}`
	cases := []struct {
		conf string
		want *api.Bandwidth
	}{
		{`{` + base + `}`, nil},
		{`{` + base + `,` + rt + `}`, &api.Bandwidth{IngressRate: 1000, IngressBurst: 100, EgressRate: 2000, EgressBurst: 200}},
		{`{` + base + `,"egressRate":8000000,"egressBurst":80000}`, &api.Bandwidth{EgressRate: 8000000, EgressBurst: 80000}},
		// The static keys win over runtimeConfig, as in the reference
		// bandwidth plugin.
		{`{` + base + `,"egressRate":5,"egressBurst":6,` + rt + `}`, &api.Bandwidth{EgressRate: 5, EgressBurst: 6}},
		{`{` + base + `,"runtimeConfig":{"bandwidth":{}}}`, nil},
	}
	for _, tc := range cases {
		c, err := loadConf([]byte(tc.conf))
		if err != nil {
			t.Fatalf("%s: %v", tc.conf, err)
		}
		if got := c.bandwidth(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: bandwidth %+v, want %+v", tc.conf, got, tc.want)
		}
	}
}

func TestBandwidthRateNeedsBurst(t *testing.T) {
	for _, conf := range []string{
		`{"name":"n","ipam":{"type":"host-local"},"ingressRate":1000}`,
		`{"name":"n","ipam":{"type":"host-local"},"runtimeConfig":{"bandwidth":{"egressBurst":1000}}}`,
	} {
		if _, err := loadConf([]byte(conf)); code(err) != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), "burst") {
			t.Errorf("%s: %v, want an invalid-config error about the burst", conf, err)
		}
	}
}

// TestPodFromArgs: the K8S_POD_* keys kubelet sends make the pod; none
// makes none; a value that breaks Kubernetes' name rules, or a namespace
// without a name, is code 4.
func TestPodFromArgs(t *testing.T) {
	kubelet := "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=" +
		strings.Repeat("ab", 32) + ";K8S_POD_UID=0c8f5e1c-5b8e-4d0e-9a0e-3f1f0b0a0c0d"
	p, err := podFor(&skel.CmdArgs{Args: kubelet})
	if err != nil || p == nil || p.String() != "default/web-0" || p.UID != "0c8f5e1c-5b8e-4d0e-9a0e-3f1f0b0a0c0d" || len(p.InfraContainerID) != 64 {
		t.Fatalf("kubelet's CNI_ARGS: %+v, %v", p, err)
	}
	for _, a := range []string{"", "IgnoreUnknown=1;FOO=bar", "MAC=02:00:00:00:00:02"} {
		if p, err := podFor(&skel.CmdArgs{Args: a}); err != nil || p != nil {
			t.Errorf("%q: pod %+v, %v; want none", a, p, err)
		}
	}
	for _, a := range []string{
		"K8S_POD_NAMESPACE=default",
		"K8S_POD_NAME=web-0",
		"K8S_POD_NAMESPACE=Default;K8S_POD_NAME=web-0",
		"K8S_POD_NAMESPACE=default;K8S_POD_NAME=web_0",
		"K8S_POD_NAMESPACE=default;K8S_POD_NAME=" + strings.Repeat("a", 254),
		"K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=a b",
		"K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;FOO=1",
	} {
		if _, err := podFor(&skel.CmdArgs{Args: a}); code(err) != types.ErrInvalidEnvironmentVariables {
			t.Errorf("%q: %v, want code 4", a, err)
		}
	}
}

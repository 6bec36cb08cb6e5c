package cni

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/epair"
)

// prevResults are results as a runtime passes them in CHECK, one per
// result version epair may see.
var prevResults = map[string]string{
	"0.3.1": `{"cniVersion":"0.3.1","interfaces":[{"name":"epair0b","mac":"02:00:00:00:00:0b"},{"name":"eth0","mac":"02:00:00:00:00:0a","sandbox":"/var/run/netns/p"}],
		"ips":[{"version":"4","interface":1,"address":"10.22.0.5/16","gateway":"10.22.0.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}`,
	"0.4.0": `{"cniVersion":"0.4.0","interfaces":[{"name":"epair0b","mac":"02:00:00:00:00:0b"},{"name":"eth0","mac":"02:00:00:00:00:0a","sandbox":"/var/run/netns/p"}],
		"ips":[{"version":"4","interface":1,"address":"10.22.0.5/16"},{"version":"6","interface":1,"address":"fd00:22::5/64"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.22.0.1"},{"dst":"::/0"}]}`,
	"1.0.0": `{"cniVersion":"1.0.0","interfaces":[{"name":"epair0b","mac":"02:00:00:00:00:0b"},{"name":"eth0","mac":"02:00:00:00:00:0a","sandbox":"/var/run/netns/p","mtu":1500}],
		"ips":[{"interface":1,"address":"10.22.0.5/16","gateway":"10.22.0.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{"nameservers":["10.96.0.10"]}}`,
	"1.1.0": `{"cniVersion":"1.1.0","interfaces":[{"name":"epair0b","mac":"02:00:00:00:00:0b"},{"name":"eth0","mac":"02:00:00:00:00:0a","sandbox":"/var/run/netns/p","socketPath":"/x","pciID":"0000:00:01.0"}],
		"ips":[{"interface":1,"address":"fd00:22::5/64","gateway":"fd00:22::1"}],"routes":[{"dst":"::/0","mtu":1400,"advmss":1360,"priority":10,"table":100,"scope":0}]}`,
}

// fuzzConfigs are the seed configs: the shipped conflists' epair entries,
// bridge mode with the bridge plugin's keys, prevResult of each version,
// runtimeConfig as a runtime fills it, and configs loadConf refuses.
func fuzzConfigs(f *testing.F) []string {
	seeds := []string{
		`{"cniVersion":"1.1.0","name":"n","type":"epair","ipam":{"type":"host-local"}}`,
		`{"cniVersion":"1.0.0","name":"b","type":"epair","mode":"bridge","bridge":"cni0","isGateway":true,"isDefaultGateway":true,"forceAddress":true,
			"hairpinMode":true,"vlan":100,"preserveDefaultVlan":false,"ipMasq":true,"ipMasqBackend":"nftables","mtu":9000,"ipam":{"type":"static"}}`,
		`{"cniVersion":"1.0.0","name":"b","type":"epair","mode":"bridge","promiscMode":true,"macspoofchk":false,"enabledad":false,
			"disableContainerInterface":false,"portIsolation":false,"vlanTrunk":null,"ipam":{"type":"host-local"}}`,
		`{"cniVersion":"1.0.0","name":"b","type":"epair","mode":"bridge","vlanTrunk":[{"id":5}],"ipam":{"type":"host-local"}}`,
		`{"cniVersion":"1.0.0","name":"b","type":"epair","mode":"bridge","macspoofchk":true,"ipam":{"type":"host-local"}}`,
		`{"cniVersion":"1.0.0","name":"b","type":"epair","mode":"bridge","bridge":"averyverylongbr","vlan":4094,"ipam":{"type":"host-local"}}`,
		`{"cniVersion":"1.0.0","name":"r","type":"epair","mode":"routed","isGateway":true,"ipam":{"type":"host-local"}}`,
		`{"cniVersion":"1.1.0","name":"r","type":"epair","ipMasqBackend":"pf","ipam":{"type":"host-local"}}`,
		`{"cniVersion":"1.1.0","name":"r","type":"epair","socket":"/run/epair/../x.sock","ipam":{"type":"host-local"}}`,
		`{"cniVersion":"1.1.0","name":"r","type":"epair","ipam":{"type":".."}}`,
		`{"cniVersion":"1.1.0","name":"r","type":"epair","mtu":67,"ipam":{"type":"host-local"}}`,
		`{"cniVersion":"1.1.0","name":"r","type":"epair","mtu":65522,"ipam":{"type":"host-local"}}`,
		`{"cniVersion":"1.1.0","name":"r","type":"epair","ipam":{"type":"host-local"},"runtimeConfig":{"mac":"02:00:00:00:00:01",
			"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}],"bandwidth":{"ingressRate":1000,"ingressBurst":100,"egressRate":1000,"egressBurst":100}}}`,
		`{"cniVersion":"1.1.0","name":"r","type":"epair","ipam":{"type":"host-local"},"runtimeConfig":{"mac":"01:00:5e:00:00:01"}}`,
		`{"cniVersion":"1.1.0","name":"r","type":"epair","ipam":{"type":"host-local"},"runtimeConfig":{"mac":7}}`,
		`{"cniVersion":"1.1.0","name":"r","type":"epair","ipam":{"type":"host-local"},"prevResult":null}`,
		`{"cniVersion":"1.1.0","name":"r","type":"epair","ipam":{"type":"host-local"},"prevResult":{"cniVersion":"1.1.0","ips":[null],"interfaces":[null],"routes":[null]}}`,
		`{"cniVersion":"0.4.0","name":"r","type":"epair","ipam":{"type":"host-local"},"prevResult":{"ips":[{"version":"4","address":"10.0.0.1/8","interface":-1}]}}`,
		`{"cniVersion":"9.9.9","name":"r","type":"epair","ipam":{"type":"host-local"},"prevResult":{}}`,
		`{"name":"n","mode":"weird","ipam":{"type":"host-local"}}`,
		`{"name":"n","mtu":"big","ipam":{"type":"host-local"}}`,
		`[]`, `null`, `{bad`, ``,
	}
	for v, res := range prevResults {
		seeds = append(seeds,
			`{"cniVersion":"`+v+`","name":"r","type":"epair","ipam":{"type":"host-local"},"prevResult":`+res+`}`,
			`{"cniVersion":"`+v+`","name":"b","type":"epair","mode":"bridge","isGateway":true,"ipam":{"type":"host-local"},"prevResult":`+res+`,
				"runtimeConfig":{"mac":"02:00:00:00:00:aa","portMappings":[],"bandwidth":{}}}`)
	}
	// The epair entries of the shipped conflists, with the list's name and
	// version, as a runtime passes them.
	files, _ := filepath.Glob("../../conf/*.conflist")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		var list struct {
			CNIVersion string           `json:"cniVersion"`
			Name       string           `json:"name"`
			Plugins    []map[string]any `json:"plugins"`
		}
		if err := json.Unmarshal(b, &list); err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		for _, p := range list.Plugins {
			if p["type"] == "epair" {
				p["cniVersion"], p["name"] = list.CNIVersion, list.Name
				b, err := json.Marshal(p)
				if err != nil {
					f.Fatal(err)
				}
				seeds = append(seeds, string(b))
			}
		}
	}
	return seeds
}

// FuzzLoadConf feeds arbitrary network configs (and CNI_ARGS) to loadConf,
// then to what ADD and CHECK do with the config before they touch the
// system: macFor, and prevResult with the comparison of its interfaces.
// Property: nothing panics; every error is a *types.Error, with code 6
// (decode) or 7 (invalid) from loadConf and prevResult, 4 or 7 from macFor,
// 105 from checkInterfaces; an accepted config keeps loadConf's promises:
// mode routed or bridge, MTU in api.MinMTU..api.MaxMTU, socket absolute
// and clean, IPAM type a bare plugin name, a valid bridge name in bridge
// mode and no bridge key in routed mode; an accepted MAC is a unicast
// Ethernet address; an accepted prevResult has no null entry that CHECK
// would dereference.
func FuzzLoadConf(f *testing.F) {
	for _, s := range fuzzConfigs(f) {
		for _, a := range []string{"", "IgnoreUnknown=1;K8S_POD_NAME=x;MAC=02:00:00:00:00:02", "MAC=ff:ff:ff:ff:ff:ff", "FOO=1"} {
			f.Add([]byte(s), a)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, cniArgs string) {
		c, err := loadConf(data)
		if err != nil {
			wantCode(t, "loadConf", err, types.ErrDecodingFailure, types.ErrInvalidNetworkConfig)
			if c != nil {
				t.Fatalf("loadConf returned a config with the error %v", err)
			}
			return
		}
		checkConfInvariants(t, c)

		args := &skel.CmdArgs{ContainerID: "c", Netns: "/var/run/netns/p", IfName: "eth0", Args: cniArgs, StdinData: data}
		if mac, err := macFor(c, args); err != nil {
			wantCode(t, "macFor", err, types.ErrInvalidEnvironmentVariables, types.ErrInvalidNetworkConfig)
		} else if mac != "" {
			if _, err := epair.ParseMAC(mac); err != nil {
				t.Fatalf("macFor accepted %q: %v", mac, err)
			}
			if c.RuntimeConfig.MAC != "" && mac != c.RuntimeConfig.MAC {
				t.Fatalf("macFor gave %q, runtimeConfig.mac is %q", mac, c.RuntimeConfig.MAC)
			}
		}

		prev, err := prevResult(c)
		if err != nil {
			wantCode(t, "prevResult", err, types.ErrDecodingFailure, types.ErrInvalidNetworkConfig)
			return
		}
		checkResult(t, prev)
		pair := &api.Pair{Unit: 0,
			A: api.End{Name: "eth0", MAC: "02:00:00:00:00:0a", Netns: "/var/run/netns/p"},
			B: api.End{Name: "epair0b", MAC: "02:00:00:00:00:0b"}}
		if err := checkInterfaces(pair, args, prev); err != nil {
			wantCode(t, "checkInterfaces", err, ErrMismatch)
		}
	})
}

func wantCode(t *testing.T, what string, err error, codes ...uint) {
	t.Helper()
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("%s: error %T %v is not a *types.Error", what, err, err)
	}
	for _, c := range codes {
		if te.Code == c {
			return
		}
	}
	t.Fatalf("%s: error code %d (%v), want one of %v", what, te.Code, err, codes)
}

func checkConfInvariants(t *testing.T, c *NetConf) {
	t.Helper()
	switch c.Mode {
	case ModeBridge:
		if err := epair.ValidIfName(c.Bridge); err != nil {
			t.Fatalf("bridge mode with bridge %q: %v", c.Bridge, err)
		}
		if c.Vlan < 0 || c.Vlan > 4094 || c.HairpinMode && c.PromiscMode {
			t.Fatalf("bridge keys accepted: vlan %d hairpin %v promisc %v", c.Vlan, c.HairpinMode, c.PromiscMode)
		}
		if c.IsDefaultGateway && !c.IsGateway {
			t.Fatal("isDefaultGateway without isGateway")
		}
	case ModeRouted:
		if c.BridgeKeys != (BridgeKeys{}) || c.Bridge != "" {
			t.Fatalf("routed mode kept bridge keys: bridge %q %+v", c.Bridge, c.BridgeKeys)
		}
	default:
		t.Fatalf("mode %q accepted", c.Mode)
	}
	if c.MTU < api.MinMTU || c.MTU > api.MaxMTU {
		t.Fatalf("mtu %d accepted", c.MTU)
	}
	if !filepath.IsAbs(c.Socket) || filepath.Clean(c.Socket) != c.Socket {
		t.Fatalf("socket %q accepted", c.Socket)
	}
	if n := c.IPAM.Type; n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\\\x00") {
		t.Fatalf("ipam.type %q accepted", n)
	}
	if b := c.IPMasqBackend; b != nil && *b != "iptables" && *b != "nftables" {
		t.Fatalf("ipMasqBackend %q accepted", *b)
	}
}

// checkResult: CHECK reads every interface, address and route of the
// result through its pointer (checkInterfaces, checkHost, and the plugins
// library's ValidateExpectedInterfaceIPs and ValidateExpectedRoute).
func checkResult(t *testing.T, r *current.Result) {
	t.Helper()
	for i, x := range r.Interfaces {
		if x == nil {
			t.Fatalf("prevResult interface %d is null", i)
		}
	}
	for i, x := range r.IPs {
		if x == nil {
			t.Fatalf("prevResult ip %d is null", i)
		}
	}
	for i, x := range r.Routes {
		if x == nil {
			t.Fatalf("prevResult route %d is null", i)
		}
	}
}

package cli

import (
	"bytes"
	"context"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/epair-cni/epair/pkg/kube/kubeopts"
)

func TestDaemonKubernetesLeanBuild(t *testing.T) {
	if Kubernetes != nil {
		t.Skip("built with the Kubernetes agent")
	}
	var out, errb bytes.Buffer
	code := Main([]string{"daemon", "--kubernetes", "--node-name", "n1"}, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "this build has no Kubernetes support; use the image's /usr/local/bin/epair") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

// stubKubernetes records the options the agent would get, without running it.
func stubKubernetes(t *testing.T) *kubeopts.Options {
	t.Helper()
	got := &kubeopts.Options{}
	old := Kubernetes
	Kubernetes = func(_ context.Context, o kubeopts.Options, _ func(context.Context, func()) error) error {
		*got = o
		return nil
	}
	t.Cleanup(func() { Kubernetes = old })
	return got
}

func TestDaemonKubernetesFlags(t *testing.T) {
	got := stubKubernetes(t)
	t.Setenv("NODE_NAME", "from-env")
	var out, errb bytes.Buffer
	code := Main([]string{"daemon", "--kubernetes", "--socket", "/run/x/epair.sock",
		"--cluster-cidr", "10.244.0.0/16, fd00:244::/56", "--service-cidr", "10.96.0.1/12",
		"--mtu", "1450", "--masquerade=false", "--log-level", "error"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	want := kubeopts.Options{
		NodeName: "from-env", CNIBinDir: "/host/opt/cni/bin", CNIConfDir: "/host/etc/cni/net.d",
		CNIConfName: "10-epair.conflist", CNIInstallSrc: "/opt/epair/cni", CNISocket: "/run/x/epair.sock",
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:244::/56")},
		ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")},
		MTU:          1450, HealthAddr: "127.0.0.1:9807",
	}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("options\n got %+v\nwant %+v", *got, want)
	}
}

func TestDaemonKubernetesBadFlags(t *testing.T) {
	stubKubernetes(t)
	t.Setenv("NODE_NAME", "")
	for _, args := range [][]string{
		{"--kubernetes"}, // no node name
		{"--kubernetes", "--node-name", "n", "--cluster-cidr", "10.0.0.0"},
		{"--kubernetes", "--node-name", "n", "--service-cidr", "x"},
		{"--kubernetes", "--node-name", "n", "--mtu", "20"},
		{"--kubernetes", "--node-name", "n", "--cni-conf-name", "../10-epair.conflist"},
		{"--kubernetes", "--node-name", "n", "--cni-conf-name", "10-epair.conf"},
		{"--kubernetes", "--node-name", "n", "--cni-bin-dir", "opt/cni/bin"},
		{"--kubernetes", "--node-name", "n", "--cni-ipam-data-dir", "data"},
	} {
		var out, errb bytes.Buffer
		if code := Main(append([]string{"daemon"}, args...), &out, &errb); code != 2 {
			t.Errorf("%v: exit %d (%s), want 2", args, code, errb.String())
		}
	}
}

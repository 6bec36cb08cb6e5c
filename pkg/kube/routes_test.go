package kube

import (
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// node makes a Node with podCIDRs and InternalIPs (and one ExternalIP, which
// must never be used).
func node(name string, cidrs []string, ips ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	n.Spec.PodCIDRs = cidrs
	if len(cidrs) > 0 {
		n.Spec.PodCIDR = cidrs[0]
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeExternalIP, Address: "203.0.113.9"}, {Type: corev1.NodeHostName, Address: name}}
	for _, ip := range ips {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	return n
}

func rt(dst, via, n string) Route {
	return Route{Dst: netip.MustParsePrefix(dst), Via: netip.MustParseAddr(via), Node: n}
}

func TestDesiredRoutes(t *testing.T) {
	legacy := node("legacy", nil, "192.168.0.6")
	legacy.Spec.PodCIDR = "10.244.6.0/24"
	nodes := []*corev1.Node{
		node("self", []string{"10.244.0.0/24"}, "192.168.0.1"),
		node("b", []string{"10.244.2.0/24"}, "192.168.0.2"),
		node("a", []string{"10.244.1.0/24", "fd00:244:1::/64"}, "192.168.0.11", "fd00::11"),
		node("waiting", nil, "192.168.0.4"),
		node("noip", []string{"10.244.5.0/24"}),
		node("v4only", []string{"10.244.7.0/24", "fd00:244:7::/64"}, "192.168.0.7"),
		node("garbage", []string{"not-a-cidr"}, "192.168.0.8"),
		legacy,
	}
	routes, skips := DesiredRoutes("self", nodes)
	want := []Route{
		rt("10.244.1.0/24", "192.168.0.11", "a"),
		rt("10.244.2.0/24", "192.168.0.2", "b"),
		rt("10.244.6.0/24", "192.168.0.6", "legacy"),
		rt("10.244.7.0/24", "192.168.0.7", "v4only"),
		rt("fd00:244:1::/64", "fd00::11", "a"),
	}
	if !reflect.DeepEqual(routes, want) {
		t.Errorf("routes\n got %v\nwant %v", routes, want)
	}
	wantSkips := []Skip{
		{"noip", "no InternalIP"},
		{"v4only", "no InternalIP of the family of podCIDR fd00:244:7::/64"},
		{"garbage", `podCIDR "not-a-cidr" is not a CIDR`},
	}
	if !reflect.DeepEqual(skips, wantSkips) {
		t.Errorf("skips\n got %v\nwant %v", skips, wantSkips)
	}
}

func TestDesiredRoutesAlone(t *testing.T) {
	routes, skips := DesiredRoutes("self", []*corev1.Node{node("self", []string{"10.244.0.0/24"}, "192.168.0.1")})
	if len(routes) != 0 || len(skips) != 0 {
		t.Errorf("single node: routes %v skips %v", routes, skips)
	}
}

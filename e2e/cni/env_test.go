package cni_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"
	"github.com/epair-cni/epair/e2e/harness"
	"github.com/epair-cni/epair/pkg/api"
	"github.com/vishvananda/netlink"
)

// env is one fake node: a host namespace where the runtime (libcni) runs
// the plugins and where the host side of every attachment belongs, a daemon
// (in that namespace or in one of its own, see placement), and a host-local
// data dir.
type env struct {
	// host is the runtime's namespace: the plugins run there, and the b
	// ends, host routes and bridges must be there.
	host ns.NetNS
	// daemonNS is where the daemon runs: host itself, or apart from it.
	daemonNS ns.NetNS
	d        *harness.Daemon
	cni      *harness.CNI
	dataDir  string
	ipv6     bool
}

// placement is where the runtime runs the plugin relative to the daemon.
type placement struct {
	name string
	// apart: the runtime's namespace is not the daemon's. The CNI spec
	// runs the plugin in the runtime's namespace, and that is where the
	// host side goes, wherever the daemon is.
	apart bool
}

var placements = []placement{{"beside-daemon", false}, {"runtime-netns", true}}

// eachPlacement runs fn (in parallel) with the plugin executed in the
// daemon's namespace and with it executed in a runtime namespace apart from
// the daemon's: every case of the suite runs both ways.
func eachPlacement(t *testing.T, fn func(t *testing.T, pl placement)) {
	for _, pl := range placements {
		t.Run(pl.name, func(t *testing.T) {
			t.Parallel()
			fn(t, pl)
		})
	}
}

var ids atomic.Int64

func newEnv(t *testing.T, pl placement, ipv6 bool) *env {
	t.Helper()
	return newEnvDaemon(t, pl, ipv6)
}

// newEnvDaemon is newEnv with daemonArgs for `epair daemon`.
func newEnvDaemon(t *testing.T, pl placement, ipv6 bool, daemonArgs ...string) *env {
	t.Helper()
	harness.RequireRoot(t)
	e := &env{ipv6: ipv6, dataDir: t.TempDir()}
	e.host = e.newNS(t)
	e.daemonNS = e.host
	if pl.apart {
		e.daemonNS = e.newNS(t)
	}
	e.d = harness.StartDaemonIn(t, e.daemonNS, daemonArgs...)
	e.cni = harness.NewCNI(t, e.host)
	return e
}

func (e *env) newNS(t *testing.T) ns.NetNS {
	t.Helper()
	if e.ipv6 {
		return track(t, harness.NewNSWithIPv6(t))
	}
	return track(t, harness.NewNS(t))
}

// pod makes a pod network namespace, removed at cleanup.
func (e *env) pod(t *testing.T) ns.NetNS {
	t.Helper()
	return e.newNS(t)
}

// netw describes a conflist the suite builds.
type netw struct {
	name    string
	version string // default 1.1.0
	mode    string // "" leaves the key out (the plugin's default, routed)
	subnets []string
	// epair is merged into the epair plugin's config (nil values delete).
	epair map[string]any
	// chain are the plugins after epair.
	chain []map[string]any
}

func (e *env) pluginConf(n netw) map[string]any {
	if len(n.subnets) == 0 {
		n.subnets = []string{"10.22.0.0/24"}
	}
	var ranges []any
	routes := []any{}
	v4, v6 := false, false
	for _, s := range n.subnets {
		ranges = append(ranges, []any{map[string]any{"subnet": s}})
		if strings.Contains(s, ":") {
			v6 = true
		} else {
			v4 = true
		}
	}
	if v4 {
		routes = append(routes, map[string]any{"dst": "0.0.0.0/0"})
	}
	if v6 {
		routes = append(routes, map[string]any{"dst": "::/0"})
	}
	p := map[string]any{
		"type":   "epair",
		"socket": e.d.Socket,
		"ipam": map[string]any{
			"type":    "host-local",
			"dataDir": e.dataDir,
			"ranges":  ranges,
			"routes":  routes,
		},
	}
	if n.mode != "" {
		p["mode"] = n.mode
	}
	if n.mode == "bridge" {
		// As conf/30-epair-bridge.conflist and most bridge configs: the
		// bridge holds the gateway (the bridge plugin's default is L2 only).
		p["isGateway"] = true
	}
	for k, v := range n.epair {
		if v == nil {
			delete(p, k)
		} else {
			p[k] = v
		}
	}
	return p
}

func (e *env) confBytes(t *testing.T, n netw) []byte {
	t.Helper()
	if n.name == "" {
		n.name = "epairnet"
	}
	if n.version == "" {
		n.version = "1.1.0"
	}
	plugins := []any{e.pluginConf(n)}
	for _, c := range n.chain {
		plugins = append(plugins, c)
	}
	b, err := json.Marshal(map[string]any{"cniVersion": n.version, "name": n.name, "plugins": plugins})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *env) list(t *testing.T, n netw) *libcni.NetworkConfigList {
	t.Helper()
	l, err := libcni.ConfListFromBytes(e.confBytes(t, n))
	if err != nil {
		t.Fatalf("conflist: %v", err)
	}
	return l
}

// oneAddressList is network name whose host-local range holds the one
// address ip (of 10.22.0.0/24).
func (e *env) oneAddressList(t *testing.T, name, ip string) *libcni.NetworkConfigList {
	t.Helper()
	return e.list(t, netw{name: name, epair: map[string]any{"ipam": map[string]any{
		"type":    "host-local",
		"dataDir": e.dataDir,
		"ranges":  []any{[]any{map[string]any{"subnet": "10.22.0.0/24", "rangeStart": ip, "rangeEnd": ip}}},
		"routes":  []any{map[string]any{"dst": "0.0.0.0/0"}},
	}}})
}

// attachment is one ADD that succeeded.
type attachment struct {
	id, ifName string
	pod        ns.NetNS
	list       *libcni.NetworkConfigList
	rt         *libcni.RuntimeConf
	res        *types100.Result
	deleted    bool
}

func newID(t *testing.T) string {
	return fmt.Sprintf("ctr-%d-%d", os.Getpid(), ids.Add(1))
}

// add runs ADD and fails the test on error; a DEL is left for cleanup
// unless the test deletes the attachment itself.
func (e *env) add(t *testing.T, list *libcni.NetworkConfigList, pod ns.NetNS) *attachment {
	t.Helper()
	a, err := e.tryAdd(t, list, harness.RuntimeConf(newID(t), pod, "eth0"), pod)
	if err != nil {
		t.Fatalf("ADD %s: %v", list.Name, err)
	}
	return a
}

func (e *env) tryAdd(t *testing.T, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf, pod ns.NetNS) (*attachment, error) {
	t.Helper()
	res, err := e.cni.Add(list, rt)
	if err != nil {
		return nil, err
	}
	a := &attachment{id: rt.ContainerID, ifName: rt.IfName, pod: pod, list: list, rt: rt, res: res}
	t.Cleanup(func() {
		if !a.deleted {
			if err := e.cni.Del(a.list, a.rt); err != nil {
				t.Errorf("cleanup DEL %s: %v", a.id, err)
			}
		}
	})
	return a, nil
}

// addRaw is add of rt that also returns the result as libcni decoded it,
// in the list's cniVersion.
func (e *env) addRaw(t *testing.T, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf, pod ns.NetNS) (types.Result, *attachment) {
	t.Helper()
	res, err := e.cni.AddRaw(list, rt)
	if err != nil {
		t.Fatalf("ADD %s (cniVersion %s): %v", list.Name, list.CNIVersion, err)
	}
	r100, err := types100.NewResultFromResult(res)
	if err != nil {
		t.Fatalf("convert %v: %v", res, err)
	}
	a := &attachment{id: rt.ContainerID, ifName: rt.IfName, pod: pod, list: list, rt: rt, res: r100}
	t.Cleanup(func() {
		if !a.deleted {
			e.cni.Del(list, rt)
		}
	})
	return res, a
}

func (e *env) del(t *testing.T, a *attachment) {
	t.Helper()
	if err := e.cni.Del(a.list, a.rt); err != nil {
		t.Fatalf("DEL %s: %v", a.id, err)
	}
	a.deleted = true
}

// ip returns the attachment's first address of a family (4 or 6).
func (a *attachment) ip(t *testing.T, family int) *types100.IPConfig {
	t.Helper()
	for _, c := range a.res.IPs {
		if (c.Address.IP.To4() != nil) == (family == 4) {
			return c
		}
	}
	t.Fatalf("result of %s has no IPv%d address: %+v", a.id, family, a.res)
	return nil
}

// bEnd is the name of the attachment's b end, from the result.
func (a *attachment) bEnd(t *testing.T) string {
	t.Helper()
	for _, i := range a.res.Interfaces {
		if bEndRE.MatchString(i.Name) && i.Sandbox == "" {
			return i.Name
		}
	}
	t.Fatalf("result of %s names no b end: %+v", a.id, a.res.Interfaces)
	return ""
}

var bEndRE = regexp.MustCompile(`^epair[0-9]+b$`)
var anyEndRE = regexp.MustCompile(`\bepair[0-9]+[ab]\b`)

func ping(t *testing.T, from ns.NetNS, to string) {
	t.Helper()
	harness.MustRun(t, from, "ping", "-c", "2", "-i", "0.2", "-W", "2", to)
}

type linkInfo struct {
	mtu   int
	mac   string
	index int
}

func link(t *testing.T, n ns.NetNS, name string) (linkInfo, error) {
	t.Helper()
	var li linkInfo
	err := n.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		li = linkInfo{l.Attrs().MTU, l.Attrs().HardwareAddr.String(), l.Attrs().Index}
		return nil
	})
	return li, err
}

func mustLink(t *testing.T, n ns.NetNS, name string) linkInfo {
	t.Helper()
	li, err := link(t, n, name)
	if err != nil {
		t.Fatalf("link %s in %s: %v", name, n.Path(), err)
	}
	return li
}

func readSysctl(t *testing.T, n ns.NetNS, key string) string {
	t.Helper()
	var v string
	if err := n.Do(func(ns.NetNS) (err error) {
		v, err = sysctl.Sysctl(key)
		return err
	}); err != nil {
		t.Fatalf("sysctl %s: %v", key, err)
	}
	return strings.TrimSpace(v)
}

// pairs lists the daemon's pairs.
func (e *env) pairs(t *testing.T) []api.Pair {
	t.Helper()
	ps, err := e.d.Client.ListPairs(context.Background())
	if err != nil {
		t.Fatalf("list pairs: %v", err)
	}
	return ps
}

// pairOf is the daemon's pair whose b end the attachment's result names.
func (e *env) pairOf(t *testing.T, a *attachment) *api.Pair {
	t.Helper()
	b := a.bEnd(t)
	for _, p := range e.pairs(t) {
		if p.B.Name == b {
			return &p
		}
	}
	return nil
}

// reservations are the addresses host-local holds for network name.
func (e *env) reservations(t *testing.T, name string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(e.dataDir, name))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, d := range ents {
		if net.ParseIP(d.Name()) != nil {
			ips = append(ips, d.Name())
		}
	}
	return ips
}

func (e *env) reserved(t *testing.T, name, ip string) bool {
	t.Helper()
	for _, r := range e.reservations(t, name) {
		if net.ParseIP(r).Equal(net.ParseIP(ip)) {
			return true
		}
	}
	return false
}

// assertGone checks that nothing of the attachment is left: no pair in the
// daemon, no b end or route to its addresses in the host, no reservation.
func (e *env) assertGone(t *testing.T, a *attachment) {
	t.Helper()
	b := a.bEnd(t)
	for _, p := range e.pairs(t) {
		if p.B.Name == b || (p.Owner != nil && p.Owner.ContainerID == a.id) {
			t.Errorf("daemon still has the pair of %s: %+v", a.id, p)
		}
	}
	for _, n := range []ns.NetNS{e.host, e.daemonNS} {
		if _, err := link(t, n, b); err == nil {
			t.Errorf("b end %s of %s still in netns %s", b, a.id, n.Path())
		}
	}
	for _, c := range a.res.IPs {
		ip := c.Address.IP.String()
		if e.reserved(t, a.list.Name, ip) {
			t.Errorf("host-local still holds %s of %s", ip, a.id)
		}
		if r := hostRoutesTo(t, e.host, ip); r != "" {
			t.Errorf("host netns still routes to %s of %s:\n%s", ip, a.id, r)
		}
	}
}

// hostRoutesTo lists the routes of n whose destination is exactly ip.
func hostRoutesTo(t *testing.T, n ns.NetNS, ip string) string {
	t.Helper()
	var out []string
	for _, fam := range []string{"-4", "-6"} {
		o, _ := harness.Run(t, n, "ip", fam, "-o", "route", "show", "table", "all")
		for _, l := range strings.Split(o, "\n") {
			f := strings.Fields(l)
			if len(f) > 0 && (f[0] == ip || strings.HasPrefix(f[0], ip+"/")) && !strings.HasPrefix(l, "local ") {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}

// assertNothingLeft checks the whole node after a failed ADD: no pair, no
// epair device in the host or a pod, no reservation, no route over a b end.
func (e *env) assertNothingLeft(t *testing.T, netName string, pods ...ns.NetNS) {
	t.Helper()
	if ps := e.pairs(t); len(ps) != 0 {
		t.Errorf("daemon has pairs: %+v", ps)
	}
	for _, n := range []ns.NetNS{e.host, e.daemonNS} {
		if out := harness.MustRun(t, n, "ip", "-o", "link"); anyEndRE.MatchString(out) {
			t.Errorf("epair device left in netns %s:\n%s", n.Path(), out)
		}
	}
	for _, fam := range []string{"-4", "-6"} {
		if out, _ := harness.Run(t, e.host, "ip", fam, "-o", "route", "show", "table", "all"); anyEndRE.MatchString(out) {
			t.Errorf("route over an epair device left in the host netns:\n%s", out)
		}
	}
	for _, p := range pods {
		out := harness.MustRun(t, p, "ip", "-o", "link")
		if n := len(strings.Split(strings.TrimSpace(out), "\n")); n != 1 {
			t.Errorf("pod netns has more than lo:\n%s", out)
		}
	}
	if r := e.reservations(t, netName); len(r) != 0 {
		t.Errorf("host-local still holds %v for %s", r, netName)
	}
}

// addrCIDR finds the address ip on dev in n as "ip/len" ("" if absent),
// with its flags line.
func addrCIDR(t *testing.T, n ns.NetNS, dev, ip string) (cidr, line string) {
	t.Helper()
	out := harness.MustRun(t, n, "ip", "-o", "addr", "show", "dev", dev)
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		for i := 0; i+1 < len(f); i++ {
			if (f[i] == "inet" || f[i] == "inet6") && strings.HasPrefix(f[i+1], ip+"/") {
				return f[i+1], l
			}
		}
	}
	return "", ""
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bridgeName is the bridge the attachment's config names (bridge mode).
func bridgeName(t *testing.T, a *attachment) string {
	t.Helper()
	var c struct {
		Bridge string `json:"bridge"`
	}
	if err := json.Unmarshal(a.list.Plugins[0].Bytes, &c); err != nil {
		t.Fatal(err)
	}
	if c.Bridge == "" {
		return "epair-br0"
	}
	return c.Bridge
}

package containerd

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// podConfig is the CRI PodSandboxConfig of a pod of the suite, in the
// suite's cgroup parent (so down.sh finds whatever it leaves).
func (s *suite) podConfig(name string, annotations map[string]string) map[string]any {
	return map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "epair-e2e", "uid": name + "-" + s.env["RUN_ID"], "attempt": 0},
		"hostname":      name,
		"log_directory": s.path("logs/" + name),
		"annotations":   annotations,
		"linux":         map[string]any{"cgroup_parent": s.env["CGPARENT"]},
	}
}

// runp creates a pod sandbox and records its id and netns for down.sh; it
// returns the id and how long `crictl runp` took.
func (s *suite) runp(name string, annotations map[string]string) (string, time.Duration, error) {
	cfg, err := s.writeJSON("pod-"+name+".json", s.podConfig(name, annotations))
	if err != nil {
		return "", 0, err
	}
	t0 := time.Now()
	out, err := s.cri("runp", cfg)
	took := time.Since(t0)
	if err != nil {
		return "", took, err
	}
	id := strings.TrimSpace(out)
	if err := s.appendLine("pod-ids", id); err != nil {
		return id, took, err
	}
	in, err := s.inspectp(id)
	if err != nil {
		return id, took, err
	}
	return id, took, s.appendLine("netns-paths", in.netns)
}

// runpNamed is runp for one of the pods the checks use by name.
func (s *suite) runpNamed(name string, annotations map[string]string) error {
	id, _, err := s.runp(name, annotations)
	if err != nil {
		return err
	}
	s.pods[name] = id
	return nil
}

// sandbox is what the checks read of `crictl inspectp`.
type sandbox struct{ ip, netns string }

func (s *suite) inspectp(id string) (sandbox, error) {
	out, err := s.cri("inspectp", "-o", "json", id)
	if err != nil {
		return sandbox{}, err
	}
	var v struct {
		Status struct {
			Network struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
		Info struct {
			RuntimeSpec struct {
				Linux struct {
					Namespaces []struct{ Type, Path string } `json:"namespaces"`
				} `json:"linux"`
			} `json:"runtimeSpec"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return sandbox{}, fmt.Errorf("inspectp %s: %w", id, err)
	}
	sb := sandbox{ip: v.Status.Network.IP}
	for _, n := range v.Info.RuntimeSpec.Linux.Namespaces {
		if n.Type == "network" {
			sb.netns = n.Path
		}
	}
	return sb, nil
}

// create starts a busybox container running sleep 3600 in the pod.
func (s *suite) create(pod string) error {
	box, err := s.writeJSON("box.json", map[string]any{
		"metadata": map[string]any{"name": "box"}, "image": map[string]any{"image": s.env["TEST_IMAGE"]},
		"command": []string{"sleep", "3600"}, "log_path": "box.log", "linux": map[string]any{},
	})
	if err != nil {
		return err
	}
	out, err := s.cri("create", s.pods[pod], box, s.path("pod-"+pod+".json"))
	if err != nil {
		return err
	}
	id := strings.TrimSpace(out)
	s.ctrs[pod] = id
	_, err = s.cri("start", id)
	return err
}

// podIP reads the pod's IP from inspectp and checks it is in the subnet.
func (s *suite) podIP(pod string) error {
	sb, err := s.inspectp(s.pods[pod])
	if err != nil {
		return err
	}
	s.ips[pod] = sb.ip
	subnet := netip.MustParsePrefix(s.env["EPAIR_SUBNET"])
	if a, err := netip.ParseAddr(sb.ip); err != nil || !subnet.Contains(a) {
		return fmt.Errorf("pod IP %q not in %s", sb.ip, subnet)
	}
	return nil
}

// exec runs a command in the pod's container.
func (s *suite) exec(pod string, args ...string) (string, error) {
	return s.cri(append([]string{"exec", s.ctrs[pod]}, args...)...)
}

// eth0IP checks that eth0 in the pod has the IP inspectp gave.
func (s *suite) eth0IP(pod string) error {
	out, err := s.exec(pod, "ip", "-4", "-o", "addr", "show", "eth0")
	if err != nil {
		return err
	}
	var got string
	if f := strings.Fields(out); len(f) >= 4 {
		got, _, _ = strings.Cut(f[3], "/")
	}
	if got != s.ips[pod] {
		all, _ := s.exec(pod, "ip", "addr")
		return fmt.Errorf("eth0 has %q, inspectp says %q\n%s", got, s.ips[pod], all)
	}
	return nil
}

// nothingLeft checks, after the pods are gone, that nothing of them is
// left: pairs, links, routes, host-local reservations of network net and
// the pod IPs given, the pods' netns and libcni cache entries, pods in the
// CRI.
func (s *suite) nothingLeft(network string, ips []string) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if ps, err := s.pairs(); err != nil || len(ps) != 0 {
		bad("pairs left: %v %v", ps, err)
	}
	if out, err := s.ip("-o", "link"); err != nil || strings.Contains(out, "epair") {
		bad("epair links left in %s: %s %v", s.env["NS"], out, err)
	}
	if links := s.newMachineLinks(); len(links) > 0 {
		bad("new epair links in the machine's namespace: %v", links)
	}
	for _, ip := range ips {
		if out, err := s.ip("-4", "route", "show", ip+"/32"); err != nil || strings.TrimSpace(out) != "" {
			bad("route to %s left: %s %v", ip, out, err)
		}
		if _, err := os.Stat(s.path(filepath.Join("ipam", network, ip))); err == nil {
			bad("host-local reservation ipam/%s/%s left", network, ip)
		}
	}
	entries, _ := os.ReadDir(s.path(filepath.Join("ipam", network)))
	for _, e := range entries {
		if a, err := netip.ParseAddr(e.Name()); err == nil && a.Is4() {
			bad("host-local reservation left: %s", e.Name())
		}
	}
	for _, p := range s.lines("netns-paths") {
		if _, err := os.Stat(p); err == nil {
			bad("pod netns %s left", p)
		}
	}
	// Only this run's sandboxes: another run of the suite on the machine
	// has the same network names and its own cni-* netns meanwhile.
	for _, id := range s.lines("pod-ids") {
		if cache, _ := filepath.Glob("/var/lib/cni/results/" + network + "-" + id + "-*"); len(cache) > 0 {
			bad("libcni cache left: %v", cache)
		}
	}
	if out, err := s.cri("pods", "-q"); err != nil || strings.TrimSpace(out) != "" {
		bad("pods left: %s %v", out, err)
	}
	return errors.Join(errs...)
}

// newMachineLinks are the epair links of the machine's namespace that
// up.sh did not see (links-before).
func (s *suite) newMachineLinks() []string {
	ifs, _ := net.Interfaces()
	before := s.lines("links-before")
	var links []string
	for _, i := range ifs {
		if strings.Contains(i.Name, "epair") && !slices.Contains(before, i.Name) {
			links = append(links, i.Name)
		}
	}
	return links
}

// lines are the non-empty lines of a file of the run's directory.
func (s *suite) lines(name string) []string {
	b, _ := os.ReadFile(s.path(name))
	return strings.Fields(string(b))
}

// churn creates and deletes n sandboxes one after another; it returns
// their IPs and the `crictl runp` times.
func (s *suite) churn(label string, n int) ([]string, []time.Duration, error) {
	var ips []string
	var took []time.Duration
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("%s-%d", label, i)
		id, d, err := s.runp(name, nil)
		if err != nil {
			return ips, took, fmt.Errorf("runp %s: %w", name, err)
		}
		took = append(took, d)
		sb, err := s.inspectp(id)
		if err != nil {
			return ips, took, err
		}
		ips = append(ips, sb.ip)
		if _, err := s.cri("stopp", id); err != nil {
			return ips, took, fmt.Errorf("stopp %s: %w", name, err)
		}
		if _, err := s.cri("rmp", id); err != nil {
			return ips, took, fmt.Errorf("rmp %s: %w", name, err)
		}
	}
	return ips, took, nil
}

// median of durations, in ms.
func median(d []time.Duration) float64 {
	if len(d) == 0 {
		return 0
	}
	d = slices.Sorted(slices.Values(d))
	m := d[len(d)/2]
	if len(d)%2 == 0 {
		m = (d[len(d)/2-1] + d[len(d)/2]) / 2
	}
	return float64(m) / float64(time.Millisecond)
}

// cniLoaded checks that containerd has loaded the CNI config of network.
func (s *suite) cniLoaded(network string) error {
	out, err := s.cri("info", "-o", "json")
	if err != nil {
		return err
	}
	var v struct {
		CNIConfig struct {
			Networks []struct {
				Config struct{ Name string }
			}
		} `json:"cniconfig"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return fmt.Errorf("crictl info: %w", err)
	}
	var names []string
	for _, n := range v.CNIConfig.Networks {
		names = append(names, n.Config.Name)
	}
	if !slices.Contains(names, network) {
		return fmt.Errorf("network %s not loaded; containerd has %v", network, names)
	}
	return nil
}

package api

import (
	"errors"
	"fmt"
	"strings"
)

// Pod is the Kubernetes pod an attachment belongs to, as kubelet (through
// containerd or CRI-O) passes it in CNI_ARGS: K8S_POD_NAMESPACE,
// K8S_POD_NAME, K8S_POD_UID and K8S_POD_INFRA_CONTAINER_ID.
type Pod struct {
	Namespace        string `json:"namespace"`
	Name             string `json:"name"`
	UID              string `json:"uid,omitempty"`
	InfraContainerID string `json:"infra_container_id,omitempty"`
}

// String returns namespace/name, the pod's name as kubectl writes it.
func (p *Pod) String() string { return p.Namespace + "/" + p.Name }

// Bounds of the pod's fields: Kubernetes' own for the namespace (a
// DNS-1123 label) and the name (a DNS-1123 subdomain); the UID and the
// infra container ID are a UUID and a runtime's hex ID, bounded well above
// those.
const (
	maxNamespaceLen = 63
	maxPodNameLen   = 253
	maxPodIDLen     = 128
)

// Validate checks the pod against Kubernetes' name rules (the
// namespace a DNS-1123 label, the name a DNS-1123 subdomain, as
// k8s.io/apimachinery's IsDNS1123Label and IsDNS1123Subdomain) and bounds
// the UID and infra container ID to letters, digits, '-', '_' and '.': the
// values end up in Prometheus labels and in JSON shown to people.
func (p *Pod) Validate() error {
	if p.Namespace == "" || p.Name == "" {
		return errors.New("K8S_POD_NAMESPACE and K8S_POD_NAME must both be given, or neither")
	}
	if err := dns1123Label(p.Namespace, maxNamespaceLen); err != nil {
		return fmt.Errorf("K8S_POD_NAMESPACE %q: %w", p.Namespace, err)
	}
	if len(p.Name) > maxPodNameLen {
		return fmt.Errorf("K8S_POD_NAME: %d characters, over %d", len(p.Name), maxPodNameLen)
	}
	for _, l := range strings.Split(p.Name, ".") {
		if err := dns1123Label(l, maxPodNameLen); err != nil {
			return fmt.Errorf("K8S_POD_NAME %q: %w", p.Name, err)
		}
	}
	for _, f := range []struct{ key, v string }{{"K8S_POD_UID", p.UID}, {"K8S_POD_INFRA_CONTAINER_ID", p.InfraContainerID}} {
		if err := podID(f.v); err != nil {
			return fmt.Errorf("%s %q: %w", f.key, f.v, err)
		}
	}
	return nil
}

// dns1123Label checks s is lower-case letters, digits and '-', beginning
// and ending with a letter or digit, 1..max long.
func dns1123Label(s string, max int) error {
	if s == "" || len(s) > max {
		return fmt.Errorf("must be 1 to %d characters", max)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return errors.New("must be lower-case letters, digits and '-' (not first or last), as Kubernetes names are")
		}
	}
	return nil
}

// podID checks an optional ID: empty, or up to maxPodIDLen letters, digits,
// '-', '_' and '.'.
func podID(s string) error {
	if len(s) > maxPodIDLen {
		return fmt.Errorf("%d characters, over %d", len(s), maxPodIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return errors.New("must be letters, digits, '-', '_' and '.'")
		}
	}
	return nil
}

// CNIResult is how one CNI command of the plugin ended, as the plugin
// reports it (POST /v1/cni/results) for the daemon's metrics: Code is the
// CNI error code, 0 for success.
type CNIResult struct {
	Command string `json:"command"`
	Code    uint   `json:"code"`
}

// CNICommands are the commands whose results the daemon counts.
var CNICommands = []string{"ADD", "DEL", "CHECK"}

// MaxCNICode bounds a reported code: the spec's are below 100, plugins'
// own from 100, and 999 is "internal error".
const MaxCNICode = 999

// Validate checks the command is one of CNICommands and the code at most
// MaxCNICode, so what is counted stays a small, known set of series.
func (r *CNIResult) Validate() error {
	known := false
	for _, c := range CNICommands {
		known = known || r.Command == c
	}
	if !known {
		return fmt.Errorf("command %q is not one of %s", r.Command, strings.Join(CNICommands, ", "))
	}
	if r.Code > MaxCNICode {
		return fmt.Errorf("code %d over %d", r.Code, MaxCNICode)
	}
	return nil
}

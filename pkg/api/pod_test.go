package api

import (
	"strings"
	"testing"
)

func TestPodValidate(t *testing.T) {
	long := strings.Repeat("a", 63)
	for _, p := range []Pod{
		{Namespace: "default", Name: "web-0"},
		{Namespace: "kube-system", Name: "coredns-7db6d8ff4d-x2x9q", UID: "0c8f5e1c-5b8e-4d0e-9a0e-3f1f0b0a0c0d", InfraContainerID: strings.Repeat("f", 64)},
		{Namespace: long, Name: long + "." + long + ".b"},
		{Namespace: "a", Name: "0"},
	} {
		if err := p.Validate(); err != nil {
			t.Errorf("%+v refused: %v", p, err)
		}
	}
	for _, p := range []Pod{
		{Namespace: "default"},
		{Name: "web-0"},
		{Namespace: "Default", Name: "web-0"},
		{Namespace: long + "a", Name: "web-0"},
		{Namespace: "default", Name: "-web"},
		{Namespace: "default", Name: "web-"},
		{Namespace: "default", Name: "web..0"},
		{Namespace: "default", Name: "web_0"},
		{Namespace: "default", Name: "web/0"},
		{Namespace: "default", Name: strings.Repeat("a", 254)},
		{Namespace: "default", Name: "web\"0"},
		{Namespace: "default", Name: "web-0", UID: "x y"},
		{Namespace: "default", Name: "web-0", UID: strings.Repeat("a", 129)},
		{Namespace: "default", Name: "web-0", InfraContainerID: "abc\n"},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}

func TestCNIResultValidate(t *testing.T) {
	for _, r := range []CNIResult{{"ADD", 0}, {"DEL", 11}, {"CHECK", 105}, {"ADD", 999}} {
		if err := r.Validate(); err != nil {
			t.Errorf("%+v refused: %v", r, err)
		}
	}
	for _, r := range []CNIResult{{"add", 0}, {"GC", 0}, {"", 0}, {"ADD", 1000}} {
		if err := r.Validate(); err == nil {
			t.Errorf("%+v accepted", r)
		}
	}
}

package epair

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestUnitNames(t *testing.T) {
	for _, tc := range []struct {
		unit int
		a, b string
	}{
		{0, "epair0a", "epair0b"},
		{42, "epair42a", "epair42b"},
		{999999999, "epair999999999a", "epair999999999b"}, // 15 bytes
	} {
		a, b, err := UnitNames(tc.unit)
		if err != nil || a != tc.a || b != tc.b {
			t.Errorf("UnitNames(%d) = %q, %q, %v; want %q, %q, nil", tc.unit, a, b, err, tc.a, tc.b)
		}
	}
}

func TestUnitNamesTooLarge(t *testing.T) {
	// epair1234567890a is 16 bytes, one more than fits.
	for _, unit := range []int{1000000000, 1234567890} {
		_, _, err := UnitNames(unit)
		if !errors.Is(err, unix.ENOSPC) {
			t.Errorf("UnitNames(%d): error %v, want ENOSPC", unit, err)
		}
		if err != nil && !strings.Contains(err.Error(), "IFNAMSIZ") {
			t.Errorf("UnitNames(%d): error %q does not mention IFNAMSIZ", unit, err)
		}
	}
}

func TestUnitNamesNegative(t *testing.T) {
	if _, _, err := UnitNames(-1); !errors.Is(err, unix.EINVAL) {
		t.Errorf("UnitNames(-1): error %v, want EINVAL", err)
	}
}

// unitWorld is a fake host: allocated units and existing interface names.
type unitWorld struct {
	units map[int]bool
	names map[string]bool
}

func (w unitWorld) inUse(unit int) bool     { return w.units[unit] }
func (w unitWorld) exists(name string) bool { return w.names[name] }

func TestAllocUnitWildcardLowestFree(t *testing.T) {
	for _, tc := range []struct {
		name  string
		world unitWorld
		want  int
	}{
		{"empty host", unitWorld{}, 0},
		{"0 and 1 in use", unitWorld{units: map[int]bool{0: true, 1: true}}, 2},
		{"hole at 1", unitWorld{units: map[int]bool{0: true, 2: true}}, 1},
		{"epair0a exists", unitWorld{names: map[string]bool{"epair0a": true}}, 1},
		{"epair0b exists", unitWorld{names: map[string]bool{"epair0b": true}}, 1},
		{"mixed", unitWorld{
			units: map[int]bool{0: true, 2: true},
			names: map[string]bool{"epair1b": true, "epair3a": true},
		}, 4},
	} {
		got, err := AllocUnit(-1, tc.world.inUse, tc.world.exists)
		if err != nil || got != tc.want {
			t.Errorf("%s: AllocUnit(-1) = %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
}

func TestAllocUnitNilFuncs(t *testing.T) {
	if got, err := AllocUnit(-1, nil, nil); got != 0 || err != nil {
		t.Errorf("AllocUnit(-1, nil, nil) = %d, %v; want 0, nil", got, err)
	}
	if got, err := AllocUnit(5, nil, nil); got != 5 || err != nil {
		t.Errorf("AllocUnit(5, nil, nil) = %d, %v; want 5, nil", got, err)
	}
}

func TestAllocUnitExplicit(t *testing.T) {
	w := unitWorld{units: map[int]bool{1: true}, names: map[string]bool{"epair3a": true, "epair4b": true}}
	if got, err := AllocUnit(2, w.inUse, w.exists); got != 2 || err != nil {
		t.Errorf("AllocUnit(2) = %d, %v; want 2, nil", got, err)
	}
	for unit, mention := range map[int]string{1: "in use", 3: "epair3a", 4: "epair4b"} {
		got, err := AllocUnit(unit, w.inUse, w.exists)
		if !errors.Is(err, unix.EEXIST) {
			t.Errorf("AllocUnit(%d) = %d, %v; want EEXIST", unit, got, err)
			continue
		}
		if !strings.Contains(err.Error(), mention) {
			t.Errorf("AllocUnit(%d): error %q does not mention %q", unit, err, mention)
		}
	}
}

func TestAllocUnitExplicitTooLarge(t *testing.T) {
	_, err := AllocUnit(1234567890, nil, nil)
	if !errors.Is(err, unix.ENOSPC) {
		t.Errorf("AllocUnit(1234567890): error %v, want ENOSPC", err)
	}
}

func TestAllocUnitWildcardExhausted(t *testing.T) {
	always := func(int) bool { return true }
	never := func(string) bool { return false }
	_, err := allocUnitFrom(999999990, always, never)
	if !errors.Is(err, unix.ENOSPC) {
		t.Errorf("exhausted unit space: error %v, want ENOSPC", err)
	}
	got, err := allocUnitFrom(999999990, func(u int) bool { return u < 999999999 }, never)
	if got != 999999999 || err != nil {
		t.Errorf("last unit: got %d, %v; want 999999999, nil", got, err)
	}
}

func TestValidIfName(t *testing.T) {
	for _, tc := range []struct {
		name string
		why  string // substring of the error, "" for valid names
	}{
		{"eth0", ""},
		{"epair0a", ""},
		{"a", ""},
		{"veth-1_x.y@z", ""},
		{"abcdefghijklmno", ""}, // 15 bytes
		{"", "empty"},
		{"abcdefghijklmnop", "16 bytes"},
		{".", "reserved"},
		{"..", "reserved"},
		{"...", ""},
		{"a/b", "'/'"},
		{"eth0:1", "':'"},
		{"eth 0", "whitespace"},
		{"eth\t0", "whitespace"},
		{"eth0\n", "whitespace"},
		{"eth\x000", "NUL"},
		{"eth\x01", "control"},
		{"eth\x7f", "control"},
		{"ethé", "non-ASCII"},
	} {
		err := ValidIfName(tc.name)
		if tc.why == "" {
			if err != nil {
				t.Errorf("ValidIfName(%q) = %v, want nil", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.why) || !errors.Is(err, unix.EINVAL) {
			t.Errorf("ValidIfName(%q) = %v, want EINVAL mentioning %q", tc.name, err, tc.why)
		}
	}
}

func TestUnitNamesAreValidIfNames(t *testing.T) {
	for _, unit := range []int{0, 9, 10, 12345, 999999999} {
		a, b, err := UnitNames(unit)
		if err != nil {
			t.Fatal(err)
		}
		if err := ValidIfName(a); err != nil {
			t.Error(err)
		}
		if err := ValidIfName(b); err != nil {
			t.Error(err)
		}
	}
}

package epair

import (
	"fmt"
	"strconv"
	"syscall"
)

// IFNAMSIZ is the size of an interface name buffer on Linux (and FreeBSD),
// terminating NUL included, so names are at most IFNAMSIZ-1 = 15 bytes.
const IFNAMSIZ = 16

// unitPrefix is if_epair's clone name; units are epair<n>a and epair<n>b.
const unitPrefix = "epair"

// UnitNames returns the names of the two ends of unit: "epair<unit>a" and
// "epair<unit>b". A negative unit wraps syscall.EINVAL; a unit whose names do
// not fit in IFNAMSIZ wraps syscall.ENOSPC, as epair_handle_unit() does when
// there is no room left for the [ab] suffix.
func UnitNames(unit int) (a, b string, err error) {
	if unit < 0 {
		return "", "", fmt.Errorf("unit %d is negative: %w", unit, syscall.EINVAL)
	}
	base := unitPrefix + strconv.Itoa(unit)
	if len(base)+1 > IFNAMSIZ-1 {
		return "", "", fmt.Errorf(
			"unit %d too large for IFNAMSIZ: %q is %d bytes, at most %d fit: %w",
			unit, base+"a", len(base)+1, IFNAMSIZ-1, syscall.ENOSPC)
	}
	return base + "a", base + "b", nil
}

// AllocUnit picks a unit number, following epair_handle_unit().
//
// With want < 0 (a wildcard) it returns the lowest unit >= 0 that is not
// inUse and neither of whose names exists; if no such unit has names that
// fit IFNAMSIZ the error wraps syscall.ENOSPC.
//
// With want >= 0 it returns want, or an error wrapping syscall.ENOSPC when the
// names do not fit, or syscall.EEXIST when want is inUse or either name exists.
//
// inUse reports units already allocated (FreeBSD's unit bitmap); exists
// reports interfaces present on the host, which may have been created by
// someone else. A nil function means "never". On error the unit is -1.
func AllocUnit(want int, inUse func(unit int) bool, exists func(name string) bool) (int, error) {
	if inUse == nil {
		inUse = func(int) bool { return false }
	}
	if exists == nil {
		exists = func(string) bool { return false }
	}
	if want < 0 {
		return allocUnitFrom(0, inUse, exists)
	}
	if err := checkUnit(want, inUse, exists); err != nil {
		return -1, err
	}
	return want, nil
}

// allocUnitFrom is the wildcard search starting at start; it is separate so
// tests can reach the top of the unit space without a billion probes.
func allocUnitFrom(start int, inUse func(int) bool, exists func(string) bool) (int, error) {
	for unit := start; ; unit++ {
		a, b, err := UnitNames(unit)
		if err != nil {
			// Units only grow longer from here, so no later one fits.
			return -1, fmt.Errorf("no free unit fits IFNAMSIZ: %w", err)
		}
		if !inUse(unit) && !exists(a) && !exists(b) {
			return unit, nil
		}
	}
}

// checkUnit tells why an explicitly requested unit cannot be used, if so.
func checkUnit(unit int, inUse func(int) bool, exists func(string) bool) error {
	a, b, err := UnitNames(unit)
	if err != nil {
		return err
	}
	if inUse(unit) {
		return fmt.Errorf("unit %d is already in use: %w", unit, syscall.EEXIST)
	}
	for _, name := range [...]string{a, b} {
		if exists(name) {
			return fmt.Errorf("unit %d: interface %s already exists: %w",
				unit, name, syscall.EEXIST)
		}
	}
	return nil
}

// ValidIfName reports whether name is acceptable as a Linux interface name
// (the kernel's dev_valid_name() rules, narrowed to printable ASCII so names
// survive logs and shells). The error wraps syscall.EINVAL and says what is
// wrong.
func ValidIfName(name string) error {
	switch {
	case name == "":
		return badIfName(name, "is empty")
	case len(name) > IFNAMSIZ-1:
		return badIfName(name, fmt.Sprintf("is %d bytes long, at most %d are allowed",
			len(name), IFNAMSIZ-1))
	case name == "." || name == "..":
		return badIfName(name, "is reserved (it names a directory in /sys/class/net)")
	}
	for i := 0; i < len(name); i++ {
		if what := badIfNameByte(name[i]); what != "" {
			return badIfName(name, fmt.Sprintf("contains %s at byte %d", what, i))
		}
	}
	return nil
}

// badIfNameByte names the problem with c, or returns "" when c is allowed.
func badIfNameByte(c byte) string {
	switch {
	case c == 0:
		return "a NUL byte"
	case c == '/':
		// The name becomes a path component under /sys/class/net.
		return "'/'"
	case c == ':':
		// ':' introduces an alias label in the old ifconfig ioctls.
		return "':'"
	case c == ' ' || '\t' <= c && c <= '\r':
		return "whitespace"
	case c < 0x20 || c == 0x7f:
		return fmt.Sprintf("the control character %#02x", c)
	case c > 0x7f:
		return fmt.Sprintf("the non-ASCII byte %#02x", c)
	}
	return ""
}

func badIfName(name, why string) error {
	return fmt.Errorf("invalid interface name %q: %s (%w)", name, why, syscall.EINVAL)
}

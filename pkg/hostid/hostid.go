// Package hostid reads the host's identity, the role FreeBSD's kern.hostid
// plays in if_epair's MAC addresses. It is apart from pkg/epair so that the
// queue core stays free of file and system access: the daemon reads the ID
// once and hands it to epair.MACs.
package hostid

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// machineIDPath is where systemd (and most other inits) keep the host's
// identity; it plays the role of FreeBSD's kern.hostid.
const machineIDPath = "/etc/machine-id"

// machineIDHexLen is the length of a machine-id without its newline.
const machineIDHexLen = 32

// ErrInvalid is wrapped by FromFile when the file exists but
// does not hold a usable host ID.
var ErrInvalid = errors.New("invalid host ID")

// FromFile reads a machine-id(5) style file (32 hex digits, optionally
// followed by one newline) and returns its first 16 hex digits as a
// big-endian uint64. A missing file, malformed contents or an ID of zero
// (FreeBSD's "no hostid") are errors.
func FromFile(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("reading host ID: %w", err)
	}
	defer f.Close()

	// A valid file is 33 bytes; reading a little more is enough to tell an
	// overlong file from a good one without slurping whatever path we got.
	data, err := io.ReadAll(io.LimitReader(f, 2*machineIDHexLen))
	if err != nil {
		return 0, fmt.Errorf("reading host ID from %s: %w", path, err)
	}
	id, err := parseMachineID(string(data))
	if err != nil {
		return 0, fmt.Errorf("host ID in %s: %w", path, err)
	}
	return id, nil
}

// parseMachineID checks the machine-id format and folds it to 64 bits.
func parseMachineID(s string) (uint64, error) {
	s = strings.TrimSuffix(s, "\n")
	if len(s) != machineIDHexLen {
		return 0, fmt.Errorf("%w: want %d hex digits, got %d bytes",
			ErrInvalid, machineIDHexLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return 0, fmt.Errorf("%w: byte %d (%q) is not a hex digit",
				ErrInvalid, i, s[i])
		}
	}
	id, err := strconv.ParseUint(s[:16], 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if id == 0 {
		// FreeBSD treats hostid 0 as unset; so do we, so the caller's
		// random fallback kicks in instead of every host sharing MACs.
		return 0, fmt.Errorf("%w: host ID is zero", ErrInvalid)
	}
	return id, nil
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// Get returns the host ID from /etc/machine-id, or, when that is missing
// or unusable, a random non-zero value, like if_epair's arc4rand() fallback.
// The random value differs per call, so callers wanting stable MACs should
// call Get once and keep the result.
func Get() uint64 {
	if id, err := FromFile(machineIDPath); err == nil {
		return id
	}
	return randomHostID()
}

// randomHostID draws until non-zero, because zero means "unset" and would
// make the MAC depend on the index alone.
func randomHostID() uint64 {
	var buf [8]byte
	for {
		// crypto/rand.Read never fails since Go 1.24; it aborts the
		// process instead, so there is no error to handle.
		_, _ = rand.Read(buf[:])
		if id := binary.LittleEndian.Uint64(buf[:]); id != 0 {
			return id
		}
	}
}

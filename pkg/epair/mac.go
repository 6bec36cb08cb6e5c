package epair

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"net"
)

// JenkinsHash32 returns Bob Jenkins' lookup3 hashword() of key, seeded with
// initval. It is bit-for-bit FreeBSD's jenkins_hash32(), which if_epair uses
// to derive MAC addresses, so that a pair gets the MAC FreeBSD would give it.
func JenkinsHash32(key []uint32, initval uint32) uint32 {
	// The length is folded into the seed as a uint32 exactly like C does,
	// wrap-around included.
	a := 0xdeadbeef + uint32(len(key))<<2 + initval
	b, c := a, a
	for len(key) > 3 {
		a += key[0]
		b += key[1]
		c += key[2]
		a, b, c = jenkinsMix(a, b, c)
		key = key[3:]
	}
	switch len(key) {
	case 3:
		c += key[2]
		fallthrough
	case 2:
		b += key[1]
		fallthrough
	case 1:
		a += key[0]
		c = jenkinsFinal(a, b, c)
	}
	// An empty key skips final() on purpose: lookup3 returns the seed.
	return c
}

// jenkinsMix is lookup3's mix() macro: it is reversible, so no entropy of
// the 96-bit state is lost between blocks.
func jenkinsMix(a, b, c uint32) (uint32, uint32, uint32) {
	a -= c
	a ^= bits.RotateLeft32(c, 4)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 6)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 8)
	b += a
	a -= c
	a ^= bits.RotateLeft32(c, 16)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 19)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 4)
	b += a
	return a, b, c
}

// jenkinsFinal is lookup3's final() macro; only c is the result, so only c
// is returned.
func jenkinsFinal(a, b, c uint32) uint32 {
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return c
}

// MACs returns the MAC addresses of the a and b ends of the pair with the
// given index on the host with the given ID, following
// epair_generate_mac(): 02 (locally administered, unicast), the four bytes
// of jenkins_hash32({index, hostID low, hostID high}, 0) in little-endian
// order (FreeBSD memcpy()s the hash on little-endian machines), then 0a for
// the a end; the b end differs only in its last byte, 0b.
func MACs(index uint32, hostID uint64) (a, b net.HardwareAddr) {
	key := [3]uint32{index, uint32(hostID), uint32(hostID >> 32)}
	hash := JenkinsHash32(key[:], 0)

	a = make(net.HardwareAddr, 6)
	a[0] = 0x02
	binary.LittleEndian.PutUint32(a[1:5], hash)
	a[5] = 0x0a

	b = make(net.HardwareAddr, 6)
	copy(b, a)
	b[5] = 0x0b
	return a, b
}

// ParseMAC parses the MAC address a caller asks an end to have: six bytes,
// unicast, not all zero (the kernel refuses the last two on an Ethernet
// device, with an error that names neither).
func ParseMAC(s string) (net.HardwareAddr, error) {
	hw, err := net.ParseMAC(s)
	switch {
	case err != nil || len(hw) != 6:
		return nil, fmt.Errorf("MAC %q is not an Ethernet address (want six bytes, like 02:00:00:00:00:01)", s)
	case hw[0]&1 != 0:
		return nil, fmt.Errorf("MAC %q is a multicast address: a pod's interface needs a unicast one (first byte even)", s)
	case bytes.Equal(hw, make(net.HardwareAddr, 6)):
		return nil, fmt.Errorf("MAC %q is all zeros: give a unicast address", s)
	}
	return hw, nil
}

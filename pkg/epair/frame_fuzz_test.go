package epair

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// vnetBytes encodes h as the 12-byte header a TAP prepends to a frame.
func vnetBytes(h VnetHdr) []byte {
	b := make([]byte, VnetHdrLen)
	b[0], b[1] = h.Flags, h.GSOType
	binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], h.CsumOffset)
	return b
}

// FuzzFrame feeds arbitrary bytes, read as a virtio-net header plus an
// Ethernet frame the way a TAP delivers them, to every frame parser.
func FuzzFrame(f *testing.F) {
	for _, s := range sampleFrames() {
		f.Add(append(vnetBytes(VnetHdr{}), s.eth...))
		f.Add(append(vnetBytes(gsoTCPv4), s.eth...))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, ok := ParseVnetHdr(data)
		if ok != (len(data) >= 10) {
			t.Fatalf("ParseVnetHdr ok = %v for %d bytes", ok, len(data))
		}
		if ok && !bytes.Equal(vnetBytes(h)[:10], data[:10]) {
			t.Fatalf("ParseVnetHdr round trip: %x -> %+v", data[:10], h)
		}
		eth := data[min(len(data), VnetHdrLen):]
		checkFrameInvariants(t, eth, h)
		// The same bytes read as a bare frame exercise other paths.
		checkFrameInvariants(t, data, VnetHdr{})
	})
}

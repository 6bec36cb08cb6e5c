package hostid

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeMachineID(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "machine-id")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFromFileGood(t *testing.T) {
	for _, content := range []string{
		"0123456789abcdeffedcba9876543210\n",
		"0123456789abcdeffedcba9876543210",
		"0123456789ABCDEFfedcba9876543210\n",
	} {
		id, err := FromFile(writeMachineID(t, content))
		if err != nil {
			t.Errorf("%q: %v", content, err)
			continue
		}
		if id != 0x0123456789abcdef {
			t.Errorf("%q: id %#x, want 0x0123456789abcdef", content, id)
		}
	}
}

func TestFromFileBad(t *testing.T) {
	for name, content := range map[string]string{
		"empty":         "",
		"newline only":  "\n",
		"short":         "0123456789abcdef\n",
		"long":          "0123456789abcdeffedcba98765432100\n",
		"very long":     strings.Repeat("a", 4096),
		"not hex":       "0123456789abcdefgedcba9876543210\n",
		"uninitialized": "uninitialized\n",
		"all zero":      "00000000000000000000000000000000\n",
		"zero high":     "0000000000000000fedcba9876543210\n",
		"two newlines":  "0123456789abcdeffedcba9876543210\n\n",
		"leading space": " 123456789abcdeffedcba9876543210\n",
		"sign":          "+123456789abcdeffedcba9876543210\n",
	} {
		id, err := FromFile(writeMachineID(t, content))
		if err == nil {
			t.Errorf("%s: got id %#x, want error", name, id)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: error %v does not wrap ErrInvalid", name, err)
		}
	}
}

func TestFromFileMissing(t *testing.T) {
	_, err := FromFile(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v does not wrap fs.ErrNotExist", err)
	}
}

func TestGetNonZero(t *testing.T) {
	if Get() == 0 {
		t.Error("Get() = 0")
	}
	if randomHostID() == 0 {
		t.Error("randomHostID() = 0")
	}
}

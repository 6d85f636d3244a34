package pluginhost

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
)

// digestPrefix is the only algorithm pins may name.
const digestPrefix = "sha256:"

// ParseChecksum checks a pin written "sha256:<64 hex digits>" and returns it
// in canonical (lower-case) form.
func ParseChecksum(s string) (string, error) {
	hexPart, ok := strings.CutPrefix(strings.TrimSpace(s), digestPrefix)
	if !ok {
		return "", fmt.Errorf("checksum %q: want sha256:<hex>", s)
	}
	b, err := hex.DecodeString(hexPart)
	if err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("checksum %q: want sha256: and %d hex digits", s, 2*sha256.Size)
	}
	return digestPrefix + hex.EncodeToString(b), nil
}

// FileDigest returns the sha256 digest of the file at path, written
// "sha256:<hex>", the form a pin takes.
func FileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return digestOf(f)
}

// digestOf hashes f from its first byte, whatever its offset, so that the
// same open file can be hashed and then executed.
func digestOf(f *os.File) (string, error) {
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, st.Size())); err != nil {
		return "", fmt.Errorf("hashing %s: %w", f.Name(), err)
	}
	return digestPrefix + hex.EncodeToString(h.Sum(nil)), nil
}

package fsutil

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestWriteFileAtomicReplacesWithMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(p, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "new" {
		t.Fatalf("read back %q, %v", b, err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, %v: want 0644 whatever the umask", fi.Mode().Perm(), err)
	}
	assertOnly(t, dir, "state.json")
	if err := WriteFileAtomic(p, []byte("sample"), 0o644, NoSync()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "sample" {
		t.Fatalf("without fsync: read back %q", b)
	}
	assertOnly(t, dir, "state.json")
}

func TestWriteFileAtomicNoReplace(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key")
	if err := WriteFileAtomic(p, []byte("first"), 0o600, NoReplace()); err != nil {
		t.Fatal(err)
	}
	err := WriteFileAtomic(p, []byte("second"), 0o600, NoReplace())
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), p) {
		t.Fatalf("second write: %v; want fs.ErrExist naming %s", err, p)
	}
	if b, _ := os.ReadFile(p); string(b) != "first" {
		t.Fatalf("the file was replaced: %q", b)
	}
	assertOnly(t, dir, "key")
}

func TestWriteFileAtomicFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	// A directory cannot be renamed over by a file: the write fails after
	// the temporary file was made.
	p := filepath.Join(dir, "taken")
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := WriteFileAtomic(p, []byte("data"), 0o644)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("write over a directory: %v; want an error naming %s", err, p)
	}
	assertOnly(t, dir, "taken")
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "f"), nil, 0o644); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

func TestWriteFileAtomicOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing a file's owner needs root")
	}
	p := filepath.Join(t.TempDir(), "conf")
	if err := WriteFileAtomic(p, []byte("x"), 0o600, WithOwner(65534, 65534)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65534 || st.Gid != 65534 {
		t.Fatalf("owner %d:%d, want 65534:65534", st.Uid, st.Gid)
	}
}

// assertOnly fails unless dir holds exactly the names given: no temporary
// file is left behind.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("%s holds %v, want %v", dir, got, names)
	}
}

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rosterhq/roster/core/protocol"
)

func TestKeygen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	var out, errOut bytes.Buffer
	if code := run([]string{"keygen", "-dir", dir}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	keys, err := protocol.LoadOrchestratorKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "order key id: "+keys.OrderKeyID()) {
		t.Fatalf("output does not name the order key id %s:\n%s", keys.OrderKeyID(), out.String())
	}
	for name, mode := range map[string]os.FileMode{protocol.OrderKeyFile: 0o600, protocol.OrderPubFile: 0o644, protocol.FleetKeyFile: 0o600} {
		path := filepath.Join(dir, name)
		if !strings.Contains(out.String(), path) {
			t.Errorf("output does not name %s", path)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode %04o, want %04o", name, fi.Mode().Perm(), mode)
		}
	}

	// A second run refuses and leaves the keys alone; -force replaces them.
	out.Reset()
	errOut.Reset()
	if code := run([]string{"keygen", "-dir", dir}, &out, &errOut); code == 0 {
		t.Fatal("second keygen succeeded")
	}
	if !strings.Contains(errOut.String(), "-force") {
		t.Fatalf("refusal does not mention -force: %s", errOut.String())
	}
	again, err := protocol.LoadOrchestratorKeys(dir)
	if err != nil || !again.OrderPublic.Equal(keys.OrderPublic) {
		t.Fatalf("the refused keygen changed the keys: %v", err)
	}
	if code := run([]string{"keygen", "-dir", dir, "-force"}, &out, &errOut); code != 0 {
		t.Fatalf("forced keygen: exit %d: %s", code, errOut.String())
	}
	forced, err := protocol.LoadOrchestratorKeys(dir)
	if err != nil || forced.OrderPublic.Equal(keys.OrderPublic) {
		t.Fatalf("-force did not replace the keys: %v", err)
	}

	if code := run([]string{"keygen", "-dir", dir, "extra"}, &out, &errOut); code == 0 {
		t.Fatal("extra argument accepted")
	}
	if code := run([]string{"keygen", "-h"}, &out, &errOut); code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
}

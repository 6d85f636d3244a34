package protocol

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestGenerateWriteLoadKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	k, err := GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	old := syscall.Umask(0) // the modes must not depend on the umask
	err = WriteKeys(dir, k)
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]fs.FileMode{OrderKeyFile: 0o600, OrderPubFile: 0o644, FleetKeyFile: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %04o, want %04o", name, fi.Mode().Perm(), want)
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("key directory mode: %v %v", fi.Mode(), err)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".*")); len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}

	orch, err := LoadOrchestratorKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !orch.OrderPrivate.Equal(k.OrderPrivate) || !orch.OrderPublic.Equal(k.OrderPublic) || !bytes.Equal(orch.FleetKey, k.FleetKey) {
		t.Fatal("loaded orchestrator keys differ from the written ones")
	}
	agent, err := LoadAgentKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if agent.OrderPrivate != nil || !agent.OrderPublic.Equal(k.OrderPublic) || !bytes.Equal(agent.FleetKey, k.FleetKey) {
		t.Fatal("loaded agent keys are wrong")
	}

	// What the loaded keys seal, the other side opens.
	oc, err := NewCodec(orch, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ac, err := NewCodec(agent, Options{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := oc.Seal(KindCommission, "orchestrator", "spares", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ac.Open(raw); err != nil {
		t.Fatal(err)
	}
}

func TestWriteKeysRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	k1, _ := GenerateKeys()
	k2, _ := GenerateKeys()
	if err := WriteKeys(dir, k1); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, OrderKeyFile))
	err := WriteKeys(dir, k2)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second write: err = %v, want fs.ErrExist", err)
	}
	if !strings.Contains(err.Error(), OrderKeyFile) {
		t.Fatalf("error does not name the file: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, OrderKeyFile))
	if !bytes.Equal(before, after) {
		t.Fatal("the refused write changed order.key")
	}
	// One existing file is enough to refuse, and nothing else is written.
	dir2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir2, FleetKeyFile), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeys(dir2, k2); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir2, OrderKeyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("order.key written although fleet.key existed")
	}

	if err := WriteKeysWith(dir, k2, WriteOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	got, err := LoadOrchestratorKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !got.OrderPublic.Equal(k2.OrderPublic) {
		t.Fatal("forced write did not replace the keys")
	}
	fi, _ := os.Stat(filepath.Join(dir, OrderKeyFile))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("forced order.key mode %04o", fi.Mode().Perm())
	}
}

func TestWriteAgentKeys(t *testing.T) {
	dir := t.TempDir()
	k, _ := GenerateKeys()
	if err := WriteKeysWith(dir, k, WriteOptions{AgentOnly: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, OrderKeyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("an agent's directory got the order private key")
	}
	if _, err := LoadAgentKeys(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrchestratorKeys(dir); err == nil {
		t.Fatal("orchestrator keys loaded without order.key")
	}
	if err := WriteKeys(t.TempDir(), k.Agent()); err == nil {
		t.Fatal("WriteKeys without a private key succeeded")
	}
}

func TestLoadKeysRefuses(t *testing.T) {
	k, _ := GenerateKeys()
	write := func(t *testing.T) string {
		dir := t.TempDir()
		if err := WriteKeys(dir, k); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	t.Run("group-readable fleet key", func(t *testing.T) {
		dir := write(t)
		_ = os.Chmod(filepath.Join(dir, FleetKeyFile), 0o640)
		if _, err := LoadAgentKeys(dir); err == nil || !strings.Contains(err.Error(), FleetKeyFile) {
			t.Fatalf("agent: err = %v", err)
		}
		if _, err := LoadOrchestratorKeys(dir); err == nil {
			t.Fatal("orchestrator loaded a group-readable fleet key")
		}
	})
	t.Run("world-readable order key", func(t *testing.T) {
		dir := write(t)
		_ = os.Chmod(filepath.Join(dir, OrderKeyFile), 0o604)
		if _, err := LoadOrchestratorKeys(dir); err == nil || !strings.Contains(err.Error(), OrderKeyFile) {
			t.Fatalf("err = %v", err)
		}
		// An agent does not read order.key at all.
		if _, err := LoadAgentKeys(dir); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("public key of another pair", func(t *testing.T) {
		dir := write(t)
		other, _ := GenerateKeys()
		if err := WriteKeysWith(dir+"/x", other, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(filepath.Join(dir, "x", OrderPubFile))
		_ = os.WriteFile(filepath.Join(dir, OrderPubFile), data, 0o644)
		if _, err := LoadOrchestratorKeys(dir); err == nil {
			t.Fatal("mismatched order.pub accepted")
		}
	})
	t.Run("missing file", func(t *testing.T) {
		dir := write(t)
		_ = os.Remove(filepath.Join(dir, OrderPubFile))
		if _, err := LoadAgentKeys(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		dir := write(t)
		_ = os.WriteFile(filepath.Join(dir, FleetKeyFile), []byte("not pem\n"), 0o600)
		if _, err := LoadAgentKeys(dir); err == nil {
			t.Fatal("garbage fleet key accepted")
		}
	})
	t.Run("wrong PEM type", func(t *testing.T) {
		dir := write(t)
		pub, _ := os.ReadFile(filepath.Join(dir, OrderPubFile))
		_ = os.WriteFile(filepath.Join(dir, FleetKeyFile), pub, 0o600)
		if _, err := LoadAgentKeys(dir); err == nil {
			t.Fatal("public key accepted as the fleet key")
		}
	})
}

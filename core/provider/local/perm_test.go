package local

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rosterhq/roster/core/provider"
)

// TestWorkDirsTraversable: data_dir, machines/ and a machine's work
// directory can be traversed but not listed by other users (the postgres
// and www-data users of the db and web roles reach their files below), also
// when data_dir was made 0700 by an older version.
func TestWorkDirsTraversable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cleanupMachines(t, dir)
	// Booting for an hour: the machine's directory exists, no process runs.
	p := newProvider(t, dir, func(o *Options) { o.BootDelay = time.Hour })
	if _, err := p.Launch(context.Background(), provider.LaunchRequest{Token: "t", MachineID: "m-1"}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "machines"), filepath.Join(dir, "machines", "m-1")} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o711 {
			t.Errorf("%s: mode %#o, want 0711", d, got)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, MachinesFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got&0o077 != 0 {
		t.Errorf("%s: mode %#o, readable by others", MachinesFile, got)
	}
}

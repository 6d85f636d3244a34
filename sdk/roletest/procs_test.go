package roletest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// recorder keeps what AssertExited reports instead of failing the test.
type recorder struct {
	*testing.T
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestProcessHelpers(t *testing.T) {
	marker := "roletest-marker-" + filepath.Base(t.TempDir())
	// exec -a puts the marker in the command line of the process itself.
	cmd := exec.Command("bash", "-c", "exec -a "+marker+" sleep 30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid

	if got := ProcessesMentioning(marker); len(got) != 1 || got[0] != pid {
		t.Fatalf("ProcessesMentioning = %v, want [%d]", got, pid)
	}
	r := &recorder{T: t}
	AssertExited(r, []int{pid})
	if len(r.errs) != 1 {
		t.Fatalf("AssertExited on a running process reported %v", r.errs)
	}

	// Killed but not yet reaped: a zombie counts as exited.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); alive(pid); {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still running after SIGKILL", pid)
		}
		time.Sleep(time.Millisecond)
	}
	r.errs = nil
	AssertExited(r, []int{pid})
	if len(r.errs) != 0 || len(ProcessesMentioning(marker)) != 0 {
		t.Fatalf("a zombie counted as running: %v, %v", r.errs, ProcessesMentioning(marker))
	}

	d := WorkDir(t)
	st, err := os.Stat(filepath.Dir(d))
	if err != nil || st.Mode().Perm() != 0o711 {
		t.Fatalf("WorkDir's parent mode %v, %v; want 0711", st.Mode().Perm(), err)
	}
}

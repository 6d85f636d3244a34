package pluginhost

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// A plugin started from a goroutine whose thread then ends must live on:
// Pdeathsig follows the forking thread, so the fork must not happen there.
func TestLauncherThreadOutlivesCallers(t *testing.T) {
	cmd := exec.Command("sleep", "300")
	cmd.SysProcAttr = sysProcAttr()
	type res struct {
		tid int
		err error
	}
	ch := make(chan res, 1)
	var r res
	for {
		go func() {
			runtime.LockOSThread()
			if syscall.Gettid() == os.Getpid() {
				// The runtime parks the main thread rather than end it.
				runtime.UnlockOSThread()
				ch <- res{tid: 0}
				return
			}
			// Never unlocked: the thread ends with the goroutine.
			err := startOnLockedThread(cmd)
			ch <- res{syscall.Gettid(), err}
		}()
		if r = <-ch; r.tid != 0 {
			break
		}
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", r.tid)); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("thread %d did not exit", r.tid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The caller's thread is gone; had the child been forked from it, the
	// kernel would have sent SIGKILL already and the child be dying now.
	select {
	case err := <-waited:
		t.Fatalf("the child died with the caller's thread: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-waited
}

package pluginhost

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// Pdeathsig is delivered when the *thread* that forked the child exits, not
// when the process does. The Go runtime starts goroutines on any thread, and
// ends a thread when a goroutine that locked it returns without unlocking;
// a plugin started from such a thread would be SIGKILLed long before its
// agent exits. Locking the caller's thread only for the duration of Start
// does not help: the thread goes back to the pool and may be ended later.
// So every plugin is started from one goroutine that locks its thread and
// never returns: that thread lives exactly as long as the agent process.
var launcher struct {
	once sync.Once
	reqs chan launchReq
}

type launchReq struct {
	cmd  *exec.Cmd
	done chan error
}

func startOnLockedThread(cmd *exec.Cmd) error {
	launcher.once.Do(func() {
		launcher.reqs = make(chan launchReq)
		go func() {
			runtime.LockOSThread()
			// Never unlocked and never returns, on purpose.
			for r := range launcher.reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	launcher.reqs <- launchReq{cmd: cmd, done: done}
	return <-done
}

// sysProcAttr puts the plugin in its own process group (so that Close can
// take whatever it started along, and a terminal's Ctrl-C reaches only the
// agent) and has the kernel SIGKILL it when the agent dies, SIGKILL
// included.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

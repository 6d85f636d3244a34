//go:build !linux

package pluginhost

import (
	"os/exec"
	"syscall"
)

// Only Linux has Pdeathsig. Elsewhere the plugin notices its agent is gone
// when its stdin reaches EOF (the host holds the only write end).
func startOnLockedThread(cmd *exec.Cmd) error { return cmd.Start() }

func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

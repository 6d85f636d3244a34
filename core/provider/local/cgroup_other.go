//go:build !linux

package local

import (
	"errors"
	"syscall"
)

// cgroupParent: cgroups are Linux's; elsewhere Terminate sweeps.
func cgroupParent(string) (string, error) {
	return "", errors.New("cgroups are a Linux feature")
}

// setCgroupFD is never reached: cgroupParent always fails here.
func setCgroupFD(*syscall.SysProcAttr, *machineCgroup) {}

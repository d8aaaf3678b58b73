//go:build !unix

package pgtest

import "syscall"

// procAttr: no users to switch to, no death signal.
func procAttr(*owner) *syscall.SysProcAttr { return nil }

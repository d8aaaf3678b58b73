//go:build unix && !linux

package pgtest

import "syscall"

// procAttr runs a child as the server's user (when set). Only Linux can tie
// a child's life to its parent's; elsewhere t.Cleanup stops the server.
func procAttr(as *owner) *syscall.SysProcAttr {
	if as == nil {
		return nil
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(as.uid), Gid: uint32(as.gid)}}
}

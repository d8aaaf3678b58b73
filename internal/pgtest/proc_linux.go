package pgtest

import "syscall"

// procAttr runs a child as the server's user (when set) and has the kernel
// send it SIGQUIT (PostgreSQL's immediate shutdown) when the test binary
// dies, so no postmaster outlives a test whose cleanup did not run. (A
// change of credentials clears the death signal; Go sets it after them.)
func procAttr(as *owner) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Pdeathsig: syscall.SIGQUIT}
	if as != nil {
		a.Credential = &syscall.Credential{Uid: uint32(as.uid), Gid: uint32(as.gid)}
	}
	return a
}

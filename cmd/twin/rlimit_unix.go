//go:build unix

package main

import (
	"fmt"
	"syscall"
)

// raiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit (the Go
// runtime does this too since 1.19; doing it here makes the dependence
// explicit) and returns the soft limit now in force.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit NOFILE: %w", err)
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = want.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			return uint64(lim.Cur), fmt.Errorf("setrlimit NOFILE to %d: %w", want.Max, err)
		}
		lim = want
	}
	return uint64(lim.Cur), nil
}

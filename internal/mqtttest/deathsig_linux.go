package mqtttest

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill mosquitto when the test binary dies
// (a timeout panic or a kill skips Stop), so no broker outlives its tests.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

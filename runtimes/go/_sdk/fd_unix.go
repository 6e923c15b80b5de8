//go:build unix

package sdk

import "syscall"

// closeOnExec keeps the protocol pipes out of the processes the function spawns: a child that
// inherited fd 4 could write into the protocol stream, and one holding fd 3 would keep the
// invoker's pipe alive after the runtime exits.
func closeOnExec(fds ...int) {
	for _, fd := range fds {
		syscall.CloseOnExec(fd)
	}
}

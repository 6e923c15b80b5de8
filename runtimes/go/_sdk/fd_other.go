//go:build !unix

package sdk

// closeOnExec is a no-op where Coda does not run; it lets actions compile on a developer's machine.
func closeOnExec(...int) {}

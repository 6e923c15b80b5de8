package sandbox

import (
	"os/exec"
	"slices"
	"testing"
)

// TestDescendants checks the children-file walk against the full /proc scan.
func TestDescendants(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "sleep 1000 & sleep 1000 & echo ready; wait")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil {
		t.Fatal(err)
	}
	fast, scan := descendants(cmd.Process.Pid), descendantsByScan(cmd.Process.Pid)
	slices.Sort(fast)
	slices.Sort(scan)
	if len(fast) != 3 || !slices.Equal(fast, scan) {
		t.Errorf("descendants = %v, scan = %v", fast, scan)
	}
	for _, pid := range fast[1:] {
		_ = syscallKill(pid)
	}
}

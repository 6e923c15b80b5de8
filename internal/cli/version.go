package cli

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// runVersion prints the module version and VCS revision the binary was built from.
func runVersion(_ context.Context, r *runner, _ *parsed) error {
	version, revision := "(devel)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				revision = " " + s.Value[:12]
			}
		}
	}
	fmt.Fprintf(r.env.Stdout, "coda %s%s %s %s/%s\n", version, revision, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

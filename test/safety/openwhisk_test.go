package safety

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/testenv"
)

// nodeBinary runs the openwhisk client script (the version the Node.js runtime pins).
const nodeBinary = "/usr/bin/node"

// owClientTimeout is a hang guard for the whole client script.
const owClientTimeout = 5 * time.Minute // includes compiling a Go action on a busy machine

// TestOpenWhiskNpmClient drives Coda with the unmodified `openwhisk` npm client: create,
// blocking invoke with result, full record, list and get activations, delete.
func TestOpenWhiskNpmClient(t *testing.T) {
	modules := testenv.NodeModules(t)
	if _, err := os.Stat(nodeBinary); err != nil {
		t.Skipf("needs %s: %v", nodeBinary, err)
	}
	s := testenv.Start(t)
	script, err := filepath.Abs(filepath.Join("testdata", "owclient.js"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), owClientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBinary, script)
	cmd.Env = append(os.Environ(),
		"NODE_PATH="+modules,
		"OW_APIHOST="+s.URL,
		"OW_AUTH="+s.Auth,
		"OW_ACTION=safety-openwhisk-client",
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("openwhisk client script: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	out := strings.TrimSpace(stdout.String())
	t.Logf("openwhisk npm client: %s", out)
	if !strings.Contains(out, `"ok":true`) {
		t.Errorf("unexpected output: %s\nstderr: %s", out, stderr.String())
	}
}

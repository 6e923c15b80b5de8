package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coda-serverless/coda/internal/testenv"
)

// probeJS reports what an instance can see and do of the world outside it.
const probeJS = `const fs = require('fs');
function attempt(f) { try { return 'ok: ' + String(f()).slice(0, 80); } catch (e) { return 'denied: ' + e.code; } }
function main(p) {
  fs.writeFileSync('/tmp/coda-isolation-probe', 'from the instance');
  return {
    uid: process.getuid(),
    pid: process.pid,
    readAuth: attempt(() => fs.readFileSync(p.auth, 'utf8')),
    readDB: attempt(() => fs.readFileSync(p.db).length),
    listData: attempt(() => fs.readdirSync(p.data).join(',')),
    signalServer: attempt(() => process.kill(p.serverPid, 0)),
    procs: fs.readdirSync('/proc').filter(n => /^\d+$/.test(n)).length,
    hostname: require('os').hostname(),
  };
}`

// TestIsolation: an instance runs as an unprivileged user in its own pid, mount and uts
// namespaces, with a private /tmp; it can neither read the data directory (keys, store) nor
// signal the server.
func TestIsolation(t *testing.T) {
	s := testenv.Start(t)
	if !strings.Contains(startupLog(t, s), "namespaces pid") {
		t.Skipf("namespaces are not available on this host: %s", isolationLine(s.Logs()))
	}
	s.Deploy(t, "probe", "nodejs:20", probeJS, nil, nil)
	hostProbe := "/tmp/coda-isolation-probe"
	_ = os.Remove(hostProbe)
	params := map[string]any{"auth": filepath.Join(s.Data, "auth"), "db": filepath.Join(s.Data, "coda.db"),
		"data": s.Data, "serverPid": s.Pid()}
	status, body, _ := s.InvokeQuery(t, s.Auth, "probe", params, "blocking=true&result=true")
	if status != http.StatusOK {
		t.Fatalf("%d %s", status, body)
	}
	var got struct {
		UID          int    `json:"uid"`
		Pid          int    `json:"pid"`
		ReadAuth     string `json:"readAuth"`
		ReadDB       string `json:"readDB"`
		ListData     string `json:"listData"`
		SignalServer string `json:"signalServer"`
		Procs        int    `json:"procs"`
		Hostname     string `json:"hostname"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	t.Logf("inside the instance: %+v", got)
	if got.UID == 0 {
		t.Error("the instance runs as root")
	}
	// The runtimes are mounted back read-only inside the hidden data directory; nothing else
	// of it may show.
	if strings.Contains(got.ListData, "auth") || strings.Contains(got.ListData, "coda.db") {
		t.Errorf("the instance can list the data directory: %s", got.ListData)
	}
	for what, v := range map[string]string{"read DATA/auth": got.ReadAuth, "read DATA/coda.db": got.ReadDB,
		"signal coda serve": got.SignalServer} {
		if !strings.HasPrefix(v, "denied") {
			t.Errorf("the instance could %s: %s", what, v)
		}
	}
	if got.Procs > 10 {
		t.Errorf("the instance sees %d processes: it is not in its own pid namespace", got.Procs)
	}
	if _, err := os.Stat(hostProbe); err == nil {
		t.Error("the instance's /tmp is the host's /tmp")
	}
}

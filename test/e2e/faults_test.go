package e2e

import (
	"context"
	"database/sql"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the integrity check opens the store the way coda does

	"github.com/coda-serverless/coda/internal/client"
	"github.com/coda-serverless/coda/internal/testenv"
)

// inFlightDelay is how long a test lets an activation run before it disturbs the server: long
// enough that a warm instance has certainly started it, short of the activation's own length.
const inFlightDelay = 700 * time.Millisecond

// TestSIGTERMAndRestart: SIGTERM with an activation in flight lets it end (response and
// background work), exits 0, and a restarted server has the actions and complete records.
func TestSIGTERMAndRestart(t *testing.T) {
	s := testenv.Start(t, "--stem-cells", "0")
	s.Deploy(t, "echo", "nodejs:20", echoJS, map[string]any{"note": "survives"}, map[string]int{"timeout": 5000})
	// Responds after 1 s and logs from the background 1.5 s later.
	s.Deploy(t, "tail", "nodejs:20", `function main(p) {
  return new Promise(resolve => setTimeout(() => {
    setTimeout(() => console.log("background done"), 1500);
    resolve({ok: true});
  }, p.ms || 0));
}`, nil, nil)
	before := invokeOK(t, s, "echo", map[string]any{"n": 1})
	before = s.WaitEnded(t, before.ActivationID, endGuard)
	invokeOK(t, s, "tail", nil) // warm: the next one starts at once

	type answer struct {
		inv *client.Invocation
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		inv, err := s.Client.Invoke(context.Background(), "tail", map[string]any{"ms": 1000}, true, false)
		ch <- answer{inv, err}
	}()
	time.Sleep(inFlightDelay)
	if code := s.Stop(t); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d; log tail:\n%s", code, tail(s))
	}
	ans := <-ch
	if ans.err != nil {
		t.Fatalf("the in-flight blocking invoke got no answer: %v", ans.err)
	}
	if ans.inv.Status != http.StatusOK {
		t.Fatalf("the in-flight blocking invoke: %d %s", ans.inv.Status, ans.inv.Body)
	}
	id := ans.inv.ActivationID

	s2 := s.Restart(t)
	a := s2.WaitEnded(t, id, endGuard)
	if !a.Response.Success {
		t.Errorf("in-flight activation after restart: %+v", a.Response)
	}
	if tm := testenv.TerminationOf(a); tm.Cause != "settled" {
		t.Errorf("in-flight activation: termination %+v, want settled (it was allowed to finish)", tm)
	}
	if !strings.Contains(strings.Join(a.Logs, "\n"), "background done") {
		t.Errorf("in-flight activation lost its background log line: %q", a.Logs)
	}

	// Actions and older records are intact.
	act, err := s2.Client.GetAction(t.Context(), "echo")
	if err != nil {
		t.Fatalf("echo after restart: %v", err)
	}
	if v, _ := act.Annotations.GetString("note"); v != "survives" || act.Limits.Timeout != 5000 {
		t.Errorf("echo after restart: annotations %+v limits %+v", act.Annotations, act.Limits)
	}
	old, ok := s2.Activation(t, before.ActivationID)
	if !ok {
		t.Fatalf("record %s lost in the restart", before.ActivationID)
	}
	if string(old.Response.Result) != string(before.Response.Result) || old.End != before.End || old.Start != before.Start {
		t.Errorf("record changed in the restart:\nbefore %+v\nafter  %+v", before, old)
	}
	invokeOK(t, s2, "echo", map[string]any{"n": 2})
}

// TestKill9RuntimeInBackgroundPhase: a runtime killed while its activation still has work
// pending leaves a record that says crash and what was pending; the next invoke works.
func TestKill9RuntimeInBackgroundPhase(t *testing.T) {
	s := testenv.Start(t, "--stem-cells", "0")
	s.Deploy(t, "bg", "nodejs:20", `function main(p) {
  if (p.later) setTimeout(() => console.log("never printed"), 30000);
  return {ok: true};
}`, nil, nil)
	rec := invokeOK(t, s, "bg", map[string]any{"later": true})
	// The pending snapshot follows the response; give it time to arrive.
	time.Sleep(inFlightDelay)
	if a, ok := s.Activation(t, rec.ActivationID); !ok || a.End != 0 {
		t.Fatalf("activation with a 30 s timer pending is not in its background phase: %+v", a)
	}
	pids := waitRuntimes(t, s, 1)
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a := s.WaitEnded(t, rec.ActivationID, endGuard)
	tm := testenv.TerminationOf(a)
	if tm.Cause != "crash" {
		t.Errorf("termination %+v, want cause crash", tm)
	}
	if !strings.Contains(strings.Join(tm.Pending, " "), "setTimeout") {
		t.Errorf("termination pending %q does not list the setTimeout that was lost", tm.Pending)
	}
	if r := invokeOK(t, s, "bg", nil); !cold(r) {
		t.Errorf("invoke after the crash is warm on a dead instance? %+v", r.Annotations)
	}
}

// TestKill9Server: after kill -9 of coda serve mid-activation the store passes SQLite's
// integrity check, and the restarted server closes the activation as interrupted.
func TestKill9Server(t *testing.T) {
	s := testenv.Start(t, "--stem-cells", "0")
	s.Deploy(t, "slowpoke", "nodejs:20", instanceJS, nil, nil)
	warm := invokeOK(t, s, "slowpoke", nil)
	warm = s.WaitEnded(t, warm.ActivationID, endGuard)
	status, body, id := s.Invoke(t, "slowpoke", map[string]any{"ms": 20000}, false)
	if status != http.StatusAccepted {
		t.Fatalf("non-blocking invoke: %d %s", status, body)
	}
	time.Sleep(inFlightDelay)
	old := runtimePids(s)
	s.Kill9(t)

	db, err := sql.Open("sqlite", filepath.Join(s.Data, "coda.db"))
	if err != nil {
		t.Fatal(err)
	}
	var check string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil {
		t.Fatalf("integrity check: %v", err)
	}
	db.Close()
	if check != "ok" {
		t.Fatalf("PRAGMA integrity_check after kill -9: %s", check)
	}

	s2 := s.Restart(t)
	a := s2.WaitEnded(t, id, endGuard)
	if tm := testenv.TerminationOf(a); tm.Cause != "interrupted" {
		t.Errorf("activation in flight at kill -9: termination %+v, want cause interrupted", tm)
	}
	if a.Response.Success {
		t.Errorf("activation in flight at kill -9 is recorded as a success: %+v", a.Response)
	}
	if got, ok := s2.Activation(t, warm.ActivationID); !ok || got.End != warm.End {
		t.Errorf("earlier record after kill -9: %+v", got)
	}
	if _, err := s2.Client.GetAction(t.Context(), "slowpoke"); err != nil {
		t.Errorf("action after kill -9: %v", err)
	}
	invokeOK(t, s2, "slowpoke", nil)
	for _, p := range old {
		if syscall.Kill(p, 0) == nil {
			t.Logf("runtime pid %d of the killed server is still alive", p)
		}
	}
	// No record is left running.
	recs, err := s2.Client.ListActivations(t.Context(), client.ActivationFilter{Docs: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.End == 0 {
			s2.WaitEnded(t, r.ActivationID, endGuard) // fails the test if it stays open
		}
	}
}

package safety

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/testenv"
)

const (
	// pauseRounds is how many invocations the pause test makes, one after the other, so that
	// the instance is warm (and, with a 1 ms grace, a candidate for pausing) every time.
	pauseRounds = 5
	// pauseWork is the background delay before the write: far longer than the pause grace.
	pauseWork = 300 * time.Millisecond
	// sigtermInvocations and sigtermWork: writes in flight when coda serve gets SIGTERM.
	sigtermInvocations = 20
	sigtermWork        = 500 * time.Millisecond
	// exitWithin is a hang guard for coda serve to finish in-flight work and exit.
	exitWithin = 60 * time.Second
)

// nodeDelayedWrite writes {key: Date.now()} to Redis over a fresh socket delayMS after the
// response.
func nodeDelayedWrite(delayMS int64) string {
	return `
const net = require('net');

exports.main = (params) => {
  const key = params.key;
  setTimeout(() => {
    const sock = net.connect(REDIS_PORT, REDIS_HOST, () => sock.write(resp(['SET', key, Date.now()])));
    sock.once('data', () => sock.end());
    sock.on('error', (e) => console.error('write failed:', e.message));
  }, ` + strconv.FormatInt(delayMS, 10) + `);
  return { ok: true };
};
`
}

// TestPauseNeverFreezesPendingWork runs with a 1 ms pause grace: an instance whose activation
// still has a timer pending must not be frozen, so every write lands and every record settles
// soon after it.
func TestPauseNeverFreezesPendingWork(t *testing.T) {
	d := needDeps(t)
	s := testenv.Start(t, "--pause-grace", "1ms", "--keep-alive", "10m")
	action := "safety-pause"
	s.DeployZip(t, action, nodeKind, nodeZipFiles(t, nodePrelude(d)+nodeDelayedWrite(pauseWork.Milliseconds())), nil, actionLimits(0))
	run := runID(t)
	var keys []string
	for round := range pauseRounds {
		key := fmt.Sprintf("coda:safety:%s:pause:%d", run, round)
		keys = append(keys, key)
		status, body, id := s.Invoke(t, action, map[string]any{"key": key}, true)
		if status != 200 || id == "" {
			t.Fatalf("round %d: HTTP %d %s", round, status, body)
		}
		rec := s.WaitEnded(t, id, endedWithin)
		tm := testenv.TerminationOf(rec)
		got := redisValues(t, d.redis, []string{key})
		t.Logf("SAFETY pause round=%d found=%d background=%dms termination=%+v", round, len(got), backgroundMS(rec), tm)
		if tm.Cause != "settled" {
			t.Errorf("round %d: cause %q, want settled (a frozen instance only ends at its deadline)", round, tm.Cause)
		}
		v, ok := got[key]
		if !ok {
			t.Errorf("round %d: the write after %v is missing at the record's end", round, pauseWork)
			continue
		}
		if ms, _ := strconv.ParseInt(v, 10, 64); rec.End+clockSkew.Milliseconds() < ms {
			t.Errorf("round %d: record ended at %d, before the write at %d", round, rec.End, ms)
		}
		if bg := backgroundMS(rec); bg > (pauseWork + idleHangGuard).Milliseconds() {
			t.Errorf("round %d: ended %d ms after its response; the work takes %v (was it frozen meanwhile?)", round, bg, pauseWork)
		}
	}
	redisDelete(t, d.redis, keys)
}

// TestSigtermLosesNothing stops coda serve with SIGTERM while twenty activations are in their
// background phase: it must let them end, exit 0, and every write must be there.
func TestSigtermLosesNothing(t *testing.T) {
	d := needDeps(t)
	s := startServer(t)
	action := "safety-sigterm"
	s.DeployZip(t, action, nodeKind, nodeZipFiles(t, nodePrelude(d)+nodeDelayedWrite(sigtermWork.Milliseconds())), nil, actionLimits(0))
	run := runID(t)
	keys := make([]string, sigtermInvocations)
	ids := make([]string, sigtermInvocations)
	errs := make([]string, sigtermInvocations)
	var wg sync.WaitGroup
	for i := range keys {
		keys[i] = fmt.Sprintf("coda:safety:%s:sigterm:%d", run, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := invokeBlocking(t.Context(), s, action, map[string]any{"key": keys[i]})
			switch {
			case r.err != nil:
				errs[i] = r.err.Error()
			case r.status != 200:
				errs[i] = fmt.Sprintf("HTTP %d", r.status)
			}
			ids[i] = r.id
		}()
	}
	wg.Wait()
	for i, e := range errs {
		if e != "" {
			t.Fatalf("invocation %d: %s", i, e)
		}
	}
	// Every response is in; the writes are due sigtermWork from now.
	sent := time.Now()
	code := s.Stop(t)
	took := time.Since(sent)
	found := redisValues(t, d.redis, keys)
	t.Logf("SAFETY sigterm expected=%d found=%d exit=%d stop-took=%v", len(keys), len(found), code, took.Round(time.Millisecond))
	defer redisDelete(t, d.redis, keys)
	if code != 0 {
		t.Errorf("coda serve exited %d after SIGTERM, want 0", code)
	}
	if len(found) != len(keys) {
		t.Errorf("LOST WRITES on SIGTERM: expected %d, found %d", len(keys), len(found))
	}
	if took > exitWithin {
		t.Errorf("coda serve took %v to exit", took)
	}
	// The records were closed before the exit: a new server on the same data shows them ended.
	s2 := s.Restart(t)
	for i, id := range ids {
		a, ok := s2.Activation(t, id)
		if !ok {
			t.Errorf("record %s (invocation %d) is missing after the restart", id, i)
			continue
		}
		tm := testenv.TerminationOf(a)
		if a.End == 0 || tm.Cause != "settled" {
			t.Errorf("record %s after SIGTERM: end=%d termination=%+v, want ended settled", id, a.End, tm)
		}
	}
}

package safety

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/entity"
	"github.com/coda-serverless/coda/internal/testenv"
)

// The three termination modes (the action annotation "termination").
const (
	modeDecoupled = "decoupled"
	modeAwait     = "await"
	modeCoupled   = "coupled"
)

var allModes = []string{modeDecoupled, modeAwait, modeCoupled}

const (
	// defaultN is the invocations per scenario and mode: hundreds, so that rare races show,
	// while the whole suite stays within minutes on 2 cores. CODA_SAFETY_N overrides it.
	defaultN = 200
	// clients is how many invocations are in flight at once.
	clients = 8
	// bgDelay is how long every scenario's background work takes after the response (a sleep,
	// a slow command, a slow service): longer than the gap between a coupled response and the
	// termination of its instance, so that the coupled baseline visibly loses the write.
	bgDelay = 100 * time.Millisecond
	// clockSkew tolerates the ms rounding of records and write timestamps (one clock).
	clockSkew = 5 * time.Millisecond
	// bgTolerance absorbs timer granularity when comparing measured gaps with bgDelay.
	bgTolerance = 15 * time.Millisecond
	// coupledGrace lets writes a coupled instance handed to the kernel before it was killed
	// land before they are counted, so that "lost" means lost, not late.
	coupledGrace = 2 * time.Second
	// endedWithin is a hang guard for one record to end after its invocation returned.
	endedWithin = 2 * time.Minute
	// invokeTimeout is a hang guard for one blocking invocation (the API answers 202 at 60 s).
	invokeTimeout = 3 * time.Minute
	// actionMemoryMB keeps instances small, so that the pool holds many at once.
	actionMemoryMB = 128
)

// invocations returns CODA_SAFETY_N, or defaultN.
func invocations(t testing.TB) int {
	t.Helper()
	v := os.Getenv("CODA_SAFETY_N")
	if v == "" {
		return defaultN
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("CODA_SAFETY_N=%q: want a positive integer", v)
	}
	return n
}

// serverFlags are the flags every safety server runs with: instances die as soon as they are
// quiescent (the scale-down that loses writes elsewhere), and the namespace limits are far
// above what the suite's clients can reach, so that no invocation is refused.
var serverFlags = []string{"--keep-alive", "0", "--limit-concurrent", "100000", "--limit-per-minute", "1000000"}

// startServer runs coda serve with serverFlags plus extra.
func startServer(t testing.TB, extra ...string) *testenv.Server {
	t.Helper()
	return testenv.Start(t, append(slices.Clone(serverFlags), extra...)...)
}

// runID makes keys unique across runs that share one Redis and PostgreSQL.
func runID(t testing.TB) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return time.Now().UTC().Format("150405") + hex.EncodeToString(b[:])
}

// store says where a scenario's writes land and how the test reads them back.
type store interface {
	// values returns, for each key found, its write's time (ms since the epoch) as text:
	// issue time for Redis values, commit time for the sink and PostgreSQL.
	values(t testing.TB, keys []string) map[string]string
	cleanup(t testing.TB, keys []string)
	// completion reports whether values are completion times (end must not precede them) or
	// issue times (end must not precede them either, a weaker check).
	completion() bool
}

type redisStore struct{ addr string }

func (r redisStore) values(t testing.TB, keys []string) map[string]string {
	return redisValues(t, r.addr, keys)
}
func (r redisStore) cleanup(t testing.TB, keys []string) { redisDelete(t, r.addr, keys) }
func (redisStore) completion() bool                      { return false }

type pgStore struct{ url string }

func (p pgStore) values(t testing.TB, keys []string) map[string]string {
	return pgValues(t, p.url, keys)
}
func (p pgStore) cleanup(t testing.TB, keys []string) { pgDelete(t, p.url, keys) }
func (pgStore) completion() bool                      { return true }

type sinkStore struct{ s *sink }

func (s sinkStore) values(_ testing.TB, keys []string) map[string]string { return s.s.values(keys) }
func (sinkStore) cleanup(testing.TB, []string)                           {}
func (sinkStore) completion() bool                                       { return true }

// scenario is one kind of background write, run n times under one mode.
type scenario struct {
	name   string // "node/redis-pool": what SAFETY lines call it
	store  store
	deploy func(t testing.TB, s *testenv.Server, action, mode string)
	// params are added to each invocation's {"key": ...}.
	params map[string]any
}

// outcome is what one scenario × mode run measured.
type outcome struct {
	expected, found  int
	late             int // writes whose time is after their record's end (+ skew)
	causes           map[string]int
	medianResponseMS int64 // responseTime annotation
	medianTailMS     int64 // end - start - responseTime: the background phase
	maxTailMS        int64
	failedResponses  int
}

func (o outcome) String() string {
	causes := make([]string, 0, len(o.causes))
	for c, n := range o.causes {
		causes = append(causes, fmt.Sprintf("%s:%d", c, n))
	}
	slices.Sort(causes)
	return fmt.Sprintf("expected=%d found=%d lost=%d late=%d responseTime.p50=%dms background.p50=%dms background.max=%dms causes=%s",
		o.expected, o.found, o.expected-o.found, o.late, o.medianResponseMS, o.medianTailMS, o.maxTailMS, strings.Join(causes, ","))
}

// invokeResult is one blocking invocation's answer.
type invokeResult struct {
	id      string
	status  int
	success bool
	err     error
}

// invokeBlocking posts one blocking invocation; it never calls t.Fatal, so that it can run on
// client goroutines.
func invokeBlocking(ctx context.Context, s *testenv.Server, action string, params map[string]any) invokeResult {
	body, err := json.Marshal(params)
	if err != nil {
		return invokeResult{err: err}
	}
	u := s.URL + "/api/v1/namespaces/_/actions/" + url.PathEscape(action) + "?blocking=true"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return invokeResult{err: err}
	}
	user, key, _ := strings.Cut(s.Auth, ":")
	req.SetBasicAuth(user, key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.HTTP.Do(req)
	if err != nil {
		return invokeResult{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return invokeResult{status: resp.StatusCode, err: err}
	}
	r := invokeResult{id: resp.Header.Get("x-openwhisk-activation-id"), status: resp.StatusCode}
	var rec entity.Activation
	if json.Unmarshal(b, &rec) == nil {
		if r.id == "" {
			r.id = rec.ActivationID
		}
		r.success = rec.Response.Success
	}
	if r.id == "" {
		r.err = fmt.Errorf("invoke %s: %d without an activation id: %.300s", action, resp.StatusCode, b)
	}
	return r
}

// invokeMany runs n blocking invocations of action, clients at a time, with params(i), and
// returns the activation ids in order. Any transport error or refused invocation fails t.
func invokeMany(t testing.TB, s *testenv.Server, action string, n int, params func(i int) map[string]any) []invokeResult {
	t.Helper()
	results := make([]invokeResult, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(clients, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				ctx, cancel := context.WithTimeout(context.Background(), invokeTimeout)
				results[i] = invokeBlocking(ctx, s, action, params(i))
				cancel()
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("invocation %d of %s: %v", i, action, r.err)
		}
		if r.status != http.StatusOK && r.status != http.StatusAccepted && r.status != http.StatusBadGateway {
			t.Fatalf("invocation %d of %s: HTTP %d", i, action, r.status)
		}
	}
	return results
}

// waitAll waits until every record has ended and returns them in order.
func waitAll(t testing.TB, s *testenv.Server, results []invokeResult) []*entity.Activation {
	t.Helper()
	recs := make([]*entity.Activation, len(results))
	for i, r := range results {
		recs[i] = s.WaitEnded(t, r.id, endedWithin)
	}
	return recs
}

// annotationInt reads a numeric annotation (ms); -1 when absent.
func annotationInt(a *entity.Activation, key string) int64 {
	var v float64
	if !testenv.Annotation(a, key, &v) {
		return -1
	}
	return int64(v)
}

func median(v []int64) int64 {
	if len(v) == 0 {
		return -1
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// runScenario deploys sc under mode, invokes it n times, waits for every record to end, reads
// the store, logs the SAFETY line and asserts the mode's guarantees.
func runScenario(t *testing.T, s *testenv.Server, sc scenario, mode, run string, n int) outcome {
	t.Helper()
	action := "safety-" + strings.NewReplacer("/", "-", "_", "-", ".", "-").Replace(sc.name) + "-" + mode
	sc.deploy(t, s, action, mode)

	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("coda:safety:%s:%s:%d", run, action, i)
	}
	t.Cleanup(func() { sc.store.cleanup(t, keys) })
	results := invokeMany(t, s, action, n, func(i int) map[string]any {
		p := map[string]any{"key": keys[i]}
		for k, v := range sc.params {
			p[k] = v
		}
		return p
	})
	recs := waitAll(t, s, results)
	if mode == modeCoupled {
		time.Sleep(coupledGrace)
	}
	found := sc.store.values(t, keys)

	o := outcome{expected: n, found: len(found), causes: map[string]int{}}
	var responses, tails []int64
	var badMode []string
	unexpected := 0
	for i, rec := range recs {
		if !rec.Response.Success {
			o.failedResponses++
			if o.failedResponses <= 3 {
				t.Errorf("%s %s: activation %s failed: %s; logs: %q", sc.name, mode, rec.ActivationID, rec.Response.Result, rec.Logs)
			}
		}
		tm := testenv.TerminationOf(rec)
		o.causes[tm.Cause]++
		if want := wantCause(mode); tm.Cause != want {
			if unexpected++; unexpected <= 3 {
				b, _ := json.Marshal(rec)
				t.Logf("%s %s: record with cause %q (want %q): %s", sc.name, mode, tm.Cause, want, b)
			}
		}
		if tm.Mode != mode && len(badMode) < 3 {
			badMode = append(badMode, rec.ActivationID+":"+tm.Mode)
		}
		rt := annotationInt(rec, "responseTime")
		if rt >= 0 {
			responses = append(responses, rt)
			tail := rec.End - rec.Start - rt
			tails = append(tails, tail)
			o.maxTailMS = max(o.maxTailMS, tail)
		}
		if v, ok := found[keys[i]]; ok {
			ms, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Errorf("%s %s: key %s holds %q, not a ms timestamp", sc.name, mode, keys[i], v)
				continue
			}
			if rec.End+clockSkew.Milliseconds() < ms {
				o.late++
				// Coupled records end at the response by definition: their writes come later.
				if mode != modeCoupled && o.late <= 3 {
					t.Errorf("%s %s: activation %s ended at %d, before its write at %d (%d ms early); termination %+v",
						sc.name, mode, rec.ActivationID, rec.End, ms, ms-rec.End, tm)
				}
			}
		}
	}
	o.medianResponseMS = median(responses)
	o.medianTailMS = median(tails)
	t.Logf("SAFETY %s mode=%s %s", sc.name, mode, o)
	if len(badMode) > 0 {
		t.Errorf("%s %s: records with another termination mode: %v", sc.name, mode, badMode)
	}
	if len(responses) < n {
		t.Errorf("%s %s: %d of %d records lack the responseTime annotation", sc.name, mode, n-len(responses), n)
	}

	bg := (bgDelay - bgTolerance).Milliseconds()
	switch mode {
	case modeDecoupled, modeAwait:
		if o.found != o.expected {
			t.Errorf("%s %s: LOST WRITES: expected %d, found %d", sc.name, mode, o.expected, o.found)
			logMissing(t, recs, keys, found)
		}
		if c := o.causes["settled"]; c != n {
			t.Errorf("%s %s: %d of %d records ended settled (causes %v)", sc.name, mode, c, n, o.causes)
		}
		if mode == modeDecoupled && o.medianTailMS < bg {
			// The response came less than the background time before the end: it waited.
			t.Errorf("%s decoupled: median background phase %d ms < %d ms: the response was delayed by the background work", sc.name, o.medianTailMS, bg)
		}
		if mode == modeAwait {
			if o.medianResponseMS < bg {
				t.Errorf("%s await: median responseTime %d ms < %d ms: the response did not wait for the background work", sc.name, o.medianResponseMS, bg)
			}
			if o.medianTailMS > bg {
				t.Errorf("%s await: median end-after-response %d ms: the response should come when the activation settles", sc.name, o.medianTailMS)
			}
		}
	case modeCoupled:
		if o.found >= o.expected {
			t.Errorf("%s coupled: no loss observed (expected %d, found %d): the hazard the coupled baseline stands for did not show", sc.name, o.expected, o.found)
		}
		if c := o.causes["coupled"]; c != n {
			t.Errorf("%s coupled: %d of %d records have cause coupled (causes %v)", sc.name, c, n, o.causes)
		}
	}
	return o
}

// wantCause is the termination cause every record of a mode should have.
func wantCause(mode string) string {
	if mode == modeCoupled {
		return "coupled"
	}
	return "settled"
}

// logMissing shows a few records whose write is missing, with their termination and logs.
func logMissing(t testing.TB, recs []*entity.Activation, keys []string, found map[string]string) {
	t.Helper()
	shown := 0
	for i, rec := range recs {
		if _, ok := found[keys[i]]; ok {
			continue
		}
		if shown++; shown > 3 {
			return
		}
		b, _ := json.Marshal(rec)
		t.Logf("missing write %s: record %s", keys[i], b)
	}
}

// runScenarios runs each scenario under each mode as subtests "scenario/mode".
func runScenarios(t *testing.T, s *testenv.Server, scenarios []scenario) {
	t.Helper()
	n := invocations(t)
	run := runID(t)
	for _, sc := range scenarios {
		for _, mode := range allModes {
			t.Run(sc.name+"/"+mode, func(t *testing.T) {
				runScenario(t, s, sc, mode, run, n)
			})
		}
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// annotations for an action in mode.
func modeAnnotations(mode string) map[string]any {
	return map[string]any{"termination": mode}
}

// limits for the suite's actions; timeoutMS 0 keeps the default.
func actionLimits(timeoutMS int) map[string]int {
	l := map[string]int{"memory": actionMemoryMB}
	if timeoutMS > 0 {
		l["timeout"] = timeoutMS
	}
	return l
}

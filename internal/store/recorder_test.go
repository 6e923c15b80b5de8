package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/entity"
)

// hangGuard bounds waits that should end at once; only a broken recorder reaches it.
const hangGuard = 20 * time.Second

// gatedStore wraps a real SQLite store: batch writes can be held at a gate, made to fail,
// and are logged, so tests can control what the flusher sees.
type gatedStore struct {
	*SQLite
	gate    chan struct{} // when non-nil, each batch write takes one token first
	entered chan int      // receives the batch size as a write reaches the gate
	fail    atomic.Int32  // the next fail writes return an error
	mu      sync.Mutex
	batches [][]string // ids of each successful batch
}

func (g *gatedStore) PutActivations(ctx context.Context, as []*entity.Activation) error {
	if g.entered != nil {
		g.entered <- len(as)
	}
	if g.gate != nil {
		select {
		case <-g.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if g.fail.Load() > 0 {
		g.fail.Add(-1)
		return errors.New("injected write failure")
	}
	if err := g.SQLite.PutActivations(ctx, as); err != nil {
		return err
	}
	ids := make([]string, len(as))
	for i, a := range as {
		ids[i] = a.ActivationID
	}
	g.mu.Lock()
	g.batches = append(g.batches, ids)
	g.mu.Unlock()
	return nil
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestRecorder(t *testing.T, st Store) (*Recorder, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	r := NewRecorder(st, slog.New(slog.NewTextHandler(logs, nil)))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		r.Close(ctx)
	})
	return r, logs
}

func guardCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	t.Cleanup(cancel)
	return ctx
}

func TestRecorderCoalescesAndReadsYourWrites(t *testing.T) {
	ctx := guardCtx(t)
	s, _ := openTest(t)
	g := &gatedStore{SQLite: s, gate: make(chan struct{}), entered: make(chan int, 16)}
	r, _ := newTestRecorder(t, g)

	first := testActivation("ns", "a", 1000, 1)
	r.Record(first)
	// The flusher takes the first record at once and is held at the gate.
	select {
	case n := <-g.entered:
		if n != 1 {
			t.Fatalf("first batch has %d records, want 1", n)
		}
	case <-ctx.Done():
		t.Fatal("the flusher never started writing")
	}

	// While that write is held, record an open version then a closed version of one id, and
	// three other records: they must end up in one batch with the id once, latest version.
	x := testActivation("ns", "x", 2000, 2)
	x.End, x.Duration = 0, 0
	r.Record(x)
	x.End, x.Duration = 2100, 100 // Record copied: this must not change the queued copy
	if got, err := r.GetActivation(ctx, "ns", x.ActivationID); err != nil || got.End != 0 {
		t.Fatalf("unflushed get = %+v, %v; want the open copy", got, err)
	}
	x.Logs[0] = "mutated"
	closedX := testActivation("ns", "x", 2000, 3)
	closedX.ActivationID = x.ActivationID
	r.Record(closedX)
	others := []*entity.Activation{testActivation("ns", "b", 3000, 4), testActivation("ns", "b", 3001, 5), testActivation("ns", "b", 3002, 6)}
	for _, a := range others {
		r.Record(a)
	}

	// Read-your-write from memory, both for the batch in flight and the pending one.
	if got, err := r.GetActivation(ctx, "ns", first.ActivationID); err != nil || got.ActivationID != first.ActivationID {
		t.Fatalf("in-flight get = %+v, %v", got, err)
	}
	got, err := r.GetActivation(ctx, "ns", x.ActivationID)
	if err != nil || got.End != closedX.End || got.Logs[0] != "log 3" {
		t.Fatalf("pending get = %+v, %v; want the later record", got, err)
	}
	got.Logs[0] = "caller mutates its copy"
	if again, _ := r.GetActivation(ctx, "ns", x.ActivationID); again.Logs[0] != "log 3" {
		t.Fatal("GetActivation handed out the queued record itself")
	}
	if _, err := r.GetActivation(ctx, "other", x.ActivationID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("pending record visible from another namespace: %v", err)
	}

	close(g.gate) // release every write from now on
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-g.entered:
		if n != 4 {
			t.Fatalf("second batch has %d records, want 4 (x coalesced)", n)
		}
	default:
		t.Fatal("no second batch")
	}
	g.mu.Lock()
	nb := len(g.batches)
	g.mu.Unlock()
	if nb != 2 {
		t.Fatalf("%d batches written, want 2", nb)
	}
	stored, err := s.GetActivation(ctx, "ns", x.ActivationID)
	if err != nil || stored.End != 2005 || stored.Logs[0] != "log 3" {
		t.Fatalf("stored x = %+v, %v", stored, err)
	}
}

func TestRecorderListAfterRecord(t *testing.T) {
	ctx := guardCtx(t)
	s, _ := openTest(t)
	r, _ := newTestRecorder(t, s)
	for round := range 20 {
		var ids []string
		for i := range 10 {
			a := testActivation("ns", "a", int64(1000+round*10+i), i)
			r.Record(a)
			ids = append(ids, a.ActivationID)
		}
		got, err := r.ListActivations(ctx, "ns", ActivationFilter{Limit: 200})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != (round+1)*10 {
			t.Fatalf("round %d: listed %d, want %d", round, len(got), (round+1)*10)
		}
		if got[0].ActivationID != ids[9] {
			t.Fatalf("round %d: newest is %s, want %s", round, got[0].ActivationID, ids[9])
		}
	}
}

func TestRecorderConcurrentRecordAndRead(t *testing.T) {
	ctx := guardCtx(t)
	s, _ := openTest(t)
	r, _ := newTestRecorder(t, s)
	const goroutines, each = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				a := testActivation("ns", fmt.Sprintf("g%d", g), int64(1000+i), i)
				a.End = 0
				r.Record(a)
				a.End = a.Start + 1 // the real flow: record at start, again at the end
				r.Record(a)
				got, err := r.GetActivation(ctx, "ns", a.ActivationID)
				if err != nil || got.End != a.End {
					errs <- fmt.Errorf("goroutine %d record %d: %+v, %v", g, i, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var n, open int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*), count(*) FILTER (WHERE "end" = 0) FROM activations`).Scan(&n, &open); err != nil {
		t.Fatal(err)
	}
	if n != goroutines*each || open != 0 {
		t.Fatalf("%d records, %d open; want %d, 0", n, open, goroutines*each)
	}
}

func TestRecorderCloseFlushes(t *testing.T) {
	ctx := guardCtx(t)
	dir := t.TempDir()
	st, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	r := NewRecorder(st, slog.New(slog.DiscardHandler))
	var ids []string
	for i := range 500 {
		a := testActivation("ns", "a", int64(1000+i), i)
		r.Record(a)
		ids = append(ids, a.ActivationID)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// A straggler after Close is still written, not dropped.
	late := testActivation("ns", "late", 9000, 0)
	r.Record(late)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, id := range append(ids, late.ActivationID) {
		if _, err := st.GetActivation(ctx, "ns", id); err != nil {
			t.Fatalf("record %s lost: %v", id, err)
		}
	}
}

func TestRecorderRetriesFailedWrites(t *testing.T) {
	ctx := guardCtx(t)
	s, _ := openTest(t)
	g := &gatedStore{SQLite: s}
	g.fail.Store(2)
	r, logs := newTestRecorder(t, g)
	a := testActivation("ns", "a", 1000, 1)
	r.Record(a)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetActivation(ctx, "ns", a.ActivationID); err != nil {
		t.Fatalf("record not written after retries: %v", err)
	}
	out := logs.String()
	if strings.Count(out, "injected write failure") != 2 || !strings.Contains(out, "after retrying") {
		t.Fatalf("log does not show two failures and a recovery:\n%s", out)
	}
}

func TestRecorderCloseGivesUpLoudly(t *testing.T) {
	s, _ := openTest(t)
	g := &gatedStore{SQLite: s}
	g.fail.Store(1 << 30)
	logs := &syncBuffer{}
	r := NewRecorder(g, slog.New(slog.NewTextHandler(logs, nil)))
	r.Record(testActivation("ns", "a", 1000, 1))
	r.Record(testActivation("ns", "a", 1001, 2))

	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := r.Flush(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush against a failing store: %v, want deadline exceeded", err)
	}
	short2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if err := r.Close(short2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close against a failing store: %v, want deadline exceeded", err)
	}
	if out := logs.String(); !strings.Contains(out, "activation records lost") || !strings.Contains(out, "count=2") {
		t.Fatalf("loss was not logged with its count:\n%s", out)
	}
	if err := r.Flush(context.Background()); !errors.Is(err, ErrRecorderClosed) {
		t.Fatalf("Flush after a lossy Close: %v, want ErrRecorderClosed", err)
	}
}

// plainStore hides SQLite's batch method, so the recorder takes its one-by-one path.
type plainStore struct{ Store }

func TestRecorderWithoutBatchPutter(t *testing.T) {
	ctx := guardCtx(t)
	s, _ := openTest(t)
	r, _ := newTestRecorder(t, plainStore{s})
	for i := range 50 {
		r.Record(testActivation("ns", "a", int64(1000+i), i))
	}
	got, err := r.ListActivations(ctx, "ns", ActivationFilter{Limit: 100})
	if err != nil || len(got) != 50 {
		t.Fatalf("listed %d, %v; want 50", len(got), err)
	}
}

// BenchmarkRecorder measures Record as the invoke path pays it ("record": the flusher is held
// at a gate so only the caller's copy and enqueue are timed; ids cycle over a bounded set, as
// coalescing keeps memory bounded), and the sustained rate at which records reach the store
// ("throughput": includes the final flush).
func BenchmarkRecorder(b *testing.B) {
	base := testActivation("ns", "bench", 1000, 0)
	base.Logs = []string{"2026-01-01T00:00:00.000000000Z stdout: hello", "2026-01-01T00:00:00.000000000Z stdout: world"}
	const idSpace = 4096
	ids := make([]string, idSpace)
	for i := range ids {
		ids[i] = fmt.Sprintf("%032x", i)
	}
	b.Run("record", func(b *testing.B) {
		s, _ := openTest(b)
		g := &gatedStore{SQLite: s, gate: make(chan struct{})}
		r := NewRecorder(g, slog.New(slog.DiscardHandler))
		var n atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			a := *base
			for pb.Next() {
				a.ActivationID = ids[n.Add(1)%idSpace]
				r.Record(&a)
			}
		})
		b.StopTimer()
		close(g.gate)
		closeRecorder(b, r)
	})
	b.Run("throughput", func(b *testing.B) {
		s, _ := openTest(b)
		r := NewRecorder(s, slog.New(slog.DiscardHandler))
		start := time.Now().UnixMilli()
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			a := *base
			a.ActivationID = entity.NewActivationID(time.UnixMilli(start + int64(i)))
			r.Record(&a)
		}
		closeRecorder(b, r)
	})
}

func closeRecorder(b *testing.B, r *Recorder) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		b.Fatal(err)
	}
}

// TestRecorderSurvivesPoisonRecords: a record the store cannot encode must not block the
// batch (and every later one) in an endless retry.
func TestRecorderSurvivesPoisonRecords(t *testing.T) {
	ctx := guardCtx(t)
	s, _ := openTest(t)
	r, logs := newTestRecorder(t, s)
	bad := testActivation("ns", "bad", 1000, 1)
	bad.Response.Result = json.RawMessage(`{"unterminated`)
	bad.Annotations = append(bad.Annotations, entity.KeyValue{Key: "empty", Value: json.RawMessage{}})
	r.Record(bad)
	r.Record(&entity.Activation{Namespace: "ns", Name: "noid"})
	good := testActivation("ns", "good", 1001, 2)
	r.Record(good)
	got, err := r.ListActivations(ctx, "ns", ActivationFilter{})
	if err != nil || len(got) != 2 {
		t.Fatalf("listed %d, %v; want 2", len(got), err)
	}
	stored, err := s.GetActivation(ctx, "ns", bad.ActivationID)
	if err != nil {
		t.Fatal(err)
	}
	var text string
	if err := json.Unmarshal(stored.Response.Result, &text); err != nil || text != `{"unterminated` {
		t.Fatalf("repaired result = %s, %v", stored.Response.Result, err)
	}
	if out := logs.String(); !strings.Contains(out, "without an id") || !strings.Contains(out, "invalid JSON") {
		t.Fatalf("repairs were not logged:\n%s", out)
	}
}

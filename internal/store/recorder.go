package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/coda-serverless/coda/internal/entity"
)

const (
	// retryMin and retryMax bound the back-off between attempts at a batch that failed to
	// write (disk full, a long foreign write lock): quick first, then gentle on the log.
	retryMin = 50 * time.Millisecond
	retryMax = 5 * time.Second
	// coalesceWindow is how long the flusher lets records gather before a write: most
	// activations are recorded at their start, response and end within a few milliseconds,
	// and each write costs the same whether it holds one record or fifty. Readers do not wait
	// for it: GetActivation serves unwritten records from memory.
	coalesceWindow = 20 * time.Millisecond
)

// ErrRecorderClosed is returned by Flush when the recorder stopped before writing everything.
var ErrRecorderClosed = errors.New("activation recorder closed")

// BatchPutter is implemented by stores that can write many activation records in one
// transaction; the Recorder uses it when available.
type BatchPutter interface {
	PutActivations(ctx context.Context, as []*entity.Activation) error
}

// Recorder writes activation records behind the invoke path: Record only copies the record
// into memory, and one goroutine writes whatever has accumulated, a batch per transaction, as
// soon as the previous batch is done. Reads through the Recorder see every record already
// passed to Record.
type Recorder struct {
	s   Store
	log *slog.Logger

	ctx    context.Context // cancelled when Close gives up waiting; aborts retries
	cancel context.CancelFunc
	wake   chan struct{} // cap 1: "something is pending"
	done   chan struct{} // closed when the flusher has exited

	mu       sync.Mutex
	pending  map[string]*entity.Activation // recorded, not yet taken by the flusher
	inflight map[string]*entity.Activation // being written by the flusher
	recorded uint64                        // Record calls so far
	flushed  uint64                        // Record calls whose records are in the store
	progress chan struct{}                 // closed and replaced whenever flushed advances
	closed   bool
}

// NewRecorder starts a recorder writing to s. Close it to flush and stop its goroutine.
func NewRecorder(s Store, log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Recorder{
		s:        s,
		log:      log,
		ctx:      ctx,
		cancel:   cancel,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		pending:  make(map[string]*entity.Activation),
		progress: make(chan struct{}),
	}
	go r.run()
	return r
}

// Record queues a copy of a for writing and returns at once. A later record with the same
// ActivationID replaces one not yet written. After Close it writes synchronously, so that a
// straggler is still kept.
func (r *Recorder) Record(a *entity.Activation) {
	c := cloneActivation(a)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.log.Warn("activation recorded after the recorder closed; writing it directly", "activationId", c.ActivationID)
		if err := r.s.PutActivation(context.Background(), c); err != nil {
			r.log.Error("activation record lost", "activationId", c.ActivationID, "err", err)
		}
		return
	}
	r.pending[c.ActivationID] = c
	r.recorded++
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// GetActivation returns a record not yet written from memory, else reads it from the store.
func (r *Recorder) GetActivation(ctx context.Context, namespace, id string) (*entity.Activation, error) {
	r.mu.Lock()
	a, ok := r.pending[id]
	if !ok {
		a, ok = r.inflight[id]
	}
	if ok && a.Namespace == namespace {
		c := cloneActivation(a)
		r.mu.Unlock()
		return c, nil
	}
	r.mu.Unlock()
	return r.s.GetActivation(ctx, namespace, id)
}

// ListActivations waits until every record passed to Record before the call is written, then
// lists from the store, so a record is listed as soon as Record has returned.
func (r *Recorder) ListActivations(ctx context.Context, namespace string, f ActivationFilter) ([]*entity.Activation, error) {
	if err := r.Flush(ctx); err != nil {
		return nil, err
	}
	return r.s.ListActivations(ctx, namespace, f)
}

// Flush waits until every record passed to Record before the call is in the store.
func (r *Recorder) Flush(ctx context.Context) error {
	r.mu.Lock()
	target := r.recorded
	for r.flushed < target {
		ch := r.progress
		r.mu.Unlock()
		select {
		case <-ch:
		case <-r.done:
			r.mu.Lock()
			if r.flushed < target {
				r.mu.Unlock()
				return ErrRecorderClosed
			}
			r.mu.Unlock()
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
		r.mu.Lock()
	}
	r.mu.Unlock()
	return nil
}

// Close writes everything recorded and stops the goroutine. If ctx ends first, it stops
// retrying, logs how many records it could not write, and returns ctx's error.
func (r *Recorder) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	select {
	case <-r.done:
		r.cancel()
		return nil
	case <-ctx.Done():
		r.cancel()
		<-r.done
		return ctx.Err()
	}
}

// run is the flusher: it takes everything pending and writes it, until closed and drained.
func (r *Recorder) run() {
	defer close(r.done)
	for {
		r.mu.Lock()
		for len(r.pending) == 0 {
			if r.closed {
				r.mu.Unlock()
				return
			}
			r.mu.Unlock()
			<-r.wake
			r.mu.Lock()
		}
		if !r.closed {
			r.mu.Unlock()
			time.Sleep(coalesceWindow)
			r.mu.Lock()
		}
		batch := r.pending
		r.pending = make(map[string]*entity.Activation, len(batch))
		r.inflight = batch
		target := r.recorded
		r.mu.Unlock()

		ok := r.write(batch)

		r.mu.Lock()
		r.inflight = nil
		lost := len(batch) + len(r.pending)
		if ok {
			r.flushed = target
			close(r.progress)
			r.progress = make(chan struct{})
		}
		r.mu.Unlock()
		if !ok {
			r.log.Error("activation records lost: recorder closed before they could be written", "count", lost)
			return
		}
	}
}

// write stores a batch, retrying with back-off until it succeeds or Close gives up.
func (r *Recorder) write(batch map[string]*entity.Activation) bool {
	as := make([]*entity.Activation, 0, len(batch))
	for _, a := range batch {
		if c := r.sanitize(a); c != nil {
			as = append(as, c)
		}
	}
	// Ids start with their time, so this inserts in index order.
	sort.Slice(as, func(i, j int) bool { return as[i].ActivationID < as[j].ActivationID })
	delay := retryMin
	for attempt := 1; ; attempt++ {
		err := r.put(as)
		if err == nil {
			if attempt > 1 {
				r.log.Info("activation records written after retrying", "count", len(as), "attempts", attempt)
			}
			return true
		}
		r.log.Error("writing activation records failed; retrying", "count", len(as), "attempt", attempt, "retryIn", delay, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.ctx.Done():
			t.Stop()
			return false
		}
		delay = min(delay*2, retryMax)
	}
}

// sanitize repairs what would make the whole batch fail forever (a poison record): raw JSON
// values that are not valid JSON are kept as JSON strings. A record without an id cannot be
// stored at all; it is logged and skipped (nil). A repaired record is a new copy, since
// readers may be cloning the queued one concurrently.
func (r *Recorder) sanitize(a *entity.Activation) *entity.Activation {
	if a.ActivationID == "" {
		r.log.Error("activation record without an id dropped", "namespace", a.Namespace, "name", a.Name)
		return nil
	}
	bad := func(raw json.RawMessage) bool { return len(raw) > 0 && !json.Valid(raw) }
	needs := bad(a.Response.Result)
	for _, kv := range a.Annotations {
		needs = needs || bad(kv.Value) || (kv.Value != nil && len(kv.Value) == 0)
	}
	if !needs {
		return a
	}
	r.log.Warn("activation record holds invalid JSON; keeping the text as JSON strings", "activationId", a.ActivationID)
	fix := func(raw json.RawMessage) json.RawMessage {
		switch {
		case len(raw) == 0:
			return nil
		case json.Valid(raw):
			return raw
		}
		b, _ := json.Marshal(string(raw))
		return b
	}
	c := cloneActivation(a)
	c.Response.Result = fix(c.Response.Result)
	for i := range c.Annotations {
		c.Annotations[i].Value = fix(c.Annotations[i].Value)
	}
	return c
}

func (r *Recorder) put(as []*entity.Activation) error {
	if bp, ok := r.s.(BatchPutter); ok {
		return bp.PutActivations(r.ctx, as)
	}
	for _, a := range as {
		if err := r.s.PutActivation(r.ctx, a); err != nil {
			return err
		}
	}
	return nil
}

// cloneActivation deep-copies a record, so neither the caller nor a reader shares slices with
// the queued copy.
func cloneActivation(a *entity.Activation) *entity.Activation {
	c := *a
	c.Logs = slices.Clone(a.Logs)
	c.Response.Result = bytes.Clone(a.Response.Result)
	if a.Annotations != nil {
		c.Annotations = make(entity.KeyValues, len(a.Annotations))
		for i, kv := range a.Annotations {
			c.Annotations[i] = entity.KeyValue{Key: kv.Key, Value: bytes.Clone(kv.Value)}
		}
	}
	return &c
}

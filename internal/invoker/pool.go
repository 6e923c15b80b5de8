// Package invoker owns the instance pool: stem cells, warm reuse, pausing, keep-alive and
// eviction, and the lifecycle of every activation from run through response to end. It alone
// decides when an instance may be paused or terminated: only when it is quiescent.
package invoker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/coda-serverless/coda/internal/entity"
	"github.com/coda-serverless/coda/internal/protocol"
	"github.com/coda-serverless/coda/internal/sandbox"
)

const (
	// cutoffGrace is how long a runtime has to answer cutoff before it is killed (protocol.md).
	cutoffGrace = 250 * time.Millisecond
	// backstopLimit bounds the OS backstop before a terminate: long enough for a kernel send
	// queue to drain to a live peer, short enough that a dead peer does not hold memory.
	backstopLimit = 5 * time.Second
	// initLimit is the least time loading code gets, apart from the action's timeout (as
	// Lambda's separate init phase): a cold start on a busy host must not eat a short timeout.
	initLimit = 10 * time.Second
	// startRecordDelay is how long an activation runs before its "running" record is written.
	startRecordDelay = 20 * time.Millisecond
	// freezeLimit bounds a freeze or thaw of a cgroup.
	freezeLimit = 5 * time.Second
)

// Recorder takes activation records (write-behind; it must not block).
type Recorder interface {
	Record(a *entity.Activation)
}

// Launcher knows how to start a runtime process for an action of a kind.
type Launcher interface {
	// Spec returns the process to start for kind; action is nil for a stem cell.
	Spec(ctx context.Context, kind string, action *entity.Action) (sandbox.Spec, error)
	// InitCode is the code to send with init (empty for executables).
	InitCode(kind string, action *entity.Action) (code string, binary bool)
	// StemKinds lists the kinds that keep stem cells.
	StemKinds() []string
}

// Config configures a Pool.
type Config struct {
	Host       *sandbox.Host
	Launcher   Launcher
	Recorder   Recorder
	Log        *slog.Logger
	KeepAlive  time.Duration // quiescent time before terminate; 0 terminates at once
	PauseGrace time.Duration // quiescent time before freeze; 0 disables pausing
	MemoryMB   int           // what instances may use together
	StemCells  int           // per stem kind
	Now        func() time.Time
}

// Pool runs activations on instances.
type Pool struct {
	cfg Config
	log *slog.Logger
	now func() time.Time

	mu       sync.Mutex
	seq      uint64
	byKey    map[string][]*instance // warm, paused and retiring instances per action version
	starting int                    // instances being started (their memory is reserved)
	usedMB   int
	stems    map[string][]*instance
	stemBusy map[string]int // stem cells being started per kind
	changed  chan struct{}  // closed and replaced whenever capacity may have freed up
	closed   bool
	active   sync.WaitGroup // activations between Run and end
}

// New creates a pool and starts filling its stem cells.
func New(ctx context.Context, cfg Config) (*Pool, error) {
	if cfg.Host == nil || cfg.Launcher == nil || cfg.Recorder == nil {
		return nil, errors.New("invoker: Host, Launcher and Recorder are required")
	}
	if cfg.MemoryMB < entity.MinMemory {
		return nil, fmt.Errorf("invoker: memory pool %d MB is smaller than the smallest action (%d MB)", cfg.MemoryMB, entity.MinMemory)
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Pool{cfg: cfg, log: cfg.Log, now: cfg.Now, byKey: map[string][]*instance{},
		stems: map[string][]*instance{}, stemBusy: map[string]int{}, changed: make(chan struct{})}
	p.mu.Lock()
	for _, k := range cfg.Launcher.StemKinds() {
		p.refillLocked(ctx, k)
	}
	p.mu.Unlock()
	return p, nil
}

// actionKey identifies the code an instance serves.
func actionKey(a *entity.Action) string {
	return a.Namespace + "/" + a.Name + "@" + a.Version + "#" + fmt.Sprint(a.Updated)
}

// broadcastLocked wakes everyone waiting for capacity.
func (p *Pool) broadcastLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Run executes one activation: onResponse gets the record at the response (the caller may
// answer its client then), and Run returns the final record at the end.
func (p *Pool) Run(ctx context.Context, inv *Invocation, action *entity.Action, onResponse func(*entity.Activation)) *entity.Activation {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		a := newActivation(inv, action, p.now())
		a.respond(p.now(), entity.StatusInternalError, entity.ErrorResult("the invoker is shutting down"))
		a.finish(p.now(), protocol.CauseSettled, nil)
		r := a.record()
		onResponse(r)
		p.cfg.Recorder.Record(r)
		return r
	}
	p.active.Add(1)
	p.mu.Unlock()
	defer p.active.Done()

	a := newActivation(inv, action, p.now())
	// The record of a running activation matters only if coda serve dies before the response
	// (it is then closed as interrupted); most activations respond sooner than this, and the
	// write they skip is a fifth of a warm invoke's CPU.
	started := time.AfterFunc(startRecordDelay, func() {
		a.recMu.Lock()
		defer a.recMu.Unlock()
		if !a.recordedResponse {
			p.cfg.Recorder.Record(a.record())
		}
	})
	defer started.Stop()
	inst, err := p.acquire(ctx, a)
	if err != nil {
		code := entity.StatusInternalError
		var ie *initError
		if errors.As(err, &ie) {
			code = entity.StatusDeveloperError
		}
		a.respond(p.now(), code, entity.ErrorResult(err.Error()))
		a.finish(p.now(), protocol.CauseSettled, nil)
		r := a.record()
		onResponse(r)
		p.recordResponse(a, r)
		return r
	}
	a.start = p.now()
	a.deadline = a.start.Add(time.Duration(action.Limits.Timeout) * time.Millisecond)
	deadline := time.AfterFunc(a.deadline.Sub(a.start), func() { p.onDeadline(a) })
	defer deadline.Stop()
	run := protocol.Message{Type: protocol.TypeRun, ID: inv.ActivationID, Mode: a.mode, Deadline: a.deadline.UnixMilli(),
		Env: map[string]string{"__OW_ACTIVATION_ID": inv.ActivationID, "__OW_DEADLINE": fmt.Sprint(a.deadline.UnixMilli()),
			"__OW_NAMESPACE": inv.Namespace, "__OW_ACTION_NAME": "/" + inv.Namespace + "/" + action.Name}}
	run.Params = marshalParams(inv.Params)
	if err := inst.send(run); err != nil {
		// The process died before it could take the run; its exit handler ends the activation.
		p.log.Debug("run not delivered", "activation", inv.ActivationID, "err", err)
	}
	select {
	case <-a.responseCh:
	case <-a.endCh:
	}
	// Recorded at the response too, so that a crash of coda serve during the background phase
	// still leaves the response the caller got on the record.
	resp := a.record()
	onResponse(resp)
	p.recordResponse(a, resp)
	<-a.endCh
	r := a.record()
	p.cfg.Recorder.Record(r)
	return r
}

// recordResponse records the activation as of its response; after it, the delayed "running"
// record may no longer be written (it would replace a newer one).
func (p *Pool) recordResponse(a *activation, r *entity.Activation) {
	a.recMu.Lock()
	defer a.recMu.Unlock()
	a.recordedResponse = true
	p.cfg.Recorder.Record(r)
}

// onDeadline cuts the activation off: it answers for a runtime that never responded, asks the
// runtime for its pending list, and kills the instance if it does not answer in time.
func (p *Pool) onDeadline(a *activation) {
	a.mu.Lock()
	if a.ended {
		a.mu.Unlock()
		return
	}
	a.timedOut, a.cutoff = true, true
	a.mu.Unlock()
	if a.respond(p.now(), entity.StatusDeveloperError, entity.ErrorResult(fmt.Sprintf(msgTimeout, a.action.Limits.Timeout))) {
		p.responded(a)
	}
	inst := a.inst
	p.mu.Lock()
	if inst.st != stateDead {
		inst.st = stateRetiring // the cut-off work still runs inside it
	}
	p.mu.Unlock()
	_ = inst.send(protocol.Message{Type: protocol.TypeCutoff, ID: a.inv.ActivationID})
	select {
	case <-a.endCh:
	case <-time.After(cutoffGrace):
		p.end(a, protocol.CauseDeadline, nil)
		go inst.kill()
	}
}

// route handles a message from a runtime.
func (p *Pool) route(in *instance, m protocol.Message) {
	p.mu.Lock()
	a := in.acts[m.ID]
	p.mu.Unlock()
	if a == nil {
		if m.Type == protocol.TypeLog {
			in.log.Debug("log line for no activation", "id", m.ID, "line", m.Line)
		}
		return
	}
	if m.Type == protocol.TypeEnd || (m.Type == protocol.TypeResponse && (a.mode == entity.ModeCoupled || !in.tracked)) {
		in.drainRaw() // output written before the end still belongs to the activation
	}
	switch m.Type {
	case protocol.TypeResponse:
		code, result := responseFromRuntime(m.Result, m.Error)
		if a.respond(p.now(), code, result) {
			p.responded(a)
		}
		switch {
		case a.mode == entity.ModeCoupled:
			p.end(a, protocol.CauseCoupled, nil)
		case !in.tracked:
			go p.backstopEnd(a)
		}
	case protocol.TypeLog:
		a.addLog(m.Stream, m.Line)
	case protocol.TypePending:
		a.setPending(m.Pending)
	case protocol.TypeEnd:
		cause := m.Cause
		if cause == "" {
			cause = protocol.CauseSettled
		}
		if a.mode == entity.ModeCoupled {
			cause = protocol.CauseCoupled
		}
		if cause == protocol.CauseSettled && !p.now().Before(a.deadline) {
			// Work that gave up because its deadline passed (a Go context, say) did not settle.
			cause = protocol.CauseDeadline
		}
		p.end(a, cause, m.Pending)
	}
}

// backstopEnd ends an untracked runtime's activation once the OS shows nothing outstanding.
func (p *Pool) backstopEnd(a *activation) {
	ctx, cancel := context.WithDeadline(context.Background(), a.deadline)
	defer cancel()
	if pending := a.inst.proc.Backstop(ctx); len(pending) > 0 {
		p.end(a, protocol.CauseDeadline, pending)
		return
	}
	p.end(a, protocol.CauseSettled, nil)
}

// responded frees the activation's concurrency slot.
func (p *Pool) responded(a *activation) {
	p.mu.Lock()
	a.inst.unresponded--
	p.broadcastLocked()
	p.mu.Unlock()
}

// end closes the activation and, when its instance became quiescent, lets the pool act on it.
func (p *Pool) end(a *activation, cause string, pending []string) {
	if !a.finish(p.now(), cause, pending) {
		return
	}
	in := a.inst
	p.mu.Lock()
	if _, ok := in.acts[a.inv.ActivationID]; ok {
		delete(in.acts, a.inv.ActivationID)
		p.updateSingle(in)
		if in.quiescent() {
			p.quiescentLocked(in)
		}
		p.broadcastLocked()
	}
	p.mu.Unlock()
}

// updateSingle points raw output at the only activation in flight, if there is one.
func (p *Pool) updateSingle(in *instance) {
	var single *activation
	if len(in.acts) == 1 {
		for _, a := range in.acts {
			single = a
		}
	}
	in.outMu.Lock()
	in.single = single
	in.outMu.Unlock()
}

// quiescentLocked decides what happens to an instance that has just become quiescent.
func (p *Pool) quiescentLocked(in *instance) {
	in.lastIdle = p.now()
	in.idleGen++
	gen := in.idleGen
	switch {
	case in.st == stateDead:
		return
	case in.st == stateRetiring:
		p.terminateLocked(in)
	case p.closed || p.cfg.KeepAlive == 0:
		in.st = stateRetiring
		p.terminateLocked(in)
	case p.cfg.PauseGrace > 0 && p.cfg.PauseGrace < p.cfg.KeepAlive:
		in.idleTimer = time.AfterFunc(p.cfg.PauseGrace, func() { p.pause(in, gen) })
	default:
		in.idleTimer = time.AfterFunc(p.cfg.KeepAlive, func() { p.expire(in, gen) })
	}
}

// pause freezes a still-quiescent instance and arms its keep-alive expiry.
func (p *Pool) pause(in *instance, gen uint64) {
	p.mu.Lock()
	if in.idleGen != gen || in.st != stateWarm || !in.quiescent() {
		p.mu.Unlock()
		return
	}
	in.st = statePaused
	in.idleTimer = time.AfterFunc(p.cfg.KeepAlive-p.cfg.PauseGrace, func() { p.expire(in, gen) })
	// Freeze under the lock: acquire must not pick the instance while it is half frozen,
	// and a freeze takes well under a millisecond.
	ctx, cancel := context.WithTimeout(context.Background(), freezeLimit)
	err := in.proc.Freeze(ctx)
	cancel()
	p.mu.Unlock()
	if err != nil {
		in.log.Warn("pause failed; the instance stays running", "err", err)
	}
}

// expire terminates an instance that stayed quiescent for the keep-alive.
func (p *Pool) expire(in *instance, gen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if in.idleGen != gen || !in.quiescent() || (in.st != stateWarm && in.st != statePaused) {
		return
	}
	in.st = stateRetiring
	p.terminateLocked(in)
}

// terminateLocked removes a quiescent, retiring instance: after the OS backstop (unless its
// activations were coupled or cut off) the process tree is killed and its memory freed.
func (p *Pool) terminateLocked(in *instance) {
	if in.idleTimer != nil {
		in.idleTimer.Stop()
	}
	paused := in.st == statePaused
	go func() {
		if paused {
			ctx, cancel := context.WithTimeout(context.Background(), freezeLimit)
			_ = in.proc.Thaw(ctx)
			cancel()
		}
		if !in.coupled {
			ctx, cancel := context.WithTimeout(context.Background(), backstopLimit)
			if pending := in.proc.Backstop(ctx); len(pending) > 0 {
				in.log.Warn("terminating with OS-level work still pending", "pending", pending)
			}
			cancel()
		}
		in.kill()
	}()
}

// onExit runs when an instance's process is gone: activations still open on it crashed.
func (p *Pool) onExit(in *instance, werr error) {
	p.mu.Lock()
	wasStem := in.st == stateStem
	in.st = stateDead
	if in.idleTimer != nil {
		in.idleTimer.Stop()
	}
	p.removeLocked(in)
	open := make([]*activation, 0, len(in.acts))
	for _, a := range in.acts {
		open = append(open, a)
	}
	p.broadcastLocked()
	if wasStem {
		p.refillLocked(context.Background(), in.kind)
	}
	p.mu.Unlock()
	if len(open) == 0 {
		return
	}
	oom := in.proc.OOMKilled()
	why := "exit"
	if werr != nil {
		why = werr.Error()
	}
	for _, a := range open {
		a.mu.Lock()
		cutoff := a.cutoff
		a.mu.Unlock()
		cause, msg := protocol.CauseCrash, fmt.Sprintf(msgCrash, why)
		if oom {
			cause, msg = "oom", fmt.Sprintf(msgOOM, in.memoryMB)
		}
		if cutoff {
			cause = protocol.CauseDeadline
		}
		if a.respond(p.now(), entity.StatusDeveloperError, entity.ErrorResult(msg)) {
			// the slot belonged to a dead instance; nothing to free
		} else if oom || cause == protocol.CauseCrash {
			a.addLog("stderr", "the instance ended before the activation's background work finished: "+msg)
		}
		p.end(a, cause, nil)
	}
}

// removeLocked forgets an instance and returns its memory.
func (p *Pool) removeLocked(in *instance) {
	if in.key != "" {
		list := p.byKey[in.key]
		for i, x := range list {
			if x == in {
				p.byKey[in.key] = append(list[:i], list[i+1:]...)
				p.usedMB -= in.memoryMB
				break
			}
		}
		if len(p.byKey[in.key]) == 0 {
			delete(p.byKey, in.key)
		}
	}
	if list := p.stems[in.kind]; len(list) > 0 {
		for i, x := range list {
			if x == in {
				p.stems[in.kind] = append(list[:i], list[i+1:]...)
				break
			}
		}
	}
}

// Describe reports the pool's state for logs and tests.
func (p *Pool) Describe() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.byKey {
		n += len(l)
	}
	return fmt.Sprintf("%d instances, %d/%d MB, %d starting", n, p.usedMB, p.cfg.MemoryMB, p.starting)
}

// Close stops taking activations, waits until every running one has ended (each is bounded by
// its deadline) or ctx ends, then terminates every instance.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.active.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("invoker: close: activations still running: %w", ctx.Err())
	}
	p.mu.Lock()
	var all []*instance
	for _, l := range p.byKey {
		all = append(all, l...)
	}
	for _, l := range p.stems {
		all = append(all, l...)
	}
	for _, in := range all {
		if in.idleTimer != nil {
			in.idleTimer.Stop()
		}
		in.idleGen++
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), freezeLimit)
			_ = in.proc.Thaw(ctx)
			cancel()
			if !in.coupled {
				bctx, bcancel := context.WithTimeout(context.Background(), backstopLimit)
				in.proc.Backstop(bctx)
				bcancel()
			}
			in.kill()
		}()
	}
	wg.Wait()
	return err
}

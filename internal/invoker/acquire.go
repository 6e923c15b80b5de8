package invoker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/coda-serverless/coda/internal/entity"
	"github.com/coda-serverless/coda/internal/protocol"
	"github.com/coda-serverless/coda/internal/sandbox"
)

// initError is an action that could not be loaded: a developer error on its activation.
type initError struct {
	msg  string
	died bool // the runtime process exited without answering init
}

func (e *initError) Error() string { return e.msg }

// acquire finds the activation an instance: a warm one of the same action version with a free
// concurrency slot, else a new one (from a stem cell when the kind has them) once the memory
// pool has room, evicting the least recently used quiescent instance when it has not. It waits,
// never drops, while the pool is full of busy instances.
func (p *Pool) acquire(ctx context.Context, a *activation) (*instance, error) {
	act := a.action
	key := actionKey(act)
	mem := act.Limits.Memory
	if mem > p.cfg.MemoryMB {
		return nil, fmt.Errorf("the action needs %d MB but the invoker's memory pool holds only %d MB", mem, p.cfg.MemoryMB)
	}
	retried := false
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errors.New("the invoker is shutting down")
		}
		if in := p.pickWarmLocked(key, act.Limits.Concurrency); in != nil {
			if in.st == statePaused {
				ctx, cancel := context.WithTimeout(context.Background(), freezeLimit)
				err := in.proc.Thaw(ctx)
				cancel()
				if err != nil {
					in.st = stateRetiring
					p.terminateLocked(in)
					p.mu.Unlock()
					continue
				}
				in.st = stateWarm
			}
			p.attachLocked(in, a)
			p.mu.Unlock()
			return in, nil
		}
		if p.usedMB+mem <= p.cfg.MemoryMB {
			p.usedMB += mem
			p.starting++
			p.mu.Unlock()
			in, err := p.coldStart(ctx, a, key, mem)
			var ie *initError
			if errors.As(err, &ie) && ie.died && !retried {
				// A runtime that died before answering init (killed from outside, say) is
				// not the action's fault: start one more before reporting an init error.
				p.log.Warn("runtime died while loading an action; starting another", "err", err)
				retried = true
				continue
			}
			return in, err
		}
		p.evictLocked(mem)
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for room in the memory pool: %w", ctx.Err())
		}
	}
}

// pickWarmLocked returns the most recently used serving instance of key with a free slot.
func (p *Pool) pickWarmLocked(key string, concurrency int) *instance {
	var best *instance
	for _, in := range p.byKey[key] {
		if (in.st != stateWarm && in.st != statePaused) || in.unresponded >= concurrency {
			continue
		}
		if best == nil || in.lastIdle.After(best.lastIdle) {
			best = in
		}
	}
	return best
}

// attachLocked makes a the instance's activation and cancels any pause or expiry.
func (p *Pool) attachLocked(in *instance, a *activation) {
	a.inst = in
	in.acts[a.inv.ActivationID] = a
	in.unresponded++
	in.idleGen++
	if in.idleTimer != nil {
		in.idleTimer.Stop()
		in.idleTimer = nil
	}
	p.updateSingle(in)
}

// evictLocked retires least recently used quiescent instances until, once they are gone, mem
// MB will fit. Their memory returns when their processes have exited.
func (p *Pool) evictLocked(mem int) {
	free := p.cfg.MemoryMB - p.usedMB
	for _, l := range p.byKey {
		for _, in := range l {
			if in.st == stateRetiring || in.st == stateDead {
				free += in.memoryMB // already on its way out
			}
		}
	}
	for free < mem {
		var lru *instance
		for _, l := range p.byKey {
			for _, in := range l {
				if (in.st == stateWarm || in.st == statePaused) && in.quiescent() && (lru == nil || in.lastIdle.Before(lru.lastIdle)) {
					lru = in
				}
			}
		}
		if lru == nil {
			return
		}
		lru.log.Debug("evicting quiescent instance for room", "key", lru.key)
		lru.st = stateRetiring
		p.terminateLocked(lru)
		free += lru.memoryMB
	}
}

// coldStart readies a new instance for a (memory already reserved) and attaches a to it.
func (p *Pool) coldStart(ctx context.Context, a *activation, key string, mem int) (*instance, error) {
	act := a.action
	t0 := p.now()
	in, err := p.newInstance(ctx, act)
	p.mu.Lock()
	p.starting--
	if err != nil {
		p.usedMB -= mem
		p.broadcastLocked()
		p.mu.Unlock()
		var ie *initError
		if errors.As(err, &ie) {
			return nil, err
		}
		return nil, fmt.Errorf("could not start a %s instance: %w", act.Exec.Kind, err)
	}
	if in.st == stateDead { // a stem cell that died before it was adopted
		p.usedMB -= mem
		p.broadcastLocked()
		p.mu.Unlock()
		return nil, fmt.Errorf("could not start a %s instance: the runtime exited", act.Exec.Kind)
	}
	in.key, in.memoryMB, in.coupled = key, mem, act.Mode() == entity.ModeCoupled
	in.st = stateInit
	p.byKey[key] = append(p.byKey[key], in)
	p.mu.Unlock()

	if err := in.proc.SetMemory(mem); err != nil {
		in.log.Warn("could not set the memory limit", "err", err)
	}
	code, binary := p.cfg.Launcher.InitCode(act.Exec.Kind, act)
	init := protocol.Message{Type: protocol.TypeInit, ID: fmt.Sprintf("init-%d", in.seq), Name: act.Namespace + "/" + act.Name,
		Kind: act.Exec.Kind, Main: act.Exec.Main, Code: code, Binary: binary,
		Env: map[string]string{"__OW_NAMESPACE": act.Namespace, "__OW_ACTION_NAME": "/" + act.Namespace + "/" + act.Name,
			"__OW_ACTION_VERSION": act.Version}}
	if init.Main == "" {
		init.Main = "main"
	}
	limit := max(time.Duration(act.Limits.Timeout)*time.Millisecond, initLimit)
	timer := time.NewTimer(limit)
	defer timer.Stop()
	fail := func(msg string) (*instance, error) {
		p.mu.Lock()
		in.st = stateRetiring
		p.mu.Unlock()
		in.kill()
		return nil, &initError{msg: msg}
	}
	died := func(msg string) (*instance, error) {
		_, err := fail(msg)
		err.(*initError).died = true
		return nil, err
	}
	if err := in.send(init); err != nil {
		return died("the runtime exited before it could load the action")
	}
	select {
	case m := <-in.ready:
		if m.Error != "" {
			return fail("Initialization has failed due to: " + m.Error)
		}
		in.tracked = m.End
	case <-in.exited:
		why := "exit status 0"
		if in.exitErr != nil {
			why = in.exitErr.Error()
		}
		return died("the runtime exited while loading the action (" + why + ")")
	case <-timer.C:
		return fail(fmt.Sprintf("Initialization has failed: the action did not load within %d ms", limit.Milliseconds()))
	case <-ctx.Done():
		in.kill()
		return nil, ctx.Err()
	}
	a.initTime = p.now().Sub(t0)
	p.mu.Lock()
	if in.st == stateInit {
		in.st = stateWarm
	}
	p.attachLocked(in, a)
	p.broadcastLocked()
	p.mu.Unlock()
	return in, nil
}

// newInstance takes a stem cell of the action's kind, or starts a fresh process.
func (p *Pool) newInstance(ctx context.Context, act *entity.Action) (*instance, error) {
	kind := act.Exec.Kind
	p.mu.Lock()
	if stems := p.stems[kind]; len(stems) > 0 {
		in := stems[len(stems)-1]
		p.stems[kind] = stems[:len(stems)-1]
		p.refillLocked(context.Background(), kind)
		p.mu.Unlock()
		return in, nil
	}
	p.mu.Unlock()
	spec, err := p.cfg.Launcher.Spec(ctx, kind, act)
	if err != nil {
		return nil, err
	}
	spec.MemoryMB = act.Limits.Memory
	spec.CPUShares = cpuShares(act.Limits.Memory)
	return p.start(ctx, kind, spec)
}

// cpuShares gives CPU in proportion to memory, as OpenWhisk does: 256 MB gets the default 1024.
func cpuShares(memoryMB int) int { return max(memoryMB*4, 2) }

// start starts a runtime process that reports to this pool.
func (p *Pool) start(ctx context.Context, kind string, spec sandbox.Spec) (*instance, error) {
	p.mu.Lock()
	p.seq++
	seq := p.seq
	p.mu.Unlock()
	return startInstance(ctx, p.cfg.Host, spec, seq, kind, p.log, p.route, p.onExit)
}

// refillLocked starts stem cells of kind until the configured number exists or is starting.
func (p *Pool) refillLocked(ctx context.Context, kind string) {
	if p.closed {
		return
	}
	for n := len(p.stems[kind]) + p.stemBusy[kind]; n < p.cfg.StemCells; n++ {
		p.stemBusy[kind]++
		go func() {
			in, err := p.startStem(ctx, kind)
			p.mu.Lock()
			defer p.mu.Unlock()
			p.stemBusy[kind]--
			if err != nil {
				p.log.Warn("could not start a stem cell", "kind", kind, "err", err)
				return
			}
			if p.closed {
				go in.kill()
				return
			}
			if in.st != stateDead {
				p.stems[kind] = append(p.stems[kind], in)
			}
		}()
	}
}

func (p *Pool) startStem(ctx context.Context, kind string) (*instance, error) {
	spec, err := p.cfg.Launcher.Spec(ctx, kind, nil)
	if err != nil {
		return nil, err
	}
	return p.start(ctx, kind, spec)
}

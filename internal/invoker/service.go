package invoker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/coda-serverless/coda/internal/bus"
	"github.com/coda-serverless/coda/internal/entity"
	"github.com/coda-serverless/coda/internal/store"
)

// Store is what the invoker reads: action code, and records of redelivered work.
type Store interface {
	GetAction(ctx context.Context, namespace, name string) (*entity.Action, error)
	GetActivation(ctx context.Context, namespace, id string) (*entity.Activation, error)
}

// maxCachedActions bounds the code cache; a miss costs one store read.
const maxCachedActions = 1024

// Service connects a Pool to the bus: blocking invocations arrive as requests and are answered
// at the response; non-blocking ones come from the durable work queue and are acknowledged at
// the end, so a crash of coda serve leaves them to be settled after the restart.
type Service struct {
	ID    string
	Pool  *Pool
	Bus   *bus.Bus
	Store Store
	Log   *slog.Logger

	mu    sync.Mutex
	cache map[string]*entity.Action
	stops []func()
}

// Start subscribes to the invoker's subjects.
func (s *Service) Start(ctx context.Context) error {
	s.cache = map[string]*entity.Action{}
	stop, err := s.Bus.Serve(bus.InvokeSubject(s.ID), func(data []byte, reply bus.Replier) {
		s.handle(data, func(r *entity.Activation) {
			b, err := json.Marshal(r)
			if err == nil {
				err = reply(b)
			}
			if err != nil {
				s.Log.Warn("could not answer a blocking invocation", "activation", r.ActivationID, "err", err)
			}
		})
	})
	if err != nil {
		return err
	}
	s.stops = append(s.stops, stop)
	stop, err = s.Bus.Consume(ctx, s.ID, s.handleWork)
	if err != nil {
		return err
	}
	s.stops = append(s.stops, stop)
	return nil
}

// Stop takes no more invocations (those running go on).
func (s *Service) Stop() {
	for _, stop := range s.stops {
		stop()
	}
}

func (s *Service) handleWork(w bus.Work) {
	var inv Invocation
	if err := json.Unmarshal(w.Data, &inv); err != nil {
		s.Log.Error("dropping an undecodable work item", "err", err)
		_ = w.Ack()
		return
	}
	// Work is redelivered after a crash of coda serve. If it had started, its record exists
	// (closed as interrupted at start-up) and running it again would repeat its side effects.
	if _, err := s.Store.GetActivation(context.Background(), inv.Namespace, inv.ActivationID); err == nil {
		_ = w.Ack()
		return
	}
	s.run(&inv, func(*entity.Activation) {})
	if err := w.Ack(); err != nil {
		s.Log.Warn("could not acknowledge work", "activation", inv.ActivationID, "err", err)
	}
}

func (s *Service) handle(data []byte, onResponse func(*entity.Activation)) {
	var inv Invocation
	if err := json.Unmarshal(data, &inv); err != nil {
		s.Log.Error("undecodable invocation", "err", err)
		return
	}
	s.run(&inv, onResponse)
}

func (s *Service) run(inv *Invocation, onResponse func(*entity.Activation)) {
	defer s.ended(inv)
	ctx := context.Background()
	action, err := s.action(ctx, inv)
	if err != nil {
		a := newActivation(inv, &inv.Action, s.Pool.now())
		a.respond(s.Pool.now(), entity.StatusInternalError, entity.ErrorResult(err.Error()))
		a.finish(s.Pool.now(), "settled", nil)
		r := a.record()
		s.Pool.cfg.Recorder.Record(r)
		onResponse(r)
		return
	}
	s.Pool.Run(ctx, inv, action, onResponse)
}

// action returns the invocation's action with its code, from the cache or the store.
func (s *Service) action(ctx context.Context, inv *Invocation) (*entity.Action, error) {
	key := actionKey(&inv.Action)
	s.mu.Lock()
	a := s.cache[key]
	s.mu.Unlock()
	if a != nil {
		return a, nil
	}
	a, err := s.Store.GetAction(ctx, inv.Namespace, inv.Action.Name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("the action %s/%s was deleted before it ran", inv.Namespace, inv.Action.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("loading the action: %w", err)
	}
	s.mu.Lock()
	if len(s.cache) >= maxCachedActions {
		clear(s.cache)
	}
	s.cache[actionKey(a)] = a
	s.mu.Unlock()
	return a, nil
}

// marshalParams encodes the run's parameters (an object, never null).
func marshalParams(p map[string]json.RawMessage) json.RawMessage {
	if len(p) == 0 {
		return json.RawMessage("{}")
	}
	b, err := json.Marshal(p)
	if err != nil {
		return json.RawMessage("{}")
	}
	return b
}

// ended tells the controller that one of the namespace's activations is over.
func (s *Service) ended(inv *Invocation) {
	b, _ := json.Marshal(bus.Ended{Namespace: inv.Namespace, ActivationID: inv.ActivationID})
	if err := s.Bus.Publish(bus.EndSubject, b); err != nil {
		s.Log.Warn("could not announce an activation's end", "err", err)
	}
}

// Package api serves OpenWhisk's REST API v1 over net/http, so that the wsk CLI and the openwhisk
// npm client work against Coda unchanged: actions (CRUD and invoke), activations, namespaces.
//
// Every request passes one explicit chain: recover → request id/log → body size limit → auth →
// route. The chain is a sequence of methods on one per-request exchange rather than nested
// http.Handlers, so the hot path (a warm blocking invoke) costs no wrapper allocations.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"

	"github.com/coda-serverless/coda/internal/controller"
	"github.com/coda-serverless/coda/internal/entity"
	"github.com/coda-serverless/coda/internal/store"
)

// Controller readies actions before they are stored and runs invocations.
type Controller interface {
	// Prepare checks and readies an action before it is stored (compiles Go source, validates a
	// zip); a *controller.InvalidActionError is a 400 with its message.
	Prepare(ctx context.Context, a *entity.Action) error
	Invoke(ctx context.Context, r controller.Request) (controller.Outcome, error)
}

// Activations reads activation records; the store's write-behind recorder implements it, so
// records not yet flushed to the store are visible too.
type Activations interface {
	GetActivation(ctx context.Context, namespace, id string) (*entity.Activation, error)
	ListActivations(ctx context.Context, namespace string, f store.ActivationFilter) ([]*entity.Activation, error)
}

// Config is what the API needs.
type Config struct {
	Store       store.Store // actions, users (Authenticate)
	Activations Activations // nil means Store
	Controller  Controller
	Log         *slog.Logger // nil discards
}

// server holds the API's state; one per New.
type server struct {
	store       store.Store
	activations Activations
	ctl         Controller
	log         *slog.Logger
	ids         *idGenerator
	auth        *authCache
	bufs        sync.Pool // *[]byte response and body buffers

	// Header values shared by every response; net/http never mutates them.
	jsonContentType []string
	allowOriginAll  []string
}

// New returns the API's handler.
func New(cfg Config) (http.Handler, error) {
	if cfg.Store == nil {
		return nil, errors.New("api: Config.Store is nil")
	}
	if cfg.Controller == nil {
		return nil, errors.New("api: Config.Controller is nil")
	}
	s := &server{
		store:           cfg.Store,
		activations:     cfg.Activations,
		ctl:             cfg.Controller,
		log:             cfg.Log,
		ids:             newIDGenerator(),
		auth:            newAuthCache(),
		jsonContentType: []string{"application/json"},
		allowOriginAll:  []string{"*"},
	}
	if s.activations == nil {
		s.activations = cfg.Store
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.bufs.New = func() any { b := make([]byte, 0, 4096); return &b }
	return s, nil
}

// exchange is one request as it moves down the chain.
type exchange struct {
	w         http.ResponseWriter
	r         *http.Request
	id        string // request id, the "code" of every error body
	status    int    // 0 until a response is written
	namespace string // the authenticated caller's namespace
}

// ServeHTTP runs the chain.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := exchange{w: w, r: r}
	s.recoverPanics(&x)
}

// getBuf and putBuf recycle byte buffers; huge ones (action code) are left to the GC so the pool
// does not pin megabytes.
func (s *server) getBuf() *[]byte { return s.bufs.Get().(*[]byte) }

const maxPooledBuffer = 1 << 20 // bytes; bigger buffers are rare (zips) and not worth keeping

func (s *server) putBuf(b *[]byte) {
	if cap(*b) > maxPooledBuffer {
		return
	}
	*b = (*b)[:0]
	s.bufs.Put(b)
}

// Package store keeps Coda's durable state: actions, activation records and namespaces with
// their keys. SQLite (pure Go, WAL mode) under the data directory is the default backend.
package store

import (
	"context"
	"errors"

	"github.com/coda-serverless/coda/internal/entity"
)

// Errors every backend returns (wrapped), so callers map them to HTTP status codes.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
)

// ActivationFilter narrows an activation listing, as OpenWhisk's list parameters do.
type ActivationFilter struct {
	Name  string // action name; empty for all
	Skip  int
	Limit int   // 0 means the default (30); at most 200
	Since int64 // ms since the epoch, inclusive; 0 for no bound
	Upto  int64 // ms since the epoch, inclusive; 0 for no bound
}

// User is a namespace and the identity that owns it. Key is only set when a user is created
// (it is stored hashed and can never be read back).
type User struct {
	Namespace string `json:"namespace"`
	UUID      string `json:"uuid"`
	Key       string `json:"key,omitempty"`
	Created   int64  `json:"created"`
}

// Store is the durable state. All methods are safe for concurrent use.
type Store interface {
	// PutAction creates an action (ErrConflict if it exists and !overwrite) or replaces it,
	// assigning Version (0.0.1, then the patch number increments) and Updated.
	PutAction(ctx context.Context, a *entity.Action, overwrite bool) (*entity.Action, error)
	GetAction(ctx context.Context, namespace, name string) (*entity.Action, error)
	// ListActions returns actions by name; limit 0 means 30.
	ListActions(ctx context.Context, namespace string, skip, limit int) ([]*entity.Action, error)
	DeleteAction(ctx context.Context, namespace, name string) (*entity.Action, error)

	// PutActivation inserts or replaces the record with the same ActivationID.
	PutActivation(ctx context.Context, a *entity.Activation) error
	GetActivation(ctx context.Context, namespace, id string) (*entity.Activation, error)
	// ListActivations returns records newest first.
	ListActivations(ctx context.Context, namespace string, f ActivationFilter) ([]*entity.Activation, error)
	// CloseInterrupted closes every record still open (End == 0), as after a crash of coda
	// serve: status "whisk internal error", termination cause "interrupted". It returns how many.
	CloseInterrupted(ctx context.Context, now int64) (int, error)

	// CreateUser issues a namespace with a fresh UUID and key (ErrConflict if it exists).
	CreateUser(ctx context.Context, namespace string) (*User, error)
	// EnsureUser creates the namespace with the given credentials, or checks that they match.
	EnsureUser(ctx context.Context, namespace, uuid, key string) error
	DeleteUser(ctx context.Context, namespace string) error
	ListUsers(ctx context.Context) ([]*User, error)
	// Authenticate returns the namespace whose credentials these are, or ErrNotFound.
	Authenticate(ctx context.Context, uuid, key string) (string, error)

	// IntegrityCheck runs the backend's consistency check (SQLite: PRAGMA integrity_check).
	IntegrityCheck(ctx context.Context) error
	Close() error
}

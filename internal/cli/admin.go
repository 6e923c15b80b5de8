package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/coda-serverless/coda/internal/entity"
	"github.com/coda-serverless/coda/internal/store"
)

// userStore is the part of the store `coda admin` uses; tests may stand in for it.
type userStore interface {
	CreateUser(ctx context.Context, namespace string) (*store.User, error)
	DeleteUser(ctx context.Context, namespace string) error
	ListUsers(ctx context.Context) ([]*store.User, error)
	Close() error
}

// openUserStore opens the store itself, as wskadmin does, so admin commands work with or
// without a running `coda serve` (SQLite in WAL mode lets both write).
func openUserStore(ctx context.Context, dataDir string) (userStore, error) {
	return store.Open(ctx, dataDir)
}

func adminCommands() []*command {
	data := flagSpec{long: "data", kind: stringFlag, arg: "DIR", help: "data directory of the store (default $CODA_DATA, else ~/.coda)"}
	return []*command{
		{path: "admin user create", args: "NAMESPACE", summary: "create a namespace and print its key UUID:KEY", minArgs: 1, maxArgs: 1,
			flags: []flagSpec{data}, run: runUserCreate},
		{path: "admin user delete", args: "NAMESPACE", summary: "delete a namespace's identity", minArgs: 1, maxArgs: 1,
			flags: []flagSpec{data}, run: runUserDelete},
		{path: "admin user list", summary: "list namespaces and their UUIDs (never keys)", maxArgs: 0,
			flags: []flagSpec{data}, run: runUserList},
	}
}

// withStore opens the store named by --data (or the default data directory) for one command.
func (r *runner) withStore(ctx context.Context, p *parsed, f func(userStore) error) (err error) {
	dir := p.str("data")
	if dir == "" {
		dir = r.dataDir()
	}
	s, err := r.openStore(ctx, dir)
	if err != nil {
		return fmt.Errorf("open the store in %s: %w", dir, err)
	}
	defer func() {
		if cerr := s.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close the store: %w", cerr)
		}
	}()
	return f(s)
}

func runUserCreate(ctx context.Context, r *runner, p *parsed) error {
	ns := p.args[0]
	if err := entity.ValidateName("namespace", ns); err != nil {
		return usagef("%v", err)
	}
	return r.withStore(ctx, p, func(s userStore) error {
		u, err := s.CreateUser(ctx, ns)
		if errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("namespace %s already exists", ns)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(r.env.Stdout, "%s:%s\n", u.UUID, u.Key)
		return nil
	})
}

func runUserDelete(ctx context.Context, r *runner, p *parsed) error {
	ns := p.args[0]
	return r.withStore(ctx, p, func(s userStore) error {
		err := s.DeleteUser(ctx, ns)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("namespace %s does not exist", ns)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(r.env.Stdout, "ok: deleted namespace %s\n", ns)
		return nil
	})
}

func runUserList(ctx context.Context, r *runner, p *parsed) error {
	return r.withStore(ctx, p, func(s userStore) error {
		users, err := s.ListUsers(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(r.env.Stdout, "%-32s %s\n", "namespace", "uuid")
		for _, u := range users {
			fmt.Fprintf(r.env.Stdout, "%-32s %s\n", u.Namespace, u.UUID)
		}
		return nil
	})
}

package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/coda-serverless/coda/internal/entity"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

const (
	// busyTimeout is how long a connection waits for another process's write lock (coda admin
	// beside a live coda serve) before SQLITE_BUSY; in-process writers never contend, they
	// queue on the single writer connection.
	busyTimeout = 10 * time.Second
	// defaultListLimit and maxListLimit are OpenWhisk's list bounds.
	defaultListLimit = 30
	maxListLimit     = 200
	// dbFileName is the database inside the data directory.
	dbFileName = "coda.db"
	// interruptedMessage is the result error of records CloseInterrupted closes.
	interruptedMessage = "the activation was interrupted: coda serve stopped before it ended"
)

// SQLite is the embedded Store: one database file in WAL mode. Writes go through a single
// connection (so in-process writers queue in database/sql instead of failing with
// SQLITE_BUSY); reads use a separate pool, which WAL lets run beside the writer.
type SQLite struct {
	w    *sql.DB // exactly one connection; every write transaction is BEGIN IMMEDIATE
	r    *sql.DB // read-only pool
	auth *authCache
	acts actionCache
	put  *sql.Stmt // putActivationSQL prepared once on w: parsing it per batch cost a third of a write
}

var _ Store = (*SQLite)(nil)
var _ BatchPutter = (*SQLite)(nil)

// Open creates dataDir (0700) if needed and opens dataDir/coda.db.
func Open(ctx context.Context, dataDir string) (Store, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	return OpenSQLite(ctx, filepath.Join(dataDir, dbFileName))
}

// OpenSQLite opens (creating if needed) the database at path and brings its schema up to date.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	if strings.ContainsRune(path, '?') {
		// The driver splits its DSN at the first '?'.
		return nil, fmt.Errorf("open %s: database path must not contain '?'", path)
	}
	common := url.Values{}
	common.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	wq := url.Values{}
	for k, v := range common {
		wq[k] = v
	}
	wq.Add("_pragma", "journal_mode(WAL)")
	// NORMAL is durable across application crashes in WAL mode; only an OS crash or power
	// loss may lose the last transactions, and it saves an fsync per commit.
	wq.Add("_pragma", "synchronous(NORMAL)")
	wq.Add("_pragma", "foreign_keys(1)")
	// IMMEDIATE takes the write lock at BEGIN, so a transaction that reads then writes cannot
	// fail with SQLITE_BUSY half way when another process holds the lock: it waits up front.
	wq.Set("_txlock", "immediate")

	w, err := sql.Open("sqlite", path+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}

	rq := url.Values{}
	for k, v := range common {
		rq[k] = v
	}
	rq.Set("_query_only", "1")
	r, err := sql.Open("sqlite", path+"?"+rq.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxIdleTime(0)
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	put, err := w.PrepareContext(ctx, putActivationSQL)
	if err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("open %s: prepare: %w", path, err)
	}
	return &SQLite{w: w, r: r, auth: newAuthCache(), put: put}, nil
}

// migrations[i] brings the schema from version i to i+1. Append only; never edit a shipped one.
var migrations = []string{
	`CREATE TABLE actions (
		namespace TEXT NOT NULL,
		name      TEXT NOT NULL,
		doc       TEXT NOT NULL,
		version   TEXT NOT NULL,
		updated   INTEGER NOT NULL,
		PRIMARY KEY (namespace, name)
	);
	CREATE TABLE activations (
		id        TEXT PRIMARY KEY,
		namespace TEXT NOT NULL,
		name      TEXT NOT NULL,
		start     INTEGER NOT NULL,
		"end"     INTEGER NOT NULL,
		doc       TEXT NOT NULL
	);
	CREATE INDEX activations_ns_start ON activations (namespace, start DESC);
	CREATE INDEX activations_ns_name_start ON activations (namespace, name, start DESC);
	CREATE INDEX activations_open ON activations ("end") WHERE "end" = 0;
	CREATE TABLE users (
		namespace TEXT NOT NULL UNIQUE,
		uuid      TEXT NOT NULL,
		key_hash  BLOB NOT NULL,
		salt      BLOB NOT NULL,
		created   INTEGER NOT NULL
	);
	CREATE INDEX users_uuid ON users (uuid);`,
}

// migrate creates the schema or upgrades it, in one transaction so concurrent openers (coda
// serve and coda admin) cannot both apply a step.
func migrate(ctx context.Context, w *sql.DB) error {
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin migration: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	var v int
	switch err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return fmt.Errorf("init schema_version: %w", err)
		}
	case err != nil:
		return fmt.Errorf("read schema_version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this coda knows (%d)", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, len(migrations)); err != nil {
		return fmt.Errorf("update schema_version: %w", err)
	}
	return tx.Commit()
}

// Close closes both pools; the last connection checkpoints the WAL into the database file.
func (s *SQLite) Close() error {
	return errors.Join(s.put.Close(), s.r.Close(), s.w.Close())
}

// IntegrityCheck runs PRAGMA integrity_check and fails unless it answers "ok".
func (s *SQLite) IntegrityCheck(ctx context.Context) error {
	rows, err := s.r.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return fmt.Errorf("integrity check: %w", err)
		}
		problems = append(problems, line)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	if len(problems) == 1 && problems[0] == "ok" {
		return nil
	}
	return fmt.Errorf("integrity check failed: %s", strings.Join(problems, "; "))
}

// nowMillis is the wall clock in ms since the epoch, the unit of every record timestamp.
func nowMillis() int64 { return time.Now().UnixMilli() }

// listBounds applies OpenWhisk's defaults and caps to skip and limit.
func listBounds(skip, limit int) (int, int) {
	if skip < 0 {
		skip = 0
	}
	if limit <= 0 {
		limit = defaultListLimit
	}
	return skip, min(limit, maxListLimit)
}

// nextVersion increments the patch number of a semantic version ("0.0.1" -> "0.0.2");
// an unparsable previous version restarts the patch count on its major.minor, or at 0.0.1.
func nextVersion(prev string) string {
	if prev == "" {
		return "0.0.1"
	}
	parts := strings.Split(prev, ".")
	if len(parts) != 3 {
		return "0.0.1"
	}
	patch, err := strconv.Atoi(parts[2])
	if err != nil || patch < 0 {
		return "0.0.1"
	}
	return parts[0] + "." + parts[1] + "." + strconv.Itoa(patch+1)
}

// PutAction creates or replaces an action, assigning Version and Updated; it returns the
// stored copy and leaves a untouched.
func (s *SQLite) PutAction(ctx context.Context, a *entity.Action, overwrite bool) (*entity.Action, error) {
	s.acts.drop(a.Namespace, a.Name)
	defer s.acts.drop(a.Namespace, a.Name)
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("put action: %w", err)
	}
	defer tx.Rollback()
	var prev string
	err = tx.QueryRowContext(ctx, `SELECT version FROM actions WHERE namespace = ? AND name = ?`,
		a.Namespace, a.Name).Scan(&prev)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("put action: %w", err)
	case !overwrite:
		return nil, fmt.Errorf("action %s/%s: %w", a.Namespace, a.Name, ErrConflict)
	}
	stored := *a
	stored.Version = nextVersion(prev)
	stored.Updated = nowMillis()
	doc, err := json.Marshal(&stored)
	if err != nil {
		return nil, fmt.Errorf("put action: encode: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO actions (namespace, name, doc, version, updated)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (namespace, name) DO UPDATE SET doc = excluded.doc, version = excluded.version, updated = excluded.updated`,
		stored.Namespace, stored.Name, string(doc), stored.Version, stored.Updated); err != nil {
		return nil, fmt.Errorf("put action: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("put action: commit: %w", err)
	}
	// Hand back a decoded copy so the caller shares no slices with its argument.
	var out entity.Action
	if err := json.Unmarshal(doc, &out); err != nil {
		return nil, fmt.Errorf("put action: decode: %w", err)
	}
	return &out, nil
}

// GetAction returns the action or ErrNotFound.
func (s *SQLite) GetAction(ctx context.Context, namespace, name string) (*entity.Action, error) {
	cached, gen, ok := s.acts.get(namespace, name)
	if ok {
		return cached, nil
	}
	var doc string
	err := s.r.QueryRowContext(ctx, `SELECT doc FROM actions WHERE namespace = ? AND name = ?`,
		namespace, name).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("action %s/%s: %w", namespace, name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get action: %w", err)
	}
	a, err := decodeAction(doc)
	if err == nil {
		s.acts.put(a, gen)
	}
	return a, err
}

// ListActions returns actions ordered by name; limit 0 means 30, and at most 200 are returned.
func (s *SQLite) ListActions(ctx context.Context, namespace string, skip, limit int) ([]*entity.Action, error) {
	skip, limit = listBounds(skip, limit)
	rows, err := s.r.QueryContext(ctx, `SELECT doc FROM actions WHERE namespace = ? ORDER BY name LIMIT ? OFFSET ?`,
		namespace, limit, skip)
	if err != nil {
		return nil, fmt.Errorf("list actions: %w", err)
	}
	defer rows.Close()
	out := []*entity.Action{}
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, fmt.Errorf("list actions: %w", err)
		}
		a, err := decodeAction(doc)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list actions: %w", err)
	}
	return out, nil
}

// DeleteAction removes the action and returns what it was, or ErrNotFound.
func (s *SQLite) DeleteAction(ctx context.Context, namespace, name string) (*entity.Action, error) {
	s.acts.drop(namespace, name)
	defer s.acts.drop(namespace, name)
	var doc string
	err := s.w.QueryRowContext(ctx, `DELETE FROM actions WHERE namespace = ? AND name = ? RETURNING doc`,
		namespace, name).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("action %s/%s: %w", namespace, name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("delete action: %w", err)
	}
	return decodeAction(doc)
}

func decodeAction(doc string) (*entity.Action, error) {
	var a entity.Action
	if err := json.Unmarshal([]byte(doc), &a); err != nil {
		return nil, fmt.Errorf("decode action: %w", err)
	}
	return &a, nil
}

func decodeActivation(doc string) (*entity.Activation, error) {
	var a entity.Activation
	if err := json.Unmarshal([]byte(doc), &a); err != nil {
		return nil, fmt.Errorf("decode activation: %w", err)
	}
	return &a, nil
}

const putActivationSQL = `INSERT INTO activations (id, namespace, name, start, "end", doc)
	VALUES (?, ?, ?, ?, ?, ?)
	ON CONFLICT (id) DO UPDATE SET namespace = excluded.namespace, name = excluded.name,
		start = excluded.start, "end" = excluded."end", doc = excluded.doc`

// PutActivation inserts or replaces the record with the same ActivationID.
func (s *SQLite) PutActivation(ctx context.Context, a *entity.Activation) error {
	return s.PutActivations(ctx, []*entity.Activation{a})
}

// PutActivations writes a batch of records in one transaction (one commit, one WAL sync
// point), which is what lets the Recorder keep up with many invokes per millisecond.
func (s *SQLite) PutActivations(ctx context.Context, as []*entity.Activation) error {
	if len(as) == 0 {
		return nil
	}
	// Encode before taking the write lock, so the lock is held only for the inserts.
	docs := make([][]byte, len(as))
	for i, a := range as {
		if a.ActivationID == "" {
			return fmt.Errorf("put activation: empty activation id")
		}
		b, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("put activation %s: encode: %w", a.ActivationID, err)
		}
		docs[i] = b
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("put activations: %w", err)
	}
	defer tx.Rollback()
	stmt := tx.StmtContext(ctx, s.put)
	defer stmt.Close()
	for i, a := range as {
		if _, err := stmt.ExecContext(ctx, a.ActivationID, a.Namespace, a.Name, a.Start, a.End, string(docs[i])); err != nil {
			return fmt.Errorf("put activation %s: %w", a.ActivationID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("put activations: commit: %w", err)
	}
	return nil
}

// GetActivation returns the record or ErrNotFound (also when it belongs to another namespace).
func (s *SQLite) GetActivation(ctx context.Context, namespace, id string) (*entity.Activation, error) {
	var doc string
	err := s.r.QueryRowContext(ctx, `SELECT doc FROM activations WHERE id = ? AND namespace = ?`,
		id, namespace).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("activation %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get activation: %w", err)
	}
	return decodeActivation(doc)
}

// ListActivations returns records newest first (by start, then id), filtered as f says.
func (s *SQLite) ListActivations(ctx context.Context, namespace string, f ActivationFilter) ([]*entity.Activation, error) {
	skip, limit := listBounds(f.Skip, f.Limit)
	var q strings.Builder
	args := []any{namespace}
	q.WriteString(`SELECT doc FROM activations WHERE namespace = ?`)
	if f.Name != "" {
		q.WriteString(` AND name = ?`)
		args = append(args, f.Name)
	}
	if f.Since > 0 {
		q.WriteString(` AND start >= ?`)
		args = append(args, f.Since)
	}
	if f.Upto > 0 {
		q.WriteString(` AND start <= ?`)
		args = append(args, f.Upto)
	}
	q.WriteString(` ORDER BY start DESC, id DESC LIMIT ? OFFSET ?`)
	args = append(args, limit, skip)
	rows, err := s.r.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("list activations: %w", err)
	}
	defer rows.Close()
	out := []*entity.Activation{}
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, fmt.Errorf("list activations: %w", err)
		}
		a, err := decodeActivation(doc)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list activations: %w", err)
	}
	return out, nil
}

// CloseInterrupted closes every record still open (End == 0) at now, as after a crash of
// coda serve, so no activation stays "running" forever and its pending work is on record.
func (s *SQLite) CloseInterrupted(ctx context.Context, now int64) (int, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("close interrupted: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT doc FROM activations WHERE "end" = 0`)
	if err != nil {
		return 0, fmt.Errorf("close interrupted: %w", err)
	}
	var open []*entity.Activation
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			rows.Close()
			return 0, fmt.Errorf("close interrupted: %w", err)
		}
		a, err := decodeActivation(doc)
		if err != nil {
			rows.Close()
			return 0, fmt.Errorf("close interrupted: %w", err)
		}
		open = append(open, a)
	}
	if err := rows.Close(); err != nil {
		return 0, fmt.Errorf("close interrupted: %w", err)
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("close interrupted: %w", err)
	}
	for _, a := range open {
		markInterrupted(a, now)
		doc, err := json.Marshal(a)
		if err != nil {
			return 0, fmt.Errorf("close interrupted %s: encode: %w", a.ActivationID, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE activations SET "end" = ?, doc = ? WHERE id = ?`,
			a.End, string(doc), a.ActivationID); err != nil {
			return 0, fmt.Errorf("close interrupted %s: %w", a.ActivationID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("close interrupted: commit: %w", err)
	}
	return len(open), nil
}

// markInterrupted closes an open record: internal error, termination cause "interrupted",
// keeping the mode and the last pending snapshot the record carried.
func markInterrupted(a *entity.Activation, now int64) {
	end := now
	if end <= 0 {
		end = 1 // End == 0 means "open"; a closed record must not look open again.
	}
	a.End = end
	a.Duration = 0
	if a.Start > 0 && end >= a.Start {
		a.Duration = end - a.Start
	}
	a.StatusCode = entity.StatusInternalError
	a.Response = entity.NewResponse(entity.StatusInternalError, entity.ErrorResult(interruptedMessage))

	term := entity.Termination{Cause: "interrupted", Pending: []string{}}
	var prev entity.Termination
	if raw, ok := a.Annotations.Get("termination"); ok && json.Unmarshal(raw, &prev) == nil {
		term.Mode = prev.Mode
		if prev.Pending != nil {
			term.Pending = prev.Pending
		}
	}
	var snapshot []string
	if raw, ok := a.Annotations.Get("pending"); ok && json.Unmarshal(raw, &snapshot) == nil && snapshot != nil {
		term.Pending = snapshot
	}
	a.Annotations = a.Annotations.Set("termination", term)
}

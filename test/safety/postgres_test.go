package safety

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coda-serverless/coda/internal/testenv"
)

// pgTimeout bounds one statement from the test (a hang guard).
const pgTimeout = 30 * time.Second

// pgTable holds the rows the PostgreSQL actions insert: one per invocation, keyed by the
// invocation's unique key, with the time (ms) the action issued the INSERT.
const pgTable = "coda_safety_writes"

// pgURL returns the test database URL and makes sure the table exists.
func pgURL(t testing.TB) string {
	t.Helper()
	url := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), pgTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("postgres %s: %v", url, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+pgTable+` (
		key text PRIMARY KEY,
		issued bigint NOT NULL,
		inserted timestamptz NOT NULL DEFAULT clock_timestamp())`); err != nil {
		// Two test binaries may race to create it; the loser sees a unique violation.
		if _, err2 := conn.Exec(ctx, `SELECT 1 FROM `+pgTable+` LIMIT 1`); err2 != nil {
			t.Fatalf("postgres: create table: %v", err)
		}
	}
	return url
}

// pgValues returns, for each key that has a row, the ms time the INSERT committed (the row's
// clock_timestamp() is taken while the statement runs, so it is at most the commit time).
func pgValues(t testing.TB, url string, keys []string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), pgTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `SELECT key, (extract(epoch FROM inserted) * 1000)::bigint FROM `+pgTable+` WHERE key = ANY($1)`, keys)
	if err != nil {
		t.Fatalf("postgres: select: %v", err)
	}
	defer rows.Close()
	found := make(map[string]string, len(keys))
	for rows.Next() {
		var k string
		var ms int64
		if err := rows.Scan(&k, &ms); err != nil {
			t.Fatalf("postgres: scan: %v", err)
		}
		found[k] = itoa(ms)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("postgres: rows: %v", err)
	}
	return found
}

// pgDelete removes the keys' rows (cleanup; errors only logged).
func pgDelete(t testing.TB, url string, keys []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), pgTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Logf("postgres cleanup: %v", err)
		return
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `DELETE FROM `+pgTable+` WHERE key = ANY($1)`, keys); err != nil {
		t.Logf("postgres cleanup: %v", err)
	}
}

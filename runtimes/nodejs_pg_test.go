package runtimes

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/protocol"
	"github.com/coda-serverless/coda/internal/testenv"
	"github.com/jackc/pgx/v5"
)

// nodePgDefault is where a developer's PostgreSQL usually is when CODA_TEST_POSTGRES is unset.
const nodePgDefault = "postgres://postgres@127.0.0.1:5440/postgres?sslmode=disable"

// nodePostgres returns a reachable PostgreSQL URL and an open connection to it, or skips.
func nodePostgres(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	dsn := os.Getenv(testenv.EnvPostgres)
	if dsn == "" {
		dsn = nodePgDefault
		if u, err := url.Parse(dsn); err == nil {
			c, err := net.DialTimeout("tcp", u.Host, time.Second)
			if err != nil {
				dsn = testenv.Postgres(t) // skips (or fails when services are required)
			} else {
				c.Close()
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return dsn, conn
}

// TestNodePgPool checks pg's Pool with real PostgreSQL: a query that waits in the pool's queue
// for another activation's client belongs to the activation that made it (it ends only after
// its own INSERT committed and logs its callback's line), and the pool's idle timer
// (idleTimeoutMillis, 10 s by default) holds no activation open.
func TestNodePgPool(t *testing.T) {
	t.Parallel()
	dsn, conn := nodePostgres(t)
	modules := testenv.NodeModules(t)
	table, committed := pgScratchTable(t, conn, "coda_rt_node_pool")

	p := startNode(t)
	p.send(protocol.Message{Type: protocol.TypeInit, ID: "i-1", Main: "main",
		Env: map[string]string{"PG_MODULE": filepath.Join(modules, "pg"), "PG_URL": dsn, "TABLE": table},
		Code: `
const { Pool } = require(process.env.PG_MODULE)
const pools = {
  single: new Pool({ connectionString: process.env.PG_URL, max: 1 }),
  defaults: new Pool({ connectionString: process.env.PG_URL }),
}
exports.main = (p) => {
  pools[p.pool].query('INSERT INTO ' + process.env.TABLE + ' (key) SELECT $1 FROM pg_sleep(0.2)', [p.key])
    .then(() => console.log('inserted ' + p.key), (e) => console.error(e.message))
  return {}
}`})
	if m := p.next(protocol.TypeReady); m.Error != "" || !m.End {
		t.Fatalf("ready = %+v", m)
	}

	// Sections run in order on one runtime (not as subtests: p fails its own test).
	{
		// A takes the pool's only client; B's query waits in the queue until A releases it.
		nodeRun(p, "A", "decoupled", `{"pool":"single","key":"A"}`)
		nodeRun(p, "B", "decoupled", `{"pool":"single","key":"B"}`)
		logs := map[string][]string{}
		ended := map[string]bool{}
		var pendingB []protocol.Message
		timeout := time.After(nodeHangGuard)
		for len(ended) < 2 {
			select {
			case m, ok := <-p.msgs:
				if !ok {
					t.Fatalf("runtime exited:\n%s", p.rawOutput())
				}
				switch m.Type {
				case protocol.TypeLog:
					logs[m.ID] = append(logs[m.ID], m.Line)
				case protocol.TypePending:
					if m.ID == "B" {
						pendingB = append(pendingB, m)
					}
				case protocol.TypeEnd:
					ended[m.ID] = true
					if m.Cause != protocol.CauseSettled {
						t.Errorf("end of %s = %+v", m.ID, m)
					}
					if !committed(m.ID) {
						t.Errorf("%s ended before its INSERT committed (logs %q)", m.ID, logs)
					}
				}
			case <-timeout:
				t.Fatalf("no ends within %v: %v; logs %q", nodeHangGuard, ended, logs)
			}
		}
		for _, id := range []string{"A", "B"} {
			if want := []string{"inserted " + id}; fmt.Sprint(logs[id]) != fmt.Sprint(want) {
				t.Errorf("logs of %s = %q, want %q", id, logs[id], want)
			}
		}
		if !nodePendingHas(pendingB, "pg pool: waiting for a client") {
			t.Errorf("no pending snapshot of B naming the pool wait: %+v", pendingB)
		}
	}

	{
		// The bound is half the pool's 10 s idle timeout: an activation held by the timer fails.
		nodeRun(p, "C", "decoupled", `{"pool":"defaults","key":"C"}`)
		msgs := nodeCollect(p, "C", nodeIdleBound)
		if m, _ := nodeFind(msgs, protocol.TypeEnd); m.Cause != protocol.CauseSettled || !committed("C") {
			t.Fatalf("end = %+v, committed %v", m, committed("C"))
		}
	}
}

// pgScratchTable creates a table of keys for one test (dropped at its end) and returns it with
// a check that a key's row is committed.
func pgScratchTable(t *testing.T, conn *pgx.Conn, prefix string) (string, func(key string) bool) {
	t.Helper()
	ctx := context.Background()
	table := fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (key text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	return table, func(key string) bool {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE key = $1", key).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
}

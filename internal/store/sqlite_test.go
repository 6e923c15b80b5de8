package store

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/entity"
)

func openTest(t testing.TB) (*SQLite, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s := st.(*SQLite)
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func testAction(ns, name string) *entity.Action {
	return &entity.Action{
		Namespace:   ns,
		Name:        name,
		Exec:        entity.Exec{Kind: entity.KindNode, Code: "function main(){return {}}"},
		Annotations: entity.KeyValues{}.Set("termination", entity.ModeDecoupled),
		Parameters:  entity.KeyValues{}.Set("x", 1),
		Limits:      entity.DefaultLimits(),
	}
}

// testActivation makes a closed record with a time-ordered id; n marks its result and log.
func testActivation(ns, name string, start int64, n int) *entity.Activation {
	id := entity.NewActivationID(time.UnixMilli(start))
	return &entity.Activation{
		Namespace:    ns,
		Name:         name,
		Version:      "0.0.1",
		Subject:      ns,
		ActivationID: id,
		Start:        start,
		End:          start + 5,
		Duration:     5,
		Response:     entity.NewResponse(entity.StatusSuccess, json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))),
		Logs:         []string{fmt.Sprintf("log %d", n)},
		Annotations:  entity.KeyValues{}.Set("responseTime", 2),
	}
}

func TestActionCRUDAndVersions(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)

	in := testAction("ns", "hello")
	got, err := s.PutAction(ctx, in, false)
	if err != nil {
		t.Fatalf("PutAction: %v", err)
	}
	if got.Version != "0.0.1" || got.Updated == 0 {
		t.Fatalf("first put: version %q updated %d", got.Version, got.Updated)
	}
	if in.Version != "" {
		t.Fatalf("PutAction modified its argument: version %q", in.Version)
	}
	if _, err := s.PutAction(ctx, in, false); !errors.Is(err, ErrConflict) {
		t.Fatalf("put existing without overwrite: err %v, want ErrConflict", err)
	}
	in.Exec.Code = "function main(){return {v:2}}"
	for want := 2; want <= 11; want++ {
		got, err = s.PutAction(ctx, in, true)
		if err != nil {
			t.Fatalf("overwrite: %v", err)
		}
		if w := fmt.Sprintf("0.0.%d", want); got.Version != w {
			t.Fatalf("version %q, want %q", got.Version, w)
		}
	}
	read, err := s.GetAction(ctx, "ns", "hello")
	if err != nil {
		t.Fatalf("GetAction: %v", err)
	}
	if read.Version != "0.0.11" || read.Exec.Code != in.Exec.Code || read.Mode() != entity.ModeDecoupled {
		t.Fatalf("GetAction = %+v", read)
	}
	if v, _ := read.Parameters.Get("x"); string(v) != "1" {
		t.Fatalf("parameter x = %s", v)
	}
	if _, err := s.GetAction(ctx, "other", "hello"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get in other namespace: %v, want ErrNotFound", err)
	}

	for _, n := range []string{"c", "a", "b"} {
		if _, err := s.PutAction(ctx, testAction("ns", n), false); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.ListActions(ctx, "ns", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if names := actionNames(list); names != "a,b,c,hello" {
		t.Fatalf("ListActions = %s", names)
	}
	list, err = s.ListActions(ctx, "ns", 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if names := actionNames(list); names != "b,c" {
		t.Fatalf("ListActions skip 1 limit 2 = %s", names)
	}
	list, err = s.ListActions(ctx, "empty", 0, 0)
	if err != nil || list == nil || len(list) != 0 {
		t.Fatalf("ListActions on empty namespace = %v, %v; want empty non-nil", list, err)
	}

	del, err := s.DeleteAction(ctx, "ns", "hello")
	if err != nil || del.Name != "hello" || del.Version != "0.0.11" {
		t.Fatalf("DeleteAction = %+v, %v", del, err)
	}
	if _, err := s.DeleteAction(ctx, "ns", "hello"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	if _, err := s.GetAction(ctx, "ns", "hello"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v, want ErrNotFound", err)
	}
	// A re-created action starts its versions again.
	got, err = s.PutAction(ctx, testAction("ns", "hello"), false)
	if err != nil || got.Version != "0.0.1" {
		t.Fatalf("re-create = %+v, %v", got, err)
	}
}

func actionNames(as []*entity.Action) string {
	var names []string
	for _, a := range as {
		names = append(names, a.Name)
	}
	return strings.Join(names, ",")
}

func TestNextVersion(t *testing.T) {
	for prev, want := range map[string]string{"": "0.0.1", "0.0.1": "0.0.2", "1.2.9": "1.2.10", "junk": "0.0.1", "1.2.x": "0.0.1"} {
		if got := nextVersion(prev); got != want {
			t.Errorf("nextVersion(%q) = %q, want %q", prev, got, want)
		}
	}
}

func TestActivationPutGetReplace(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	a := testActivation("ns", "act", 1000, 1)
	a.End, a.Duration = 0, 0
	if err := s.PutActivation(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetActivation(ctx, "ns", a.ActivationID)
	if err != nil {
		t.Fatal(err)
	}
	if got.End != 0 || got.Logs[0] != "log 1" || string(got.Response.Result) != `{"n":1}` {
		t.Fatalf("GetActivation = %+v", got)
	}
	a.End, a.Duration = 1500, 500
	a.Logs = append(a.Logs, "later")
	if err := s.PutActivation(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err = s.GetActivation(ctx, "ns", a.ActivationID)
	if err != nil || got.End != 1500 || len(got.Logs) != 2 {
		t.Fatalf("after replace: %+v, %v", got, err)
	}
	if _, err := s.GetActivation(ctx, "other", a.ActivationID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get from other namespace: %v, want ErrNotFound", err)
	}
	if _, err := s.GetActivation(ctx, "ns", "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get missing: %v, want ErrNotFound", err)
	}
	if err := s.PutActivation(ctx, &entity.Activation{Namespace: "ns"}); err == nil {
		t.Fatal("put with empty id succeeded")
	}
}

func TestListActivationsFiltersAndOrder(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	var batch []*entity.Activation
	// 250 records of "a" and "b" alternating, start 1000..1249; and a few in another namespace.
	for i := range 250 {
		name := "a"
		if i%2 == 1 {
			name = "b"
		}
		batch = append(batch, testActivation("ns", name, int64(1000+i), i))
	}
	for i := range 5 {
		batch = append(batch, testActivation("other", "a", int64(5000+i), i))
	}
	if err := s.PutActivations(ctx, batch); err != nil {
		t.Fatal(err)
	}
	list := func(f ActivationFilter) []*entity.Activation {
		t.Helper()
		got, err := s.ListActivations(ctx, "ns", f)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(got); i++ {
			if got[i-1].Start < got[i].Start {
				t.Fatalf("not newest first at %d: %d then %d", i, got[i-1].Start, got[i].Start)
			}
		}
		for _, a := range got {
			if a.Namespace != "ns" {
				t.Fatalf("record from namespace %q listed", a.Namespace)
			}
		}
		return got
	}
	if got := list(ActivationFilter{}); len(got) != 30 || got[0].Start != 1249 {
		t.Fatalf("default: %d records, first start %d", len(got), got[0].Start)
	}
	if got := list(ActivationFilter{Limit: 1000}); len(got) != 200 {
		t.Fatalf("limit 1000: %d records, want the cap 200", len(got))
	}
	if got := list(ActivationFilter{Skip: 240, Limit: 100}); len(got) != 10 || got[0].Start != 1009 {
		t.Fatalf("skip 240: %d records, first %d", len(got), got[0].Start)
	}
	got := list(ActivationFilter{Name: "b", Limit: 5})
	if len(got) != 5 || got[0].Start != 1249 || got[4].Start != 1241 {
		t.Fatalf("name b: %d records, first %d", len(got), got[0].Start)
	}
	for _, a := range got {
		if a.Name != "b" {
			t.Fatalf("name filter let %q through", a.Name)
		}
	}
	got = list(ActivationFilter{Since: 1010, Upto: 1019, Limit: 200})
	if len(got) != 10 || got[0].Start != 1019 || got[9].Start != 1010 {
		t.Fatalf("since/upto: %d records", len(got))
	}
	got = list(ActivationFilter{Name: "a", Since: 1240})
	if len(got) != 5 || got[4].Start != 1240 {
		t.Fatalf("name a since 1240: %d records", len(got))
	}
	if got := list(ActivationFilter{Name: "zzz"}); got == nil || len(got) != 0 {
		t.Fatalf("no match: %v", got)
	}
}

func TestUsers(t *testing.T) {
	ctx := context.Background()
	s, dir := openTest(t)
	u, err := s.CreateUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Key) != keyLength || len(u.UUID) != 36 || u.Created == 0 || u.Namespace != "alice" {
		t.Fatalf("CreateUser = %+v", u)
	}
	if _, err := s.CreateUser(ctx, "alice"); !errors.Is(err, ErrConflict) {
		t.Fatalf("create twice: %v, want ErrConflict", err)
	}
	bob, err := s.CreateUser(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if bob.Key == u.Key || bob.UUID == u.UUID {
		t.Fatal("two users got the same credentials")
	}

	for i := range 3 { // the second and third come from the cache
		ns, err := s.Authenticate(ctx, u.UUID, u.Key)
		if err != nil || ns != "alice" {
			t.Fatalf("authenticate %d = %q, %v", i, ns, err)
		}
	}
	if _, err := s.Authenticate(ctx, u.UUID, bob.Key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("wrong key: %v, want ErrNotFound", err)
	}
	if _, err := s.Authenticate(ctx, "nope", u.Key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("wrong uuid: %v, want ErrNotFound", err)
	}
	if _, err := s.Authenticate(ctx, u.UUID, u.Key[:63]+"!"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("altered key: %v, want ErrNotFound", err)
	}

	users, err := s.ListUsers(ctx)
	if err != nil || len(users) != 2 || users[0].Namespace != "alice" || users[1].Namespace != "bob" {
		t.Fatalf("ListUsers = %v, %v", users, err)
	}
	for _, lu := range users {
		if lu.Key != "" {
			t.Fatalf("ListUsers exposes a key: %+v", lu)
		}
	}

	if err := s.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, u.UUID, u.Key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("authenticate after delete (cached before): %v, want ErrNotFound", err)
	}
	if err := s.DeleteUser(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v, want ErrNotFound", err)
	}
	if ns, err := s.Authenticate(ctx, bob.UUID, bob.Key); err != nil || ns != "bob" {
		t.Fatalf("bob after alice's delete: %q, %v", ns, err)
	}

	// Keys are stored hashed: neither raw key appears in any file of the database.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sawDB := false
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if f.Name() == dbFileName {
			sawDB = true
			if !bytes.Contains(b, []byte(bob.UUID)) {
				t.Fatal("sanity: bob's uuid is not in the database file, so the key check proves nothing")
			}
		}
		if bytes.Contains(b, []byte(bob.Key)) || bytes.Contains(b, []byte(u.Key)) {
			t.Fatalf("raw key found in %s", f.Name())
		}
	}
	if !sawDB {
		t.Fatalf("no %s in %s", dbFileName, dir)
	}
}

func TestEnsureUser(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	const uuid, key = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502", "123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"
	if err := s.EnsureUser(ctx, "guest", uuid, key); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureUser(ctx, "guest", uuid, key); err != nil {
		t.Fatalf("ensure again with the same credentials: %v", err)
	}
	if err := s.EnsureUser(ctx, "guest", uuid, key[:63]+"x"); !errors.Is(err, ErrConflict) {
		t.Fatalf("ensure with another key: %v, want ErrConflict", err)
	}
	if err := s.EnsureUser(ctx, "guest", "00000000-0000-4000-8000-000000000000", key); !errors.Is(err, ErrConflict) {
		t.Fatalf("ensure with another uuid: %v, want ErrConflict", err)
	}
	if err := s.EnsureUser(ctx, "guest2", "", ""); err == nil {
		t.Fatal("ensure with empty credentials succeeded")
	}
	if ns, err := s.Authenticate(ctx, uuid, key); err != nil || ns != "guest" {
		t.Fatalf("Authenticate = %q, %v", ns, err)
	}
}

func TestCloseInterrupted(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	closed := testActivation("ns", "done", 1000, 1)
	plain := testActivation("ns", "plain", 1100, 2)
	plain.End, plain.Duration = 0, 0
	withPending := testActivation("ns", "bg", 1200, 3)
	withPending.End, withPending.Duration = 0, 0
	withPending.Annotations = withPending.Annotations.
		Set("termination", entity.Termination{Mode: entity.ModeAwait}).
		Set("pending", []string{"setTimeout 3000 ms"})
	if err := s.PutActivations(ctx, []*entity.Activation{closed, plain, withPending}); err != nil {
		t.Fatal(err)
	}
	n, err := s.CloseInterrupted(ctx, 2000)
	if err != nil || n != 2 {
		t.Fatalf("CloseInterrupted = %d, %v; want 2", n, err)
	}
	check := func(id string, start int64, mode string, pending []string) {
		t.Helper()
		a, err := s.GetActivation(ctx, "ns", id)
		if err != nil {
			t.Fatal(err)
		}
		if a.End != 2000 || a.Duration != 2000-start || a.StatusCode != entity.StatusInternalError {
			t.Fatalf("end %d duration %d status %d", a.End, a.Duration, a.StatusCode)
		}
		r := a.Response
		if r.Status != "whisk internal error" || r.StatusCode != 3 || r.Success {
			t.Fatalf("response %+v", r)
		}
		if string(r.Result) != `{"error":"the activation was interrupted: coda serve stopped before it ended"}` {
			t.Fatalf("result %s", r.Result)
		}
		raw, ok := a.Annotations.Get("termination")
		if !ok {
			t.Fatal("no termination annotation")
		}
		var term entity.Termination
		if err := json.Unmarshal(raw, &term); err != nil {
			t.Fatal(err)
		}
		if term.Cause != "interrupted" || term.Mode != mode || strings.Join(term.Pending, "|") != strings.Join(pending, "|") || term.Pending == nil {
			t.Fatalf("termination %s", raw)
		}
		if _, ok := a.Annotations.Get("responseTime"); !ok {
			t.Fatal("other annotations were dropped")
		}
	}
	check(plain.ActivationID, 1100, "", []string{})
	check(withPending.ActivationID, 1200, entity.ModeAwait, []string{"setTimeout 3000 ms"})
	if a, err := s.GetActivation(ctx, "ns", closed.ActivationID); err != nil || a.Response.StatusCode != 0 || a.End != 1005 {
		t.Fatalf("closed record was touched: %+v, %v", a, err)
	}
	if n, err := s.CloseInterrupted(ctx, 3000); err != nil || n != 0 {
		t.Fatalf("second CloseInterrupted = %d, %v; want 0", n, err)
	}
}

func TestReopenKeepsDataAndIntegrity(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	st, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode %v, want 0700", fi.Mode().Perm())
	}
	if _, err := st.PutAction(ctx, testAction("ns", "keep"), false); err != nil {
		t.Fatal(err)
	}
	a := testActivation("ns", "keep", 1000, 1)
	if err := st.PutActivation(ctx, a); err != nil {
		t.Fatal(err)
	}
	u, err := st.CreateUser(ctx, "ns")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.IntegrityCheck(ctx); err != nil {
		t.Fatalf("IntegrityCheck: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = Open(ctx, dir)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer st.Close()
	if got, err := st.GetAction(ctx, "ns", "keep"); err != nil || got.Version != "0.0.1" {
		t.Fatalf("action after reopen: %+v, %v", got, err)
	}
	if _, err := st.GetActivation(ctx, "ns", a.ActivationID); err != nil {
		t.Fatalf("activation after reopen: %v", err)
	}
	if ns, err := st.Authenticate(ctx, u.UUID, u.Key); err != nil || ns != "ns" {
		t.Fatalf("authenticate after reopen: %q, %v", ns, err)
	}
	if err := st.IntegrityCheck(ctx); err != nil {
		t.Fatalf("IntegrityCheck after reopen: %v", err)
	}
	var v int
	if err := st.(*SQLite).r.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); err != nil || v != len(migrations) {
		t.Fatalf("schema_version = %d, %v", v, err)
	}
	var mode string
	if err := st.(*SQLite).r.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v", mode, err)
	}
}

func TestOpenRejectsNewerSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "x.db")
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.ExecContext(ctx, `UPDATE schema_version SET version = 999`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := OpenSQLite(ctx, path); err == nil {
		s.Close()
		t.Fatal("opened a database with a newer schema")
	}
}

func TestIntegrityCheckDetectsCorruption(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "x.db")
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	var batch []*entity.Activation
	for i := range 500 {
		batch = append(batch, testActivation("ns", "a", int64(1000+i), i))
	}
	if err := s.PutActivations(ctx, batch); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Overwrite an index page in the middle of the file with garbage.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 8*4096 {
		t.Fatalf("database unexpectedly small: %d bytes", len(b))
	}
	for i := len(b) - 3*4096; i < len(b)-2*4096; i++ {
		b[i] = 0x5a
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = OpenSQLite(ctx, path)
	if err != nil {
		t.Logf("open refused: %v", err)
		return // refusing to open a corrupt database is fine too
	}
	defer s.Close()
	err = s.IntegrityCheck(ctx)
	if err == nil {
		t.Fatal("IntegrityCheck passed on a corrupted file")
	}
	t.Logf("IntegrityCheck: %v", err)
}

func TestConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	const writers, each = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, writers*2)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				a := testActivation("ns", fmt.Sprintf("w%d", w), int64(1000+i), i)
				if err := s.PutActivation(ctx, a); err != nil {
					errs <- fmt.Errorf("writer %d record %d: %w", w, i, err)
					return
				}
				if i%50 == 0 {
					if _, err := s.PutAction(ctx, testAction("ns", fmt.Sprintf("w%d", w)), true); err != nil {
						errs <- fmt.Errorf("writer %d action: %w", w, err)
						return
					}
				}
			}
		}()
	}
	// A few readers alongside, as the API lists while invokers record (bounded, so they do
	// not starve the writers of CPU on a small machine).
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if _, err := s.ListActivations(ctx, "ns", ActivationFilter{Limit: 20}); err != nil {
					errs <- fmt.Errorf("reader: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM activations`).Scan(&n); err != nil || n != writers*each {
		t.Fatalf("count = %d, %v; want %d", n, err, writers*each)
	}
	a, err := s.GetAction(ctx, "ns", "w0")
	if err != nil || a.Version != "0.0.4" {
		t.Fatalf("w0 action: %+v, %v", a, err)
	}
}

// TestTwoHandlesShareTheFile opens the same file twice, as coda admin does beside a live
// coda serve: writes from both must succeed and be visible to the other.
func TestTwoHandlesShareTheFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "x.db")
	s1, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	s2, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, s := range []*SQLite{s1, s2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 100 {
				if err := s.PutActivation(ctx, testActivation("ns", fmt.Sprint(i), int64(1000+j), j)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	u, err := s2.CreateUser(ctx, "late")
	if err != nil {
		t.Fatal(err)
	}
	if ns, err := s1.Authenticate(ctx, u.UUID, u.Key); err != nil || ns != "late" {
		t.Fatalf("user created by the other handle: %q, %v", ns, err)
	}
	got, err := s1.ListActivations(ctx, "ns", ActivationFilter{Limit: 200})
	if err != nil || len(got) != 200 {
		t.Fatalf("list = %d, %v", len(got), err)
	}
}

func TestDSNRejectsQuestionMark(t *testing.T) {
	if s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "a?b.db")); err == nil {
		s.Close()
		t.Fatal("accepted a path with '?'")
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	ctx := context.Background()
	s, _ := openTest(b)
	u, err := s.CreateUser(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Authenticate(ctx, u.UUID, u.Key); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("miss", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Authenticate(ctx, u.UUID, "wrong"); !errors.Is(err, ErrNotFound) {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkPutActivation(b *testing.B) {
	ctx := context.Background()
	s, _ := openTest(b)
	i := 0
	for b.Loop() {
		i++
		if err := s.PutActivation(ctx, testActivation("ns", "a", int64(i), i)); err != nil {
			b.Fatal(err)
		}
	}
}

// TestAuthenticateCachedIsAllocationFree guards the per-request path: once a login is cached,
// Authenticate must not touch the database or the heap.
func TestAuthenticateCachedIsAllocationFree(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	u, err := s.CreateUser(ctx, "fast")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, u.UUID, u.Key); err != nil {
		t.Fatal(err)
	}
	// Closing the read pool proves cached lookups do not query.
	if err := s.r.Close(); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if ns, err := s.Authenticate(ctx, u.UUID, u.Key); err != nil || ns != "fast" {
			t.Fatalf("cached Authenticate = %q, %v", ns, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("cached Authenticate allocates %.0f times per call", allocs)
	}
	if _, err := s.Authenticate(ctx, u.UUID, "other"); err == nil {
		t.Fatal("uncached credentials authenticated without the database")
	}
}

// FuzzActivationFilter checks ListActivations against a plain in-memory model of the filter
// semantics (newest first by start then id; Since/Upto inclusive, <= 0 meaning no bound; skip
// below 0 as 0; limit <= 0 as 30, capped at 200).
func FuzzActivationFilter(f *testing.F) {
	ctx := context.Background()
	s, _ := openTest(f)
	var all []*entity.Activation
	for i := range 300 {
		// Few distinct starts, so ties (ordered by id) are common.
		a := testActivation("ns", fmt.Sprintf("n%d", i%3), int64(1000+i/4), i)
		all = append(all, a)
	}
	if err := s.PutActivations(ctx, all); err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(0), 0, 0, int64(0), int64(0))
	f.Add(uint8(1), 5, 10, int64(1010), int64(1040))
	f.Add(uint8(3), -4, -1, int64(-5), int64(1002))
	f.Add(uint8(2), 250, 500, int64(1070), int64(0))
	f.Fuzz(func(t *testing.T, name uint8, skip, limit int, since, upto int64) {
		flt := ActivationFilter{Skip: skip, Limit: limit, Since: since, Upto: upto}
		if name%4 != 3 {
			flt.Name = fmt.Sprintf("n%d", name%4)
		}
		got, err := s.ListActivations(ctx, "ns", flt)
		if err != nil {
			t.Fatal(err)
		}
		var want []*entity.Activation
		for _, a := range all {
			if (flt.Name == "" || a.Name == flt.Name) && (since <= 0 || a.Start >= since) && (upto <= 0 || a.Start <= upto) {
				want = append(want, a)
			}
		}
		slices.SortFunc(want, func(x, y *entity.Activation) int {
			if c := cmp.Compare(y.Start, x.Start); c != 0 {
				return c
			}
			return strings.Compare(y.ActivationID, x.ActivationID)
		})
		sk, lim := max(skip, 0), limit
		if lim <= 0 {
			lim = 30
		}
		lim = min(lim, 200)
		want = want[min(sk, len(want)):]
		want = want[:min(lim, len(want))]
		if len(got) != len(want) {
			t.Fatalf("filter %+v: %d records, want %d", flt, len(got), len(want))
		}
		for i := range got {
			if got[i].ActivationID != want[i].ActivationID {
				t.Fatalf("filter %+v: record %d is %s, want %s", flt, i, got[i].ActivationID, want[i].ActivationID)
			}
		}
	})
}

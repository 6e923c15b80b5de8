package cli

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// testTime is a fixed instant for log lines.
var testTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestAdminUsers(t *testing.T) {
	h := newHarness(t)
	data := t.TempDir()

	out := h.ok("admin", "user", "create", "alice", "--data", data)
	if !regexp.MustCompile(`^[0-9a-f-]{36}:[A-Za-z0-9]+\n$`).MatchString(out) {
		t.Fatalf("create printed %q", out)
	}
	key := strings.TrimSpace(out)
	uuid, _, _ := strings.Cut(key, ":")
	wantCode(t, h.run("admin", "user", "create", "alice", "--data", data), 1, "namespace alice already exists")
	wantCode(t, h.run("admin", "user", "create", "bad/name", "--data", data), 2, "not valid")

	// without --data the store is in $CODA_DATA.
	h.env["CODA_DATA"] = data
	h.ok("admin", "user", "create", "bob")

	list := h.ok("admin", "user", "list")
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "namespace") || !strings.HasPrefix(lines[1], "alice ") || !strings.HasSuffix(lines[1], uuid) || !strings.HasPrefix(lines[2], "bob ") {
		t.Errorf("list:\n%s", list)
	}
	if strings.Contains(list, key) {
		t.Error("list shows a key")
	}
	if out := h.ok("admin", "user", "delete", "alice"); out != "ok: deleted namespace alice\n" {
		t.Errorf("delete %q", out)
	}
	wantCode(t, h.run("admin", "user", "delete", "alice"), 1, "namespace alice does not exist")
	if list := h.ok("admin", "user", "list"); strings.Contains(list, "alice") {
		t.Errorf("alice still listed:\n%s", list)
	}
}

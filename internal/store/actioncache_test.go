package store

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/coda-serverless/coda/internal/entity"
)

func TestActionCacheNeverServesAStaleAction(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := &entity.Action{Namespace: "ns", Name: "a", Exec: entity.Exec{Kind: entity.KindNode, Code: "v1"}, Limits: entity.DefaultLimits()}
	if _, err := s.PutAction(ctx, a, false); err != nil {
		t.Fatal(err)
	}
	got, _ := s.GetAction(ctx, "ns", "a") // cached now
	got.Annotations = got.Annotations.Set("mutated", true)
	again, _ := s.GetAction(ctx, "ns", "a")
	if _, ok := again.Annotations.Get("mutated"); ok {
		t.Fatal("a caller's change leaked into the cache")
	}
	a.Exec.Code = "v2"
	if _, err := s.PutAction(ctx, a, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetAction(ctx, "ns", "a"); got.Exec.Code != "v2" || got.Version != "0.0.2" {
		t.Fatalf("after update: %q %s", got.Exec.Code, got.Version)
	}
	if _, err := s.DeleteAction(ctx, "ns", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAction(ctx, "ns", "a"); err == nil {
		t.Fatal("deleted action still served")
	}
}

package bus

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

const hangGuard = 30 * time.Second

func TestRequestReply(t *testing.T) {
	ctx := context.Background()
	b, err := Embedded(ctx, t.TempDir(), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	stop, err := b.Serve(InvokeSubject("i0"), func(data []byte, reply Replier) { _ = reply(append([]byte("re:"), data...)) })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	rctx, cancel := context.WithTimeout(ctx, hangGuard)
	defer cancel()
	got, err := b.Request(rctx, InvokeSubject("i0"), []byte("x"))
	if err != nil || string(got) != "re:x" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestRequestWithoutInvokerFails(t *testing.T) {
	b, err := Embedded(context.Background(), t.TempDir(), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if _, err := b.Request(ctx, InvokeSubject("nobody"), []byte("x")); err == nil {
		t.Fatal("a request nobody serves must fail")
	}
}

// Unacknowledged work survives a restart of the embedded server and is delivered again.
func TestWorkSurvivesRestartUntilAcked(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	b, err := Embedded(ctx, dir, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Enqueue(ctx, WorkSubject("i0"), []byte("job")); err != nil {
		t.Fatal(err)
	}
	got := make(chan Work, 4)
	stop, err := b.Consume(ctx, "i0", func(w Work) { got <- w })
	if err != nil {
		t.Fatal(err)
	}
	select {
	case w := <-got:
		if string(w.Data) != "job" || w.Delivered != 1 {
			t.Fatalf("first delivery: %q %d", w.Data, w.Delivered)
		}
	case <-time.After(hangGuard):
		t.Fatal("no delivery")
	}
	stop()
	_ = b.Close() // not acknowledged: as if coda serve died mid-activation

	b, err = Embedded(ctx, dir, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	stop, err = b.Consume(ctx, "i0", func(w Work) { got <- w })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	select {
	case w := <-got:
		if string(w.Data) != "job" {
			t.Fatalf("redelivery: %q", w.Data)
		}
		if err := w.Ack(); err != nil {
			t.Fatal(err)
		}
	case <-time.After(hangGuard):
		t.Fatal("unacknowledged work was lost across a restart")
	}
}

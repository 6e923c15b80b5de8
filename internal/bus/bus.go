// Package bus connects the controller to invokers over NATS. By default the NATS server is
// embedded: in-process, listening on no port (so instances cannot reach it), with JetStream
// for the durable queue of non-blocking invocations.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// startTimeout bounds the embedded server's start; it takes milliseconds, JetStream
	// recovery of a large store a few seconds.
	startTimeout = 30 * time.Second
	// WorkStream holds non-blocking invocations until the invoker acknowledges them at the
	// activation's end, so a crash of coda serve never loses one.
	WorkStream = "CODA_WORK"
	// workSubjects is the subject space of the work queue: coda.work.<invoker>.
	workSubjects = "coda.work.>"
	// ackWait is how long JetStream waits for an acknowledgement before redelivering. It must
	// exceed the longest activation (300 s) because acks come at the end; in-progress signals
	// are not needed then.
	ackWait = 6 * time.Minute
)

// MaxMessage bounds one bus message: an activation record with its logs and result.
const MaxMessage = 16 << 20

// Bus is a connection to NATS (and the embedded server when it owns one).
type Bus struct {
	srv *server.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	log *slog.Logger
}

// Embedded starts an in-process NATS server with JetStream stored under dir and connects to it.
func Embedded(ctx context.Context, dir string, log *slog.Logger) (*Bus, error) {
	opts := &server.Options{
		ServerName: "coda",
		DontListen: true,
		JetStream:  true,
		StoreDir:   filepath.Join(dir, "jetstream"),
		// JetStream fsyncs only every 2 minutes by default; the work queue must survive a crash.
		SyncAlways: true,
		NoLog:      true,
		NoSigs:     true,
		// A blocking invoke's reply carries the whole record: up to 10 MB of logs and a 1 MB
		// result. NATS's default of 1 MB would silently drop it.
		MaxPayload: MaxMessage,
		MaxPending: 4 * MaxMessage,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(startTimeout) {
		srv.Shutdown()
		return nil, errors.New("bus: embedded NATS server did not start")
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("coda"), nats.MaxReconnects(-1))
	if err != nil {
		srv.Shutdown()
		return nil, fmt.Errorf("bus: connect: %w", err)
	}
	b, err := newBus(ctx, nc, log)
	if err != nil {
		nc.Close()
		srv.Shutdown()
		return nil, err
	}
	b.srv = srv
	return b, nil
}

func newBus(ctx context.Context, nc *nats.Conn, log *slog.Logger) (*Bus, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:      WorkStream,
		Subjects:  []string{workSubjects},
		Retention: jetstream.WorkQueuePolicy,
		Storage:   jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("bus: work stream: %w", err)
	}
	return &Bus{nc: nc, js: js, log: log}, nil
}

// Close drains subscriptions and stops the embedded server.
func (b *Bus) Close() error {
	err := b.nc.Drain()
	for i := 0; i < 100 && !b.nc.IsClosed(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	b.nc.Close()
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("bus: close: %w", err)
	}
	return nil
}

// InvokeSubject is where an invoker takes blocking invocations (request/reply).
func InvokeSubject(invoker string) string { return "coda.invoke." + invoker }

// WorkSubject is an invoker's durable queue of non-blocking invocations.
func WorkSubject(invoker string) string { return "coda.work." + invoker }

// Request sends data to subject and waits for the first reply until ctx ends.
func (b *Bus) Request(ctx context.Context, subject string, data []byte) ([]byte, error) {
	msg, err := b.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return nil, fmt.Errorf("bus: request %s: %w", subject, err)
	}
	return msg.Data, nil
}

// Enqueue stores data durably on the work queue; it returns once JetStream has synced it.
func (b *Bus) Enqueue(ctx context.Context, subject string, data []byte) error {
	if _, err := b.js.Publish(ctx, subject, data); err != nil {
		return fmt.Errorf("bus: enqueue %s: %w", subject, err)
	}
	return nil
}

// Replier answers one request.
type Replier func(data []byte) error

// Serve calls handle for every request on subject, each on its own goroutine so a slow
// activation never holds up the next.
func (b *Bus) Serve(subject string, handle func(data []byte, reply Replier)) (stop func(), err error) {
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) {
		go handle(m.Data, func(data []byte) error { return m.Respond(data) })
	})
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe %s: %w", subject, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// Work is one durable invocation; Ack removes it from the queue (call it at the activation's
// end), and Delivered says how often it was handed out (above 1 after a crash).
type Work struct {
	Data      []byte
	Delivered uint64
	Ack       func() error
}

// Consume hands every message of the invoker's work queue to handle, on its own goroutine,
// until the returned stop is called. Unacknowledged work is redelivered after a restart.
func (b *Bus) Consume(ctx context.Context, invoker string, handle func(Work)) (stop func(), err error) {
	// The invoker is (re)starting, so nothing of its queue is in progress any more: a fresh
	// consumer hands out at once what the previous run took but never acknowledged, instead
	// of after the ack wait. The stream keeps those messages (work-queue retention).
	if err := b.js.DeleteConsumer(ctx, WorkStream, "invoker-"+invoker); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("bus: reset consumer: %w", err)
	}
	cons, err := b.js.CreateOrUpdateConsumer(ctx, WorkStream, jetstream.ConsumerConfig{
		Durable:       "invoker-" + invoker,
		FilterSubject: WorkSubject(invoker),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxAckPending: -1,
	})
	if err != nil {
		return nil, fmt.Errorf("bus: consumer: %w", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var delivered uint64 = 1
		if md, err := m.Metadata(); err == nil {
			delivered = md.NumDelivered
		}
		go handle(Work{Data: m.Data(), Delivered: delivered, Ack: func() error { return m.DoubleAck(context.Background()) }})
	})
	if err != nil {
		return nil, fmt.Errorf("bus: consume: %w", err)
	}
	return cc.Stop, nil
}

// Publish sends a fire-and-forget message.
func (b *Bus) Publish(subject string, data []byte) error {
	if err := b.nc.Publish(subject, data); err != nil {
		return fmt.Errorf("bus: publish %s: %w", subject, err)
	}
	return nil
}

// Subscribe calls handle for every message on subject (in order, on one goroutine).
func (b *Bus) Subscribe(subject string, handle func(data []byte)) (stop func(), err error) {
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) { handle(m.Data) })
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe %s: %w", subject, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// EndSubject carries one message per ended activation, so the controller knows how many of a
// namespace's activations are still running wherever they run.
const EndSubject = "coda.ended"

// Ended is the message on EndSubject.
type Ended struct {
	Namespace    string `json:"namespace"`
	ActivationID string `json:"activationId"`
}

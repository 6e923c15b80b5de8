package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// goalEndLag is issue 3's bound on the time from the last background write's completion to end.
const goalEndLag = 30 * time.Millisecond

// sinkDelay makes the background write slow, like a loaded database, so that it completes well
// after the response and the lag measured is the tracker's, not the response's.
const sinkDelay = 100 * time.Millisecond

// endPoll is how often the record is fetched while waiting for its end; it bounds only how soon
// the bench notices, not the measured lag (which comes from the record's own end).
const endPoll = 10 * time.Millisecond

// endWait bounds the wait for one record's end: the background phase is ~100 ms.
const endWait = 15 * time.Second

// endLagCode writes in the background (an un-awaited fetch POST) and responds at once.
const endLagCode = `exports.main = (p) => {
  fetch(p.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: p.key }) })
    .then((r) => r.text())
  return { ok: true }
}`

// sink is the local HTTP server the background writes go to; it records when each completed.
type sink struct {
	mu   sync.Mutex
	done map[string]time.Time
	srv  *http.Server
	url  string
}

func startSink() (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	s := &sink{done: map[string]time.Time{}, url: "http://" + ln.Addr().String() + "/write"}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *sink) serve(w http.ResponseWriter, req *http.Request) {
	var body struct{ Key string }
	if err := json.NewDecoder(req.Body).Decode(&body); err != nil || body.Key == "" {
		http.Error(w, "want {key}", http.StatusBadRequest)
		return
	}
	time.Sleep(sinkDelay)
	// Completion is the moment the answer leaves: the write is durable from here on.
	w.Header().Set("Content-Length", "2")
	_, _ = w.Write([]byte("ok"))
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	s.mu.Lock()
	s.done[body.Key] = time.Now()
	s.mu.Unlock()
}

func (s *sink) completed(key string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.done[key]
	return t, ok
}

func (s *sink) Close() { _ = s.srv.Close() }

// runEndLag measures end − completion of the last background write, per activation.
func runEndLag(ctx context.Context, env *Env, r *Result) error {
	if err := needCoda(env); err != nil {
		return err
	}
	sk, err := startSink()
	if err != nil {
		return err
	}
	defer sk.Close()
	srv, err := env.Server(ctx, ServerOptions{StemCells: 2})
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := srv.API.PutAction(ctx, "endlag", Action{Exec: Exec{Kind: "nodejs:20", Code: endLagCode},
		Limits: &Limits{Memory: benchMemory}}); err != nil {
		return err
	}
	one := func(i int) (lag, respond time.Duration, err error) {
		key := fmt.Sprintf("k%d", i)
		act, err := srv.API.Invoke(ctx, "endlag", map[string]any{"url": sk.url, "key": key})
		if err != nil {
			return 0, 0, err
		}
		wctx, cancel := context.WithTimeout(ctx, endWait)
		defer cancel()
		rec, err := srv.API.WaitEnd(wctx, act.ActivationID, endPoll)
		if err != nil {
			return 0, 0, err
		}
		done, ok := sk.completed(key)
		if !ok {
			return 0, 0, fmt.Errorf("activation %s ended (%v) but its write never completed", rec.ActivationID, rec.Annotation("termination"))
		}
		lag = time.UnixMilli(rec.End).Sub(done)
		if rt, ok := rec.Annotation("responseTime").(float64); ok {
			respond = time.Duration(rt * float64(time.Millisecond))
		}
		return lag, respond, nil
	}
	if _, _, err := one(-1); err != nil { // warm: instance, undici and the sink connection
		return fmt.Errorf("warm-up: %w", err)
	}
	var lags, resps []time.Duration
	for i := 0; i < env.Samples; i++ {
		lag, resp, err := one(i)
		if err != nil {
			return err
		}
		lags, resps = append(lags, lag), append(resps, resp)
	}
	l, rs := Summarize(lags), Summarize(resps)
	r.Row("", "median ms", "p99 ms", "min ms", "max ms", "samples")
	r.Row("end − write completion", msStr(l.P50), msStr(l.P99), msStr(l.Min), msStr(l.Max), fmt.Sprint(l.N))
	r.Row("responseTime", msStr(rs.P50), msStr(rs.P99), msStr(rs.Min), msStr(rs.Max), fmt.Sprint(rs.N))
	r.Figure("end_lag_median_ms", ms(l.P50))
	r.Figure("end_lag_p99_ms", ms(l.P99))
	r.Figure("response_time_median_ms", ms(rs.P50))
	r.Check("end lag median", ms(l.P50), "<", ms(goalEndLag), " ms")
	r.Check("end lag p99", ms(l.P99), "<", ms(goalEndLag), " ms")
	r.Note("background write = un-awaited fetch POST answered after %v; end has 1 ms resolution", sinkDelay)
	return nil
}

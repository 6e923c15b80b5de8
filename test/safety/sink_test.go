package safety

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// sink is the "slow HTTP service" the fetch and upload scenarios post to: it reads the body,
// works for delay, and only then commits the write and answers. Like a service that runs the
// request in a transaction, it commits nothing for a client that went away meanwhile: a request
// the platform cut off by killing its instance is lost, as it would be in production.
type sink struct {
	srv   *httptest.Server
	delay time.Duration

	mu      sync.Mutex
	done    map[string]int64 // key → ms time the write was committed, just before the answer
	aborted int              // requests whose client left during the work
}

func newSink(t testing.TB, delay time.Duration) *sink {
	t.Helper()
	s := &sink{delay: delay, done: make(map[string]int64)}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the base URL; writes go to URL + "/write?key=K" (or any path with a key).
func (s *sink) URL() string { return s.srv.URL }

func (s *sink) serve(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	// Reading the body to its end also makes net/http watch the connection, so that the
	// request's context is cancelled if the client disconnects during the work below.
	if _, err := io.Copy(io.Discard, r.Body); err != nil || key == "" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	timer := time.NewTimer(s.delay)
	defer timer.Stop()
	select {
	case <-r.Context().Done():
		s.mu.Lock()
		s.aborted++
		s.mu.Unlock()
		return
	case <-timer.C:
	}
	now := time.Now().UnixMilli()
	s.mu.Lock()
	s.done[key] = now
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "ok\n")
}

// values returns, for each key the sink committed, the ms time it did.
func (s *sink) values(keys []string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	found := make(map[string]string, len(keys))
	for _, k := range keys {
		if ms, ok := s.done[k]; ok {
			found[k] = strconv.FormatInt(ms, 10)
		}
	}
	return found
}

// abortedCount is how many requests lost their client before the sink committed them.
func (s *sink) abortedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.aborted
}

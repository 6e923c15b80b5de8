package e2e

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/testenv"
)

// TestKeepAliveExpiry: a quiescent instance is terminated after --keep-alive, so the next
// invoke is cold again.
func TestKeepAliveExpiry(t *testing.T) {
	s := testenv.Start(t, "--keep-alive", "1s")
	s.Deploy(t, "ka", "nodejs:20", instanceJS, nil, nil)
	first := invokeOK(t, s, "ka", nil)
	second := invokeOK(t, s, "ka", nil)
	if !cold(first) || cold(second) {
		t.Fatalf("cold/warm: first cold=%v, second cold=%v; want true, false", cold(first), cold(second))
	}
	// Far past the 1 s keep-alive (plus the pause grace before it).
	time.Sleep(3 * time.Second)
	third := invokeOK(t, s, "ka", nil)
	if !cold(third) {
		t.Errorf("invoke after keep-alive expiry is warm: %+v", third.Annotations)
	}
	if resultMap(t, third)["instance"] == resultMap(t, first)["instance"] {
		t.Errorf("invoke after keep-alive expiry ran on the expired instance %v", resultMap(t, first)["instance"])
	}
}

// TestKeepAliveZero: --keep-alive 0 terminates instances as soon as they are quiescent.
func TestKeepAliveZero(t *testing.T) {
	s := testenv.Start(t, "--keep-alive", "0", "--stem-cells", "0")
	s.Deploy(t, "ka0", "nodejs:20", instanceJS, nil, nil)
	a := invokeOK(t, s, "ka0", nil)
	s.WaitEnded(t, a.ActivationID, endGuard)
	waitRuntimes(t, s, 0)
	if b := invokeOK(t, s, "ka0", nil); !cold(b) {
		t.Errorf("with --keep-alive 0 the second invoke is warm: %+v", b.Annotations)
	}
}

// TestEvictionUnderSmallMemoryPool: with room for one 256 MB instance, two 256 MB actions take
// turns; the pool evicts the quiescent one or queues, and never drops an invocation.
func TestEvictionUnderSmallMemoryPool(t *testing.T) {
	s := testenv.Start(t, "--memory-pool", "256")
	lim := map[string]int{"memory": 256}
	s.Deploy(t, "ev-a", "nodejs:20", instanceJS, nil, lim)
	s.Deploy(t, "ev-b", "nodejs:20", instanceJS, nil, lim)

	// Alternating: each needs the other's room.
	for i := range 4 {
		name := []string{"ev-a", "ev-b"}[i%2]
		if r := invokeOK(t, s, name, nil); !cold(r) {
			t.Errorf("round %d (%s): warm, but the other action's instance should have evicted it", i, name)
		}
	}

	// At the same time: one must wait for the other to end; both succeed.
	var wg sync.WaitGroup
	statuses := make([]int, 6)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := []string{"ev-a", "ev-b"}[i%2]
			var body []byte
			statuses[i], body, _ = s.Invoke(t, name, map[string]any{"ms": 300}, true)
			if statuses[i] != http.StatusOK {
				t.Errorf("concurrent %s: %d %s", name, statuses[i], body)
			}
		}()
	}
	wg.Wait()
}

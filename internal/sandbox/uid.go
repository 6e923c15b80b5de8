package sandbox

import (
	"fmt"
	"sync"
)

// uidPool hands each live instance its own uid so instances cannot signal, ptrace or read
// the private files of one another. Allocation is round-robin so a uid is reused as late as
// possible (files it left in world-writable places age out first).
type uidPool struct {
	mu    sync.Mutex
	base  int
	count int
	next  int
	used  map[int]bool
}

func newUIDPool(base, count int) *uidPool {
	return &uidPool{base: base, count: count, used: map[int]bool{}}
}

func (p *uidPool) get() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := 0; i < p.count; i++ {
		uid := p.base + (p.next+i)%p.count
		if !p.used[uid] {
			p.used[uid] = true
			p.next = (p.next + i + 1) % p.count
			return uid, nil
		}
	}
	return 0, fmt.Errorf("sandbox: all %d instance uids from %d are in use", p.count, p.base)
}

func (p *uidPool) put(uid int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.used, uid)
}

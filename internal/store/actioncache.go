package store

import (
	"slices"
	"sync"

	"github.com/coda-serverless/coda/internal/entity"
)

// maxCachedActions bounds the cache; past it the cache starts over (a miss is one read).
const maxCachedActions = 4096

// actionCache keeps decoded actions in memory: every invoke reads its action, and a SQLite
// read plus JSON decode was a quarter of the warm invoke's CPU. Only this process writes
// actions to its store, so dropping an entry on every write keeps the cache exact; gen makes
// a read that raced with a write leave nothing stale behind.
type actionCache struct {
	mu  sync.Mutex
	gen uint64
	m   map[string]*entity.Action
}

func actionKey(namespace, name string) string { return namespace + "\x00" + name }

// get returns a copy the caller may modify.
func (c *actionCache) get(namespace, name string) (*entity.Action, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.m[actionKey(namespace, name)]
	if !ok {
		return nil, c.gen, false
	}
	return cloneAction(a), c.gen, true
}

// put caches a read made at generation gen, unless a write happened since.
func (c *actionCache) put(a *entity.Action, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil || len(c.m) >= maxCachedActions {
		c.m = map[string]*entity.Action{}
	}
	c.m[actionKey(a.Namespace, a.Name)] = cloneAction(a)
}

// drop forgets an action that is being written.
func (c *actionCache) drop(namespace, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.m, actionKey(namespace, name))
}

func cloneAction(a *entity.Action) *entity.Action {
	c := *a
	c.Annotations = slices.Clone(a.Annotations)
	c.Parameters = slices.Clone(a.Parameters)
	return &c
}

package api

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/coda-serverless/coda/internal/store"
)

// authCacheTTL bounds how long a credential the store accepted is trusted without asking it
// again: long enough that a stream of invokes skips the store's key hashing, short enough that a
// deleted namespace or a rotated key stops working within seconds.
const authCacheTTL = 10 * time.Second

// authCacheMax bounds the cache; when full it is emptied (cheap, and only costs re-checks).
const authCacheMax = 4096

// errUnauthenticated: no credentials, malformed ones, or ones the store does not know (401).
var errUnauthenticated = errors.New("unauthenticated")

type authEntry struct {
	namespace string
	expires   int64 // unix ns
}

// authCache remembers accepted Authorization header values; rejected ones are never cached.
type authCache struct {
	mu sync.RWMutex
	m  map[string]authEntry
}

func newAuthCache() *authCache { return &authCache{m: make(map[string]authEntry)} }

// lookup returns the namespace for the request's Authorization header values.
func (c *authCache) lookup(ctx context.Context, st store.Store, header []string) (string, error) {
	if len(header) != 1 {
		return "", errUnauthenticated
	}
	h := header[0]
	now := time.Now().UnixNano()
	c.mu.RLock()
	e, ok := c.m[h]
	c.mu.RUnlock()
	if ok && now < e.expires {
		return e.namespace, nil
	}
	uuid, key, ok := parseBasic(h)
	if !ok {
		return "", errUnauthenticated
	}
	ns, err := st.Authenticate(ctx, uuid, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", errUnauthenticated
	case err != nil:
		return "", fmt.Errorf("authenticate: %w", err)
	}
	c.mu.Lock()
	if len(c.m) >= authCacheMax {
		clear(c.m)
	}
	c.m[h] = authEntry{namespace: ns, expires: now + int64(authCacheTTL)}
	c.mu.Unlock()
	return ns, nil
}

// parseBasic splits "Basic base64(uuid:key)".
func parseBasic(h string) (uuid, key string, ok bool) {
	const prefix = "Basic "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h[len(prefix):]))
	if err != nil {
		return "", "", false
	}
	uuid, key, ok = strings.Cut(string(raw), ":")
	if !ok || uuid == "" || key == "" {
		return "", "", false
	}
	return uuid, key, true
}

package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// keyLength is OpenWhisk's key length: 64 random alphanumerics (~380 bits), which is why
	// one SHA-256 with a salt suffices and no slow KDF is needed.
	keyLength  = 64
	saltLength = 16
	// authCacheTTL bounds how long a revoked key keeps working in a serving process when
	// another process (coda admin user delete beside a live coda serve) deleted the user;
	// deletions through this Store invalidate at once.
	authCacheTTL = 5 * time.Second
	// authCacheMax caps the cache; when full it is emptied rather than tracked per entry, as
	// legitimate credential sets are few and a flood of distinct valid keys is not realistic.
	authCacheMax = 4096
)

const keyAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// newKey returns a random OpenWhisk-style key of keyLength alphanumerics, without modulo bias.
func newKey() string {
	b := make([]byte, keyLength)
	var buf [1]byte
	for i := 0; i < keyLength; {
		_, _ = rand.Read(buf[:])
		// 248 = 4*62: reject the top values so every character is equally likely.
		if buf[0] >= 248 {
			continue
		}
		b[i] = keyAlphabet[int(buf[0])%len(keyAlphabet)]
		i++
	}
	return string(b)
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func hashKey(salt []byte, key string) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(key))
	return h.Sum(nil)
}

// CreateUser issues a namespace with a fresh UUID and key; ErrConflict if it exists.
func (s *SQLite) CreateUser(ctx context.Context, namespace string) (*User, error) {
	u := &User{Namespace: namespace, UUID: newUUID(), Key: newKey(), Created: nowMillis()}
	if err := s.insertUser(ctx, u); err != nil {
		return nil, err
	}
	return u, nil
}

func (s *SQLite) insertUser(ctx context.Context, u *User) error {
	salt := make([]byte, saltLength)
	_, _ = rand.Read(salt)
	_, err := s.w.ExecContext(ctx, `INSERT INTO users (namespace, uuid, key_hash, salt, created) VALUES (?, ?, ?, ?, ?)`,
		u.Namespace, u.UUID, hashKey(salt, u.Key), salt, u.Created)
	if err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("namespace %s: %w", u.Namespace, ErrConflict)
		}
		return fmt.Errorf("create user: %w", err)
	}
	return nil
}

// isUniqueViolation recognises SQLite's constraint error by its message, which keeps the
// driver's internal error types out of this package.
func isUniqueViolation(err error) bool {
	return strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// EnsureUser creates the namespace with these credentials, or checks that the existing ones
// match (ErrConflict if they do not).
func (s *SQLite) EnsureUser(ctx context.Context, namespace, uuid, key string) error {
	if uuid == "" || key == "" {
		return fmt.Errorf("ensure user %s: uuid and key must not be empty", namespace)
	}
	for attempt := 0; ; attempt++ {
		var gotUUID string
		var hash, salt []byte
		err := s.w.QueryRowContext(ctx, `SELECT uuid, key_hash, salt FROM users WHERE namespace = ?`,
			namespace).Scan(&gotUUID, &hash, &salt)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			err := s.insertUser(ctx, &User{Namespace: namespace, UUID: uuid, Key: key, Created: nowMillis()})
			if errors.Is(err, ErrConflict) && attempt == 0 {
				continue // created by another process in between: check its credentials
			}
			return err
		case err != nil:
			return fmt.Errorf("ensure user %s: %w", namespace, err)
		}
		uuidOK := subtle.ConstantTimeCompare([]byte(gotUUID), []byte(uuid)) == 1
		keyOK := subtle.ConstantTimeCompare(hash, hashKey(salt, key)) == 1
		if !uuidOK || !keyOK {
			return fmt.Errorf("namespace %s exists with other credentials: %w", namespace, ErrConflict)
		}
		return nil
	}
}

// DeleteUser removes the namespace (ErrNotFound if absent) and forgets its cached logins.
func (s *SQLite) DeleteUser(ctx context.Context, namespace string) error {
	// Invalidate before and after: before so no request is served from the cache once the
	// delete may have committed, after so a lookup racing with the delete cannot re-add it.
	s.auth.invalidate(namespace)
	defer s.auth.invalidate(namespace)
	res, err := s.w.ExecContext(ctx, `DELETE FROM users WHERE namespace = ?`, namespace)
	if err != nil {
		return fmt.Errorf("delete user %s: %w", namespace, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("namespace %s: %w", namespace, ErrNotFound)
	}
	return nil
}

// ListUsers returns every namespace by name, without keys.
func (s *SQLite) ListUsers(ctx context.Context) ([]*User, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT namespace, uuid, created FROM users ORDER BY namespace`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	out := []*User{}
	for rows.Next() {
		u := &User{}
		if err := rows.Scan(&u.Namespace, &u.UUID, &u.Created); err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return out, nil
}

// Authenticate returns the namespace these credentials own, or ErrNotFound. It runs on every
// request, so successful logins are cached in memory (keyed by a hash, never the raw key).
func (s *SQLite) Authenticate(ctx context.Context, uuid, key string) (string, error) {
	ck := cacheKey(uuid, key)
	if ns, ok := s.auth.get(ck); ok {
		return ns, nil
	}
	gen := s.auth.generation()
	rows, err := s.r.QueryContext(ctx, `SELECT namespace, key_hash, salt FROM users WHERE uuid = ? ORDER BY namespace`, uuid)
	if err != nil {
		return "", fmt.Errorf("authenticate: %w", err)
	}
	defer rows.Close()
	found := ""
	for rows.Next() {
		var ns string
		var hash, salt []byte
		if err := rows.Scan(&ns, &hash, &salt); err != nil {
			return "", fmt.Errorf("authenticate: %w", err)
		}
		if subtle.ConstantTimeCompare(hash, hashKey(salt, key)) == 1 && found == "" {
			found = ns
		}
	}
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("authenticate: %w", err)
	}
	if found == "" {
		return "", fmt.Errorf("credentials: %w", ErrNotFound)
	}
	s.auth.put(ck, found, gen)
	return found, nil
}

// cacheKey hashes the credentials so the cache never holds a raw key; SHA-256 rather than a
// fast map hash because a collision here would be a login as somebody else. The stack buffer
// keeps the common case free of allocations.
func cacheKey(uuid, key string) [32]byte {
	var buf [192]byte
	if len(uuid)+1+len(key) > len(buf) {
		return sha256.Sum256([]byte(uuid + "\x00" + key))
	}
	b := append(buf[:0], uuid...)
	b = append(b, 0)
	b = append(b, key...)
	return sha256.Sum256(b)
}

// authCache maps hashed credentials to their namespace for authCacheTTL. Reads are lock-free
// (an immutable map behind an atomic pointer) because every request reads it; writes, which
// happen once per credential per TTL, copy the map.
type authCache struct {
	entries atomic.Pointer[map[[32]byte]authEntry]
	gen     atomic.Uint64 // bumped by every invalidation, so a lookup that raced one is not cached
	mu      sync.Mutex    // serialises writers
}

type authEntry struct {
	namespace string
	expires   int64 // unix ns
}

func newAuthCache() *authCache {
	c := &authCache{}
	m := make(map[[32]byte]authEntry)
	c.entries.Store(&m)
	return c
}

func (c *authCache) get(k [32]byte) (string, bool) {
	e, ok := (*c.entries.Load())[k]
	if !ok || time.Now().UnixNano() > e.expires {
		return "", false
	}
	return e.namespace, true
}

func (c *authCache) generation() uint64 { return c.gen.Load() }

func (c *authCache) put(k [32]byte, ns string, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() != gen {
		return
	}
	now := time.Now().UnixNano()
	old := *c.entries.Load()
	m := make(map[[32]byte]authEntry, len(old)+1)
	if len(old) < authCacheMax {
		for ok, oe := range old {
			if oe.expires >= now {
				m[ok] = oe
			}
		}
	}
	m[k] = authEntry{namespace: ns, expires: now + authCacheTTL.Nanoseconds()}
	c.entries.Store(&m)
}

func (c *authCache) invalidate(ns string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	old := *c.entries.Load()
	m := make(map[[32]byte]authEntry, len(old))
	for k, e := range old {
		if e.namespace != ns {
			m[k] = e
		}
	}
	c.entries.Store(&m)
}

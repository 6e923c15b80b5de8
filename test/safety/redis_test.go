package safety

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/testenv"
)

// redisTimeout bounds one command from the test: Redis answers in microseconds, so this is a
// hang guard only.
const redisTimeout = 10 * time.Second

// mgetChunk keeps each MGET well inside Redis's request size limits.
const mgetChunk = 500

// redisAddr returns host:port of the test Redis, accepting a redis:// URL too.
func redisAddr(t testing.TB) string {
	t.Helper()
	a := testenv.Redis(t)
	a = strings.TrimPrefix(a, "redis://")
	a = strings.TrimSuffix(a, "/")
	if _, _, err := net.SplitHostPort(a); err != nil {
		t.Fatalf("CODA_TEST_REDIS %q is not host:port: %v", a, err)
	}
	return a
}

// redisConn is a minimal RESP client: the test needs MGET, DEL and PING, and a client library
// would be a module dependency for three commands.
type redisConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialRedis(ctx context.Context, addr string) (*redisConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial redis %s: %w", addr, err)
	}
	return &redisConn{c: c, r: bufio.NewReader(c)}, nil
}

func (rc *redisConn) Close() error { return rc.c.Close() }

// do sends one command and returns its reply: string, int64, nil, []any, or an error reply as
// a Go error.
func (rc *redisConn) do(args ...string) (any, error) {
	if err := rc.c.SetDeadline(time.Now().Add(redisTimeout)); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := rc.c.Write([]byte(b.String())); err != nil {
		return nil, fmt.Errorf("redis write: %w", err)
	}
	return rc.read()
}

func (rc *redisConn) read() (any, error) {
	line, err := rc.r.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("redis read: %w", err)
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("redis: empty reply line")
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return nil, fmt.Errorf("redis: %s", body)
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil {
			return nil, fmt.Errorf("redis: bad bulk length %q", body)
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := ioReadFull(rc.r, buf); err != nil {
			return nil, fmt.Errorf("redis read: %w", err)
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil {
			return nil, fmt.Errorf("redis: bad array length %q", body)
		}
		if n < 0 {
			return nil, nil
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = rc.read(); err != nil {
				return nil, err
			}
		}
		return out, nil
	default:
		return nil, fmt.Errorf("redis: unexpected reply %q", line)
	}
}

func ioReadFull(r *bufio.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// redisValues returns, for each key that exists, its value.
func redisValues(t testing.TB, addr string, keys []string) map[string]string {
	t.Helper()
	rc, err := dialRedis(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	found := make(map[string]string, len(keys))
	for start := 0; start < len(keys); start += mgetChunk {
		chunk := keys[start:min(start+mgetChunk, len(keys))]
		reply, err := rc.do(append([]string{"MGET"}, chunk...)...)
		if err != nil {
			t.Fatal(err)
		}
		vals, ok := reply.([]any)
		if !ok || len(vals) != len(chunk) {
			t.Fatalf("redis MGET: unexpected reply %#v", reply)
		}
		for i, v := range vals {
			if s, ok := v.(string); ok {
				found[chunk[i]] = s
			}
		}
	}
	return found
}

// redisDelete removes keys (cleanup; errors only logged).
func redisDelete(t testing.TB, addr string, keys []string) {
	t.Helper()
	rc, err := dialRedis(context.Background(), addr)
	if err != nil {
		t.Logf("redis cleanup: %v", err)
		return
	}
	defer rc.Close()
	for start := 0; start < len(keys); start += mgetChunk {
		chunk := keys[start:min(start+mgetChunk, len(keys))]
		if _, err := rc.do(append([]string{"DEL"}, chunk...)...); err != nil {
			t.Logf("redis cleanup: %v", err)
			return
		}
	}
}

// requireRedis fails (or skips) early when the server does not answer PING.
func requireRedis(t testing.TB, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	rc, err := dialRedis(ctx, addr)
	if err != nil {
		t.Fatalf("redis at %s: %v", addr, err)
	}
	defer rc.Close()
	if r, err := rc.do("PING"); err != nil || r != "PONG" {
		t.Fatalf("redis at %s: PING answered %v, %v", addr, r, err)
	}
}

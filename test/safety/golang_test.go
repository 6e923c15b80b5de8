package safety

import (
	"fmt"
	"testing"

	"github.com/coda-serverless/coda/internal/testenv"
)

// goKind is the Go runtime the suite proves.
const goKind = "go:1.26"

// goAction writes to Redis over a raw socket (RESP by hand: a Go action may import only the
// standard library and the SDK) after bgDelay, as background work registered with the SDK:
// sdk.Go for params.via == "go", sdk.WaitUntil for "waituntil". One source for both, so that
// the builder compiles it once.
func goAction(redis string) string {
	return fmt.Sprintf(`package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/coda-serverless/coda/runtimes/go/sdk"
)

const (
	redisAddr = %q
	bg        = %d * time.Millisecond
)

func set(ctx context.Context, key string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", redisAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	v := strconv.FormatInt(time.Now().UnixMilli(), 10)
	cmd := fmt.Sprintf("*3\r\n$3\r\nSET\r\n$%%d\r\n%%s\r\n$%%d\r\n%%s\r\n", len(key), key, len(v), v)
	if _, err := c.Write([]byte(cmd)); err != nil {
		return err
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(reply, "+OK") {
		return fmt.Errorf("redis answered %%q", reply)
	}
	return nil
}

func Main(ctx context.Context, params map[string]any) map[string]any {
	key, _ := params["key"].(string)
	write := func(ctx context.Context) error {
		select {
		case <-time.After(bg):
		case <-ctx.Done():
			return ctx.Err()
		}
		return set(ctx, key)
	}
	if params["via"] == "waituntil" {
		sdk.WaitUntil(ctx, write)
	} else {
		sdk.Go(ctx, func(ctx context.Context) {
			if err := write(ctx); err != nil {
				sdk.Logf(ctx, "write failed: %%v", err)
			}
		})
	}
	return map[string]any{"ok": true}
}
`, redis, bgDelay.Milliseconds())
}

func goScenarios(d deps) []scenario {
	deploy := func(t testing.TB, s *testenv.Server, action, mode string) {
		t.Helper()
		s.Deploy(t, action, goKind, goAction(d.redis), modeAnnotations(mode), actionLimits(0))
	}
	rs := redisStore{addr: d.redis}
	return []scenario{
		{name: "go/sdk.Go", store: rs, deploy: deploy, params: map[string]any{"via": "go"}},
		{name: "go/sdk.WaitUntil", store: rs, deploy: deploy, params: map[string]any{"via": "waituntil"}},
	}
}

// TestGoBackgroundWrites is the Go safety suite: writes started with the SDK.
func TestGoBackgroundWrites(t *testing.T) {
	d := needDeps(t)
	s := startServer(t)
	runScenarios(t, s, goScenarios(d))
}

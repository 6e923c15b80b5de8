package e2e

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/testenv"
)

// TestClientErrors checks every 4xx the API answers, with OpenWhisk's error body, and that
// namespaces are walled off from each other.
func TestClientErrors(t *testing.T) {
	s := testenv.Start(t, "--stem-cells", "1")
	s.Deploy(t, "echo", "nodejs:20", echoJS, nil, nil)
	put := func(name string, body any) (int, []byte) {
		status, resp, _ := s.Do(t, http.MethodPut, "/namespaces/_/actions/"+name+"?overwrite=true", body)
		return status, resp
	}

	t.Run("400", func(t *testing.T) {
		status, body := put("bad!name", testenv.ActionBody("nodejs:20", echoJS, false, nil, nil))
		if msg := apiError(t, "bad name", status, body, http.StatusBadRequest); msg != "" && !strings.Contains(msg, "name") {
			t.Errorf("bad name: message %q does not say what is wrong", msg)
		}
		status, body = put("badkind", testenv.ActionBody("cobol:74", echoJS, false, nil, nil))
		if msg := apiError(t, "bad kind", status, body, http.StatusBadRequest); msg != "" && !strings.Contains(msg, "kind") {
			t.Errorf("bad kind: message %q does not mention the kind", msg)
		}
		for _, lim := range []map[string]int{{"timeout": 50}, {"timeout": 300001}, {"memory": 64}, {"memory": 4096}, {"concurrency": 501}} {
			status, body = put("badlimits", testenv.ActionBody("nodejs:20", echoJS, false, nil, lim))
			apiError(t, "limits "+jsonString(lim), status, body, http.StatusBadRequest)
		}
		status, body = put("badmode", testenv.ActionBody("nodejs:20", echoJS, false, map[string]any{"termination": "sometimes"}, nil))
		if msg := apiError(t, "bad termination", status, body, http.StatusBadRequest); msg != "" && !strings.Contains(msg, "termination") {
			t.Errorf("bad termination: message %q does not mention termination", msg)
		}
		status, body, _ = s.Do(t, http.MethodPut, "/namespaces/_/actions/badjson?overwrite=true", []byte(`{"exec":`))
		apiError(t, "malformed JSON", status, body, http.StatusBadRequest)
		// Nothing invalid was stored.
		for _, n := range []string{"badkind", "badlimits", "badmode", "badjson"} {
			if status, _, _ := s.Do(t, http.MethodGet, "/namespaces/_/actions/"+n, nil); status != http.StatusNotFound {
				t.Errorf("rejected action %s: GET gives %d, want 404", n, status)
			}
		}
	})

	t.Run("401", func(t *testing.T) {
		status, body, _ := s.DoAs(t, "", http.MethodGet, "/namespaces/_/actions", nil)
		apiError(t, "no credentials", status, body, http.StatusUnauthorized)
		uuid, _, _ := strings.Cut(s.Auth, ":")
		status, body, _ = s.DoAs(t, uuid+":wrong", http.MethodGet, "/namespaces/_/actions", nil)
		apiError(t, "wrong key", status, body, http.StatusUnauthorized)
		status, body, _ = s.InvokeQuery(t, "00000000-0000-0000-0000-000000000000:nope", "echo", nil, "blocking=true")
		apiError(t, "unknown subject invoking", status, body, http.StatusUnauthorized)
		if _, errOut, rc := s.CodaEnv(t, []string{"CODA_AUTH=" + uuid + ":wrong"}, "action", "list"); rc == 0 {
			t.Errorf("coda action list with a wrong key succeeded: %s", errOut)
		}
	})

	t.Run("404", func(t *testing.T) {
		status, body, _ := s.Do(t, http.MethodGet, "/namespaces/_/actions/nosuch", nil)
		apiError(t, "get missing action", status, body, http.StatusNotFound)
		status, body, _ = s.Invoke(t, "nosuch", nil, true)
		apiError(t, "invoke missing action", status, body, http.StatusNotFound)
		status, body, _ = s.Do(t, http.MethodDelete, "/namespaces/_/actions/nosuch", nil)
		apiError(t, "delete missing action", status, body, http.StatusNotFound)
		status, body, _ = s.Do(t, http.MethodGet, "/namespaces/_/activations/0123456789abcdef0123456789abcdef", nil)
		apiError(t, "missing activation", status, body, http.StatusNotFound)
	})

	t.Run("409", func(t *testing.T) {
		status, body, _ := s.Do(t, http.MethodPut, "/namespaces/_/actions/echo", testenv.ActionBody("nodejs:20", echoJS, false, nil, nil))
		apiError(t, "PUT over an existing action without overwrite", status, body, http.StatusConflict)
	})

	t.Run("413", func(t *testing.T) {
		big := map[string]any{"blob": strings.Repeat("z", 1536*1024)}
		status, body, _ := s.Invoke(t, "echo", big, true)
		apiError(t, "1.5 MB of parameters", status, body, http.StatusRequestEntityTooLarge)
		// Just under the limit still works.
		invokeOK(t, s, "echo", map[string]any{"blob": strings.Repeat("z", 900*1024)})
	})

	t.Run("NamespacesAreWalledOff", func(t *testing.T) {
		out, errOut, rc := s.Coda(t, "admin", "user", "create", "alice", "--data", s.Data)
		if rc != 0 {
			t.Fatalf("coda admin user create alice: exit %d\n%s%s", rc, out, errOut)
		}
		alice := regexp.MustCompile(`(?m)^\s*([0-9a-fA-F-]{36}:\S+)\s*$`).FindStringSubmatch(out)
		if alice == nil {
			t.Fatalf("coda admin user create printed no UUID:KEY: %q", out)
		}
		key := alice[1]
		if _, _, rc := s.Coda(t, "admin", "user", "create", "alice", "--data", s.Data); rc == 0 {
			t.Error("creating alice twice succeeded")
		}
		status, body, _ := s.DoAs(t, key, http.MethodGet, "/namespaces", nil)
		if status != http.StatusOK || !strings.Contains(string(body), "alice") || strings.Contains(string(body), "guest") {
			t.Fatalf("alice's namespaces: %d %s", status, body)
		}
		status, body, _ = s.DoAs(t, key, http.MethodPut, "/namespaces/_/actions/secret", testenv.ActionBody("nodejs:20", echoJS, false, nil, nil))
		if status != http.StatusOK {
			t.Fatalf("alice deploys: %d %s", status, body)
		}
		_, _, aliceAct := s.InvokeQuery(t, key, "secret", nil, "blocking=true")
		_, _, guestAct := s.Invoke(t, "echo", nil, true)

		walled := func(what string, status int, body []byte) {
			t.Helper()
			if status != http.StatusForbidden && status != http.StatusNotFound {
				t.Errorf("%s: status %d, want 403 or 404; %s", what, status, body)
			}
		}
		// guest → alice
		status, body, _ = s.Do(t, http.MethodGet, "/namespaces/alice/actions/secret", nil)
		walled("guest reads alice's action", status, body)
		status, body, _ = s.InvokeQuery(t, s.Auth, "/alice/secret", nil, "blocking=true")
		walled("guest invokes alice's action", status, body)
		status, body, _ = s.Do(t, http.MethodGet, "/namespaces/alice/actions", nil)
		walled("guest lists alice's actions", status, body)
		status, body, _ = s.Do(t, http.MethodGet, "/namespaces/_/activations/"+aliceAct, nil)
		walled("guest reads alice's activation", status, body)
		status, body, _ = s.Do(t, http.MethodGet, "/namespaces/_/actions", nil)
		if status != http.StatusOK || strings.Contains(string(body), "secret") {
			t.Errorf("guest's action list shows alice's action: %s", body)
		}
		// alice → guest
		status, body, _ = s.DoAs(t, key, http.MethodGet, "/namespaces/guest/actions/echo", nil)
		walled("alice reads guest's action", status, body)
		status, body, _ = s.InvokeQuery(t, key, "/guest/echo", nil, "blocking=true")
		walled("alice invokes guest's action", status, body)
		status, body, _ = s.DoAs(t, key, http.MethodGet, "/namespaces/_/actions/echo", nil)
		walled("alice reads echo in her own namespace", status, body)
		status, body, _ = s.DoAs(t, key, http.MethodGet, "/namespaces/_/activations/"+guestAct, nil)
		walled("alice reads guest's activation", status, body)
		status, body, _ = s.DoAs(t, key, http.MethodDelete, "/namespaces/guest/actions/echo", nil)
		walled("alice deletes guest's action", status, body)
		status, body, _ = s.DoAs(t, key, http.MethodGet, "/namespaces/_/activations", nil)
		if status != http.StatusOK || strings.Contains(string(body), guestAct) {
			t.Errorf("alice's activation list: %d, shows guest's activation: %v", status, strings.Contains(string(body), guestAct))
		}
		// Explicitly naming another namespace is OpenWhisk's 403.
		status, body, _ = s.Do(t, http.MethodGet, "/namespaces/alice/actions", nil)
		apiError(t, "guest names alice's namespace", status, body, http.StatusForbidden)
		invokeOK(t, s, "echo", nil) // guest's own action is untouched

		// A deleted user's key stops working.
		if out, errOut, rc := s.Coda(t, "admin", "user", "delete", "alice", "--data", s.Data); rc != 0 {
			t.Fatalf("coda admin user delete alice: exit %d\n%s%s", rc, out, errOut)
		}
		deadline := time.Now().Add(procGuard) // the API may cache a key briefly
		for {
			status, _, _ = s.DoAs(t, key, http.MethodGet, "/namespaces", nil)
			if status == http.StatusUnauthorized {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("deleted alice's key still answers %d", status)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

// TestThrottling checks the per-namespace limits: concurrent activations and invocations per
// minute answer 429, as OpenWhisk does.
func TestThrottling(t *testing.T) {
	t.Run("Concurrent", func(t *testing.T) {
		s := testenv.Start(t, "--limit-concurrent", "1", "--stem-cells", "1")
		s.Deploy(t, "slow", "nodejs:20", instanceJS, nil, nil)
		status, body, first := s.Invoke(t, "slow", map[string]any{"ms": 3000}, false)
		if status != http.StatusAccepted {
			t.Fatalf("first invoke: %d %s", status, body)
		}
		status, body, _ = s.Invoke(t, "slow", nil, true)
		apiError(t, "second concurrent invoke with --limit-concurrent 1", status, body, http.StatusTooManyRequests)
		s.WaitEnded(t, first, endGuard)
		// The slot is free again once the first activation ended.
		deadline := time.Now().Add(procGuard)
		for {
			status, body, _ = s.Invoke(t, "slow", nil, true)
			if status == http.StatusOK {
				break
			}
			if status != http.StatusTooManyRequests || time.Now().After(deadline) {
				t.Fatalf("invoke after the first ended: %d %s", status, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("PerMinute", func(t *testing.T) {
		const perMinute = 5
		s := testenv.Start(t, "--limit-per-minute", "5", "--stem-cells", "1")
		s.Deploy(t, "echo", "nodejs:20", echoJS, nil, nil)
		codes := map[int]int{}
		for range perMinute + 2 {
			status, body, _ := s.Invoke(t, "echo", nil, true)
			codes[status]++
			if status == http.StatusTooManyRequests {
				apiError(t, "over the per-minute limit", status, body, http.StatusTooManyRequests)
			}
		}
		if codes[http.StatusOK] != perMinute || codes[http.StatusTooManyRequests] != 2 {
			t.Errorf("%d invokes with --limit-per-minute %d: status counts %v", perMinute+2, perMinute, codes)
		}
	})
}

func jsonString(m map[string]int) string { return fmt.Sprint(m) }

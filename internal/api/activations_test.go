package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coda-serverless/coda/internal/entity"
)

// seedActivations stores n records of action "echo" one ms apart, oldest first, and returns their ids.
func seedActivations(t *testing.T, h *harness, n int, name string) []string {
	t.Helper()
	base := time.UnixMilli(1_700_000_000_000)
	var ids []string
	for i := range n {
		start := base.Add(time.Duration(i) * time.Millisecond)
		a := &entity.Activation{
			Namespace: testNS, Name: name, Version: "0.0.1", Subject: testNS,
			ActivationID: entity.NewActivationID(start), Start: start.UnixMilli(), End: start.UnixMilli() + 5, Duration: 5,
			Response: entity.NewResponse(entity.StatusSuccess, json.RawMessage(`{"i":1}`)),
			Logs:     []string{"2023-11-14T22:13:20.000000000Z stdout: line \"quoted\""},
		}
		if err := h.st.PutActivation(t.Context(), a); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, a.ActivationID)
	}
	return ids
}

func TestListActivations(t *testing.T) {
	h := newHarness(t)
	ids := seedActivations(t, h, 5, "echo")
	seedActivations(t, h, 2, "other")

	var list []map[string]json.RawMessage
	h.expect(http.StatusOK, "GET", "/api/v1/namespaces/_/activations?name=echo", "").json(t, &list)
	if len(list) != 5 {
		t.Fatalf("%d records", len(list))
	}
	var newest string
	json.Unmarshal(list[0]["activationId"], &newest)
	if newest != ids[4] {
		t.Errorf("not newest first: %s", newest)
	}
	for _, it := range list {
		for _, f := range []string{"logs", "response", "subject"} {
			if _, ok := it[f]; ok {
				t.Errorf("summary has %q", f)
			}
		}
		for _, f := range []string{"activationId", "start", "end", "duration", "statusCode", "name", "namespace", "annotations"} {
			if _, ok := it[f]; !ok {
				t.Errorf("summary lacks %q", f)
			}
		}
	}
	var docs []entity.Activation
	h.expect(http.StatusOK, "GET", "/api/v1/namespaces/_/activations?docs=true&limit=2&skip=1", "").json(t, &docs)
	if len(docs) != 2 || len(docs[0].Logs) != 1 || !docs[0].Response.Success {
		t.Errorf("docs %+v", docs)
	}
	var count map[string]int
	h.expect(http.StatusOK, "GET", "/api/v1/namespaces/_/activations?count=true&name=other", "").json(t, &count)
	if count["activations"] != 2 {
		t.Errorf("count %v", count)
	}
	since := time.UnixMilli(1_700_000_000_003).UnixMilli()
	h.expect(http.StatusOK, "GET", "/api/v1/namespaces/_/activations?name=echo&since="+itoa(since), "").json(t, &list)
	if len(list) != 2 {
		t.Errorf("since: %d records", len(list))
	}

	for q, want := range map[string]string{
		"limit=201":           "The value '201' is not in the range of 0 to 200 for activations.",
		"limit=-1":            "not in the range",
		"skip=-1":             "The value '-1' is not greater than or equal to 0 for activations.",
		"skip=x":              "The value 'x' is not an integer for activations.",
		"since=yesterday":     "Parameter is not a valid value for epoch seconds: yesterday",
		"upto=1.5":            "epoch",
		"name=a/b/c":          "Parameter may be a 'simple' name",
		"name=%2Fx":           "Parameter may be a 'simple' name",
		"docs=true&count=yes": msgDocsWithCount,
	} {
		r := h.expect(http.StatusBadRequest, "GET", "/api/v1/namespaces/_/activations?"+q, "")
		if msg := r.errorBody(t); !strings.Contains(msg, want) {
			t.Errorf("%s: %q lacks %q", q, msg, want)
		}
	}
	h.expect(http.StatusOK, "GET", "/api/v1/namespaces/_/activations?limit=0", "")
}

func TestGetActivation(t *testing.T) {
	h := newHarness(t)
	id := seedActivations(t, h, 1, "echo")[0]
	base := "/api/v1/namespaces/_/activations/" + id

	var a entity.Activation
	h.expect(http.StatusOK, "GET", base, "").json(t, &a)
	if a.ActivationID != id || a.Subject != testNS || len(a.Logs) != 1 {
		t.Fatalf("record %+v", a)
	}
	h.expect(http.StatusOK, "GET", base+"/", "")

	r := h.expect(http.StatusOK, "GET", base+"/result", "")
	if string(r.body) != `{"status":"success","statusCode":0,"success":true,"result":{"i":1}}` {
		t.Errorf("result %s", r.body)
	}
	var logs struct{ Logs []string }
	h.expect(http.StatusOK, "GET", base+"/logs", "").json(t, &logs)
	if len(logs.Logs) != 1 || !strings.Contains(logs.Logs[0], `line "quoted"`) {
		t.Errorf("logs %v", logs)
	}

	r = h.expect(http.StatusBadRequest, "GET", "/api/v1/namespaces/_/activations/abc", "")
	if msg := r.errorBody(t); msg != "Activation id length is 3 but must be 32." {
		t.Errorf("short id: %q", msg)
	}
	r = h.expect(http.StatusBadRequest, "GET", "/api/v1/namespaces/_/activations/"+strings.Repeat("Z", 32), "")
	if msg := r.errorBody(t); msg != msgActivationID {
		t.Errorf("non-hex id: %q", msg)
	}
	h.expect(http.StatusNotFound, "GET", "/api/v1/namespaces/_/activations/"+strings.Repeat("0", 32), "")
	h.expect(http.StatusNotFound, "GET", "/api/v1/namespaces/_/activations/"+strings.Repeat("0", 32)+"/logs", "")
}

func TestOpenActivationOmitsEnd(t *testing.T) {
	// A record still in its background phase has no "end", as OpenWhisk's unfinished records.
	a := &entity.Activation{Namespace: "n", Name: "a", ActivationID: strings.Repeat("1", 32), Start: 10,
		Response: entity.NewResponse(0, json.RawMessage(`{}`))}
	full := string(appendActivation(nil, a, false))
	if strings.Contains(full, `"end"`) || strings.Contains(full, `"duration"`) {
		t.Errorf("full %s", full)
	}
	sum := string(appendActivation(nil, a, true))
	if strings.Contains(sum, `"end"`) || !strings.Contains(sum, `"statusCode":0`) {
		t.Errorf("summary %s", sum)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

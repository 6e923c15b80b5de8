package api

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
)

// ExampleNew deploys an action and invokes it blocking for its result, as
// "wsk action invoke hello -p name Coda --result" does. (The store and controller here are the
// tests' in-memory stand-ins; coda serve wires the real ones.)
func ExampleNew() {
	st := newFakeStore()
	h, err := New(Config{Store: st, Controller: &fakeController{st: st}})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	send := func(method, path, body string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.SetBasicAuth(testUUID, testKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		fmt.Println(resp.StatusCode, len(resp.Header.Get("x-openwhisk-activation-id")) == 32)
		if method == "POST" {
			fmt.Println(string(b))
		}
	}
	send("PUT", "/api/v1/namespaces/_/actions/hello",
		`{"exec":{"kind":"nodejs:default","code":"function main(p) { return p }"}}`)
	send("POST", "/api/v1/namespaces/_/actions/hello?blocking=true&result=true", `{"name":"Coda"}`)
	// Output:
	// 200 false
	// 200 true
	// {"name":"Coda"}
}

package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaults(t *testing.T) {
	c, err := Parse(nil, env(nil), "/home/u", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != DefaultListen || c.Data != "/home/u/.coda" || c.KeepAlive != DefaultKeepAlive ||
		c.PauseGrace != DefaultPauseGrace || c.MemoryPool != 2048 || c.StemCells != 2 || c.Isolate != "auto" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestFlagsOverrideEnvironment(t *testing.T) {
	e := env(map[string]string{"CODA_KEEP_ALIVE": "0", "CODA_MEMORY_POOL": "512", "CODA_LISTEN": "127.0.0.1:9000"})
	c, err := Parse([]string{"--listen", "127.0.0.1:0", "--pause-grace", "0"}, e, "/h", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:0" || c.KeepAlive != 0 || c.MemoryPool != 512 || c.PauseGrace != 0 {
		t.Fatalf("got %+v", c)
	}
	if c.KeepAlive != time.Duration(0) {
		t.Fatal("keep-alive from env not applied")
	}
}

func TestValidationErrorsAreAllReported(t *testing.T) {
	_, err := Parse([]string{"--memory-pool", "10", "--keep-alive", "-1s", "--isolate", "maybe", "--auth", "nope", "--listen", "nohost"},
		env(nil), "/h", io.Discard)
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{"--memory-pool", "--keep-alive", "--isolate", "--auth", "--listen"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestBadEnvironmentValue(t *testing.T) {
	_, err := Parse(nil, env(map[string]string{"CODA_STEM_CELLS": "many"}), "/h", io.Discard)
	if err == nil || !strings.Contains(err.Error(), "CODA_STEM_CELLS") {
		t.Fatalf("err = %v", err)
	}
}

func TestUnknownFlag(t *testing.T) {
	if _, err := Parse([]string{"--bogus"}, env(nil), "/h", io.Discard); err == nil {
		t.Fatal("want error")
	}
}

package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// Environment variables scripts/test (via scripts/services) sets for the suites that need
// external services.
const (
	EnvRedis           = "CODA_TEST_REDIS"            // host:port of a Redis server
	EnvPostgres        = "CODA_TEST_POSTGRES"         // postgres:// URL of a throwaway database
	EnvRequireServices = "CODA_TEST_REQUIRE_SERVICES" // "1": a missing service fails the test instead of skipping it
)

// Redis returns the address ("127.0.0.1:PORT") of the test Redis server from CODA_TEST_REDIS.
func Redis(t testing.TB) string {
	t.Helper()
	return service(t, EnvRedis, "a Redis server")
}

// Postgres returns the URL of the test PostgreSQL database from CODA_TEST_POSTGRES.
func Postgres(t testing.TB) string {
	t.Helper()
	return service(t, EnvPostgres, "a PostgreSQL database")
}

// NodeModules returns the absolute path of test/node/node_modules, installed by
// `npm ci` in test/node (scripts/test does it).
func NodeModules(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(RepoRoot(), "test", "node", "node_modules")
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		missing(t, "test/node/node_modules (run `npm ci` in test/node, or scripts/test)")
	}
	return dir
}

func service(t testing.TB, env, what string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		missing(t, what+" ("+env+" is not set; scripts/test starts one)")
	}
	return v
}

// missing skips the test, or fails it when the run promised every service.
func missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv(EnvRequireServices) == "1" {
		t.Fatalf("testenv: this test needs %s, and %s=1", what, EnvRequireServices)
	}
	t.Skipf("testenv: needs %s", what)
}

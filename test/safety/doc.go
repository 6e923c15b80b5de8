// Package safety is Coda's end-to-end proof that scale-down loses no background write: it runs
// the real `coda serve` with --keep-alive 0 (every instance is terminated the moment it is
// quiescent) against real Redis and PostgreSQL servers, and checks, for Node.js, Python and Go
// actions under each termination mode, that every write an activation started after its
// response is in the database when the activation's record has ended (decoupled, await), and
// that the coupled baseline really loses them.
//
// The package holds tests only. They need CODA_TEST_REDIS, CODA_TEST_POSTGRES and
// test/node/node_modules (scripts/test provides all three); without them the tests skip, or
// fail when CODA_TEST_REQUIRE_SERVICES=1. CODA_SAFETY_N sets the invocations per scenario and
// mode (default 200).
//
// By hand: run scripts/services in another shell and paste the exports it prints (or point the
// CODA_TEST_ variables at any Redis and PostgreSQL), `(cd test/node && npm ci)`, then
//
//	go test -v -timeout 60m ./test/safety/
//	go test -v -run 'TestNodeBackgroundWrites/node/pg-pool' ./test/safety/
//
// Every scenario logs one line the release notes quote:
//
//	SAFETY node/redis-pool mode=coupled expected=200 found=57 ...
package safety

package cli

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coda-serverless/coda/internal/client"
)

// httpTimeout only guards against a hung server: it is well above the API's 60 s blocking
// wait, after which the API answers 202 by itself.
const httpTimeout = 5 * time.Minute

// Files `coda serve` writes into the data directory so that local commands need no setup.
const (
	authFile    = "auth"    // the guest key, UUID:KEY (mode 0600)
	apihostFile = "apihost" // e.g. http://127.0.0.1:3233
)

// dataDir is $CODA_DATA, else ~/.coda.
func (r *runner) dataDir() string {
	if d := r.env.Getenv("CODA_DATA"); d != "" {
		return d
	}
	home := r.env.Getenv("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	return filepath.Join(home, ".coda")
}

// readDataFile returns a data-directory file's trimmed content, or "" when it is absent.
func (r *runner) readDataFile(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(r.dataDir(), name))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// resolve picks a setting: the flag, then the environment variable, then the data-directory file.
func (r *runner) resolve(p *parsed, flag, envVar, file string) (string, error) {
	if v := p.str(flag); v != "" {
		return v, nil
	}
	if v := r.env.Getenv(envVar); v != "" {
		return v, nil
	}
	return r.readDataFile(file)
}

// client builds an API client from the resolved host and key.
func (r *runner) client(p *parsed) (*client.Client, error) {
	host, err := r.resolve(p, "apihost", "CODA_APIHOST", apihostFile)
	if err != nil {
		return nil, err
	}
	if host == "" {
		host = client.DefaultAPIHost
	}
	auth, err := r.resolve(p, "auth", "CODA_AUTH", authFile)
	if err != nil {
		return nil, err
	}
	if auth == "" {
		return nil, fmt.Errorf("no authorization key: pass --auth UUID:KEY, set CODA_AUTH, or run `coda serve`, which writes %s",
			filepath.Join(r.dataDir(), authFile))
	}
	c, err := client.New(host, auth, &http.Client{Timeout: httpTimeout})
	if err != nil {
		return nil, err
	}
	if p.bool("verbose") {
		c.Trace = r.env.Stderr
	}
	return c, nil
}

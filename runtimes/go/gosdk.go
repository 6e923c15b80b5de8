// Package gosdk carries the Go SDK (runtimes/go/sdk) inside the coda binary, so that Go actions
// build against it without network access.
//
// The SDK is its own module (users depend on it without pulling Coda), and go:embed refuses files
// of another module, so _sdk holds a copy of its sources, refreshed by go generate; a test fails
// when the copy drifts. Tools skip directories starting with "_", so the copy is not compiled here.
package gosdk

//go:generate sh -c "rm -f _sdk/*.go && cp sdk/*.go _sdk/ && rm -f _sdk/*_test.go"

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// ModulePath is the SDK's module path, the one user code imports.
const ModulePath = "github.com/coda-serverless/coda/runtimes/go/sdk"

// goMod is sdk/go.mod (a test keeps them equal): a go.mod cannot be embedded from this module.
const goMod = "module " + ModulePath + "\n\ngo 1.26\n"

//go:embed _sdk/*.go
var files embed.FS

// WriteTo writes the SDK module (go.mod and its non-test sources) into dir, creating it.
func WriteTo(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("gosdk: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(goMod), 0o644); err != nil {
		return fmt.Errorf("gosdk: %w", err)
	}
	return eachFile(func(name string, b []byte) error {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return fmt.Errorf("gosdk: %w", err)
		}
		return nil
	})
}

// Digest identifies the SDK's content, so that build caches keyed on it rebuild actions when the
// SDK changes.
func Digest() string {
	h := sha256.New()
	h.Write([]byte(goMod))
	_ = eachFile(func(name string, b []byte) error {
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(b))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))
}

// eachFile visits the embedded sources in name order.
func eachFile(fn func(name string, b []byte) error) error {
	entries, err := fs.ReadDir(files, "_sdk")
	if err != nil {
		return fmt.Errorf("gosdk: %w", err)
	}
	for _, e := range entries {
		b, err := files.ReadFile(path.Join("_sdk", e.Name()))
		if err != nil {
			return fmt.Errorf("gosdk: %w", err)
		}
		if err := fn(e.Name(), b); err != nil {
			return err
		}
	}
	return nil
}

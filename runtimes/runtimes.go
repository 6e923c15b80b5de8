// Package runtimes embeds the language runtimes that run inside instances, so that one coda
// binary carries everything it needs; Extract writes them where runtime processes can read them.
package runtimes

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed nodejs/*.js nodejs/package.json python/*.py
var files embed.FS

// Extract writes the embedded runtimes under dir (dir/nodejs/runner.js, dir/python/runner.py)
// with world-readable modes, because instances run as an unprivileged user.
func Extract(dir string) error {
	return fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dir, path)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := files.ReadFile(path)
		if err != nil {
			return fmt.Errorf("runtimes: read %s: %w", path, err)
		}
		if old, err := os.ReadFile(target); err == nil && string(old) == string(b) {
			return nil
		}
		tmp := target + ".tmp"
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			return fmt.Errorf("runtimes: write %s: %w", target, err)
		}
		return os.Rename(tmp, target)
	})
}

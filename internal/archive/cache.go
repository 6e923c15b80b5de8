package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	// tmpPrefix starts with a dot so work directories never look like a
	// finished cache entry (a bare hex digest).
	tmpPrefix = ".tmp-"

	// staleTmpAge is far longer than extracting even a maximal archive
	// takes, so a temp dir this old was left by a crashed process.
	staleTmpAge = time.Hour
)

// ExtractTo extracts data into root/<hex sha256 of data> and returns that
// directory. It extracts into a temporary sibling and renames it into place,
// so a directory under its final name is always complete, whether callers
// race or a process crashes midway; an existing one is reused as is.
//
// The cache key is the archive content only: a tree extracted earlier is
// reused even if lim is now stricter. Durability across power loss is not
// attempted (nothing is fsynced); process crashes are safe.
func ExtractTo(data []byte, root string, lim Limits) (string, error) {
	sum := sha256.Sum256(data)
	key := hex.EncodeToString(sum[:])
	final := filepath.Join(root, key)
	if ok, err := isDir(final); err != nil {
		return "", err
	} else if ok {
		return final, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("archive: create cache root: %w", err)
	}
	sweepStale(root)
	tmp, err := os.MkdirTemp(root, tmpPrefix+key[:16]+"-")
	if err != nil {
		return "", fmt.Errorf("archive: create temp dir: %w", err)
	}
	// MkdirTemp makes 0700; the tree must be readable by the sandbox user.
	if err := os.Chmod(tmp, 0o755); err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("archive: chmod temp dir: %w", err)
	}
	if err := Extract(data, tmp, lim); err != nil {
		_ = os.RemoveAll(tmp)
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.RemoveAll(tmp)
		// Losing the race to a concurrent caller is success: its tree is
		// identical to ours.
		if ok, _ := isDir(final); ok {
			return final, nil
		}
		return "", fmt.Errorf("archive: install %s: %w", final, err)
	}
	return final, nil
}

func isDir(p string) (bool, error) {
	fi, err := os.Stat(p)
	switch {
	case err == nil:
		if !fi.IsDir() {
			return false, fmt.Errorf("archive: cache entry %s is not a directory", p)
		}
		return true, nil
	case os.IsNotExist(err):
		return false, nil
	default:
		return false, fmt.Errorf("archive: stat %s: %w", p, err)
	}
}

// sweepStale removes temp dirs left behind by crashed extractions. It is
// best effort: a leftover only wastes disk, it is never mistaken for a
// finished entry.
func sweepStale(root string) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTmpAge {
			_ = os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
}

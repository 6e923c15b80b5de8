package archive

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// Extract writes the zip's regular files and directories under dir (created
// 0755 if missing). Hostile or malformed archives are rejected with *Error:
// paths escaping dir, symlinks, devices, fifos, sockets, duplicate names,
// encrypted entries, more than lim.MaxFiles entries, and declared or actual
// sizes over the limits. Files get mode 0755 if the archive marks them
// executable, else 0644; setuid/setgid/sticky bits are never applied.
//
// All writes go through an os.Root on dir, so even a symlink already present
// in dir cannot redirect a write outside it. Existing files are never
// overwritten. On error, everything Extract created is removed (including
// dir itself if Extract created it).
func Extract(data []byte, dir string, lim Limits) error {
	lim = lim.withDefaults()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	// ErrInsecurePath (only under GODEBUG=zipinsecurepath=0) comes with a
	// usable reader; plan does its own, stricter name checks.
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return &Error{Reason: fmt.Sprintf("not a valid zip archive: %v", err)}
	}
	entries, err := plan(zr.File, lim)
	if err != nil {
		return err
	}

	createdDir, err := makeDest(dir)
	if err != nil {
		return err
	}
	x := &extractor{lim: lim, dirs: map[string]bool{".": true}}
	if err = x.open(dir); err == nil {
		err = x.run(entries)
		x.close(err != nil)
	}
	if err != nil && createdDir {
		if rerr := os.RemoveAll(dir); rerr != nil {
			return errors.Join(err, fmt.Errorf("archive: clean up %s: %w", dir, rerr))
		}
	}
	return err
}

// makeDest creates dir if needed and reports whether it did, so a failed
// extraction removes the directory only when it is ours.
func makeDest(dir string) (created bool, err error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return false, fmt.Errorf("archive: create parent of %s: %w", dir, err)
	}
	err = os.Mkdir(dir, 0o755)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrExist):
		fi, serr := os.Stat(dir)
		if serr != nil {
			return false, fmt.Errorf("archive: stat %s: %w", dir, serr)
		}
		if !fi.IsDir() {
			return false, fmt.Errorf("archive: destination %s is not a directory", dir)
		}
		return false, nil
	default:
		return false, fmt.Errorf("archive: create %s: %w", dir, err)
	}
}

// extractor writes validated entries and remembers what it created so a
// failure can be undone.
type extractor struct {
	lim     Limits
	root    *os.Root
	dirs    map[string]bool // directories known to exist under root
	created []string        // paths we created, in creation order
	written int64           // actual bytes written so far
}

func (x *extractor) open(dir string) error {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("archive: open %s: %w", dir, err)
	}
	x.root = r
	return nil
}

// close releases the root, first removing everything created if undo is set.
// Removal is best effort: the original error is what matters to the caller.
func (x *extractor) close(undo bool) {
	if undo {
		for i := len(x.created) - 1; i >= 0; i-- {
			_ = x.root.Remove(x.created[i])
		}
	}
	_ = x.root.Close()
}

func (x *extractor) run(entries []entry) error {
	for _, e := range entries {
		if e.dir {
			if err := x.mkdirs(e.f.Name, e.name); err != nil {
				return err
			}
			continue
		}
		if err := x.mkdirs(e.f.Name, path.Dir(e.name)); err != nil {
			return err
		}
		if err := x.writeFile(e); err != nil {
			return err
		}
	}
	return nil
}

// mkdirs creates name and its missing parents one component at a time so
// each one we create is recorded for undo.
func (x *extractor) mkdirs(raw, name string) error {
	if x.dirs[name] {
		return nil
	}
	if err := x.mkdirs(raw, path.Dir(name)); err != nil {
		return err
	}
	err := x.root.Mkdir(name, 0o755)
	switch {
	case err == nil:
		x.created = append(x.created, name)
		// Mkdir is subject to the umask; the sandbox user must be able to read.
		if err := x.root.Chmod(name, 0o755); err != nil {
			return fmt.Errorf("archive: chmod %s: %w", name, err)
		}
	case errors.Is(err, fs.ErrExist):
		fi, lerr := x.root.Lstat(name)
		if lerr != nil || !fi.IsDir() {
			return fmt.Errorf("archive: entry %q: %s exists in the destination and is not a directory", raw, name)
		}
	default:
		return fmt.Errorf("archive: entry %q: mkdir %s: %w", raw, name, err)
	}
	x.dirs[name] = true
	return nil
}

func (x *extractor) writeFile(e entry) error {
	// O_EXCL never follows a final symlink and never clobbers a file we did
	// not write; the temporary 0600 is widened only once the data is in.
	out, err := x.root.OpenFile(e.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("archive: entry %q: create %s: %w", e.f.Name, e.name, err)
	}
	x.created = append(x.created, e.name)
	err = x.copyEntry(out, e)
	if err == nil {
		if cerr := out.Chmod(e.perm); cerr != nil {
			err = fmt.Errorf("archive: chmod %s: %w", e.name, cerr)
		}
	}
	if cerr := out.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("archive: write %s: %w", e.name, cerr)
	}
	return err
}

func (x *extractor) copyEntry(out io.Writer, e entry) error {
	rc, err := e.f.Open()
	if err != nil {
		return &Error{Entry: e.f.Name, Reason: fmt.Sprintf("cannot read entry: %v", err)}
	}
	defer rc.Close()
	// plan already bounded the declared size; the limit here is what stops
	// a header that lies about it.
	limit := min(int64(e.f.UncompressedSize64), x.lim.MaxFile, x.lim.MaxTotal-x.written)
	n, err := copyLimited(out, rc, limit)
	x.written += n
	var re *readError
	switch {
	case errors.Is(err, errTooLarge):
		return &Error{Entry: e.f.Name, Reason: fmt.Sprintf("actual size exceeds the declared size or limits (%d bytes allowed)", limit)}
	case errors.As(err, &re):
		return &Error{Entry: e.f.Name, Reason: fmt.Sprintf("corrupt entry data: %v", re.err)}
	case err != nil:
		return fmt.Errorf("archive: write %s: %w", e.name, err)
	}
	return nil
}

// errTooLarge reports that a source produced more bytes than allowed.
var errTooLarge = errors.New("data exceeds the size limit")

// readError marks an error from the archive side of a copy (corrupt data,
// the user's fault) as opposed to the disk side (ours).
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

type taggedReader struct{ r io.Reader }

func (t taggedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		err = &readError{err}
	}
	return n, err
}

// copyLimited copies at most limit bytes from src to dst and fails with
// errTooLarge if src has more, reading at most one byte past limit so a
// hostile stream can never make it do unbounded work.
func copyLimited(dst io.Writer, src io.Reader, limit int64) (int64, error) {
	if limit < 0 {
		limit = 0
	}
	n, err := io.Copy(dst, io.LimitReader(taggedReader{src}, limit+1))
	if err != nil {
		return n, err
	}
	if n > limit {
		return n, errTooLarge
	}
	return n, nil
}

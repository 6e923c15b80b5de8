package archive

import (
	"archive/zip"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
)

// encryptedFlag is bit 0 of the zip general purpose flags; archive/zip
// cannot decrypt, so such entries would only yield garbage.
const encryptedFlag = 0x1

// entry is one validated zip member ready to be written.
type entry struct {
	f    *zip.File
	name string // cleaned, slash-separated, relative to the destination
	dir  bool
	perm fs.FileMode // 0755 or 0644 for files
}

// plan validates every entry before anything touches the disk, so most
// hostile archives are rejected without writing a byte.
func plan(files []*zip.File, lim Limits) ([]entry, error) {
	if len(files) > lim.MaxFiles {
		return nil, &Error{Reason: fmt.Sprintf("archive has %d entries, limit is %d", len(files), lim.MaxFiles)}
	}
	var (
		out      = make([]entry, 0, len(files))
		isDir    = make(map[string]bool, len(files))
		declared uint64
	)
	for _, f := range files {
		bad := func(format string, a ...any) error {
			return &Error{Entry: f.Name, Reason: fmt.Sprintf(format, a...)}
		}
		name, reason := cleanName(f.Name)
		if reason != "" {
			return nil, bad("%s", reason)
		}
		mode := f.Mode()
		var dir bool
		switch {
		case mode&fs.ModeSymlink != 0:
			return nil, bad("symbolic links are not allowed")
		case mode.IsDir():
			dir = true
		case mode.IsRegular():
		default:
			return nil, bad("%s entries are not allowed", describeType(mode))
		}
		if f.Flags&encryptedFlag != 0 {
			return nil, bad("encrypted entries are not supported")
		}
		if name == "." {
			if dir {
				continue // "./" names the destination itself
			}
			return nil, bad("file name is empty")
		}
		if _, dup := isDir[name]; dup {
			return nil, bad("duplicate entry %q", name)
		}
		isDir[name] = dir
		e := entry{f: f, name: name, dir: dir}
		if !dir {
			size := f.UncompressedSize64
			if size > uint64(lim.MaxFile) {
				return nil, bad("declared size %d bytes exceeds the per-file limit of %d bytes", size, lim.MaxFile)
			}
			// Cannot overflow: declared <= MaxTotal and size <= MaxFile, both < 2^63.
			declared += size
			if declared > uint64(lim.MaxTotal) {
				return nil, bad("total declared size exceeds the limit of %d bytes", lim.MaxTotal)
			}
			if size > ratioFloor {
				if f.CompressedSize64 == 0 || size/f.CompressedSize64 > uint64(lim.MaxRatio) {
					return nil, bad("compression ratio of %d:%d exceeds the limit of %d:1", size, f.CompressedSize64, lim.MaxRatio)
				}
			}
			e.perm = 0o644
			if mode.Perm()&0o111 != 0 {
				e.perm = 0o755
			}
		}
		out = append(out, e)
	}
	// A file cannot also be a directory on disk; catching it here turns an
	// obscure ENOTDIR into a clear message.
	for _, e := range out {
		for p := path.Dir(e.name); p != "."; p = path.Dir(p) {
			if d, ok := isDir[p]; ok && !d {
				return nil, &Error{Entry: e.f.Name, Reason: fmt.Sprintf("parent %q is a file entry", p)}
			}
		}
	}
	return out, nil
}

// cleanName turns a raw zip name into a clean relative slash path, or
// returns why it is unacceptable. Backslashes are treated as separators:
// archives made on Windows use them, and treating them as ordinary name
// characters would hide ".." components from the checks below.
func cleanName(raw string) (name, reason string) {
	switch {
	case raw == "":
		return "", "file name is empty"
	case strings.IndexByte(raw, 0) >= 0:
		return "", "name contains a NUL byte"
	case len(raw) > maxNameLen:
		return "", fmt.Sprintf("name is longer than %d bytes", maxNameLen)
	}
	n := strings.ReplaceAll(raw, `\`, "/")
	if strings.HasPrefix(n, "/") {
		return "", "absolute paths are not allowed"
	}
	for _, el := range strings.Split(n, "/") {
		if el == ".." {
			return "", `path contains ".."`
		}
		if len(el) > maxComponentLen {
			return "", fmt.Sprintf("path component is longer than %d bytes", maxComponentLen)
		}
	}
	c := path.Clean(n)
	if c == "." {
		return c, ""
	}
	// Belt and braces: the checks above should already guarantee this.
	if !filepath.IsLocal(filepath.FromSlash(c)) {
		return "", "path escapes the destination"
	}
	return c, ""
}

// describeType names a non-regular file type for error messages.
func describeType(m fs.FileMode) string {
	switch {
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe (fifo)"
	case m&fs.ModeSocket != 0:
		return "socket"
	default:
		return "irregular file"
	}
}

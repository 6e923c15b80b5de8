package cli

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/coda-serverless/coda/internal/entity"
)

// kindByExt is the kind an action file's extension implies when --kind is absent.
func kindByExt(ext string) (string, bool) {
	switch ext {
	case ".js", ".mjs", ".cjs":
		return entity.KindNode, true
	case ".py":
		return entity.KindPython, true
	case ".go":
		return entity.KindGo, true
	}
	return "", false
}

// loadExec reads an action's code from path. The kind is kindFlag (resolved from its aliases)
// or inferred from the extension. A .zip, or any file that is not text (a prebuilt binary for
// go:1.26 or blackbox), is sent base64-encoded with binary:true.
func loadExec(path, kindFlag string) (entity.Exec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return entity.Exec{}, usagef("read action code: %v", err)
	}
	ext := strings.ToLower(filepath.Ext(path))
	kind := kindFlag
	if kind != "" {
		k, ok := entity.CanonicalKind(kind)
		if !ok {
			return entity.Exec{}, usagef("kind %q is not supported; use one of %s", kind, entity.Kinds())
		}
		kind = k
	} else if ext == ".zip" {
		return entity.Exec{}, usagef("%s is a .zip: say which runtime it is for with --kind", path)
	} else if k, ok := kindByExt(ext); ok {
		kind = k
	} else {
		return entity.Exec{}, usagef("cannot infer the kind of %s from its extension: use --kind (%s)", path, entity.Kinds())
	}
	if ext == ".zip" || isBinary(data) {
		return entity.Exec{Kind: kind, Code: base64.StdEncoding.EncodeToString(data), Binary: true}, nil
	}
	return entity.Exec{Kind: kind, Code: string(data)}, nil
}

// isBinary reports whether data cannot travel as a JSON text string unchanged: invalid UTF-8
// or NUL bytes (which no source file has but every executable does).
func isBinary(data []byte) bool {
	return !utf8.Valid(data) || bytes.IndexByte(data, 0) >= 0
}

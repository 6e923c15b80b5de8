package api

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/coda-serverless/coda/internal/entity"
)

// FuzzValidateName: an accepted entity name never holds '/' or NUL, is never longer than
// entity.MaxNameLength, never starts with a space and is valid UTF-8 text.
func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"hello", "a b", " a", "a/b", "a\x00", "x@y.z-1", "_", strings.Repeat("a", 257), "é", "a\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if entity.ValidateName("action", name) != nil {
			return
		}
		switch {
		case strings.ContainsAny(name, "/\x00"):
			t.Fatalf("%q accepted with '/' or NUL", name)
		case len(name) > entity.MaxNameLength || name == "":
			t.Fatalf("%q accepted with length %d", name, len(name))
		case name[0] == ' ' || name[len(name)-1] == ' ':
			t.Fatalf("%q accepted with an outer space", name)
		case !utf8.ValidString(name) || strings.ContainsAny(name, "\n\r\t"):
			t.Fatalf("%q accepted with control or invalid bytes", name)
		}
	})
}

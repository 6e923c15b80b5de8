package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// jsonIndent is wsk's pretty-printing indent.
const jsonIndent = "    "

// printJSON pretty-prints v (a json.RawMessage is re-indented as is).
func printJSON(w io.Writer, v any) error {
	var raw []byte
	if m, ok := v.(json.RawMessage); ok {
		raw = m
	} else {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("encode output: %w", err)
		}
		raw = buf.Bytes()
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = []byte("{}")
	}
	var out bytes.Buffer
	if err := json.Indent(&out, bytes.TrimSpace(raw), "", jsonIndent); err != nil {
		// Not JSON after all: show it as it came rather than hide it.
		out.Reset()
		out.Write(bytes.TrimSpace(raw))
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}

// Package protocol is the newline-delimited JSON protocol between the invoker and a runtime
// process (see docs/protocol.md): init, run and cutoff go to the runtime on fd 3; ready,
// response, log, pending and end come back on fd 4.
package protocol

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Message types.
const (
	TypeInit     = "init"
	TypeRun      = "run"
	TypeCutoff   = "cutoff"
	TypeReady    = "ready"
	TypeResponse = "response"
	TypeLog      = "log"
	TypePending  = "pending"
	TypeEnd      = "end"
)

// Termination causes carried by end messages and activation records.
const (
	CauseSettled  = "settled"
	CauseDeadline = "deadline"
	CauseCrash    = "crash"
	CauseCoupled  = "coupled"
)

// MaxLine bounds one protocol line: a runtime that writes more is broken or hostile, and reading
// it whole would let one instance exhaust the platform's memory.
const MaxLine = 16 << 20

// Message is the union of every protocol message; Type says which fields matter.
type Message struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`

	// init
	Name   string            `json:"name,omitempty"`
	Kind   string            `json:"kind,omitempty"`
	Main   string            `json:"main,omitempty"`
	Code   string            `json:"code,omitempty"`
	Binary bool              `json:"binary,omitempty"`
	Env    map[string]string `json:"env,omitempty"`

	// run
	Params   json.RawMessage `json:"params,omitempty"`
	Deadline int64           `json:"deadline,omitempty"`
	Mode     string          `json:"mode,omitempty"`

	// ready
	End bool `json:"end,omitempty"`

	// response (Error is also used by ready)
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`

	// log
	Stream string `json:"stream,omitempty"`
	Line   string `json:"line,omitempty"`

	// pending, end
	Cause   string   `json:"cause,omitempty"`
	Pending []string `json:"pending,omitempty"`
}

// ErrLineTooLong is returned by Decoder.Next for a line over MaxLine.
var ErrLineTooLong = errors.New("protocol: line too long")

// ErrBadLine is returned (wrapped) for a line that is not a message; the stream stays usable.
var ErrBadLine = errors.New("protocol: bad line")

// Recoverable reports whether Next may be called again after err (a bad or oversized line).
func Recoverable(err error) bool {
	return errors.Is(err, ErrBadLine) || errors.Is(err, ErrLineTooLong)
}

// Decoder reads messages, one per line.
type Decoder struct {
	r   *bufio.Reader
	max int
}

// NewDecoder reads from r with the default line limit.
func NewDecoder(r io.Reader) *Decoder {
	return &Decoder{r: bufio.NewReaderSize(r, 64<<10), max: MaxLine}
}

// Next returns the next message. Blank lines are skipped; a line that is not a JSON object is an
// error that names it, and the stream stays usable after it.
func (d *Decoder) Next() (Message, error) {
	for {
		line, err := d.readLine()
		if err != nil {
			return Message{}, err
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var m Message
		if err := json.Unmarshal(line, &m); err != nil {
			return Message{}, fmt.Errorf("%w %.80q: %w", ErrBadLine, line, err)
		}
		if m.Type == "" {
			return Message{}, fmt.Errorf("%w: message without type: %.80q", ErrBadLine, line)
		}
		return m, nil
	}
}

func (d *Decoder) readLine() ([]byte, error) {
	var buf []byte
	for {
		chunk, err := d.r.ReadSlice('\n')
		if len(buf)+len(chunk) > d.max {
			// Skip the rest of the oversized line so the next call starts on a fresh one.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = d.r.ReadSlice('\n')
			}
			return nil, ErrLineTooLong
		}
		buf = append(buf, chunk...)
		switch {
		case err == nil:
			return buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(buf) > 0:
			return buf, nil
		default:
			return nil, err
		}
	}
}

// Encoder writes messages, one per line; it is safe for concurrent use.
type Encoder struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// NewEncoder writes to w.
func NewEncoder(w io.Writer) *Encoder { return &Encoder{w: w} }

// Send writes m as one line.
func (e *Encoder) Send(m Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("protocol: encode %s: %w", m.Type, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.buf = append(append(e.buf[:0], b...), '\n')
	if _, err := e.w.Write(e.buf); err != nil {
		return fmt.Errorf("protocol: write %s: %w", m.Type, err)
	}
	return nil
}

package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

// The invoker loads code into a stem cell with init; the runtime answers ready and, with
// end:true, promises to report each activation's end itself.
func Example_init() {
	var toRuntime bytes.Buffer
	enc := NewEncoder(&toRuntime)
	_ = enc.Send(Message{Type: TypeInit, ID: "i-1", Name: "guest/hello", Kind: "nodejs:20", Main: "main",
		Code: "exports.main = function (p) { return p }"})
	fmt.Print(toRuntime.String())

	dec := NewDecoder(strings.NewReader(`{"type":"ready","id":"i-1","end":true}` + "\n"))
	m, _ := dec.Next()
	fmt.Println(m.Type, m.ID, m.End)
	// Output:
	// {"type":"init","id":"i-1","name":"guest/hello","kind":"nodejs:20","main":"main","code":"exports.main = function (p) { return p }"}
	// ready i-1 true
}

// A decoupled activation: the response comes first, then pending snapshots and a log line
// from the background work, then the end.
func Example_decoupled() {
	enc := NewEncoder(os.Stdout)
	_ = enc.Send(Message{Type: TypeRun, ID: "a1", Params: []byte(`{"name":"Ada"}`), Deadline: 1764840000123, Mode: "decoupled"})

	runtime := strings.Join([]string{
		`{"type":"response","id":"a1","result":{"greeting":"hello Ada"}}`,
		`{"type":"pending","id":"a1","pending":["setTimeout 200 ms"]}`,
		`{"type":"log","id":"a1","stream":"stdout","line":"flushed"}`,
		`{"type":"end","id":"a1","cause":"settled"}`,
	}, "\n")
	dec := NewDecoder(strings.NewReader(runtime))
	for {
		m, err := dec.Next()
		if err != nil {
			break
		}
		switch m.Type {
		case TypeResponse:
			fmt.Println(m.Type, string(m.Result))
		case TypePending:
			fmt.Println(m.Type, m.Pending)
		case TypeLog:
			fmt.Println(m.Type, m.Line)
		case TypeEnd:
			fmt.Println(m.Type, m.Cause)
		}
	}
	// Output:
	// {"type":"run","id":"a1","params":{"name":"Ada"},"deadline":1764840000123,"mode":"decoupled"}
	// response {"greeting":"hello Ada"}
	// pending [setTimeout 200 ms]
	// log flushed
	// end settled
}

// At the deadline the invoker sends cutoff; the runtime answers at once with what was pending.
func Example_cutoff() {
	_ = NewEncoder(os.Stdout).Send(Message{Type: TypeCutoff, ID: "a1"})
	m, _ := NewDecoder(strings.NewReader(`{"type":"end","id":"a1","cause":"deadline","pending":["setTimeout 5000 ms"]}`)).Next()
	fmt.Println(m.Cause, m.Pending)
	// Output:
	// {"type":"cutoff","id":"a1"}
	// deadline [setTimeout 5000 ms]
}

func TestDecoderRecoversFromBadLines(t *testing.T) {
	in := "not json\n{}\n\n{\"type\":\"end\",\"id\":\"x\"}\n"
	dec := NewDecoder(strings.NewReader(in))
	for range 2 {
		if _, err := dec.Next(); !Recoverable(err) {
			t.Fatalf("want a recoverable error, got %v", err)
		}
	}
	m, err := dec.Next()
	if err != nil || m.Type != TypeEnd {
		t.Fatalf("got %+v, %v", m, err)
	}
	if _, err := dec.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("want EOF, got %v", err)
	}
}

func TestDecoderRejectsOversizedLineAndContinues(t *testing.T) {
	dec := &Decoder{r: NewDecoder(nil).r, max: 1024}
	dec.r.Reset(strings.NewReader(strings.Repeat("x", 200_000) + "\n" + `{"type":"log","id":"a"}` + "\n"))
	if _, err := dec.Next(); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("want ErrLineTooLong, got %v", err)
	}
	m, err := dec.Next()
	if err != nil || m.Type != TypeLog {
		t.Fatalf("after an oversized line: %+v, %v", m, err)
	}
}

func TestEncoderIsOneLinePerMessage(t *testing.T) {
	var b bytes.Buffer
	_ = NewEncoder(&b).Send(Message{Type: TypeLog, ID: "a", Line: "two\nlines"})
	if strings.Count(b.String(), "\n") != 1 {
		t.Fatalf("encoded %q", b.String())
	}
}

// FuzzDecoder: whatever a (hostile) runtime writes, the decoder never panics, every message it
// returns has a type, and it always makes progress to EOF.
func FuzzDecoder(f *testing.F) {
	f.Add([]byte(`{"type":"response","id":"a","result":{"x":1}}` + "\n"))
	f.Add([]byte("\n\n{\"type\":\"end\"}\n{garbage\n"))
	f.Add([]byte(`{"type":"log","line":"` + strings.Repeat("y", 5000) + `"}`))
	f.Add([]byte{0xff, 0xfe, '\n', '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := &Decoder{r: NewDecoder(nil).r, max: 4096}
		dec.r.Reset(bytes.NewReader(data))
		for i := 0; i <= len(data)+1; i++ {
			m, err := dec.Next()
			if err == nil {
				if m.Type == "" {
					t.Fatal("message without type accepted")
				}
				continue
			}
			if Recoverable(err) {
				continue
			}
			if !errors.Is(err, io.EOF) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		t.Fatal("decoder did not reach EOF")
	})
}

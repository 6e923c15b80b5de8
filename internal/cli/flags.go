package cli

import (
	"fmt"
	"strconv"
	"strings"
)

// flagKind is how many values a flag takes and how they parse.
type flagKind int

const (
	boolFlag   flagKind = iota // -b
	stringFlag                 // --kind nodejs:20 (repeatable: every value is kept)
	intFlag                    // -m 256
	pairFlag                   // -p KEY VALUE (repeatable)
)

// flagSpec is one flag as wsk spells it: a long name and an optional one-letter short name.
type flagSpec struct {
	long  string
	short string
	kind  flagKind
	arg   string // value placeholder in help text
	help  string
}

// parsed is a command line after flag parsing. Maps are keyed by the long name.
type parsed struct {
	args  []string
	set   map[string]bool
	strs  map[string][]string
	ints  map[string]int64
	pairs map[string][][2]string
}

func (p *parsed) bool(name string) bool { return p.set[name] }

// str returns the last value of a string flag.
func (p *parsed) str(name string) string {
	v := p.strs[name]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// usageError is a bad command line: it exits 2 and points at the command's help.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{msg: fmt.Sprintf(format, a...)} }

// lookup finds a spec by long name ("--name") or short letter ("-n").
func lookup(specs []flagSpec, name string, long bool) (flagSpec, bool) {
	for _, s := range specs {
		if (long && s.long == name) || (!long && s.short != "" && s.short == name) {
			return s, true
		}
	}
	return flagSpec{}, false
}

// parseFlags parses args against specs. Flags and positional arguments may interleave, as
// with wsk; "--" ends flags; bool short flags may be grouped ("-br").
func parseFlags(args []string, specs []flagSpec) (*parsed, error) {
	p := &parsed{set: map[string]bool{}, strs: map[string][]string{}, ints: map[string]int64{}, pairs: map[string][][2]string{}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			p.args = append(p.args, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			p.args = append(p.args, a)
			continue
		}
		var (
			spec            flagSpec
			ok              bool
			inline          string
			hasInline, long = false, strings.HasPrefix(a, "--")
		)
		if long {
			name := a[2:]
			name, inline, hasInline = strings.Cut(name, "=")
			spec, ok = lookup(specs, name, true)
		} else {
			name := a[1:]
			if len(name) > 1 {
				if err := p.shortGroup(a, specs); err != nil {
					return nil, err
				}
				continue
			}
			spec, ok = lookup(specs, name, false)
		}
		if !ok {
			return nil, usagef("unknown flag %s", a)
		}
		// values: the inline one (--x=v) or the next arguments.
		need := map[flagKind]int{boolFlag: 0, stringFlag: 1, intFlag: 1, pairFlag: 2}[spec.kind]
		var vals []string
		if hasInline {
			if need == 0 {
				return nil, usagef("flag %s takes no value", a)
			}
			vals = append(vals, inline)
		}
		for len(vals) < need {
			if i+1 >= len(args) {
				return nil, usagef("flag %s needs %s", a, argName(spec))
			}
			i++
			vals = append(vals, args[i])
		}
		if err := p.store(spec, a, vals); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// shortGroup handles "-br": every letter must be a bool flag.
func (p *parsed) shortGroup(a string, specs []flagSpec) error {
	for _, r := range a[1:] {
		spec, ok := lookup(specs, string(r), false)
		if !ok || spec.kind != boolFlag {
			return usagef("unknown flag %s", a)
		}
		p.set[spec.long] = true
	}
	return nil
}

func (p *parsed) store(spec flagSpec, given string, vals []string) error {
	p.set[spec.long] = true
	switch spec.kind {
	case stringFlag:
		p.strs[spec.long] = append(p.strs[spec.long], vals[0])
	case intFlag:
		n, err := strconv.ParseInt(vals[0], 10, 64)
		if err != nil {
			return usagef("flag %s needs an integer, not %q", given, vals[0])
		}
		p.ints[spec.long] = n
	case pairFlag:
		p.pairs[spec.long] = append(p.pairs[spec.long], [2]string{vals[0], vals[1]})
	}
	return nil
}

func argName(s flagSpec) string {
	switch {
	case s.arg != "":
		return s.arg
	case s.kind == pairFlag:
		return "KEY VALUE"
	case s.kind == intFlag:
		return "N"
	}
	return "VALUE"
}

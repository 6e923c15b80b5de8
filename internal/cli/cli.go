// Package cli is the coda command line: `coda serve` (handed to the server package) and the
// client commands, which speak Coda's OpenWhisk-compatible REST API with wsk's habits, plus
// `coda admin`, which works on the store directly as wskadmin does.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/coda-serverless/coda/internal/client"
)

// Env is everything the CLI reads from the outside world, so it is testable without globals.
type Env struct {
	Args   []string // os.Args[1:]
	Getenv func(string) string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Serve runs `coda serve ARGS...`; provided by the lead (package server); returns the exit code.
	Serve func(ctx context.Context, args []string) int
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the API or the platform said no, or an activation failed
	exitUsage = 2 // the command line is wrong
)

// errFailed ends a command with exit 1 after it printed its own output (a failed blocking
// activation prints its record or result, as wsk does, and says nothing more).
var errFailed = errors.New("activation failed")

// command is one leaf of the command tree.
type command struct {
	path    string // "action create"
	args    string // positional arguments in help text
	summary string
	help    string // longer description (optional)
	flags   []flagSpec
	minArgs int
	maxArgs int // -1: no bound
	run     func(ctx context.Context, r *runner, p *parsed) error
}

// runner carries one invocation of the CLI.
type runner struct {
	env       Env
	openStore func(ctx context.Context, dataDir string) (userStore, error)
	cmds      []*command
}

// Main runs the coda command line and returns its exit code.
func Main(ctx context.Context, env Env) int {
	return run(ctx, env, openUserStore)
}

func run(ctx context.Context, env Env, openStore func(context.Context, string) (userStore, error)) int {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if env.Stdout == nil {
		env.Stdout = io.Discard
	}
	if env.Stderr == nil {
		env.Stderr = io.Discard
	}
	r := &runner{env: env, openStore: openStore}
	r.cmds = commands()
	return r.main(ctx, env.Args)
}

// main resolves the command words (only global flags may precede them), then parses the rest
// against the command's flags and the global ones.
func (r *runner) main(ctx context.Context, args []string) int {
	var words, pre []string
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			pre = append(pre, a)
			if spec, ok := globalSpec(a); ok && spec.kind != boolFlag && !strings.Contains(a, "=") && i+1 < len(args) {
				i++
				pre = append(pre, args[i])
			}
			continue
		}
		words = append(words, a)
		if len(words) == 1 && (a == "serve" || a == "help") {
			i++
			break
		}
		if r.find(strings.Join(words, " ")) != nil {
			i++
			break
		}
		if !r.isGroup(strings.Join(words, " ")) {
			i++
			break
		}
	}
	rest := args[i:]
	path := strings.Join(words, " ")

	switch {
	case path == "serve":
		if r.env.Serve == nil {
			fmt.Fprintln(r.env.Stderr, "error: this coda binary was built without the server")
			return exitError
		}
		return r.env.Serve(ctx, rest)
	case path == "help":
		return r.help(rest)
	case path == "" || r.isGroup(path):
		// `coda`, `coda -h`, `coda action`, `coda action -h`.
		p, err := parseFlags(append(pre, rest...), globalFlags())
		if err != nil {
			return r.usageFail(path, err)
		}
		if path == "" || p.bool("help") {
			r.printGroupHelp(r.env.Stdout, path)
			return exitOK
		}
		return r.usageFail(path, usagef("coda %s needs a command", path))
	}
	cmd := r.find(path)
	if cmd == nil {
		return r.usageFail("", usagef("unknown command %q", path))
	}
	p, err := parseFlags(append(pre, rest...), append(append([]flagSpec{}, cmd.flags...), globalFlags()...))
	if err != nil {
		return r.usageFail(cmd.path, err)
	}
	if p.bool("help") {
		r.printCommandHelp(r.env.Stdout, cmd)
		return exitOK
	}
	if len(p.args) < cmd.minArgs || (cmd.maxArgs >= 0 && len(p.args) > cmd.maxArgs) {
		return r.usageFail(cmd.path, usagef("usage: coda %s %s", cmd.path, cmd.args))
	}
	return r.finish(cmd.path, cmd.run(ctx, r, p))
}

// finish turns a command's error into output and an exit code.
func (r *runner) finish(path string, err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errFailed):
		return exitError
	case errors.As(err, &ue):
		return r.usageFail(path, err)
	}
	fmt.Fprintf(r.env.Stderr, "error: %v\n", err)
	return exitError
}

func (r *runner) usageFail(path string, err error) int {
	fmt.Fprintf(r.env.Stderr, "error: %v\n", err)
	hint := "coda help"
	if path != "" {
		hint = "coda " + path + " -h"
	}
	fmt.Fprintf(r.env.Stderr, "Run '%s' for usage.\n", hint)
	return exitUsage
}

func (r *runner) find(path string) *command {
	for _, c := range r.cmds {
		if c.path == path {
			return c
		}
	}
	return nil
}

// isGroup reports whether path is a proper prefix of some command ("action", "admin user").
func (r *runner) isGroup(path string) bool {
	if path == "" {
		return false
	}
	for _, c := range r.cmds {
		if strings.HasPrefix(c.path, path+" ") {
			return true
		}
	}
	return false
}

// globalFlags are accepted everywhere, as wsk's are.
func globalFlags() []flagSpec {
	return []flagSpec{
		{long: "apihost", kind: stringFlag, arg: "HOST", help: "API host (host:port or URL); default $CODA_APIHOST, DATA/apihost, " + client.DefaultAPIHost},
		{long: "auth", short: "u", kind: stringFlag, arg: "UUID:KEY", help: "authorization key; default $CODA_AUTH, then DATA/auth"},
		{long: "insecure", short: "i", kind: boolFlag, help: "accepted for wsk compatibility; ignored"},
		{long: "verbose", short: "v", kind: boolFlag, help: "print every HTTP request and response on stderr"},
		{long: "help", short: "h", kind: boolFlag, help: "show help"},
	}
}

// globalSpec finds the global flag an argument names ("--apihost", "--apihost=x", "-u").
func globalSpec(a string) (flagSpec, bool) {
	if name, ok := strings.CutPrefix(a, "--"); ok {
		name, _, _ = strings.Cut(name, "=")
		return lookup(globalFlags(), name, true)
	}
	return lookup(globalFlags(), a[1:], false)
}

// commands is the command tree, in help order.
func commands() []*command {
	var cmds []*command
	cmds = append(cmds, actionCommands()...)
	cmds = append(cmds, activationCommands()...)
	cmds = append(cmds, namespaceCommands()...)
	cmds = append(cmds, adminCommands()...)
	cmds = append(cmds, &command{path: "version", summary: "print the version of coda", maxArgs: 0, run: runVersion})
	return cmds
}

package cli

import (
	"fmt"
	"io"
	"strings"
)

// help is `coda help [COMMAND...]`.
func (r *runner) help(words []string) int {
	path := strings.Join(words, " ")
	switch {
	case path == "" || r.isGroup(path):
		r.printGroupHelp(r.env.Stdout, path)
	case path == "serve":
		fmt.Fprintln(r.env.Stdout, "usage: coda serve [flags]\n\nRun the platform; see 'coda serve -h'.")
	case r.find(path) != nil:
		r.printCommandHelp(r.env.Stdout, r.find(path))
	default:
		return r.usageFail("", usagef("unknown command %q", path))
	}
	return exitOK
}

// printGroupHelp lists the commands under path ("" for all).
func (r *runner) printGroupHelp(w io.Writer, path string) {
	if path == "" {
		fmt.Fprintln(w, "coda: a serverless platform whose activations end when their background work has, not at their response.")
		fmt.Fprintln(w, "\nusage: coda [global flags] COMMAND [ARGS] [flags]")
		fmt.Fprintf(w, "\n  %-40s %s\n", "serve [flags]", "run the platform (API on :3233)")
	} else {
		fmt.Fprintf(w, "usage: coda %s COMMAND [ARGS] [flags]\n\n", path)
	}
	for _, c := range r.cmds {
		if path == "" || strings.HasPrefix(c.path, path+" ") {
			fmt.Fprintf(w, "  %-40s %s\n", strings.TrimSpace(c.path+" "+c.args), c.summary)
		}
	}
	if path == "" {
		fmt.Fprintf(w, "  %-40s %s\n", "help [COMMAND]", "show help; every command also takes -h")
	}
	printFlags(w, "global flags", globalFlags())
	fmt.Fprintln(w, "\nThe API host and key come from --apihost/--auth, else CODA_APIHOST/CODA_AUTH, else the files\napihost and auth that `coda serve` writes into the data directory ($CODA_DATA, else ~/.coda).")
}

func (r *runner) printCommandHelp(w io.Writer, c *command) {
	fmt.Fprintf(w, "usage: coda %s\n\n%s\n", strings.TrimSpace(c.path+" "+c.args+" [flags]"), c.summary)
	if c.help != "" {
		fmt.Fprintf(w, "\n%s\n", c.help)
	}
	if len(c.flags) > 0 {
		printFlags(w, "flags", c.flags)
	}
	printFlags(w, "global flags", globalFlags())
}

func printFlags(w io.Writer, title string, specs []flagSpec) {
	fmt.Fprintf(w, "\n%s:\n", title)
	for _, s := range specs {
		name := "    --" + s.long
		if s.short != "" {
			name = "-" + s.short + ", --" + s.long
		}
		if s.kind != boolFlag {
			name += " " + argName(s)
		}
		fmt.Fprintf(w, "  %-32s %s\n", name, s.help)
	}
}

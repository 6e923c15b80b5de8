package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/coda-serverless/coda/internal/client"
	"github.com/coda-serverless/coda/internal/entity"
)

func actionCommands() []*command {
	deploy := append(append(paramFlags(), annotationFlags()...),
		flagSpec{long: "kind", kind: stringFlag, arg: "KIND", help: "runtime (" + entity.Kinds() + "); default from the file extension"},
		flagSpec{long: "main", kind: stringFlag, arg: "NAME", help: "entry function (default main)"},
		flagSpec{long: "memory", short: "m", kind: intFlag, arg: "MB", help: fmt.Sprintf("memory limit in MB (%d..%d)", entity.MinMemory, entity.MaxMemory)},
		flagSpec{long: "timeout", short: "t", kind: intFlag, arg: "MS", help: fmt.Sprintf("deadline of a whole activation, response and background work, in ms (%d..%d)", entity.MinTimeout, entity.MaxTimeout)},
		flagSpec{long: "logsize", short: "l", kind: intFlag, arg: "MB", help: fmt.Sprintf("log limit in MB (%d..%d)", entity.MinLogs, entity.MaxLogs)},
		flagSpec{long: "concurrency", short: "c", kind: intFlag, arg: "N", help: "activations per instance that have not yet responded"},
		flagSpec{long: "termination", kind: stringFlag, arg: "MODE", help: "decoupled (default: respond at once, end when settled), await (respond when settled) or coupled (end at the response)"},
	)
	return []*command{
		{path: "action create", args: "NAME FILE", summary: "create an action", flags: deploy, minArgs: 2, maxArgs: 2, run: runActionCreate,
			help: "The kind comes from FILE's extension (.js nodejs:20, .py python:3.11, .go go:1.26) unless --kind says otherwise.\nA .zip (needs --kind) or a binary file is sent base64-encoded."},
		{path: "action update", args: "NAME [FILE]", summary: "update an action, or create it", flags: deploy, minArgs: 1, maxArgs: 2, run: runActionUpdate,
			help: "Only what the flags name changes: -p/-P replace the parameters, -a/-A/--termination set annotations, limits change one by one."},
		{path: "action get", args: "NAME", summary: "get an action", minArgs: 1, maxArgs: 1, run: runActionGet,
			flags: []flagSpec{{long: "summary", short: "s", kind: boolFlag, help: "summarize the action instead of printing it"}}},
		{path: "action list", summary: "list actions", maxArgs: 0, run: runActionList,
			flags: []flagSpec{
				{long: "limit", short: "l", kind: intFlag, help: "list at most N actions"},
				{long: "skip", short: "s", kind: intFlag, help: "skip the first N actions"},
			}},
		{path: "action delete", args: "NAME", summary: "delete an action", minArgs: 1, maxArgs: 1, run: runActionDelete},
		{path: "action invoke", args: "NAME", summary: "invoke an action", minArgs: 1, maxArgs: 1, run: runActionInvoke,
			flags: append(paramFlags(),
				flagSpec{long: "blocking", short: "b", kind: boolFlag, help: "wait for the response and print the activation record"},
				flagSpec{long: "result", short: "r", kind: boolFlag, help: "wait for the response and print only its result (implies --blocking)"},
			)},
	}
}

// qualified is how wsk names an action in messages: /_/name unless already fully qualified.
func qualified(name string) string {
	if strings.HasPrefix(name, "/") {
		return name
	}
	return "/_/" + name
}

// applyDeployFlags sets on a everything the flags name; file is the code (empty: keep a's).
// Parameters given replace a's as a whole (as OpenWhisk does); annotations are set key by key.
func applyDeployFlags(a *entity.Action, p *parsed, file string) error {
	if file != "" {
		exec, err := loadExec(file, p.str("kind"))
		if err != nil {
			return err
		}
		exec.Main = a.Exec.Main
		a.Exec = exec
	} else if p.set["kind"] {
		return usagef("--kind needs the action's code: give FILE too")
	}
	if p.set["main"] {
		a.Exec.Main = p.str("main")
	}
	params, given, err := keyValues(p, "param", "param-file")
	if err != nil {
		return err
	}
	if given { // OpenWhisk replaces the parameters as a whole
		a.Parameters = params
	}
	annots, _, err := keyValues(p, "annotation", "annotation-file")
	if err != nil {
		return err
	}
	for _, kv := range annots {
		a.Annotations = setRaw(a.Annotations, kv.Key, kv.Value)
	}
	if p.set["termination"] {
		a.Annotations = a.Annotations.Set("termination", p.str("termination"))
	}
	if raw, ok := a.Annotations.Get("termination"); ok && (p.set["termination"] || p.set["annotation"] || p.set["annotation-file"]) {
		var m string
		if json.Unmarshal(raw, &m) != nil {
			return usagef("termination must be a string: decoupled, await or coupled")
		}
		if err := entity.ValidateMode(m); err != nil {
			return usagef("%v", err)
		}
	}
	for flag, dst := range map[string]*int{"memory": &a.Limits.Memory, "timeout": &a.Limits.Timeout, "logsize": &a.Limits.Logs, "concurrency": &a.Limits.Concurrency} {
		if p.set[flag] {
			*dst = int(p.ints[flag])
		}
	}
	return nil
}

// newAction is the action NAME as the flags describe it, on top of the default limits.
func newAction(name string) *entity.Action {
	ns, n := client.SplitName(name)
	if ns == "_" {
		ns = ""
	}
	return &entity.Action{Namespace: ns, Name: n, Annotations: entity.KeyValues{}, Parameters: entity.KeyValues{}, Limits: entity.DefaultLimits()}
}

func runActionCreate(ctx context.Context, r *runner, p *parsed) error {
	name, file := p.args[0], p.args[1]
	a := newAction(name)
	if err := applyDeployFlags(a, p, file); err != nil {
		return err
	}
	c, err := r.client(p)
	if err != nil {
		return err
	}
	if _, err := c.PutAction(ctx, a, false); err != nil {
		return fmt.Errorf("unable to create action %s: %w", name, err)
	}
	fmt.Fprintf(r.env.Stdout, "ok: created action %s\n", name)
	return nil
}

// runActionUpdate merges the flags into the stored action on the client side, so that an
// update without FILE keeps the code whatever the server's PUT semantics; an action that does
// not exist yet is created (wsk does the same).
func runActionUpdate(ctx context.Context, r *runner, p *parsed) error {
	name := p.args[0]
	file := ""
	if len(p.args) == 2 {
		file = p.args[1]
	}
	c, err := r.client(p)
	if err != nil {
		return err
	}
	a, err := c.GetAction(ctx, name)
	switch {
	case client.IsStatus(err, http.StatusNotFound):
		if file == "" {
			return fmt.Errorf("unable to update action %s: it does not exist, and creating it needs FILE: %w", name, err)
		}
		a = newAction(name)
	case err != nil:
		return fmt.Errorf("unable to update action %s: %w", name, err)
	default:
		ns, _ := client.SplitName(name)
		if ns == "_" {
			ns = ""
		}
		a.Namespace, a.Version, a.Updated = ns, "", 0
	}
	if err := applyDeployFlags(a, p, file); err != nil {
		return err
	}
	if _, err := c.PutAction(ctx, a, true); err != nil {
		return fmt.Errorf("unable to update action %s: %w", name, err)
	}
	fmt.Fprintf(r.env.Stdout, "ok: updated action %s\n", name)
	return nil
}

func runActionGet(ctx context.Context, r *runner, p *parsed) error {
	name := p.args[0]
	c, err := r.client(p)
	if err != nil {
		return err
	}
	a, err := c.GetAction(ctx, name)
	if err != nil {
		return fmt.Errorf("unable to get action %s: %w", name, err)
	}
	if p.bool("summary") {
		printActionSummary(r, a)
		return nil
	}
	fmt.Fprintf(r.env.Stdout, "ok: got action %s\n", name)
	return printJSON(r.env.Stdout, a)
}

// printActionSummary is wsk's `action get --summary`.
func printActionSummary(r *runner, a *entity.Action) {
	line := fmt.Sprintf("action /%s/%s", a.Namespace, a.Name)
	if d, ok := a.Annotations.GetString("description"); ok && d != "" {
		line += ": " + d
	}
	fmt.Fprintln(r.env.Stdout, line)
	keys := make([]string, 0, len(a.Parameters))
	for _, kv := range a.Parameters {
		keys = append(keys, kv.Key)
	}
	params := "none defined"
	if len(keys) > 0 {
		sort.Strings(keys)
		params = strings.Join(keys, ", ")
	}
	fmt.Fprintf(r.env.Stdout, "   (parameters: %s)\n", params)
	fmt.Fprintf(r.env.Stdout, "   (kind: %s, termination: %s, timeout: %d ms, memory: %d MB, concurrency: %d)\n",
		a.Exec.Kind, a.Mode(), a.Limits.Timeout, a.Limits.Memory, a.Limits.Concurrency)
}

func runActionList(ctx context.Context, r *runner, p *parsed) error {
	c, err := r.client(p)
	if err != nil {
		return err
	}
	list, err := c.ListActions(ctx, int(p.ints["skip"]), int(p.ints["limit"]))
	if err != nil {
		return fmt.Errorf("unable to list actions: %w", err)
	}
	fmt.Fprintln(r.env.Stdout, "actions")
	for _, a := range list {
		state := "private"
		if a.Publish {
			state = "shared"
		}
		fmt.Fprintf(r.env.Stdout, "%-70s %s %s\n", "/"+a.Namespace+"/"+a.Name, state, a.Exec.Kind)
	}
	return nil
}

func runActionDelete(ctx context.Context, r *runner, p *parsed) error {
	name := p.args[0]
	c, err := r.client(p)
	if err != nil {
		return err
	}
	if err := c.DeleteAction(ctx, name); err != nil {
		return fmt.Errorf("unable to delete action %s: %w", name, err)
	}
	fmt.Fprintf(r.env.Stdout, "ok: deleted action %s\n", name)
	return nil
}

func runActionInvoke(ctx context.Context, r *runner, p *parsed) error {
	name := p.args[0]
	params, _, err := keyValues(p, "param", "param-file")
	if err != nil {
		return err
	}
	c, err := r.client(p)
	if err != nil {
		return err
	}
	result := p.bool("result")
	blocking := p.bool("blocking") || result
	body, err := json.Marshal(params.Object())
	if err != nil {
		return fmt.Errorf("encode parameters: %w", err)
	}
	inv, err := c.Invoke(ctx, name, json.RawMessage(body), blocking, result)
	if err != nil {
		return fmt.Errorf("unable to invoke action %s: %w", name, err)
	}
	out := r.env.Stdout
	switch {
	case inv.Pending() && blocking:
		fmt.Fprintf(out, "ok: invoked %s, but the request has not yet finished, with id %s\n", qualified(name), inv.ActivationID)
		return nil
	case inv.Pending():
		fmt.Fprintf(out, "ok: invoked %s with id %s\n", qualified(name), inv.ActivationID)
		return nil
	case result:
		err = printJSON(out, inv.Body)
	default:
		fmt.Fprintf(out, "ok: invoked %s with id %s\n", qualified(name), inv.ActivationID)
		err = printJSON(out, inv.Activation)
	}
	if err == nil && inv.Failed() {
		err = errFailed
	}
	return err
}

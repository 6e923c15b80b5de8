package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coda-serverless/coda/internal/client"
	"github.com/coda-serverless/coda/internal/entity"
)

func activationCommands() []*command {
	last := flagSpec{long: "last", short: "l", kind: boolFlag, help: "use the newest activation instead of ID"}
	return []*command{
		{path: "activation list", args: "[NAME]", summary: "list activations, newest first", maxArgs: 1, run: runActivationList,
			flags: []flagSpec{
				{long: "limit", short: "l", kind: intFlag, help: "list at most N activations"},
				{long: "skip", short: "s", kind: intFlag, help: "skip the newest N activations"},
				{long: "since", kind: intFlag, arg: "MS", help: "only activations started at or after MS (ms since the epoch)"},
				{long: "upto", kind: intFlag, arg: "MS", help: "only activations started at or before MS (ms since the epoch)"},
			}},
		{path: "activation get", args: "ID | --last", summary: "get an activation record", maxArgs: 1, run: runActivationGet,
			flags: []flagSpec{last}},
		{path: "activation result", args: "ID | --last", summary: "get an activation's result", maxArgs: 1, run: runActivationResult,
			flags: []flagSpec{last}},
		{path: "activation logs", args: "ID | --last", summary: "get an activation's logs", maxArgs: 1, run: runActivationLogs,
			flags: []flagSpec{last, {long: "strip", short: "r", kind: boolFlag, help: "strip the timestamp and stream from each line"}}},
	}
}

// activationID is the ID argument, or with --last the newest activation's id.
func activationID(ctx context.Context, c *client.Client, p *parsed) (string, error) {
	switch {
	case p.bool("last") && len(p.args) > 0:
		return "", usagef("give an ID or --last, not both")
	case len(p.args) == 1:
		return p.args[0], nil
	case !p.bool("last"):
		return "", usagef("give an activation ID, or --last for the newest")
	}
	list, err := c.ListActivations(ctx, client.ActivationFilter{Limit: 1})
	if err != nil {
		return "", fmt.Errorf("unable to find the newest activation: %w", err)
	}
	if len(list) == 0 {
		return "", errors.New("there are no activations yet")
	}
	return list[0].ActivationID, nil
}

func runActivationList(ctx context.Context, r *runner, p *parsed) error {
	c, err := r.client(p)
	if err != nil {
		return err
	}
	f := client.ActivationFilter{Skip: int(p.ints["skip"]), Limit: int(p.ints["limit"]), Since: p.ints["since"], Upto: p.ints["upto"]}
	if len(p.args) == 1 {
		_, f.Name = client.SplitName(p.args[0])
	}
	list, err := c.ListActivations(ctx, f)
	if err != nil {
		return fmt.Errorf("unable to list activations: %w", err)
	}
	w := r.env.Stdout
	fmt.Fprintf(w, "%-19s %-32s %-11s %-5s %-10s %-22s %-11s %s\n", "Datetime", "Activation ID", "Kind", "Start", "Duration", "Status", "Termination", "Entity")
	for _, a := range list {
		kind, _ := a.Annotations.GetString("kind")
		if kind == "" {
			kind = "unknown"
		}
		start := "warm"
		if _, cold := a.Annotations.Get("initTime"); cold {
			start = "cold"
		}
		status := a.Response.Status
		if status == "" {
			status = entity.StatusString(a.StatusCode)
		}
		fmt.Fprintf(w, "%-19s %-32s %-11s %-5s %-10s %-22s %-11s %s/%s:%s\n",
			time.UnixMilli(a.Start).Format(time.DateTime), a.ActivationID, kind, start,
			fmt.Sprintf("%dms", a.Duration), status, terminationCause(a), a.Namespace, a.Name, a.Version)
	}
	return nil
}

// terminationCause is the Coda-specific column: how the activation ended, or "open" while
// it is still in its background phase.
func terminationCause(a *entity.Activation) string {
	if a.End == 0 {
		return "open"
	}
	raw, ok := a.Annotations.Get("termination")
	if !ok {
		return "-"
	}
	var t entity.Termination
	if json.Unmarshal(raw, &t) != nil || t.Cause == "" {
		return "-"
	}
	return t.Cause
}

// activationTarget is the client and the activation id (argument or --last) of a command.
func (r *runner) activationTarget(ctx context.Context, p *parsed) (*client.Client, string, error) {
	c, err := r.client(p)
	if err != nil {
		return nil, "", err
	}
	id, err := activationID(ctx, c, p)
	if err != nil {
		return nil, "", err
	}
	return c, id, nil
}

func runActivationGet(ctx context.Context, r *runner, p *parsed) error {
	c, id, err := r.activationTarget(ctx, p)
	if err != nil {
		return err
	}
	a, err := c.GetActivation(ctx, id)
	if err != nil {
		return fmt.Errorf("unable to get activation %s: %w", id, err)
	}
	fmt.Fprintf(r.env.Stdout, "ok: got activation %s\n", id)
	return printJSON(r.env.Stdout, a)
}

func runActivationResult(ctx context.Context, r *runner, p *parsed) error {
	c, id, err := r.activationTarget(ctx, p)
	if err != nil {
		return err
	}
	res, err := c.ActivationResult(ctx, id)
	if err != nil {
		return fmt.Errorf("unable to get the result of activation %s: %w", id, err)
	}
	return printJSON(r.env.Stdout, res.Result)
}

func runActivationLogs(ctx context.Context, r *runner, p *parsed) error {
	c, id, err := r.activationTarget(ctx, p)
	if err != nil {
		return err
	}
	logs, err := c.ActivationLogs(ctx, id)
	if err != nil {
		return fmt.Errorf("unable to get the logs of activation %s: %w", id, err)
	}
	for _, l := range logs {
		if p.bool("strip") {
			l = stripLogLine(l)
		}
		fmt.Fprintln(r.env.Stdout, l)
	}
	return nil
}

// stripLogLine drops "<timestamp> stdout: " from a log line (entity.LogLine's format).
func stripLogLine(l string) string {
	if _, rest, ok := strings.Cut(l, " "); ok {
		for _, s := range []string{"stdout: ", "stderr: "} {
			if text, ok := strings.CutPrefix(rest, s); ok {
				return text
			}
		}
	}
	return l
}

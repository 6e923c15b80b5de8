package cli

import (
	"context"
	"fmt"
)

func namespaceCommands() []*command {
	return []*command{
		{path: "namespace list", summary: "list the namespaces your key opens", maxArgs: 0, run: runNamespaceList},
	}
}

func runNamespaceList(ctx context.Context, r *runner, p *parsed) error {
	c, err := r.client(p)
	if err != nil {
		return err
	}
	list, err := c.Namespaces(ctx)
	if err != nil {
		return fmt.Errorf("unable to list namespaces: %w", err)
	}
	fmt.Fprintln(r.env.Stdout, "namespaces")
	for _, n := range list {
		fmt.Fprintln(r.env.Stdout, n)
	}
	return nil
}

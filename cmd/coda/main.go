// Command coda is the whole platform: `coda serve` runs it, every other subcommand is a client
// of its API (or, for `coda admin`, of its store).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/coda-serverless/coda/internal/cli"
	"github.com/coda-serverless/coda/internal/sandbox"
	"github.com/coda-serverless/coda/internal/server"
)

func main() {
	// Instances are started through this same binary acting as a namespace shim.
	sandbox.RunShimIfRequested()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(cli.Main(ctx, cli.Env{
		Args:   os.Args[1:],
		Getenv: os.Getenv,
		Stdin:  os.Stdin,
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		Serve: func(ctx context.Context, args []string) int {
			return server.Main(ctx, args, server.Env{Getenv: os.Getenv, Stdout: os.Stdout, Stderr: os.Stderr})
		},
	}))
}

package sdk

import (
	"context"
	"fmt"
)

// Func is the set of function types that Serve accepts as main. Coda's generated main calls
// Serve through a function constrained by Func, so a Main with another signature is a compile
// error at action creation rather than an init error at the first invocation.
type Func interface {
	func(map[string]any) map[string]any |
		func(map[string]any) (map[string]any, error) |
		func(context.Context, map[string]any) map[string]any |
		func(context.Context, map[string]any) (map[string]any, error)
}

// handler is the one shape every accepted main is adapted to.
type handler func(context.Context, map[string]any) (map[string]any, error)

func adapt(main any) (handler, error) {
	switch f := main.(type) {
	case func(map[string]any) map[string]any:
		return func(_ context.Context, p map[string]any) (map[string]any, error) { return f(p), nil }, nil
	case func(map[string]any) (map[string]any, error):
		return func(_ context.Context, p map[string]any) (map[string]any, error) { return f(p) }, nil
	case func(context.Context, map[string]any) map[string]any:
		return func(ctx context.Context, p map[string]any) (map[string]any, error) { return f(ctx, p), nil }, nil
	case func(context.Context, map[string]any) (map[string]any, error):
		return f, nil
	case nil:
		return nil, fmt.Errorf("sdk.Serve: main is nil")
	default:
		return nil, fmt.Errorf("sdk.Serve: unsupported main signature %T: want func([ctx context.Context,] map[string]interface{}) (map[string]interface{}[, error])", main)
	}
}

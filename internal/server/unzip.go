package server

import (
	"github.com/coda-serverless/coda/internal/archive"
	"github.com/coda-serverless/coda/internal/invoker"
)

// unzipper extracts action zips once per content into root, with the hostile-input limits.
func unzipper(root string) invoker.Extractor {
	return func(data []byte) (string, error) {
		return archive.ExtractTo(data, root, archive.DefaultLimits())
	}
}

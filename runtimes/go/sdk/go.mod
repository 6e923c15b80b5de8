module github.com/coda-serverless/coda/runtimes/go/sdk

go 1.26

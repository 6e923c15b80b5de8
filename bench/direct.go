package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// nodeBin is the Node.js the direct server runs on: the same one coda's runtime uses.
const nodeBin = "/usr/bin/node"

// directReadyTimeout bounds the start of the direct server (one Node.js process).
const directReadyTimeout = 15 * time.Second

// directScript is the baseline: a plain Node.js HTTP server doing what a no-op action does
// (parse the JSON body, call main, answer its result as JSON), with keep-alive, so that the
// difference to coda is the platform's own cost.
const directScript = `'use strict';
const http = require('http');
const main = (p) => p;
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let out;
    try {
      const params = chunks.length ? JSON.parse(Buffer.concat(chunks)) : {};
      out = JSON.stringify(main(params));
    } catch (e) {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: String(e) }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
    res.end(out);
  });
});
server.keepAliveTimeout = 120000;
server.headersTimeout = 121000;
server.listen(0, '127.0.0.1', () => console.log('listening ' + server.address().port));
`

// Direct is the running baseline server.
type Direct struct {
	URL string
	hc  *http.Client
	cmd *exec.Cmd
}

// startDirect writes the script under tmp and starts it with Node.js.
func startDirect(ctx context.Context, tmp string) (*Direct, error) {
	script := filepath.Join(tmp, "direct.js")
	if err := os.WriteFile(script, []byte(directScript), 0o644); err != nil {
		return nil, fmt.Errorf("write direct server: %w", err)
	}
	cmd := exec.Command(nodeBin, script)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("direct server: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start direct server: %w", err)
	}
	d := &Direct{hc: newHTTPClient(), cmd: cmd}
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			port <- strings.TrimPrefix(sc.Text(), "listening ")
		}
		close(port)
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case p, ok := <-port:
		if !ok || p == "" {
			d.Close()
			return nil, fmt.Errorf("direct server did not report its port")
		}
		d.URL = "http://127.0.0.1:" + p + "/"
		return d, nil
	case <-time.After(directReadyTimeout):
		d.Close()
		return nil, fmt.Errorf("direct server not listening within %v", directReadyTimeout)
	case <-ctx.Done():
		d.Close()
		return nil, ctx.Err()
	}
}

// Invoker returns the hot-loop call: POST body, read and discard the JSON answer.
func (d *Direct) Invoker(body []byte) func(context.Context) error {
	api := &API{hc: d.hc}
	return func(ctx context.Context) error {
		_, err := api.doURL(ctx, http.MethodPost, d.URL, body)
		return err
	}
}

// Close stops the server.
func (d *Direct) Close() {
	d.hc.CloseIdleConnections()
	_ = d.cmd.Process.Kill()
	_ = d.cmd.Wait()
}

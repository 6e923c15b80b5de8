package sandbox

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Backstop is the OS-level last check before an instance is terminated: it waits until the
// kernel send queues of the instance's TCP sockets are empty and every process other than
// the runtime (and the shim) has exited. It returns nil once that holds (or the instance is
// gone), else what was still pending when ctx ended.
func (p *Process) Backstop(ctx context.Context) (pending []string) {
	t := time.NewTicker(backstopPoll)
	defer t.Stop()
	for {
		if p.exited() {
			return nil
		}
		pending = p.pending()
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return pending
		case <-p.done:
			return nil
		case <-t.C:
		}
	}
}

// pending describes the instance's outstanding OS-level work.
func (p *Process) pending() []string {
	pids := p.Procs()
	slices.Sort(pids)
	var out []string
	for _, pid := range pids {
		if pid == p.shimPid || pid == p.mainPid {
			continue
		}
		switch procState(pid) {
		case 0, 'Z', 'X': // gone, or exited and waiting to be reaped
			continue
		}
		out = append(out, fmt.Sprintf("child process %s (pid %d)", procComm(pid), pid))
	}
	inodes := map[uint64]bool{}
	for _, pid := range pids {
		socketInodes(pid, inodes)
	}
	if len(inodes) == 0 {
		return out
	}
	// Every process of an instance shares one network namespace; any of them can show it.
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", p.Pid(), name))
		if err != nil {
			continue
		}
		for _, q := range sendQueues(f, inodes) {
			out = append(out, fmt.Sprintf("socket %s send queue %d bytes", q.remote, q.bytes))
		}
		f.Close()
	}
	return out
}

func procComm(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// socketInodes adds the inodes of the sockets pid has open ("socket:[123]" links).
func socketInodes(pid int, into map[uint64]bool) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		if s, ok := strings.CutPrefix(link, "socket:["); ok {
			if n, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64); err == nil {
				into[n] = true
			}
		}
	}
}

type sendQueue struct {
	remote string
	bytes  int64
}

// tcpListen is the LISTEN state in /proc/net/tcp; its tx_queue column holds the backlog
// limit, not queued bytes.
const tcpListen = 0x0A

// sendQueues parses /proc/net/tcp{,6} and returns the sockets among inodes with unsent
// bytes (tx_queue: written but not yet acknowledged by the peer).
func sendQueues(r io.Reader, inodes map[uint64]bool) []sendQueue {
	var out []sendQueue
	sc := bufio.NewScanner(r)
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil || !inodes[inode] {
			continue
		}
		if st, err := strconv.ParseUint(f[3], 16, 8); err != nil || st == tcpListen {
			continue
		}
		tx, _, _ := strings.Cut(f[4], ":")
		n, err := strconv.ParseInt(tx, 16, 64)
		if err != nil || n == 0 {
			continue
		}
		out = append(out, sendQueue{remote: procNetAddr(f[2]), bytes: n})
	}
	return out
}

// procNetAddr turns "0100007F:18EB" into "127.0.0.1:6379". The address is in host byte
// order per 32-bit word (little-endian here); the port is plain hex.
func procNetAddr(s string) string {
	a, port, ok := strings.Cut(s, ":")
	if !ok {
		return s
	}
	b, err := hex.DecodeString(a)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return s
	}
	for i := 0; i+4 <= len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	pn, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return s
	}
	return net.JoinHostPort(net.IP(b).String(), strconv.FormatUint(pn, 10))
}

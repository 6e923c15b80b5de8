package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// v2Controllers are the controllers enabled for instances; freezing is built into v2.
var v2Controllers = []string{"memory", "pids", "cpu"}

// cgroupV2 keeps the server's root cgroup inside the server's own cgroup (the delegated
// subtree under systemd, or "/" inside a container with a cgroup namespace).
type cgroupV2 struct {
	root        string
	controllers []string // enabled for instances
	freeze      bool     // cgroup.freeze exists (kernel >= 5.2)
	leaf        string   // set when the server had to move itself into a leaf (see newCgroupV2)
}

// newCgroupV2 creates <base>/<name> and enables the controllers for its children. v2's
// "no internal processes" rule forbids enabling controllers below a non-root cgroup that
// holds processes; when that bites (EBUSY), the server moves itself into the leaf
// <base>/<name>.server and tries again, the pattern systemd documents for delegation.
func newCgroupV2(base, name string, selfPid int, log logger) (*cgroupV2, error) {
	avail, err := readTrim(filepath.Join(base, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("cgroup v2: %w", err)
	}
	g := &cgroupV2{root: filepath.Join(base, name)}
	var want []string
	for _, c := range v2Controllers {
		if slices.Contains(strings.Fields(avail), c) {
			want = append(want, c)
		}
	}
	enable := func(dir string) error {
		if len(want) == 0 {
			return nil
		}
		return writeFile(filepath.Join(dir, "cgroup.subtree_control"), "+"+strings.Join(want, " +"))
	}
	if err := mkdirOK(g.root); err != nil {
		return nil, fmt.Errorf("cgroup v2: %w", err)
	}
	if err := enable(base); errors.Is(err, syscall.EBUSY) {
		leaf := g.root + ".server"
		if err := mkdirOK(leaf); err != nil {
			return nil, fmt.Errorf("cgroup v2 leaf: %w", err)
		}
		if err := writeFile(filepath.Join(leaf, "cgroup.procs"), strconv.Itoa(selfPid)); err != nil {
			return nil, fmt.Errorf("cgroup v2 move server to leaf: %w", err)
		}
		g.leaf = leaf
		log.Info("sandbox: moved server into a leaf cgroup to delegate controllers", "cgroup", leaf)
		err = enable(base)
		if err != nil {
			return nil, fmt.Errorf("cgroup v2 enable controllers: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("cgroup v2 enable controllers: %w", err)
	}
	if err := enable(g.root); err != nil {
		return nil, fmt.Errorf("cgroup v2 enable controllers below root: %w", err)
	}
	g.controllers = want
	_, err = os.Stat(filepath.Join(g.root, "cgroup.freeze"))
	g.freeze = err == nil
	return g, nil
}

func (g *cgroupV2) describe() string {
	cs := slices.Clone(g.controllers)
	if g.freeze {
		cs = append(cs, "freezer")
	}
	return "cgroup v2 (" + strings.Join(cs, ", ") + ")"
}

func (g *cgroupV2) create(name string) (instanceCgroup, error) {
	dir := filepath.Join(g.root, name)
	if err := mkdirOK(dir); err != nil {
		return nil, fmt.Errorf("cgroup v2: %w", err)
	}
	return &cgroupV2Instance{dir: dir, g: g, fd: -1}, nil
}

func (g *cgroupV2) close() error {
	// The .server leaf holds this process and stays until it exits.
	return rmdirRetry(g.root)
}

type cgroupV2Instance struct {
	dir string
	g   *cgroupV2
	fd  int // open directory for CLONE_INTO_CGROUP; closed by remove
}

func (c *cgroupV2Instance) has(controller string) bool {
	return slices.Contains(c.g.controllers, controller)
}

func (c *cgroupV2Instance) setMemory(mb int) error {
	if !c.has("memory") {
		return nil
	}
	limit, swap := "max", "max"
	if mb > 0 {
		// memory+swap equal to memory means no swap at all.
		limit, swap = strconv.FormatInt(int64(mb)<<20, 10), "0"
	}
	if err := writeFile(filepath.Join(c.dir, "memory.max"), limit); err != nil {
		return err
	}
	// memory.swap.max is absent when swap accounting is off; nothing to limit then.
	if err := writeFile(filepath.Join(c.dir, "memory.swap.max"), swap); err != nil && !errors.Is(err, os.ErrPermission) && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (c *cgroupV2Instance) setPids(max int) error {
	if !c.has("pids") {
		return nil
	}
	return writeFile(filepath.Join(c.dir, "pids.max"), strconv.Itoa(max))
}

// sharesToWeight maps v1 cpu.shares [2, 262144] onto v2 cpu.weight [1, 10000] (the
// conversion runc and crun use).
func sharesToWeight(shares int) int {
	shares = min(max(shares, 2), 262144)
	return 1 + ((shares-2)*9999)/262142
}

func (c *cgroupV2Instance) setCPUShares(shares int) error {
	if !c.has("cpu") || shares <= 0 {
		return nil
	}
	return writeFile(filepath.Join(c.dir, "cpu.weight"), strconv.Itoa(sharesToWeight(shares)))
}

func (c *cgroupV2Instance) intoFD() int {
	if c.fd < 0 {
		fd, err := syscall.Open(c.dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return -1
		}
		c.fd = fd
	}
	return c.fd
}

func (c *cgroupV2Instance) add(pid int) error {
	return writeFile(filepath.Join(c.dir, "cgroup.procs"), strconv.Itoa(pid))
}

func (c *cgroupV2Instance) procs() ([]int, error) {
	return readPids(filepath.Join(c.dir, "cgroup.procs"))
}

func (c *cgroupV2Instance) canFreeze() bool { return c.g.freeze }

func (c *cgroupV2Instance) setFrozen(ctx context.Context, v string) error {
	if !c.g.freeze {
		return errNoCgroups
	}
	if err := writeFile(filepath.Join(c.dir, "cgroup.freeze"), v); err != nil {
		return err
	}
	return pollUntil(ctx, func() (bool, error) {
		m, err := readKeyed(filepath.Join(c.dir, "cgroup.events"))
		return err == nil && strconv.FormatInt(m["frozen"], 10) == v, err
	})
}

func (c *cgroupV2Instance) freeze(ctx context.Context) error { return c.setFrozen(ctx, "1") }
func (c *cgroupV2Instance) thaw(ctx context.Context) error   { return c.setFrozen(ctx, "0") }

func (c *cgroupV2Instance) kill(ctx context.Context) error {
	// cgroup.kill (Linux 5.14) kills the whole tree atomically, fork bombs included.
	if err := writeFile(filepath.Join(c.dir, "cgroup.kill"), "1"); err == nil {
		return pollUntil(ctx, func() (bool, error) {
			pids, err := c.procs()
			return len(pids) == 0, err
		})
	}
	// v2 frozen tasks still die on SIGKILL, so freezing first needs no thaw to take effect.
	if c.g.freeze {
		return killAll(ctx, c.procs, c.freeze, c.thaw)
	}
	return killAll(ctx, c.procs, nil, nil)
}

func (c *cgroupV2Instance) oomKills() (int, bool, int) {
	if !c.has("memory") {
		return 0, false, 0
	}
	m, err := readKeyed(filepath.Join(c.dir, "memory.events"))
	if err != nil {
		return 0, false, 0
	}
	return int(m["oom_kill"]), true, 0
}

func (c *cgroupV2Instance) remove() error {
	if c.fd >= 0 {
		syscall.Close(c.fd)
		c.fd = -1
	}
	return rmdirRetry(c.dir)
}

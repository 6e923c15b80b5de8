package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupV1 keeps one root directory per controller hierarchy. The root is created at the
// top of each hierarchy (the cgroupfs convention Docker uses), not inside this process's
// own cgroup, so a crashed run never leaves directories inside somebody else's cgroup.
type cgroupV1 struct {
	roots map[string]string // controller -> <mount>/<name>
	memsw bool              // memory.memsw.* exists (swap accounting on)
}

func newCgroupV1(mounts map[string]string, name string) (*cgroupV1, error) {
	g := &cgroupV1{roots: map[string]string{}}
	var errs []error
	for _, c := range v1Controllers {
		m, ok := mounts[c]
		if !ok {
			continue
		}
		dir := filepath.Join(m, name)
		if err := mkdirOK(dir); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c, err))
			continue
		}
		g.roots[c] = dir
	}
	if len(g.roots) == 0 {
		return nil, fmt.Errorf("cgroup v1: %w", errors.Join(append(errs, errNoCgroups)...))
	}
	if m, ok := g.roots["memory"]; ok {
		_, err := os.Stat(filepath.Join(m, "memory.memsw.limit_in_bytes"))
		g.memsw = err == nil
	}
	return g, nil
}

func (g *cgroupV1) describe() string {
	var cs []string
	for _, c := range v1Controllers {
		if _, ok := g.roots[c]; ok {
			cs = append(cs, c)
		}
	}
	return "cgroup v1 (" + strings.Join(cs, ", ") + ")"
}

func (g *cgroupV1) create(name string) (instanceCgroup, error) {
	in := &cgroupV1Instance{dirs: map[string]string{}, memsw: g.memsw}
	for _, c := range v1Controllers {
		root, ok := g.roots[c]
		if !ok {
			continue
		}
		dir := filepath.Join(root, name)
		if err := mkdirOK(dir); err != nil {
			_ = in.remove()
			return nil, fmt.Errorf("cgroup v1 %s: %w", c, err)
		}
		in.dirs[c] = dir
	}
	return in, nil
}

func (g *cgroupV1) close() error {
	var errs []error
	for _, dir := range g.roots {
		if err := rmdirRetry(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type cgroupV1Instance struct {
	dirs  map[string]string // controller -> directory
	memsw bool
}

func (c *cgroupV1Instance) file(controller, name string) (string, bool) {
	d, ok := c.dirs[controller]
	return filepath.Join(d, name), ok
}

func (c *cgroupV1Instance) setMemory(mb int) error {
	limit, ok := c.file("memory", "memory.limit_in_bytes")
	if !ok {
		return nil
	}
	value := "-1"
	if mb > 0 {
		value = strconv.FormatInt(int64(mb)<<20, 10)
	}
	if !c.memsw {
		return writeFile(limit, value)
	}
	memsw, _ := c.file("memory", "memory.memsw.limit_in_bytes")
	// The kernel insists on limit <= memsw at every step: raise memsw first when growing,
	// lower the limit first when shrinking. Trying one order and then the other avoids
	// reading (and racing on) the current values.
	if err := writeFile(limit, value); err == nil {
		return writeFile(memsw, value)
	}
	if err := writeFile(memsw, value); err != nil {
		return err
	}
	return writeFile(limit, value)
}

func (c *cgroupV1Instance) setPids(max int) error {
	if f, ok := c.file("pids", "pids.max"); ok {
		return writeFile(f, strconv.Itoa(max))
	}
	return nil
}

func (c *cgroupV1Instance) setCPUShares(shares int) error {
	if f, ok := c.file("cpu", "cpu.shares"); ok && shares > 0 {
		return writeFile(f, strconv.Itoa(min(max(shares, 2), 262144)))
	}
	return nil
}

func (c *cgroupV1Instance) intoFD() int { return -1 }

func (c *cgroupV1Instance) add(pid int) error {
	for _, ctl := range v1Controllers {
		if f, ok := c.file(ctl, "cgroup.procs"); ok {
			if err := writeFile(f, strconv.Itoa(pid)); err != nil {
				return fmt.Errorf("cgroup v1 %s: %w", ctl, err)
			}
		}
	}
	return nil
}

func (c *cgroupV1Instance) procs() ([]int, error) {
	for _, ctl := range []string{"pids", "freezer", "memory", "cpu"} {
		if f, ok := c.file(ctl, "cgroup.procs"); ok {
			return readPids(f)
		}
	}
	return nil, errNoCgroups
}

func (c *cgroupV1Instance) canFreeze() bool { _, ok := c.dirs["freezer"]; return ok }

func (c *cgroupV1Instance) setFreezer(ctx context.Context, state string) error {
	f, ok := c.file("freezer", "freezer.state")
	if !ok {
		return errNoCgroups
	}
	if err := writeFile(f, state); err != nil {
		return err
	}
	// FREEZING is the transient state; rewriting FROZEN retries tasks that were busy.
	return pollUntil(ctx, func() (bool, error) {
		s, err := readTrim(f)
		if err == nil && s == "FREEZING" {
			err = writeFile(f, state)
		}
		return s == state, err
	})
}

func (c *cgroupV1Instance) freeze(ctx context.Context) error { return c.setFreezer(ctx, "FROZEN") }
func (c *cgroupV1Instance) thaw(ctx context.Context) error   { return c.setFreezer(ctx, "THAWED") }

func (c *cgroupV1Instance) kill(ctx context.Context) error {
	if c.canFreeze() {
		return killAll(ctx, c.procs, c.freeze, c.thaw)
	}
	return killAll(ctx, c.procs, nil, nil)
}

func (c *cgroupV1Instance) oomKills() (int, bool, int) {
	f, ok := c.file("memory", "memory.oom_control")
	if !ok {
		return 0, false, 0
	}
	m, err := readKeyed(f)
	if n, known := m["oom_kill"]; err == nil && known {
		return int(n), true, 0
	}
	fc, _ := c.file("memory", "memory.failcnt")
	s, _ := readTrim(fc)
	n, _ := strconv.Atoi(s)
	return 0, false, n
}

func (c *cgroupV1Instance) remove() error {
	var errs []error
	for _, d := range c.dirs {
		if err := rmdirRetry(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

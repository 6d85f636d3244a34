package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/fsutil"
	"github.com/rosterhq/roster/sdk/netutil"
	"github.com/rosterhq/roster/sdk/process"
	"github.com/rosterhq/roster/sdk/rolekit"
)

// How long Configure waits for apache's new generation to answer, and then
// for the workers of the old one to finish the requests they were serving.
// Past the second, Configure returns anyway: those workers take no new
// requests, they only finish their own.
const (
	reloadTimeout  = 30 * time.Second
	oldWorkersWait = 10 * time.Second
)

var _ sdk.Configurer = (*Role)(nil)

// Configure applies new config values to a running server: core calls it
// when a pool the role's config refers to changed (env = {DB =
// role.db.endpoints.postgres}). It renders httpd.conf again with the ports
// Provision chose; when the file is unchanged it does nothing. Otherwise it
// checks the new file with `apache2 -t`, puts it in place and reloads apache
// gracefully (SIGUSR1 to its parent, as `apache2 -k graceful`): the parent
// and its listener stay, requests in flight finish on the workers that
// took them, and new requests go to workers of the new configuration. It
// returns once a new worker has answered and the old ones are gone (or have
// had oldWorkersWait to finish their requests).
//
// Attributes only Provision applies (the site, the ports, the MPM's shape,
// packages) are refused with sdk.ErrFailedPrecondition naming them, and
// nothing changes: replacing the server applies them.
func (r *Role) Configure(ctx context.Context, req sdk.ConfigureRequest) error {
	cfg, err := decode(req.Config)
	if err != nil {
		return err
	}
	_, unlock, err := r.servers.Lock(req.Server)
	if err != nil {
		return err
	}
	defer unlock()
	log := sdk.Logger(ctx).Named("web")
	l := layoutOf(req.Server.WorkDir)
	st, err := rolekit.LoadState[state](l.State)
	if err != nil {
		return fmt.Errorf("web: %w", err)
	}
	if st == nil {
		return sdk.Errorf(sdk.ErrFailedPrecondition, "web: server %s is not provisioned", req.Server.Name)
	}
	if changed := changedFixed(st.Fixed, cfg.fixed()); len(changed) > 0 {
		return sdk.Errorf(sdk.ErrFailedPrecondition, "web: Configure cannot apply a new %s to server %s: only Provision does (replace the server); nothing was changed",
			strings.Join(changed, ", "), req.Server.Name)
	}
	sup, err := supervisor(ctx, l)
	if err != nil {
		return err
	}
	ap, err := sup.Find(apacheName)
	if err != nil || !ap.Alive() {
		return sdk.Errorf(sdk.ErrFailedPrecondition, "web: apache of server %s is not running (drained?)", req.Server.Name)
	}
	httpPort, err := netutil.PortOf(st.HTTP)
	if err != nil {
		return fmt.Errorf("web: %s: %w", l.State, err)
	}
	wwwData, err := rolekit.RunAs("www-data")
	if err != nil {
		return sdk.Errorf(sdk.ErrNotFound, "web: %v", err)
	}
	name := req.Server.Name
	if name == "" {
		name = st.Server
	}
	conf, err := apacheConfig(cfg, l, name, httpPort, st.HTTP, st.Memcached, userName(wwwData))
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(l.Conf); err == nil && bytes.Equal(old, conf) {
		log.Debug("configure: apache's configuration is unchanged")
		return nil
	}

	// As apachectl graceful does: a configuration apache would refuse must
	// not reach the running parent, which would exit on it.
	next := l.Conf + ".next"
	if err := os.WriteFile(next, conf, 0o644); err != nil {
		return fmt.Errorf("web: %w", err)
	}
	defer os.Remove(next)
	if out, err := process.Run(ctx, process.Command{Path: apacheBinary, Args: []string{"-t", "-f", next}}); err != nil {
		return sdk.Errorf(sdk.ErrInvalidConfig, "web: apache refuses the new configuration: %v %s", err, strings.TrimSpace(string(out)))
	}
	if err := fsutil.WriteFileAtomic(l.Conf, conf, 0o644); err != nil {
		return fmt.Errorf("web: %w", err)
	}
	log.Info("configure: reloading apache gracefully", "http", st.HTTP, "env", sortedKeys(cfg.Env))
	if err := reload(ctx, ap, st.HTTP, log.Warn); err != nil {
		if tail := process.Tail(l.ErrorLog, 1024); tail != "" {
			err = fmt.Errorf("%w; error.log: %s", err, tail)
		}
		return fmt.Errorf("web: %w", err)
	}
	log.Info("configured", "http", st.HTTP)
	return nil
}

// reload sends apache's parent SIGUSR1 (graceful restart) and waits until a
// worker of the new configuration generation answers mod_status, then until
// the workers that ran before have exited (each after the request it is
// serving), oldWorkersWait at most.
func reload(ctx context.Context, ap *process.Process, httpAddr string, warn func(string, ...any)) error {
	ctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	before, err := fetchApacheStatus(ctx, httpAddr)
	if err != nil {
		return err
	}
	members, err := ap.Members()
	if err != nil {
		return err
	}
	// By pid and start time: a new worker may get an old one's pid.
	old := map[int]string{}
	for _, pid := range members {
		if pid != ap.Pid {
			old[pid] = startTime(pid)
		}
	}
	if err := ap.Signal(syscall.SIGUSR1); err != nil {
		return err
	}
	tick := time.NewTicker(readyPollPeriod)
	defer tick.Stop()
	for {
		s, err := fetchApacheStatus(ctx, httpAddr)
		if err == nil && s.Generation > before.Generation {
			break
		}
		if !ap.Alive() {
			return errors.New("apache exited during its graceful reload")
		}
		select {
		case <-ctx.Done():
			return sdk.Errorf(sdk.ErrTimeout, "apache's graceful reload: no worker of the new configuration answered (generation %v, last error %v)", before.Generation, err)
		case <-tick.C:
		}
	}
	wait, cancelWait := context.WithTimeout(ctx, oldWorkersWait)
	defer cancelWait()
	for {
		now, err := ap.Members()
		if err != nil {
			return err
		}
		var left []int
		for _, pid := range now {
			if start, ok := old[pid]; ok && start == startTime(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return nil
		}
		select {
		case <-wait.Done():
			warn("configure: workers of the previous configuration still serving their requests", "pids", left)
			return nil
		case <-tick.C:
		}
	}
}

// startTime is a process's start time in clock ticks since boot (field 22
// of /proc/<pid>/stat), "" when it is gone.
func startTime(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

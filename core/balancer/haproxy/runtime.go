package haproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Admin-state bits of `show servers state` (srv_admin_state).
const (
	adminForcedMaint = 0x01
	adminForcedDrain = 0x08
)

// errNoServer is what a command on a server that is not there returns.
var errNoServer = errors.New("no such server")

// runtimeAPI speaks haproxy's runtime API over its admin socket, one
// connection per command: haproxy answers a non-interactive connection and
// closes it, which keeps concurrent callers from mixing their answers.
type runtimeAPI struct {
	socket string
}

// exec runs one command and returns haproxy's answer.
func (r runtimeAPI) exec(ctx context.Context, cmd string) (string, error) {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "unix", r.socket)
	if err != nil {
		return "", fmt.Errorf("haproxy admin socket %s: %w", r.socket, err)
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok || time.Until(deadline) > 30*time.Second {
		// A healthy haproxy answers in microseconds; the cap keeps a
		// wedged one from hanging the orchestrator's loop.
		deadline = time.Now().Add(30 * time.Second)
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return "", fmt.Errorf("haproxy admin socket %s: %s: %w", r.socket, verb(cmd), err)
	}
	out, err := io.ReadAll(conn)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("haproxy admin socket %s: %s: %w", r.socket, verb(cmd), err)
	}
	return string(out), nil
}

// do runs a command that answers nothing when it succeeds.
func (r runtimeAPI) do(ctx context.Context, cmd string) error {
	out, err := r.exec(ctx, cmd)
	if err != nil {
		return err
	}
	return answerErr(cmd, out)
}

// answerErr turns haproxy's answer to a command into an error; an empty
// answer is success.
func answerErr(cmd, out string) error {
	msg := strings.TrimSpace(out)
	switch {
	case msg == "":
		return nil
	case strings.HasPrefix(msg, "No such server"):
		return fmt.Errorf("haproxy: %s: %w", verb(cmd), errNoServer)
	default:
		return fmt.Errorf("haproxy: %s: %s", verb(cmd), oneLine(msg))
	}
}

// verb is a command without its arguments past the target, for errors.
func verb(cmd string) string {
	f := strings.Fields(cmd)
	for i, w := range f {
		if strings.Contains(w, "/") {
			return strings.Join(f[:i+1], " ")
		}
	}
	if len(f) > 3 {
		f = f[:3]
	}
	return strings.Join(f, " ")
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// serverState is one server of `show servers state`, with its sessions
// from `show stat`.
type serverState struct {
	Backend string
	Name    string
	Addr    string // ip
	Port    string
	Admin   int // srv_admin_state bits
	Op      int // srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping
	// Sessions is the open sessions plus the requests queued for it.
	Sessions int
}

// Endpoint is the server's ip:port.
func (s serverState) Endpoint() string { return net.JoinHostPort(s.Addr, s.Port) }

// ConfigAddr is the server's address the way a haproxy server line reads it.
func (s serverState) ConfigAddr() string {
	port, _ := strconv.Atoi(s.Port)
	ip := net.ParseIP(s.Addr)
	if ip == nil {
		return s.Endpoint()
	}
	return addr(ip, port)
}

// servers returns the servers of backend, by name.
func (r runtimeAPI) servers(ctx context.Context, backend string) (map[string]serverState, error) {
	out, err := r.exec(ctx, "show servers state "+backend)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || strings.TrimSpace(lines[0]) != "1" || !strings.HasPrefix(lines[1], "#") {
		return nil, fmt.Errorf("haproxy: show servers state %s: %s", backend, oneLine(out))
	}
	cols := map[string]int{}
	for i, c := range strings.Fields(strings.TrimPrefix(lines[1], "#")) {
		cols[c] = i
	}
	for _, c := range []string{"be_name", "srv_name", "srv_addr", "srv_port", "srv_admin_state", "srv_op_state"} {
		if _, ok := cols[c]; !ok {
			return nil, fmt.Errorf("haproxy: show servers state %s: no %s column in %q", backend, c, lines[1])
		}
	}
	res := map[string]serverState{}
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		if len(f) < len(cols) || strings.HasPrefix(l, "#") || f[cols["be_name"]] != backend {
			continue
		}
		admin, _ := strconv.Atoi(f[cols["srv_admin_state"]])
		op, _ := strconv.Atoi(f[cols["srv_op_state"]])
		s := serverState{
			Backend: backend,
			Name:    f[cols["srv_name"]],
			Addr:    f[cols["srv_addr"]],
			Port:    f[cols["srv_port"]],
			Admin:   admin,
			Op:      op,
		}
		res[s.Name] = s
	}
	return res, nil
}

// sessions returns the open and queued sessions of each server of backend.
func (r runtimeAPI) sessions(ctx context.Context, backend string) (map[string]int, error) {
	// Type 4 is servers, -1 all of them: only this backend's lines.
	out, err := r.exec(ctx, "show stat "+backend+" 4 -1")
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 1 || !strings.HasPrefix(lines[0], "# ") {
		return nil, fmt.Errorf("haproxy: show stat %s: %s", backend, oneLine(out))
	}
	cols := map[string]int{}
	for i, c := range strings.Split(strings.TrimPrefix(lines[0], "# "), ",") {
		cols[c] = i
	}
	for _, c := range []string{"pxname", "svname", "scur", "qcur"} {
		if _, ok := cols[c]; !ok {
			return nil, fmt.Errorf("haproxy: show stat %s: no %s column", backend, c)
		}
	}
	res := map[string]int{}
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		if len(f) < len(cols) || f[cols["pxname"]] != backend {
			continue
		}
		name := f[cols["svname"]]
		if name == "BACKEND" || name == "FRONTEND" {
			continue
		}
		scur, _ := strconv.Atoi(f[cols["scur"]])
		qcur, _ := strconv.Atoi(f[cols["qcur"]])
		res[name] = scur + qcur
	}
	return res, nil
}

// server returns one server's state, or ok false when it is not there.
func (r runtimeAPI) server(ctx context.Context, backend, name string) (serverState, bool, error) {
	all, err := r.servers(ctx, backend)
	if err != nil {
		return serverState{}, false, err
	}
	s, ok := all[name]
	return s, ok, nil
}

// ping checks that haproxy answers on the socket, and returns its pid.
func (r runtimeAPI) ping(ctx context.Context) (int, error) {
	out, err := r.exec(ctx, "show info")
	if err != nil {
		return 0, err
	}
	for l := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(l, "Pid: "); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("haproxy admin socket %s: show info answered %q", r.socket, oneLine(out))
}

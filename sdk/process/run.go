package process

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rosterhq/roster/sdk"
)

// Command is a one-off command for Run: a tool a role runs to completion
// (initdb, psql, a migration), where Spec is a daemon.
type Command struct {
	// Path is the executable; a bare name is looked up in PATH.
	Path string
	// Args are the arguments, without the program name.
	Args []string
	// Env is added to BaseEnv.
	Env []string
	// BaseEnv is the environment Env is added to: the plugin's own when
	// nil. Pass a filtered copy of os.Environ() to keep variables out that
	// would steer the tool elsewhere (libpq's PG*).
	BaseEnv []string
	// Dir is the working directory; the plugin's when empty.
	Dir string
	// User, as in Spec: runs the command as this user and its primary
	// group, with HOME, USER and LOGNAME to match. Needs root.
	User string
	// Log, when set, is a file the output is appended to, after a line
	// naming the command ("# psql -X -q …"): the record Teardown returns.
	// It is opened before the user switch, so it may belong to root.
	Log string
	// OnLine, when set, is called with each line of output as it comes,
	// trimmed, blank ones skipped. Lines end at \n or \r, so that a
	// progress line a tool rewrites in place (pg_basebackup -P) arrives
	// every time.
	OnLine func(line string)
}

// maxOutput is how much of a command's output Run keeps: the end.
const maxOutput = 1 << 20

// waitDelay bounds the wait for the output after the command exited (or was
// killed), should something it started hold the pipe open.
const waitDelay = 10 * time.Second

// Run runs c to completion and returns its output, stdout and stderr
// interleaved (the last MiB at most). The command runs in a process group
// of its own, and when ctx ends the whole group is SIGKILLed, so that a tool
// that forks leaves nothing behind; the error then wraps sdk.ErrTimeout. A
// command that fails returns an error quoting the end of its output, which
// usually says why.
func Run(ctx context.Context, c Command) ([]byte, error) {
	name := filepath.Base(c.Path)
	path, err := exec.LookPath(c.Path)
	if err != nil {
		return nil, sdk.Errorf(sdk.ErrNotFound, "%s: %v", name, err)
	}
	out := &tailBuffer{max: maxOutput}
	var w io.Writer = out
	if c.Log != "" {
		f, err := openLog(c.Log)
		if err != nil {
			return nil, fmt.Errorf("%s: log: %w", name, err)
		}
		defer f.Close()
		fmt.Fprintf(f, "# %s %s\n", name, strings.Join(c.Args, " "))
		w = io.MultiWriter(f, out)
	}
	var lines *lineWriter
	if c.OnLine != nil {
		lines = &lineWriter{fn: c.OnLine}
		w = io.MultiWriter(w, lines)
	}

	cmd := exec.CommandContext(ctx, path, c.Args...)
	cmd.Dir = c.Dir
	env := c.BaseEnv
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(append([]string(nil), env...), c.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if c.User != "" {
		cred, userEnv, err := credentialOf(c.User)
		if err != nil {
			return nil, sdk.Errorf(sdk.ErrNotFound, "%s: %v", name, err)
		}
		cmd.SysProcAttr.Credential = cred
		// Later entries win: exec keeps the last value of a variable.
		cmd.Env = append(cmd.Env, userEnv...)
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	// One writer for both: exec then copies them in one goroutine, in order.
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Run()
	if lines != nil {
		lines.flush()
	}
	if err != nil {
		if ctx.Err() != nil {
			return out.Bytes(), sdk.Errorf(sdk.ErrTimeout, "%s: %v", name, ctx.Err())
		}
		return out.Bytes(), fmt.Errorf("%s failed (%v): %s", name, err, tailOf(out.Bytes(), 1500))
	}
	return out.Bytes(), nil
}

// tailOf returns the last n bytes of b, trimmed.
func tailOf(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 2*t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// Bytes returns what was kept.
func (t *tailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.b) > t.max {
		return append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return append([]byte(nil), t.b...)
}

// lineWriter splits output into lines at \n or \r.
type lineWriter struct {
	fn  func(string)
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexAny(w.buf, "\r\n")
		if i < 0 {
			break
		}
		if line := strings.TrimSpace(string(w.buf[:i])); line != "" {
			w.fn(line)
		}
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	if line := strings.TrimSpace(string(w.buf)); line != "" {
		w.fn(line)
	}
	w.buf = nil
}

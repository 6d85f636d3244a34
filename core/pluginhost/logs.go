package pluginhost

import (
	"bytes"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// lineLogger turns a byte stream (a plugin's os.Stdout or os.Stderr, which
// arrive over gRPC in chunks of any size) into one log entry per line. A
// line longer than max is logged in pieces of max bytes, so that a plugin
// printing without newlines cannot make the host buffer without bound.
type lineLogger struct {
	mu    sync.Mutex
	log   hclog.Logger
	level hclog.Level
	max   int
	buf   []byte
}

func newLineLogger(log hclog.Logger, level hclog.Level, max int) *lineLogger {
	return &lineLogger{log: log, level: level, max: max}
}

func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			for len(w.buf) >= w.max {
				w.emit(w.buf[:w.max], true)
				w.buf = append(w.buf[:0], w.buf[w.max:]...)
			}
			break
		}
		w.buf = append(w.buf, p[:i]...)
		for len(w.buf) > w.max {
			w.emit(w.buf[:w.max], true)
			w.buf = append(w.buf[:0], w.buf[w.max:]...)
		}
		w.emit(w.buf, false)
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineLogger) emit(line []byte, partial bool) {
	line = bytes.TrimRight(line, "\r")
	if len(line) == 0 {
		return
	}
	if partial {
		w.log.Log(w.level, string(line), "partial", true)
		return
	}
	w.log.Log(w.level, string(line))
}

// moduleKeeper wraps the logger go-plugin forwards plugin log entries to.
// go-plugin passes a JSON entry's own fields on as key/value pairs, the
// plugin's "@module" among them, and a JSON host log would then show the
// plugin's module in place of plugin.<name>: the plugin's is kept as
// plugin_module instead.
type moduleKeeper struct{ hclog.Logger }

func keepModule(l hclog.Logger) hclog.Logger { return moduleKeeper{l} }

func renameModule(args []any) []any {
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && k == "@module" {
			out := append([]any{}, args...)
			out[i] = "plugin_module"
			return out
		}
	}
	return args
}

func (m moduleKeeper) Log(level hclog.Level, msg string, args ...any) {
	m.Logger.Log(level, msg, renameModule(args)...)
}
func (m moduleKeeper) Trace(msg string, args ...any) { m.Logger.Trace(msg, renameModule(args)...) }
func (m moduleKeeper) Debug(msg string, args ...any) { m.Logger.Debug(msg, renameModule(args)...) }
func (m moduleKeeper) Info(msg string, args ...any)  { m.Logger.Info(msg, renameModule(args)...) }
func (m moduleKeeper) Warn(msg string, args ...any)  { m.Logger.Warn(msg, renameModule(args)...) }
func (m moduleKeeper) Error(msg string, args ...any) { m.Logger.Error(msg, renameModule(args)...) }

func (m moduleKeeper) With(args ...any) hclog.Logger {
	return moduleKeeper{m.Logger.With(renameModule(args)...)}
}
func (m moduleKeeper) Named(name string) hclog.Logger { return moduleKeeper{m.Logger.Named(name)} }
func (m moduleKeeper) ResetNamed(name string) hclog.Logger {
	return moduleKeeper{m.Logger.ResetNamed(name)}
}

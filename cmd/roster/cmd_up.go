package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/mattn/go-isatty"

	"github.com/rosterhq/roster/core/orchestrator"
)

func init() {
	register(command{
		name:     "up",
		synopsis: "Run an orchestrator, its machines and plugins on this host, with a live view",
		run:      runUp,
	})
}

// upLogFile is where `roster up` logs, in data_dir, so that the live view
// keeps the terminal.
const upLogFile = "roster-up.log"

func runUp(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	apiAddr := fs.String("api", "", "listen address of the HTTP API (default: the config's api.address)")
	logLevel := fs.String("log-level", "info", "trace, debug, info, warn or error (the log goes to <data_dir>/"+upLogFile+")")
	plain := fs.Bool("plain", false, "print plain lines even on a terminal")
	setUsage(fs, stderr,
		"Usage: roster up [options] [roster.hcl]",
		"",
		"Runs the orchestrator of roster.hcl (default ./roster.hcl) on this host with the",
		"embedded queue, the local provider (machines are `roster agent` processes) and",
		"the built-in plugins, and shows pools, servers, spares and events live.",
		"Ctrl-C drains every server, halts it, and stops every process it started; a",
		"second Ctrl-C stops them at once. SIGHUP reloads the roles and spares, as",
		"`roster orchestrator` does.",
	)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return 1
	}
	cfgPath := "roster.hcl"
	if fs.NArg() == 1 {
		cfgPath = fs.Arg(0)
	}
	logOut := &swapWriter{w: stderr}
	logger := hclog.New(&hclog.LoggerOptions{Name: "roster", Level: hclog.LevelFromString(*logLevel), Output: logOut})

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	openCtx, cancelOpen := context.WithCancel(context.Background())
	go func() {
		select {
		case <-sigs:
			cancelOpen()
		case <-openCtx.Done():
		}
	}()
	st, err := openStack(openCtx, stackOptions{ConfigPath: cfgPath, APIAddress: *apiAddr, ForceLocal: true, Logger: logger, Diags: stderr})
	cancelOpen()
	if err != nil {
		fmt.Fprintf(stderr, "roster up: %v\n", err)
		return 1
	}
	defer st.Close()
	logPath := filepath.Join(st.cfg.DataDir, upLogFile)
	if f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		logOut.swap(f)
		defer f.Close()
	}
	banner := fmt.Sprintf("API on http://%s, log in %s; Ctrl-C drains every server and stops.", st.ln.Addr(), logPath)
	fmt.Fprintf(stdout, "roster up: cluster %s, %s\n", st.cfg.Cluster, banner)

	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	st.reloadOnHangup(runCtx, cfgPath, logOut)
	runErr := make(chan error, 1)
	go func() { runErr <- st.Run(runCtx) }()

	tty := !*plain && isTerminal(stdout)
	viewCtx, stopView := context.WithCancel(context.Background())
	viewDone := make(chan struct{})
	go func() {
		defer close(viewDone)
		liveView(viewCtx, stdout, st.o, tty, banner)
	}()

	code := 0
	select {
	case err := <-runErr:
		stopView()
		<-viewDone
		fmt.Fprintf(stderr, "roster up: orchestrator stopped: %v\n", err)
		code = 1
	case <-sigs:
		// Drain: every server halts, every machine is terminated.
		drainFor := longestDrain(st.current.Load()) + 30*time.Second
		dctx, cancel := context.WithTimeout(context.Background(), drainFor)
		go func() {
			select {
			case <-sigs:
				logger.Warn("second signal: stopping everything now")
				cancel()
			case <-dctx.Done():
			}
		}()
		if err := st.o.Shutdown(dctx); err != nil {
			logger.Warn("shutdown", "error", err)
		}
		cancel()
		stopView()
		<-viewDone
		cancelRun()
		<-runErr
	}
	// Whatever is left (a machine that would not halt in time) goes now.
	tctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	n, err := st.terminateAll(tctx)
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "roster up: terminating machines: %v\n", err)
		code = 1
	}
	if n > 0 {
		fmt.Fprintf(stdout, "roster up: terminated %d machines that did not halt in time\n", n)
	}
	// Every server is gone: the managed haproxy goes too (roster
	// orchestrator leaves it running instead, for its next start).
	if err := stopBalancers(context.Background(), st.bals, logger); err != nil {
		fmt.Fprintf(stderr, "roster up: %v\n", err)
		code = 1
	}
	fmt.Fprintln(stdout, "roster up: stopped")
	return code
}

// liveView shows the orchestrator's status until ctx is done: redrawn in
// place on a terminal, as plain event lines and a periodic summary
// otherwise.
func liveView(ctx context.Context, w io.Writer, o *orchestrator.Orchestrator, tty bool, footer string) {
	select {
	case <-o.Ready():
	case <-ctx.Done():
		return
	}
	var lastSeq uint64
	lastSummary := time.Time{}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		st := o.Status()
		now := time.Now()
		if tty {
			var b strings.Builder
			b.WriteString("\x1b[H\x1b[2J")
			renderStatus(&b, st, now, 12)
			b.WriteString("\n" + footer + "\n")
			_, _ = io.WriteString(w, b.String())
		} else {
			for _, e := range st.Events {
				if e.Seq > lastSeq {
					fmt.Fprintf(w, "%s  %s\n", e.Time.Local().Format("15:04:05"), e.Message)
					lastSeq = e.Seq
				}
			}
			if now.Sub(lastSummary) >= 10*time.Second {
				lastSummary = now
				fmt.Fprintf(w, "%s  %s\n", now.Format("15:04:05"), summaryLine(st))
			}
		}
		select {
		case <-ctx.Done():
			if !tty {
				fmt.Fprintf(w, "%s  %s\n", time.Now().Format("15:04:05"), summaryLine(o.Status()))
			}
			return
		case <-tick.C:
		case <-o.Changed():
			// Coalesce bursts of changes.
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// summaryLine is one line of the pools: "web 2/2 ready, db 1/1 ready; spares 1/1".
func summaryLine(st orchestrator.Status) string {
	var parts []string
	for _, r := range st.Roles {
		p := fmt.Sprintf("%s %d/%d ready", r.Name, r.Ready, r.Desired)
		if n := r.Current - r.Ready; n > 0 {
			p += fmt.Sprintf(" (+%d provisioning)", n)
		}
		parts = append(parts, p)
	}
	return fmt.Sprintf("%s; spares %d/%d (%d launching)", strings.Join(parts, ", "), st.Spares.Idle, st.Spares.Target, st.Spares.Launching)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// swapWriter lets the logger move from stderr to a file once data_dir is
// known.
type swapWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *swapWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *swapWriter) swap(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w = w
}

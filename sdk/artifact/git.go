package artifact

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/rosterhq/roster/sdk"
)

// fetchGit checks out remote at ref into dir, without .git. It first asks
// for just that ref, shallowly (branches, tags, and commits the server
// lets one fetch by id); when the server refuses, it fetches everything
// and resolves ref locally.
func fetchGit(ctx context.Context, remote, ref, dir string) (fetchResult, error) {
	if _, err := exec.LookPath("git"); err != nil {
		return fetchResult{}, sdk.Errorf(sdk.ErrNotFound, "git sources need the git command: %v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fetchResult{}, err
	}
	g := gitRunner{ctx: ctx, dir: dir}
	if _, err := g.run("init", "-q"); err != nil {
		return fetchResult{}, err
	}
	want := ref
	if want == "" {
		want = "HEAD"
	}
	if _, err := g.run("fetch", "-q", "--depth", "1", "--no-tags", "--", remote, want); err == nil {
		if _, err := g.run("checkout", "-q", "--detach", "FETCH_HEAD"); err != nil {
			return fetchResult{}, err
		}
	} else {
		if ref == "" {
			return fetchResult{}, err
		}
		if _, err2 := g.run("fetch", "-q", "--tags", "--", remote, "+refs/heads/*:refs/remotes/origin/*"); err2 != nil {
			return fetchResult{}, err2
		}
		rev := ""
		for _, cand := range []string{ref, "origin/" + ref} {
			if out, err := g.run("rev-parse", "-q", "--verify", cand+"^{commit}"); err == nil {
				rev = strings.TrimSpace(out)
				break
			}
		}
		if rev == "" {
			return fetchResult{}, sdk.Errorf(sdk.ErrNotFound, "no ref %q in %s", ref, remote)
		}
		if _, err := g.run("checkout", "-q", "--detach", rev); err != nil {
			return fetchResult{}, err
		}
	}
	out, err := g.run("rev-parse", "HEAD")
	if err != nil {
		return fetchResult{}, err
	}
	if err := os.RemoveAll(filepath.Join(dir, ".git")); err != nil {
		return fetchResult{}, err
	}
	return fetchResult{dir: true, revision: strings.TrimSpace(out)}, nil
}

type gitRunner struct {
	ctx context.Context
	dir string
}

func (g gitRunner) run(args ...string) (string, error) {
	args = append([]string{"-c", "advice.detachedHead=false"}, args...)
	cmd := exec.CommandContext(g.ctx, "git", args...)
	cmd.Dir = g.dir
	// Never wait for a password on a terminal that nobody watches.
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GCM_INTERACTIVE=never")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		kind := sdk.ErrUnavailable
		if strings.Contains(msg, "couldn't find remote ref") || strings.Contains(msg, "does not appear to be a git repository") ||
			strings.Contains(msg, "not found") || strings.Contains(msg, "not our ref") {
			kind = sdk.ErrNotFound
		}
		return "", sdk.Errorf(kind, "git %s: %s", args[2], redactAll(msg))
	}
	return stdout.String(), nil
}

// redactAll hides passwords in URLs git quotes in its messages.
func redactAll(msg string) string {
	fields := strings.Fields(msg)
	for i, f := range fields {
		if strings.Contains(f, "://") {
			fields[i] = Redact(strings.Trim(f, "'\""))
		}
	}
	return strings.Join(fields, " ")
}

// Package packages makes sure the Debian packages a role needs are
// installed. It asks dpkg-query what is installed and, when allowed, runs
// apt-get install for what is missing, forwarding apt's output line by line
// so that a role can pass it on as Provision progress. When installing is
// not allowed, the error names every missing package and wraps
// sdk.ErrNotFound.
package packages

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/rosterhq/roster/sdk"
)

// Installer runs dpkg-query and apt-get. The zero value uses the commands
// from PATH; tests point the fields at fakes.
type Installer struct {
	// DpkgQuery is the dpkg-query command; "dpkg-query" when empty.
	DpkgQuery string
	// AptGet is the apt-get command; "apt-get" when empty.
	AptGet string
}

// LineFunc receives one line of apt-get's output.
type LineFunc func(line string)

// name is a Debian package name, optionally with :arch and =version; it
// also keeps option-like strings away from apt-get.
var name = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?(=[A-Za-z0-9.+~:-]+)?$`)

// Ensure makes sure the named packages are installed, using the zero
// Installer. See Installer.Ensure.
func Ensure(ctx context.Context, names []string, installMissing bool, progress LineFunc) error {
	return Installer{}.Ensure(ctx, names, installMissing, progress)
}

// Missing returns the named packages that are not installed, using the zero
// Installer.
func Missing(ctx context.Context, names []string) ([]string, error) {
	return Installer{}.Missing(ctx, names)
}

// Ensure makes sure the named packages are installed. With installMissing it
// installs the missing ones with apt-get (running apt-get update once when
// apt cannot find a package in stale lists) and sends apt's output to
// progress; without, it returns an error wrapping sdk.ErrNotFound that names
// every missing package. Installing needs root.
func (in Installer) Ensure(ctx context.Context, names []string, installMissing bool, progress LineFunc) error {
	missing, err := in.Missing(ctx, names)
	if err != nil || len(missing) == 0 {
		return err
	}
	if !installMissing {
		return sdk.Errorf(sdk.ErrNotFound, "Debian packages not installed: %s (set install_missing = true, or apt-get install -y %s)",
			strings.Join(missing, ", "), strings.Join(missing, " "))
	}
	if progress == nil {
		progress = func(string) {}
	}
	progress("installing " + strings.Join(missing, " "))
	out, err := in.aptGet(ctx, progress, append([]string{"install", "-y", "-q", "--no-install-recommends"}, missing...)...)
	if err != nil && strings.Contains(out, "Unable to locate package") {
		progress("package lists are stale: apt-get update")
		if _, err := in.aptGet(ctx, progress, "update", "-q"); err != nil {
			return fmt.Errorf("packages: apt-get update: %w", err)
		}
		_, err = in.aptGet(ctx, progress, append([]string{"install", "-y", "-q", "--no-install-recommends"}, missing...)...)
	}
	if err != nil {
		return sdk.Errorf(sdk.ErrUnavailable, "installing Debian packages %s: %v", strings.Join(missing, ", "), err)
	}
	still, err := in.Missing(ctx, missing)
	if err != nil {
		return err
	}
	if len(still) > 0 {
		return sdk.Errorf(sdk.ErrNotFound, "Debian packages still not installed after apt-get install: %s", strings.Join(still, ", "))
	}
	return nil
}

// Missing returns, sorted, the named packages that dpkg does not report as
// installed ("install ok installed"). A version or architecture suffix
// (pkg=1.2, pkg:amd64) is checked by name only.
func (in Installer) Missing(ctx context.Context, names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	plain := make(map[string]string, len(names)) // bare name -> as asked
	var args []string
	for _, n := range names {
		if !name.MatchString(n) {
			return nil, sdk.Errorf(sdk.ErrInvalidConfig, "%q is not a Debian package name", n)
		}
		bare := n
		if i := strings.IndexAny(bare, ":="); i >= 0 {
			bare = bare[:i]
		}
		if _, dup := plain[bare]; !dup {
			plain[bare] = n
			args = append(args, bare)
		}
	}
	cmd := exec.CommandContext(ctx, or(in.DpkgQuery, "dpkg-query"), append([]string{"-W", "-f=${Package}\t${Status}\n", "--"}, args...)...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	// dpkg-query exits 1 when some package is unknown; that is an answer.
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		return nil, fmt.Errorf("packages: dpkg-query: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	installed := make(map[string]bool)
	for _, line := range strings.Split(stdout.String(), "\n") {
		pkg, status, ok := strings.Cut(line, "\t")
		if !ok {
			continue
		}
		if i := strings.IndexByte(pkg, ':'); i >= 0 { // multiarch: libfoo:amd64
			pkg = pkg[:i]
		}
		if strings.HasSuffix(status, " ok installed") {
			installed[pkg] = true
		}
	}
	var missing []string
	for bare, asked := range plain {
		if !installed[bare] {
			missing = append(missing, asked)
		}
	}
	sort.Strings(missing)
	return missing, nil
}

// aptGet runs apt-get non-interactively, sends its output to progress line
// by line, and returns the output too (for deciding on a retry).
func (in Installer) aptGet(ctx context.Context, progress LineFunc, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, or(in.AptGet, "apt-get"), args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C", "NEEDRESTART_MODE=l")
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var all strings.Builder
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 0, 4096), 1<<20)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			all.WriteString(line + "\n")
			if line != "" {
				progress(line)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	err := cmd.Run()
	pw.Close()
	wg.Wait()
	if err != nil {
		return all.String(), fmt.Errorf("apt-get %s: %w: %s", args[0], err, lastLine(all.String()))
	}
	return all.String(), nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

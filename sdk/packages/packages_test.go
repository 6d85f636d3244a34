package packages

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rosterhq/roster/sdk"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestMissingWithRealDpkg(t *testing.T) {
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Skip("not a Debian system")
	}
	missing, err := Missing(ctx(t), []string{"dpkg", "roster-no-such-package", "bash", "dpkg", "roster-also-missing=1.0"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(missing, ",") != "roster-also-missing=1.0,roster-no-such-package" {
		t.Fatalf("Missing = %v", missing)
	}
	if err := Ensure(ctx(t), []string{"dpkg", "bash"}, false, nil); err != nil {
		t.Fatalf("Ensure of installed packages: %v", err)
	}
	err = Ensure(ctx(t), []string{"dpkg", "roster-no-such-package"}, false, nil)
	if !errors.Is(err, sdk.ErrNotFound) || !strings.Contains(err.Error(), "roster-no-such-package") || strings.Contains(err.Error(), "dpkg,") {
		t.Fatalf("Ensure without install = %v, want ErrNotFound naming the missing package only", err)
	}
}

func TestRefusesBadNames(t *testing.T) {
	for _, n := range []string{"-o=Dpkg::Options", "Apache2", "a", "pkg;rm", "pkg name"} {
		if _, err := (Installer{DpkgQuery: "false"}).Missing(ctx(t), []string{n}); !errors.Is(err, sdk.ErrInvalidConfig) {
			t.Errorf("Missing(%q) = %v, want ErrInvalidConfig", n, err)
		}
	}
	if m, err := Missing(ctx(t), nil); err != nil || m != nil {
		t.Errorf("Missing(nil) = %v, %v", m, err)
	}
}

// fakeApt writes a dpkg-query and an apt-get that share a list of installed
// packages in dir/installed; apt-get "knows" only the packages listed in
// dir/available until "apt-get update" adds dir/after-update.
func fakeApt(t *testing.T) (Installer, string) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("installed", "bash\n")
	write("available", "memcached\n")
	write("after-update", "apache2\n")
	dq := write("dpkg-query", `#!/bin/sh
shift 3 # -W -f=... --
rc=0
for p in "$@"; do
  if grep -qx "$p" `+dir+`/installed; then printf '%s\tinstall ok installed\n' "$p"
  else echo "dpkg-query: no packages found matching $p" >&2; rc=1; fi
done
exit $rc
`)
	ag := write("apt-get", `#!/bin/sh
echo "$@" >> `+dir+`/calls
if [ "$1" = update ]; then cat `+dir+`/after-update >> `+dir+`/available; echo "Reading package lists..."; exit 0; fi
shift 4 # install -y -q --no-install-recommends
for p in "$@"; do
  if ! grep -qx "$p" `+dir+`/available; then echo "E: Unable to locate package $p"; exit 100; fi
done
for p in "$@"; do echo "Setting up $p (1.0) ..."; echo "$p" >> `+dir+`/installed; done
`)
	return Installer{DpkgQuery: dq, AptGet: ag}, dir
}

func TestEnsureInstallsAndForwardsProgress(t *testing.T) {
	in, dir := fakeApt(t)
	var lines []string
	if err := in.Ensure(ctx(t), []string{"bash", "memcached"}, true, func(l string) { lines = append(lines, l) }); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(lines, "\n")
	if !strings.Contains(got, "installing memcached") || !strings.Contains(got, "Setting up memcached (1.0) ...") {
		t.Fatalf("progress lines = %q", got)
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
	if strings.TrimSpace(string(calls)) != "install -y -q --no-install-recommends memcached" {
		t.Fatalf("apt-get calls = %q, want only the missing package", calls)
	}
}

func TestEnsureUpdatesStaleListsOnce(t *testing.T) {
	in, dir := fakeApt(t)
	if err := in.Ensure(ctx(t), []string{"apache2", "memcached"}, true, nil); err != nil {
		t.Fatal(err)
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
	want := "install -y -q --no-install-recommends apache2 memcached\nupdate -q\ninstall -y -q --no-install-recommends apache2 memcached"
	if strings.TrimSpace(string(calls)) != want {
		t.Fatalf("apt-get calls = %q, want %q", calls, want)
	}
	missing, _ := in.Missing(ctx(t), []string{"apache2", "memcached"})
	if len(missing) != 0 {
		t.Fatalf("still missing %v", missing)
	}
}

func TestEnsureReportsInstallFailure(t *testing.T) {
	in, _ := fakeApt(t)
	err := in.Ensure(ctx(t), []string{"nonexistent-pkg"}, true, nil)
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "nonexistent-pkg") || !strings.Contains(err.Error(), "Unable to locate") {
		t.Fatalf("Ensure = %v, want an install failure naming the package and apt's reason", err)
	}
}

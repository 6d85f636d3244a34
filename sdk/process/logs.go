package process

import (
	"os"
	"path"
	"path/filepath"
	"sort"

	"github.com/rosterhq/roster/sdk"
)

// Logs returns the daemon's stdout and stderr log files, named
// <prefix>/<file name>, for a TeardownResponse.
func (p *Process) Logs(prefix string) []sdk.LogFile {
	files := []sdk.LogFile{{Name: path.Join(prefix, filepath.Base(p.Stdout)), Path: p.Stdout}}
	if p.Stderr != p.Stdout {
		files = append(files, sdk.LogFile{Name: path.Join(prefix, filepath.Base(p.Stderr)), Path: p.Stderr})
	}
	return ExistingLogs(files...)
}

// ExistingLogs keeps the log files that exist and are regular files, so that
// a Teardown after a partial Provision lists only what was written. It
// drops duplicates (by path).
func ExistingLogs(files ...sdk.LogFile) []sdk.LogFile {
	seen := make(map[string]bool, len(files))
	var out []sdk.LogFile
	for _, f := range files {
		if f.Path == "" || seen[f.Path] {
			continue
		}
		fi, err := os.Stat(f.Path)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		seen[f.Path] = true
		out = append(out, f)
	}
	return out
}

// LogsIn lists the files matching pattern (a filepath.Match pattern such as
// "*.log") directly in dir, named <prefix>/<file name>, sorted.
func LogsIn(dir, pattern, prefix string) []sdk.LogFile {
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		return nil
	}
	sort.Strings(m)
	files := make([]sdk.LogFile, 0, len(m))
	for _, p := range m {
		files = append(files, sdk.LogFile{Name: path.Join(prefix, filepath.Base(p)), Path: p})
	}
	return ExistingLogs(files...)
}

package config

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/bad")

// warningOnly are the bad cases whose mistakes are warnings: the files load.
var warningOnly = map[string]bool{
	"roster_glob_nothing": true,
}

// TestBadCorpus loads every file and directory of testdata/bad the way
// `roster validate` does and compares the diagnostics, with their ranges and
// hcl's own text rendering, to <case>.golden.
func TestBadCorpus(t *testing.T) {
	entries, err := os.ReadDir("testdata/bad")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() && !strings.HasSuffix(name, ".hcl") {
			continue
		}
		n++
		caseName := strings.TrimSuffix(name, ".hcl")
		t.Run(caseName, func(t *testing.T) {
			path := filepath.Join("testdata/bad", name)
			l := NewLoader()
			_, _, diags := l.Validate(context.Background(), []string{path}, testSchemas().schemasFunc())
			if len(diags) == 0 {
				t.Fatal("no diagnostics")
			}
			if !warningOnly[caseName] && !diags.HasErrors() {
				t.Error("no error")
			}
			for _, d := range diags {
				if d.Subject == nil || d.Subject.Filename == "" || d.Subject.Start.Line < 1 || d.Subject.Start.Column < 1 {
					t.Errorf("diagnostic without a place: %s", d.Error())
				}
			}
			got := renderGolden(t, l, diags)
			golden := filepath.Join("testdata/bad", caseName+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestBadCorpus -update)", err)
			}
			if got != string(want) {
				t.Errorf("diagnostics differ from %s (go test -run TestBadCorpus -update rewrites it):\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
	if n < 20 {
		t.Errorf("the bad corpus has %d cases, want at least 20", n)
	}
}

// renderGolden writes each diagnostic's severity, exact range and summary,
// then hcl's text output (no colour, no wrapping) with source snippets.
func renderGolden(t *testing.T, l *Loader, diags hcl.Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		sev := "error"
		if d.Severity == hcl.DiagWarning {
			sev = "warning"
		}
		r := d.Subject
		fmt.Fprintf(&b, "%s %s:%d,%d-%d,%d: %s\n", sev, r.Filename, r.Start.Line, r.Start.Column, r.End.Line, r.End.Column, d.Summary)
	}
	b.WriteString("\n")
	b.WriteString(diagText(t, l, diags))
	return b.String()
}

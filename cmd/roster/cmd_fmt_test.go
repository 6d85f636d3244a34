package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const unformatted = "role \"web\" {\nplugin=\"static\"\n  count {\n    min = 1\n    max   = 3\n  }\n}\n"
const formatted = "role \"web\" {\n  plugin = \"static\"\n  count {\n    min = 1\n    max = 3\n  }\n}\n"

func TestFmt(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "web.hcl")
	good := filepath.Join(dir, "db.hcl")
	nested := filepath.Join(dir, "sub", "api.hcl")
	other := filepath.Join(dir, "notes.txt")
	for p, src := range map[string]string{bad: unformatted, good: formatted, nested: unformatted, other: "x=1"} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	// -check lists and exits 1, writing nothing.
	code, out, errs := runCmd("fmt", "-check", dir)
	if code != 1 || out != bad+"\n" || errs != "" {
		t.Fatalf("-check: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	// -diff shows the change and writes nothing.
	code, out, _ = runCmd("fmt", "-diff", bad)
	if code != 0 || !strings.Contains(out, "-plugin=\"static\"\n+  plugin = \"static\"\n") || read(bad) != unformatted {
		t.Fatalf("-diff: exit %d\n%s", code, out)
	}
	// Plain fmt rewrites in place, keeps the mode, lists what changed.
	code, out, _ = runCmd("fmt", dir)
	if code != 0 || out != bad+"\n" {
		t.Fatalf("fmt: exit %d, stdout %q", code, out)
	}
	if read(bad) != formatted || read(nested) != unformatted || read(other) != "x=1" {
		t.Error("fmt wrote the wrong files")
	}
	if fi, _ := os.Stat(bad); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	// -recursive reaches subdirectories.
	code, out, _ = runCmd("fmt", "-check", "-recursive", dir)
	if code != 1 || out != nested+"\n" {
		t.Fatalf("-check -recursive: exit %d, stdout %q", code, out)
	}
	if code, _, _ = runCmd("fmt", "-recursive", dir); code != 0 || read(nested) != formatted {
		t.Fatal("-recursive did not format the subdirectory")
	}
	if code, out, _ = runCmd("fmt", "-check", "-recursive", dir); code != 0 || out != "" {
		t.Fatalf("formatted tree: exit %d, stdout %q", code, out)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func TestFmtSyntaxError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "broken.hcl")
	src := "role \"web\" {\n  plugin =  = \"static\"\n"
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd("fmt", p)
	if code != 1 || out != "" || !strings.Contains(errs, "on "+p+" line 2") {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, out, errs)
	}
	if b, _ := os.ReadFile(p); string(b) != src {
		t.Error("a file with syntax errors was rewritten")
	}
}

func TestFmtStdin(t *testing.T) {
	old := stdinForFmt
	stdinForFmt = strings.NewReader(unformatted)
	t.Cleanup(func() { stdinForFmt = old })
	code, out, _ := runCmd("fmt", "-")
	if code != 0 || out != formatted {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
}

func TestFmtExamplesFormatted(t *testing.T) {
	code, out, errs := runCmd("fmt", "-check", "-recursive", "../../examples/basic")
	if code != 0 {
		t.Fatalf("examples not formatted: %s%s", out, errs)
	}
}

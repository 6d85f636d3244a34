package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rosterhq/roster/core/config"
)

// inProcessSchemas answers the built-ins' own schemas without launching
// them: a test binary cannot serve as the roster binary that the plugin
// host re-executes.
func inProcessSchemas(t *testing.T) {
	t.Helper()
	m := config.SchemaMap{}
	for name, newRole := range builtinRoles {
		s, err := newRole().ConfigSchema(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		m[name] = s
	}
	old := validateSchemas
	validateSchemas = func(*config.Orchestrator) (config.PluginSchemas, error) { return m, nil }
	t.Cleanup(func() { validateSchemas = old })
}

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestValidateExample(t *testing.T) {
	inProcessSchemas(t)
	code, out, errs := runCmd("validate", "../../examples/basic")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if !strings.Contains(out, "valid: 2 files, 1 role") {
		t.Errorf("stdout: %s", out)
	}
	// The same files named one by one.
	code, _, errs = runCmd("validate", "../../examples/basic/roster.hcl", "../../examples/basic/roles/web.hcl")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
}

func TestValidateDefaultsToCurrentDirectory(t *testing.T) {
	inProcessSchemas(t)
	abs, err := filepath.Abs("../../examples/basic")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(abs)
	code, out, errs := runCmd("validate")
	if code != 0 || !strings.Contains(out, "1 role") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
}

func TestValidateReportsWithSnippets(t *testing.T) {
	inProcessSchemas(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "web.hcl")
	src := "role \"web\" {\n  plugin = \"static\"\n  count {\n    min = 3\n    max = 1\n  }\n  config {\n    port = \"eighty\"\n  }\n}\n"
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd("validate", p)
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	for _, want := range []string{
		"Error: Invalid count",
		"on " + p + " line 5, in role \"web\":",
		"   5:     max = 1",
		"Error: Incorrect attribute value type",
		"   8:     port = \"eighty\"",
		"roster validate: 2 errors, 0 warnings",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if strings.Contains(errs, "\x1b[") {
		t.Error("colour written to a buffer")
	}
}

func TestValidateJSON(t *testing.T) {
	inProcessSchemas(t)
	code, out, _ := runCmd("validate", "-json", "../../core/config/testdata/bad/roster_glob_nothing.hcl", "../../core/config/testdata/bad/count_min_gt_max.hcl")
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	var res struct {
		Valid        bool `json:"valid"`
		ErrorCount   int  `json:"error_count"`
		WarningCount int  `json:"warning_count"`
		Diagnostics  []struct {
			Severity, Summary, Detail string
			Range                     *struct {
				Filename   string
				Start, End struct{ Line, Column, Byte int }
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if res.Valid || res.ErrorCount != 1 || res.WarningCount != 2 || len(res.Diagnostics) != 3 {
		t.Fatalf("result: %+v", res)
	}
	var found bool
	for _, d := range res.Diagnostics {
		if d.Severity == "error" {
			found = true
			r := d.Range
			if d.Summary != "Invalid count" || r == nil || !strings.HasSuffix(r.Filename, "count_min_gt_max.hcl") ||
				r.Start.Line != 5 || r.Start.Column != 11 || r.End.Column != 12 || r.Start.Byte == 0 {
				t.Errorf("error: %+v %+v", d, r)
			}
		}
	}
	if !found {
		t.Error("no error in the JSON")
	}

	// Valid, with JSON: exit 0 and an empty list.
	code, out, _ = runCmd("validate", "-json", "../../examples/basic")
	if code != 0 || !strings.Contains(out, `"valid": true`) || !strings.Contains(out, `"diagnostics": []`) {
		t.Fatalf("exit %d: %s", code, out)
	}
}

func TestValidateBadCorpusFails(t *testing.T) {
	inProcessSchemas(t)
	entries, err := os.ReadDir("../../core/config/testdata/bad")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if filepath.Ext(e.Name()) == ".golden" || e.Name() == "roster_glob_nothing.hcl" {
			continue
		}
		p := filepath.Join("../../core/config/testdata/bad", e.Name())
		if code, _, errs := runCmd("validate", p); code != 1 || !strings.Contains(errs, "Error: ") {
			t.Errorf("%s: exit %d\n%s", p, code, errs)
		}
	}
}

func TestValidateMissingPath(t *testing.T) {
	inProcessSchemas(t)
	code, _, errs := runCmd("validate", filepath.Join(t.TempDir(), "nope.hcl"))
	if code != 1 || !strings.Contains(errs, "Cannot read path") {
		t.Fatalf("exit %d: %s", code, errs)
	}
}

// TestEveryExampleValidatesAndIsFormatted keeps every example an operator may
// copy valid against the built-in plugins' schemas and formatted as roster
// fmt writes it.
func TestEveryExampleValidatesAndIsFormatted(t *testing.T) {
	inProcessSchemas(t)
	for _, ex := range []string{"basic", "lamp", "java", "aws"} {
		dir := "../../examples/" + ex
		if code, out, errs := runCmd("validate", dir); code != 0 {
			t.Errorf("validate %s: exit %d\nstdout: %s\nstderr: %s", dir, code, out, errs)
		}
		if code, out, errs := runCmd("fmt", "-check", "-recursive", dir); code != 0 {
			t.Errorf("fmt -check %s: exit %d\nstdout: %s\nstderr: %s", dir, code, out, errs)
		}
	}
}

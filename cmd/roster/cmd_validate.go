package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/mattn/go-isatty"

	"github.com/rosterhq/roster/core/config"
)

func init() {
	register(command{
		name:     "validate",
		synopsis: "Check roster.hcl and role files, every mistake with its file and line",
		run:      runValidate,
	})
}

// validateSchemas answers plugin schemas for validate; tests replace it
// with the built-ins' schemas asked in process.
var validateSchemas config.SchemasFunc = pluginSchemasFor

func runValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the result as JSON on stdout")
	noColor := fs.Bool("no-color", false, "never colour the diagnostics")
	setUsage(fs, stderr,
		"Usage: roster validate [-json] [-no-color] [PATH...]",
		"",
		"Checks a roster.hcl with the role files it names, role files on their own,",
		"or a directory (its roster.hcl, else its *.hcl role files); default: the",
		"current directory. Each role's config block is checked against the schema",
		"its plugin declares. Exits 0 when valid (warnings allowed), 1 otherwise.",
	)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	paths := fs.Args()
	if len(paths) == 0 {
		paths = []string{"."}
	}

	loader := config.NewLoader()
	orchestrators, roles, diags := loader.Validate(context.Background(), paths, validateSchemas)
	// Balancers decode their own blocks; core/config checks only their types.
	diags = append(diags, validateBalancers(orchestrators)...)
	diags = append(diags, validateProviders(orchestrators)...)
	errs, warns := countDiags(diags)

	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(jsonResult(diags, errs, warns)); err != nil {
			fmt.Fprintf(stderr, "roster validate: %v\n", err)
			return 1
		}
		if errs > 0 {
			return 1
		}
		return 0
	}

	if len(diags) > 0 {
		color, width := terminal(stderr)
		w := hcl.NewDiagnosticTextWriter(stderr, loader.Files(), width, color && !*noColor)
		if err := w.WriteDiagnostics(diags); err != nil {
			fmt.Fprintf(stderr, "roster validate: %v\n", err)
			return 1
		}
	}
	if errs > 0 {
		fmt.Fprintf(stderr, "roster validate: %s, %s\n", plural(errs, "error"), plural(warns, "warning"))
		return 1
	}
	msg := fmt.Sprintf("The configuration is valid: %s, %s", plural(len(loader.Files()), "file"), plural(len(roles), "role"))
	if warns > 0 {
		msg += ", " + plural(warns, "warning")
	}
	fmt.Fprintln(stdout, msg+".")
	return 0
}

func countDiags(diags hcl.Diagnostics) (errs, warns int) {
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			errs++
		} else {
			warns++
		}
	}
	return errs, warns
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// terminal says whether w is a terminal that takes colour, and the width
// to wrap details at (0: no wrapping, for files and pipes).
func terminal(w io.Writer) (color bool, width uint) {
	f, ok := w.(*os.File)
	if !ok || !isatty.IsTerminal(f.Fd()) {
		return false, 0
	}
	return os.Getenv("NO_COLOR") == "", 100
}

// validateJSON is the shape of `roster validate -json`.
type validateJSON struct {
	Valid        bool       `json:"valid"`
	ErrorCount   int        `json:"error_count"`
	WarningCount int        `json:"warning_count"`
	Diagnostics  []diagJSON `json:"diagnostics"`
}

type diagJSON struct {
	Severity string     `json:"severity"` // "error" or "warning"
	Summary  string     `json:"summary"`
	Detail   string     `json:"detail,omitempty"`
	Range    *rangeJSON `json:"range,omitempty"`
}

type rangeJSON struct {
	Filename string  `json:"filename"`
	Start    posJSON `json:"start"`
	End      posJSON `json:"end"`
}

type posJSON struct {
	Line   int `json:"line"`
	Column int `json:"column"`
	Byte   int `json:"byte"`
}

func jsonResult(diags hcl.Diagnostics, errs, warns int) validateJSON {
	out := validateJSON{Valid: errs == 0, ErrorCount: errs, WarningCount: warns, Diagnostics: []diagJSON{}}
	for _, d := range diags {
		j := diagJSON{Severity: "error", Summary: d.Summary, Detail: d.Detail}
		if d.Severity == hcl.DiagWarning {
			j.Severity = "warning"
		}
		if r := d.Subject; r != nil {
			j.Range = &rangeJSON{
				Filename: r.Filename,
				Start:    posJSON{r.Start.Line, r.Start.Column, r.Start.Byte},
				End:      posJSON{r.End.Line, r.End.Column, r.End.Byte},
			}
		}
		out.Diagnostics = append(out.Diagnostics, j)
	}
	return out
}

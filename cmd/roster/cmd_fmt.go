package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/pmezard/go-difflib/difflib"
)

func init() {
	register(command{
		name:     "fmt",
		synopsis: "Rewrite roster.hcl and role files in the canonical HCL style",
		run:      runFmt,
	})
}

// stdinForFmt is what `roster fmt -` reads; tests replace it.
var stdinForFmt io.Reader = os.Stdin

type fmtOptions struct {
	check, diff, recursive bool
}

func runFmt(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("fmt", flag.ContinueOnError)
	flags.SetOutput(stderr)
	var opts fmtOptions
	flags.BoolVar(&opts.check, "check", false, "write nothing; list the files that are not formatted and exit 1 if there are any")
	flags.BoolVar(&opts.diff, "diff", false, "write nothing; print the changes as a unified diff")
	flags.BoolVar(&opts.recursive, "recursive", false, "also format the *.hcl files of subdirectories")
	setUsage(flags, stderr,
		"Usage: roster fmt [-check] [-diff] [-recursive] [PATH...]",
		"",
		"Rewrites HCL files in place (atomically) in the canonical style and lists the",
		"files it changed. PATH is a file, a directory (its *.hcl files) or - for",
		"stdin to stdout; default: the current directory. A file with syntax errors",
		"is reported and left alone; the exit code is then 1.",
	)
	if code, done := parseFlags(flags, args); done {
		return code
	}
	paths := flags.Args()
	if len(paths) == 0 {
		paths = []string{"."}
	}

	f := &formatter{opts: opts, stdout: stdout, stderr: stderr, files: map[string]*hcl.File{}}
	for _, p := range paths {
		if p == "-" {
			f.stdin()
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			fmt.Fprintf(stderr, "roster fmt: %v\n", err)
			f.failed = true
			continue
		}
		if !fi.IsDir() {
			f.file(p, fi.Mode().Perm())
			continue
		}
		f.dir(p)
	}
	if f.failed || (opts.check && f.unformatted > 0) {
		return 1
	}
	return 0
}

type formatter struct {
	opts           fmtOptions
	stdout, stderr io.Writer
	files          map[string]*hcl.File // for diagnostics' snippets
	unformatted    int
	failed         bool
}

func (f *formatter) dir(root string) {
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// Hidden directories (.roster, .git) hold state, not config.
			if p != root && (!f.opts.recursive || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || filepath.Ext(p) != ".hcl" {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		f.file(p, fi.Mode().Perm())
		return nil
	})
	if err != nil {
		fmt.Fprintf(f.stderr, "roster fmt: %v\n", err)
		f.failed = true
	}
}

// format returns src formatted, or nil after reporting its syntax errors:
// hclwrite formats by tokens and would happily shift a broken file.
func (f *formatter) format(name string, src []byte) []byte {
	file, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
	if diags.HasErrors() {
		f.files[name] = file
		color, width := terminal(f.stderr)
		_ = hcl.NewDiagnosticTextWriter(f.stderr, f.files, width, color).WriteDiagnostics(diags)
		f.failed = true
		return nil
	}
	return hclwrite.Format(src)
}

func (f *formatter) file(p string, perm fs.FileMode) {
	src, err := os.ReadFile(p)
	if err != nil {
		fmt.Fprintf(f.stderr, "roster fmt: %v\n", err)
		f.failed = true
		return
	}
	out := f.format(p, src)
	if out == nil || bytes.Equal(src, out) {
		return
	}
	f.unformatted++
	if f.opts.check || !f.opts.diff {
		fmt.Fprintln(f.stdout, p)
	}
	if f.opts.diff {
		f.printDiff(p, src, out)
	}
	if f.opts.check || f.opts.diff {
		return
	}
	if err := writeAtomic(p, out, perm); err != nil {
		fmt.Fprintf(f.stderr, "roster fmt: %v\n", err)
		f.failed = true
	}
}

func (f *formatter) stdin() {
	src, err := io.ReadAll(stdinForFmt)
	if err != nil {
		fmt.Fprintf(f.stderr, "roster fmt: reading stdin: %v\n", err)
		f.failed = true
		return
	}
	out := f.format("<stdin>", src)
	if out == nil {
		return
	}
	if !bytes.Equal(src, out) {
		f.unformatted++
	}
	switch {
	case f.opts.diff:
		f.printDiff("<stdin>", src, out)
	case !f.opts.check:
		_, _ = f.stdout.Write(out)
	}
}

func (f *formatter) printDiff(name string, a, b []byte) {
	text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A:        difflib.SplitLines(string(a)),
		B:        difflib.SplitLines(string(b)),
		FromFile: name + " (original)",
		ToFile:   name + " (formatted)",
		Context:  3,
	})
	if err != nil {
		fmt.Fprintf(f.stderr, "roster fmt: %v\n", err)
		f.failed = true
		return
	}
	fmt.Fprint(f.stdout, text)
}

// writeAtomic replaces p by data through a temporary file in the same
// directory and a rename, so that a reader never sees half a file.
func writeAtomic(p string, data []byte, perm fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".*.tmp")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name) // no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(name, p)
}

// Command benchreport turns the output of `go test -bench` into the markdown
// tables of docs/benchmarks.md. Benchmarks in this repository repeat their
// work internally and report percentiles and rates with b.ReportMetric; this
// tool only arranges those metrics, one table per package, next to the
// targets the issues set.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"
)

// result is one benchmark line.
type result struct {
	pkg     string
	name    string
	metrics map[string]string
	order   []string
}

func main() {
	in := flag.String("in", "bench.out", "go test -bench output")
	out := flag.String("out", "docs/benchmarks.md", "markdown file to write")
	flag.Parse()
	f, err := os.Open(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	defer f.Close()
	results, failures := parse(f)
	var b strings.Builder
	render(&b, results, failures)
	if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	fmt.Printf("benchreport: %d benchmarks from %d packages written to %s\n", len(results), countPkgs(results), *out)
}

func parse(r io.Reader) ([]result, []string) {
	var (
		results  []result
		failures []string
		pkg      string
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimPrefix(line, "pkg: ")
		case strings.HasPrefix(line, "--- FAIL: Benchmark"), strings.HasPrefix(line, "FAIL\t"):
			failures = append(failures, strings.TrimSpace(line))
		case strings.HasPrefix(line, "Benchmark"):
			fields := strings.Fields(line)
			if len(fields) < 3 {
				continue
			}
			res := result{pkg: pkg, name: trimProcs(fields[0]), metrics: map[string]string{}}
			// fields[1] is the iteration count; then value/unit pairs.
			for i := 2; i+1 < len(fields); i += 2 {
				unit := fields[i+1]
				if unit == "ns/op" || unit == "B/op" || unit == "allocs/op" {
					continue
				}
				res.metrics[unit] = fields[i]
				res.order = append(res.order, unit)
			}
			if len(res.order) > 0 {
				results = append(results, res)
			}
		}
	}
	return results, failures
}

// trimProcs removes the -GOMAXPROCS suffix go test adds to names.
func trimProcs(name string) string {
	if i := strings.LastIndexByte(name, '-'); i > 0 && strings.Trim(name[i+1:], "0123456789") == "" {
		return name[:i]
	}
	return name
}

func countPkgs(rs []result) int {
	seen := map[string]bool{}
	for _, r := range rs {
		seen[r.pkg] = true
	}
	return len(seen)
}

func render(w io.Writer, results []result, failures []string) {
	fmt.Fprintln(w, "# Benchmarks")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Written by `make bench` (core/internal/benchreport); do not edit by hand.")
	fmt.Fprintln(w, "Every benchmark repeats its work internally and reports percentiles or rates;")
	fmt.Fprintln(w, "timing is measured here and never asserted in a test.")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Run on %s: %s, %d cores, %s.\n\n", time.Now().UTC().Format("2006-01-02"), cpuModel(), runtime.NumCPU(), goVersion())
	byPkg := map[string][]result{}
	var pkgs []string
	for _, r := range results {
		if _, ok := byPkg[r.pkg]; !ok {
			pkgs = append(pkgs, r.pkg)
		}
		byPkg[r.pkg] = append(byPkg[r.pkg], r)
	}
	sort.Strings(pkgs)
	for _, p := range pkgs {
		fmt.Fprintf(w, "## %s\n\n", strings.TrimPrefix(p, "github.com/rosterhq/roster/"))
		rs := byPkg[p]
		var units []string
		seen := map[string]bool{}
		for _, r := range rs {
			for _, u := range r.order {
				if !seen[u] {
					seen[u] = true
					units = append(units, u)
				}
			}
		}
		fmt.Fprintf(w, "| benchmark | %s | target |\n", strings.Join(units, " | "))
		fmt.Fprintf(w, "|---|%s---|\n", strings.Repeat("---:|", len(units)))
		for _, r := range rs {
			cells := make([]string, len(units))
			for i, u := range units {
				cells[i] = r.metrics[u]
			}
			name := strings.TrimPrefix(r.name, "Benchmark")
			fmt.Fprintf(w, "| %s | %s | %s |\n", name, strings.Join(cells, " | "), target(p, name))
		}
		fmt.Fprintln(w)
		for _, r := range rs {
			name := strings.TrimPrefix(r.name, "Benchmark")
			if n := note(p, name); n != "" {
				fmt.Fprintf(w, "- **%s**: %s\n", name, n)
			}
		}
		fmt.Fprintln(w)
	}
	if len(failures) > 0 {
		fmt.Fprintln(w, "## Failures")
		fmt.Fprintln(w)
		for _, f := range failures {
			fmt.Fprintf(w, "- `%s`\n", f)
		}
		fmt.Fprintln(w)
	}
}

// target looks a benchmark's target up by package and name
// ("plugins/web.ProvisionToHealthy"), then by name alone.
func target(pkg, name string) string { return lookup(targets, pkg, name) }

// note looks up what a reader needs to know to read a benchmark's numbers.
func note(pkg, name string) string { return lookup(notes, pkg, name) }

func lookup(m map[string]string, pkg, name string) string {
	short := strings.TrimPrefix(pkg, "github.com/rosterhq/roster/")
	if t, ok := m[short+"."+name]; ok {
		return t
	}
	return m[name]
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			if i := strings.IndexByte(l, ':'); i > 0 {
				return strings.TrimSpace(l[i+1:])
			}
		}
	}
	return runtime.GOARCH
}

func goVersion() string {
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return runtime.Version()
	}
	return strings.TrimSpace(string(out))
}

package tomcat

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"testing"
	"time"

	"github.com/rosterhq/roster/sdk/rolekit"
	"github.com/rosterhq/roster/sdk/roletest"
)

var update = flag.Bool("update", false, "rebuild examples/java/hello.war from examples/java/app and pin its sha256 in the example role file")

// The java example: the application's sources, the WAR built from them
// (committed, so that the example runs without a JDK) and the role file.
const (
	exampleApp  = "../../examples/java/app"
	exampleWAR  = "../../examples/java/hello.war"
	exampleRole = "../../examples/java/roles/tomcat.hcl"
)

// buildWAR packages the web application in dir as a WAR (a jar: a zip with
// META-INF/MANIFEST.MF first). Entries are stored uncompressed, sorted and
// dated 2024-01-01, so the same sources make the same bytes with any Go
// version: the committed WAR can be checked against its sources.
func buildWAR(t testing.TB, dir string) []byte {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	stamp := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	add := func(name string, body []byte) {
		h := &zip.FileHeader{Name: name, Method: zip.Store, Modified: stamp}
		if body == nil {
			h.SetMode(fs.ModeDir | 0o755)
		} else {
			h.SetMode(0o644)
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	add("META-INF/", nil)
	add("META-INF/MANIFEST.MF", []byte("Manifest-Version: 1.0\r\nCreated-By: roster (plugins/tomcat example_test.go)\r\n\r\n"))
	dirs := map[string]bool{}
	for _, f := range files {
		for d := filepath.Dir(f); d != "."; d = filepath.Dir(d) {
			if !dirs[d] {
				dirs[d] = true
				add(d+"/", nil)
			}
		}
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		add(f, b)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var shaLine = regexp.MustCompile(`(?m)^(\s*war_sha256\s*=\s*)"[0-9a-f]*"`)

// TestExampleWARUpToDate checks that the committed WAR is what the sources
// build, and that the example role file pins its digest. Run with -update
// after changing the sources.
func TestExampleWARUpToDate(t *testing.T) {
	want := buildWAR(t, exampleApp)
	sum := sha256.Sum256(want)
	digest := hex.EncodeToString(sum[:])
	role, err := os.ReadFile(exampleRole)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(exampleWAR, want, 0o644); err != nil {
			t.Fatal(err)
		}
		role = shaLine.ReplaceAll(role, []byte(`${1}"`+digest+`"`))
		if err := os.WriteFile(exampleRole, role, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(exampleWAR)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not what %s builds: go test ./plugins/tomcat -run TestExampleWARUpToDate -update", exampleWAR, exampleApp)
	}
	m := shaLine.FindSubmatch(role)
	if m == nil || !bytes.Contains(m[0], []byte(digest)) {
		t.Fatalf("%s does not pin war_sha256 = %q: go test ./plugins/tomcat -run TestExampleWARUpToDate -update", exampleRole, digest)
	}
	if _, err := zip.NewReader(bytes.NewReader(got), int64(len(got))); err != nil {
		t.Fatalf("%s: %v", exampleWAR, err)
	}
}

// TestExampleRoleFileFitsSchema decodes the `config` block of the java
// example's role file against the role's schema, as `roster validate`
// does, and checks the values Provision checks.
func TestExampleRoleFileFitsSchema(t *testing.T) {
	body, err := rolekit.ConfigBlock(exampleRole)
	if err != nil {
		t.Fatal(err)
	}
	cfg, diags := roletest.DecodeHCL(Schema(), body)
	if diags.HasErrors() {
		t.Fatalf("%s: %s", exampleRole, diags.Error())
	}
	s, err := decode(cfg)
	if err != nil {
		t.Fatalf("%s: %v", exampleRole, err)
	}
	if s.War != "file://../hello.war" || s.HealthPath != "/health.jsp" || !s.ApacheFront || s.WarSHA256 == "" {
		t.Fatalf("%s decoded to %+v", exampleRole, s)
	}
}

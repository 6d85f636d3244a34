package artifact

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rosterhq/roster/sdk"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// noLeftovers fails when a staging directory remains beside dest.
func noLeftovers(t *testing.T, dest string) {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(filepath.Dir(dest), "."+filepath.Base(dest)+".fetch-*"))
	if len(m) > 0 {
		t.Fatalf("staging left behind: %v", m)
	}
}

type tarEntry struct {
	name, body, link string
	typ              byte
}

func makeTarGz(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o644, Linkname: e.link, Size: int64(len(e.body))}
		if typ == tar.TypeDir {
			hdr.Mode, hdr.Size = 0o755, 0
		}
		if typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestFetchLocalDirectoryDigestMatchesShell(t *testing.T) {
	src := filepath.Join(t.TempDir(), "site")
	writeTree(t, src, map[string]string{"index.php": "<?php echo 1;", "css/a b.css": "body{}", "img/x.txt": "x"})
	if err := os.Symlink("index.php", filepath.Join(src, "home.php")); err != nil {
		t.Fatal(err)
	}
	// The digest operators compute with the documented pipeline.
	cmd := exec.Command("sh", "-c", "find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum")
	cmd.Dir = src
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	shellSum := strings.Fields(string(out))[0]

	dest := filepath.Join(t.TempDir(), "docroot")
	var calls [][2]int64
	res, err := Fetch(ctx(t), "file://"+src, dest, Options{SHA256: strings.ToUpper(shellSum), Progress: func(d, tot int64) { calls = append(calls, [2]int64{d, tot}) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kind != KindDir || res.SHA256 != shellSum {
		t.Fatalf("result %+v, want dir with shell digest %s", res, shellSum)
	}
	if got := readFile(t, filepath.Join(dest, "css/a b.css")); got != "body{}" {
		t.Fatalf("copied file = %q", got)
	}
	if l, err := os.Readlink(filepath.Join(dest, "home.php")); err != nil || l != "index.php" {
		t.Fatalf("symlink = %q, %v", l, err)
	}
	if len(calls) == 0 || calls[len(calls)-1][0] != calls[len(calls)-1][1] {
		t.Fatalf("progress calls %v do not end with done == total", calls)
	}
	noLeftovers(t, dest)
}

func TestFetchRelativeFileURL(t *testing.T) {
	base := t.TempDir()
	writeTree(t, base, map[string]string{"examples/site/index.html": "hi"})
	dest := filepath.Join(t.TempDir(), "d")
	if _, err := Fetch(ctx(t), "file://examples/site", dest, Options{BaseDir: base}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dest, "index.html")); got != "hi" {
		t.Fatalf("index.html = %q", got)
	}
}

func TestFetchLocalDirRefusesEscapingSymlink(t *testing.T) {
	src := filepath.Join(t.TempDir(), "site")
	writeTree(t, src, map[string]string{"a": "a"})
	os.Symlink("/etc/passwd", filepath.Join(src, "passwd"))
	dest := filepath.Join(t.TempDir(), "d")
	if _, err := Fetch(ctx(t), "file://"+src, dest, Options{}); err == nil || !strings.Contains(err.Error(), "leaves") {
		t.Fatalf("Fetch = %v, want a refused symlink", err)
	}
	if _, err := os.Lstat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("dest created after a failed fetch")
	}
	noLeftovers(t, dest)
}

func TestFetchSingleFileAndTarGz(t *testing.T) {
	dir := t.TempDir()
	dump := []byte("CREATE TABLE t (id int);\n")
	os.WriteFile(filepath.Join(dir, "schema.sql"), dump, 0o644)
	res, err := Fetch(ctx(t), "file://"+filepath.Join(dir, "schema.sql"), filepath.Join(dir, "out/schema.sql"), Options{SHA256: sum(dump)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kind != KindFile || readFile(t, filepath.Join(dir, "out/schema.sql")) != string(dump) {
		t.Fatalf("single file: %+v", res)
	}

	tgz := makeTarGz(t, []tarEntry{
		{name: "./site/", typ: tar.TypeDir},
		{name: "./site/index.html", body: "hello"},
		{name: "site/link.html", link: "index.html", typ: tar.TypeSymlink},
		{name: "site/hard.html", link: "site/index.html", typ: tar.TypeLink},
		{name: "site/sub/up.html", link: "../index.html", typ: tar.TypeSymlink},
	})
	os.WriteFile(filepath.Join(dir, "site.tar.gz"), tgz, 0o644)
	dest := filepath.Join(dir, "docroot")
	res, err = Fetch(ctx(t), "file://"+filepath.Join(dir, "site.tar.gz"), dest, Options{SHA256: sum(tgz)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kind != KindDir || res.SHA256 != sum(tgz) {
		t.Fatalf("tar.gz: %+v", res)
	}
	for _, f := range []string{"site/index.html", "site/link.html", "site/hard.html", "site/sub/up.html"} {
		if got := readFile(t, filepath.Join(dest, f)); got != "hello" {
			t.Errorf("%s = %q", f, got)
		}
	}
	// ArchiveNone keeps the archive a file.
	res, err = Fetch(ctx(t), "file://"+filepath.Join(dir, "site.tar.gz"), filepath.Join(dir, "keep.tgz"), Options{Archive: ArchiveNone})
	if err != nil || res.Kind != KindFile {
		t.Fatalf("ArchiveNone: %+v, %v", res, err)
	}
}

func TestUnpackRefusesHostileArchives(t *testing.T) {
	cases := map[string][]tarEntry{
		"dotdot":          {{name: "../evil.txt", body: "x"}},
		"deep dotdot":     {{name: "a/../../evil.txt", body: "x"}},
		"absolute":        {{name: "/tmp/evil.txt", body: "x"}},
		"absolute link":   {{name: "l", link: "/etc", typ: tar.TypeSymlink}},
		"escaping link":   {{name: "a/l", link: "../../etc", typ: tar.TypeSymlink}},
		"hard link out":   {{name: "h", link: "../outside", typ: tar.TypeLink}},
		"device":          {{name: "dev", typ: tar.TypeChar}},
		"fifo":            {{name: "fifo", typ: tar.TypeFifo}},
		"write via link":  {{name: "l", link: ".", typ: tar.TypeSymlink}, {name: "l/../../evil.txt", body: "x"}},
		"link chain out":  {{name: "a/", typ: tar.TypeDir}, {name: "a/l", link: "..", typ: tar.TypeSymlink}, {name: "a/l/../x", body: "fine"}, {name: "b", link: "a/l/..", typ: tar.TypeSymlink}},
		"not gzip at all": nil,
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			outside := filepath.Join(parent, "outside")
			work := filepath.Join(parent, "work")
			os.MkdirAll(work, 0o755)
			data := []byte("this is not a gzip stream")
			if entries != nil {
				data = makeTarGz(t, entries)
			}
			src := filepath.Join(work, "bad.tar.gz")
			os.WriteFile(src, data, 0o644)
			dest := filepath.Join(work, "dest")
			_, err := Fetch(ctx(t), "file://"+src, dest, Options{})
			if err == nil {
				t.Fatal("hostile archive unpacked without error")
			}
			if _, err := os.Lstat(dest); !errors.Is(err, os.ErrNotExist) {
				t.Fatal("dest exists after a refused archive")
			}
			for _, p := range []string{outside, filepath.Join(parent, "evil.txt"), "/tmp/evil.txt"} {
				if _, err := os.Lstat(p); err == nil {
					t.Fatalf("%s written outside the destination", p)
				}
			}
			noLeftovers(t, dest)
		})
	}
}

func TestChecksumMismatchLeavesOldInPlace(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"v2/index.html": "new", "docroot/index.html": "old"})
	src := filepath.Join(dir, "v2")
	dest := filepath.Join(dir, "docroot")
	wrong := strings.Repeat("ab", 32)
	_, err := Fetch(ctx(t), "file://"+src, dest, Options{SHA256: wrong})
	if !errors.Is(err, sdk.ErrChecksumMismatch) {
		t.Fatalf("Fetch = %v, want ErrChecksumMismatch", err)
	}
	actual, _ := DirDigest(src)
	for _, want := range []string{"file://" + src, wrong, actual} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if got := readFile(t, filepath.Join(dest, "index.html")); got != "old" {
		t.Fatalf("old docroot replaced by a mismatching one: %q", got)
	}
	noLeftovers(t, dest)

	// The right digest replaces it.
	if _, err := Fetch(ctx(t), "file://"+src, dest, Options{SHA256: actual}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dest, "index.html")); got != "new" {
		t.Fatalf("docroot not replaced: %q", got)
	}
	noLeftovers(t, dest)
}

func TestFetchHTTP(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/app.war":
			http.ServeContent(w, r, "app.war", time.Time{}, bytes.NewReader(big))
		case "/site.tgz":
			w.Write(makeTarGz(t, []tarEntry{{name: "index.html", body: "from http"}}))
		case "/boom":
			http.Error(w, "boom", http.StatusBadGateway)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	dir := t.TempDir()

	var mu sync.Mutex
	var last, calls int64
	res, err := Fetch(ctx(t), srv.URL+"/app.war", filepath.Join(dir, "app.war"), Options{
		SHA256: sum(big),
		Progress: func(done, total int64) {
			mu.Lock()
			defer mu.Unlock()
			if done < last || total != int64(len(big)) {
				t.Errorf("progress went %d -> %d of %d", last, done, total)
			}
			last = done
			calls++
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kind != KindFile || res.Size != int64(len(big)) || last != int64(len(big)) || calls < 2 || calls > 110 {
		t.Fatalf("result %+v, last progress %d after %d calls", res, last, calls)
	}
	if _, err := Fetch(ctx(t), srv.URL+"/site.tgz", filepath.Join(dir, "site"), Options{}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "site/index.html")); got != "from http" {
		t.Fatalf("index.html = %q", got)
	}
	if _, err := Fetch(ctx(t), srv.URL+"/missing.tgz", filepath.Join(dir, "x"), Options{}); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("404 = %v, want ErrNotFound", err)
	}
	if _, err := Fetch(ctx(t), srv.URL+"/boom", filepath.Join(dir, "x"), Options{}); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("502 = %v, want ErrUnavailable", err)
	}
	_, err = Fetch(ctx(t), srv.URL+"/app.war", filepath.Join(dir, "bad.war"), Options{SHA256: sum([]byte("other"))})
	if !errors.Is(err, sdk.ErrChecksumMismatch) {
		t.Fatalf("mismatch = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.war")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a mismatching download was put in place")
	}
}

func TestBadURLs(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "d")
	for _, u := range []string{"", "/plain/path", "ftp://host/x", "git+ftp://h/r.git", "s3:///key", "http:///nohost", "git+https://h/r.git#--upload-pack=evil"} {
		if _, err := Fetch(ctx(t), u, dest, Options{}); !errors.Is(err, sdk.ErrInvalidConfig) {
			t.Errorf("Fetch(%q) = %v, want ErrInvalidConfig", u, err)
		}
	}
	if _, err := Fetch(ctx(t), "file:///nonexistent/x", dest, Options{}); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("missing file = %v, want ErrNotFound", err)
	}
	if _, err := Fetch(ctx(t), "file:///etc/hostname", dest, Options{SHA256: "abc"}); !errors.Is(err, sdk.ErrInvalidConfig) {
		t.Errorf("short sha256 = %v, want ErrInvalidConfig", err)
	}
	if got := Redact("git+https://user:secret@host/r.git#main"); strings.Contains(got, "secret") {
		t.Errorf("Redact kept the password: %s", got)
	}
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestFetchGit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("git not installed")
		}
		t.Skip("git not installed")
	}
	base := t.TempDir()
	work := filepath.Join(base, "work")
	bare := filepath.Join(base, "site.git")
	os.MkdirAll(work, 0o755)
	git(t, base, "init", "-q", "--bare", bare)
	git(t, work, "init", "-q")
	writeTree(t, work, map[string]string{"index.html": "v1"})
	git(t, work, "add", ".")
	git(t, work, "commit", "-q", "-m", "v1")
	v1 := git(t, work, "rev-parse", "HEAD")
	git(t, work, "tag", "v1.0")
	writeTree(t, work, map[string]string{"index.html": "v2"})
	git(t, work, "commit", "-q", "-am", "v2")
	v2 := git(t, work, "rev-parse", "HEAD")
	git(t, work, "push", "-q", bare, "main", "v1.0")

	cases := []struct{ ref, want, rev string }{
		{"", "v2", v2},
		{"main", "v2", v2},
		{"v1.0", "v1", v1},
		{v1, "v1", v1}, // a commit that is no branch tip
	}
	for _, c := range cases {
		dest := filepath.Join(t.TempDir(), "site")
		u := "git+file://" + bare
		if c.ref != "" {
			u += "#" + c.ref
		}
		res, err := Fetch(ctx(t), u, dest, Options{})
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if got := readFile(t, filepath.Join(dest, "index.html")); got != c.want || res.Revision != c.rev || res.Kind != KindDir {
			t.Errorf("%s: index.html %q revision %s, want %q at %s", u, got, res.Revision, c.want, c.rev)
		}
		if _, err := os.Stat(filepath.Join(dest, ".git")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: .git left in the checkout", u)
		}
		// The directory digest pins the content.
		if _, err := Fetch(ctx(t), u, filepath.Join(t.TempDir(), "again"), Options{SHA256: res.SHA256}); err != nil {
			t.Errorf("%s with its own digest: %v", u, err)
		}
	}
	if _, err := Fetch(ctx(t), "git+file://"+bare+"#no-such-branch", filepath.Join(base, "x"), Options{}); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("missing ref = %v, want ErrNotFound", err)
	}
	if _, err := Fetch(ctx(t), "git+file://"+filepath.Join(base, "nope.git"), filepath.Join(base, "x"), Options{}); err == nil {
		t.Fatal("missing repository fetched")
	}
}

func TestFetchS3(t *testing.T) {
	endpoint := startFauxqs(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	opts := S3Options{Endpoint: endpoint}
	client, err := S3Client(ctx(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	bucket := "artifacts"
	if _, err := client.CreateBucket(ctx(t), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	put := func(key string, body []byte) {
		t.Helper()
		if _, err := client.PutObject(ctx(t), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	tgz := makeTarGz(t, []tarEntry{{name: "index.php", body: "<?php echo 'hi';"}})
	put("releases/site-1.tar.gz", tgz)
	put("conf/extra.conf", []byte("KeepAlive On\n"))
	put("conf/sub/more.conf", []byte("# more\n"))

	dir := t.TempDir()
	res, err := Fetch(ctx(t), "s3://artifacts/releases/site-1.tar.gz", filepath.Join(dir, "site"), Options{SHA256: sum(tgz), S3: opts})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kind != KindDir || readFile(t, filepath.Join(dir, "site/index.php")) != "<?php echo 'hi';" {
		t.Fatalf("s3 tar.gz: %+v", res)
	}
	var lastDone, lastTotal int64
	if _, err := Fetch(ctx(t), "s3://artifacts/conf/", filepath.Join(dir, "conf"), Options{S3: opts, Progress: func(d, tot int64) { lastDone, lastTotal = d, tot }}); err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(dir, "conf/sub/more.conf")) != "# more\n" || lastDone != lastTotal || lastDone != int64(len("KeepAlive On\n# more\n")) {
		t.Fatalf("s3 prefix: progress %d/%d", lastDone, lastTotal)
	}
	_, err = Fetch(ctx(t), "s3://artifacts/releases/site-1.tar.gz", filepath.Join(dir, "bad"), Options{SHA256: sum([]byte("x")), S3: opts})
	if !errors.Is(err, sdk.ErrChecksumMismatch) {
		t.Fatalf("mismatch = %v", err)
	}
	if _, err := Fetch(ctx(t), "s3://artifacts/releases/none.tar.gz", filepath.Join(dir, "none"), Options{S3: opts}); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("missing object = %v, want ErrNotFound", err)
	}
	// The endpoint from the environment, as the standard chain reads it.
	t.Setenv("AWS_ENDPOINT_URL_S3", endpoint)
	if _, err := Fetch(ctx(t), "s3://artifacts/conf/extra.conf", filepath.Join(dir, "extra.conf"), Options{}); err != nil {
		t.Fatalf("endpoint from AWS_ENDPOINT_URL_S3: %v", err)
	}
}

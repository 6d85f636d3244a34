// Package artifact fetches what a role deploys (a document root, a config
// bundle, a WAR, an SQL dump) and puts it in place, checked.
//
// Sources, by URL:
//
//	file:///abs/path  file://rel/path     a local file or directory (relative to Options.BaseDir)
//	http://…  https://…                   a file, over HTTP GET
//	s3://bucket/key                       an S3 object; s3://bucket/prefix/ (trailing slash) a directory
//	git+https://host/repo.git#ref         a git repository at a ref (branch, tag or commit);
//	git+ssh://…#ref  git+file:///…#ref    without #ref, the remote's default branch
//
// A file whose name ends in .tar.gz, .tgz or .tar is unpacked into a
// directory (see Options.Archive); anything else that is a file stays one.
// Archives are unpacked safely: entries that name a path outside the
// destination, absolute or escaping symbolic links and hard links, device
// files and fifos are refused, and set-id bits are dropped.
//
// With Options.SHA256 set, the digest is checked before anything is put in
// place: a mismatch returns an error that wraps sdk.ErrChecksumMismatch and
// leaves the destination as it was. The digest of a file or archive is the
// sha256 of its bytes as fetched (sha256sum file). The digest of a directory
// (a local directory, an S3 prefix, a git checkout without .git) is the
// sha256 of its manifest, which this shell pipeline prints too:
//
//	cd dir && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum
//
// (regular files only: symbolic links and empty directories are not
// covered; pin git sources to a commit for that).
//
// S3 uses aws-sdk-go-v2's standard credential chain and region. An endpoint
// override (Options.S3.Endpoint, or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL
// in the environment) switches to path-style addressing, as S3-compatible
// servers expect.
//
// git sources shell out to the git command, which must be installed.
package artifact

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hashicorp/go-hclog"
	"github.com/rosterhq/roster/sdk"
)

// Kind says what Fetch put in place.
type Kind int

const (
	// KindFile is a single file.
	KindFile Kind = iota
	// KindDir is a directory: a local or S3 directory, a git checkout, or an
	// unpacked archive.
	KindDir
)

// String returns "file" or "dir".
func (k Kind) String() string {
	if k == KindDir {
		return "dir"
	}
	return "file"
}

// Archive says whether a fetched file is unpacked.
type Archive int

const (
	// ArchiveAuto unpacks files whose name ends in .tar.gz, .tgz or .tar.
	ArchiveAuto Archive = iota
	// ArchiveNone never unpacks: a .tar.gz stays a file.
	ArchiveNone
	// ArchiveTarGz unpacks the file as a gzip-compressed tar, whatever its
	// name (an HTTP URL without a suffix).
	ArchiveTarGz
	// ArchiveTar unpacks the file as an uncompressed tar.
	ArchiveTar
)

// ProgressFunc receives how many bytes have been fetched of how many; total
// is -1 when unknown. It is called at most about a hundred times per fetch,
// and once more with done == total at the end.
type ProgressFunc func(done, total int64)

// Options tune Fetch. The zero value works.
type Options struct {
	// SHA256 is the expected digest, in hex; empty skips the check.
	SHA256 string
	// Archive says whether to unpack a fetched file.
	Archive Archive
	// Progress receives download progress; may be nil.
	Progress ProgressFunc
	// BaseDir resolves relative file:// URLs; the working directory when
	// empty.
	BaseDir string
	// HTTPClient fetches http(s) URLs; http.DefaultClient when nil. Bound
	// the time with ctx.
	HTTPClient *http.Client
	// S3 configures s3:// sources.
	S3 S3Options
	// Logger receives debug lines; none when nil.
	Logger hclog.Logger
}

// S3Options configure the S3 client.
type S3Options struct {
	// Endpoint overrides the S3 endpoint (http://127.0.0.1:4566 for a local
	// S3-compatible server).
	Endpoint string
	// Region overrides the region of the standard chain; us-east-1 when
	// none is configured anywhere.
	Region string
	// PathStyle forces path-style addressing; it is on anyway when an
	// endpoint override is set.
	PathStyle bool
	// Client, when set, is used as is and the fields above are ignored.
	Client *s3.Client
}

// Result describes what Fetch put in place.
type Result struct {
	// Path is the destination Fetch was given.
	Path string
	Kind Kind
	// SHA256 is the digest of what was fetched, as the package doc defines
	// it, whether or not one was expected.
	SHA256 string
	// Size is the number of bytes fetched.
	Size int64
	// Revision is the commit a git source was checked out at.
	Revision string
}

// Fetch fetches the artifact at rawURL and puts it at dest: a file, or a
// directory for directories and unpacked archives. An existing dest is
// replaced only once the new artifact is fetched, checked and unpacked;
// on any error dest is left as it was and no temporary file remains.
func Fetch(ctx context.Context, rawURL, dest string, opts Options) (Result, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	log := opts.Logger.Named("artifact").With("url", Redact(rawURL))
	src, err := parse(rawURL, opts.BaseDir)
	if err != nil {
		return Result{}, err
	}
	want := strings.ToLower(strings.TrimSpace(opts.SHA256))
	if want != "" && !isHexDigest(want) {
		return Result{}, sdk.Errorf(sdk.ErrInvalidConfig, "artifact %s: sha256 %q is not 64 hex digits", Redact(rawURL), opts.SHA256)
	}
	dest, err = filepath.Abs(dest)
	if err != nil {
		return Result{}, fmt.Errorf("artifact: destination: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return Result{}, fmt.Errorf("artifact: destination: %w", err)
	}
	// Staging beside dest, on the same file system, so that putting the
	// result in place is a rename.
	stage, err := os.MkdirTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".fetch-")
	if err != nil {
		return Result{}, fmt.Errorf("artifact: staging: %w", err)
	}
	defer os.RemoveAll(stage)
	if err := os.Chmod(stage, 0o755); err != nil {
		return Result{}, fmt.Errorf("artifact: staging: %w", err)
	}

	prog := newProgress(opts.Progress)
	blob := filepath.Join(stage, "blob")
	tree := filepath.Join(stage, "tree")
	res := Result{Path: dest}
	var fetched fetchResult
	switch src.scheme {
	case "file":
		fetched, err = fetchFile(ctx, src.path, blob, tree, prog)
	case "http", "https":
		fetched, err = fetchHTTP(ctx, opts.HTTPClient, src.url, blob, prog)
	case "s3":
		fetched, err = fetchS3(ctx, opts.S3, src.bucket, src.key, blob, tree, prog)
	case "git":
		fetched, err = fetchGit(ctx, src.url, src.ref, tree)
	}
	if err != nil {
		return Result{}, fmt.Errorf("artifact %s: %w", Redact(rawURL), err)
	}
	res.Size, res.Revision = fetched.size, fetched.revision
	if fetched.dir {
		if err := VerifyLinks(tree); err != nil {
			return Result{}, fmt.Errorf("artifact %s: %w", Redact(rawURL), err)
		}
		if res.SHA256, err = DirDigest(tree); err != nil {
			return Result{}, fmt.Errorf("artifact %s: %w", Redact(rawURL), err)
		}
	} else {
		res.SHA256 = fetched.sha256
	}
	if want != "" && res.SHA256 != want {
		return Result{}, sdk.Errorf(sdk.ErrChecksumMismatch, "artifact %s: expected sha256 %s, got %s", Redact(rawURL), want, res.SHA256)
	}

	final := tree
	res.Kind = KindDir
	if !fetched.dir {
		switch archiveOf(opts.Archive, src.name) {
		case ArchiveTarGz, ArchiveTar:
			gz := archiveOf(opts.Archive, src.name) == ArchiveTarGz
			if err := unpackFile(blob, tree, gz); err != nil {
				return Result{}, fmt.Errorf("artifact %s: unpacking: %w", Redact(rawURL), err)
			}
		default:
			final, res.Kind = blob, KindFile
		}
	}
	if err := replace(final, dest, stage); err != nil {
		return Result{}, fmt.Errorf("artifact %s: %w", Redact(rawURL), err)
	}
	log.Debug("artifact in place", "dest", dest, "kind", res.Kind, "bytes", res.Size, "sha256", res.SHA256, "revision", res.Revision)
	return res, nil
}

// fetchResult is what a source fetched into the staging directory: the blob
// file with its digest, or the tree directory.
type fetchResult struct {
	dir      bool
	sha256   string
	size     int64
	revision string
}

func archiveOf(a Archive, name string) Archive {
	if a != ArchiveAuto {
		return a
	}
	n := strings.ToLower(name)
	switch {
	case strings.HasSuffix(n, ".tar.gz"), strings.HasSuffix(n, ".tgz"):
		return ArchiveTarGz
	case strings.HasSuffix(n, ".tar"):
		return ArchiveTar
	}
	return ArchiveNone
}

// replace moves final to dest, moving any old dest out of the way first
// (into stage, which the caller removes).
func replace(final, dest, stage string) error {
	old := filepath.Join(stage, "old")
	hadOld := false
	if _, err := os.Lstat(dest); err == nil {
		if err := os.Rename(dest, old); err != nil {
			return fmt.Errorf("moving old %s aside: %w", dest, err)
		}
		hadOld = true
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Rename(final, dest); err != nil {
		if hadOld {
			_ = os.Rename(old, dest)
		}
		return fmt.Errorf("putting %s in place: %w", dest, err)
	}
	return nil
}

func isHexDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

package artifact

import (
	"net/url"
	"path"
	"path/filepath"
	"strings"

	"github.com/rosterhq/roster/sdk"
)

// source is a parsed artifact URL.
type source struct {
	scheme string // file, http, https, s3, git
	url    string // for http(s) and git: what to hand the client
	path   string // file: absolute path
	bucket string // s3
	key    string // s3
	ref    string // git
	name   string // the last path element, for archive detection
}

// Schemes lists the URL forms Fetch understands, for error messages and docs.
const Schemes = "file://, http://, https://, s3://, git+https://, git+ssh://, git+file://"

func parse(raw, baseDir string) (source, error) {
	bad := func(why string) (source, error) {
		return source{}, sdk.Errorf(sdk.ErrInvalidConfig, "artifact %s: %s", Redact(raw), why)
	}
	raw = strings.TrimSpace(raw)
	switch {
	case strings.HasPrefix(raw, "file://"):
		// Parsed by hand: in file://examples/site the first element is a
		// directory, not a host.
		p := strings.TrimPrefix(raw, "file://")
		if i := strings.IndexAny(p, "?#"); i >= 0 {
			p = p[:i]
		}
		p, err := url.PathUnescape(p)
		if err != nil || p == "" {
			return bad("bad file path")
		}
		if !filepath.IsAbs(p) {
			if baseDir == "" {
				baseDir = "."
			}
			if p, err = filepath.Abs(filepath.Join(baseDir, p)); err != nil {
				return bad(err.Error())
			}
		}
		return source{scheme: "file", path: filepath.Clean(p), name: filepath.Base(p)}, nil
	case strings.HasPrefix(raw, "git+"):
		u, err := url.Parse(strings.TrimPrefix(raw, "git+"))
		if err != nil {
			return bad(err.Error())
		}
		switch u.Scheme {
		case "https", "http", "ssh", "file":
		default:
			return bad("git sources are git+https://, git+ssh:// or git+file://")
		}
		ref := u.Fragment
		u.Fragment, u.RawFragment = "", ""
		if strings.HasPrefix(ref, "-") {
			return bad("a git ref may not start with '-'")
		}
		return source{scheme: "git", url: u.String(), ref: ref, name: path.Base(u.Path)}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad(err.Error())
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return bad("no host")
		}
		return source{scheme: u.Scheme, url: raw, name: path.Base(u.Path)}, nil
	case "s3":
		if u.Host == "" {
			return bad("no bucket")
		}
		key := strings.TrimPrefix(u.Path, "/")
		return source{scheme: "s3", bucket: u.Host, key: key, name: path.Base(key)}, nil
	case "":
		return bad("no scheme; use one of " + Schemes)
	}
	return bad("unsupported scheme " + u.Scheme + "; use one of " + Schemes)
}

// Redact returns rawURL without the password of its user info, for logs and
// errors.
func Redact(rawURL string) string {
	u, err := url.Parse(strings.TrimPrefix(rawURL, "git+"))
	if err != nil || u.User == nil {
		return rawURL
	}
	if _, ok := u.User.Password(); !ok {
		return rawURL
	}
	s := u.Redacted()
	if strings.HasPrefix(rawURL, "git+") {
		s = "git+" + s
	}
	return s
}

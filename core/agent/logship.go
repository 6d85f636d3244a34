package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rosterhq/roster/sdk"
)

// LogShipper copies a torn-down server's log files to a log destination.
// The file shipper is built in; an s3:// shipper plugs in through
// Config.LogShippers without the agent changing.
type LogShipper interface {
	// Ship copies files under <destination>/<server>/<at>/<name> and returns
	// where each file went, as URLs. A file that cannot be read is skipped
	// (and logged), since the logs of a broken server are still worth the
	// rest; an error means nothing could be shipped.
	Ship(ctx context.Context, server string, at time.Time, files []sdk.LogFile) ([]string, error)
}

// LogShipperFunc returns the shipper for a destination URL.
type LogShipperFunc func(destination string) (LogShipper, error)

// ErrUnsupportedDestination is returned for a log destination whose scheme
// has no shipper.
var ErrUnsupportedDestination = errors.New("unsupported log destination")

// NewLogShipper returns the shipper for destination: file:///abs/dir or
// s3://bucket/prefix.
func NewLogShipper(destination string) (LogShipper, error) {
	switch {
	case strings.HasPrefix(destination, "file://"):
		dir := strings.TrimPrefix(destination, "file://")
		if !filepath.IsAbs(dir) {
			return nil, fmt.Errorf("log destination %q: the path must be absolute (file:///dir)", destination)
		}
		return &FileShipper{Dir: filepath.Clean(dir)}, nil
	case strings.HasPrefix(destination, "s3://"):
		return newS3Shipper(destination)
	default:
		return nil, fmt.Errorf("log destination %q: %w (want file:///dir or s3://bucket/prefix)", destination, ErrUnsupportedDestination)
	}
}

// ShipTimeFormat names the directory of one teardown's logs: RFC 3339 in
// UTC without the colons that some file systems and tools dislike.
const ShipTimeFormat = "20060102T150405.000Z"

// FileShipper copies logs into a directory of this host.
type FileShipper struct {
	Dir string
	// Logger receives a warning for each file skipped; nil means none.
	Logger interface{ Warn(string, ...any) }
}

// Ship implements LogShipper.
func (s *FileShipper) Ship(ctx context.Context, server string, at time.Time, files []sdk.LogFile) ([]string, error) {
	base := filepath.Join(s.Dir, server, at.UTC().Format(ShipTimeFormat))
	var out []string
	var errs []error
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		name, err := cleanLogName(f.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		dst := filepath.Join(base, name)
		if err := copyFile(f.Path, dst); err != nil {
			errs = append(errs, err)
			if s.Logger != nil {
				s.Logger.Warn("log file not shipped", "name", f.Name, "path", f.Path, "error", err)
			}
			continue
		}
		out = append(out, "file://"+dst)
	}
	if len(out) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// cleanLogName keeps a log's name inside the ship directory.
func cleanLogName(name string) (string, error) {
	n := filepath.Clean("/" + filepath.FromSlash(name))[1:]
	if n == "" || n == "." {
		return "", fmt.Errorf("log file name %q is empty", name)
	}
	return n, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("ship log %s: %w", src, err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("ship log %s: %w", src, err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("ship log %s: %w", src, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("ship log %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("ship log %s to %s: %w", src, dst, err)
	}
	return nil
}

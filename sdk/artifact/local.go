package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/rosterhq/roster/sdk"
)

func fetchFile(ctx context.Context, src, blob, tree string, p *progress) (fetchResult, error) {
	fi, err := os.Stat(src)
	if errors.Is(err, os.ErrNotExist) {
		return fetchResult{}, sdk.Errorf(sdk.ErrNotFound, "%s does not exist", src)
	}
	if err != nil {
		return fetchResult{}, err
	}
	if fi.IsDir() {
		n, err := copyTree(ctx, src, tree, p)
		return fetchResult{dir: true, size: n}, err
	}
	if !fi.Mode().IsRegular() {
		return fetchResult{}, sdk.Errorf(sdk.ErrInvalidConfig, "%s is neither a file nor a directory", src)
	}
	f, err := os.Open(src)
	if err != nil {
		return fetchResult{}, err
	}
	defer f.Close()
	p.setTotal(fi.Size())
	sum, n, err := writeBlob(blob, ctxReader{ctx, f}, p)
	return fetchResult{sha256: sum, size: n}, err
}

// copyTree copies the directory src to dst (which it creates) with the same
// rules as Untar: relative symbolic links that stay inside are kept, others
// and special files are refused.
func copyTree(ctx context.Context, src, dst string, p *progress) (int64, error) {
	var total int64
	_ = filepath.WalkDir(src, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	p.setTotal(total)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return 0, err
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	var copied int64
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return root.Mkdir(rel, info.Mode().Perm()|0o700)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if !symlinkStaysInside(filepath.ToSlash(rel), target) {
				return fmt.Errorf("%s: symbolic link to %q leaves the directory", path, target)
			}
			return root.Symlink(target, rel)
		case d.Type().IsRegular():
			in, err := os.Open(path)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm()|0o600)
			if err != nil {
				return err
			}
			n, err := io.Copy(io.MultiWriter(out, progressWriter{p}), in)
			copied += n
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("copying %s: %w", path, err)
			}
			return root.Chmod(rel, info.Mode().Perm()|0o600)
		}
		return fmt.Errorf("%s: unsupported file type %s", path, info.Mode().Type())
	})
	p.finish()
	return copied, err
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}

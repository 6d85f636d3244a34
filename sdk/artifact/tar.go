package artifact

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// unpackFile unpacks the tar (gzip-compressed when gz) at archive into dir,
// which it creates.
func unpackFile(archive, dir string, gz bool) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	if gz {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("not a gzip file: %w", err)
		}
		defer zr.Close()
		r = zr
	}
	return Untar(r, dir)
}

// Untar unpacks a tar stream into dir, creating dir. It refuses entries
// whose name is absolute or leaves dir, symbolic links whose target is
// absolute or leaves dir, hard links to outside dir, and device files and
// fifos; it never follows a symbolic link out of dir (os.Root), and drops
// set-id and sticky bits. On error, dir may hold part of the archive: unpack
// into a staging directory.
func Untar(r io.Reader, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// Links judged one by one can still escape together.
			return VerifyLinks(dir)
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		if err := untarEntry(root, tr, hdr); err != nil {
			return err
		}
	}
}

func untarEntry(root *os.Root, r io.Reader, hdr *tar.Header) error {
	name, ok := localName(hdr.Name)
	if !ok {
		return fmt.Errorf("tar entry %q: path leaves the destination", hdr.Name)
	}
	if name == "." {
		return nil
	}
	perm := fs.FileMode(hdr.Mode) & fs.ModePerm
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := root.MkdirAll(name, 0o755); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
		return root.Chmod(name, perm|0o700)
	case tar.TypeReg: // the reader turns the old TypeRegA into TypeReg
		return writeEntry(root, name, r, perm|0o600)
	case tar.TypeSymlink:
		if !symlinkStaysInside(name, hdr.Linkname) {
			return fmt.Errorf("tar entry %q: symbolic link to %q leaves the destination", hdr.Name, hdr.Linkname)
		}
		if err := mkParent(root, name); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
		_ = root.Remove(name)
		if err := root.Symlink(hdr.Linkname, name); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
		return nil
	case tar.TypeLink:
		target, ok := localName(hdr.Linkname)
		if !ok {
			return fmt.Errorf("tar entry %q: hard link to %q leaves the destination", hdr.Name, hdr.Linkname)
		}
		if err := mkParent(root, name); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
		_ = root.Remove(name)
		if err := root.Link(target, name); err != nil {
			return fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
		return nil
	case tar.TypeXGlobalHeader, tar.TypeXHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
		return nil // metadata the reader has already applied
	}
	return fmt.Errorf("tar entry %q: unsupported type %q (only files, directories and links)", hdr.Name, hdr.Typeflag)
}

func writeEntry(root *os.Root, name string, r io.Reader, perm fs.FileMode) error {
	if err := mkParent(root, name); err != nil {
		return fmt.Errorf("tar entry %q: %w", name, err)
	}
	// A later entry of the same name wins, as with tar(1); removing first
	// means never writing through a link an earlier entry made.
	_ = root.Remove(name)
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("tar entry %q: %w", name, err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("tar entry %q: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("tar entry %q: %w", name, err)
	}
	// The umask may have narrowed perm.
	return root.Chmod(name, perm)
}

func mkParent(root *os.Root, name string) error {
	if d := path.Dir(name); d != "." {
		return root.MkdirAll(d, 0o755)
	}
	return nil
}

// localName cleans an archive path and says whether it stays inside the
// destination.
func localName(name string) (string, bool) {
	name = strings.TrimPrefix(filepath.ToSlash(name), "./")
	if name == "" || name == "." || name == "./" {
		return ".", true
	}
	if path.IsAbs(name) {
		return "", false
	}
	clean := path.Clean(name)
	if !filepath.IsLocal(filepath.FromSlash(clean)) {
		return "", false
	}
	return clean, true
}

// symlinkStaysInside says whether a relative link at name pointing to target
// resolves inside the destination, judged lexically (a link through another
// link is judged again when that one is made, and os.Root never follows a
// link outside).
func symlinkStaysInside(name, target string) bool {
	if target == "" || path.IsAbs(filepath.ToSlash(target)) {
		return false
	}
	_, ok := localName(path.Join(path.Dir(name), filepath.ToSlash(target)))
	return ok
}

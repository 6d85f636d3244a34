package artifact

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// DirDigest returns the digest of a directory as the package doc defines
// it: the sha256 of the lines "<sha256 of file>  ./<path>\n" of its regular
// files, sorted by path, which is what
//
//	find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum
//
// prints in that directory. Operators compute the expected value with it.
func DirDigest(dir string) (string, error) {
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
			files = append(files, "./"+filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("digest of %s: %w", dir, err)
	}
	sort.Strings(files)
	manifest := sha256.New()
	for _, rel := range files {
		sum, err := fileDigest(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return "", fmt.Errorf("digest of %s: %w", dir, err)
		}
		fmt.Fprintf(manifest, "%s  %s\n", sum, rel)
	}
	return hex.EncodeToString(manifest.Sum(nil)), nil
}

// FileDigest returns the sha256 of a file, in hex, as sha256sum prints it.
func FileDigest(path string) (string, error) {
	sum, err := fileDigest(path)
	if err != nil {
		return "", fmt.Errorf("digest of %s: %w", path, err)
	}
	return sum, nil
}

func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

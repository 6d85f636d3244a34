package artifact

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// VerifyLinks checks that every symbolic link under dir resolves inside dir,
// following the links it passes through as the kernel would. A lexical check
// of each link on its own is not enough: b -> a/l/.. leaves the directory
// when a/l -> .. even though neither link does alone.
func VerifyLinks(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		if !resolvesInside(dir, filepath.ToSlash(rel), target) {
			return fmt.Errorf("symbolic link %s -> %s leaves the directory", filepath.ToSlash(rel), target)
		}
		return nil
	})
}

// resolvesInside walks the link at rel (relative to dir) component by
// component, expanding links, and says whether it never climbs above dir.
// Components that do not exist are taken as they are written.
func resolvesInside(dir, rel, target string) bool {
	if path.IsAbs(filepath.ToSlash(target)) {
		return false
	}
	queue := split(path.Dir(rel))
	queue = append(queue, split(filepath.ToSlash(target))...)
	var stack []string
	for hops := 0; len(queue) > 0; {
		c := queue[0]
		queue = queue[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return false
			}
			stack = stack[:len(stack)-1]
			continue
		}
		stack = append(stack, c)
		cur := filepath.Join(dir, filepath.FromSlash(strings.Join(stack, "/")))
		fi, err := os.Lstat(cur)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		if hops++; hops > 40 { // ELOOP
			return false
		}
		t, err := os.Readlink(cur)
		if err != nil || path.IsAbs(filepath.ToSlash(t)) {
			return false
		}
		stack = stack[:len(stack)-1]
		queue = append(split(filepath.ToSlash(t)), queue...)
	}
	return true
}

func split(p string) []string {
	if p == "." || p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// Package fsutil holds the file-system helpers that plugins and core share.
// It imports nothing of Roster.
package fsutil

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Option changes how WriteFileAtomic writes.
type Option func(*options)

type options struct {
	chown     bool
	uid, gid  int
	noReplace bool
	noSync    bool
}

// WithOwner gives the file to uid:gid before it takes its name, so that a
// reader never sees it with the wrong owner (a daemon's configuration, say).
// Changing the owner needs root.
func WithOwner(uid, gid int) Option {
	return func(o *options) { o.chown, o.uid, o.gid = true, uid, gid }
}

// NoReplace makes WriteFileAtomic fail with an error wrapping fs.ErrExist
// when path exists, rather than replace it. The check and the write are one
// step (a hard link), so two writers never both succeed.
func NoReplace() Option {
	return func(o *options) { o.noReplace = true }
}

// NoSync skips the fsyncs, for a file that a crash may lose but that no
// reader may see half-written, written often (a metrics sample taken at
// every health check).
func NoSync() Option {
	return func(o *options) { o.noSync = true }
}

// WriteFileAtomic writes data to path through a temporary file in the same
// directory: the file is written, given mode perm (whatever the umask),
// fsynced and renamed over path, then the directory is fsynced. A reader sees
// the old file or the new one, never a part of one, and a crash leaves one
// of the two. The temporary file starts with mode 0600, so a secret is never
// readable by others, not even for a moment. On failure path is untouched
// and the temporary file is gone; the error names path.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode, opts ...Option) error {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := writeAtomic(path, data, perm, o); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func writeAtomic(path string, data []byte, perm fs.FileMode, o options) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		// Not after a rename: another file may have taken the name since.
		if err != nil || o.noReplace {
			_ = os.Remove(tmp)
		}
	}()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil && o.chown {
		err = f.Chown(o.uid, o.gid)
	}
	if err == nil && !o.noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if o.noReplace {
		// EEXIST, which errors.Is matches to fs.ErrExist.
		err = os.Link(tmp, path)
	} else {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return err
	}
	if o.noSync {
		return nil
	}
	// The new name is durable only once the directory is.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

package local

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// bells carry wake-ups between processes. Each queue has a bell file in the
// bells directory; a sender touches it after its commit (one utimensat call,
// no data written), and every process watches the directory with inotify:
// the kernel delivers the event, with the file's name, to all of them at
// once. Unlike a socket per receiver, nothing needs cleaning up after a
// process dies.
type bells struct {
	dir  string
	f    *os.File
	done sync.WaitGroup
	log  hclog.Logger
}

const bellEvents = unix.IN_ATTRIB | unix.IN_CLOSE_WRITE | unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_TO

func watchBells(dir string, wake func(string), wakeAll func(), log hclog.Logger) (*bells, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if _, err := unix.InotifyAddWatch(fd, dir, bellEvents); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// A non-blocking descriptor goes through Go's poller, so Close wakes
	// the reader below.
	b := &bells{dir: dir, f: os.NewFile(uintptr(fd), "inotify:"+dir), log: log}
	b.done.Add(1)
	go b.loop(wake, wakeAll)
	return b, nil
}

func (b *bells) loop(wake func(string), wakeAll func()) {
	defer b.done.Done()
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := b.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				b.log.Warn("inotify watch stopped, receivers fall back to re-checking", "dir", b.dir, "error", err)
			}
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameLen := int(ev.Len)
			if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
				wakeAll()
			} else if nameLen > 0 {
				raw := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+nameLen]
				wake(cString(raw))
			}
			off += unix.SizeofInotifyEvent + nameLen
		}
	}
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

var touchNow = []unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_NOW}}

// ring touches the queue's bell file, creating it when needed.
func (b *bells) ring(name string) {
	p := filepath.Join(b.dir, name)
	err := unix.UtimesNanoAt(unix.AT_FDCWD, p, touchNow, 0)
	if errors.Is(err, unix.ENOENT) {
		var f *os.File
		if f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
			err = f.Close()
		}
	}
	if err != nil {
		// Receivers elsewhere still find the message on their re-check.
		b.log.Warn("cannot ring queue bell", "path", p, "error", err)
	}
}

// forget rings a deleted queue's bell one last time, so that receivers
// elsewhere find the queue gone, and removes it.
func (b *bells) forget(name string) {
	b.ring(name)
	if err := os.Remove(filepath.Join(b.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		b.log.Warn("cannot remove queue bell", "queue", name, "error", err)
	}
}

func (b *bells) close() error {
	err := b.f.Close()
	b.done.Wait()
	return err
}

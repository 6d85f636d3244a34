package artifact

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
)

// progress throttles a ProgressFunc to about a hundred calls per fetch.
type progress struct {
	mu    sync.Mutex
	fn    ProgressFunc
	total int64
	done  int64
	last  int64
}

func newProgress(fn ProgressFunc) *progress { return &progress{fn: fn, total: -1} }

// setTotal sets the total size once it is known (-1 when it is not).
func (p *progress) setTotal(total int64) {
	p.mu.Lock()
	p.total = total
	p.mu.Unlock()
}

func (p *progress) add(n int64) {
	if p.fn == nil || n == 0 {
		return
	}
	p.mu.Lock()
	p.done += n
	step := int64(1 << 20)
	if p.total > 0 {
		step = max(p.total/100, 64<<10)
	}
	report := p.done-p.last >= step || p.done == p.total
	if report {
		p.last = p.done
	}
	done, total := p.done, p.total
	p.mu.Unlock()
	if report {
		p.fn(done, total)
	}
}

// finish reports the end, once, if the last add did not.
func (p *progress) finish() {
	if p.fn == nil {
		return
	}
	p.mu.Lock()
	done, total, last := p.done, p.total, p.last
	p.last = done
	p.mu.Unlock()
	if done != last || done == 0 {
		if total < 0 {
			total = done
		}
		p.fn(done, total)
	}
}

type progressWriter struct{ p *progress }

func (w progressWriter) Write(b []byte) (int, error) {
	w.p.add(int64(len(b)))
	return len(b), nil
}

// writeBlob copies r into path, hashing and reporting as it goes, and
// returns the digest and size.
func writeBlob(path string, r io.Reader, p *progress) (string, int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h, progressWriter{p}), r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", n, fmt.Errorf("writing %s: %w", path, err)
	}
	p.finish()
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/sdk"
)

func TestNewLogShipper(t *testing.T) {
	if _, err := NewLogShipper("ftp://host/dir"); !errors.Is(err, ErrUnsupportedDestination) {
		t.Fatalf("ftp: %v, want ErrUnsupportedDestination", err)
	}
	if _, err := NewLogShipper("s3:///prefix"); err == nil {
		t.Fatal("an s3 destination without a bucket was accepted")
	}
	s3s, err := NewLogShipper("s3://logs/roster/demo/")
	if err != nil || s3s.(*S3Shipper).Bucket != "logs" || s3s.(*S3Shipper).Prefix != "roster/demo" {
		t.Fatalf("s3 shipper %+v, %v", s3s, err)
	}
	if _, err := NewLogShipper("file://relative/dir"); err == nil {
		t.Fatal("a relative file destination was accepted")
	}
	s, err := NewLogShipper("file:///var/log/roster/")
	if err != nil || s.(*FileShipper).Dir != "/var/log/roster" {
		t.Fatalf("file shipper %+v, %v", s, err)
	}
}

func TestFileShipperStaysInside(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.log")
	if err := os.WriteFile(src, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "dest")
	s := &FileShipper{Dir: dest}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	out, err := s.Ship(context.Background(), "web-1", at, []sdk.LogFile{
		{Name: "../../escape.log", Path: src},
		{Name: "missing.log", Path: filepath.Join(dir, "nope")},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "file://" + filepath.Join(dest, "web-1", "20260102T030405.000Z", "escape.log")
	if len(out) != 1 || out[0] != want {
		t.Fatalf("shipped %v, want [%s] (the missing file skipped)", out, want)
	}
	if _, err := os.Stat(strings.TrimPrefix(want, "file://")); err != nil {
		t.Fatal(err)
	}
	// Nothing readable: an error.
	if _, err := s.Ship(context.Background(), "web-1", at, []sdk.LogFile{{Name: "a", Path: filepath.Join(dir, "nope")}}); err == nil {
		t.Fatal("shipping nothing succeeded")
	}
}

func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, StateFile)
	s, err := loadState(path, "m-1")
	if err != nil || s.State != protocol.StateSpare {
		t.Fatalf("no file: %+v, %v", s, err)
	}
	now := time.Now()
	for i := 0; i < maxApplied+10; i++ {
		s.markApplied(string(rune('a'+i%26))+time.Duration(i).String(), now)
	}
	s.markApplied("old", now.Add(-2*appliedTTL))
	s.markApplied("new", now)
	if len(s.Applied) > maxApplied || !s.applied("new") || s.applied("old") {
		t.Fatalf("%d applied ids kept", len(s.Applied))
	}
	if err := saveState(path, s); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(path, "m-2"); err == nil {
		t.Fatal("another machine's state file was accepted")
	}
	got, err := loadState(path, "m-1")
	if err != nil || !got.applied("new") {
		t.Fatalf("reloaded: %v", err)
	}
	if err := os.WriteFile(path, []byte(`{"version":1,"state":"serving"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(path, "m-1"); err == nil {
		t.Fatal("serving without a commission was accepted")
	}
	if err := os.WriteFile(path, []byte(`{"vers`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(path, "m-1"); err == nil {
		t.Fatal("a torn state file was accepted")
	}
}

package agent

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rosterhq/roster/core/queue/fauxqs"
	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/artifact"
)

// TestS3ShipperUploads ships logs to a real S3-compatible server (fauxqs on
// loopback) and reads them back.
func TestS3ShipperUploads(t *testing.T) {
	t.Parallel()
	endpoint := fauxqs.Start(t)
	client := s3.New(s3.Options{
		Region:       fauxqs.Region,
		Credentials:  fauxqs.Credentials(),
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
	})
	ctx := context.Background()
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("logs")}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	access := filepath.Join(dir, "access.log")
	if err := os.WriteFile(access, []byte("GET / 200\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sh, err := NewLogShipper("s3://logs/demo")
	if err != nil {
		t.Fatal(err)
	}
	s := sh.(*S3Shipper)
	s.S3 = artifact.S3Options{Client: client}
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	out, err := s.Ship(ctx, "web-3", at, []sdk.LogFile{
		{Name: "apache/access.log", Path: access},
		{Name: "gone.log", Path: filepath.Join(dir, "missing")},
	})
	if err != nil {
		t.Fatal(err)
	}
	key := "demo/web-3/20261127T090000.000Z/apache/access.log"
	if len(out) != 1 || out[0] != "s3://logs/"+key {
		t.Fatalf("shipped %v, want [s3://logs/%s] (the missing file skipped)", out, key)
	}
	obj, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("logs"), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Body.Close()
	b, _ := io.ReadAll(obj.Body)
	if string(b) != "GET / 200\n" {
		t.Fatalf("object holds %q", b)
	}
	// A bucket that does not exist: nothing shipped, an error.
	s.Bucket = "no-such-bucket"
	if _, err := s.Ship(ctx, "web-3", at, []sdk.LogFile{{Name: "a.log", Path: access}}); err == nil {
		t.Fatal("shipping to a missing bucket succeeded")
	}
}

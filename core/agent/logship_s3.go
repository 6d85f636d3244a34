package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/artifact"
)

// S3Shipper uploads logs to s3://Bucket/Prefix/<server>/<at>/<name>. It uses
// the same client construction as artifact fetching (the standard credential
// chain; AWS_ENDPOINT_URL_S3 for an S3-compatible server), so an agent needs
// no S3 settings of its own.
type S3Shipper struct {
	Bucket string
	Prefix string // without leading or trailing slash; may be empty
	S3     artifact.S3Options
	// Logger receives a warning for each file skipped; nil means none.
	Logger interface{ Warn(string, ...any) }
}

// newS3Shipper parses s3://bucket[/prefix].
func newS3Shipper(destination string) (*S3Shipper, error) {
	rest := strings.TrimPrefix(destination, "s3://")
	bucket, prefix, _ := strings.Cut(rest, "/")
	if bucket == "" {
		return nil, fmt.Errorf("log destination %q: no bucket (want s3://bucket/prefix)", destination)
	}
	return &S3Shipper{Bucket: bucket, Prefix: strings.Trim(prefix, "/")}, nil
}

// Ship implements LogShipper.
func (s *S3Shipper) Ship(ctx context.Context, server string, at time.Time, files []sdk.LogFile) ([]string, error) {
	client, err := artifact.S3Client(ctx, s.S3)
	if err != nil {
		return nil, err
	}
	base := path.Join(s.Prefix, server, at.UTC().Format(ShipTimeFormat))
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
		key := path.Join(base, strings.ReplaceAll(name, string(os.PathSeparator), "/"))
		if err := s.put(ctx, client, key, f.Path); err != nil {
			errs = append(errs, err)
			if s.Logger != nil {
				s.Logger.Warn("log file not shipped", "name", f.Name, "path", f.Path, "error", err)
			}
			continue
		}
		out = append(out, "s3://"+s.Bucket+"/"+key)
	}
	if len(out) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func (s *S3Shipper) put(ctx context.Context, client *s3.Client, key, file string) error {
	in, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("ship log %s: %w", file, err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("ship log %s: %w", file, err)
	}
	size := st.Size()
	ct := "text/plain; charset=utf-8"
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.Bucket, Key: &key, Body: in, ContentLength: &size, ContentType: &ct,
	}); err != nil {
		return fmt.Errorf("ship log %s to s3://%s/%s: %w", file, s.Bucket, key, err)
	}
	return nil
}

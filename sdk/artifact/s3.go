package artifact

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/rosterhq/roster/sdk"
)

// S3Client returns the S3 client Fetch uses for opts: the standard
// configuration chain, with the endpoint and region overrides applied.
func S3Client(ctx context.Context, opts S3Options) (*s3.Client, error) {
	if opts.Client != nil {
		return opts.Client, nil
	}
	var loadOpts []func(*config.LoadOptions) error
	if opts.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(opts.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("aws configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	pathStyle := opts.PathStyle || opts.Endpoint != "" ||
		os.Getenv("AWS_ENDPOINT_URL_S3") != "" || os.Getenv("AWS_ENDPOINT_URL") != ""
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = pathStyle
		// S3-compatible servers do not all return the flexible checksums
		// newer SDKs ask for; the sha256 option is the check that counts.
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}), nil
}

func fetchS3(ctx context.Context, opts S3Options, bucket, key, blob, tree string, p *progress) (fetchResult, error) {
	client, err := S3Client(ctx, opts)
	if err != nil {
		return fetchResult{}, err
	}
	if key == "" || strings.HasSuffix(key, "/") {
		n, err := fetchS3Prefix(ctx, client, bucket, key, tree, p)
		return fetchResult{dir: true, size: n}, err
	}
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return fetchResult{}, s3Error(err, bucket, key)
	}
	defer out.Body.Close()
	total := int64(-1)
	if out.ContentLength != nil {
		total = *out.ContentLength
	}
	p.setTotal(total)
	sum, n, err := writeBlob(blob, out.Body, p)
	if err != nil {
		return fetchResult{}, err
	}
	if total >= 0 && n != total {
		return fetchResult{}, sdk.Errorf(sdk.ErrUnavailable, "s3://%s/%s: got %d of %d bytes", bucket, key, n, total)
	}
	return fetchResult{sha256: sum, size: n}, nil
}

// fetchS3Prefix downloads every object under prefix into dir, as a tree.
func fetchS3Prefix(ctx context.Context, client *s3.Client, bucket, prefix, dir string, p *progress) (int64, error) {
	var objs []types.Object
	var total int64
	pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return 0, s3Error(err, bucket, prefix)
		}
		for _, o := range page.Contents {
			if o.Key == nil || strings.HasSuffix(*o.Key, "/") {
				continue // a "folder" marker
			}
			objs = append(objs, o)
			total += aws.ToInt64(o.Size)
		}
	}
	if len(objs) == 0 {
		return 0, sdk.Errorf(sdk.ErrNotFound, "s3://%s/%s: no objects under the prefix", bucket, prefix)
	}
	p.setTotal(total)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	var n int64
	for _, o := range objs {
		rel, ok := localName(strings.TrimPrefix(*o.Key, prefix))
		if !ok || rel == "." {
			return 0, fmt.Errorf("s3://%s/%s: object name leaves the destination", bucket, *o.Key)
		}
		local := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
			return 0, err
		}
		out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: o.Key})
		if err != nil {
			return 0, s3Error(err, bucket, *o.Key)
		}
		_, m, err := writeBlob(local, out.Body, newProgress(nil)) // counted below, per object
		out.Body.Close()
		if err != nil {
			return 0, err
		}
		n += m
		p.add(m)
	}
	p.finish()
	return n, nil
}

func s3Error(err error, bucket, key string) error {
	var nsk *types.NoSuchKey
	var nsb *types.NoSuchBucket
	var api smithy.APIError
	where := "s3://" + path.Join(bucket, key)
	switch {
	case errors.As(err, &nsk), errors.As(err, &nsb):
		return sdk.Errorf(sdk.ErrNotFound, "%s: %v", where, err)
	case errors.As(err, &api) && (api.ErrorCode() == "NotFound" || api.ErrorCode() == "NoSuchKey"):
		return sdk.Errorf(sdk.ErrNotFound, "%s: %v", where, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

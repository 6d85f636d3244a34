package artifact

import (
	"context"
	"fmt"
	"net/http"

	"github.com/rosterhq/roster/sdk"
)

func fetchHTTP(ctx context.Context, client *http.Client, url, blob string, p *progress) (fetchResult, error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fetchResult{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fetchResult{}, sdk.Errorf(sdk.ErrUnavailable, "GET: %v", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return fetchResult{}, sdk.Errorf(sdk.ErrNotFound, "GET: %s", resp.Status)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return fetchResult{}, sdk.Errorf(sdk.ErrUnavailable, "GET: %s", resp.Status)
	case resp.StatusCode != http.StatusOK:
		return fetchResult{}, fmt.Errorf("GET: %s", resp.Status)
	}
	p.setTotal(resp.ContentLength)
	sum, n, err := writeBlob(blob, resp.Body, p)
	if err != nil {
		return fetchResult{}, err
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fetchResult{}, sdk.Errorf(sdk.ErrUnavailable, "GET: got %d of %d bytes", n, resp.ContentLength)
	}
	return fetchResult{sha256: sum, size: n}, nil
}

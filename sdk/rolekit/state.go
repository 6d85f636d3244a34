package rolekit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/rosterhq/roster/sdk/fsutil"
)

// LoadState reads the JSON state file at path: nil and no error when there
// is none (the server was never provisioned, or was by nobody yet), an
// error naming the file when it does not parse.
func LoadState[T any](path string) (*T, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	return &v, nil
}

// SaveState writes v as indented JSON to path, atomically (see
// fsutil.WriteFileAtomic, which opts are passed to): a plugin killed
// mid-write leaves the old state, never half a file.
func SaveState(path string, v any, opts ...fsutil.Option) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	return fsutil.WriteFileAtomic(path, append(b, '\n'), 0o644, opts...)
}

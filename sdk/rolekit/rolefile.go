package rolekit

import (
	"fmt"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// ConfigBlock returns the source of the `config` block's body (between its
// braces) of the first role in the role file at path, for a test that
// decodes an example role file against the role's schema
// (roletest.DecodeHCL) as `roster validate` does.
func ConfigBlock(path string) (string, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	f, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		return "", diags
	}
	for _, role := range f.Body.(*hclsyntax.Body).Blocks {
		if role.Type != "role" {
			continue
		}
		for _, b := range role.Body.Blocks {
			if b.Type == "config" {
				return string(src[b.OpenBraceRange.End.Byte:b.CloseBraceRange.Start.Byte]), nil
			}
		}
	}
	return "", fmt.Errorf("%s has no role with a config block", path)
}

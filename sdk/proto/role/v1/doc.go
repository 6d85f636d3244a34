// Package rolev1 is the generated Go code of the role protocol, version 1
// (role.proto beside it; `make proto` regenerates it). Plugin authors do
// not use it: package sdk serves it and sdk/rolehost calls it.
package rolev1

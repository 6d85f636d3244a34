// Package wire holds the pieces of the role protocol that both ends share and
// that do not depend on package sdk: how go-cty types and values travel in
// rolev1.DynamicValue, and the names that mark typed errors in a gRPC status.
// The plugin end lives in package sdk, the host end in sdk/rolehost.
package wire

import (
	"errors"
	"fmt"

	rolev1 "github.com/rosterhq/roster/sdk/proto/role/v1"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
	"github.com/zclconf/go-cty/cty/msgpack"
)

// PluginName is the name of the one plugin in the go-plugin plugin set.
const PluginName = "role"

// ErrorDomain is the domain of the google.rpc.ErrorInfo detail that marks a
// typed sdk error in a gRPC status.
const ErrorDomain = "roster.role.v1"

// The ErrorInfo reasons of the sdk's typed errors. They name the error
// exactly, so that a host tells errors apart even where two kinds would map
// to the same gRPC code.
const (
	ReasonInvalidConfig      = "INVALID_CONFIG"
	ReasonNotFound           = "NOT_FOUND"
	ReasonFailedPrecondition = "FAILED_PRECONDITION"
	ReasonUnavailable        = "UNAVAILABLE"
	ReasonTimeout            = "TIMEOUT"
	ReasonUnimplemented      = "UNIMPLEMENTED"
	ReasonChecksumMismatch   = "CHECKSUM_MISMATCH"
)

// EncodeType returns ty as ctyjson.MarshalType writes it.
func EncodeType(ty cty.Type) ([]byte, error) {
	return ctyjson.MarshalType(ty)
}

// DecodeType reads a type written by EncodeType.
func DecodeType(b []byte) (cty.Type, error) {
	if len(b) == 0 {
		return cty.NilType, errors.New("missing type")
	}
	return ctyjson.UnmarshalType(b)
}

// EncodeValue returns v with its own type. Marks (such as sensitive) are
// dropped: they mean something to the host only. cty.NilVal encodes as nil,
// so that an absent default stays absent.
func EncodeValue(v cty.Value) (*rolev1.DynamicValue, error) {
	if v == cty.NilVal {
		return nil, nil
	}
	v, _ = v.UnmarkDeep()
	if !v.IsWhollyKnown() {
		return nil, errors.New("value is not wholly known: unknown values cannot be sent to a plugin")
	}
	ty := v.Type()
	tj, err := ctyjson.MarshalType(ty)
	if err != nil {
		return nil, fmt.Errorf("encoding type %s: %w", ty.FriendlyName(), err)
	}
	mp, err := msgpack.Marshal(v, ty)
	if err != nil {
		return nil, fmt.Errorf("encoding value of type %s: %w", ty.FriendlyName(), err)
	}
	return &rolev1.DynamicValue{TypeJson: tj, Msgpack: mp}, nil
}

// DecodeValue reads a value written by EncodeValue; nil decodes as
// cty.NilVal.
func DecodeValue(dv *rolev1.DynamicValue) (cty.Value, error) {
	if dv == nil {
		return cty.NilVal, nil
	}
	ty, err := DecodeType(dv.GetTypeJson())
	if err != nil {
		return cty.NilVal, fmt.Errorf("decoding value type: %w", err)
	}
	v, err := msgpack.Unmarshal(dv.GetMsgpack(), ty)
	if err != nil {
		return cty.NilVal, fmt.Errorf("decoding value of type %s: %w", ty.FriendlyName(), err)
	}
	return v, nil
}

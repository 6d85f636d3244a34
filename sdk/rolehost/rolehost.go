// Package rolehost is the host end of the role protocol: what core (or a
// test) uses to talk to a role plugin that package sdk serves. Plugins never
// import it.
//
// Launching a plugin binary with hashicorp/go-plugin:
//
//	client := plugin.NewClient(rolehost.ClientConfig(exec.Command(path), logger))
//	defer client.Kill()
//	role, err := rolehost.Dispense(client)
//	// role is a rolehost.Role: sdk.Role plus sdk.Configurer
//	info, err := role.Info(ctx)
//
// ClientConfig fixes what every host must agree on with sdk.Serve: the
// handshake (sdk.HandshakeConfig), the versioned plugin sets (PluginSets),
// gRPC as the only protocol, and AutoMTLS. The caller owns the rest of the
// returned plugin.ClientConfig (Managed, StartTimeout, Stderr, the command's
// environment…) and may change it before plugin.NewClient.
//
// The Role that Dispense returns turns every call into a gRPC call. Config
// values travel as msgpack with their cty type, so every cty type
// round-trips; unknown values are refused. Errors come back typed: a plugin's
// sdk.Errorf(sdk.ErrNotFound, "…") arrives as an *sdk.Error whose Kind is
// sdk.ErrNotFound, so errors.Is(err, sdk.ErrNotFound) holds on the host. When
// the caller's context ends first, the error also wraps
// context.DeadlineExceeded or context.Canceled. Deadlines propagate: the
// plugin's context ends with the caller's. A plugin that cannot be reached
// (it died) gives errors that wrap sdk.ErrUnavailable. Configure returns an
// error wrapping sdk.ErrUnimplemented when the plugin does not implement
// sdk.Configurer.
//
// To serve a role in the same process over a real gRPC connection (tests),
// register Plugin(role, logger) on both ends, as sdk/roletest's InProcess
// does with go-plugin's plugin.TestPluginGRPCConn, and call DispenseFrom.
// Direct(role) skips the transport altogether.
package rolehost

import (
	"context"
	"errors"
	"fmt"
	"os/exec"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/rosterhq/roster/sdk"
	rolev1 "github.com/rosterhq/roster/sdk/proto/role/v1"
	"google.golang.org/grpc"
)

// Role is a role plugin as the host sees it: the sdk.Role methods plus
// Configure, which every Role returned by this package has, whether or not
// the plugin implements it.
type Role interface {
	sdk.Role
	sdk.Configurer
}

// PluginSets returns the versioned plugin sets a host passes to
// plugin.ClientConfig.VersionedPlugins: sdk.ProtocolVersion and, later,
// other versions beside it.
func PluginSets() map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		sdk.ProtocolVersion: {sdk.PluginName: Plugin(nil, nil)},
	}
}

// AllowedProtocols is the protocols a host accepts: gRPC only.
func AllowedProtocols() []plugin.Protocol {
	return []plugin.Protocol{plugin.ProtocolGRPC}
}

// ClientConfig returns the go-plugin client configuration to launch cmd as
// a role plugin, logging through logger (its plugin's log lines arrive
// through a sub-logger named after the binary). The caller may set further
// fields before plugin.NewClient.
func ClientConfig(cmd *exec.Cmd, logger hclog.Logger) *plugin.ClientConfig {
	return &plugin.ClientConfig{
		HandshakeConfig:  sdk.HandshakeConfig(),
		VersionedPlugins: PluginSets(),
		Cmd:              cmd,
		AllowedProtocols: AllowedProtocols(),
		AutoMTLS:         true,
		Logger:           logger,
	}
}

// Dispense starts client's plugin process if it is not running yet and
// returns the role it serves.
func Dispense(client *plugin.Client) (Role, error) {
	cp, err := client.Client()
	if err != nil {
		return nil, fmt.Errorf("starting role plugin: %w", err)
	}
	if v := client.NegotiatedVersion(); v != sdk.ProtocolVersion {
		return nil, fmt.Errorf("role plugin speaks protocol version %d, this host speaks %d", v, sdk.ProtocolVersion)
	}
	return DispenseFrom(cp)
}

// DispenseFrom returns the role served on an established connection, such
// as the *plugin.GRPCClient of plugin.TestPluginGRPCConn.
func DispenseFrom(cp plugin.ClientProtocol) (Role, error) {
	raw, err := cp.Dispense(sdk.PluginName)
	if err != nil {
		return nil, fmt.Errorf("dispensing role plugin: %w", err)
	}
	role, ok := raw.(Role)
	if !ok {
		return nil, fmt.Errorf("role plugin dispensed a %T, not a role", raw)
	}
	return role, nil
}

// Plugin returns the go-plugin plugin for both ends of the role protocol:
// its server end serves role (logging through logger; nil for hclog's
// default), its client end returns a Role. A host that only launches
// plugins passes nil, nil (as PluginSets does).
func Plugin(role sdk.Role, logger hclog.Logger) plugin.Plugin {
	return &grpcPlugin{GRPCPlugin: sdk.GRPCPlugin{Role: role, Logger: logger}}
}

// grpcPlugin adds the client end to sdk's server end.
type grpcPlugin struct {
	sdk.GRPCPlugin
}

// GRPCClient returns the client adapter.
func (p *grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return newClient(rolev1.NewRoleServiceClient(conn)), nil
}

var _ plugin.GRPCPlugin = (*grpcPlugin)(nil)

// Direct returns role as a Role without any transport, for hosts and tests
// that want a role's behaviour without a plugin: Info fills in the protocol
// version and Configurable as Serve does, and Configure returns an error
// wrapping sdk.ErrUnimplemented when role does not implement it. Values are
// handed over as they are, not re-encoded.
func Direct(role sdk.Role) Role {
	return direct{role}
}

type direct struct{ sdk.Role }

func (d direct) Info(ctx context.Context) (sdk.Info, error) {
	info, err := d.Role.Info(ctx)
	if err != nil {
		return info, err
	}
	info.ProtocolVersion = sdk.ProtocolVersion
	_, info.Configurable = d.Role.(sdk.Configurer)
	return info, nil
}

func (d direct) Configure(ctx context.Context, req sdk.ConfigureRequest) error {
	c, ok := d.Role.(sdk.Configurer)
	if !ok {
		return sdk.Errorf(sdk.ErrUnimplemented, "the role does not implement Configure")
	}
	return c.Configure(ctx, req)
}

// errNoResult is returned when a plugin ends Provision without a result.
var errNoResult = errors.New("role plugin ended Provision without a result")

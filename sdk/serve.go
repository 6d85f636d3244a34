package sdk

import (
	"context"
	"errors"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/rosterhq/roster/sdk/internal/wire"
	rolev1 "github.com/rosterhq/roster/sdk/proto/role/v1"
	"google.golang.org/grpc"
)

// The handshake that core and a role plugin must agree on before anything
// else. The cookie is not a security measure: it only stops a plugin binary
// started by hand from waiting silently for a host that will never come.
const (
	MagicCookieKey   = "ROSTER_PLUGIN"
	MagicCookieValue = "a1f3c2d8-roster-role-plugin-7e94b0"
)

// PluginName is the name the role is dispensed under in go-plugin's plugin
// set.
const PluginName = wire.PluginName

// LogLevelEnv names the environment variable that sets the level of the
// plugin's log (trace, debug, info, warn, error; info when unset). Core
// passes it to every plugin it starts.
const LogLevelEnv = "ROSTER_PLUGIN_LOG_LEVEL"

// HandshakeConfig returns the go-plugin handshake of the role protocol. Its
// ProtocolVersion is ProtocolVersion; hosts negotiate the version through
// VersionedPlugins, so that a later protocol can be served beside this one.
func HandshakeConfig() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   MagicCookieKey,
		MagicCookieValue: MagicCookieValue,
	}
}

// Serve serves role as a role plugin and returns when the host is done with
// it. It is all a plugin's main function does:
//
//	func main() { sdk.Serve(&myRole{}) }
//
// The plugin speaks gRPC only (net/rpc is refused) with mutual TLS set up by
// the host, and logs JSON lines to stderr, which the host forwards to its own
// log. Started by hand, outside Roster, it prints a short explanation and
// exits with status 1.
func Serve(role Role) {
	cfg := ServeConfig(role)
	hclog.SetDefault(cfg.Logger)
	plugin.Serve(cfg)
}

// ServeConfig returns the go-plugin configuration that Serve uses, for hosts
// that serve a role themselves, such as the roster binary serving a built-in
// role when it re-executes itself. Change its Logger or Test fields before
// passing it to plugin.Serve if you must; leave the rest alone.
func ServeConfig(role Role) *plugin.ServeConfig {
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "role",
		Level:      logLevel(),
		Output:     os.Stderr,
		JSONFormat: true,
	})
	return &plugin.ServeConfig{
		HandshakeConfig: HandshakeConfig(),
		VersionedPlugins: map[int]plugin.PluginSet{
			ProtocolVersion: {PluginName: &GRPCPlugin{Role: role, Logger: logger}},
		},
		GRPCServer: plugin.DefaultGRPCServer,
		Logger:     logger,
	}
}

func logLevel() hclog.Level {
	if l := hclog.LevelFromString(os.Getenv(LogLevelEnv)); l != hclog.NoLevel {
		return l
	}
	return hclog.Info
}

// GRPCPlugin is the go-plugin plugin that serves a Role over gRPC. Plugin
// authors never use it: Serve does. Hosts use it, through sdk/rolehost, to
// serve a role over an in-process connection. It refuses net/rpc, and its
// client side is in sdk/rolehost.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Role is the role served.
	Role Role
	// Logger is the logger the role's calls get through Logger(ctx); nil
	// for hclog's default logger.
	Logger hclog.Logger
}

// GRPCServer registers the role service on s.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Role == nil {
		return errors.New("sdk: GRPCPlugin has no Role to serve")
	}
	logger := p.Logger
	if logger == nil {
		logger = hclog.Default()
	}
	rolev1.RegisterRoleServiceServer(s, newGRPCServer(p.Role, logger))
	return nil
}

// GRPCClient refuses: the host side of the protocol is package sdk/rolehost,
// which plugins need not link.
func (p *GRPCPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("sdk: the client side of a role plugin is in package github.com/rosterhq/roster/sdk/rolehost")
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

type loggerKey struct{}

// Logger returns the logger for the call that ctx belongs to: a named
// sub-logger of the plugin's log that names the call and the server, and
// that the host forwards to its own log. Outside a call it returns hclog's
// default logger.
func Logger(ctx context.Context) hclog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(hclog.Logger); ok {
		return l
	}
	return hclog.Default()
}

// ContextWithLogger returns a context whose Logger is l, for tests that call
// a Role's methods directly.
func ContextWithLogger(ctx context.Context, l hclog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

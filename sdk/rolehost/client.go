package rolehost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/internal/wire"
	rolev1 "github.com/rosterhq/roster/sdk/proto/role/v1"
	"github.com/zclconf/go-cty/cty"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// client is the host end of the role protocol.
type client struct {
	rpc rolev1.RoleServiceClient

	mu sync.Mutex
	// configurable is what the plugin's Info said, nil before Info: it
	// spares Configure a call that the plugin would refuse anyway.
	configurable *bool
}

func newClient(rpc rolev1.RoleServiceClient) *client {
	return &client{rpc: rpc}
}

func (c *client) Info(ctx context.Context) (sdk.Info, error) {
	resp, err := c.rpc.Info(ctx, &rolev1.InfoRequest{})
	if err != nil {
		return sdk.Info{}, fromStatus(ctx, "info", err)
	}
	configurable := resp.GetConfigurable()
	c.mu.Lock()
	c.configurable = &configurable
	c.mu.Unlock()
	return sdk.Info{
		Name:            resp.GetName(),
		Version:         resp.GetVersion(),
		ProtocolVersion: int(resp.GetProtocolVersion()),
		Description:     resp.GetDescription(),
		Configurable:    configurable,
		Stateful:        resp.GetStateful(),
	}, nil
}

func (c *client) ConfigSchema(ctx context.Context) (sdk.Schema, error) {
	resp, err := c.rpc.ConfigSchema(ctx, &rolev1.ConfigSchemaRequest{})
	if err != nil {
		return sdk.Schema{}, fromStatus(ctx, "config_schema", err)
	}
	s, err := schemaFromProto(resp.GetSchema())
	if err != nil {
		return sdk.Schema{}, fmt.Errorf("role plugin sent a config schema that cannot be read: %w", err)
	}
	return s, nil
}

func (c *client) Provision(ctx context.Context, req sdk.ProvisionRequest) (sdk.ProvisionResponse, error) {
	cfg, err := configToProto(req.Config)
	if err != nil {
		return sdk.ProvisionResponse{}, err
	}
	// The stream gets its own cancel so that an early return below ends it
	// instead of leaving it to the caller's context.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Provision(sctx, &rolev1.ProvisionRequest{
		Server: serverToProto(req.Server),
		Config: cfg,
		Peers:  peersToProto(req.Peers),
	})
	if err != nil {
		return sdk.ProvisionResponse{}, fromStatus(ctx, "provision", err)
	}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return sdk.ProvisionResponse{}, errNoResult
		}
		if err != nil {
			return sdk.ProvisionResponse{}, fromStatus(ctx, "provision", err)
		}
		switch e := ev.GetEvent().(type) {
		case *rolev1.ProvisionEvent_Progress:
			if req.Progress != nil {
				req.Progress(sdk.Progress{Step: e.Progress.GetStep(), Message: e.Progress.GetMessage(), Fraction: e.Progress.GetFraction()})
			}
		case *rolev1.ProvisionEvent_Result:
			return sdk.ProvisionResponse{Endpoints: endpoints(e.Result.GetEndpoints())}, nil
		}
	}
}

func (c *client) HealthCheck(ctx context.Context, req sdk.HealthCheckRequest) (sdk.HealthCheckResponse, error) {
	cfg, err := configToProto(req.Config)
	if err != nil {
		return sdk.HealthCheckResponse{}, err
	}
	resp, err := c.rpc.HealthCheck(ctx, &rolev1.HealthCheckRequest{
		Server: serverToProto(req.Server), Config: cfg, Endpoints: req.Endpoints,
	})
	if err != nil {
		return sdk.HealthCheckResponse{}, fromStatus(ctx, "health_check", err)
	}
	return sdk.HealthCheckResponse{Healthy: resp.GetHealthy(), Reason: resp.GetReason(), Metrics: resp.GetMetrics()}, nil
}

func (c *client) Drain(ctx context.Context, req sdk.DrainRequest) (sdk.DrainResponse, error) {
	cfg, err := configToProto(req.Config)
	if err != nil {
		return sdk.DrainResponse{}, err
	}
	pr := &rolev1.DrainRequest{Server: serverToProto(req.Server), Config: cfg, Endpoints: req.Endpoints}
	if !req.Deadline.IsZero() {
		pr.Deadline = timestamppb.New(req.Deadline)
	}
	resp, err := c.rpc.Drain(ctx, pr)
	if err != nil {
		return sdk.DrainResponse{}, fromStatus(ctx, "drain", err)
	}
	return sdk.DrainResponse{OpenConnections: int(resp.GetOpenConnections())}, nil
}

func (c *client) Teardown(ctx context.Context, req sdk.TeardownRequest) (sdk.TeardownResponse, error) {
	cfg, err := configToProto(req.Config)
	if err != nil {
		return sdk.TeardownResponse{}, err
	}
	resp, err := c.rpc.Teardown(ctx, &rolev1.TeardownRequest{
		Server: serverToProto(req.Server), Config: cfg, Endpoints: req.Endpoints,
	})
	if err != nil {
		return sdk.TeardownResponse{}, fromStatus(ctx, "teardown", err)
	}
	var out sdk.TeardownResponse
	for _, l := range resp.GetLogs() {
		out.Logs = append(out.Logs, sdk.LogFile{Name: l.GetName(), Path: l.GetPath()})
	}
	return out, nil
}

func (c *client) Configure(ctx context.Context, req sdk.ConfigureRequest) error {
	c.mu.Lock()
	known := c.configurable
	c.mu.Unlock()
	if known != nil && !*known {
		return sdk.Errorf(sdk.ErrUnimplemented, "the role plugin does not implement Configure")
	}
	cfg, err := configToProto(req.Config)
	if err != nil {
		return err
	}
	_, err = c.rpc.Configure(ctx, &rolev1.ConfigureRequest{
		Server: serverToProto(req.Server), Config: cfg, Endpoints: req.Endpoints, Peers: peersToProto(req.Peers),
	})
	if err != nil {
		return fromStatus(ctx, "configure", err)
	}
	return nil
}

func endpoints(m map[string]string) sdk.Endpoints {
	if m == nil {
		return nil
	}
	return sdk.Endpoints(m)
}

func serverToProto(s sdk.Server) *rolev1.Server {
	return &rolev1.Server{Role: s.Role, Name: s.Name, MachineId: s.MachineID, WorkDir: s.WorkDir}
}

func peersToProto(m map[string][]sdk.Peer) map[string]*rolev1.PeerList {
	if m == nil {
		return nil
	}
	out := make(map[string]*rolev1.PeerList, len(m))
	for role, peers := range m {
		pl := &rolev1.PeerList{}
		for _, p := range peers {
			pl.Peers = append(pl.Peers, &rolev1.Peer{Name: p.Name, Endpoints: p.Endpoints})
		}
		out[role] = pl
	}
	return out
}

func configToProto(c sdk.Config) (*rolev1.DynamicValue, error) {
	dv, err := wire.EncodeValue(c.Value())
	if err != nil {
		return nil, sdk.Errorf(sdk.ErrInvalidConfig, "encoding the config values for the role plugin: %v", err)
	}
	return dv, nil
}

func schemaFromProto(ps *rolev1.Schema) (sdk.Schema, error) {
	var s sdk.Schema
	for _, a := range ps.GetAttributes() {
		ty, err := wire.DecodeType(a.GetTypeJson())
		if err != nil {
			return sdk.Schema{}, fmt.Errorf("attribute %q: %w", a.GetName(), err)
		}
		def, err := wire.DecodeValue(a.GetDefault())
		if err != nil {
			return sdk.Schema{}, fmt.Errorf("attribute %q default: %w", a.GetName(), err)
		}
		if def == cty.NilVal {
			def = sdk.NoValue
		}
		s.Attributes = append(s.Attributes, sdk.Attribute{
			Name: a.GetName(), Type: ty, Required: a.GetRequired(), Default: def,
			Description: a.GetDescription(), Sensitive: a.GetSensitive(),
		})
	}
	for _, b := range ps.GetBlocks() {
		nested, err := schemaFromProto(b.GetSchema())
		if err != nil {
			return sdk.Schema{}, fmt.Errorf("block %q: %w", b.GetName(), err)
		}
		n, err := nestingFromProto(b.GetNesting())
		if err != nil {
			return sdk.Schema{}, fmt.Errorf("block %q: %w", b.GetName(), err)
		}
		s.Blocks = append(s.Blocks, sdk.Block{
			Name: b.GetName(), Nesting: n, MinItems: int(b.GetMinItems()), MaxItems: int(b.GetMaxItems()),
			Schema: nested, Description: b.GetDescription(),
		})
	}
	return s, nil
}

func nestingFromProto(n rolev1.Nesting) (sdk.Nesting, error) {
	switch n {
	case rolev1.Nesting_NESTING_SINGLE:
		return sdk.NestingSingle, nil
	case rolev1.Nesting_NESTING_LIST:
		return sdk.NestingList, nil
	case rolev1.Nesting_NESTING_MAP:
		return sdk.NestingMap, nil
	}
	return 0, fmt.Errorf("unknown block nesting %v", n)
}

// kindsByReason maps the ErrorInfo reasons to the typed errors; sdk holds
// the other direction.
var kindsByReason = map[string]error{
	wire.ReasonInvalidConfig:      sdk.ErrInvalidConfig,
	wire.ReasonNotFound:           sdk.ErrNotFound,
	wire.ReasonFailedPrecondition: sdk.ErrFailedPrecondition,
	wire.ReasonUnavailable:        sdk.ErrUnavailable,
	wire.ReasonTimeout:            sdk.ErrTimeout,
	wire.ReasonUnimplemented:      sdk.ErrUnimplemented,
	wire.ReasonChecksumMismatch:   sdk.ErrChecksumMismatch,
}

// kindsByCode covers statuses without an ErrorInfo: those that gRPC itself
// makes (a plugin that died is Unavailable, a deadline that passed is
// DeadlineExceeded) and those of plugins built by other means.
var kindsByCode = map[codes.Code]error{
	codes.InvalidArgument:    sdk.ErrInvalidConfig,
	codes.NotFound:           sdk.ErrNotFound,
	codes.FailedPrecondition: sdk.ErrFailedPrecondition,
	codes.Unavailable:        sdk.ErrUnavailable,
	codes.DeadlineExceeded:   sdk.ErrTimeout,
	codes.Unimplemented:      sdk.ErrUnimplemented,
	codes.DataLoss:           sdk.ErrChecksumMismatch,
}

// fromStatus turns a gRPC error into the error the role returned: an
// *sdk.Error of the same kind, plus the caller's own context error when its
// context ended.
func fromStatus(ctx context.Context, call string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("role plugin %s: %w", call, err)
	}
	var kind error
	if st.Code() == codes.Canceled && ctx.Err() == nil {
		// The caller did not cancel: the connection to the plugin closed
		// under the call (the host killed the plugin, or is shutting down).
		return &sdk.Error{Kind: sdk.ErrUnavailable, Message: "role plugin " + call + ": " + st.Message()}
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == wire.ErrorDomain {
			kind = kindsByReason[info.GetReason()]
		}
	}
	if kind == nil {
		kind = kindsByCode[st.Code()]
	}
	var out error
	if kind != nil {
		out = &sdk.Error{Kind: kind, Message: st.Message()}
	} else {
		out = errors.New(st.Message())
	}
	if cerr := ctx.Err(); cerr != nil {
		return &contextError{err: out, ctx: cerr}
	}
	switch st.Code() {
	case codes.DeadlineExceeded:
		return &contextError{err: out, ctx: context.DeadlineExceeded}
	case codes.Canceled:
		return &contextError{err: out, ctx: context.Canceled}
	}
	return out
}

// contextError is a plugin's error that also says the call's context
// ended, so that both errors.Is(err, sdk.ErrTimeout) and errors.Is(err,
// context.DeadlineExceeded) hold.
type contextError struct {
	err error
	ctx error
}

func (e *contextError) Error() string   { return e.err.Error() }
func (e *contextError) Unwrap() []error { return []error{e.err, e.ctx} }

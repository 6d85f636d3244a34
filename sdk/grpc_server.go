package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/rosterhq/roster/sdk/internal/wire"
	rolev1 "github.com/rosterhq/roster/sdk/proto/role/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// grpcServer is the plugin end of the role protocol: it turns gRPC calls
// into calls of the Role and the Role's answers and errors back into
// messages and statuses.
type grpcServer struct {
	rolev1.UnimplementedRoleServiceServer
	role   Role
	logger hclog.Logger
}

func newGRPCServer(role Role, logger hclog.Logger) *grpcServer {
	return &grpcServer{role: role, logger: logger}
}

func (s *grpcServer) callContext(ctx context.Context, call string, srv *rolev1.Server) context.Context {
	l := s.logger.Named(call)
	if srv.GetName() != "" {
		l = l.With("server", srv.GetName())
	}
	return ContextWithLogger(ctx, l)
}

func (s *grpcServer) Info(ctx context.Context, _ *rolev1.InfoRequest) (*rolev1.InfoResponse, error) {
	info, err := s.role.Info(s.callContext(ctx, "info", nil))
	if err != nil {
		return nil, toStatus(err)
	}
	_, configurable := s.role.(Configurer)
	return &rolev1.InfoResponse{
		Name:            info.Name,
		Version:         info.Version,
		ProtocolVersion: ProtocolVersion,
		Description:     info.Description,
		Configurable:    configurable,
		Stateful:        info.Stateful,
	}, nil
}

func (s *grpcServer) ConfigSchema(ctx context.Context, _ *rolev1.ConfigSchemaRequest) (*rolev1.ConfigSchemaResponse, error) {
	schema, err := s.role.ConfigSchema(s.callContext(ctx, "config_schema", nil))
	if err != nil {
		return nil, toStatus(err)
	}
	ps, err := schemaToProto(schema)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encoding the config schema: %v", err)
	}
	return &rolev1.ConfigSchemaResponse{Schema: ps}, nil
}

func (s *grpcServer) Provision(req *rolev1.ProvisionRequest, stream rolev1.RoleService_ProvisionServer) error {
	ctx := s.callContext(stream.Context(), "provision", req.GetServer())
	cfg, err := configFromProto(req.GetConfig())
	if err != nil {
		return err
	}
	// The role may report from several goroutines, and late, after Provision
	// returned: sends are serialised and those after the end are dropped,
	// since a stream must not be written once its handler returned.
	var mu sync.Mutex
	done := false
	progress := func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return
		}
		err := stream.Send(&rolev1.ProvisionEvent{Event: &rolev1.ProvisionEvent_Progress{Progress: &rolev1.Progress{
			Step: p.Step, Message: p.Message, Fraction: p.Fraction,
		}}})
		if err != nil {
			Logger(ctx).Debug("progress not sent", "error", err)
		}
	}
	resp, err := s.role.Provision(ctx, ProvisionRequest{
		Server:   serverFromProto(req.GetServer()),
		Config:   cfg,
		Peers:    peersFromProto(req.GetPeers()),
		Progress: progress,
	})
	mu.Lock()
	done = true
	mu.Unlock()
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&rolev1.ProvisionEvent{Event: &rolev1.ProvisionEvent_Result{Result: &rolev1.ProvisionResult{
		Endpoints: resp.Endpoints,
	}}})
}

func (s *grpcServer) HealthCheck(ctx context.Context, req *rolev1.HealthCheckRequest) (*rolev1.HealthCheckResponse, error) {
	ctx = s.callContext(ctx, "health_check", req.GetServer())
	cfg, err := configFromProto(req.GetConfig())
	if err != nil {
		return nil, err
	}
	resp, err := s.role.HealthCheck(ctx, HealthCheckRequest{
		Server:    serverFromProto(req.GetServer()),
		Config:    cfg,
		Endpoints: req.GetEndpoints(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &rolev1.HealthCheckResponse{Healthy: resp.Healthy, Reason: resp.Reason, Metrics: resp.Metrics}, nil
}

func (s *grpcServer) Drain(ctx context.Context, req *rolev1.DrainRequest) (*rolev1.DrainResponse, error) {
	ctx = s.callContext(ctx, "drain", req.GetServer())
	cfg, err := configFromProto(req.GetConfig())
	if err != nil {
		return nil, err
	}
	dr := DrainRequest{
		Server:    serverFromProto(req.GetServer()),
		Config:    cfg,
		Endpoints: req.GetEndpoints(),
	}
	if req.GetDeadline() != nil {
		dr.Deadline = req.GetDeadline().AsTime()
	}
	resp, err := s.role.Drain(ctx, dr)
	if err != nil {
		return nil, toStatus(err)
	}
	return &rolev1.DrainResponse{OpenConnections: int64(resp.OpenConnections)}, nil
}

func (s *grpcServer) Teardown(ctx context.Context, req *rolev1.TeardownRequest) (*rolev1.TeardownResponse, error) {
	ctx = s.callContext(ctx, "teardown", req.GetServer())
	cfg, err := configFromProto(req.GetConfig())
	if err != nil {
		return nil, err
	}
	resp, err := s.role.Teardown(ctx, TeardownRequest{
		Server:    serverFromProto(req.GetServer()),
		Config:    cfg,
		Endpoints: req.GetEndpoints(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	out := &rolev1.TeardownResponse{}
	for _, l := range resp.Logs {
		out.Logs = append(out.Logs, &rolev1.LogFile{Name: l.Name, Path: l.Path})
	}
	return out, nil
}

func (s *grpcServer) Configure(ctx context.Context, req *rolev1.ConfigureRequest) (*rolev1.ConfigureResponse, error) {
	c, ok := s.role.(Configurer)
	if !ok {
		return nil, toStatus(Errorf(ErrUnimplemented, "the role does not implement Configure"))
	}
	ctx = s.callContext(ctx, "configure", req.GetServer())
	cfg, err := configFromProto(req.GetConfig())
	if err != nil {
		return nil, err
	}
	err = c.Configure(ctx, ConfigureRequest{
		Server:    serverFromProto(req.GetServer()),
		Config:    cfg,
		Endpoints: req.GetEndpoints(),
		Peers:     peersFromProto(req.GetPeers()),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &rolev1.ConfigureResponse{}, nil
}

func serverFromProto(s *rolev1.Server) Server {
	return Server{Role: s.GetRole(), Name: s.GetName(), MachineID: s.GetMachineId(), WorkDir: s.GetWorkDir()}
}

func peersFromProto(m map[string]*rolev1.PeerList) map[string][]Peer {
	if m == nil {
		return nil
	}
	out := make(map[string][]Peer, len(m))
	for role, pl := range m {
		peers := make([]Peer, 0, len(pl.GetPeers()))
		for _, p := range pl.GetPeers() {
			peers = append(peers, Peer{Name: p.GetName(), Endpoints: p.GetEndpoints()})
		}
		out[role] = peers
	}
	return out
}

func configFromProto(dv *rolev1.DynamicValue) (Config, error) {
	v, err := wire.DecodeValue(dv)
	if err != nil {
		return Config{}, status.Errorf(codes.InvalidArgument, "decoding the config values: %v", err)
	}
	return NewConfig(v), nil
}

func schemaToProto(s Schema) (*rolev1.Schema, error) {
	out := &rolev1.Schema{}
	for _, a := range s.Attributes {
		tj, err := wire.EncodeType(a.Type)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", a.Name, err)
		}
		def, err := wire.EncodeValue(a.Default)
		if err != nil {
			return nil, fmt.Errorf("attribute %q default: %w", a.Name, err)
		}
		out.Attributes = append(out.Attributes, &rolev1.Attribute{
			Name: a.Name, TypeJson: tj, Required: a.Required, Default: def,
			Description: a.Description, Sensitive: a.Sensitive,
		})
	}
	for _, b := range s.Blocks {
		nested, err := schemaToProto(b.Schema)
		if err != nil {
			return nil, fmt.Errorf("block %q: %w", b.Name, err)
		}
		out.Blocks = append(out.Blocks, &rolev1.Block{
			Name: b.Name, Nesting: nestingToProto(b.Nesting), MinItems: int32(b.MinItems), MaxItems: int32(b.MaxItems),
			Schema: nested, Description: b.Description,
		})
	}
	return out, nil
}

func nestingToProto(n Nesting) rolev1.Nesting {
	switch n {
	case NestingSingle:
		return rolev1.Nesting_NESTING_SINGLE
	case NestingList:
		return rolev1.Nesting_NESTING_LIST
	case NestingMap:
		return rolev1.Nesting_NESTING_MAP
	}
	return rolev1.Nesting_NESTING_UNSPECIFIED
}

// errorKinds maps each typed error to its gRPC code and ErrorInfo reason.
// sdk/rolehost holds the reverse table; a test keeps the two in step.
var errorKinds = []struct {
	kind   error
	code   codes.Code
	reason string
}{
	{ErrInvalidConfig, codes.InvalidArgument, wire.ReasonInvalidConfig},
	{ErrNotFound, codes.NotFound, wire.ReasonNotFound},
	{ErrFailedPrecondition, codes.FailedPrecondition, wire.ReasonFailedPrecondition},
	{ErrUnavailable, codes.Unavailable, wire.ReasonUnavailable},
	{ErrTimeout, codes.DeadlineExceeded, wire.ReasonTimeout},
	{ErrUnimplemented, codes.Unimplemented, wire.ReasonUnimplemented},
	{ErrChecksumMismatch, codes.DataLoss, wire.ReasonChecksumMismatch},
}

// toStatus turns a role's error into a gRPC status error: a typed error
// keeps its kind (code plus ErrorInfo reason), a context error becomes
// DeadlineExceeded or Canceled, anything else Unknown with its message.
func toStatus(err error) error {
	for _, k := range errorKinds {
		if errors.Is(err, k.kind) {
			return statusWithReason(k.code, kindMessage(err, k.kind), k.reason)
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return statusWithReason(codes.DeadlineExceeded, err.Error(), wire.ReasonTimeout)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		// A gRPC error from something the role called: keep its code, drop
		// its details, which belong to another protocol.
		return status.Error(st.Code(), st.Message())
	}
	return status.Error(codes.Unknown, err.Error())
}

// kindMessage returns err's message without the kind's own prefix, which
// the host's *Error puts back.
func kindMessage(err, kind error) string {
	var e *Error
	if errors.As(err, &e) && e == err && e.Kind == kind {
		return e.Message
	}
	msg := err.Error()
	prefix := kind.Error() + ": "
	if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		return msg[len(prefix):]
	}
	if msg == kind.Error() {
		return ""
	}
	return msg
}

func statusWithReason(code codes.Code, msg, reason string) error {
	st := status.New(code, msg)
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: wire.ErrorDomain}); err == nil {
		st = withInfo
	}
	return st.Err()
}

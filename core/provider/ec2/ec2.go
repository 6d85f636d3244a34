package ec2

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/hashicorp/go-hclog"

	"github.com/rosterhq/roster/core/provider"
)

// Options are what the provider needs besides its HCL block.
type Options struct {
	// Cluster names the cluster: machines are tagged with it and List
	// sees only its machines. Required.
	Cluster string
	// OrderPublicKey is the orchestrator's order public key, written to
	// each machine as order.pub. Required.
	OrderPublicKey ed25519.PublicKey
	// Agent holds the agent settings taken from roster.hcl.
	Agent AgentOptions

	// Endpoint overrides the EC2 endpoint (BaseEndpoint); tests point it
	// at the recorded-request fake.
	Endpoint string
	// Profile selects a shared config profile; empty means the default.
	Profile string
	// Credentials replaces the standard credential chain when set; the
	// shared config and credentials files are then not read at all
	// (tests pass static dummy credentials here).
	Credentials aws.CredentialsProvider
	// MaxAttempts is how many times a call is tried, the first included,
	// with exponential backoff and jitter between tries (throttling,
	// 5xx); zero means 8, since EC2 throttles per account and region.
	MaxAttempts int
	// MaxBackoff caps the delay between tries; zero means the SDK's 20 s.
	MaxBackoff time.Duration
	// Logger receives the provider's logs; nil means none.
	Logger hclog.Logger
}

// Provider launches roster machines as EC2 instances. It implements
// provider.Provider and is safe for concurrent use.
type Provider struct {
	cfg    Config
	opts   Options
	region string
	client *awsec2.Client
	http   awsec2.HTTPClient
	log    hclog.Logger

	mu sync.Mutex
	// instances maps machine ids to the instance ids launched for them:
	// DescribeInstances is eventually consistent, so a machine launched a
	// moment ago may not be found by its tags yet.
	instances map[string]string
}

var _ provider.Provider = (*Provider)(nil)

// EC2 error codes the provider treats specially.
const (
	codeInsufficientCapacity = "InsufficientInstanceCapacity"
	codeNotFound             = "InvalidInstanceID.NotFound"
)

// subnetCodes mean "not here, maybe in another subnet": try the next one.
var subnetCodes = map[string]bool{
	codeInsufficientCapacity:            true,
	"InsufficientFreeAddressesInSubnet": true,
	"SpotMaxPriceTooLow":                true,
	// An instance type that a zone does not offer.
	"Unsupported": true,
}

// limitCodes mean the account cannot launch more now, anywhere.
var limitCodes = map[string]bool{
	"InstanceLimitExceeded":        true,
	"VcpuLimitExceeded":            true,
	"MaxSpotInstanceCountExceeded": true,
}

// liveStates are the states of an instance that still counts as a machine;
// shutting-down and terminated ones are gone.
var liveStates = []string{"pending", "running", "stopping", "stopped"}

var machineIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// New builds the provider. It makes no request: wrong credentials or
// permissions show on the first call.
func New(ctx context.Context, cfg Config, opts Options) (*Provider, error) {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 8
	}
	if opts.Cluster == "" {
		return nil, errors.New("ec2 provider: the cluster name is required")
	}
	if !safeRe.MatchString(opts.Cluster) {
		return nil, fmt.Errorf("ec2 provider: cluster name %q cannot be used in a tag and the user data", opts.Cluster)
	}
	if len(opts.OrderPublicKey) != ed25519.PublicKeySize {
		return nil, errors.New("ec2 provider: the order public key is required (order.pub)")
	}
	if !cfg.LaunchTemplate() && cfg.AMI == "" {
		return nil, errors.New("ec2 provider: neither a launch template nor an AMI is configured")
	}
	if cfg.Bootstrap.RosterURL == "" || cfg.Bootstrap.FleetKeyParameter == "" || cfg.Bootstrap.RosterSHA256 == "" {
		return nil, errors.New("ec2 provider: the bootstrap block (roster_url, roster_sha256, fleet_key_parameter) is required")
	}

	load := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = opts.MaxAttempts
				if opts.MaxBackoff > 0 {
					o.MaxBackoff = opts.MaxBackoff
				}
				// A capacity error comes with a 500, which the SDK would
				// retry in the same subnet; Launch moves to the next one
				// instead.
				o.Retryables = append([]retry.IsErrorRetryable{retry.IsErrorRetryableFunc(noRetryCapacity)}, o.Retryables...)
			})
		}),
	}
	if cfg.Region != "" {
		load = append(load, awsconfig.WithRegion(cfg.Region))
	}
	if opts.Profile != "" {
		load = append(load, awsconfig.WithSharedConfigProfile(opts.Profile))
	}
	if opts.Credentials != nil {
		load = append(load,
			awsconfig.WithCredentialsProvider(opts.Credentials),
			awsconfig.WithSharedConfigFiles([]string{}),
			awsconfig.WithSharedCredentialsFiles([]string{}))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("ec2 provider: load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, errors.New("ec2 provider: no region configured (set region in the provider block or AWS_REGION)")
	}
	if bc, ok := awsCfg.HTTPClient.(*awshttp.BuildableClient); ok {
		awsCfg.HTTPClient = bc.Freeze()
	}
	p := &Provider{
		cfg:       cfg,
		opts:      opts,
		region:    awsCfg.Region,
		http:      awsCfg.HTTPClient,
		log:       opts.Logger.Named("provider_ec2"),
		instances: map[string]string{},
	}
	p.client = awsec2.NewFromConfig(awsCfg, func(o *awsec2.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
	})
	// Render once with a placeholder id so that a bootstrap setting that
	// cannot go into the user data fails now rather than at each launch.
	if _, err := renderUserData(cfg, p.region, opts.Cluster, "m-check", opts.OrderPublicKey, opts.Agent); err != nil {
		return nil, fmt.Errorf("ec2 provider: user data: %w", err)
	}
	return p, nil
}

// Name implements provider.Provider.
func (p *Provider) Name() string { return "ec2" }

// Region is the region the provider launches in.
func (p *Provider) Region() string { return p.region }

// Launch implements provider.Provider. It first looks for an instance that
// an earlier try of the same launch made; then it tries the subnets in turn,
// from one picked by the token, moving on when a subnet has no capacity.
// The ClientToken of each RunInstances is derived from the launch token and
// the subnet, so that a retried launch gets the instance the first try made.
func (p *Provider) Launch(ctx context.Context, req provider.LaunchRequest) (provider.Machine, error) {
	if !machineIDRe.MatchString(req.MachineID) {
		return provider.Machine{}, fmt.Errorf("ec2 provider: machine id %q: use 1-64 letters, digits, '.', '_' or '-'", req.MachineID)
	}
	if len(req.Token) > 64 || strings.IndexFunc(req.Token, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0 {
		return provider.Machine{}, fmt.Errorf("ec2 provider: launch token of machine %s: at most 64 printable ASCII characters", req.MachineID)
	}
	log := p.log.With("machine_id", req.MachineID)

	found, err := p.describe(ctx, map[string]string{provider.TagMachine: req.MachineID})
	if err != nil {
		return provider.Machine{}, fmt.Errorf("ec2 provider: launch machine %s: look for an earlier launch: %w", req.MachineID, err)
	}
	if len(found) > 0 {
		m := found[0]
		log.Info("machine already launched", "instance_id", m.ProviderID, "state", m.State)
		p.remember(m.ID, m.ProviderID)
		return m, nil
	}

	ud, err := renderUserData(p.cfg, p.region, p.opts.Cluster, req.MachineID, p.opts.OrderPublicKey, p.opts.Agent)
	if err != nil {
		return provider.Machine{}, fmt.Errorf("ec2 provider: machine %s: user data: %w", req.MachineID, err)
	}
	userData := base64.StdEncoding.EncodeToString(ud)
	tags := p.tags(req)

	subnets := p.subnetOrder(req)
	var tried []string
	var last error
	for _, subnet := range subnets {
		in := p.runInput(req, subnet, tags, userData)
		out, err := p.client.RunInstances(ctx, in)
		if err == nil {
			if len(out.Instances) == 0 {
				return provider.Machine{}, fmt.Errorf("ec2 provider: launch machine %s: RunInstances returned no instance", req.MachineID)
			}
			m := machineOf(out.Instances[0])
			if m.ID == "" {
				m.ID = req.MachineID
			}
			p.remember(m.ID, m.ProviderID)
			log.Info("machine launched", "instance_id", m.ProviderID, "subnet", subnet, "state", m.State)
			return m, nil
		}
		code := errorCode(err)
		switch {
		case subnetCodes[code]:
			log.Warn("no capacity in subnet, trying the next", "subnet", orDefault(subnet), "code", code)
			tried = append(tried, cmp.Or(subnet, "the default subnet"))
			last = err
			continue
		case limitCodes[code]:
			return provider.Machine{}, fmt.Errorf("ec2 provider: launch machine %s: account limit (%s): %w: %v", req.MachineID, code, provider.ErrCapacity, err)
		case ctx.Err() != nil:
			return provider.Machine{}, fmt.Errorf("ec2 provider: launch machine %s: %w", req.MachineID, ctx.Err())
		default:
			return provider.Machine{}, fmt.Errorf("ec2 provider: launch machine %s in %s: %w", req.MachineID, orDefault(subnet), err)
		}
	}
	return provider.Machine{}, fmt.Errorf("ec2 provider: launch machine %s: no capacity in %s: %w (last error: %v)",
		req.MachineID, strings.Join(tried, ", "), provider.ErrCapacity, last)
}

func orDefault(subnet string) string {
	if subnet == "" {
		return "the default subnet"
	}
	return "subnet " + subnet
}

// subnetOrder returns the subnets to try: all of them, starting at one
// chosen from the token (or machine id), so that launches spread evenly
// and a retried launch starts where the first try did. No subnet yields
// one try without a subnet (the template's or the default VPC's).
func (p *Provider) subnetOrder(req provider.LaunchRequest) []string {
	n := len(p.cfg.Subnets)
	if n == 0 {
		return []string{""}
	}
	key := req.Token
	if key == "" {
		key = req.MachineID
	}
	sum := sha256.Sum256([]byte(key))
	start := int(binary.BigEndian.Uint64(sum[:8]) % uint64(n))
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, p.cfg.Subnets[(start+i)%n])
	}
	return out
}

// ClientToken returns the RunInstances ClientToken for a launch token in a
// subnet: the token itself where there is one subnet or none, otherwise a
// digest of both (EC2 refuses one token with different parameters, and
// the subnet is one).
func ClientToken(token, subnet string, subnets int) string {
	if token == "" {
		return ""
	}
	if subnets <= 1 {
		return token
	}
	sum := sha256.Sum256([]byte(token + "\x00" + subnet))
	return hex.EncodeToString(sum[:])
}

// tags are the tags of a new instance and its volumes: the configured ones,
// the request's, then Roster's own, which nothing overrides.
func (p *Provider) tags(req provider.LaunchRequest) []types.Tag {
	m := map[string]string{}
	for k, v := range p.cfg.Tags {
		m[k] = v
	}
	for k, v := range req.Tags {
		m[k] = v
	}
	m[provider.TagCluster] = p.opts.Cluster
	m[provider.TagMachine] = req.MachineID
	if _, ok := m["Name"]; !ok {
		m["Name"] = p.opts.Cluster + "-" + req.MachineID
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]types.Tag, 0, len(keys))
	for _, k := range keys {
		out = append(out, types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

func (p *Provider) runInput(req provider.LaunchRequest, subnet string, tags []types.Tag, userData string) *awsec2.RunInstancesInput {
	c := p.cfg
	in := &awsec2.RunInstancesInput{
		MinCount: aws.Int32(1),
		MaxCount: aws.Int32(1),
		UserData: aws.String(userData),
		TagSpecifications: []types.TagSpecification{
			{ResourceType: types.ResourceTypeInstance, Tags: tags},
			{ResourceType: types.ResourceTypeVolume, Tags: tags},
		},
	}
	if t := ClientToken(req.Token, subnet, len(c.Subnets)); t != "" {
		in.ClientToken = aws.String(t)
	}
	if c.LaunchTemplate() {
		lt := &types.LaunchTemplateSpecification{}
		if c.LaunchTemplateID != "" {
			lt.LaunchTemplateId = aws.String(c.LaunchTemplateID)
		} else {
			lt.LaunchTemplateName = aws.String(c.LaunchTemplateName)
		}
		if c.LaunchTemplateVersion != "" {
			lt.Version = aws.String(c.LaunchTemplateVersion)
		}
		in.LaunchTemplate = lt
	}
	if c.AMI != "" {
		in.ImageId = aws.String(c.AMI)
	}
	if c.InstanceType != "" {
		in.InstanceType = types.InstanceType(c.InstanceType)
	}
	if subnet != "" {
		in.SubnetId = aws.String(subnet)
	}
	if len(c.SecurityGroups) > 0 {
		in.SecurityGroupIds = c.SecurityGroups
	}
	if c.InstanceProfile != "" {
		if strings.HasPrefix(c.InstanceProfile, "arn:") {
			in.IamInstanceProfile = &types.IamInstanceProfileSpecification{Arn: aws.String(c.InstanceProfile)}
		} else {
			in.IamInstanceProfile = &types.IamInstanceProfileSpecification{Name: aws.String(c.InstanceProfile)}
		}
	}
	if c.KeyName != "" {
		in.KeyName = aws.String(c.KeyName)
	}
	if c.RequireIMDSv2 {
		in.MetadataOptions = &types.InstanceMetadataOptionsRequest{
			HttpTokens:   types.HttpTokensStateRequired,
			HttpEndpoint: types.InstanceMetadataEndpointStateEnabled,
		}
	}
	if c.Spot != nil {
		so := &types.SpotMarketOptions{
			SpotInstanceType:             types.SpotInstanceTypeOneTime,
			InstanceInterruptionBehavior: types.InstanceInterruptionBehaviorTerminate,
		}
		if c.Spot.MaxPrice != "" {
			so.MaxPrice = aws.String(c.Spot.MaxPrice)
		}
		in.InstanceMarketOptions = &types.InstanceMarketOptionsRequest{MarketType: types.MarketTypeSpot, SpotOptions: so}
	}
	return in
}

// Terminate implements provider.Provider. It terminates every live
// instance tagged with the machine id (a race between two launches can
// leave two) and the one this provider launched for it; an instance that
// is already gone is not an error.
func (p *Provider) Terminate(ctx context.Context, id string) error {
	found, err := p.describe(ctx, map[string]string{provider.TagMachine: id})
	if err != nil {
		return fmt.Errorf("ec2 provider: terminate machine %s: %w", id, err)
	}
	ids := map[string]bool{}
	for _, m := range found {
		ids[m.ProviderID] = true
	}
	p.mu.Lock()
	if iid, ok := p.instances[id]; ok {
		ids[iid] = true
	}
	p.mu.Unlock()
	log := p.log.With("machine_id", id)
	if len(ids) == 0 {
		log.Debug("no instance to terminate")
		return nil
	}
	// One instance per call: EC2 fails a whole call when one of its ids
	// is unknown.
	for _, iid := range sortedSet(ids) {
		_, err := p.client.TerminateInstances(ctx, &awsec2.TerminateInstancesInput{InstanceIds: []string{iid}})
		switch {
		case err == nil:
			log.Info("machine terminated", "instance_id", iid)
		case errorCode(err) == codeNotFound:
			log.Info("instance already gone", "instance_id", iid)
		default:
			return fmt.Errorf("ec2 provider: terminate machine %s (instance %s): %w", id, iid, err)
		}
	}
	p.mu.Lock()
	delete(p.instances, id)
	p.mu.Unlock()
	return nil
}

// List implements provider.Provider: the cluster's live instances (pending,
// running, stopping, stopped) whose tags include all of tags.
func (p *Provider) List(ctx context.Context, tags map[string]string) ([]provider.Machine, error) {
	ms, err := p.describe(ctx, tags)
	if err != nil {
		return nil, fmt.Errorf("ec2 provider: list machines: %w", err)
	}
	for _, m := range ms {
		p.remember(m.ID, m.ProviderID)
	}
	return ms, nil
}

// describe returns the cluster's live roster machines carrying tags,
// sorted by machine id.
func (p *Provider) describe(ctx context.Context, tags map[string]string) ([]provider.Machine, error) {
	filters := []types.Filter{
		{Name: aws.String("tag:" + provider.TagCluster), Values: []string{p.opts.Cluster}},
		{Name: aws.String("tag-key"), Values: []string{provider.TagMachine}},
		{Name: aws.String("instance-state-name"), Values: liveStates},
	}
	for _, k := range sortedKeys(tags) {
		if k == provider.TagCluster {
			if tags[k] != p.opts.Cluster {
				return nil, nil // another cluster's machines are not ours to see
			}
			continue
		}
		filters = append(filters, types.Filter{Name: aws.String("tag:" + k), Values: []string{tags[k]}})
	}
	var out []provider.Machine
	pages := awsec2.NewDescribeInstancesPaginator(p.client, &awsec2.DescribeInstancesInput{Filters: filters, MaxResults: aws.Int32(1000)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Reservations {
			for _, in := range r.Instances {
				m := machineOf(in)
				if m.ID != "" {
					out = append(out, m)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ID != out[j].ID {
			return out[i].ID < out[j].ID
		}
		return out[i].LaunchedAt.Before(out[j].LaunchedAt)
	})
	return out, nil
}

// Close implements provider.Provider. Machines keep running.
func (p *Provider) Close() error {
	if c, ok := p.http.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
	return nil
}

func (p *Provider) remember(machineID, instanceID string) {
	if machineID == "" || instanceID == "" {
		return
	}
	p.mu.Lock()
	p.instances[machineID] = instanceID
	p.mu.Unlock()
}

func machineOf(in types.Instance) provider.Machine {
	m := provider.Machine{
		ProviderID: aws.ToString(in.InstanceId),
		Address:    aws.ToString(in.PrivateIpAddress),
		LaunchedAt: aws.ToTime(in.LaunchTime),
		Tags:       map[string]string{},
	}
	if in.State != nil {
		m.State = string(in.State.Name)
	}
	for _, t := range in.Tags {
		m.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	m.ID = m.Tags[provider.TagMachine]
	return m
}

// errorCode is the EC2 error code of err, or "".
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func noRetryCapacity(err error) aws.Ternary {
	code := errorCode(err)
	if subnetCodes[code] || limitCodes[code] {
		return aws.FalseTernary
	}
	return aws.UnknownTernary
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

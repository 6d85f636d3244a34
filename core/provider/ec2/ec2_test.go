package ec2_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/rosterhq/roster/core/provider"
	"github.com/rosterhq/roster/core/provider/ec2"
)

// orderPub is a fixed key, so that the rendered user data is stable.
var orderPub = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)).Public().(ed25519.PublicKey)

var (
	throttled = answer{http.StatusServiceUnavailable, "RequestLimitExceeded"}
	noCap     = answer{http.StatusInternalServerError, "InsufficientInstanceCapacity"}
)

func baseConfig() ec2.Config {
	return ec2.Config{
		Region:                "us-east-1",
		LaunchTemplateID:      "lt-0123456789abcdef0",
		LaunchTemplateVersion: "$Latest",
		Subnets:               []string{"subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb", "subnet-0cccccccccccccccc"},
		SecurityGroups:        []string{"sg-0123456789abcdef0"},
		InstanceProfile:       "roster-agent",
		KeyName:               "ops",
		Tags:                  map[string]string{"team": "web"},
		RequireIMDSv2:         true,
		Bootstrap: ec2.Bootstrap{
			RosterURL:         "s3://roster-artifacts/roster/v0.1.0/roster-linux-amd64",
			RosterSHA256:      strings.Repeat("ab", 32),
			FleetKeyParameter: "/roster/demo/fleet-key",
			LogLevel:          "info",
		},
	}
}

func options(f *fakeEC2) ec2.Options {
	return ec2.Options{
		Cluster:        "demo",
		OrderPublicKey: orderPub,
		Agent:          ec2.AgentOptions{SpareHeartbeat: 30 * time.Second},
		Endpoint:       f.srv.URL,
		Credentials:    credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		MaxAttempts:    3,
		MaxBackoff:     time.Millisecond,
	}
}

func newProvider(t *testing.T, f *fakeEC2, cfg ec2.Config) *ec2.Provider {
	t.Helper()
	p, err := ec2.New(context.Background(), cfg, options(f))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func launch(t *testing.T, p *ec2.Provider, id string) provider.Machine {
	t.Helper()
	m, err := p.Launch(context.Background(), provider.LaunchRequest{Token: id, MachineID: id,
		Tags: map[string]string{provider.TagCluster: "demo", provider.TagMachine: id}})
	if err != nil {
		t.Fatalf("launch %s: %v", id, err)
	}
	return m
}

// want checks form values.
func want(t *testing.T, form url.Values, kv map[string]string) {
	t.Helper()
	for k, v := range kv {
		if got := form.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

// absent checks that no form key starts with one of prefixes.
func absent(t *testing.T, form url.Values, prefixes ...string) {
	t.Helper()
	for k := range form {
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				t.Errorf("unexpected %s = %q", k, form.Get(k))
			}
		}
	}
}

func TestLaunchFromTemplateSendsEverything(t *testing.T) {
	f := newFakeEC2(t)
	p := newProvider(t, f, baseConfig())
	m := launch(t, p, "m-01")

	if got := f.actions(); !reflect.DeepEqual(got, []string{"DescribeInstances", "RunInstances"}) {
		t.Fatalf("actions = %v", got)
	}
	runs := f.calls("RunInstances")
	form := runs[0]
	want(t, form, map[string]string{
		"LaunchTemplate.LaunchTemplateId": "lt-0123456789abcdef0",
		"LaunchTemplate.Version":          "$Latest",
		"MinCount":                        "1",
		"MaxCount":                        "1",
		"SecurityGroupId.1":               "sg-0123456789abcdef0",
		"IamInstanceProfile.Name":         "roster-agent",
		"KeyName":                         "ops",
		"MetadataOptions.HttpTokens":      "required",
		"MetadataOptions.HttpEndpoint":    "enabled",
		"ClientToken":                     ec2.ClientToken("m-01", form.Get("SubnetId"), 3),
	})
	absent(t, form, "ImageId", "InstanceType", "InstanceMarketOptions", "LaunchTemplate.LaunchTemplateName")
	if !strings.HasPrefix(form.Get("SubnetId"), "subnet-0") {
		t.Errorf("SubnetId = %q", form.Get("SubnetId"))
	}
	if len(form.Get("ClientToken")) != 64 {
		t.Errorf("ClientToken %q is not 64 characters", form.Get("ClientToken"))
	}
	wantTags := map[string]string{provider.TagCluster: "demo", provider.TagMachine: "m-01", "Name": "demo-m-01", "team": "web"}
	for _, rt := range []string{"instance", "volume"} {
		if got := tagsOf(form, rt); !reflect.DeepEqual(got, wantTags) {
			t.Errorf("%s tags = %v, want %v", rt, got, wantTags)
		}
	}

	// The user data is the rendered cloud-config, base64-encoded.
	ud, err := base64.StdEncoding.DecodeString(form.Get("UserData"))
	if err != nil {
		t.Fatalf("user data is not base64: %v", err)
	}
	wantUD, err := ec2.RenderUserData(baseConfig(), "us-east-1", "demo", "m-01", orderPub, options(f).Agent)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ud, wantUD) {
		t.Errorf("user data differs from the rendering:\n%s", ud)
	}
	for _, s := range []string{"#cloud-config", "-machine-id m-01", "aws ssm get-parameter", "/roster/demo/fleet-key", strings.Repeat("ab", 32)} {
		if !bytes.Contains(ud, []byte(s)) {
			t.Errorf("user data lacks %q", s)
		}
	}

	// The lookup for an earlier launch is scoped to the cluster and machine.
	df := filtersOf(f.calls("DescribeInstances")[0])
	wantF := map[string][]string{
		"tag:" + provider.TagCluster: {"demo"},
		"tag-key":                    {provider.TagMachine},
		"instance-state-name":        {"pending", "running", "stopping", "stopped"},
		"tag:" + provider.TagMachine: {"m-01"},
	}
	if !reflect.DeepEqual(df, wantF) {
		t.Errorf("DescribeInstances filters = %v, want %v", df, wantF)
	}

	if m.ID != "m-01" || !strings.HasPrefix(m.ProviderID, "i-") || m.State != "pending" || m.Address == "" || m.LaunchedAt.IsZero() {
		t.Errorf("machine = %+v", m)
	}
	if m.Tags[provider.TagCluster] != "demo" {
		t.Errorf("machine tags = %v", m.Tags)
	}
}

func TestLaunchFromAMIWithSpot(t *testing.T) {
	f := newFakeEC2(t)
	cfg := baseConfig()
	cfg.LaunchTemplateID, cfg.LaunchTemplateVersion = "", ""
	cfg.AMI, cfg.InstanceType = "ami-0abcdef1234567890", "t3.small"
	cfg.Subnets = []string{"subnet-0aaaaaaaaaaaaaaaa"}
	cfg.InstanceProfile = "arn:aws:iam::123456789012:instance-profile/roster-agent"
	cfg.Spot = &ec2.Spot{MaxPrice: "0.0125"}
	cfg.RequireIMDSv2 = false
	p := newProvider(t, f, cfg)
	launch(t, p, "m-02")

	form := f.calls("RunInstances")[0]
	want(t, form, map[string]string{
		"ImageId":                          "ami-0abcdef1234567890",
		"InstanceType":                     "t3.small",
		"SubnetId":                         "subnet-0aaaaaaaaaaaaaaaa",
		"IamInstanceProfile.Arn":           "arn:aws:iam::123456789012:instance-profile/roster-agent",
		"InstanceMarketOptions.MarketType": "spot",
		"InstanceMarketOptions.SpotOptions.MaxPrice":                     "0.0125",
		"InstanceMarketOptions.SpotOptions.SpotInstanceType":             "one-time",
		"InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior": "terminate",
		// One subnet: the launch token is the ClientToken as it is.
		"ClientToken": "m-02",
	})
	absent(t, form, "LaunchTemplate", "MetadataOptions", "IamInstanceProfile.Name")
}

func TestLaunchSpreadsOverSubnets(t *testing.T) {
	f := newFakeEC2(t)
	p := newProvider(t, f, baseConfig())
	count := map[string]int{}
	for i := range 30 {
		launch(t, p, fmt.Sprintf("m-%02d", i))
	}
	for _, form := range f.calls("RunInstances") {
		count[form.Get("SubnetId")]++
	}
	if len(count) != 3 {
		t.Fatalf("launches went to %v, want all three subnets", count)
	}
	for s, n := range count {
		if n < 4 {
			t.Errorf("subnet %s got %d of 30 launches", s, n)
		}
	}
}

func TestLaunchMovesToNextSubnetOnCapacity(t *testing.T) {
	f := newFakeEC2(t)
	p := newProvider(t, f, baseConfig())
	f.script("RunInstances", noCap)
	m := launch(t, p, "m-03")

	runs := f.calls("RunInstances")
	if len(runs) != 2 {
		t.Fatalf("%d RunInstances, want 2 (one per subnet: a capacity error is not retried in place)", len(runs))
	}
	first, second := runs[0].Get("SubnetId"), runs[1].Get("SubnetId")
	if first == second {
		t.Errorf("both tries in %s", first)
	}
	// The second subnet is the next one in the configured order.
	subnets := baseConfig().Subnets
	idx := func(s string) int {
		for i, x := range subnets {
			if x == s {
				return i
			}
		}
		return -1
	}
	if (idx(first)+1)%3 != idx(second) {
		t.Errorf("tried %s then %s; want the next subnet", first, second)
	}
	if runs[0].Get("ClientToken") == runs[1].Get("ClientToken") {
		t.Error("the two subnets got the same ClientToken (EC2 would refuse the second as a mismatch)")
	}
	if m.ProviderID == "" || f.liveCount() != 1 {
		t.Errorf("machine %+v, %d instances", m, f.liveCount())
	}
}

func TestLaunchWithoutCapacityAnywhereIsErrCapacity(t *testing.T) {
	f := newFakeEC2(t)
	p := newProvider(t, f, baseConfig())
	f.script("RunInstances", noCap, noCap, noCap)
	_, err := p.Launch(context.Background(), provider.LaunchRequest{Token: "m-04", MachineID: "m-04"})
	if !errors.Is(err, provider.ErrCapacity) {
		t.Fatalf("err = %v, want ErrCapacity", err)
	}
	if !strings.Contains(err.Error(), "InsufficientInstanceCapacity") {
		t.Errorf("err %q does not say why", err)
	}
	runs := f.calls("RunInstances")
	seen := map[string]bool{}
	for _, r := range runs {
		seen[r.Get("SubnetId")] = true
	}
	if len(runs) != 3 || len(seen) != 3 {
		t.Errorf("%d RunInstances over %d subnets, want 3 over 3", len(runs), len(seen))
	}
}

func TestLaunchLimitIsErrCapacityAtOnce(t *testing.T) {
	for _, code := range []string{"InstanceLimitExceeded", "VcpuLimitExceeded", "MaxSpotInstanceCountExceeded"} {
		t.Run(code, func(t *testing.T) {
			f := newFakeEC2(t)
			p := newProvider(t, f, baseConfig())
			f.script("RunInstances", answer{http.StatusBadRequest, code})
			_, err := p.Launch(context.Background(), provider.LaunchRequest{Token: "m-05", MachineID: "m-05"})
			if !errors.Is(err, provider.ErrCapacity) || !strings.Contains(err.Error(), code) {
				t.Fatalf("err = %v, want ErrCapacity naming %s", err, code)
			}
			if n := len(f.calls("RunInstances")); n != 1 {
				t.Errorf("%d RunInstances, want 1: a limit holds in every subnet", n)
			}
		})
	}
}

func TestLaunchOtherErrorIsNotCapacity(t *testing.T) {
	f := newFakeEC2(t)
	p := newProvider(t, f, baseConfig())
	f.script("RunInstances", answer{http.StatusBadRequest, "InvalidParameterValue"})
	_, err := p.Launch(context.Background(), provider.LaunchRequest{Token: "m-06", MachineID: "m-06"})
	if err == nil || errors.Is(err, provider.ErrCapacity) || !strings.Contains(err.Error(), "InvalidParameterValue") {
		t.Fatalf("err = %v", err)
	}
	if n := len(f.calls("RunInstances")); n != 1 {
		t.Errorf("%d RunInstances, want 1", n)
	}
}

func TestLaunchThrottlingIsRetried(t *testing.T) {
	f := newFakeEC2(t)
	p := newProvider(t, f, baseConfig())
	f.script("DescribeInstances", throttled)
	f.script("RunInstances", throttled, throttled)
	m := launch(t, p, "m-07")

	if n := len(f.calls("DescribeInstances")); n != 2 {
		t.Errorf("%d DescribeInstances, want 2 (one throttled)", n)
	}
	runs := f.calls("RunInstances")
	if len(runs) != 3 {
		t.Fatalf("%d RunInstances, want 3 (two throttled)", len(runs))
	}
	for _, r := range runs[1:] {
		if r.Get("ClientToken") != runs[0].Get("ClientToken") || r.Get("SubnetId") != runs[0].Get("SubnetId") {
			t.Errorf("a retry changed the request: %s in %s, first %s in %s",
				r.Get("ClientToken"), r.Get("SubnetId"), runs[0].Get("ClientToken"), runs[0].Get("SubnetId"))
		}
	}
	if m.ProviderID == "" || f.liveCount() != 1 {
		t.Errorf("machine %+v, %d instances", m, f.liveCount())
	}
}

func TestLaunchThrottledTooLongFails(t *testing.T) {
	f := newFakeEC2(t)
	p := newProvider(t, f, baseConfig())
	f.script("RunInstances", throttled, throttled, throttled)
	_, err := p.Launch(context.Background(), provider.LaunchRequest{Token: "m-08", MachineID: "m-08"})
	if err == nil || errors.Is(err, provider.ErrCapacity) || !strings.Contains(err.Error(), "RequestLimitExceeded") {
		t.Fatalf("err = %v, want the throttling error", err)
	}
	if n := len(f.calls("RunInstances")); n != 3 {
		t.Errorf("%d RunInstances, want MaxAttempts = 3", n)
	}
}

func TestRetriedLaunchMakesOneMachine(t *testing.T) {
	f := newFakeEC2(t)
	// EC2 may not list an instance for a moment after its launch, so the
	// lookup misses and only the ClientToken saves the day.
	f.hideNew = true
	p := newProvider(t, f, baseConfig())
	m1 := launch(t, p, "m-09")
	m2 := launch(t, p, "m-09")
	if m1.ProviderID != m2.ProviderID {
		t.Errorf("two instances for one token: %s and %s", m1.ProviderID, m2.ProviderID)
	}
	runs := f.calls("RunInstances")
	if len(runs) != 2 || runs[0].Get("ClientToken") != runs[1].Get("ClientToken") {
		t.Errorf("RunInstances tokens: %v", runs)
	}
	if f.liveCount() != 1 {
		t.Errorf("%d instances, want 1", f.liveCount())
	}

	// Once EC2 lists it, a retry finds it and does not call RunInstances.
	f.mu.Lock()
	for _, in := range f.instances {
		in.hidden = false
	}
	f.mu.Unlock()
	m3 := launch(t, p, "m-09")
	if m3.ProviderID != m1.ProviderID || len(f.calls("RunInstances")) != 2 {
		t.Errorf("third launch: %+v, %d RunInstances", m3, len(f.calls("RunInstances")))
	}
}

func TestLaunchRefusesBadRequests(t *testing.T) {
	f := newFakeEC2(t)
	p := newProvider(t, f, baseConfig())
	for _, req := range []provider.LaunchRequest{
		{MachineID: "bad id", Token: "x"},
		{MachineID: "m-10", Token: strings.Repeat("x", 65)},
		{MachineID: "m-10", Token: "with space"},
	} {
		if _, err := p.Launch(context.Background(), req); err == nil {
			t.Errorf("launch %+v: no error", req)
		}
	}
	if n := len(f.actions()); n != 0 {
		t.Errorf("%d requests for refused launches", n)
	}
}

func TestTerminate(t *testing.T) {
	f := newFakeEC2(t)
	p := newProvider(t, f, baseConfig())
	m := launch(t, p, "m-11")
	if err := p.Terminate(context.Background(), "m-11"); err != nil {
		t.Fatal(err)
	}
	terms := f.calls("TerminateInstances")
	if len(terms) != 1 || terms[0].Get("InstanceId.1") != m.ProviderID {
		t.Fatalf("TerminateInstances = %v, want %s", terms, m.ProviderID)
	}
	if f.liveCount() != 0 {
		t.Errorf("%d instances live", f.liveCount())
	}
	// Terminated: List does not see it, and terminating again is a no-op.
	ms, err := p.List(context.Background(), map[string]string{provider.TagCluster: "demo"})
	if err != nil || len(ms) != 0 {
		t.Errorf("List = %v, %v", ms, err)
	}
	if err := p.Terminate(context.Background(), "m-11"); err != nil {
		t.Errorf("second terminate: %v", err)
	}
	if n := len(f.calls("TerminateInstances")); n != 1 {
		t.Errorf("%d TerminateInstances, want 1", n)
	}
}

func TestTerminateNotFoundIsSuccess(t *testing.T) {
	f := newFakeEC2(t)
	f.hideNew = true // the lookup misses; the id launched is still known
	p := newProvider(t, f, baseConfig())
	m := launch(t, p, "m-12")
	f.mu.Lock()
	f.instances = nil // EC2 forgot it: InvalidInstanceID.NotFound
	f.mu.Unlock()
	if err := p.Terminate(context.Background(), "m-12"); err != nil {
		t.Fatalf("terminate of a vanished instance: %v", err)
	}
	terms := f.calls("TerminateInstances")
	if len(terms) != 1 || terms[0].Get("InstanceId.1") != m.ProviderID {
		t.Errorf("TerminateInstances = %v", terms)
	}
}

func TestTerminateUnknownMachineIsSuccess(t *testing.T) {
	f := newFakeEC2(t)
	p := newProvider(t, f, baseConfig())
	if err := p.Terminate(context.Background(), "m-never"); err != nil {
		t.Fatal(err)
	}
	if n := len(f.calls("TerminateInstances")); n != 0 {
		t.Errorf("%d TerminateInstances for a machine with no instance", n)
	}
}

func TestTerminateOtherErrorIsReported(t *testing.T) {
	f := newFakeEC2(t)
	p := newProvider(t, f, baseConfig())
	launch(t, p, "m-13")
	f.script("TerminateInstances", answer{http.StatusForbidden, "UnauthorizedOperation"})
	err := p.Terminate(context.Background(), "m-13")
	if err == nil || !strings.Contains(err.Error(), "UnauthorizedOperation") || !strings.Contains(err.Error(), "m-13") {
		t.Fatalf("err = %v", err)
	}
}

func TestTerminateKillsDuplicates(t *testing.T) {
	f := newFakeEC2(t)
	p := newProvider(t, f, baseConfig())
	tags := map[string]string{provider.TagCluster: "demo", provider.TagMachine: "m-14"}
	f.add(&fakeInstance{ID: "i-0000000000000aaa1", State: "running", IP: "10.0.1.1", Launched: time.Now(), Tags: tags})
	f.add(&fakeInstance{ID: "i-0000000000000aaa2", State: "pending", IP: "10.0.1.2", Launched: time.Now(), Tags: tags})
	if err := p.Terminate(context.Background(), "m-14"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, form := range f.calls("TerminateInstances") {
		got = append(got, form.Get("InstanceId.1"))
	}
	if !reflect.DeepEqual(got, []string{"i-0000000000000aaa1", "i-0000000000000aaa2"}) {
		t.Errorf("terminated %v", got)
	}
}

func TestListReconcilesByTag(t *testing.T) {
	f := newFakeEC2(t)
	f.pageSize = 2
	p := newProvider(t, f, baseConfig())
	at := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	mk := func(id, machine, cluster, state string) *fakeInstance {
		tags := map[string]string{provider.TagCluster: cluster, "Name": cluster + "-" + machine}
		if machine != "" {
			tags[provider.TagMachine] = machine
		}
		return &fakeInstance{ID: id, State: state, IP: "10.0.2." + id[len(id)-1:], Launched: at, Tags: tags}
	}
	f.add(mk("i-00000000000000001", "m-c", "demo", "running"))
	f.add(mk("i-00000000000000002", "m-a", "demo", "pending"))
	f.add(mk("i-00000000000000003", "m-b", "demo", "stopped"))
	f.add(mk("i-00000000000000004", "m-d", "demo", "terminated"))
	f.add(mk("i-00000000000000005", "m-e", "other", "running"))
	f.add(mk("i-00000000000000006", "", "demo", "running")) // not a roster machine
	f.add(mk("i-00000000000000007", "m-f", "demo", "shutting-down"))

	ms, err := p.List(context.Background(), map[string]string{provider.TagCluster: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.ID+"="+m.ProviderID+"/"+m.State)
	}
	wantIDs := []string{"m-a=i-00000000000000002/pending", "m-b=i-00000000000000003/stopped", "m-c=i-00000000000000001/running"}
	if !reflect.DeepEqual(ids, wantIDs) {
		t.Errorf("List = %v, want %v", ids, wantIDs)
	}
	if len(f.calls("DescribeInstances")) != 2 {
		t.Errorf("%d DescribeInstances, want 2 pages", len(f.calls("DescribeInstances")))
	}
	if m := ms[0]; m.Address != "10.0.2.2" || !m.LaunchedAt.Equal(at) || m.Tags["Name"] != "demo-m-a" {
		t.Errorf("machine = %+v", m)
	}

	// A further tag narrows the list; another cluster's tag finds nothing
	// without asking EC2.
	ms, err = p.List(context.Background(), map[string]string{provider.TagMachine: "m-b"})
	if err != nil || len(ms) != 1 || ms[0].ID != "m-b" {
		t.Errorf("List(m-b) = %v, %v", ms, err)
	}
	n := len(f.actions())
	ms, err = p.List(context.Background(), map[string]string{provider.TagCluster: "other"})
	if err != nil || len(ms) != 0 || len(f.actions()) != n {
		t.Errorf("List(other cluster) = %v, %v, %d requests", ms, err, len(f.actions())-n)
	}
}

func TestNewChecksItsInputs(t *testing.T) {
	f := newFakeEC2(t)
	for name, mutate := range map[string]func(*ec2.Config, *ec2.Options){
		"no cluster":   func(c *ec2.Config, o *ec2.Options) { o.Cluster = "" },
		"no order key": func(c *ec2.Config, o *ec2.Options) { o.OrderPublicKey = nil },
		"no image":     func(c *ec2.Config, o *ec2.Options) { c.LaunchTemplateID = "" },
		"no bootstrap": func(c *ec2.Config, o *ec2.Options) { c.Bootstrap = ec2.Bootstrap{} },
		"bad endpoint": func(c *ec2.Config, o *ec2.Options) { o.Agent.QueueEndpoint = "http://x y" },
	} {
		cfg, opts := baseConfig(), options(f)
		mutate(&cfg, &opts)
		if _, err := ec2.New(context.Background(), cfg, opts); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if n := len(f.actions()); n != 0 {
		t.Errorf("New made %d requests", n)
	}
}

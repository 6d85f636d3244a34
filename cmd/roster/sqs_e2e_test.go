package main

// The control loop on the SQS backend: a real `roster orchestrator` process
// with queue "sqs" and the local provider, its agents on SQS too, against
// fauxqs on loopback (queues and S3), with logs shipped to s3://.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rosterhq/roster/core/orchestrator"
	"github.com/rosterhq/roster/core/protocol"
	"github.com/rosterhq/roster/core/queue/fauxqs"
	"github.com/rosterhq/roster/core/queue/sqs"
)

// fauxAWSEnv points this process, and so the orchestrator and agents it
// starts, at a fauxqs server: dummy credentials, its region, its S3, and
// no shared config files or instance metadata (nothing real is read).
func fauxAWSEnv(t testing.TB, endpoint string) {
	t.Helper()
	none := filepath.Join(t.TempDir(), "no-aws-config")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           fauxqs.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":       fauxqs.SecretAccessKey,
		"AWS_SESSION_TOKEN":           "",
		"AWS_REGION":                  fauxqs.Region,
		"AWS_PROFILE":                 "",
		"AWS_CONFIG_FILE":             none,
		"AWS_SHARED_CREDENTIALS_FILE": none,
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_ENDPOINT_URL_S3":         endpoint,
	} {
		t.Setenv(k, v)
	}
}

// fauxS3 is an S3 client of a fauxqs server.
func fauxS3(endpoint string) *s3.Client {
	return s3.New(s3.Options{Region: fauxqs.Region, Credentials: fauxqs.Credentials(),
		BaseEndpoint: aws.String(endpoint), UsePathStyle: true})
}

// s3Keys lists the keys under prefix.
func s3Keys(t testing.TB, c *s3.Client, bucket, prefix string) []string {
	t.Helper()
	out, err := c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatalf("list s3://%s/%s: %v", bucket, prefix, err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	sort.Strings(keys)
	return keys
}

// newSQSE2E is newE2E with queue "sqs" on a fauxqs server and logs shipped
// to s3://<bucket>/e2e on the same server.
func newSQSE2E(t *testing.T, endpoint, bucket string) *e2e {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	dir := t.TempDir()
	e := &e2e{t: t, dir: dir, dataDir: filepath.Join(dir, ".roster"), cluster: fmt.Sprintf("sqs%06d", rand.IntN(1000000)), metrics: filepath.Join(dir, "metrics-web")}
	cfg := fmt.Sprintf(`cluster  = %q
data_dir = ".roster"
spares   = 1
roles    = ["roles/*.hcl"]
queue "sqs" {
  region   = %q
  endpoint = %q
}
provider "local" {
  boot_delay = "0s"
}
balancer "none" "front" {}
logs {
  destination = "s3://%s/e2e"
}
api {
  address = "127.0.0.1:0"
}
agent {
  spare_heartbeat = "500ms"
}
`, e.cluster, fauxqs.Region, endpoint, bucket)
	role := fmt.Sprintf(`role "web" {
  plugin = "static"
  count {
    min = 1
    max = 2
  }
  scale {
    metric        = "load"
    up_above      = 0.75
    down_below    = 0.25
    window        = "1s"
    cooldown_up   = "1s"
    cooldown_down = "1s"
  }
  health {
    interval        = "250ms"
    timeout         = "2s"
    unhealthy_after = 3
    lost_after      = "1500ms"
  }
  drain {
    timeout = "2s"
  }
  register {
    balancer = "front"
    endpoint = "http"
  }
  config {
    metrics_file = %q
  }
}
`, e.metrics)
	must(t, os.MkdirAll(filepath.Join(dir, "roles"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "roster.hcl"), []byte(cfg), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "roles", "web.hcl"), []byte(role), 0o644))
	e.setMetrics("load 0.5")
	t.Cleanup(e.cleanup)
	return e
}

// TestE2ESQSBaselineReplaceAndS3Logs: the whole loop over SQS: baseline
// with a spare, a server whose agent is SIGKILLed is replaced, a scale-in
// halts a server whose logs land in S3; every queue is an SQS queue (no
// local queue directory exists).
func TestE2ESQSBaselineReplaceAndS3Logs(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	endpoint := fauxqs.Start(t)
	fauxAWSEnv(t, endpoint)
	ctx := context.Background()
	s3c := fauxS3(endpoint)
	const bucket = "roster-logs"
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	e := newSQSE2E(t, endpoint, bucket)
	e.start()
	st := e.waitFor("baseline: 1 ready server and 1 spare", 90*time.Second, pool(1, 1))

	// The queues are SQS queues; the agents were told so.
	q, err := sqs.New(ctx, sqs.Options{Region: fauxqs.Region, Endpoint: endpoint, Credentials: fauxqs.Credentials()})
	must(t, err)
	defer q.Close()
	names, err := q.ListQueues(ctx, e.cluster+"-")
	must(t, err)
	want := []string{protocol.GlobalQueue(e.cluster), protocol.OrchestratorQueue(e.cluster), st.Servers[0].Queue}
	for _, w := range want {
		if !contains(names, w) {
			t.Errorf("SQS queues %v lack %s", names, w)
		}
	}
	if _, err := os.Stat(filepath.Join(e.dataDir, "queue")); !os.IsNotExist(err) {
		t.Errorf("a local queue directory exists (%v): the sqs config was not used", err)
	}
	for _, pid := range agentPids(e.cluster, "") {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(string(b), "\x00")
		if !containsPair(args, "-queue", "sqs") || !containsPair(args, "-sqs-endpoint", endpoint) || !containsPair(args, "-sqs-region", fauxqs.Region) {
			t.Errorf("agent %d runs with %q, want -queue sqs -sqs-region %s -sqs-endpoint %s", pid, args, fauxqs.Region, endpoint)
		}
	}

	// A server's machine dies: it is replaced.
	victim := st.Servers[0]
	pids := agentPids(e.cluster, victim.Machine)
	if len(pids) != 1 {
		t.Fatalf("agent pids of %s: %v", victim.Machine, pids)
	}
	must(t, syscall.Kill(pids[0], syscall.SIGKILL))
	st = e.waitFor("a replacement", 90*time.Second, func(st orchestrator.Status) bool {
		return pool(1, 1)(st) && st.Servers[0].Name != victim.Name
	})
	if st.Servers[0].Replaces != victim.Name || !e.hasEvent("lost", victim.Name+": no heartbeat") {
		t.Errorf("replacement %+v, events %+v", st.Servers[0], e.events())
	}

	// Scale out and back in: the halted server's logs are shipped to S3.
	e.setMetrics("load 0.95")
	e.waitFor("scaled up to 2", 90*time.Second, pool(2, 1))
	e.setMetrics("load 0.05")
	e.waitFor("scaled down to 1", 90*time.Second, pool(1, 1))
	var halted string
	for _, ev := range e.events() {
		if ev.Kind == "halted" {
			halted = ev.Server
		}
	}
	if halted == "" {
		t.Fatalf("no halted event: %+v", e.events())
	}
	var keys []string
	waitUntil(t, "the halted server's logs in S3", 30*time.Second, func() bool {
		keys = s3Keys(t, s3c, bucket, "e2e/"+halted+"/")
		return len(keys) > 0
	})
	found := false
	for _, k := range keys {
		found = found || strings.HasSuffix(k, "/static/access.log")
	}
	if !found {
		t.Errorf("logs of %s in S3 = %v, want its static/access.log", halted, keys)
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

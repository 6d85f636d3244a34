package ec2

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"embed"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"text/template"
	"time"
)

// The user data is kept in files, not Go strings, so that it can be read
// and reviewed as what it is: a cloud-config, a shell script, a unit.
//
//go:embed templates/*
var templateFS embed.FS

// UnitFile is the agent's systemd unit as the user data writes it.
const UnitFile = "templates/roster-agent.service"

// MaxUserData is EC2's limit on user data before base64 encoding.
const MaxUserData = 16 * 1024

// templates are parsed on first use, not at start-up: every roster process
// (agents and plugins included) links this package, and only an orchestrator
// with provider "ec2" renders user data.
var templates = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("").Funcs(template.FuncMap{
		"indent": indent,
		"join":   strings.Join,
	}).ParseFS(templateFS, "templates/*.tmpl"))
})

// AgentOptions are the agent's settings that come from roster.hcl rather
// than from the provider block.
type AgentOptions struct {
	// QueueRegion is the SQS region the agent uses (-sqs-region); empty
	// means the provider's region.
	QueueRegion string
	// QueueEndpoint overrides the SQS endpoint (-sqs-endpoint); empty on
	// AWS.
	QueueEndpoint string
	// SpareHeartbeat is how often a spare reports; zero leaves the
	// agent's default.
	SpareHeartbeat time.Duration
	// Pins pin plugins to digests: name → "sha256:<hex>" (-pin).
	Pins map[string]string
}

// userData is what the templates see.
type userData struct {
	Cluster           string
	MachineID         string
	Region            string
	RosterURL         string
	RosterSHA256      string
	FleetKeyParameter string
	S3                bool
	OrderPublicKey    string
	Args              []string
	// Rendered parts of the cloud-config.
	Env, Unit, Script string
}

// renderUserData renders the cloud-config that turns a fresh instance into
// a roster machine. Every value that goes into it has been checked against
// safeRe, so nothing needs quoting in the shell script or the YAML.
func renderUserData(cfg Config, region, cluster, machineID string, orderPub ed25519.PublicKey, ag AgentOptions) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(orderPub)
	if err != nil {
		return nil, fmt.Errorf("encode the order public key: %w", err)
	}
	b := cfg.Bootstrap
	d := userData{
		Cluster:           cluster,
		MachineID:         machineID,
		Region:            region,
		RosterURL:         b.RosterURL,
		RosterSHA256:      b.RosterSHA256,
		FleetKeyParameter: b.FleetKeyParameter,
		S3:                strings.HasPrefix(b.RosterURL, "s3://"),
		OrderPublicKey:    string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		Args:              agentArgs(cfg, region, cluster, machineID, ag),
	}
	for _, s := range append([]string{d.Region, d.RosterURL, d.RosterSHA256, d.FleetKeyParameter}, d.Args...) {
		if !safeRe.MatchString(s) {
			return nil, fmt.Errorf("%q cannot go into the user data unquoted", s)
		}
	}
	unit, err := templateFS.ReadFile(UnitFile)
	if err != nil {
		return nil, err
	}
	d.Unit = string(unit)
	if d.Env, err = execute("agent.env.tmpl", d); err != nil {
		return nil, err
	}
	if d.Script, err = execute("bootstrap.sh.tmpl", d); err != nil {
		return nil, err
	}
	out, err := execute("cloud-config.yaml.tmpl", d)
	if err != nil {
		return nil, err
	}
	if len(out) > MaxUserData {
		return nil, fmt.Errorf("the user data is %d bytes, more than EC2's %d", len(out), MaxUserData)
	}
	return []byte(out), nil
}

// agentArgs are the `roster agent` flags besides -keys and -work-dir,
// which the unit sets.
func agentArgs(cfg Config, region, cluster, machineID string, ag AgentOptions) []string {
	qr := ag.QueueRegion
	if qr == "" {
		qr = region
	}
	a := []string{"-cluster", cluster, "-machine-id", machineID, "-provider", "ec2", "-queue", "sqs", "-sqs-region", qr}
	if ag.QueueEndpoint != "" {
		a = append(a, "-sqs-endpoint", ag.QueueEndpoint)
	}
	if ag.SpareHeartbeat > 0 {
		a = append(a, "-spare-heartbeat", ag.SpareHeartbeat.String())
	}
	if cfg.Bootstrap.PluginDir != "" {
		a = append(a, "-plugin-dir", cfg.Bootstrap.PluginDir)
	}
	for _, name := range sortedKeys(ag.Pins) {
		a = append(a, "-pin", name+"="+ag.Pins[name])
	}
	level := cfg.Bootstrap.LogLevel
	if level == "" {
		level = DefaultLogLevel
	}
	return append(a, "-log-level", level)
}

func execute(name string, data any) (string, error) {
	var buf bytes.Buffer
	if err := templates().ExecuteTemplate(&buf, name, data); err != nil {
		return "", fmt.Errorf("render %s: %w", name, err)
	}
	return buf.String(), nil
}

// indent indents every non-empty line of s by n spaces (for a YAML block
// scalar) and drops the final newline, which the template supplies.
func indent(n int, s string) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n")
}

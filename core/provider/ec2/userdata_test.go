package ec2_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rosterhq/roster/core/provider/ec2"
)

// writeFile is one entry of the cloud-config's write_files.
type writeFile struct {
	Path, Owner, Permissions, Content string
}

// parseCloudConfig reads the write_files and runcmd of the cloud-config
// the templates produce. It is no YAML parser: it knows the one shape the
// template writes, and fails on anything else, which is the point.
func parseCloudConfig(t *testing.T, ud []byte) (files []writeFile, runcmd []string) {
	t.Helper()
	lines := strings.Split(string(ud), "\n")
	if lines[0] != "#cloud-config" {
		t.Fatalf("first line %q, want #cloud-config", lines[0])
	}
	section := ""
	for i := 1; i < len(lines); i++ {
		l := lines[i]
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case l == "write_files:" || l == "runcmd:":
			section = strings.TrimSuffix(l, ":")
		case section == "write_files" && strings.HasPrefix(l, "  - path: "):
			files = append(files, writeFile{Path: strings.TrimPrefix(l, "  - path: ")})
		case section == "write_files" && strings.HasPrefix(l, "    owner: "):
			files[len(files)-1].Owner = strings.TrimPrefix(l, "    owner: ")
		case section == "write_files" && strings.HasPrefix(l, "    permissions: "):
			files[len(files)-1].Permissions = strings.Trim(strings.TrimPrefix(l, "    permissions: "), `"`)
		case section == "write_files" && l == "    content: |":
			var b strings.Builder
			for i+1 < len(lines) && (strings.HasPrefix(lines[i+1], "      ") || lines[i+1] == "") {
				i++
				b.WriteString(strings.TrimPrefix(lines[i], "      ") + "\n")
			}
			// A literal block keeps one final newline ("clip").
			files[len(files)-1].Content = strings.TrimRight(b.String(), "\n") + "\n"
		case section == "runcmd" && strings.HasPrefix(l, "  - "):
			runcmd = append(runcmd, strings.TrimPrefix(l, "  - "))
		default:
			t.Fatalf("line %d of the user data is not in the expected shape: %q", i+1, l)
		}
	}
	return files, runcmd
}

func fileByPath(t *testing.T, files []writeFile, path string) writeFile {
	t.Helper()
	for _, f := range files {
		if f.Path == path {
			return f
		}
	}
	t.Fatalf("the user data writes no %s", path)
	return writeFile{}
}

func TestUserDataGolden(t *testing.T) {
	s3 := baseConfig()
	s3.Bootstrap.PluginDir = "/opt/roster/plugins"
	s3Agent := ec2.AgentOptions{
		QueueRegion:    "us-west-2",
		QueueEndpoint:  "https://sqs.us-west-2.amazonaws.com",
		SpareHeartbeat: 45 * time.Second,
		Pins:           map[string]string{"web": "sha256:" + strings.Repeat("1", 64), "db": "sha256:" + strings.Repeat("2", 64)},
	}
	https := baseConfig()
	https.Bootstrap.RosterURL = "https://releases.example.com/roster/v0.1.0/roster-linux-amd64"
	https.Bootstrap.LogLevel = ""
	for name, tc := range map[string]struct {
		cfg ec2.Config
		ag  ec2.AgentOptions
	}{
		"s3-pins": {s3, s3Agent},
		"https":   {https, ec2.AgentOptions{}},
	} {
		t.Run(name, func(t *testing.T) {
			ud, err := ec2.RenderUserData(tc.cfg, "us-east-1", "demo", "m-01jq3xk8zr", orderPub, tc.ag)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "userdata", name+".golden"), ud)

			files, runcmd := parseCloudConfig(t, ud)
			unit, err := os.ReadFile(filepath.FromSlash("templates/roster-agent.service"))
			if err != nil {
				t.Fatal(err)
			}
			if got := fileByPath(t, files, "/etc/systemd/system/roster-agent.service"); got.Content != string(unit) {
				t.Errorf("the unit in the user data differs from %s:\n%s", ec2.UnitFile, got.Content)
			}
			pub := fileByPath(t, files, "/etc/roster/keys/order.pub")
			if !strings.HasPrefix(pub.Content, "-----BEGIN PUBLIC KEY-----\n") || pub.Permissions != "0644" {
				t.Errorf("order.pub = %+v", pub)
			}
			script := fileByPath(t, files, "/usr/local/sbin/roster-bootstrap")
			if script.Permissions != "0700" || script.Owner != "root:root" {
				t.Errorf("bootstrap script %s %s", script.Owner, script.Permissions)
			}
			if len(runcmd) != 1 || runcmd[0] != "[/usr/local/sbin/roster-bootstrap]" {
				t.Errorf("runcmd = %v", runcmd)
			}
			// The script is valid sh.
			sh := filepath.Join(t.TempDir(), "bootstrap")
			if err := os.WriteFile(sh, []byte(script.Content), 0o700); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("sh", "-n", sh).CombinedOutput(); err != nil {
				t.Errorf("sh -n: %v\n%s", err, out)
			}
			// No secret: the fleet key is fetched at boot, never carried.
			if bytes.Contains(ud, []byte("ROSTER FLEET KEY-----\n")) || bytes.Contains(ud, []byte("PRIVATE KEY")) {
				t.Error("the user data carries key material")
			}
		})
	}
}

func TestUserDataTooLarge(t *testing.T) {
	cfg := baseConfig()
	pins := map[string]string{}
	for i := range 200 {
		pins[strings.Repeat("p", 40)+string(rune('a'+i%26))+strings.Repeat("x", i)] = "sha256:" + strings.Repeat("0", 64)
	}
	_, err := ec2.RenderUserData(cfg, "us-east-1", "demo", "m-1", orderPub, ec2.AgentOptions{Pins: pins})
	if err == nil || !strings.Contains(err.Error(), "16384") {
		t.Fatalf("err = %v, want the user data size limit", err)
	}
}

// TestBootstrapScriptRuns runs the rendered bootstrap script under a
// scratch root with stand-ins for aws, curl and systemctl: it installs a
// binary whose digest matches, writes the fleet key root-only, starts the
// unit, and refuses a binary whose digest differs.
func TestBootstrapScriptRuns(t *testing.T) {
	binary := []byte("#!/bin/sh\necho fake roster\n")
	sum := sha256.Sum256(binary)
	fleet := "-----BEGIN ROSTER FLEET KEY-----\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n-----END ROSTER FLEET KEY-----\n"

	type result struct {
		root, log string
		out       []byte
		err       error
	}
	run := func(t *testing.T, url, digest, ssmValue string) result {
		t.Helper()
		dir := t.TempDir()
		root := filepath.Join(dir, "root")
		bin := filepath.Join(dir, "bin")
		log := filepath.Join(dir, "calls.log")
		for _, d := range []string{root, bin} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "artifact"), binary, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "ssm-value"), []byte(ssmValue), 0o644); err != nil {
			t.Fatal(err)
		}
		stubs := map[string]string{
			// aws s3 cp … SRC DST; aws ssm get-parameter … (prints the value)
			"aws": `echo "aws $*" >>"$CALLS"
case "$1 $2" in
"s3 cp") eval "dst=\${$#}"; cp "$STUBS/artifact" "$dst" ;;
"ssm get-parameter") cat "$STUBS/ssm-value" ;;
*) exit 2 ;;
esac`,
			"curl":      `echo "curl $*" >>"$CALLS"; while [ "$1" != "-o" ]; do shift; done; cp "$STUBS/artifact" "$2"`,
			"systemctl": `echo "systemctl $*" >>"$CALLS"`,
			"logger":    `:`,
		}
		for name, body := range stubs {
			if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		cfg := baseConfig()
		cfg.Bootstrap.RosterURL, cfg.Bootstrap.RosterSHA256 = url, digest
		ud, rerr := ec2.RenderUserData(cfg, "us-east-1", "demo", "m-1", orderPub, ec2.AgentOptions{})
		if rerr != nil {
			t.Fatal(rerr)
		}
		files, _ := parseCloudConfig(t, ud)
		script := filepath.Join(dir, "roster-bootstrap")
		if err := os.WriteFile(script, []byte(fileByPath(t, files, "/usr/local/sbin/roster-bootstrap").Content), 0o700); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", script)
		cmd.Env = []string{"PATH=" + bin + ":/usr/local/bin:/usr/bin:/bin", "ROSTER_BOOTSTRAP_ROOT=" + root,
			"CALLS=" + log, "STUBS=" + dir, "TMPDIR=" + dir}
		out, err := cmd.CombinedOutput()
		return result{root, log, out, err}
	}
	calls := func(t *testing.T, log string) string {
		b, err := os.ReadFile(log)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return string(b)
	}

	for _, url := range []string{"s3://roster-artifacts/roster", "https://releases.example.com/roster"} {
		t.Run("good "+url[:5], func(t *testing.T) {
			r := run(t, url, hex.EncodeToString(sum[:]), fleet)
			root, log, err, out := r.root, r.log, r.err, r.out
			if err != nil {
				t.Fatalf("bootstrap failed: %v\n%s", err, out)
			}
			got, err := os.ReadFile(filepath.Join(root, "usr/local/bin/roster"))
			if err != nil || !bytes.Equal(got, binary) {
				t.Errorf("installed roster = %q, %v", got, err)
			}
			if fi, err := os.Stat(filepath.Join(root, "usr/local/bin/roster")); err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("roster mode: %v %v", fi.Mode(), err)
			}
			key := filepath.Join(root, "etc/roster/keys/fleet.key")
			if b, err := os.ReadFile(key); err != nil || string(b) != fleet {
				t.Errorf("fleet.key = %q, %v", b, err)
			}
			if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("fleet.key mode: %v %v", fi.Mode(), err)
			}
			if fi, err := os.Stat(filepath.Dir(key)); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("keys directory mode: %v %v", fi.Mode(), err)
			}
			c := calls(t, log)
			for _, want := range []string{
				"aws ssm get-parameter --region us-east-1 --name /roster/demo/fleet-key --with-decryption",
				"systemctl daemon-reload",
				"systemctl enable --now roster-agent.service",
			} {
				if !strings.Contains(c, want) {
					t.Errorf("calls lack %q:\n%s", want, c)
				}
			}
			if strings.HasPrefix(url, "s3://") != strings.Contains(c, "aws s3 cp") || strings.HasPrefix(url, "https://") != strings.Contains(c, "curl ") {
				t.Errorf("fetched %s with:\n%s", url, c)
			}
		})
	}

	t.Run("digest mismatch", func(t *testing.T) {
		r := run(t, "s3://roster-artifacts/roster", strings.Repeat("0", 64), fleet)
		root, log, err, out := r.root, r.log, r.err, r.out
		if err == nil {
			t.Fatalf("bootstrap ran a binary with the wrong digest:\n%s", out)
		}
		if !strings.Contains(string(out), "refusing to run it") {
			t.Errorf("output does not say why:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(root, "usr/local/bin/roster")); err == nil {
			t.Error("the binary was installed")
		}
		if c := calls(t, log); strings.Contains(c, "systemctl") || strings.Contains(c, "ssm") {
			t.Errorf("went on after the mismatch:\n%s", c)
		}
	})

	t.Run("not a fleet key", func(t *testing.T) {
		r := run(t, "s3://roster-artifacts/roster", hex.EncodeToString(sum[:]), "hunter2\n")
		log, err, out := r.log, r.err, r.out
		if err == nil || !strings.Contains(string(out), "does not hold a roster fleet key") {
			t.Fatalf("err = %v\n%s", err, out)
		}
		if c := calls(t, log); strings.Contains(c, "systemctl") {
			t.Errorf("started the agent without a fleet key:\n%s", c)
		}
	})
}

// TestUnitFilesVerify runs systemd-analyze verify on the agent unit and the
// example units, where systemd-analyze is installed.
func TestUnitFilesVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	units := []string{"templates/roster-agent.service", "../../../examples/aws/roster-orchestrator.service", "../../../examples/aws/roster-agent.service"}
	for _, u := range units {
		t.Run(filepath.Base(u), func(t *testing.T) {
			b, err := os.ReadFile(u)
			if err != nil {
				t.Fatal(err)
			}
			// verify wants the ExecStart binary to exist.
			b = bytes.ReplaceAll(b, []byte("/usr/local/bin/roster "), []byte("/bin/true "))
			p := filepath.Join(t.TempDir(), filepath.Base(u))
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, sa, "verify", p).CombinedOutput()
			// verify exits 0 on unknown keys and bad values, but says so.
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", u, err, out)
			}
		})
	}
}

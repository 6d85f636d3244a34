package web

import (
	"bytes"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"

	"github.com/rosterhq/roster/sdk/rolekit"
)

// Where Debian keeps what the private apache needs. Variables so that tests
// on other layouts could point them elsewhere.
var (
	apacheBinary    = "/usr/sbin/apache2"
	memcachedBinary = "/usr/bin/memcached"
	apacheModules   = "/usr/lib/apache2/modules"
	mimeTypes       = "/etc/mime.types"
)

// StatusPath is where mod_status answers, to loopback clients only.
const StatusPath = "/server-status"

// layout is where a server's files live, under <work dir>/web.
type layout struct {
	Dir       string // <work dir>/web
	Docroot   string
	Conf      string // httpd.conf
	ExtraDir  string // apache_config goes here
	Run       string // runtime dir: supervisor state, apache's pid file
	Logs      string
	AccessLog string
	ErrorLog  string
	McLog     string
	State     string
}

func layoutOf(workDir string) layout {
	d := filepath.Join(workDir, subdir)
	l := layout{
		Dir:      d,
		Docroot:  filepath.Join(d, "docroot"),
		Conf:     filepath.Join(d, "conf", "httpd.conf"),
		ExtraDir: filepath.Join(d, "conf", "extra"),
		Run:      filepath.Join(d, "run"),
		Logs:     filepath.Join(d, "logs"),
		State:    filepath.Join(d, "state.json"),
	}
	l.AccessLog = filepath.Join(l.Logs, "access.log")
	l.ErrorLog = filepath.Join(l.Logs, "error.log")
	l.McLog = filepath.Join(l.Logs, "memcached.log")
	return l
}

// apacheParams fill the config template.
type apacheParams struct {
	settings
	Layout        layout
	Listen        string
	Modules       []module
	User, Group   string // empty when not running as root
	ServerName    string
	ServerLimit   int // event: processes of ThreadsPerChild threads
	ThreadsPer    int
	MemcachedAddr string
	Server        string
	HasExtra      bool
}

type module struct{ Name, Path string }

var apacheTemplate = template.Must(template.New("httpd.conf").Funcs(template.FuncMap{
	"q":      quote,
	"onoff":  onOff,
	"minint": func(a, b int) int { return min(a, b) },
}).Parse(`# Written by the roster web role for server {{.Server}}; rewritten on every Provision and Configure.
ServerRoot {{q .Layout.Dir}}
DefaultRuntimeDir {{q .Layout.Run}}
# Not apache2.pid: that name is the supervisor's own pid file for the daemon.
PidFile {{q (print .Layout.Run "/httpd.pid")}}
Mutex file:{{.Layout.Run}} default
ServerName {{.ServerName}}
Listen {{.Listen}}
ServerTokens Prod
ServerSignature Off
TraceEnable Off
{{range .Modules}}LoadModule {{.Name}} {{q .Path}}
{{end}}
{{- if .User}}User {{.User}}
Group {{.Group}}
{{end}}
Timeout 60
KeepAlive {{onoff .KeepAlive}}
KeepAliveTimeout {{.KeepAliveTimeout}}
MaxKeepAliveRequests 100
# Drain stops apache with graceful-stop and bounds the wait itself.
GracefulShutdownTimeout 0
{{if eq .MPM "prefork"}}StartServers {{minint 5 .MaxRequestWorkers}}
MinSpareServers {{minint 5 .MaxRequestWorkers}}
MaxSpareServers {{minint 10 .MaxRequestWorkers}}
ServerLimit {{.MaxRequestWorkers}}
MaxRequestWorkers {{.MaxRequestWorkers}}
MaxConnectionsPerChild 0
{{else}}StartServers 1
ServerLimit {{.ServerLimit}}
ThreadsPerChild {{.ThreadsPer}}
ThreadLimit {{.ThreadsPer}}
MinSpareThreads {{.ThreadsPer}}
MaxSpareThreads {{.MaxRequestWorkers}}
MaxRequestWorkers {{.MaxRequestWorkers}}
MaxConnectionsPerChild 0
{{end}}
ErrorLog {{q .Layout.ErrorLog}}
LogLevel warn
LogFormat "%h %l %u %t \"%r\" %>s %O \"%{Referer}i\" \"%{User-Agent}i\" %D" combined_us
CustomLog {{q .Layout.AccessLog}} combined_us
TypesConfig {{q .MimeTypes}}
AddDefaultCharset UTF-8

# What the site's pages may want to know (PHP: $_SERVER['ROSTER_MEMCACHED']).
SetEnv ROSTER_SERVER {{q .Server}}
SetEnv ROSTER_MEMCACHED {{q .MemcachedAddr}}
{{- if .Env}}
# The role's env attribute; Configure rewrites these and reloads gracefully.
{{- range .EnvLines}}
SetEnv {{.Name}} {{q .Value}}
{{- end}}
{{- end}}

<Directory />
    Options None
    AllowOverride None
    Require all denied
</Directory>
DocumentRoot {{q .Layout.Docroot}}
<Directory {{q .Layout.Docroot}}>
    Options FollowSymLinks
    AllowOverride None
    Require all granted
</Directory>
<FilesMatch "^\.">
    Require all denied
</FilesMatch>
DirectoryIndex {{if .PHP}}index.php {{end}}index.html
{{- if .PHP}}
<FilesMatch "\.php$">
    SetHandler application/x-httpd-php
</FilesMatch>
{{- end}}

ExtendedStatus On
<Location {{q .StatusPath}}>
    SetHandler server-status
    Require local
</Location>
{{if .HasExtra}}
IncludeOptional {{q (print .Layout.ExtraDir "/*.conf")}}
{{end}}`))

// MimeTypes and StatusPath are template conveniences.
func (apacheParams) MimeTypes() string  { return mimeTypes }
func (apacheParams) StatusPath() string { return StatusPath }

// quote writes an apache config string argument: apache's parser
// (ap_getword_conf) reads \\ as \ and \" as " between double quotes and
// everything else literally; values reaching here hold no line break (a
// line ending in a backslash would continue on the next) and, for env, no
// "${" (checkEnv).
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// renderApache writes the private apache configuration.
func renderApache(p apacheParams) ([]byte, error) {
	var buf bytes.Buffer
	if err := apacheTemplate.Execute(&buf, p); err != nil {
		return nil, fmt.Errorf("web: apache config template: %w", err)
	}
	return buf.Bytes(), nil
}

// modulesFor lists the modules the private apache loads from Debian's
// module directory. mod_log_config and mod_unixd are compiled into Debian's
// apache2; loading them again is an error.
func modulesFor(s settings) ([]module, error) {
	names := []struct{ name, file string }{
		{"mpm_" + s.MPM + "_module", "mod_mpm_" + s.MPM + ".so"},
		{"authz_core_module", "mod_authz_core.so"},
		{"authz_host_module", "mod_authz_host.so"},
		{"dir_module", "mod_dir.so"},
		{"mime_module", "mod_mime.so"},
		{"env_module", "mod_env.so"},
		{"headers_module", "mod_headers.so"},
		{"rewrite_module", "mod_rewrite.so"},
		{"alias_module", "mod_alias.so"},
		{"setenvif_module", "mod_setenvif.so"},
		{"status_module", "mod_status.so"},
	}
	var mods []module
	for _, n := range names {
		p := filepath.Join(apacheModules, n.file)
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("apache module %s: %w (is apache2 installed?)", n.name, err)
		}
		mods = append(mods, module{Name: n.name, Path: p})
	}
	if s.PHP {
		m, _ := filepath.Glob(filepath.Join(apacheModules, "libphp*.so"))
		if len(m) == 0 {
			return nil, fmt.Errorf("php = true but no libphp*.so in %s: install libapache2-mod-php", apacheModules)
		}
		mods = append(mods, module{Name: "php_module", Path: m[len(m)-1]})
	}
	return mods, nil
}

// event MPM: 25 threads per process, as Debian's default.
func eventShape(workers int) (serverLimit, threads int) {
	threads = min(25, workers)
	return (workers + threads - 1) / threads, threads
}

func listenAddr(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// userName is the name daemons are told to switch to: none when the
// plugin is not root.
func userName(u *user.User) string {
	if u == nil {
		return ""
	}
	return u.Username
}

// makeReadable lets an unprivileged user read the document root when the
// plugin runs as root: files a+r, directories a+rx (chmod -R a+rX), and
// checks that the directories above it let that user through, naming the
// first that does not.
func makeReadable(docroot string, u *user.User) error {
	err := filepath.WalkDir(docroot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fi.Mode().Perm() | 0o444
		if d.IsDir() {
			want |= 0o111
		}
		if want != fi.Mode().Perm() {
			return os.Chmod(p, want)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("making the document root readable: %w", err)
	}
	return rolekit.CheckReachable(docroot, "the document root", u)
}

func onOff(b bool) string {
	if b {
		return "On"
	}
	return "Off"
}

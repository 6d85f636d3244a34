package tomcat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
)

// Where Debian keeps Tomcat, Java and apache. Variables so that tests on
// other layouts could point them elsewhere.
var (
	// catalinaHome is CATALINA_HOME: bin/bootstrap.jar, bin/tomcat-juli.jar
	// and lib/ (the common class loader).
	catalinaHome = "/usr/share/tomcat10"
	// confTemplates are where web.xml and catalina.properties are copied
	// from, the first that has them: the package's pristine copies, then
	// the system instance's.
	confTemplates = []string{"/usr/share/tomcat10/etc", "/etc/tomcat10"}
	// javaCandidates are tried when java is not in PATH.
	javaCandidates = []string{"/usr/lib/jvm/default-java/bin/java"}
	apacheBinary   = "/usr/sbin/apache2"
	apacheModules  = "/usr/lib/apache2/modules"
)

// The users the daemons run as when the plugin runs as root.
const (
	tomcatUser = "tomcat"
	apacheUser = "www-data"
)

// statusPath is where the private status service answers, on its own
// loopback port.
const statusPath = "/status"

// layout is where a server's files live, under <work dir>/tomcat.
type layout struct {
	Dir       string // <work dir>/tomcat
	Base      string // CATALINA_BASE
	Conf      string // CATALINA_BASE/conf
	Logs      string // CATALINA_BASE/logs
	Webapps   string // CATALINA_BASE/webapps
	StatusApp string // docBase of the status context
	Fetch     string // where the artifact is fetched before it is put in webapps
	CatOut    string // the JVM's stdout and stderr
	Front     string // apache's ServerRoot
	FrontConf string
	FrontLogs string
	Run       string // supervisor state, apache's pid file and runtime dir
	State     string
}

func layoutOf(workDir string) layout {
	d := filepath.Join(workDir, subdir)
	base := filepath.Join(d, "base")
	l := layout{
		Dir:       d,
		Base:      base,
		Conf:      filepath.Join(base, "conf"),
		Logs:      filepath.Join(base, "logs"),
		Webapps:   filepath.Join(base, "webapps"),
		StatusApp: filepath.Join(base, "roster-status"),
		Fetch:     filepath.Join(d, "fetch"),
		Front:     filepath.Join(d, "front"),
		Run:       filepath.Join(d, "run"),
		State:     filepath.Join(d, "state.json"),
	}
	l.CatOut = filepath.Join(l.Logs, "catalina.out")
	l.FrontConf = filepath.Join(l.Front, "httpd.conf")
	l.FrontLogs = filepath.Join(l.Front, "logs")
	return l
}

// serverParams fill the server.xml template.
type serverParams struct {
	Server           string
	Address          string
	Port             int
	StatusPort       int
	MaxThreads       int
	KeepAliveMillis  int
	Fronted          bool
	StatusApp        string
	GracefulStopWait int
}

var serverXML = template.Must(template.New("server.xml").Funcs(template.FuncMap{"x": xmlAttr}).Parse(`<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by the roster tomcat role for server {{x .Server}}; rewritten on every Provision. -->
<!-- port="-1": no shutdown port. The JVM stops on SIGTERM, through Tomcat's shutdown hook. -->
<Server port="-1" shutdown="SHUTDOWN">
  <Listener className="org.apache.catalina.startup.VersionLoggerListener" />
  <Listener className="org.apache.catalina.core.JreMemoryLeakPreventionListener" />
  <Listener className="org.apache.catalina.core.ThreadLocalLeakPreventionListener" />

  <!-- On stop, close the listener at once and let the connections in flight
       finish: Drain and Teardown bound the wait themselves. -->
  <Service name="Catalina" gracefulStopAwaitMillis="{{.GracefulStopWait}}">
    <!-- bindOnInit="false" lets a stop close the listening socket before
         the requests in flight end. No AJP connector. -->
    <Connector address="{{x .Address}}" port="{{.Port}}" protocol="HTTP/1.1"
               bindOnInit="false"
               maxThreads="{{.MaxThreads}}"
               connectionTimeout="20000"
               keepAliveTimeout="{{.KeepAliveMillis}}"
               maxParameterCount="1000" />
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="true" autoDeploy="false" deployOnStartup="true">
{{- if .Fronted}}
        <!-- apache in front, on loopback: take the client's address from X-Forwarded-For. -->
        <Valve className="org.apache.catalina.valves.RemoteIpValve" internalProxies="127\.0\.0\.1|0:0:0:0:0:0:0:1" />
{{- end}}
        <!-- Unbuffered: a JVM killed at the end of Teardown keeps its last lines. -->
        <Valve className="org.apache.catalina.valves.AccessLogValve" directory="logs"
               prefix="access" suffix=".log" rotatable="false" buffered="false"
               pattern="%h %l %u %t &quot;%r&quot; %s %b %D" />
        <Valve className="org.apache.catalina.valves.ErrorReportValve" showReport="false" showServerInfo="false" />
      </Host>
    </Engine>
  </Service>

  <!-- The role's own status service, on a loopback port of its own, so that
       nothing of it is visible on the application's connector. -->
  <Service name="RosterStatus">
    <!-- bindOnInit="false": the port answers once Tomcat has started. -->
    <Connector address="127.0.0.1" port="{{.StatusPort}}" protocol="HTTP/1.1" bindOnInit="false" maxThreads="4" keepAliveTimeout="1000" />
    <Engine name="RosterStatus" defaultHost="localhost">
      <Host name="localhost" appBase="roster-status-webapps" unpackWARs="false" autoDeploy="false" deployOnStartup="false">
        <Context path="" docBase="{{x .StatusApp}}" privileged="true">
          <JarScanner scanClassPath="false" scanManifest="false" />
          <Valve className="org.apache.catalina.valves.RemoteAddrValve" allow="127\.\d+\.\d+\.\d+|::1|0:0:0:0:0:0:0:1" />
        </Context>
      </Host>
    </Engine>
  </Service>
</Server>
`))

// statusWebXML maps Tomcat's own status servlet (from catalina.jar, the
// one the manager application uses) in the private status context.
const statusWebXML = `<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0" metadata-complete="true">
  <servlet>
    <servlet-name>status</servlet-name>
    <servlet-class>org.apache.catalina.manager.StatusManagerServlet</servlet-class>
  </servlet>
  <servlet-mapping>
    <servlet-name>status</servlet-name>
    <url-pattern>` + statusPath + `</url-pattern>
  </servlet-mapping>
</web-app>
`

// loggingProperties keeps Debian's two log files, without dates in their
// names (Teardown returns them by name) and without the console handler
// (stdout goes to catalina.out). The handlers are synchronous, unlike
// Debian's: Provision reads catalina.log for a failed start, and must find
// the line there before it asks the application.
const loggingProperties = `# Written by the roster tomcat role.
handlers = 1catalina.org.apache.juli.FileHandler, 2localhost.org.apache.juli.FileHandler
.handlers = 1catalina.org.apache.juli.FileHandler

1catalina.org.apache.juli.FileHandler.level = FINE
1catalina.org.apache.juli.FileHandler.directory = ${catalina.base}/logs
1catalina.org.apache.juli.FileHandler.prefix = catalina.
1catalina.org.apache.juli.FileHandler.suffix = .log
1catalina.org.apache.juli.FileHandler.rotatable = false

2localhost.org.apache.juli.FileHandler.level = FINE
2localhost.org.apache.juli.FileHandler.directory = ${catalina.base}/logs
2localhost.org.apache.juli.FileHandler.prefix = localhost.
2localhost.org.apache.juli.FileHandler.suffix = .log
2localhost.org.apache.juli.FileHandler.rotatable = false

org.apache.catalina.core.ContainerBase.[Catalina].[localhost].level = INFO
org.apache.catalina.core.ContainerBase.[Catalina].[localhost].handlers = 2localhost.org.apache.juli.FileHandler
`

const contextXML = `<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by the roster tomcat role: the defaults of every web application. -->
<Context>
    <WatchedResource>WEB-INF/web.xml</WatchedResource>
    <WatchedResource>WEB-INF/tomcat-web.xml</WatchedResource>
</Context>
`

// skipJars are added to catalina.properties' jarsToSkip: Debian's Tomcat
// jars have other names than upstream's, and scanning them (and the JDT
// compiler jasper pulls in) for TLDs takes seconds at every start.
const skipJars = `tomcat10-*.jar,eclipse-jdt-core*.jar,ecj*.jar,commons-daemon*.jar,`

const jarsToSkipKey = "tomcat.util.scan.StandardJarScanFilter.jarsToSkip="

// writeBase writes CATALINA_BASE's configuration and directories. The
// application itself is put in webapps by the caller.
func writeBase(l layout, p serverParams) error {
	for _, d := range []string{l.Conf, l.Logs, l.Webapps, filepath.Join(l.Base, "temp"), filepath.Join(l.Base, "work"),
		filepath.Join(l.StatusApp, "WEB-INF"), filepath.Join(l.Base, "roster-status-webapps"),
		// Each Host's xmlBase: Tomcat logs SEVERE when it cannot create it.
		filepath.Join(l.Conf, "Catalina", "localhost"), filepath.Join(l.Conf, "RosterStatus", "localhost")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	webXML, err := readTemplate("web.xml")
	if err != nil {
		return err
	}
	props, err := readTemplate("catalina.properties")
	if err != nil {
		return err
	}
	var sx bytes.Buffer
	if err := serverXML.Execute(&sx, p); err != nil {
		return fmt.Errorf("server.xml template: %w", err)
	}
	files := map[string][]byte{
		filepath.Join(l.Conf, "server.xml"):              sx.Bytes(),
		filepath.Join(l.Conf, "web.xml"):                 webXML,
		filepath.Join(l.Conf, "catalina.properties"):     withSkippedJars(props),
		filepath.Join(l.Conf, "logging.properties"):      []byte(loggingProperties),
		filepath.Join(l.Conf, "context.xml"):             []byte(contextXML),
		filepath.Join(l.StatusApp, "WEB-INF", "web.xml"): []byte(statusWebXML),
	}
	for path, b := range files {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// readTemplate reads one of Debian's Tomcat configuration files.
func readTemplate(name string) ([]byte, error) {
	var errs []error
	for _, dir := range confTemplates {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err == nil {
			return b, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("tomcat configuration template %s (is tomcat10 installed?): %w", name, errors.Join(errs...))
}

// withSkippedJars adds skipJars to the jarsToSkip property, keeping the
// rest of Debian's catalina.properties as it is.
func withSkippedJars(props []byte) []byte {
	var out bytes.Buffer
	done := false
	sc := bufio.NewScanner(bytes.NewReader(props))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line)
		out.WriteByte('\n')
		if !done && strings.HasPrefix(strings.TrimSpace(line), jarsToSkipKey) {
			done = true
			if strings.HasSuffix(line, `\`) {
				out.WriteString(skipJars + "\\\n")
			} else {
				// A one-line value: append rather than continue.
				out.Truncate(out.Len() - 1)
				if !strings.HasSuffix(line, "=") {
					out.WriteByte(',')
				}
				out.WriteString(strings.TrimSuffix(skipJars, ",") + "\n")
			}
		}
	}
	if !done {
		out.WriteString(jarsToSkipKey + strings.TrimSuffix(skipJars, ",") + "\n")
	}
	return out.Bytes()
}

// xmlAttr escapes s for an XML attribute value.
func xmlAttr(s string) string {
	return strings.NewReplacer(`&`, "&amp;", `<`, "&lt;", `>`, "&gt;", `"`, "&quot;", `'`, "&apos;").Replace(s)
}

// javaBinary finds the java command.
func javaBinary() (string, error) {
	if p, err := exec.LookPath("java"); err == nil {
		return p, nil
	}
	for _, p := range javaCandidates {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("no java command in PATH nor at %s (tomcat10 depends on a Java runtime: install default-jre-headless)", strings.Join(javaCandidates, ", "))
}

// javaArgs is the JVM's command line: what catalina.sh would pass, without
// catalina.sh (whose daemon mode forks out of the supervisor's process
// group), then the operator's options, then Tomcat's bootstrap class.
func javaArgs(l layout, s settings, server string) []string {
	home := catalinaHome
	args := []string{
		"-Xmx" + strconv.Itoa(s.HeapMB) + "m",
		"-Djava.awt.headless=true",
		// A JVM out of memory limps on; one that exits is replaced.
		"-XX:+ExitOnOutOfMemoryError",
		"-Djava.util.logging.config.file=" + filepath.Join(l.Conf, "logging.properties"),
		"-Djava.util.logging.manager=org.apache.juli.ClassLoaderLogManager",
		"-Djdk.tls.ephemeralDHKeySize=2048",
		"-Djava.protocol.handler.pkgs=org.apache.catalina.webresources",
		"--add-opens=java.base/java.lang=ALL-UNNAMED",
		"--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
		"--add-opens=java.base/java.io=ALL-UNNAMED",
		"--add-opens=java.base/java.util=ALL-UNNAMED",
		"--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
		"--add-opens=java.rmi/sun.rmi.transport=ALL-UNNAMED",
		"-Droster.server=" + server,
	}
	args = append(args, s.JVMOptions...)
	return append(args,
		"-classpath", filepath.Join(home, "bin", "bootstrap.jar")+string(os.PathListSeparator)+filepath.Join(home, "bin", "tomcat-juli.jar"),
		"-Dcatalina.base="+l.Base,
		"-Dcatalina.home="+home,
		"-Djava.io.tmpdir="+filepath.Join(l.Base, "temp"),
		"org.apache.catalina.startup.Bootstrap", "start",
	)
}

// chownTree gives the tree at dir to u (chown -R), without following links.
func chownTree(dir string, u *user.User) error {
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// frontParams fill the apache front's configuration template.
type frontParams struct {
	Server     string
	Layout     layout
	Listen     string
	ServerName string
	User       string
	Backend    string // host:port of Tomcat's connector
	Modules    []module
	KeepAlive  int
}

type module struct{ Name, Path string }

var frontTemplate = template.Must(template.New("httpd.conf").Funcs(template.FuncMap{"q": quote}).Parse(`# Written by the roster tomcat role for server {{.Server}}: apache in front of Tomcat.
ServerRoot {{q .Layout.Front}}
DefaultRuntimeDir {{q .Layout.Run}}
# Not apache2.pid: that is the supervisor's own pid file.
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
Group {{.User}}
{{end}}
Timeout 60
KeepAlive On
KeepAliveTimeout {{.KeepAlive}}
# Drain stops apache with graceful-stop and bounds the wait itself.
GracefulShutdownTimeout 0
StartServers 1
ServerLimit 8
ThreadsPerChild 25
MaxRequestWorkers 200
ErrorLog {{q (print .Layout.FrontLogs "/error.log")}}
LogLevel warn
LogFormat "%h %l %u %t \"%r\" %>s %O \"%{Referer}i\" \"%{User-Agent}i\" %D" combined_us
CustomLog {{q (print .Layout.FrontLogs "/access.log")}} combined_us

<Location />
    Require all granted
</Location>
# retry=0: a backend error does not take Tomcat out of service for a minute.
ProxyPass / http://{{.Backend}}/ retry=0
ProxyPassReverse / http://{{.Backend}}/
ProxyPreserveHost On
ProxyTimeout 300
`))

// quote writes an apache config string argument.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// frontModules lists the modules the front loads from Debian's module
// directory (mod_log_config and mod_unixd are compiled in).
func frontModules() ([]module, error) {
	var mods []module
	for _, n := range []string{"mpm_event", "authz_core", "authz_host", "proxy", "proxy_http"} {
		p := filepath.Join(apacheModules, "mod_"+n+".so")
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("apache module %s: %w (is apache2 installed?)", n, err)
		}
		mods = append(mods, module{Name: n + "_module", Path: p})
	}
	return mods, nil
}

func renderFront(p frontParams) ([]byte, error) {
	var buf bytes.Buffer
	if err := frontTemplate.Execute(&buf, p); err != nil {
		return nil, fmt.Errorf("apache front config template: %w", err)
	}
	return buf.Bytes(), nil
}

func hostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

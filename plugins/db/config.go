package db

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/rosterhq/roster/sdk"
	"github.com/rosterhq/roster/sdk/rolekit"
)

// loopbackCIDRs are the default client_cidrs and replication_cidrs.
var loopbackCIDRs = []string{"127.0.0.1/32", "::1/128"}

// Schema returns the role's config schema; ConfigSchema answers it.
func Schema() sdk.Schema {
	loopback := sdk.ListVal(sdk.StringVal(loopbackCIDRs[0]), sdk.StringVal(loopbackCIDRs[1]))
	attrs := []sdk.Attribute{
		{Name: "port", Type: sdk.Number, Default: sdk.NumberIntVal(0),
			Description: "PostgreSQL's TCP port; 0 picks a free one"},
		{Name: "listen", Type: sdk.String, Default: sdk.StringVal("127.0.0.1"),
			Description: "address PostgreSQL listens on (listen_addresses); the postgres endpoint names it (127.0.0.1 when it is 0.0.0.0 or ::)"},
		{Name: "database", Type: sdk.String, Default: sdk.StringVal(""),
			Description: "a database to create, owned by user when set; the schema and dump go into it"},
		{Name: "user", Type: sdk.String, Default: sdk.StringVal(""),
			Description: "a login role to create (not a superuser) with password; it owns database"},
		{Name: "password", Type: sdk.String, Default: sdk.StringVal(""), Sensitive: true,
			Description: "user's password; stored as a SCRAM-SHA-256 verifier, never in clear"},
		{Name: "schema", Type: sdk.String, Default: sdk.StringVal(""),
			Description: "artifact URL of a .sql file run with psql once, after the cluster is created, as user in database (one transaction)"},
		{Name: "schema_sha256", Type: sdk.String, Default: sdk.StringVal(""),
			Description: "expected sha256 of the schema file; checked before use"},
		{Name: "dump", Type: sdk.String, Default: sdk.StringVal(""),
			Description: "artifact URL of a dump restored once, after schema: plain SQL (psql), or pg_dump's custom or directory format (pg_restore)"},
		{Name: "dump_sha256", Type: sdk.String, Default: sdk.StringVal(""),
			Description: "expected sha256 of the dump artifact; checked before use"},
		{Name: "replica_of", Type: sdk.String, Default: sdk.StringVal(""),
			Description: "make this server a streaming replica (hot standby) of a primary: role.<name>.endpoints.postgres (recommended), a role name or server name found among the request's peers, or host:port"},
		{Name: "replication_password", Type: sdk.String, Default: sdk.StringVal(""), Sensitive: true,
			Description: "password of the replicator role on a primary, and the one a replica logs in with; empty trusts replication connections from loopback only (for tests and single-host setups: see docs/roles/db.md)"},
		{Name: "replication_cidrs", Type: sdk.List(sdk.String), Default: loopback,
			Description: "client addresses allowed to stream replication (pg_hba.conf); non-loopback ones need replication_password"},
		{Name: "client_cidrs", Type: sdk.List(sdk.String), Default: loopback,
			Description: "client addresses allowed to log in over TCP with a password (scram-sha-256)"},
		{Name: "max_connections", Type: sdk.Number, Default: sdk.NumberIntVal(100),
			Description: "max_connections; a replica's must be at least its primary's"},
		{Name: "shared_buffers", Type: sdk.String, Default: sdk.StringVal("128MB"),
			Description: "shared_buffers, such as 128MB or 1GB"},
		{Name: "settings", Type: sdk.Map(sdk.String), Default: sdk.NoValue,
			Description: "extra postgresql.conf settings, name = value (work_mem = \"8MB\"); the settings the role manages itself are refused"},
		{Name: "drain_close_idle", Type: sdk.Bool, Default: sdk.BoolVal(true),
			Description: "Drain ends client sessions that sit idle outside a transaction (as apache closes idle keep-alive connections) and waits for the others; false waits for every client to disconnect"},
		{Name: "version", Type: sdk.Number, Default: sdk.NumberIntVal(0),
			Description: "PostgreSQL major version to run (15); 0 takes the newest installed under /usr/lib/postgresql"},
	}
	attrs = append(attrs, rolekit.PackagesAttributes("PostgreSQL (postgresql, or postgresql-<version> when version is set), such as postgresql-15-postgis-3")...)
	return sdk.Schema{Attributes: attrs}
}

// settings is the decoded and checked config.
type settings struct {
	Port                int
	Listen              string
	Database            string
	User                string
	Password            string
	Schema              string
	SchemaSHA256        string
	Dump                string
	DumpSHA256          string
	ReplicaOf           string
	ReplicationPassword string
	ReplicationCIDRs    []string
	ClientCIDRs         []string
	MaxConnections      int
	SharedBuffers       string
	Settings            map[string]string
	DrainCloseIdle      bool
	Version             int
	Packages            []string
	InstallMissing      bool
}

// managed are the postgresql.conf settings the role writes itself: letting
// `settings` change them would break the role's own use of the cluster.
var managed = []string{
	"config_file", "data_directory", "external_pid_file", "hba_file", "ident_file",
	"listen_addresses", "port", "unix_socket_directories", "unix_socket_group", "unix_socket_permissions",
	"logging_collector", "log_destination", "cluster_name",
	"max_connections", "shared_buffers", "primary_conninfo", "primary_slot_name",
}

var (
	identifier   = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	settingName  = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$`)
	memorySize   = regexp.MustCompile(`^[0-9]+(kB|MB|GB|TB)?$`)
	hexDigest    = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	reservedUser = []string{"postgres", replicationUser, "public"}
)

// decode reads the config and checks what the schema's types cannot: ranges,
// names and combinations. Every mistake is an sdk.ErrInvalidConfig naming
// the attribute.
func decode(c sdk.Config) (settings, error) {
	s := settings{
		Port:                int(c.Int("port")),
		Listen:              strings.TrimSpace(c.String("listen")),
		Database:            strings.TrimSpace(c.String("database")),
		User:                strings.TrimSpace(c.String("user")),
		Password:            c.String("password"),
		Schema:              strings.TrimSpace(c.String("schema")),
		SchemaSHA256:        strings.TrimSpace(c.String("schema_sha256")),
		Dump:                strings.TrimSpace(c.String("dump")),
		DumpSHA256:          strings.TrimSpace(c.String("dump_sha256")),
		ReplicaOf:           strings.TrimSpace(c.String("replica_of")),
		ReplicationPassword: c.String("replication_password"),
		ReplicationCIDRs:    c.Strings("replication_cidrs"),
		ClientCIDRs:         c.Strings("client_cidrs"),
		MaxConnections:      int(c.Int("max_connections")),
		SharedBuffers:       strings.TrimSpace(c.String("shared_buffers")),
		DrainCloseIdle:      c.Bool("drain_close_idle"),
		Version:             int(c.Int("version")),
		Packages:            c.Strings("packages"),
		InstallMissing:      c.Bool("install_missing"),
	}
	// Absent attributes (a Config built by hand, without the schema's
	// defaults) take the defaults.
	if s.Listen == "" {
		s.Listen = "127.0.0.1"
	}
	if !c.Has("replication_cidrs") {
		s.ReplicationCIDRs = loopbackCIDRs
	}
	if !c.Has("client_cidrs") {
		s.ClientCIDRs = loopbackCIDRs
	}
	if !c.Has("max_connections") {
		s.MaxConnections = 100
	}
	if s.SharedBuffers == "" {
		s.SharedBuffers = "128MB"
	}
	if !c.Has("drain_close_idle") {
		s.DrainCloseIdle = true
	}

	bad := func(format string, args ...any) (settings, error) {
		return settings{}, sdk.Errorf(sdk.ErrInvalidConfig, "db: "+format, args...)
	}
	extra, err := stringMap(c.Get("settings"))
	if err != nil {
		return bad("settings: %v", err)
	}
	s.Settings = extra
	for _, k := range sortedKeys(s.Settings) {
		switch {
		case !settingName.MatchString(k):
			return bad("settings: %q is not a PostgreSQL setting name", k)
		case slices.Contains(managed, k):
			return bad("settings: %q is managed by the db role; use its own attribute where there is one (port, listen, max_connections, shared_buffers)", k)
		case strings.ContainsAny(s.Settings[k], "\n\r\x00"):
			return bad("settings: the value of %q holds a line break", k)
		}
	}
	switch {
	case s.Port < 0 || s.Port > 65535:
		return bad("port %d: want 0..65535 (0 picks a free port)", s.Port)
	case net.ParseIP(s.Listen) == nil:
		return bad("listen %q: want an IP address", s.Listen)
	case s.Database != "" && !identifier.MatchString(s.Database):
		return bad("database %q: want a lower-case name of letters, digits and _ (at most 63)", s.Database)
	case strings.HasPrefix(s.Database, "template"):
		return bad("database %q: template databases are PostgreSQL's own", s.Database)
	case s.User != "" && !identifier.MatchString(s.User):
		return bad("user %q: want a lower-case name of letters, digits and _ (at most 63)", s.User)
	case slices.Contains(reservedUser, s.User) || strings.HasPrefix(s.User, "pg_"):
		return bad("user %q is reserved: the role uses postgres and %s itself", s.User, replicationUser)
	case s.User != "" && s.Password == "":
		return bad("user %q has no password: it could not log in over TCP (scram-sha-256)", s.User)
	case s.User == "" && s.Password != "":
		return bad("password is set but user is not")
	case s.SchemaSHA256 != "" && !hexDigest.MatchString(s.SchemaSHA256):
		return bad("schema_sha256 %q: want 64 hex digits", s.SchemaSHA256)
	case s.DumpSHA256 != "" && !hexDigest.MatchString(s.DumpSHA256):
		return bad("dump_sha256 %q: want 64 hex digits", s.DumpSHA256)
	case s.SchemaSHA256 != "" && s.Schema == "":
		return bad("schema_sha256 is set but schema is not")
	case s.DumpSHA256 != "" && s.Dump == "":
		return bad("dump_sha256 is set but dump is not")
	case s.MaxConnections < 1 || s.MaxConnections > 262143:
		return bad("max_connections %d: want 1..262143", s.MaxConnections)
	case !memorySize.MatchString(s.SharedBuffers):
		return bad("shared_buffers %q: want a size such as 128MB", s.SharedBuffers)
	case s.Version < 0 || (s.Version > 0 && s.Version < 10):
		return bad("version %d: want a PostgreSQL major version (10 or later), or 0 for the newest installed", s.Version)
	}
	if s.ReplicaOf != "" {
		for name, set := range map[string]bool{"database": s.Database != "", "user": s.User != "", "schema": s.Schema != "", "dump": s.Dump != ""} {
			if set {
				return bad("%s with replica_of: a replica copies its primary's databases, roles and data; set %s on the primary's role", name, name)
			}
		}
	}
	for _, attr := range []struct {
		name  string
		cidrs []string
	}{{"client_cidrs", s.ClientCIDRs}, {"replication_cidrs", s.ReplicationCIDRs}} {
		for _, cidr := range attr.cidrs {
			_, n, err := net.ParseCIDR(cidr)
			if err != nil {
				return bad("%s: %q is not an address range such as 10.0.0.0/8", attr.name, cidr)
			}
			if attr.name == "replication_cidrs" && s.ReplicationPassword == "" && !isLoopback(n) {
				return bad("replication_cidrs: %q is not loopback, and an empty replication_password trusts whoever connects: set replication_password", cidr)
			}
		}
	}
	return s, nil
}

// isLoopback says whether every address of n is a loopback address.
func isLoopback(n *net.IPNet) bool {
	ones, bits := n.Mask.Size()
	if bits == 32 {
		return n.IP.To4()[0] == 127 && ones >= 8
	}
	return n.IP.Equal(net.IPv6loopback) && ones == 128
}

// stringMap reads a map(string) value; null is an empty map.
func stringMap(v sdk.Value) (map[string]string, error) {
	out := map[string]string{}
	if v.IsNull() || !v.IsKnown() {
		return out, nil
	}
	if !v.Type().IsMapType() && !v.Type().IsObjectType() {
		return nil, fmt.Errorf("want a map of strings, got %s", v.Type().FriendlyName())
	}
	for it := v.ElementIterator(); it.Next(); {
		k, e := it.Element()
		if e.IsNull() || !e.IsKnown() || e.Type() != sdk.String {
			return nil, fmt.Errorf("the value of %q is not a string", k.AsString())
		}
		out[k.AsString()] = e.AsString()
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// packages returns the Debian packages the settings need.
func (s settings) packages() []string {
	p := "postgresql"
	if s.Version > 0 {
		p = fmt.Sprintf("postgresql-%d", s.Version)
	}
	return append([]string{p}, s.Packages...)
}

// endpointHost is the host the postgres endpoint names.
func (s settings) endpointHost() string { return rolekit.EndpointHost(s.Listen) }

// target is the database and role the schema and the dump run as.
func (s settings) target() (database, user string) {
	database, user = s.Database, s.User
	if database == "" {
		database = "postgres"
	}
	if user == "" {
		user = superuser
	}
	return database, user
}

package db

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/rosterhq/roster/sdk"
)

// splitHostPort splits host:port and checks the port.
func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", addr)
	}
	return host, port, nil
}

// resolvePrimary finds the address of the primary that replica_of names:
//
//   - host:port, which is what `replica_of = role.db.endpoints.postgres`
//     resolves to (core hands in the endpoints of the role's first ready
//     server, and lists the role among the peers);
//   - the name of a role among the peers: its first server by name, other
//     than this one, with a postgres endpoint;
//   - the name of a server among the peers.
func resolvePrimary(replicaOf, self string, peers map[string][]sdk.Peer) (string, error) {
	if _, _, err := splitHostPort(replicaOf); err == nil {
		return replicaOf, nil
	}
	if ps, ok := peers[replicaOf]; ok {
		var cands []sdk.Peer
		for _, p := range ps {
			if p.Name != self && p.Endpoints["postgres"] != "" {
				cands = append(cands, p)
			}
		}
		if len(cands) == 0 {
			return "", sdk.Errorf(sdk.ErrUnavailable, "db: replica_of %q: the role has no ready server with a postgres endpoint yet", replicaOf)
		}
		sort.Slice(cands, func(i, j int) bool { return cands[i].Name < cands[j].Name })
		return cands[0].Endpoints["postgres"], nil
	}
	for _, ps := range peers {
		for _, p := range ps {
			if p.Name == replicaOf {
				if p.Endpoints["postgres"] == "" {
					return "", sdk.Errorf(sdk.ErrUnavailable, "db: replica_of %q: the server has no postgres endpoint", replicaOf)
				}
				return p.Endpoints["postgres"], nil
			}
		}
	}
	known := make([]string, 0, len(peers))
	for r := range peers {
		known = append(known, r)
	}
	sort.Strings(known)
	return "", sdk.Errorf(sdk.ErrUnavailable,
		"db: replica_of %q is neither host:port nor a role or server among the peers (%s): write replica_of = role.<name>.endpoints.postgres so that core resolves it",
		replicaOf, strings.Join(known, ", "))
}

// basebackupProgress matches pg_basebackup -P's progress line.
var basebackupProgress = regexp.MustCompile(`\((\d+)%\)`)

// basebackup copies the primary at addr into l.Data with pg_basebackup and
// writes standby.signal and primary_conninfo (-R), so that the cluster
// starts as a hot standby streaming from the primary. The WAL written while
// copying streams alongside (-X stream); a fast checkpoint starts the copy
// at once.
func (a account) basebackup(ctx context.Context, l layout, bin, addr, server, password string, report func(pct float64, line string)) error {
	host, port, err := splitHostPort(addr)
	if err != nil {
		return sdk.Errorf(sdk.ErrInvalidConfig, "db: primary %v", err)
	}
	// application_name goes into primary_conninfo, so that the primary's
	// pg_stat_replication names this server.
	conninfo := fmt.Sprintf("host=%s port=%d user=%s application_name=%s connect_timeout=10",
		connValue(host), port, replicationUser, connValue(clusterName(server)))
	var env []string
	if password != "" {
		// The environment of a process is readable by its user and root
		// only; -R copies the password into primary_conninfo in the data
		// directory (0700), as PostgreSQL's own tools do.
		env = append(env, "PGPASSWORD="+password)
	}
	return a.run(ctx, l, filepath.Join(l.Logs, "basebackup.log"), func(line string) {
		if m := basebackupProgress.FindStringSubmatch(line); m != nil {
			pct, _ := strconv.Atoi(m[1])
			report(float64(pct)/100, line)
		}
	}, env, filepath.Join(bin, "pg_basebackup"),
		"-D", l.Data, "-d", conninfo, "-R", "-X", "stream", "-c", "fast", "-P", "-w")
}

// connValue quotes a libpq keyword/value connection string value.
func connValue(v string) string {
	if v != "" && !strings.ContainsAny(v, ` '\`) {
		return v
	}
	return "'" + strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), "'", `\'`) + "'"
}

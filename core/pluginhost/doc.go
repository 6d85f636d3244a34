// Package pluginhost finds, checks, launches and supervises role plugins.
//
// Discovery: a built-in role is served by the roster binary re-executing
// itself (`roster plugin-serve <name>`; one binary to ship, yet every plugin
// runs in its own process); any other role is an executable named
// roster-role-<name> in the plugin directory. Built-in names are reserved:
// a file that would shadow one is not used, and List reports it.
//
// Pinning: a pinned plugin's executable is opened and hashed (sha256) on
// every launch, never from a cache, and the child then executes that very
// open file through /proc/self/fd, so that a file renamed or swapped in
// under the same name after the check is not what runs. A mismatch refuses
// the launch with an error wrapping sdk.ErrChecksumMismatch that names the
// file, the expected and the actual digest.
//
// Supervision: Launch returns a *Plugin that implements sdk.Role and
// sdk.Configurer by delegating to the plugin process of the moment. The
// host reaps the process itself, so a death is noticed at once rather than
// on the next call; the process is relaunched with exponential backoff
// (Options.Backoff) and every exit is logged and passed to Options.OnEvent.
// While it is down, calls fail at once with an error wrapping
// sdk.ErrUnavailable. Close stops the plugin and its process group for good.
//
// Lifetime: every plugin runs in its own process group with Pdeathsig
// SIGKILL, forked from one dedicated, locked OS thread that lives as long as
// the host process (Pdeathsig follows the forking thread, not the process),
// so no plugin outlives its agent, SIGKILL included. The host also holds the
// only write end of the plugin's stdin.
//
// Environment: plugins get an allow-list of the host's variables (PATH,
// HOME, LANG, LC_*, TMPDIR, TZ, USER), Options.ExtraEnv, the sdk's log
// level, and go-plugin's handshake and mTLS variables; nothing else, so the
// agent's AWS credentials and ROSTER_* secrets stay out.
//
// Logs: plugin log lines arrive through the sub-logger plugin.<name> of
// Options.Logger; lines up to Options.LogLineMax (1 MiB) stay whole, longer
// ones are split, and none can wedge the host.
//
// See docs/plugin-host.md.
package pluginhost

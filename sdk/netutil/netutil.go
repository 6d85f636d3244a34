// Package netutil helps role plugins with ports and connections: FreePort
// picks a free loopback port when the operator configured none (so that
// several servers of one role can share a host), and Established counts the
// established TCP connections on a local port from /proc/net/tcp and tcp6,
// which is what a role's Drain waits on.
package netutil

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// State is a TCP socket state as the kernel numbers it in /proc/net/tcp.
type State int

// The TCP states of include/net/tcp_states.h.
const (
	StateEstablished State = 0x01
	StateSynSent     State = 0x02
	StateSynRecv     State = 0x03
	StateFinWait1    State = 0x04
	StateFinWait2    State = 0x05
	StateTimeWait    State = 0x06
	StateClose       State = 0x07
	StateCloseWait   State = 0x08
	StateLastAck     State = 0x09
	StateListen      State = 0x0A
	StateClosing     State = 0x0B
)

// String returns the state's name as ss(8) prints it.
func (s State) String() string {
	switch s {
	case StateEstablished:
		return "ESTAB"
	case StateSynSent:
		return "SYN-SENT"
	case StateSynRecv:
		return "SYN-RECV"
	case StateFinWait1:
		return "FIN-WAIT-1"
	case StateFinWait2:
		return "FIN-WAIT-2"
	case StateTimeWait:
		return "TIME-WAIT"
	case StateClose:
		return "UNCONN"
	case StateCloseWait:
		return "CLOSE-WAIT"
	case StateLastAck:
		return "LAST-ACK"
	case StateListen:
		return "LISTEN"
	case StateClosing:
		return "CLOSING"
	}
	return fmt.Sprintf("STATE-%02X", int(s))
}

// ProcNetFiles are the files Connections reads. Tests may point them
// elsewhere; a missing file (no IPv6) is skipped.
var ProcNetFiles = []string{"/proc/net/tcp", "/proc/net/tcp6"}

// Socket is one TCP socket of the host as /proc/net/tcp lists it.
type Socket struct {
	Local, Remote netip.AddrPort
	State         State
}

// Sockets returns the host's TCP sockets whose local port is port, over
// IPv4 and IPv6. Both ends of a loopback connection appear in /proc; only
// the end whose local port is port is listed, so for a server's port these
// are the server's ends of its connections (and its listener).
func Sockets(port int) ([]Socket, error) {
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("netutil: port %d out of range", port)
	}
	var out []Socket
	for _, name := range ProcNetFiles {
		f, err := os.Open(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("netutil: %w", err)
		}
		out, err = parseFile(f, port, out)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("netutil: reading %s: %w", name, err)
		}
	}
	return out, nil
}

// Connections counts the TCP sockets whose local port is port, by state,
// as Sockets lists them: a client connecting to port counts once.
func Connections(port int) (map[State]int, error) {
	socks, err := Sockets(port)
	if err != nil {
		return nil, err
	}
	counts := make(map[State]int)
	for _, s := range socks {
		counts[s.State]++
	}
	return counts, nil
}

// Established returns how many established TCP connections have local port
// port: the clients a server listening on port is serving right now.
func Established(port int) (int, error) {
	c, err := Connections(port)
	if err != nil {
		return 0, err
	}
	return c[StateEstablished], nil
}

// WaitNoConnections polls Established(port) until it is zero or ctx is done,
// and returns the last count. A ctx that ends is not an error: the count
// says what was left.
func WaitNoConnections(ctx context.Context, port int, interval time.Duration) (int, error) {
	if interval <= 0 {
		interval = 50 * time.Millisecond
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := Established(port)
		if err != nil || n == 0 {
			return n, err
		}
		select {
		case <-ctx.Done():
			return n, nil
		case <-t.C:
		}
	}
}

func parseFile(r io.Reader, port int, out []Socket) ([]Socket, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	first := true
	for sc.Scan() {
		if first { // the header line
			first = false
			continue
		}
		// sl local_address rem_address st ...; addresses are HEXIP:HEXPORT.
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 {
			continue
		}
		local, err := parseAddr(fields[1])
		if err != nil || int(local.Port()) != port {
			continue
		}
		remote, err := parseAddr(fields[2])
		if err != nil {
			continue
		}
		st, err := strconv.ParseUint(fields[3], 16, 8)
		if err != nil {
			continue
		}
		out = append(out, Socket{Local: local, Remote: remote, State: State(st)})
	}
	return out, sc.Err()
}

// parseAddr reads /proc/net/tcp's HEXIP:HEXPORT. The address is the
// kernel's in-memory bytes printed as 32-bit words in host order (little
// endian here); the port is plain hex.
func parseAddr(s string) (netip.AddrPort, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("no port in %q", s)
	}
	p, err := strconv.ParseUint(s[i+1:], 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	raw, err := hex.DecodeString(s[:i])
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	for w := 0; w < len(raw); w += 4 {
		raw[w], raw[w+1], raw[w+2], raw[w+3] = raw[w+3], raw[w+2], raw[w+1], raw[w]
	}
	a, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(a.Unmap(), uint16(p)), nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free when asked. The
// kernel picks it from its ephemeral range, so concurrent callers get
// different ports; a port is only reserved while a socket holds it, so a
// caller that loses the race when binding should ask again.
func FreePort() (int, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// FreePorts returns n distinct free TCP ports on 127.0.0.1, holding them all
// open while choosing so that none is handed out twice.
func FreePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("netutil: picking a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// PortOf returns the port of an endpoint written host:port.
func PortOf(endpoint string) (int, error) {
	_, p, err := net.SplitHostPort(endpoint)
	if err != nil {
		return 0, fmt.Errorf("netutil: endpoint %q: %w", endpoint, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n <= 0 || n > 65535 {
		return 0, fmt.Errorf("netutil: endpoint %q: bad port", endpoint)
	}
	return n, nil
}

// WaitDial polls until a TCP connection to addr succeeds or ctx is done.
// It is the simplest readiness probe: the daemon is listening.
func WaitDial(ctx context.Context, addr string, interval time.Duration) error {
	if interval <= 0 {
		interval = 10 * time.Millisecond
	}
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("netutil: %s did not accept connections: %w", addr, err)
		case <-time.After(interval):
		}
	}
}

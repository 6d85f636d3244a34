package netutil

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestEstablishedCountsServerSideOnly(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()

	if n, err := Established(port); err != nil || n != 0 {
		t.Fatalf("Established before any client = %d, %v; want 0", n, err)
	}
	var clients []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	var servers []net.Conn
	for range 3 {
		servers = append(servers, <-accepted)
	}
	n, err := Established(port)
	if err != nil || n != 3 {
		t.Fatalf("Established with 3 clients = %d, %v; want 3", n, err)
	}
	c, err := Connections(port)
	if err != nil || c[StateListen] != 1 {
		t.Fatalf("Connections = %v, %v; want one LISTEN", c, err)
	}

	for _, c := range append(clients, servers...) {
		c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	left, err := WaitNoConnections(ctx, port, 10*time.Millisecond)
	if err != nil || left != 0 {
		t.Fatalf("WaitNoConnections = %d, %v; want 0", left, err)
	}
}

func TestEstablishedIPv6(t *testing.T) {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			defer c.Close()
			var b [1]byte
			c.Read(b[:])
		}
	}()
	c, err := net.Dial("tcp6", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := l.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		n, err := Established(port)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("Established over IPv6 = %d, want 1", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestParseFile(t *testing.T) {
	// Lines from a real /proc/net/tcp: a listener on 8080 (0x1F90), an
	// established connection to it, the client's end, and a connection in
	// TIME-WAIT.
	const data = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:1F90 0200007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
   2: 0200007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1
   3: 0100007F:1F90 0100007F:D432 06 00000000:00000000 00:00000000 00000000     0        0 0 1 0 20 4 30 10 -1
`
	socks, err := parseFile(strings.NewReader(data), 8080, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Socket{
		{netip.MustParseAddrPort("127.0.0.1:8080"), netip.MustParseAddrPort("0.0.0.0:0"), StateListen},
		{netip.MustParseAddrPort("127.0.0.1:8080"), netip.MustParseAddrPort("127.0.0.2:54321"), StateEstablished},
		{netip.MustParseAddrPort("127.0.0.1:8080"), netip.MustParseAddrPort("127.0.0.1:54322"), StateTimeWait},
	}
	if !slices.Equal(socks, want) {
		t.Fatalf("parseFile = %v\nwant %v", socks, want)
	}
	// tcp6: ::1 and a v4-mapped address.
	const data6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 0000000000000000FFFF00000100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0 20 4 30 10 -1
`
	socks, err = parseFile(strings.NewReader(data6), 8080, nil)
	if err != nil || len(socks) != 1 || socks[0].Local != netip.MustParseAddrPort("[::1]:8080") ||
		socks[0].Remote != netip.MustParseAddrPort("127.0.0.1:54321") {
		t.Fatalf("parseFile tcp6 = %v, %v", socks, err)
	}
}

func TestSocketsNameBothEnds(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			defer c.Close()
			var b [1]byte
			c.Read(b[:])
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := l.Addr().(*net.TCPAddr).Port
	client := c.LocalAddr().(*net.TCPAddr).AddrPort()
	var socks []Socket
	for range 1000 {
		if socks, err = Sockets(port); err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(socks, func(s Socket) bool { return s.Remote == client && s.State == StateEstablished }) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("Sockets(%d) = %v: no established socket from %v", port, socks, client)
}

func TestFreePortsDistinctAndBindable(t *testing.T) {
	ports, err := FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d handed out twice in %v", p, ports)
		}
		seen[p] = true
	}
	p, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", itoa(p)))
	if err != nil {
		t.Fatalf("free port %d not bindable: %v", p, err)
	}
	l.Close()
}

func TestPortOf(t *testing.T) {
	if p, err := PortOf("127.0.0.1:8080"); err != nil || p != 8080 {
		t.Fatalf("PortOf = %d, %v", p, err)
	}
	for _, bad := range []string{"127.0.0.1", "x:y", "h:0", "h:70000"} {
		if _, err := PortOf(bad); err == nil {
			t.Errorf("PortOf(%q) succeeded", bad)
		}
	}
	if _, err := Connections(0); err == nil {
		t.Error("Connections(0) succeeded")
	}
}

func TestWaitDial(t *testing.T) {
	p, _ := FreePort()
	addr := net.JoinHostPort("127.0.0.1", itoa(p))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := WaitDial(ctx, addr, 5*time.Millisecond); err == nil {
		t.Fatal("WaitDial to a closed port succeeded")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := WaitDial(ctx2, l.Addr().String(), 5*time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

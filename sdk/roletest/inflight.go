package roletest

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/rosterhq/roster/sdk/netutil"
	"github.com/rosterhq/roster/sdk/rolekit"
)

// Request is an HTTP GET a test starts before calling Drain, to show that
// Drain lets the requests in flight finish.
//
// Proving that Drain returned only after the request was answered cannot
// rest on the client seeing the answer first: the server may have sent it
// and closed the connection a moment before the client's goroutine reads
// it. Request therefore asks the kernel: the request is sent with
// "Connection: close", so the server closes its end once the answer is
// written, and AssertAnswered looks up the server's end of this very
// connection in /proc/net/tcp. While it is still established, the server
// is still working on the request.
type Request struct {
	done chan response

	mu     sync.Mutex
	client netip.AddrPort // the client's end
	server netip.AddrPort // the address dialled
}

type response struct {
	code int
	body string
	err  error
}

// StartRequest sends GET url on a connection of its own and returns at
// once; the answer is collected by AssertAnswered.
func StartRequest(t testing.TB, url string) *Request {
	t.Helper()
	r := &Request{done: make(chan response, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		l, lok := info.Conn.LocalAddr().(*net.TCPAddr)
		s, sok := info.Conn.RemoteAddr().(*net.TCPAddr)
		if lok && sok {
			r.mu.Lock()
			r.client, r.server = unmapped(l), unmapped(s)
			r.mu.Unlock()
		}
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		resp, err := rolekit.ProbeClient().Do(req)
		if err != nil {
			r.done <- response{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		r.done <- response{code: resp.StatusCode, body: string(b), err: err}
	}()
	return r
}

// AssertAnswered fails the test if the server's end of the request's
// connection is still established (the server has not finished
// answering), or if the request had not been sent at all. Call it as soon
// as Drain returns. It then waits up to a minute for the answer to reach
// the client and returns its status and body, or fails the test if the
// request failed.
func (r *Request) AssertAnswered(t testing.TB) (int, string) {
	t.Helper()
	if busy, err := r.inFlight(); err != nil {
		t.Fatal(err)
	} else if busy {
		t.Fatalf("the server's end of the request to %v is still established: the request is still in flight", r.server)
	}
	select {
	case resp := <-r.done:
		if resp.err != nil {
			t.Fatalf("the request failed: %v", resp.err)
		}
		return resp.code, resp.body
	case <-time.After(time.Minute):
		t.Fatal("the request was not answered within a minute")
		return 0, ""
	}
}

// inFlight reports whether the server's end of the request's connection
// is established.
func (r *Request) inFlight() (bool, error) {
	r.mu.Lock()
	client, server := r.client, r.server
	r.mu.Unlock()
	if !client.IsValid() {
		return false, errors.New("roletest: the request never got a connection")
	}
	socks, err := netutil.Sockets(int(server.Port()))
	if err != nil {
		return false, err
	}
	for _, s := range socks {
		if s.Remote == client && s.State == netutil.StateEstablished {
			return true, nil
		}
	}
	return false, nil
}

// unmapped is a's address without an IPv4-in-IPv6 prefix, as
// /proc/net/tcp's entries are read.
func unmapped(a *net.TCPAddr) netip.AddrPort {
	ap := a.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Get GETs url on a connection of its own, closed after the answer (an
// idle keep-alive connection held by a test would make Drain wait for the
// server's keep-alive timeout), and returns the status and body. An error
// fails the test.
func Get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := rolekit.ProbeClient().Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

package roletest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestRequestInFlight(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "answered\n")
	}))
	defer srv.Close()

	r := StartRequest(t, srv.URL+"/")
	<-entered
	if busy, err := r.inFlight(); err != nil || !busy {
		t.Fatalf("inFlight while the handler works = %v, %v; want true", busy, err)
	}
	close(release)
	// The server closes its end after answering: the request leaves the
	// established state.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		busy, err := r.inFlight()
		if err != nil {
			t.Fatal(err)
		}
		if !busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server's end stayed established after the answer")
		}
	}
	if code, body := r.AssertAnswered(t); code != 200 || body != "answered\n" {
		t.Fatalf("AssertAnswered = %d %q", code, body)
	}
}

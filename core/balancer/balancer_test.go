package balancer

import (
	"context"
	"errors"
	"testing"

	"github.com/rosterhq/roster/core/config"
)

func TestNoneRegisterDrainDeregister(t *testing.T) {
	ctx := context.Background()
	b, err := Open(ctx, config.Balancer{Type: "none", Name: "front"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if b.Name() != "front" || b.Type() != "none" {
		t.Fatalf("name/type = %q/%q", b.Name(), b.Type())
	}
	for _, s := range []string{"web-2", "web-1"} {
		if err := b.Register(ctx, "web", s, "127.0.0.1:80"); err != nil {
			t.Fatal(err)
		}
	}
	// Registering twice changes nothing.
	if err := b.Register(ctx, "web", "web-1", "127.0.0.1:80"); err != nil {
		t.Fatal(err)
	}
	l, _ := b.List(ctx, "web")
	if len(l) != 2 || l[0].Server != "web-1" || l[1].Server != "web-2" {
		t.Fatalf("list = %+v", l)
	}
	if err := b.Drain(ctx, "web", "web-1"); err != nil {
		t.Fatal(err)
	}
	l, _ = b.List(ctx, "web")
	if !l[0].Draining || l[1].Draining {
		t.Fatalf("after drain: %+v", l)
	}
	if err := b.Deregister(ctx, "web", "web-1"); err != nil {
		t.Fatal(err)
	}
	if err := b.Deregister(ctx, "web", "web-9"); err != nil {
		t.Fatalf("deregistering an unknown server: %v", err)
	}
	l, _ = b.List(ctx, "web")
	if len(l) != 1 || l[0].Server != "web-2" {
		t.Fatalf("after deregister: %+v", l)
	}
	if l, _ := b.List(ctx, "db"); len(l) != 0 {
		t.Fatalf("empty role: %+v", l)
	}
}

func TestOpenUnknownType(t *testing.T) {
	_, err := Open(context.Background(), config.Balancer{Type: "nginx", Name: "x"}, Options{})
	if !errors.Is(err, ErrUnknownType) {
		t.Fatalf("err = %v", err)
	}
}

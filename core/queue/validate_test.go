package queue

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateBody(t *testing.T) {
	for _, c := range []struct {
		body string
		want error
	}{
		{"plain", nil},
		{"tab\tnewline\ncr\r", nil},
		{"é ü \u00ff \ud7ff \ue000 \ufffd \U0001F600 \U0010FFFF", nil},
		{strings.Repeat("x", MaxMessageSize), nil},
		{strings.Repeat("x", MaxMessageSize+1), ErrMessageTooLarge},
		{"", ErrInvalidArgument},
		{"nul\x00", ErrInvalidArgument},
		{"bell\x07", ErrInvalidArgument},
		{"\ufffe", ErrInvalidArgument},
		{"bad utf8 \xff", ErrInvalidArgument},
	} {
		if err := ValidateBody(c.body); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("ValidateBody(%.20q) = %v, want %v", c.body, err, c.want)
		}
	}
}

func TestValidateName(t *testing.T) {
	for name, ok := range map[string]bool{
		"web-3-01HXYZ":          true,
		"a_b":                   true,
		strings.Repeat("n", 80): true,
		strings.Repeat("n", 81): false,
		"":                      false,
		"has space":             false,
		"x.fifo":                false,
		"ünï":                   false,
	} {
		if err := ValidateName(name); (err == nil) != ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestValidateBatch(t *testing.T) {
	ids := func(s ...string) func(int) string { return func(i int) string { return s[i] } }
	if err := ValidateBatch(2, ids("a", "b")); err != nil {
		t.Errorf("two distinct ids: %v", err)
	}
	if err := ValidateBatch(2, ids("a", "a")); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("duplicate ids: %v", err)
	}
	if err := ValidateBatch(0, ids()); !errors.Is(err, ErrTooManyEntries) {
		t.Errorf("no entries: %v", err)
	}
	if err := ValidateBatch(11, func(i int) string { return string(rune('a' + i)) }); !errors.Is(err, ErrTooManyEntries) {
		t.Errorf("11 entries: %v", err)
	}
	if err := ValidateBatch(1, ids("no spaces")); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("bad id: %v", err)
	}
}

func TestValidateReceiveOptions(t *testing.T) {
	got, err := ValidateReceiveOptions(ReceiveOptions{})
	if err != nil || got.MaxMessages != 1 {
		t.Errorf("zero options: %+v, %v; want MaxMessages 1", got, err)
	}
	if _, err := ValidateReceiveOptions(ReceiveOptions{WaitTime: MaxWait + 1}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("wait over 20s: %v", err)
	}
	if _, err := ValidateReceiveOptions(ReceiveOptions{MaxMessages: -1}); !errors.Is(err, ErrTooManyEntries) {
		t.Errorf("negative count: %v", err)
	}
}

package main

import (
	"io"
	"net/http/httptest"
	"testing"
)

func TestGreet(t *testing.T) {
	for in, want := range map[string]string{"": "hello, world", "capstan": "hello, capstan"} {
		if got := greet(in); got != want {
			t.Errorf("greet(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(handler())
	defer srv.Close()
	res, err := srv.Client().Get(srv.URL + "/greet?name=ci")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if string(body) != "hello, ci" {
		t.Errorf("body = %q", body)
	}
}

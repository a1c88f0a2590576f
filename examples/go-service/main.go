// go-service: a tiny HTTP service, the seed pipeline's application. It
// answers GET /healthz with "ok" and GET /greet?name=N with "hello, N".
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
)

func greet(name string) string {
	if name == "" {
		name = "world"
	}
	return fmt.Sprintf("hello, %s", name)
}

func handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/greet", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, greet(r.URL.Query().Get("name")))
	})
	return mux
}

func main() {
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = ":8080"
	}
	log.Fatal(http.ListenAndServe(addr, handler()))
}

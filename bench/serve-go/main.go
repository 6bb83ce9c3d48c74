// Go peer of the HTTP server sample for bench/serve: Go's net/http doing the
// sample's work, the way a Go server would write it.
//
//   - an idle timeout per connection (http.Server.IdleTimeout), as the
//     sample's per-connection uvctx_with_timeout;
//   - a context.WithTimeout per request under the request's own context
//     (which net/http cancels when the client goes away), as the sample's
//     per-request uvctx_with_timeout under the connection's;
//   - GET / answers a short greeting; GET /slow?ms=N answers after N ms of
//     timer work (time.NewTimer), or 504 when the request's deadline passes
//     first;
//   - SIGTERM: Shutdown (stop accepting, let what runs finish), exit 0.
//
// A single-file main package with no module requirements, built offline with
// Debian's golang-go:
//
//	GO111MODULE=off go build -o serve-go bench/serve-go/main.go
//	GOMAXPROCS=N serve-go [-addr 127.0.0.1:0] [-idle 5s] [-request 1s]
//
// Prints "listening on 127.0.0.1:PORT" once it accepts connections.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	idle := flag.Duration("idle", 5*time.Second, "idle timeout of a connection")
	request := flag.Duration("request", time.Second, "deadline of a request")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "hello from go\n")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		work := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer work.Stop()
		w.Header().Set("Content-Type", "text/plain")
		select {
		case <-work.C:
			fmt.Fprintf(w, "slept %d ms\n", ms)
		case <-r.Context().Done():
			if r.Context().Err() == context.DeadlineExceeded {
				w.WriteHeader(http.StatusGatewayTimeout)
				fmt.Fprint(w, "gateway timeout: the request deadline passed\n")
			}
		}
	})
	// Every request runs under its own deadline, a child of the context
	// net/http gives it (cancelled when the client goes away).
	withDeadline := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), *request)
		defer cancel()
		mux.ServeHTTP(w, r.WithContext(ctx))
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "serve-go:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: withDeadline, IdleTimeout: *idle}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		close(done)
	}()
	fmt.Fprintf(os.Stderr, "listening on %s\n", ln.Addr())
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "serve-go:", err)
		os.Exit(1)
	}
	<-done
}

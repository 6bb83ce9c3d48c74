// A grpc-go peer for test/grpc-e2e.sh: the service of samples/grpc/server
// (uvctx.Test: Echo and Sleep, raw bytes as messages) as a server, or one call
// as a client, with what each side's context saw printed as wall-clock times
// (ms since the epoch) that the test compares with the uvctx samples' logs.
//
// No .proto and no protoc: the service is a hand-written grpc.ServiceDesc and
// the codec passes []byte through. Builds with Debian's golang-go and
// golang-google-grpc-dev alone:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o grpc-peer-go peer.go
//
// Usage:
//
//	grpc-peer-go server [-addr 127.0.0.1:0] [-q]
//	grpc-peer-go client [-w] [-t BUDGET_MS] [-c CANCEL_MS] ADDR METHOD MESSAGE
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// rawCodec sends a []byte as the message itself. It is both an
// encoding.Codec (Name, for the client's ForceCodec) and a grpc.Codec
// (String, for the server's CustomCodec).
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) {
	switch b := v.(type) {
	case []byte:
		return b, nil
	case *[]byte:
		return *b, nil
	}
	return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string   { return "raw" }
func (rawCodec) String() string { return "raw" }

func wall(t time.Time) string {
	return fmt.Sprintf("%.3f", float64(t.UnixNano())/1e6)
}

func logf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "grpc-peer-go: "+format+"\n", args...)
}

// ---- server ------------------------------------------------------------------

type testServer interface{}

// quiet: log no Echo call (bench/grpc measures them).
var quiet bool

func echo(srv interface{}, ctx context.Context, dec func(interface{}) error,
	_ grpc.UnaryServerInterceptor) (interface{}, error) {
	var req []byte
	if err := dec(&req); err != nil {
		return nil, err
	}
	if quiet {
		return req, nil
	}
	logCall(ctx, "/uvctx.Test/Echo")
	logf("end /uvctx.Test/Echo: ok wall=%s", wall(time.Now()))
	return req, nil
}

func logCall(ctx context.Context, method string) {
	now := time.Now()
	if dl, ok := ctx.Deadline(); ok {
		logf("call %s deadline_wall=%s budget=%.1fms", method, wall(dl),
			float64(dl.Sub(now))/1e6)
	} else {
		logf("call %s no deadline", method)
	}
}

// sleep works for the number of ms in the request, or until the call's
// context is done. A client's RST_STREAM(CANCEL) is context.Canceled; but
// grpc-go clients also send it when their own deadline passes, so a cancel
// at the deadline is counted as the deadline.
func sleep(srv interface{}, ctx context.Context, dec func(interface{}) error,
	_ grpc.UnaryServerInterceptor) (interface{}, error) {
	var req []byte
	if err := dec(&req); err != nil {
		return nil, err
	}
	logCall(ctx, "/uvctx.Test/Sleep")
	ms, err := strconv.Atoi(string(req))
	if err != nil || ms < 0 {
		return nil, status.Error(codes.InvalidArgument, "expected a number of milliseconds")
	}
	select {
	case <-time.After(time.Duration(ms) * time.Millisecond):
		logf("end /uvctx.Test/Sleep: ok wall=%s", wall(time.Now()))
		return []byte(fmt.Sprintf("slept %d ms", ms)), nil
	case <-ctx.Done():
		now := time.Now()
		kind := "cancel"
		if dl, ok := ctx.Deadline(); ok && !now.Before(dl.Add(-time.Millisecond)) {
			kind = "deadline"
		}
		logf("end /uvctx.Test/Sleep: %s err=%v wall=%s", kind, ctx.Err(), wall(now))
		// Without this grpc-go answers UNKNOWN.
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: "uvctx.Test",
	HandlerType: (*testServer)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Echo", Handler: echo},
		{MethodName: "Sleep", Handler: sleep},
	},
	Metadata: "none",
}

func serve(args []string) int {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "address to listen on")
	fs.BoolVar(&quiet, "q", false, "log no Echo call")
	fs.Parse(args)
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		logf("listen: %v", err)
		return 1
	}
	s := grpc.NewServer(grpc.CustomCodec(rawCodec{}))
	s.RegisterService(&serviceDesc, nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		s.Stop()
	}()
	logf("listening on %s", lis.Addr())
	if err := s.Serve(lis); err != nil {
		logf("serve: %v", err)
		return 1
	}
	return 0
}

// ---- client ------------------------------------------------------------------

func call(args []string) int {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	budget := fs.Int("t", 0, "the call's budget in ms (0: no deadline)")
	cancelAfter := fs.Int("c", 0, "cancel the call after this many ms (0: never)")
	warm := fs.Bool("w", false, "first an Echo call on the same connection, untimed")
	fs.Parse(args)
	if fs.NArg() != 3 {
		logf("usage: client [-w] [-t BUDGET_MS] [-c CANCEL_MS] ADDR METHOD MESSAGE")
		return 64
	}
	conn, err := grpc.Dial(fs.Arg(0), grpc.WithInsecure())
	if err != nil {
		logf("dial: %v", err)
		return int(codes.Unavailable)
	}
	defer conn.Close()
	if *warm {
		// The first call of a process pays for connecting and for the
		// runtime's first use of everything; the deadline measured is the
		// one of a connection in use.
		in, out := []byte("warm-up"), []byte{}
		if err := conn.Invoke(context.Background(), "/uvctx.Test/Echo", &in, &out,
			grpc.ForceCodec(rawCodec{})); err != nil {
			logf("warm-up: %v", err)
			return int(status.Code(err))
		}
	}
	var ctx context.Context
	var cancel context.CancelFunc
	if *budget > 0 {
		ctx, cancel = context.WithTimeout(context.Background(),
			time.Duration(*budget)*time.Millisecond)
	} else {
		ctx, cancel = context.WithCancel(context.Background())
	}
	defer cancel()
	if dl, ok := ctx.Deadline(); ok {
		logf("budget %d ms deadline_wall=%s", *budget, wall(dl))
	}
	if *cancelAfter > 0 {
		time.AfterFunc(time.Duration(*cancelAfter)*time.Millisecond, func() {
			logf("cancelling wall=%s", wall(time.Now()))
			cancel()
		})
	}
	in, out := []byte(fs.Arg(2)), []byte{}
	err = conn.Invoke(ctx, fs.Arg(1), &in, &out, grpc.ForceCodec(rawCodec{}))
	code := status.Code(err)
	logf("finished: %s wall=%s", code, wall(time.Now()))
	switch {
	case err == nil:
		fmt.Printf("OK %s\n", out)
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(ctx.Err(), context.Canceled):
		fmt.Printf("%s (local)\n", code)
	default:
		fmt.Printf("%s: %s\n", code, status.Convert(err).Message())
	}
	if ctx.Err() != nil {
		// grpc-go writes the RST_STREAM(CANCEL) from another goroutine:
		// closing the connection at once could overtake it. A long-lived
		// client keeps its connection; so does this one, for a moment.
		time.Sleep(100 * time.Millisecond)
	}
	return int(code)
}

func main() {
	if len(os.Args) < 2 {
		logf("usage: grpc-peer-go server|client ...")
		os.Exit(64)
	}
	switch os.Args[1] {
	case "server":
		os.Exit(serve(os.Args[2:]))
	case "client":
		os.Exit(call(os.Args[2:]))
	}
	logf("unknown mode %q", os.Args[1])
	os.Exit(64)
}

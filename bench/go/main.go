// Go peer of bench/uvctx_bench: the same workloads with the standard context
// package, the same harness policy (bench/harness.h) and the same output
// (`name<TAB>value<TAB>unit`, '#' comments).
//
// A single-file main package with no module requirements:
//
//	GO111MODULE=off go build -o /tmp/ctxbench bench/go/main.go
//	/tmp/ctxbench [--smoke] [--only NAME] [--time MS] [--reps N]
//
// Every workload runs in one goroutine, op after op, like the C suite runs on
// one loop thread (Go's own benchmarks use RunParallel for CommonParentCancel
// and WithTimeout). GOMAXPROCS is left at its default, so the garbage
// collector may use the other cores; runtime.GC() runs before each workload,
// as `go test -bench` does. "release" in Go is dropping the last reference;
// million/release is the time of the runtime.GC() that then frees the
// million contexts. The memory results are heap bytes per context
// (runtime.MemStats.HeapAlloc after GC), with the cancel func kept, as a
// caller keeps it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"
)

var (
	smoke    = flag.Bool("smoke", false, "every workload for a few ms")
	only     = flag.String("only", "", "a result name, or a prefix of one ending at a '/'")
	timeMS   = flag.Float64("time", 50, "target time of one timed run, ms")
	reps     = flag.Int("reps", 5, "timed runs per workload (median reported)")
	listOnly = flag.Bool("list", false, "print the result names only")
	samples  = 2000
	sink     int64
)

func hasPrefix(s, prefix string) bool {
	if !strings.HasPrefix(s, prefix) {
		return false
	}
	return len(s) == len(prefix) || s[len(prefix)] == '/' || strings.HasSuffix(prefix, "/")
}

func wanted(name string) bool { return *only == "" || hasPrefix(name, *only) }

func groupWanted(group string) bool {
	return *listOnly || *only == "" || hasPrefix(group, *only) || strings.HasPrefix(*only, group)
}

func emit(name string, v float64, unit string) {
	switch {
	case *listOnly:
		fmt.Printf("%s\t-\t%s\n", name, unit)
	case v == float64(int64(v)) && v > 1e5:
		fmt.Printf("%s\t%.0f\t%s\n", name, v, unit)
	default:
		fmt.Printf("%s\t%.2f\t%s\n", name, v, unit)
	}
}

func median(v []float64) float64 {
	sort.Float64s(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func runNS(fn func(n int), n int) float64 {
	t0 := time.Now()
	fn(n)
	return float64(time.Since(t0).Nanoseconds())
}

// measure: the policy of bench/harness.h.
func measure(name string, fn func(n int)) {
	if !wanted(name) {
		return
	}
	if *listOnly {
		emit(name, 0, "ns/op")
		return
	}
	target := *timeMS * 1e6
	runtime.GC()
	n := 1
	var t float64
	for {
		t = runNS(fn, n)
		if t >= target/4 || n >= 1<<40 {
			break
		}
		if t < target/400 {
			n *= 16
		} else {
			n *= 2
		}
	}
	if t < 1 {
		t = 1
	}
	n = int(float64(n) * target / t)
	if n < 1 {
		n = 1
	}
	ns := make([]float64, *reps)
	for r := range ns {
		ns[r] = runNS(fn, n) / float64(n)
	}
	emit(name, median(ns), "ns/op")
}

func peakRSS() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Maxrss) * 1024
}

type held struct {
	ctx    context.Context
	cancel context.CancelFunc
}

const million = 1000000

func benchMillion() {
	if !groupWanted("million/") {
		return
	}
	if *listOnly {
		emit("million/create", 0, "ns/op")
		emit("million/cancel_root", 0, "ns")
		emit("million/release", 0, "ns/op")
		emit("million/peak_rss", 0, "MiB")
		emit("million/rss_per_ctx", 0, "B")
		return
	}
	nreps := 3
	if *smoke {
		nreps = 1
	}
	hs := make([]held, million)
	for i := range hs { // in the RSS before
		hs[i] = held{}
	}
	var create, cancel, release []float64
	var rss0, rss1 float64
	for r := 0; r < nreps; r++ {
		root, rootCancel := context.WithCancel(context.Background())
		runtime.GC()
		if r == 0 {
			rss0 = peakRSS()
		}
		t0 := time.Now()
		for i := range hs {
			hs[i].ctx, hs[i].cancel = context.WithCancel(root)
		}
		create = append(create, float64(time.Since(t0).Nanoseconds())/million)
		if r == 0 {
			rss1 = peakRSS()
		}
		t0 = time.Now()
		rootCancel()
		cancel = append(cancel, float64(time.Since(t0).Nanoseconds()))
		t0 = time.Now()
		for i := range hs {
			hs[i] = held{}
		}
		root = nil
		runtime.GC()
		release = append(release, float64(time.Since(t0).Nanoseconds())/million)
		_ = root
	}
	runtime.KeepAlive(hs)
	if wanted("million/create") {
		emit("million/create", median(create), "ns/op")
	}
	if wanted("million/cancel_root") {
		emit("million/cancel_root", median(cancel), "ns")
	}
	if wanted("million/release") {
		emit("million/release", median(release), "ns/op")
	}
	if wanted("million/peak_rss") {
		emit("million/peak_rss", rss1/(1024*1024), "MiB")
	}
	if wanted("million/rss_per_ctx") {
		emit("million/rss_per_ctx", (rss1-rss0)/million, "B")
	}
}

func benchMem() {
	if !groupWanted("mem/") {
		return
	}
	if *listOnly {
		emit("mem/cancel_ctx_heap", 0, "B")
		emit("mem/deadline_ctx_heap", 0, "B")
		return
	}
	const n = 100000
	var ms runtime.MemStats
	for kind := 0; kind < 2; kind++ {
		name := "mem/cancel_ctx_heap"
		if kind == 1 {
			name = "mem/deadline_ctx_heap"
		}
		root, rootCancel := context.WithCancel(context.Background())
		hs := make([]held, n)
		runtime.GC()
		runtime.ReadMemStats(&ms)
		before := ms.HeapAlloc
		for i := range hs {
			if kind == 0 {
				hs[i].ctx, hs[i].cancel = context.WithCancel(root)
			} else {
				hs[i].ctx, hs[i].cancel = context.WithTimeout(root, time.Hour)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&ms)
		after := ms.HeapAlloc
		if wanted(name) {
			emit(name, float64(after-before)/n, "B")
		}
		runtime.KeepAlive(hs)
		rootCancel()
	}
}

func benchCreateCancelRelease() {
	if !groupWanted("with_cancel_cancel_release") && !groupWanted("with_timeout_cancel_release") {
		return
	}
	parent, parentCancel := context.WithCancel(context.Background())
	defer parentCancel()
	measure("with_cancel_cancel_release", func(n int) {
		for i := 0; i < n; i++ {
			_, cancel := context.WithCancel(parent)
			cancel()
		}
	})
	measure("with_timeout_cancel_release", func(n int) {
		for i := 0; i < n; i++ {
			_, cancel := context.WithTimeout(parent, time.Hour)
			cancel()
		}
	})
}

type keyType string

func benchCommonParent() {
	if !groupWanted("common_parent_cancel") {
		return
	}
	root := context.WithValue(context.Background(), keyType("key"), "value")
	shared, sharedCancel := context.WithCancel(root)
	defer sharedCancel()
	measure("common_parent_cancel", func(n int) {
		x := 0
		for i := 0; i < n; i++ {
			ctx, cancel := context.WithCancel(shared)
			if ctx.Value(keyType("key")).(string) != "value" {
				panic("should not be reached")
			}
			for j := 0; j < 100; j++ {
				x /= x + 1
			}
			cancel()
			for j := 0; j < 100; j++ {
				x /= x + 1
			}
		}
		sink = int64(x)
	})
}

func benchWithTimeoutIdle() {
	if !groupWanted("with_timeout/") {
		return
	}
	for _, idle := range []int{40, 4000, 400000} {
		name := fmt.Sprintf("with_timeout/idle=%d", idle)
		if !wanted(name) {
			continue
		}
		cfs := make([]context.CancelFunc, idle)
		for i := range cfs {
			_, cfs[i] = context.WithTimeout(context.Background(), time.Hour)
		}
		measure(name, func(n int) {
			for i := 0; i < n; i++ {
				_, cancel := context.WithTimeout(context.Background(), time.Hour)
				cancel()
			}
		})
		for _, f := range cfs {
			f()
		}
	}
}

func buildContextTree(root context.Context, depth int) {
	for d := 0; d < depth; d++ {
		root, _ = context.WithCancel(root)
	}
}

func benchCancelTree() {
	if !groupWanted("cancel_tree/") {
		return
	}
	for _, d := range []int{1, 10, 100, 1000} {
		d := d
		measure(fmt.Sprintf("cancel_tree/depth=%d/root=background", d), func(n int) {
			for i := 0; i < n; i++ {
				buildContextTree(context.Background(), d)
			}
		})
		measure(fmt.Sprintf("cancel_tree/depth=%d/root=open", d), func(n int) {
			for i := 0; i < n; i++ {
				ctx, cancel := context.WithCancel(context.Background())
				buildContextTree(ctx, d)
				cancel()
			}
		})
		measure(fmt.Sprintf("cancel_tree/depth=%d/root=closed", d), func(n int) {
			for i := 0; i < n; i++ {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				buildContextTree(ctx, d)
			}
		})
	}
}

func benchCheckCanceled() {
	if !groupWanted("check_canceled/") {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	measure("check_canceled/err", func(n int) {
		for i := 0; i < n; i++ {
			ctx.Err()
		}
	})
}

func benchDeepValue() {
	if !groupWanted("deep_value/") {
		return
	}
	for _, depth := range []int{10, 20, 30, 50, 100} {
		ctx := context.Background()
		for i := 0; i < depth; i++ {
			ctx = context.WithValue(ctx, i, i)
		}
		measure(fmt.Sprintf("deep_value/depth=%d", depth), func(n int) {
			for i := 0; i < n; i++ {
				ctx.Value(-1)
			}
		})
	}
}

// cancel + delivery: a goroutine blocked on <-ctx.Done() (Go has no loop
// thread: this is the cross-goroutine wake-up, reported as from=thread).
func benchCancelDelivery() {
	if !groupWanted("cancel_delivery/") {
		return
	}
	nreps := 3
	if *smoke {
		nreps = 1
	}
	type job struct {
		done <-chan struct{}
	}
	jobs := make(chan job)
	ready := make(chan struct{})
	recv := make(chan time.Time)
	go func() {
		for j := range jobs {
			ready <- struct{}{}
			<-j.done
			recv <- time.Now()
		}
	}()
	for _, live := range []int{1000, 100000} {
		n50 := fmt.Sprintf("cancel_delivery/live=%d/from=thread/p50", live)
		n99 := fmt.Sprintf("cancel_delivery/live=%d/from=thread/p99", live)
		if !wanted(n50) && !wanted(n99) {
			continue
		}
		if *listOnly {
			emit(n50, 0, "ns")
			emit(n99, 0, "ns")
			continue
		}
		root, rootCancel := context.WithCancel(context.Background())
		others := make([]context.CancelFunc, live)
		for i := range others {
			_, others[i] = context.WithCancel(root)
		}
		runtime.GC()
		var p50s, p99s []float64
		lat := make([]float64, samples)
		for r := -1; r < nreps; r++ {
			for i := range lat {
				ctx, cancel := context.WithCancel(root)
				jobs <- job{ctx.Done()}
				<-ready
				t0 := time.Now()
				cancel()
				t1 := <-recv
				lat[i] = float64(t1.Sub(t0).Nanoseconds())
			}
			if r >= 0 {
				sort.Float64s(lat)
				p50s = append(p50s, lat[int(0.50*float64(samples-1))])
				p99s = append(p99s, lat[int(0.99*float64(samples-1))])
			}
		}
		if wanted(n50) {
			emit(n50, median(p50s), "ns")
		}
		if wanted(n99) {
			emit(n99, median(p99s), "ns")
		}
		for _, f := range others {
			f()
		}
		rootCancel()
	}
	close(jobs)
}

func main() {
	flag.Parse()
	if *smoke {
		*timeMS = 2
		*reps = 1
		samples = 100
	}
	if *timeMS <= 0 || *reps < 1 {
		fmt.Fprintln(os.Stderr, "bad --time or --reps")
		os.Exit(2)
	}
	t0 := time.Now()
	fmt.Printf("# go: %s, GOMAXPROCS %d, %s, target %.0f ms x %d reps\n",
		runtime.Version(), runtime.GOMAXPROCS(0), map[bool]string{true: "smoke", false: "full"}[*smoke], *timeMS, *reps)
	benchMillion()
	benchMem()
	benchCreateCancelRelease()
	benchCommonParent()
	benchWithTimeoutIdle()
	benchCancelTree()
	benchCheckCanceled()
	benchDeepValue()
	benchCancelDelivery()
	fmt.Printf("# total %.2f s\n", time.Since(t0).Seconds())
}

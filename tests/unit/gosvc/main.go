// A small Go service for perfsuite's tests of Go profiles: net/http/pprof's
// endpoints (real pprof protobuf), CPU work in a named function, and the
// seed story's goroutine leak. Standard library only (no module downloads).
//
//	gosvc PORT
//
// /burn/N     hashes N times in burn() (CPU for a flame graph to point at)
// /leak       starts a worker goroutine that waits forever (startWorker)
// /metrics    go_goroutines, in the Prometheus text format
// /health     200
package main

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"strings"
)

var never = make(chan struct{})

//go:noinline
func burn(n int) [32]byte {
	sum := sha256.Sum256([]byte("perfsuite"))
	for i := 0; i < n; i++ {
		sum = sha256.Sum256(sum[:])
	}
	return sum
}

//go:noinline
func startWorker() {
	go func() {
		<-never // nobody ever closes it: the goroutine never exits
	}()
}

func main() {
	http.HandleFunc("/burn/", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/burn/"))
		if err != nil || n < 0 || n > 10000000 {
			http.Error(w, "bad count", http.StatusBadRequest)
			return
		}
		sum := burn(n)
		fmt.Fprintf(w, "%x\n", sum[:4])
	})
	http.HandleFunc("/leak", func(w http.ResponseWriter, r *http.Request) {
		startWorker()
		fmt.Fprintln(w, "ok")
	})
	http.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# HELP go_goroutines Number of goroutines that currently exist.\n")
		fmt.Fprintf(w, "# TYPE go_goroutines gauge\ngo_goroutines %d\n", runtime.NumGoroutine())
	})
	http.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Args[1], nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

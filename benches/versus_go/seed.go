// The seed program: Go's signal.NotifyContext + http.Server.Shutdown(ctx), with the address,
// the handler's delay and the shutdown timeout made flags, and a handler that also reads the
// request body (as lameduck's side of the comparison does), so that an upload is served
// whole. Built and run by `cargo bench --bench versus_go`.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	delayMs := flag.Int("delay-ms", 3000, "handler sleep")
	timeoutMs := flag.Int("timeout-ms", 10000, "shutdown deadline")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		time.Sleep(time.Duration(*delayMs) * time.Millisecond)
		if n > 0 {
			fmt.Fprintf(w, "read %d", n)
			return
		}
		io.WriteString(w, "Hello World")
	})
	srv := &http.Server{Handler: mux}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	go func() {
		if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
			log.Fatal(err)
		}
	}()

	<-ctx.Done()
	stop()
	log.Println("shutting down gracefully, press Ctrl+C again to force stop")
	timeoutCtx, cancel := context.WithTimeout(context.Background(), time.Duration(*timeoutMs)*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(timeoutCtx); err != nil {
		log.Println(err)
	}
	log.Println("graceful shutdown finished.")
}

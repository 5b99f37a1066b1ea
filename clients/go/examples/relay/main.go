// Command relay is a minimal OpenAI-compatible streaming relay metered by
// the metering service: EstimateTokens before each call, RecordUsage at
// stream end (batched and spooled by a metering.Reporter).
//
//	go run ./examples/relay -metering 127.0.0.1:50051 -keys sk-demo=acme -fake-upstream
//	curl -N localhost:8080/v1/chat/completions -H 'Authorization: Bearer sk-demo' \
//	  -d '{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},
//	       "messages":[{"role":"user","content":"Hi"}]}'
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	metering "github.com/metering-dev/metering/clients/go"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	meteringAddr := flag.String("metering", "127.0.0.1:50051", "metering service address")
	upstream := flag.String("upstream", "https://api.openai.com", "provider base URL")
	fake := flag.Bool("fake-upstream", false, "serve a canned provider in-process instead of -upstream")
	keys := flag.String("keys", "", "client API keys and their accounts: key=account,key=account")
	spool := flag.String("spool", "relay-spool", "usage spool directory (kept across restarts)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*listen, *meteringAddr, *upstream, *fake, *keys, *spool, log); err != nil {
		log.Error("relay", "err", err)
		os.Exit(1)
	}
}

func run(listen, meteringAddr, upstream string, fake bool, keys, spool string, log *slog.Logger) error {
	accounts := map[string]string{}
	for _, kv := range strings.Split(keys, ",") {
		if k, a, ok := strings.Cut(kv, "="); ok && k != "" && a != "" {
			accounts[k] = a
		}
	}
	if len(accounts) == 0 {
		return errors.New("-keys names no key=account pair")
	}
	if fake {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		go func() { _ = http.Serve(l, NewFakeUpstream()) }()
		upstream = "http://" + l.Addr().String()
	}
	client, err := metering.New(meteringAddr, metering.Options{})
	if err != nil {
		return err
	}
	defer client.Close()
	reporter, err := metering.NewReporter(client, metering.ReporterOptions{SpoolDir: spool, Logger: log})
	if err != nil {
		return err
	}
	relay := &Relay{
		Upstream: upstream, UpstreamKey: os.Getenv("UPSTREAM_API_KEY"), Keys: accounts,
		Metering: client, Reporter: reporter, Service: "example-relay", Log: log,
	}
	srv := &http.Server{Addr: listen, Handler: relay, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("relay listening", "addr", listen, "upstream", upstream, "metering", meteringAddr)
	select {
	case err := <-errc:
		_ = reporter.Close(context.Background())
		return err
	case <-ctx.Done():
	}
	// Finish the streams in progress, then hand their usage to metering
	// (or to the spool): nothing is lost across a restart.
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	return errors.Join(err, reporter.Close(sctx))
}

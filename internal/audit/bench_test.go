package audit

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// batchBody is an EventList of n Metadata-level events of about 1 KiB
// each, as the API server's batch backend sends them (at most 400 per
// batch by default).
func batchBody(n, base int) []byte {
	items := make([]map[string]any, n)
	at := time.Now().UTC()
	for i := range items {
		e := event(base+i, "system:serviceaccount:ehr:api", "update", "configmaps", "ehr", at)
		e["userAgent"] = "ehr-api/v1.4.2 (linux/amd64) kubernetes/$Format"
		e["sourceIPs"] = []string{"10.244.3.17"}
		e["annotations"] = map[string]string{"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": `RBAC: allowed by RoleBinding "ehr-api/ehr" of Role "ehr-api" to ServiceAccount "api/ehr"`}
		items[i] = e
	}
	b, _ := json.Marshal(map[string]any{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": map[string]any{}, "items": items})
	return b
}

// BenchmarkWebhook posts 400-event batches over TLS from 4 senders (the
// API server's batch backend sends batches concurrently) to: "wal", the
// receiver with its WAL fsynced per batch and sealing running beside it;
// "discard", a receiver that parses and acknowledges without keeping
// anything, the ceiling the transport and parsing allow. events/s is the
// figure; the API server's own ceiling with its default batch settings is
// 10 batches/s × 400 events = 4,000 events/s.
func BenchmarkWebhook(b *testing.B) {
	const batch, senders = 400, 4
	body := batchBody(batch, 0)
	b.Logf("batch: %d events, %d bytes", batch, len(body))
	for _, mode := range []string{"wal", "discard"} {
		b.Run(mode, func(b *testing.B) {
			var h http.Handler
			var r *Receiver
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if mode == "wal" {
				f := newFixture(b)
				o := f.options(nil)
				o.MaxAge = time.Second
				var err error
				if r, _, err = Open(ctx, o); err != nil {
					b.Fatal(err)
				}
				done := make(chan struct{})
				go func() { defer close(done); r.Run(ctx, context.Background()) }()
				defer func() { cancel(); <-done }()
				h = r
			} else {
				h = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
					if _, err := parseEventList(req.Body, time.Now()); err != nil {
						http.Error(w, err.Error(), 400)
					}
				})
			}
			srv := httptest.NewTLSServer(h)
			defer srv.Close()
			client := srv.Client()
			client.Transport.(*http.Transport).TLSClientConfig.MinVersion = tls.VersionTLS12
			client.Transport.(*http.Transport).MaxIdleConnsPerHost = senders
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			work := make(chan struct{})
			for range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range work {
						resp, err := client.Post(srv.URL, "application/json", bytes.NewReader(body))
						if err != nil {
							b.Error(err)
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							b.Errorf("status %d", resp.StatusCode)
						}
					}
				}()
			}
			for range b.N {
				work <- struct{}{}
			}
			close(work)
			wg.Wait()
			el := time.Since(start)
			b.ReportMetric(float64(b.N*batch)/el.Seconds(), "events/s")
			b.ReportMetric(float64(len(body)*b.N)/el.Seconds()/(1<<20), "MiB/s")
			if r != nil {
				if err := r.Seal(ctx); err != nil {
					b.Fatal(err)
				}
				h := r.HeadRecord()
				var n int64
				if h != nil {
					n = h.Record.WALLast
				}
				if n != int64(b.N*batch) {
					b.Fatalf("sealed %d events, posted %d", n, b.N*batch)
				}
			}
		})
	}
}

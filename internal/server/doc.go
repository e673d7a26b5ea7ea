// Package server is the HTTP face of `lifeboat serve`: /healthz, /readyz,
// /metrics, a read-only status page at / and the same status as JSON at
// /api/status.
//
// Metrics owns lifeboat's Prometheus metrics (docs/metrics.md) in a
// registry of its own, never the process-wide default. The service calls
// its typed setters as runs start and finish, as ticks are missed, as
// backups commit and drills finish; it calls them again with the same
// values while it rebuilds its state from the evidence log after a
// restart, so the setters that record state are idempotent and a restart
// never resets a schedule's last outcome. The live RPO
// (lifeboat_backup_newest_verified_age_seconds) and the KEK version age are
// computed at scrape time from timestamps and an injected clock. Retain,
// called with a reloaded configuration's names, removes the series of
// every schedule, plan, drill, key provider and store it no longer holds.
//
// The status page is rendered on the server by html/template from a
// Status the service fills (StatusSource). It is self-contained: inline
// stylesheet named by its hash in the Content-Security-Policy, bars drawn
// as inline SVG, no script, no font or image fetched, so it works from a
// port-forward with no internet access. Every state is spelled out in
// text, never by colour alone. The handler serves only GET and HEAD: the
// server has no write endpoint, and it exposes nothing the service did not
// put in Status (which must hold no secret and no PHI).
//
// Listen and Serve run the handler with header-read timeouts and a
// graceful shutdown when the context ends; Listen accepts port 0 and its
// listener tells the bound address.
package server

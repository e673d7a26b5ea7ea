// Package service is `lifeboat serve`: the in-cluster scheduled service.
// It loads a configuration directory, runs every Schedule's ticks through
// the same code path as the command line (package job), serves health,
// metrics and a status page (package server), and takes a Kubernetes
// Lease so that one replica tries each tick.
//
// Invariants (docs/format.md §7):
//   - exactly once per tick without trusting the leader: a tick is claimed
//     with the store's never-overwrite condition (runs/<schedule>/<tick>.json)
//     before anything runs, and settled once (…outcome.json) before its
//     signed `schedule` evidence record is appended; a replica that loses
//     either race does nothing for that tick;
//   - a tick that is not run is still claimed, settled and recorded, with
//     its reason, so the evidence log accounts for every tick;
//   - losing the Lease cancels every run in progress at once; SIGTERM stops
//     taking ticks, lets backups and rotations finish within the grace
//     period, cancels drills, releases the Lease;
//   - an invalid configuration on reload is refused with file:line:col
//     errors and the old one keeps running;
//   - time comes from an injected clock (k8s.io/utils/clock), so every rule
//     is tested without sleeping.
package service

package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// table renders the rows as a Markdown table.
func (b *bench) table() string {
	var s strings.Builder
	s.WriteString("| measure | lifeboat | peer (same run) | ratio | goal | result |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, r := range b.rows {
		verdict := "—"
		if r.hasVerdict {
			verdict = "FAIL"
			if r.pass {
				verdict = "PASS"
			}
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %.2f | %s | %s |\n", r.measure, r.lifeboat, r.peer, r.ratio, r.goal, verdict)
	}
	return s.String()
}

// writeDoc writes docs/performance.md: the table of the last run and the
// machine it ran on.
func writeDoc(path, table, machine string) error {
	doc := "# Performance\n\n" +
		"The last `make bench` run (`go run ./e2e/bench`), " + time.Now().UTC().Format("2006-01-02") + ", on " + machine + ".\n" +
		"Each figure is the median of the runs; the peer ran in the same run on the same data.\n" +
		"The data is generated the same way every time (e2e/bench: 6 KiB values, half pseudo-random, half text).\n\n" +
		table + "\n" + methodology
	return os.WriteFile(path, []byte(doc), 0o644)
}

const methodology = `## What is measured

- **backup**: ` + "`lifeboat backup run`" + ` of a plan with one etcd source, into an fs store with a
  local keyring (snapshot stream with etcd's SHA-256 checked, the keyspace inventory, zstd,
  AES-256-GCM envelope, ciphertext digest, fsync, signed evidence record), against ` + "`etcdctl snapshot save`" + ` of the same etcd, and against
  ` + "`etcdctl snapshot save`" + ` followed by ` + "`restic backup --compression auto`" + ` of its file into a new
  repository. Peak RSS is the process's own (getrusage).
- **the source etcd's CPU**: the member's own CPU time (/proc) while each command ran. lifeboat reads
  the keyspace inventory from the snapshot's bytes as they stream past (docs/format.md §6.0.1), so the
  member does the same work for it as for etcdctl; reading the keyspace a second time from the member
  (as before 2026-12-06) more than doubled it.
- **stored bytes**: the backup's objects in the store against the restic repository after one backup.
- **restore to a running etcd**: ` + "`lifeboat restore apply`" + ` (fetch, verify every digest and AEAD tag,
  decrypt, write the member's data directory) and the start of etcd on it until it answers a read, against
  ` + "`etcdutl snapshot restore --bump-revision 1000000000 --mark-compacted`" + ` of etcdctl's plaintext file
  (the restore lifeboat does, and the one etcd's documentation asks for a Kubernetes cluster) and the same
  start. The decrypted snapshot is held in memory (memfd) when the host has room for two copies of it.
`

package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
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
		digits := r.ratioDigits
		if digits == 0 {
			digits = 2
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %.*f | %s | %s |\n", r.measure, r.lifeboat, r.peer, digits, r.ratio, r.goal, verdict)
	}
	if len(b.floors) > 0 {
		s.WriteString("\nThe CPU floor of each size's median backup run (" + strconv.Itoa(runtime.NumCPU()) + " cores; see below):\n\n")
		s.WriteString(strings.Join(b.floors, "\n") + "\n")
	}
	if len(b.drillMemory) > 0 {
		s.WriteString("\nPeak memory of each drill phase, from the last drill's signed report (lifeboat, the scratch\n" +
			"kube-apiserver it started, and the decrypted snapshot while held in memory; docs/format.md §5.6):\n\n")
		s.WriteString(strings.Join(b.drillMemory, "\n") + "\n")
	}
	return s.String()
}

// writeDoc writes docs/performance.md: the table of the last run and the
// machine it ran on.
func writeDoc(path, table, machine string) error {
	doc := "# Performance\n\n" +
		"The last `make bench` run (`go run ./e2e/bench`), " + time.Now().UTC().Format("2006-01-02") + ", on " + machine + ".\n" +
		"Each figure is the median of the runs; the peer ran in the same run on the same data.\n" +
		"Before each timed command the bench calls sync(2), so that no command pays for writing back what the one before it left dirty.\n" +
		"The data is generated the same way every time (e2e/bench: 6 KiB values, half pseudo-random, half text).\n\n" +
		table + "\n" + methodology
	return os.WriteFile(path, []byte(doc), 0o644)
}

const methodology = `## What is measured

- **backup**: ` + "`lifeboat backup run`" + ` of a plan with one etcd source, into an fs store with a
  local keyring (snapshot stream with etcd's SHA-256 checked, the keyspace inventory, zstd,
  AES-256-GCM envelope, the ciphertext's digest taken once, by the fs store as it writes, fsync,
  signed evidence record), against ` + "`etcdctl snapshot save`" + ` of the same etcd, and against
  ` + "`etcdctl snapshot save`" + ` followed by ` + "`restic backup --compression auto`" + ` of its file into a new
  repository. Peak RSS is the process's own (getrusage).
- **the source etcd's CPU**: the member's own CPU time (/proc) while each command ran. lifeboat reads
  the keyspace inventory from the snapshot's bytes as they stream past (docs/format.md §6.0.1), so the
  member does the same work for it as for etcdctl; reading the keyspace a second time from the member
  (as before 2026-12-06) more than doubled it.
- **the CPU floor of a backup run**: under the table, for each size's median run. The member and
  lifeboat share the machine's cores, so that run could not take less than their CPU time together (the
  member's measured in the same run) over the cores: a wall time near that floor means little core time
  was left idle, and only less CPU would make the run faster. Where half of etcdctl + restic is less than
  etcdctl's own time, that goal asks lifeboat to finish a backup of the same data, from the same member,
  sooner than etcdctl alone saves a snapshot of it.
- **stored bytes**: the backup's objects in the store against the restic repository after one backup, in
  MB (10^6 bytes), the ratio to 4 decimals: the two differ by a fraction of a percent. restic draws its
  chunker's polynomial at random for each new repository, so its size moves from run to run by a few
  tenths of a percent on the same data (at 1 GiB, 2026-12-06: 449 MiB in a bench run, 450.8 MiB in a
  repository made by hand).
- **restore to a running etcd**: ` + "`lifeboat restore apply`" + ` (fetch, verify every digest and AEAD tag,
  decrypt, write the member's data directory) and the start of etcd on it until it answers a read, against
  ` + "`etcdutl snapshot restore --bump-revision 1000000000 --mark-compacted`" + ` of etcdctl's plaintext file
  (the restore lifeboat does, and the one etcd's documentation asks for a Kubernetes cluster) and the same
  start. The decrypted snapshot is held in memory (memfd) when the host has room for two copies of it.
- **drill**: ` + "`lifeboat drill run`" + ` of the same backup, the sum of its fetch, decrypt, restore etcd and start
  etcd phases (its signed report's timings: key object and data key, the artifact read from the store and
  decrypted in one stream with every AEAD tag and both digests checked, etcdutl's restore, the scratch
  etcd's start; etcdutl skips its own pass over etcd's trailer for the sealed memory file that was checked),
  against ` + "`etcdutl snapshot restore`" + ` of etcdctl's file without the revision bump (a drill reads the
  keyspace at the backup's revision) and the start of etcd with the scratch etcd's election settings.
  The bench's keyspace is not a Kubernetes cluster's, so the drill's own verdict is not the point here.
- **keys rotate at scale**: ` + "`BenchmarkRewrapAtScale`" + ` (internal/rotation): a new KEK version and
  10,000 backups rewrapped and verified in an fs store, on the local keyring and on Vault transit (a real
  dev server), at the default concurrency (8) against one at a time. Rewrap reads and writes key objects
  only, so this is the store's and the provider's latency; there is no peer tool.
- **manifests export**: ` + "`BenchmarkManifests20k`" + ` (internal/source/manifests): 20,000 ConfigMaps of
  about 300 bytes in 20 namespaces and the bootstrap objects, exported from a real kube-apiserver, against
  ` + "`kubectl get <every listable resource> -A -o yaml --chunk-size=500`" + ` on the same cluster. The ratio is
  of times (kubectl's rate over lifeboat's).
`

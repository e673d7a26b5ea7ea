package backup_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// flipClass groups a store's objects for the campaign's table.
func flipClass(key string) string {
	switch {
	case strings.HasSuffix(key, "/manifest.json"):
		return "manifest"
	case strings.Contains(key, "/keys/"):
		return "key object"
	case strings.Contains(key, "/artifacts/"):
		return "artifact"
	case strings.HasPrefix(key, "evidence/seq/"):
		return "evidence chain object"
	case strings.HasPrefix(key, "evidence/"):
		return "evidence record"
	case strings.HasSuffix(key, "/report.json"):
		return "drill report (signed JSON)"
	case strings.HasPrefix(key, "reports/"):
		return "drill report page (md, html)"
	}
	return "other"
}

// TestFlipCampaign is issue 11's campaign as a test. A real backup (an
// etcd snapshot and the encryption config, encrypted, its key object, its
// sealed manifest) and its signed evidence record (two objects: the chain
// object and the named copy), and a drill report of it (report.json,
// report.md, report.html) with its drill record, are written to an fs
// store. Then 1,000 single
// bits are flipped, one at a time, each in a random object at a random
// position; for half of them the store's own digest record is recomputed,
// as someone who can write the store would. After each flip, `backup
// verify --read-data` (catalog.Verify with the key, the manifest against
// its signed record) and `evidence verify` (with the signer's key) run;
// the flip must be detected, and the error must name the flipped object.
// A flip that passes every check must be harmless by construction: the
// only one is the key object's `created`, a hint that orders retries
// (docs/format.md §3). The table is printed; docs/reliability.md has it.
func TestFlipCampaign(t *testing.T) {
	ctx := testContext(t)
	e := testenv.StartEtcd(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "store")
	st, err := fs.Open(ctx, fs.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	kr, err := local.Create(ctx, local.Options{Path: filepath.Join(dir, "keyring.json")}, "test-kek")
	if err != nil {
		t.Fatal(err)
	}
	f := fixture{st, kr}
	enc := filepath.Join(t.TempDir(), "encryption-config.yaml")
	if err = os.WriteFile(enc, []byte("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - identity: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := backup.Run(ctx, backup.Options{Plan: plan("clinic", etcdSource(e.Endpoint),
		config.Source{EncryptionConfig: &config.EncryptionConfigSource{File: enc}}), Store: f.st, Keys: f.keyring})
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := evidence.NewSigner(priv)
	if _, err := backup.Publish(ctx, m, backup.PublishOptions{Store: f.st, Signer: signer}); err != nil {
		t.Fatal(err)
	}
	pub := signer.PublicKey()
	// A drill of the backup: its signed report, the pages rendered from it,
	// and its record citing all three, as drill.Publish writes them.
	start := m.Completed.Add(time.Minute)
	rep := evidence.Report{Drill: "control-plane", RunID: "drill-flip-campaign", BackupID: m.Backup,
		Started: start, Finished: start.Add(2 * time.Minute), Incident: start,
		Targets:  evidence.Targets{RTOMs: 900_000, RPOMs: 3_600_000},
		Measured: evidence.Measured{RTOMs: evidence.Ms(2 * time.Minute), RPOMs: evidence.Ms(time.Minute), WorstGapMs: evidence.Ms(time.Minute)},
		Phases:   []evidence.Phase{{Name: "restore etcd", DurationMs: 120_000, Outcome: evidence.PhaseSuccess}},
		Checks:   []evidence.Check{{Name: "inventory", Outcome: evidence.CheckPass, Detail: "42 of 42 keys"}}}
	rep.Verdict, rep.Reasons = evidence.Judge(rep.Targets, rep.Measured, rep.Checks)
	rep.HIPAA = evidence.DrillHIPAA(rep)
	signedRep, _, err := signer.SignReport(rep)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := evidence.WriteReport(ctx, f.st, signedRep)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := evidence.NewLog(f.st, signer, time.Now).Append(ctx, evidence.Record{Kind: evidence.KindDrill, ID: rep.RunID,
		Outcome: evidence.OutcomeSuccess, Subject: map[string]any{"report": objs.Citation()}}); err != nil {
		t.Fatal(err)
	}

	check := func() error {
		res, err := catalog.Verify(ctx, f.st, m.Backup, true, f.keyring)
		if err == nil {
			_, err = backup.CheckRecord(ctx, f.st, m.Backup, res.ManifestSHA256, pub)
		}
		if err != nil {
			return err
		}
		_, err = evidence.NewLog(f.st, nil, nil).Verify(ctx, pub)
		return err
	}
	if err := check(); err != nil {
		t.Fatalf("the genuine store does not verify: %v", err)
	}

	keys := objects(t, f.st)
	originals := map[string][]byte{}
	records := map[string][]byte{}
	for _, k := range keys {
		b, err := os.ReadFile(filepath.Join(root, "objects", filepath.FromSlash(k)))
		if err != nil {
			t.Fatal(err)
		}
		originals[k] = b
		if records[k], err = os.ReadFile(filepath.Join(root, "retention", filepath.FromSlash(k)+".json")); err != nil {
			t.Fatal(err)
		}
	}
	write := func(k string, obj, rec []byte) {
		p := filepath.Join(root, "objects", filepath.FromSlash(k))
		os.Chmod(p, 0o640)
		if err := os.WriteFile(p, obj, 0o440); err != nil {
			t.Fatal(err)
		}
		r := filepath.Join(root, "retention", filepath.FromSlash(k)+".json")
		os.Chmod(r, 0o640)
		if err := os.WriteFile(r, rec, 0o440); err != nil {
			t.Fatal(err)
		}
	}
	forgeRecord := func(k string, obj []byte) []byte {
		var r map[string]any
		if err := json.Unmarshal(records[k], &r); err != nil {
			t.Fatal(err)
		}
		r["sha256"] = evidence.Hash(obj)
		b, _ := json.Marshal(r)
		return b
	}
	randInt := func(n int) int {
		v, _ := rand.Int(rand.Reader, big.NewInt(int64(n)))
		return int(v.Int64())
	}

	type row struct{ flips, forged, detected, named, harmless int }
	table := map[string]*row{}
	var failures []string
	const flips = 1000
	for i := range flips {
		k := keys[randInt(len(keys))]
		orig := originals[k]
		pos, bit := randInt(len(orig)), randInt(8)
		flipped := slices.Clone(orig)
		flipped[pos] ^= 1 << bit
		forged := i%2 == 1
		rec := records[k]
		if forged {
			rec = forgeRecord(k, flipped)
		}
		write(k, flipped, rec)
		err := check()
		write(k, orig, records[k])

		c := flipClass(k)
		r := table[c]
		if r == nil {
			r = &row{}
			table[c] = r
		}
		r.flips++
		if forged {
			r.forged++
		}
		switch {
		case err != nil:
			r.detected++
			if strings.Contains(err.Error(), k) {
				r.named++
			} else {
				failures = append(failures, fmt.Sprintf("flip %d (%s byte %d bit %d, forged %v) detected without naming the object: %v", i, k, pos, bit, forged, err))
			}
		case harmlessKeyObjectFlip(orig, flipped):
			r.harmless++
		default:
			failures = append(failures, fmt.Sprintf("flip %d (%s byte %d bit %d, forged %v) went unnoticed", i, k, pos, bit, forged))
		}
	}
	classes := make([]string, 0, len(table))
	for c := range table {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	var out strings.Builder
	fmt.Fprintf(&out, "\n| object | flips | digest record recomputed | detected | detected naming the object | harmless by construction |\n| --- | --- | --- | --- | --- | --- |\n")
	total := row{}
	for _, c := range classes {
		r := table[c]
		fmt.Fprintf(&out, "| %s | %d | %d | %d | %d | %d |\n", c, r.flips, r.forged, r.detected, r.named, r.harmless)
		total.flips, total.forged, total.detected, total.named, total.harmless = total.flips+r.flips, total.forged+r.forged, total.detected+r.detected, total.named+r.named, total.harmless+r.harmless
	}
	fmt.Fprintf(&out, "| all | %d | %d | %d | %d | %d |\n", total.flips, total.forged, total.detected, total.named, total.harmless)
	t.Log(out.String())
	for _, f := range failures {
		t.Error(f)
	}
}

// harmlessKeyObjectFlip reports whether a flip left a key object that
// decodes to the same key object but for `created`: a hint that orders
// which key object is tried first, never a decision (docs/format.md §3).
func harmlessKeyObjectFlip(orig, flipped []byte) bool {
	a, err1 := envelope.ReadKeyObject(strings.NewReader(string(orig)))
	b, err2 := envelope.ReadKeyObject(strings.NewReader(string(flipped)))
	if err1 != nil || err2 != nil {
		return false
	}
	b.Created = a.Created
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

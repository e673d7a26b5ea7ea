package job_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/job"
	"github.com/lifeboat-dr/lifeboat/internal/keys/local"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/store/fs"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

const tieredPlans = `apiVersion: lifeboat.dev/v1alpha1
kind: Store
metadata: {name: local}
spec:
  type: fs
  path: %[1]q
  objectLock: {mode: COMPLIANCE, retention: 1d}
---
apiVersion: lifeboat.dev/v1alpha1
kind: KeyProvider
metadata: {name: local}
spec: {type: local, keyring: %[2]q}
---
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPlan
metadata: {name: gfs}
spec:
  store: local
  keyProvider: local
  retention: {default: 35d, weekly: 90d, monthly: 400d, yearly: 2190d}
  sources:
    - etcd: {endpoints: [%[3]q], dialTimeout: 30s}
`

// TestRetentionTiers backs a real etcd up at chosen times (an injected
// clock) and checks each backup's lock: the first complete backup of each
// ISO week, month and year takes that tier's lock, later ones the default;
// a claim planted by someone who can write the store, or copied from
// another period, is not trusted, so the backup is locked longer, never
// shorter; the tiers are in the signed record.
func TestRetentionTiers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := testenv.StartEtcd(t)
	dir := t.TempDir()
	storeDir, keyring := filepath.Join(dir, "store"), filepath.Join(dir, "keyring.json")
	plans := filepath.Join(dir, "plans.yaml")
	if err := os.WriteFile(plans, fmt.Appendf(nil, tieredPlans, storeDir, keyring, e.Endpoint), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := local.Create(ctx, local.Options{Path: keyring}, "kek"); err != nil {
		t.Fatal(err)
	}
	set, err := config.LoadPaths(plans)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := evidence.LoadOrCreateSigner(filepath.Join(dir, "signing.pem"))
	if err != nil {
		t.Fatal(err)
	}
	env := &wire.Env{Set: set}
	const day = 24 * time.Hour
	backupAt := func(at time.Time) job.BackupResult {
		t.Helper()
		res, err := job.Backup(ctx, env, "gfs", job.BackupOptions{Signer: signer, Now: func() time.Time { return at }})
		if err != nil {
			t.Fatalf("backup at %s: %v", at, err)
		}
		return res
	}
	check := func(res job.BackupResult, at time.Time, lock time.Duration, tiers ...string) {
		t.Helper()
		want := at.Add(lock)
		if got := res.Manifest.RetainUntil; got.Sub(want) < 0 || got.Sub(want) > time.Second {
			t.Errorf("backup at %s: retain until %s, want %s (%s)", at.Format(time.DateTime), got, want, lock)
		}
		if !slices.Equal(res.Tiers, tiers) {
			t.Errorf("backup at %s: tiers %q, want %q", at.Format(time.DateTime), res.Tiers, tiers)
		}
		var recorded []string
		if v, ok := res.Record.Subject["retentionTiers"].([]any); ok {
			for _, x := range v {
				recorded = append(recorded, x.(string))
			}
		}
		if !slices.Equal(recorded, tiers) {
			t.Errorf("backup at %s: record's retentionTiers %q, want %q", at.Format(time.DateTime), recorded, tiers)
		}
	}

	// Thursday 2027-12-30 is in ISO week 2027-W52, December, 2027.
	t0 := time.Date(2027, 12, 30, 2, 0, 0, 0, time.UTC)
	check(backupAt(t0), t0, 2190*day, "weekly/2027-W52", "monthly/2027-12", "yearly/2027")
	t1 := t0.Add(time.Hour)
	check(backupAt(t1), t1, 35*day)
	// New Year's Day 2028, a Saturday: still ISO week 2027-W52, but a new
	// month and year.
	t2 := time.Date(2028, 1, 1, 2, 0, 0, 0, time.UTC)
	check(backupAt(t2), t2, 2190*day, "monthly/2028-01", "yearly/2028")
	// Monday 2028-01-03 starts week 2028-W01.
	t3 := time.Date(2028, 1, 3, 2, 0, 0, 0, time.UTC)
	check(backupAt(t3), t3, 90*day, "weekly/2028-W01")
	t4 := t3.Add(day)
	check(backupAt(t4), t4, 35*day)

	st, err := fs.Open(ctx, fs.Options{Root: storeDir})
	if err != nil {
		t.Fatal(err)
	}
	// Someone who can write the store plants February's monthly claim
	// ahead of time, and copies a genuine claim to March's key: neither
	// verifies, so the first backups of those months still get the long
	// lock.
	planted := []byte(`{"backupId":"x","format":"lifeboat.dev/retention-claim/v1","period":"2028-02","plan":"gfs","publicKey":"AAAA","retainUntil":"2028-02-01T00:00:00Z","signature":"AAAA","signer":"x","tier":"monthly"}`)
	put := func(key string, data []byte) {
		t.Helper()
		if _, err := st.Put(ctx, key, strings.NewReader(string(data)), store.PutOptions{RetainUntil: time.Now().Add(day)}); err != nil {
			t.Fatal(err)
		}
	}
	put(evidence.TierClaimKey("gfs", config.TierMonthly, "2028-02"), planted)
	rc, err := st.Get(ctx, evidence.TierClaimKey("gfs", config.TierMonthly, "2028-01"), store.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	genuine := make([]byte, 4096)
	n, _ := rc.Read(genuine)
	rc.Close()
	put(evidence.TierClaimKey("gfs", config.TierMonthly, "2028-03"), genuine[:n])

	t5 := time.Date(2028, 2, 2, 2, 0, 0, 0, time.UTC) // Wednesday of 2028-W05
	check(backupAt(t5), t5, 400*day, "weekly/2028-W05", "monthly/2028-02")
	// The planted claim stays (it cannot be replaced), so every February
	// backup takes the monthly lock: longer, never shorter.
	t6 := t5.Add(day)
	check(backupAt(t6), t6, 400*day, "monthly/2028-02")
	t7 := time.Date(2028, 3, 1, 2, 0, 0, 0, time.UTC)
	check(backupAt(t7), t7, 400*day, "weekly/2028-W09", "monthly/2028-03")

	// A genuine, signed claim for April, but written when the monthly tier
	// was 35 days: it does not hold today's 400-day tier.
	april := time.Date(2028, 4, 1, 0, 0, 0, 0, time.UTC)
	if err := evidence.WriteTierClaim(ctx, st, signer, evidence.TierClaim{Store: "local", Plan: "gfs", Tier: config.TierMonthly, Period: "2028-04",
		BackupID: "gfs-20280401T000000Z-0000", RetainUntil: april.Add(35 * day)}, time.Now().Add(day)); err != nil {
		t.Fatal(err)
	}
	t8 := time.Date(2028, 4, 4, 2, 0, 0, 0, time.UTC) // Tuesday of 2028-W14
	check(backupAt(t8), t8, 400*day, "weekly/2028-W14", "monthly/2028-04")
}

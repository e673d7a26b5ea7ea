package main

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/job"
)

func newBackupCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Take, list, show and verify backups",
		Long: `A backup runs a BackupPlan: each source (an etcd snapshot, the API server's
encryption-at-rest configuration) is compressed, encrypted client-side with a
new data key and written to the plan's store; then the data key, wrapped by
the plan's key provider, and last the manifest, which commits the backup. A
backup without a manifest (interrupted, killed, failed) is never listed or
restored.

The plans, stores and key providers come from the --config files.`,
	}
	cmd.AddCommand(newBackupRunCommand(a), newBackupListCommand(a), newBackupShowCommand(a), newBackupVerifyCommand(a), newBackupExportCommand(a), newBackupReplicateCommand(a))
	return cmd
}

func newBackupRunCommand(a *app) *cobra.Command {
	var signingKey string
	cmd := &cobra.Command{
		Use:   "run PLAN",
		Short: "Take a backup now, according to a BackupPlan",
		Long: `run takes a backup of the BackupPlan named PLAN and prints its manifest
summary. The plan's store is checked first: an S3 bucket without Object
Lock is refused unless the Store says allowUnlocked: true.

A source that cannot be taken (its server down, an optional source
missing) is skipped: the backup is then marked partial and the skips are
listed in its manifest.

With retention tiers (retention: {default: 35d, monthly: 2190d}), the
first complete backup of each week, month or year (UTC) is locked for the
tier's retention; the tiers a backup took are printed and recorded.

Every committed backup appends a signed record to the store's evidence log
(evidence/), citing the HIPAA sections it is evidence for.

A plan with replicas (spec.replicas) then copies the backup and the
evidence log to each replica store (see backup replicate). A replica that
fails does not fail the backup: the command still exits 0, warns, and the
failure is recorded; backup replicate or serve catches up.

Memory: unless GOMEMLIMIT is set, run keeps the Go heap near 72 MiB (a
soft limit, debug.SetMemoryLimit): the stream is bounded by its buffers
and the etcd inventory by its 32 MiB budget, so the limit only makes the
collector return memory sooner.`,
		Example: `  lifeboat --config schedules/ backup run control-plane
  lifeboat --config lifeboat.yaml backup run etcd-hourly -o json`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if os.Getenv("GOMEMLIMIT") == "" {
				debug.SetMemoryLimit(backupMemoryLimit)
			}
			set, err := loadConfigSet(a, "backup run")
			if err != nil {
				return err
			}
			signer, err := a.env(set).Signer(cmd.Context(), signingKey, true)
			if err != nil {
				return fmt.Errorf("backup run %s: %w", argv[0], err)
			}
			res, err := job.Backup(cmd.Context(), a.env(set), argv[0], job.BackupOptions{
				Signer: signer, Version: version, Progress: a.progressPrinter(),
			})
			for _, w := range res.Warnings {
				fmt.Fprintf(a.stderr, "warning: %s\n", w)
			}
			if err != nil {
				return err
			}
			a.logger.Info("evidence recorded", "backup", res.Manifest.Backup, "record", res.Record.Key(), "seq", res.Record.Seq)
			for _, t := range res.Tiers {
				fmt.Fprintf(a.stderr, "retention tier %s: this backup holds it, locked until %s\n", t, res.Manifest.RetainUntil.UTC().Format(time.RFC3339))
			}
			for _, r := range res.Replicas {
				fmt.Fprintf(a.stderr, "replica %s: %s (%d objects copied, %d already there)\n", r.Store, r.State, r.Copied, r.Skipped)
			}
			return a.render(cmd.OutOrStdout(), res.Manifest, manifestTable(res.Manifest))
		},
	}
	cmd.Flags().StringVar(&signingKey, "signing-key", "", signingKeyHelp)
	return cmd
}

func newBackupListCommand(a *app) *cobra.Command {
	var planName, storeName string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the complete backups in the stores, newest first",
		Long: `list shows the backups that have a manifest, newest first. Backups that
never committed (interrupted, killed, failed) are not listed. Without
--plan or --store it lists every store a BackupPlan writes to. REPLICAS
shows each backup's state on its plan's replica stores: replicated,
behind (a key object rotation added is not copied yet), incomplete (a
copy in progress or interrupted), missing, tampered or unreachable.`,
		Example: `  lifeboat --config schedules/ backup list
  lifeboat --config schedules/ backup list --plan etcd-hourly -o json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			set, err := loadConfigSet(a, "backup list")
			if err != nil {
				return err
			}
			entries, warnings, err := job.ListBackups(cmd.Context(), a.env(set), job.ListBackupsOptions{Plan: planName, Store: storeName})
			for _, w := range warnings {
				fmt.Fprintf(a.stderr, "warning: %s\n", w)
			}
			if err != nil {
				return err
			}
			t := table{header: []string{"BACKUP", "PLAN", "STORE", "STATUS", "POINT IN TIME", "STORED", "ETCD REVISION", "REPLICAS"}}
			for _, e := range entries {
				rev := ""
				if e.EtcdRevision > 0 {
					rev = strconv.FormatInt(e.EtcdRevision, 10)
				}
				t.rows = append(t.rows, []string{e.Backup, e.Plan, e.Store, e.Status, e.PointInTime.UTC().Format(time.RFC3339), byteSize(e.StoredBytes), rev, replicaText(e.Replicas)})
			}
			return a.render(cmd.OutOrStdout(), entries, t)
		},
	}
	cmd.Flags().StringVar(&planName, "plan", "", "list only this BackupPlan's backups")
	cmd.Flags().StringVar(&storeName, "store", "", "list only this Store")
	return cmd
}

func newBackupShowCommand(a *app) *cobra.Command {
	var (
		storeName string
		policies  bool
	)
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a backup's manifest",
		Long: `show prints the manifest of backup ID: its artifacts with sizes and digests,
the etcd snapshot's revision, IDs and inventory, the encryption-at-rest
configuration's providers and key names (never their secrets), and any
skipped sources. The store is the one of the plan the ID names, unless
--store is given.

With --policies it also lists the policy objects of a manifests export:
RBAC, NetworkPolicies, admission policies and bindings, webhook
configurations, ResourceQuotas, LimitRanges, and each Namespace with its
Pod Security labels, with the first 12 hex digits of each digest. With
-o json or -o yaml they are added to the manifest as "policies", with
full digests.`,
		Example: `  lifeboat --config schedules/ backup show control-plane-20261125T020000Z-7f3a
  lifeboat --config schedules/ backup show control-plane-20261125T020000Z-7f3a -o json
  lifeboat --config schedules/ backup show nightly-20261125T020000Z-7f3a --policies`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			ctx := cmd.Context()
			set, err := loadConfigSet(a, "backup show")
			if err != nil {
				return err
			}
			cs, _, err := backupStoreAndKeys(set, argv[0], storeName, "")
			if err != nil {
				return err
			}
			st, err := a.env(set).OpenStore(ctx, cs, true)
			if err != nil {
				return fmt.Errorf("backup show: %w", err)
			}
			m, err := catalog.Read(ctx, st, argv[0])
			if err != nil {
				return fmt.Errorf("backup show: %w", err)
			}
			if !policies {
				return a.render(cmd.OutOrStdout(), m, manifestTable(m))
			}
			pols := []catalog.PolicyObject{}
			if m.Manifests != nil && m.Manifests.Policies != nil {
				pols = m.Manifests.Policies
			}
			v := struct {
				catalog.Manifest
				Policies []catalog.PolicyObject `json:"policies"`
			}{m, pols}
			if err := a.render(cmd.OutOrStdout(), v, manifestTable(m)); err != nil {
				return err
			}
			if a.output != "table" {
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout())
			if m.Manifests == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "backup %s has no manifests export, so no policy objects\n", m.Backup)
				return nil
			}
			return a.render(cmd.OutOrStdout(), nil, policyTable(pols))
		},
	}
	cmd.Flags().StringVar(&storeName, "store", "", "the Store holding the backup (default: its plan's store)")
	cmd.Flags().BoolVar(&policies, "policies", false, "also list the policy objects (RBAC, NetworkPolicies, admission, quotas, Pod Security labels)")
	return cmd
}

// policyTable lists policy objects: kind (with group), namespace, name,
// the digest's first 12 hex digits, and a Namespace's Pod Security labels
// with the pod-security.kubernetes.io/ prefix cut.
func policyTable(pols []catalog.PolicyObject) table {
	t := table{header: []string{"KIND", "NAMESPACE", "NAME", "SHA256", "POD SECURITY"}}
	for _, p := range pols {
		kind := p.Kind
		if p.Group != "" {
			kind += "." + p.Group
		}
		ns := p.Namespace
		if ns == "" {
			ns = "-"
		}
		psa := ""
		if p.Kind == "Namespace" && p.Group == "" {
			keys := make([]string, 0, len(p.Labels))
			for k := range p.Labels {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for i, k := range keys {
				keys[i] = strings.TrimPrefix(k, "pod-security.kubernetes.io/") + "=" + p.Labels[k]
			}
			psa = strings.Join(keys, ",")
			if psa == "" {
				psa = "(none)"
			}
		}
		t.rows = append(t.rows, []string{kind, ns, p.Name, p.SHA256[:min(12, len(p.SHA256))], psa})
	}
	return t
}

func newBackupVerifyCommand(a *app) *cobra.Command {
	var (
		storeName, keyProvider string
		readData               bool
		keyFiles               []string
	)
	cmd := &cobra.Command{
		Use:   "verify ID",
		Short: "Check a backup's stored bytes against its manifest",
		Long: `verify reads every artifact of backup ID and checks its size and SHA-256
against the manifest, without any key, and checks that a key object for the
backup's data key is present. With --read-data it also unwraps the data key
with the plan's key provider and decrypts every artifact, checking each
AEAD tag and the plaintext size and SHA-256, after checking the manifest's
MAC under the data key.

With --key (the public key of the evidence signer), the stored manifest's
SHA-256 is also compared with the backup's signed evidence record: a
manifest replaced after the backup (a new S3 object version, a rewritten
file) fails verification even without --read-data.

Exit codes: 0 when the backup verifies, 4 when it does not (the output
names each failed artifact's object key and which check failed), 1 when
the store or the key provider cannot be reached.`,
		Example: `  lifeboat --config schedules/ backup verify control-plane-20261125T020000Z-7f3a
  lifeboat --config schedules/ backup verify control-plane-20261125T020000Z-7f3a --read-data
  lifeboat evidence public-key signing.pem > signer.pub
  lifeboat --config schedules/ backup verify control-plane-20261125T020000Z-7f3a --key signer.pub`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			ctx := cmd.Context()
			id := argv[0]
			set, err := loadConfigSet(a, "backup verify")
			if err != nil {
				return err
			}
			cs, _, err := backupStoreAndKeys(set, id, storeName, keyProvider)
			if err != nil {
				return err
			}
			st, err := a.env(set).OpenStore(ctx, cs, true)
			if err != nil {
				return fmt.Errorf("backup verify: %w", err)
			}
			var u envelope.Unwrapper
			if readData {
				planName, _, _ := catalog.ParseID(id)
				if _, ok := set.BackupPlan(planName); !ok && keyProvider == "" {
					return usageError{fmt.Errorf("backup verify: --read-data needs a key provider: name it with --key-provider")}
				}
				kek, err := a.env(set).BackupKeys(ctx, planName, keyProvider)
				if err != nil {
					return fmt.Errorf("backup verify: %w", err)
				}
				u = kek
			}
			trusted, err := readTrustedKeys(keyFiles)
			if err != nil {
				return err
			}
			out, verr := job.VerifyBackup(ctx, st, id, u, trusted)
			if verr != nil && len(out.Artifacts) == 0 && !errors.Is(verr, catalog.ErrVerification) {
				return verr
			}
			res := out.VerifyResult
			t := table{header: []string{"ARTIFACT", "OBJECT", "CIPHERTEXT", "PLAINTEXT"}}
			for _, ar := range res.Artifacts {
				t.rows = append(t.rows, []string{ar.Name, ar.Key, ar.Ciphertext, ar.Plaintext})
			}
			if err := a.render(cmd.OutOrStdout(), out, t); err != nil {
				return err
			}
			if a.output == "table" {
				fmt.Fprintf(cmd.OutOrStdout(), "manifest %s: SHA-256 %s, MAC %s, signed evidence record %s\n",
					catalog.ManifestKey(id), res.ManifestSHA256, res.ManifestMAC, recordText(out.Record))
			}
			if verr != nil {
				fmt.Fprintf(a.stderr, "backup %s FAILED verification:\n", id)
				for _, line := range strings.Split(verr.Error(), "\n") {
					fmt.Fprintf(a.stderr, "  %s\n", line)
				}
				return reportedError{(verr)}
			}
			if a.output == "table" {
				what := "ciphertext digests and sizes match the manifest"
				if readData {
					what = "every artifact decrypts and its plaintext digest and size match the manifest"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "backup %s verified: %s\n", id, what)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&readData, "read-data", false, "also unwrap the data key and decrypt every artifact, checking plaintext digests")
	cmd.Flags().StringArrayVar(&keyFiles, "key", nil, "public key file of the evidence signer (PEM \"PUBLIC KEY\" or base64): compare the manifest with the backup's signed record; repeatable")
	cmd.Flags().StringVar(&storeName, "store", "", "the Store holding the backup (default: its plan's store)")
	cmd.Flags().StringVar(&keyProvider, "key-provider", "", "the KeyProvider for --read-data (default: its plan's key provider)")
	return cmd
}

func recordText(rc backup.RecordCheck) string {
	switch rc.Status {
	case backup.RecordOK:
		return "matches (" + rc.Record + ")"
	case backup.RecordNotChecked:
		return "not checked (give --key)"
	case backup.RecordMissing:
		return "missing from the log"
	case backup.RecordNoDigest:
		return "predates manifest digests (" + rc.Record + ")"
	}
	return rc.Status + " (" + rc.Record + ")"
}

// backupStoreAndKeys finds the Store and KeyProvider of backup id: those
// named by the flags, else those of the plan the ID names.
func backupStoreAndKeys(set *config.Set, id, storeName, keyProvider string) (*config.Store, *config.KeyProvider, error) {
	planName, _, err := catalog.ParseID(id)
	if err != nil {
		return nil, nil, usageError{err}
	}
	plan, havePlan := set.BackupPlan(planName)
	if storeName == "" {
		if !havePlan {
			return nil, nil, usageError{fmt.Errorf("backup %s: no BackupPlan named %q in the configuration; name the store with --store", id, planName)}
		}
		storeName = plan.Spec.Store
	}
	if keyProvider == "" && havePlan {
		keyProvider = plan.Spec.KeyProviderNames()[0]
	}
	cs, ok := set.Store(storeName)
	if !ok {
		return nil, nil, usageError{fmt.Errorf("backup %s: no Store named %q", id, storeName)}
	}
	var kp *config.KeyProvider
	if keyProvider != "" {
		if kp, ok = set.KeyProvider(keyProvider); !ok {
			return nil, nil, usageError{fmt.Errorf("backup %s: no KeyProvider named %q", id, keyProvider)}
		}
	}
	return cs, kp, nil
}

// loadConfigSet loads the --config files, which commands that act on
// plans, stores and key providers need.
func loadConfigSet(a *app, cmdName string) (*config.Set, error) {
	if len(a.configPaths) == 0 {
		return nil, usageError{fmt.Errorf("%s: name the configuration with --config", cmdName)}
	}
	return config.LoadPaths(a.configPaths...)
}

// progressPrinter returns a progress hook that redraws one line per
// artifact on stderr when stderr is a terminal and the output is a table,
// and nil otherwise (logs say the same).
func (a *app) progressPrinter() func(backup.Progress) {
	f, ok := a.stderr.(*os.File)
	if !ok || a.output != "table" {
		return nil
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return func(p backup.Progress) {
		line := fmt.Sprintf("%s: %s", p.Artifact, byteSize(p.Done))
		if p.Total > 0 {
			line += " of ~" + byteSize(p.Total)
		}
		if p.Finished {
			fmt.Fprintf(f, "\r\033[K%s, stored\n", line)
		} else {
			fmt.Fprintf(f, "\r\033[K%s", line)
		}
	}
}

// manifestTable is the table view of a manifest.
func manifestTable(m catalog.Manifest) table {
	t := table{header: []string{"FIELD", "VALUE"}}
	add := func(k, v string) { t.rows = append(t.rows, []string{k, v}) }
	add("backup", m.Backup)
	add("plan", m.Plan)
	add("status", m.Status)
	add("started", m.Started.UTC().Format(time.RFC3339Nano))
	add("completed", m.Completed.UTC().Format(time.RFC3339Nano)+" ("+m.Completed.Sub(m.Started).Round(time.Millisecond).String()+")")
	add("retain until", m.RetainUntil.UTC().Format(time.RFC3339))
	add("kek", m.KEK.String())
	add("data key", m.DataKeyID)
	for _, ar := range m.Artifacts {
		add("artifact", fmt.Sprintf("%s (%s): %s, stored %s %s, sha256 %s", ar.Name, ar.Source,
			byteSize(ar.PlaintextSize), byteSize(ar.CiphertextSize), ar.Compression, ar.CiphertextSHA256))
	}
	if e := m.Etcd; e != nil {
		add("etcd", fmt.Sprintf("%s cluster %s member %s", e.Endpoint, e.ClusterID, e.MemberID))
		add("etcd revision", strconv.FormatInt(e.Revision, 10))
		add("etcd taken at", e.TakenAt.UTC().Format(time.RFC3339Nano))
		add("etcd db size", byteSize(e.DBSize))
		add("etcd snapshot sha256", e.SnapshotSHA256)
		add("inventory", fmt.Sprintf("%d keys, digest %s", e.Inventory.Keys, e.Inventory.Digest))
		prefixes := make([]string, 0, len(e.Inventory.Prefixes))
		for p := range e.Inventory.Prefixes {
			prefixes = append(prefixes, p)
		}
		slices.Sort(prefixes)
		for _, p := range prefixes {
			add("  "+p, strconv.FormatInt(e.Inventory.Prefixes[p], 10))
		}
	}
	if c := m.EncryptionConfig; c != nil {
		add("encryption providers", strings.Join(c.Providers, ", "))
		add("encryption key names", strings.Join(c.KeyNames, ", "))
		add("encrypted resources", strings.Join(c.Resources, ", "))
	}
	if x := m.Manifests; x != nil {
		kinds := map[string]bool{}
		namespaces := map[string]bool{}
		for _, c := range x.Counts {
			kinds[c.Group+"/"+c.Kind] = true
			if c.Namespace != "" {
				namespaces[c.Namespace] = true
			}
		}
		add("manifests", fmt.Sprintf("%d objects of %d kinds in %d namespaces, %d policy objects, %d resources skipped",
			x.Objects, len(kinds), len(namespaces), len(x.Policies), len(x.Skipped)))
		if len(x.Inconsistent) > 0 {
			add("manifests inconsistent", strings.Join(x.Inconsistent, ", ")+
				" (listed across an expired continue token: not a consistent snapshot)")
		}
		add("manifests index sha256", x.IndexSHA256)
	}
	if v := m.Volumes; v != nil {
		for _, s := range v.Snapshots {
			if s.Error != "" {
				add("volume snapshot", fmt.Sprintf("%s/%s: FAILED: %s", s.Namespace, s.Claim, s.Error))
				continue
			}
			add("volume snapshot", fmt.Sprintf("%s/%s: %s, %s handle %s, restore size %s", s.Namespace, s.Claim, s.Snapshot, s.Driver, s.Handle, byteSize(s.RestoreSize)))
		}
		if len(v.Snapshots) == 0 {
			add("volume snapshots", "none: no claim matched")
		}
		if len(v.Expired) > 0 {
			add("volume snapshots expired", strings.Join(v.Expired, ", "))
		}
	}
	if v := m.Vault; v != nil {
		add("vault", v.Address)
		for _, k := range v.TransitKeys {
			add("vault transit key", fmt.Sprintf("%s/%s v%d (canary recorded)", v.TransitMount, k.Name, k.LatestVersion))
		}
		if v.RaftSnapshot {
			add("vault raft snapshot", catalog.ArtifactVaultRaft)
		}
		for _, p := range v.KV {
			add("vault kv", fmt.Sprintf("%s: %d secrets", p.Path, p.Secrets))
		}
	}
	if v := m.Velero; v != nil {
		add("velero backup", fmt.Sprintf("%s/%s: %s, %d errors, %d warnings", v.Namespace, v.Backup, v.Phase, v.Errors, v.Warnings))
	}
	for _, s := range m.Skipped {
		add("skipped", s.Source+": "+s.Reason)
	}
	add("lifeboat", m.Lifeboat.Version)
	return t
}

// byteSize formats n bytes with a binary unit.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// backupMemoryLimit is backup run's soft memory limit when GOMEMLIMIT is
// not set. A backup's live heap is the program's own (about 10 MiB), its
// stream buffers (about 30 MiB: up to 8 MiB of snapshot the member sent
// ahead, the connection's flow-control window; the zstd window's 8 MiB of
// history; 4.3 MiB queued to the trailer's digest and the inventory scan)
// and the etcd inventory scan (at most 32 MiB, which it reaches near the
// end of a large snapshot): measured, 50 MB live at the end of a 2 GiB
// backup. The limit must sit above that, or the collector runs without
// pause: under 64 MiB a 2 GiB backup ran 543 collections, most in its last
// seconds, and spent 1.2 times the CPU it does under 80 MiB (farm-bench, 4
// pairs: CPU 0.81x, wall 0.88x). 72 MiB keeps 7 MiB more of the 128 MiB
// the process may use (peak RSS 107 against 115 MiB at 2 GiB) for no
// measurable time (against 80 MiB, 4 pairs: CPU 1.04x, wall 1.03x, each
// within the pairs' spread of 0.75-1.13). Under it, the collector does not
// let the heap grow to twice the live heap.
const backupMemoryLimit = 72 << 20

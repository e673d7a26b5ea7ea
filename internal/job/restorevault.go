package job

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	sourcevault "github.com/lifeboat-dr/lifeboat/internal/source/vault"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// RestoreVaultOptions configure RestoreVault.
type RestoreVaultOptions struct {
	RestoreSelection
	// Address and Token (or TokenFile) reach the target Vault.
	Address, Token, TokenFile string
	// TransitMount is the target's transit mount; empty means the one the
	// keys were backed up from.
	TransitMount string
	// ForceTransit replaces transit keys that exist in the target (their
	// versions newer than the backup's are lost); without it they are
	// skipped.
	ForceTransit bool
	// UpdateKV writes KV secrets that exist in the target as a new version;
	// without it they are skipped.
	UpdateKV bool
	// Raft restores the backup's raft snapshot instead of the transit keys
	// and KV secrets: the target's whole storage is replaced (snapshot
	// force-restore), and it is sealed with the source Vault's seal from
	// then on. UnsealKeys are the source Vault's unseal keys, used when the
	// target seals after the restore; SourceToken is a token of the source
	// Vault (now valid in the target), used to decrypt the transit keys'
	// canaries as the proof the restore worked.
	Raft        bool
	UnsealKeys  []string
	SourceToken string
	// Apply, Confirm and Signer: as for RestoreManifests, with Confirm the
	// target Vault's cluster ID, which the dry run prints.
	Apply   bool
	Confirm string
	Signer  *evidence.Signer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// VaultKeyRestore is what became of one transit key.
type VaultKeyRestore struct {
	Name    string `json:"name"`
	Outcome string `json:"outcome"`
	Version int    `json:"version,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// RestoreVaultResult is what RestoreVault did or would do.
type RestoreVaultResult struct {
	RestoreCommon
	Address   string                 `json:"address"`
	ClusterID string                 `json:"clusterId"`
	Transit   []VaultKeyRestore      `json:"transit"`
	KV        []sourcevault.KVResult `json:"kv"`
}

// Failed counts the keys and secrets that failed.
func (r RestoreVaultResult) Failed() int {
	n := 0
	for _, k := range r.Transit {
		if k.Outcome == sourcevault.KVFailed {
			n++
		}
	}
	for _, k := range r.KV {
		if k.Outcome == sourcevault.KVFailed {
			n++
		}
	}
	return n
}

// RestoreVault restores a backup's Vault transit keys (each then proven by
// decrypting its canary to the manifest's digest) and KV version 2 secrets
// into the Vault at opts.Address (docs/restore.md). Existing transit keys
// and secrets are never replaced unless asked. The raft snapshot is not
// restored by this version (`backup export` gives it, for `vault operator
// raft snapshot restore`). Without Apply nothing is written: the keys and
// secrets are looked up and the plan printed. Apply needs Confirm to be
// the target Vault's cluster ID and appends a signed `restore` record.
func RestoreVault(ctx context.Context, env *wire.Env, o RestoreVaultOptions) (RestoreVaultResult, error) {
	res := RestoreVaultResult{Address: o.Address}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	fail := func(err error) (RestoreVaultResult, error) { return res, fmt.Errorf("restore vault: %w", err) }
	if o.Address == "" {
		return fail(errors.New("no target Vault: set --vault-addr or VAULT_ADDR"))
	}
	cl, err := sourcevault.New(sourcevault.Options{Address: o.Address, Token: o.Token, TokenFile: o.TokenFile, Logger: env.Logger})
	if err != nil {
		return fail(err)
	}
	c := cl.API()
	health, err := c.Sys().HealthWithContext(ctx)
	if err != nil {
		return fail(fmt.Errorf("target Vault %s: health: %w", o.Address, err))
	}
	if health.Sealed {
		return fail(fmt.Errorf("target Vault %s is sealed: unseal it first", o.Address))
	}
	res.ClusterID = health.ClusterID
	if o.Apply && o.Confirm != res.ClusterID {
		return fail(fmt.Errorf("this writes into the Vault at %s: confirm with --confirm %s (its cluster ID)", o.Address, res.ClusterID))
	}
	if o.Apply && o.Signer == nil {
		return fail(errors.New("no evidence signer"))
	}
	src, err := openForRestore(ctx, env, o.RestoreSelection, !o.Apply, now)
	res.RestoreCommon = src.common()
	if err != nil {
		return fail(err)
	}
	m := src.m
	if m.Vault == nil {
		return fail(fmt.Errorf("backup %s holds no Vault data", src.id))
	}
	dk, _, err := catalog.OpenKey(ctx, src.st, src.id, m.DataKeyID, src.kek)
	if err != nil {
		return fail(err)
	}
	defer dk.Destroy()
	if err := m.CheckMAC(dk); err != nil {
		return fail(err)
	}
	decrypt := func(name string) ([]byte, error) {
		var buf bytes.Buffer
		if _, err := catalog.DecryptArtifact(ctx, src.st, m, name, dk, &buf); err != nil {
			clear(buf.Bytes())
			return nil, err
		}
		return buf.Bytes(), nil
	}

	if o.Raft {
		return restoreRaft(ctx, env, o, src, dk, c, res, now)
	}
	t0 := now()
	if _, ok := m.Artifact(catalog.ArtifactVaultTransit); ok {
		data, err := decrypt(catalog.ArtifactVaultTransit)
		if err != nil {
			return fail(err)
		}
		art, err := sourcevault.ReadTransitArtifact(bytes.NewReader(data))
		clear(data)
		if err != nil {
			return fail(err)
		}
		defer art.Destroy()
		mount := o.TransitMount
		if mount == "" {
			mount = art.Mount
		}
		t := sourcevault.Transit{Client: c, Mount: mount}
		for _, k := range m.Vault.TransitKeys {
			r := VaultKeyRestore{Name: k.Name}
			exists, err := t.Exists(ctx, k.Name)
			switch {
			case err != nil:
				r.Outcome, r.Reason = sourcevault.KVFailed, err.Error()
			case exists && !o.ForceTransit:
				r.Outcome, r.Reason = sourcevault.KVSkipped, "exists in the target; --force-transit replaces it, losing its versions newer than the backup's"
			case !o.Apply:
				r.Outcome = "restore"
				if exists {
					r.Outcome = "replace"
				}
			default:
				r.Version, err = t.RestoreAndVerify(ctx, art, k, exists)
				if err != nil {
					r.Outcome, r.Reason = sourcevault.KVFailed, err.Error()
				} else {
					r.Outcome = "restored"
				}
			}
			res.Transit = append(res.Transit, r)
		}
		res.Stages = append(res.Stages, RestoreStage{Name: "transit", Detail: fmt.Sprintf("%d transit keys at %s/%s; each restored key's canary decrypts to the manifest's digest", len(res.Transit), o.Address, mount), DurationMs: now().Sub(t0).Milliseconds()})
	}
	t0 = now()
	if _, ok := m.Artifact(catalog.ArtifactVaultKV); ok {
		data, err := decrypt(catalog.ArtifactVaultKV)
		if err != nil {
			return fail(err)
		}
		art, err := sourcevault.ReadKVArtifact(bytes.NewReader(data))
		clear(data)
		if err != nil {
			return fail(err)
		}
		defer art.Destroy()
		res.KV = sourcevault.RestoreKV(ctx, c, art, o.UpdateKV, !o.Apply)
		res.Stages = append(res.Stages, RestoreStage{Name: "kv", Detail: fmt.Sprintf("%d KV secrets", len(res.KV)), DurationMs: now().Sub(t0).Milliseconds()})
	}
	if !o.Apply {
		return res, nil
	}
	res.Applied = true
	outcome := evidence.OutcomeSuccess
	if res.Failed() > 0 {
		outcome = evidence.OutcomePartial
	}
	count := func(outcome string) int64 {
		var n int64
		for _, k := range res.KV {
			if k.Outcome == outcome {
				n++
			}
		}
		return n
	}
	var restored int64
	for _, k := range res.Transit {
		if k.Outcome == "restored" {
			restored++
		}
	}
	rec, err := appendRestoreRecord(ctx, src, o.Signer, now, outcome, res.Stages, map[string]any{
		"target": "vault", "address": o.Address, "clusterId": res.ClusterID,
		"transitKeys": int64(len(res.Transit)), "transitRestored": restored,
		"kvWritten": count(sourcevault.KVWritten), "kvSkipped": count(sourcevault.KVSkipped), "kvFailed": count(sourcevault.KVFailed),
	})
	if err != nil {
		return res, fmt.Errorf("restore vault: the keys and secrets are written, but the restore record is not: %w", err)
	}
	res.Evidence = rec.Key()
	if n := res.Failed(); n > 0 {
		return res, fmt.Errorf("restore vault: %d transit keys or secrets failed: %w", n, ErrPartialRestore)
	}
	return res, nil
}

// restoreRaft force-restores the backup's raft snapshot into the target
// Vault (docs/restore.md §5). The snapshot is decrypted into a private
// temporary file and sent only once its AEAD tags and digest held. The
// target then holds the source's data under the source's seal: when it
// seals, it is unsealed with the source's keys, and the canaries of the
// backed-up transit keys are decrypted with the source's token.
func restoreRaft(ctx context.Context, env *wire.Env, o RestoreVaultOptions, src restoreSource, dk envelope.DataKey, c *api.Client, res RestoreVaultResult, now func() time.Time) (RestoreVaultResult, error) {
	fail := func(err error) (RestoreVaultResult, error) { return res, fmt.Errorf("restore vault (raft): %w", err) }
	m := src.m
	if _, ok := m.Artifact(catalog.ArtifactVaultRaft); !ok {
		return fail(fmt.Errorf("backup %s holds no %s", src.id, catalog.ArtifactVaultRaft))
	}
	if _, err := c.Logical().ReadWithContext(ctx, "sys/storage/raft/configuration"); err != nil {
		return fail(fmt.Errorf("target Vault %s does not use integrated (raft) storage, or the token may not read it: %w", o.Address, err))
	}
	if !o.Apply {
		res.Stages = append(res.Stages, RestoreStage{Name: "raft", Detail: fmt.Sprintf("would force-restore %s into %s, replacing all of its data; it would then be sealed with the source Vault's seal", catalog.ArtifactVaultRaft, o.Address)})
		return res, nil
	}
	t0 := now()
	dir, err := os.MkdirTemp("", "lifeboat-vault-restore-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, catalog.ArtifactVaultRaft)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fail(err)
	}
	_, err = catalog.DecryptArtifact(ctx, src.st, m, catalog.ArtifactVaultRaft, dk, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	snap, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	err = c.Sys().RaftSnapshotRestoreWithContext(ctx, snap, true)
	snap.Close()
	if err != nil {
		return fail(fmt.Errorf("force-restore into %s: %w", o.Address, err))
	}
	res.Stages = append(res.Stages, RestoreStage{Name: "raft", Detail: fmt.Sprintf("%s decrypted and checked, force-restored into %s", catalog.ArtifactVaultRaft, o.Address), DurationMs: now().Sub(t0).Milliseconds()})

	t0 = now()
	if err := unsealAndWait(ctx, c, o.UnsealKeys); err != nil {
		return fail(err)
	}
	if m.Vault != nil && len(m.Vault.TransitKeys) > 0 {
		if o.SourceToken == "" {
			return fail(errors.New("restored, but the canaries cannot be checked without a token of the source Vault (--source-token-file)"))
		}
		sc, err := c.Clone()
		if err != nil {
			return fail(err)
		}
		sc.SetToken(o.SourceToken)
		mount := o.TransitMount
		if mount == "" {
			mount = m.Vault.TransitMount
		}
		t := sourcevault.Transit{Client: sc, Mount: mount}
		for _, k := range m.Vault.TransitKeys {
			r := VaultKeyRestore{Name: k.Name, Outcome: "restored"}
			got, err := t.CanaryDigest(ctx, k.Name, k.CanaryCiphertext, k.CanaryContext)
			switch {
			case err != nil:
				r.Outcome, r.Reason = sourcevault.KVFailed, err.Error()
			case got != k.CanarySHA256:
				r.Outcome, r.Reason = sourcevault.KVFailed, fmt.Sprintf("canary decrypted to SHA-256 %s, the manifest says %s", got, k.CanarySHA256)
			default:
				r.Version, _ = t.LatestVersion(ctx, k.Name)
			}
			res.Transit = append(res.Transit, r)
		}
	}
	res.Stages = append(res.Stages, RestoreStage{Name: "unseal and check", Detail: fmt.Sprintf("active and unsealed; %d transit keys' canaries checked with the source's token", len(res.Transit)), DurationMs: now().Sub(t0).Milliseconds()})
	res.Applied = true
	health, err := c.Sys().HealthWithContext(ctx)
	if err == nil {
		res.ClusterID = health.ClusterID
	}
	outcome := evidence.OutcomeSuccess
	if res.Failed() > 0 {
		outcome = evidence.OutcomePartial
	}
	rec, err := appendRestoreRecord(ctx, src, o.Signer, now, outcome, res.Stages, map[string]any{
		"target": "vault", "address": o.Address, "clusterId": res.ClusterID, "raft": true,
		"transitKeys": int64(len(res.Transit)), "transitRestored": int64(len(res.Transit) - res.Failed()),
		"kvWritten": int64(0), "kvSkipped": int64(0), "kvFailed": int64(0),
	})
	if err != nil {
		return res, fmt.Errorf("restore vault (raft): the snapshot is restored, but the restore record is not: %w", err)
	}
	res.Evidence = rec.Key()
	if n := res.Failed(); n > 0 {
		return res, fmt.Errorf("restore vault (raft): %d transit keys' canaries failed: %w", n, ErrPartialRestore)
	}
	return res, nil
}

// unsealAndWait unseals the Vault c reaches with keys when it is sealed,
// and waits (up to a minute) until it is unsealed and active.
func unsealAndWait(ctx context.Context, c *api.Client, keys []string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		h, err := c.Sys().HealthWithContext(ctx)
		if err == nil && !h.Sealed && !h.Standby && h.Initialized {
			return nil
		}
		if err == nil && h.Sealed {
			if len(keys) == 0 {
				return errors.New("the Vault sealed after the restore: give the source Vault's unseal keys (--unseal-key-file)")
			}
			for _, k := range keys {
				st, err := c.Sys().UnsealWithContext(ctx, k)
				if err != nil {
					return fmt.Errorf("unseal with the source's keys: %w", err)
				}
				if !st.Sealed {
					break
				}
			}
		}
		select {
		case <-ctx.Done():
			return errors.New("the Vault is not unsealed and active within a minute of the restore")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

package job

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/backup"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
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
	Backup     string                   `json:"backup"`
	PassedOver []string                 `json:"passedOver,omitempty"`
	Record     backup.RecordCheck       `json:"record"`
	KeyObjects []catalog.KeyObjectCheck `json:"keyObjects"`
	Address    string                   `json:"address"`
	ClusterID  string                   `json:"clusterId"`
	Transit    []VaultKeyRestore        `json:"transit"`
	KV         []sourcevault.KVResult   `json:"kv"`
	Applied    bool                     `json:"applied"`
	Stages     []RestoreStage           `json:"stages"`
	Evidence   string                   `json:"evidence,omitempty"`
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
	res.PassedOver = src.passedOver
	if err != nil {
		return fail(err)
	}
	res.Backup, res.Record, res.KeyObjects, res.Stages = src.id, src.record, src.keyObjects, src.stages
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

package drill

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	scratchvault "github.com/lifeboat-dr/lifeboat/internal/scratch/vault"
	sourcevault "github.com/lifeboat-dr/lifeboat/internal/source/vault"
)

// maxTransitArtifact bounds the vault-transit.json a drill decrypts into
// memory: a key backup holds every version's key, a few KiB each.
const maxTransitArtifact = 256 << 20

// canaryCheck is the Drill's canary check: it fetches and decrypts the
// backup's vault-transit.json (sizes and digests checked against the
// manifest), restores every transit key into a scratch Vault and decrypts
// each key's canary, which must have the manifest's SHA-256. A key that
// does not restore or whose canary does not match fails the check, named.
func (r *runner) canaryCheck(ctx context.Context, m catalog.Manifest) evidence.Check {
	const name = config.CheckCanary
	if !slices.ContainsFunc(r.opts.Plan.Spec.Sources, func(s config.Source) bool { return s.Vault != nil && len(s.Vault.TransitKeys) > 0 }) {
		return fail(name, "plan %s has no vault source with transitKeys, so its backups hold no canary to decrypt; add the transit keys to a vault source or drop the canary check",
			r.opts.Plan.Metadata.Name)
	}
	if m.Vault == nil || len(m.Vault.TransitKeys) == 0 {
		return fail(name, "backup %s holds no Vault transit keys (the manifest has no vault transitKeys), so no canary can be decrypted", m.Backup)
	}
	keyNames := make([]string, len(m.Vault.TransitKeys))
	for i, k := range m.Vault.TransitKeys {
		keyNames[i] = k.Name
	}
	a, ok := m.Artifact(catalog.ArtifactVaultTransit)
	if !ok {
		return fail(name, "backup %s lists transit keys %s but has no %s artifact", m.Backup, strings.Join(keyNames, ", "), catalog.ArtifactVaultTransit)
	}
	if a.PlaintextSize > maxTransitArtifact {
		return fail(name, "backup %s: %s is %d bytes, more than the %d a drill reads", m.Backup, a.Name, a.PlaintextSize, maxTransitArtifact)
	}

	dk, _, err := catalog.OpenKey(ctx, r.opts.Store, m.Backup, m.DataKeyID, r.opts.Keys)
	if err != nil {
		return fail(name, "transit keys %s not restored: %v", strings.Join(keyNames, ", "), err)
	}
	var buf bytes.Buffer
	buf.Grow(int(a.PlaintextSize) + 1)
	_, err = catalog.DecryptArtifact(ctx, r.opts.Store, m, a.Name, dk, &buf)
	dk.Destroy()
	defer clear(buf.Bytes())
	if err != nil {
		return fail(name, "transit keys %s not restored: %v", strings.Join(keyNames, ", "), err)
	}
	art, err := sourcevault.ReadTransitArtifact(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return fail(name, "transit keys %s not restored: backup %s: %v", strings.Join(keyNames, ", "), m.Backup, err)
	}
	defer art.Destroy()
	r.event(PhaseVerify, "decrypted %s (%s), plaintext SHA-256 matches the manifest", a.Name, byteSize(a.PlaintextSize))

	bin := r.opts.VaultBinary
	if bin == "" {
		exe, _ := os.Executable()
		if bin, err = scratchvault.Locate(os.Getenv, exe); err != nil {
			return fail(name, "transit keys %s not restored: %v", strings.Join(keyNames, ", "), err)
		}
	}
	srv, err := scratchvault.Start(ctx, scratchvault.Options{Binary: bin, TempDir: r.tmp, Logger: r.log})
	if err != nil {
		return fail(name, "transit keys %s not restored: %v", strings.Join(keyNames, ", "), err)
	}
	defer func() {
		if err := srv.Stop(); err != nil {
			r.log.Warn("stop scratch vault", "err", err)
		}
	}()
	r.event(PhaseVerify, "scratch Vault serving at %s; restoring %d transit keys", srv.Address(), len(keyNames))

	var good, bad []string
	for _, res := range srv.VerifyCanaries(ctx, art, m.Vault.TransitKeys) {
		if res.Err != nil {
			bad = append(bad, res.Err.Error())
			continue
		}
		good = append(good, fmt.Sprintf("%s (latest version %d)", res.Name, res.Version))
	}
	if len(bad) > 0 {
		return fail(name, "%d of %d transit keys failed: %s; restored and decrypted: %s", len(bad), len(bad)+len(good), strings.Join(bad, "; "), listOrNone(good))
	}
	return pass(name, "restored %d transit keys from %s into a scratch Vault and decrypted each key's canary to the SHA-256 in the manifest: %s",
		len(good), a.Name, strings.Join(good, ", "))
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

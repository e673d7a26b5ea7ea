package backup

import (
	"context"
	"errors"
	"io"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/source/vault"
)

// vaultSource takes a vault source into m: the transit keys with their
// canaries, the raft snapshot and the KV v2 paths, one artifact each
// (docs/format.md §6.3). Any failure fails the source.
func (r *run) vaultSource(ctx context.Context, src *config.VaultSource, m *catalog.Manifest) error {
	if m.Vault != nil {
		return errors.New("vault: the plan has more than one vault source; list every key and path in one")
	}
	addr := src.Address
	if addr == "" {
		addr = r.opts.VaultAddr
	}
	cl, err := vault.New(vault.Options{Address: addr, Token: r.opts.VaultToken, TokenFile: src.TokenFile, Logger: r.log})
	if err != nil {
		return err
	}
	sec := &catalog.Vault{Address: cl.Address()}
	if len(src.TransitKeys) > 0 {
		mount := strings.Trim(src.TransitMount, "/")
		if mount == "" {
			mount = vault.DefaultTransitMount
		}
		var keys []catalog.VaultTransitKey
		a, err := r.putFrom(ctx, catalog.ArtifactVaultTransit, func(w io.Writer) error {
			var err error
			keys, err = cl.Transit(ctx, mount, src.TransitKeys, r.id, w)
			return err
		})
		if err != nil {
			return err
		}
		m.Artifacts = append(m.Artifacts, a)
		sec.TransitMount, sec.TransitKeys = mount, keys
	}
	if src.RaftSnapshot {
		rc, err := cl.RaftSnapshot(ctx)
		if err != nil {
			return err
		}
		a, err := r.putArtifact(ctx, catalog.ArtifactVaultRaft, catalog.SourceVault, rc, 0)
		rc.Close()
		if err != nil {
			return err
		}
		m.Artifacts = append(m.Artifacts, a)
		sec.RaftSnapshot = true
	}
	if len(src.KVPaths) > 0 {
		var kv []catalog.VaultKVPath
		a, err := r.putFrom(ctx, catalog.ArtifactVaultKV, func(w io.Writer) error {
			var err error
			kv, err = cl.KV(ctx, src.KVPaths, w)
			return err
		})
		if err != nil {
			return err
		}
		m.Artifacts = append(m.Artifacts, a)
		sec.KV = kv
	}
	m.Vault = sec
	return nil
}

// errArtifactDone stops a producer whose artifact is no longer read.
var errArtifactDone = errors.New("artifact no longer read")

// putFrom stores, as artifact name of the vault source, what fill writes.
// fill runs in its own goroutine and may keep results in the caller's
// variables: they are safe to read once putFrom returns. An error from
// fill fails the artifact.
func (r *run) putFrom(ctx context.Context, name string, fill func(io.Writer) error) (catalog.Artifact, error) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(fill(pw))
	}()
	a, err := r.putArtifact(ctx, name, catalog.SourceVault, pr, 0)
	pr.CloseWithError(errArtifactDone)
	<-done
	return a, err
}

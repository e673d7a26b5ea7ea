package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/vault/api"
)

// KVArtifact is vault-kv.json read back (docs/format.md §6.3).
type KVArtifact struct {
	Format  string   `json:"format"`
	Address string   `json:"address"`
	Paths   []KVPath `json:"paths"`
}

// KVPath is one of the plan's kvPaths.
type KVPath struct {
	Path    string     `json:"path"`
	Mount   string     `json:"mount"`
	Secrets []KVSecret `json:"secrets"`
	Count   int        `json:"count"`
}

// KVSecret is one secret's current version.
type KVSecret struct {
	Path           string            `json:"path"`
	Version        int               `json:"version"`
	CreatedTime    string            `json:"createdTime"`
	Data           map[string]any    `json:"data,omitempty"`
	CustomMetadata map[string]string `json:"customMetadata,omitempty"`
	Deleted        bool              `json:"deleted,omitempty"`
	Destroyed      bool              `json:"destroyed,omitempty"`
}

// Destroy clears the secrets' values from memory, as far as Go allows.
func (a *KVArtifact) Destroy() {
	for i := range a.Paths {
		for j := range a.Paths[i].Secrets {
			clear(a.Paths[i].Secrets[j].Data)
		}
	}
}

// ReadKVArtifact decodes vault-kv.json; every path's count must equal the
// secrets with data it lists.
func ReadKVArtifact(r io.Reader) (KVArtifact, error) {
	var a KVArtifact
	d := json.NewDecoder(r)
	d.UseNumber()
	if err := d.Decode(&a); err != nil {
		return KVArtifact{}, fmt.Errorf("vault-kv.json: %v", DecodeError(err))
	}
	if a.Format != KVFormat {
		return KVArtifact{}, fmt.Errorf("vault-kv.json: format %q, want %q", a.Format, KVFormat)
	}
	for _, p := range a.Paths {
		n := 0
		for _, s := range p.Secrets {
			if s.Data != nil {
				n++
			}
			if s.Path == "" || strings.Contains(s.Path, "..") {
				return KVArtifact{}, fmt.Errorf("vault-kv.json: path %s: a secret with path %q", p.Path, s.Path)
			}
		}
		if n != p.Count {
			return KVArtifact{}, fmt.Errorf("vault-kv.json: path %s: count %d, but %d secrets have data", p.Path, p.Count, n)
		}
		if _, err := cleanMount(p.Mount); err != nil {
			return KVArtifact{}, fmt.Errorf("vault-kv.json: path %s: %w", p.Path, err)
		}
	}
	return a, nil
}

// KV restore outcomes.
const (
	KVWritten = "written"
	KVSkipped = "skipped"
	KVFailed  = "failed"
)

// KVResult is what became of one secret (its path only: never a value).
type KVResult struct {
	Mount, Path string
	Outcome     string
	Reason      string
}

// RestoreKV writes each secret's backed-up data back as a new version on
// the KV version 2 mount of the Vault c reaches. An existing secret is
// skipped unless update is set: the write uses check-and-set 0, which Vault
// refuses for a secret that exists, so a concurrent writer cannot be
// overwritten either. A soft-deleted or destroyed secret had no data to
// restore and is skipped. With dryRun nothing is written: each secret is
// only looked up.
func RestoreKV(ctx context.Context, c *api.Client, a KVArtifact, update, dryRun bool) []KVResult {
	var out []KVResult
	for _, p := range a.Paths {
		for _, s := range p.Secrets {
			r := KVResult{Mount: p.Mount, Path: s.Path}
			switch {
			case s.Data == nil:
				r.Outcome, r.Reason = KVSkipped, "deleted or destroyed at backup time: no data to restore"
			default:
				r.Outcome, r.Reason = restoreSecret(ctx, c, p.Mount, s, update, dryRun)
			}
			out = append(out, r)
		}
	}
	return out
}

func restoreSecret(ctx context.Context, c *api.Client, mount string, s KVSecret, update, dryRun bool) (string, string) {
	meta, err := c.Logical().ReadWithContext(ctx, mount+"/metadata/"+s.Path)
	if err != nil {
		return KVFailed, transitErr("read metadata of", s.Path, err).Error()
	}
	exists := meta != nil && meta.Data != nil
	if exists && !update {
		return KVSkipped, "exists in the target (--existing skip)"
	}
	if dryRun {
		return KVWritten, ""
	}
	body := map[string]any{"data": s.Data}
	if !exists {
		body["options"] = map[string]any{"cas": 0}
	}
	if _, err := c.Logical().WriteWithContext(ctx, mount+"/data/"+s.Path, body); err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) && strings.Contains(VaultMessage(re), "check-and-set") {
			return KVSkipped, "created in the target meanwhile; not overwritten"
		}
		return KVFailed, transitErr("write", s.Path, err).Error()
	}
	if len(s.CustomMetadata) > 0 {
		if _, err := c.Logical().WriteWithContext(ctx, mount+"/metadata/"+s.Path, map[string]any{"custom_metadata": s.CustomMetadata}); err != nil {
			return KVFailed, transitErr("write custom metadata of", s.Path, err).Error()
		}
	}
	return KVWritten, ""
}

package vault

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
)

// KVFormat is the format field of vault-kv.json.
const KVFormat = "lifeboat.dev/vault-kv/v1"

// kvPath is one plan path resolved to its mount.
type kvPath struct {
	path  string // as the plan names it, "mount/path"
	mount string // without trailing "/"
	rel   string // path inside the mount, without surrounding "/"
}

// KV streams the current version of every secret under paths (each
// "mount/path" on a KV version 2 mount) into w as vault-kv.json and returns
// the number of secrets taken per path, in the order of paths. Every path's
// mount is checked before anything is written.
func (c *Client) KV(ctx context.Context, paths []string, w io.Writer) ([]catalog.VaultKVPath, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("vault %s: kv: no paths named", c.addr)
	}
	resolved := make([]kvPath, len(paths))
	for i, p := range paths {
		kp, err := c.resolveKV(ctx, p)
		if err != nil {
			return nil, err
		}
		resolved[i] = kp
	}
	head, _ := json.Marshal(struct {
		Format  string `json:"format"`
		Address string `json:"address"`
	}{KVFormat, c.addr})
	if _, err := fmt.Fprintf(w, "%s,\"paths\":[", head[:len(head)-1]); err != nil {
		return nil, fmt.Errorf("vault %s: kv: write artifact: %w", c.addr, err)
	}
	out := make([]catalog.VaultKVPath, len(resolved))
	for i, kp := range resolved {
		n, err := c.kvPath(ctx, kp, w, i == 0)
		if err != nil {
			return nil, err
		}
		out[i] = catalog.VaultKVPath{Path: kp.path, Secrets: n}
	}
	if _, err := io.WriteString(w, "]}\n"); err != nil {
		return nil, fmt.Errorf("vault %s: kv: write artifact: %w", c.addr, err)
	}
	return out, nil
}

// resolveKV finds the mount of a plan path with sys/internal/ui/mounts and
// checks that it is KV version 2.
func (c *Client) resolveKV(ctx context.Context, p string) (kvPath, error) {
	clean := strings.Trim(p, "/")
	what := "path " + p
	if clean == "" || strings.Contains(clean, "//") || slices.Contains(strings.Split(clean, "/"), "..") {
		return kvPath{}, fmt.Errorf("vault %s: kv %s: want \"mount/path\"", c.addr, what)
	}
	var info struct {
		Path    string            `json:"path"`
		Type    string            `json:"type"`
		Options map[string]string `json:"options"`
	}
	found, err := c.readJSON(ctx, "sys/internal/ui/mounts/"+clean, &info)
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusForbidden {
			// Vault answers 403 both for a path on no mount and for a
			// token without access; sys/mounts tells them apart when the
			// token may read it.
			if c.noMountAt(ctx, clean) {
				return kvPath{}, fmt.Errorf("vault %s: kv %s: find its mount: no secrets engine is mounted there: %w", c.addr, what, ErrNotKV2)
			}
			return kvPath{}, fmt.Errorf("vault %s: kv %s: find its mount: %w (Vault answered 403: the path is on no mount, or the token may not access it)", c.addr, what, ErrPermissionDenied)
		}
		return kvPath{}, c.opErr("kv", what+": find its mount", err)
	}
	if !found || info.Path == "" {
		return kvPath{}, fmt.Errorf("vault %s: kv %s: find its mount: no secrets engine is mounted there: %w", c.addr, what, ErrNotKV2)
	}
	mount := strings.Trim(info.Path, "/")
	switch {
	case info.Type != "kv" && info.Type != "generic":
		return kvPath{}, fmt.Errorf("vault %s: kv %s: mount %s is a %q secrets engine: %w", c.addr, what, mount, info.Type, ErrNotKV2)
	case info.Options["version"] != "2":
		return kvPath{}, fmt.Errorf("vault %s: kv %s: mount %s is KV version 1: %w; lifeboat backs up KV version 2 only (`vault kv enable-versioning %s` upgrades it)",
			c.addr, what, mount, ErrNotKV2, mount)
	}
	rel := strings.Trim(strings.TrimPrefix(clean+"/", mount+"/"), "/")
	return kvPath{path: p, mount: mount, rel: rel}, nil
}

// noMountAt reports whether sys/mounts, when the token may read it, shows
// no mount that p lies in.
func (c *Client) noMountAt(ctx context.Context, p string) bool {
	mounts, err := c.c.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return false
	}
	for m := range mounts {
		if strings.HasPrefix(p+"/", strings.TrimSuffix(m, "/")+"/") {
			return false
		}
	}
	return true
}

// kvPath writes one path's entry and returns the number of secrets with
// data written.
func (c *Client) kvPath(ctx context.Context, kp kvPath, w io.Writer, first bool) (int, error) {
	var names []string
	if kp.rel != "" {
		// The path itself may be a secret as well as a folder.
		var md struct {
			CurrentVersion int `json:"current_version"`
		}
		found, err := c.readJSON(ctx, kp.mount+"/metadata/"+kp.rel, &md)
		if err != nil {
			return 0, c.opErr("kv", "path "+kp.path+": read metadata of "+kp.mount+"/"+kp.rel, err)
		}
		if found {
			names = append(names, kp.rel)
		}
	}
	under, err := c.listKV(ctx, kp, kp.rel)
	if err != nil {
		return 0, err
	}
	names = append(names, under...)
	slices.Sort(names)
	names = slices.Compact(names)

	pathJSON, _ := json.Marshal(kp.path)
	mountJSON, _ := json.Marshal(kp.mount)
	sep := ","
	if first {
		sep = ""
	}
	if _, err := fmt.Fprintf(w, `%s{"path":%s,"mount":%s,"secrets":[`, sep, pathJSON, mountJSON); err != nil {
		return 0, fmt.Errorf("vault %s: kv path %s: write artifact: %w", c.addr, kp.path, err)
	}
	n, written, vanished := 0, 0, 0
	for _, name := range names {
		ok, err := c.writeSecret(ctx, kp, name, w, written == 0)
		if err != nil {
			return 0, err
		}
		if ok.entry {
			written++
		}
		if ok.data {
			n++
		}
		if ok.vanished {
			vanished++
		}
	}
	if _, err := fmt.Fprintf(w, `],"count":%d}`, n); err != nil {
		return 0, fmt.Errorf("vault %s: kv path %s: write artifact: %w", c.addr, kp.path, err)
	}
	// Only the plan's path and counts are logged, never a secret's path.
	if vanished > 0 {
		c.log.Warn("kv secrets vanished between list and read", "path", kp.path, "vanished", vanished)
	}
	if n == 0 {
		c.log.Warn("kv path holds no secrets", "path", kp.path)
	}
	c.log.Info("kv path backed up", "path", kp.path, "mount", kp.mount, "secrets", n, "entries", written, "vanished", vanished)
	return n, nil
}

// listKV lists the secrets under folder rel of the mount, recursively, as
// paths relative to the mount.
func (c *Client) listKV(ctx context.Context, kp kvPath, rel string) ([]string, error) {
	lp := kp.mount + "/metadata/"
	if rel != "" {
		lp += rel + "/"
	}
	s, err := c.c.Logical().ListWithContext(ctx, lp)
	if err != nil {
		return nil, c.opErr("kv", "path "+kp.path+": list "+lp, err)
	}
	if s == nil {
		return nil, nil
	}
	raw, _ := s.Data["keys"].([]any)
	var out []string
	for _, k := range raw {
		key, ok := k.(string)
		if !ok || key == "" || key == "/" || strings.Contains(strings.TrimSuffix(key, "/"), "/") || key == "../" || key == ".." {
			return nil, fmt.Errorf("vault %s: kv path %s: list %s: unexpected key %q", c.addr, kp.path, lp, k)
		}
		child := key
		if rel != "" {
			child = rel + "/" + key
		}
		if strings.HasSuffix(key, "/") {
			sub, err := c.listKV(ctx, kp, strings.TrimSuffix(child, "/"))
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
			continue
		}
		out = append(out, child)
	}
	return out, nil
}

type secretResult struct{ entry, data, vanished bool }

// writeSecret reads the current version of secret rel and writes its
// entry. A secret deleted between listing and reading writes nothing. An
// error names the plan's path and the secret by SecretRef (a secret's own
// path can say more about a patient than the plan's path does), and never
// holds any of its value: Vault's error messages, status codes and
// DecodeError's descriptions only.
func (c *Client) writeSecret(ctx context.Context, kp kvPath, rel string, w io.Writer, first bool) (secretResult, error) {
	what := "path " + kp.path + ": read secret " + SecretRef(kp.mount+"/"+rel)
	resp, err := c.c.Logical().ReadRawWithContext(ctx, kp.mount+"/data/"+rel)
	notFound := resp != nil && resp.StatusCode == http.StatusNotFound
	if err != nil && !notFound {
		if resp != nil {
			resp.Body.Close()
		}
		return secretResult{}, c.opErr("kv", what, err)
	}
	body, err := readBody(resp, maxResponse)
	defer clear(body)
	if err != nil {
		return secretResult{}, c.opErr("kv", what, err)
	}
	var r struct {
		Data *struct {
			Data     json.RawMessage `json:"data"`
			Metadata struct {
				CreatedTime    string          `json:"created_time"`
				CustomMetadata json.RawMessage `json:"custom_metadata"`
				DeletedTime    string          `json:"deleted_time"`
				Destroyed      bool            `json:"destroyed"`
				Version        int             `json:"version"`
			} `json:"metadata"`
		} `json:"data"`
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &r); err != nil {
			return secretResult{}, fmt.Errorf("vault %s: kv %s: decode the answer: %v", c.addr, what, DecodeError(err))
		}
	}
	if r.Data != nil {
		defer clear(r.Data.Data)
	}
	if r.Data == nil || r.Data.Metadata.Version == 0 {
		if notFound {
			// Counted, not logged by name: a secret's path may say more
			// than the plan's does (docs/format.md §6.3).
			return secretResult{vanished: true}, nil
		}
		return secretResult{}, fmt.Errorf("vault %s: kv %s: the answer holds no secret version", c.addr, what)
	}
	md := r.Data.Metadata
	relJSON, _ := json.Marshal(rel)
	createdJSON, _ := json.Marshal(md.CreatedTime)
	var e bytes.Buffer
	// One allocation, so that no copy of the value is left behind unzeroed.
	e.Grow(len(r.Data.Data) + len(md.CustomMetadata) + len(relJSON) + len(createdJSON) + 128)
	if !first {
		e.WriteByte(',')
	}
	fmt.Fprintf(&e, `{"path":%s,"version":%d,"createdTime":%s`, relJSON, md.Version, createdJSON)
	hasData := len(r.Data.Data) > 0 && !bytes.Equal(r.Data.Data, []byte("null"))
	switch {
	case md.Destroyed:
		e.WriteString(`,"destroyed":true`)
	case md.DeletedTime != "" || !hasData:
		e.WriteString(`,"deleted":true`)
	default:
		e.WriteString(`,"data":`)
		e.Write(r.Data.Data)
	}
	if cm := bytes.TrimSpace(md.CustomMetadata); len(cm) > 0 && !bytes.Equal(cm, []byte("null")) {
		e.WriteString(`,"customMetadata":`)
		e.Write(cm)
	}
	e.WriteByte('}')
	b := e.Bytes()
	defer clear(b)
	if _, err := w.Write(b); err != nil {
		return secretResult{}, fmt.Errorf("vault %s: kv path %s: write artifact: %w", c.addr, kp.path, err)
	}
	live := !md.Destroyed && md.DeletedTime == "" && hasData
	return secretResult{entry: true, data: live}, nil
}

// SecretRef names a KV secret in errors without its path: "sha256:" and
// the first 12 hex digits of the SHA-256 of "mount/path". An operator
// finds the secret by hashing the paths `vault kv list` shows, e.g.
// printf %s secret/ehr/x | sha256sum.
func SecretRef(path string) string {
	sum := sha256.Sum256([]byte(path))
	return "sha256:" + hex.EncodeToString(sum[:6])
}

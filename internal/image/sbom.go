package image

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"time"
)

// SBOM returns a CycloneDX 1.5 JSON software bill of materials of the
// image's binaries, read from each one's Go build information: the binary
// (its SHA-256, Go version and build settings) and every module it was
// built from, by package URL (pkg:golang/...). It is deterministic: the
// same binaries and options give the same bytes.
func SBOM(o Options) ([]byte, error) {
	created := o.Created
	if created.IsZero() {
		created = time.Unix(0, 0).UTC()
	}
	type prop struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	}
	type hash struct {
		Alg     string `json:"alg"`
		Content string `json:"content"`
	}
	type component struct {
		Type       string `json:"type"`
		BOMRef     string `json:"bom-ref"`
		Name       string `json:"name"`
		Version    string `json:"version,omitempty"`
		PURL       string `json:"purl,omitempty"`
		Hashes     []hash `json:"hashes,omitempty"`
		Properties []prop `json:"properties,omitempty"`
	}
	type dep struct {
		Ref       string   `json:"ref"`
		DependsOn []string `json:"dependsOn"`
	}
	names := make([]string, 0, len(o.Binaries))
	for n := range o.Binaries {
		names = append(names, n)
	}
	sort.Strings(names)
	var comps []component
	libs := map[string]component{}
	var deps []dep
	for _, n := range names {
		p := o.Binaries[n]
		bi, err := buildinfo.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("sbom: %s: no Go build information: %w", n, err)
		}
		sum, err := fileSHA256(p)
		if err != nil {
			return nil, fmt.Errorf("sbom: %s: %w", n, err)
		}
		c := component{Type: "application", BOMRef: "binary:" + n, Name: n, Version: bi.Main.Version,
			Hashes: []hash{{Alg: "SHA-256", Content: sum}}, Properties: []prop{{Name: "go.version", Value: bi.GoVersion}, {Name: "go.main", Value: bi.Path}}}
		if bi.Main.Path != "" {
			c.PURL = purl(bi.Main.Path, bi.Main.Version)
		}
		for _, s := range bi.Settings {
			c.Properties = append(c.Properties, prop{Name: "go.settings." + s.Key, Value: s.Value})
		}
		comps = append(comps, c)
		d := dep{Ref: c.BOMRef, DependsOn: []string{}}
		for _, m := range bi.Deps {
			if m.Replace != nil {
				m = m.Replace
			}
			ref := purl(m.Path, m.Version)
			if _, ok := libs[ref]; !ok {
				libs[ref] = component{Type: "library", BOMRef: ref, Name: m.Path, Version: m.Version, PURL: ref,
					Properties: []prop{{Name: "go.sum", Value: m.Sum}}}
			}
			d.DependsOn = append(d.DependsOn, ref)
		}
		sort.Strings(d.DependsOn)
		deps = append(deps, d)
	}
	refs := make([]string, 0, len(libs))
	for r := range libs {
		refs = append(refs, r)
	}
	sort.Strings(refs)
	for _, r := range refs {
		comps = append(comps, libs[r])
	}
	bom := map[string]any{
		"bomFormat":   "CycloneDX",
		"specVersion": "1.5",
		"version":     1,
		"metadata": map[string]any{
			"timestamp": created.UTC().Format(time.RFC3339),
			"component": component{Type: "container", BOMRef: "image", Name: "lifeboat", Version: o.Version},
			"tools":     map[string]any{"components": []component{{Type: "application", BOMRef: "tool", Name: "lifeboat mkimage"}}},
		},
		"components":   comps,
		"dependencies": deps,
	}
	return json.MarshalIndent(bom, "", "  ")
}

func purl(path, version string) string {
	return "pkg:golang/" + path + "@" + version
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

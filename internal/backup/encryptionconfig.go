package backup

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
)

// maxEncryptionConfigSize bounds the EncryptionConfiguration file read.
const maxEncryptionConfigSize = 1 << 20

// encryptionConfigAPIVersions are the apiVersions of EncryptionConfiguration
// the API server reads.
var encryptionConfigAPIVersions = []string{"apiserver.config.k8s.io/v1", "apiserver.config.k8s.io/v1beta1"}

// readEncryptionConfig reads an EncryptionConfiguration file and describes
// it. Errors name the file and the line, never a value: the file holds the
// keys that decrypt Secrets.
func readEncryptionConfig(path string) ([]byte, catalog.EncryptionConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, catalog.EncryptionConfig{}, fmt.Errorf("encryption config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxEncryptionConfigSize+1))
	if err != nil {
		clear(data)
		return nil, catalog.EncryptionConfig{}, fmt.Errorf("encryption config %s: %w", path, err)
	}
	desc, err := parseEncryptionConfig(data, path)
	if err != nil {
		clear(data)
		return nil, catalog.EncryptionConfig{}, err
	}
	return data, desc, nil
}

// parseEncryptionConfig checks the size of an EncryptionConfiguration and
// describes it, whether it came from a file or a Secret. Errors start
// with "encryption config <where>" and never quote a value.
func parseEncryptionConfig(data []byte, where string) (catalog.EncryptionConfig, error) {
	if len(data) > maxEncryptionConfigSize {
		return catalog.EncryptionConfig{}, fmt.Errorf("encryption config %s: larger than %d bytes", where, maxEncryptionConfigSize)
	}
	desc, err := describeEncryptionConfig(data)
	if err != nil {
		return catalog.EncryptionConfig{}, fmt.Errorf("encryption config %s: %w", where, err)
	}
	return desc, nil
}

// describeEncryptionConfig lists the provider types (in order of first
// appearance), key names and resources of an EncryptionConfiguration. It
// walks the YAML nodes rather than decoding into types, so that no error
// message can quote a value.
func describeEncryptionConfig(data []byte) (catalog.EncryptionConfig, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return catalog.EncryptionConfig{}, errors.New("not valid YAML")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return catalog.EncryptionConfig{}, errors.New("not a YAML mapping")
	}
	root := doc.Content[0]
	if v := field(root, "kind"); v == nil || v.Kind != yaml.ScalarNode || v.Value != "EncryptionConfiguration" {
		return catalog.EncryptionConfig{}, errors.New("kind is not EncryptionConfiguration")
	}
	if v := field(root, "apiVersion"); v == nil || v.Kind != yaml.ScalarNode || !slices.Contains(encryptionConfigAPIVersions, v.Value) {
		return catalog.EncryptionConfig{}, fmt.Errorf("apiVersion is not one of %v", encryptionConfigAPIVersions)
	}
	res := field(root, "resources")
	if res == nil || res.Kind != yaml.SequenceNode || len(res.Content) == 0 {
		return catalog.EncryptionConfig{}, errors.New("resources: want a non-empty list")
	}
	d := catalog.EncryptionConfig{Providers: []string{}, KeyNames: []string{}, Resources: []string{}}
	for i, entry := range res.Content {
		if entry.Kind != yaml.MappingNode {
			return d, fmt.Errorf("line %d: resources[%d]: want a mapping", entry.Line, i)
		}
		names := field(entry, "resources")
		if names == nil || names.Kind != yaml.SequenceNode {
			return d, fmt.Errorf("line %d: resources[%d].resources: want a list", entry.Line, i)
		}
		for j, n := range names.Content {
			if n.Kind != yaml.ScalarNode {
				return d, fmt.Errorf("line %d: resources[%d].resources[%d]: want a string", n.Line, i, j)
			}
			d.Resources = appendNew(d.Resources, n.Value)
		}
		providers := field(entry, "providers")
		if providers == nil || providers.Kind != yaml.SequenceNode || len(providers.Content) == 0 {
			return d, fmt.Errorf("line %d: resources[%d].providers: want a non-empty list", entry.Line, i)
		}
		for j, p := range providers.Content {
			if p.Kind != yaml.MappingNode || len(p.Content) != 2 || p.Content[0].Kind != yaml.ScalarNode {
				return d, fmt.Errorf("line %d: resources[%d].providers[%d]: want a mapping with one provider type", p.Line, i, j)
			}
			typ, body := p.Content[0].Value, p.Content[1]
			switch typ {
			case "identity":
			case "aescbc", "aesgcm", "secretbox":
				ks := field(body, "keys")
				if ks == nil || ks.Kind != yaml.SequenceNode {
					return d, fmt.Errorf("line %d: resources[%d].providers[%d].%s.keys: want a list", p.Line, i, j, typ)
				}
				for k, key := range ks.Content {
					name := field(key, "name")
					if name == nil || name.Kind != yaml.ScalarNode || name.Value == "" {
						return d, fmt.Errorf("line %d: resources[%d].providers[%d].%s.keys[%d].name: missing", key.Line, i, j, typ, k)
					}
					d.KeyNames = appendNew(d.KeyNames, name.Value)
				}
			case "kms":
				name := field(body, "name")
				if name == nil || name.Kind != yaml.ScalarNode || name.Value == "" {
					return d, fmt.Errorf("line %d: resources[%d].providers[%d].kms.name: missing", p.Line, i, j)
				}
				d.KeyNames = appendNew(d.KeyNames, name.Value)
			default:
				return d, fmt.Errorf("line %d: resources[%d].providers[%d]: unknown provider type %q", p.Line, i, j, typ)
			}
			d.Providers = appendNew(d.Providers, typ)
		}
	}
	return d, nil
}

// field returns the value of key in mapping m, or nil.
func field(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Kind == yaml.ScalarNode && m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

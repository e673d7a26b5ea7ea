package backup

import (
	"strings"
	"testing"
)

func TestDescribeEncryptionConfig(t *testing.T) {
	cfg := `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - kms:
          apiVersion: v2
          name: vault-kms
          endpoint: unix:///var/run/kms.sock
      - aesgcm:
          keys:
            - {name: g1, secret: VERY-SECRET-1}
      - identity: {}
  - resources: [configmaps, "*.apps"]
    providers:
      - secretbox:
          keys:
            - name: sb1
              secret: VERY-SECRET-2
      - identity: {}
`
	d, err := describeEncryptionConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(d.Providers, ","); got != "kms,aesgcm,identity,secretbox" {
		t.Errorf("providers %s", got)
	}
	if got := strings.Join(d.KeyNames, ","); got != "vault-kms,g1,sb1" {
		t.Errorf("key names %s", got)
	}
	if got := strings.Join(d.Resources, ","); got != "secrets,configmaps,*.apps" {
		t.Errorf("resources %s", got)
	}

	for name, bad := range map[string]string{
		"not yaml":      "\t: : VERY-SECRET",
		"wrong kind":    "apiVersion: apiserver.config.k8s.io/v1\nkind: Secret\nresources: []\n",
		"wrong version": "apiVersion: v1\nkind: EncryptionConfiguration\nresources: [{resources: [secrets], providers: [{identity: {}}]}]\n",
		"no resources":  "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n",
		"unknown type":  "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources: [{resources: [secrets], providers: [{rot13: {secret: VERY-SECRET}}]}]\n",
		"key no name":   "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources: [{resources: [secrets], providers: [{aescbc: {keys: [{secret: VERY-SECRET}]}}]}]\n",
		"key list":      "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources: [{resources: [secrets], providers: [{aescbc: {keys: VERY-SECRET}}]}]\n",
		"two types":     "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources: [{resources: [secrets], providers: [{aescbc: {}, identity: {}}]}]\n",
	} {
		_, err := describeEncryptionConfig([]byte(bad))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "VERY-SECRET") {
			t.Errorf("%s: error quotes a secret: %v", name, err)
		}
	}
}

// TestParseEncryptionConfig: the file and Secret paths share one check,
// whose errors start with where the config came from and never quote it.
func TestParseEncryptionConfig(t *testing.T) {
	good := "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aescbc:\n          keys:\n            - {name: k1, secret: TOP-SECRET}\n"
	d, err := parseEncryptionConfig([]byte(good), "secret kube-system/enc key cfg")
	if err != nil || strings.Join(d.Providers, ",") != "aescbc" || strings.Join(d.KeyNames, ",") != "k1" {
		t.Fatalf("parseEncryptionConfig: %+v, %v", d, err)
	}
	for _, c := range []struct{ data, want string }{
		{"{: TOP-SECRET", "encryption config secret kube-system/enc key cfg: not valid YAML"},
		{strings.Repeat("#", maxEncryptionConfigSize+1), "encryption config secret kube-system/enc key cfg: larger than"},
		{"apiVersion: v1\nkind: Secret\nsecret: TOP-SECRET\n", "encryption config secret kube-system/enc key cfg: kind is not EncryptionConfiguration"},
	} {
		_, err := parseEncryptionConfig([]byte(c.data), "secret kube-system/enc key cfg")
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "TOP-SECRET") {
			t.Errorf("parseEncryptionConfig(%.20q): %v", c.data, err)
		}
	}
}

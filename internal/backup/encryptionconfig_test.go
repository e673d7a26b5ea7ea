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

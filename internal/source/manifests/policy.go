package manifests

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"strings"
)

// policyResources are the policy kinds' resources, as "resource.group"
// ("resource." for the core group). Namespaces are policy objects for
// their Pod Security labels and are handled apart.
var policyResources = map[string]bool{
	"roles.rbac.authorization.k8s.io":                                true,
	"clusterroles.rbac.authorization.k8s.io":                         true,
	"rolebindings.rbac.authorization.k8s.io":                         true,
	"clusterrolebindings.rbac.authorization.k8s.io":                  true,
	"networkpolicies.networking.k8s.io":                              true,
	"validatingadmissionpolicies.admissionregistration.k8s.io":       true,
	"validatingadmissionpolicybindings.admissionregistration.k8s.io": true,
	"mutatingadmissionpolicies.admissionregistration.k8s.io":         true,
	"mutatingadmissionpolicybindings.admissionregistration.k8s.io":   true,
	"validatingwebhookconfigurations.admissionregistration.k8s.io":   true,
	"mutatingwebhookconfigurations.admissionregistration.k8s.io":     true,
	"resourcequotas.": true,
	"limitranges.":    true,
}

// IsPolicy reports whether objects of resource in group are policy
// objects whose digest goes in the manifest. Secrets never are.
func IsPolicy(group, resource string) bool {
	return policyResources[resource+"."+group]
}

// PodSecurityLabelPrefix is the prefix of the Pod Security Admission
// labels of a Namespace.
const PodSecurityLabelPrefix = "pod-security.kubernetes.io/"

// PodSecurityLabels returns the pod-security.kubernetes.io/* labels among
// labels (nil when there are none) and the SHA-256 of their canonical
// encoding: a JSON object of exactly those labels, keys in byte order, no
// whitespace, no HTML escaping, no trailing newline ("{}" when none).
func PodSecurityLabels(labels map[string]string) (map[string]string, string) {
	var psa map[string]string
	for k, v := range labels {
		if strings.HasPrefix(k, PodSecurityLabelPrefix) {
			if psa == nil {
				psa = make(map[string]string)
			}
			psa[k] = v
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	m := map[string]string{}
	maps.Copy(m, psa)
	// encoding/json sorts map keys; a map[string]string cannot fail.
	_ = enc.Encode(m)
	sum := sha256.Sum256(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	return psa, hex.EncodeToString(sum[:])
}

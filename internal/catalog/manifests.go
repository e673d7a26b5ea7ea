package catalog

import (
	"fmt"
	"slices"
	"strings"
)

// InconsistentReason is the reason of the skip an inconsistent resource
// gives (Manifests.Skips), after "<resource>: ".
const InconsistentReason = "listed across an expired continue token, not a consistent snapshot; objects changed meanwhile may be missing"

// Skips returns the manifest-level skips of a manifests export: one per
// skipped resource, {Source: "manifests", Reason: "<resource>: <reason>"},
// then one per inconsistent resource, {Source: "manifests", Reason:
// "<resource>: " + InconsistentReason}, so that any resource not exported,
// or not exported as a consistent snapshot, makes the backup partial.
func (x *Manifests) Skips() []Skip {
	if x == nil {
		return nil
	}
	out := make([]Skip, 0, len(x.Skipped)+len(x.Inconsistent))
	for _, s := range x.Skipped {
		out = append(out, Skip{Source: SourceManifests, Reason: s.Resource + ": " + s.Reason})
	}
	for _, r := range x.Inconsistent {
		out = append(out, Skip{Source: SourceManifests, Reason: r + ": " + InconsistentReason})
	}
	return out
}

// validateInconsistent checks Manifests.Inconsistent: each entry a
// resource name ("resource/version" or "resource.group/version"), none
// twice.
func validateInconsistent(list []string) error {
	for i, r := range list {
		res, version, ok := strings.Cut(r, "/")
		if !ok || res == "" || version == "" || strings.ContainsAny(version, "/.") ||
			strings.HasPrefix(res, ".") || strings.HasSuffix(res, ".") || strings.HasPrefix(res, "*") ||
			strings.ContainsFunc(r, func(c rune) bool { return c <= ' ' || c > '~' }) {
			return fmt.Errorf("inconsistent[%d]: %q is not resource/version or resource.group/version", i, r)
		}
		if slices.Contains(list[:i], r) {
			return fmt.Errorf("inconsistent[%d]: %q appears twice", i, r)
		}
	}
	return nil
}

// podSecurityLabelPrefix is the prefix of the Pod Security Admission
// labels a Namespace policy object records.
const podSecurityLabelPrefix = "pod-security.kubernetes.io/"

package manifests

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

// DefaultExcludedResources are always excluded, as "resource" (core group)
// or "resource.group": short-lived or computed objects that a restore must
// not bring back (docs/format.md §6.1).
var DefaultExcludedResources = []string{
	"events",                        // core events
	"events.events.k8s.io",          // the same events, through events.k8s.io
	"leases.coordination.k8s.io",    // leader election and node heartbeats
	"componentstatuses",             // computed on every read, not stored
	"ipaddresses.networking.k8s.io", // ClusterIP allocations; ClusterIPs are reset
}

// filter decides which resources and namespaces are exported.
type filter struct {
	// anyGroup holds excluded resources named without a group, which
	// match in every group; exact holds "resource.group" entries and the
	// defaults ("resource." for the core group).
	anyGroup map[string]bool
	exact    map[string]bool
	include  []string
	exclude  map[string]bool
	selector string
}

func newFilter(opts Options) (*filter, error) {
	f := &filter{anyGroup: map[string]bool{}, exact: map[string]bool{}, exclude: map[string]bool{}}
	for _, r := range DefaultExcludedResources {
		res, group, _ := strings.Cut(r, ".")
		f.exact[res+"."+group] = true
	}
	for _, r := range opts.ExcludeResources {
		r = strings.ToLower(strings.TrimSpace(r))
		if r == "" {
			return nil, fmt.Errorf("excludeResources: empty entry")
		}
		if res, group, ok := strings.Cut(r, "."); ok {
			if res == "" || group == "" {
				return nil, fmt.Errorf("excludeResources: %q is not \"resource\" or \"resource.group\"", r)
			}
			f.exact[res+"."+group] = true
		} else {
			f.anyGroup[r] = true
		}
	}
	for _, ns := range opts.IncludeNamespaces {
		if ns == "" {
			return nil, fmt.Errorf("includeNamespaces: empty entry")
		}
		if !slices.Contains(f.include, ns) {
			f.include = append(f.include, ns)
		}
	}
	slices.Sort(f.include)
	for _, ns := range opts.ExcludeNamespaces {
		f.exclude[ns] = true
	}
	if opts.LabelSelector != "" {
		sel, err := labels.Parse(opts.LabelSelector)
		if err != nil {
			return nil, fmt.Errorf("labelSelector: %w", err)
		}
		f.selector = sel.String()
	}
	return f, nil
}

// excludedResource reports whether resource of group is excluded, by
// default or by the plan.
func (f *filter) excludedResource(group, resource string) bool {
	return f.anyGroup[resource] || f.exact[resource+"."+group]
}

// namespaceAllowed reports whether objects of namespace ns (and the
// Namespace named ns) are exported.
func (f *filter) namespaceAllowed(ns string) bool {
	if f.exclude[ns] {
		return false
	}
	return len(f.include) == 0 || slices.Contains(f.include, ns)
}

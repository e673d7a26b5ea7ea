package manifests

import (
	"archive/tar"
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
)

// IndexMember is the name of the tar's last member, the index.
const IndexMember = "lifeboat-index.json"

// IndexFormat is the index's format field.
const IndexFormat = "lifeboat.dev/manifests-index/v1"

// DefaultPageSize is the number of objects asked for per list request.
const DefaultPageSize = 500

// Options describe one export.
type Options struct {
	// Config reaches the API server. Required.
	Config *rest.Config
	// IncludeNamespaces limits namespaced objects (and Namespaces) to
	// these namespaces; empty means all.
	IncludeNamespaces []string
	// ExcludeNamespaces skips these namespaces.
	ExcludeNamespaces []string
	// ExcludeResources are excluded besides DefaultExcludedResources, as
	// "resource" (in every group) or "resource.group".
	ExcludeResources []string
	// LabelSelector is sent with every list.
	LabelSelector string
	// PageSize is the list limit; zero means DefaultPageSize.
	PageSize int64
	// Logger receives structured logs; nil discards them. Object names and
	// contents are never logged.
	Logger *slog.Logger
}

// Index is the content of the IndexMember (docs/format.md §6.1).
type Index struct {
	Format  string                 `json:"format"`
	Objects []IndexEntry           `json:"objects"`
	Total   int                    `json:"total"`
	Counts  []catalog.ObjectCount  `json:"counts"`
	Skipped []catalog.ResourceSkip `json:"skipped"`
	// Inconsistent are resources whose list continued after an expired
	// continue token: the same as catalog.Manifests.Inconsistent.
	Inconsistent []string `json:"inconsistent,omitempty"`
}

// IndexEntry is one object of the tar.
type IndexEntry struct {
	Path      string `json:"path"`
	Group     string `json:"group"`
	Version   string `json:"version"`
	Resource  string `json:"resource"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	SHA256    string `json:"sha256"`
}

// Export is a running export: read the tar from it until io.EOF, then
// take the Result. Close it in every case.
type Export struct {
	pr     *io.PipeReader
	cancel context.CancelFunc
	done   chan struct{}
	res    catalog.Manifests
	err    error
}

// resource is one resource to list.
type resource struct {
	gvr        schema.GroupVersionResource
	kind       string
	namespaced bool
}

// name is the resource as ResourceSkip names it: "resource.group/version",
// or "resource/version" for the core group.
func (r resource) name() string {
	if r.gvr.Group == "" {
		return r.gvr.Resource + "/" + r.gvr.Version
	}
	return r.gvr.Resource + "." + r.gvr.Group + "/" + r.gvr.Version
}

// Start discovers the resources to export and starts streaming the tar.
// Errors before any byte is streamed (bad options, discovery failing as a
// whole) are returned here; later ones end the stream.
func Start(ctx context.Context, opts Options) (*Export, error) {
	if opts.Config == nil {
		return nil, errors.New("manifests: a REST config is required")
	}
	f, err := newFilter(opts)
	if err != nil {
		return nil, fmt.Errorf("manifests: %w", err)
	}
	if opts.PageSize < 0 {
		return nil, errors.New("manifests: page size must not be negative")
	}
	if opts.PageSize == 0 {
		opts.PageSize = DefaultPageSize
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := rest.CopyConfig(opts.Config)
	cfg.WarningHandler = warningLogger{log}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("manifests: discovery client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("manifests: dynamic client: %w", err)
	}
	x := &exporter{opts: opts, f: f, log: log, dyn: dyn, counts: map[catalog.ObjectCount]int{}}
	resources, err := x.discover(dc)
	if err != nil {
		return nil, err
	}
	log.Info("manifests: resources discovered", "resources", len(resources), "skipped", len(x.skipped))

	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	e := &Export{pr: pr, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(e.done)
		res, err := x.run(ctx, pw, resources)
		if err != nil {
			e.err = err
			pw.CloseWithError(err)
			log.Error("manifests: export failed", "err", err)
			return
		}
		e.res = res
		pw.Close()
	}()
	return e, nil
}

// Read reads the tar.
func (e *Export) Read(p []byte) (int, error) { return e.pr.Read(p) }

// errClosed ends an export closed before its end.
var errClosed = errors.New("manifests: export closed before its end")

// Close stops the export if it is still running and waits for it.
func (e *Export) Close() error {
	e.pr.CloseWithError(errClosed)
	e.cancel()
	<-e.done
	return nil
}

// Result waits for the export to end and returns the manifest section, or
// the error that ended it.
func (e *Export) Result() (catalog.Manifests, error) {
	<-e.done
	return e.res, e.err
}

// exporter holds the state of one export.
type exporter struct {
	opts         Options
	f            *filter
	log          *slog.Logger
	dyn          dynamic.Interface
	tw           *tar.Writer
	index        []IndexEntry
	counts       map[catalog.ObjectCount]int
	policies     []catalog.PolicyObject
	skipped      []catalog.ResourceSkip
	inconsistent []string

	// apiServices is looked up once, at the first 503 (aggregated).
	apiServicesOnce sync.Once
	apiServices     map[schema.GroupVersion]string
	apiServicesErr  error
}

// discover lists the preferred version of every listable resource that
// is not excluded, sorted by group, version and resource. A group version
// whose discovery failed is recorded as skipped, unless its group is one
// the API server serves itself (builtinGroup): then discovery fails.
func (x *exporter) discover(dc discovery.DiscoveryInterface) ([]resource, error) {
	lists, err := dc.ServerPreferredResources()
	if err != nil {
		var gdf *discovery.ErrGroupDiscoveryFailed
		if !errors.As(err, &gdf) {
			return nil, fmt.Errorf("manifests: discovery: %w", err)
		}
		gvs := slices.SortedFunc(maps.Keys(gdf.Groups), func(a, b schema.GroupVersion) int {
			return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Version, b.Version))
		})
		for _, gv := range gvs {
			// The API server's own groups do not fail alone: the API
			// server itself is in trouble, and skipping would drop them.
			if builtinGroup(gv.Group) {
				return nil, fmt.Errorf("manifests: discovery of built-in group version %q: %w", gv.String(), gdf.Groups[gv])
			}
			x.skip("*."+gv.Group+"/"+gv.Version, "discovery failed: "+gdf.Groups[gv].Error())
		}
	}
	var out []resource
	seen := map[schema.GroupVersionResource]bool{}
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			return nil, fmt.Errorf("manifests: discovery: group version %q: %w", l.GroupVersion, err)
		}
		for _, ar := range l.APIResources {
			if strings.Contains(ar.Name, "/") || !slices.Contains(ar.Verbs, "list") {
				continue // a subresource, or not data
			}
			group, version := gv.Group, gv.Version
			if ar.Group != "" {
				group = ar.Group
			}
			if ar.Version != "" {
				version = ar.Version
			}
			if x.f.excludedResource(group, ar.Name) {
				continue
			}
			gvr := schema.GroupVersionResource{Group: group, Version: version, Resource: ar.Name}
			if seen[gvr] {
				continue
			}
			seen[gvr] = true
			out = append(out, resource{gvr: gvr, kind: ar.Kind, namespaced: ar.Namespaced})
		}
	}
	slices.SortFunc(out, func(a, b resource) int {
		return cmp.Or(cmp.Compare(groupDir(a.gvr.Group), groupDir(b.gvr.Group)),
			cmp.Compare(a.gvr.Version, b.gvr.Version), cmp.Compare(a.gvr.Resource, b.gvr.Resource))
	})
	return out, nil
}

func groupDir(g string) string {
	if g == "" {
		return "core"
	}
	return g
}

// skip records a resource that was not (fully) exported.
func (x *exporter) skip(res, reason string) {
	x.log.Warn("manifests: resource skipped", "resource", res, "reason", reason)
	x.skipped = append(x.skipped, catalog.ResourceSkip{Resource: res, Reason: reason})
}

// bufSize is the buffer between the tar writer and the pipe.
const bufSize = 256 << 10

// run writes the tar to w and returns the manifest section.
func (x *exporter) run(ctx context.Context, w io.Writer, resources []resource) (catalog.Manifests, error) {
	bw := bufio.NewWriterSize(w, bufSize)
	x.tw = tar.NewWriter(bw)
	for _, r := range resources {
		start := time.Now()
		n := len(x.index)
		if err := x.listResource(ctx, r); err != nil {
			return catalog.Manifests{}, err
		}
		x.log.Debug("manifests: resource exported", "resource", r.name(), "objects", len(x.index)-n,
			"duration", time.Since(start).Round(time.Millisecond))
	}

	counts := make([]catalog.ObjectCount, 0, len(x.counts))
	for c, n := range x.counts {
		c.Count = n
		counts = append(counts, c)
	}
	slices.SortFunc(counts, func(a, b catalog.ObjectCount) int {
		return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Version, b.Version),
			cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace))
	})
	slices.SortFunc(x.policies, func(a, b catalog.PolicyObject) int {
		return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Kind, b.Kind),
			cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	skipped := x.skipped
	if skipped == nil {
		skipped = []catalog.ResourceSkip{}
	}
	objects := x.index
	if objects == nil {
		objects = []IndexEntry{}
	}
	idx, err := json.Marshal(Index{Format: IndexFormat, Objects: objects, Total: len(objects),
		Counts: counts, Skipped: skipped, Inconsistent: x.inconsistent})
	if err != nil {
		return catalog.Manifests{}, fmt.Errorf("manifests: index: %w", err)
	}
	sum, err := x.writeMember(IndexMember, idx)
	if err != nil {
		return catalog.Manifests{}, err
	}
	if err := x.tw.Close(); err != nil {
		return catalog.Manifests{}, fmt.Errorf("manifests: tar: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return catalog.Manifests{}, fmt.Errorf("manifests: tar: %w", err)
	}
	x.log.Info("manifests: export done", "objects", len(objects), "policies", len(x.policies), "skipped", len(x.skipped),
		"inconsistent", len(x.inconsistent))
	return catalog.Manifests{
		Objects: len(objects), Counts: counts, Policies: x.policies,
		Skipped: x.skipped, Inconsistent: x.inconsistent, IndexSHA256: sum,
	}, nil
}

// epoch is every member's modification time, so that the tar depends on
// the objects alone.
var epoch = time.Unix(0, 0).UTC()

// writeMember writes one tar member and returns its SHA-256.
func (x *exporter) writeMember(name string, data []byte) (string, error) {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Size: int64(len(data)), ModTime: epoch}
	if err := x.tw.WriteHeader(hdr); err != nil {
		return "", fmt.Errorf("manifests: tar: %w", err)
	}
	if _, err := x.tw.Write(data); err != nil {
		return "", fmt.Errorf("manifests: tar: %w", err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// listResource pages through one resource and writes its objects. The
// next page is fetched while the current one is written (see pages), so
// at most three pages are in memory.
func (x *exporter) listResource(ctx context.Context, r resource) error {
	namespaces := []string{metav1.NamespaceAll}
	if r.namespaced && len(x.f.include) > 0 {
		namespaces = x.f.include
	}
	for _, ns := range namespaces {
		if err := x.listNamespace(ctx, r, ns); err != nil {
			return err
		}
	}
	return nil
}

// page is what pages sends: a page of objects, or the end of a list
// (skip set: record it; err set: the export fails).
type page struct {
	items []unstructured.Unstructured
	// inconsistent is set on the first page after an expired continue
	// token was replaced by the inconsistent one the 410 carried.
	inconsistent bool
	skip         string
	err          error
}

// listNamespace lists r in ns ("" for all namespaces) and writes its
// objects; it alone changes the exporter's state.
func (x *exporter) listNamespace(ctx context.Context, r resource, ns string) error {
	pctx, cancel := context.WithCancel(ctx)
	ch := make(chan page, 1)
	go x.pages(pctx, r, ns, ch)
	defer func() {
		cancel()
		for range ch { // until pages returns
		}
	}()
	where := ""
	if ns != "" {
		where = "namespace " + ns + ": "
	}
	for p := range ch {
		switch {
		case p.err != nil:
			return p.err
		case p.skip != "":
			x.skip(r.name(), where+p.skip)
			return nil
		}
		if p.inconsistent && !slices.Contains(x.inconsistent, r.name()) {
			x.inconsistent = append(x.inconsistent, r.name())
		}
		for i := range p.items {
			if err := x.writeObject(r, p.items[i].Object); err != nil {
				return err
			}
		}
	}
	return nil
}

// pages lists r in ns page by page and sends each page to out, then
// closes it. A list error the API server reports for this resource alone
// ends the list with a skip; any other ends it with an error.
func (x *exporter) pages(ctx context.Context, r resource, ns string, out chan<- page) {
	defer close(out)
	send := func(p page) bool {
		select {
		case out <- p:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var ri dynamic.ResourceInterface = x.dyn.Resource(r.gvr)
	if ns != "" {
		ri = x.dyn.Resource(r.gvr).Namespace(ns)
	}
	listed, cont, inconsistent := 0, "", false
	for {
		list, err := ri.List(ctx, metav1.ListOptions{Limit: x.opts.PageSize, Continue: cont, LabelSelector: x.f.selector})
		if err != nil {
			if ctx.Err() != nil {
				send(page{err: fmt.Errorf("manifests: list %s: %w", r.name(), ctx.Err())})
				return
			}
			if cont != "" && apierrors.IsResourceExpired(err) {
				// The continue token expired (etcd compacted past the
				// list's revision). The 410 carries a token that
				// continues after the last key listed, at the current
				// revision: no duplicates, but not a snapshot.
				if next := inconsistentContinue(err); next != "" {
					x.log.Warn("manifests: continue token expired; continuing inconsistently", "resource", r.name(), "objects", listed)
					cont, inconsistent = next, true
					continue
				}
				send(page{skip: fmt.Sprintf("list expired after %d objects", listed)})
				return
			}
			reason, ok, note := x.skippable(ctx, r, err)
			if ok {
				if listed > 0 {
					reason = fmt.Sprintf("%s (after %d objects)", reason, listed)
				}
				send(page{skip: reason})
				return
			}
			send(page{err: fmt.Errorf("manifests: list %s: %s%w", r.name(), note, err)})
			return
		}
		listed += len(list.Items)
		if !send(page{items: list.Items, inconsistent: inconsistent}) {
			return
		}
		inconsistent = false
		cont = list.GetContinue()
		if cont == "" {
			return
		}
	}
}

// warningLogger logs the API server's warnings (deprecated APIs) at
// debug level instead of klog's default of printing them.
type warningLogger struct{ log *slog.Logger }

func (w warningLogger) HandleWarningHeader(code int, agent, text string) {
	if code == 299 {
		w.log.Debug("manifests: API server warning", "warning", text)
	}
}

// inconsistentContinue returns the continue token of a 410 Status, if any.
func inconsistentContinue(err error) string {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return st.Status().ListMeta.Continue
	}
	return ""
}

// skippable reports whether a list error concerns only that resource
// (the API server answered, and refused), and the reason to record. A 503
// is skippable only from an aggregated API (served by an APIService with
// a service: its backend is down); from the API server's own groups it
// means the API server itself is unavailable, and the export fails, with
// note saying so.
func (x *exporter) skippable(ctx context.Context, r resource, err error) (reason string, ok bool, note string) {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return "", false, ""
	}
	switch st.Status().Code {
	case http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed:
		return "list: " + err.Error(), true, ""
	case http.StatusServiceUnavailable:
		if by, ok := x.aggregated(ctx, r.gvr.GroupVersion()); ok {
			return "list: aggregated API unavailable (" + by + "): " + err.Error(), true, ""
		}
		return "", false, "unavailable, and not an aggregated API: "
	}
	return "", false, ""
}

// apiServicesGVR is the resource of the aggregation layer's APIServices.
var apiServicesGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// aggregated reports whether gv is served by an aggregated API server,
// and what says so. The APIServices are read once: gv is aggregated if its
// APIService names a service (the API server's own group versions have
// APIServices without one). If they cannot be read (forbidden, or the API
// server is itself unavailable), gv is taken as aggregated unless its
// group is one the API server serves itself: the core group, the groups
// of k8s.io/api, apiextensions.k8s.io and apiregistration.k8s.io.
func (x *exporter) aggregated(ctx context.Context, gv schema.GroupVersion) (string, bool) {
	x.apiServicesOnce.Do(func() {
		list, err := x.dyn.Resource(apiServicesGVR).List(ctx, metav1.ListOptions{})
		if err != nil {
			x.apiServicesErr = err
			x.log.Warn("manifests: APIServices cannot be read; telling aggregated APIs by group", "err", err)
			return
		}
		x.apiServices = map[schema.GroupVersion]string{}
		for _, it := range list.Items {
			group, _, _ := unstructured.NestedString(it.Object, "spec", "group")
			version, _, _ := unstructured.NestedString(it.Object, "spec", "version")
			svc, found, _ := unstructured.NestedMap(it.Object, "spec", "service")
			by := ""
			if found && svc != nil {
				ns, _ := svc["namespace"].(string)
				name, _ := svc["name"].(string)
				by = "APIService " + it.GetName() + ", service " + ns + "/" + name
			}
			x.apiServices[schema.GroupVersion{Group: group, Version: version}] = by
		}
	})
	if x.apiServicesErr == nil {
		by := x.apiServices[gv]
		return by, by != ""
	}
	if builtinGroup(gv.Group) {
		return "", false
	}
	return "group " + gv.Group + " is not built in; APIServices unreadable", true
}

// builtinGroup reports whether kube-apiserver serves group itself.
func builtinGroup(group string) bool {
	switch group {
	case "apiextensions.k8s.io", "apiregistration.k8s.io":
		return true
	}
	return scheme.Scheme.IsGroupRegistered(group)
}

// writeObject strips, encodes and writes one object, and records it.
func (x *exporter) writeObject(r resource, obj map[string]any) error {
	md, _ := obj["metadata"].(map[string]any)
	name, _ := md["name"].(string)
	ns, _ := md["namespace"].(string)
	if name == "" {
		return fmt.Errorf("manifests: %s: an object without a name", r.name())
	}
	if !r.namespaced {
		ns = ""
	}
	isNamespace := r.gvr.Group == "" && r.gvr.Resource == "namespaces"
	switch {
	case r.namespaced && !x.f.namespaceAllowed(ns):
		return nil
	case isNamespace && !x.f.namespaceAllowed(name):
		return nil
	}
	var nsLabels map[string]string
	if isNamespace {
		if l, ok := md["labels"].(map[string]any); ok {
			nsLabels = make(map[string]string, len(l))
			for k, v := range l {
				s, _ := v.(string)
				nsLabels[k] = s
			}
		}
	}
	Strip(r.gvr.Group, r.gvr.Resource, obj)
	doc, err := yaml.Marshal(obj)
	if err != nil {
		// The error could quote a value; name the resource only.
		return fmt.Errorf("manifests: %s: an object cannot be encoded as YAML", r.name())
	}
	p := MemberPath(r.gvr.Group, r.gvr.Version, r.gvr.Resource, ns, name)
	sum, err := x.writeMember(p, doc)
	if err != nil {
		return err
	}
	x.index = append(x.index, IndexEntry{Path: p, Group: r.gvr.Group, Version: r.gvr.Version,
		Resource: r.gvr.Resource, Kind: r.kind, Namespace: ns, Name: name, SHA256: sum})
	x.counts[catalog.ObjectCount{Group: r.gvr.Group, Version: r.gvr.Version, Kind: r.kind, Namespace: ns}]++
	switch {
	case isNamespace:
		labels, digest := PodSecurityLabels(nsLabels)
		x.policies = append(x.policies, catalog.PolicyObject{Group: "", Version: r.gvr.Version, Kind: r.kind,
			Name: name, SHA256: digest, Labels: labels})
	case IsPolicy(r.gvr.Group, r.gvr.Resource):
		x.policies = append(x.policies, catalog.PolicyObject{Group: r.gvr.Group, Version: r.gvr.Version, Kind: r.kind,
			Namespace: ns, Name: name, SHA256: sum})
	}
	return nil
}

package drill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/scratch"
	etcdsource "github.com/lifeboat-dr/lifeboat/internal/source/etcd"
)

// resource is a Kubernetes resource a drill compares between the backup's
// keyspace and the restored API.
type resource struct {
	name       string // plural resource name, e.g. "deployments"
	group      string // API group, "" for core
	version    string
	namespaced bool
	// etcdPath is where kube-apiserver stores it under the prefix,
	// e.g. "deployments" or "services/specs".
	etcdPath string
}

// qualified is the resource as "resource.group" (config's spelling).
func (r resource) qualified() string {
	if r.group == "" {
		return r.name
	}
	return r.name + "." + r.group
}

// listPath is the API path listing the resource in every namespace.
func (r resource) listPath() string { return r.groupVersionPath() + "/" + r.name }

// objectPath is the API path of one object.
func (r resource) objectPath(namespace, name string) string {
	if r.namespaced {
		return r.groupVersionPath() + "/namespaces/" + namespace + "/" + r.name + "/" + name
	}
	return r.listPath() + "/" + name
}

func (r resource) groupVersionPath() string {
	if r.group == "" {
		return "/api/" + r.version
	}
	return "/apis/" + r.group + "/" + r.version
}

const rbacGroup = "rbac.authorization.k8s.io"

var (
	rNamespaces          = resource{"namespaces", "", "v1", false, "namespaces"}
	rSecrets             = resource{"secrets", "", "v1", true, "secrets"}
	rServices            = resource{"services", "", "v1", true, "services/specs"}
	rDeployments         = resource{"deployments", "apps", "v1", true, "deployments"}
	rRoles               = resource{"roles", rbacGroup, "v1", true, "roles"}
	rRoleBindings        = resource{"rolebindings", rbacGroup, "v1", true, "rolebindings"}
	rClusterRoles        = resource{"clusterroles", rbacGroup, "v1", false, "clusterroles"}
	rClusterRoleBindings = resource{"clusterrolebindings", rbacGroup, "v1", false, "clusterrolebindings"}
	rNetworkPolicies     = resource{"networkpolicies", "networking.k8s.io", "v1", true, "networkpolicies"}
)

// inventoryResources are compared, object by object, by the inventory
// check: the resources a restored control plane must serve.
var inventoryResources = []resource{
	rNamespaces, rDeployments, rServices, rSecrets,
	rRoles, rRoleBindings, rClusterRoles, rClusterRoleBindings, rNetworkPolicies,
}

// policyResources are the policy objects of the policies check. Namespaces
// carry the Pod Security labels.
var policyResources = []resource{
	rRoles, rRoleBindings, rClusterRoles, rClusterRoleBindings, rNetworkPolicies,
	{"validatingadmissionpolicies", "admissionregistration.k8s.io", "v1", false, "validatingadmissionpolicies"},
	{"validatingadmissionpolicybindings", "admissionregistration.k8s.io", "v1", false, "validatingadmissionpolicybindings"},
	{"validatingwebhookconfigurations", "admissionregistration.k8s.io", "v1", false, "validatingwebhookconfigurations"},
	{"mutatingwebhookconfigurations", "admissionregistration.k8s.io", "v1", false, "mutatingwebhookconfigurations"},
	rNamespaces,
}

// etcdPathExceptions are built-in resources kube-apiserver does not store
// under their own name.
var etcdPathExceptions = map[string]string{
	"services":               "services/specs",
	"endpoints":              "services/endpoints",
	"nodes":                  "minions",
	"replicationcontrollers": "controllers",
	"ingresses":              "ingress",
}

// verifier checks a restored cluster against a backup's manifest.
type verifier struct {
	acc    scratch.Access
	cli    *clientv3.Client
	m      catalog.Manifest
	rev    int64
	prefix string // e.g. "/registry/"
	log    *slog.Logger
	// canary runs the canary check (canary.go); manifests and vaultData
	// the checks of sources.go.
	canary, manifests, vaultData func(context.Context) evidence.Check
	http                         func(context.Context, *config.HTTPCheck) evidence.Check
	job                          func(context.Context, *config.JobCheck) evidence.Check
	// existing is set for a drill into an existing cluster, whose etcd is
	// not restored; extra are checks it adds (volumes, Velero).
	existing bool
	extra    []evidence.Check
}

func newVerifier(ctx context.Context, acc scratch.Access, m catalog.Manifest, etcdPrefix string, log *slog.Logger) (*verifier, error) {
	if etcdPrefix == "" {
		etcdPrefix = "/registry"
	}
	v := &verifier{acc: acc, m: m, prefix: strings.TrimSuffix(etcdPrefix, "/") + "/", log: log}
	if m.Etcd != nil {
		v.rev = m.Etcd.Revision
	}
	if len(acc.EtcdEndpoints) > 0 && m.Etcd != nil {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints: acc.EtcdEndpoints, TLS: acc.EtcdTLS, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
			MaxCallRecvMsgSize: 64 << 20, Context: ctx,
		})
		if err != nil {
			return nil, fmt.Errorf("connect to the scratch etcd: %w", err)
		}
		v.cli = cli
	}
	return v, nil
}

func (v *verifier) close() {
	if v.cli != nil {
		v.cli.Close()
	}
}

// run runs the drill's checks in order, reporting each as it completes.
func (v *verifier) run(ctx context.Context, checks []config.Check, report func(evidence.Check)) []evidence.Check {
	var out []evidence.Check
	add := func(c evidence.Check) {
		out = append(out, c)
		if report != nil {
			report(c)
		}
	}
	// The keyspace is always compared with the manifest's inventory, even
	// when the Drill lists no inventory check: it is what proves the
	// restore complete.
	keyspaceDone := false
	hasInventory := slices.ContainsFunc(checks, func(c config.Check) bool { return c.Inventory != nil })
	if v.m.Etcd == nil || v.existing {
		// No control plane was restored from etcd; the checks that compare
		// with its keyspace say so.
		keyspaceDone = true
	}
	for _, c := range v.extra {
		add(c)
	}
	if !hasInventory && !keyspaceDone {
		keyspaceDone = true
		add(v.keyspace(ctx))
	}
	for _, c := range checks {
		if ctx.Err() != nil {
			return out
		}
		if v.m.Etcd == nil && (c.Inventory != nil || c.Objects != nil || c.Policies != nil || c.SecretsReadable != nil) {
			add(fail(c.Kind(), "backup %s holds no etcd snapshot, so no control plane was restored to compare with its keyspace", v.m.Backup))
			continue
		}
		if v.existing && (c.Inventory != nil || c.Objects != nil || c.Policies != nil || c.SecretsReadable != nil) {
			add(fail(c.Kind(), "scratch type kubeconfig restores no etcd, so there is no restored control plane to compare with the backup's keyspace; use the manifests check here, or the embedded scratch"))
			continue
		}
		switch {
		case c.Inventory != nil:
			if !keyspaceDone {
				keyspaceDone = true
				add(v.keyspace(ctx))
			}
			for _, r := range inventoryResources {
				if excluded(r, c.Inventory.ExcludeResources) {
					continue
				}
				add(v.served(ctx, "inventory: "+r.qualified(), r))
			}
		case c.Policies != nil:
			add(v.policies(ctx))
		case c.SecretsReadable != nil:
			add(v.secretsReadable(ctx))
		case c.Objects != nil:
			for _, item := range c.Objects.Items {
				add(v.object(ctx, item))
			}
		case c.Canary != nil:
			if v.canary == nil {
				add(evidence.Check{Name: config.CheckCanary, Outcome: evidence.CheckSkipped, Detail: "no canary check was set up for this verification"})
				break
			}
			add(v.canary(ctx))
		case c.Manifests != nil:
			add(v.manifests(ctx))
		case c.VaultData != nil:
			add(v.vaultData(ctx))
		case c.HTTP != nil:
			add(v.http(ctx, c.HTTP))
		case c.Job != nil:
			add(v.job(ctx, c.Job))
		case c.VolumeChecksums != nil:
			add(evidence.Check{Name: config.CheckVolumeChecksums, Outcome: evidence.CheckSkipped,
				Detail: volumeChecksumsDetail(v.existing)})
		}
	}
	return out
}

func excluded(r resource, list []string) bool {
	return slices.Contains(list, r.name) || slices.Contains(list, r.qualified())
}

func pass(name, format string, args ...any) evidence.Check {
	return evidence.Check{Name: name, Outcome: evidence.CheckPass, Detail: fmt.Sprintf(format, args...)}
}

func fail(name, format string, args ...any) evidence.Check {
	return evidence.Check{Name: name, Outcome: evidence.CheckFail, Detail: fmt.Sprintf(format, args...)}
}

// keyspace compares the restored keyspace at the backup's revision with
// the manifest's inventory: key count, per-prefix counts and the digest
// over every key and value.
func (v *verifier) keyspace(ctx context.Context) evidence.Check {
	const name = "inventory: etcd keyspace"
	if v.cli == nil {
		return evidence.Check{Name: name, Outcome: evidence.CheckSkipped, Detail: "the scratch cluster's etcd is not reachable"}
	}
	got, err := etcdsource.ReadInventory(ctx, v.cli.KV, v.rev, v.m.Etcd.Inventory.Version)
	if err != nil {
		return fail(name, "read the restored keyspace at revision %d: %v", v.rev, err)
	}
	want := v.m.Etcd.Inventory
	var diffs []string
	if got.Keys != want.Keys {
		diffs = append(diffs, fmt.Sprintf("%d keys, manifest says %d", got.Keys, want.Keys))
	}
	var prefixes []string
	for p := range want.Prefixes {
		prefixes = append(prefixes, p)
	}
	for p := range got.Prefixes {
		if _, ok := want.Prefixes[p]; !ok {
			prefixes = append(prefixes, p)
		}
	}
	slices.Sort(prefixes)
	var pd []string
	for _, p := range prefixes {
		if got.Prefixes[p] != want.Prefixes[p] {
			pd = append(pd, fmt.Sprintf("%s %d (manifest %d)", p, got.Prefixes[p], want.Prefixes[p]))
		}
	}
	if len(pd) > 0 {
		diffs = append(diffs, "prefix counts differ: "+firstN(pd, 8))
	}
	if got.Digest != want.Digest {
		diffs = append(diffs, fmt.Sprintf("digest %s, manifest says %s", got.Digest, want.Digest))
	}
	if len(diffs) > 0 {
		return fail(name, "restored etcd keyspace at revision %d compared with the manifest's inventory (key count, %d per-prefix counts, SHA-256 digest over every key and value): %s",
			v.rev, len(prefixes), strings.Join(diffs, "; "))
	}
	return pass(name, "restored etcd keyspace at revision %d compared with the manifest's inventory: %d keys = %d, %d per-prefix counts equal, digest %s = %s",
		v.rev, got.Keys, want.Keys, len(got.Prefixes), got.Digest, want.Digest)
}

// comparison is one resource's backed-up objects against the served ones.
type comparison struct {
	r                        resource
	backedUp, served         int
	missing, extra, modified []string
	// invPrefix is the manifest inventory's prefix r's keys count under
	// (catalog.PrefixOf): /registry/services/ for services, whose keys
	// are under /registry/services/specs/. invRestored is the number of
	// keys under invPrefix in the restored etcd at the backup's revision,
	// invManifest the manifest's count for it.
	invPrefix                string
	invRestored, invManifest int64
	err                      error
}

func (c comparison) ok() bool {
	return c.err == nil && len(c.missing) == 0 && len(c.extra) == 0 && len(c.modified) == 0 && c.invRestored == c.invManifest
}

// inventory says what was compared with the manifest's inventory.
func (c comparison) inventory() string {
	if c.invPrefix == "" {
		return ""
	}
	rel := "="
	if c.invRestored != c.invManifest {
		rel = "!="
	}
	return fmt.Sprintf("restored keys under %s: %d %s manifest inventory %s: %d", c.invPrefix, c.invRestored, rel, c.invPrefix, c.invManifest)
}

func (c comparison) problems() string {
	if c.err != nil {
		return c.err.Error()
	}
	var p []string
	if c.invRestored != c.invManifest {
		p = append(p, c.inventory())
	}
	if len(c.missing) > 0 {
		p = append(p, fmt.Sprintf("%d not served (%s)", len(c.missing), firstN(c.missing, 5)))
	}
	if len(c.extra) > 0 {
		p = append(p, fmt.Sprintf("%d served but not in the backup (%s)", len(c.extra), firstN(c.extra, 5)))
	}
	if len(c.modified) > 0 {
		p = append(p, fmt.Sprintf("%d served at another resourceVersion than backed up (%s)", len(c.modified), firstN(c.modified, 5)))
	}
	return strings.Join(p, "; ")
}

// compare lists r's keys in the backup's keyspace (at its revision) and
// r's objects through the API, and matches them by name and by
// resourceVersion, which is the key's modification revision in etcd: an
// object served at the revision it had in the backup is the backed-up
// object, byte for byte in storage.
func (v *verifier) compare(ctx context.Context, r resource) comparison {
	c := comparison{r: r}
	if v.cli == nil {
		c.err = errors.New("the scratch cluster's etcd is not reachable")
		return c
	}
	keyPrefix := v.prefix + r.etcdPath + "/"
	want, err := v.keysAt(ctx, keyPrefix)
	if err != nil {
		c.err = err
		return c
	}
	c.backedUp = len(want)
	// Compare the restored count with the manifest's inventory for the
	// prefix these keys count under.
	c.invPrefix = catalog.PrefixOf([]byte(keyPrefix + "x"))
	c.invManifest = v.m.Etcd.Inventory.Prefixes[c.invPrefix]
	if c.invPrefix == keyPrefix {
		c.invRestored = int64(len(want))
	} else {
		n, err := v.count(ctx, c.invPrefix)
		if err != nil {
			c.err = err
			return c
		}
		c.invRestored = n
	}
	items, err := v.acc.List(ctx, r.listPath())
	if err != nil {
		if scratch.IsNotFound(err) && len(want) == 0 {
			return c // not served and nothing to serve
		}
		c.err = fmt.Errorf("list through the API: %w", err)
		return c
	}
	c.served = len(items)
	seen := make(map[string]bool, len(items))
	for _, it := range items {
		n := objectName(it.Metadata.Namespace, it.Metadata.Name)
		seen[n] = true
		rev, ok := want[n]
		switch {
		case !ok:
			c.extra = append(c.extra, n)
		case it.Metadata.ResourceVersion != strconv.FormatInt(rev, 10):
			c.modified = append(c.modified, fmt.Sprintf("%s at %s, backed up at %d", n, it.Metadata.ResourceVersion, rev))
		}
	}
	for n := range want {
		if !seen[n] {
			c.missing = append(c.missing, n)
		}
	}
	slices.Sort(c.missing)
	slices.Sort(c.extra)
	slices.Sort(c.modified)
	return c
}

// served is the check that every backed-up object of r is served, as
// backed up, and nothing else.
func (v *verifier) served(ctx context.Context, name string, r resource) evidence.Check {
	c := v.compare(ctx, r)
	inv := ""
	if c.invPrefix != "" {
		inv = " (" + c.inventory() + ")"
	}
	if !c.ok() {
		return fail(name, "%d served, %d in the restored keyspace under %s%s/ at revision %d%s: %s", c.served, c.backedUp, v.prefix, r.etcdPath, v.rev, inv, c.problems())
	}
	return pass(name, "%d served = %d in the backup under %s%s/ at revision %d, each at its backed-up resourceVersion%s", c.served, c.backedUp, v.prefix, r.etcdPath, v.rev, inv)
}

// policies checks every policy object: RBAC, NetworkPolicies, admission
// policies and webhooks, and the namespaces that carry Pod Security
// labels.
func (v *verifier) policies(ctx context.Context) evidence.Check {
	const name = config.CheckPolicies
	var okParts, bad []string
	total := 0
	for _, r := range policyResources {
		c := v.compare(ctx, r)
		total += c.backedUp
		if !c.ok() {
			bad = append(bad, fmt.Sprintf("%s: %d served, %d in the backup: %s", r.qualified(), c.served, c.backedUp, c.problems()))
			continue
		}
		if c.backedUp > 0 {
			okParts = append(okParts, fmt.Sprintf("%s %d", r.name, c.backedUp))
		}
	}
	if len(bad) > 0 {
		return fail(name, "%s", strings.Join(bad, "; "))
	}
	if total == 0 {
		return evidence.Check{Name: name, Outcome: evidence.CheckSkipped, Detail: "the backup holds no policy objects"}
	}
	return pass(name, "%d policy objects served as backed up (%s); Pod Security labels are part of the namespaces compared", total, strings.Join(okParts, ", "))
}

// secretsReadable lists every Secret through the API, which decrypts each
// one, and reads one Secret's data, which proves the encryption-at-rest
// configuration came back with the data.
func (v *verifier) secretsReadable(ctx context.Context) evidence.Check {
	const name = config.CheckSecretsReadable
	c := v.compare(ctx, rSecrets)
	if !c.ok() {
		return fail(name, "%d served, %d in the backup: %s", c.served, c.backedUp, c.problems())
	}
	if c.backedUp == 0 {
		return evidence.Check{Name: name, Outcome: evidence.CheckSkipped, Detail: "the backup holds no Secrets, so there was nothing to prove readable"}
	}
	encrypted, providers, err := v.encryptedSecrets(ctx)
	if err != nil {
		return fail(name, "%v", err)
	}
	items, err := v.acc.List(ctx, rSecrets.listPath())
	if err != nil {
		return fail(name, "list Secrets: %v", err)
	}
	// Read one Secret that has data, preferring one encrypted at rest.
	var pick *scratch.ListItem
	for i := range items {
		it := &items[i]
		if len(it.Data) == 0 {
			continue
		}
		if pick == nil || encrypted[objectName(it.Metadata.Namespace, it.Metadata.Name)] && !encrypted[objectName(pick.Metadata.Namespace, pick.Metadata.Name)] {
			pick = it
		}
	}
	if pick == nil {
		return fail(name, "no restored Secret has data to read")
	}
	var sec struct {
		Data map[string][]byte `json:"data"`
	}
	if err := v.acc.Do(ctx, http.MethodGet, rSecrets.objectPath(pick.Metadata.Namespace, pick.Metadata.Name), nil, &sec); err != nil {
		return fail(name, "read Secret %s/%s: %v", pick.Metadata.Namespace, pick.Metadata.Name, err)
	}
	if len(sec.Data) == 0 {
		return fail(name, "Secret %s/%s was listed with data but read without any", pick.Metadata.Namespace, pick.Metadata.Name)
	}
	at := "stored unencrypted"
	if encrypted[objectName(pick.Metadata.Namespace, pick.Metadata.Name)] {
		at = "encrypted at rest"
	}
	how := "none is encrypted at rest"
	if len(encrypted) > 0 {
		how = fmt.Sprintf("%d encrypted at rest (%s)", len(encrypted), strings.Join(providers, ", "))
	}
	return pass(name, "all %d Secrets decrypted and served (%s); read %s/%s (%s): %d data key(s)",
		c.backedUp, how, pick.Metadata.Namespace, pick.Metadata.Name, at, len(sec.Data))
}

// encryptedSecrets returns the Secrets stored encrypted in the backup's
// keyspace and the encryption providers and key names they name (the
// "k8s:enc:<provider>:v1:<key>:" prefix; the ciphertext is not read).
func (v *verifier) encryptedSecrets(ctx context.Context) (map[string]bool, []string, error) {
	out := make(map[string]bool)
	seenProv := make(map[string]bool)
	var providers []string
	prefix := v.prefix + rSecrets.etcdPath + "/"
	err := v.scan(ctx, prefix, false, func(key string, _ int64, value []byte) {
		s := string(value[:min(len(value), 128)])
		if !strings.HasPrefix(s, "k8s:enc:") {
			return
		}
		out[strings.TrimPrefix(key, prefix)] = true
		parts := strings.SplitN(s, ":", 6)
		if len(parts) >= 5 {
			p := parts[2] + "/" + parts[4]
			if !seenProv[p] {
				seenProv[p] = true
				providers = append(providers, p)
			}
		}
	})
	return out, providers, err
}

// object checks one named object: it is served, and at the
// resourceVersion its key had in the backup.
func (v *verifier) object(ctx context.Context, ref config.ObjectRef) evidence.Check {
	name := "object: " + ref.APIVersion + " " + ref.Kind + " " + objectName(ref.Namespace, ref.Name)
	r, err := v.discover(ctx, ref.APIVersion, ref.Kind)
	if err != nil {
		return fail(name, "%v", err)
	}
	if r.namespaced != (ref.Namespace != "") {
		if r.namespaced {
			return fail(name, "%s is namespaced: name its namespace", ref.Kind)
		}
		return fail(name, "%s is cluster-scoped: it has no namespace", ref.Kind)
	}
	var obj struct {
		Metadata scratch.ObjectMeta `json:"metadata"`
	}
	if err := v.acc.Do(ctx, http.MethodGet, r.objectPath(ref.Namespace, ref.Name), nil, &obj); err != nil {
		if scratch.IsNotFound(err) {
			return fail(name, "not served by the restored cluster")
		}
		return fail(name, "%v", err)
	}
	if v.cli == nil {
		return evidence.Check{Name: name, Outcome: evidence.CheckSkipped, Detail: "served, but the scratch etcd is not reachable to compare with the backup"}
	}
	// Built-in resources are stored under <prefix><resource>/, custom ones
	// under <prefix><group>/<resource>/.
	candidates := []string{r.etcdPath}
	if r.group != "" {
		candidates = append(candidates, r.group+"/"+r.name)
	}
	for _, p := range candidates {
		key := v.prefix + p + "/" + objectName(ref.Namespace, ref.Name)
		resp, err := v.cli.Get(ctx, key, clientv3.WithRev(v.rev), clientv3.WithKeysOnly())
		if err != nil {
			return fail(name, "read %s at revision %d: %v", key, v.rev, err)
		}
		if len(resp.Kvs) == 0 {
			continue
		}
		rev := resp.Kvs[0].ModRevision
		if obj.Metadata.ResourceVersion != strconv.FormatInt(rev, 10) {
			return fail(name, "served at resourceVersion %s, but backed up at %d: it changed after the restore", obj.Metadata.ResourceVersion, rev)
		}
		return pass(name, "served as backed up (%s, resourceVersion %d)", key, rev)
	}
	return fail(name, "served, but not in the backup at revision %d", v.rev)
}

// discover finds the resource of kind in apiVersion through the API's
// discovery documents.
func (v *verifier) discover(ctx context.Context, apiVersion, kind string) (resource, error) {
	group, version, ok := strings.Cut(apiVersion, "/")
	path := "/apis/" + apiVersion
	if !ok {
		group, version, path = "", apiVersion, "/api/"+apiVersion
	}
	var list struct {
		Resources []struct {
			Name       string `json:"name"`
			Kind       string `json:"kind"`
			Namespaced bool   `json:"namespaced"`
		} `json:"resources"`
	}
	if err := v.acc.Do(ctx, http.MethodGet, path, nil, &list); err != nil {
		if scratch.IsNotFound(err) {
			return resource{}, fmt.Errorf("the restored cluster does not serve %s", apiVersion)
		}
		return resource{}, fmt.Errorf("discover %s: %w", apiVersion, err)
	}
	for _, r := range list.Resources {
		if r.Kind == kind && !strings.Contains(r.Name, "/") {
			etcdPath := r.Name
			if p, ok := etcdPathExceptions[r.Name]; ok && group == "" {
				etcdPath = p
			}
			return resource{name: r.Name, group: group, version: version, namespaced: r.Namespaced, etcdPath: etcdPath}, nil
		}
	}
	return resource{}, fmt.Errorf("the restored cluster serves no kind %s in %s", kind, apiVersion)
}

// keysAt returns the keys under prefix at the backup's revision, as
// "namespace/name" or "name", with their modification revisions.
func (v *verifier) keysAt(ctx context.Context, prefix string) (map[string]int64, error) {
	out := make(map[string]int64)
	err := v.scan(ctx, prefix, true, func(key string, modRev int64, _ []byte) {
		out[strings.TrimPrefix(key, prefix)] = modRev
	})
	return out, err
}

// count returns the number of keys under prefix at the backup's revision.
func (v *verifier) count(ctx context.Context, prefix string) (int64, error) {
	resp, err := v.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(v.rev), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("count %s at revision %d in the scratch etcd: %w", prefix, v.rev, err)
	}
	return resp.Count, nil
}

// scan calls fn for every key under prefix at the backup's revision, in
// pages.
func (v *verifier) scan(ctx context.Context, prefix string, keysOnly bool, fn func(key string, modRev int64, value []byte)) error {
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithRev(v.rev), clientv3.WithLimit(1000)}
		if keysOnly {
			opts = append(opts, clientv3.WithKeysOnly())
		}
		resp, err := v.cli.Get(ctx, from, opts...)
		if err != nil {
			return fmt.Errorf("read %s at revision %d from the scratch etcd: %w", prefix, v.rev, err)
		}
		for _, kv := range resp.Kvs {
			fn(string(kv.Key), kv.ModRevision, kv.Value)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

func objectName(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// firstN joins up to n items, saying how many more there are.
func firstN(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:n], ", ") + fmt.Sprintf(" and %d more", len(items)-n)
}

// volumeChecksumsDetail says why the volumeChecksums check did not run.
func volumeChecksumsDetail(existing bool) string {
	if existing {
		return "file checksums are not compared: this lifeboat version records no checksums at backup time (no backup-time hook yet); the restored claims are judged by the volumes bound check"
	}
	return "the embedded scratch runs no CSI driver, so no volume is restored there; drill volumes with scratch type kubeconfig"
}

package config

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Set is every object loaded from a group of files, valid on its own and
// together: names are unique per kind and every reference resolves.
type Set struct {
	Stores           []*Store
	KeyProviders     []*KeyProvider
	BackupPlans      []*BackupPlan
	RotationPolicies []*RotationPolicy
	Drills           []*Drill
	Schedules        []*Schedule
	AuditLogs        []*AuditLog

	// Warnings are what the objects hold that is allowed but questionable
	// (a schedule firing more often than once a minute, ...), sorted by
	// file and line. They never make LoadPaths fail.
	Warnings []Warning
}

// LoadPaths loads the objects of files and directories. A directory
// contributes its *.yaml and *.yml files, recursively, in lexical order;
// entries whose names start with "." are skipped (among them the "..data"
// directories of a mounted ConfigMap, whose files are reached through the
// symlinks beside them), and symlinks to files are followed. A file named
// more than once is read once.
//
// LoadPaths reads every file even after problems, then checks the objects
// together: duplicate names of a kind, and references to objects that do
// not exist. It returns either a Set or an ErrorList with every problem
// found, sorted by file and line.
func LoadPaths(paths ...string) (*Set, error) {
	files, errs := listFiles(paths)
	var objs []object
	var ids []ident
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fileError(f, "cannot read: %s", pathErrorText(err)))
			continue
		}
		r := parseFile(f, data)
		objs = append(objs, r.objs...)
		ids = append(ids, r.ids...)
		errs = append(errs, r.errs...)
	}
	errs = append(errs, duplicates(ids)...)
	errs = append(errs, references(objs, ids)...)
	if err := errs.err(); err != nil {
		return nil, err
	}
	s := new(Set)
	for _, o := range objs {
		s.add(o)
		s.Warnings = append(s.Warnings, o.orig().warns...)
	}
	sortWarnings(s.Warnings)
	return s, nil
}

// listFiles expands paths into the files to read.
func listFiles(paths []string) ([]string, ErrorList) {
	var errs ErrorList
	if len(paths) == 0 {
		return nil, ErrorList{{Msg: "no configuration files or directories given"}}
	}
	var files []string
	seen := make(map[string]bool)
	add := func(f string) {
		key := filepath.Clean(f)
		if abs, err := filepath.Abs(f); err == nil {
			key = abs
		}
		if !seen[key] {
			seen[key] = true
			files = append(files, f)
		}
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			errs = append(errs, fileError(p, "cannot read: %s", pathErrorText(err)))
			continue
		}
		if !fi.IsDir() {
			add(p)
			continue
		}
		found := 0
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				errs = append(errs, fileError(path, "cannot read: %s", pathErrorText(err)))
				return nil
			}
			if path != p && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				return nil
			}
			if ext := filepath.Ext(d.Name()); ext != ".yaml" && ext != ".yml" {
				return nil
			}
			if d.Type()&fs.ModeSymlink != 0 {
				target, err := os.Stat(path)
				if err != nil {
					errs = append(errs, fileError(path, "cannot read: %s", pathErrorText(err)))
					return nil
				}
				if !target.Mode().IsRegular() {
					return nil
				}
			} else if !d.Type().IsRegular() {
				return nil
			}
			found++
			add(path)
			return nil
		})
		if err != nil {
			errs = append(errs, fileError(p, "cannot read: %s", pathErrorText(err)))
		} else if found == 0 {
			errs = append(errs, fileError(p, "no *.yaml or *.yml files in directory"))
		}
	}
	return files, errs
}

// pathErrorText is the reason of a file-system error without the path,
// which the Error's File already names.
func pathErrorText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// duplicates reports each object whose kind and name were already used,
// naming both places.
func duplicates(ids []ident) ErrorList {
	var errs ErrorList
	first := make(map[[2]string]ident)
	for _, id := range ids {
		key := [2]string{id.kind, id.name}
		f, dup := first[key]
		if !dup {
			first[key] = id
			continue
		}
		errs = append(errs, &Error{
			File:  id.at.File,
			Line:  id.at.Line,
			Field: "metadata.name",
			Msg:   fmt.Sprintf("duplicate %s %q; also defined at %s", id.kind, id.name, f.at),
		})
	}
	return errs
}

// references reports references to objects that do not exist, and
// references that exist but do not fit together.
func references(objs []object, ids []ident) ErrorList {
	known := make(map[string][]string) // kind -> names, including objects that failed to decode
	for _, id := range ids {
		known[id.kind] = append(known[id.kind], id.name)
	}
	plans := make(map[string]*BackupPlan)
	providers := make(map[string]*KeyProvider)
	for _, o := range objs {
		switch o := o.(type) {
		case *BackupPlan:
			if _, dup := plans[o.Metadata.Name]; !dup {
				plans[o.Metadata.Name] = o
			}
		case *KeyProvider:
			if _, dup := providers[o.Metadata.Name]; !dup {
				providers[o.Metadata.Name] = o
			}
		}
	}

	var errs ErrorList
	for _, o := range objs {
		v := newValidator(o)
		// ref checks one reference and reports whether it resolves.
		ref := func(path, kind, name string) bool {
			if name == "" || !isDNSLabel(name) {
				return false // reported by the object's own validation
			}
			if slices.Contains(known[kind], name) {
				return true
			}
			msg := fmt.Sprintf("no %s named %q", kind, name)
			if s := suggest(name, known[kind]); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			v.errorf(path, "%s", msg)
			return false
		}
		switch o := o.(type) {
		case *BackupPlan:
			ref("spec.store", KindStore, o.Spec.Store)
			if len(o.Spec.KeyProviders) > 0 {
				for i, name := range o.Spec.KeyProviders {
					ref(joinIndex("spec.keyProviders", i), KindKeyProvider, name)
				}
			} else {
				ref("spec.keyProvider", KindKeyProvider, o.Spec.KeyProvider)
			}
			warnInClusterKeys(v, o, providers)
			for i, name := range o.Spec.Replicas {
				path := joinIndex("spec.replicas", i)
				if ref(path, KindStore, name) && name != o.Spec.Store {
					replicaHasOnePrimary(v, path, o, name, objs)
				}
			}
		case *RotationPolicy:
			ref("spec.keyProvider", KindKeyProvider, o.Spec.KeyProvider)
			for i, name := range o.Spec.BackupPlans {
				path := joinIndex("spec.backupPlans", i)
				if !ref(path, KindBackupPlan, name) {
					continue
				}
				if p := plans[name]; p != nil && !p.Spec.UsesKeyProvider(o.Spec.KeyProvider) {
					v.errorf(path, "backup plan %q uses key provider %s, not %q", name, quoteList(p.Spec.KeyProviderNames()), o.Spec.KeyProvider)
				}
			}
		case *Drill:
			if o.Spec.KeyProvider != "" {
				ref("spec.keyProvider", KindKeyProvider, o.Spec.KeyProvider)
			}
			if !ref("spec.backupPlan", KindBackupPlan, o.Spec.BackupPlan) {
				break
			}
			if p := plans[o.Spec.BackupPlan]; p != nil {
				drillFitsPlan(v, o, p)
				if k := o.Spec.KeyProvider; k != "" && !p.Spec.UsesKeyProvider(k) {
					v.errorf("spec.keyProvider", "backup plan %q wraps its backups under %s, not %q: a drill with %q could not unwrap them", p.Metadata.Name, quoteList(p.Spec.KeyProviderNames()), k, k)
				}
			}
		case *Schedule:
			if kind, name := o.Spec.Target(); kind != "" {
				ref("spec."+lowerFirst(kind), kind, name)
			}
		case *AuditLog:
			auditLogRefs(v, o, ref, objs)
		}
		errs = append(errs, v.errs...)
		o.orig().warns = append(o.orig().warns, v.warns...)
	}
	return errs
}

// replicaHasOnePrimary checks that store name, a replica of plan p, is
// a mirror of p's store alone (docs/format.md §9.2): its evidence log is
// the primary's byte for byte, so no plan writes to it and no plan
// replicates another store into it.
func replicaHasOnePrimary(v *validator, path string, p *BackupPlan, name string, objs []object) {
	for _, o := range objs {
		q, ok := o.(*BackupPlan)
		if !ok {
			continue
		}
		if q.Spec.Store == name {
			v.errorf(path, "store %q is backup plan %q's store (%s); a replica receives backups and evidence from one primary store only, so it cannot also be written to directly", name, q.Metadata.Name, q.Source())
			return
		}
		if q != p && slices.Contains(q.Spec.Replicas, name) && q.Spec.Store != p.Spec.Store {
			v.errorf(path, "store %q is also a replica of backup plan %q (%s), whose store is %q, not %q; a replica mirrors one primary store's evidence log, so every plan replicating into it must share one store", name, q.Metadata.Name, q.Source(), q.Spec.Store, p.Spec.Store)
			return
		}
	}
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

// warnInClusterKeys warns when every key provider of plan p lives in the
// cluster the plan backs up: a Vault reached by a cluster Service name, or
// a local keyring mounted from a Secret. Lose the cluster and those keys
// go with it, and every backup with them.
func warnInClusterKeys(v *validator, p *BackupPlan, providers map[string]*KeyProvider) {
	names := p.Spec.KeyProviderNames()
	if len(names) == 0 {
		return
	}
	var where []string
	for _, name := range names {
		kp := providers[name]
		if kp == nil {
			return // reported as a missing reference
		}
		reason := InCluster(kp)
		if reason == "" {
			return
		}
		where = append(where, fmt.Sprintf("%s (%s)", name, reason))
	}
	path := "spec.keyProvider"
	if len(p.Spec.KeyProviders) > 0 {
		path = "spec.keyProviders"
	}
	v.warnf(path, "every key provider lives in the cluster this plan backs up: %s; if the cluster is lost, its keys are lost with it and no backup can be read. Add a break-glass provider outside the cluster to keyProviders (AWS KMS in another account or region, or a local keyring kept offline) so that any one of them unwraps every backup (docs/restore.md)", strings.Join(where, ", "))
}

// InCluster says why a key provider appears to live inside the Kubernetes
// cluster lifeboat backs up, or "" when it does not: a Vault whose address
// names a cluster Service (a host ending in .svc or .svc.cluster.local, or
// a single-label name such as "vault"), or a local keyring under a
// Secret's mount path (/var/run/secrets/, /run/secrets/). AWS KMS is never
// in the cluster.
func InCluster(kp *KeyProvider) string {
	switch kp.Spec.Type {
	case KeyProviderVault:
		addr := kp.Spec.Address
		if addr == "" {
			return ""
		}
		u, err := url.Parse(addr)
		if err != nil || u.Hostname() == "" {
			return ""
		}
		h := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
		switch {
		case strings.HasSuffix(h, ".svc"), strings.HasSuffix(h, ".svc.cluster.local"):
			return "Vault at the cluster Service " + h
		case !strings.Contains(h, ".") && h != "localhost" && net.ParseIP(h) == nil:
			return "Vault at the in-cluster name " + h
		}
	case KeyProviderLocal:
		for _, dir := range []string{"/var/run/secrets/", "/run/secrets/"} {
			if strings.HasPrefix(kp.Spec.Keyring, dir) {
				return "a keyring mounted from a Secret at " + kp.Spec.Keyring
			}
		}
	}
	return ""
}

// drillFitsPlan checks that the plan takes what the drill's checks need.
func drillFitsPlan(v *validator, d *Drill, p *BackupPlan) {
	has := func(kind string) *Source {
		for i := range p.Spec.Sources {
			if p.Spec.Sources[i].Kind() == kind {
				return &p.Spec.Sources[i]
			}
		}
		return nil
	}
	for i, c := range d.Spec.Checks {
		path := joinKey(joinIndex("spec.checks", i), c.Kind())
		switch {
		case c.VolumeChecksums != nil && has(SourceVolumes) == nil:
			v.errorf(path, "backup plan %q has no volumes source to check", p.Metadata.Name)
		case c.Canary != nil:
			if s := has(SourceVault); s == nil || len(s.Vault.TransitKeys) == 0 {
				v.errorf(path, "backup plan %q has no vault source with transitKeys to make a canary with", p.Metadata.Name)
			}
		case c.VaultData != nil:
			if s := has(SourceVault); s == nil || len(s.Vault.KVPaths) == 0 {
				v.errorf(path, "backup plan %q has no vault source with kvPaths to restore", p.Metadata.Name)
			}
		case c.Manifests != nil && has(SourceManifests) == nil:
			v.errorf(path, "backup plan %q has no manifests source to restore", p.Metadata.Name)
		case (c.Inventory != nil || c.Objects != nil || c.Policies != nil || c.SecretsReadable != nil) && has(SourceEtcd) == nil:
			// A warning, not an error: configurations that loaded before
			// still load; the drill fails the check, saying the same.
			v.warnf(path, "backup plan %q has no etcd source: this check compares the restored control plane with the backup's etcd keyspace and will fail; use a manifests check to restore and compare the objects", p.Metadata.Name)
		case (c.HTTP != nil || c.Job != nil) && d.Spec.Scratch.Type != ScratchKubeconfig:
			v.errorf(path, "runs against the restored application, which only a scratch cluster that runs pods holds: set spec.scratch.type: kubeconfig (the embedded scratch runs no pods)")
		}
	}
}

func (s *Set) add(o object) {
	switch o := o.(type) {
	case *Store:
		s.Stores = append(s.Stores, o)
	case *KeyProvider:
		s.KeyProviders = append(s.KeyProviders, o)
	case *BackupPlan:
		s.BackupPlans = append(s.BackupPlans, o)
	case *RotationPolicy:
		s.RotationPolicies = append(s.RotationPolicies, o)
	case *Drill:
		s.Drills = append(s.Drills, o)
	case *Schedule:
		s.Schedules = append(s.Schedules, o)
	case *AuditLog:
		s.AuditLogs = append(s.AuditLogs, o)
	}
}

// Objects returns every object of the set, in the order of their files and
// lines (objects not read from files come last, by kind).
func (s *Set) Objects() []Object {
	var objs []Object
	for _, o := range s.Stores {
		objs = append(objs, o)
	}
	for _, o := range s.KeyProviders {
		objs = append(objs, o)
	}
	for _, o := range s.BackupPlans {
		objs = append(objs, o)
	}
	for _, o := range s.RotationPolicies {
		objs = append(objs, o)
	}
	for _, o := range s.Drills {
		objs = append(objs, o)
	}
	for _, o := range s.Schedules {
		objs = append(objs, o)
	}
	for _, o := range s.AuditLogs {
		objs = append(objs, o)
	}
	slices.SortStableFunc(objs, func(a, b Object) int {
		pa, pb := a.Source(), b.Source()
		if (pa.File == "") != (pb.File == "") {
			if pa.File == "" {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(pa.File, pb.File), cmp.Compare(pa.Line, pb.Line))
	})
	return objs
}

// Store returns the Store named name.
func (s *Set) Store(name string) (*Store, bool) { return find(s.Stores, name) }

// KeyProvider returns the KeyProvider named name.
func (s *Set) KeyProvider(name string) (*KeyProvider, bool) { return find(s.KeyProviders, name) }

// BackupPlan returns the BackupPlan named name.
func (s *Set) BackupPlan(name string) (*BackupPlan, bool) { return find(s.BackupPlans, name) }

// RotationPolicy returns the RotationPolicy named name.
func (s *Set) RotationPolicy(name string) (*RotationPolicy, bool) {
	return find(s.RotationPolicies, name)
}

// Drill returns the Drill named name.
func (s *Set) Drill(name string) (*Drill, bool) { return find(s.Drills, name) }

// AuditLog returns the AuditLog named name.
func (s *Set) AuditLog(name string) (*AuditLog, bool) { return find(s.AuditLogs, name) }

// Schedule returns the Schedule named name.
func (s *Set) Schedule(name string) (*Schedule, bool) { return find(s.Schedules, name) }

// BackupPlansUsing returns the plans whose backups a rotation of key
// provider name rewraps by default: those that use it.
func (s *Set) BackupPlansUsing(keyProvider string) []*BackupPlan {
	var plans []*BackupPlan
	for _, p := range s.BackupPlans {
		if p.Spec.UsesKeyProvider(keyProvider) {
			plans = append(plans, p)
		}
	}
	return plans
}

func find[T Object](objs []T, name string) (T, bool) {
	for _, o := range objs {
		if o.GetName() == name {
			return o, true
		}
	}
	var zero T
	return zero, false
}

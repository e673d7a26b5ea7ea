package config

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // time zones even where the system has no zoneinfo (distroless images)

	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"
)

// cronParser reads Schedule.spec.cron: five fields (minute, hour, day of
// month, month, day of week) or a descriptor such as @daily.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// validator checks one decoded object and records its problems, each at
// the line of the field it concerns.
type validator struct {
	file  string
	root  *yaml.Node // the document's root mapping; nil for objects built in code
	errs  ErrorList
	warns []Warning
}

func newValidator(o object) *validator {
	return &validator{file: o.orig().pos.File, root: o.orig().root}
}

// errorf records a problem with the field at path.
func (v *validator) errorf(path, format string, args ...any) {
	e := &Error{File: v.file, Field: path, Msg: fmt.Sprintf(format, args...)}
	if v.root != nil {
		at, _, _ := locate(v.root, path)
		e.Line, e.Column = at.Line, at.Column
	}
	v.errs = append(v.errs, e)
}

// warnf records a warning about the field at path: something allowed but
// questionable.
func (v *validator) warnf(path, format string, args ...any) {
	w := Warning{File: v.file, Field: path, Msg: fmt.Sprintf(format, args...)}
	if v.root != nil {
		at, _, _ := locate(v.root, path)
		w.Line, w.Column = at.Line, at.Column
	}
	v.warns = append(v.warns, w)
}

// check records err, if any, as a problem with the field at path.
func (v *validator) check(path string, err error) bool {
	if err != nil {
		v.errorf(path, "%s", err)
		return false
	}
	return true
}

// has reports whether the field at path is written in the source with a
// non-null value.
func (v *validator) has(path string) bool {
	if v.root == nil {
		return false
	}
	_, val, found := locate(v.root, path)
	return found && val != nil && !isNull(val)
}

// required records a problem when value is empty.
func (v *validator) required(path, value string) bool {
	if value == "" {
		v.errorf(path, "required")
		return false
	}
	return true
}

// ref checks a reference to another object by name: required, and a
// valid name.
func (v *validator) ref(path, value string) {
	if v.required(path, value) {
		v.check(path, checkDNSLabel(value))
	}
}

// enum checks that value is one of allowed; an empty value is a problem
// only when the field is required. It reports whether value is valid and
// non-empty.
func enum[T ~string](v *validator, path string, value T, required bool, allowed ...T) bool {
	if value == "" {
		if required {
			v.errorf(path, "required; want one of %s", joinValues(allowed))
		}
		return false
	}
	if slices.Contains(allowed, value) {
		return true
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	msg := fmt.Sprintf("unsupported value %q; want one of %s", value, joinValues(allowed))
	if s := suggest(string(value), names); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	v.errorf(path, "%s", msg)
	return false
}

func joinValues[T ~string](values []T) string {
	s := make([]string, len(values))
	for i, x := range values {
		s[i] = string(x)
	}
	return strings.Join(s, ", ")
}

// positive checks an optional duration: when written, it must be greater
// than zero. It applies def when the field is absent and def is non-zero.
func (v *validator) positive(path string, d *Duration, def Duration) {
	if *d == 0 {
		if v.has(path) {
			v.errorf(path, "must be greater than zero")
			return
		}
		*d = def
	}
}

// retention checks a plan's retention: Default greater than zero
// (DefaultRetention when absent), and each tier set no shorter than it.
func (v *validator) retention(r *Retention) {
	if r.Tiered() || v.has("spec.retention.default") {
		v.positive("spec.retention.default", &r.Default, DefaultRetention)
	} else {
		v.positive("spec.retention", &r.Default, DefaultRetention)
	}
	for _, t := range []struct {
		name string
		d    Duration
	}{{"weekly", r.Weekly}, {"monthly", r.Monthly}, {"yearly", r.Yearly}} {
		path := "spec.retention." + t.name
		switch {
		case t.d == 0 && v.has(path):
			v.errorf(path, "must be greater than zero (leave the tier out to not use it)")
		case t.d > 0 && t.d < r.Default:
			v.errorf(path, "%s is shorter than spec.retention.default %s: a tier can only lengthen a backup's lock", t.d, r.Default)
		}
	}
}

// requiredDuration checks a required duration greater than zero.
func (v *validator) requiredDuration(path string, d Duration) bool {
	if d > 0 {
		return true
	}
	if v.has(path) {
		v.errorf(path, "must be greater than zero")
	} else {
		v.errorf(path, "required")
	}
	return false
}

// oneOf checks that exactly one of the named fields of the mapping at path
// is set. hint, when not empty, is added to the message for none set.
func (v *validator) oneOf(path string, names []string, set []bool, hint string) bool {
	first := -1
	for i, s := range set {
		if !s {
			continue
		}
		if first < 0 {
			first = i
			continue
		}
		v.errorf(joinKey(path, names[i]), "cannot be combined with %s; set exactly one of %s", names[first], strings.Join(names, ", "))
		return false
	}
	if first < 0 {
		msg := "set exactly one of " + strings.Join(names, ", ")
		if hint != "" {
			msg += "; " + hint
		}
		v.errorf(path, "%s", msg)
		return false
	}
	return true
}

// typedField is a spec field that only some types of an object accept.
type typedField struct {
	name  string
	set   bool
	types string // the types that accept the field, as written in messages
}

// onlyFor records a problem for each field that is set although type typ
// does not accept it.
func (v *validator) onlyFor(path, typ string, fields []typedField) {
	for _, f := range fields {
		if !f.set || slices.Contains(strings.Split(f.types, ", "), typ) {
			continue
		}
		v.errorf(joinKey(path, f.name), "only valid with type %s", f.types)
	}
}

// names checks a list of names with check, and that none repeats.
func (v *validator) names(path string, list []string, check func(string) error) {
	for i, s := range list {
		p := joinIndex(path, i)
		if !v.check(p, check(s)) {
			continue
		}
		if j := slices.Index(list[:i], s); j >= 0 {
			v.errorf(p, "%q is already listed at %s", s, joinIndex(path, j))
		}
	}
}

// optional runs check on value when it is not empty.
func (v *validator) optional(path, value string, check func(string) error) {
	if value != "" {
		v.check(path, check(value))
	}
}

// ---------------------------------------------------------------- metadata

func (v *validator) metadata(m *ObjectMeta) {
	if v.required("metadata.name", m.Name) {
		v.check("metadata.name", checkDNSLabel(m.Name))
	}
	for _, k := range sortedKeys(m.Labels) {
		p := joinKey("metadata.labels", k)
		if v.check(p, checkQualifiedName(k)) {
			v.check(p, checkLabelValue(m.Labels[k]))
		}
	}
	for _, k := range sortedKeys(m.Annotations) {
		v.check(joinKey("metadata.annotations", k), checkQualifiedName(k))
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ---------------------------------------------------------------- Store

func (o *Store) validate(v *validator) {
	s := &o.Spec
	if enum(v, "spec.type", s.Type, true, StoreFS, StoreS3) {
		v.onlyFor("spec", string(s.Type), []typedField{
			{"path", s.Path != "", "fs"},
			{"bucket", s.Bucket != "", "s3"},
			{"prefix", s.Prefix != "", "s3"},
			{"endpoint", s.Endpoint != "", "s3"},
			{"region", s.Region != "", "s3"},
			{"forcePathStyle", s.ForcePathStyle, "s3"},
		})
	}
	switch s.Type {
	case StoreFS:
		if v.required("spec.path", s.Path) {
			v.check("spec.path", checkFilePath(s.Path))
		}
	case StoreS3:
		if v.required("spec.bucket", s.Bucket) {
			v.check("spec.bucket", checkBucket(s.Bucket))
		}
		v.optional("spec.prefix", s.Prefix, checkPrefix)
		v.optional("spec.endpoint", s.Endpoint, checkURL)
		v.optional("spec.region", s.Region, checkRegion)
	}
	switch {
	case s.ObjectLock == nil && !s.AllowUnlocked:
		v.errorf("spec.objectLock", "required; a store without object locks needs allowUnlocked: true (development and tests only)")
	case s.ObjectLock != nil && s.AllowUnlocked:
		v.errorf("spec.allowUnlocked", "cannot be combined with objectLock")
	case s.ObjectLock != nil:
		lock := s.ObjectLock
		if enum(v, "spec.objectLock.mode", lock.Mode, true, LockCompliance, LockGovernance) &&
			s.Type == StoreFS && lock.Mode != LockCompliance {
			v.errorf("spec.objectLock.mode", "an fs store supports COMPLIANCE only")
		}
		v.positive("spec.objectLock.retention", &lock.Retention, DefaultRetention)
	}
}

// ---------------------------------------------------------------- KeyProvider

func (o *KeyProvider) validate(v *validator) {
	s := &o.Spec
	if enum(v, "spec.type", s.Type, true, KeyProviderLocal, KeyProviderAWSKMS, KeyProviderVault) {
		v.onlyFor("spec", string(s.Type), []typedField{
			{"keyring", s.Keyring != "", "local"},
			{"keyId", s.KeyID != "", "awskms"},
			{"alias", s.Alias != "", "awskms"},
			{"region", s.Region != "", "awskms"},
			{"endpoint", s.Endpoint != "", "awskms"},
			{"address", s.Address != "", "vault"},
			{"transitKey", s.TransitKey != "", "vault"},
			{"mount", s.Mount != "", "vault"},
			{"tokenFile", s.TokenFile != "", "vault"},
		})
	}
	switch s.Type {
	case KeyProviderLocal:
		if v.required("spec.keyring", s.Keyring) {
			v.check("spec.keyring", checkFilePath(s.Keyring))
		}
	case KeyProviderAWSKMS:
		if v.oneOf("spec", []string{"keyId", "alias"}, []bool{s.KeyID != "", s.Alias != ""}, "") {
			if s.KeyID != "" {
				v.check("spec.keyId", checkKMSKeyID(s.KeyID))
			} else {
				v.check("spec.alias", checkKMSAlias(s.Alias))
			}
		}
		v.optional("spec.region", s.Region, checkRegion)
		v.optional("spec.endpoint", s.Endpoint, checkURL)
	case KeyProviderVault:
		v.optional("spec.address", s.Address, checkURL)
		if v.required("spec.transitKey", s.TransitKey) {
			v.check("spec.transitKey", checkVaultKeyName(s.TransitKey))
		}
		if s.Mount == "" {
			s.Mount = DefaultVaultMount
		} else {
			v.check("spec.mount", checkVaultPath(s.Mount))
		}
		v.optional("spec.tokenFile", s.TokenFile, checkFilePath)
	}
	if r := s.Rotation; r != nil {
		if r.Strategy == "" {
			r.Strategy = RotationManaged
		}
		if enum(v, "spec.rotation.strategy", r.Strategy, false, RotationManaged, RotationAlias) && r.Strategy == RotationAlias {
			switch {
			case s.Type != "" && s.Type != KeyProviderAWSKMS:
				v.errorf("spec.rotation.strategy", "alias is only valid with type awskms")
			case s.Type == KeyProviderAWSKMS && s.Alias == "":
				v.errorf("spec.rotation.strategy", "alias needs spec.alias: the rotation points the alias at a new key")
			}
		}
		v.positive("spec.rotation.every", &r.Every, 0)
		if s.Type == KeyProviderAWSKMS && r.Strategy == RotationManaged && r.Every != 0 &&
			(r.Every < Duration(90*Day) || r.Every > Duration(2560*Day)) {
			v.errorf("spec.rotation.every", "KMS automatic rotation takes a period between 90d and 2560d, got %s", r.Every)
		}
	}
}

func checkKMSKeyID(s string) error {
	if strings.HasPrefix(s, "alias/") {
		return fmt.Errorf("%q is an alias; set it as alias instead", s)
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return fmt.Errorf("%q is not a KMS key ID or ARN", s)
	}
	return nil
}

func checkKMSAlias(s string) error {
	name, ok := strings.CutPrefix(s, "alias/")
	if !ok || name == "" || strings.HasPrefix(name, "aws/") {
		return fmt.Errorf("%q is not a customer KMS alias: want alias/<name> (not alias/aws/...)", s)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isAlnum(c) && c != '/' && c != '_' && c != '-' {
			return fmt.Errorf("%q is not a KMS alias: want alias/ followed by letters, digits, '/', '_' and '-'", s)
		}
	}
	return nil
}

func checkVaultKeyName(s string) error {
	if s == "" || strings.ContainsAny(s, "/ \t\r\n") {
		return fmt.Errorf("%q is not a Vault key name: no '/' or whitespace", s)
	}
	return nil
}

// ---------------------------------------------------------------- BackupPlan

// maxKeyProviders bounds a plan's keyProviders: each is a wrap per backup
// and a key object per backup.
const maxKeyProviders = 8

// maxReplicas bounds a plan's replicas: each is a copy of every backup.
const maxReplicas = 8

func (o *BackupPlan) validate(v *validator) {
	s := &o.Spec
	v.ref("spec.store", s.Store)
	switch {
	case s.KeyProvider != "" && len(s.KeyProviders) > 0:
		v.errorf("spec.keyProviders", "set one of keyProvider and keyProviders, not both")
	case len(s.KeyProviders) > 0:
		if len(s.KeyProviders) > maxKeyProviders {
			v.errorf("spec.keyProviders", "%d key providers; at most %d", len(s.KeyProviders), maxKeyProviders)
		}
		for i, name := range s.KeyProviders {
			path := joinIndex("spec.keyProviders", i)
			v.ref(path, name)
			if j := slices.Index(s.KeyProviders, name); j < i {
				v.errorf(path, "%q is listed twice (also spec.keyProviders[%d])", name, j)
			}
		}
	default:
		v.ref("spec.keyProvider", s.KeyProvider)
	}
	v.retention(&s.Retention)
	if len(s.Replicas) > maxReplicas {
		v.errorf("spec.replicas", "%d replicas; at most %d", len(s.Replicas), maxReplicas)
	}
	for i, name := range s.Replicas {
		path := joinIndex("spec.replicas", i)
		v.ref(path, name)
		switch j := slices.Index(s.Replicas, name); {
		case j < i:
			v.errorf(path, "%q is listed twice (also spec.replicas[%d])", name, j)
		case name == s.Store:
			v.errorf(path, "%q is the plan's own store; a replica is another store (docs/format.md §9)", name)
		}
	}
	if s.Compression == "" {
		s.Compression = CompressionZstd
	}
	enum(v, "spec.compression", s.Compression, false, CompressionZstd, CompressionNone)
	if s.Cluster != nil {
		v.optional("spec.cluster.kubeconfig", s.Cluster.Kubeconfig, checkFilePath)
	}

	if len(s.Sources) == 0 {
		v.errorf("spec.sources", "required; list at least one source")
	}
	firstOfKind := make(map[string]int)
	for i := range s.Sources {
		src := &s.Sources[i]
		p := joinIndex("spec.sources", i)
		if !v.oneOf(p, []string{SourceEtcd, SourceManifests, SourceEncryptionConfig, SourceVolumes, SourceVault, SourceVelero},
			[]bool{src.Etcd != nil, src.Manifests != nil, src.EncryptionConfig != nil, src.Volumes != nil, src.Vault != nil, src.Velero != nil},
			"a source is written as a mapping with one key, such as etcd: {...}") {
			continue
		}
		kind := src.Kind()
		if j, dup := firstOfKind[kind]; dup {
			v.errorf(joinKey(p, kind), "a plan takes each kind of source once; %s is already at %s", kind, joinIndex("spec.sources", j))
			continue
		}
		firstOfKind[kind] = i
		p = joinKey(p, kind)
		switch {
		case src.Etcd != nil:
			src.Etcd.validate(v, p)
		case src.Manifests != nil:
			src.Manifests.validate(v, p)
		case src.EncryptionConfig != nil:
			src.EncryptionConfig.validate(v, p)
		case src.Volumes != nil:
			src.Volumes.validate(v, p)
		case src.Vault != nil:
			src.Vault.validate(v, p)
		case src.Velero != nil:
			src.Velero.validate(v, p)
		}
	}
}

func (s *EtcdSource) validate(v *validator, p string) {
	if len(s.Endpoints) == 0 {
		v.errorf(p+".endpoints", "required; list at least one etcd client URL")
	}
	v.names(p+".endpoints", s.Endpoints, checkURL)
	v.optional(p+".caFile", s.CAFile, checkFilePath)
	v.optional(p+".certFile", s.CertFile, checkFilePath)
	v.optional(p+".keyFile", s.KeyFile, checkFilePath)
	switch {
	case s.CertFile != "" && s.KeyFile == "":
		v.errorf(p+".certFile", "needs keyFile as well")
	case s.KeyFile != "" && s.CertFile == "":
		v.errorf(p+".keyFile", "needs certFile as well")
	}
	v.positive(p+".dialTimeout", &s.DialTimeout, DefaultEtcdDialTimeout)
}

func (s *ManifestsSource) validate(v *validator, p string) {
	v.names(p+".includeNamespaces", s.IncludeNamespaces, checkDNSLabel)
	v.names(p+".excludeNamespaces", s.ExcludeNamespaces, checkDNSLabel)
	for i, ns := range s.ExcludeNamespaces {
		if slices.Contains(s.IncludeNamespaces, ns) {
			v.errorf(joinIndex(p+".excludeNamespaces", i), "namespace %q is also in includeNamespaces", ns)
		}
	}
	v.names(p+".excludeResources", s.ExcludeResources, checkResource)
	v.optional(p+".labelSelector", s.LabelSelector, checkLabelSelector)
}

func (s *EncryptionConfigSource) validate(v *validator, p string) {
	if !v.oneOf(p, []string{"file", "secretRef"}, []bool{s.File != "", s.SecretRef != nil}, "") {
		return
	}
	if s.File != "" {
		v.check(p+".file", checkFilePath(s.File))
		return
	}
	r, rp := s.SecretRef, p+".secretRef"
	if v.required(rp+".namespace", r.Namespace) {
		v.check(rp+".namespace", checkDNSLabel(r.Namespace))
	}
	if v.required(rp+".name", r.Name) {
		v.check(rp+".name", checkDNSSubdomain(r.Name))
	}
	if v.required(rp+".key", r.Key) {
		v.check(rp+".key", checkSecretKey(r.Key))
	}
}

func (s *VolumesSource) validate(v *validator, p string) {
	v.names(p+".namespaces", s.Namespaces, checkDNSLabel)
	v.optional(p+".labelSelector", s.LabelSelector, checkLabelSelector)
	v.optional(p+".snapshotClass", s.SnapshotClass, checkDNSSubdomain)
	v.positive(p+".timeout", &s.Timeout, DefaultVolumesTimeout)
	if s.OnError == "" {
		s.OnError = VolumeErrorFail
	}
	enum(v, p+".onError", s.OnError, false, VolumeErrorFail, VolumeErrorPartial)
}

func (s *VaultSource) validate(v *validator, p string) {
	v.optional(p+".address", s.Address, checkURL)
	v.optional(p+".tokenFile", s.TokenFile, checkFilePath)
	if s.TransitMount == "" {
		s.TransitMount = DefaultVaultMount
	} else {
		v.check(p+".transitMount", checkVaultPath(s.TransitMount))
	}
	v.names(p+".transitKeys", s.TransitKeys, checkVaultKeyName)
	v.names(p+".kvPaths", s.KVPaths, checkVaultPath)
	if len(s.TransitKeys) == 0 && !s.RaftSnapshot && len(s.KVPaths) == 0 {
		v.errorf(p, "nothing to back up; set transitKeys, raftSnapshot or kvPaths")
	}
}

func (s *VeleroSource) validate(v *validator, p string) {
	if s.Namespace == "" {
		s.Namespace = DefaultVeleroNamespace
	} else {
		v.check(p+".namespace", checkDNSLabel(s.Namespace))
	}
	v.names(p+".includeNamespaces", s.IncludeNamespaces, checkDNSLabel)
	v.positive(p+".timeout", &s.Timeout, DefaultVeleroTimeout)
}

// ---------------------------------------------------------------- RotationPolicy

func (o *RotationPolicy) validate(v *validator) {
	s := &o.Spec
	v.ref("spec.keyProvider", s.KeyProvider)
	if s.Rewrap == "" {
		s.Rewrap = RewrapAll
	}
	enum(v, "spec.rewrap", s.Rewrap, false, RewrapAll)
	if s.RetireOldVersions == "" {
		s.RetireOldVersions = RetireNever
	}
	enum(v, "spec.retireOldVersions", s.RetireOldVersions, false, RetireAfterVerifiedRewrap, RetireNever)
	v.names("spec.backupPlans", s.BackupPlans, checkDNSLabel)
}

// ---------------------------------------------------------------- Drill

func (o *Drill) validate(v *validator) {
	s := &o.Spec
	v.ref("spec.backupPlan", s.BackupPlan)
	v.optional("spec.keyProvider", s.KeyProvider, checkDNSLabel)

	sel := s.Select
	if v.oneOf("spec.select", []string{"latest", "before", "id"}, []bool{sel.Latest, sel.Before != nil, sel.ID != ""}, "latest must be true to count") {
		v.optional("spec.select.id", sel.ID, checkBackupID)
	}

	sc := &s.Scratch
	if sc.Type == "" {
		sc.Type = ScratchEmbedded
	}
	if enum(v, "spec.scratch.type", sc.Type, false, ScratchEmbedded, ScratchKubeconfig, ScratchKind) {
		v.onlyFor("spec.scratch", string(sc.Type), []typedField{
			{"kubeconfig", sc.Kubeconfig != "", "kubeconfig"},
			{"context", sc.Context != "", "kubeconfig"},
		})
	}
	if sc.Type == ScratchKubeconfig && v.required("spec.scratch.kubeconfig", sc.Kubeconfig) {
		v.check("spec.scratch.kubeconfig", checkFilePath(sc.Kubeconfig))
	}

	if len(s.Checks) == 0 {
		v.errorf("spec.checks", "required; list at least one check")
	}
	firstOfKind := make(map[string]int)
	for i := range s.Checks {
		c := &s.Checks[i]
		p := joinIndex("spec.checks", i)
		if !v.oneOf(p, []string{CheckInventory, CheckObjects, CheckPolicies, CheckSecretsReadable, CheckCanary, CheckVolumeChecksums, CheckManifests, CheckVaultData, CheckHTTP, CheckJob},
			[]bool{c.Inventory != nil, c.Objects != nil, c.Policies != nil, c.SecretsReadable != nil, c.Canary != nil, c.VolumeChecksums != nil, c.Manifests != nil, c.VaultData != nil, c.HTTP != nil, c.Job != nil},
			"a check without options is written with an empty mapping, such as policies: {}") {
			continue
		}
		kind := c.Kind()
		if j, dup := firstOfKind[kind]; dup {
			v.errorf(joinKey(p, kind), "a drill runs each kind of check once; %s is already at %s", kind, joinIndex("spec.checks", j))
			continue
		}
		firstOfKind[kind] = i
		p = joinKey(p, kind)
		switch {
		case c.Inventory != nil:
			v.names(p+".excludeResources", c.Inventory.ExcludeResources, checkResource)
		case c.Objects != nil:
			c.Objects.validate(v, p)
		case c.Manifests != nil:
			v.names(p+".excludeResources", c.Manifests.ExcludeResources, checkResource)
		case c.HTTP != nil:
			c.HTTP.validate(v, p)
		case c.Job != nil:
			c.Job.validate(v, p)
		}
	}

	rtoOK := v.requiredDuration("spec.targets.rto", s.Targets.RTO)
	v.requiredDuration("spec.targets.rpo", s.Targets.RPO)
	v.positive("spec.timeout", &s.Timeout, DefaultDrillTimeout)
	if rtoOK && s.Timeout > 0 && s.Timeout < s.Targets.RTO {
		v.errorf("spec.timeout", "%s is shorter than targets.rto (%s); the drill would stop before it could meet its target", s.Timeout, s.Targets.RTO)
	}
}

func (c *ObjectsCheck) validate(v *validator, p string) {
	if len(c.Items) == 0 {
		v.errorf(p+".items", "required; list at least one object")
	}
	for i, it := range c.Items {
		ip := joinIndex(p+".items", i)
		if v.required(ip+".apiVersion", it.APIVersion) {
			v.check(ip+".apiVersion", checkAPIVersion(it.APIVersion))
		}
		if v.required(ip+".kind", it.Kind) {
			v.check(ip+".kind", checkKindName(it.Kind))
		}
		v.optional(ip+".namespace", it.Namespace, checkDNSLabel)
		if v.required(ip+".name", it.Name) {
			v.check(ip+".name", checkObjectName(it.Name))
		}
	}
}

// namespacePlaceholder is "{namespace:NS}" in an HTTPRequest's URL.
var namespacePlaceholder = regexp.MustCompile(`\{namespace:([^}]*)\}`)

func (c *HTTPCheck) validate(v *validator, p string) {
	if len(c.Items) == 0 {
		v.errorf(p+".items", "required; list at least one request")
	}
	for i := range c.Items {
		it := &c.Items[i]
		ip := joinIndex(p+".items", i)
		if v.required(ip+".url", it.URL) {
			u, err := url.Parse(namespacePlaceholder.ReplaceAllString(it.URL, "ns"))
			switch {
			case err != nil:
				v.errorf(ip+".url", "%q is not a URL", it.URL)
			case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
				v.errorf(ip+".url", "%q: want an http:// or https:// URL with a host", it.URL)
			}
			ms := namespacePlaceholder.FindAllStringSubmatch(it.URL, -1)
			for _, m := range ms {
				v.check(ip+".url", checkDNSLabel(m[1]))
			}
			switch {
			case len(ms) == 0:
				v.errorf(ip+".url", "%q names no restored namespace: put {namespace:NS} in it (e.g. http://api.{namespace:ehr}.svc:8080/healthz), so that the request reaches the copy the drill restored, not the live application", it.URL)
			case err == nil && u.User != nil:
				v.errorf(ip+".url", "holds credentials: the URL goes into the signed report; use an endpoint that needs none")
			}
		}
		switch {
		case it.ExpectStatus == 0:
			it.ExpectStatus = 200
		case it.ExpectStatus < 100 || it.ExpectStatus > 599:
			v.errorf(ip+".expectStatus", "%d: want an HTTP status, 100 to 599", it.ExpectStatus)
		}
		v.positive(ip+".timeout", &it.Timeout, Duration(time.Minute))
	}
}

func (c *JobCheck) validate(v *validator, p string) {
	if len(c.Items) == 0 {
		v.errorf(p+".items", "required; list at least one job")
	}
	seen := map[string]bool{}
	for i := range c.Items {
		it := &c.Items[i]
		ip := joinIndex(p+".items", i)
		if v.required(ip+".name", it.Name) {
			v.check(ip+".name", checkDNSLabel(it.Name))
			if len(it.Name) > 49 {
				v.errorf(ip+".name", "%q is longer than 49 characters (the Job is named lbdrill-check-<name>, at most 63)", it.Name)
			}
			if seen[it.Name] {
				v.errorf(ip+".name", "%q is listed twice", it.Name)
			}
			seen[it.Name] = true
		}
		if v.required(ip+".namespace", it.Namespace) {
			v.check(ip+".namespace", checkDNSLabel(it.Namespace))
		}
		v.required(ip+".image", it.Image)
		if len(it.Command) == 0 {
			v.errorf(ip+".command", "required; the command the Job runs, such as [pg_isready, -h, db]")
		}
		v.positive(ip+".timeout", &it.Timeout, Duration(5*time.Minute))
	}
}

// ---------------------------------------------------------------- Schedule

func (o *Schedule) validate(v *validator) {
	s := &o.Spec
	if s.TimeZone == "" {
		s.TimeZone = DefaultTimeZone
	}
	loc, err := loadLocation(s.TimeZone)
	v.check("spec.timeZone", err)
	if v.required("spec.cron", s.Cron) && v.check("spec.cron", checkCron(s.Cron, loc)) {
		if d := cronInterval(s.Cron, loc); d < time.Minute {
			v.warnf("spec.cron", "%q fires every %s, more often than once a minute; meant for tests and demos", s.Cron, d)
		}
	}
	if v.oneOf("spec", []string{"backupPlan", "rotationPolicy", "drill"}, []bool{s.BackupPlan != "", s.RotationPolicy != "", s.Drill != ""}, "") {
		kind, name := s.Target()
		v.check("spec."+lowerFirst(kind), checkDNSLabel(name))
	}
	if s.ConcurrencyPolicy == "" {
		s.ConcurrencyPolicy = ConcurrencyForbid
	}
	enum(v, "spec.concurrencyPolicy", s.ConcurrencyPolicy, false, ConcurrencyForbid, ConcurrencyReplace, ConcurrencyAllow)
	v.positive("spec.startingDeadline", &s.StartingDeadline, 0)
	v.positive("spec.jitter", &s.Jitter, 0)
	switch {
	case s.Jitter < 0: // only for objects built in code: parsing refuses negative durations
		v.errorf("spec.jitter", "must not be negative")
	case s.StartingDeadline > 0 && s.Jitter >= s.StartingDeadline:
		v.errorf("spec.jitter", "%s is not shorter than startingDeadline (%s); the planned delay must stay within the lateness the deadline allows", s.Jitter, s.StartingDeadline)
	}
}

// CronSchedule returns the schedule's cron expression parsed and bound to
// its time zone, ready for the schedule loop.
func (o *Schedule) CronSchedule() (cron.Schedule, error) {
	tz := o.Spec.TimeZone
	if tz == "" {
		tz = DefaultTimeZone
	}
	loc, err := loadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("schedule %s: %w", o.Metadata.Name, err)
	}
	sched, err := parseCron(o.Spec.Cron, loc)
	if err != nil {
		return nil, fmt.Errorf("schedule %s: %w", o.Metadata.Name, err)
	}
	return sched, nil
}

// loadLocation loads an IANA time zone. "Local" is refused: it would make a
// schedule depend on the machine it runs on.
func loadLocation(name string) (*time.Location, error) {
	if name == "Local" {
		return nil, fmt.Errorf("%q depends on the machine; name an IANA time zone such as America/New_York or UTC", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q; want an IANA name such as America/New_York or UTC", name)
	}
	return loc, nil
}

// parseCron parses a cron expression in loc.
func parseCron(expr string, loc *time.Location) (cron.Schedule, error) {
	if t := strings.TrimSpace(expr); strings.HasPrefix(t, "TZ=") || strings.HasPrefix(t, "CRON_TZ=") {
		return nil, fmt.Errorf("set the time zone with spec.timeZone, not in the cron expression")
	}
	sched, err := cronParser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("invalid cron expression %q: %v; want five fields (minute hour day-of-month month day-of-week) such as \"0 2 * * *\", or a descriptor such as @daily", expr, err)
	}
	if spec, ok := sched.(*cron.SpecSchedule); ok && loc != nil {
		spec.Location = loc
	}
	return sched, nil
}

// checkCron parses a cron expression and checks that it ever fires.
func checkCron(expr string, loc *time.Location) error {
	sched, err := parseCron(expr, loc)
	if err != nil {
		return err
	}
	if loc == nil {
		loc = time.UTC
	}
	// The cron library looks five years ahead, enough for February 29th.
	if sched.Next(time.Date(2001, 1, 1, 0, 0, 0, 0, loc)).IsZero() {
		return fmt.Errorf("cron expression %q never fires", expr)
	}
	return nil
}

// cronInterval returns the time between the first two runs of a valid
// cron expression after a fixed moment: the shortest interval of an
// "@every" schedule, and never less than a minute for five fields.
func cronInterval(expr string, loc *time.Location) time.Duration {
	sched, err := parseCron(expr, loc)
	if err != nil {
		return 0
	}
	if loc == nil {
		loc = time.UTC
	}
	first := sched.Next(time.Date(2001, 1, 1, 0, 0, 0, 0, loc))
	return sched.Next(first).Sub(first)
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// ResolveURL returns the request's URL with each "{namespace:NS}" replaced
// by ns(NS), the namespace NS was restored into.
func (r HTTPRequest) ResolveURL(ns func(string) string) string {
	return namespacePlaceholder.ReplaceAllStringFunc(r.URL, func(m string) string {
		return ns(namespacePlaceholder.FindStringSubmatch(m)[1])
	})
}

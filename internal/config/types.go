package config

import (
	"slices"
	"time"

	"go.yaml.in/yaml/v3"
)

// APIVersion is the apiVersion of every object this package reads.
const APIVersion = "lifeboat.dev/v1alpha1"

// The kinds of objects.
const (
	KindStore          = "Store"
	KindKeyProvider    = "KeyProvider"
	KindBackupPlan     = "BackupPlan"
	KindRotationPolicy = "RotationPolicy"
	KindDrill          = "Drill"
	KindSchedule       = "Schedule"
)

// kindNames lists the kinds in the order Set holds them.
var kindNames = [...]string{KindStore, KindKeyProvider, KindBackupPlan, KindRotationPolicy, KindDrill, KindSchedule, KindAuditLog}

// Defaults applied by Parse to fields left out.
const (
	// DefaultRetention is how long backups and their locks are kept: six
	// years, the documentation retention of HIPAA §164.316(b)(2)(i).
	DefaultRetention = Duration(2190 * Day)
	// DefaultVaultMount is the mount path of the Vault transit engine.
	DefaultVaultMount = "transit"
	// DefaultEtcdDialTimeout bounds connecting to an etcd endpoint.
	DefaultEtcdDialTimeout = Duration(5 * time.Second)
	// DefaultVolumesTimeout bounds waiting for volume snapshots to be ready.
	DefaultVolumesTimeout = Duration(30 * time.Minute)
	// DefaultVeleroNamespace is where Velero runs.
	DefaultVeleroNamespace = "velero"
	// DefaultVeleroTimeout bounds waiting for a Velero backup to complete.
	DefaultVeleroTimeout = Duration(time.Hour)
	// DefaultDrillTimeout bounds a whole drill.
	DefaultDrillTimeout = Duration(time.Hour)
	// DefaultTimeZone is the time zone of a Schedule without timeZone.
	DefaultTimeZone = "UTC"
)

// Object is any configuration object.
type Object interface {
	// GetKind returns the object's kind, such as "Store".
	GetKind() string
	// GetName returns metadata.name.
	GetName() string
	// Source returns where the object was read from; the zero Position for
	// an object not read from a file.
	Source() Position
}

// ObjectMeta is the metadata every object has.
type ObjectMeta struct {
	// Name identifies the object among those of its kind: a DNS-1123 label
	// (lowercase letters, digits and '-', starting and ending with a letter
	// or digit, at most 63 characters). Required.
	Name string `yaml:"name"`
	// Labels are Kubernetes-style labels (qualified-name keys, values of at
	// most 63 characters), for the user's own grouping.
	Labels map[string]string `yaml:"labels,omitempty"`
	// Annotations are Kubernetes-style annotations: qualified-name keys,
	// free-form values.
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// origin records where an object was read from; the document node lets
// set-level validation point at the line of a field.
type origin struct {
	pos   Position
	root  *yaml.Node
	warns []Warning // what validation found questionable but allowed
}

// ---------------------------------------------------------------- Store

// StoreType selects a Store implementation.
type StoreType string

// Store types.
const (
	StoreFS StoreType = "fs" // a write-once local directory
	StoreS3 StoreType = "s3" // an S3 bucket (or S3-compatible service) with Object Lock
)

// LockMode is an S3 Object Lock retention mode.
type LockMode string

// Lock modes.
const (
	// LockCompliance: nobody, not even the account root, can delete or
	// shorten the retention of a locked object.
	LockCompliance LockMode = "COMPLIANCE"
	// LockGovernance: users with a special permission can bypass the lock.
	LockGovernance LockMode = "GOVERNANCE"
)

// Store is where backups, evidence and reports are written.
type Store struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   ObjectMeta `yaml:"metadata"`
	Spec       StoreSpec  `yaml:"spec"`

	origin origin
}

// StoreSpec is the spec of a Store.
type StoreSpec struct {
	// Type is fs or s3. Required.
	Type StoreType `yaml:"type"`
	// Path is the store's root directory (fs only, required there).
	Path string `yaml:"path,omitempty"`
	// Bucket is the S3 bucket (s3 only, required there). It must have
	// Object Lock enabled unless AllowUnlocked is set.
	Bucket string `yaml:"bucket,omitempty"`
	// Prefix is prepended to every key (s3 only); it follows the key rules
	// of docs/format.md §1, e.g. "clusters/prod-east".
	Prefix string `yaml:"prefix,omitempty"`
	// Endpoint is the URL of an S3-compatible service (s3 only); empty
	// means AWS.
	Endpoint string `yaml:"endpoint,omitempty"`
	// Region is the bucket's region (s3 only); empty means the AWS
	// credential chain's default region.
	Region string `yaml:"region,omitempty"`
	// ForcePathStyle addresses the bucket as endpoint/bucket rather than
	// bucket.endpoint (s3 only), as most S3-compatible services need.
	ForcePathStyle bool `yaml:"forcePathStyle,omitempty"`
	// ObjectLock is the retention every written object gets. Required
	// unless AllowUnlocked is set.
	ObjectLock *ObjectLock `yaml:"objectLock,omitempty"`
	// AllowUnlocked runs the store without object locks, for development
	// and tests only. It cannot be combined with ObjectLock.
	AllowUnlocked bool `yaml:"allowUnlocked,omitempty"`
}

// ObjectLock is the retention of the objects a store writes.
type ObjectLock struct {
	// Mode is COMPLIANCE or GOVERNANCE. Required. An fs store supports
	// COMPLIANCE only: it has no way to bypass a lock.
	Mode LockMode `yaml:"mode"`
	// Retention is how long each object stays locked after it is written;
	// default DefaultRetention (2190d).
	Retention Duration `yaml:"retention,omitempty"`
}

// ---------------------------------------------------------------- KeyProvider

// KeyProviderType selects a key-encryption-key provider.
type KeyProviderType string

// Key provider types.
const (
	KeyProviderLocal  KeyProviderType = "local"  // a keyring file on this machine
	KeyProviderAWSKMS KeyProviderType = "awskms" // AWS KMS
	KeyProviderVault  KeyProviderType = "vault"  // HashiCorp Vault's transit engine
)

// RotationStrategy says how a key provider makes a new key version.
type RotationStrategy string

// Rotation strategies.
const (
	// RotationManaged asks the provider to add a version to the same key:
	// a new keyring version, Vault transit rotate, or KMS key rotation.
	RotationManaged RotationStrategy = "managed"
	// RotationAlias creates a new KMS key and points the alias at it
	// (awskms with alias only).
	RotationAlias RotationStrategy = "alias"
)

// KeyProvider holds the key-encryption key (KEK) that wraps each backup's
// data key. Credentials are never written here: they come from files named
// here, the environment or the provider's own credential chain.
type KeyProvider struct {
	APIVersion string          `yaml:"apiVersion"`
	Kind       string          `yaml:"kind"`
	Metadata   ObjectMeta      `yaml:"metadata"`
	Spec       KeyProviderSpec `yaml:"spec"`

	origin origin
}

// KeyProviderSpec is the spec of a KeyProvider.
type KeyProviderSpec struct {
	// Type is local, awskms or vault. Required.
	Type KeyProviderType `yaml:"type"`
	// Keyring is the path of the keyring file (local only, required there).
	Keyring string `yaml:"keyring,omitempty"`
	// KeyID is the KMS key's ID or ARN (awskms; exactly one of KeyID and
	// Alias).
	KeyID string `yaml:"keyId,omitempty"`
	// Alias is the KMS alias, "alias/<name>" (awskms; exactly one of KeyID
	// and Alias).
	Alias string `yaml:"alias,omitempty"`
	// Region is the KMS region (awskms only); empty means the credential
	// chain's default region.
	Region string `yaml:"region,omitempty"`
	// Endpoint is the URL of a KMS-compatible service (awskms only).
	Endpoint string `yaml:"endpoint,omitempty"`
	// Address is Vault's URL (vault only); empty means VAULT_ADDR.
	Address string `yaml:"address,omitempty"`
	// TransitKey is the name of the transit key (vault only, required
	// there).
	TransitKey string `yaml:"transitKey,omitempty"`
	// Mount is the transit engine's mount path (vault only); default
	// "transit".
	Mount string `yaml:"mount,omitempty"`
	// TokenFile is the path of a file holding a Vault token (vault only);
	// empty means VAULT_TOKEN.
	TokenFile string `yaml:"tokenFile,omitempty"`
	// Rotation says how and how often the KEK rotates.
	Rotation *KeyRotation `yaml:"rotation,omitempty"`
}

// KeyRotation says how and how often a key provider's KEK rotates.
type KeyRotation struct {
	// Strategy is managed (default) or alias (awskms with alias only).
	Strategy RotationStrategy `yaml:"strategy,omitempty"`
	// Every is the maximum age of the current key version: a rotation run
	// adds a version only when the current one is at least this old (absent:
	// every run rotates). For awskms with the managed strategy it is also
	// the KMS automatic rotation period, between 90d and 2560d.
	Every Duration `yaml:"every,omitempty"`
}

// ---------------------------------------------------------------- BackupPlan

// Compression is the compression applied before encryption.
type Compression string

// Compressions.
const (
	CompressionZstd Compression = "zstd"
	CompressionNone Compression = "none"
)

// VolumeErrorPolicy says what a volume snapshot failure does to a backup.
type VolumeErrorPolicy string

// Volume error policies.
const (
	// VolumeErrorFail fails the whole backup (default).
	VolumeErrorFail VolumeErrorPolicy = "fail"
	// VolumeErrorPartial completes the backup without the failed volumes
	// and marks it partial in the catalog and the evidence record.
	VolumeErrorPartial VolumeErrorPolicy = "partial"
)

// BackupPlan says what one backup takes, where it goes and which key
// protects it.
type BackupPlan struct {
	APIVersion string         `yaml:"apiVersion"`
	Kind       string         `yaml:"kind"`
	Metadata   ObjectMeta     `yaml:"metadata"`
	Spec       BackupPlanSpec `yaml:"spec"`

	origin origin
}

// BackupPlanSpec is the spec of a BackupPlan.
type BackupPlanSpec struct {
	// Store names the Store written to. Required.
	Store string `yaml:"store"`
	// KeyProvider names the KeyProvider whose KEK wraps the data keys.
	// Exactly one of KeyProvider and KeyProviders is set.
	KeyProvider string `yaml:"keyProvider,omitempty"`
	// KeyProviders names several KeyProviders: each backup's data key is
	// wrapped under every one of them, as age wraps a file key for several
	// recipients, and any one unwraps the backup. The first is the one the
	// manifest names; the others are typically a break-glass provider
	// outside the cluster (KMS in another account, an offline keyring).
	KeyProviders []string `yaml:"keyProviders,omitempty"`
	// Retention is how long backups are kept: one duration ("35d"), or
	// grandfather-father-son tiers ({default: 35d, monthly: 2190d}) where
	// the first complete backup of each period gets that tier's longer
	// lock; default DefaultRetention.
	Retention Retention `yaml:"retention,omitempty"`
	// Sources are what the backup takes: at least one, each kind at most
	// once.
	Sources []Source `yaml:"sources"`
	// Compression is zstd (default) or none.
	Compression Compression `yaml:"compression,omitempty"`
	// Cluster says how the Kubernetes sources (manifests, volumes, velero,
	// an encryption config from a Secret) reach the API server. Absent: the
	// in-cluster service account when lifeboat runs in a pod, else
	// $KUBECONFIG, else ~/.kube/config.
	Cluster *ClusterRef `yaml:"cluster,omitempty"`
	// Replicas name Stores that receive a copy of every committed backup
	// and of the store's evidence log (docs/format.md §9): a bucket in
	// another region or account. A replica has one primary: it is no
	// plan's store, and every plan naming it has the same store.
	Replicas []string `yaml:"replicas,omitempty"`
}

// KeyProviderNames returns the plan's key providers: KeyProviders, or
// KeyProvider alone. The first is the one the manifest names.
func (s BackupPlanSpec) KeyProviderNames() []string {
	if len(s.KeyProviders) > 0 {
		return s.KeyProviders
	}
	if s.KeyProvider == "" {
		return nil
	}
	return []string{s.KeyProvider}
}

// UsesKeyProvider reports whether the plan wraps its data keys under the
// KeyProvider named name.
func (s BackupPlanSpec) UsesKeyProvider(name string) bool {
	return slices.Contains(s.KeyProviderNames(), name)
}

// ClusterRef says how to reach a Kubernetes API server.
type ClusterRef struct {
	// Kubeconfig is the path of a kubeconfig file; empty means the
	// in-cluster service account, else $KUBECONFIG, else ~/.kube/config.
	Kubeconfig string `yaml:"kubeconfig,omitempty"`
	// Context is the kubeconfig context to use; empty means the file's
	// current context. It applies to $KUBECONFIG too.
	Context string `yaml:"context,omitempty"`
}

// Source is one thing a backup takes. Exactly one field is set.
type Source struct {
	Etcd             *EtcdSource             `yaml:"etcd,omitempty"`
	Manifests        *ManifestsSource        `yaml:"manifests,omitempty"`
	EncryptionConfig *EncryptionConfigSource `yaml:"encryptionConfig,omitempty"`
	Volumes          *VolumesSource          `yaml:"volumes,omitempty"`
	Vault            *VaultSource            `yaml:"vault,omitempty"`
	Velero           *VeleroSource           `yaml:"velero,omitempty"`
}

// Source kinds, as written in YAML.
const (
	SourceEtcd             = "etcd"
	SourceManifests        = "manifests"
	SourceEncryptionConfig = "encryptionConfig"
	SourceVolumes          = "volumes"
	SourceVault            = "vault"
	SourceVelero           = "velero"
)

// Kind returns which source this is ("etcd", "manifests", ...), or "" when
// none or several are set.
func (s Source) Kind() string {
	k, n := s.kind()
	if n != 1 {
		return ""
	}
	return k
}

func (s Source) kind() (kind string, n int) {
	for _, c := range []struct {
		name string
		set  bool
	}{
		{SourceEtcd, s.Etcd != nil},
		{SourceManifests, s.Manifests != nil},
		{SourceEncryptionConfig, s.EncryptionConfig != nil},
		{SourceVolumes, s.Volumes != nil},
		{SourceVault, s.Vault != nil},
		{SourceVelero, s.Velero != nil},
	} {
		if c.set {
			if n == 0 {
				kind = c.name
			}
			n++
		}
	}
	return kind, n
}

// EtcdSource takes an etcd snapshot.
type EtcdSource struct {
	// Endpoints are etcd client URLs (http or https). At least one.
	Endpoints []string `yaml:"endpoints"`
	// CAFile is the path of the CA bundle that verifies etcd's certificate;
	// empty means the system roots.
	CAFile string `yaml:"caFile,omitempty"`
	// CertFile and KeyFile are the paths of the client certificate and its
	// key; both or neither.
	CertFile string `yaml:"certFile,omitempty"`
	KeyFile  string `yaml:"keyFile,omitempty"`
	// DialTimeout bounds connecting to an endpoint; default 5s.
	DialTimeout Duration `yaml:"dialTimeout,omitempty"`
}

// ManifestsSource exports Kubernetes resources, including the cluster-scoped
// ones and the policy objects (RBAC, NetworkPolicies, admission policies,
// Pod Security labels), through the API server.
type ManifestsSource struct {
	// IncludeNamespaces limits namespaced resources to these namespaces;
	// empty means all.
	IncludeNamespaces []string `yaml:"includeNamespaces,omitempty"`
	// ExcludeNamespaces skips these namespaces.
	ExcludeNamespaces []string `yaml:"excludeNamespaces,omitempty"`
	// ExcludeResources skips these resources, as "resource" or
	// "resource.group" (e.g. "events", "events.events.k8s.io").
	ExcludeResources []string `yaml:"excludeResources,omitempty"`
	// LabelSelector limits resources to those matching this Kubernetes label
	// selector, e.g. "app.kubernetes.io/part-of=ehr,tier!=cache".
	LabelSelector string `yaml:"labelSelector,omitempty"`
}

// EncryptionConfigSource takes the kube-apiserver's EncryptionConfiguration,
// without which encrypted-at-rest Secrets in an etcd snapshot cannot be read.
// Exactly one of File and SecretRef is set.
type EncryptionConfigSource struct {
	// File is the path of the EncryptionConfiguration file.
	File string `yaml:"file,omitempty"`
	// SecretRef names a Secret key holding it.
	SecretRef *SecretKeyRef `yaml:"secretRef,omitempty"`
}

// SecretKeyRef names one key of a Kubernetes Secret.
type SecretKeyRef struct {
	// Namespace, Name and Key are all required.
	Namespace string `yaml:"namespace"`
	Name      string `yaml:"name"`
	Key       string `yaml:"key"`
}

// VolumesSource takes CSI VolumeSnapshots of PersistentVolumeClaims.
type VolumesSource struct {
	// Namespaces limits the claims to these namespaces; empty means all.
	Namespaces []string `yaml:"namespaces,omitempty"`
	// LabelSelector limits the claims to those matching this selector.
	LabelSelector string `yaml:"labelSelector,omitempty"`
	// SnapshotClass is the VolumeSnapshotClass to use; empty means the
	// driver's default class.
	SnapshotClass string `yaml:"snapshotClass,omitempty"`
	// Timeout bounds waiting for the snapshots to be ready; default 30m.
	Timeout Duration `yaml:"timeout,omitempty"`
	// OnError is fail (default) or partial.
	OnError VolumeErrorPolicy `yaml:"onError,omitempty"`
}

// VaultSource takes keys and data from Vault. At least one of TransitKeys,
// RaftSnapshot and KVPaths is set.
type VaultSource struct {
	// Address is Vault's URL; empty means VAULT_ADDR.
	Address string `yaml:"address,omitempty"`
	// TokenFile is the path of a file holding a Vault token; empty means
	// VAULT_TOKEN.
	TokenFile string `yaml:"tokenFile,omitempty"`
	// TransitMount is the transit engine's mount path; default "transit".
	TransitMount string `yaml:"transitMount,omitempty"`
	// TransitKeys are transit keys to back up (they must be exportable and
	// allow plaintext backup).
	TransitKeys []string `yaml:"transitKeys,omitempty"`
	// RaftSnapshot takes a snapshot of Vault's integrated storage.
	RaftSnapshot bool `yaml:"raftSnapshot,omitempty"`
	// KVPaths are KV secrets engine paths, "mount/path", to back up
	// recursively.
	KVPaths []string `yaml:"kvPaths,omitempty"`
}

// VeleroSource runs a Velero backup and records it with this backup.
type VeleroSource struct {
	// Namespace is where Velero runs; default "velero".
	Namespace string `yaml:"namespace,omitempty"`
	// IncludeNamespaces limits the Velero backup to these namespaces;
	// empty means all.
	IncludeNamespaces []string `yaml:"includeNamespaces,omitempty"`
	// Timeout bounds waiting for the Velero backup; default 1h.
	Timeout Duration `yaml:"timeout,omitempty"`
}

// ---------------------------------------------------------------- RotationPolicy

// RewrapScope says which key envelopes a rotation rewraps.
type RewrapScope string

// Rewrap scopes.
const (
	// RewrapAll rewraps the data key of every backup of the plans.
	RewrapAll RewrapScope = "all"
)

// RetirePolicy says when a rotation may retire the old key version.
type RetirePolicy string

// Retire policies.
const (
	// RetireAfterVerifiedRewrap retires the old version once every backup's
	// data key has been rewrapped and the new wrap read back and verified.
	RetireAfterVerifiedRewrap RetirePolicy = "afterVerifiedRewrap"
	// RetireNever keeps old versions enabled (default).
	RetireNever RetirePolicy = "never"
)

// RotationPolicy rotates a key provider's KEK and rewraps backups' data
// keys under the new version.
type RotationPolicy struct {
	APIVersion string             `yaml:"apiVersion"`
	Kind       string             `yaml:"kind"`
	Metadata   ObjectMeta         `yaml:"metadata"`
	Spec       RotationPolicySpec `yaml:"spec"`

	origin origin
}

// RotationPolicySpec is the spec of a RotationPolicy.
type RotationPolicySpec struct {
	// KeyProvider names the KeyProvider to rotate. Required.
	KeyProvider string `yaml:"keyProvider"`
	// Rewrap is which envelopes to rewrap: all (default, the only value).
	Rewrap RewrapScope `yaml:"rewrap,omitempty"`
	// RetireOldVersions is afterVerifiedRewrap or never (default).
	RetireOldVersions RetirePolicy `yaml:"retireOldVersions,omitempty"`
	// BackupPlans names the plans whose backups are rewrapped; they must use
	// KeyProvider. Empty means every plan that uses KeyProvider.
	BackupPlans []string `yaml:"backupPlans,omitempty"`
}

// ---------------------------------------------------------------- Drill

// ScratchType selects where a drill restores.
type ScratchType string

// Scratch types.
const (
	// ScratchEmbedded starts etcd and kube-apiserver processes on this
	// machine (default).
	ScratchEmbedded ScratchType = "embedded"
	// ScratchKubeconfig restores into an existing cluster.
	ScratchKubeconfig ScratchType = "kubeconfig"
	// ScratchKind creates a kind cluster.
	ScratchKind ScratchType = "kind"
)

// Drill restores a backup into a scratch cluster, verifies what came back
// and judges the restore against RTO and RPO targets.
type Drill struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   ObjectMeta `yaml:"metadata"`
	Spec       DrillSpec  `yaml:"spec"`

	origin origin
}

// DrillSpec is the spec of a Drill.
type DrillSpec struct {
	// BackupPlan names the plan whose backups are restored. Required.
	BackupPlan string `yaml:"backupPlan"`
	// Select chooses the backup. Required.
	Select BackupSelector `yaml:"select"`
	// Scratch is where to restore; default type embedded.
	Scratch Scratch `yaml:"scratch,omitempty"`
	// Checks verify the restore; at least one, each kind at most once.
	Checks []Check `yaml:"checks"`
	// Targets are the RTO and RPO the drill must meet. Required.
	Targets Targets `yaml:"targets"`
	// Timeout bounds the whole drill; default 1h, at least Targets.RTO.
	Timeout Duration `yaml:"timeout,omitempty"`
	// KeyProvider, when set, restricts the drill to that one of the plan's
	// keyProviders: the backup is unwrapped with it alone, as if the others
	// were gone. A drill of the break-glass provider proves that path.
	KeyProvider string `yaml:"keyProvider,omitempty"`
}

// BackupSelector chooses one backup of a plan. Exactly one field is set.
type BackupSelector struct {
	// Latest chooses the newest complete backup.
	Latest bool `yaml:"latest,omitempty"`
	// Before chooses the newest complete backup taken before this time.
	Before *Timestamp `yaml:"before,omitempty"`
	// ID chooses the backup with this ID.
	ID string `yaml:"id,omitempty"`
}

// Scratch is where a drill restores.
type Scratch struct {
	// Type is embedded (default), kubeconfig or kind.
	Type ScratchType `yaml:"type,omitempty"`
	// Kubeconfig is the path of the kubeconfig file (kubeconfig only,
	// required there).
	Kubeconfig string `yaml:"kubeconfig,omitempty"`
	// Context is the kubeconfig context to use (kubeconfig only); empty
	// means the file's current context.
	Context string `yaml:"context,omitempty"`
	// Keep leaves the scratch cluster running after the drill, for
	// inspection. Restored data stays in it: use only on a cluster cleared
	// for PHI.
	Keep bool `yaml:"keep,omitempty"`
}

// Check is one verification of a restore. Exactly one field is set; a check
// without options is written with an empty mapping, e.g. "policies: {}".
type Check struct {
	Inventory       *InventoryCheck       `yaml:"inventory,omitempty"`
	Objects         *ObjectsCheck         `yaml:"objects,omitempty"`
	Policies        *PoliciesCheck        `yaml:"policies,omitempty"`
	SecretsReadable *SecretsReadableCheck `yaml:"secretsReadable,omitempty"`
	Canary          *CanaryCheck          `yaml:"canary,omitempty"`
	VolumeChecksums *VolumeChecksumsCheck `yaml:"volumeChecksums,omitempty"`
	Manifests       *ManifestsCheck       `yaml:"manifests,omitempty"`
	VaultData       *VaultDataCheck       `yaml:"vaultData,omitempty"`
	HTTP            *HTTPCheck            `yaml:"http,omitempty"`
	Job             *JobCheck             `yaml:"job,omitempty"`
}

// Check kinds, as written in YAML.
const (
	CheckInventory       = "inventory"
	CheckObjects         = "objects"
	CheckPolicies        = "policies"
	CheckSecretsReadable = "secretsReadable"
	CheckCanary          = "canary"
	CheckVolumeChecksums = "volumeChecksums"
	CheckManifests       = "manifests"
	CheckVaultData       = "vaultData"
	CheckHTTP            = "http"
	CheckJob             = "job"
)

// Kind returns which check this is ("inventory", "objects", ...), or ""
// when none or several are set.
func (c Check) Kind() string {
	k, n := c.kind()
	if n != 1 {
		return ""
	}
	return k
}

func (c Check) kind() (kind string, n int) {
	for _, e := range []struct {
		name string
		set  bool
	}{
		{CheckInventory, c.Inventory != nil},
		{CheckObjects, c.Objects != nil},
		{CheckPolicies, c.Policies != nil},
		{CheckSecretsReadable, c.SecretsReadable != nil},
		{CheckCanary, c.Canary != nil},
		{CheckVolumeChecksums, c.VolumeChecksums != nil},
		{CheckManifests, c.Manifests != nil},
		{CheckVaultData, c.VaultData != nil},
		{CheckHTTP, c.HTTP != nil},
		{CheckJob, c.Job != nil},
	} {
		if e.set {
			if n == 0 {
				kind = e.name
			}
			n++
		}
	}
	return kind, n
}

// InventoryCheck passes when, for every resource, the number of objects in
// the restored cluster equals the number recorded in the backup's inventory.
type InventoryCheck struct {
	// ExcludeResources are not compared, as "resource" or "resource.group"
	// (e.g. "events", "leases.coordination.k8s.io").
	ExcludeResources []string `yaml:"excludeResources,omitempty"`
}

// ObjectsCheck passes when each named object exists in the restored cluster
// and equals its copy in the backup (ignoring status and server-set
// metadata).
type ObjectsCheck struct {
	// Items are the objects; at least one.
	Items []ObjectRef `yaml:"items"`
}

// ObjectRef names one Kubernetes object.
type ObjectRef struct {
	// APIVersion is "version" or "group/version", e.g. "v1", "apps/v1".
	// Required.
	APIVersion string `yaml:"apiVersion"`
	// Kind is the object's kind, e.g. "Deployment". Required.
	Kind string `yaml:"kind"`
	// Namespace is empty for a cluster-scoped object.
	Namespace string `yaml:"namespace,omitempty"`
	// Name is required.
	Name string `yaml:"name"`
}

// PoliciesCheck passes when every policy object in the backup (RBAC,
// NetworkPolicies, admission policies and their bindings, Pod Security
// namespace labels) is present and equal in the restored cluster.
type PoliciesCheck struct{}

// SecretsReadableCheck passes when every Secret recorded in the backup's
// inventory can be read through the restored API server, which proves the
// encryption-at-rest configuration came back with the data.
type SecretsReadableCheck struct{}

// CanaryCheck passes when the canary ciphertext made with each backed-up
// Vault transit key at backup time decrypts after the keys are restored. It
// needs a vault source with transitKeys in the plan.
type CanaryCheck struct{}

// VolumeChecksumsCheck passes when the data of each restored volume has the
// checksum recorded at backup time. It needs a volumes source in the plan.
type VolumeChecksumsCheck struct{}

// ManifestsCheck restores the backup's manifests export through the
// restore code (the same as lifeboat restore manifests) into an empty
// scratch API server and passes when every restored object, read back and
// stripped, equals its document in the export, reported per kind.
type ManifestsCheck struct {
	// ExcludeResources are not restored, as "resource" or
	// "resource.group" (e.g. "customresourcedefinitions.apiextensions.k8s.io"
	// when the scratch cannot serve them).
	ExcludeResources []string `yaml:"excludeResources,omitempty"`
}

// VaultDataCheck restores the backup's Vault KV v2 secrets into a scratch
// Vault (the code of lifeboat restore vault) and passes when each,
// read back, has the SHA-256 recorded in the backup. It needs a vault
// source with kvPaths in the plan.
type VaultDataCheck struct{}

// HTTPCheck is an application consistency check: each request must answer
// with its expected status within its timeout (retried until then).
type HTTPCheck struct {
	// Items are the requests; at least one.
	Items []HTTPRequest `yaml:"items"`
}

// HTTPRequest is one GET of an HTTPCheck.
type HTTPRequest struct {
	// URL is fetched with GET; "{namespace:NS}" in it is replaced by the
	// namespace the drill restored NS into (NS itself in the embedded
	// scratch), e.g. http://ehr-api.{namespace:ehr}.svc:8080/healthz.
	// Required; http or https.
	URL string `yaml:"url"`
	// ExpectStatus is the status that passes; default 200.
	ExpectStatus int `yaml:"expectStatus,omitempty"`
	// Timeout bounds the retries; default 1m.
	Timeout Duration `yaml:"timeout,omitempty"`
}

// JobCheck is an application consistency check: each Job runs an image's
// command in a restored namespace and must succeed within its timeout
// (e.g. pg_isready, or a row count against a restored database).
type JobCheck struct {
	// Items are the Jobs; at least one.
	Items []JobSpec `yaml:"items"`
}

// JobSpec is one Job of a JobCheck. The pod runs as non-root with every
// capability dropped and the RuntimeDefault seccomp profile (Pod Security
// restricted).
type JobSpec struct {
	// Name names the check and the Job; a DNS label. Required.
	Name string `yaml:"name"`
	// Namespace is the backed-up namespace whose restored copy the Job
	// runs in. Required.
	Namespace string `yaml:"namespace"`
	// Image and Command are what runs. Required.
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	// Timeout bounds the Job; default 5m.
	Timeout Duration `yaml:"timeout,omitempty"`
}

// Targets are the recovery objectives a drill is judged against.
type Targets struct {
	// RTO is the longest acceptable time from the drill's start to a
	// verified restore. Required.
	RTO Duration `yaml:"rto"`
	// RPO is the oldest acceptable age of the restored data at the drill's
	// start. Required.
	RPO Duration `yaml:"rpo"`
}

// ---------------------------------------------------------------- Schedule

// ConcurrencyPolicy says what happens when a run is due while the previous
// run of the same schedule is still going.
type ConcurrencyPolicy string

// Concurrency policies.
const (
	ConcurrencyForbid  ConcurrencyPolicy = "Forbid"  // skip the new run (default)
	ConcurrencyReplace ConcurrencyPolicy = "Replace" // cancel the running one, start the new one
	ConcurrencyAllow   ConcurrencyPolicy = "Allow"   // run both
)

// Schedule runs a backup plan, a rotation policy or a drill on a cron
// schedule.
type Schedule struct {
	APIVersion string       `yaml:"apiVersion"`
	Kind       string       `yaml:"kind"`
	Metadata   ObjectMeta   `yaml:"metadata"`
	Spec       ScheduleSpec `yaml:"spec"`

	origin origin
}

// ScheduleSpec is the spec of a Schedule. Exactly one of BackupPlan,
// RotationPolicy and Drill is set.
type ScheduleSpec struct {
	// Cron is a five-field cron expression ("0 2 * * *") or a descriptor
	// ("@daily", "@hourly", "@every 6h"). Required.
	Cron string `yaml:"cron"`
	// TimeZone is the IANA time zone Cron is read in, e.g.
	// "America/New_York"; default UTC.
	TimeZone string `yaml:"timeZone,omitempty"`
	// BackupPlan names the BackupPlan to run.
	BackupPlan string `yaml:"backupPlan,omitempty"`
	// RotationPolicy names the RotationPolicy to run.
	RotationPolicy string `yaml:"rotationPolicy,omitempty"`
	// Drill names the Drill to run.
	Drill string `yaml:"drill,omitempty"`
	// ConcurrencyPolicy is Forbid (default), Replace or Allow.
	ConcurrencyPolicy ConcurrencyPolicy `yaml:"concurrencyPolicy,omitempty"`
	// StartingDeadline is how late a run may start (after downtime or a
	// leader change) before it is skipped and recorded as missed; absent
	// means no deadline.
	StartingDeadline Duration `yaml:"startingDeadline,omitempty"`
	// Suspend stops new runs without removing the schedule. Ticks that come
	// due while it is suspended are recorded as missed.
	Suspend bool `yaml:"suspend,omitempty"`
	// SkipImmediately, when the schedule is un-suspended (or first
	// loaded), does not run a tick that came due before that moment; only
	// later ticks run.
	SkipImmediately bool `yaml:"skipImmediately,omitempty"`
	// Jitter delays each tick's start by an offset in [0, Jitter), fixed
	// per schedule and cluster, so that many clusters sharing one cron
	// expression do not all start at once; absent means no delay. It must
	// be shorter than StartingDeadline when that is set.
	Jitter Duration `yaml:"jitter,omitempty"`
}

// Target returns the kind and name of the object the schedule runs.
func (s ScheduleSpec) Target() (kind, name string) {
	switch {
	case s.BackupPlan != "":
		return KindBackupPlan, s.BackupPlan
	case s.RotationPolicy != "":
		return KindRotationPolicy, s.RotationPolicy
	case s.Drill != "":
		return KindDrill, s.Drill
	}
	return "", ""
}

// ---------------------------------------------------------------- Object methods

// GetKind implements Object.
func (*Store) GetKind() string { return KindStore }

// GetName implements Object.
func (o *Store) GetName() string { return o.Metadata.Name }

// Source implements Object.
func (o *Store) Source() Position { return o.origin.pos }

// GetKind implements Object.
func (*KeyProvider) GetKind() string { return KindKeyProvider }

// GetName implements Object.
func (o *KeyProvider) GetName() string { return o.Metadata.Name }

// Source implements Object.
func (o *KeyProvider) Source() Position { return o.origin.pos }

// GetKind implements Object.
func (*BackupPlan) GetKind() string { return KindBackupPlan }

// GetName implements Object.
func (o *BackupPlan) GetName() string { return o.Metadata.Name }

// Source implements Object.
func (o *BackupPlan) Source() Position { return o.origin.pos }

// GetKind implements Object.
func (*RotationPolicy) GetKind() string { return KindRotationPolicy }

// GetName implements Object.
func (o *RotationPolicy) GetName() string { return o.Metadata.Name }

// Source implements Object.
func (o *RotationPolicy) Source() Position { return o.origin.pos }

// GetKind implements Object.
func (*Drill) GetKind() string { return KindDrill }

// GetName implements Object.
func (o *Drill) GetName() string { return o.Metadata.Name }

// Source implements Object.
func (o *Drill) Source() Position { return o.origin.pos }

// GetKind implements Object.
func (*Schedule) GetKind() string { return KindSchedule }

// GetName implements Object.
func (o *Schedule) GetName() string { return o.Metadata.Name }

// Source implements Object.
func (o *Schedule) Source() Position { return o.origin.pos }

func (o *Store) meta() *ObjectMeta          { return &o.Metadata }
func (o *KeyProvider) meta() *ObjectMeta    { return &o.Metadata }
func (o *BackupPlan) meta() *ObjectMeta     { return &o.Metadata }
func (o *RotationPolicy) meta() *ObjectMeta { return &o.Metadata }
func (o *Drill) meta() *ObjectMeta          { return &o.Metadata }
func (o *Schedule) meta() *ObjectMeta       { return &o.Metadata }

func (o *Store) orig() *origin          { return &o.origin }
func (o *KeyProvider) orig() *origin    { return &o.origin }
func (o *BackupPlan) orig() *origin     { return &o.origin }
func (o *RotationPolicy) orig() *origin { return &o.origin }
func (o *Drill) orig() *origin          { return &o.origin }
func (o *Schedule) orig() *origin       { return &o.origin }

// object is what every kind implements inside the package.
type object interface {
	Object
	meta() *ObjectMeta
	orig() *origin
	// validate checks the spec and fills in defaults.
	validate(v *validator)
}

// newObject returns an empty object of the kind, or nil for an unknown
// kind.
func newObject(kind string) object {
	switch kind {
	case KindStore:
		return new(Store)
	case KindKeyProvider:
		return new(KeyProvider)
	case KindBackupPlan:
		return new(BackupPlan)
	case KindRotationPolicy:
		return new(RotationPolicy)
	case KindDrill:
		return new(Drill)
	case KindSchedule:
		return new(Schedule)
	case KindAuditLog:
		return new(AuditLog)
	}
	return nil
}

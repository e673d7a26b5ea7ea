package job

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// KeyVersionStatus is one KEK version of a provider, as `keys status`
// shows it.
type KeyVersionStatus struct {
	Version string    `json:"version"`
	State   string    `json:"state"`
	Primary bool      `json:"primary"`
	Created time.Time `json:"created,omitzero"`
	Age     string    `json:"age,omitempty"`
	// Generation is the version's current key material, for providers
	// that rotate material under an unchanged version (awskms managed).
	Generation string `json:"generation,omitempty"`
	// Backups counts the committed backups with a key object under this
	// version that holds the backup's data key.
	Backups int `json:"backups"`
}

// KeyStatus is one key provider's versions and the backups they wrap.
type KeyStatus struct {
	KeyProvider  string             `json:"keyProvider"`
	Versions     []KeyVersionStatus `json:"versions"`
	Backups      int                `json:"backups"`
	NextRotation *time.Time         `json:"nextRotation,omitempty"`
	Schedule     string             `json:"schedule,omitempty"`
	// Ignored are the objects under a backup's keys/ that were not
	// counted: they do not decode as a key object of that backup holding
	// its data key (docs/format.md §3). Nothing lifeboat writes is one.
	Ignored []IgnoredObject `json:"ignored,omitempty"`
	// Error says why the provider could not be read; the other
	// providers are still reported.
	Error string `json:"error,omitempty"`
}

// IgnoredObject is an object a report passed over, and why.
type IgnoredObject struct {
	Store  string `json:"store"`
	Key    string `json:"key"`
	Reason string `json:"reason"`
}

// KeyStatuses reports every key provider of the configuration, or the
// one named, sorted by name. A provider that cannot be read has its Error
// set and does not stop the others; failed counts them. An unknown name is
// a NotFoundError.
//
// The counts come from the key objects' own `kek` field, read without
// unwrapping them: they are what the store says, for planning. `keys
// rotate` unwraps and checks every key object it relies on before it
// retires a version.
func KeyStatuses(ctx context.Context, env *wire.Env, name string) (out []KeyStatus, failed int, err error) {
	for _, kp := range env.Set.KeyProviders {
		if name != "" && kp.Metadata.Name != name {
			continue
		}
		ks, err := keyProviderStatus(ctx, env, kp)
		if err != nil {
			failed++
			ks = KeyStatus{KeyProvider: kp.Metadata.Name, Error: err.Error()}
		}
		out = append(out, ks)
	}
	if name != "" && len(out) == 0 {
		return nil, 0, fmt.Errorf("keys status: %w", &NotFoundError{config.KindKeyProvider, name})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].KeyProvider < out[j].KeyProvider })
	return out, failed, nil
}

// keyProviderStatus reads one provider's versions and counts, per version,
// the committed backups wrapped under it.
func keyProviderStatus(ctx context.Context, env *wire.Env, kp *config.KeyProvider) (KeyStatus, error) {
	prov, err := env.OpenKeys(ctx, kp)
	if err != nil {
		return KeyStatus{}, err
	}
	vs, err := prov.Versions(ctx)
	if err != nil {
		return KeyStatus{}, fmt.Errorf("%s: %w", kp.Metadata.Name, err)
	}
	ks := KeyStatus{KeyProvider: kp.Metadata.Name}
	counts := map[string]int{}
	var stores []string
	for _, p := range env.Set.BackupPlansUsing(kp.Metadata.Name) {
		if !slices.Contains(stores, p.Spec.Store) {
			stores = append(stores, p.Spec.Store)
		}
	}
	for _, name := range stores {
		cs, _ := env.Set.Store(name)
		st, err := env.OpenStore(ctx, cs, true)
		if err != nil {
			return KeyStatus{}, err
		}
		ms, err := catalog.List(ctx, st, catalog.ListOptions{})
		if err != nil {
			return KeyStatus{}, fmt.Errorf("store %s: %w", name, err)
		}
		for _, m := range ms {
			ks.Backups++
			seen := map[string]bool{}
			for info, err := range st.List(ctx, catalog.KeysPrefix(m.Backup)) {
				if err != nil {
					return KeyStatus{}, fmt.Errorf("store %s: %w", name, err)
				}
				ko, err := catalog.ReadKeyObject(ctx, st, info.Key)
				switch {
				case err != nil && !errors.Is(err, envelope.ErrKeyObject):
					return KeyStatus{}, fmt.Errorf("store %s: read %s: %w", name, info.Key, err)
				case err != nil:
				case ko.Backup != m.Backup:
					err = fmt.Errorf("names backup %q", ko.Backup)
				case ko.DataKeyID != m.DataKeyID:
					err = fmt.Errorf("holds data key %s, the manifest's is %s", ko.DataKeyID, m.DataKeyID)
				}
				if err != nil {
					ks.Ignored = append(ks.Ignored, IgnoredObject{Store: name, Key: info.Key, Reason: err.Error()})
					continue
				}
				if v := ko.KEK.String(); !seen[v] {
					seen[v] = true
					counts[v]++
				}
			}
		}
	}
	now := time.Now()
	for _, v := range vs {
		s := KeyVersionStatus{Version: v.Ref.String(), State: string(v.State), Primary: v.Primary, Created: v.Created, Generation: v.Generation, Backups: counts[v.Ref.String()]}
		if !v.Created.IsZero() {
			s.Age = config.Duration(now.Sub(v.Created).Truncate(time.Minute)).String()
		}
		ks.Versions = append(ks.Versions, s)
	}
	for _, sc := range env.Set.Schedules {
		kind, name := sc.Spec.Target()
		if kind != config.KindRotationPolicy || sc.Spec.Suspend {
			continue
		}
		if pol, ok := env.Set.RotationPolicy(name); !ok || pol.Spec.KeyProvider != kp.Metadata.Name {
			continue
		}
		cs, err := sc.CronSchedule()
		if err != nil {
			continue
		}
		next := cs.Next(now)
		if ks.NextRotation == nil || next.Before(*ks.NextRotation) {
			ks.NextRotation, ks.Schedule = &next, sc.Metadata.Name
		}
	}
	return ks, nil
}

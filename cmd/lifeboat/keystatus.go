package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

type keyVersionStatus struct {
	Version string    `json:"version"`
	State   string    `json:"state"`
	Primary bool      `json:"primary"`
	Created time.Time `json:"created,omitzero"`
	Age     string    `json:"age,omitempty"`
	// Generation is the version's current key material, for providers
	// that rotate material under an unchanged version (awskms managed).
	Generation string `json:"generation,omitempty"`
	// Backups counts the committed backups with a key object under this
	// version.
	Backups int `json:"backups"`
}

type keyStatus struct {
	KeyProvider  string             `json:"keyProvider"`
	Versions     []keyVersionStatus `json:"versions"`
	Backups      int                `json:"backups"`
	NextRotation *time.Time         `json:"nextRotation,omitempty"`
	Schedule     string             `json:"schedule,omitempty"`
	// Error says why the provider could not be read; the other
	// providers are still reported.
	Error string `json:"error,omitempty"`
}

func newKeysStatusCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status [KEY_PROVIDER]",
		Short: "Show each KEK's versions, their age, the next rotation, and how many backups each version wraps",
		Long: `status lists, for each KeyProvider (or the one named), its KEK versions with
state and age, the next rotation its Schedules will run, and how many
committed backups have a key object under each version, counted in every
store written by a plan that uses the provider. A version that still wraps
backups no newer version wraps cannot be retired yet.`,
		Example: `  lifeboat --config schedules/ keys status
  lifeboat --config schedules/ keys status local -o json`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			set, err := loadConfigSet(a, "keys status")
			if err != nil {
				return err
			}
			var out []keyStatus
			failed := 0
			for _, kp := range set.KeyProviders {
				if len(argv) == 1 && kp.Metadata.Name != argv[0] {
					continue
				}
				ks, err := keyProviderStatus(cmd.Context(), a, set, kp)
				if err != nil {
					failed++
					ks = keyStatus{KeyProvider: kp.Metadata.Name, Error: err.Error()}
				}
				out = append(out, ks)
			}
			if len(argv) == 1 && len(out) == 0 {
				return usageError{fmt.Errorf("keys status: no KeyProvider named %q", argv[0])}
			}
			sort.Slice(out, func(i, j int) bool { return out[i].KeyProvider < out[j].KeyProvider })
			t := table{header: []string{"PROVIDER", "VERSION", "STATE", "PRIMARY", "AGE", "BACKUPS WRAPPED", "NEXT ROTATION"}}
			for _, ks := range out {
				if ks.Error != "" {
					t.rows = append(t.rows, []string{ks.KeyProvider, "error: " + ks.Error, "", "", "", "", ""})
					continue
				}
				next := "not scheduled"
				if ks.NextRotation != nil {
					next = ks.NextRotation.UTC().Format(time.RFC3339) + " (" + ks.Schedule + ")"
				}
				for _, v := range ks.Versions {
					t.rows = append(t.rows, []string{ks.KeyProvider, v.Version, v.State, fmt.Sprint(v.Primary), v.Age, fmt.Sprintf("%d of %d", v.Backups, ks.Backups), next})
				}
			}
			if err := a.render(cmd.OutOrStdout(), out, t); err != nil {
				return err
			}
			if failed > 0 {
				return reportedError{fmt.Errorf("keys status: %d key provider(s) could not be read", failed)}
			}
			return nil
		},
	}
}

// keyProviderStatus reads one provider's versions and counts, per version,
// the committed backups wrapped under it.
func keyProviderStatus(ctx context.Context, a *app, set *config.Set, kp *config.KeyProvider) (keyStatus, error) {
	prov, err := a.env(set).OpenKeys(ctx, kp)
	if err != nil {
		return keyStatus{}, err
	}
	vs, err := prov.Versions(ctx)
	if err != nil {
		return keyStatus{}, fmt.Errorf("%s: %w", kp.Metadata.Name, err)
	}
	ks := keyStatus{KeyProvider: kp.Metadata.Name}
	counts := map[string]int{}
	var stores []string
	for _, p := range set.BackupPlansUsing(kp.Metadata.Name) {
		if !slices.Contains(stores, p.Spec.Store) {
			stores = append(stores, p.Spec.Store)
		}
	}
	for _, name := range stores {
		cs, _ := set.Store(name)
		st, err := a.env(set).OpenStore(ctx, cs, true)
		if err != nil {
			return keyStatus{}, err
		}
		ms, err := catalog.List(ctx, st, catalog.ListOptions{})
		if err != nil {
			return keyStatus{}, fmt.Errorf("store %s: %w", name, err)
		}
		for _, m := range ms {
			ks.Backups++
			seen := map[string]bool{}
			for info, err := range st.List(ctx, catalog.KeysPrefix(m.Backup)) {
				if err != nil {
					return keyStatus{}, fmt.Errorf("store %s: %w", name, err)
				}
				rc, err := st.Get(ctx, info.Key, store.GetOptions{})
				if err != nil {
					return keyStatus{}, err
				}
				ko, err := envelope.ReadKeyObject(rc)
				rc.Close()
				if err != nil {
					return keyStatus{}, fmt.Errorf("%s: %w", info.Key, err)
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
		s := keyVersionStatus{Version: v.Ref.String(), State: string(v.State), Primary: v.Primary, Created: v.Created, Generation: v.Generation, Backups: counts[v.Ref.String()]}
		if !v.Created.IsZero() {
			s.Age = config.Duration(now.Sub(v.Created).Truncate(time.Minute)).String()
		}
		ks.Versions = append(ks.Versions, s)
	}
	for _, sc := range set.Schedules {
		kind, name := sc.Spec.Target()
		if kind != config.KindRotationPolicy || sc.Spec.Suspend {
			continue
		}
		if pol, ok := set.RotationPolicy(name); !ok || pol.Spec.KeyProvider != kp.Metadata.Name {
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

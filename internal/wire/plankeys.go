package wire

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
)

// PlanKeys are the opened key providers of a plan (docs/config.md
// keyProviders), in the plan's order. It unwraps a key object with
// whichever provider holds the key object's KEK, so a reader needs any one
// of them.
type PlanKeys struct {
	// Names are the KeyProviders opened, in order; Providers their
	// providers.
	Names     []string
	Providers []keys.Provider
	// Unavailable names the providers a reader could not open, with why;
	// the backup is still readable through the others.
	Unavailable []string
}

// Unwrap implements envelope.Unwrapper: each provider in turn; a provider
// that does not hold w's KEK refuses it without any I/O. When every
// provider fails, the error of the one that holds the KEK is returned (or,
// when none does, one wrapping keys.ErrKeyNotFound that names the providers
// opened and those not available).
func (k PlanKeys) Unwrap(ctx context.Context, w keys.Wrapped, aad []byte) ([]byte, error) {
	var owned []error
	for i, p := range k.Providers {
		out, err := p.Unwrap(ctx, w, aad)
		if err == nil {
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		// A provider that does not hold w's KEK says ErrKeyNotFound;
		// the one that does has the error worth reporting.
		if !errors.Is(err, keys.ErrKeyNotFound) {
			owned = append(owned, fmt.Errorf("key provider %s: %w", k.Names[i], err))
		}
	}
	if len(owned) > 0 {
		return nil, errors.Join(owned...)
	}
	unavailable := ""
	if len(k.Unavailable) > 0 {
		unavailable = "; not available here: " + strings.Join(k.unavailableNames(), ", ")
	}
	return nil, fmt.Errorf("no key provider opened here holds %s (opened: %s%s): %w", w.KEK, strings.Join(k.Names, ", "), unavailable, keys.ErrKeyNotFound)
}

func (k PlanKeys) unavailableNames() []string {
	names := make([]string, len(k.Unavailable))
	for i, u := range k.Unavailable {
		names[i], _, _ = strings.Cut(u, ":")
	}
	return names
}

// Primary is the plan's first provider, the one the manifest names.
func (k PlanKeys) Primary() keys.Provider { return k.Providers[0] }

// OpenPlanKeys opens the KeyProviders names. A writer (all) needs every
// one: a backup must be readable through each provider its plan lists, so
// one that cannot be opened fails the run. A reader needs one: the others
// are listed in Unavailable (lose the cluster's Vault, and the break-glass
// provider still reads every backup).
func (e *Env) OpenPlanKeys(ctx context.Context, names []string, all bool) (PlanKeys, error) {
	var k PlanKeys
	var errs []error
	for _, name := range names {
		kp, ok := e.Set.KeyProvider(name)
		if !ok {
			return PlanKeys{}, fmt.Errorf("no KeyProvider named %q", name)
		}
		p, err := e.OpenKeys(ctx, kp)
		if err != nil {
			if all {
				return PlanKeys{}, err
			}
			errs = append(errs, err)
			k.Unavailable = append(k.Unavailable, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		k.Names = append(k.Names, name)
		k.Providers = append(k.Providers, p)
	}
	if len(k.Providers) == 0 {
		if len(errs) == 0 {
			return PlanKeys{}, errors.New("no key provider named")
		}
		return PlanKeys{}, fmt.Errorf("no key provider could be opened: %w", errors.Join(errs...))
	}
	if l := e.logger(); len(k.Unavailable) > 0 {
		l.Warn("key providers unavailable; reading through the others", "unavailable", k.Unavailable, "using", k.Names)
	}
	return k, nil
}

// ReadKeys opens the key providers a reader of plan's backups uses: only
// the one named by only (--key-provider, which need not be the plan's:
// a break-glass drill names it), else the plan's providers.
func (e *Env) ReadKeys(ctx context.Context, plan *config.BackupPlan, only string) (PlanKeys, error) {
	if only != "" {
		return e.OpenPlanKeys(ctx, []string{only}, true)
	}
	return e.OpenPlanKeys(ctx, plan.Spec.KeyProviderNames(), false)
}

// BackupKeys opens the key providers that read a backup of plan planName:
// only the one named by override (--key-provider), else the plan's
// keyProviders (any one that opens will do). With neither, the error asks
// for --key-provider.
func (e *Env) BackupKeys(ctx context.Context, planName, override string) (PlanKeys, error) {
	if override != "" {
		return e.OpenPlanKeys(ctx, []string{override}, true)
	}
	p, ok := e.Set.BackupPlan(planName)
	if !ok {
		return PlanKeys{}, fmt.Errorf("no BackupPlan named %q in the configuration to say which key providers wrap its backups; name one with --key-provider", planName)
	}
	return e.ReadKeys(ctx, p, "")
}

package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// tierDecision is the lock a backup takes under its plan's retention
// tiers (docs/format.md §1.2).
type tierDecision struct {
	// retention is the backup's lock: the plan's default, or the longest
	// lock of the tiers it takes.
	retention time.Duration
	// tiers are the tiers it takes, with the period of each.
	tiers   []config.Tier
	periods []string
}

// names returns the tiers taken as "<tier>/<period>".
func (d tierDecision) names() []string {
	out := make([]string, len(d.tiers))
	for i, t := range d.tiers {
		out[i] = t.Name + "/" + d.periods[i]
	}
	return out
}

// decideTiers decides, before a backup of plan starts at now, which of
// the plan's retention tiers it takes: each tier whose period has no valid
// claim yet (signed by the drill's own key, naming this plan, tier and
// period). A claim that cannot be read or does not verify counts as
// absent, with a warning: when in doubt the backup is locked longer, never
// shorter, so someone who can write to the store cannot cut a month's
// long lock by planting a claim.
func decideTiers(ctx context.Context, st store.Store, signer *evidence.Signer, plan *config.BackupPlan, cs *config.Store, now time.Time, log *slog.Logger) tierDecision {
	d := tierDecision{retention: config.BackupRetention(plan, cs)}
	for _, t := range config.Tiers(plan, cs) {
		period := t.Period(now)
		c, err := evidence.ReadTierClaim(ctx, st, cs.Metadata.Name, plan.Metadata.Name, t.Name, period, signer.PublicKey())
		// A holder started inside the period, so it is locked at least
		// until the period's start plus the tier's lock; a claim locked for
		// less was written under a shorter tier and does not hold this one.
		if want := config.TierPeriodStart(t.Name, now).Add(t.Lock); err == nil && c.RetainUntil.Before(want) {
			err = fmt.Errorf("claim %s holds backup %s locked until %s, before %s (the period's start plus the tier's %s lock)",
				evidence.TierClaimKey(plan.Metadata.Name, t.Name, period), c.BackupID, c.RetainUntil.UTC().Format(time.RFC3339), want.UTC().Format(time.RFC3339), t.Lock)
		}
		switch {
		case err == nil:
			continue // an earlier complete backup of this period holds the tier
		case errors.Is(err, store.ErrNotFound):
		default:
			if log != nil {
				log.Warn("retention claim not trusted: this backup takes the tier's lock", "plan", plan.Metadata.Name, "tier", t.Name, "period", period, "err", err)
			}
		}
		d.tiers = append(d.tiers, t)
		d.periods = append(d.periods, period)
		d.retention = max(d.retention, t.Lock)
	}
	return d
}

// claimTiers writes the claims of the tiers a complete backup took, so
// that later backups of the same periods take the default lock. A claim
// that is already there (another backup's, or one planted) is left alone
// and logged.
func claimTiers(ctx context.Context, st store.Store, storeName string, signer *evidence.Signer, m catalog.Manifest, d tierDecision, evRetention time.Duration, now time.Time, log *slog.Logger) {
	if m.Status != catalog.StatusComplete {
		return // a partial backup does not hold the tier: the next one takes it too
	}
	for i, t := range d.tiers {
		c := evidence.TierClaim{Store: storeName, Plan: m.Plan, Tier: t.Name, Period: d.periods[i], BackupID: m.Backup, RetainUntil: m.RetainUntil}
		err := evidence.WriteTierClaim(ctx, st, signer, c, now.Add(evRetention))
		if err != nil && log != nil {
			log.Warn("retention claim not written; the next backup of the period takes the tier's lock too", "plan", m.Plan, "tier", t.Name, "period", d.periods[i], "err", err)
		}
	}
}

package rotation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/keys"
)

// RunRecord is what one rotation run (`lifeboat keys rotate POLICY`) did
// across every store it touched: the input of the rotation evidence
// record written to each of them (docs/format.md §5.3.1).
type RunRecord struct {
	// ID is the run's ID, the same in every store's record.
	ID string
	// Policy and KeyProvider name the configuration objects.
	Policy      string
	KeyProvider string
	// Provider and Key are the KEK's provider type and key, as in
	// keys.Ref.
	Provider string
	Key      string
	// Stores lists every store the run touched, in order.
	Stores            []string
	Started, Finished time.Time
	// From is the primary before the run; Rotated the version the run
	// created (nil when it did not rotate).
	From    *keys.Version
	Rotated *keys.Version
	// NotRotatedReason says why Rotated is nil ("--no-rotate ...",
	// "current version ... younger than every ...", "rotate failed: ...").
	NotRotatedReason string
	// Primary is the version backups were rewrapped under, with its
	// material generation.
	Primary           keys.Ref
	PrimaryGeneration string
	// Results holds each reached store's Run result, by store name. A
	// store missing here was not reached.
	Results map[string]*Result
	// RetirePolicy is the policy's retirement rule.
	RetirePolicy Policy
	// Retired and Kept are what the retirement step did.
	Retired []keys.Ref
	Kept    []BlockedVersion
	// RetirementWithheld says why retirement was not attempted ("" when
	// it was).
	RetirementWithheld string
	// Err is why the run stopped early or failed; nil when it did not.
	Err error
}

// Counts are backup counts of one store or of a whole run.
type Counts struct {
	Backups     int
	Rewrapped   int
	AlreadyDone int
	Failed      int
}

// Verified is the number of backups verified under the primary.
func (c Counts) Verified() int { return c.Rewrapped + c.AlreadyDone }

func (c Counts) add(o Counts) Counts {
	return Counts{c.Backups + o.Backups, c.Rewrapped + o.Rewrapped, c.AlreadyDone + o.AlreadyDone, c.Failed + o.Failed}
}

func (c Counts) tree() map[string]any {
	return map[string]any{
		"backups": c.Backups, "rewrapped": c.Rewrapped, "alreadyDone": c.AlreadyDone,
		"verified": c.Verified(), "failed": c.Failed,
	}
}

// CountsOf counts a store's Run result.
func CountsOf(r *Result) Counts {
	if r == nil {
		return Counts{}
	}
	return Counts{
		Backups:     len(r.Backups),
		Rewrapped:   len(r.Rewrapped()),
		AlreadyDone: len(r.Skipped()),
		Failed:      len(r.Failed()),
	}
}

// Totals sums the counts of every reached store.
func (rr *RunRecord) Totals() Counts {
	var c Counts
	for _, name := range rr.Stores {
		c = c.add(CountsOf(rr.Results[name]))
	}
	return c
}

// Succeeded reports whether the run did everything it set out to: no
// error, every store reached, and every backup in every store verified
// under the primary. It is the only way to an OutcomeSuccess record.
func (rr *RunRecord) Succeeded() bool {
	if rr.Err != nil || len(rr.Stores) == 0 {
		return false
	}
	for _, name := range rr.Stores {
		if rr.Results[name] == nil {
			return false
		}
	}
	return rr.Totals().Failed == 0
}

// Outcome is the record outcome for store: success only when the whole
// run succeeded; partial when it did not but some of the store's backups
// were verified under the primary; failure otherwise.
func (rr *RunRecord) Outcome(store string) string {
	switch {
	case rr.Succeeded():
		return evidence.OutcomeSuccess
	case CountsOf(rr.Results[store]).Verified() > 0:
		return evidence.OutcomePartial
	default:
		return evidence.OutcomeFailure
	}
}

// Subject is the record subject for store (docs/format.md
// §5.3.1).
func (rr *RunRecord) Subject(store string) map[string]any {
	stores := make([]any, len(rr.Stores))
	for i, s := range rr.Stores {
		stores[i] = s
	}
	rot := map[string]any{
		"rotated": rr.Rotated != nil, "from": "", "to": "", "fromGeneration": "", "toGeneration": "", "reason": "",
	}
	if rr.From != nil {
		rot["from"], rot["fromGeneration"] = rr.From.Ref.Version, rr.From.Generation
	}
	if rr.Rotated != nil {
		rot["to"], rot["toGeneration"] = rr.Rotated.Ref.Version, rr.Rotated.Generation
	} else {
		rot["reason"] = "not rotated: " + rr.NotRotatedReason
	}
	failed := []any{}
	if r := rr.Results[store]; r != nil {
		for _, b := range r.Backups {
			if b.Outcome == OutcomeFailed {
				reason := "unknown"
				if b.Err != nil {
					reason = b.Err.Error()
				}
				failed = append(failed, map[string]any{"backup": b.Backup, "reason": reason})
			}
		}
	}
	notWrapped := int64(0)
	if r := rr.Results[store]; r != nil {
		notWrapped = int64(len(r.NotWrapped))
	}
	retired := []any{}
	for _, v := range rr.Retired {
		retired = append(retired, v.Version)
	}
	kept := []any{}
	for _, b := range rr.Kept {
		kept = append(kept, map[string]any{"version": b.Version.Version, "reason": b.Reason})
	}
	errText := ""
	if rr.Err != nil {
		errText = rr.Err.Error()
	}
	return map[string]any{
		"policy":            rr.Policy,
		"keyProvider":       rr.KeyProvider,
		"provider":          rr.Provider,
		"key":               rr.Key,
		"store":             store,
		"stores":            stores,
		"started":           rr.Started.UTC().Format(time.RFC3339Nano),
		"finished":          rr.Finished.UTC().Format(time.RFC3339Nano),
		"rotation":          rot,
		"primary":           rr.Primary.Version,
		"primaryGeneration": rr.PrimaryGeneration,
		"counts":            CountsOf(rr.Results[store]).tree(),
		"totals":            rr.Totals().tree(),
		"failed":            failed,
		"notWrapped":        notWrapped,
		"retirement": map[string]any{
			"policy": policyName(rr.RetirePolicy), "retired": retired, "kept": kept, "withheld": rr.RetirementWithheld,
		},
		"error": errText,
	}
}

// rotationHIPAA are the sections a rotation record is evidence for
// (docs/hipaa.md).
var rotationHIPAA = []string{
	"§164.308(a)(7)(ii)(A)", // backups stay retrievable under the new version
	"§164.312(a)(2)(iv)",    // encryption: the KEK was rotated, wraps verified
	"§164.316(b)(2)(i)",     // retention of the evidence
}

// PublishOptions say where a rotation record goes.
type PublishOptions struct {
	// Store is the store whose evidence log receives the record. Required.
	Store evidence.StoreLike
	// StoreName is the Store object's name, as in RunRecord.Stores.
	StoreName string
	// Signer signs the record. Required.
	Signer *evidence.Signer
	// Retention is how long the record is retained; zero means
	// evidence.DefaultRetention.
	Retention time.Duration
	// Now is the evidence log's clock; nil means time.Now.
	Now func() time.Time
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// Publish appends rr's rotation record for opts.StoreName to that store's
// evidence log. A failed or partial run is published the same way, with
// the outcome that says so.
func Publish(ctx context.Context, rr *RunRecord, opts PublishOptions) (evidence.Record, error) {
	if opts.Store == nil || opts.Signer == nil {
		return evidence.Record{}, errors.New("publish rotation evidence: store and signer are required")
	}
	evOpts := []evidence.Option{evidence.WithRetention(opts.Retention)}
	if opts.Logger != nil {
		evOpts = append(evOpts, evidence.WithLogger(opts.Logger))
	}
	rec, err := evidence.NewLog(opts.Store, opts.Signer, opts.Now, evOpts...).Append(ctx, evidence.Record{
		Kind: evidence.KindRotation, ID: rr.ID, Outcome: rr.Outcome(opts.StoreName),
		Subject: rr.Subject(opts.StoreName), HIPAA: rotationHIPAA,
	})
	if err != nil {
		return rec, fmt.Errorf("publish evidence of rotation %s in store %s: %w", rr.ID, opts.StoreName, err)
	}
	return rec, nil
}

package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/config"
	"github.com/lifeboat-dr/lifeboat/internal/envelope"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/store"
	"github.com/lifeboat-dr/lifeboat/internal/wire"
)

// AuditLogNamed returns the AuditLog called name, or the configuration's
// only one when name is "".
func AuditLogNamed(set *config.Set, name string) (*config.AuditLog, error) {
	if name != "" {
		a, ok := set.AuditLog(name)
		if !ok {
			return nil, fmt.Errorf("no AuditLog named %q in the configuration", name)
		}
		return a, nil
	}
	switch len(set.AuditLogs) {
	case 0:
		return nil, errors.New("the configuration has no AuditLog")
	case 1:
		return set.AuditLogs[0], nil
	default:
		return nil, errors.New("the configuration has several AuditLogs; name one")
	}
}

// auditKeys opens the AuditLog's key providers, in order.
func auditKeys(ctx context.Context, env *wire.Env, a *config.AuditLog) ([]envelope.Wrapper, []envelope.Unwrapper, error) {
	var ws []envelope.Wrapper
	var us []envelope.Unwrapper
	for _, name := range a.Spec.KeyProviderNames() {
		kp, ok := env.Set.KeyProvider(name)
		if !ok {
			return nil, nil, fmt.Errorf("audit log %s: no KeyProvider named %q", a.Metadata.Name, name)
		}
		p, err := env.OpenKeys(ctx, kp)
		if err != nil {
			return nil, nil, fmt.Errorf("audit log %s: %w", a.Metadata.Name, err)
		}
		ws, us = append(ws, p), append(us, p)
	}
	return ws, us, nil
}

// AuditReceiverOptions configure OpenAuditReceiver.
type AuditReceiverOptions struct {
	// Stream is this replica's identity.
	Stream string
	Signer *evidence.Signer
	// Metrics are the AuditLog's metrics; nil: unregistered ones.
	Metrics *audit.Metrics
	Logger  *slog.Logger
}

// OpenAuditReceiver opens an AuditLog's store, key providers, stream head
// and WAL: what `serve` runs the audit webhook with.
func OpenAuditReceiver(ctx context.Context, env *wire.Env, a *config.AuditLog, o AuditReceiverOptions) (*audit.Receiver, error) {
	st, cs, err := env.StoreNamed(ctx, a.Spec.Store, false)
	if err != nil {
		return nil, fmt.Errorf("audit log %s: %w", a.Metadata.Name, err)
	}
	ws, _, err := auditKeys(ctx, env, a)
	if err != nil {
		return nil, err
	}
	r, _, err := audit.Open(ctx, audit.Options{
		Log: a.Metadata.Name, Stream: o.Stream, WALDir: a.Spec.WALDir, Store: st, Wrappers: ws,
		Signer: o.Signer, Retention: config.AuditRetention(a, cs),
		MaxBytes: a.Spec.Segment.MaxBytes, MaxAge: a.Spec.Segment.MaxAge.Std(),
		Metrics: o.Metrics, Logger: o.Logger,
	})
	return r, err
}

// AuditVerifyResult is `audit verify`'s result.
type AuditVerifyResult struct {
	audit.VerifyResult
	Store string `json:"store"`
	// Versions are keys under the log holding versions lifeboat did not
	// write (S3).
	Versions []store.VersionFinding `json:"versions,omitempty"`
}

// OK reports whether everything verified.
func (r AuditVerifyResult) OK() bool { return r.VerifyResult.OK() && len(r.Versions) == 0 }

// AuditVerify verifies an AuditLog's streams in its store (or storeName,
// when set): docs/format.md §8.5, and on a store that keeps versions,
// every key under the log for versions lifeboat did not write.
func AuditVerify(ctx context.Context, env *wire.Env, logName, storeName string, o audit.VerifyOptions) (AuditVerifyResult, error) {
	a, err := AuditLogNamed(env.Set, logName)
	if err != nil {
		return AuditVerifyResult{}, err
	}
	if storeName == "" {
		storeName = a.Spec.Store
	}
	st, _, err := env.StoreNamed(ctx, storeName, true)
	if err != nil {
		return AuditVerifyResult{}, err
	}
	o.Log = a.Metadata.Name
	vr, err := audit.Verify(ctx, st, o)
	res := AuditVerifyResult{VerifyResult: vr, Store: storeName}
	if err != nil {
		return res, err
	}
	if va, ok := st.(store.VersionAuditor); ok {
		res.Versions, err = va.AuditVersions(ctx, "audit/"+a.Metadata.Name+"/")
		if err != nil {
			return res, fmt.Errorf("audit verify: %w", err)
		}
	}
	return res, nil
}

// AuditSearch searches an AuditLog (docs/format.md §8.5) with its key
// providers; records must be signed by one of trusted.
func AuditSearch(ctx context.Context, env *wire.Env, logName, storeName string, f audit.Filter, trusted []evidence.PublicKey) (audit.SearchResult, error) {
	a, err := AuditLogNamed(env.Set, logName)
	if err != nil {
		return audit.SearchResult{}, err
	}
	if storeName == "" {
		storeName = a.Spec.Store
	}
	st, _, err := env.StoreNamed(ctx, storeName, true)
	if err != nil {
		return audit.SearchResult{}, err
	}
	_, us, err := auditKeys(ctx, env, a)
	if err != nil {
		return audit.SearchResult{}, err
	}
	return audit.Search(ctx, st, audit.SearchOptions{Log: a.Metadata.Name, Filter: f, Trusted: trusted, Unwrappers: us})
}

package job

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/store"
)

// KindCleanup is the evidence kind of a cleanup of what a killed run left
// behind (multipart uploads).
const KindCleanup = "cleanup"

// CleanStaleUploads aborts, on a store whose Puts can leave partial
// uploads (store.UploadJanitor: S3), the uploads a killed run left open,
// older than store.StaleUploadAge, and appends one signed `cleanup`
// record naming them. It returns how many it aborted. A store without
// uploads does nothing.
func CleanStaleUploads(ctx context.Context, st store.Store, storeName string, signer *evidence.Signer, retention time.Duration, now func() time.Time, log *slog.Logger) (int, error) {
	j, ok := st.(store.UploadJanitor)
	if !ok {
		return 0, nil
	}
	if now == nil {
		now = time.Now
	}
	aborted, err := j.AbortStaleUploads(ctx, store.StaleUploadAge, now())
	if len(aborted) > 0 && signer != nil {
		ups := make([]any, 0, len(aborted))
		for _, u := range aborted {
			ups = append(ups, map[string]any{"key": u.Key, "uploadId": u.UploadID, "initiated": u.Initiated.Format(time.RFC3339Nano)})
		}
		opts := []evidence.Option{evidence.WithRetention(retention)}
		if log != nil {
			opts = append(opts, evidence.WithLogger(log))
		}
		t := now().UTC()
		_, rerr := evidence.NewLog(st, signer, now, opts...).Append(ctx, evidence.Record{
			Kind: KindCleanup, ID: storeName + "-" + t.Format("20060102T150405Z"), Outcome: evidence.OutcomeSuccess,
			Subject: map[string]any{"store": storeName, "abortedUploads": ups, "count": int64(len(aborted)),
				"olderThanMs": store.StaleUploadAge.Milliseconds()},
			HIPAA: []string{"§164.310(d)(2)(iv)", "§164.312(b)"},
		})
		if rerr != nil {
			return len(aborted), fmt.Errorf("aborted %d stale uploads in store %s, but their cleanup record is not written: %w", len(aborted), storeName, rerr)
		}
	}
	if err != nil {
		return len(aborted), fmt.Errorf("store %s: %w", storeName, err)
	}
	return len(aborted), nil
}

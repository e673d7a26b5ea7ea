package config

import (
	"testing"
	"time"
)

func TestRetentionRule(t *testing.T) {
	const day = 24 * time.Hour
	lock := func(d time.Duration) *Store {
		return &Store{Spec: StoreSpec{ObjectLock: &ObjectLock{Mode: LockCompliance, Retention: Duration(d)}}}
	}
	plan := func(d time.Duration) *BackupPlan {
		return &BackupPlan{Spec: BackupPlanSpec{Retention: Retention{Default: Duration(d)}}}
	}
	unlocked := &Store{}
	for _, tc := range []struct {
		name             string
		plan             *BackupPlan
		store            *Store
		backup, evidence time.Duration
	}{
		{"defaults, unlocked store", plan(0), unlocked, 2190 * day, 2190 * day},
		{"short plan, unlocked store: evidence still six years", plan(35 * day), unlocked, 35 * day, 2190 * day},
		{"short plan, longer lock", plan(35 * day), lock(90 * day), 90 * day, 2190 * day},
		{"long lock beats both", plan(35 * day), lock(3000 * day), 3000 * day, 3000 * day},
		{"long plan, short lock", plan(2500 * day), lock(30 * day), 2500 * day, 2190 * day},
		{"nil store", plan(10 * day), nil, 10 * day, 2190 * day},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := BackupRetention(tc.plan, tc.store); got != tc.backup {
				t.Errorf("BackupRetention = %v, want %v", got, tc.backup)
			}
			if got := EvidenceRetention(tc.store); got != tc.evidence {
				t.Errorf("EvidenceRetention = %v, want %v", got, tc.evidence)
			}
		})
	}
}

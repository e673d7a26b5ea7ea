package drill

import (
	"testing"
	"time"
)

func TestWorstGap(t *testing.T) {
	inc := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	h := func(n float64) time.Time { return inc.Add(-time.Duration(n * float64(time.Hour))) }
	for _, tc := range []struct {
		name   string
		points []time.Time
		window time.Duration
		want   time.Duration
		ok     bool
	}{
		{"none", nil, 24 * time.Hour, 0, false},
		{"only after the incident", []time.Time{inc.Add(time.Minute)}, 24 * time.Hour, 0, false},
		{"one backup: its age", []time.Time{h(3)}, 24 * time.Hour, 3 * time.Hour, true},
		{"hourly, last 1h ago", []time.Time{h(1), h(2), h(3), h(4)}, 24 * time.Hour, time.Hour, true},
		{"a missed run doubles the gap", []time.Time{h(1), h(2), h(4), h(5)}, 24 * time.Hour, 2 * time.Hour, true},
		{"unsorted input", []time.Time{h(5), h(1), h(4), h(2)}, 24 * time.Hour, 2 * time.Hour, true},
		{"newest is the oldest gap", []time.Time{h(6), h(7)}, 24 * time.Hour, 6 * time.Hour, true},
		{"gap before the window is clipped", []time.Time{h(100), h(10)}, 24 * time.Hour, 14 * time.Hour, true},
		{"gap wholly before the window ignored", []time.Time{h(100), h(50), h(20), h(19)}, 24 * time.Hour, 19 * time.Hour, true},
		{"first backup inside the window: no gap before it", []time.Time{h(5), h(4)}, 24 * time.Hour, 4 * time.Hour, true},
		{"backup exactly at the incident", []time.Time{h(2), inc}, 24 * time.Hour, 2 * time.Hour, true},
		{"points after the incident ignored", []time.Time{h(3), inc.Add(time.Hour)}, 24 * time.Hour, 3 * time.Hour, true},
		{"newest older than the window: the whole window", []time.Time{h(48)}, 24 * time.Hour, 24 * time.Hour, true},
	} {
		got, ok := WorstGap(tc.points, inc, tc.window)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: got %v %v, want %v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

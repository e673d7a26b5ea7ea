// Package memwatch samples how much memory this process and the processes
// it started hold, over time, so that a drill's report can state the peak
// of each of its phases (docs/format.md §5.6).
//
// A sample is the sum of the resident sets (/proc/<pid>/statm) of this
// process and of its descendants, found through
// /proc/<pid>/task/<tid>/children, plus what an extra function reports:
// memory no resident set shows, such as a memory file no process maps.
// Where /proc cannot be read the samples are 0 and Peak reports nothing.
package memwatch

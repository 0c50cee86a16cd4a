package embedded

import "time"

// CommitInfo describes one group the sequencing writer committed, for Options.OnCommit
// (metrics: group-commit batch size and sync latency). The store itself exports no
// metrics, so it does not depend on a metrics library.
type CommitInfo struct {
	// Group is the number of appends taken into the group, including those that
	// failed their checks or whose callers had gone.
	Group int
	// Appends is the number of appends of the group that stored records.
	Appends int
	// Records is the number of records the group stored.
	Records int
	// Sync is how long the batch commit took, WAL write and fdatasync included.
	Sync time.Duration
	// Err is the commit's error; when set nothing of the group was stored.
	Err error
}

// observeCommit reports a committed (or failed) group to Options.OnCommit.
func (s *Store) observeCommit(start time.Time, group, appends, records int, err error) {
	if s.opts.OnCommit == nil {
		return
	}
	info := CommitInfo{Group: group, Appends: appends, Records: records, Sync: time.Since(start), Err: err}
	if err != nil {
		info.Appends, info.Records = 0, 0
	}
	s.opts.OnCommit(info)
}

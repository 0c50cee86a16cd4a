package projections

import "github.com/cockroachdb/pebble/v2/vfs"

// noSyncFS is the file system of a bulk build (modelOptions): the files it
// creates and the directories it opens never sync. A bulk build needs none of its
// files to survive a crash, since its marker has a build found after one discarded
// and built again (openModel), and what it becomes is written out, synced, by
// settleBulk. Syncing each flushed table would write the build (several times the
// size of the settled model) to the disk while the fold waited for the core the
// sync held; unsynced, most of it is deleted from the page cache before it is ever
// written.
type noSyncFS struct{ vfs.FS }

// Create creates the file as fs.FS does, without syncs.
func (fs noSyncFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil {
		return nil, err
	}
	return noSyncFile{f}, nil
}

// OpenDir opens the directory as fs.FS does, without syncs.
func (fs noSyncFS) OpenDir(name string) (vfs.File, error) {
	f, err := fs.FS.OpenDir(name)
	if err != nil {
		return nil, err
	}
	return noSyncFile{f}, nil
}

// noSyncFile is a file whose syncs do nothing.
type noSyncFile struct{ vfs.File }

// Sync does nothing.
func (noSyncFile) Sync() error { return nil }

// SyncData does nothing.
func (noSyncFile) SyncData() error { return nil }

// SyncTo does nothing, and says the file was not synced.
func (noSyncFile) SyncTo(int64) (fullSync bool, err error) { return false, nil }

package projections

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// settledSuffix names the directory a bulk build is written out to (settleBulk),
// and, with tablesSuffix, the directory of the tables it ingests.
const (
	settledSuffix = ".settled"
	tablesSuffix  = ".tables"
)

// settleBulk writes a finished bulk build out as the ordinary model it becomes, in
// <dir>.settled: the build is cut into key ranges, each range is read in order and
// written as one table, on GOMAXPROCS goroutines at once, and the tables are
// ingested into a fresh DB, where they land in the bottom level with nothing left
// to compact. (Compacting the build in place would be one compaction on one core,
// most of the time a build takes.) Current keys that hold their version's suffix
// alone are written with the version's value. The build itself is not changed;
// queries go on against it meanwhile. The caller holds mu, for reading at least,
// and no Apply runs; swapSettled then puts the written model in the build's place.
func (p *Positions) settleBulk() error {
	if c := p.compaction; c != nil {
		<-c.done // a compaction of the bulk build still running
		p.compaction = nil
		if c.err != nil {
			return fmt.Errorf("compact bulk build: %w", c.err)
		}
	}
	dst, tables := p.dir+settledSuffix, p.dir+settledSuffix+tablesSuffix
	for _, d := range []string{dst, tables} {
		if err := p.fs.RemoveAll(d); err != nil {
			return err
		}
	}
	if err := p.fs.MkdirAll(tables, 0o755); err != nil {
		return err
	}
	defer p.fs.RemoveAll(tables)

	bounds, err := settleRanges(p.db, 4*runtime.GOMAXPROCS(0))
	if err != nil {
		return fmt.Errorf("settle bulk build: %w", err)
	}
	cache := pebble.NewCache(8 << 20) // it serves the reads of current versions only
	defer cache.Unref()
	opts := modelOptions(p.fs, cache, p.log, false, nil)
	db, err := pebble.Open(dst, opts)
	if err != nil {
		return fmt.Errorf("settle bulk build: %w", err)
	}
	opts.EnsureDefaults()
	wopts := opts.MakeWriterOptions(len(opts.Levels)-1, db.TableFormat())

	// Every range but the first (the current table, the metadata and the pair
	// index) at once, the workers taking them in key order; then the first, whose
	// current versions held by their suffix alone (applier.promote) get their
	// value from the versions now written. The ranges are disjoint: each ingestion
	// lands in the bottom level.
	write := func(i int, fix func(k, v []byte) ([]byte, error)) (string, error) {
		path := filepath.Join(tables, fmt.Sprintf("%06d.sst", i))
		n, err := writeRange(p.db, p.fs, path, wopts, bounds[i], bounds[i+1], fix)
		if n == 0 {
			path = ""
		}
		return path, err
	}
	paths := make([]string, len(bounds)-1)
	errs := make([]error, len(bounds)-1)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(paths)-1) {
		wg.Go(func() {
			for i := int(next.Add(1)); i < len(paths); i = int(next.Add(1)) {
				paths[i], errs[i] = write(i, nil)
			}
		})
	}
	wg.Wait()
	err = errors.Join(errs...)
	if written := slices.DeleteFunc(paths, func(s string) bool { return s == "" }); err == nil && len(written) > 0 {
		err = db.Ingest(context.Background(), written)
	}
	if err == nil {
		var first string
		if first, err = write(0, currentValue(db)); err == nil && first != "" {
			err = db.Ingest(context.Background(), []string{first})
		}
	}
	err = errors.Join(err, db.Close())
	if err != nil {
		return fmt.Errorf("settle bulk build: %w", err)
	}
	p.settled = true
	return nil
}

// swapSettled puts the model settleBulk wrote in place of the bulk build and
// removes the build's marker; the build is closed. The caller holds mu for writing.
// A crash part-way leaves the marker, and the next open builds the model again.
func (p *Positions) swapSettled() error {
	db := p.db
	p.db = nil
	if err := db.Close(); err != nil {
		return err
	}
	if err := p.fs.RemoveAll(p.dir); err != nil {
		return err
	}
	if err := p.fs.Rename(p.dir+settledSuffix, p.dir); err != nil {
		return err
	}
	if err := syncDir(p.fs, filepath.Dir(p.dir)); err != nil {
		return err
	}
	p.bulk, p.settled = false, false
	return removeMarker(p.fs, p.dir)
}

// settleRanges cuts the key space of the model into ranges of roughly equal size
// for settleBulk: the keys before the records, the records, the keys between
// records and versions, and the versions in about n ranges with as many pairs each
// (cut at pair boundaries, from the pair index). bounds[i] and bounds[i+1] delimit
// range i; the first and last are nil (unbounded).
func settleRanges(db *pebble.DB, n int) ([][]byte, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixPair}, UpperBound: []byte{prefixPair + 1}})
	if err != nil {
		return nil, err
	}
	var pairs [][]byte
	for ok := it.First(); ok; ok = it.Next() {
		pairs = append(pairs, bytes.Clone(it.Key()))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, err
	}
	bounds := [][]byte{nil, {prefixRecord}, {prefixRecord + 1}, {prefixVersion}}
	for i := 1; i < n; i++ {
		k := pairs[len(pairs)*i/n:]
		if len(k) == 0 {
			break
		}
		party, topic, err := splitPair(k[0])
		if err != nil {
			return nil, err
		}
		if b := versionPrefix(party, topic); bytes.Compare(b, bounds[len(bounds)-1]) > 0 {
			bounds = append(bounds, b)
		}
	}
	return append(bounds, nil), nil
}

// currentValue returns a fix for writeRange that gives a current key holding its
// version's suffix alone the version's value, read from db.
func currentValue(db *pebble.DB) func(k, v []byte) ([]byte, error) {
	return func(k, v []byte) ([]byte, error) {
		if k[0] != prefixCurrent || len(v) != suffixLen {
			return v, nil
		}
		party, topic, err := splitPair(k)
		if err != nil {
			return nil, err
		}
		row, err := getVersion(db)(append(versionPrefix(party, topic), v...))
		if err != nil {
			return nil, fmt.Errorf("current version of (%s, %s): %w", party, topic, err)
		}
		return append(bytes.Clone(v), row...), nil
	}
}

// writeRange writes the keys of db in [lower, upper) to a new table at path,
// synced, and returns how many it wrote (an empty range leaves no file). A non-nil
// fix replaces each value by what it returns.
func writeRange(db *pebble.DB, fs vfs.FS, path string, wopts sstable.WriterOptions, lower, upper []byte, fix func(k, v []byte) ([]byte, error)) (int, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if !it.First() {
		return 0, it.Error()
	}
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return 0, err
	}
	w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), wopts)
	n := 0
	for ok := true; ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err == nil && fix != nil {
			v, err = fix(it.Key(), v)
		}
		if err != nil {
			w.Close()
			return 0, err
		}
		if err := w.Set(it.Key(), v); err != nil {
			w.Close()
			return 0, err
		}
		n++
	}
	if err := it.Error(); err != nil {
		w.Close()
		return 0, err
	}
	return n, w.Close() // Close syncs and closes the file
}

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

	workers := runtime.GOMAXPROCS(0)
	bounds, currents, err := settleRanges(p.db, workers, 4*workers)
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

	// Every range but the current table's at once, the workers taking them in key
	// order; then the current table's, whose keys held by their version's suffix
	// alone (applier.promote) get its value from the versions just written. The
	// ranges are disjoint: each ingestion lands in the bottom level.
	paths := make([]string, len(bounds)-1)
	errs := make([]error, len(bounds)-1)
	write := func(from, to int, fix func(k, v []byte) ([]byte, error)) error {
		var next atomic.Int64
		next.Store(int64(from))
		var wg sync.WaitGroup
		for range min(workers, to-from) {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < to; i = int(next.Add(1) - 1) {
					path := filepath.Join(tables, fmt.Sprintf("%06d.sst", i))
					n, err := writeRange(p.db, p.fs, path, wopts, bounds[i], bounds[i+1], fix)
					if n > 0 {
						paths[i] = path
					}
					errs[i] = err
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs[from:to]...); err != nil {
			return err
		}
		if written := slices.DeleteFunc(slices.Clone(paths[from:to]), func(s string) bool { return s == "" }); len(written) > 0 {
			return db.Ingest(context.Background(), written)
		}
		return nil
	}
	err = write(currents, len(paths), nil)
	if err == nil {
		err = write(0, currents, currentValue(db))
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

// settleRanges cuts the key space of the model into ranges for settleBulk, from
// the pair index: first the current table, in parts of as many pairs each, one per
// worker (the first currents ranges); then the metadata and the pair index, the
// records, the topic index, and the versions in about n ranges of as many pairs
// each. bounds[i] and bounds[i+1] delimit range i; the first and last are nil
// (unbounded).
func settleRanges(db *pebble.DB, workers, n int) (bounds [][]byte, currents int, err error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixPair}, UpperBound: []byte{prefixPair + 1}})
	if err != nil {
		return nil, 0, err
	}
	var pairs [][]byte
	for ok := it.First(); ok; ok = it.Next() {
		pairs = append(pairs, bytes.Clone(it.Key()))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, 0, err
	}
	// cut appends to bounds the keys (with prefix) of the pairs that cut them in
	// about parts parts, past what bounds ends with.
	cut := func(prefix byte, parts int) error {
		for i := 1; i < parts; i++ {
			k := pairs[len(pairs)*i/parts:]
			if len(k) == 0 {
				return nil
			}
			party, topic, err := splitPair(k[0])
			if err != nil {
				return err
			}
			b := pairKey(prefix, party, topic)
			if prefix == prefixVersion {
				b = versionPrefix(party, topic)
			}
			if bytes.Compare(b, bounds[len(bounds)-1]) > 0 {
				bounds = append(bounds, b)
			}
		}
		return nil
	}
	bounds = [][]byte{nil, {prefixCurrent}}
	if err := cut(prefixCurrent, workers); err != nil {
		return nil, 0, err
	}
	bounds = append(bounds, []byte{prefixCurrent + 1})
	currents = len(bounds) - 1
	bounds = append(bounds, []byte{prefixRecord}, []byte{prefixRecord + 1}, []byte{prefixVersion})
	if err := cut(prefixVersion, n); err != nil {
		return nil, 0, err
	}
	return append(bounds, nil), currents, nil
}

// currentValue returns a fix for writeRange that gives a current key holding its
// version's suffix alone the version's value, read from db.
func currentValue(db *pebble.DB) func(k, v []byte) ([]byte, error) {
	version := getVersion(db)
	return func(k, v []byte) ([]byte, error) {
		if k[0] != prefixCurrent || len(v) != suffixLen {
			return v, nil
		}
		party, topic, err := splitPair(k)
		if err != nil {
			return nil, err
		}
		row, err := version(append(versionPrefix(party, topic), v...))
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
